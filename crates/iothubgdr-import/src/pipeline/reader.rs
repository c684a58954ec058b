//! The reader: pages through the hub's twins and maps each page to assets, a few pages
//! ahead of the writer.

use iothub_client::HubClient;
use tokio::sync::mpsc;

use super::Page;
use crate::mapping::device_asset;

/// The query that reads every device twin.
const ALL_DEVICES: &str = "SELECT * FROM devices";
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

/// Starts reading every device of the hub behind `client`. Pages arrive in hub order; an
/// `Err` is the last item.
pub(crate) fn spawn(
    client: HubClient,
    hub_host: String,
    home_location: Option<String>,
) -> (mpsc::Receiver<Page>, ReaderTask) {
    let (pages_tx, pages_rx) = mpsc::channel::<Page>(PAGES_AHEAD);
    let mut pages = client.query_devices(ALL_DEVICES);
    drop(client);
    let task = tokio::spawn(async move {
        loop {
            let item = match pages.next_page().await {
                Ok(Some(twins)) => Ok(twins
                    .iter()
                    .map(|twin| device_asset(&hub_host, twin, home_location.as_deref()))
                    .collect()),
                Ok(None) => break,
                Err(err) => Err(err),
            };
            let failed = item.is_err();
            if pages_tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    (pages_rx, ReaderTask(task))
}
