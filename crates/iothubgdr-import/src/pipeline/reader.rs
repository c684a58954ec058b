//! The reader: pages through the hub's twins and maps each page to assets, a few pages
//! ahead of the writer.

use std::sync::atomic::{AtomicU64, Ordering};

use iothub_client::{BlobClient, BlobContainerSas, HubClient, Twin};
use tokio::sync::mpsc;
use tracing::warn;
use uuid::Uuid;

use super::Page;
use crate::export_source::{self, ExportPlan, OnJob};
use crate::mapping::{loggable_device_id, map_page, MappedPage, TwinSource};
use crate::source::{self, HubCount, ReadPlan};

/// Pages fetched ahead of the one being written: reading the hub and writing the store
/// overlap, and memory stays bounded (20 pages of at most 100 twins, a few MB) whatever
/// the hub's size. Twenty lets the parallel readers go on while a write of up to 1,000
/// assets runs, so the next write finds a full batch waiting (with 4 they stalled and
/// writes were half as large).
const PAGES_AHEAD: usize = 20;
/// Refused twins logged by id per import; past it only the count grows (a hostile hub
/// could otherwise fill the logs).
const MAX_REFUSED_LOGGED: u64 = 100;

/// Aborts the reader task when the job ends, whichever way: the task holds the secret.
pub(crate) struct ReaderTask(tokio::task::JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts reading every device of the hub behind `client`, with one reader or several
/// over disjoint parts of the registry ([`source::read_all`]). Pages arrive in hub order
/// within a part; an `Err` is the last item (also when the hub pages in a loop or far past
/// the count it reported).
pub(crate) fn spawn(
    client: HubClient,
    plan: ReadPlan,
    hub: HubCount,
    import_id: Uuid,
    hub_host: String,
    home_location: Option<String>,
) -> (mpsc::Receiver<Page>, ReaderTask) {
    let (pages_tx, pages_rx) = mpsc::channel::<Page>(PAGES_AHEAD);
    let map = mapper(import_id, hub_host, home_location, TwinSource::Query);
    let task = tokio::spawn(source::read_all(client, plan, hub, map, pages_tx));
    (pages_rx, ReaderTask(task))
}

/// Starts the export path: an export job on the hub, then its blob read from the
/// customer's container ([`export_source::read_export`]). Dropping the returned task
/// cancels a job still running on the hub.
pub(crate) fn spawn_export(
    client: HubClient,
    blob: BlobClient,
    container: BlobContainerSas,
    plan: ExportPlan,
    (hub_host, home_location): (String, Option<String>),
    on_job: OnJob,
) -> (mpsc::Receiver<Page>, ReaderTask) {
    let (pages_tx, pages_rx) = mpsc::channel::<Page>(PAGES_AHEAD);
    let map = mapper(plan.import_id, hub_host, home_location, TwinSource::Export);
    let task = tokio::spawn(export_source::read_export(
        client,
        blob,
        container,
        plan,
        (map, on_job),
        pages_tx,
    ));
    (pages_rx, ReaderTask(task))
}

/// Maps a page of twins to assets, logging refused twins up to a bound per import (shared
/// by every reader of a partitioned read).
fn mapper(
    import_id: Uuid,
    hub_host: String,
    home_location: Option<String>,
    source: TwinSource,
) -> impl Fn(&[Twin]) -> MappedPage + Send + Sync + 'static {
    let refused_so_far = AtomicU64::new(0);
    move |twins: &[Twin]| -> MappedPage {
        map_page(
            &hub_host,
            twins,
            home_location.as_deref(),
            source,
            |twin, reason| {
                let refused = refused_so_far.fetch_add(1, Ordering::Relaxed) + 1;
                if refused <= MAX_REFUSED_LOGGED {
                    let device = loggable_device_id(&twin.device_id);
                    warn!(import = %import_id, %device, %reason, "twin refused: it breaks IoT Hub's limits");
                } else if refused == MAX_REFUSED_LOGGED + 1 {
                    warn!(import = %import_id, "more twins refused; their ids are not logged");
                }
            },
        )
    }
}
