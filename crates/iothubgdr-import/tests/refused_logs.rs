//! A hostile hub cannot fill the logs: an import logs its first 100 refused twins by
//! (escaped) id, then one line saying more were refused, and nothing more however many the
//! hub sends; every refused twin is still counted. The engine's warnings are read through a
//! real `tracing` subscriber (tests/capture).
//!
//! A mutation run found that nothing checked the bound: logging every refused twin, none,
//! or the "more" line for each one all passed.

mod backends;
use backends::{client_of, import_request, new_tenant, started_engine, wait_done};
mod capture;

use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults, Hostility};
use iothubgdr_import::EngineConfig;
use iothubgdr_store::{AssetFilter, ImportStatus};
use iothubgdr_store_conformance::TestDatabase;
use uuid::Uuid;

on_every_backend!(a_hub_of_refused_twins_logs_a_bounded_number_of_lines);

/// Twins the hub sends, every one of them refused; more than three times the bound.
const DEVICES: u64 = 350;
/// The engine's bound on refused twins logged by id (pipeline/reader.rs).
const LOGGED_BY_ID: usize = 100;

async fn a_hub_of_refused_twins_logs_a_bounded_number_of_lines(db: TestDatabase) {
    capture::install();
    // `every: 2`: in each page, one twin of two has an oversized tag and the other a device
    // id with control and bidi characters: every twin is refused.
    let hub = iothub_emulator::start(EmulatorConfig {
        devices: DEVICES,
        faults: Faults {
            hostility: Hostility::OversizedTwins {
                every: 2,
                tag_bytes: 16 * 1024,
            },
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
            retry_budget: Duration::from_secs(5),
            page_size: 100,
            ..client_of(&hub)
        },
        lease: Duration::from_secs(2),
        cancel_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let (engine, _registry) = started_engine(db.open().await, config).await;
    let tenant = new_tenant(&store).await;
    let import = engine
        .submit(
            tenant,
            import_request("hostile", hub.iothub_connection_string()),
        )
        .await
        .expect("submit");
    let done = wait_done(&store, tenant, import.id).await;
    engine.shutdown().await;

    // Every twin counted, none written.
    assert_eq!(done.status, ImportStatus::Finished, "{done:?}");
    assert_eq!(done.number_devices_refused, DEVICES, "{done:?}");
    assert_eq!(done.number_assets_imported, 0, "{done:?}");
    assert_eq!(
        store
            .asset_count(tenant, &AssetFilter::default())
            .await
            .expect("count"),
        0
    );

    let ours = capture::warnings_of(import.id);
    let by_id = ours
        .iter()
        .filter(|line| line.contains("twin refused: it breaks IoT Hub's limits"))
        .count();
    let more = ours
        .iter()
        .filter(|line| line.contains("more twins refused; their ids are not logged"))
        .count();
    assert_eq!(by_id, LOGGED_BY_ID, "{}", ours.join("\n"));
    assert_eq!(more, 1, "{}", ours.join("\n"));
    // No other warning of this import, and no hub-chosen control character in any line
    // (a device id with a newline would otherwise forge a line of its own).
    assert_eq!(ours.len(), LOGGED_BY_ID + 1, "{}", ours.join("\n"));
    for line in &ours {
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{line:?}"
        );
    }
}
