//! A hostile hub: twin query answers no real IoT Hub would give, for tests of the clients
//! that must refuse them (see [`Hostility`]).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::model::TwinJson;

/// How the twin query misbehaves. Set it in [`crate::Faults::hostility`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Hostility {
    #[default]
    None,
    /// Every twin page is the first page and carries the same continuation token: a client
    /// that follows tokens pages forever.
    RepeatedContinuation,
    /// `SELECT COUNT()` answers this number; the pages hold the real devices.
    ReportedCount(u64),
    /// Twin pages are one JSON array of this many bytes (a twin with a huge tag), streamed
    /// in chunks without `Content-Length`.
    HugePage { bytes: u64 },
    /// Every query (count and pages) answers `307 Temporary Redirect` to this URL.
    Redirect { location: String },
    /// In each page, every `every`-th twin carries a tag of `tag_bytes` bytes and the twin
    /// after it a device id that breaks IoT Hub's rules (too long, control characters).
    OversizedTwins { every: u32, tag_bytes: usize },
}

/// The whole answer, when the hostility replaces it.
pub(crate) fn intercept(hostility: &Hostility, count_query: bool) -> Option<Response> {
    match hostility {
        Hostility::Redirect { location } => {
            let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(value) = HeaderValue::from_str(location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Some(response)
        }
        Hostility::HugePage { bytes } if !count_query => Some(huge_page(*bytes)),
        _ => None,
    }
}

fn huge_page(bytes: u64) -> Response {
    const HEAD: &[u8] = br#"[{"deviceId":"huge-page","tags":{"pad":""#;
    const TAIL: &[u8] = br#""}}]"#;
    const CHUNK: usize = 64 * 1024;
    let padding = bytes.saturating_sub((HEAD.len() + TAIL.len()) as u64);
    let chunk = Bytes::from(vec![b'a'; CHUNK]);
    let full_chunks = padding / CHUNK as u64;
    let rest = (padding % CHUNK as u64) as usize;
    let chunks = std::iter::once(Bytes::from_static(HEAD))
        .chain((0..full_chunks).map(move |_| chunk.clone()))
        .chain(std::iter::once(Bytes::from(vec![b'a'; rest])))
        .chain(std::iter::once(Bytes::from_static(TAIL)))
        .map(Ok::<_, Infallible>);
    let mut response = Body::from_stream(futures::stream::iter(chunks)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The count the hub reports.
pub(crate) fn reported_count(hostility: &Hostility, real: u64) -> u64 {
    match hostility {
        Hostility::ReportedCount(reported) => *reported,
        _ => real,
    }
}

/// Whether every page restarts from the top with one fixed token.
pub(crate) fn repeats_continuation(hostility: &Hostility) -> bool {
    *hostility == Hostility::RepeatedContinuation
}

/// Writes the `index`-th twin of a page, spoiled when the hostility says so.
pub(crate) fn write_twin(
    hostility: &Hostility,
    index: usize,
    twin: &TwinJson<'_>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let Hostility::OversizedTwins { every, tag_bytes } = hostility else {
        return serde_json::to_writer(out, twin);
    };
    let every = (*every).max(2) as usize;
    let position = index % every;
    if position > 1 {
        return serde_json::to_writer(out, twin);
    }
    let mut value = serde_json::to_value(twin)?;
    if position == 0 {
        value["tags"] = serde_json::json!({ "blob": "x".repeat(*tag_bytes) });
    } else {
        let id = value["deviceId"].as_str().unwrap_or_default().to_owned();
        value["deviceId"] =
            serde_json::Value::String(format!("{id}\u{1b}[31m\n\u{202e}{}", "z".repeat(200)));
    }
    serde_json::to_writer(out, &value)
}
