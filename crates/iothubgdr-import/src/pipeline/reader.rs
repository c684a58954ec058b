//! The reader: pages through the hub's twins and maps each page to assets, a few pages
//! ahead of the writer.

use iothub_client::HubClient;
use tokio::sync::mpsc;
use tracing::warn;
use uuid::Uuid;

use super::Page;
use crate::mapping::{loggable_device_id, map_page};

/// The query that reads every device twin.
const ALL_DEVICES: &str = "SELECT * FROM devices";
/// Pages fetched ahead of the one being written: reading the hub and writing the store
/// overlap, and memory stays bounded by a few pages whatever the hub's size.
const PAGES_AHEAD: usize = 4;
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

/// Starts reading every device of the hub behind `client`, which reported `total` devices.
/// Pages arrive in hub order; an `Err` is the last item (also when the hub pages in a loop
/// or far past `total`).
pub(crate) fn spawn(
    client: HubClient,
    import_id: Uuid,
    total: u64,
    hub_host: String,
    home_location: Option<String>,
) -> (mpsc::Receiver<Page>, ReaderTask) {
    let (pages_tx, pages_rx) = mpsc::channel::<Page>(PAGES_AHEAD);
    let mut pages = client.query_devices(ALL_DEVICES).expecting(total);
    drop(client);
    let task = tokio::spawn(async move {
        let mut refused_so_far: u64 = 0;
        let mut on_refused = |twin: &iothub_client::Twin, reason| {
            refused_so_far += 1;
            if refused_so_far <= MAX_REFUSED_LOGGED {
                let device = loggable_device_id(&twin.device_id);
                warn!(import = %import_id, %device, %reason, "twin refused: it breaks IoT Hub's limits");
            } else if refused_so_far == MAX_REFUSED_LOGGED + 1 {
                warn!(import = %import_id, "more twins refused; their ids are not logged");
            }
        };
        loop {
            let item = match pages.next_page().await {
                Ok(Some(twins)) => Ok(map_page(
                    &hub_host,
                    &twins,
                    home_location.as_deref(),
                    &mut on_refused,
                )),
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
