//! What an import's page write does, decided identically in every backend: which devices
//! are new, which changed (and the events that say how), which are unchanged; and the
//! events, encoded as every backend stores them.
//!
//! A page write runs while the database's write lock (SQLite) or the rows it read
//! (PostgreSQL) are held, so this is the import's critical path: an unchanged device is
//! told by comparing JSON text, a new one reuses the JSON its upsert was made with, and
//! the import's principal is encoded once per page.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::history::{
    changed_attributes, Incarnation, NewEvent, BEHAVIOUR_ASSET_CREATOR, BEHAVIOUR_BUILTIN,
    BEHAVIOUR_RECORD_EVIDENCE, OPERATION_NEW_ASSET, OPERATION_RECORD, OPERATION_START_TRACKING,
    OPERATION_STOP_TRACKING,
};
use crate::{AssetUpsert, Attributes, ImportBreakdown, ImportContext};

/// The attributes of a stored asset, as its backend reads them.
#[derive(Debug, Clone)]
pub enum StoredAttributes {
    /// JSON text as `serde_json` encodes it (SQLite stores the text it is given): when it
    /// is the upsert's own text, the attributes are equal without decoding either.
    Json(String),
    /// Decoded already (PostgreSQL's `jsonb`, whose text form is its own).
    Decoded(Attributes),
}

impl StoredAttributes {
    fn is_text(&self, json: &str) -> bool {
        matches!(self, StoredAttributes::Json(text) if text == json)
    }

    fn decode(&self) -> Result<Cow<'_, Attributes>, serde_json::Error> {
        match self {
            StoredAttributes::Json(text) => serde_json::from_str(text).map(Cow::Owned),
            StoredAttributes::Decoded(attributes) => Ok(Cow::Borrowed(attributes)),
        }
    }
}

/// The stored state of an asset an import may touch.
#[derive(Debug, Clone)]
pub struct StoredAsset {
    pub id: Uuid,
    pub attributes: StoredAttributes,
    pub tracked: bool,
    pub incarnation: Incarnation,
}

/// What a page write must do for one upsert.
#[derive(Debug, Clone, PartialEq)]
pub enum UpsertPlan {
    /// Nothing to write.
    Unchanged,
    /// A new asset with its `NewAsset` event ([`PagePlan::encode_events`] makes it from
    /// the upsert).
    Create,
    /// Events on an existing asset (in order) and its new state.
    Change {
        events: Vec<NewEvent>,
        attributes: Attributes,
        tracked: bool,
        recreated: bool,
        tracked_again: bool,
    },
}

/// Decides what an import writes for one device given what is stored. Fails only when the
/// stored attributes are not valid JSON.
pub fn plan_upsert(
    stored: Option<&StoredAsset>,
    upsert: &AssetUpsert,
    context: &ImportContext,
) -> Result<UpsertPlan, serde_json::Error> {
    let Some(stored) = stored else {
        return Ok(UpsertPlan::Create);
    };
    let observation = &upsert.observation;
    let recreated = observation.incarnation.is_new_after(&stored.incarnation);
    if stored.tracked && !recreated && stored.attributes.is_text(upsert.attributes_json()) {
        return Ok(UpsertPlan::Unchanged);
    }
    let old = stored.attributes.decode()?;
    let changed = changed_attributes(&old, upsert.attributes(), observation.unknown_attributes);
    if changed.is_empty() && stored.tracked && !recreated {
        return Ok(UpsertPlan::Unchanged);
    }
    let principal = &context.principal;
    let mut events = Vec::new();
    let tracked_again = !stored.tracked;
    if tracked_again {
        let mut event = NewEvent::new(
            BEHAVIOUR_BUILTIN,
            OPERATION_START_TRACKING,
            principal.clone(),
        );
        event.event_attributes = context.event_attributes.clone();
        event.event_attributes.insert(
            "arc_description".into(),
            Value::String("seen again in the hub".into()),
        );
        events.push(event);
    }
    if !changed.is_empty() || recreated {
        let mut event = NewEvent::new(
            BEHAVIOUR_RECORD_EVIDENCE,
            OPERATION_RECORD,
            principal.clone(),
        );
        event.event_attributes = context.event_attributes.clone();
        for (name, value) in &observation.event_attributes {
            event.event_attributes.insert(name.clone(), value.clone());
        }
        let (kind, description) = if recreated {
            (
                "Recreated",
                "deleted and created again under the same id: a new device",
            )
        } else {
            ("Changed", "changed in the hub since the last import")
        };
        event
            .event_attributes
            .insert("arc_display_type".into(), Value::String(kind.into()));
        event
            .event_attributes
            .insert("arc_description".into(), Value::String(description.into()));
        event.asset_attributes = changed;
        events.push(event);
    }
    let mut merged = old.into_owned();
    for event in &events {
        for (name, value) in &event.asset_attributes {
            merged.insert(name.clone(), value.clone());
        }
    }
    Ok(UpsertPlan::Change {
        events,
        attributes: merged,
        tracked: true,
        recreated,
        tracked_again,
    })
}

/// A new asset a page write inserts, with its `NewAsset` event.
#[derive(Debug, Clone)]
pub struct PlannedInsert<'a> {
    pub id: Uuid,
    pub upsert: &'a AssetUpsert,
}

/// An existing asset a page write changes: its new attributes and incarnation (it is
/// tracked afterwards), and the events that say why, in order.
#[derive(Debug, Clone)]
pub struct PlannedUpdate<'a> {
    pub id: Uuid,
    pub upsert: &'a AssetUpsert,
    pub attributes: Attributes,
    pub events: Vec<NewEvent>,
}

/// Everything one page write does, decided before anything is written.
#[derive(Debug, Clone, Default)]
pub struct PagePlan<'a> {
    pub inserts: Vec<PlannedInsert<'a>>,
    pub updates: Vec<PlannedUpdate<'a>>,
    pub breakdown: ImportBreakdown,
}

impl<'a> PagePlan<'a> {
    /// Every event of the plan, encoded, inserts first. A new asset's `NewAsset` event
    /// carries its attributes (the upsert's own JSON) and, in `event_attributes`, the
    /// import's identity with what the import observed of the device.
    pub fn encode_events<'p>(
        &'p self,
        context: &'p ImportContext,
    ) -> Result<Vec<EncodedEvent<'p>>, serde_json::Error> {
        let principal = serde_json::to_string(&context.principal)?;
        let mut events = Vec::with_capacity(self.inserts.len() + self.updates.len());
        for insert in &self.inserts {
            events.push(EncodedEvent {
                id: Uuid::now_v7(),
                asset_id: insert.id,
                behaviour: BEHAVIOUR_ASSET_CREATOR,
                operation: OPERATION_NEW_ASSET,
                event_attributes: serde_json::to_string(&Overlaid {
                    base: &context.event_attributes,
                    over: &insert.upsert.observation.event_attributes,
                })?,
                asset_attributes: Cow::Borrowed(insert.upsert.attributes_json()),
                timestamp_declared: None,
                principal_declared: principal.clone(),
                principal_accepted: principal.clone(),
            });
        }
        for update in &self.updates {
            for event in &update.events {
                events.push(EncodedEvent::new(update.id, event)?);
            }
        }
        Ok(events)
    }
}

/// An event as every backend stores it: the maps and principals as JSON text.
#[derive(Debug, Clone)]
pub struct EncodedEvent<'a> {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub behaviour: &'a str,
    pub operation: &'a str,
    pub event_attributes: String,
    pub asset_attributes: Cow<'a, str>,
    /// `None`: when it is accepted.
    pub timestamp_declared: Option<OffsetDateTime>,
    pub principal_declared: String,
    pub principal_accepted: String,
}

impl<'a> EncodedEvent<'a> {
    /// A new event (new id) on `asset_id`. `principal_declared` defaults to the accepted
    /// one, as the Archivist does.
    pub fn new(asset_id: Uuid, event: &'a NewEvent) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: Uuid::now_v7(),
            asset_id,
            behaviour: &event.behaviour,
            operation: &event.operation,
            event_attributes: serde_json::to_string(&event.event_attributes)?,
            asset_attributes: Cow::Owned(serde_json::to_string(&event.asset_attributes)?),
            timestamp_declared: event.timestamp_declared,
            principal_declared: serde_json::to_string(
                event
                    .principal_declared
                    .as_ref()
                    .unwrap_or(&event.principal_accepted),
            )?,
            principal_accepted: serde_json::to_string(&event.principal_accepted)?,
        })
    }
}

/// Two attribute maps encoded as one, `over` winning on a shared name, without building
/// the merged map (a new device's event would otherwise copy both per device).
struct Overlaid<'a> {
    base: &'a Attributes,
    over: &'a Attributes,
}

impl Serialize for Overlaid<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.base {
            if !self.over.contains_key(name) {
                map.serialize_entry(name, value)?;
            }
        }
        for (name, value) in self.over {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Plans a page write: `assets` are the page's distinct keys ([`crate::distinct_sorted`]),
/// `stored` what the store holds for them, keyed by `source_key`. New assets get
/// time-ordered ids (new rows append to the id index).
pub fn plan_page<'a>(
    assets: &[&'a AssetUpsert],
    stored: &HashMap<String, StoredAsset>,
    context: &ImportContext,
) -> Result<PagePlan<'a>, serde_json::Error> {
    let mut plan = PagePlan::default();
    for upsert in assets {
        let existing = stored.get(&upsert.source_key);
        match plan_upsert(existing, upsert, context)? {
            UpsertPlan::Unchanged => plan.breakdown.unchanged += 1,
            UpsertPlan::Create => {
                plan.breakdown.created += 1;
                plan.inserts.push(PlannedInsert {
                    id: Uuid::now_v7(),
                    upsert,
                });
            }
            UpsertPlan::Change {
                events,
                attributes,
                recreated,
                tracked_again,
                ..
            } => {
                // `Change` is only planned for a stored asset.
                let Some(existing) = existing else { continue };
                plan.breakdown.changed += 1;
                plan.breakdown.recreated += u64::from(recreated);
                plan.breakdown.tracked_again += u64::from(tracked_again);
                plan.updates.push(PlannedUpdate {
                    id: existing.id,
                    upsert,
                    attributes,
                    events,
                });
            }
        }
    }
    Ok(plan)
}

/// The `StopTracking` event an import records on an asset whose device left the hub.
pub fn stop_tracking_event(context: &ImportContext) -> NewEvent {
    let mut event = NewEvent::new(
        BEHAVIOUR_BUILTIN,
        OPERATION_STOP_TRACKING,
        context.principal.clone(),
    );
    event.event_attributes = context.event_attributes.clone();
    event.event_attributes.insert(
        "arc_description".into(),
        Value::String("no longer in the hub".into()),
    );
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Observation, Principal};
    use serde_json::json;

    fn attrs(value: Value) -> Attributes {
        value.as_object().cloned().unwrap_or_default()
    }

    fn upsert(attributes: Value, observation: Observation) -> AssetUpsert {
        AssetUpsert::new("k".into(), vec![], attrs(attributes), observation)
    }

    fn context() -> ImportContext {
        ImportContext {
            event_attributes: attrs(json!({"iothub_import": "iothubgdr/x", "shared": "ctx"})),
            principal: Principal::default(),
        }
    }

    fn stored(attributes: StoredAttributes, tracked: bool) -> StoredAsset {
        StoredAsset {
            id: Uuid::nil(),
            attributes,
            tracked,
            incarnation: Incarnation::default(),
        }
    }

    #[test]
    fn plans() {
        let ctx = context();
        let a1 = upsert(json!({"s": "enabled"}), Observation::default());
        assert_eq!(plan_upsert(None, &a1, &ctx).unwrap(), UpsertPlan::Create);
        let same = stored(StoredAttributes::Decoded(a1.attributes().clone()), true);
        assert_eq!(
            plan_upsert(Some(&same), &a1, &ctx).unwrap(),
            UpsertPlan::Unchanged
        );
        let a2 = upsert(json!({"s": "disabled"}), Observation::default());
        match plan_upsert(Some(&same), &a2, &ctx).unwrap() {
            UpsertPlan::Change { events, .. } => {
                assert_eq!(events.len(), 1);
                assert_eq!(&events[0].asset_attributes, a2.attributes());
                assert_eq!(events[0].event_attributes["iothub_import"], "iothubgdr/x");
            }
            other => panic!("{other:?}"),
        }
        let stopped = StoredAsset {
            tracked: false,
            ..same
        };
        match plan_upsert(Some(&stopped), &a1, &ctx).unwrap() {
            UpsertPlan::Change {
                events,
                tracked_again,
                ..
            } => {
                assert!(tracked_again);
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].operation, OPERATION_START_TRACKING);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stored_text_is_compared_first_and_decoded_only_when_it_differs() {
        let ctx = context();
        let new = upsert(json!({"a": "1", "b": "2"}), Observation::default());
        // The same text: unchanged.
        let text = stored(StoredAttributes::Json(new.attributes_json().into()), true);
        assert_eq!(
            plan_upsert(Some(&text), &new, &ctx).unwrap(),
            UpsertPlan::Unchanged
        );
        // Other text, same attributes (an attribute that went is kept as ""): unchanged.
        let blanked = stored(
            StoredAttributes::Json(r#"{"a":"1","b":"2","gone":""}"#.into()),
            true,
        );
        assert_eq!(
            plan_upsert(Some(&blanked), &new, &ctx).unwrap(),
            UpsertPlan::Unchanged
        );
        // Other text, other attributes: the change, from the decoded text.
        let older = stored(StoredAttributes::Json(r#"{"a":"0","b":"2"}"#.into()), true);
        match plan_upsert(Some(&older), &new, &ctx).unwrap() {
            UpsertPlan::Change {
                events, attributes, ..
            } => {
                assert_eq!(events[0].asset_attributes, attrs(json!({"a": "1"})));
                assert_eq!(&attributes, new.attributes());
            }
            other => panic!("{other:?}"),
        }
        // The same text on a stopped asset still starts tracking it again.
        let stopped = stored(StoredAttributes::Json(new.attributes_json().into()), false);
        assert!(matches!(
            plan_upsert(Some(&stopped), &new, &ctx).unwrap(),
            UpsertPlan::Change {
                tracked_again: true,
                ..
            }
        ));
        // An attribute the source cannot see keeps its stored value: unchanged.
        let with_model = stored(
            StoredAttributes::Json(r#"{"a":"1","b":"2","model":"m1"}"#.into()),
            true,
        );
        let blind = Observation {
            unknown_attributes: &["model"],
            ..Observation::default()
        };
        let exported = upsert(json!({"a": "1", "b": "2"}), blind.clone());
        assert_eq!(
            plan_upsert(Some(&with_model), &exported, &ctx).unwrap(),
            UpsertPlan::Unchanged
        );
        // ... and stays when something else changed.
        let exported = upsert(json!({"a": "9", "b": "2"}), blind);
        match plan_upsert(Some(&with_model), &exported, &ctx).unwrap() {
            UpsertPlan::Change {
                events, attributes, ..
            } => {
                assert_eq!(events[0].asset_attributes, attrs(json!({"a": "9"})));
                assert_eq!(attributes["model"], "m1");
            }
            other => panic!("{other:?}"),
        }
        // Bad stored JSON is an error, not a guess.
        let bad = stored(StoredAttributes::Json("{".into()), true);
        assert!(plan_upsert(Some(&bad), &new, &ctx).is_err());
    }

    #[test]
    fn a_new_assets_event_carries_its_json_and_the_overlaid_event_attributes() {
        let ctx = context();
        let mut observation = Observation::default();
        observation
            .event_attributes
            .insert("iothub_twin_version".into(), json!("3"));
        observation
            .event_attributes
            .insert("shared".into(), json!("observed"));
        let new = upsert(json!({"s": "enabled"}), observation);
        let assets = [&new];
        let plan = plan_page(&assets, &HashMap::new(), &ctx).unwrap();
        assert_eq!(plan.breakdown.created, 1);
        let events = plan.encode_events(&ctx).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.asset_id, plan.inserts[0].id);
        assert_eq!(
            (event.behaviour, event.operation),
            ("AssetCreator", "NewAsset")
        );
        assert_eq!(event.asset_attributes, new.attributes_json());
        let decoded: Attributes = serde_json::from_str(&event.event_attributes).unwrap();
        assert_eq!(
            decoded,
            attrs(json!({
                "iothub_import": "iothubgdr/x",
                "iothub_twin_version": "3",
                "shared": "observed"
            }))
        );
        assert_eq!(
            event.principal_accepted,
            serde_json::to_string(&ctx.principal).unwrap()
        );
        assert_eq!(event.principal_declared, event.principal_accepted);
        assert_eq!(event.timestamp_declared, None);
    }
}
