//! Field checks that answer 400 naming the field.

use serde_json::Value;

use crate::ApiError;

/// The longest string field the API takes (the swagger's limit).
pub const MAX_FIELD_CHARS: usize = 1024;

/// Blank: empty or only spaces, tabs and line breaks. The OpenAPI document says the same
/// with the pattern `[^ \t\n\r]` (one character that is none of them).
pub fn is_blank(text: &str) -> bool {
    text.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// A field that must be present and not blank, at most [`MAX_FIELD_CHARS`] characters.
pub fn required<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, ApiError> {
    match value {
        Some(text) if !is_blank(text) => {
            max_len(field, text)?;
            Ok(text)
        }
        _ => Err(ApiError::invalid_argument(format!(
            "missing required field `{field}`"
        ))),
    }
}

/// At most [`MAX_FIELD_CHARS`] characters.
pub fn max_len(field: &str, value: &str) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars > MAX_FIELD_CHARS {
        return Err(ApiError::invalid_argument(format!(
            "field `{field}` is {chars} characters long; the limit is {MAX_FIELD_CHARS}"
        )));
    }
    Ok(())
}

/// Checks the names and every string inside the values of an attribute map.
pub fn attributes(field: &str, map: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in map {
        if name.is_empty() {
            return Err(ApiError::invalid_argument(format!(
                "field `{field}` has an empty attribute name"
            )));
        }
        max_len(&format!("{field} name"), name)?;
        json_strings(&format!("{field}.{}", shown_name(name)), value)?;
    }
    Ok(())
}

fn json_strings(field: &str, value: &Value) -> Result<(), ApiError> {
    match value {
        Value::String(text) => max_len(field, text),
        Value::Array(items) => items.iter().try_for_each(|item| json_strings(field, item)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            max_len(field, key)?;
            json_strings(field, item)
        }),
        _ => Ok(()),
    }
}

/// A name the client sent (a query parameter, a JSON field, an identity), as an error may
/// show it: only when it is short and made of name characters, since a client may paste
/// anything where a name goes. Connection strings (`=`, `;`), SAS keys (`+`, `/`, `=`) and
/// tokens are never shown, and neither is anything as long as a client secret (43).
pub fn shown_name(name: &str) -> &str {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'));
    if looks_like_a_name {
        name
    } else {
        "<not shown>"
    }
}

/// A request path as logs may show it: each segment that is a UUID (with an optional
/// `:verb`) or a plain name as [`shown_name`] allows, others replaced by `<not shown>`.
pub fn loggable_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let id = segment.split_once(':').map_or(segment, |(id, _)| id);
            if segment.is_empty() || segment.len() <= 48 && uuid::Uuid::try_parse(id).is_ok() {
                segment
            } else {
                shown_name(segment)
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A number within `min..=max`.
pub fn in_range(field: &str, value: Option<f64>, min: f64, max: f64) -> Result<(), ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(ApiError::invalid_argument(format!(
            "field `{field}` must be between {min} and {max}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_names_the_field() {
        let err = required("display_name", None).unwrap_err();
        assert!(err.message.contains("display_name"));
        assert!(required("display_name", Some("  ")).is_err());
        assert_eq!(required("x", Some("ok")).unwrap(), "ok");
    }

    #[test]
    fn only_short_plain_names_are_shown() {
        assert_eq!(shown_name("display_name"), "display_name");
        assert_eq!(shown_name("attributes.x"), "attributes.x");
        assert_eq!(
            shown_name("HostName=h.azure-devices.net;SharedAccessKey=abc="),
            "<not shown>"
        );
        assert_eq!(shown_name(&"a".repeat(33)), "<not shown>");
        assert_eq!(
            shown_name("Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"),
            "<not shown>"
        );
    }

    #[test]
    fn logged_paths_keep_identities_and_hide_anything_else() {
        let id = "0190b6c2-8d2e-7000-8000-000000000000";
        assert_eq!(
            loggable_path(&format!("/archivist/v2/iothubgdr/{id}:cancel")),
            format!("/archivist/v2/iothubgdr/{id}:cancel")
        );
        assert_eq!(
            loggable_path("/archivist/v2/locations/HostName%3Dh%3BSharedAccessKey%3Dabc"),
            "/archivist/v2/locations/<not shown>"
        );
    }

    #[test]
    fn limit_is_1024_characters() {
        assert!(max_len("f", &"é".repeat(1024)).is_ok());
        let err = max_len("description", &"a".repeat(1025)).unwrap_err();
        assert!(err.message.contains("description"));
    }
}
