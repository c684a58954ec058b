//! The databases every engine test runs on: a SQLite file, and a fresh database on the
//! PostgreSQL server that IOTHUBGDR_TEST_POSTGRES_URL names (the case says it was skipped
//! when none is named). `on_every_backend!` makes one `#[tokio::test]` per case and backend.

// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use iothubgdr_store::{Import, NewApp, Store};
use iothubgdr_store_conformance::{postgres_server_url, TestDatabase};
use uuid::Uuid;

pub async fn sqlite_database() -> Option<TestDatabase> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let open_url = url.clone();
    Some(TestDatabase::new("sqlite", url, dir, move || {
        let url = open_url.clone();
        async move {
            let store = iothubgdr_store_sqlite::SqliteStore::connect(&url)
                .await
                .expect("store");
            Arc::new(store) as Arc<dyn Store>
        }
    }))
}

pub async fn postgres_database() -> Option<TestDatabase> {
    let server = postgres_server_url("engine test on PostgreSQL")?;
    let url = iothubgdr_store_postgres::testing::fresh_database(&server)
        .await
        .expect("test database");
    let open_url = url.clone();
    Some(TestDatabase::new("postgres", url, (), move || {
        let url = open_url.clone();
        async move {
            let options = iothubgdr_store_postgres::PostgresOptions {
                pool_size: 4,
                ..Default::default()
            };
            let store = iothubgdr_store_postgres::PostgresStore::connect(&url, options)
                .await
                .expect("store");
            Arc::new(store) as Arc<dyn Store>
        }
    }))
}

/// One `#[tokio::test]` per case and backend; each case is `async fn(TestDatabase)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(db) = $crate::backends::sqlite_database().await {
                        super::$case(db).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(db) = $crate::backends::postgres_database().await {
                        super::$case(db).await;
                    }
                }
            )*
        }
    };
}

/// An engine on `store`, started, with the registry its metrics are in.
pub async fn started_engine(
    store: Arc<dyn Store>,
    config: iothubgdr_import::EngineConfig,
) -> (
    iothubgdr_import::Engine,
    prometheus_client::registry::Registry,
) {
    let mut registry = prometheus_client::registry::Registry::default();
    let engine = iothubgdr_import::Engine::new(store, config, &mut registry);
    engine.start().await.expect("start");
    (engine, registry)
}

/// Hub client options that reach `hub` on loopback (its CA, its address), the defaults
/// otherwise.
pub fn client_of(hub: &iothub_emulator::RunningEmulator) -> iothub_client::ClientOptions {
    iothub_client::ClientOptions {
        extra_root_ca_pem: Some(hub.ca_cert_pem().into_bytes()),
        resolve: vec![(hub.host_name(), hub.addr())],
        ..iothub_client::ClientOptions::default()
    }
}

/// The request of an import named `display_name` of the hub that `connection_string` names.
pub fn import_request(
    display_name: &str,
    connection_string: String,
) -> iothubgdr_import::ImportRequest {
    iothubgdr_import::ImportRequest {
        display_name: display_name.into(),
        secret: zeroize::Zeroizing::new(connection_string),
        arc_home_location_identity: None,
    }
}

/// A tenant of its own (imports and assets belong to one), made the way `apps create`
/// makes it.
pub async fn new_tenant(store: &Arc<dyn Store>) -> Uuid {
    store
        .app_create(NewApp {
            client_id: Uuid::new_v4().to_string(),
            display_name: "engine test".into(),
            tenant_name: Uuid::new_v4().to_string(),
            secret_hash: vec![0; 32],
        })
        .await
        .expect("app")
        .tenant
        .id
}

/// Polls until the import is done; a working engine takes well under a second, and 60 s
/// means it hangs.
pub async fn wait_done(store: &Arc<dyn Store>, tenant: Uuid, id: Uuid) -> Import {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let import = store
            .import_get(tenant, id)
            .await
            .expect("get")
            .expect("exists");
        if import.status.is_done() {
            return import;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not done in 60 s: {import:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
