//! What an import adds to its assets' history beyond the page writes: the identity its
//! events carry, the set of devices it saw, and, once the hub was read to the end, the
//! `StopTracking` of the tracked assets of its hub that it did not see (devices that left).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use iothubgdr_store::{
    Attributes, ImportContext, ImportStatus, PageWrite, Principal, Store, StoreError,
};
use serde_json::Value;
use uuid::Uuid;

/// Tracked assets read (and at most stopped) per store call in the stop pass.
const STOP_BATCH: u32 = 1_000;
/// The issuer named on the events an import records: this service, as on its tokens.
const ISSUER: &str = "iothubgdr";

/// The identity every event of an import carries: `iothub_import` and `iothub_hub` in its
/// `event_attributes`, and the import as the principal that accepted it.
pub(crate) fn import_context(import_id: Uuid, hub_host: &str, display_name: &str) -> ImportContext {
    let identity = format!("iothubgdr/{import_id}");
    let mut event_attributes = Attributes::new();
    event_attributes.insert("iothub_import".into(), Value::String(identity.clone()));
    event_attributes.insert(
        "iothub_hub".into(),
        Value::String(hub_host.to_ascii_lowercase()),
    );
    ImportContext {
        event_attributes,
        principal: Principal {
            issuer: ISSUER.to_owned(),
            subject: identity,
            display_name: display_name.to_owned(),
            email: String::new(),
        },
    }
}

/// The source keys an import saw, as keyed 64-bit hashes: 8 bytes of payload a device
/// (about 16 with the set's overhead) instead of the ~60-byte key, so a hub of a million
/// devices costs ~16 MB here. The set is bounded by what the hub sent, and the hub's own
/// paging guards bound that (at most twice its reported count plus 1,000). `RandomState`
/// keys the hash per import, so no hub can choose device ids that collide; by chance, two of
/// a million keys share a hash with probability ~3e-8, and the cost is one device not
/// stopped until a later import.
///
/// It also counts the distinct keys the import wrote: when the hub's tracked assets number
/// exactly that many, none of them can be unseen, and the stop pass reads nothing. A
/// collision only lowers the count, which makes the pass read them all, as without it.
pub(crate) struct SeenDevices {
    hasher: RandomState,
    hashes: HashSet<u64>,
    written: u64,
}

impl SeenDevices {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            hashes: HashSet::new(),
            written: 0,
        }
    }

    /// A device whose asset the import writes.
    pub(crate) fn insert_written(&mut self, source_key: &str) {
        if self.hashes.insert(self.hasher.hash_one(source_key)) {
            self.written += 1;
        }
    }

    /// A device in the hub whose twin the import refused: it did not leave.
    pub(crate) fn insert_refused(&mut self, source_key: &str) {
        self.hashes.insert(self.hasher.hash_one(source_key));
    }

    pub(crate) fn contains(&self, source_key: &str) -> bool {
        self.hashes.contains(&self.hasher.hash_one(source_key))
    }
}

/// Stops every tracked asset under `prefix` (one hub's devices) that the import did not
/// see, a batch per transaction. `Ok(Some(status))`: the import left the in-progress state
/// meanwhile and nothing more was stopped.
pub(crate) async fn stop_unseen(
    store: &dyn Store,
    import_id: Uuid,
    tenant_id: Uuid,
    context: &ImportContext,
    prefix: &str,
    seen: &SeenDevices,
) -> Result<Option<ImportStatus>, StoreError> {
    // Every key written is tracked now (created, changed or unchanged while tracked), so
    // as many tracked assets as keys written means none is unseen.
    if store
        .assets_tracked_count_by_source(tenant_id, prefix)
        .await?
        == seen.written
    {
        return Ok(None);
    }
    let mut after: Option<String> = None;
    loop {
        let tracked = store
            .assets_tracked_by_source(tenant_id, prefix, after.as_deref(), STOP_BATCH)
            .await?;
        let Some((_, last)) = tracked.last() else {
            return Ok(None);
        };
        after = Some(last.clone());
        let gone: Vec<Uuid> = tracked
            .iter()
            .filter(|(_, key)| !seen.contains(key))
            .map(|(id, _)| *id)
            .collect();
        if !gone.is_empty() {
            if let PageWrite::Stopped(status) = store
                .import_stop_tracking(import_id, tenant_id, context, &gone)
                .await?
            {
                return Ok(Some(status));
            }
        }
        if tracked.len() < STOP_BATCH as usize {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_devices_remember_keys() {
        let mut seen = SeenDevices::new();
        seen.insert_written("iothub/h/devices/a");
        seen.insert_written("iothub/h/devices/a");
        seen.insert_refused("iothub/h/devices/r");
        assert!(seen.contains("iothub/h/devices/a"));
        assert!(seen.contains("iothub/h/devices/r"));
        assert!(!seen.contains("iothub/h/devices/b"));
        // Written keys are counted once each; refused ones not at all.
        assert_eq!(seen.written, 1);
    }

    #[test]
    fn the_context_names_the_import_and_its_hub() {
        let id = Uuid::nil();
        let ctx = import_context(id, "Hub.Azure-Devices.net", "nightly");
        assert_eq!(
            ctx.event_attributes["iothub_import"],
            format!("iothubgdr/{id}")
        );
        assert_eq!(ctx.event_attributes["iothub_hub"], "hub.azure-devices.net");
        assert_eq!(ctx.principal.display_name, "nightly");
    }
}
