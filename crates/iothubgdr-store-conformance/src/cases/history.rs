//! Asset history: events recorded by creation, by posts and by imports, tracking, `at_time`,
//! event filters and paging, and concurrent imports of one hub.

use std::time::Duration;

use iothubgdr_store::history::{
    BEHAVIOUR_ASSET_CREATOR, BEHAVIOUR_BUILTIN, BEHAVIOUR_RECORD_EVIDENCE, OPERATION_NEW_ASSET,
    OPERATION_RECORD, OPERATION_START_TRACKING, OPERATION_STOP_TRACKING,
};
use iothubgdr_store::{
    AssetFilter, AssetUpsert, AttributeFilter, AttributeMatch, AttributeTest, EventFilter,
    EventRefused, EventWrite, ImportBreakdown, ImportContext, NewAsset, NewEvent, PageRequest,
    PageWrite, Principal, PrincipalFilter,
};
use serde_json::json;
use time::OffsetDateTime;

use crate::fixtures::{device, running_import, tenant, write_retrying};
use crate::TestDatabase;

const ALL: PageRequest = PageRequest {
    page_size: 1000,
    before_seq: None,
};

fn principal(subject: &str) -> Principal {
    Principal {
        issuer: "iothubgdr".into(),
        subject: subject.into(),
        display_name: format!("app {subject}"),
        email: String::new(),
    }
}

fn import_context(name: &str) -> ImportContext {
    let mut event_attributes = serde_json::Map::new();
    event_attributes.insert("iothub_import".into(), json!(name));
    ImportContext {
        event_attributes,
        principal: principal(name),
    }
}

fn of_asset(asset_id: uuid::Uuid) -> EventFilter {
    EventFilter {
        asset_id: Some(asset_id),
        ..EventFilter::default()
    }
}

fn breakdown(write: &PageWrite) -> ImportBreakdown {
    match write {
        PageWrite::Written { breakdown, .. } => *breakdown,
        PageWrite::Stopped(status) => panic!("write stopped: {status:?}"),
    }
}

/// Device `n` seen in generation `generation` at twin version `version`, connected or not.
fn seen(n: usize, colour: &str, generation: &str, version: i64, connected: bool) -> AssetUpsert {
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
async fn tick() {
    tokio::time::sleep(Duration::from_millis(15)).await;
}

pub async fn creating_an_asset_records_its_new_asset_event(db: &TestDatabase) {
    let store = db.open().await;
    let mine = tenant(&store, "mine").await;
    let theirs = tenant(&store, "theirs").await;
    let mut attributes = serde_json::Map::new();
    attributes.insert("arc_display_name".into(), json!("pump"));
    let asset = store
        .asset_create(
            mine,
            NewAsset {
                behaviours: vec!["RecordEvidence".into()],
                attributes: attributes.clone(),
                principal: principal("creator"),
            },
        )
        .await
        .unwrap();
    assert!(asset.tracked);
    let events = store
        .event_list(mine, &of_asset(asset.id), ALL)
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    let event = &events.items[0];
    assert_eq!(
        (event.behaviour.as_str(), event.operation.as_str()),
        (BEHAVIOUR_ASSET_CREATOR, OPERATION_NEW_ASSET)
    );
    assert_eq!(event.asset_attributes, attributes);
    assert_eq!(event.principal_accepted, principal("creator"));
    assert_eq!(event.principal_declared, principal("creator"));
    assert_eq!(event.timestamp_declared, event.timestamp_accepted);
    assert_eq!(
        store.event_get(mine, asset.id, event.id).await.unwrap(),
        Some(event.clone())
    );
    // Another tenant sees none of it.
    assert_eq!(
        store.event_get(theirs, asset.id, event.id).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .event_count(theirs, &EventFilter::default())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .event_count(mine, &EventFilter::default())
            .await
            .unwrap(),
        1
    );
}

pub async fn posted_events_change_the_asset_or_are_refused(db: &TestDatabase) {
    let store = db.open().await;
    let mine = tenant(&store, "mine").await;
    let theirs = tenant(&store, "theirs").await;
    let mut attributes = serde_json::Map::new();
    attributes.insert("colour".into(), json!("red"));
    attributes.insert("size".into(), json!("L"));
    let asset = store
        .asset_create(
            mine,
            NewAsset {
                behaviours: vec!["RecordEvidence".into()],
                attributes,
                principal: principal("p"),
            },
        )
        .await
        .unwrap();
    let mut record = NewEvent::new(BEHAVIOUR_RECORD_EVIDENCE, OPERATION_RECORD, principal("p"));
    record
        .asset_attributes
        .insert("colour".into(), json!("blue"));
    record
        .event_attributes
        .insert("note".into(), json!("painted"));
    let declared = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    record.timestamp_declared = Some(declared);
    record.principal_declared = Some(principal("painter"));
    // Another tenant's post finds no asset and changes nothing.
    assert_eq!(
        store
            .event_create(theirs, asset.id, record.clone())
            .await
            .unwrap(),
        EventWrite::NoAsset
    );
    let EventWrite::Recorded(event) = store.event_create(mine, asset.id, record).await.unwrap()
    else {
        panic!("not recorded")
    };
    assert_eq!(event.timestamp_declared, declared);
    assert_eq!(event.principal_declared, principal("painter"));
    assert_eq!(event.event_attributes["note"], "painted");
    let now = store.asset_get(mine, asset.id).await.unwrap().unwrap();
    assert_eq!(now.attributes["colour"], "blue");
    assert_eq!(now.attributes["size"], "L");

    let builtin = |operation| NewEvent::new(BEHAVIOUR_BUILTIN, operation, principal("p"));
    assert!(matches!(
        store
            .event_create(mine, asset.id, builtin(OPERATION_START_TRACKING))
            .await
            .unwrap(),
        EventWrite::Refused(EventRefused::AlreadyTracked)
    ));
    assert!(matches!(
        store
            .event_create(mine, asset.id, builtin(OPERATION_STOP_TRACKING))
            .await
            .unwrap(),
        EventWrite::Recorded(_)
    ));
    assert!(
        !store
            .asset_get(mine, asset.id)
            .await
            .unwrap()
            .unwrap()
            .tracked
    );
    assert!(matches!(
        store
            .event_create(mine, asset.id, builtin(OPERATION_STOP_TRACKING))
            .await
            .unwrap(),
        EventWrite::Refused(EventRefused::AlreadyStopped)
    ));
    let mut with_attributes = builtin(OPERATION_START_TRACKING);
    with_attributes
        .asset_attributes
        .insert("colour".into(), json!("green"));
    assert!(matches!(
        store
            .event_create(mine, asset.id, with_attributes)
            .await
            .unwrap(),
        EventWrite::Refused(EventRefused::BuiltinWithAttributes)
    ));
    assert!(matches!(
        store
            .event_create(
                mine,
                asset.id,
                NewEvent::new("Firmware", "Update", principal("p"))
            )
            .await
            .unwrap(),
        EventWrite::Refused(EventRefused::Unsupported(..))
    ));
    assert!(matches!(
        store
            .event_create(mine, asset.id, builtin(OPERATION_START_TRACKING))
            .await
            .unwrap(),
        EventWrite::Recorded(_)
    ));
    // Refused posts left nothing: NewAsset, Record, Stop, Start.
    assert_eq!(
        store.event_count(mine, &of_asset(asset.id)).await.unwrap(),
        4
    );
    let after = store.asset_get(mine, asset.id).await.unwrap().unwrap();
    assert!(after.tracked);
    assert_eq!(after.attributes["colour"], "blue");
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
    page[8].attributes.remove("colour");
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

pub async fn at_time_answers_the_asset_as_its_events_left_it(db: &TestDatabase) {
    let store = db.open().await;
    let t = tenant(&store, "t").await;
    let theirs = tenant(&store, "theirs").await;
    let before = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let first = running_import(&store, t).await;
    write_retrying(&store, first, t, &[device(1, "red")]).await;
    let id = store
        .asset_list(t, &AssetFilter::default(), ALL)
        .await
        .unwrap()
        .items[0]
        .id;
    tick().await;
    let red_time = OffsetDateTime::now_utc();
    tick().await;
    let second = running_import(&store, t).await;
    write_retrying(&store, second, t, &[device(1, "blue")]).await;
    tick().await;
    store
        .import_stop_tracking(second, t, &import_context("x"), &[id])
        .await
        .unwrap();

    assert_eq!(store.asset_get_at(t, id, before).await.unwrap(), None);
    let then = store.asset_get_at(t, id, red_time).await.unwrap().unwrap();
    assert_eq!(then.attributes["colour"], "red");
    assert!(then.tracked);
    assert!(then.at_time <= red_time);
    let now = store
        .asset_get_at(t, id, OffsetDateTime::now_utc() + Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let current = store.asset_get(t, id).await.unwrap().unwrap();
    assert_eq!(now.attributes, current.attributes);
    assert_eq!(now.attributes["colour"], "blue");
    assert!(!now.tracked);
    assert_eq!(
        store
            .asset_get_at(theirs, id, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        None
    );
}

pub async fn events_filter_and_page(db: &TestDatabase) {
    let store = db.open().await;
    let t = tenant(&store, "t").await;
    let import = running_import(&store, t).await;
    let page: Vec<_> = (0..12)
        .map(|n| device(n, if n < 4 { "red" } else { "blue" }))
        .collect();
    write_retrying(&store, import, t, &page).await;
    let ids: Vec<_> = store
        .asset_list(t, &AssetFilter::default(), ALL)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.id)
        .collect();
    tick().await;
    let middle = OffsetDateTime::now_utc();
    tick().await;
    for (n, id) in ids.iter().take(5).enumerate() {
        let mut record = NewEvent::new(
            BEHAVIOUR_RECORD_EVIDENCE,
            OPERATION_RECORD,
            principal("poster"),
        );
        record
            .event_attributes
            .insert("n".into(), json!(n.to_string()));
        if n % 2 == 0 {
            record.asset_attributes.insert("colour".into(), json!(""));
        }
        assert!(matches!(
            store.event_create(t, *id, record).await.unwrap(),
            EventWrite::Recorded(_)
        ));
    }
    let count = |filter: EventFilter| {
        let store = store.clone();
        async move { store.event_count(t, &filter).await.unwrap() }
    };
    assert_eq!(count(EventFilter::default()).await, 17);
    assert_eq!(
        count(EventFilter {
            behaviour: Some(BEHAVIOUR_RECORD_EVIDENCE.into()),
            ..EventFilter::default()
        })
        .await,
        5
    );
    assert_eq!(
        count(EventFilter {
            accepted_since: Some(middle),
            ..EventFilter::default()
        })
        .await,
        5
    );
    assert_eq!(
        count(EventFilter {
            accepted_before: Some(middle),
            ..EventFilter::default()
        })
        .await,
        12
    );
    assert_eq!(
        count(EventFilter {
            principal_accepted: PrincipalFilter {
                subject: Some("poster".into()),
                ..PrincipalFilter::default()
            },
            ..EventFilter::default()
        })
        .await,
        5
    );
    assert_eq!(
        count(EventFilter {
            event_attributes: AttributeFilter::equals([("n", "3")]),
            ..EventFilter::default()
        })
        .await,
        1
    );
    let test = |name: &str, test| {
        AttributeFilter(vec![AttributeMatch {
            name: name.into(),
            test,
        }])
    };
    // `colour` was set to "" by three posts: "not set" for the wildcards.
    assert_eq!(
        count(EventFilter {
            asset_attributes: test("colour", AttributeTest::Absent),
            ..EventFilter::default()
        })
        .await,
        5
    );
    assert_eq!(
        count(EventFilter {
            asset_attributes: test("colour", AttributeTest::Present),
            ..EventFilter::default()
        })
        .await,
        12
    );
    let assets = |filter: AttributeFilter| {
        let store = store.clone();
        async move {
            store
                .asset_count(
                    t,
                    &AssetFilter {
                        attributes: filter,
                        tracked: None,
                    },
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(assets(test("colour", AttributeTest::Absent)).await, 3);
    assert_eq!(assets(test("colour", AttributeTest::Present)).await, 9);
    assert_eq!(assets(test("nothing", AttributeTest::Absent)).await, 12);

    // Pages newest first, each event once.
    let mut seen = Vec::new();
    let mut request = PageRequest {
        page_size: 4,
        before_seq: None,
    };
    loop {
        let page = store
            .event_list(t, &EventFilter::default(), request)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|e| e.seq));
        match page.next_before_seq {
            Some(before) => request.before_seq = Some(before),
            None => break,
        }
    }
    assert_eq!(seen.len(), 17);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
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
