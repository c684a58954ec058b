//! The device twin as the query API returns it, typed for what the import uses.

use serde::{Deserialize, Serialize};

/// A device twin from `SELECT * FROM devices`. Fields the import does not use are ignored,
/// and every field but `deviceId` may be missing (projections, older api-versions).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    pub device_id: String,
    /// Which incarnation of the device id this is: a device deleted and created again gets
    /// a new one. Registry reads and export jobs carry it; twin query results may not.
    #[serde(default)]
    pub generation_id: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default)]
    pub connection_state: Option<String>,
    #[serde(default)]
    pub last_activity_time: Option<String>,
    #[serde(default)]
    pub authentication_type: Option<String>,
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub device_scope: Option<String>,
    #[serde(default)]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub properties: Option<serde_json::Value>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Capabilities {
    #[serde(rename = "iotEdge", default)]
    pub iot_edge: bool,
}

/// Decodes one page of the twin query: a JSON array of twins. Arbitrary bytes give an
/// error, never a panic.
pub fn decode_twin_page(body: &[u8]) -> Result<Vec<Twin>, serde_json::Error> {
    serde_json::from_slice(body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceCount {
    number_of_devices: u64,
}

/// Decodes the answer to `SELECT COUNT() AS numberOfDevices FROM devices`:
/// `[{"numberOfDevices": N}]`. An empty array means no devices.
pub fn decode_device_count(body: &[u8]) -> Result<u64, serde_json::Error> {
    let rows: Vec<DeviceCount> = serde_json::from_slice(body)?;
    Ok(rows.first().map_or(0, |row| row.number_of_devices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_full_twin_and_ignores_unknown_fields() {
        let body = br#"[{
            "deviceId": "dev-1", "etag": "AAAAAAAAAAc=", "deviceEtag": "Mzk0",
            "status": "disabled", "statusReason": "stolen", "statusUpdateTime": "0001-01-01T00:00:00Z",
            "connectionState": "Connected", "lastActivityTime": "2026-01-01T00:00:00Z",
            "cloudToDeviceMessageCount": 0, "authenticationType": "sas",
            "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
            "modelId": "dtmi:com:example:Thermostat;1", "version": 7,
            "capabilities": {"iotEdge": true}, "deviceScope": "ms-azure-iot-edge://dev-1-1",
            "tags": {"location": {"plant": "Redmond43"}},
            "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}}
        }, {"deviceId": "dev-2"}]"#;
        let page = decode_twin_page(body).unwrap();
        assert_eq!(page.len(), 2);
        let twin = &page[0];
        assert_eq!(twin.device_id, "dev-1");
        assert_eq!(twin.status.as_deref(), Some("disabled"));
        assert_eq!(twin.status_reason.as_deref(), Some("stolen"));
        assert_eq!(twin.connection_state.as_deref(), Some("Connected"));
        assert_eq!(twin.capabilities, Some(Capabilities { iot_edge: true }));
        assert_eq!(twin.version, Some(7));
        assert_eq!(
            twin.tags.as_ref().unwrap()["location"]["plant"],
            "Redmond43"
        );
        assert_eq!(page[1].device_id, "dev-2");
        assert_eq!(page[1].etag, None);
    }

    #[test]
    fn rejects_what_is_not_a_page() {
        assert!(decode_twin_page(b"").is_err());
        assert!(decode_twin_page(b"[{\"deviceId\": \"a\"").is_err());
        assert!(decode_twin_page(b"{\"Message\":\"ErrorCode:IotHubUnauthorizedAccess\"}").is_err());
        assert!(decode_twin_page(b"[{\"etag\": \"x\"}]").is_err());
    }

    #[test]
    fn decodes_the_device_count() {
        assert_eq!(
            decode_device_count(br#"[{"numberOfDevices": 12345}]"#).unwrap(),
            12345
        );
        assert_eq!(decode_device_count(b"[]").unwrap(), 0);
        assert!(decode_device_count(br#"[{"numberOfDevices": -1}]"#).is_err());
    }
}
