//! The HTTP API of iothubgdr: the Archivist token endpoint, locations and assets (v2),
//! health, readiness and metrics.
//!
//! # Adding a route module
//! 1. Write `src/routes/<name>.rs` with `pub(crate) fn routes() -> Router<ApiState>` whose
//!    handlers take [`Caller`] (authentication), [`ApiJson`] (bodies), [`paging`] helpers
//!    (lists) and answer `Result<_, ApiError>`.
//! 2. Declare it in `src/routes/mod.rs` and merge it in [`router`] at the marked place.
//! 3. If it needs a handle (the import engine, say), add a field to [`ApiState`] and set it
//!    with a `with_...` builder method so existing callers of [`ApiState::new`] still work.
//!
//! Every layer (metrics, tracing, body limit, the 404/405 fallbacks) is applied in
//! [`router`] after the merge, so merged routes get all of them.

pub mod edge;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod paging;
pub mod rate_limit;
mod routes;
pub mod server;
pub mod validate;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
pub use axum::Router;
use iothubgdr_auth::TokenService;
use iothubgdr_import::Engine;
use iothubgdr_store::Store;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use edge::RequestLimits;
pub use error::ApiError;
pub use extract::{ApiJson, Caller};
pub use metrics::{new_registry, HttpMetrics, SharedRegistry};
pub use paging::PagingKey;
pub use rate_limit::{RateLimitConfig, RateLimits};
pub use routes::{render_time, tenant_identity};
pub use server::{load_tls, ServeOptions};

/// The largest request body accepted; larger ones answer 413.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<TokenService>,
    pub http_metrics: Arc<HttpMetrics>,
    /// The process-wide metrics registry, encoded by `GET /metrics`.
    pub registry: SharedRegistry,
    /// The import engine behind `/archivist/v2/iothubgdr`; without one those routes answer
    /// 503.
    pub engine: Option<Engine>,
    /// Per-tenant and token-endpoint rate limits.
    pub rate_limits: Arc<RateLimits>,
    /// Signs and checks page tokens.
    pub paging: PagingKey,
    bounds: Arc<edge::Bounds>,
}

impl ApiState {
    /// Registers the HTTP metrics in `registry` (see [`metrics`]).
    pub fn new(store: Arc<dyn Store>, tokens: Arc<TokenService>, registry: SharedRegistry) -> Self {
        let http_metrics = match registry.lock() {
            Ok(mut registry) => HttpMetrics::register(&mut registry),
            // A poisoned lock means a thread panicked while registering: keep serving with
            // metrics that are not exported rather than refusing to start.
            Err(poisoned) => HttpMetrics::register(&mut poisoned.into_inner()),
        };
        Self {
            store,
            tokens,
            http_metrics: Arc::new(http_metrics),
            registry,
            engine: None,
            rate_limits: Arc::new(RateLimits::default()),
            // A key of this process only: servers that share a database share theirs with
            // `with_paging_key`.
            paging: PagingKey::random(),
            bounds: Arc::new(edge::Bounds::new(RequestLimits::default())),
        }
    }

    /// Limits requests per tenant and token requests per client and address.
    pub fn with_rate_limits(mut self, config: RateLimitConfig) -> Self {
        self.rate_limits = Arc::new(RateLimits::new(config));
        self
    }

    /// Signs page tokens with `key` (the same on every server of one database).
    pub fn with_paging_key(mut self, key: PagingKey) -> Self {
        self.paging = key;
        self
    }

    /// Bounds each request's time and the requests handled at once.
    pub fn with_request_limits(mut self, limits: RequestLimits) -> Self {
        self.bounds = Arc::new(edge::Bounds::new(limits));
        self
    }

    /// Serves imports with `engine`.
    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    pub(crate) fn engine(&self) -> Result<&Engine, ApiError> {
        self.engine
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("this server runs no import engine"))
    }
}

/// Serves `app` on `listener` with the default edge bounds (see [`server::serve`]) until
/// `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, ServeOptions::default(), shutdown).await
}

/// The whole API.
pub fn router(state: ApiState) -> Router {
    let routes = Router::new()
        .merge(routes::operations::routes())
        .merge(routes::token::routes())
        .merge(routes::locations::routes())
        .merge(routes::assets::routes())
        .merge(routes::events::routes())
        .merge(routes::iothubgdr::routes())
        .merge(routes::openapi::routes())
        // The web console's static files under /console/ (not API routes: no OpenAPI entry).
        .merge(iothubgdr_console::router());
    // ---- more route modules are merged here (e.g. the /archivist/v2/iothubgdr routes) ----

    // Layers run outermost last-added first: tracing, body limit, metrics (which so see the
    // final status), then the request bounds around the handler.
    let served = routes
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.bounds.clone(),
            edge::bound,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.http_metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(
            // Spans name the method and the path only: never headers (Authorization), the
            // query string or bodies; path segments that are not identities or plain names
            // (a pasted connection string, say) are not shown either.
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    tracing::info_span!(
                        "http",
                        method = metrics::method_label(request.method()),
                        path = %validate::loggable_path(request.uri().path()),
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state);
    // `Allow` is added by axum's router on its way out of a 405, so the middleware that
    // reads it (and answers `OPTIONS`) wraps the whole router. Metrics count such an
    // `OPTIONS` as the 405 the router answered.
    Router::new()
        .fallback_service(served)
        .layer(axum::middleware::from_fn(edge::allow))
}
