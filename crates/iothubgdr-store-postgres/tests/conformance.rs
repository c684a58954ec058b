//! The shared store conformance suite on PostgreSQL: each case gets a fresh database on the
//! server named by IOTHUBGDR_TEST_POSTGRES_URL; without it every case says it was skipped.

use std::sync::Arc;

use iothubgdr_store::Store;
use iothubgdr_store_conformance::{postgres_server_url, TestDatabase};
use iothubgdr_store_postgres::{testing::fresh_database, PostgresOptions, PostgresStore};

async fn fresh() -> Option<TestDatabase> {
    let server = postgres_server_url("PostgreSQL store conformance")?;
    let url = fresh_database(&server)
        .await
        .expect("create a test database");
    let open_url = url.clone();
    Some(TestDatabase::new("postgres", url, (), move || {
        let url = open_url.clone();
        async move {
            let options = PostgresOptions {
                pool_size: 4,
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect(&url, options)
                .await
                .expect("connect");
            Arc::new(store) as Arc<dyn Store>
        }
    }))
}

iothubgdr_store_conformance::store_conformance_tests!(fresh);

/// Replicas starting at once on an empty database: migrations run once, every replica
/// comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_once() {
    let Some(server) = postgres_server_url("replicas_starting_at_once_migrate_once") else {
        return;
    };
    let url = fresh_database(&server)
        .await
        .expect("create a test database");
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(
                async move { PostgresStore::connect(&url, PostgresOptions::default()).await },
            )
        })
        .collect();
    for start in starts {
        let store = start.await.unwrap().expect("a replica failed to start");
        store.ping().await.unwrap();
    }
}
