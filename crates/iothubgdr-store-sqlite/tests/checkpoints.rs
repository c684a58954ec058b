//! SQLite only: the store checkpoints its write-ahead log itself, from a task of its own,
//! shortly after each write (`checkpoint.rs`), and SQLite's automatic checkpoint is only a
//! backstop at 10,000 pages. A mutation run found that no test noticed when that task never
//! started, never ran or was never told of a write: the WAL then grows to about 40 MB before
//! anything reaches the database file, and every page write that crosses the threshold
//! copies it while holding the write turn.

use std::sync::Arc;
use std::time::Duration;

use iothubgdr_store::Store;
use iothubgdr_store_conformance::fixtures::{context, device, running_import, tenant};
use iothubgdr_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_reach_the_database_file_shortly_after() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("iothubgdr.db");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("store"),
    );
    let size = || std::fs::metadata(&path).expect("database file").len();
    let before = size();
    let t = tenant(&store, "t").await;
    let id = running_import(&store, t).await;
    let page: Vec<_> = (0..2_000).map(|n| device(n, "red")).collect();
    store
        .import_write_page(id, t, &context(), &page)
        .await
        .expect("write");
    // 2,000 assets and their events are well over 512 KiB of pages, far below the
    // automatic checkpoint's 10,000 pages: only the store's own checkpoint moves them.
    let wanted = before + 512 * 1024;
    let mut waited = Duration::ZERO;
    while size() < wanted {
        assert!(
            waited < Duration::from_secs(10),
            "the database file is still {} bytes (was {before}) 10 s after the write",
            size()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    // The store stays open: closing the last connection would checkpoint by itself.
    assert!(store.ping().await.is_ok());
}
