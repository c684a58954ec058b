//! Small builders the cases share.

use std::sync::Arc;
use std::time::Duration;

use iothubgdr_store::{
    Admission, AssetUpsert, ImportContext, ImportLimits, NewApp, NewImport, Observation, PageWrite,
    Store, StoreResult,
};
use serde_json::json;
use uuid::Uuid;

/// The tenant named `name` (created with an app, the way `apps create` makes tenants).
pub async fn tenant(store: &Arc<dyn Store>, name: &str) -> Uuid {
    store
        .app_create(NewApp {
            client_id: Uuid::new_v4().to_string(),
            display_name: format!("app of {name}"),
            tenant_name: name.to_owned(),
            secret_hash: vec![1; 32],
        })
        .await
        .expect("app")
        .tenant
        .id
}

/// Device `n` of `hub.example`, with a `colour` attribute.
pub fn device(n: usize, colour: &str) -> AssetUpsert {
    let mut attributes = serde_json::Map::new();
    attributes.insert("arc_display_name".into(), json!(format!("device-{n}")));
    attributes.insert("colour".into(), json!(colour));
    AssetUpsert::new(
        format!("hub.example/device-{n}"),
        vec!["RecordEvidence".into()],
        attributes,
        Observation::default(),
    )
}

/// The context of an import's events in cases that do not look at them.
pub fn context() -> ImportContext {
    ImportContext::default()
}

/// `number_assets_imported` of a write, `None` when it was stopped.
pub fn imported(write: &PageWrite) -> Option<u64> {
    match write {
        PageWrite::Written {
            number_assets_imported,
            ..
        } => Some(*number_assets_imported),
        PageWrite::Stopped(_) => None,
    }
}

pub fn new_import(tenant_id: Uuid, worker_id: Uuid) -> NewImport {
    NewImport {
        id: Uuid::new_v4(),
        tenant_id,
        display_name: "hub".into(),
        arc_home_location_identity: None,
        hub_host: Some("hub.example".into()),
        worker_id,
        failed_with: None,
    }
}

/// A pending import of `worker_id`.
pub async fn pending_import(store: &Arc<dyn Store>, tenant_id: Uuid, worker_id: Uuid) -> Uuid {
    match store
        .import_create(new_import(tenant_id, worker_id), ImportLimits::UNLIMITED)
        .await
        .expect("create")
    {
        Admission::Accepted(import) => import.id,
        refused => panic!("an unlimited admission refused: {refused:?}"),
    }
}

/// An import in progress, owned by a worker of its own.
pub async fn running_import(store: &Arc<dyn Store>, tenant_id: Uuid) -> Uuid {
    let worker = Uuid::new_v4();
    let id = pending_import(store, tenant_id, worker).await;
    assert_eq!(
        store
            .imports_claim(worker, u32::MAX, 1)
            .await
            .expect("claim"),
        vec![id]
    );
    id
}

/// A page write repeated while the store says the failure is worth retrying, as the
/// engine does.
pub async fn write_retrying(
    store: &Arc<dyn Store>,
    id: Uuid,
    tenant_id: Uuid,
    page: &[AssetUpsert],
) -> PageWrite {
    let mut attempt = 0;
    loop {
        let written: StoreResult<PageWrite> = store
            .import_write_page(id, tenant_id, &context(), page)
            .await;
        match written {
            Ok(written) => return written,
            Err(err) if err.is_retryable() && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
            }
            Err(err) => panic!("page write failed: {}", err.detail()),
        }
    }
}
