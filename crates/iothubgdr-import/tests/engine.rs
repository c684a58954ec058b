//! The engine against the real stores and the real IoT Hub emulator, on every backend:
//! each case runs on a SQLite file and on a PostgreSQL database (when
//! IOTHUBGDR_TEST_POSTGRES_URL names a server; otherwise it says it was skipped). The
//! HTTP-level end-to-end tests live in crates/iothubgdr/tests; these pin the engine's own
//! rules: scheduling and limits across engines, exactly-once assets, cancel through
//! another engine, leases, shutdown and reaping.

mod backends;
use backends::{new_tenant, started_engine, wait_done};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};
use iothubgdr_import::{
    Engine, EngineConfig, ImportRequest, LimitScope, SubmitError, MSG_INVALID_SECRET, MSG_RESTARTED,
};
use iothubgdr_store::{AssetFilter, Import, ImportLimits, ImportStatus, PageRequest, Store};
use iothubgdr_store_conformance::TestDatabase;
use uuid::Uuid;
use zeroize::Zeroizing;

on_every_backend!(
    concurrent_imports_of_one_hub_leave_one_asset_per_device,
    per_tenant_limit_keeps_later_imports_pending_first_come_first_served,
    invalid_secret_is_failed_at_once_and_never_stored,
    shutdown_fails_running_and_queued_imports_with_the_restart_message,
    a_new_engine_fails_imports_left_by_a_silent_worker,
    two_engines_share_the_tenant_limit_and_its_order,
    a_cancel_through_another_engine_stops_the_job,
    two_engines_importing_one_hub_leave_one_asset_per_device,
    the_queue_bound_refuses_and_records_nothing,
    a_long_import_outlives_many_leases,
    an_import_outlives_several_leases_while_another_engine_reaps,
    cancel_stops_a_running_import_and_another_tenant_cannot,
    the_worker_pool_bounds_imports_of_all_tenants_together,
);

async fn emulator(devices: u64, faults: Faults) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

fn slow(latency_ms: u64) -> Faults {
    Faults {
        latency: Duration::from_millis(latency_ms),
        ..Faults::default()
    }
}

fn config(emulator: &RunningEmulator, per_tenant: usize) -> EngineConfig {
    EngineConfig {
        worker_id: Uuid::new_v4(),
        per_tenant,
        client: ClientOptions {
            extra_root_ca_pem: Some(emulator.ca_cert_pem().into_bytes()),
            resolve: vec![(emulator.host_name(), emulator.addr())],
            retry_budget: Duration::from_secs(5),
            ..ClientOptions::default()
        },
        lease: Duration::from_secs(2),
        cancel_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    }
}

async fn engine_with(store: Arc<dyn Store>, config: EngineConfig) -> Engine {
    let (engine, _registry) = started_engine(store, config).await;
    engine
}

async fn engine(db: &TestDatabase, emulator: &RunningEmulator, per_tenant: usize) -> Engine {
    engine_with(db.open().await, config(emulator, per_tenant)).await
}

fn request(secret: String) -> ImportRequest {
    ImportRequest {
        display_name: "test".into(),
        secret: Zeroizing::new(secret),
        arc_home_location_identity: None,
    }
}

async fn asset_count(store: &Arc<dyn Store>, tenant: Uuid) -> u64 {
    store
        .asset_count(tenant, &AssetFilter::default())
        .await
        .expect("count")
}

async fn imports_of(store: &Arc<dyn Store>, tenant: Uuid) -> Vec<Import> {
    store
        .import_list(
            tenant,
            PageRequest {
                page_size: 100,
                before_seq: None,
            },
        )
        .await
        .expect("list")
        .items
}

async fn concurrent_imports_of_one_hub_leave_one_asset_per_device(db: TestDatabase) {
    let hub = emulator(1_000, Faults::default()).await;
    let engine = engine(&db, &hub, 2).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let a = engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit a");
    let b = engine
        .submit(tenant, request(hub.eventhub_connection_string()))
        .await
        .expect("submit b");
    let a = wait_done(&store, tenant, a.id).await;
    let b = wait_done(&store, tenant, b.id).await;
    assert_eq!(a.status, ImportStatus::Finished, "{a:?}");
    assert_eq!(b.status, ImportStatus::Finished, "{b:?}");
    assert_eq!(a.number_assets_imported, 1_000);
    assert_eq!(b.number_assets_imported, 1_000);
    assert_eq!(a.number_devices_total, Some(1_000));
    assert_eq!(asset_count(&store, tenant).await, 1_000);
    // Another tenant importing the same hub gets assets of its own.
    let other = new_tenant(&store).await;
    let c = engine
        .submit(other, request(hub.iothub_connection_string()))
        .await
        .expect("submit c");
    assert_eq!(
        wait_done(&store, other, c.id).await.number_assets_imported,
        1_000
    );
    assert_eq!(asset_count(&store, other).await, 1_000);
    assert_eq!(asset_count(&store, tenant).await, 1_000);
}

async fn per_tenant_limit_keeps_later_imports_pending_first_come_first_served(db: TestDatabase) {
    let hub = emulator(300, slow(40)).await;
    let engine = engine(&db, &hub, 1).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let import = engine
            .submit(tenant, request(hub.iothub_connection_string()))
            .await
            .expect("submit");
        assert_eq!(import.status, ImportStatus::Pending);
        ids.push(import.id);
    }
    // A tenant at its limit does not hold up another tenant.
    let other = new_tenant(&store).await;
    let other_import = engine
        .submit(other, request(hub.iothub_connection_string()))
        .await
        .expect("submit other");
    let mut max_running = 0;
    loop {
        // One query, so the statuses are one consistent snapshot.
        let imports = imports_of(&store, tenant).await;
        let running = imports
            .iter()
            .filter(|import| import.status == ImportStatus::InProgress)
            .count();
        max_running = max_running.max(running);
        if imports.iter().all(|import| import.status.is_done()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        max_running, 1,
        "one tenant ran more imports at once than its limit"
    );
    let mut finished = Vec::new();
    for id in &ids {
        let import = wait_done(&store, tenant, *id).await;
        assert_eq!(import.status, ImportStatus::Finished);
        assert_eq!(import.number_assets_imported, 300);
        finished.push(import.finished_at.expect("finished_at"));
    }
    assert!(
        finished.windows(2).all(|w| w[0] <= w[1]),
        "not first come first served: {finished:?}"
    );
    let other_import = wait_done(&store, other, other_import.id).await;
    assert!(other_import.finished_at.expect("finished") <= finished[2]);
}

async fn invalid_secret_is_failed_at_once_and_never_stored(db: TestDatabase) {
    let hub = emulator(0, Faults::default()).await;
    let engine = engine(&db, &hub, 2).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let secret = "HostName=x.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=not base64!";
    let import = engine
        .submit(tenant, request(secret.into()))
        .await
        .expect("submit");
    assert_eq!(import.status, ImportStatus::Failed);
    assert_eq!(import.error_message.as_deref(), Some(MSG_INVALID_SECRET));
    assert!(import.finished_at.is_some());
    assert_eq!(import.hub_host, None);
}

async fn shutdown_fails_running_and_queued_imports_with_the_restart_message(db: TestDatabase) {
    let hub = emulator(2_000, slow(100)).await;
    let engine = engine(&db, &hub, 1).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let running = engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    let queued = engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    for _ in 0..100 {
        let import = store
            .import_get(tenant, running.id)
            .await
            .expect("get")
            .expect("exists");
        if import.number_assets_imported > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;
    for id in [running.id, queued.id] {
        let import = store
            .import_get(tenant, id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(import.status, ImportStatus::Failed, "{import:?}");
        assert_eq!(import.error_message.as_deref(), Some(MSG_RESTARTED));
    }
    let running = store
        .import_get(tenant, running.id)
        .await
        .expect("get")
        .expect("exists");
    assert!(running.number_assets_imported < 2_000);
    assert_eq!(
        running.number_assets_imported,
        asset_count(&store, tenant).await
    );
    assert!(matches!(
        engine
            .submit(tenant, request(hub.iothub_connection_string()))
            .await,
        Err(SubmitError::ShuttingDown)
    ));
}

async fn a_new_engine_fails_imports_left_by_a_silent_worker(db: TestDatabase) {
    let hub = emulator(0, Faults::default()).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    // One worker never held a lease; another's lease ran out by the database's clock.
    let never_seen = Uuid::new_v4();
    let expired = Uuid::new_v4();
    store
        .worker_heartbeat(expired, Duration::from_millis(1))
        .await
        .expect("heartbeat");
    let mut orphans = Vec::new();
    for worker_id in [never_seen, expired] {
        let admission = store
            .import_create(
                iothubgdr_store::NewImport {
                    id: Uuid::new_v4(),
                    tenant_id: tenant,
                    display_name: "left behind".into(),
                    arc_home_location_identity: None,
                    hub_host: Some("h.azure-devices.net".into()),
                    worker_id,
                    failed_with: None,
                },
                ImportLimits::UNLIMITED,
            )
            .await
            .expect("create");
        let iothubgdr_store::Admission::Accepted(import) = admission else {
            panic!("refused")
        };
        orphans.push(import.id);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _engine = engine(&db, &hub, 2).await;
    for id in orphans {
        let import = store
            .import_get(tenant, id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(import.status, ImportStatus::Failed);
        assert_eq!(import.error_message.as_deref(), Some(MSG_RESTARTED));
    }
    assert_eq!(imports_of(&store, tenant).await.len(), 2);
}

async fn two_engines_share_the_tenant_limit_and_its_order(db: TestDatabase) {
    let hub = emulator(300, slow(40)).await;
    let a = engine(&db, &hub, 2).await;
    let b = engine(&db, &hub, 2).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let engine = if n % 2 == 0 { &a } else { &b };
        let import = engine
            .submit(tenant, request(hub.iothub_connection_string()))
            .await
            .expect("submit");
        ids.push(import.id);
    }
    let mut max_running = 0;
    let mut started_order = Vec::new();
    loop {
        let imports = imports_of(&store, tenant).await;
        let running: Vec<Uuid> = imports
            .iter()
            .filter(|import| import.status == ImportStatus::InProgress)
            .map(|import| import.id)
            .collect();
        max_running = max_running.max(running.len());
        for id in imports
            .iter()
            .filter(|import| import.status != ImportStatus::Pending)
            .map(|import| import.id)
        {
            if !started_order.contains(&id) {
                started_order.push(id);
            }
        }
        if imports.iter().all(|import| import.status.is_done()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(max_running, 2, "the limit is counted over both engines");
    for id in &ids {
        let import = wait_done(&store, tenant, *id).await;
        assert_eq!(import.status, ImportStatus::Finished, "{import:?}");
        assert_eq!(import.number_assets_imported, 300);
    }
    // Started in the order accepted, whichever engine held them: with two running at
    // most, import n starts only after import n - 2 (neighbours may swap within one poll
    // of this loop).
    let position = |id: &Uuid| started_order.iter().position(|s| s == id).unwrap();
    for (n, id) in ids.iter().enumerate().skip(2) {
        assert!(
            position(id) > position(&ids[n - 2]),
            "import {n} started before older ones: {started_order:?} vs {ids:?}"
        );
    }
}

async fn a_cancel_through_another_engine_stops_the_job(db: TestDatabase) {
    let hub = emulator(5_000, slow(50)).await;
    let owner = engine(&db, &hub, 2).await;
    let other = engine(&db, &hub, 2).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let import = owner
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    loop {
        let now = store.import_get(tenant, import.id).await.unwrap().unwrap();
        if now.number_assets_imported > 0 {
            break;
        }
        assert!(!now.status.is_done(), "{now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled_at = Instant::now();
    let cancelled = other
        .cancel(tenant, import.id)
        .await
        .expect("cancel")
        .expect("found");
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    // The owner stops writing within its poll: the count settles and equals the assets.
    let mut last = cancelled.number_assets_imported;
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_millis(600) {
        let now = store.import_get(tenant, import.id).await.unwrap().unwrap();
        if now.number_assets_imported != last {
            last = now.number_assets_imported;
            stable_since = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cancelled_at.elapsed() < Duration::from_secs(3));
    assert_eq!(
        last, cancelled.number_assets_imported,
        "written after the cancel"
    );
    assert_eq!(asset_count(&store, tenant).await, last);
    assert!(last < 5_000);
    let after = store.import_get(tenant, import.id).await.unwrap().unwrap();
    assert_eq!(after.status, ImportStatus::Cancelled);
}

async fn two_engines_importing_one_hub_leave_one_asset_per_device(db: TestDatabase) {
    let hub = emulator(2_000, Faults::default()).await;
    let a = engine(&db, &hub, 2).await;
    let b = engine(&db, &hub, 2).await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let (x, y) = tokio::join!(
        a.submit(tenant, request(hub.iothub_connection_string())),
        b.submit(tenant, request(hub.eventhub_connection_string())),
    );
    for id in [x.expect("a").id, y.expect("b").id] {
        let import = wait_done(&store, tenant, id).await;
        assert_eq!(import.status, ImportStatus::Finished, "{import:?}");
        assert_eq!(import.number_assets_imported, 2_000);
    }
    assert_eq!(asset_count(&store, tenant).await, 2_000);
    let mut names = HashSet::new();
    let mut before_seq = None;
    loop {
        let page = store
            .asset_list(
                tenant,
                &AssetFilter::default(),
                PageRequest {
                    page_size: 500,
                    before_seq,
                },
            )
            .await
            .unwrap();
        for asset in &page.items {
            assert!(names.insert(asset.attributes["iothub_device_id"].clone()));
        }
        match page.next_before_seq {
            Some(next) => before_seq = Some(next),
            None => break,
        }
    }
    assert_eq!(names.len(), 2_000);
}

async fn the_queue_bound_refuses_and_records_nothing(db: TestDatabase) {
    let hub = emulator(500, slow(200)).await;
    let mut small = config(&hub, 1);
    small.queued_per_tenant = 2;
    small.queued_total = 3;
    let a = engine_with(db.open().await, small.clone()).await;
    let b = engine_with(
        db.open().await,
        EngineConfig {
            worker_id: Uuid::new_v4(),
            ..small
        },
    )
    .await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let other = new_tenant(&store).await;
    a.submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("first");
    b.submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("second, on the other engine");
    match a
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
    {
        Err(SubmitError::LimitReached {
            scope: LimitScope::Tenant,
            limit: 2,
        }) => {}
        other => panic!("expected the tenant bound: {other:?}"),
    }
    b.submit(other, request(hub.iothub_connection_string()))
        .await
        .expect("another tenant");
    match b
        .submit(other, request(hub.iothub_connection_string()))
        .await
    {
        Err(SubmitError::LimitReached {
            scope: LimitScope::Total,
            limit: 3,
        }) => {}
        other => panic!("expected the total bound: {other:?}"),
    }
    // Refusals recorded nothing.
    assert_eq!(imports_of(&store, tenant).await.len(), 2);
    assert_eq!(imports_of(&store, other).await.len(), 1);
    // A secret that is no connection string still gets its failed operation.
    let failed = a
        .submit(tenant, request("not a connection string".into()))
        .await
        .expect("failed at once is recorded");
    assert_eq!(failed.status, ImportStatus::Failed);
}

async fn a_long_import_outlives_many_leases(db: TestDatabase) {
    // 30 pages of 100 ms each, under a 1 s lease renewed by the owner while another
    // engine reaps every third of a second.
    let hub = emulator(3_000, slow(100)).await;
    let mut short = config(&hub, 2);
    short.lease = Duration::from_secs(1);
    let owner = engine_with(db.open().await, short.clone()).await;
    let _reaper = engine_with(
        db.open().await,
        EngineConfig {
            worker_id: Uuid::new_v4(),
            ..short
        },
    )
    .await;
    let store = db.open().await;
    let tenant = new_tenant(&store).await;
    let import = owner
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    let import = wait_done(&store, tenant, import.id).await;
    assert_eq!(import.status, ImportStatus::Finished, "{import:?}");
    assert_eq!(import.number_assets_imported, 3_000);
}

async fn an_import_outlives_several_leases_while_another_engine_reaps(db: TestDatabase) {
    // 11 queries of 150 ms: about five leases of 300 ms. The owner's heartbeats (every
    // lease/3) keep the import alive, and a second engine on the same store reaps every
    // 100 ms: an owner whose heartbeats stopped would see its import failed as orphaned.
    let hub = emulator(
        1_000,
        Faults {
            latency: Duration::from_millis(150),
            ..Faults::default()
        },
    )
    .await;
    let store = db.open().await;
    let lease = Duration::from_millis(300);
    let mut registry = prometheus_client::registry::Registry::default();
    let owner = Engine::new(
        db.open().await,
        EngineConfig {
            lease,
            ..config(&hub, 2)
        },
        &mut registry,
    );
    owner.start().await.expect("start");
    let reaper = Engine::new(
        db.open().await,
        EngineConfig {
            lease,
            ..config(&hub, 2)
        },
        &mut prometheus_client::registry::Registry::default(),
    );
    reaper.start().await.expect("start");
    let tenant = new_tenant(&store).await;
    let started = std::time::Instant::now();
    let import = owner
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    let done = wait_done(&store, tenant, import.id).await;
    assert!(
        started.elapsed() > lease * 4,
        "the import did not outlast several leases: {:?}",
        started.elapsed()
    );
    assert_eq!(done.status, ImportStatus::Finished, "{done:?}");
    assert_eq!(done.number_assets_imported, 1_000);
    assert_eq!(asset_count(&store, tenant).await, 1_000);
    owner.shutdown().await;
    reaper.shutdown().await;
}

async fn cancel_stops_a_running_import_and_another_tenant_cannot(db: TestDatabase) {
    let hub = emulator(
        1_000,
        Faults {
            latency: Duration::from_millis(100),
            ..Faults::default()
        },
    )
    .await;
    let store = db.open().await;
    let engine = engine(&db, &hub, 2).await;
    let tenant = new_tenant(&store).await;
    let other = new_tenant(&store).await;
    let import = engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    // Running, with a page written.
    loop {
        let now = store.import_get(tenant, import.id).await.unwrap().unwrap();
        if now.number_assets_imported > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another tenant's cancel finds nothing and changes nothing.
    assert!(engine
        .cancel(other, import.id)
        .await
        .expect("cancel")
        .is_none());
    let still = store.import_get(tenant, import.id).await.unwrap().unwrap();
    assert_eq!(still.status, ImportStatus::InProgress);

    let cancelled = engine
        .cancel(tenant, import.id)
        .await
        .expect("cancel")
        .expect("the tenant's import");
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    // The job stops: after a few more query times, nothing more was written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = store.import_get(tenant, import.id).await.unwrap().unwrap();
    assert_eq!(later.status, ImportStatus::Cancelled);
    assert!(later.number_assets_imported < 1_000, "{later:?}");
    assert_eq!(
        later.number_assets_imported,
        asset_count(&store, tenant).await
    );
    engine.shutdown().await;
}

async fn the_worker_pool_bounds_imports_of_all_tenants_together(db: TestDatabase) {
    let hub = emulator(
        300,
        Faults {
            latency: Duration::from_millis(40),
            ..Faults::default()
        },
    )
    .await;
    let store = db.open().await;
    let workers = 2;
    let mut registry = prometheus_client::registry::Registry::default();
    // One tenant allowed more than the pool: only the pool bounds it.
    let config = EngineConfig {
        workers,
        ..config(&hub, 4)
    };
    let worker_id = config.worker_id;
    let engine = Engine::new(db.open().await, config, &mut registry);
    assert_eq!(engine.worker_id(), worker_id);
    engine.start().await.expect("start");
    let tenant = new_tenant(&store).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let import = engine
            .submit(tenant, request(hub.iothub_connection_string()))
            .await
            .expect("submit");
        ids.push(import.id);
    }
    let mut max_running = 0;
    loop {
        // One query, so the statuses are one consistent snapshot.
        let page = store
            .import_list(
                tenant,
                PageRequest {
                    page_size: 10,
                    before_seq: None,
                },
            )
            .await
            .expect("list");
        let running = page
            .items
            .iter()
            .filter(|import| import.status == ImportStatus::InProgress)
            .count();
        max_running = max_running.max(running);
        if page.items.iter().all(|import| import.status.is_done()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(max_running, workers, "imports running at once");
    for id in &ids {
        let import = wait_done(&store, tenant, *id).await;
        assert_eq!(import.status, ImportStatus::Finished);
        assert_eq!(import.number_assets_imported, 300);
    }
    engine.shutdown().await;
}
