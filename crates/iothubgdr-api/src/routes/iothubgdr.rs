//! `/archivist/v2/iothubgdr`: start, watch, cancel and delete IoT Hub imports, exactly as
//! the product page shows them (../shared/spec, notes 1 to 7).
//!
//! The connection string arrives in the request body and goes straight to the import
//! engine, which keeps it in memory only. It is never logged, stored, or echoed, not even
//! in a validation error. The same holds for `output_blob_container_uri`, the SAS URL of
//! the customer's blob container (the export path).

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use iothubgdr_import::{ImportRequest, SubmitError};
use iothubgdr_store::{Import, ImportBreakdown, ImportStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{not_found_identity, parse_identity, render_time};
use crate::paging::{self, ListQuery};
use crate::{validate, ApiError, ApiJson, ApiState, Caller};

const KIND: &str = "iothubgdr";
const CANCEL_SUFFIX: &str = ":cancel";
/// `Retry-After` when too many imports wait or run: an import of a small hub takes
/// seconds, so a slot is likely free again by then.
const QUEUE_FULL_RETRY_AFTER_SECONDS: u64 = 10;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/archivist/v2/iothubgdr", get(list).post(create))
        // `{uuid}:cancel` is one path segment, so POST on the item route is the cancel; the
        // two kinds of path allow different methods, which `Allow` says exactly.
        .route(
            "/archivist/v2/iothubgdr/{id}",
            get(get_one)
                .delete(delete)
                .post(cancel)
                .fallback(item_method_not_allowed),
        )
}

const ITEM_ALLOW: &str = "GET, HEAD, DELETE, OPTIONS";
const CANCEL_ALLOW: &str = "POST, OPTIONS";

fn is_cancel_path(raw: &str) -> bool {
    raw.ends_with(CANCEL_SUFFIX)
}

async fn item_method_not_allowed(Path(raw): Path<String>) -> ApiError {
    if raw.contains(':') && !is_cancel_path(&raw) {
        ApiError::not_found("no such route")
    } else if is_cancel_path(&raw) {
        ApiError::method_not_allowed_here(CANCEL_ALLOW)
    } else {
        ApiError::method_not_allowed_here(ITEM_ALLOW)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateImport {
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    display_name: Option<String>,
    /// Wiped from memory when the request is done with it.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    secret: Option<Zeroizing<String>>,
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    arc_home_location_identity: Option<String>,
    /// The SAS URL of the customer's blob container, for the export path: a secret like
    /// `secret`, wiped from memory when the request is done with it, never echoed.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    output_blob_container_uri: Option<Zeroizing<String>>,
}

/// An import as the API shows it: the page's operation.
#[derive(Serialize)]
pub(crate) struct OperationJson {
    identity: String,
    done: bool,
    timestamp_accepted: String,
    timestamp_finished: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<OperationResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<OperationError>,
}

/// How an import's assets divide, beside `number_assets_imported` (additions to the page's
/// fields). `created + changed + unchanged = number_assets_imported`; `tracked_again` and
/// `recreated` are parts of `changed`; `stopped_tracking` counts tracked assets of the hub
/// whose device was gone when the import had read the whole hub.
#[derive(Serialize)]
struct Breakdown {
    number_assets_created: u64,
    number_assets_changed: u64,
    number_assets_unchanged: u64,
    number_assets_stopped_tracking: u64,
    number_assets_tracked_again: u64,
    number_assets_recreated: u64,
}

impl From<ImportBreakdown> for Breakdown {
    fn from(b: ImportBreakdown) -> Self {
        Self {
            number_assets_created: b.created,
            number_assets_changed: b.changed,
            number_assets_unchanged: b.unchanged,
            number_assets_stopped_tracking: b.stopped_tracking,
            number_assets_tracked_again: b.tracked_again,
            number_assets_recreated: b.recreated,
        }
    }
}

#[derive(Serialize)]
struct OperationResult {
    display_name: String,
    number_assets_imported: u64,
    arc_home_location_identity: String,
    status: &'static str,
    /// The hub's device count, once known: lets clients show a percentage. An addition to
    /// the page's fields, which stay as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    number_devices_total: Option<u64>,
    /// Twins not copied because they break IoT Hub's own limits (an addition too).
    number_devices_refused: u64,
    #[serde(flatten)]
    breakdown: Breakdown,
    /// The export path: the hub's export job while the import runs (an addition too),
    /// shown by the server that runs the import.
    #[serde(skip_serializing_if = "Option::is_none")]
    export_job: Option<ExportJobJson>,
}

#[derive(Serialize)]
struct ExportJobJson {
    status: &'static str,
    progress: u8,
}

impl OperationJson {
    /// Adds the export job of an import that is still running on this server.
    fn with_export_job(mut self, engine: Option<&iothubgdr_import::Engine>, id: Uuid) -> Self {
        if let (false, Some(result), Some(engine)) = (self.done, self.result.as_mut(), engine) {
            result.export_job = engine.export_job(id).map(|job| ExportJobJson {
                status: job.status,
                progress: job.progress,
            });
        }
        self
    }
}

#[derive(Serialize)]
struct OperationError {
    display_name: String,
    number_assets_imported: u64,
    arc_home_location_identity: String,
    error_message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    number_devices_total: Option<u64>,
    number_devices_refused: u64,
    #[serde(flatten)]
    breakdown: Breakdown,
}

impl From<Import> for OperationJson {
    fn from(import: Import) -> Self {
        let done = import.status.is_done();
        let location = import.arc_home_location_identity.unwrap_or_default();
        let (result, error) = match import.status {
            ImportStatus::Failed => (
                None,
                Some(OperationError {
                    display_name: import.display_name,
                    number_assets_imported: import.number_assets_imported,
                    arc_home_location_identity: location,
                    error_message: import.error_message.unwrap_or_default(),
                    number_devices_total: import.number_devices_total,
                    number_devices_refused: import.number_devices_refused,
                    breakdown: import.breakdown.into(),
                }),
            ),
            status => (
                Some(OperationResult {
                    display_name: import.display_name,
                    number_assets_imported: import.number_assets_imported,
                    arc_home_location_identity: location,
                    status: status_name(status),
                    number_devices_total: import.number_devices_total,
                    number_devices_refused: import.number_devices_refused,
                    breakdown: import.breakdown.into(),
                    export_job: None,
                }),
                None,
            ),
        };
        Self {
            identity: format!("{KIND}/{}", import.id),
            done,
            timestamp_accepted: render_time(import.accepted_at),
            timestamp_finished: import.finished_at.filter(|_| done).map(render_time),
            result,
            error,
        }
    }
}

fn status_name(status: ImportStatus) -> &'static str {
    match status {
        ImportStatus::Pending => "STATUS_PENDING",
        ImportStatus::InProgress => "STATUS_INPROGRESS",
        ImportStatus::Finished => "STATUS_FINISHED",
        ImportStatus::Cancelled => "STATUS_CANCELLED",
        // A failed import is shown with `error`, which has no status.
        ImportStatus::Failed => "STATUS_FINISHED",
    }
}

#[derive(Serialize)]
struct OperationList {
    operations: Vec<OperationJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// The imports list has no filters; its page token carries an empty query.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ImportQuery {}

impl paging::Filters for ImportQuery {
    fn filter_pairs(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }

    fn attribute_filter_count(&self) -> usize {
        0
    }
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateImport>,
) -> Result<Json<OperationJson>, ApiError> {
    let engine = state.engine()?;
    let display_name = validate::required("display_name", body.display_name.as_deref())?.to_owned();
    let secret = body
        .secret
        .filter(|secret| !validate::is_blank(secret))
        .ok_or_else(|| {
            ApiError::invalid_argument(
                "`secret` is required: POST one of the two connection strings of the IoT Hub",
            )
        })?;
    // Names the field and the length, never the value.
    validate::max_len("secret", &secret)?;
    let container = match body.output_blob_container_uri {
        None => None,
        Some(uri) if validate::is_blank(&uri) => {
            return Err(ApiError::invalid_argument(
                "`output_blob_container_uri` is empty: give the SAS URL of a blob container, or leave the field out to read the hub with twin queries",
            ))
        }
        Some(uri) => Some(uri),
    };
    let location = match body.arc_home_location_identity.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(home_location(&state, &caller, raw).await?),
    };
    let request = ImportRequest {
        display_name,
        secret,
        arc_home_location_identity: location,
    };
    let import = match container {
        None => engine.submit(caller.tenant_id, request).await,
        Some(container) => {
            engine
                .submit_export(caller.tenant_id, request, container)
                .await
        }
    };
    let import = import.map_err(|err| match err {
        SubmitError::ShuttingDown => ApiError::unavailable(err.to_string()),
        // Decided in the database, so every replica enforces the same bound.
        SubmitError::LimitReached { .. } => {
            ApiError::resource_exhausted(err.to_string(), QUEUE_FULL_RETRY_AFTER_SECONDS)
        }
        SubmitError::InvalidContainer(_) => ApiError::invalid_argument(err.to_string()),
        SubmitError::Store(err) => err.into(),
    })?;
    Ok(Json(import.into()))
}

/// `locations/<uuid>` (hyphenated) of one of the caller's locations: 400 naming the field
/// when it is not of that form, 404 when no location of the caller has that identity (as
/// for any other resource that is not the caller's).
async fn home_location(state: &ApiState, caller: &Caller, raw: &str) -> Result<String, ApiError> {
    let id = raw
        .strip_prefix("locations/")
        .and_then(|id| {
            uuid::Uuid::try_parse(id)
                .ok()
                .filter(|uuid| uuid.hyphenated().to_string() == id.to_ascii_lowercase())
        })
        .ok_or_else(|| {
            ApiError::invalid_argument(
                "`arc_home_location_identity` must be locations/<uuid> of one of your locations",
            )
        })?;
    match state.store.location_get(caller.tenant_id, id).await? {
        Some(location) => Ok(format!("locations/{}", location.id)),
        None => Err(ApiError::not_found(format!(
            "`arc_home_location_identity`: locations/{id} not found"
        ))),
    }
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<OperationJson>, ApiError> {
    if is_cancel_path(&raw_id) {
        return Err(ApiError::method_not_allowed_here(CANCEL_ALLOW));
    }
    let id = parse_identity(KIND, &raw_id)?;
    state
        .store
        .import_get(caller.tenant_id, id)
        .await?
        .map(|import| Json(OperationJson::from(import).with_export_job(state.engine.as_ref(), id)))
        .ok_or_else(|| not_found_identity(KIND, &raw_id))
}

async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<OperationJson>, ApiError> {
    let raw_id = raw.strip_suffix(CANCEL_SUFFIX).ok_or_else(|| {
        let message =
            format!("POST /archivist/v2/iothubgdr/<uuid>{CANCEL_SUFFIX} cancels an import");
        if raw.contains(':') {
            // Another verb: no such route at all.
            ApiError::not_found(format!("no such route: {message}"))
        } else {
            ApiError {
                message: format!("method not allowed on this path: {message}"),
                ..ApiError::method_not_allowed_here(ITEM_ALLOW)
            }
        }
    })?;
    let id = parse_identity(KIND, raw_id)?;
    state
        .engine()?
        .cancel(caller.tenant_id, id)
        .await?
        .map(|import| Json(import.into()))
        .ok_or_else(|| not_found_identity(KIND, raw_id))
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if is_cancel_path(&raw_id) {
        return Err(ApiError::method_not_allowed_here(CANCEL_ALLOW));
    }
    let id = parse_identity(KIND, &raw_id)?;
    if state.store.import_delete(caller.tenant_id, id).await? {
        Ok(Json(json!({})))
    } else {
        Err(not_found_identity(KIND, &raw_id))
    }
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let list = ListQuery::parse(raw.as_deref(), &[], &[])?;
    let store = &state.store;
    let tenant = caller.tenant_id;
    paging::answer_list(
        &state.paging,
        KIND,
        &headers,
        &list,
        ImportQuery {},
        |_, page| async move { Ok(store.import_list(tenant, page).await?) },
        |_| async move { Ok(store.import_count(tenant).await?) },
        |items, next_page_token| OperationList {
            operations: items
                .into_iter()
                .map(|import| {
                    let id = import.id;
                    OperationJson::from(import).with_export_job(state.engine.as_ref(), id)
                })
                .collect(),
            next_page_token,
        },
    )
    .await
}
