//! Page writes that the database breaks off are tried again, and the import still ends with
//! every device exactly once. The fault is real: while an import runs, a second connection
//! blocks inserts into `assets` with a table lock, waits until a page write of the import is
//! stuck behind it, and terminates that write's connection (`pg_terminate_backend`, what
//! a failover or an administrator does), several times. PostgreSQL only: SQLite's writes
//! wait on its lock for 30 s before they would fail.

use std::sync::Arc;
use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults};
use iothubgdr_import::{Engine, EngineConfig, ImportRequest};
use iothubgdr_store::{AssetFilter, ImportStatus, NewApp, Store};
use iothubgdr_store_conformance::postgres_server_url;
use iothubgdr_store_postgres::{PostgresOptions, PostgresStore};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;
use zeroize::Zeroizing;

const DEVICES: u64 = 3_000;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_writes_cut_off_by_the_database_are_retried_exactly_once() {
    let Some(server) = postgres_server_url("retried page writes on PostgreSQL") else {
        return;
    };
    let url = iothubgdr_store_postgres::testing::fresh_database(&server)
        .await
        .expect("test database");
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .expect("store"),
    );
    // One reader, 30 pages, 40 ms each: the import runs long enough to be cut off.
    let hub = iothub_emulator::start(EmulatorConfig {
        devices: DEVICES,
        faults: Faults {
            latency: Duration::from_millis(40),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let config = EngineConfig {
        worker_id: Uuid::new_v4(),
        readers_per_import: 1,
        client: ClientOptions {
            extra_root_ca_pem: Some(hub.ca_cert_pem().into_bytes()),
            resolve: vec![(hub.host_name(), hub.addr())],
            retry_budget: Duration::from_secs(5),
            ..ClientOptions::default()
        },
        ..EngineConfig::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let engine = Engine::new(Arc::clone(&store), config, &mut registry);
    engine.start().await.expect("start");
    let tenant = store
        .app_create(NewApp {
            client_id: Uuid::new_v4().to_string(),
            display_name: "retry test".into(),
            tenant_name: Uuid::new_v4().to_string(),
            secret_hash: vec![0; 32],
        })
        .await
        .expect("app")
        .tenant
        .id;

    let mut saboteur = PgConnection::connect(&url).await.expect("saboteur");
    let import = engine
        .submit(
            tenant,
            ImportRequest {
                display_name: "retried".into(),
                secret: Zeroizing::new(hub.iothub_connection_string()),
                arc_home_location_identity: None,
            },
        )
        .await
        .expect("submit");

    let mut killed = 0;
    while killed < KILLS {
        let mut tx = saboteur.begin().await.expect("begin");
        sqlx::query("LOCK TABLE assets IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .expect("lock");
        let victim = wait_for_blocked_page_write(&url).await;
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(victim)
            .fetch_one(&mut *tx)
            .await
            .expect("terminate");
        assert!(
            terminated,
            "the blocked page write's connection was not terminated"
        );
        killed += 1;
        tx.commit().await.expect("unlock");
        // Let a few pages through before the next cut.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let mut done = None;
    for _ in 0..600 {
        let now = store
            .import_get(tenant, import.id)
            .await
            .expect("get")
            .expect("exists");
        if now.status.is_done() {
            done = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = done.expect("the import ended within 30 s");
    assert_eq!(done.status, ImportStatus::Finished, "{done:?}");
    assert_eq!(done.number_assets_imported, DEVICES, "{done:?}");
    let assets = store
        .asset_count(tenant, &AssetFilter::default())
        .await
        .expect("count");
    assert_eq!(assets, DEVICES);
    engine.shutdown().await;
}

/// The backend pid of a page write waiting on the saboteur's lock (a statement that
/// inserts into assets, in a lock wait), polled from a connection of its own.
async fn wait_for_blocked_page_write(url: &str) -> i32 {
    let mut watcher = PgConnection::connect(url).await.expect("watcher");
    for _ in 0..400 {
        let victim: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND query LIKE '%INSERT INTO assets%' LIMIT 1",
        )
        .fetch_optional(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if let Some(pid) = victim {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no page write blocked on the lock within 10 s: did the import end early?");
}
