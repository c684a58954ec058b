//! The IoT Hub jobs API for exports: create an export job, get it, cancel it
//! (<https://learn.microsoft.com/rest/api/iothub/service/jobs>: `POST /jobs/create`,
//! `GET /jobs/{id}`, `DELETE /jobs/{id}`, api-version 2021-04-12).
//!
//! An export job writes the hub's whole registry to the customer's blob container and is
//! not bound by the twin query quota. Keys are never requested (`excludeKeysInExport`).
//! A hub runs one import or export job at a time; a second answers `JobQuotaExceeded`
//! (what the service SDKs raise as `JobQuotaExceededException`, "Job quota has been
//! exceeded"), reported as [`ExportError::JobAlreadyRunning`].
//!
//! The job the hub returns echoes `outputBlobContainerUri` (the SAS URL): it is never
//! decoded, and the body is dropped as soon as the fields below are read.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use crate::blob::BlobContainerSas;
use crate::client::{HubClient, API_VERSION};
use crate::error::{describe_transport_error, HubError};
use crate::export::{scrub_hub_text, ExportError};
use crate::failure::{backoff_delay, parse_retry_after};

/// Most of a jobs API answer read (a job is well under a kilobyte).
const JOB_BODY_MAX_BYTES: usize = 64 * 1024;
const POLL_MIN: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// Longest job id sent back to the hub in a path (the hub's are GUIDs).
const MAX_JOB_ID_CHARS: usize = 128;

/// A job's state (JobProperties.status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    Enqueued,
    Queued,
    Scheduled,
    Running,
    Completed,
    Failed,
    Cancelled,
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Enqueued => "enqueued",
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Unknown => "unknown",
        }
    }

    pub fn is_done(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// What the import uses of a job. `failure_reason` is already scrubbed of URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    pub job_id: String,
    pub status: JobStatus,
    /// Percent done, as the hub reports it (0 to 100).
    pub progress: u8,
    pub failure_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobBody {
    job_id: String,
    #[serde(default)]
    status: Option<JobStatus>,
    #[serde(default)]
    progress: Option<i64>,
    #[serde(default)]
    failure_reason: Option<String>,
}

impl HubClient {
    /// Starts an export of the whole registry into `container`, keys excluded.
    pub async fn create_export_job(
        &self,
        container: &BlobContainerSas,
    ) -> Result<ExportJob, ExportError> {
        let body = serde_json::json!({
            "type": "export",
            "outputBlobContainerUri": container.expose_url(),
            "excludeKeysInExport": true,
        })
        .to_string();
        let body = zeroize::Zeroizing::new(body);
        // Not retried after a lost answer: the hub may have started the job, and a second
        // create would only meet it as "already running".
        self.job_request(Method::POST, "create", Some(body), false)
            .await
    }

    pub async fn get_job(&self, job_id: &str) -> Result<ExportJob, ExportError> {
        self.job_request(Method::GET, checked_job_id(self, job_id)?, None, true)
            .await
    }

    /// Cancels a job. A job that already ended stays as it ended.
    pub async fn cancel_job(&self, job_id: &str) -> Result<(), ExportError> {
        match self
            .job_request(Method::DELETE, checked_job_id(self, job_id)?, None, true)
            .await
        {
            Ok(_) => Ok(()),
            // DELETE answers 204 with no job in the body.
            Err(ExportError::JobProtocol { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Polls a job until it completes, telling `on_progress` about every answer. A failed
    /// or cancelled job, or one still running after `limit`, is an error.
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        limit: Duration,
        mut on_progress: impl FnMut(&ExportJob),
    ) -> Result<ExportJob, ExportError> {
        let started = Instant::now();
        let deadline = started + limit;
        loop {
            let job = self.get_job(job_id).await?;
            on_progress(&job);
            let host = self.host_name().to_owned();
            match job.status {
                JobStatus::Completed => return Ok(job),
                JobStatus::Failed => {
                    return Err(ExportError::JobFailed {
                        host,
                        reason: job
                            .failure_reason
                            .unwrap_or_else(|| "no reason given".to_owned()),
                    })
                }
                JobStatus::Cancelled => return Err(ExportError::JobCancelled { host }),
                _ => {}
            }
            // A tenth of the time waited so far, between 100 ms and 2 s: a small hub's
            // export (seconds) is noticed within 10% of its time, and a large one's
            // (minutes) costs one request every 2 s, far under the jobs API's throttle of
            // 100 operations a minute per unit.
            let poll = (started.elapsed() / 10).clamp(POLL_MIN, POLL_MAX);
            if Instant::now() + poll > deadline {
                return Err(ExportError::JobTimedOut { host, limit });
            }
            tokio::time::sleep(poll).await;
        }
    }

    async fn job_request(
        &self,
        method: Method,
        path: &str,
        body: Option<zeroize::Zeroizing<String>>,
        retry_network: bool,
    ) -> Result<ExportJob, ExportError> {
        let url = format!(
            "https://{}/jobs/{path}?api-version={API_VERSION}",
            self.host_name()
        );
        let deadline = Instant::now() + self.retry_budget();
        let mut attempt: u32 = 0;
        loop {
            let (retryable, retry_after, error) =
                match self.job_attempt(&method, &url, body.as_deref()).await {
                    Ok(job) => return Ok(job),
                    Err(failure) => failure,
                };
            let retryable = retryable
                && (retry_network || !matches!(error, ExportError::Hub(HubError::Network { .. })));
            let delay = retry_after.unwrap_or_else(|| backoff_delay(attempt));
            if !retryable || Instant::now() + delay >= deadline {
                return Err(error);
            }
            tracing::debug!(host = %self.host_name(), delay_ms = delay.as_millis() as u64, "retrying a jobs API request");
            tokio::time::sleep(delay).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// One request: the job, or (retryable, Retry-After, error).
    async fn job_attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&String>,
    ) -> Result<ExportJob, (bool, Option<Duration>, ExportError)> {
        let host = self.host_name().to_owned();
        let fatal = |error: ExportError| (false, None, error);
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            self.authorization_header().map_err(|e| fatal(e.into()))?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut request = self
            .http()
            .request(method.clone(), url)
            .headers(headers)
            .timeout(self.request_timeout());
        if let Some(body) = body {
            request = request.body(body.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                if let Some(refusal) = iothubgdr_outbound::refusal_in(&error) {
                    return Err(fatal(HubError::Refused(refusal.clone()).into()));
                }
                let error = HubError::Network {
                    host,
                    reason: describe_transport_error(error),
                };
                return Err((true, None, error.into()));
            }
        };
        let status = response.status();
        if status.is_redirection() {
            return Err(fatal(
                HubError::Redirected {
                    host,
                    status: status.as_u16(),
                }
                .into(),
            ));
        }
        let retry_after = parse_retry_after(response.headers());
        let error_code = response
            .headers()
            .get("iothub-errorcode")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(response).await.map_err(|reason| {
            (
                true,
                None,
                ExportError::Hub(HubError::Network {
                    host: host.clone(),
                    reason,
                }),
            )
        })?;
        if status.is_success() {
            return decode_job(&host, &body).map_err(fatal);
        }
        let text = String::from_utf8_lossy(&body);
        let code = error_code.unwrap_or_else(|| error_code_in(&text));
        Err(status_error(
            self,
            status,
            &code,
            scrub_hub_text(&text),
            retry_after,
        ))
    }
}

fn checked_job_id<'a>(client: &HubClient, job_id: &'a str) -> Result<&'a str, ExportError> {
    let fine = !job_id.is_empty()
        && job_id.len() <= MAX_JOB_ID_CHARS
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fine {
        Ok(job_id)
    } else {
        Err(ExportError::JobProtocol {
            host: client.host_name().to_owned(),
            reason: "the job id has characters a job id does not have".to_owned(),
        })
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe_transport_error)? {
        if body.len() + chunk.len() > JOB_BODY_MAX_BYTES {
            // Enough to decide; the rest is not waited for.
            body.extend_from_slice(&chunk[..JOB_BODY_MAX_BYTES - body.len()]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn decode_job(host: &str, body: &[u8]) -> Result<ExportJob, ExportError> {
    let protocol = |reason: String| ExportError::JobProtocol {
        host: host.to_owned(),
        reason,
    };
    let job: JobBody = serde_json::from_slice(body)
        .map_err(|e| protocol(format!("{:?} error at column {}", e.classify(), e.column())))?;
    let job_id = job.job_id;
    if job_id.is_empty() || job_id.len() > MAX_JOB_ID_CHARS {
        return Err(protocol("the job has no usable id".to_owned()));
    }
    Ok(ExportJob {
        job_id,
        status: job.status.unwrap_or(JobStatus::Unknown),
        progress: job.progress.unwrap_or(0).clamp(0, 100) as u8,
        failure_reason: job.failure_reason.map(|r| scrub_hub_text(&r)),
    })
}

/// `ErrorCode:<code>;…` in the hub's error body.
fn error_code_in(text: &str) -> String {
    text.split("ErrorCode:")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect()
        })
        .unwrap_or_default()
}

fn status_error(
    client: &HubClient,
    status: StatusCode,
    code: &str,
    detail: String,
    retry_after: Option<Duration>,
) -> (bool, Option<Duration>, ExportError) {
    let host = client.host_name().to_owned();
    let status_code = status.as_u16();
    let budget = client.retry_budget();
    if code.eq_ignore_ascii_case("JobQuotaExceeded") || code == "403003" {
        return (false, None, ExportError::JobAlreadyRunning { host });
    }
    if code.eq_ignore_ascii_case("BlobContainerValidationError") || code == "400022" {
        return (false, None, ExportError::ContainerRejected { host, detail });
    }
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
            false,
            None,
            HubError::Unauthorized {
                host,
                status: status_code,
            }
            .into(),
        ),
        StatusCode::NOT_FOUND => (false, None, HubError::HubNotFound { host }.into()),
        StatusCode::TOO_MANY_REQUESTS => (
            true,
            retry_after,
            HubError::Throttled { host, budget }.into(),
        ),
        _ if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => (
            true,
            retry_after.filter(|_| status == StatusCode::SERVICE_UNAVAILABLE),
            HubError::ServerError {
                host,
                status: status_code,
                budget,
            }
            .into(),
        ),
        _ => (
            false,
            None,
            HubError::Rejected {
                host,
                status: status_code,
                detail,
            }
            .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_decoded_without_its_container_uri() {
        let body = br#"{"jobId":"7f0e","startTimeUtc":"2026-01-01T00:00:00Z","type":"export","status":"running","progress":40,"outputBlobContainerUri":"https://a.blob.core.windows.net/c?sig=SECRET","excludeKeysInExport":true}"#;
        let job = decode_job("h", body).unwrap();
        assert_eq!(job.job_id, "7f0e");
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.progress, 40);
        assert!(!format!("{job:?}").contains("SECRET"));
        let failed = decode_job(
            "h",
            br#"{"jobId":"x","status":"failed","failureReason":"cannot write https://a.blob.core.windows.net/c?sig=SECRET"}"#,
        )
        .unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(!failed.failure_reason.unwrap().contains("SECRET"));
        let odd = decode_job("h", br#"{"jobId":"x","status":"paused","progress":900}"#).unwrap();
        assert_eq!((odd.status, odd.progress), (JobStatus::Unknown, 100));
        for bad in [&b"[]"[..], b"{}", b"{\"jobId\":\"\"}", b"<html>"] {
            let error = decode_job("h", bad).unwrap_err();
            assert!(matches!(error, ExportError::JobProtocol { .. }), "{error}");
        }
    }

    #[test]
    fn error_codes_are_read_from_the_hub_body() {
        assert_eq!(
            error_code_in(
                r#"{"Message":"ErrorCode:JobQuotaExceeded;Job quota has been exceeded"}"#
            ),
            "JobQuotaExceeded"
        );
        assert_eq!(error_code_in("nothing"), "");
    }
}
