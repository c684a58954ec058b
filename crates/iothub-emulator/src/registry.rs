//! The identity registry: seeded devices computed on demand plus an overlay of everything
//! created, changed or deleted since start. Iteration is in deviceId order, so a continuation
//! token that names the last deviceId stays valid while devices come and go.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use serde_json::{Map, Value};

use crate::error::HubError;
use crate::model::{
    merge_patch, AuthType, ConnectionState, DeviceInput, DeviceRecord, DeviceStatus, NEVER,
};
use crate::query::Query;
use crate::seed::{
    derived_key, mix, seeded_device, timestamp, IdStyle, Keys, SeededIds, DEVICE_ID_CHARACTERS,
};

enum Slot {
    Live(Box<DeviceRecord>),
    Deleted,
}

pub(crate) struct Registry {
    seed: u64,
    ids: SeededIds,
    overlay: BTreeMap<String, Slot>,
    changes: u64,
}

/// Device ids: up to 128 characters from the set the hub documents
/// (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry#device-identity-properties>,
/// see [`DEVICE_ID_CHARACTERS`]).
pub(crate) fn valid_device_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| DEVICE_ID_CHARACTERS.contains(c))
}

pub(crate) fn etag_matches(if_match: &str, current: &str) -> bool {
    let wanted = if_match.trim().trim_matches('"');
    wanted == "*" || wanted == current
}

pub(crate) fn now_text() -> String {
    let now = time::OffsetDateTime::now_utc();
    timestamp(now.unix_timestamp(), now.nanosecond() / 100)
}

impl Registry {
    pub(crate) fn new(seed: u64, devices: u64, style: IdStyle) -> Self {
        Registry {
            seed,
            ids: SeededIds::new(devices, style),
            overlay: BTreeMap::new(),
            changes: 0,
        }
    }

    pub(crate) fn get(&self, device_id: &str) -> Option<Cow<'_, DeviceRecord>> {
        match self.overlay.get(device_id) {
            Some(Slot::Live(record)) => Some(Cow::Borrowed(record)),
            Some(Slot::Deleted) => None,
            None => self
                .ids
                .index_of(device_id)
                .map(|index| Cow::Owned(seeded_device(self.seed, &self.ids, index, Keys::Derive))),
        }
    }

    fn next_change(&mut self) -> u64 {
        self.changes += 1;
        mix(self.seed ^ 0xC0FFEE ^ self.changes)
    }

    fn store(&mut self, record: DeviceRecord) {
        self.overlay
            .insert(record.device_id.clone(), Slot::Live(Box::new(record)));
    }

    fn apply_identity(
        &mut self,
        record: &mut DeviceRecord,
        input: &DeviceInput,
    ) -> Result<(), HubError> {
        if let Some(status) = input.status {
            if status != record.status {
                record.status_updated_time = now_text();
            }
            record.status = status;
        }
        if input.status_reason.is_some() {
            record.status_reason = input.status_reason.clone();
        }
        if let Some(capabilities) = &input.capabilities {
            if let Some(edge) = capabilities.iot_edge {
                record.iot_edge = edge;
            }
        }
        if input.device_scope.is_some() {
            record.device_scope = input.device_scope.clone();
        }
        if let Some(auth) = &input.authentication {
            let kind = auth.kind.unwrap_or(AuthType::Sas);
            record.auth_type = kind;
            match kind {
                AuthType::Sas => {
                    let keys = auth.symmetric_key.clone().unwrap_or_default();
                    let primary = keys.primary_key.filter(|k| !k.is_empty());
                    let secondary = keys.secondary_key.filter(|k| !k.is_empty());
                    for key in [&primary, &secondary].into_iter().flatten() {
                        if !valid_sas_key(key) {
                            return Err(HubError::bad_request(
                                "The symmetric keys must be base64 and between 16 and 64 bytes long",
                            ));
                        }
                    }
                    let change = self.next_change();
                    record.primary_key = Some(primary.unwrap_or_else(|| {
                        derived_key(change, &format!("{}/primary", record.device_id))
                    }));
                    record.secondary_key = Some(secondary.unwrap_or_else(|| {
                        derived_key(change, &format!("{}/secondary", record.device_id))
                    }));
                    record.primary_thumbprint = None;
                    record.secondary_thumbprint = None;
                }
                AuthType::SelfSigned => {
                    let prints = auth.x509_thumbprint.clone().unwrap_or_default();
                    if prints
                        .primary_thumbprint
                        .as_deref()
                        .unwrap_or("")
                        .is_empty()
                    {
                        return Err(HubError::bad_request(
                            "A selfSigned device needs a primary thumbprint",
                        ));
                    }
                    record.primary_thumbprint = prints.primary_thumbprint;
                    record.secondary_thumbprint = prints.secondary_thumbprint;
                    record.primary_key = None;
                    record.secondary_key = None;
                }
                AuthType::CertificateAuthority | AuthType::None => {
                    record.primary_key = None;
                    record.secondary_key = None;
                    record.primary_thumbprint = None;
                    record.secondary_thumbprint = None;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn create(
        &mut self,
        device_id: &str,
        input: &DeviceInput,
    ) -> Result<DeviceRecord, HubError> {
        if !valid_device_id(device_id) {
            return Err(HubError::bad_request(format!(
                "DeviceId {device_id} is invalid"
            )));
        }
        if self.get(device_id).is_some() {
            return Err(HubError::new(
                axum::http::StatusCode::CONFLICT,
                "DeviceAlreadyExists",
                format!("A device with ID '{device_id}' is already registered."),
            ));
        }
        let change = self.next_change();
        let now = now_text();
        let mut record = DeviceRecord {
            device_id: device_id.to_string(),
            generation_id: format!("63{:016}", change % 10_000_000_000_000_000),
            device_etag: change % 1_000_000_000,
            status: DeviceStatus::Enabled,
            status_reason: None,
            status_updated_time: NEVER.to_string(),
            connection_state: ConnectionState::Disconnected,
            connection_state_updated_time: NEVER.to_string(),
            last_activity_time: NEVER.to_string(),
            cloud_to_device_message_count: 0,
            auth_type: AuthType::Sas,
            primary_key: None,
            secondary_key: None,
            primary_thumbprint: None,
            secondary_thumbprint: None,
            iot_edge: false,
            device_scope: None,
            model_id: String::new(),
            tags: Map::new(),
            desired: Map::new(),
            desired_version: 1,
            desired_updated: now.clone(),
            reported: Map::new(),
            reported_version: 1,
            reported_updated: now,
            twin_version: 1,
        };
        let mut input = input.clone();
        if input.authentication.is_none() {
            input.authentication = Some(Default::default());
        }
        self.apply_identity(&mut record, &input)?;
        self.store(record.clone());
        Ok(record)
    }

    pub(crate) fn update(
        &mut self,
        device_id: &str,
        input: &DeviceInput,
        if_match: &str,
    ) -> Result<DeviceRecord, HubError> {
        let mut record = self
            .get(device_id)
            .ok_or_else(|| HubError::device_not_found(device_id))?
            .into_owned();
        if !etag_matches(if_match, &record.device_etag_text()) {
            return Err(HubError::precondition_failed(format!(
                "Precondition failed: device {device_id} has a different etag"
            )));
        }
        self.apply_identity(&mut record, input)?;
        record.device_etag = record.device_etag.wrapping_add(1) % 1_000_000_000;
        self.store(record.clone());
        Ok(record)
    }

    pub(crate) fn delete(&mut self, device_id: &str, if_match: &str) -> Result<(), HubError> {
        let record = self
            .get(device_id)
            .ok_or_else(|| HubError::device_not_found(device_id))?;
        if !etag_matches(if_match, &record.device_etag_text()) {
            return Err(HubError::precondition_failed(format!(
                "Precondition failed: device {device_id} has a different etag"
            )));
        }
        if self.ids.index_of(device_id).is_some() {
            self.overlay.insert(device_id.to_string(), Slot::Deleted);
        } else {
            self.overlay.remove(device_id);
        }
        Ok(())
    }

    /// `PATCH /twins/{id}` merges; `PUT /twins/{id}` replaces tags and desired properties.
    pub(crate) fn change_twin(
        &mut self,
        device_id: &str,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<DeviceRecord, HubError> {
        let mut record = self
            .get(device_id)
            .ok_or_else(|| HubError::device_not_found(device_id))?
            .into_owned();
        if let Some(if_match) = if_match {
            if !etag_matches(if_match, &record.twin_etag_text()) {
                return Err(HubError::precondition_failed(format!(
                    "Precondition failed: twin {device_id} has a different etag"
                )));
            }
        }
        let Some(body) = body.as_object() else {
            return Err(HubError::bad_request(
                "The twin patch must be a JSON object",
            ));
        };
        let tags = match body.get("tags") {
            None | Some(Value::Null) => None,
            Some(Value::Object(tags)) => Some(tags),
            Some(_) => return Err(HubError::bad_request("tags must be a JSON object")),
        };
        let desired = match body.get("properties").and_then(|p| p.get("desired")) {
            None | Some(Value::Null) => None,
            Some(Value::Object(desired)) => Some(desired),
            Some(_) => {
                return Err(HubError::bad_request(
                    "desired properties must be a JSON object",
                ))
            }
        };
        if replace {
            record.tags = tags.cloned().unwrap_or_default();
        } else if let Some(tags) = tags {
            merge_patch(&mut record.tags, tags);
        }
        if let Some(desired) = desired {
            let mut cleaned = desired.clone();
            cleaned.retain(|name, _| !name.starts_with('$'));
            if replace {
                record.desired = cleaned;
            } else {
                merge_patch(&mut record.desired, &cleaned);
            }
            record.desired_version += 1;
            record.desired_updated = now_text();
        }
        record.twin_version += 1;
        self.store(record.clone());
        Ok(record)
    }

    /// Visits live devices after `after` in deviceId order until `visit` breaks.
    pub(crate) fn scan_after(
        &self,
        after: Option<&str>,
        keys: Keys,
        visit: impl FnMut(&DeviceRecord) -> ControlFlow<()>,
    ) {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.scan_range(lower, Bound::Unbounded, keys, visit);
    }

    /// Visits live devices whose ids lie between the bounds, in deviceId order, until
    /// `visit` breaks. Only the range is visited: a partitioned read costs its own part.
    pub(crate) fn scan_range(
        &self,
        lower: Bound<&str>,
        upper: Bound<&str>,
        keys: Keys,
        mut visit: impl FnMut(&DeviceRecord) -> ControlFlow<()>,
    ) {
        let mut seeded = self.first_seeded(lower);
        let seeded_end = self.first_seeded_past(upper);
        if range_is_empty(lower, upper) {
            return;
        }
        let mut overlay = self.overlay.range::<str, _>((lower, upper)).peekable();
        loop {
            let seeded_id = (seeded < seeded_end).then(|| self.ids.id(seeded));
            let flow = match (seeded_id, overlay.peek()) {
                (None, None) => return,
                (Some(id), Some((key, _))) if id.as_str() == key.as_str() => {
                    seeded += 1;
                    match overlay.next() {
                        Some((_, Slot::Live(record))) => visit(record),
                        _ => ControlFlow::Continue(()),
                    }
                }
                (Some(id), Some((key, _))) if id.as_str() > key.as_str() => match overlay.next() {
                    Some((_, Slot::Live(record))) => visit(record),
                    _ => ControlFlow::Continue(()),
                },
                (Some(_), _) => {
                    let record = seeded_device(self.seed, &self.ids, seeded, keys);
                    seeded += 1;
                    visit(&record)
                }
                (None, Some(_)) => match overlay.next() {
                    Some((_, Slot::Live(record))) => visit(record),
                    _ => ControlFlow::Continue(()),
                },
            };
            if flow.is_break() {
                return;
            }
        }
    }

    /// The first seeded index inside a lower bound.
    fn first_seeded(&self, lower: Bound<&str>) -> u64 {
        match lower {
            Bound::Unbounded => 0,
            Bound::Included(at) => self.ids.first_index_at_or_after(at),
            Bound::Excluded(after) => self.ids.first_index_after(after),
        }
    }

    /// The first seeded index past an upper bound.
    fn first_seeded_past(&self, upper: Bound<&str>) -> u64 {
        match upper {
            Bound::Unbounded => self.ids.count,
            Bound::Included(at) => self.ids.first_index_after(at),
            Bound::Excluded(before) => self.ids.first_index_at_or_after(before),
        }
    }

    /// Every live device: seeded ones not deleted plus created ones.
    pub(crate) fn live_count(&self) -> u64 {
        self.count_range(Bound::Unbounded, Bound::Unbounded)
    }

    pub(crate) fn count(&self, query: &Query) -> u64 {
        let (lower, upper) = query.device_id_bounds();
        let (lower, upper) = (as_str_bound(&lower), as_str_bound(&upper));
        if range_is_empty(lower, upper) {
            return 0;
        }
        if query.only_device_id_range() {
            return self.count_range(lower, upper);
        }
        let mut total = 0;
        self.scan_range(lower, upper, Keys::Skip, |record| {
            if query.matches(record) {
                total += 1;
            }
            ControlFlow::Continue(())
        });
        total
    }

    /// Seeded ids in the range, corrected by the overlay's changes in it: no device is
    /// built, so counting a part of a million-device hub is instant.
    fn count_range(&self, lower: Bound<&str>, upper: Bound<&str>) -> u64 {
        let seeded = self.first_seeded(lower);
        let end = self.first_seeded_past(upper).max(seeded);
        let mut total = end - seeded;
        for (id, slot) in self.overlay.range::<str, _>((lower, upper)) {
            let is_seeded = self.ids.index_of(id).is_some();
            match (slot, is_seeded) {
                (Slot::Deleted, true) => total -= 1,
                (Slot::Live(_), false) => total += 1,
                _ => {}
            }
        }
        total
    }
}

pub(crate) fn as_str_bound(bound: &Bound<String>) -> Bound<&str> {
    match bound {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether no string lies between the bounds (`BTreeMap::range` panics on such ranges).
pub(crate) fn range_is_empty(lower: Bound<&str>, upper: Bound<&str>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

fn valid_sas_key(key: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|bytes| (16..=64).contains(&bytes.len()))
}
