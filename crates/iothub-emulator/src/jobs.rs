//! The jobs API for import/export jobs (`POST /jobs/create`, `GET /jobs/{id}`,
//! `DELETE /jobs/{id}`), export only, as the hub answers it
//! (<https://learn.microsoft.com/rest/api/iothub/service/jobs>).
//!
//! An export writes `devices.txt` (one `ExportImportDevice` JSON per line, keys null with
//! `excludeKeysInExport`) as a real block blob into the container of the SAS URL it was
//! given, through [`crate::blob::BlobWriter`], which reaches only pinned loopback hosts (a
//! local Azurite). Like a hub, one import or export job runs at a time; a second answers
//! 403 `JobQuotaExceeded`. The container is checked when the job is created: a SAS the
//! storage refuses answers 400 `BlobContainerValidationError`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::blob::{ContainerUrl, ProbeOutcome};
use crate::error::HubError;
use crate::model::DeviceRecord;
use crate::seed::Keys;
use crate::server::{authorize, json_response, Right};
use crate::state::Shared;

/// The blob an export writes (the jobs API's default `outputBlobName`).
pub(crate) const EXPORT_BLOB: &str = "devices.txt";
/// Bytes of devices per block: Put Block allows far more, a few MiB keeps memory flat.
const BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// Blocks being uploaded at once.
const UPLOADS_AT_ONCE: usize = 4;
/// Devices scanned per registry lock.
const DEVICES_PER_SCAN: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum JobStatus {
    Enqueued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    fn is_done(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// One job, as `GET /jobs/{id}` shows it. The container URL is echoed as the hub does: the
/// client must never show it.
struct Job {
    id: String,
    status: JobStatus,
    progress: u8,
    start_time: String,
    end_time: Option<String>,
    failure_reason: Option<String>,
    container: Zeroizing<String>,
}

#[derive(Default)]
pub(crate) struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        if let Some(job) = self.lock().get_mut(id) {
            change(job);
        }
    }

    fn status(&self, id: &str) -> Option<JobStatus> {
        self.lock().get(id).map(|job| job.status)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobJson<'a> {
    job_id: &'a str,
    start_time_utc: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time_utc: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    status: JobStatus,
    progress: u8,
    output_blob_container_uri: &'a str,
    exclude_keys_in_export: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<&'a str>,
    storage_authentication_type: &'static str,
}

fn job_json(job: &Job) -> Result<Vec<u8>, HubError> {
    serde_json::to_vec(&JobJson {
        job_id: &job.id,
        start_time_utc: &job.start_time,
        end_time_utc: job.end_time.as_deref(),
        kind: "export",
        status: job.status,
        progress: job.progress,
        output_blob_container_uri: &job.container,
        exclude_keys_in_export: true,
        failure_reason: job.failure_reason.as_deref(),
        storage_authentication_type: "keyBased",
    })
    .map_err(|_| HubError::new(StatusCode::INTERNAL_SERVER_ERROR, "ServerError", "encoding"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateJob {
    #[serde(rename = "type")]
    kind: Option<String>,
    output_blob_container_uri: Option<String>,
}

pub(crate) async fn create_job(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    shared.throttle_job()?;
    let request: CreateJob = serde_json::from_slice(&body)
        .map_err(|_| HubError::bad_request("The job request is not valid JSON"))?;
    match request.kind.as_deref() {
        Some("export") => {}
        Some("import") => {
            return Err(HubError::bad_request(
                "Import jobs are not emulated; only export jobs are",
            ))
        }
        _ => return Err(HubError::bad_request("The job type must be export")),
    }
    let container = Zeroizing::new(
        request
            .output_blob_container_uri
            .ok_or_else(|| HubError::bad_request("outputBlobContainerUri is required"))?,
    );
    if shared.faults().job_already_running {
        return Err(job_quota_exceeded());
    }
    let target = ContainerUrl::parse(&container).map_err(container_invalid)?;
    // Checked before the job exists, as the hub does: a SAS the storage refuses is the
    // caller's mistake, not a failed job.
    match shared.blob.probe(&target, EXPORT_BLOB).await {
        ProbeOutcome::Usable => {}
        ProbeOutcome::Refused(reason) | ProbeOutcome::Unreachable(reason) => {
            return Err(container_invalid(reason))
        }
    }
    let id = job_id(&shared);
    {
        let mut jobs = shared.jobs.lock();
        if jobs.values().any(|job| !job.status.is_done()) {
            return Err(job_quota_exceeded());
        }
        jobs.insert(
            id.clone(),
            Job {
                id: id.clone(),
                status: JobStatus::Enqueued,
                progress: 0,
                start_time: crate::registry::now_text(),
                end_time: None,
                failure_reason: None,
                container: container.clone(),
            },
        );
    }
    shared.stats.jobs_created.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(run_export(shared.clone(), id.clone(), target));
    let jobs = shared.jobs.lock();
    let job = jobs
        .get(&id)
        .ok_or_else(|| HubError::new(StatusCode::INTERNAL_SERVER_ERROR, "ServerError", "lost"))?;
    Ok(json_response(StatusCode::OK, job_json(job)?))
}

pub(crate) async fn get_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    shared.throttle_job()?;
    let jobs = shared.jobs.lock();
    let job = jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    Ok(json_response(StatusCode::OK, job_json(job)?))
}

pub(crate) async fn cancel_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    shared.throttle_job()?;
    let mut jobs = shared.jobs.lock();
    let job = jobs.get_mut(&id).ok_or_else(|| job_not_found(&id))?;
    if !job.status.is_done() {
        job.status = JobStatus::Cancelled;
        job.end_time = Some(crate::registry::now_text());
        shared.stats.jobs_cancelled.fetch_add(1, Ordering::Relaxed);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn job_quota_exceeded() -> HubError {
    HubError::new(
        StatusCode::FORBIDDEN,
        "JobQuotaExceeded",
        "Job quota has been exceeded: only one active import or export job is allowed at a time",
    )
}

fn container_invalid(reason: String) -> HubError {
    HubError::new(
        StatusCode::BAD_REQUEST,
        "BlobContainerValidationError",
        format!("Unauthorized to write to the blob container: {reason}"),
    )
}

fn job_not_found(id: &str) -> HubError {
    let shown: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    HubError::new(
        StatusCode::NOT_FOUND,
        "JobNotFound",
        format!("Job {shown} not found"),
    )
}

fn job_id(shared: &Shared) -> String {
    let n = shared.stats.jobs_created.load(Ordering::Relaxed);
    let h = crate::seed::mix(shared.seed ^ 0x10B5 ^ crate::seed::mix(n + 1));
    let h2 = crate::seed::mix(h);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        h2 >> 52,
        h2 & 0xffff_ffff_ffff
    )
}

/// One exported device, in the `ExportImportDevice` form of `devices.txt`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedDevice<'a> {
    id: &'a str,
    e_tag: String,
    status: &'a str,
    status_reason: &'a str,
    authentication: Value,
    #[serde(rename = "twinETag")]
    twin_etag: String,
    tags: &'a Map<String, Value>,
    properties: Value,
    capabilities: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_scope: Option<&'a str>,
}

fn export_line(record: &DeviceRecord, out: &mut Vec<u8>) {
    let line = ExportedDevice {
        id: &record.device_id,
        e_tag: record.device_etag_text(),
        status: record.status.as_str(),
        status_reason: record.status_reason.as_deref().unwrap_or(""),
        // excludeKeysInExport: the keys are null, the rest of the authentication stays.
        authentication: serde_json::json!({
            "symmetricKey": {"primaryKey": null, "secondaryKey": null},
            "x509Thumbprint": {
                "primaryThumbprint": record.primary_thumbprint,
                "secondaryThumbprint": record.secondary_thumbprint,
            },
            "type": record.auth_type.as_str(),
        }),
        twin_etag: record.twin_etag_text(),
        tags: &record.tags,
        properties: serde_json::json!({
            "desired": record.desired,
            "reported": record.reported,
        }),
        capabilities: serde_json::json!({"iotEdge": record.iot_edge}),
        device_scope: record.device_scope.as_deref(),
    };
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

/// One block's upload: its index and its id, or why the storage refused it.
type Upload = (usize, Result<String, String>);

fn collect_upload(
    done: Option<Result<Upload, tokio::task::JoinError>>,
    ids: &mut Vec<(usize, String)>,
) -> Result<(), String> {
    match done {
        None => Ok(()),
        Some(Ok((index, Ok(id)))) => {
            ids.push((index, id));
            Ok(())
        }
        Some(Ok((_, Err(reason)))) => Err(reason),
        Some(Err(_)) => Err("an upload of the export stopped".to_owned()),
    }
}

/// Runs one export: scans the registry in device id order a slice at a time, writes the
/// lines as blocks, commits the block list. Ends failed when the storage refuses a write or
/// the faults say so, and stops early when the job is cancelled.
async fn run_export(shared: Arc<Shared>, id: String, target: ContainerUrl) {
    shared
        .jobs
        .update(&id, |job| job.status = JobStatus::Running);
    let faults = shared.faults();
    let total = shared.registry_read().live_count().max(1);
    let mut after: Option<String> = None;
    let mut exported: u64 = 0;
    let mut block = Vec::with_capacity(BLOCK_BYTES + 64 * 1024);
    let mut block_ids: Vec<(usize, String)> = Vec::new();
    let mut blocks: usize = 0;
    // Blocks upload while the next ones are built, a few at a time.
    let mut uploads: JoinSet<Upload> = JoinSet::new();
    let per_slice_delay = faults.export_duration / ((total / DEVICES_PER_SCAN as u64) + 1) as u32;
    let outcome: Result<(), String> = async {
        loop {
            if shared.jobs.status(&id) == Some(JobStatus::Cancelled) {
                return Ok(());
            }
            let mut scanned = 0usize;
            let mut last: Option<String> = None;
            {
                let registry = shared.registry_read();
                registry.scan_after(after.as_deref(), Keys::Skip, |record| {
                    export_line(record, &mut block);
                    scanned += 1;
                    if scanned >= DEVICES_PER_SCAN {
                        last = Some(record.device_id.clone());
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
            }
            exported += scanned as u64;
            let finished = last.is_none();
            if block.len() >= BLOCK_BYTES || (finished && !block.is_empty()) {
                while uploads.len() >= UPLOADS_AT_ONCE {
                    collect_upload(uploads.join_next().await, &mut block_ids)?;
                }
                let bytes =
                    std::mem::replace(&mut block, Vec::with_capacity(BLOCK_BYTES + 64 * 1024));
                let (writer, target, index) = (shared.blob.clone(), target.clone(), blocks);
                uploads.spawn(async move {
                    let id = writer.put_block(&target, EXPORT_BLOB, index, &bytes).await;
                    (index, id)
                });
                blocks += 1;
            }
            let progress = ((exported * 100) / total).min(99) as u8;
            shared.jobs.update(&id, |job| job.progress = progress);
            if !per_slice_delay.is_zero() {
                tokio::time::sleep(per_slice_delay).await;
            }
            if finished {
                break;
            }
            after = last;
        }
        while let Some(done) = uploads.join_next().await {
            collect_upload(Some(done), &mut block_ids)?;
        }
        if faults.export_fails {
            return Err(format!(
                "Export failed writing to {}: injected failure",
                target.expose_url()
            ));
        }
        block_ids.sort_unstable();
        let ids: Vec<String> = block_ids.drain(..).map(|(_, id)| id).collect();
        shared.blob.put_block_list(&target, EXPORT_BLOB, &ids).await
    }
    .await;
    shared
        .stats
        .devices_exported
        .fetch_add(exported, Ordering::Relaxed);
    shared.jobs.update(&id, |job| {
        if job.status.is_done() {
            return;
        }
        job.end_time = Some(crate::registry::now_text());
        match outcome {
            Ok(()) => {
                job.status = JobStatus::Completed;
                job.progress = 100;
            }
            Err(reason) => {
                job.status = JobStatus::Failed;
                job.failure_reason = Some(reason);
            }
        }
    });
}
