//! `POST /archivist/iam/v1/appidp/token`: the client-credentials grant of the Archivist's
//! app registrations.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, Extensions, HeaderValue};
use axum::response::{IntoResponse, Response};
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

/// Client ids are UUIDs; anything much longer is not one, and is not worth a limiter entry.
const MAX_CLIENT_ID_CHARS: usize = 128;

impl<'de> Deserialize<'de> for ClientSecretField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self(ClientSecret::new(text)))
    }
}

/// Wraps the secret as soon as it is parsed so it is redacted and wiped from then on.
struct ClientSecretField(ClientSecret);

/// Answers that carry a token, and their errors, must not be kept by caches (RFC 6749
/// section 5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn issue(
    State(state): State<ApiState>,
    extensions: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match grant(&state, &extensions, body).await {
        Ok(answer) => no_store(Json(answer).into_response()),
        Err(err) => no_store(err.into_response()),
    }
}

async fn grant(
    state: &ApiState,
    extensions: &Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenAnswer, ApiError> {
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
    if client_id.chars().count() > MAX_CLIENT_ID_CHARS {
        return Err(ApiError::invalid_argument(format!(
            "form field `client_id` is longer than {MAX_CLIENT_ID_CHARS} characters"
        )));
    }
    let secret = form
        .client_secret
        .map(|field| field.0)
        .ok_or_else(|| ApiError::invalid_argument("missing form field `client_secret`"))?;
    // Limits guesses as well as floods: counted before the secret is checked.
    let address = crate::server::remote_address(extensions).map(|address| address.ip());
    state.rate_limits.check_token(&client_id, address)?;
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
    Ok(TokenAnswer {
        access_token: issued.access_token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: issued.expires_in,
    })
}
