//! The route modules and what they share.

pub(crate) mod assets;
pub(crate) mod events;
pub(crate) mod iothubgdr;
pub(crate) mod locations;
pub(crate) mod openapi;
pub(crate) mod operations;
pub(crate) mod token;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ApiError;

/// RFC 3339 UTC with a `Z` and seconds precision, as the Archivist writes times.
pub fn render_time(at: OffsetDateTime) -> String {
    let seconds = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    seconds
        .format(&Rfc3339)
        .unwrap_or_else(|_| seconds.unix_timestamp().to_string())
}

/// `tenant/<uuid>`, the Archivist's tenant identity.
pub fn tenant_identity(tenant_id: Uuid) -> String {
    format!("tenant/{tenant_id}")
}

/// Parses the `<uuid>` of `<kind>/<uuid>`; anything else is an unknown identity (404).
pub(crate) fn parse_identity(kind: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found_identity(kind, raw))
}

pub(crate) fn not_found_identity(kind: &str, raw: &str) -> ApiError {
    // The identity comes from the client: it is shown only when it is a UUID or a short
    // plain name, never what might be a pasted secret.
    match Uuid::parse_str(raw) {
        Ok(id) => ApiError::not_found(format!("{kind}/{id} not found")),
        Err(_) => ApiError::not_found(format!(
            "{kind}/{} not found: identities are {kind}/<uuid>",
            crate::validate::shown_name(raw)
        )),
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_seconds_with_z() {
        let at = time::macros::datetime!(2024-05-06 07:08:09.123456 +02:00);
        assert_eq!(render_time(at), "2024-05-06T05:08:09Z");
    }
}
