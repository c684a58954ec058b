//! The iothubgdr web console: a few static files (HTML, CSS, ES modules) compiled into the
//! binary and served under [`PATH_PREFIX`], so a release binary alone serves it.
//!
//! There is no build step: the browser loads the modules as they are written, so a fresh
//! clone, `cargo run` and CI need no Node toolchain. The console is a client of the public
//! API only (token endpoint, `/archivist/v2/...`); it has no endpoint of its own, which is
//! why its paths are not API routes and are left out of the OpenAPI description.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's scripts,
//! styles and requests (no inline script or style, no third party, no framing), so even a
//! rendering mistake cannot run a hub-controlled string.

mod files;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

pub use files::FILES;

/// Where the console lives. Not an API path: the "every route documented" check of the
/// OpenAPI description excludes it.
pub const PATH_PREFIX: &str = "/console/";

/// The policy of every console answer. `connect-src 'self'` keeps the console on this
/// server's API; `frame-ancestors 'none'` refuses clickjacking frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes, to merge into the API router (any state).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent(PATH_PREFIX) }),
        )
        .route("/console/", get(|| async { serve_file("index.html") }))
        .route("/console/{*path}", get(asset))
}

async fn asset(Path(path): Path<String>) -> Response {
    serve_file(&path)
}

fn serve_file(path: &str) -> Response {
    match files::find(path) {
        Some(file) => secured(
            StatusCode::OK,
            file.content_type,
            file.contents.as_bytes().to_vec(),
        ),
        None => secured(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"not found\n".to_vec(),
        ),
    }
}

/// An answer with the console's security headers.
fn secured(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        // Small files: always revalidated, so an upgraded binary is seen at once.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests;
