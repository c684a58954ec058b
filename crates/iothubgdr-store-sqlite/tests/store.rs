//! The SQLite store against real database files.

use std::collections::HashSet;
use std::sync::Arc;

use iothubgdr_store::{
    AssetUpsert, AttributeFilter, ImportOutcome, ImportStatus, LocationFilter, NewApp, NewAsset,
    NewImport, NewLocation, PageRequest, PageWrite, Store, StoreError,
};
use iothubgdr_store_sqlite::SqliteStore;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    // A nested path also checks that the parent directory is created.
    let url = format!("sqlite://{}/nested/dir/test.db", dir.path().display());
    SqliteStore::connect(&url).await.expect("connect")
}

async fn tenant(store: &SqliteStore, name: &str) -> Uuid {
    store
        .app_create(NewApp {
            client_id: Uuid::new_v4().to_string(),
            display_name: format!("app of {name}"),
            tenant_name: name.to_owned(),
            secret_hash: vec![1; 32],
        })
        .await
        .expect("app")
        .tenant
        .id
}

fn device(n: usize, colour: &str) -> AssetUpsert {
    let mut attributes = serde_json::Map::new();
    attributes.insert("arc_display_name".into(), json!(format!("device-{n}")));
    attributes.insert("colour".into(), json!(colour));
    AssetUpsert {
        source_key: format!("hub.example/device-{n}"),
        behaviours: vec!["RecordEvidence".into()],
        attributes,
    }
}

async fn running_import(store: &SqliteStore, tenant_id: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    store
        .import_create(NewImport {
            id,
            tenant_id,
            display_name: "hub".into(),
            arc_home_location_identity: None,
            hub_host: Some("hub.example".into()),
            worker_id: Uuid::new_v4(),
            failed_with: None,
        })
        .await
        .expect("create");
    assert!(store.import_start(id).await.expect("start"));
    id
}

#[tokio::test]
async fn reopening_keeps_data_and_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let first_key = {
        let store = open(&dir).await;
        store.ping().await.unwrap();
        tenant(&store, "t").await;
        store.signing_key_get_or_insert(&[7; 32]).await.unwrap()
    };
    assert_eq!(first_key, vec![7; 32]);
    let store = open(&dir).await;
    assert_eq!(
        store.signing_key_get_or_insert(&[9; 32]).await.unwrap(),
        first_key
    );
    assert_eq!(store.app_list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn apps_share_tenants_by_name_and_reject_duplicate_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
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
    assert!(matches!(again, Err(StoreError::Conflict(_))));
    assert_eq!(
        store.app_get(&app.client_id).await.unwrap(),
        Some(app.clone())
    );
    assert!(store.app_delete(&app.client_id).await.unwrap());
    assert!(!store.app_delete(&app.client_id).await.unwrap());
    assert_eq!(store.app_get(&app.client_id).await.unwrap(), None);
}

#[tokio::test]
async fn locations_are_per_tenant_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
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
    let even = LocationFilter {
        display_name: None,
        attributes: AttributeFilter(vec![("site".into(), "even".into())]),
    };
    assert_eq!(store.location_count(mine, &even).await.unwrap(), 4);
    assert_eq!(store.location_count(theirs, &even).await.unwrap(), 0);
    let named = LocationFilter {
        display_name: Some("loc-3".into()),
        attributes: AttributeFilter::default(),
    };
    assert_eq!(store.location_count(mine, &named).await.unwrap(), 1);
    // Only string attributes match: `n` is a number.
    let numeric = LocationFilter {
        display_name: None,
        attributes: AttributeFilter(vec![("n".into(), "3".into())]),
    };
    assert_eq!(store.location_count(mine, &numeric).await.unwrap(), 0);
}

#[tokio::test]
async fn paging_while_inserting_sees_every_older_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir).await);
    let tenant_id = tenant(&store, "t").await;
    let mut before = HashSet::new();
    for n in 0..95 {
        let asset = store
            .asset_create(
                tenant_id,
                NewAsset {
                    behaviours: vec![],
                    attributes: serde_json::Map::from_iter([("n".into(), json!(n.to_string()))]),
                },
            )
            .await
            .unwrap();
        before.insert(asset.id);
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                store
                    .asset_create(
                        tenant_id,
                        NewAsset {
                            behaviours: vec![],
                            attributes: Default::default(),
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
                &AttributeFilter::default(),
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

#[tokio::test]
async fn import_pages_upsert_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let tenant_id = tenant(&store, "t").await;
    let first = running_import(&store, tenant_id).await;
    let page: Vec<_> = (0..2500).map(|n| device(n, "red")).collect();
    let written = store
        .import_write_page(first, tenant_id, &page)
        .await
        .unwrap();
    assert_eq!(
        written,
        PageWrite::Written {
            number_assets_imported: 2500
        }
    );
    let all = AttributeFilter::default();
    assert_eq!(store.asset_count(tenant_id, &all).await.unwrap(), 2500);

    // The same devices again, some changed: updated in place, never duplicated.
    let before = store
        .asset_list(
            tenant_id,
            &all,
            PageRequest {
                page_size: 1,
                before_seq: None,
            },
        )
        .await
        .unwrap()
        .items
        .remove(0);
    let second = running_import(&store, tenant_id).await;
    let page: Vec<_> = (0..2500)
        .map(|n| device(n, if n < 10 { "blue" } else { "red" }))
        .collect();
    store
        .import_write_page(second, tenant_id, &page)
        .await
        .unwrap();
    assert_eq!(store.asset_count(tenant_id, &all).await.unwrap(), 2500);
    let blue = AttributeFilter(vec![("colour".into(), "blue".into())]);
    assert_eq!(store.asset_count(tenant_id, &blue).await.unwrap(), 10);
    let after = store
        .asset_get(tenant_id, before.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.seq, before.seq, "an update keeps the asset's place");
    assert_eq!(after.id, before.id);

    let done = store
        .import_finish(second, ImportOutcome::Finished)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, ImportStatus::Finished);
    assert_eq!(done.number_assets_imported, 2500);
    assert!(done.finished_at.is_some());
    // Another tenant's assets with the same keys are separate.
    let other = tenant(&store, "other").await;
    let third = running_import(&store, other).await;
    store
        .import_write_page(third, other, &page[..5])
        .await
        .unwrap();
    assert_eq!(store.asset_count(other, &all).await.unwrap(), 5);
    assert_eq!(store.asset_count(tenant_id, &all).await.unwrap(), 2500);
}

#[tokio::test]
async fn cancelled_import_writes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let tenant_id = tenant(&store, "t").await;
    let id = running_import(&store, tenant_id).await;
    store
        .import_write_page(id, tenant_id, &[device(1, "red")])
        .await
        .unwrap();
    let cancelled = store.import_cancel(tenant_id, id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let refused = store
        .import_write_page(id, tenant_id, &[device(2, "red")])
        .await
        .unwrap();
    assert_eq!(refused, PageWrite::Stopped(ImportStatus::Cancelled));
    assert_eq!(
        store
            .asset_count(tenant_id, &AttributeFilter::default())
            .await
            .unwrap(),
        1
    );
    // Finishing or cancelling again changes nothing.
    let again = store
        .import_finish(id, ImportOutcome::Finished)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.status, ImportStatus::Cancelled);
    assert_eq!(again.number_assets_imported, 1);
    assert_eq!(
        store.import_cancel(tenant_id, id).await.unwrap().unwrap(),
        again
    );
    // Another tenant cannot see or cancel it.
    let other = tenant(&store, "other").await;
    assert!(store.import_cancel(other, id).await.unwrap().is_none());
    assert!(store.import_get(other, id).await.unwrap().is_none());
}

#[tokio::test]
async fn pending_import_cancelled_before_start_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let tenant_id = tenant(&store, "t").await;
    let id = Uuid::new_v4();
    let created = store
        .import_create(NewImport {
            id,
            tenant_id,
            display_name: "hub".into(),
            arc_home_location_identity: Some("locations/x".into()),
            hub_host: None,
            worker_id: Uuid::new_v4(),
            failed_with: None,
        })
        .await
        .unwrap();
    assert_eq!(created.status, ImportStatus::Pending);
    store.import_cancel(tenant_id, id).await.unwrap();
    assert!(!store.import_start(id).await.unwrap());
    assert_eq!(
        store.import_status(id).await.unwrap(),
        Some(ImportStatus::Cancelled)
    );
}

#[tokio::test]
async fn failed_on_create_delete_hides_and_list_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let tenant_id = tenant(&store, "t").await;
    let failed = store
        .import_create(NewImport {
            id: Uuid::new_v4(),
            tenant_id,
            display_name: "bad".into(),
            arc_home_location_identity: None,
            hub_host: None,
            worker_id: Uuid::new_v4(),
            failed_with: Some("invalid secret provided".into()),
        })
        .await
        .unwrap();
    assert_eq!(failed.status, ImportStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("invalid secret provided")
    );
    let running = running_import(&store, tenant_id).await;
    store.import_set_total(running, 42).await.unwrap();
    let list = store
        .import_list(
            tenant_id,
            PageRequest {
                page_size: 1,
                before_seq: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(list.items[0].id, running);
    assert_eq!(list.items[0].number_devices_total, Some(42));
    assert!(list.next_before_seq.is_some());
    assert!(store.import_delete(tenant_id, running).await.unwrap());
    assert!(store
        .import_get(tenant_id, running)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.import_count(tenant_id).await.unwrap(), 1);
    // A deleted job keeps running and writing.
    let written = store
        .import_write_page(running, tenant_id, &[device(1, "red")])
        .await
        .unwrap();
    assert_eq!(
        written,
        PageWrite::Written {
            number_assets_imported: 1
        }
    );
}

#[tokio::test]
async fn orphaned_imports_are_failed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let tenant_id = tenant(&store, "t").await;
    let live_worker = Uuid::new_v4();
    let dead_worker = Uuid::new_v4();
    let mut ids = Vec::new();
    for worker_id in [live_worker, dead_worker] {
        let id = Uuid::new_v4();
        store
            .import_create(NewImport {
                id,
                tenant_id,
                display_name: "hub".into(),
                arc_home_location_identity: None,
                hub_host: None,
                worker_id,
                failed_with: None,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    store.worker_heartbeat(live_worker).await.unwrap();
    let stale_before = OffsetDateTime::now_utc() - time::Duration::seconds(30);
    let reaped = store
        .imports_fail_orphaned(stale_before, "worker lost")
        .await
        .unwrap();
    assert_eq!(reaped, vec![ids[1]]);
    let dead = store.import_get(tenant_id, ids[1]).await.unwrap().unwrap();
    assert_eq!(dead.status, ImportStatus::Failed);
    assert_eq!(dead.error_message.as_deref(), Some("worker lost"));
    assert_eq!(
        store.import_status(ids[0]).await.unwrap(),
        Some(ImportStatus::Pending)
    );
    assert_eq!(
        store
            .imports_fail_for_worker(live_worker, "shutting down")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.import_status(ids[0]).await.unwrap(),
        Some(ImportStatus::Failed)
    );
    assert_eq!(
        store
            .imports_fail_for_worker(live_worker, "again")
            .await
            .unwrap(),
        0
    );
}
