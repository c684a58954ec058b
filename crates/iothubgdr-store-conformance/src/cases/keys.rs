//! Token signing keys (several, with ids, rotated and retired) and the page-token key.

use iothubgdr_store::StoreError;

use crate::fixtures::tenant;
use crate::TestDatabase;

pub async fn reopening_keeps_data_and_the_signing_keys(db: &TestDatabase) {
    {
        let store = db.open().await;
        store.ping().await.unwrap();
        tenant(&store, "t").await;
        assert!(store.signing_key_add("k1", &[7; 32], true).await.unwrap());
        assert_eq!(
            store.paging_key_get_or_insert(&[1; 32]).await.unwrap(),
            vec![1; 32]
        );
    }
    let store = db.open().await;
    // A second first start (another process racing) keeps the key already there.
    assert!(!store.signing_key_add("k2", &[9; 32], true).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].kid.as_str(), keys[0].key.as_slice()),
        ("k1", &[7u8; 32][..])
    );
    assert_eq!(
        store.paging_key_get_or_insert(&[2; 32]).await.unwrap(),
        vec![1; 32]
    );
    assert_eq!(store.app_list().await.unwrap().len(), 1);
}

pub async fn signing_keys_rotate_and_retire(db: &TestDatabase) {
    let store = db.open().await;
    assert!(store.signing_key_add("old", &[1; 32], true).await.unwrap());
    assert!(store.signing_key_add("new", &[2; 32], false).await.unwrap());
    let again = store.signing_key_add("new", &[3; 32], false).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let kids: Vec<_> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|key| (key.kid, key.retired_at.is_some()))
        .collect();
    assert_eq!(kids, vec![("old".into(), false), ("new".into(), false)]);
    assert!(store.signing_key_retire("old").await.unwrap());
    assert!(!store.signing_key_retire("old").await.unwrap());
    assert!(!store.signing_key_retire("nope").await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert!(keys[0].retired_at.is_some() && keys[1].retired_at.is_none());
    assert_eq!(keys[1].key, vec![2; 32], "the failed add changed nothing");
    assert!(!format!("{keys:?}").contains("[2, 2"));
}
