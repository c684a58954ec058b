//! Errors in the IoT Hub service's own shape. The body is
//! `{"Message":"ErrorCode:<code>;<text>","ExceptionMessage":"Tracking ID:<id>-G:0-TimeStamp:<time>"}`
//! with an `iothub-errorcode` header, as the hub answers. Status codes and code names follow
//! "Common error codes" (<https://learn.microsoft.com/rest/api/iothub/common-error-codes>):
//! 400004 ArgumentInvalid (400), 401002 IotHubUnauthorizedAccess (401), 404001 DeviceNotFound
//! (404), 409001 DeviceAlreadyExists (409), 412001 etag mismatch (412), 429001
//! ThrottlingException (429), 500xxx internal errors (500), and 503 ServiceUnavailable; see also
//! <https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes>.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

static TRACKING: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone)]
pub(crate) struct HubError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) text: String,
    pub(crate) retry_after_seconds: Option<u64>,
}

impl HubError {
    pub(crate) fn new(status: StatusCode, code: &'static str, text: impl Into<String>) -> Self {
        HubError {
            status,
            code,
            text: text.into(),
            retry_after_seconds: None,
        }
    }

    pub(crate) fn unauthorized() -> Self {
        HubError::new(
            StatusCode::UNAUTHORIZED,
            "IotHubUnauthorizedAccess",
            "Unauthorized",
        )
    }

    pub(crate) fn device_not_found(device_id: &str) -> Self {
        HubError::new(
            StatusCode::NOT_FOUND,
            "DeviceNotFound",
            format!("Device {device_id} not registered"),
        )
    }

    pub(crate) fn bad_request(text: impl Into<String>) -> Self {
        HubError::new(StatusCode::BAD_REQUEST, "ArgumentInvalid", text)
    }

    pub(crate) fn precondition_failed(text: impl Into<String>) -> Self {
        HubError::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailed", text)
    }

    pub(crate) fn throttled(retry_after_seconds: u64) -> Self {
        HubError {
            retry_after_seconds: Some(retry_after_seconds),
            ..HubError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Throttling for the hub's query quota; please retry after the given time",
            )
        }
    }
}

fn tracking_id() -> String {
    let n = TRACKING.fetch_add(1, Ordering::Relaxed);
    format!("{:032x}", crate::seed::mix(n) as u128 | ((n as u128) << 64))
}

fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        u8::from(now.month()),
        now.day(),
        now.year(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "Message": format!("ErrorCode:{};{}", self.code, self.text),
            "ExceptionMessage": format!("Tracking ID:{}-G:0-TimeStamp:{}", tracking_id(), timestamp_now()),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("iothub-errorcode", HeaderValue::from_static(self.code));
        if let Some(seconds) = self.retry_after_seconds {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert("retry-after", value);
            }
        }
        response
    }
}
