//! The writer: takes mapped pages from the reader and writes them, each batch in one
//! transaction with the import's new count, only while the import is in progress.

use std::sync::Arc;
use std::time::Duration;

use iothubgdr_store::{AssetUpsert, ImportContext, PageWrite, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::history::SeenDevices;
use super::{hub_failure, store_failure, JobEnd, Page};
use crate::engine::Inner;
use crate::mapping::MappedPage;

/// The most assets one write transaction takes when several pages are waiting.
const MAX_BATCH_ASSETS: usize = 1_000;
/// Tries of one batch when the database says "try again" (deadlock, serialization
/// failure, lost connection, failover).
const WRITE_ATTEMPTS: u32 = 6;
/// The first pause between tries; it doubles each time (0.1 + 0.2 + ... ≈ 3 s in all).
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Writes every page the reader sends until it ends, the job is cancelled, or the process
/// shuts down. Up to [`iothubgdr_store::Store::concurrent_page_writes`] batches are written
/// at once; each adds its own assets to the import's count, so the order they commit in does
/// not matter, and the job ends only when every one has. Every device the hub listed goes
/// into `seen`, refused ones too.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_all(
    inner: &Arc<Inner>,
    id: Uuid,
    tenant_id: Uuid,
    context: &Arc<ImportContext>,
    seen: &mut SeenDevices,
    mut pages: mpsc::Receiver<Page>,
    cancel: &CancellationToken,
) -> Result<JobEnd, String> {
    let concurrency = inner.store.concurrent_page_writes().max(1);
    // Dropping the set (an early return) aborts the writes still running: each is one
    // transaction, so an aborted one leaves nothing behind.
    let mut writes: JoinSet<Result<PageWrite, StoreError>> = JoinSet::new();
    let mut written: u64 = 0;
    let mut reading = true;
    let mut failure = None;
    while reading || !writes.is_empty() {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(JobEnd::Cancelled),
            _ = inner.shutdown.cancelled() => return Ok(JobEnd::ShuttingDown),
            Some(done) = writes.join_next(), if !writes.is_empty() => {
                let done = done.map_err(|err| {
                    store_failure(StoreError::Backend {
                        context: "a page write ended early".to_owned(),
                        source: Some(Box::new(err)),
                    })
                })?;
                match done {
                    Ok(PageWrite::Written { number_assets_imported, .. }) => {
                        written = written.max(number_assets_imported);
                        debug!(import = %id, assets = written, "page written");
                    }
                    Ok(PageWrite::Stopped(status)) => {
                        debug!(import = %id, status = status.as_str(), "import stopped by its state");
                        return Ok(JobEnd::Stopped);
                    }
                    Err(err) => return Err(store_failure(err)),
                }
            }
            next = pages.recv(), if reading && writes.len() < concurrency => {
                let mut batch = Batch::default();
                match next {
                    None => reading = false,
                    Some(Ok(page)) => {
                        note_seen(seen, &page);
                        batch.add(page);
                    }
                    Some(Err(err)) => {
                        // The writes in flight finish first: what was read is not lost.
                        failure = Some(hub_failure(&err));
                        reading = false;
                    }
                }
                // Pages that are already waiting join this transaction: fewer, larger
                // commits when the database is the slower side, and still one page at a time
                // when the hub is.
                while reading && batch.assets.len() < MAX_BATCH_ASSETS {
                    match pages.try_recv() {
                        Ok(Ok(page)) => {
                            note_seen(seen, &page);
                            batch.add(page);
                        }
                        Ok(Err(err)) => {
                            // What was read before the failure is still written; the
                            // import then fails with the hub's reason.
                            failure = Some(hub_failure(&err));
                            reading = false;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => reading = false,
                    }
                }
                if !batch.is_empty() {
                    let inner = Arc::clone(inner);
                    let context = Arc::clone(context);
                    writes.spawn(async move { batch.write(&inner, id, tenant_id, &context).await });
                }
            }
        }
    }
    if let Some(message) = failure {
        return Err(message);
    }
    debug!(import = %id, assets = written, "every device read");
    Ok(JobEnd::Completed)
}

fn note_seen(seen: &mut SeenDevices, page: &MappedPage) {
    for asset in &page.assets {
        seen.insert_written(&asset.source_key);
    }
    for key in &page.refused_keys {
        seen.insert_refused(key);
    }
}

/// Pages gathered into one write.
#[derive(Default)]
struct Batch {
    assets: Vec<AssetUpsert>,
    refused: u64,
}

impl Batch {
    fn add(&mut self, page: MappedPage) {
        self.assets.extend(page.assets);
        self.refused += page.refused;
    }

    fn is_empty(&self) -> bool {
        self.assets.is_empty() && self.refused == 0
    }

    /// The assets in one transaction with the import's count, then the refused twins.
    async fn write(
        self,
        inner: &Inner,
        id: Uuid,
        tenant_id: Uuid,
        context: &ImportContext,
    ) -> Result<PageWrite, StoreError> {
        let result = write_retrying(inner, id, tenant_id, context, &self.assets).await?;
        if let PageWrite::Written { .. } = result {
            inner
                .metrics
                .devices_imported
                .inc_by(self.assets.len() as u64);
            if self.refused > 0 {
                inner.store.import_add_refused(id, self.refused).await?;
            }
        }
        Ok(result)
    }
}

/// One batch, tried again while the store says the failure may pass. A retryable failure
/// committed nothing, so a retry cannot count a page twice.
async fn write_retrying(
    inner: &Inner,
    id: Uuid,
    tenant_id: Uuid,
    context: &ImportContext,
    batch: &[AssetUpsert],
) -> Result<PageWrite, StoreError> {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        match inner
            .store
            .import_write_page(id, tenant_id, context, batch)
            .await
        {
            Err(err) if err.is_retryable() && attempt < WRITE_ATTEMPTS => {
                warn!(import = %id, attempt, error = %err.detail(), "page write will be tried again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
