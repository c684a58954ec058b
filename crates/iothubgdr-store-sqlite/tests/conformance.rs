//! The shared store conformance suite on SQLite files. Each case gets a fresh file in a
//! nested temporary directory (which also checks that missing directories are created);
//! every handle is its own pool on that file, as separate processes would be.

use std::sync::Arc;

use iothubgdr_store::Store;
use iothubgdr_store_conformance::TestDatabase;
use iothubgdr_store_sqlite::SqliteStore;

async fn fresh() -> Option<TestDatabase> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/nested/dir/test.db", dir.path().display());
    let open_url = url.clone();
    Some(TestDatabase::new("sqlite", url, dir, move || {
        let url = open_url.clone();
        async move {
            let store = SqliteStore::connect(&url).await.expect("connect");
            Arc::new(store) as Arc<dyn Store>
        }
    }))
}

iothubgdr_store_conformance::store_conformance_tests!(fresh);
