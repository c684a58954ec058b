//! Large hubs read in parts: the engine against the real SQLite store and the real IoT Hub
//! emulator, with ids over the whole device id alphabet, injected faults, and a quota.

mod backends;
use backends::{import_request, new_tenant, started_engine};

use std::sync::Arc;
use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults, IdStyle, RunningEmulator};
use iothubgdr_import::{Engine, EngineConfig};
use iothubgdr_store::{AssetFilter, Import, ImportStatus, Store};
use iothubgdr_store_sqlite::SqliteStore;
use uuid::Uuid;

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
        id_style: IdStyle::EveryFirstCharacter,
        ..EmulatorConfig::with_seed(11)
    })
    .await
    .expect("emulator");
    Fixture {
        _dir: dir,
        store,
        emulator,
    }
}

async fn engine(f: &Fixture, readers: usize, queries_per_minute: Option<u32>) -> Engine {
    let config = EngineConfig {
        client: ClientOptions {
            extra_root_ca_pem: Some(f.emulator.ca_cert_pem().into_bytes()),
            resolve: vec![(f.emulator.host_name(), f.emulator.addr())],
            retry_budget: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            queries_per_minute,
            ..ClientOptions::default()
        },
        readers_per_import: readers,
        lease: Duration::from_secs(5),
        cancel_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let (engine, _registry) = started_engine(f.store.clone(), config).await;
    engine
}

async fn import_and_wait(f: &Fixture, engine: &Engine, tenant: Uuid) -> Import {
    let import = engine
        .submit(
            tenant,
            import_request("large", f.emulator.iothub_connection_string()),
        )
        .await
        .expect("submit");
    for _ in 0..1_200 {
        let now = f
            .store
            .import_get(tenant, import.id)
            .await
            .expect("get")
            .expect("exists");
        if now.status.is_done() {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the import did not finish in 60 s");
}

/// 25,000 devices whose ids start with every character a device id may start with, read in
/// parallel parts while the hub answers 429s, 500s/503s and drops connections: every device
/// is imported once (the count equals the devices and the assets, which are unique per
/// device id), and the hub was really read in parts.
#[tokio::test]
async fn parallel_parts_import_every_device_exactly_once_under_faults() {
    let f = fixture(
        25_000,
        Faults {
            throttle_every: Some(9),
            retry_after: Duration::ZERO,
            server_error_rate: 0.04,
            drop_rate: 0.03,
            ..Faults::default()
        },
    )
    .await;
    let engine = engine(&f, 6, None).await;
    let tenant = new_tenant(&f.store).await;
    let import = import_and_wait(&f, &engine, tenant).await;
    assert_eq!(import.status, ImportStatus::Finished, "{import:?}");
    assert_eq!(import.number_devices_total, Some(25_000));
    assert_eq!(import.number_assets_imported, 25_000);
    let assets = f
        .store
        .asset_count(tenant, &AssetFilter::default())
        .await
        .expect("count");
    assert_eq!(assets, 25_000);
    let stats = f.emulator.stats();
    assert!(stats.throttled > 0, "{stats:?}");
    assert!(stats.server_errors > 0, "{stats:?}");
    assert!(stats.dropped > 0, "{stats:?}");
    // Read in parts: range queries paged most of the registry.
    assert!(stats.ranged_twins_served >= 25_000 - 100, "{stats:?}");
    engine.shutdown().await;
}

/// A hub with a quota of 60 queries per 6 seconds (600 a minute, scaled down so the test is
/// quick; a 6 s window leaves the 3% pacing margin 180 ms to absorb a loaded machine's
/// scheduling delays) and 300 ms per request, which one reader could never use up: the parts read in
/// parallel under the operator's setting, and the hub never receives more than its quota in
/// any window, nor answers a single 429.
#[tokio::test]
async fn a_partitioned_read_never_sends_more_than_the_quota_in_any_window() {
    let quota = 60usize;
    let window = Duration::from_secs(6);
    let f = fixture(
        6_000,
        Faults {
            queries_per_minute: Some(quota as u32),
            quota_window: window,
            latency: Duration::from_millis(300),
            ..Faults::default()
        },
    )
    .await;
    let per_minute = (quota as u64 * 60 / window.as_secs()) as u32;
    let engine = engine(&f, 8, Some(per_minute)).await;
    let tenant = new_tenant(&f.store).await;
    let started = std::time::Instant::now();
    let import = import_and_wait(&f, &engine, tenant).await;
    let took = started.elapsed();
    assert_eq!(import.status, ImportStatus::Finished, "{import:?}");
    assert_eq!(import.number_assets_imported, 6_000);
    let stats = f.emulator.stats();
    assert_eq!(stats.quota_throttled, 0, "{stats:?}");
    assert!(stats.ranged_twins_served >= 5_900, "{stats:?}");
    let arrivals = f.emulator.query_arrivals();
    let mut busiest = 0;
    for (i, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            .take_while(|at| **at < *start + window)
            .count();
        busiest = busiest.max(in_window);
    }
    assert!(
        busiest <= quota,
        "{busiest} queries in one window of {window:?}"
    );
    // Parallel: one reader at 300 ms per page would need 60 pages × 0.3 s = 18 s.
    let sequential = Duration::from_millis(300) * 60;
    assert!(took < sequential, "{took:?}");
    engine.shutdown().await;
}

/// A 50-device hub keeps the single reader: one count and one page, no planning queries.
#[tokio::test]
async fn a_small_hub_is_read_with_one_query() {
    let f = fixture(50, Faults::default()).await;
    let engine = engine(&f, 8, None).await;
    let tenant = new_tenant(&f.store).await;
    let import = import_and_wait(&f, &engine, tenant).await;
    assert_eq!(import.status, ImportStatus::Finished, "{import:?}");
    assert_eq!(import.number_assets_imported, 50);
    assert_eq!(f.emulator.query_arrivals().len(), 2);
    assert_eq!(f.emulator.stats().ranged_twins_served, 0);
    engine.shutdown().await;
}
