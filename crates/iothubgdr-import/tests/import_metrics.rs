//! The import figures an operator reads on `/metrics` (README: `devices_imported`,
//! `imports_completed`, `iothub_requests`) are registered by the engine and count what
//! happened: every device written, the import that finished, and every request made to
//! the hub, by outcome and whether the client retried. Runs on a SQLite file and on
//! PostgreSQL (when IOTHUBGDR_TEST_POSTGRES_URL names a server).
//!
//! A mutation run of metrics.rs found no test of this crate that read the hub requests.

mod backends;
use backends::{client_of, import_request, new_tenant, started_engine};

use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults};
use iothubgdr_import::EngineConfig;
use iothubgdr_store::ImportStatus;
use iothubgdr_store_conformance::TestDatabase;
use prometheus_client::registry::Registry;
use uuid::Uuid;

on_every_backend!(an_import_is_counted_on_the_engines_registry);

const PATIENCE: Duration = Duration::from_secs(30);

/// Every sample of the registry as (name with labels, value).
fn samples(registry: &Registry) -> Vec<(String, f64)> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(name, value)| (name.to_owned(), value.parse().expect("a number")))
        .collect()
}

fn figure(registry: &Registry, sample: &str) -> Option<f64> {
    samples(registry)
        .into_iter()
        .find(|(name, _)| name == sample)
        .map(|(_, value)| value)
}

async fn an_import_is_counted_on_the_engines_registry(db: TestDatabase) {
    // Every second query is throttled, with a Retry-After of zero: the client retries each.
    let hub = iothub_emulator::start(EmulatorConfig {
        devices: 250,
        faults: Faults {
            throttle_every: Some(2),
            retry_after: Duration::ZERO,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let store = db.open().await;
    let config = EngineConfig {
        worker_id: Uuid::new_v4(),
        client: ClientOptions {
            page_size: 100,
            ..client_of(&hub)
        },
        readers_per_import: 1,
        ..EngineConfig::default()
    };
    let (engine, registry) = started_engine(db.open().await, config).await;
    let tenant = new_tenant(&store).await;
    let import = engine
        .submit(
            tenant,
            import_request("counted", hub.iothub_connection_string()),
        )
        .await
        .expect("submit");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let done = loop {
        let now = store
            .import_get(tenant, import.id)
            .await
            .expect("get")
            .expect("exists");
        if now.status != ImportStatus::Pending && now.status != ImportStatus::InProgress {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the import did not end within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done.status, ImportStatus::Finished, "{done:?}");
    assert_eq!(done.number_assets_imported, 250);
    // The final count is made once the job's state is written: give it the same patience.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while figure(&registry, r#"imports_completed_total{state="finished"}"#) != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "imports_completed_total: {:?}",
            samples(&registry)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(figure(&registry, "devices_imported_total"), Some(250.0));
    assert_eq!(figure(&registry, "imports_running"), Some(0.0));

    // Every request the hub answered is counted once, under its outcome.
    let stats = hub.stats();
    assert!(stats.throttled > 0, "{stats:?}");
    let requests: Vec<(String, f64)> = samples(&registry)
        .into_iter()
        .filter(|(name, _)| name.starts_with("iothub_requests_total{"))
        .collect();
    let total: f64 = requests.iter().map(|(_, value)| value).sum();
    assert_eq!(total, stats.requests as f64, "{requests:?} {stats:?}");
    assert_eq!(
        figure(
            &registry,
            r#"iothub_requests_total{outcome="throttled",retried="true"}"#
        ),
        Some(stats.throttled as f64),
        "{requests:?}"
    );
    assert_eq!(
        figure(
            &registry,
            r#"iothub_requests_total{outcome="ok",retried="false"}"#
        ),
        Some(stats.queries_served as f64),
        "{requests:?}"
    );
}
