//! The writer: takes mapped pages from the reader and writes them, each batch in one
//! transaction with the import's new count, only while the import is in progress.

use std::sync::Arc;
use std::time::Duration;

use iothubgdr_store::{AssetUpsert, PageWrite, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::{hub_failure, store_failure, JobEnd, Page};
use crate::engine::Inner;

/// The most assets one write transaction takes when several pages are waiting.
const MAX_BATCH_ASSETS: usize = 1_000;
/// Tries of one batch when the database says "try again" (deadlock, serialization
/// failure, lost connection, failover).
const WRITE_ATTEMPTS: u32 = 6;
/// The first pause between tries; it doubles each time (0.1 + 0.2 + ... ≈ 3 s in all).
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Writes every page the reader sends until it ends, the job is cancelled, or the process
/// shuts down.
pub(crate) async fn write_all(
    inner: &Arc<Inner>,
    id: Uuid,
    tenant_id: Uuid,
    mut pages: mpsc::Receiver<Page>,
    cancel: &CancellationToken,
) -> Result<JobEnd, String> {
    let mut written: u64 = 0;
    let mut batch: Vec<AssetUpsert> = Vec::new();
    let mut refused: u64 = 0;
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(JobEnd::Cancelled),
            _ = inner.shutdown.cancelled() => return Ok(JobEnd::ShuttingDown),
            next = pages.recv() => next,
        };
        match next {
            None => break,
            Some(Ok(page)) => {
                batch.extend(page.assets);
                refused += page.refused;
            }
            Some(Err(err)) => return Err(hub_failure(&err)),
        }
        // Pages that are already waiting join this transaction: fewer, larger commits when
        // the database is the slower side, and still one page at a time when the hub is.
        let mut failure = None;
        while batch.len() < MAX_BATCH_ASSETS {
            match pages.try_recv() {
                Ok(Ok(page)) => {
                    batch.extend(page.assets);
                    refused += page.refused;
                }
                Ok(Err(err)) => {
                    failure = Some(err);
                    break;
                }
                Err(_) => break,
            }
        }
        match write_retrying(inner, id, tenant_id, &batch)
            .await
            .map_err(store_failure)?
        {
            PageWrite::Written {
                number_assets_imported,
            } => {
                inner.metrics.devices_imported.inc_by(batch.len() as u64);
                written = number_assets_imported;
                debug!(import = %id, assets = written, "page written");
            }
            PageWrite::Stopped(status) => {
                debug!(import = %id, status = status.as_str(), "import stopped by its state");
                return Ok(JobEnd::Stopped);
            }
        }
        batch.clear();
        if refused > 0 {
            inner
                .store
                .import_add_refused(id, refused)
                .await
                .map_err(store_failure)?;
            refused = 0;
        }
        if let Some(err) = failure {
            return Err(hub_failure(&err));
        }
    }
    debug!(import = %id, assets = written, "every device read");
    Ok(JobEnd::Completed)
}

/// One batch, tried again while the store says the failure may pass. A retryable failure
/// committed nothing, so a retry cannot count a page twice.
async fn write_retrying(
    inner: &Inner,
    id: Uuid,
    tenant_id: Uuid,
    batch: &[AssetUpsert],
) -> Result<PageWrite, StoreError> {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        match inner.store.import_write_page(id, tenant_id, batch).await {
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
