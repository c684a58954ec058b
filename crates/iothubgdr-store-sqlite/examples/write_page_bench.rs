//! Measures `import_write_page`: pages of new assets (with their events), then the same
//! pages again with one attribute changed (one event each).
//!
//! `cargo run --release -p iothubgdr-store-sqlite --example write_page_bench -- [pages] [page size]`

use std::time::Instant;

use iothubgdr_store::{AssetUpsert, ImportContext, ImportLimits, NewApp, NewImport, Store};
use iothubgdr_store_sqlite::SqliteStore;
use serde_json::json;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let pages: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let page_size: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let store =
        SqliteStore::connect(&format!("sqlite://{}/bench.db", dir.path().display())).await?;
    let tenant_id = store
        .app_create(NewApp {
            client_id: Uuid::new_v4().to_string(),
            display_name: "bench".into(),
            tenant_name: "bench".into(),
            secret_hash: vec![0; 32],
        })
        .await?
        .tenant
        .id;
    for round in ["insert", "update"] {
        let id = Uuid::new_v4();
        let worker_id = Uuid::new_v4();
        store
            .import_create(
                NewImport {
                    id,
                    tenant_id,
                    display_name: "bench".into(),
                    arc_home_location_identity: None,
                    hub_host: Some("bench.azure-devices.net".into()),
                    worker_id,
                    failed_with: None,
                },
                ImportLimits::UNLIMITED,
            )
            .await?;
        store.imports_claim(worker_id, 1, 1).await?;
        let started = Instant::now();
        for page in 0..pages {
            let assets: Vec<AssetUpsert> = (0..page_size)
                .map(|n| {
                    let device = page * page_size + n;
                    let mut attributes = serde_json::Map::new();
                    attributes.insert("arc_display_name".into(), json!(format!("device-{device}")));
                    attributes.insert("iothub_device_id".into(), json!(format!("device-{device}")));
                    attributes.insert("round".into(), json!(round));
                    AssetUpsert::new(
                        format!("bench.azure-devices.net/device-{device}"),
                        vec!["RecordEvidence".into()],
                        attributes,
                        Default::default(),
                    )
                })
                .collect();
            store
                .import_write_page(id, tenant_id, &ImportContext::default(), &assets)
                .await?;
        }
        let elapsed = started.elapsed();
        let total = pages * page_size;
        println!(
            "{round}: {total} assets in {pages} pages of {page_size}: {:.3}s, {:.0} assets/s",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}
