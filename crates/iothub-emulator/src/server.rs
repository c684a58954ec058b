//! The HTTP routes of the IoT Hub service API and the checks in front of them.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::error::HubError;
use crate::model::DeviceInput;
use crate::query::{self, Selection};
use crate::registry::as_str_bound;
use crate::sas::{self, SasRejection};
use crate::seed::Keys;
use crate::state::Shared;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Right {
    RegistryRead,
    RegistryWrite,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/devices/query", post(query_twins))
        .route("/devices", post(bulk_registry).get(list_devices))
        .route(
            "/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
        )
        .route(
            "/twins/{id}",
            get(get_twin).patch(patch_twin).put(replace_twin),
        )
        .route("/statistics/devices", get(registry_statistics))
        .route("/jobs/create", post(crate::jobs::create_job))
        .route(
            "/jobs/{id}",
            get(crate::jobs::get_job).delete(crate::jobs::cancel_job),
        )
        .fallback(not_found)
        .with_state(shared)
}

async fn not_found() -> HubError {
    HubError::new(
        StatusCode::NOT_FOUND,
        "IotHubNotFound",
        "The requested resource does not exist",
    )
}

pub(crate) fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    right: Right,
) -> Result<(), HubError> {
    let result = check_sas(shared, headers, uri, right);
    if let Err(rejection) = result {
        shared.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(?rejection, path = uri.path(), "request refused");
        return Err(HubError::unauthorized());
    }
    Ok(())
}

fn check_sas(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    right: Right,
) -> Result<(), SasRejection> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(SasRejection::Missing)?;
    let token = sas::parse(header)?;
    let policy = shared
        .policies
        .iter()
        .find(|p| p.name == token.policy)
        .ok_or(SasRejection::UnknownPolicy)?;
    if !sas::signature_matches(&token, policy) {
        return Err(SasRejection::BadSignature);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if token.expiry <= now.max(0) as u64 {
        return Err(SasRejection::Expired);
    }
    let authority = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    if !sas::resource_matches(&token, &shared.hub_host, authority, uri.path()) {
        return Err(SasRejection::WrongResource);
    }
    let allowed = match right {
        Right::RegistryRead => policy.registry_read || policy.registry_write,
        Right::RegistryWrite => policy.registry_write,
    };
    if !allowed {
        return Err(SasRejection::InsufficientRights);
    }
    Ok(())
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, HubError> {
    serde_json::to_vec(value).map_err(|_| {
        HubError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerError",
            "serialization failed",
        )
    })
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, HubError> {
    // Only the position and kind of the problem: serde's message can quote the offending value,
    // which may be a key.
    serde_json::from_slice(body).map_err(|e| {
        HubError::bad_request(format!(
            "Invalid request body: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

#[derive(Deserialize)]
struct QuerySpecification {
    query: Option<String>,
}

const CONTINUATION_PREFIX: &str = "emulator-v1:";

fn encode_continuation(last_device_id: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("{CONTINUATION_PREFIX}{last_device_id}"))
}

fn decode_continuation(token: &str) -> Result<String, HubError> {
    let invalid = || HubError::bad_request("The continuation token is invalid");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(CONTINUATION_PREFIX)
        .map(str::to_string)
        .ok_or_else(invalid)
}

async fn query_twins(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    shared.throttle_query()?;
    let spec: QuerySpecification = parse_body(&body)?;
    let text = spec
        .query
        .ok_or_else(|| HubError::bad_request("The query is missing"))?;
    let parsed = query::parse(&text).map_err(|reason| {
        HubError::new(
            StatusCode::BAD_REQUEST,
            "IotHubQueryFailed",
            format!("Query is invalid or not supported by the emulator: {reason}"),
        )
    })?;
    let hostility = shared.faults().hostility;
    let count_query = matches!(parsed.selection, Selection::Count { .. });
    if let Some(response) = crate::hostile::intercept(&hostility, count_query) {
        shared.stats.queries_served.fetch_add(1, Ordering::Relaxed);
        return Ok(response);
    }
    let page_size = match headers.get("x-ms-max-item-count") {
        None => shared.effective_max_page(),
        Some(value) => {
            let requested: u32 = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    HubError::bad_request("x-ms-max-item-count must be a positive integer")
                })?;
            requested.min(shared.effective_max_page())
        }
    } as usize;
    let after = match headers
        .get("x-ms-continuation")
        .and_then(|v| v.to_str().ok())
    {
        _ if crate::hostile::repeats_continuation(&hostility) => None,
        Some(token) if !token.trim().is_empty() => Some(decode_continuation(token)?),
        _ => None,
    };
    shared.stats.queries_served.fetch_add(1, Ordering::Relaxed);

    if let Selection::Count { alias } = &parsed.selection {
        let total =
            crate::hostile::reported_count(&hostility, shared.registry_read().count(&parsed));
        let body = to_json(&serde_json::json!([{ alias.as_str(): total }]))?;
        let mut response = json_response(StatusCode::OK, body);
        response
            .headers_mut()
            .insert("x-ms-item-type", HeaderValue::from_static("raw"));
        return Ok(response);
    }

    let mut out = Vec::with_capacity(page_size * 900 + 2);
    out.push(b'[');
    let mut served = 0usize;
    let mut last_id: Option<String> = None;
    let mut more = false;
    let mut failed = false;
    let ranged;
    {
        // The page starts after the continuation's id or at the query's own lower bound,
        // whichever is later, and stops at the query's upper bound.
        let (lower, upper) = parsed.device_id_bounds();
        ranged = lower != std::ops::Bound::Unbounded || upper != std::ops::Bound::Unbounded;
        let lower = match &after {
            Some(after) => max_lower_bound(as_str_bound(&lower), after),
            None => as_str_bound(&lower),
        };
        let registry = shared.registry_read();
        registry.scan_range(lower, as_str_bound(&upper), Keys::Skip, |record| {
            if !parsed.matches(record) {
                return ControlFlow::Continue(());
            }
            if served == page_size {
                more = true;
                return ControlFlow::Break(());
            }
            if served > 0 {
                out.push(b',');
            }
            if crate::hostile::write_twin(&hostility, served, &record.twin_json(), &mut out)
                .is_err()
            {
                failed = true;
                return ControlFlow::Break(());
            }
            served += 1;
            last_id = Some(record.device_id.clone());
            ControlFlow::Continue(())
        });
    }
    if failed {
        return Err(HubError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerError",
            "serialization failed",
        ));
    }
    out.push(b']');
    shared
        .stats
        .twins_served
        .fetch_add(served as u64, Ordering::Relaxed);
    if ranged {
        shared
            .stats
            .ranged_twins_served
            .fetch_add(served as u64, Ordering::Relaxed);
    }
    let mut response = json_response(StatusCode::OK, out);
    let response_headers = response.headers_mut();
    response_headers.insert("x-ms-item-type", HeaderValue::from_static("twin"));
    if crate::hostile::repeats_continuation(&hostility) {
        more = true;
        last_id = Some("hostile-loop".to_owned());
    }
    if let (true, Some(last)) = (more, last_id) {
        if let Ok(value) = HeaderValue::from_str(&encode_continuation(&last)) {
            response_headers.insert("x-ms-continuation", value);
        }
    }
    Ok(response)
}

/// The later of a query's lower bound and "after the continuation's id".
fn max_lower_bound<'a>(
    lower: std::ops::Bound<&'a str>,
    after: &'a str,
) -> std::ops::Bound<&'a str> {
    use std::ops::Bound;
    match lower {
        Bound::Included(at) if at > after => lower,
        Bound::Excluded(at) if at >= after => lower,
        _ => Bound::Excluded(after),
    }
}

async fn get_device(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    let registry = shared.registry_read();
    let record = registry
        .get(&id)
        .ok_or_else(|| HubError::device_not_found(&id))?;
    Ok(json_response(
        StatusCode::OK,
        to_json(&record.device_json())?,
    ))
}

#[derive(Deserialize)]
struct ListParams {
    top: Option<u32>,
}

/// `GET /devices?top=N`: the deprecated listing the SDKs still expose; at most 1000 devices,
/// as the service documents for `get_devices` ("Any value outside the range of 1-1000 is
/// considered to be 1000").
async fn list_devices(
    State(shared): State<Arc<Shared>>,
    UrlQuery(params): UrlQuery<ListParams>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    let top = params
        .top
        .filter(|t| (1..=1000).contains(t))
        .unwrap_or(1000) as usize;
    let mut out = vec![b'['];
    let mut served = 0usize;
    shared
        .registry_read()
        .scan_after(None, Keys::Derive, |record| {
            if served == top {
                return ControlFlow::Break(());
            }
            if served > 0 {
                out.push(b',');
            }
            if serde_json::to_writer(&mut out, &record.device_json()).is_err() {
                return ControlFlow::Break(());
            }
            served += 1;
            ControlFlow::Continue(())
        });
    out.push(b']');
    Ok(json_response(StatusCode::OK, out))
}

fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

async fn put_device(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryWrite)?;
    let input: DeviceInput = parse_body(&body)?;
    if let Some(body_id) = &input.device_id {
        if body_id != &id {
            return Err(HubError::bad_request(
                "The deviceId in the body does not match the URL",
            ));
        }
    }
    let mut registry = shared.registry_write();
    let record = match if_match(&headers) {
        None => registry.create(&id, &input)?,
        Some(etag) => registry.update(&id, &input, etag)?,
    };
    Ok(json_response(
        StatusCode::OK,
        to_json(&record.device_json())?,
    ))
}

async fn delete_device(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryWrite)?;
    let etag = if_match(&headers).unwrap_or("*").to_string();
    shared.registry_write().delete(&id, &etag)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_twin(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    let registry = shared.registry_read();
    let record = registry
        .get(&id)
        .ok_or_else(|| HubError::device_not_found(&id))?;
    Ok(json_response(StatusCode::OK, to_json(&record.twin_json())?))
}

async fn change_twin(
    shared: Arc<Shared>,
    id: String,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
    replace: bool,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryWrite)?;
    let patch: Value = parse_body(&body)?;
    let record = shared
        .registry_write()
        .change_twin(&id, &patch, if_match(&headers), replace)?;
    Ok(json_response(StatusCode::OK, to_json(&record.twin_json())?))
}

async fn patch_twin(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, HubError> {
    change_twin(shared, id, headers, uri, body, false).await
}

async fn replace_twin(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, HubError> {
    change_twin(shared, id, headers, uri, body, true).await
}

async fn registry_statistics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryRead)?;
    let all = query::parse("SELECT COUNT() AS n FROM devices").map_err(HubError::bad_request)?;
    let disabled = query::parse("SELECT COUNT() AS n FROM devices WHERE status = 'disabled'")
        .map_err(HubError::bad_request)?;
    let registry = shared.registry_read();
    let total = registry.count(&all);
    let disabled = registry.count(&disabled);
    let body = serde_json::json!({
        "totalDeviceCount": total,
        "enabledDeviceCount": total - disabled,
        "disabledDeviceCount": disabled,
    });
    Ok(json_response(StatusCode::OK, to_json(&body)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkEntry {
    id: Option<String>,
    import_mode: Option<String>,
    e_tag: Option<String>,
    #[serde(rename = "twinETag")]
    twin_e_tag: Option<String>,
    #[serde(flatten)]
    identity: DeviceInput,
    tags: Option<Value>,
    properties: Option<Value>,
}

/// The documented maximum of a bulk registry call: "A maximum of 100 devices can be specified
/// per invocation" (<https://learn.microsoft.com/rest/api/iothub/service/bulk-registry/update-registry>).
pub(crate) const MAX_BULK_DEVICES: usize = 100;

async fn bulk_registry(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, HubError> {
    authorize(&shared, &headers, &uri, Right::RegistryWrite)?;
    let entries: Vec<BulkEntry> = parse_body(&body)?;
    if entries.is_empty() || entries.len() > MAX_BULK_DEVICES {
        return Err(HubError::new(
            StatusCode::BAD_REQUEST,
            "TooManyDevices",
            format!("A bulk operation takes between 1 and {MAX_BULK_DEVICES} devices"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for entry in &entries {
        let id = entry.id.as_deref().unwrap_or("");
        if id.is_empty() {
            return Err(HubError::bad_request("Every bulk entry needs an id"));
        }
        if !seen.insert(id) {
            return Err(HubError::bad_request(format!(
                "The device {id} appears more than once in the bulk operation"
            )));
        }
    }
    let mut errors = Vec::new();
    let mut registry = shared.registry_write();
    for entry in &entries {
        let id = entry.id.as_deref().unwrap_or("");
        let mode = entry.import_mode.as_deref().unwrap_or("createOrUpdate");
        let etag = entry.e_tag.as_deref().unwrap_or("*");
        let outcome: Result<(), HubError> = match mode.to_ascii_lowercase().as_str() {
            "create" => registry.create(id, &entry.identity).map(|_| ()),
            "update" | "createorupdate" => {
                if registry.get(id).is_some() {
                    registry.update(id, &entry.identity, "*").map(|_| ())
                } else {
                    registry.create(id, &entry.identity).map(|_| ())
                }
            }
            "updateifmatchetag" => registry.update(id, &entry.identity, etag).map(|_| ()),
            "delete" => registry.delete(id, "*"),
            "deleteifmatchetag" => registry.delete(id, etag),
            "updatetwin" | "updatetwinifmatchetag" => {
                let patch =
                    serde_json::json!({ "tags": entry.tags, "properties": entry.properties });
                let twin_etag = entry.twin_e_tag.as_deref().unwrap_or("*");
                let condition =
                    (mode.eq_ignore_ascii_case("updateTwinIfMatchETag")).then_some(twin_etag);
                registry
                    .change_twin(id, &patch, condition, false)
                    .map(|_| ())
            }
            _ => Err(HubError::bad_request(format!("Unknown importMode {mode}"))),
        };
        if let Err(error) = outcome {
            errors.push(serde_json::json!({
                "deviceId": id,
                "errorCode": error.code,
                "errorStatus": error.text,
                "moduleId": null,
                "operation": mode,
            }));
        }
    }
    drop(registry);
    let successful = errors.is_empty();
    let body = serde_json::json!({
        "isSuccessful": successful,
        "errors": errors,
        "warnings": [],
    });
    // The service answers 400 with the same body when some entries failed; the SDKs accept both.
    let status = if successful {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(json_response(status, to_json(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::etag_matches;

    #[test]
    fn continuation_tokens_round_trip_and_reject_garbage() {
        let token = encode_continuation("device-000042");
        assert_eq!(decode_continuation(&token).unwrap(), "device-000042");
        assert!(decode_continuation("not base64 !!").is_err());
        assert!(
            decode_continuation(&base64::engine::general_purpose::STANDARD.encode("x")).is_err()
        );
        assert!(etag_matches("\"*\"", "abc"));
    }
}
