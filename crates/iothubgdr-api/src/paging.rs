//! List requests: `page_size`, opaque `page_token`s that carry the whole query they
//! continue, filters in dotted form (`attributes.<name>=<value>`, `=*` for "set and not
//! empty", `!=*` for "not set"), and `X-Request-Total-Count`. [`answer_list`] is the one
//! path every list endpoint takes from query string to answer.
//!
//! A page token is base64url of a small JSON document `{"k": kind, "q": query, "b":
//! before_seq}`, a dot, and base64url of its HMAC-SHA256 under the database's paging key.
//! Archivist clients send the token alone on later pages, so the query (the filters)
//! travels in it. The signature means the server only ever runs queries it built itself
//! from checked filters: a token it did not issue (edited, forged, unsigned, or made for
//! another list) answers 400, and the filters inside a token are checked again anyway.
//!
//! Filters are bounded: at most [`MAX_FILTERS`], each name and value at most
//! [`crate::validate::MAX_FIELD_CHARS`] characters, all together at most
//! [`MAX_FILTER_CHARS`], so a token the server issues always fits in a request line.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use iothubgdr_store::{AttributeFilter, AttributeMatch, AttributeTest, Page, PageRequest};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ApiError;

/// `page_size` when the request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The most filters one list request may name.
pub const MAX_FILTERS: usize = 10;
/// The most characters all filter names and values of one request may have together.
pub const MAX_FILTER_CHARS: usize = 4096;
/// The longest `page_token` accepted: longer than any token the server issues.
pub const MAX_PAGE_TOKEN_CHARS: usize = 48 * 1024;

/// The attribute map of assets and locations: `attributes.<name>=<value>`.
pub const ATTRIBUTES: &str = "attributes";
/// The wildcard value: `<map>.<name>=*` (set and not empty), `<map>.<name>!=*` (not set).
pub const WILDCARD: &str = "*";

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
    /// `<map>.<name>=<value>` filters (`map` is `attributes`, `event_attributes`, ...),
    /// in request order.
    pub attributes: Vec<(String, AttributeMatch)>,
}

impl ListQuery {
    /// Parses a raw query string. `plain_filters` are the names this list filters on
    /// besides `<map>.<name>`; `attribute_maps` are the maps it filters on (`attributes`).
    pub fn parse(
        raw: Option<&str>,
        plain_filters: &[&str],
        attribute_maps: &[&str],
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
                if value.chars().count() > MAX_PAGE_TOKEN_CHARS {
                    return Err(bad_token());
                }
                if !value.is_empty() {
                    query.page_token = Some(value);
                }
            } else if plain_filters.contains(&name.as_str()) {
                crate::validate::max_len(&name, &value)?;
                if query.filters.insert(name.clone(), value).is_some() {
                    return Err(repeated(&name));
                }
            } else if let Some((map, attribute)) = split_attribute(&name, attribute_maps) {
                crate::validate::max_len("attribute filter name", attribute)?;
                crate::validate::max_len("attribute filter value", &value)?;
                let test = attribute_match(map, attribute, value)?;
                query.attributes.push((map.to_owned(), test));
            } else {
                return Err(unknown(&name));
            }
        }
        check_filters(
            query
                .filters
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .chain(query.attributes.iter().map(|(_, test)| match_pair(test))),
            query.attributes.len(),
        )?;
        Ok(query)
    }

    /// The tests this request makes on one attribute map.
    pub fn attribute_filter(&self, map: &str) -> AttributeFilter {
        AttributeFilter(
            self.attributes
                .iter()
                .filter(|(m, _)| m == map)
                .map(|(_, test)| test.clone())
                .collect(),
        )
    }

    /// Did the request name any filter?
    pub fn has_filters(&self) -> bool {
        !self.filters.is_empty() || !self.attributes.is_empty()
    }
}

/// Filters as name and value pairs, however a list keeps them; checked when they arrive in
/// a request and again when they come back inside a page token.
pub trait Filters {
    fn filter_pairs(&self) -> Vec<(&str, &str)>;
    /// How many of them are open-ended `<map>.<name>` attribute filters.
    fn attribute_filter_count(&self) -> usize;
}

/// At most [`MAX_FILTERS`] attribute filters (`<map>.<name>`, the only kind a request can
/// repeat without bound; each named filter of a list appears at most once), each part at
/// most 1024 characters, and at most [`MAX_FILTER_CHARS`] for all filters together.
pub fn check_filters<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    attribute_filters: usize,
) -> Result<(), ApiError> {
    let count = attribute_filters;
    let mut chars = 0;
    for (name, value) in pairs {
        crate::validate::max_len("filter name", name)?;
        crate::validate::max_len("filter value", value)?;
        chars += name.chars().count() + value.chars().count();
    }
    if count > MAX_FILTERS {
        return Err(ApiError::invalid_argument(format!(
            "{count} attribute filters given; a list takes at most {MAX_FILTERS}"
        )));
    }
    if chars > MAX_FILTER_CHARS {
        return Err(ApiError::invalid_argument(format!(
            "the filters are {chars} characters long together; the limit is {MAX_FILTER_CHARS}"
        )));
    }
    Ok(())
}

/// An attribute test as the name and value it was asked with, for the bounds.
pub fn match_pair(test: &AttributeMatch) -> (&str, &str) {
    match &test.test {
        AttributeTest::Equals(value) => (test.name.as_str(), value.as_str()),
        AttributeTest::Present | AttributeTest::Absent => (test.name.as_str(), WILDCARD),
    }
}

/// `(<map>, <name>)` of a `<map>.<name>` parameter whose map this list filters on.
fn split_attribute<'a>(name: &'a str, maps: &[&'a str]) -> Option<(&'a str, &'a str)> {
    let (map, attribute) = name.split_once('.')?;
    maps.iter().find(|m| **m == map).map(|m| (*m, attribute))
}

/// `name=value`, `name=*` or `name!=*` (which a query string parses as `name!` = `*`).
fn attribute_match(map: &str, name: &str, value: String) -> Result<AttributeMatch, ApiError> {
    let (name, negated) = match name.strip_suffix('!') {
        Some(name) => (name, true),
        None => (name, false),
    };
    if name.is_empty() {
        return Err(ApiError::invalid_argument(format!(
            "query parameter `{map}.` needs an attribute name"
        )));
    }
    let test = match (negated, value == WILDCARD) {
        (false, false) => AttributeTest::Equals(value),
        (false, true) => AttributeTest::Present,
        (true, true) => AttributeTest::Absent,
        (true, false) => {
            return Err(ApiError::invalid_argument(format!(
                "query parameter `{map}.{}!`: `!=` takes only the wildcard `*`",
                crate::validate::shown_name(name)
            )))
        }
    };
    Ok(AttributeMatch {
        name: name.to_owned(),
        test,
    })
}

fn repeated(name: &str) -> ApiError {
    ApiError::invalid_argument(format!(
        "query parameter `{}` is given more than once",
        crate::validate::shown_name(name)
    ))
}

fn unknown(name: &str) -> ApiError {
    ApiError::invalid_argument(format!(
        "unknown query parameter `{}`",
        crate::validate::shown_name(name)
    ))
}

fn bad_token() -> ApiError {
    ApiError::invalid_argument(
        "query parameter `page_token` is not a page token this server issued: send the `next_page_token` of the previous page unchanged",
    )
}

/// The key that signs page tokens. Its `Debug` never shows it.
#[derive(Clone)]
pub struct PagingKey(Arc<Zeroizing<Vec<u8>>>);

impl PagingKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Arc::new(Zeroizing::new(bytes)))
    }

    /// A random 32-byte key.
    pub fn random() -> Self {
        Self::new(Self::random_bytes().to_vec())
    }

    /// 32 random bytes: the candidate key of a database that has none yet.
    pub fn random_bytes() -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
        bytes
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    fn sign(&self, payload: &str) -> String {
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn verify(&self, payload: &str, signature: &str) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).is_ok()
    }
}

impl std::fmt::Debug for PagingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PagingKey(<redacted>)")
    }
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
pub fn encode_page_token<Q: Serialize>(
    key: &PagingKey,
    kind: &str,
    query: &Q,
    before_seq: i64,
) -> String {
    let body = TokenBody {
        k: kind.to_owned(),
        q: query,
        b: before_seq,
    };
    // Serialising plain data to JSON cannot fail; an empty token would only end the list.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let signature = key.sign(&payload);
    format!("{payload}.{signature}")
}

/// The query and `before_seq` a token continues; 400 when the server did not issue it for
/// this list, or its filters break the bounds.
pub fn decode_page_token<Q: DeserializeOwned + Filters>(
    key: &PagingKey,
    kind: &str,
    token: &str,
) -> Result<(Q, i64), ApiError> {
    let (payload, signature) = token.split_once('.').ok_or_else(bad_token)?;
    if !key.verify(payload, signature) {
        return Err(bad_token());
    }
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad_token())?;
    let body: TokenBody<Q> = serde_json::from_slice(&json).map_err(|_| bad_token())?;
    if body.k != kind || body.b <= 0 {
        return Err(bad_token());
    }
    check_filters(
        body.q.filter_pairs().into_iter(),
        body.q.attribute_filter_count(),
    )?;
    Ok((body.q, body.b))
}

/// The query to run and where to continue: from the token when there is one (filters
/// repeated next to it must be the token's), else the request's own query from the start.
pub fn resolve<Q>(
    key: &PagingKey,
    kind: &str,
    list: &ListQuery,
    from_request: Q,
) -> Result<(Q, Option<i64>), ApiError>
where
    Q: DeserializeOwned + PartialEq + Filters,
{
    match &list.page_token {
        None => Ok((from_request, None)),
        Some(token) => {
            let (query, before_seq) = decode_page_token::<Q>(key, kind, token)?;
            if list.has_filters() && query != from_request {
                return Err(ApiError::invalid_argument(
                    "the filters differ from those of the `page_token`: send the token alone",
                ));
            }
            Ok((query, Some(before_seq)))
        }
    }
}

/// One list request from query to answer, for every list: the query to run (the request's
/// own, or the one its signed page token carries), one page of it from `fetch`, the token
/// that continues it, and `X-Total-Count` from `count` when asked. `body` shapes the answer.
#[allow(clippy::too_many_arguments)]
pub async fn answer_list<Q, T, B, F, C>(
    key: &PagingKey,
    kind: &str,
    headers: &HeaderMap,
    list: &ListQuery,
    asked: Q,
    fetch: impl FnOnce(Q, PageRequest) -> F,
    count: impl FnOnce(Q) -> C,
    body: impl FnOnce(Vec<T>, Option<String>) -> B,
) -> Result<Response, ApiError>
where
    Q: Serialize + DeserializeOwned + PartialEq + Clone + Filters,
    B: Serialize,
    F: std::future::Future<Output = Result<Page<T>, ApiError>>,
    C: std::future::Future<Output = Result<u64, ApiError>>,
{
    let (query, before_seq) = resolve(key, kind, list, asked)?;
    let page = fetch(
        query.clone(),
        PageRequest {
            page_size: list.page_size,
            before_seq,
        },
    )
    .await?;
    let next_page_token = page
        .next_before_seq
        .map(|seq| encode_page_token(key, kind, &query, seq));
    let body = body(page.items, next_page_token);
    if wants_total_count(headers)? {
        let count = count(query).await?;
        Ok(([total_count_header(count)], Json(body)).into_response())
    } else {
        Ok(Json(body).into_response())
    }
}

/// Did the request send `X-Request-Total-Count: true`? `false` or no header: no; anything
/// else answers 400 (the header is documented as `true` or `false`).
pub fn wants_total_count(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut values = headers.get_all(REQUEST_TOTAL_COUNT).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    let invalid =
        || ApiError::invalid_argument("header `X-Request-Total-Count` must be `true` or `false`");
    if values.next().is_some() {
        return Err(invalid());
    }
    match value.to_str().map(str::trim) {
        Ok("true") => Ok(true),
        Ok("false") => Ok(false),
        _ => Err(invalid()),
    }
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
        #[serde(default)]
        more: Vec<(String, String)>,
    }

    impl Filters for Q {
        fn filter_pairs(&self) -> Vec<(&str, &str)> {
            self.name
                .iter()
                .map(|name| ("name", name.as_str()))
                .chain(self.more.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .collect()
        }

        fn attribute_filter_count(&self) -> usize {
            self.more.len()
        }
    }

    #[test]
    fn token_round_trips_and_refuses_tokens_it_did_not_issue() {
        let key = PagingKey::random();
        let query = Q {
            name: Some("x".into()),
            more: vec![],
        };
        let token = encode_page_token(&key, "locations", &query, 42);
        assert_eq!(
            decode_page_token::<Q>(&key, "locations", &token).unwrap(),
            (query, 42)
        );
        // Another list, another key, garbage, an unsigned payload, an edited payload.
        assert!(decode_page_token::<Q>(&key, "assets", &token).is_err());
        assert!(decode_page_token::<Q>(&PagingKey::random(), "locations", &token).is_err());
        assert!(decode_page_token::<Q>(&key, "locations", "garbled!!").is_err());
        let (payload, signature) = token.split_once('.').unwrap();
        assert!(decode_page_token::<Q>(&key, "locations", payload).is_err());
        let forged = URL_SAFE_NO_PAD.encode(br#"{"k":"locations","q":{"name":"y"},"b":9}"#);
        assert!(
            decode_page_token::<Q>(&key, "locations", &format!("{forged}.{signature}")).is_err()
        );
    }

    #[test]
    fn filters_inside_a_signed_token_are_bounded_too() {
        let key = PagingKey::random();
        let query = Q {
            name: None,
            more: (0..MAX_FILTERS + 1)
                .map(|i| (format!("a{i}"), "v".to_owned()))
                .collect(),
        };
        let token = encode_page_token(&key, "assets", &query, 7);
        let err = decode_page_token::<Q>(&key, "assets", &token).unwrap_err();
        assert!(err.message.contains("at most"), "{}", err.message);
    }

    #[test]
    fn too_many_or_too_long_filters_are_refused() {
        let many: Vec<String> = (0..=MAX_FILTERS)
            .map(|i| format!("attributes.a{i}=v"))
            .collect();
        assert!(ListQuery::parse(Some(&many.join("&")), &[], &[ATTRIBUTES]).is_err());
        let ten: Vec<String> = (0..MAX_FILTERS)
            .map(|i| format!("attributes.a{i}=v"))
            .collect();
        assert!(ListQuery::parse(Some(&ten.join("&")), &[], &[ATTRIBUTES]).is_ok());
        let long = format!("attributes.x={}", "v".repeat(1025));
        assert!(ListQuery::parse(Some(&long), &[], &[ATTRIBUTES]).is_err());
        let wide: Vec<String> = (0..5)
            .map(|i| format!("attributes.a{i}={}", "v".repeat(1000)))
            .collect();
        let err = ListQuery::parse(Some(&wide.join("&")), &[], &[ATTRIBUTES]).unwrap_err();
        assert!(err.message.contains("4096"), "{}", err.message);
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
            &[ATTRIBUTES],
        )
        .unwrap();
        assert_eq!(q.page_size, 5);
        assert_eq!(q.page_token, None);
        assert_eq!(q.filters.get("display_name").unwrap(), "a b");
        assert_eq!(
            q.attribute_filter(ATTRIBUTES),
            AttributeFilter::equals([("x", "1"), ("y", "2")])
        );
        assert!(ListQuery::parse(Some("colour=red"), &[], &[ATTRIBUTES]).is_err());
        assert!(ListQuery::parse(Some("attributes.x=1"), &[], &[]).is_err());
        assert!(ListQuery::parse(Some("attributes.=1"), &[], &[ATTRIBUTES]).is_err());
    }

    #[test]
    fn wildcards_and_other_maps() {
        let q = ListQuery::parse(
            Some("attributes.a=*&attributes.b!=*&event_attributes.c=3"),
            &[],
            &[ATTRIBUTES, "event_attributes"],
        )
        .unwrap();
        let tests = q.attribute_filter(ATTRIBUTES).0;
        assert_eq!(tests[0].test, AttributeTest::Present);
        assert_eq!(tests[1].name, "b");
        assert_eq!(tests[1].test, AttributeTest::Absent);
        assert_eq!(
            q.attribute_filter("event_attributes"),
            AttributeFilter::equals([("c", "3")])
        );
        assert!(ListQuery::parse(Some("attributes.b!=x"), &[], &[ATTRIBUTES]).is_err());
        assert!(ListQuery::parse(Some("asset_attributes.c=3"), &[], &[ATTRIBUTES]).is_err());
    }
}
