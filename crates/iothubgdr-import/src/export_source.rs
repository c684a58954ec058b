//! The export path: where an import's devices come from when the import names the
//! customer's blob container. The hub's export job writes the whole registry to the
//! container without touching the twin query quota; the devices are then streamed back
//! from `devices.txt` and sent, mapped, into the same channel as the query path's pages,
//! so the writer counts, refuses and de-duplicates them the same way.
//!
//! The job belongs to the import: if the import ends before the job does (cancelled, shut
//! down, failed elsewhere), the job is cancelled on the hub, so that the hub's single job
//! slot is not held by an export nobody will read.

use std::time::Duration;

use iothub_client::{
    BlobClient, BlobContainerSas, ExportError, ExportJob, ExportedDevices, HubClient, Twin,
    EXPORT_BLOB_NAME,
};
use tokio::sync::mpsc;
use tracing::{info, warn};
use uuid::Uuid;

use crate::source::ReadError;

/// How to run one export.
#[derive(Clone, Debug)]
pub struct ExportPlan {
    pub import_id: Uuid,
    /// The hub's device count: the export may not hold far more ([`iothub_client::overshoot_limit`]).
    pub reported: u64,
    /// Devices per mapped page.
    pub page_size: usize,
    /// Longest wait for the job.
    pub job_timeout: Duration,
}

/// Cancels the hub's job when dropped while armed: the read ended before the job did.
struct JobGuard {
    client: HubClient,
    job_id: Option<String>,
}

impl JobGuard {
    fn disarm(&mut self) {
        self.job_id = None;
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let Some(job_id) = self.job_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        runtime.spawn(async move {
            let host = client.host_name().to_owned();
            match tokio::time::timeout(Duration::from_secs(30), client.cancel_job(&job_id)).await
            {
                Ok(Ok(())) => info!(%host, job = %job_id, "export job cancelled on the hub"),
                Ok(Err(err)) => warn!(%host, job = %job_id, error = %err, "could not cancel the export job on the hub"),
                Err(_) => warn!(%host, job = %job_id, "cancelling the export job on the hub timed out"),
            }
        });
    }
}

/// Told about the job at creation and at every poll.
pub type OnJob = Box<dyn Fn(&ExportJob) + Send + Sync>;

/// Runs the export and sends the mapped devices into `pages`; a failure is the last item
/// sent. Dropping the future (aborting its task) cancels a job that is still running.
pub async fn read_export<T, F>(
    client: HubClient,
    blob: BlobClient,
    container: BlobContainerSas,
    plan: ExportPlan,
    (map, on_job): (F, OnJob),
    pages: mpsc::Sender<Result<T, ReadError>>,
) where
    T: Send + 'static,
    F: Fn(&[Twin]) -> T + Send + Sync + 'static,
{
    let read = export_and_read(&client, &blob, &container, &plan, (&map, &on_job), &pages);
    if let Err(err) = read.await {
        let _ = pages.send(Err(err.into())).await;
    }
}

async fn export_and_read<T, F>(
    client: &HubClient,
    blob: &BlobClient,
    container: &BlobContainerSas,
    plan: &ExportPlan,
    (map, on_job): (&F, &OnJob),
    pages: &mpsc::Sender<Result<T, ReadError>>,
) -> Result<(), ExportError>
where
    F: Fn(&[Twin]) -> T,
{
    let import = plan.import_id;
    let host = client.host_name().to_owned();
    let job = client.create_export_job(container).await?;
    on_job(&job);
    let mut guard = JobGuard {
        client: client.clone(),
        job_id: Some(job.job_id.clone()),
    };
    info!(%import, %host, job = %job.job_id, container = %container.container(), "export job started on the hub");
    let mut last_logged: Option<u8> = None;
    let waited = client
        .wait_for_job(&job.job_id, plan.job_timeout, |job: &ExportJob| {
            on_job(job);
            let decile = job.progress / 10;
            if last_logged != Some(decile) {
                last_logged = Some(decile);
                info!(%import, job = %job.job_id, status = job.status.as_str(), progress = job.progress, "export job");
            }
        })
        .await;
    if matches!(
        waited,
        Ok(_) | Err(ExportError::JobFailed { .. } | ExportError::JobCancelled { .. })
    ) {
        // The job is over on the hub: nothing to cancel.
        guard.disarm();
    }
    waited?;
    let lines = blob.open_lines(container, EXPORT_BLOB_NAME).await?;
    let mut devices = ExportedDevices::new(lines, plan.reported);
    while let Some(twins) = devices.next_batch(plan.page_size.max(1)).await? {
        if pages.send(Ok(map(&twins))).await.is_err() {
            break;
        }
    }
    info!(%import, devices = devices.devices_read(), "export read");
    Ok(())
}
