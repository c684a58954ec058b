//! SQLite only: open connections keep working on a database file that was deleted or
//! replaced, writing where nobody will read again, so the store's `ping` (the service's
//! readiness) checks that its path still names the file it opened. A mutation run found
//! that no test of this crate replaced or deleted the file.

use iothubgdr_store::Store;
use iothubgdr_store_sqlite::SqliteStore;

async fn opened() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("iothubgdr.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("store");
    store.ping().await.expect("ready while the file is there");
    (dir, path, store)
}

#[tokio::test]
async fn a_replaced_database_file_is_not_ready() {
    let (dir, path, store) = opened().await;
    let other = dir.path().join("other.db");
    std::fs::copy(&path, &other).expect("copy");
    std::fs::rename(&other, &path).expect("replace");
    let err = store.ping().await.expect_err("not ready");
    assert!(
        err.to_string().contains(&format!(
            "the database file {} was replaced",
            path.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_deleted_database_file_is_not_ready() {
    let (_dir, path, store) = opened().await;
    std::fs::remove_file(&path).expect("delete");
    let err = store.ping().await.expect_err("not ready");
    assert!(
        err.to_string()
            .contains(&format!("the database file {} is gone", path.display())),
        "{err}"
    );
}
