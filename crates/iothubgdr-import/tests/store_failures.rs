//! An import whose store refuses its writes ends: failed, with a reason that says the
//! asset store could not be written and what to do, without the database's own text (it
//! can quote statements and values), and with nothing counted. The refusal is a trigger
//! installed in the real database, so the store, the writer and the engine are the real
//! ones (its warnings are read through a real `tracing` subscriber, tests/capture). Every
//! case runs on a SQLite file and on PostgreSQL (when
//! IOTHUBGDR_TEST_POSTGRES_URL names a server).
//!
//! A mutation run found that no test read the reason of a store failure: the writer could
//! have failed an import with any text at all.

mod backends;
use backends::{import_request, new_tenant, wait_done};
mod capture;

use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, RunningEmulator};
use iothubgdr_import::{Engine, EngineConfig};
use iothubgdr_store::{AssetFilter, ImportStatus};
use iothubgdr_store_conformance::TestDatabase;
use sqlx::Connection;
use uuid::Uuid;

on_every_backend!(a_store_that_refuses_the_page_writes_fails_the_import_with_a_clear_reason);

/// PostgreSQL only: SQLite has no way to make a statement fail with "try again" at will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_keeps_asking_to_try_again_fails_the_import_after_six_tries() {
    if let Some(db) = backends::postgres_database().await {
        keeps_asking_to_try_again(db).await;
    }
}

/// The database's own words for the refusal: they must not reach the import's reason.
const DATABASE_TEXT: &str = "assets are refused by this test";

/// Makes every insert into `assets` fail, as a full disk or a broken constraint would.
async fn refuse_asset_writes(db: &TestDatabase) {
    refuse_asset_writes_with(db, "P0001").await;
}

/// `sqlstate` is PostgreSQL's code of the refusal (SQLite always refuses as a constraint).
async fn refuse_asset_writes_with(db: &TestDatabase, sqlstate: &str) {
    match db.backend() {
        "sqlite" => {
            let mut conn = sqlx::SqliteConnection::connect(db.url())
                .await
                .expect("connect");
            sqlx::query(&format!(
                "CREATE TRIGGER refuse_assets BEFORE INSERT ON assets \
                 BEGIN SELECT RAISE(ABORT, '{DATABASE_TEXT}'); END"
            ))
            .execute(&mut conn)
            .await
            .expect("trigger");
        }
        "postgres" => {
            let mut conn = sqlx::PgConnection::connect(db.url())
                .await
                .expect("connect");
            sqlx::query(&format!(
                "CREATE FUNCTION refuse_assets() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION '{DATABASE_TEXT}' USING ERRCODE = '{sqlstate}'; END $$"
            ))
            .execute(&mut conn)
            .await
            .expect("function");
            sqlx::query(
                "CREATE TRIGGER refuse_assets BEFORE INSERT ON assets \
                 FOR EACH ROW EXECUTE FUNCTION refuse_assets()",
            )
            .execute(&mut conn)
            .await
            .expect("trigger");
        }
        other => panic!("no trigger for {other}"),
    }
}

async fn emulator(devices: u64) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

fn config(emulator: &RunningEmulator) -> EngineConfig {
    EngineConfig {
        worker_id: Uuid::new_v4(),
        client: ClientOptions {
            extra_root_ca_pem: Some(emulator.ca_cert_pem().into_bytes()),
            resolve: vec![(emulator.host_name(), emulator.addr())],
            retry_budget: Duration::from_secs(5),
            page_size: 100,
            ..ClientOptions::default()
        },
        lease: Duration::from_secs(2),
        cancel_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    }
}

async fn a_store_that_refuses_the_page_writes_fails_the_import_with_a_clear_reason(
    db: TestDatabase,
) {
    capture::install();
    let hub = emulator(250).await;
    let store = db.open().await;
    let mut registry = prometheus_client::registry::Registry::default();
    let engine = Engine::new(db.open().await, config(&hub), &mut registry);
    engine.start().await.expect("start");
    let tenant = new_tenant(&store).await;
    refuse_asset_writes(&db).await;

    let import = engine
        .submit(
            tenant,
            import_request("refused", hub.iothub_connection_string()),
        )
        .await
        .expect("submit");
    let done = wait_done(&store, tenant, import.id).await;

    assert_eq!(done.status, ImportStatus::Failed, "{done:?}");
    let reason = done.error_message.clone().expect("a reason");
    assert!(
        reason.starts_with("the import could not write to the asset store (database error (")
            && reason.ends_with("); start the import again"),
        "{reason}"
    );
    assert!(!reason.contains(DATABASE_TEXT), "{reason}");
    assert!(!reason.contains("INSERT"), "{reason}");
    // A refusal is no "try again": the write was not retried (six tries would also delay
    // the failure by about 3 s).
    let warnings = capture::warnings_of(import.id);
    assert!(
        !warnings
            .iter()
            .any(|line| line.contains("will be tried again")),
        "{warnings:#?}"
    );
    // Nothing was written, so nothing is counted.
    assert_eq!(done.number_assets_imported, 0, "{done:?}");
    assert_eq!(
        store
            .asset_count(tenant, &AssetFilter::default())
            .await
            .expect("count"),
        0
    );
    engine.shutdown().await;
}

/// A serialization failure on every try (SQLSTATE 40001, which the store calls
/// retryable): the writer tries each batch six times, pausing 0.1 s and doubling (about
/// 3 s in all), then fails the import with the store's reason. Not fewer tries, not more,
/// not forever, and not without pausing.
async fn keeps_asking_to_try_again(db: TestDatabase) {
    capture::install();
    let hub = emulator(50).await;
    let store = db.open().await;
    let mut registry = prometheus_client::registry::Registry::default();
    let engine = Engine::new(db.open().await, config(&hub), &mut registry);
    engine.start().await.expect("start");
    let tenant = new_tenant(&store).await;
    refuse_asset_writes_with(&db, "40001").await;

    let started = std::time::Instant::now();
    let import = engine
        .submit(
            tenant,
            import_request("busy", hub.iothub_connection_string()),
        )
        .await
        .expect("submit");
    let done = wait_done(&store, tenant, import.id).await;
    let took = started.elapsed();

    assert_eq!(done.status, ImportStatus::Failed, "{done:?}");
    let reason = done.error_message.clone().expect("a reason");
    assert_eq!(
        reason,
        "the import could not write to the asset store (the database asked to try again \
         (PostgreSQL refused a statement (SQLSTATE 40001))); start the import again"
    );
    // 50 devices are one page and one batch: five "tried again", the sixth try fails.
    let retries: Vec<String> = capture::warnings_of(import.id)
        .into_iter()
        .filter(|line| line.contains("page write will be tried again"))
        .collect();
    assert_eq!(retries.len(), 5, "{retries:#?}");
    for attempt in 1..=5 {
        assert!(
            retries
                .iter()
                .any(|line| line.contains(&format!("attempt={attempt} "))),
            "no try {attempt}: {retries:#?}"
        );
    }
    // The pauses add up to 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s: sleeps never end early, so this
    // bound cannot fail on a slow machine.
    assert!(took >= Duration::from_millis(3_100), "{took:?}");
    assert_eq!(done.number_assets_imported, 0, "{done:?}");
    engine.shutdown().await;
}
