//! `GET /openapi.json`: the OpenAPI (swagger 2.0) description of this server, without
//! authentication so tools can fetch it before they have a token.
//!
//! It lives at the root rather than under `/archivist/v2/iothubgdr/`, where it would collide
//! with `/archivist/v2/iothubgdr/{uuid}`. The document is a file of the crate, embedded at
//! build time; crates/iothubgdr/tests/openapi.rs checks it against the running server.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::ApiState;

/// The document, as served.
pub(crate) const DOCUMENT: &str = include_str!("../../openapi/iothubgdr.json");

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_swagger_2_json() {
        let document: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("openapi/iothubgdr.json is valid JSON");
        assert_eq!(document["swagger"], "2.0");
        assert!(document["paths"]["/archivist/v2/iothubgdr/{uuid}:cancel"]["post"].is_object());
    }

    #[test]
    fn every_reference_resolves() {
        fn references<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(target) = map.get("$ref").and_then(|v| v.as_str()) {
                        found.push(target);
                    }
                    map.values().for_each(|item| references(item, found));
                }
                serde_json::Value::Array(items) => {
                    items.iter().for_each(|item| references(item, found))
                }
                _ => {}
            }
        }
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 10);
        for target in found {
            let name = target
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("{target} is not a local definition"));
            assert!(
                document["definitions"][name].is_object(),
                "unresolved {target}"
            );
        }
    }
}
