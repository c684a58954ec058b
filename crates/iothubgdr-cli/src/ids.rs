//! Identities as users type them: `iothubgdr/<uuid>` or the bare `<uuid>` for an import,
//! `locations/<uuid>` or `<uuid>` for a location.

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{given}` is not a{article} {kind} identity: expected `{prefix}/<uuid>` or a bare `<uuid>`"
)]
pub struct InvalidId {
    given: String,
    kind: &'static str,
    article: &'static str,
    prefix: &'static str,
}

fn parse_prefixed(
    given: &str,
    prefix: &'static str,
    kind: &'static str,
    article: &'static str,
) -> Result<Uuid, InvalidId> {
    let trimmed = given.trim();
    let bare = trimmed
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(trimmed);
    Uuid::try_parse(bare).map_err(|_| InvalidId {
        given: given.to_owned(),
        kind,
        article,
        prefix,
    })
}

/// The uuid of an import given as `iothubgdr/<uuid>` or `<uuid>`.
pub fn import_uuid(given: &str) -> Result<Uuid, InvalidId> {
    parse_prefixed(given, "iothubgdr", "import", "n")
}

/// A location identity in the API's form `locations/<uuid>`, given either way.
pub fn location_identity(given: &str) -> Result<String, InvalidId> {
    parse_prefixed(given, "locations", "location", "").map(|id| format!("locations/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "08838336-c357-460d-902a-3aba9528dd22";

    #[test]
    fn imports_are_accepted_with_or_without_prefix() {
        let expected = Uuid::parse_str(ID).unwrap();
        assert_eq!(import_uuid(ID).unwrap(), expected);
        assert_eq!(import_uuid(&format!("iothubgdr/{ID}")).unwrap(), expected);
        assert_eq!(
            import_uuid(&format!(" iothubgdr/{ID}\n")).unwrap(),
            expected
        );
    }

    #[test]
    fn wrong_prefix_or_garbage_is_refused_with_the_expected_form() {
        for bad in [
            "",
            "iothubgdr/",
            "iothubgdr/not-a-uuid",
            &format!("locations/{ID}"),
            &format!("iothubgdr/{ID}/x"),
            &format!("iothubgdr{ID}"),
        ] {
            let err = import_uuid(bad).unwrap_err();
            assert!(err.to_string().contains("iothubgdr/<uuid>"), "{bad}: {err}");
        }
    }

    #[test]
    fn locations_normalise_to_the_prefixed_form() {
        let expected = format!("locations/{ID}");
        assert_eq!(location_identity(ID).unwrap(), expected);
        assert_eq!(location_identity(&expected).unwrap(), expected);
        let err = location_identity(&format!("assets/{ID}")).unwrap_err();
        assert!(err.to_string().contains("a location identity"));
    }
}
