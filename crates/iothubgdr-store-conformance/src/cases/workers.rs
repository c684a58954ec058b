//! Worker leases, reaping and retirement.

use std::time::Duration;

use iothubgdr_store::ImportStatus;
use uuid::Uuid;

use crate::fixtures::{pending_import, tenant};
use crate::TestDatabase;

/// A worker that reaps in the cases below and runs no import of its own.
const REAPER: Uuid = Uuid::from_u128(0x5EA9);

pub async fn orphaned_imports_are_failed_and_live_ones_kept(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let live_worker = Uuid::new_v4();
    let dead_worker = Uuid::new_v4();
    let short_worker = Uuid::new_v4();
    let live = pending_import(&store, tenant_id, live_worker).await;
    let dead = pending_import(&store, tenant_id, dead_worker).await;
    let short = pending_import(&store, tenant_id, short_worker).await;
    store
        .worker_heartbeat(live_worker, Duration::from_secs(30))
        .await
        .unwrap();
    // A worker whose lease is over by the database's clock is as good as gone.
    store
        .worker_heartbeat(short_worker, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut reaped = store
        .imports_fail_orphaned(REAPER, "worker lost")
        .await
        .unwrap();
    reaped.sort();
    let mut expected = vec![dead, short];
    expected.sort();
    assert_eq!(reaped, expected);
    let failed = store.import_get(tenant_id, dead).await.unwrap().unwrap();
    assert_eq!(failed.status, ImportStatus::Failed);
    assert_eq!(failed.error_message.as_deref(), Some("worker lost"));
    assert!(failed.finished_at.is_some());
    assert_eq!(
        store.import_status(live).await.unwrap(),
        Some(ImportStatus::Pending)
    );
    // Reaping again finds nothing; a renewed lease keeps the live worker's import.
    store
        .worker_heartbeat(live_worker, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(store
        .imports_fail_orphaned(REAPER, "again")
        .await
        .unwrap()
        .is_empty());
    // The expired worker's row is gone: a late heartbeat makes it a new, live worker
    // whose failed imports stay failed.
    store
        .worker_heartbeat(short_worker, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        store.import_status(short).await.unwrap(),
        Some(ImportStatus::Failed)
    );
}

pub async fn retiring_a_worker_fails_its_imports_and_removes_it(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let worker = Uuid::new_v4();
    let other = Uuid::new_v4();
    store
        .worker_heartbeat(worker, Duration::from_secs(30))
        .await
        .unwrap();
    store
        .worker_heartbeat(other, Duration::from_secs(30))
        .await
        .unwrap();
    let pending = pending_import(&store, tenant_id, worker).await;
    let running = pending_import(&store, tenant_id, worker).await;
    assert_eq!(
        store.imports_claim(worker, 10, 1).await.unwrap(),
        vec![pending]
    );
    let others = pending_import(&store, tenant_id, other).await;
    assert_eq!(
        store.worker_retire(worker, "shutting down").await.unwrap(),
        2
    );
    for id in [pending, running] {
        let import = store.import_get(tenant_id, id).await.unwrap().unwrap();
        assert_eq!(import.status, ImportStatus::Failed);
        assert_eq!(import.error_message.as_deref(), Some("shutting down"));
    }
    assert_eq!(store.worker_retire(worker, "again").await.unwrap(), 0);
    // Another worker's import is untouched.
    assert!(store
        .imports_fail_orphaned(REAPER, "reaped")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.import_status(others).await.unwrap(),
        Some(ImportStatus::Pending)
    );
    // The retired worker holds no lease any more: anything still filed under it is reaped.
    let late = pending_import(&store, tenant_id, worker).await;
    assert_eq!(
        store.imports_fail_orphaned(REAPER, "reaped").await.unwrap(),
        vec![late]
    );
}

pub async fn a_reaper_keeps_its_own_imports_whatever_its_lease_says(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let me = Uuid::new_v4();
    let mine = pending_import(&store, tenant_id, me).await;
    assert_eq!(store.imports_claim(me, 10, 1).await.unwrap(), vec![mine]);
    // My heartbeat came late: my lease is over by the database's clock.
    store
        .worker_heartbeat(me, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // I am alive, reaping: my running import stays.
    assert!(store
        .imports_fail_orphaned(me, "reaped")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.import_status(mine).await.unwrap(),
        Some(ImportStatus::InProgress)
    );
    // Another replica cannot tell a late heartbeat from a death: it fails it.
    assert_eq!(
        store.imports_fail_orphaned(REAPER, "reaped").await.unwrap(),
        vec![mine]
    );
}
