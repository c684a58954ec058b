//! Imports that keep a history, at engine level on both backends: a hub large enough to be
//! read in parallel parts, imported again unchanged (nothing written), then with devices
//! gone (stopped once the whole hub was read) and back (tracked again).

mod backends;
use backends::{client_of, import_request, started_engine};

use std::sync::Arc;
use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, RunningEmulator};
use iothubgdr_import::{Engine, EngineConfig};
use iothubgdr_store::{
    AssetFilter, EventFilter, Import, ImportBreakdown, ImportStatus, NewApp, Store,
};
use iothubgdr_store_conformance::TestDatabase;
use uuid::Uuid;

/// Over the size (5,000) from which a hub is read by several readers.
const DEVICES: u64 = 6_000;
const GONE: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_reimports_write_only_what_changed_on_sqlite() {
    if let Some(db) = backends::sqlite_database().await {
        reimports_write_only_what_changed(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_reimports_write_only_what_changed_on_postgres() {
    if let Some(db) = backends::postgres_database().await {
        reimports_write_only_what_changed(db).await;
    }
}

/// The hub `history-hub` with its first `devices` seeded devices: two emulators with the
/// same seed and name hold the same devices, so the smaller one is the hub after some left.
async fn hub(devices: u64) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        hub_name: "history-hub".into(),
        devices,
        ..EmulatorConfig::with_seed(5)
    })
    .await
    .expect("emulator")
}

async fn engine(store: &Arc<dyn Store>, hub: &RunningEmulator) -> Engine {
    let config = EngineConfig {
        client: ClientOptions {
            retry_budget: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            ..client_of(hub)
        },
        readers_per_import: 4,
        lease: Duration::from_secs(5),
        cancel_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let (engine, _registry) = started_engine(store.clone(), config).await;
    engine
}

async fn import(store: &Arc<dyn Store>, hub: &RunningEmulator, tenant: Uuid) -> Import {
    let engine = engine(store, hub).await;
    let import = engine
        .submit(
            tenant,
            import_request("nightly", hub.iothub_connection_string()),
        )
        .await
        .expect("submit");
    for _ in 0..2_400 {
        let now = store
            .import_get(tenant, import.id)
            .await
            .expect("get")
            .expect("exists");
        if now.status.is_done() {
            engine.shutdown().await;
            assert_eq!(now.status, ImportStatus::Finished, "{now:?}");
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the import did not finish in 120 s");
}

async fn events(store: &Arc<dyn Store>, tenant: Uuid) -> u64 {
    store
        .event_count(tenant, &EventFilter::default())
        .await
        .expect("count")
}

async fn reimports_write_only_what_changed(db: TestDatabase) {
    let store = db.open().await;
    let tenant = store
        .app_create(NewApp {
            client_id: Uuid::new_v4().to_string(),
            display_name: "history".into(),
            tenant_name: "history".into(),
            secret_hash: vec![0; 32],
        })
        .await
        .expect("app")
        .tenant
        .id;
    let full = hub(DEVICES).await;

    let first = import(&store, &full, tenant).await;
    assert_eq!(
        first.breakdown,
        ImportBreakdown {
            created: DEVICES,
            ..ImportBreakdown::default()
        }
    );
    assert_eq!(events(&store, tenant).await, DEVICES);

    let again = import(&store, &full, tenant).await;
    assert_eq!(again.number_assets_imported, DEVICES);
    assert_eq!(
        again.breakdown,
        ImportBreakdown {
            unchanged: DEVICES,
            ..ImportBreakdown::default()
        }
    );
    assert_eq!(
        events(&store, tenant).await,
        DEVICES,
        "an unchanged hub writes nothing"
    );

    // The last devices left the hub: stopped, once, after the whole hub was read.
    let smaller = hub(DEVICES - GONE).await;
    let after_leaving = import(&store, &smaller, tenant).await;
    assert_eq!(
        after_leaving.breakdown,
        ImportBreakdown {
            unchanged: DEVICES - GONE,
            stopped_tracking: GONE,
            ..ImportBreakdown::default()
        }
    );
    assert_eq!(events(&store, tenant).await, DEVICES + GONE);
    let tracked = AssetFilter {
        tracked: Some(true),
        ..AssetFilter::default()
    };
    assert_eq!(
        store.asset_count(tenant, &tracked).await.expect("count"),
        DEVICES - GONE
    );

    // They came back.
    let back = import(&store, &full, tenant).await;
    assert_eq!(
        back.breakdown,
        ImportBreakdown {
            changed: GONE,
            unchanged: DEVICES - GONE,
            tracked_again: GONE,
            ..ImportBreakdown::default()
        }
    );
    assert_eq!(events(&store, tenant).await, DEVICES + 2 * GONE);
    assert_eq!(
        store.asset_count(tenant, &tracked).await.expect("count"),
        DEVICES
    );
}
