//! Identities the store keeps unique, whatever the caller sends: an import id names one
//! import, and a second create with that id is a conflict that changes nothing.

use iothubgdr_store::{Admission, ImportLimits, ImportStatus, StoreError};
use uuid::Uuid;

use crate::fixtures::{new_import, tenant};
use crate::TestDatabase;

pub async fn an_import_id_is_unique_and_a_duplicate_changes_nothing(db: &TestDatabase) {
    let store = db.open().await;
    let tenant_id = tenant(&store, "t").await;
    let other_tenant = tenant(&store, "u").await;
    let worker = Uuid::new_v4();
    let first = new_import(tenant_id, worker);
    let id = first.id;
    let Admission::Accepted(created) = store
        .import_create(first, ImportLimits::UNLIMITED)
        .await
        .expect("create")
    else {
        panic!("an unlimited admission refused")
    };
    assert_eq!(created.status, ImportStatus::Pending);

    // The same id again: pending or failed at once, same tenant or another.
    for (tenant_of_copy, failed_with) in [
        (tenant_id, None),
        (tenant_id, Some("invalid secret provided".to_owned())),
        (other_tenant, None),
    ] {
        let mut copy = new_import(tenant_of_copy, Uuid::new_v4());
        copy.id = id;
        copy.display_name = "a copy".into();
        copy.failed_with = failed_with;
        let again = store.import_create(copy, ImportLimits::UNLIMITED).await;
        assert!(
            matches!(again, Err(StoreError::Conflict { .. })),
            "a duplicate import id: {again:?}"
        );
    }
    let kept = store
        .import_get(tenant_id, id)
        .await
        .expect("get")
        .expect("the first import");
    assert_eq!(kept.display_name, created.display_name);
    assert_eq!(kept.status, ImportStatus::Pending);
    assert_eq!(store.import_count(tenant_id).await.expect("count"), 1);
    assert_eq!(store.import_count(other_tenant).await.expect("count"), 0);
    assert!(store
        .import_get(other_tenant, id)
        .await
        .expect("get")
        .is_none());
}
