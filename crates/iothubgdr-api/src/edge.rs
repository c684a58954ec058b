//! Request-level bounds of the HTTP edge: a deadline for every request, a bound on requests
//! handled at once, and `Allow` on `OPTIONS` and 405 answers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::ApiError;

/// How long a request may take and how many are handled at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// From the moment the head is read to the answer, body upload included: a client that
    /// trickles its body, or a handler stuck on the database, is answered 504.
    pub request_timeout: Duration,
    /// Requests handled at once, all connections together; more wait for a slot within
    /// their deadline, then are answered 503.
    pub max_concurrent_requests: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 256,
        }
    }
}

/// The shared state of [`bound`].
#[derive(Debug)]
pub(crate) struct Bounds {
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl Bounds {
    pub(crate) fn new(limits: RequestLimits) -> Self {
        Self {
            timeout: limits.request_timeout,
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
        }
    }
}

/// Middleware: one slot and one deadline per request.
pub(crate) async fn bound(
    State(bounds): State<Arc<Bounds>>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = tokio::time::Instant::now() + bounds.timeout;
    let slot = tokio::time::timeout_at(deadline, bounds.slots.clone().acquire_owned()).await;
    let Ok(Ok(_slot)) = slot else {
        return ApiError {
            retry_after: Some(1),
            ..ApiError::unavailable("the server is busy: retry later")
        }
        .into_response();
    };
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request was not done within {} s and was stopped",
                bounds.timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Middleware: a 405 names the methods the path serves in `Allow` (axum's router computes
/// them), `OPTIONS` among them; `OPTIONS` on a path that exists answers 204 with that
/// `Allow`, without authentication.
pub(crate) async fn allow(request: Request, next: Next) -> Response {
    let is_options = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let mut methods: Vec<String> = response
        .headers()
        .get(header::ALLOW)
        .and_then(|value| value.to_str().ok())
        .map(|text| {
            text.split(',')
                .map(|method| method.trim().to_owned())
                .filter(|method| !method.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !methods.iter().any(|method| method == "OPTIONS") {
        methods.push("OPTIONS".to_owned());
    }
    let allow = HeaderValue::from_str(&methods.join(", "))
        .unwrap_or_else(|_| HeaderValue::from_static("OPTIONS"));
    if is_options {
        return (StatusCode::NO_CONTENT, [(header::ALLOW, allow)]).into_response();
    }
    response.headers_mut().insert(header::ALLOW, allow);
    response
}
