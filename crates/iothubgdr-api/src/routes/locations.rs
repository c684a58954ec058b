//! Locations (Archivist v2): create, get one, list with `display_name` and
//! `attributes.<name>` filters.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use iothubgdr_store::{
    AttributeFilter, AttributeMatch, Attributes, Location, LocationFilter, NewLocation,
};
use serde::{Deserialize, Serialize};

use super::{not_found_identity, parse_identity};
use crate::paging::{self, ListQuery};
use crate::{validate, ApiError, ApiJson, ApiState, Caller};

const KIND: &str = "locations";

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/archivist/v2/locations", get(list).post(create))
        .route("/archivist/v2/locations/{id}", get(get_one))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLocation {
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    description: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    longitude: Option<f64>,
    #[serde(default)]
    attributes: Attributes,
}

/// A location as the API shows it.
#[derive(Serialize)]
pub(crate) struct LocationJson {
    identity: String,
    display_name: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    longitude: Option<f64>,
    attributes: Attributes,
}

impl From<Location> for LocationJson {
    fn from(location: Location) -> Self {
        Self {
            identity: format!("{KIND}/{}", location.id),
            display_name: location.display_name,
            description: location.description,
            latitude: location.latitude,
            longitude: location.longitude,
            attributes: location.attributes,
        }
    }
}

#[derive(Serialize)]
struct LocationList {
    locations: Vec<LocationJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// The query a locations page token carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LocationQuery {
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(rename = "a", default)]
    attributes: Vec<AttributeMatch>,
}

impl paging::Filters for LocationQuery {
    fn filter_pairs(&self) -> Vec<(&str, &str)> {
        self.display_name
            .iter()
            .map(|name| ("display_name", name.as_str()))
            .chain(self.attributes.iter().map(paging::match_pair))
            .collect()
    }

    fn attribute_filter_count(&self) -> usize {
        self.attributes.len()
    }
}

impl LocationQuery {
    fn filter(&self) -> LocationFilter {
        LocationFilter {
            display_name: self.display_name.clone(),
            attributes: AttributeFilter(self.attributes.clone()),
        }
    }
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateLocation>,
) -> Result<Json<LocationJson>, ApiError> {
    let display_name = validate::required("display_name", body.display_name.as_deref())?.to_owned();
    let description = body.description.unwrap_or_default();
    validate::max_len("description", &description)?;
    validate::in_range("latitude", body.latitude, -90.0, 90.0)?;
    validate::in_range("longitude", body.longitude, -180.0, 180.0)?;
    validate::attributes("attributes", &body.attributes)?;
    let location = state
        .store
        .location_create(
            caller.tenant_id,
            NewLocation {
                display_name,
                description,
                latitude: body.latitude,
                longitude: body.longitude,
                attributes: body.attributes,
            },
        )
        .await?;
    Ok(Json(location.into()))
}

async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<LocationJson>, ApiError> {
    let id = parse_identity(KIND, &raw_id)?;
    state
        .store
        .location_get(caller.tenant_id, id)
        .await?
        .map(|location| Json(location.into()))
        .ok_or_else(|| not_found_identity(KIND, &raw_id))
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let list = ListQuery::parse(raw.as_deref(), &["display_name"], &[paging::ATTRIBUTES])?;
    let asked = LocationQuery {
        display_name: list.filters.get("display_name").cloned(),
        attributes: list.attribute_filter(paging::ATTRIBUTES).0,
    };
    let store = &state.store;
    let tenant = caller.tenant_id;
    paging::answer_list(
        &state.paging,
        KIND,
        &headers,
        &list,
        asked,
        |query, page| async move { Ok(store.location_list(tenant, &query.filter(), page).await?) },
        |query| async move { Ok(store.location_count(tenant, &query.filter()).await?) },
        |items, next_page_token| LocationList {
            locations: items.into_iter().map(LocationJson::from).collect(),
            next_page_token,
        },
    )
    .await
}
