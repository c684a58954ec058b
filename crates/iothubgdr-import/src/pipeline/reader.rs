//! The reader: pages through the hub's twins and maps each page to assets, a few pages
//! ahead of the writer.

use iothub_client::{HubClient, Twin};
use iothubgdr_store::AssetUpsert;
use tokio::sync::mpsc;

use super::Page;
use crate::mapping::device_asset;
use crate::source::{self, HubCount, ReadPlan};

/// Pages fetched ahead of the one being written: reading the hub and writing the store
/// overlap, and memory stays bounded by a few pages whatever the hub's size.
const PAGES_AHEAD: usize = 4;

/// Aborts the reader task when the job ends, whichever way: the task holds the secret.
pub(crate) struct ReaderTask(tokio::task::JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts reading every device of the hub behind `client`, with one reader or several
/// over disjoint parts of the registry ([`source::read_all`]). Pages arrive in hub order
/// within a part; an `Err` is the last item.
pub(crate) fn spawn(
    client: HubClient,
    plan: ReadPlan,
    hub: HubCount,
    hub_host: String,
    home_location: Option<String>,
) -> (mpsc::Receiver<Page>, ReaderTask) {
    let (pages_tx, pages_rx) = mpsc::channel::<Page>(PAGES_AHEAD);
    let map = move |twins: &[Twin]| -> Vec<AssetUpsert> {
        twins
            .iter()
            .map(|twin| device_asset(&hub_host, twin, home_location.as_deref()))
            .collect()
    };
    let task = tokio::spawn(source::read_all(client, plan, hub, map, pages_tx));
    (pages_rx, ReaderTask(task))
}
