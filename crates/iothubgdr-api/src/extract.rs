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
    /// The app registration's display name (the `principal_accepted` of its events).
    pub display_name: String,
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
        // The tenant comes from a token this deployment signed, so a client cannot dodge
        // its limit by making up tenants; checked before the database is asked anything.
        state.rate_limits.check_tenant(claims.tenant)?;
        let app = state.store.app_get(&claims.sub).await?;
        match app {
            Some(app) if app.tenant.id == claims.tenant => Ok(Caller {
                tenant_id: claims.tenant,
                client_id: claims.sub,
                display_name: app.display_name,
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

/// Parses JSON, naming the field at fault in the error and the problem, never the value
/// that was sent (a misplaced connection string must not come back in an error).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_argument(
            "the request body is empty: a JSON object is required",
        ));
    }
    // serde would also read a struct from a JSON array; every body of this API is an object.
    let sent = match bytes.trim_ascii_start().first() {
        Some(b'{') => None,
        Some(b'"') => Some("a string"),
        Some(b'[') => Some("an array"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        _ => Some("no JSON value"),
    };
    if let Some(sent) = sent {
        return Err(ApiError::invalid_argument(format!(
            "invalid request body: expected a JSON object, got {sent}"
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = shown_path(&err.path().to_string());
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_argument(format!(
                "malformed JSON body at line {} column {}",
                inner.line(),
                inner.column()
            ))
        } else if path == "." || path.is_empty() {
            ApiError::invalid_argument(format!("invalid request body: {}", problem(&inner)))
        } else {
            ApiError::invalid_argument(format!("invalid field `{path}`: {}", problem(&inner)))
        }
    })?;
    deserializer.end().map_err(|err| {
        ApiError::invalid_argument(format!(
            "malformed JSON body: unexpected data after the JSON value at line {} column {}",
            err.line(),
            err.column()
        ))
    })?;
    Ok(value)
}

/// `#[serde(default, deserialize_with = "crate::extract::not_null")]` on an optional field:
/// the field may be left out, but `null` is refused (the document does not allow it, and
/// `"public": null` meaning "absent" would be a guess).
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The path of a field as an error may show it: each segment only if it looks like a name.
fn shown_path(path: &str) -> String {
    if path == "." {
        return path.to_owned();
    }
    path.split('.')
        .map(crate::validate::shown_name)
        .collect::<Vec<_>>()
        .join(".")
}

/// What was wrong, from serde's message, without the value it quotes: serde writes
/// `invalid type: string "<the value>", expected ...`, and names unknown fields and
/// variants as sent.
fn problem(err: &serde_json::Error) -> String {
    let text = err.to_string();
    // serde_json appends ` at line L column C`; the field path already says where.
    let text = text
        .rsplit_once(" at line ")
        .map(|(head, _)| head)
        .unwrap_or(&text);
    let expected = |rest: &str| {
        rest.rsplit_once(", expected ")
            .map(|(_, expected)| expected.to_owned())
            .map(|expected| {
                if expected.starts_with("struct ") || expected.starts_with("a map") {
                    "a JSON object".to_owned()
                } else {
                    expected
                }
            })
    };
    if let Some(rest) = text.strip_prefix("invalid type: ") {
        let sent = rest
            .split_whitespace()
            .next()
            .unwrap_or("value")
            .trim_end_matches(',');
        match expected(rest) {
            Some(expected) => format!("expected {expected}, got a {sent}"),
            None => format!("a {sent} is not accepted here"),
        }
    } else if let Some(rest) = text.strip_prefix("invalid value: ") {
        match expected(rest) {
            Some(expected) => format!("invalid value, expected {expected}"),
            None => "invalid value".to_owned(),
        }
    } else if let Some(rest) = text.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let known = rest
            .split_once(", expected ")
            .map(|(_, known)| format!("; known fields: {known}"))
            .unwrap_or_default();
        format!(
            "unknown field `{}`{known}",
            crate::validate::shown_name(name)
        )
    } else if text.starts_with("unknown variant `") {
        let known = text
            .split_once(", expected ")
            .map(|(_, known)| format!(", expected {known}"))
            .unwrap_or_default();
        format!("unknown value{known}")
    } else if text.starts_with("missing field ")
        || text.starts_with("duplicate field ")
        || text.starts_with("invalid length ")
    {
        // These name our own fields or counts, never a value.
        text.to_owned()
    } else {
        "invalid value".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: Option<String>,
        count: Option<u32>,
        flag: Option<bool>,
    }

    const SECRET: &str =
        "HostName=h.azure-devices.net;SharedAccessKeyName=o;SharedAccessKey=c2VjcmV0";

    #[test]
    fn a_bare_string_body_is_refused_without_echoing_it() {
        let err = parse_json::<Body>(format!("\"{SECRET}\"").as_bytes()).unwrap_err();
        assert!(!err.message.contains("SharedAccessKey"), "{}", err.message);
        assert!(err.message.contains("JSON object"), "{}", err.message);
        assert!(err.message.contains("string"), "{}", err.message);
    }

    #[test]
    fn only_an_object_is_a_body() {
        for body in ["[]", "5", "true", "null", "[1, 2]"] {
            let err = parse_json::<Body>(body.as_bytes()).unwrap_err();
            assert!(
                err.message.contains("JSON object"),
                "{body}: {}",
                err.message
            );
        }
    }

    #[test]
    fn field_errors_name_the_field_and_the_problem_not_the_value() {
        for body in [
            format!(r#"{{"count": "{SECRET}"}}"#),
            format!(r#"{{"name": ["{SECRET}"]}}"#),
            format!(r#"{{"{SECRET}": 1}}"#),
            format!(r#"{{"flag": true}} "{SECRET}""#),
            format!(r#"{{"name": "{SECRET}"#),
        ] {
            let err = parse_json::<Body>(body.as_bytes()).unwrap_err();
            assert!(!err.message.contains("SharedAccessKey"), "{}", err.message);
            assert!(!err.message.contains("c2VjcmV0"), "{}", err.message);
        }
        let err = parse_json::<Body>(br#"{"count": "x"}"#).unwrap_err();
        assert!(err.message.contains("`count`"), "{}", err.message);
        assert!(err.message.contains("u32"), "{}", err.message);
        let err = parse_json::<Body>(br#"{"colour": 1}"#).unwrap_err();
        assert!(err.message.contains("`colour`"), "{}", err.message);
    }
}
