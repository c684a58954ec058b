//! SQLite only: the database lives in files, and they are the service user's alone.

#[cfg(unix)]
#[tokio::test]
async fn the_folder_is_private_and_database_files_are_0600_even_under_a_loose_umask() {
    use iothubgdr_store::{NewApp, Store};
    use iothubgdr_store_sqlite::SqliteStore;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let url = format!("sqlite://{}/iothubgdr.db", folder.display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store
        .app_create(NewApp {
            client_id: "c".into(),
            display_name: "app".into(),
            tenant_name: "t".into(),
            secret_hash: vec![],
        })
        .await
        .unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&folder), 0o700);
    for name in ["iothubgdr.db", "iothubgdr.db-wal", "iothubgdr.db-shm"] {
        let path = folder.join(name);
        assert!(path.exists(), "{name}");
        // Test processes run with the usual umask 022: the store's own tightening makes
        // the files private here (the binary also sets umask 077 for files made later).
        assert_eq!(mode(&path), 0o600, "{name}");
    }
}
