//! How a device twin becomes an asset.
//!
//! Only facts about the device are copied, under the `iothub_` prefix. Twin properties
//! (desired and reported) are deliberately left out: they are free-form, written by device
//! builders, and are where people put things that should never be copied into another
//! system. A twin query never returns device keys, and nothing here would copy one.
//!
//! A twin that breaks IoT Hub's own limits ([`check_twin`]) cannot have come from a real hub
//! and is not copied at all: the import counts it as refused.
//!
//! Facts split in two. Descriptive facts (status, tags, IoT Edge capability, model id,
//! authentication type, scope, ...) are the asset's attributes: a change in them is a change
//! of the device, recorded as an event. Volatile facts (connection state, last activity,
//! the twin's etag and version) change on every heartbeat or reported property; as asset
//! attributes they would either make an event on every import of a live hub (a history of
//! noise, and a write per device per import) or be overwritten without an event (an asset
//! that is no longer what its events say, and `at_time` answers that lie). So they ride in
//! the `event_attributes` of the events that are recorded anyway: the state of the device
//! when it was first seen, when it changed, when it came back.

use iothub_client::Twin;
use iothubgdr_store::{AssetUpsert, Attributes, Incarnation, Observation};
use serde_json::Value;

/// The asset behaviours an imported device gets, as the Archivist's own assets have.
pub const BEHAVIOURS: &[&str] = &["RecordEvidence", "Attachments"];

pub const DISPLAY_TYPE_EDGE: &str = "IoT Edge Device";
pub const DISPLAY_TYPE_LEAF: &str = "IoT Device";

/// IoT Hub's limit on a device id: "a case-sensitive string (up to 128 characters long) of
/// ASCII 7-bit alphanumeric characters plus the following special characters:
/// `- : . + % _ # * ? ! ( ) , = @ ; $ '`" (device identity properties, "Understand the
/// identity registry in your IoT hub").
pub const MAX_DEVICE_ID_CHARS: usize = 128;
const DEVICE_ID_SPECIALS: &[u8] = b"-:.+%_#*?!(),=@;$'";
/// IoT Hub's limit on a twin's tags: 8 KB ("Tags, desired properties, and reported
/// properties ... Size: ... 8 KB for tags", device twins guide), measured here as compact
/// JSON.
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Twin facts copied as attributes (status reason, model id, …) are short in IoT Hub
/// (`statusReason` is at most 128 characters, a model id 128 …); anything longer than the
/// API's own field limit did not come from a hub.
pub const MAX_FACT_CHARS: usize = 1024;

/// Why a twin is not copied. Its text never quotes the twin (the id is logged separately,
/// escaped and cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinRefusal {
    DeviceIdEmpty,
    DeviceIdTooLong,
    DeviceIdCharacters,
    TagsTooLarge,
    FactTooLong(&'static str),
}

impl std::fmt::Display for TwinRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TwinRefusal::DeviceIdEmpty => f.write_str("the device id is empty"),
            TwinRefusal::DeviceIdTooLong => write!(
                f,
                "the device id is longer than IoT Hub's {MAX_DEVICE_ID_CHARS} characters"
            ),
            TwinRefusal::DeviceIdCharacters => {
                f.write_str("the device id has characters IoT Hub does not allow")
            }
            TwinRefusal::TagsTooLarge => write!(
                f,
                "the tags are larger than IoT Hub's {} KB",
                MAX_TAGS_BYTES / 1024
            ),
            TwinRefusal::FactTooLong(field) => {
                write!(f, "{field} is longer than {MAX_FACT_CHARS} characters")
            }
        }
    }
}

/// Checks a twin against IoT Hub's own limits. Runs on every twin of every import, so it
/// allocates nothing.
pub fn check_twin(twin: &Twin) -> Result<(), TwinRefusal> {
    let id = twin.device_id.as_bytes();
    if id.is_empty() {
        return Err(TwinRefusal::DeviceIdEmpty);
    }
    if id.len() > MAX_DEVICE_ID_CHARS {
        return Err(TwinRefusal::DeviceIdTooLong);
    }
    if !id
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || DEVICE_ID_SPECIALS.contains(b))
    {
        return Err(TwinRefusal::DeviceIdCharacters);
    }
    let facts = [
        ("status", &twin.status),
        ("statusReason", &twin.status_reason),
        ("connectionState", &twin.connection_state),
        ("lastActivityTime", &twin.last_activity_time),
        ("authenticationType", &twin.authentication_type),
        ("modelId", &twin.model_id),
        ("deviceScope", &twin.device_scope),
        ("etag", &twin.etag),
    ];
    for (field, value) in facts {
        if value.as_ref().is_some_and(|v| v.len() > MAX_FACT_CHARS) {
            return Err(TwinRefusal::FactTooLong(field));
        }
    }
    if let Some(tags) = &twin.tags {
        let mut size = ByteCounter::default();
        if serde_json::to_writer(&mut size, tags).is_err() || size.0 > MAX_TAGS_BYTES {
            return Err(TwinRefusal::TagsTooLarge);
        }
    }
    Ok(())
}

/// Counts what is written to it (the compact JSON size of tags, without building it).
#[derive(Default)]
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A hub-controlled device id made safe for a log line: escaped (no control or bidi
/// characters reach the log) and cut to 64 characters.
pub fn loggable_device_id(id: &str) -> String {
    const MAX: usize = 64;
    let mut text: String = id.chars().take(MAX).flat_map(char::escape_debug).collect();
    if id.chars().nth(MAX).is_some() {
        text.push('…');
    }
    text
}

/// The natural key of a device: one asset per (tenant, hub, device id). Hub host names are
/// case-insensitive, device ids are case-sensitive in IoT Hub.
pub fn source_key(hub_host: &str, device_id: &str) -> String {
    format!(
        "iothub/{}/devices/{}",
        hub_host.to_ascii_lowercase(),
        device_id
    )
}

/// A page of twins made into assets: the twins over IoT Hub's limits are counted, not
/// copied.
#[derive(Debug, Default)]
pub struct MappedPage {
    pub assets: Vec<AssetUpsert>,
    pub refused: u64,
    /// The source keys of refused twins whose device id is valid: the device is in the hub
    /// (only its twin is over a limit), so an asset imported for it before must not be
    /// stopped. A refused id is never a key an import wrote.
    pub refused_keys: Vec<String>,
}

/// How an import read the twins. Each way omits a fact the other has: a page write keeps
/// the stored value of what its way cannot see ([`Observation::unknown_attributes`]), so
/// alternating between them records no change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinSource {
    /// Twin queries: a twin has no `generationId`.
    Query,
    /// An export job's `devices.txt`: a device identity has no `modelId`.
    Export,
}

impl TwinSource {
    fn unknown_attributes(self) -> &'static [&'static str] {
        match self {
            TwinSource::Query => &["iothub_generation_id"],
            TwinSource::Export => &["iothub_model_id"],
        }
    }
}

/// Maps a page, telling `on_refused` about each twin that [`check_twin`] refuses.
pub fn map_page(
    hub_host: &str,
    twins: &[Twin],
    home_location: Option<&str>,
    source: TwinSource,
    mut on_refused: impl FnMut(&Twin, TwinRefusal),
) -> MappedPage {
    let mut page = MappedPage {
        assets: Vec::with_capacity(twins.len()),
        refused: 0,
        refused_keys: Vec::new(),
    };
    for twin in twins {
        match check_twin(twin) {
            Ok(()) => page
                .assets
                .push(device_asset(hub_host, twin, home_location, source)),
            Err(reason) => {
                page.refused += 1;
                if matches!(
                    reason,
                    TwinRefusal::TagsTooLarge | TwinRefusal::FactTooLong(_)
                ) {
                    page.refused_keys
                        .push(source_key(hub_host, &twin.device_id));
                }
                on_refused(twin, reason);
            }
        }
    }
    page
}

/// The asset an import writes for one device twin.
pub fn device_asset(
    hub_host: &str,
    twin: &Twin,
    home_location: Option<&str>,
    source: TwinSource,
) -> AssetUpsert {
    let mut attributes = Attributes::new();
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            attributes.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    };
    let is_edge = twin.capabilities.as_ref().is_some_and(|c| c.iot_edge);
    put("arc_display_name", Some(&twin.device_id));
    put(
        "arc_display_type",
        Some(if is_edge {
            DISPLAY_TYPE_EDGE
        } else {
            DISPLAY_TYPE_LEAF
        }),
    );
    put(
        "arc_description",
        Some(&format!(
            "Device {} imported from Azure IoT Hub {}",
            twin.device_id, hub_host
        )),
    );
    put("arc_home_location_identity", home_location);
    put("iothub_hub", Some(hub_host));
    put("iothub_device_id", Some(&twin.device_id));
    put(
        "iothub_iot_edge",
        Some(if is_edge { "true" } else { "false" }),
    );
    put("iothub_status", twin.status.as_deref());
    put("iothub_status_reason", twin.status_reason.as_deref());
    put("iothub_generation_id", twin.generation_id.as_deref());
    put(
        "iothub_authentication_type",
        twin.authentication_type.as_deref(),
    );
    put(
        "iothub_model_id",
        twin.model_id.as_deref().filter(|m| !m.is_empty()),
    );
    put("iothub_device_scope", twin.device_scope.as_deref());
    // Tags are flattened to one string attribute each, so that they can be filtered on with
    // `attributes.iothub_tag_<name>=<value>` like any other attribute.
    if let Some(tags) = &twin.tags {
        for (name, value) in tags {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            attributes.insert(format!("iothub_tag_{name}"), Value::String(text));
        }
    }
    AssetUpsert::new(
        source_key(hub_host, &twin.device_id),
        BEHAVIOURS.iter().map(|b| (*b).to_owned()).collect(),
        attributes,
        observation(twin, source),
    )
}

/// The volatile facts of a twin, for the events of this import, and its incarnation.
fn observation(twin: &Twin, source: TwinSource) -> Observation {
    let mut event_attributes = Attributes::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            event_attributes.insert(name.to_owned(), Value::String(value));
        }
    };
    put("iothub_twin_version", twin.version.map(|v| v.to_string()));
    put("iothub_etag", twin.etag.clone());
    put("iothub_connection_state", twin.connection_state.clone());
    put("iothub_last_activity_time", twin.last_activity_time.clone());
    Observation {
        event_attributes,
        incarnation: Incarnation {
            generation: twin.generation_id.clone(),
            version: twin.version,
        },
        unknown_attributes: source.unknown_attributes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin(json: serde_json::Value) -> Twin {
        serde_json::from_value(json).expect("twin")
    }

    #[test]
    fn edge_device_with_tags_and_location() {
        let t = twin(serde_json::json!({
            "deviceId": "pump-7",
            "etag": "AAAAAAAAAAE=",
            "status": "enabled",
            "connectionState": "Connected",
            "lastActivityTime": "2026-11-01T10:00:00Z",
            "authenticationType": "sas",
            "capabilities": {"iotEdge": true},
            "modelId": "dtmi:acme:pump;1",
            "tags": {"building": "B1", "floor": 3},
            "properties": {"desired": {"apiKey": "do-not-copy"}},
            "version": 4
        }));
        let asset = device_asset(
            "Hub.azure-devices.net",
            &t,
            Some("locations/abc"),
            TwinSource::Query,
        );
        assert_eq!(
            asset.source_key,
            "iothub/hub.azure-devices.net/devices/pump-7"
        );
        let a = asset.attributes();
        assert_eq!(a["arc_display_name"], "pump-7");
        assert_eq!(a["arc_display_type"], DISPLAY_TYPE_EDGE);
        assert_eq!(a["arc_home_location_identity"], "locations/abc");
        assert_eq!(a["iothub_tag_building"], "B1");
        assert_eq!(a["iothub_tag_floor"], "3");
        // Volatile facts ride on events, never as attributes that would change each import.
        assert!(!a.contains_key("iothub_twin_version"));
        assert!(!a.contains_key("iothub_connection_state"));
        assert!(!a.contains_key("iothub_last_activity_time"));
        let seen = &asset.observation.event_attributes;
        assert_eq!(seen["iothub_twin_version"], "4");
        assert_eq!(seen["iothub_last_activity_time"], "2026-11-01T10:00:00Z");
        assert_eq!(asset.observation.incarnation.version, Some(4));
        let all = serde_json::to_string(a).expect("json");
        assert!(
            !all.contains("do-not-copy"),
            "twin properties must not be copied"
        );
    }

    #[test]
    fn refused_twins_with_a_valid_id_still_name_their_device() {
        let twins = [
            twin(serde_json::json!({"deviceId": "ok"})),
            twin(serde_json::json!({"deviceId": "big", "tags": {"t": "x".repeat(MAX_TAGS_BYTES)}})),
            twin(serde_json::json!({"deviceId": "bad id"})),
        ];
        let page = map_page(
            "Hub.azure-devices.net",
            &twins,
            None,
            TwinSource::Query,
            |_, _| {},
        );
        assert_eq!(page.assets.len(), 1);
        assert_eq!(page.refused, 2);
        // The device with oversized tags is in the hub: its asset must not be stopped. An id
        // IoT Hub would refuse was never imported, so it needs no key.
        assert_eq!(
            page.refused_keys,
            vec![source_key("Hub.azure-devices.net", "big")]
        );
    }

    #[test]
    fn twins_within_iot_hub_limits_pass() {
        let ok = twin(serde_json::json!({
            "deviceId": format!("{}{}", "a".repeat(110), "-:.+%_#*?!(),=@;$'"),
            "statusReason": "r".repeat(MAX_FACT_CHARS),
            "tags": {"t": "x".repeat(MAX_TAGS_BYTES - 20)}
        }));
        assert_eq!(ok.device_id.len(), MAX_DEVICE_ID_CHARS);
        assert_eq!(check_twin(&ok), Ok(()));
    }

    #[test]
    fn twins_over_iot_hub_limits_are_refused() {
        let cases = [
            (
                serde_json::json!({"deviceId": ""}),
                TwinRefusal::DeviceIdEmpty,
            ),
            (
                serde_json::json!({"deviceId": "a".repeat(MAX_DEVICE_ID_CHARS + 1)}),
                TwinRefusal::DeviceIdTooLong,
            ),
            (
                serde_json::json!({"deviceId": "a/b"}),
                TwinRefusal::DeviceIdCharacters,
            ),
            (
                serde_json::json!({"deviceId": "a b"}),
                TwinRefusal::DeviceIdCharacters,
            ),
            (
                serde_json::json!({"deviceId": "a\u{7}b"}),
                TwinRefusal::DeviceIdCharacters,
            ),
            (
                serde_json::json!({"deviceId": "é"}),
                TwinRefusal::DeviceIdCharacters,
            ),
            (
                serde_json::json!({"deviceId": "a\u{202e}b"}),
                TwinRefusal::DeviceIdCharacters,
            ),
            (
                serde_json::json!({"deviceId": "d", "tags": {"t": "x".repeat(MAX_TAGS_BYTES)}}),
                TwinRefusal::TagsTooLarge,
            ),
            (
                serde_json::json!({"deviceId": "d", "tags": {"t": "x".repeat(1 << 20)}}),
                TwinRefusal::TagsTooLarge,
            ),
            (
                serde_json::json!({"deviceId": "d", "modelId": "m".repeat(MAX_FACT_CHARS + 1)}),
                TwinRefusal::FactTooLong("modelId"),
            ),
        ];
        for (json, expected) in cases {
            let t = twin(json);
            assert_eq!(check_twin(&t), Err(expected), "{:?}", t.device_id);
        }
    }

    #[test]
    fn refused_ids_are_logged_escaped_and_cut() {
        assert_eq!(loggable_device_id("plain-id"), "plain-id");
        let hostile = format!("a\u{1b}[31m\n\u{202e}{}", "z".repeat(200));
        let shown = loggable_device_id(&hostile);
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown}"
        );
        assert!(shown.contains("\\u{1b}") && shown.ends_with('…'), "{shown}");
        assert!(shown.chars().count() < 100);
    }

    #[test]
    fn leaf_device_without_optional_facts() {
        let t = twin(serde_json::json!({"deviceId": "d1", "unknownField": 1}));
        let asset = device_asset("h.azure-devices.net", &t, None, TwinSource::Export);
        assert_eq!(asset.attributes()["arc_display_type"], DISPLAY_TYPE_LEAF);
        assert!(!asset
            .attributes()
            .contains_key("arc_home_location_identity"));
        assert!(!asset.attributes().contains_key("iothub_status"));
    }
}
