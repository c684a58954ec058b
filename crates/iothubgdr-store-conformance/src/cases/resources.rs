//! Tenants and apps, locations, assets, and paging.

use std::collections::HashSet;

use iothubgdr_store::{
    AssetFilter, AttributeFilter, LocationFilter, NewApp, NewAsset, NewLocation, PageRequest,
    StoreError,
};
use serde_json::json;

use crate::fixtures::tenant;
use crate::TestDatabase;

pub async fn ping_names_the_backend(db: &TestDatabase) {
    let store = db.open().await;
    store.ping().await.expect("ping");
    assert_eq!(store.backend_name(), db.backend());
}

pub async fn apps_share_tenants_by_name_and_reject_duplicate_ids(db: &TestDatabase) {
    let store = db.open().await;
    let a = tenant(&store, "acme").await;
    let b = tenant(&store, "acme").await;
    let c = tenant(&store, "other").await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let app = store.app_list().await.unwrap().remove(0);
    let again = store
        .app_create(NewApp {
            client_id: app.client_id.clone(),
            display_name: "x".into(),
            tenant_name: "acme".into(),
            secret_hash: vec![],
        })
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    assert_eq!(
        store.app_get(&app.client_id).await.unwrap(),
        Some(app.clone())
    );
    assert_eq!(store.app_list().await.unwrap().len(), 3);
    assert!(store.app_delete(&app.client_id).await.unwrap());
    assert!(!store.app_delete(&app.client_id).await.unwrap());
    assert_eq!(store.app_get(&app.client_id).await.unwrap(), None);
    assert_eq!(store.app_list().await.unwrap().len(), 2);
}

pub async fn locations_are_per_tenant_filtered_and_paged(db: &TestDatabase) {
    let store = db.open().await;
    let mine = tenant(&store, "mine").await;
    let theirs = tenant(&store, "theirs").await;
    for n in 0..7 {
        let mut attributes = serde_json::Map::new();
        attributes.insert(
            "site".into(),
            json!(if n % 2 == 0 { "even" } else { "odd" }),
        );
        attributes.insert("n".into(), json!(n));
        store
            .location_create(
                mine,
                NewLocation {
                    display_name: format!("loc-{n}"),
                    description: String::new(),
                    latitude: Some(1.5),
                    longitude: None,
                    attributes,
                },
            )
            .await
            .unwrap();
    }
    let page = store
        .location_list(
            mine,
            &LocationFilter::default(),
            PageRequest {
                page_size: 3,
                before_seq: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.items[0].display_name, "loc-6", "newest first");
    assert!(store
        .location_get(theirs, page.items[0].id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .location_get(mine, page.items[0].id)
            .await
            .unwrap()
            .unwrap()
            .latitude,
        Some(1.5)
    );
    let next = store
        .location_list(
            mine,
            &LocationFilter::default(),
            PageRequest {
                page_size: 3,
                before_seq: page.next_before_seq,
            },
        )
        .await
        .unwrap();
    assert_eq!(next.items[0].display_name, "loc-3");
    let even = LocationFilter {
        display_name: None,
        attributes: AttributeFilter::equals([("site", "even")]),
    };
    assert_eq!(store.location_count(mine, &even).await.unwrap(), 4);
    assert_eq!(store.location_count(theirs, &even).await.unwrap(), 0);
    let listed = store
        .location_list(
            mine,
            &even,
            PageRequest {
                page_size: 10,
                before_seq: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 4);
    assert_eq!(listed.next_before_seq, None);
    let named = LocationFilter {
        display_name: Some("loc-3".into()),
        attributes: AttributeFilter::default(),
    };
    assert_eq!(store.location_count(mine, &named).await.unwrap(), 1);
    // Only string attributes match: `n` is a number.
    let numeric = LocationFilter {
        display_name: None,
        attributes: AttributeFilter::equals([("n", "3")]),
    };
    assert_eq!(store.location_count(mine, &numeric).await.unwrap(), 0);
}

pub async fn assets_are_per_tenant_filtered_and_paged(db: &TestDatabase) {
    let store = db.open().await;
    let mine = tenant(&store, "mine").await;
    let theirs = tenant(&store, "theirs").await;
    // Attribute names with dots and quotes are matched exactly, never as a JSON path.
    let odd_name = "a.b\"c";
    let mut created = Vec::new();
    for n in 0..5 {
        let mut attributes = serde_json::Map::new();
        attributes.insert(odd_name.into(), json!(format!("v{}", n % 2)));
        attributes.insert("n".into(), json!(n));
        let asset = store
            .asset_create(
                mine,
                NewAsset {
                    behaviours: vec!["RecordEvidence".into()],
                    attributes,
                    principal: Default::default(),
                },
            )
            .await
            .unwrap();
        assert_eq!(asset.tenant_id, mine);
        created.push(asset);
    }
    let got = store.asset_get(mine, created[2].id).await.unwrap().unwrap();
    assert_eq!(got, created[2]);
    assert!(store
        .asset_get(theirs, created[2].id)
        .await
        .unwrap()
        .is_none());
    let filter = AssetFilter {
        attributes: AttributeFilter::equals([(odd_name, "v0")]),
        tracked: None,
    };
    assert_eq!(store.asset_count(mine, &filter).await.unwrap(), 3);
    assert_eq!(store.asset_count(theirs, &filter).await.unwrap(), 0);
    let both = AssetFilter {
        attributes: AttributeFilter::equals([(odd_name, "v0"), ("n", "2")]),
        tracked: None,
    };
    assert_eq!(store.asset_count(mine, &both).await.unwrap(), 0);
    let first = store
        .asset_list(
            mine,
            &filter,
            PageRequest {
                page_size: 2,
                before_seq: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![created[4].id, created[2].id]
    );
    let rest = store
        .asset_list(
            mine,
            &filter,
            PageRequest {
                page_size: 2,
                before_seq: first.next_before_seq,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![created[0].id]
    );
    assert_eq!(rest.next_before_seq, None);
}

pub async fn paging_while_inserting_sees_every_older_row_once(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let mut before = HashSet::new();
    for n in 0..95 {
        let asset = store
            .asset_create(
                tenant_id,
                NewAsset {
                    behaviours: vec![],
                    attributes: serde_json::Map::from_iter([("n".into(), json!(n.to_string()))]),
                    principal: Default::default(),
                },
            )
            .await
            .unwrap();
        before.insert(asset.id);
    }
    let writer = {
        // Another handle, as another process would insert.
        let store = db.open().await;
        tokio::spawn(async move {
            for _ in 0..60 {
                store
                    .asset_create(
                        tenant_id,
                        NewAsset {
                            behaviours: vec![],
                            attributes: Default::default(),
                            principal: Default::default(),
                        },
                    )
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut before_seq = None;
    loop {
        let page = store
            .asset_list(
                tenant_id,
                &AssetFilter::default(),
                PageRequest {
                    page_size: 10,
                    before_seq,
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|asset| asset.id));
        match page.next_before_seq {
            Some(next) => before_seq = Some(next),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no asset twice");
    assert!(
        before.is_subset(&unique),
        "every asset that existed is seen"
    );
}
