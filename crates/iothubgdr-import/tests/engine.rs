//! The engine against the real SQLite store and the real IoT Hub emulator. The HTTP-level
//! end-to-end tests live in crates/iothubgdr/tests; these pin the engine's own rules:
//! scheduling, exactly-once assets, shutdown and reaping.

use std::sync::Arc;
use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};
use iothubgdr_import::{Engine, EngineConfig, ImportRequest, MSG_INVALID_SECRET, MSG_RESTARTED};
use iothubgdr_store::{
    AttributeFilter, Import, ImportStatus, NewApp, NewImport, PageRequest, Store,
};
use iothubgdr_store_sqlite::SqliteStore;
use uuid::Uuid;
use zeroize::Zeroizing;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    emulator: RunningEmulator,
}

async fn fixture(devices: u64, faults: Faults) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.expect("store"));
    let emulator = iothub_emulator::start(EmulatorConfig {
        devices,
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    Fixture {
        _dir: dir,
        store,
        emulator,
    }
}

fn config(emulator: &RunningEmulator, per_tenant: usize) -> EngineConfig {
    EngineConfig {
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

async fn engine(f: &Fixture, per_tenant: usize) -> Engine {
    let mut registry = prometheus_client::registry::Registry::default();
    let engine = Engine::new(
        f.store.clone(),
        config(&f.emulator, per_tenant),
        &mut registry,
    );
    engine.start().await.expect("start");
    engine
}

fn request(secret: String) -> ImportRequest {
    ImportRequest {
        display_name: "test".into(),
        secret: Zeroizing::new(secret),
        arc_home_location_identity: None,
    }
}

async fn wait_done(store: &Arc<dyn Store>, tenant: Uuid, id: Uuid) -> Import {
    for _ in 0..600 {
        let import = store
            .import_get(tenant, id)
            .await
            .expect("get")
            .expect("exists");
        if import.status.is_done() {
            return import;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("import {id} did not finish in 30 s");
}

/// A real tenant (imports and assets belong to one), made the way `apps create` makes it.
async fn new_tenant(store: &Arc<dyn Store>) -> Uuid {
    let name = Uuid::new_v4().to_string();
    store
        .app_create(NewApp {
            client_id: Uuid::new_v4().to_string(),
            display_name: "engine test".into(),
            tenant_name: name,
            secret_hash: vec![0; 32],
        })
        .await
        .expect("app")
        .tenant
        .id
}

async fn asset_count(store: &Arc<dyn Store>, tenant: Uuid) -> u64 {
    store
        .asset_count(tenant, &AttributeFilter::default())
        .await
        .expect("count")
}

#[tokio::test]
async fn concurrent_imports_of_one_hub_leave_one_asset_per_device() {
    let f = fixture(1_000, Faults::default()).await;
    let engine = engine(&f, 2).await;
    let tenant = new_tenant(&f.store).await;
    let a = engine
        .submit(tenant, request(f.emulator.iothub_connection_string()))
        .await
        .expect("submit a");
    let b = engine
        .submit(tenant, request(f.emulator.eventhub_connection_string()))
        .await
        .expect("submit b");
    let a = wait_done(&f.store, tenant, a.id).await;
    let b = wait_done(&f.store, tenant, b.id).await;
    assert_eq!(a.status, ImportStatus::Finished, "{a:?}");
    assert_eq!(b.status, ImportStatus::Finished, "{b:?}");
    assert_eq!(a.number_assets_imported, 1_000);
    assert_eq!(b.number_assets_imported, 1_000);
    assert_eq!(a.number_devices_total, Some(1_000));
    assert_eq!(asset_count(&f.store, tenant).await, 1_000);
    // Another tenant importing the same hub gets assets of its own.
    let other = new_tenant(&f.store).await;
    let c = engine
        .submit(other, request(f.emulator.iothub_connection_string()))
        .await
        .expect("submit c");
    assert_eq!(
        wait_done(&f.store, other, c.id)
            .await
            .number_assets_imported,
        1_000
    );
    assert_eq!(asset_count(&f.store, other).await, 1_000);
    assert_eq!(asset_count(&f.store, tenant).await, 1_000);
}

#[tokio::test]
async fn per_tenant_limit_keeps_later_imports_pending_first_come_first_served() {
    let f = fixture(
        300,
        Faults {
            latency: Duration::from_millis(40),
            ..Faults::default()
        },
    )
    .await;
    let engine = engine(&f, 1).await;
    let tenant = new_tenant(&f.store).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let import = engine
            .submit(tenant, request(f.emulator.iothub_connection_string()))
            .await
            .expect("submit");
        assert_eq!(import.status, ImportStatus::Pending);
        ids.push(import.id);
    }
    // A tenant at its limit does not hold up another tenant.
    let other = new_tenant(&f.store).await;
    let other_import = engine
        .submit(other, request(f.emulator.iothub_connection_string()))
        .await
        .expect("submit other");
    let mut max_running = 0;
    loop {
        // One query, so the statuses are one consistent snapshot.
        let page = f
            .store
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
        let all_done = page.items.iter().all(|import| import.status.is_done());
        max_running = max_running.max(running);
        if all_done {
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
        let import = wait_done(&f.store, tenant, *id).await;
        assert_eq!(import.status, ImportStatus::Finished);
        assert_eq!(import.number_assets_imported, 300);
        finished.push(import.finished_at.expect("finished_at"));
    }
    assert!(
        finished.windows(2).all(|w| w[0] <= w[1]),
        "not first come first served: {finished:?}"
    );
    let other_import = wait_done(&f.store, other, other_import.id).await;
    assert!(other_import.finished_at.expect("finished") <= finished[2]);
}

#[tokio::test]
async fn invalid_secret_is_failed_at_once_and_never_stored() {
    let f = fixture(0, Faults::default()).await;
    let engine = engine(&f, 2).await;
    let tenant = new_tenant(&f.store).await;
    let secret = "HostName=x.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=not base64!";
    let import = engine
        .submit(tenant, request(secret.into()))
        .await
        .expect("submit");
    assert_eq!(import.status, ImportStatus::Failed);
    assert_eq!(import.error_message.as_deref(), Some(MSG_INVALID_SECRET));
    assert!(import.finished_at.is_some());
}

#[tokio::test]
async fn shutdown_fails_running_and_queued_imports_with_the_restart_message() {
    let f = fixture(
        2_000,
        Faults {
            latency: Duration::from_millis(100),
            ..Faults::default()
        },
    )
    .await;
    let engine = engine(&f, 1).await;
    let tenant = new_tenant(&f.store).await;
    let running = engine
        .submit(tenant, request(f.emulator.iothub_connection_string()))
        .await
        .expect("submit");
    let queued = engine
        .submit(tenant, request(f.emulator.iothub_connection_string()))
        .await
        .expect("submit");
    for _ in 0..100 {
        let import = f
            .store
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
        let import = f
            .store
            .import_get(tenant, id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(import.status, ImportStatus::Failed, "{import:?}");
        assert_eq!(import.error_message.as_deref(), Some(MSG_RESTARTED));
    }
    let running = f
        .store
        .import_get(tenant, running.id)
        .await
        .expect("get")
        .expect("exists");
    assert!(running.number_assets_imported < 2_000);
    assert_eq!(
        running.number_assets_imported,
        asset_count(&f.store, tenant).await
    );
    assert!(engine
        .submit(tenant, request(f.emulator.iothub_connection_string()))
        .await
        .is_err());
}

#[tokio::test]
async fn a_new_engine_fails_imports_left_by_a_silent_worker() {
    let f = fixture(0, Faults::default()).await;
    let tenant = new_tenant(&f.store).await;
    let gone_worker = Uuid::new_v4();
    let orphan = f
        .store
        .import_create(NewImport {
            id: Uuid::new_v4(),
            tenant_id: tenant,
            display_name: "left behind".into(),
            arc_home_location_identity: None,
            hub_host: Some("h.azure-devices.net".into()),
            worker_id: gone_worker,
            failed_with: None,
        })
        .await
        .expect("create");
    let _engine = engine(&f, 2).await;
    let import = f
        .store
        .import_get(tenant, orphan.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(import.status, ImportStatus::Failed);
    assert_eq!(import.error_message.as_deref(), Some(MSG_RESTARTED));
    let page = f
        .store
        .import_list(
            tenant,
            PageRequest {
                page_size: 10,
                before_seq: None,
            },
        )
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
}
