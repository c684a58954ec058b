//! What lists filter on: attribute tests (with the documented wildcards), tracking,
//! principals and times. Plain data that the API builds and every backend turns into SQL.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// One test on an attribute: `name=value`, `name=*` (set and not empty) or `name!=*`
/// (absent, null or empty). Serialised compactly: it travels inside page tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeTest {
    #[serde(rename = "eq")]
    Equals(String),
    #[serde(rename = "set")]
    Present,
    #[serde(rename = "unset")]
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeMatch {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "t")]
    pub test: AttributeTest,
}

/// Attribute tests combined with AND. `Equals` matches string values exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttributeFilter(pub Vec<AttributeMatch>);

impl AttributeFilter {
    /// Exact-match tests for `(name, value)` pairs.
    pub fn equals<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(name, value)| AttributeMatch {
                    name: name.into(),
                    test: AttributeTest::Equals(value.into()),
                })
                .collect(),
        )
    }
}

/// Which assets a list asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetFilter {
    pub attributes: AttributeFilter,
    /// `Some(true)`: tracked only; `Some(false)`: stopped only; `None`: both.
    pub tracked: Option<bool>,
}

/// Exact matches on the fields of a principal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrincipalFilter {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
}

impl PrincipalFilter {
    /// `(field, wanted)` for every field the filter names.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("issuer", &self.issuer),
            ("subject", &self.subject),
            ("display_name", &self.display_name),
            ("email", &self.email),
        ]
        .into_iter()
        .filter_map(|(field, value)| value.as_deref().map(|v| (field, v)))
    }
}

/// Which events a list asks for. Times are exclusive bounds (`since`: later than,
/// `before`: earlier than), as the swagger describes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// One asset's events; `None`: every asset of the tenant (`assets/-/events`).
    pub asset_id: Option<Uuid>,
    pub behaviour: Option<String>,
    pub operation: Option<String>,
    pub principal_declared: PrincipalFilter,
    pub principal_accepted: PrincipalFilter,
    pub accepted_since: Option<OffsetDateTime>,
    pub accepted_before: Option<OffsetDateTime>,
    pub declared_since: Option<OffsetDateTime>,
    pub declared_before: Option<OffsetDateTime>,
    pub event_attributes: AttributeFilter,
    pub asset_attributes: AttributeFilter,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocationFilter {
    pub display_name: Option<String>,
    pub attributes: AttributeFilter,
}
