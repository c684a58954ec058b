//! An asset's history: events, and the rules that every backend applies the same way.
//!
//! An asset is what its events made it: `NewAsset` sets its first attributes, each
//! `RecordEvidence` event merges its `asset_attributes` in, and `StopTracking` /
//! `StartTracking` flip whether it is tracked. The rules live here, as plain functions,
//! so that every backend (and `GET asset?at_time=`) folds events identically, and the
//! conformance suite checks one meaning.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Attributes;

pub const BEHAVIOUR_ASSET_CREATOR: &str = "AssetCreator";
pub const OPERATION_NEW_ASSET: &str = "NewAsset";
pub const BEHAVIOUR_RECORD_EVIDENCE: &str = "RecordEvidence";
pub const OPERATION_RECORD: &str = "Record";
pub const BEHAVIOUR_BUILTIN: &str = "Builtin";
pub const OPERATION_STOP_TRACKING: &str = "StopTracking";
pub const OPERATION_START_TRACKING: &str = "StartTracking";

/// Who declared or accepted an event (OIDC claims, as the Archivist's `v2Principal`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: String,
}

/// One immutable event of an asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub tenant_id: Uuid,
    pub behaviour: String,
    pub operation: String,
    pub event_attributes: Attributes,
    pub asset_attributes: Attributes,
    pub timestamp_declared: OffsetDateTime,
    pub timestamp_accepted: OffsetDateTime,
    pub principal_declared: Principal,
    pub principal_accepted: Principal,
    pub seq: i64,
}

/// An event to record. `timestamp_declared` and `principal_declared` default to the
/// accepted ones, as the Archivist does.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub behaviour: String,
    pub operation: String,
    pub event_attributes: Attributes,
    pub asset_attributes: Attributes,
    pub timestamp_declared: Option<OffsetDateTime>,
    pub principal_declared: Option<Principal>,
    pub principal_accepted: Principal,
}

impl NewEvent {
    pub fn new(behaviour: &str, operation: &str, principal_accepted: Principal) -> Self {
        Self {
            behaviour: behaviour.to_owned(),
            operation: operation.to_owned(),
            event_attributes: Attributes::new(),
            asset_attributes: Attributes::new(),
            timestamp_declared: None,
            principal_declared: None,
            principal_accepted,
        }
    }
}

/// Why an event cannot be applied to an asset (the API answers 400 with the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventRefused {
    #[error("the asset is already not tracked")]
    AlreadyStopped,
    #[error("the asset is already tracked")]
    AlreadyTracked,
    #[error("behaviour `Builtin` events carry no asset_attributes")]
    BuiltinWithAttributes,
    #[error("unsupported event: behaviour `{0}` with operation `{1}`")]
    Unsupported(String, String),
}

/// What [`crate::Store::event_create`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum EventWrite {
    /// Recorded and applied to the asset.
    Recorded(Box<Event>),
    /// No such asset for this tenant.
    NoAsset,
    /// The asset's state forbids it; nothing was written.
    Refused(EventRefused),
}

/// Applies one event to an asset's state. Used to record an event and to replay events
/// for `at_time`; for replay `strict` is false so a history is always readable.
pub fn apply_event(
    attributes: &mut Attributes,
    tracked: &mut bool,
    behaviour: &str,
    operation: &str,
    asset_attributes: &Attributes,
    strict: bool,
) -> Result<(), EventRefused> {
    match (behaviour, operation) {
        (BEHAVIOUR_ASSET_CREATOR, OPERATION_NEW_ASSET) => {
            *attributes = asset_attributes.clone();
            *tracked = true;
        }
        (BEHAVIOUR_RECORD_EVIDENCE, OPERATION_RECORD) => {
            for (name, value) in asset_attributes {
                attributes.insert(name.clone(), value.clone());
            }
        }
        (BEHAVIOUR_BUILTIN, OPERATION_STOP_TRACKING | OPERATION_START_TRACKING) => {
            let stop = operation == OPERATION_STOP_TRACKING;
            if strict {
                if !asset_attributes.is_empty() {
                    return Err(EventRefused::BuiltinWithAttributes);
                }
                if stop && !*tracked {
                    return Err(EventRefused::AlreadyStopped);
                }
                if !stop && *tracked {
                    return Err(EventRefused::AlreadyTracked);
                }
            }
            *tracked = !stop;
        }
        _ => {
            if strict {
                return Err(EventRefused::Unsupported(
                    behaviour.to_owned(),
                    operation.to_owned(),
                ));
            }
        }
    }
    Ok(())
}

/// An asset's state rebuilt from its events, oldest first (`at_time`): every backend
/// reads the events its own way and replays them here.
#[derive(Debug)]
pub struct Replay {
    attributes: Attributes,
    tracked: bool,
    last_accepted: Option<OffsetDateTime>,
}

impl Default for Replay {
    /// Before its first event: no attributes, tracked (as every asset is created).
    fn default() -> Self {
        Self {
            attributes: Attributes::new(),
            tracked: true,
            last_accepted: None,
        }
    }
}

impl Replay {
    /// Applies the next event. Replay never refuses: the history is what it is.
    pub fn apply(
        &mut self,
        behaviour: &str,
        operation: &str,
        asset_attributes: &Attributes,
        accepted: OffsetDateTime,
    ) {
        let _ = apply_event(
            &mut self.attributes,
            &mut self.tracked,
            behaviour,
            operation,
            asset_attributes,
            false,
        );
        self.last_accepted = Some(accepted);
    }

    /// `asset` as the replayed events left it, dated by the last of them; `None` when
    /// there was none (the asset did not exist yet).
    pub fn into_asset(self, mut asset: crate::Asset) -> Option<crate::Asset> {
        asset.at_time = self.last_accepted?;
        asset.attributes = self.attributes;
        asset.tracked = self.tracked;
        Some(asset)
    }
}

/// The attributes of `new` that differ from `old`, and `""` for those `new` no longer has
/// (an event cannot delete an attribute; an empty value is "not set", as the `!=*` filter
/// reads it), except the `unknown` ones, which `new` cannot have.
pub fn changed_attributes(old: &Attributes, new: &Attributes, unknown: &[&str]) -> Attributes {
    let mut changed = Attributes::new();
    for (name, value) in new {
        if old.get(name) != Some(value) {
            changed.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in old {
        if !new.contains_key(name) && !is_unset(value) && !unknown.contains(&name.as_str()) {
            changed.insert(name.clone(), Value::String(String::new()));
        }
    }
    changed
}

/// Is an attribute value "not set" for the `=*` / `!=*` filters: absent, null or "".
pub fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Which incarnation of a source thing an import saw: IoT Hub's `generationId` when the
/// source gives it, and the twin version, which only grows during one device's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incarnation {
    pub generation: Option<String>,
    pub version: Option<i64>,
}

impl Incarnation {
    /// Is `self` (seen now) a different incarnation from `stored` (seen last)? A differing
    /// generation says so for sure; without generations, a version lower than the one
    /// recorded last can only belong to a thing that was deleted and created again.
    pub fn is_new_after(&self, stored: &Incarnation) -> bool {
        if let (Some(now), Some(before)) = (&self.generation, &stored.generation) {
            return now != before;
        }
        matches!((self.version, stored.version), (Some(now), Some(before)) if now < before)
    }
}

/// What an import saw of one source thing, beside its attributes: facts that belong on the
/// events it records (never a reason for one), and which incarnation it was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Copied into the `event_attributes` of any event the import records for this thing.
    pub event_attributes: Attributes,
    pub incarnation: Incarnation,
    /// Attributes this way of reading cannot see (IoT Hub's export omits `modelId`, its
    /// twin queries omit `generationId`): a stored value is kept as it is, neither compared
    /// nor blanked, so switching between the ways of reading records no change.
    pub unknown_attributes: &'static [&'static str],
}

/// How an import's page write classified its assets, and what it stopped afterwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportBreakdown {
    pub created: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Assets stopped because their device was not in the hub at the end of the import.
    pub stopped_tracking: u64,
    /// Stopped assets whose device was seen again (recorded with `StartTracking`).
    pub tracked_again: u64,
    /// Devices deleted and created again under the same id.
    pub recreated: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: Value) -> Attributes {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn changed_attributes_names_only_what_changed_and_blanks_what_went() {
        let old = attrs(json!({"a": "1", "b": "2", "c": "3"}));
        let new = attrs(json!({"a": "1", "b": "20", "d": "4"}));
        assert_eq!(
            changed_attributes(&old, &new, &[]),
            attrs(json!({"b": "20", "c": "", "d": "4"}))
        );
        assert!(changed_attributes(&new, &new, &[]).is_empty());
        // What the source cannot see is not blanked; what it sends is still compared.
        assert_eq!(
            changed_attributes(&old, &new, &["c", "b"]),
            attrs(json!({"b": "20", "d": "4"}))
        );
    }

    #[test]
    fn incarnation_rules() {
        let g = |g: &str, v| Incarnation {
            generation: Some(g.into()),
            version: Some(v),
        };
        let v = |v| Incarnation {
            generation: None,
            version: Some(v),
        };
        assert!(g("1", 5).is_new_after(&g("2", 1)));
        assert!(!g("1", 1).is_new_after(&g("1", 5)));
        assert!(v(1).is_new_after(&v(3)));
        assert!(!v(3).is_new_after(&v(3)));
        assert!(!Incarnation::default().is_new_after(&v(3)));
    }

    #[test]
    fn builtin_events_are_checked_when_recorded_not_when_replayed() {
        let mut a = Attributes::new();
        let mut tracked = true;
        let none = Attributes::new();
        apply_event(&mut a, &mut tracked, "Builtin", "StopTracking", &none, true).unwrap();
        assert!(!tracked);
        assert_eq!(
            apply_event(&mut a, &mut tracked, "Builtin", "StopTracking", &none, true),
            Err(EventRefused::AlreadyStopped)
        );
        apply_event(
            &mut a,
            &mut tracked,
            "Builtin",
            "StopTracking",
            &none,
            false,
        )
        .unwrap();
        assert!(apply_event(&mut a, &mut tracked, "Firmware", "Update", &none, true).is_err());
    }
}
