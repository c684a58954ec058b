//! Asset events (Archivist v2): record one (`RecordEvidence`/`Record`,
//! `Builtin`/`StopTracking`/`StartTracking`), get one, and list one asset's or every
//! asset's (`assets/-/events`) with the swagger's filters. Events are immutable: there is no
//! update and no delete.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use iothubgdr_store::history::{
    BEHAVIOUR_BUILTIN, BEHAVIOUR_RECORD_EVIDENCE, OPERATION_RECORD, OPERATION_START_TRACKING,
    OPERATION_STOP_TRACKING,
};
use iothubgdr_store::{
    AttributeFilter, AttributeMatch, Attributes, Event, EventFilter, EventWrite, NewEvent, Page,
    Principal, PrincipalFilter,
};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::assets::{
    check_order_by, confirmation_matches, parse_time, principal_of, CONFIRMATION_STATUS,
};
use super::{not_found_identity, parse_identity, tenant_identity};
use crate::paging::{self, ListQuery};
use crate::{validate, ApiError, ApiJson, ApiState, Caller};

const KIND: &str = "events";
/// The asset identity that stands for every asset of the tenant in a list.
const ALL_ASSETS: &str = "-";
const EVENT_ATTRIBUTES: &str = "event_attributes";
const ASSET_ATTRIBUTES: &str = "asset_attributes";

/// The plain filters of an events list (the swagger's, plus `order_by`).
const PLAIN_FILTERS: &[&str] = &[
    "behaviour",
    "operation",
    "confirmation_status",
    "order_by",
    "principal_declared.issuer",
    "principal_declared.subject",
    "principal_declared.display_name",
    "principal_declared.email",
    "principal_accepted.issuer",
    "principal_accepted.subject",
    "principal_accepted.display_name",
    "principal_accepted.email",
    "timestamp_accepted_since",
    "timestamp_accepted_before",
    "timestamp_committed_since",
    "timestamp_committed_before",
    "timestamp_declared_since",
    "timestamp_declared_before",
];

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/archivist/v2/assets/{id}/events", get(list).post(create))
        // Every asset's events: a list only (posting needs one asset).
        .route("/archivist/v2/assets/-/events", get(list_all))
        .route("/archivist/v2/assets/{id}/events/{event_id}", get(get_one))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEvent {
    behaviour: Option<String>,
    operation: Option<String>,
    #[serde(default)]
    event_attributes: Attributes,
    #[serde(default)]
    asset_attributes: Attributes,
    timestamp_declared: Option<String>,
    principal_declared: Option<Principal>,
}

/// An event as the Archivist shows it.
#[derive(Serialize)]
struct EventJson {
    identity: String,
    asset_identity: String,
    event_attributes: Attributes,
    asset_attributes: Attributes,
    operation: String,
    behaviour: String,
    timestamp_declared: String,
    timestamp_accepted: String,
    /// Nothing waits on a ledger here: an event is committed when it is accepted.
    timestamp_committed: String,
    principal_declared: Principal,
    principal_accepted: Principal,
    confirmation_status: &'static str,
    transaction_id: &'static str,
    block_number: u64,
    transaction_index: u64,
    from: &'static str,
    tenant_identity: String,
}

impl From<Event> for EventJson {
    fn from(event: Event) -> Self {
        Self {
            identity: format!("assets/{}/events/{}", event.asset_id, event.id),
            asset_identity: format!("assets/{}", event.asset_id),
            event_attributes: event.event_attributes,
            asset_attributes: event.asset_attributes,
            operation: event.operation,
            behaviour: event.behaviour,
            timestamp_declared: render_event_time(event.timestamp_declared),
            timestamp_accepted: render_event_time(event.timestamp_accepted),
            timestamp_committed: render_event_time(event.timestamp_accepted),
            principal_declared: event.principal_declared,
            principal_accepted: event.principal_accepted,
            confirmation_status: CONFIRMATION_STATUS,
            transaction_id: "",
            block_number: 0,
            transaction_index: 0,
            from: "",
            tenant_identity: tenant_identity(event.tenant_id),
        }
    }
}

#[derive(Serialize)]
struct EventList {
    events: Vec<EventJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// The query an events page token carries: the asset (or none for `-`) and the filters as
/// asked, so the token alone continues the same list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct EventQuery {
    #[serde(rename = "s", default)]
    asset: Option<Uuid>,
    #[serde(rename = "f", default)]
    filters: BTreeMap<String, String>,
    #[serde(rename = "a", default)]
    attributes: Vec<(String, AttributeMatch)>,
}

impl paging::Filters for EventQuery {
    fn filter_pairs(&self) -> Vec<(&str, &str)> {
        self.filters
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .chain(
                self.attributes
                    .iter()
                    .map(|(_, test)| paging::match_pair(test)),
            )
            .collect()
    }

    fn attribute_filter_count(&self) -> usize {
        self.attributes.len()
    }
}

/// Event times with milliseconds: `at_time` and the `timestamp_*` filters take what an
/// event shows and must not fall before it.
fn render_event_time(at: OffsetDateTime) -> String {
    let ms = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap_or(at);
    ms.format(&Rfc3339)
        .unwrap_or_else(|_| ms.unix_timestamp().to_string())
}

/// Which behaviours and operations can be posted, and whether the asset must list the
/// behaviour. `Builtin` belongs to every asset (any asset can be untracked).
fn check_supported(behaviour: &str, operation: &str) -> Result<(), ApiError> {
    match (behaviour, operation) {
        (BEHAVIOUR_RECORD_EVIDENCE, OPERATION_RECORD)
        | (BEHAVIOUR_BUILTIN, OPERATION_STOP_TRACKING | OPERATION_START_TRACKING) => Ok(()),
        _ => Err(ApiError::invalid_argument(
            "unsupported behaviour and operation: this server records RecordEvidence/Record, \
             Builtin/StopTracking and Builtin/StartTracking",
        )),
    }
}

fn parse_asset(raw: &str) -> Result<Uuid, ApiError> {
    parse_identity("assets", raw)
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw_asset): Path<String>,
    ApiJson(body): ApiJson<CreateEvent>,
) -> Result<Json<EventJson>, ApiError> {
    let asset_id = parse_asset(&raw_asset)?;
    // An asset the caller cannot see answers 404 whatever the body says.
    let asset = state
        .store
        .asset_get(caller.tenant_id, asset_id)
        .await?
        .ok_or_else(|| not_found_identity("assets", &raw_asset))?;
    let behaviour = validate::required("behaviour", body.behaviour.as_deref())?.to_owned();
    let operation = validate::required("operation", body.operation.as_deref())?.to_owned();
    check_supported(&behaviour, &operation)?;
    validate::attributes(EVENT_ATTRIBUTES, &body.event_attributes)?;
    validate::attributes(ASSET_ATTRIBUTES, &body.asset_attributes)?;
    let timestamp_declared = body
        .timestamp_declared
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                ApiError::invalid_argument(
                    "field `timestamp_declared` must be an RFC 3339 time such as 2024-05-06T07:08:09Z",
                )
            })
        })
        .transpose()?;
    if let Some(principal) = &body.principal_declared {
        for (field, value) in [
            ("principal_declared.issuer", &principal.issuer),
            ("principal_declared.subject", &principal.subject),
            ("principal_declared.display_name", &principal.display_name),
            ("principal_declared.email", &principal.email),
        ] {
            validate::max_len(field, value)?;
        }
    }
    if behaviour != BEHAVIOUR_BUILTIN && !asset.behaviours.contains(&behaviour) {
        return Err(ApiError::invalid_argument(format!(
            "behaviour `{behaviour}` is not enabled on this asset"
        )));
    }
    let new = NewEvent {
        behaviour,
        operation,
        event_attributes: body.event_attributes,
        asset_attributes: body.asset_attributes,
        timestamp_declared,
        principal_declared: body.principal_declared,
        principal_accepted: principal_of(&caller),
    };
    match state
        .store
        .event_create(caller.tenant_id, asset_id, new)
        .await?
    {
        EventWrite::Recorded(event) => Ok(Json((*event).into())),
        EventWrite::NoAsset => Err(not_found_identity("assets", &raw_asset)),
        EventWrite::Refused(why) => Err(ApiError::invalid_argument(why.to_string())),
    }
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path((raw_asset, raw_event)): Path<(String, String)>,
) -> Result<Json<EventJson>, ApiError> {
    let asset_id = parse_asset(&raw_asset)?;
    let id = parse_identity(KIND, &raw_event)?;
    state
        .store
        .event_get(caller.tenant_id, asset_id, id)
        .await?
        .map(|event| Json(event.into()))
        .ok_or_else(|| not_found_identity(KIND, &raw_event))
}

fn principal_filter(filters: &BTreeMap<String, String>, prefix: &str) -> PrincipalFilter {
    let get = |field: &str| filters.get(&format!("{prefix}.{field}")).cloned();
    PrincipalFilter {
        issuer: get("issuer"),
        subject: get("subject"),
        display_name: get("display_name"),
        email: get("email"),
    }
}

/// The store's filter for a query; `None` when it can match no event.
fn event_filter(query: &EventQuery) -> Result<Option<EventFilter>, ApiError> {
    let filters = &query.filters;
    check_order_by(filters.get("order_by"))?;
    // Every filter is checked, also when another one already matches nothing.
    let matches_any = confirmation_matches(filters.get("confirmation_status"))?;
    let time = |name: &str| {
        filters
            .get(name)
            .map(|value| parse_time(name, value))
            .transpose()
    };
    let map = |name: &str| {
        AttributeFilter(
            query
                .attributes
                .iter()
                .filter(|(map, _)| map == name)
                .map(|(_, test)| test.clone())
                .collect(),
        )
    };
    // Committed is accepted here, so its bounds narrow the accepted time.
    let accepted_since = latest(
        time("timestamp_accepted_since")?,
        time("timestamp_committed_since")?,
    );
    let accepted_before = earliest(
        time("timestamp_accepted_before")?,
        time("timestamp_committed_before")?,
    );
    let declared_since = time("timestamp_declared_since")?;
    let declared_before = time("timestamp_declared_before")?;
    if !matches_any {
        return Ok(None);
    }
    Ok(Some(EventFilter {
        asset_id: query.asset,
        behaviour: filters.get("behaviour").cloned(),
        operation: filters.get("operation").cloned(),
        principal_declared: principal_filter(filters, "principal_declared"),
        principal_accepted: principal_filter(filters, "principal_accepted"),
        accepted_since,
        accepted_before,
        declared_since,
        declared_before,
        event_attributes: map(EVENT_ATTRIBUTES),
        asset_attributes: map(ASSET_ATTRIBUTES),
    }))
}

fn latest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn list_all(
    state: State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    raw: RawQuery,
) -> Result<Response, ApiError> {
    list(state, caller, headers, Path(ALL_ASSETS.to_owned()), raw).await
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(raw_asset): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let asset = if raw_asset == ALL_ASSETS {
        None
    } else {
        let id = parse_asset(&raw_asset)?;
        // Another tenant's asset, or none: 404, as for the asset itself.
        if state.store.asset_get(caller.tenant_id, id).await?.is_none() {
            return Err(not_found_identity("assets", &raw_asset));
        }
        Some(id)
    };
    let list = ListQuery::parse(
        raw.as_deref(),
        PLAIN_FILTERS,
        &[EVENT_ATTRIBUTES, ASSET_ATTRIBUTES],
    )?;
    let asked = EventQuery {
        asset,
        filters: list.filters.clone(),
        attributes: list.attributes.clone(),
    };
    // Bad values answer 400 before any token is made from them.
    event_filter(&asked)?;
    if list.page_token.is_some() {
        // A token continues the list it was made for, and no other asset's.
        let (from_token, _) = paging::resolve(&state.paging, KIND, &list, asked.clone())?;
        if from_token.asset != asset {
            return Err(ApiError::invalid_argument(
                "query parameter `page_token` belongs to another asset's events",
            ));
        }
    }
    let store = &state.store;
    let tenant = caller.tenant_id;
    paging::answer_list(
        &state.paging,
        KIND,
        &headers,
        &list,
        asked,
        |query, page| async move {
            match event_filter(&query)? {
                Some(filter) => Ok(store.event_list(tenant, &filter, page).await?),
                None => Ok(Page {
                    items: Vec::new(),
                    next_before_seq: None,
                }),
            }
        },
        |query| async move {
            match event_filter(&query)? {
                Some(filter) => Ok(store.event_count(tenant, &filter).await?),
                None => Ok(0),
            }
        },
        |items, next_page_token| EventList {
            events: items.into_iter().map(EventJson::from).collect(),
            next_page_token,
        },
    )
    .await
}
