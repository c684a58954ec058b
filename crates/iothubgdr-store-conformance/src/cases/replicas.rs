//! Two store handles on one database, as two server processes use it.

use std::collections::HashSet;
use std::sync::Arc;

use iothubgdr_store::{
    Admission, AssetFilter, ImportLimits, ImportStatus, PageRequest, PageWrite, Store,
};
use uuid::Uuid;

use crate::fixtures::{
    context, device, imported, new_import, pending_import, running_import, tenant, write_retrying,
};
use crate::TestDatabase;

/// Writes devices `0..count` in pages of `page`, in the order `keys` gives.
async fn write_all(
    store: Arc<dyn Store>,
    id: Uuid,
    tenant_id: Uuid,
    keys: Vec<usize>,
    page: usize,
    colour: &'static str,
) -> PageWrite {
    let mut last = PageWrite::Written {
        number_assets_imported: 0,
        breakdown: Default::default(),
    };
    for chunk in keys.chunks(page) {
        let assets: Vec<_> = chunk.iter().map(|&n| device(n, colour)).collect();
        last = write_retrying(&store, id, tenant_id, &assets).await;
        if matches!(last, PageWrite::Stopped(_)) {
            break;
        }
    }
    last
}

pub async fn two_handles_write_the_same_keys_at_once(db: &TestDatabase) {
    let a = db.open().await;
    let b = db.open().await;
    let tenant_id = tenant(&a, "t").await;
    let first = running_import(&a, tenant_id).await;
    let second = running_import(&b, tenant_id).await;
    // The same 3,000 keys, one writer forwards and one backwards, so their pages overlap
    // in opposite orders: each page's keys are still locked in one order.
    let forwards: Vec<usize> = (0..3000).collect();
    let backwards: Vec<usize> = (0..3000).rev().collect();
    let (x, y) = tokio::join!(
        tokio::spawn(write_all(a.clone(), first, tenant_id, forwards, 250, "red")),
        tokio::spawn(write_all(
            b.clone(),
            second,
            tenant_id,
            backwards,
            250,
            "blue"
        )),
    );
    assert_eq!(imported(&x.unwrap()), Some(3000));
    assert_eq!(imported(&y.unwrap()), Some(3000));
    let all = AssetFilter::default();
    assert_eq!(a.asset_count(tenant_id, &all).await.unwrap(), 3000);
    assert_eq!(b.asset_count(tenant_id, &all).await.unwrap(), 3000);
}

pub async fn two_handles_write_duplicate_keys_in_one_page(db: &TestDatabase) {
    let a = db.open().await;
    let b = db.open().await;
    let tenant_id = tenant(&a, "t").await;
    let first = running_import(&a, tenant_id).await;
    let second = running_import(&b, tenant_id).await;
    // Every page names each of its devices twice and the pages of both writers overlap.
    let page = |colour| -> Vec<_> {
        (0..200)
            .chain((0..200).rev())
            .map(|n| device(n, colour))
            .collect()
    };
    let (pa, pb) = (page("red"), page("blue"));
    let (x, y) = tokio::join!(
        write_retrying(&a, first, tenant_id, &pa),
        write_retrying(&b, second, tenant_id, &pb),
    );
    assert_eq!(imported(&x), Some(200));
    assert_eq!(imported(&y), Some(200));
    assert_eq!(
        a.asset_count(tenant_id, &AssetFilter::default())
            .await
            .unwrap(),
        200
    );
}

pub async fn a_cancel_racing_page_writes_freezes_an_exact_count(db: &TestDatabase) {
    let writer = db.open().await;
    let canceller = db.open().await;
    let tenant_id = tenant(&writer, "t").await;
    let id = running_import(&writer, tenant_id).await;
    let writing = tokio::spawn(write_all(
        writer.clone(),
        id,
        tenant_id,
        (0..20_000).collect(),
        100,
        "red",
    ));
    // Cancel once some pages are in. A writer that is done while the count is still
    // under 300 counted its pages wrong: a failure, not a wait that never ends (mutation
    // runs met it as a hang: a store that adds 0 or 1 per page).
    loop {
        // Taken before the count is read: if the writer was done, that count is its last.
        let finished = writing.is_finished();
        let import = canceller.import_get(tenant_id, id).await.unwrap().unwrap();
        if import.number_assets_imported >= 300 {
            break;
        }
        assert!(
            !finished,
            "every page was written and the import counts {}",
            import.number_assets_imported
        );
        tokio::task::yield_now().await;
    }
    let cancelled = canceller
        .import_cancel(tenant_id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    assert_eq!(
        writing.await.unwrap(),
        PageWrite::Stopped(ImportStatus::Cancelled),
        "the writer was stopped by the cancel"
    );
    let after = writer.import_get(tenant_id, id).await.unwrap().unwrap();
    assert_eq!(after.status, ImportStatus::Cancelled);
    // The count frozen at the cancel is exactly the assets written, and stays so.
    assert_eq!(
        after.number_assets_imported,
        cancelled.number_assets_imported
    );
    assert!(after.number_assets_imported < 20_000);
    assert_eq!(
        writer
            .asset_count(tenant_id, &AssetFilter::default())
            .await
            .unwrap(),
        after.number_assets_imported
    );
}

pub async fn keys_and_apps_created_at_once_agree(db: &TestDatabase) {
    let handles = [db.open().await, db.open().await];
    let mut tasks = Vec::new();
    for n in 0..8u8 {
        let store = handles[usize::from(n % 2)].clone();
        tasks.push(tokio::spawn(async move {
            // Every process starting on a fresh database offers its own first key.
            store
                .signing_key_add(&format!("k{n}"), &[n; 32], true)
                .await
                .expect("signing key");
            let key = store
                .paging_key_get_or_insert(&[n; 32])
                .await
                .expect("paging key");
            let app = store
                .app_create(iothubgdr_store::NewApp {
                    client_id: Uuid::new_v4().to_string(),
                    display_name: format!("app {n}"),
                    tenant_name: "shared".into(),
                    secret_hash: vec![n; 32],
                })
                .await
                .expect("app");
            (key, app.tenant.id)
        }));
    }
    let mut keys = HashSet::new();
    let mut tenants = HashSet::new();
    for task in tasks {
        let (key, tenant_id) = task.await.unwrap();
        keys.insert(key);
        tenants.insert(tenant_id);
    }
    assert_eq!(keys.len(), 1, "every handle got the one stored paging key");
    let signing = handles[1].signing_keys().await.unwrap();
    assert_eq!(signing.len(), 1, "one first signing key, whoever raced");
    assert_eq!(tenants.len(), 1, "one tenant per name");
    assert_eq!(handles[0].app_list().await.unwrap().len(), 8);
}

pub async fn claims_on_two_handles_never_exceed_the_tenant_limit(db: &TestDatabase) {
    let a = db.open().await;
    let b = db.open().await;
    let tenant_id = tenant(&a, "t").await;
    let (worker_a, worker_b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut ids = Vec::new();
    for n in 0..12 {
        let worker = if n % 2 == 0 { worker_a } else { worker_b };
        ids.push(pending_import(&a, tenant_id, worker).await);
    }
    // Both replicas claim at once, again and again: never more than 3 run.
    for _round in 0..3 {
        let claims = (0..4).map(|n| {
            let (store, worker) = if n % 2 == 0 {
                (a.clone(), worker_a)
            } else {
                (b.clone(), worker_b)
            };
            tokio::spawn(async move {
                loop {
                    match store.imports_claim(worker, 3, 10).await {
                        Ok(ids) => return ids,
                        Err(err) if err.is_retryable() => tokio::task::yield_now().await,
                        Err(err) => panic!("claim failed: {}", err.detail()),
                    }
                }
            })
        });
        let mut claimed = Vec::new();
        for claim in claims.collect::<Vec<_>>() {
            claimed.extend(claim.await.unwrap());
        }
        let running: Vec<Uuid> = a
            .import_list(
                tenant_id,
                PageRequest {
                    page_size: 100,
                    before_seq: None,
                },
            )
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|import| import.status == ImportStatus::InProgress)
            .map(|import| import.id)
            .collect();
        assert_eq!(running.len(), 3, "exactly the limit runs");
        // The oldest pending imports were the ones started, whichever worker held them.
        let oldest: HashSet<Uuid> = ids[..3].iter().copied().collect();
        assert_eq!(running.iter().copied().collect::<HashSet<_>>(), oldest);
        assert!(claimed.iter().all(|id| oldest.contains(id)));
        for id in running {
            a.import_finish(id, iothubgdr_store::ImportOutcome::Finished)
                .await
                .unwrap();
            ids.retain(|other| *other != id);
        }
    }
}

pub async fn admissions_on_two_handles_share_one_limit(db: &TestDatabase) {
    let a = db.open().await;
    let b = db.open().await;
    let tenant_id = tenant(&a, "t").await;
    let limits = ImportLimits {
        per_tenant: 5,
        total: 1000,
    };
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                loop {
                    match store
                        .import_create(new_import(tenant_id, Uuid::new_v4()), limits)
                        .await
                    {
                        Ok(admission) => return admission,
                        Err(err) if err.is_retryable() => tokio::task::yield_now().await,
                        Err(err) => panic!("create failed: {}", err.detail()),
                    }
                }
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        if let Admission::Accepted(_) = task.await.unwrap() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 5);
    assert_eq!(b.import_count(tenant_id).await.unwrap(), 5);
}

pub async fn another_tenant_cannot_touch_a_running_import(db: &TestDatabase) {
    let owner_side = db.open().await;
    let other_side = db.open().await;
    let owner = tenant(&owner_side, "owner").await;
    let intruder = tenant(&other_side, "intruder").await;
    let id = running_import(&owner_side, owner).await;
    assert_eq!(
        imported(
            &owner_side
                .import_write_page(id, owner, &context(), &[device(1, "red")])
                .await
                .unwrap()
        ),
        Some(1)
    );
    assert!(other_side
        .import_cancel(intruder, id)
        .await
        .unwrap()
        .is_none());
    assert!(other_side.import_get(intruder, id).await.unwrap().is_none());
    assert!(!other_side.import_delete(intruder, id).await.unwrap());
    let listed = other_side
        .import_list(
            intruder,
            PageRequest {
                page_size: 100,
                before_seq: None,
            },
        )
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    assert_eq!(other_side.import_count(intruder).await.unwrap(), 0);
    // The running import is unchanged and keeps writing.
    let import = owner_side.import_get(owner, id).await.unwrap().unwrap();
    assert_eq!(import.status, ImportStatus::InProgress);
    assert_eq!(import.finished_at, None);
    assert_eq!(
        imported(
            &owner_side
                .import_write_page(id, owner, &context(), &[device(2, "red")])
                .await
                .unwrap()
        ),
        Some(2)
    );
}
