//! `POST /archivist/iam/v1/appidp/token`: the client-credentials grant of the Archivist's
//! app registrations.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use iothubgdr_auth::{verify_secret, ClientSecret};
use serde::{Deserialize, Serialize};

use crate::{ApiError, ApiState};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/archivist/iam/v1/appidp/token", post(issue))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<ClientSecretField>,
}

#[derive(Serialize)]
struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

const BAD_CREDENTIALS: &str = "invalid client_id or client_secret";

impl<'de> Deserialize<'de> for ClientSecretField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self(ClientSecret::new(text)))
    }
}

/// Wraps the secret as soon as it is parsed so it is redacted and wiped from then on.
struct ClientSecretField(ClientSecret);

async fn issue(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TokenAnswer>, ApiError> {
    let body = body.map_err(|rejection| crate::extract::body_rejection(rejection.status()))?;
    let form: TokenForm = serde_urlencoded::from_bytes(&body).map_err(|_| {
        ApiError::invalid_argument(
            "the body must be a form (application/x-www-form-urlencoded) with grant_type, client_id and client_secret",
        )
    })?;
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "unsupported grant_type: only `client_credentials` is supported",
            ))
        }
        None => {
            return Err(ApiError::invalid_argument(
                "missing form field `grant_type`",
            ))
        }
    }
    let client_id = form
        .client_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid_argument("missing form field `client_id`"))?;
    let secret = form
        .client_secret
        .map(|field| field.0)
        .ok_or_else(|| ApiError::invalid_argument("missing form field `client_secret`"))?;
    let app = state.store.app_get(&client_id).await?;
    let Some(app) = app else {
        // Hash anyway so an unknown client id costs the same time as a wrong secret.
        let _ = verify_secret(&secret, &[0u8; 32]);
        return Err(ApiError::unauthenticated(BAD_CREDENTIALS));
    };
    if !verify_secret(&secret, &app.secret_hash) {
        return Err(ApiError::unauthenticated(BAD_CREDENTIALS));
    }
    let issued = state
        .tokens
        .issue(&app.client_id, app.tenant.id)
        .map_err(|err| ApiError::internal(err.to_string()))?;
    tracing::info!(client_id = %app.client_id, tenant = %app.tenant.id, "token issued");
    Ok(Json(TokenAnswer {
        access_token: issued.access_token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: issued.expires_in,
    }))
}
