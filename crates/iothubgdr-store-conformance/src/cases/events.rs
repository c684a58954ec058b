//! Events recorded by creation and by posts, `at_time`, event filters and paging.

use std::time::Duration;

use iothubgdr_store::history::{
    BEHAVIOUR_ASSET_CREATOR, BEHAVIOUR_BUILTIN, BEHAVIOUR_RECORD_EVIDENCE, OPERATION_NEW_ASSET,
    OPERATION_RECORD, OPERATION_START_TRACKING, OPERATION_STOP_TRACKING,
};
use iothubgdr_store::{
    AssetFilter, AttributeFilter, AttributeMatch, AttributeTest, EventFilter, EventRefused,
    EventWrite, NewAsset, NewEvent, PageRequest, PrincipalFilter,
};
use serde_json::json;
use time::OffsetDateTime;

use super::history::{import_context, of_asset, principal, tick, ALL};
use crate::fixtures::{device, running_import, tenant, write_retrying};
use crate::TestDatabase;

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
        if n == 0 {
            record.principal_declared = Some(principal("inspector"));
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
    // Undeclared, the declared principal is the accepted one, for filters too.
    let declared = |subject: &str| EventFilter {
        principal_declared: PrincipalFilter {
            subject: Some(subject.into()),
            ..PrincipalFilter::default()
        },
        ..EventFilter::default()
    };
    assert_eq!(count(declared("poster")).await, 4);
    assert_eq!(count(declared("inspector")).await, 1);
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
