//! One import job, from hub to store: the [`reader`] pages the hub's twins and maps each to
//! an asset ([`crate::mapping`]) while the [`writer`] writes the previous pages, so the hub
//! side and the database side run side by side. This module ties them together and records
//! how the job ended.
//!
//! Extending it: a different way of reading (partitioned queries, an export job) is another
//! producer of `Page`s for the same channel; a different way of writing belongs in the
//! writer's batch step. The store decides per page what changed ([`history`] gives it the
//! import's identity); once every device was read, the devices not seen are stopped.

mod history;
mod reader;
mod writer;

use std::sync::Arc;

use iothub_client::{BlobClient, HubClient};
use iothubgdr_store::{ImportOutcome, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::{ExportJobState, Inner, MSG_RESTARTED};
use crate::export_source::ExportPlan;
use crate::mapping::{source_key, MappedPage};
use crate::schedule::QueuedJob;
use crate::source::{self, ReadError, ReadPlan};

/// The swagger's limit on `error_message`.
pub(crate) const MAX_ERROR_MESSAGE: usize = 1024;

/// What the reader hands the writer: one hub page, mapped (twins over IoT Hub's limits
/// counted, not copied), or why reading stopped.
pub(crate) type Page = Result<MappedPage, ReadError>;

pub(crate) enum JobEnd {
    /// Every device was read and written.
    Completed,
    /// Cancelled by its owner.
    Cancelled,
    /// The store says the import is no longer in progress (cancelled, or failed by a
    /// reaper): nothing more to record.
    Stopped,
    /// The process is shutting down.
    ShuttingDown,
}

/// Runs a claimed job to its end and records the outcome.
pub(crate) async fn run(inner: Arc<Inner>, job: QueuedJob, cancel: CancellationToken) {
    let id = job.import_id;
    let end = execute(&inner, job, &cancel).await;
    inner.set_export_job(id, None);
    let outcome = match end {
        Ok(JobEnd::Completed) => Some(ImportOutcome::Finished),
        Ok(JobEnd::Cancelled) => Some(ImportOutcome::Cancelled),
        Ok(JobEnd::Stopped) => None,
        Ok(JobEnd::ShuttingDown) => Some(ImportOutcome::Failed(MSG_RESTARTED.to_owned())),
        Err(message) => Some(ImportOutcome::Failed(message)),
    };
    match outcome {
        Some(outcome) => match inner.store.import_finish(id, outcome).await {
            Ok(Some(import)) => {
                info!(import = %id, status = import.status.as_str(), assets = import.number_assets_imported, "import ended");
                inner.count_final(import.status);
            }
            Ok(None) => warn!(import = %id, "import vanished from the store"),
            Err(err) => {
                warn!(import = %id, error = %err.detail(), "could not record the end of an import")
            }
        },
        None => {
            if let Ok(Some(status)) = inner.store.import_status(id).await {
                info!(import = %id, status = status.as_str(), "import stopped");
                inner.count_final(status);
            }
        }
    }
    inner.job_ended(id);
}

/// Reads every device of the hub and writes it, page by page. An `Err` is the user-facing
/// reason the import failed.
async fn execute(
    inner: &Arc<Inner>,
    job: QueuedJob,
    cancel: &CancellationToken,
) -> Result<JobEnd, String> {
    let QueuedJob {
        import_id: id,
        tenant_id,
        connection,
        home_location,
        display_name,
        export,
    } = job;
    let hub_host = connection.host_name().to_owned();
    let context = Arc::new(history::import_context(id, &hub_host, &display_name));
    let hub_prefix = source_key(&hub_host, "");
    let mut seen = history::SeenDevices::new();
    let mut options = inner.config.client.clone();
    options.observer = Some(Arc::new(inner.metrics.clone()));
    // The client takes the connection string: from here on the secret lives (and dies)
    // inside it.
    let client = HubClient::new(connection, options).map_err(|e| hub_failure(&e))?;

    let hub = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Ok(JobEnd::Cancelled),
        _ = inner.shutdown.cancelled() => return Ok(JobEnd::ShuttingDown),
        hub = source::count(&client) => hub.map_err(|e| hub_failure(&e))?,
    };
    inner
        .store
        .import_set_total(id, hub.total)
        .await
        .map_err(store_failure)?;

    let (pages, _reader) = if let Some(container) = export {
        let blob = BlobClient::new(inner.config.blob.clone()).map_err(|e| hub_failure(&e))?;
        let plan = ExportPlan {
            import_id: id,
            reported: hub.total,
            page_size: inner.config.client.page_size as usize,
            job_timeout: inner.config.export_job_timeout,
        };
        // The reader owns the secrets (connection string, container URL) and cancels the
        // hub's job if the import ends first.
        let jobs = Arc::clone(inner);
        let on_job = Box::new(move |job: &iothub_client::ExportJob| {
            let state = ExportJobState {
                status: job.status.as_str(),
                progress: job.progress,
            };
            jobs.set_export_job(id, Some(state));
        });
        reader::spawn_export(
            client,
            blob,
            container,
            plan,
            (hub_host, home_location),
            on_job,
        )
    } else {
        let plan = ReadPlan {
            max_readers: inner.config.readers_per_import,
            queries_per_minute: inner.config.client.queries_per_minute,
            page_size: inner.config.client.page_size,
        };
        // The reader owns the last copy of the secret; it ends with this function.
        reader::spawn(client, plan, hub, id, hub_host, home_location)
    };
    // Both paths read the whole hub, so both record history and stop what left it.
    let end = writer::write_all(inner, id, tenant_id, &context, &mut seen, pages, cancel).await?;
    if !matches!(end, JobEnd::Completed) {
        return Ok(end);
    }
    // Every part of the hub was read to its end: what is tracked from it and was not seen
    // has left it. A cancel now stops the pass; the next finished import completes it.
    let stop = history::stop_unseen(
        inner.store.as_ref(),
        id,
        tenant_id,
        &context,
        &hub_prefix,
        &seen,
    );
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Ok(JobEnd::Cancelled),
        _ = inner.shutdown.cancelled() => Ok(JobEnd::ShuttingDown),
        stopped = stop => match stopped.map_err(store_failure)? {
            Some(_) => Ok(JobEnd::Stopped),
            None => Ok(JobEnd::Completed),
        },
    }
}

pub(crate) fn hub_failure(err: &dyn std::fmt::Display) -> String {
    truncate(err.to_string())
}

pub(crate) fn store_failure(err: StoreError) -> String {
    truncate(format!(
        "the import could not write to the asset store ({err}); start the import again"
    ))
}

pub(crate) fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_fit_the_swagger_limit_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_MESSAGE);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_ERROR_MESSAGE);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_limit_inside_a_character_cuts_before_it() {
        // Byte 1024 falls inside the 512th 'é': the cut steps back to 1023.
        let cut = truncate(format!("a{}", "é".repeat(MAX_ERROR_MESSAGE)));
        assert_eq!(cut.len(), MAX_ERROR_MESSAGE - 1);
        assert_eq!(cut, format!("a{}", "é".repeat(511)));
        // At the limit exactly nothing is cut.
        let exact = "e".repeat(MAX_ERROR_MESSAGE);
        assert_eq!(truncate(exact.clone()), exact);
    }
}
