//! Imports that keep a history: only what changed is written, devices that left are stopped
//! and come back, concurrent imports of one hub, stopped imports. The helpers here are
//! shared with the events cases.

use std::time::Duration;

use iothubgdr_store::history::{
    BEHAVIOUR_BUILTIN, OPERATION_NEW_ASSET, OPERATION_RECORD, OPERATION_START_TRACKING,
    OPERATION_STOP_TRACKING,
};
use iothubgdr_store::{
    AssetFilter, AssetUpsert, AttributeFilter, EventFilter, ImportBreakdown, ImportContext,
    PageRequest, PageWrite, Principal,
};
use serde_json::json;

use crate::fixtures::{device, running_import, tenant, write_retrying};
use crate::TestDatabase;

pub(super) const ALL: PageRequest = PageRequest {
    page_size: 1000,
    before_seq: None,
};

pub(super) fn principal(subject: &str) -> Principal {
    Principal {
        issuer: "iothubgdr".into(),
        subject: subject.into(),
        display_name: format!("app {subject}"),
        email: String::new(),
    }
}

pub(super) fn import_context(name: &str) -> ImportContext {
    let mut event_attributes = serde_json::Map::new();
    event_attributes.insert("iothub_import".into(), json!(name));
    ImportContext {
        event_attributes,
        principal: principal(name),
    }
}

pub(super) fn of_asset(asset_id: uuid::Uuid) -> EventFilter {
    EventFilter {
        asset_id: Some(asset_id),
        ..EventFilter::default()
    }
}

pub(super) fn breakdown(write: &PageWrite) -> ImportBreakdown {
    match write {
        PageWrite::Written { breakdown, .. } => *breakdown,
        PageWrite::Stopped(status) => panic!("write stopped: {status:?}"),
    }
}

/// Device `n` seen in generation `generation` at twin version `version`, connected or not.
pub(super) fn seen(
    n: usize,
    colour: &str,
    generation: &str,
    version: i64,
    connected: bool,
) -> AssetUpsert {
    let mut asset = device(n, colour);
    asset.observation.incarnation.generation = Some(generation.into());
    asset.observation.incarnation.version = Some(version);
    asset.observation.event_attributes.insert(
        "iothub_connection_state".into(),
        json!(if connected {
            "Connected"
        } else {
            "Disconnected"
        }),
    );
    asset
}

/// A pause longer than the stores' millisecond clock, so two writes get distinct times.
pub(super) async fn tick() {
    tokio::time::sleep(Duration::from_millis(15)).await;
}

pub async fn imports_record_only_what_changed(db: &TestDatabase) {
    let store = db.open().await;
    let t = tenant(&store, "t").await;
    let first = running_import(&store, t).await;
    let ctx = import_context("import-1");
    let page: Vec<_> = (0..300).map(|n| seen(n, "red", "g1", 1, true)).collect();
    let written = store
        .import_write_page(first, t, &ctx, &page)
        .await
        .unwrap();
    assert_eq!(
        breakdown(&written),
        ImportBreakdown {
            created: 300,
            ..ImportBreakdown::default()
        }
    );
    let news = store.event_count(t, &EventFilter::default()).await.unwrap();
    assert_eq!(news, 300);
    let listed = store
        .asset_list(
            t,
            &AssetFilter::default(),
            PageRequest {
                page_size: 1,
                before_seq: None,
            },
        )
        .await
        .unwrap();
    let asset = &listed.items[0];
    let event = &store
        .event_list(t, &of_asset(asset.id), ALL)
        .await
        .unwrap()
        .items[0];
    assert_eq!(event.operation, OPERATION_NEW_ASSET);
    assert_eq!(event.asset_attributes, asset.attributes);
    // The import's identity and the volatile facts ride on the event, not on the asset.
    assert_eq!(event.event_attributes["iothub_import"], "import-1");
    assert_eq!(
        event.event_attributes["iothub_connection_state"],
        "Connected"
    );
    assert!(!asset.attributes.contains_key("iothub_connection_state"));
    assert_eq!(event.principal_accepted, principal("import-1"));

    // The same hub again: only a volatile fact and the twin version moved. Nothing written.
    let second = running_import(&store, t).await;
    let page: Vec<_> = (0..300)
        .map(|n| seen(n, "red", "g1", 2, n % 2 == 0))
        .collect();
    let written = store
        .import_write_page(second, t, &import_context("import-2"), &page)
        .await
        .unwrap();
    assert_eq!(breakdown(&written).unchanged, 300);
    assert_eq!(
        store.event_count(t, &EventFilter::default()).await.unwrap(),
        300
    );

    // Device 7's colour changed, device 8 lost its colour, device 9 was recreated.
    tick().await;
    let third = running_import(&store, t).await;
    let mut page: Vec<_> = (0..300).map(|n| seen(n, "red", "g1", 3, true)).collect();
    page[7] = seen(7, "blue", "g1", 3, true);
    let mut colourless = page[8].attributes().clone();
    colourless.remove("colour");
    page[8] = AssetUpsert::new(
        page[8].source_key.clone(),
        page[8].behaviours.clone(),
        colourless,
        page[8].observation.clone(),
    );
    page[9] = seen(9, "red", "g2", 1, false);
    let written = store
        .import_write_page(third, t, &import_context("import-3"), &page)
        .await
        .unwrap();
    assert_eq!(
        breakdown(&written),
        ImportBreakdown {
            changed: 3,
            unchanged: 297,
            recreated: 1,
            ..ImportBreakdown::default()
        }
    );
    let records = store
        .event_list(
            t,
            &EventFilter {
                operation: Some(OPERATION_RECORD.into()),
                ..EventFilter::default()
            },
            ALL,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(records.len(), 3);
    let mut changes: Vec<String> = records
        .iter()
        .map(|e| serde_json::Value::Object(e.asset_attributes.clone()).to_string())
        .collect();
    changes.sort();
    // Device 8's colour went (an event cannot delete, so it is blanked); device 9's
    // facts are the same but it is a new device: its event says so with no attribute.
    assert_eq!(changes, [r#"{"colour":""}"#, r#"{"colour":"blue"}"#, "{}"]);
    let recreated: Vec<_> = records
        .iter()
        .filter(|e| e.event_attributes["arc_display_type"] == "Recreated")
        .collect();
    assert_eq!(recreated.len(), 1);
    assert_eq!(
        recreated[0].event_attributes["iothub_connection_state"],
        "Disconnected"
    );
    // The import's totals add its writes up.
    let import = store.import_get(t, third).await.unwrap().unwrap();
    assert_eq!(import.breakdown.changed, 3);
    assert_eq!(import.breakdown.recreated, 1);
    assert_eq!(import.number_assets_imported, 300);
}

pub async fn devices_gone_from_the_hub_stop_and_come_back(db: &TestDatabase) {
    let store = db.open().await;
    let t = tenant(&store, "t").await;
    let first = running_import(&store, t).await;
    let page: Vec<_> = (0..25).map(|n| device(n, "red")).collect();
    write_retrying(&store, first, t, &page).await;
    // Another hub's assets share no prefix with this one.
    let mut other = device(0, "red");
    other.source_key = "other.example/device-0".into();
    write_retrying(&store, first, t, &[other]).await;

    let prefix = "hub.example/";
    let mut tracked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store
            .assets_tracked_by_source(t, prefix, after.as_deref(), 10)
            .await
            .unwrap();
        let Some((_, last)) = batch.last() else { break };
        after = Some(last.clone());
        tracked.extend(batch);
    }
    let keys: Vec<&str> = tracked.iter().map(|(_, k)| k.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "in byte order");
    assert_eq!(keys.len(), 25);
    assert!(keys.iter().all(|k| k.starts_with(prefix)));
    assert_eq!(
        store
            .assets_tracked_count_by_source(t, prefix)
            .await
            .unwrap(),
        25
    );
    assert_eq!(
        store
            .assets_tracked_count_by_source(t, "other.example/")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .assets_tracked_count_by_source(t, "nowhere.example/")
            .await
            .unwrap(),
        0
    );

    // Devices 3 and 4 left the hub.
    tick().await;
    let ctx = import_context("import-2");
    let gone: Vec<_> = tracked
        .iter()
        .filter(|(_, k)| k.ends_with("device-3") || k.ends_with("device-4"))
        .map(|(id, _)| *id)
        .collect();
    let second = running_import(&store, t).await;
    let written = store
        .import_stop_tracking(second, t, &ctx, &gone)
        .await
        .unwrap();
    assert_eq!(breakdown(&written).stopped_tracking, 2);
    // Stopping them again does nothing.
    let again = store
        .import_stop_tracking(second, t, &ctx, &gone)
        .await
        .unwrap();
    assert_eq!(breakdown(&again).stopped_tracking, 0);
    assert_eq!(
        store
            .import_get(t, second)
            .await
            .unwrap()
            .unwrap()
            .breakdown
            .stopped_tracking,
        2
    );
    let stops = store
        .event_list(
            t,
            &EventFilter {
                operation: Some(OPERATION_STOP_TRACKING.into()),
                ..EventFilter::default()
            },
            ALL,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(stops.len(), 2);
    assert!(stops
        .iter()
        .all(|e| e.event_attributes["iothub_import"] == "import-2"
            && e.behaviour == BEHAVIOUR_BUILTIN));
    let stopped = AssetFilter {
        tracked: Some(false),
        ..AssetFilter::default()
    };
    assert_eq!(store.asset_count(t, &stopped).await.unwrap(), 2);
    let tracked_only = AssetFilter {
        tracked: Some(true),
        ..AssetFilter::default()
    };
    assert_eq!(store.asset_count(t, &tracked_only).await.unwrap(), 24);
    assert_eq!(
        store.asset_count(t, &AssetFilter::default()).await.unwrap(),
        26
    );
    assert_eq!(
        store
            .assets_tracked_by_source(t, prefix, None, 100)
            .await
            .unwrap()
            .len(),
        23
    );
    assert_eq!(
        store
            .assets_tracked_count_by_source(t, prefix)
            .await
            .unwrap(),
        23
    );

    // Device 3 is back, unchanged: StartTracking and nothing else.
    let third = running_import(&store, t).await;
    let written = store
        .import_write_page(third, t, &import_context("import-3"), &[device(3, "red")])
        .await
        .unwrap();
    let b = breakdown(&written);
    assert_eq!((b.changed, b.tracked_again, b.created), (1, 1, 0));
    let back = gone[0];
    let history = store
        .event_list(t, &of_asset(back), ALL)
        .await
        .unwrap()
        .items;
    let operations: Vec<&str> = history.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        operations,
        [
            OPERATION_START_TRACKING,
            OPERATION_STOP_TRACKING,
            OPERATION_NEW_ASSET
        ],
        "newest first"
    );
    assert!(store.asset_get(t, back).await.unwrap().unwrap().tracked);
}

pub async fn two_imports_of_one_hub_record_each_device_once(db: &TestDatabase) {
    let a = db.open().await;
    let b = db.open().await;
    let t = tenant(&a, "t").await;
    let first = running_import(&a, t).await;
    let second = running_import(&b, t).await;
    let page: Vec<_> = (0..500).map(|n| device(n, "red")).collect();
    let (x, y) = tokio::join!(
        write_retrying(&a, first, t, &page),
        write_retrying(&b, second, t, &page),
    );
    let (x, y) = (breakdown(&x), breakdown(&y));
    assert_eq!(x.created + y.created, 500);
    assert_eq!(x.unchanged + y.unchanged, 500);
    assert_eq!(
        a.asset_count(t, &AssetFilter::default()).await.unwrap(),
        500
    );
    assert_eq!(
        a.event_count(t, &EventFilter::default()).await.unwrap(),
        500
    );
}

/// Two imports that see the same change at once: each plans from what it read, one
/// writes first, and the other finds the rows moved, plans again and finds nothing left
/// to record. One event per device, never two.
pub async fn two_imports_of_one_change_record_it_once(db: &TestDatabase) {
    let a = db.open().await;
    let b = db.open().await;
    let t = tenant(&a, "t").await;
    let setup = running_import(&a, t).await;
    let red: Vec<_> = (0..300).map(|n| device(n, "red")).collect();
    write_retrying(&a, setup, t, &red).await;
    let first = running_import(&a, t).await;
    let second = running_import(&b, t).await;
    let blue: Vec<_> = (0..300).map(|n| device(n, "blue")).collect();
    let (x, y) = tokio::join!(
        write_retrying(&a, first, t, &blue),
        write_retrying(&b, second, t, &blue),
    );
    let (x, y) = (breakdown(&x), breakdown(&y));
    assert_eq!(x.changed + y.changed, 300, "{x:?} {y:?}");
    assert_eq!(x.unchanged + y.unchanged, 300, "{x:?} {y:?}");
    assert_eq!(
        a.event_count(t, &EventFilter::default()).await.unwrap(),
        600,
        "300 NewAsset and 300 Record events"
    );
    let blue_now = AssetFilter {
        attributes: AttributeFilter::equals([("colour", "blue")]),
        ..AssetFilter::default()
    };
    assert_eq!(a.asset_count(t, &blue_now).await.unwrap(), 300);
}

pub async fn a_stopped_import_records_no_event(db: &TestDatabase) {
    let store = db.open().await;
    let t = tenant(&store, "t").await;
    let id = running_import(&store, t).await;
    write_retrying(&store, id, t, &[device(1, "red")]).await;
    let asset = store
        .asset_list(t, &AssetFilter::default(), ALL)
        .await
        .unwrap()
        .items[0]
        .id;
    store.import_cancel(t, id).await.unwrap();
    let ctx = import_context("x");
    assert!(matches!(
        store
            .import_write_page(id, t, &ctx, &[device(1, "blue"), device(2, "red")])
            .await
            .unwrap(),
        PageWrite::Stopped(_)
    ));
    assert!(matches!(
        store
            .import_stop_tracking(id, t, &ctx, &[asset])
            .await
            .unwrap(),
        PageWrite::Stopped(_)
    ));
    assert_eq!(
        store.event_count(t, &EventFilter::default()).await.unwrap(),
        1
    );
    assert!(store.asset_get(t, asset).await.unwrap().unwrap().tracked);
}
