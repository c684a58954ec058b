//! Device identities and twins, in the JSON shapes of the IoT Hub service REST API
//! (<https://learn.microsoft.com/rest/api/iothub/service/devices/get-identity> and
//! <https://learn.microsoft.com/rest/api/iothub/service/devices/get-twin>).

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum DeviceStatus {
    Enabled,
    Disabled,
}

impl DeviceStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Enabled => "enabled",
            DeviceStatus::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ConnectionState {
    Connected,
    Disconnected,
}

impl ConnectionState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connected => "Connected",
            ConnectionState::Disconnected => "Disconnected",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum AuthType {
    Sas,
    SelfSigned,
    CertificateAuthority,
    None,
}

impl AuthType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthType::Sas => "sas",
            AuthType::SelfSigned => "selfSigned",
            AuthType::CertificateAuthority => "certificateAuthority",
            AuthType::None => "none",
        }
    }
}

/// Everything the emulator knows about one device: identity and twin together.
#[derive(Clone, Debug)]
pub(crate) struct DeviceRecord {
    pub(crate) device_id: String,
    pub(crate) generation_id: String,
    pub(crate) device_etag: u64,
    pub(crate) status: DeviceStatus,
    pub(crate) status_reason: Option<String>,
    pub(crate) status_updated_time: String,
    pub(crate) connection_state: ConnectionState,
    pub(crate) connection_state_updated_time: String,
    pub(crate) last_activity_time: String,
    pub(crate) cloud_to_device_message_count: u64,
    pub(crate) auth_type: AuthType,
    pub(crate) primary_key: Option<String>,
    pub(crate) secondary_key: Option<String>,
    pub(crate) primary_thumbprint: Option<String>,
    pub(crate) secondary_thumbprint: Option<String>,
    pub(crate) iot_edge: bool,
    pub(crate) device_scope: Option<String>,
    pub(crate) model_id: String,
    pub(crate) tags: Map<String, Value>,
    pub(crate) desired: Map<String, Value>,
    pub(crate) desired_version: u64,
    pub(crate) desired_updated: String,
    pub(crate) reported: Map<String, Value>,
    pub(crate) reported_version: u64,
    pub(crate) reported_updated: String,
    pub(crate) twin_version: u64,
}

pub(crate) const NEVER: &str = "0001-01-01T00:00:00Z";

impl DeviceRecord {
    pub(crate) fn device_etag_text(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.device_etag.to_string())
    }

    pub(crate) fn twin_etag_text(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.twin_version.to_be_bytes())
    }

    pub(crate) fn device_json(&self) -> DeviceJson<'_> {
        DeviceJson {
            device_id: &self.device_id,
            generation_id: &self.generation_id,
            etag: self.device_etag_text(),
            connection_state: self.connection_state.as_str(),
            status: self.status.as_str(),
            status_reason: self.status_reason.as_deref(),
            connection_state_updated_time: &self.connection_state_updated_time,
            status_updated_time: &self.status_updated_time,
            last_activity_time: &self.last_activity_time,
            cloud_to_device_message_count: self.cloud_to_device_message_count,
            authentication: AuthenticationJson {
                symmetric_key: SymmetricKeyJson {
                    primary_key: self.primary_key.as_deref(),
                    secondary_key: self.secondary_key.as_deref(),
                },
                x509_thumbprint: self.thumbprints(),
                kind: self.auth_type.as_str(),
            },
            capabilities: CapabilitiesJson {
                iot_edge: self.iot_edge,
            },
            device_scope: self.device_scope.as_deref(),
            parent_scopes: self.parent_scopes(),
            model_id: &self.model_id,
        }
    }

    pub(crate) fn twin_json(&self) -> TwinJson<'_> {
        TwinJson {
            device_id: &self.device_id,
            etag: self.twin_etag_text(),
            device_etag: self.device_etag_text(),
            status: self.status.as_str(),
            status_reason: self.status_reason.as_deref(),
            status_update_time: &self.status_updated_time,
            connection_state: self.connection_state.as_str(),
            last_activity_time: &self.last_activity_time,
            cloud_to_device_message_count: self.cloud_to_device_message_count,
            authentication_type: self.auth_type.as_str(),
            x509_thumbprint: self.thumbprints(),
            model_id: &self.model_id,
            version: self.twin_version,
            tags: &self.tags,
            properties: PropertiesJson {
                desired: PropertySetJson {
                    values: &self.desired,
                    metadata: MetadataJson {
                        last_updated: &self.desired_updated,
                    },
                    version: self.desired_version,
                },
                reported: PropertySetJson {
                    values: &self.reported,
                    metadata: MetadataJson {
                        last_updated: &self.reported_updated,
                    },
                    version: self.reported_version,
                },
            },
            capabilities: CapabilitiesJson {
                iot_edge: self.iot_edge,
            },
            device_scope: self.device_scope.as_deref(),
            parent_scopes: self.parent_scopes(),
        }
    }

    fn thumbprints(&self) -> ThumbprintJson<'_> {
        ThumbprintJson {
            primary_thumbprint: self.primary_thumbprint.as_deref(),
            secondary_thumbprint: self.secondary_thumbprint.as_deref(),
        }
    }

    fn parent_scopes(&self) -> Vec<&str> {
        match (&self.device_scope, self.iot_edge) {
            (Some(scope), false) => vec![scope.as_str()],
            _ => Vec::new(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceJson<'a> {
    device_id: &'a str,
    generation_id: &'a str,
    etag: String,
    connection_state: &'a str,
    status: &'a str,
    status_reason: Option<&'a str>,
    connection_state_updated_time: &'a str,
    status_updated_time: &'a str,
    last_activity_time: &'a str,
    cloud_to_device_message_count: u64,
    authentication: AuthenticationJson<'a>,
    capabilities: CapabilitiesJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_scope: Option<&'a str>,
    parent_scopes: Vec<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    model_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationJson<'a> {
    symmetric_key: SymmetricKeyJson<'a>,
    x509_thumbprint: ThumbprintJson<'a>,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SymmetricKeyJson<'a> {
    primary_key: Option<&'a str>,
    secondary_key: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThumbprintJson<'a> {
    primary_thumbprint: Option<&'a str>,
    secondary_thumbprint: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CapabilitiesJson {
    iot_edge: bool,
}

/// A twin as the query and `GET /twins/{id}` return it: never with the device keys.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TwinJson<'a> {
    device_id: &'a str,
    etag: String,
    device_etag: String,
    status: &'a str,
    status_reason: Option<&'a str>,
    status_update_time: &'a str,
    connection_state: &'a str,
    last_activity_time: &'a str,
    cloud_to_device_message_count: u64,
    authentication_type: &'a str,
    x509_thumbprint: ThumbprintJson<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    model_id: &'a str,
    version: u64,
    tags: &'a Map<String, Value>,
    properties: PropertiesJson<'a>,
    capabilities: CapabilitiesJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_scope: Option<&'a str>,
    parent_scopes: Vec<&'a str>,
}

#[derive(Serialize)]
struct PropertiesJson<'a> {
    desired: PropertySetJson<'a>,
    reported: PropertySetJson<'a>,
}

#[derive(Serialize)]
struct PropertySetJson<'a> {
    #[serde(flatten)]
    values: &'a Map<String, Value>,
    #[serde(rename = "$metadata")]
    metadata: MetadataJson<'a>,
    #[serde(rename = "$version")]
    version: u64,
}

#[derive(Serialize)]
struct MetadataJson<'a> {
    #[serde(rename = "$lastUpdated")]
    last_updated: &'a str,
}

/// The parts of a device identity a caller may send in `PUT /devices/{id}` or a bulk entry.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceInput {
    pub(crate) device_id: Option<String>,
    pub(crate) status: Option<DeviceStatus>,
    pub(crate) status_reason: Option<String>,
    pub(crate) authentication: Option<AuthenticationInput>,
    pub(crate) capabilities: Option<CapabilitiesInput>,
    pub(crate) device_scope: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthenticationInput {
    pub(crate) symmetric_key: Option<SymmetricKeyInput>,
    pub(crate) x509_thumbprint: Option<ThumbprintInput>,
    #[serde(rename = "type")]
    pub(crate) kind: Option<AuthType>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SymmetricKeyInput {
    pub(crate) primary_key: Option<String>,
    pub(crate) secondary_key: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThumbprintInput {
    pub(crate) primary_thumbprint: Option<String>,
    pub(crate) secondary_thumbprint: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CapabilitiesInput {
    pub(crate) iot_edge: Option<bool>,
}

/// Applies RFC 7396-style merge semantics, as twin patches do: `null` removes a property.
pub(crate) fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (name, value) in patch {
        match value {
            Value::Null => {
                target.remove(name);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot_map) = slot {
                    merge_patch(slot_map, inner);
                }
            }
            other => {
                target.insert(name.clone(), other.clone());
            }
        }
    }
}
