//! Why a request failed, and whether to try again: the status, network and protocol
//! failures of one attempt, backoff and `Retry-After`, and the hub's error text.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use iothubgdr_outbound::refusal_in;

use crate::client::{HubClient, RequestOutcome};
use crate::error::{describe_transport_error, HubError};

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A Retry-After beyond this is treated as "past any reasonable budget".
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// Longest error body quoted in an error message.
const ERROR_DETAIL_MAX_CHARS: usize = 300;

/// Why one attempt failed, and whether another may succeed.
pub(crate) struct AttemptFailure {
    pub(crate) outcome: RequestOutcome,
    pub(crate) retryable: bool,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) error: HubError,
}

impl HubClient {
    pub(crate) fn redirect_failure(&self, status: StatusCode) -> AttemptFailure {
        AttemptFailure {
            outcome: RequestOutcome::Other,
            retryable: false,
            retry_after: None,
            error: HubError::Redirected {
                host: self.host_name().to_owned(),
                status: status.as_u16(),
            },
        }
    }

    /// A body that stops mid-JSON is a broken connection, worth another try; a complete
    /// body that is not JSON is not.
    pub(crate) fn check_body_is_json(&self, body: &[u8]) -> Result<(), AttemptFailure> {
        let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) else {
            return Ok(());
        };
        let truncated = e.is_eof();
        let mut failure = self.protocol_failure(&format!("the body is not JSON ({e})"));
        failure.retryable = truncated;
        failure.outcome = if truncated {
            RequestOutcome::Network
        } else {
            RequestOutcome::Other
        };
        Err(failure)
    }

    pub(crate) fn status_failure(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        detail: String,
    ) -> AttemptFailure {
        let host = self.host_name().to_owned();
        let code = status.as_u16();
        let (outcome, retryable, retry_after, error) = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                RequestOutcome::Unauthorized,
                false,
                None,
                HubError::Unauthorized { host, status: code },
            ),
            StatusCode::NOT_FOUND => (
                RequestOutcome::NotFound,
                false,
                None,
                HubError::HubNotFound { host },
            ),
            StatusCode::TOO_MANY_REQUESTS => (
                RequestOutcome::Throttled,
                true,
                retry_after,
                HubError::Throttled {
                    host,
                    budget: self.retry_budget(),
                },
            ),
            StatusCode::REQUEST_TIMEOUT => (
                RequestOutcome::ServerError,
                true,
                retry_after,
                HubError::ServerError {
                    host,
                    status: code,
                    budget: self.retry_budget(),
                },
            ),
            _ if status.is_server_error() => (
                RequestOutcome::ServerError,
                true,
                // Retry-After is honoured on 503 (ServerBusy); other 5xx back off.
                retry_after.filter(|_| status == StatusCode::SERVICE_UNAVAILABLE),
                HubError::ServerError {
                    host,
                    status: code,
                    budget: self.retry_budget(),
                },
            ),
            _ => (
                RequestOutcome::Other,
                false,
                None,
                HubError::Rejected {
                    host,
                    status: code,
                    detail,
                },
            ),
        };
        AttemptFailure {
            outcome,
            retryable,
            retry_after,
            error,
        }
    }

    pub(crate) fn network_failure(&self, error: reqwest::Error) -> AttemptFailure {
        if let Some(refusal) = refusal_in(&error) {
            return AttemptFailure {
                outcome: RequestOutcome::Other,
                retryable: false,
                retry_after: None,
                error: HubError::Refused(refusal.clone()),
            };
        }
        let retryable = !error.is_builder();
        AttemptFailure {
            outcome: RequestOutcome::Network,
            retryable,
            retry_after: None,
            error: HubError::Network {
                host: self.host_name().to_owned(),
                reason: describe_transport_error(error),
            },
        }
    }

    pub(crate) fn protocol_failure(&self, reason: &str) -> AttemptFailure {
        AttemptFailure {
            outcome: RequestOutcome::Other,
            retryable: false,
            retry_after: None,
            error: HubError::Protocol {
                host: self.host_name().to_owned(),
                reason: reason.to_owned(),
            },
        }
    }
}

/// Exponential backoff with jitter: 100 ms doubling to at most 10 s, each delay drawn
/// uniformly from its upper half so concurrent clients spread out.
pub(crate) fn backoff_delay(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX);
    let floor = ceiling / 2;
    let jitter_ms = rand::thread_rng().gen_range(0..=(ceiling - floor).as_millis() as u64);
    floor + Duration::from_millis(jitter_ms)
}

/// `Retry-After` in seconds (what IoT Hub sends). HTTP dates are not used by the hub and
/// fall back to backoff.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds).min(RETRY_AFTER_MAX))
}

/// The hub's error body, shortened and without control characters (it is the hub's text,
/// shown to users and written to logs), for a rejected request (e.g. a query syntax error).
pub(crate) fn error_detail(body: bytes::Bytes) -> String {
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return "no details".to_owned();
    }
    let mut detail: String = text.chars().take(ERROR_DETAIL_MAX_CHARS).collect();
    if text.chars().count() > ERROR_DETAIL_MAX_CHARS {
        detail.push('…');
    }
    detail
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::client::tests::client;

    #[test]
    fn truncated_bodies_are_retried_and_garbage_is_not() {
        let client = client();
        assert!(client.check_body_is_json(br#"[{"deviceId":"a"}]"#).is_ok());
        let truncated = client
            .check_body_is_json(br#"[{"deviceId":"a"},{"devi"#)
            .err()
            .unwrap();
        assert!(truncated.retryable);
        assert_eq!(truncated.outcome, RequestOutcome::Network);
        let empty = client.check_body_is_json(b"").err().unwrap();
        assert!(empty.retryable);
        let garbage = client
            .check_body_is_json(b"<html>proxy error</html>")
            .err()
            .unwrap();
        assert!(!garbage.retryable);
        assert_eq!(garbage.error.kind(), crate::error::HubErrorKind::Protocol);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 0..40 {
            let delay = backoff_delay(attempt);
            assert!(delay <= BACKOFF_MAX, "{attempt}: {delay:?}");
            assert!(delay >= BACKOFF_BASE / 2, "{attempt}: {delay:?}");
        }
        assert!(backoff_delay(10) >= BACKOFF_MAX / 2);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::from_millis(500))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers), None);
    }

    #[test]
    fn status_codes_map_to_kinds_and_retry_decisions() {
        use crate::error::HubErrorKind as K;
        let client = client();
        let cases = [
            (401, K::Unauthorized, false),
            (403, K::Unauthorized, false),
            (404, K::HubNotFound, false),
            (429, K::Throttled, true),
            (500, K::Other, true),
            (503, K::Other, true),
            (400, K::Other, false),
        ];
        for (code, kind, retryable) in cases {
            let failure = client.status_failure(
                StatusCode::from_u16(code).unwrap(),
                Some(Duration::from_secs(2)),
                "detail".to_owned(),
            );
            assert_eq!(failure.error.kind(), kind, "{code}");
            assert_eq!(failure.retryable, retryable, "{code}");
        }
        let busy = client.status_failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(2)),
            String::new(),
        );
        assert_eq!(busy.retry_after, Some(Duration::from_secs(2)));
        let internal = client.status_failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(Duration::from_secs(2)),
            String::new(),
        );
        assert_eq!(internal.retry_after, None);
    }
}
