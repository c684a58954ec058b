//! What an import hands the store: the assets of a page, and the identity its events carry.

use crate::history::Observation;
use crate::{Attributes, Principal};

/// An asset written by an import. `source_key` is the natural key of the thing it stands
/// for (for a device: hub host and device id); one tenant has at most one asset per key,
/// so a second import of the same hub updates instead of duplicating, even when two imports
/// of the same hub run at once.
///
/// The attributes are encoded to JSON once, when the upsert is made: an import makes its
/// upserts on the reader's side, beside the hub client, so the page write (one at a time
/// on SQLite) stores that text for the asset and its `NewAsset` event, and tells an
/// unchanged device by comparing it with the stored text, without encoding or decoding.
/// The attributes are therefore read-only once made.
#[derive(Debug, Clone)]
pub struct AssetUpsert {
    pub source_key: String,
    pub behaviours: Vec<String>,
    /// What rides on events without causing one, and the thing's incarnation.
    pub observation: Observation,
    attributes: Attributes,
    attributes_json: String,
}

impl AssetUpsert {
    pub fn new(
        source_key: String,
        behaviours: Vec<String>,
        attributes: Attributes,
        observation: Observation,
    ) -> Self {
        let attributes_json = encode_attributes(&attributes);
        Self {
            source_key,
            behaviours,
            observation,
            attributes,
            attributes_json,
        }
    }

    /// The descriptive facts: a difference from the stored ones is recorded as an event.
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// [`Self::attributes`] as compact JSON with the keys in order, the same text
    /// `serde_json::to_string` gives for them.
    pub fn attributes_json(&self) -> &str {
        &self.attributes_json
    }
}

/// Compact JSON of an attribute map. Encoding a map of strings to JSON values cannot fail
/// (no non-string keys, no failing `Serialize`); the `{}` fallback only keeps this total.
fn encode_attributes(attributes: &Attributes) -> String {
    serde_json::to_string(attributes).unwrap_or_else(|_| "{}".to_owned())
}

/// What every event an import records carries: its identity and hub in
/// `event_attributes`, and the principal that accepted it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportContext {
    pub event_attributes: Attributes,
    pub principal: Principal,
}

/// The page a backend writes for [`crate::Store::import_write_page`]: one entry per
/// `source_key` (the last occurrence wins), in ascending key order. Shared so every backend
/// keeps the same input contract.
pub fn distinct_sorted(assets: &[AssetUpsert]) -> Vec<&AssetUpsert> {
    let mut by_key: std::collections::BTreeMap<&str, &AssetUpsert> =
        std::collections::BTreeMap::new();
    for asset in assets {
        by_key.insert(asset.source_key.as_str(), asset);
    }
    by_key.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upsert(key: &str, n: i64) -> AssetUpsert {
        let mut attributes = Attributes::new();
        attributes.insert("n".into(), n.into());
        AssetUpsert::new(key.into(), vec![], attributes, Observation::default())
    }

    #[test]
    fn a_page_is_deduplicated_last_wins_and_sorted() {
        let page = [
            upsert("b", 1),
            upsert("a", 2),
            upsert("b", 3),
            upsert("c", 4),
        ];
        let written: Vec<(&str, i64)> = distinct_sorted(&page)
            .into_iter()
            .map(|a| (a.source_key.as_str(), a.attributes()["n"].as_i64().unwrap()))
            .collect();
        assert_eq!(written, [("a", 2), ("b", 3), ("c", 4)]);
    }

    #[test]
    fn the_json_is_what_serde_json_gives_for_the_attributes() {
        let attributes = json!({"z": "last", "a": "first", "n": 7, "q": "\"quoted\" é"});
        let attributes = attributes.as_object().cloned().unwrap_or_default();
        let upsert = AssetUpsert::new(
            "k".into(),
            vec![],
            attributes.clone(),
            Observation::default(),
        );
        assert_eq!(
            upsert.attributes_json(),
            serde_json::to_string(&attributes).unwrap()
        );
        assert_eq!(
            upsert.attributes_json(),
            r#"{"a":"first","n":7,"q":"\"quoted\" é","z":"last"}"#
        );
        let back: Attributes = serde_json::from_str(upsert.attributes_json()).unwrap();
        assert_eq!(&back, upsert.attributes());
    }
}
