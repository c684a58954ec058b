//! How a device twin becomes an asset.
//!
//! Only facts about the device are copied, under the `iothub_` prefix. Twin properties
//! (desired and reported) are deliberately left out: they are free-form, written by device
//! builders, and are where people put things that should never be copied into another
//! system. A twin query never returns device keys, and nothing here would copy one.

use iothub_client::Twin;
use iothubgdr_store::{AssetUpsert, Attributes};
use serde_json::Value;

/// The asset behaviours an imported device gets, as the Archivist's own assets have.
pub const BEHAVIOURS: &[&str] = &["RecordEvidence", "Attachments"];

pub const DISPLAY_TYPE_EDGE: &str = "IoT Edge Device";
pub const DISPLAY_TYPE_LEAF: &str = "IoT Device";

/// The natural key of a device: one asset per (tenant, hub, device id). Hub host names are
/// case-insensitive, device ids are case-sensitive in IoT Hub.
pub fn source_key(hub_host: &str, device_id: &str) -> String {
    format!(
        "iothub/{}/devices/{}",
        hub_host.to_ascii_lowercase(),
        device_id
    )
}

/// The asset an import writes for one device twin.
pub fn device_asset(hub_host: &str, twin: &Twin, home_location: Option<&str>) -> AssetUpsert {
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
    put("iothub_connection_state", twin.connection_state.as_deref());
    put(
        "iothub_last_activity_time",
        twin.last_activity_time.as_deref(),
    );
    put(
        "iothub_authentication_type",
        twin.authentication_type.as_deref(),
    );
    put(
        "iothub_model_id",
        twin.model_id.as_deref().filter(|m| !m.is_empty()),
    );
    put("iothub_device_scope", twin.device_scope.as_deref());
    put("iothub_etag", twin.etag.as_deref());
    if let Some(version) = twin.version {
        put("iothub_twin_version", Some(&version.to_string()));
    }
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
    AssetUpsert {
        source_key: source_key(hub_host, &twin.device_id),
        behaviours: BEHAVIOURS.iter().map(|b| (*b).to_owned()).collect(),
        attributes,
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
        let asset = device_asset("Hub.azure-devices.net", &t, Some("locations/abc"));
        assert_eq!(
            asset.source_key,
            "iothub/hub.azure-devices.net/devices/pump-7"
        );
        let a = &asset.attributes;
        assert_eq!(a["arc_display_name"], "pump-7");
        assert_eq!(a["arc_display_type"], DISPLAY_TYPE_EDGE);
        assert_eq!(a["arc_home_location_identity"], "locations/abc");
        assert_eq!(a["iothub_tag_building"], "B1");
        assert_eq!(a["iothub_tag_floor"], "3");
        assert_eq!(a["iothub_twin_version"], "4");
        let all = serde_json::to_string(a).expect("json");
        assert!(
            !all.contains("do-not-copy"),
            "twin properties must not be copied"
        );
    }

    #[test]
    fn leaf_device_without_optional_facts() {
        let t = twin(serde_json::json!({"deviceId": "d1", "unknownField": 1}));
        let asset = device_asset("h.azure-devices.net", &t, None);
        assert_eq!(asset.attributes["arc_display_type"], DISPLAY_TYPE_LEAF);
        assert!(!asset.attributes.contains_key("arc_home_location_identity"));
        assert!(!asset.attributes.contains_key("iothub_status"));
    }
}
