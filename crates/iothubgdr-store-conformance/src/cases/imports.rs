//! Imports on one handle: admission, claims, page writes, cancel, finish, delete.

use iothubgdr_store::{
    Admission, AssetFilter, AttributeFilter, ImportLimits, ImportOutcome, ImportStatus, LimitScope,
    NewImport, PageRequest, PageWrite,
};
use uuid::Uuid;

use crate::fixtures::{
    context, device, imported, new_import, pending_import, running_import, tenant,
};
use crate::TestDatabase;

pub async fn import_pages_upsert_and_count(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let first = running_import(&store, tenant_id).await;
    let page: Vec<_> = (0..2500).map(|n| device(n, "red")).collect();
    let written = store
        .import_write_page(first, tenant_id, &context(), &page)
        .await
        .unwrap();
    assert_eq!(imported(&written), Some(2500));
    let all = AssetFilter::default();
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
        .import_write_page(second, tenant_id, &context(), &page)
        .await
        .unwrap();
    assert_eq!(store.asset_count(tenant_id, &all).await.unwrap(), 2500);
    let blue = AssetFilter {
        attributes: AttributeFilter::equals([("colour", "blue")]),
        tracked: None,
    };
    assert_eq!(store.asset_count(tenant_id, &blue).await.unwrap(), 10);
    let after = store
        .asset_get(tenant_id, before.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.seq, before.seq, "an update keeps the asset's place");
    assert_eq!(after.id, before.id);
    assert_eq!(after.created_at, before.created_at);

    store.import_set_total(second, 2500).await.unwrap();
    let done = store
        .import_finish(second, ImportOutcome::Finished)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, ImportStatus::Finished);
    assert_eq!(done.number_assets_imported, 2500);
    assert_eq!(done.number_devices_total, Some(2500));
    assert!(done.finished_at.is_some());
    // Another tenant's assets with the same keys are separate.
    let other = tenant(&store, "other").await;
    let third = running_import(&store, other).await;
    store
        .import_write_page(third, other, &context(), &page[..5])
        .await
        .unwrap();
    assert_eq!(store.asset_count(other, &all).await.unwrap(), 5);
    assert_eq!(store.asset_count(tenant_id, &all).await.unwrap(), 2500);
    // A page written under the wrong tenant is refused and writes nothing.
    assert!(matches!(
        store
            .import_write_page(third, tenant_id, &context(), &page[..5])
            .await
            .unwrap(),
        PageWrite::Stopped(_)
    ));
    // An empty page only checks the import.
    assert_eq!(
        imported(
            &store
                .import_write_page(third, other, &context(), &[])
                .await
                .unwrap()
        ),
        Some(5)
    );
}

pub async fn a_page_with_duplicate_keys_keeps_the_last_and_counts_each_key_once(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let id = running_import(&store, tenant_id).await;
    // Keys out of order, one listed three times: the last occurrence wins.
    let page = vec![
        device(3, "red"),
        device(1, "red"),
        device(3, "green"),
        device(2, "red"),
        device(3, "blue"),
    ];
    assert_eq!(
        imported(
            &store
                .import_write_page(id, tenant_id, &context(), &page)
                .await
                .unwrap()
        ),
        Some(3)
    );
    let all = AssetFilter::default();
    assert_eq!(store.asset_count(tenant_id, &all).await.unwrap(), 3);
    let blue = AssetFilter {
        attributes: AttributeFilter::equals([("colour", "blue")]),
        tracked: None,
    };
    let listed = store
        .asset_list(
            tenant_id,
            &blue,
            PageRequest {
                page_size: 10,
                before_seq: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].attributes["arc_display_name"], "device-3");
}

pub async fn cancelled_import_writes_nothing_more(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let id = running_import(&store, tenant_id).await;
    store
        .import_write_page(id, tenant_id, &context(), &[device(1, "red")])
        .await
        .unwrap();
    let cancelled = store.import_cancel(tenant_id, id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let refused = store
        .import_write_page(id, tenant_id, &context(), &[device(2, "red")])
        .await
        .unwrap();
    assert_eq!(refused, PageWrite::Stopped(ImportStatus::Cancelled));
    assert_eq!(
        store
            .asset_count(tenant_id, &AssetFilter::default())
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
    // A failure outcome keeps its message.
    let failing = running_import(&store, tenant_id).await;
    let failed = store
        .import_finish(failing, ImportOutcome::Failed("hub went away".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, ImportStatus::Failed);
    assert_eq!(failed.error_message.as_deref(), Some("hub went away"));
    assert_eq!(
        store
            .import_finish(Uuid::new_v4(), ImportOutcome::Cancelled)
            .await
            .unwrap(),
        None
    );
}

pub async fn pending_import_cancelled_before_claim_never_starts(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let worker = Uuid::new_v4();
    let mut new = new_import(tenant_id, worker);
    new.arc_home_location_identity = Some("locations/x".into());
    new.hub_host = None;
    let id = new.id;
    let Admission::Accepted(created) = store
        .import_create(new, ImportLimits::UNLIMITED)
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(created.status, ImportStatus::Pending);
    assert_eq!(created.worker_id, Some(worker));
    assert_eq!(
        created.arc_home_location_identity.as_deref(),
        Some("locations/x")
    );
    store.import_cancel(tenant_id, id).await.unwrap();
    assert!(store
        .imports_claim(worker, 10, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.import_status(id).await.unwrap(),
        Some(ImportStatus::Cancelled)
    );
    assert_eq!(store.import_status(Uuid::new_v4()).await.unwrap(), None);
}

pub async fn failed_on_create_delete_hides_and_list_pages(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let Admission::Accepted(failed) = store
        .import_create(
            NewImport {
                id: Uuid::new_v4(),
                tenant_id,
                display_name: "bad".into(),
                arc_home_location_identity: None,
                hub_host: None,
                worker_id: Uuid::new_v4(),
                failed_with: Some("invalid secret provided".into()),
            },
            ImportLimits::UNLIMITED,
        )
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(failed.status, ImportStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("invalid secret provided")
    );
    assert!(failed.finished_at.is_some());
    let running = running_import(&store, tenant_id).await;
    store.import_set_total(running, 42).await.unwrap();
    // Refused twins (over IoT Hub's limits) add up, and start at zero.
    assert_eq!(list_first_refused(&store, tenant_id).await, 0);
    store.import_add_refused(running, 3).await.unwrap();
    store.import_add_refused(running, 4).await.unwrap();
    assert_eq!(list_first_refused(&store, tenant_id).await, 7);
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
    let rest = store
        .import_list(
            tenant_id,
            PageRequest {
                page_size: 1,
                before_seq: list.next_before_seq,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items[0].id, failed.id);
    assert_eq!(rest.next_before_seq, None);
    assert_eq!(store.import_count(tenant_id).await.unwrap(), 2);
    assert!(store.import_delete(tenant_id, running).await.unwrap());
    assert!(!store.import_delete(tenant_id, running).await.unwrap());
    assert!(store
        .import_get(tenant_id, running)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.import_count(tenant_id).await.unwrap(), 1);
    // A deleted job keeps running and writing.
    let written = store
        .import_write_page(running, tenant_id, &context(), &[device(1, "red")])
        .await
        .unwrap();
    assert_eq!(imported(&written), Some(1));
}

pub async fn admission_bounds_unfinished_imports_per_tenant_and_in_total(db: &TestDatabase) {
    let store = db.open().await;
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let worker = Uuid::new_v4();
    let limits = ImportLimits {
        per_tenant: 2,
        total: 3,
    };
    let mut accepted = Vec::new();
    for _ in 0..2 {
        match store
            .import_create(new_import(a, worker), limits)
            .await
            .unwrap()
        {
            Admission::Accepted(import) => accepted.push(import.id),
            refused => panic!("{refused:?}"),
        }
    }
    let refused = new_import(a, worker);
    let refused_id = refused.id;
    assert_eq!(
        store.import_create(refused, limits).await.unwrap(),
        Admission::Refused {
            scope: LimitScope::Tenant,
            limit: 2
        }
    );
    assert_eq!(
        store.import_status(refused_id).await.unwrap(),
        None,
        "nothing recorded"
    );
    // An import failed at once is done: always recorded, counted against nothing.
    let mut failed = new_import(a, worker);
    failed.failed_with = Some("invalid secret provided".into());
    assert!(matches!(
        store.import_create(failed, limits).await.unwrap(),
        Admission::Accepted(_)
    ));
    assert!(matches!(
        store
            .import_create(new_import(b, worker), limits)
            .await
            .unwrap(),
        Admission::Accepted(_)
    ));
    assert_eq!(
        store
            .import_create(new_import(b, worker), limits)
            .await
            .unwrap(),
        Admission::Refused {
            scope: LimitScope::Total,
            limit: 3
        }
    );
    // A running import still counts; a done one frees its slot.
    assert_eq!(
        store.imports_claim(worker, 10, 1).await.unwrap(),
        vec![accepted[0]]
    );
    assert!(matches!(
        store
            .import_create(new_import(b, worker), limits)
            .await
            .unwrap(),
        Admission::Refused { .. }
    ));
    store
        .import_finish(accepted[0], ImportOutcome::Finished)
        .await
        .unwrap();
    assert!(matches!(
        store
            .import_create(new_import(a, worker), limits)
            .await
            .unwrap(),
        Admission::Accepted(_)
    ));
}

pub async fn claims_keep_the_tenant_limit_and_start_the_oldest_first(db: &TestDatabase) {
    let store = db.open().await;
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let here = Uuid::new_v4();
    let there = Uuid::new_v4();
    // Tenant a: the oldest pending import is held by another worker.
    let a_there = pending_import(&store, a, there).await;
    let a_here_1 = pending_import(&store, a, here).await;
    let a_here_2 = pending_import(&store, a, here).await;
    let b_here = pending_import(&store, b, here).await;
    // Limit 2: a's second-oldest may start beside the (still pending) oldest, a's third
    // waits; another tenant is never held up by a.
    assert_eq!(
        store.imports_claim(here, 2, 10).await.unwrap(),
        vec![a_here_1, b_here]
    );
    assert_eq!(
        store.import_status(a_here_2).await.unwrap(),
        Some(ImportStatus::Pending)
    );
    assert!(store.imports_claim(here, 2, 10).await.unwrap().is_empty());
    // The other worker claims its own; now a has two running and the third still waits.
    assert_eq!(
        store.imports_claim(there, 2, 10).await.unwrap(),
        vec![a_there]
    );
    assert!(store.imports_claim(here, 2, 10).await.unwrap().is_empty());
    // A slot freed anywhere lets the waiting import start.
    store.import_cancel(a, a_there).await.unwrap();
    assert_eq!(
        store.imports_claim(here, 2, 10).await.unwrap(),
        vec![a_here_2]
    );
    // `max` bounds one claim, oldest first.
    let c = tenant(&store, "c").await;
    let c1 = pending_import(&store, c, here).await;
    let _c2 = pending_import(&store, c, here).await;
    assert_eq!(store.imports_claim(here, 5, 1).await.unwrap(), vec![c1]);
    assert!(store.imports_claim(here, 5, 0).await.unwrap().is_empty());
    for id in [a_here_1, b_here, a_here_2, c1] {
        assert_eq!(
            store.import_status(id).await.unwrap(),
            Some(ImportStatus::InProgress)
        );
    }
}

pub async fn done_among_names_only_done_imports(db: &TestDatabase) {
    let store = db.open().await;
    let t = tenant(&store, "t").await;
    let running = running_import(&store, t).await;
    let pending = pending_import(&store, t, Uuid::new_v4()).await;
    let cancelled = running_import(&store, t).await;
    store.import_cancel(t, cancelled).await.unwrap();
    let finished = running_import(&store, t).await;
    store
        .import_finish(finished, ImportOutcome::Finished)
        .await
        .unwrap();
    let mut done = store
        .imports_done_among(&[running, pending, cancelled, finished, Uuid::new_v4()])
        .await
        .unwrap();
    done.sort();
    let mut expected = vec![cancelled, finished];
    expected.sort();
    assert_eq!(done, expected);
    assert!(store.imports_done_among(&[]).await.unwrap().is_empty());
    // Many ids in one call (a replica with a long queue).
    let many: Vec<Uuid> = (0..1200)
        .map(|_| Uuid::new_v4())
        .chain([cancelled])
        .collect();
    assert_eq!(
        store.imports_done_among(&many).await.unwrap(),
        vec![cancelled]
    );
}

/// `number_devices_refused` of the tenant's newest import.
async fn list_first_refused(
    store: &std::sync::Arc<dyn iothubgdr_store::Store>,
    tenant_id: uuid::Uuid,
) -> u64 {
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
    list.items[0].number_devices_refused
}
