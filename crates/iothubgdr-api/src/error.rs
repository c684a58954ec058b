//! The runtimeError answer of every failure: `{"code": <gRPC code>, "message": "...",
//! "details": []}` with the grpc-gateway mapping of HTTP status to gRPC code
//! (spec/README.md note 6).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use iothubgdr_store::StoreError;
use serde::Serialize;

/// An API failure: an HTTP status and a message safe to show to the client (it must never
/// hold a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds to wait before retrying, for 429 and 503 answers.
    pub retry_after: Option<u64>,
    /// The methods a 405 names in `Allow`, when the handler knows them better than the
    /// router (one route template serving paths that allow different methods).
    pub allow: Option<&'static str>,
}

#[derive(Serialize)]
struct RuntimeError<'a> {
    code: i32,
    message: &'a str,
    details: [(); 0],
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// 400, INVALID_ARGUMENT.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401, UNAUTHENTICATED.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403, PERMISSION_DENIED.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404, NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 405, UNIMPLEMENTED (the method is not served on this path).
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        )
    }

    /// 405 naming the methods this path allows.
    pub fn method_not_allowed_here(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::method_not_allowed()
        }
    }

    /// 409, ALREADY_EXISTS.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 413, the body is over the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 429, RESOURCE_EXHAUSTED, with `Retry-After` and `Archivist-Rate-Limit-Reset`.
    pub fn resource_exhausted(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self {
            retry_after: Some(retry_after_seconds),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 500, INTERNAL. Log the cause where it happens; the client gets only `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503, UNAVAILABLE.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The gRPC code of the HTTP status, as grpc-gateway maps them.
    pub fn grpc_code(&self) -> i32 {
        grpc_code(self.status)
    }
}

/// grpc-gateway's mapping of an HTTP status to a gRPC code.
pub fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        405 | 501 => 12,
        409 => 6,
        412 => 9,
        413 | 429 => 8,
        499 => 1,
        500 => 13,
        503 => 14,
        504 => 4,
        _ => 2,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = RuntimeError {
            code: self.grpc_code(),
            message: &self.message,
            details: [],
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(axum::http::header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            let value = HeaderValue::from(seconds);
            response.headers_mut().insert("retry-after", value.clone());
            response
                .headers_mut()
                .insert("archivist-rate-limit-reset", value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { what, .. } => {
                Self::already_exists(format!("{what} already exists"))
            }
            err => {
                // The cause is logged, not answered: it may describe the database layout.
                tracing::error!(error = %err.detail(), "storage failure");
                Self {
                    retry_after: Some(1),
                    ..Self::unavailable("the database is not available, retry later")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_grpc_gateway_codes() {
        for (status, code) in [
            (400, 3),
            (401, 16),
            (403, 7),
            (404, 5),
            (409, 6),
            (429, 8),
            (500, 13),
            (503, 14),
        ] {
            assert_eq!(grpc_code(StatusCode::from_u16(status).unwrap()), code);
        }
    }
}
