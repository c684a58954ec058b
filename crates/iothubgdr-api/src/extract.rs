//! Extractors shared by every route: the authenticated [`Caller`] and the [`ApiJson`] body.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::{ApiError, ApiState};

/// The app that sent the request, authenticated by its bearer token: the token is an HS256
/// JWT of this deployment, unexpired, and its app still exists and still acts for the
/// token's tenant. Take it as a handler argument to require authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: uuid::Uuid,
    pub client_id: String,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header_value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer header"))?;
        let text = header_value
            .to_str()
            .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        let token = text
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthenticated("the Authorization header must be `Bearer <token>`")
            })?;
        let claims = state
            .tokens
            .verify(token)
            .map_err(|err| ApiError::unauthenticated(err.to_string()))?;
        let app = state.store.app_get(&claims.sub).await?;
        match app {
            Some(app) if app.tenant.id == claims.tenant => Ok(Caller {
                tenant_id: claims.tenant,
                client_id: claims.sub,
            }),
            _ => Err(ApiError::unauthenticated(
                "the bearer token's app registration no longer exists",
            )),
        }
    }
}

/// A JSON request body. Unlike `axum::Json` it answers the runtimeError shape: malformed
/// JSON or a wrong field gives 400 naming the field, a body over the limit gives 413. It
/// does not insist on a `Content-Type`, as curl users often forget it.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_rejection(rejection.status()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The runtimeError for a body that could not be read.
pub(crate) fn body_rejection(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!(
            "the request body is larger than {} bytes",
            crate::BODY_LIMIT_BYTES
        ))
    } else {
        ApiError::invalid_argument("the request body could not be read")
    }
}

/// Parses JSON, naming the field at fault in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_argument(
            "the request body is empty: a JSON object is required",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_argument(format!("malformed JSON body: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::invalid_argument(format!("invalid request body: {inner}"))
        } else {
            ApiError::invalid_argument(format!("invalid field `{path}`: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|err| ApiError::invalid_argument(format!("malformed JSON body: {err}")))?;
    Ok(value)
}
