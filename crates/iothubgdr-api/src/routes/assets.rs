//! Assets (Archivist v2): create (with its `NewAsset` event), get one (also as it was at a
//! time, `at_time`), list with `tracked`, `attributes.<name>` filters and their wildcards.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use iothubgdr_store::{
    Asset, AssetFilter, AttributeFilter, AttributeMatch, Attributes, NewAsset, Page, Principal,
};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{not_found_identity, parse_identity, render_time, tenant_identity};
use crate::paging::{self, ListQuery, ATTRIBUTES};
use crate::{validate, ApiError, ApiJson, ApiState, Caller};

const KIND: &str = "assets";
/// The one proof mechanism this server keeps (a hash chain in its own database): it has no
/// ledger, so `MERKLE_LOG` (and the retired `KHIPU`) would be a promise it cannot keep.
pub(crate) const PROOF_MECHANISM: &str = "SIMPLE_HASH";
/// Every asset and event is stored when it is accepted; nothing waits on a ledger.
pub(crate) const CONFIRMATION_STATUS: &str = "CONFIRMED";

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/archivist/v2/assets", get(list).post(create))
        .route("/archivist/v2/assets/{id}", get(get_one))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAsset {
    #[serde(default)]
    behaviours: Vec<String>,
    #[serde(default)]
    attributes: Attributes,
    /// Public assets need the Archivist's public interface, which this server does not
    /// have: `true` is refused rather than ignored.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    public: Option<bool>,
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    proof_mechanism: Option<String>,
}

/// An asset as the Archivist shows it.
#[derive(Serialize)]
pub struct AssetJson {
    pub identity: String,
    pub behaviours: Vec<String>,
    pub attributes: Attributes,
    pub confirmation_status: &'static str,
    pub tracked: &'static str,
    pub owner: String,
    pub at_time: String,
    pub storage_integrity: &'static str,
    pub proof_mechanism: &'static str,
    pub chain_id: String,
    pub public: bool,
    pub tenant_identity: String,
}

impl From<Asset> for AssetJson {
    fn from(asset: Asset) -> Self {
        Self {
            identity: format!("{KIND}/{}", asset.id),
            behaviours: asset.behaviours,
            attributes: asset.attributes,
            confirmation_status: CONFIRMATION_STATUS,
            tracked: if asset.tracked {
                "TRACKED"
            } else {
                "NOT_TRACKED"
            },
            owner: String::new(),
            at_time: render_time(asset.at_time),
            storage_integrity: "TENANT_STORAGE",
            proof_mechanism: PROOF_MECHANISM,
            chain_id: asset.tenant_id.to_string(),
            public: false,
            tenant_identity: tenant_identity(asset.tenant_id),
        }
    }
}

#[derive(Serialize)]
struct AssetList {
    assets: Vec<AssetJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// The query an assets page token carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct AssetQuery {
    #[serde(rename = "a", default)]
    attributes: Vec<AttributeMatch>,
    /// `Some(true)` tracked only (the default), `Some(false)` stopped only, `None` both.
    #[serde(rename = "t", default)]
    tracked: Option<bool>,
    /// A filter that no asset here can match (`confirmation_status=PENDING`, say).
    #[serde(rename = "x", default)]
    nothing: bool,
}

impl paging::Filters for AssetQuery {
    fn filter_pairs(&self) -> Vec<(&str, &str)> {
        self.attributes.iter().map(paging::match_pair).collect()
    }

    fn attribute_filter_count(&self) -> usize {
        self.attributes.len()
    }
}

impl AssetQuery {
    fn filter(&self) -> AssetFilter {
        AssetFilter {
            attributes: AttributeFilter(self.attributes.clone()),
            tracked: self.tracked,
        }
    }
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateAsset>,
) -> Result<Json<AssetJson>, ApiError> {
    for (index, behaviour) in body.behaviours.iter().enumerate() {
        validate::required(&format!("behaviours[{index}]"), Some(behaviour))?;
    }
    validate::attributes("attributes", &body.attributes)?;
    if body.public == Some(true) {
        return Err(ApiError::invalid_argument(
            "field `public`: public assets are not supported by this server; omit it or send false",
        ));
    }
    if let Some(mechanism) = &body.proof_mechanism {
        if mechanism != PROOF_MECHANISM && mechanism != "PROOF_MECHANISM_UNSPECIFIED" {
            return Err(ApiError::invalid_argument(format!(
                "field `proof_mechanism`: this server supports only {PROOF_MECHANISM}"
            )));
        }
    }
    let asset = state
        .store
        .asset_create(
            caller.tenant_id,
            NewAsset {
                behaviours: body.behaviours,
                attributes: body.attributes,
                principal: principal_of(&caller),
            },
        )
        .await?;
    Ok(Json(asset.into()))
}

/// The principal that accepted what a caller posts: its app registration.
pub(crate) fn principal_of(caller: &Caller) -> Principal {
    Principal {
        issuer: iothubgdr_auth::token::ISSUER.to_owned(),
        subject: caller.client_id.clone(),
        display_name: caller.display_name.clone(),
        email: String::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    at_time: Option<String>,
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AssetJson>, ApiError> {
    let query: GetQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::invalid_argument("the query string takes only `at_time`"))?;
    let id = parse_identity(KIND, &raw_id)?;
    let asset = match query.at_time.as_deref().filter(|t| !t.is_empty()) {
        None => state.store.asset_get(caller.tenant_id, id).await?,
        Some(at) => {
            let at = parse_time("at_time", at)?;
            state.store.asset_get_at(caller.tenant_id, id, at).await?
        }
    };
    asset
        .map(|asset| Json(asset.into()))
        .ok_or_else(|| not_found_identity(KIND, &raw_id))
}

/// An RFC 3339 time from a query parameter; 400 naming the parameter otherwise.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        ApiError::invalid_argument(format!(
            "query parameter `{name}` must be an RFC 3339 time such as 2024-05-06T07:08:09Z"
        ))
    })
}

/// `confirmation_status`: everything here is confirmed, so a filter on another status
/// matches nothing. Returns whether the filter matches everything.
pub(crate) fn confirmation_matches(value: Option<&String>) -> Result<bool, ApiError> {
    match value.map(String::as_str) {
        None | Some("CONFIRMATION_STATUS_UNSPECIFIED") | Some(CONFIRMATION_STATUS) => Ok(true),
        Some("PENDING" | "FAILED") => Ok(false),
        Some(_) => Err(ApiError::invalid_argument(
            "query parameter `confirmation_status` must be one of \
             CONFIRMATION_STATUS_UNSPECIFIED, PENDING, CONFIRMED, FAILED",
        )),
    }
}

/// `order_by`: only the default order (newest first) is offered.
pub(crate) fn check_order_by(value: Option<&String>) -> Result<(), ApiError> {
    match value.map(String::as_str) {
        None | Some("DEFAULT") => Ok(()),
        Some(_) => Err(ApiError::invalid_argument(
            "query parameter `order_by`: this server supports only DEFAULT (newest first)",
        )),
    }
}

/// `tracked`: `TRACKED` (the default, as the Archivist), `NOT_TRACKED` (or `STOPPED`), or
/// `ANY` (both).
fn tracked_filter(value: Option<&String>) -> Result<Option<bool>, ApiError> {
    match value.map(String::as_str) {
        None | Some("TRACKED_STATUS_UNSPECIFIED") | Some("TRACKED") => Ok(Some(true)),
        Some("STOPPED") | Some("NOT_TRACKED") => Ok(Some(false)),
        Some("ANY") => Ok(None),
        Some(_) => Err(ApiError::invalid_argument(
            "query parameter `tracked` must be one of TRACKED, NOT_TRACKED (or STOPPED), ANY",
        )),
    }
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let list = ListQuery::parse(
        raw.as_deref(),
        &[
            "tracked",
            "confirmation_status",
            "order_by",
            "proof_mechanism",
        ],
        &[ATTRIBUTES],
    )?;
    check_order_by(list.filters.get("order_by"))?;
    let proof_matches =
        match list.filters.get("proof_mechanism").map(String::as_str) {
            None | Some(PROOF_MECHANISM) | Some("PROOF_MECHANISM_UNSPECIFIED") => true,
            Some("MERKLE_LOG" | "KHIPU") => false,
            Some(_) => return Err(ApiError::invalid_argument(
                "query parameter `proof_mechanism` must be one of SIMPLE_HASH, MERKLE_LOG, KHIPU",
            )),
        };
    let asked = AssetQuery {
        attributes: list.attribute_filter(ATTRIBUTES).0,
        tracked: tracked_filter(list.filters.get("tracked"))?,
        nothing: !confirmation_matches(list.filters.get("confirmation_status"))? || !proof_matches,
    };
    let store = &state.store;
    let tenant = caller.tenant_id;
    paging::answer_list(
        &state.paging,
        KIND,
        &headers,
        &list,
        asked,
        |query, page| async move {
            if query.nothing {
                return Ok(Page {
                    items: Vec::new(),
                    next_before_seq: None,
                });
            }
            Ok(store.asset_list(tenant, &query.filter(), page).await?)
        },
        |query| async move {
            if query.nothing {
                return Ok(0);
            }
            Ok(store.asset_count(tenant, &query.filter()).await?)
        },
        |items, next_page_token| AssetList {
            assets: items.into_iter().map(AssetJson::from).collect(),
            next_page_token,
        },
    )
    .await
}
