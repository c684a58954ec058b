//! Assets (Archivist v2): create, get one, list with `attributes.<name>` filters.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use iothubgdr_store::{Asset, AttributeFilter, Attributes, NewAsset, PageRequest};
use serde::{Deserialize, Serialize};

use super::{not_found_identity, parse_identity, render_time, tenant_identity};
use crate::paging::{self, ListQuery};
use crate::{validate, ApiError, ApiJson, ApiState, Caller};

const KIND: &str = "assets";

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
    /// Accepted for Archivist compatibility; every asset here is private.
    #[serde(
        default,
        rename = "public",
        deserialize_with = "crate::extract::not_null"
    )]
    _public: Option<bool>,
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
            confirmation_status: "CONFIRMED",
            tracked: "TRACKED",
            owner: String::new(),
            at_time: render_time(asset.at_time),
            storage_integrity: "TENANT_STORAGE",
            proof_mechanism: "SIMPLE_HASH",
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
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct AssetQuery {
    #[serde(rename = "a", default)]
    attributes: Vec<(String, String)>,
}

impl paging::Filters for AssetQuery {
    fn filter_pairs(&self) -> Vec<(&str, &str)> {
        self.attributes
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
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
    let asset = state
        .store
        .asset_create(
            caller.tenant_id,
            NewAsset {
                behaviours: body.behaviours,
                attributes: body.attributes,
            },
        )
        .await?;
    Ok(Json(asset.into()))
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<AssetJson>, ApiError> {
    let id = parse_identity(KIND, &raw_id)?;
    state
        .store
        .asset_get(caller.tenant_id, id)
        .await?
        .map(|asset| Json(asset.into()))
        .ok_or_else(|| not_found_identity(KIND, &raw_id))
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let list = ListQuery::parse(raw.as_deref(), &[], true)?;
    let asked = AssetQuery {
        attributes: list.attributes.clone(),
    };
    let (query, before_seq) = paging::resolve(&state.paging, KIND, &list, asked)?;
    let filter = AttributeFilter(query.attributes.clone());
    let page = state
        .store
        .asset_list(
            caller.tenant_id,
            &filter,
            PageRequest {
                page_size: list.page_size,
                before_seq,
            },
        )
        .await?;
    let next_page_token = page
        .next_before_seq
        .map(|seq| paging::encode_page_token(&state.paging, KIND, &query, seq));
    let body = AssetList {
        assets: page.items.into_iter().map(AssetJson::from).collect(),
        next_page_token,
    };
    let count = state.store.asset_count(caller.tenant_id, &filter);
    paging::list_answer(&headers, body, count).await
}
