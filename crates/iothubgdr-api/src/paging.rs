//! List requests: `page_size`, opaque `page_token`s that carry the whole query they
//! continue, filters in dotted form, and `X-Request-Total-Count`.
//!
//! A page token is base64url of a small JSON document `{"k": kind, "q": query, "b":
//! before_seq}`. Archivist clients send the token alone on later pages, so the query (the
//! filters) travels in it. It is not signed: a client that edits its own token can only ask
//! another question about its own tenant's data, which it may ask anyway. A token that does
//! not decode, or that was made for another list, answers 400.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// `page_size` when the request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The prefix of attribute filters: `attributes.<name>=<value>`.
pub const ATTRIBUTE_FILTER_PREFIX: &str = "attributes.";

/// The request header asking for the number of matching items, and the answer's header.
pub const REQUEST_TOTAL_COUNT: &str = "x-request-total-count";
pub const TOTAL_COUNT: &str = "x-total-count";

/// The query string of a list request, split into paging, plain filters and attribute
/// filters. Parameters that the list does not know answer 400.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub page_size: u32,
    /// `None` also for an empty `page_token=`: the first page.
    pub page_token: Option<String>,
    /// Plain filters such as `display_name`, by name.
    pub filters: BTreeMap<String, String>,
    /// `attributes.<name>=<value>` filters, in request order.
    pub attributes: Vec<(String, String)>,
}

impl ListQuery {
    /// Parses a raw query string. `plain_filters` are the names this list filters on
    /// besides `attributes.<name>`; `allow_attributes` says whether it takes those.
    pub fn parse(
        raw: Option<&str>,
        plain_filters: &[&str],
        allow_attributes: bool,
    ) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|err| ApiError::invalid_argument(format!("malformed query string: {err}")))?;
        let mut query = ListQuery {
            page_size: DEFAULT_PAGE_SIZE,
            ..ListQuery::default()
        };
        let mut page_size_seen = false;
        for (name, value) in pairs {
            if name == "page_size" {
                if page_size_seen {
                    return Err(repeated(&name));
                }
                page_size_seen = true;
                query.page_size = page_size(Some(&value))?;
            } else if name == "page_token" {
                if query.page_token.is_some() {
                    return Err(repeated(&name));
                }
                if !value.is_empty() {
                    query.page_token = Some(value);
                }
            } else if let Some(attribute) = name.strip_prefix(ATTRIBUTE_FILTER_PREFIX) {
                if !allow_attributes {
                    return Err(unknown(&name));
                }
                if attribute.is_empty() {
                    return Err(ApiError::invalid_argument(
                        "query parameter `attributes.` needs an attribute name",
                    ));
                }
                crate::validate::max_len(&name, &value)?;
                query.attributes.push((attribute.to_owned(), value));
            } else if plain_filters.contains(&name.as_str()) {
                crate::validate::max_len(&name, &value)?;
                if query.filters.insert(name.clone(), value).is_some() {
                    return Err(repeated(&name));
                }
            } else {
                return Err(unknown(&name));
            }
        }
        Ok(query)
    }

    /// Did the request name any filter?
    pub fn has_filters(&self) -> bool {
        !self.filters.is_empty() || !self.attributes.is_empty()
    }
}

fn repeated(name: &str) -> ApiError {
    ApiError::invalid_argument(format!("query parameter `{name}` is given more than once"))
}

fn unknown(name: &str) -> ApiError {
    ApiError::invalid_argument(format!("unknown query parameter `{name}`"))
}

/// Parses `page_size`: absent means [`DEFAULT_PAGE_SIZE`]; it must be 1..=[`MAX_PAGE_SIZE`].
pub fn page_size(raw: Option<&str>) -> Result<u32, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    match raw.trim().parse::<u32>() {
        Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(size),
        _ => Err(ApiError::invalid_argument(format!(
            "query parameter `page_size` must be a whole number from 1 to {MAX_PAGE_SIZE}"
        ))),
    }
}

#[derive(Serialize, Deserialize)]
struct TokenBody<Q> {
    /// Which list the token belongs to.
    k: String,
    q: Q,
    b: i64,
}

/// The token that continues `query` below `before_seq` in the list named `kind`.
pub fn encode_page_token<Q: Serialize>(kind: &str, query: &Q, before_seq: i64) -> String {
    let body = TokenBody {
        k: kind.to_owned(),
        q: query,
        b: before_seq,
    };
    // Serialising plain data to JSON cannot fail; an empty token would only end the list.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The query and `before_seq` a token continues; 400 when it is garbled or not this list's.
pub fn decode_page_token<Q: DeserializeOwned>(
    kind: &str,
    token: &str,
) -> Result<(Q, i64), ApiError> {
    let garbled = || ApiError::invalid_argument("query parameter `page_token` is not valid");
    let json = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| garbled())?;
    let body: TokenBody<Q> = serde_json::from_slice(&json).map_err(|_| garbled())?;
    if body.k != kind || body.b <= 0 {
        return Err(garbled());
    }
    Ok((body.q, body.b))
}

/// The query to run and where to continue: from the token when there is one (filters
/// repeated next to it must be the token's), else the request's own query from the start.
pub fn resolve<Q>(
    kind: &str,
    list: &ListQuery,
    from_request: Q,
) -> Result<(Q, Option<i64>), ApiError>
where
    Q: DeserializeOwned + PartialEq,
{
    match &list.page_token {
        None => Ok((from_request, None)),
        Some(token) => {
            let (query, before_seq) = decode_page_token::<Q>(kind, token)?;
            if list.has_filters() && query != from_request {
                return Err(ApiError::invalid_argument(
                    "the filters differ from those of the `page_token`: send the token alone",
                ));
            }
            Ok((query, Some(before_seq)))
        }
    }
}

/// The answer of a list: `body`, with `X-Total-Count` from `count` when the request asked
/// for it (`count` is not run otherwise).
pub async fn list_answer<B: Serialize>(
    headers: &HeaderMap,
    body: B,
    count: impl std::future::Future<Output = Result<u64, iothubgdr_store::StoreError>>,
) -> Result<Response, ApiError> {
    if wants_total_count(headers) {
        let count = count.await?;
        Ok(([total_count_header(count)], Json(body)).into_response())
    } else {
        Ok(Json(body).into_response())
    }
}

/// Did the request send `X-Request-Total-Count: true`?
pub fn wants_total_count(headers: &HeaderMap) -> bool {
    headers
        .get(REQUEST_TOTAL_COUNT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// The `X-Total-Count` header of an answer.
pub fn total_count_header(count: u64) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(TOTAL_COUNT),
        HeaderValue::from(count),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Q {
        name: Option<String>,
    }

    #[test]
    fn token_round_trips_and_rejects_garbage_and_other_lists() {
        let query = Q {
            name: Some("x".into()),
        };
        let token = encode_page_token("locations", &query, 42);
        assert_eq!(
            decode_page_token::<Q>("locations", &token).unwrap(),
            (query, 42)
        );
        assert!(decode_page_token::<Q>("assets", &token).is_err());
        assert!(decode_page_token::<Q>("locations", "garbled!!").is_err());
        assert!(decode_page_token::<Q>("locations", "e30").is_err());
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "abc", ""] {
            assert!(page_size(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_query_splits_filters() {
        let q = ListQuery::parse(
            Some("page_size=5&display_name=a%20b&attributes.x=1&attributes.y=2&page_token="),
            &["display_name"],
            true,
        )
        .unwrap();
        assert_eq!(q.page_size, 5);
        assert_eq!(q.page_token, None);
        assert_eq!(q.filters.get("display_name").unwrap(), "a b");
        assert_eq!(
            q.attributes,
            vec![("x".into(), "1".into()), ("y".into(), "2".into())]
        );
        assert!(ListQuery::parse(Some("colour=red"), &[], true).is_err());
        assert!(ListQuery::parse(Some("attributes.x=1"), &[], false).is_err());
    }
}
