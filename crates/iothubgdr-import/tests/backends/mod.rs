//! The databases every engine test runs on: a SQLite file, and a fresh database on the
//! PostgreSQL server that IOTHUBGDR_TEST_POSTGRES_URL names (the case says it was skipped
//! when none is named). `on_every_backend!` makes one `#[tokio::test]` per case and backend.

use std::sync::Arc;

use iothubgdr_store::Store;
use iothubgdr_store_conformance::{postgres_server_url, TestDatabase};

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
