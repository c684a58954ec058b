//! A cancelled import stops calling the hub at once: its reader (which holds the
//! connection string) is aborted with the job, even while it waits out a throttled hub's
//! `Retry-After`, instead of retrying for the rest of its retry budget on behalf of an
//! import nobody wants any more. Runs on a SQLite file and on PostgreSQL (when
//! IOTHUBGDR_TEST_POSTGRES_URL names a server).
//!
//! A mutation run found that no test noticed a reader left running after its job ended.

mod backends;
use backends::{client_of, import_request, new_tenant, started_engine};

use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults};
use iothubgdr_import::EngineConfig;
use iothubgdr_store::{Import, ImportStatus};
use iothubgdr_store_conformance::TestDatabase;
use prometheus_client::registry::Registry;
use uuid::Uuid;

on_every_backend!(a_cancelled_import_stops_calling_a_throttled_hub);

/// How long a working engine may take for what it does in milliseconds.
const PATIENCE: Duration = Duration::from_secs(30);

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the sample named exactly `sample`, 0 when absent.
fn figure(registry: &Registry, sample: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == sample)
        .map(|(_, value)| value.parse().expect("a number"))
        .unwrap_or(0.0)
}

async fn a_cancelled_import_stops_calling_a_throttled_hub(db: TestDatabase) {
    // Slow pages, so the import is still reading when the hub starts throttling.
    let hub = iothub_emulator::start(EmulatorConfig {
        devices: 2_000,
        faults: Faults {
            latency: Duration::from_millis(100),
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
            // Long enough that a reader left running would go on retrying well past the
            // quiet period below.
            retry_budget: Duration::from_secs(20),
            page_size: 100,
            ..client_of(&hub)
        },
        readers_per_import: 1,
        lease: Duration::from_secs(2),
        cancel_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let (engine, registry) = started_engine(db.open().await, config).await;
    let tenant = new_tenant(&store).await;
    let import = engine
        .submit(
            tenant,
            import_request("cancelled", hub.iothub_connection_string()),
        )
        .await
        .expect("submit");

    // Once a page is written, the hub throttles every query with a one-second Retry-After.
    wait_for("a page written", || async {
        let now: Import = store
            .import_get(tenant, import.id)
            .await
            .expect("get")
            .expect("exists");
        (now.number_assets_imported > 0).then_some(())
    })
    .await;
    hub.set_faults(Faults {
        throttle_every: Some(1),
        retry_after: Duration::from_secs(1),
        ..Faults::default()
    });
    wait_for("the reader throttled", || async {
        (hub.stats().throttled > 0).then_some(())
    })
    .await;

    let cancelled = engine
        .cancel(tenant, import.id)
        .await
        .expect("cancel")
        .expect("found");
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    // The job has ended when the engine no longer counts it running.
    wait_for("the job ended", || async {
        (figure(&registry, "imports_running") == 0.0).then_some(())
    })
    .await;
    let at_end = hub.stats().requests;
    // Nothing to wait for but the absence of requests: a reader still running would retry
    // once a second (its Retry-After) for the next 20 s.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let later = hub.stats().requests;
    assert_eq!(
        later,
        at_end,
        "the hub got {} requests after the import was cancelled",
        later - at_end
    );
    let after = store
        .import_get(tenant, import.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(after.status, ImportStatus::Cancelled, "{after:?}");
    engine.shutdown().await;
}
