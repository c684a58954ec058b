//! The two service connection-string forms an IoT Hub hands out, parsed into a
//! value that never shows its key.
//!
//! Parsing is hand-written: the format is a `;`-separated list of `Name=Value`
//! pairs (values may themselves contain `=`, e.g. base64 padding), and no crate
//! gives the precise rejection reasons the import needs.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use zeroize::Zeroizing;

/// Azure keys are padded base64, but a copy-paste that lost the padding is still
/// the same key, so padding is optional.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which of the two accepted forms a connection string was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionStringForm {
    /// `HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>`
    IotHub,
    /// `Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>;EntityPath=<hub>`
    EventHubCompatible,
}

/// Why a connection string was rejected. The messages name the part that is wrong and
/// never repeat the input, which holds the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("the connection string is empty")]
    Empty,
    #[error("part {position} of the connection string is not of the form Name=Value")]
    MalformedPart { position: usize },
    #[error("the connection string has an unknown part at position {position}")]
    UnknownPart { position: usize },
    #[error("the connection string names {name} more than once")]
    DuplicatePart { name: &'static str },
    #[error("this is a device connection string (it has {name}); an IoT Hub service connection string with a shared access policy is needed")]
    DeviceConnectionString { name: &'static str },
    #[error("connection strings that carry a ready-made SharedAccessSignature are not supported; use one with SharedAccessKey")]
    SharedAccessSignatureNotSupported,
    #[error("the connection string is neither the IoT Hub form (HostName=...) nor the Event Hub-compatible form (Endpoint=sb://...)")]
    UnknownForm,
    #[error("the connection string has both HostName and Endpoint; use one form")]
    AmbiguousForm,
    #[error("the connection string has no HostName")]
    MissingHostName,
    #[error("the Event Hub-compatible connection string has no Endpoint")]
    MissingEndpoint,
    #[error("the connection string has no SharedAccessKeyName")]
    MissingSharedAccessKeyName,
    #[error("the connection string has no SharedAccessKey")]
    MissingSharedAccessKey,
    #[error("the Event Hub-compatible connection string has no EntityPath (the IoT Hub name)")]
    MissingEntityPath,
    #[error("the HostName is not a valid host name")]
    InvalidHostName,
    #[error("the Endpoint is not an sb://<namespace>.servicebus.windows.net/ address")]
    InvalidEndpoint,
    #[error("the Endpoint is not under the Service Bus domain of a known Azure cloud (servicebus.windows.net, servicebus.chinacloudapi.cn, servicebus.usgovcloudapi.net); use the IoT Hub form (HostName=...)")]
    UnknownCloudEndpoint,
    #[error("the EntityPath is not a valid IoT Hub name")]
    InvalidEntityPath,
    #[error("the SharedAccessKeyName is not a valid policy name")]
    InvalidSharedAccessKeyName,
    #[error("the SharedAccessKey is not valid base64")]
    KeyNotBase64,
    #[error("the SharedAccessKey is empty")]
    EmptyKey,
}

/// A parsed IoT Hub service connection string. `Debug` and `Display` show the host and the
/// policy, never the key; the key is wiped from memory when the value is dropped.
#[derive(Clone)]
pub struct ConnectionString {
    host_name: String,
    policy_name: String,
    key: Zeroizing<Vec<u8>>,
    form: ConnectionStringForm,
}

impl ConnectionString {
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let parts = Parts::split(s)?;
        if let Some(name) = parts.device_marker {
            return Err(ConnectionStringError::DeviceConnectionString { name });
        }
        if parts.shared_access_signature {
            return Err(ConnectionStringError::SharedAccessSignatureNotSupported);
        }
        let (form, host_name) = match (parts.host_name, parts.endpoint) {
            (Some(_), Some(_)) => return Err(ConnectionStringError::AmbiguousForm),
            (Some(host), None) => {
                if parts.entity_path.is_some() {
                    // EntityPath only belongs to the Event Hub-compatible form.
                    return Err(ConnectionStringError::AmbiguousForm);
                }
                (ConnectionStringForm::IotHub, parse_host_name(host)?)
            }
            (None, Some(endpoint)) => {
                let iot_hub_domain = iot_hub_domain_of_endpoint(endpoint)?;
                let hub = parts
                    .entity_path
                    .ok_or(ConnectionStringError::MissingEntityPath)?;
                (
                    ConnectionStringForm::EventHubCompatible,
                    host_from_entity_path(hub, iot_hub_domain)?,
                )
            }
            (None, None) if parts.entity_path.is_some() => {
                return Err(ConnectionStringError::MissingEndpoint)
            }
            (None, None) => return Err(ConnectionStringError::MissingHostName),
        };
        let policy_name = parts
            .policy_name
            .ok_or(ConnectionStringError::MissingSharedAccessKeyName)?;
        if !is_valid_policy_name(policy_name) {
            return Err(ConnectionStringError::InvalidSharedAccessKeyName);
        }
        let key_text = parts
            .key
            .ok_or(ConnectionStringError::MissingSharedAccessKey)?;
        let key = decode_key(key_text)?;
        Ok(Self {
            host_name,
            policy_name: policy_name.to_owned(),
            key,
            form,
        })
    }

    /// The registry host: `HostName`, or `<EntityPath>.<IoT Hub domain>` for the Event
    /// Hub-compatible form, in the cloud of its Service Bus endpoint
    /// (`servicebus.chinacloudapi.cn` → `azure-devices.cn`, …). Lowercased (host names are case-insensitive, and the SAS
    /// resource URI is signed lowercased).
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    pub fn policy_name(&self) -> &str {
        &self.policy_name
    }

    pub fn form(&self) -> ConnectionStringForm {
        self.form
    }

    /// The decoded shared access key, for signing only.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("policy_name", &self.policy_name)
            .field("form", &self.form)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HostName={};SharedAccessKeyName={};SharedAccessKey=<redacted>",
            self.host_name, self.policy_name
        )
    }
}

/// The recognised `Name=Value` parts of a connection string, borrowed from the input.
#[derive(Default)]
struct Parts<'a> {
    host_name: Option<&'a str>,
    endpoint: Option<&'a str>,
    entity_path: Option<&'a str>,
    policy_name: Option<&'a str>,
    key: Option<&'a str>,
    device_marker: Option<&'static str>,
    shared_access_signature: bool,
}

impl<'a> Parts<'a> {
    fn split(s: &'a str) -> Result<Self, ConnectionStringError> {
        let mut parts = Parts::default();
        let mut position = 0;
        let mut first_unknown = None;
        for raw in s.split(';') {
            let part = raw.trim();
            if part.is_empty() {
                // Tolerates a trailing `;` and stray separators.
                continue;
            }
            position += 1;
            let (name, value) = part
                .split_once('=')
                .ok_or(ConnectionStringError::MalformedPart { position })?;
            let value = value.trim();
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "hostname" => (&mut parts.host_name, "HostName"),
                "endpoint" => (&mut parts.endpoint, "Endpoint"),
                "entitypath" => (&mut parts.entity_path, "EntityPath"),
                "sharedaccesskeyname" => (&mut parts.policy_name, "SharedAccessKeyName"),
                "sharedaccesskey" => (&mut parts.key, "SharedAccessKey"),
                "deviceid" => {
                    parts.device_marker = Some("DeviceId");
                    continue;
                }
                "moduleid" => {
                    parts.device_marker.get_or_insert("ModuleId");
                    continue;
                }
                "gatewayhostname" => {
                    parts.device_marker.get_or_insert("GatewayHostName");
                    continue;
                }
                "sharedaccesssignature" => {
                    parts.shared_access_signature = true;
                    continue;
                }
                _ => {
                    first_unknown.get_or_insert(position);
                    continue;
                }
            };
            let (field, canonical) = slot;
            if field.replace(value).is_some() {
                return Err(ConnectionStringError::DuplicatePart { name: canonical });
            }
        }
        if position == 0 {
            return Err(ConnectionStringError::Empty);
        }
        if let Some(position) = first_unknown {
            let recognised_any = parts.host_name.is_some()
                || parts.endpoint.is_some()
                || parts.any_known_credential()
                || parts.device_marker.is_some()
                || parts.shared_access_signature;
            return Err(if recognised_any {
                ConnectionStringError::UnknownPart { position }
            } else {
                ConnectionStringError::UnknownForm
            });
        }
        Ok(parts)
    }

    fn any_known_credential(&self) -> bool {
        self.policy_name.is_some() || self.key.is_some() || self.entity_path.is_some()
    }
}

fn parse_host_name(host: &str) -> Result<String, ConnectionStringError> {
    if host.is_empty() {
        return Err(ConnectionStringError::MissingHostName);
    }
    let valid_labels = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !valid_labels || host.len() > 253 {
        return Err(ConnectionStringError::InvalidHostName);
    }
    Ok(host.to_ascii_lowercase())
}

/// The IoT Hub domain of the cloud whose Service Bus domain the endpoint is under: a hub's
/// built-in Event Hub-compatible endpoint lives in the same cloud as its registry.
fn iot_hub_domain_of_endpoint(endpoint: &str) -> Result<&'static str, ConnectionStringError> {
    let url = url::Url::parse(endpoint).map_err(|_| ConnectionStringError::InvalidEndpoint)?;
    let host = match url.host() {
        Some(url::Host::Domain(host)) if url.scheme() == "sb" && !host.is_empty() => {
            host.to_ascii_lowercase()
        }
        _ => return Err(ConnectionStringError::InvalidEndpoint),
    };
    iothubgdr_outbound::cloud_of_service_bus_host(&host)
        .map(|cloud| cloud.iot_hub_domain)
        .ok_or(ConnectionStringError::UnknownCloudEndpoint)
}

/// IoT Hub names are 3 to 50 characters of letters, digits and hyphens (Azure's naming
/// rules for Microsoft.Devices/IotHubs).
fn host_from_entity_path(hub: &str, iot_hub_domain: &str) -> Result<String, ConnectionStringError> {
    let valid = (3..=50).contains(&hub.len())
        && hub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !hub.starts_with('-')
        && !hub.ends_with('-');
    if !valid {
        return Err(ConnectionStringError::InvalidEntityPath);
    }
    Ok(format!("{}.{iot_hub_domain}", hub.to_ascii_lowercase()))
}

/// Policy names go into the SAS token's `skn`; keep them to what Azure allows
/// (letters, digits, `.`, `-`, `_`, at most 64).
fn is_valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn decode_key(text: &str) -> Result<Zeroizing<Vec<u8>>, ConnectionStringError> {
    if text.is_empty() {
        return Err(ConnectionStringError::EmptyKey);
    }
    let key = Zeroizing::new(
        KEY_BASE64
            .decode(text)
            .map_err(|_| ConnectionStringError::KeyNotBase64)?,
    );
    if key.is_empty() {
        return Err(ConnectionStringError::EmptyKey);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5YWJjZGVm";
    const KEY_BYTES: &[u8] = b"secret-key-for-tests-only-0123456789abcdef";

    fn iothub(key: &str) -> String {
        format!("HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={key}")
    }

    fn eventhub(key: &str) -> String {
        format!("Endpoint=sb://iothub-ns-test-org-1-1637462-0dd952fad8.servicebus.windows.net/;SharedAccessKeyName=iothubowner;SharedAccessKey={key};EntityPath=test-org-1")
    }

    #[test]
    fn parses_iot_hub_form() {
        let cs = ConnectionString::parse(&iothub(KEY_B64)).unwrap();
        assert_eq!(cs.host_name(), "myhub.azure-devices.net");
        assert_eq!(cs.policy_name(), "iothubowner");
        assert_eq!(cs.form(), ConnectionStringForm::IotHub);
        assert_eq!(cs.key(), KEY_BYTES);
    }

    #[test]
    fn parses_event_hub_compatible_form() {
        let cs: ConnectionString = eventhub(KEY_B64).parse().unwrap();
        assert_eq!(cs.host_name(), "test-org-1.azure-devices.net");
        assert_eq!(cs.policy_name(), "iothubowner");
        assert_eq!(cs.form(), ConnectionStringForm::EventHubCompatible);
        assert_eq!(cs.key(), KEY_BYTES);
    }

    #[test]
    fn event_hub_form_maps_to_the_registry_of_its_own_cloud() {
        let cases = [
            (
                "iothub-ns-x-1-a.servicebus.windows.net",
                "plant-7.azure-devices.net",
            ),
            (
                "iothub-ns-x-1-a.servicebus.chinacloudapi.cn",
                "plant-7.azure-devices.cn",
            ),
            (
                "iothub-ns-x-1-a.servicebus.usgovcloudapi.net",
                "plant-7.azure-devices.us",
            ),
            (
                "IOTHUB-NS.ServiceBus.Windows.Net",
                "plant-7.azure-devices.net",
            ),
        ];
        for (namespace, host) in cases {
            let s = format!("Endpoint=sb://{namespace}/;SharedAccessKeyName=service;SharedAccessKey={KEY_B64};EntityPath=Plant-7");
            let cs = ConnectionString::parse(&s).unwrap();
            assert_eq!(cs.host_name(), host, "{namespace}");
        }
        for namespace in [
            "ns.servicebus.cloudapi.de",
            "ns.example.com",
            "127.0.0.1",
            "ns.servicebus.windows.net.evil.com",
        ] {
            let s = format!("Endpoint=sb://{namespace}/;SharedAccessKeyName=service;SharedAccessKey={KEY_B64};EntityPath=hub");
            let err = ConnectionString::parse(&s).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConnectionStringError::UnknownCloudEndpoint
                        | ConnectionStringError::InvalidEndpoint
                ),
                "{namespace}: {err:?}"
            );
        }
    }

    #[test]
    fn parts_in_any_order_with_whitespace_and_trailing_separator() {
        let s = format!(
            "  SharedAccessKey={KEY_B64} ; SharedAccessKeyName = iothubowner;HostName=MyHub.azure-devices.net;; "
        );
        let cs = ConnectionString::parse(&s).unwrap();
        assert_eq!(cs.host_name(), "myhub.azure-devices.net");
        assert_eq!(cs.policy_name(), "iothubowner");
        assert_eq!(cs.key(), KEY_BYTES);

        let s = format!("EntityPath=test-org-1;SharedAccessKey={KEY_B64};Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=service;");
        let cs = ConnectionString::parse(&s).unwrap();
        assert_eq!(cs.host_name(), "test-org-1.azure-devices.net");
        assert_eq!(cs.policy_name(), "service");
    }

    #[test]
    fn key_without_padding_is_the_same_key() {
        let unpadded = KEY_B64.trim_end_matches('=');
        let cs = ConnectionString::parse(&iothub(unpadded)).unwrap();
        assert_eq!(cs.key(), KEY_BYTES);
    }

    fn rejects(s: &str) -> ConnectionStringError {
        ConnectionString::parse(s).unwrap_err()
    }

    #[test]
    fn every_rejection_reason() {
        use ConnectionStringError as E;
        assert_eq!(rejects(""), E::Empty);
        assert_eq!(rejects(" ; ;"), E::Empty);
        assert_eq!(
            rejects(&format!(
                "HostName=h.azure-devices.net;garbage;SharedAccessKey={KEY_B64}"
            )),
            E::MalformedPart { position: 2 }
        );
        assert_eq!(
            rejects(&format!("{};Colour=blue", iothub(KEY_B64))),
            E::UnknownPart { position: 4 }
        );
        assert_eq!(
            rejects(&format!(
                "{};HostName=other.azure-devices.net",
                iothub(KEY_B64)
            )),
            E::DuplicatePart { name: "HostName" }
        );
        assert_eq!(
            rejects(&format!(
                "HostName=myhub.azure-devices.net;DeviceId=dev-1;SharedAccessKey={KEY_B64}"
            )),
            E::DeviceConnectionString { name: "DeviceId" }
        );
        assert_eq!(
            rejects(&format!("HostName=myhub.azure-devices.net;DeviceId=dev-1;ModuleId=m;SharedAccessKey={KEY_B64}")),
            E::DeviceConnectionString { name: "DeviceId" }
        );
        assert_eq!(
            rejects("HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=1"),
            E::SharedAccessSignatureNotSupported
        );
        assert_eq!(
            rejects(&format!("SharedAccessKey={KEY_B64}")),
            E::MissingHostName
        );
        assert_eq!(rejects("Foo"), E::MalformedPart { position: 1 });
        assert_eq!(rejects("Colour=blue;Size=3"), E::UnknownForm);
        assert_eq!(
            rejects(&format!(
                "SharedAccessKeyName=p;SharedAccessKey={KEY_B64};EntityPath=hub"
            )),
            E::MissingEndpoint
        );
        assert_eq!(
            rejects(&format!(
                "{};Endpoint=sb://ns.servicebus.windows.net/",
                iothub(KEY_B64)
            )),
            E::AmbiguousForm
        );
        assert_eq!(
            rejects(&format!("{};EntityPath=hub", iothub(KEY_B64))),
            E::AmbiguousForm
        );
        assert_eq!(
            rejects(&format!(
                "HostName=;SharedAccessKeyName=p;SharedAccessKey={KEY_B64}"
            )),
            E::MissingHostName
        );
        assert_eq!(
            rejects(&format!(
                "HostName=myhub.azure-devices.net;SharedAccessKey={KEY_B64}"
            )),
            E::MissingSharedAccessKeyName
        );
        assert_eq!(
            rejects("HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner"),
            E::MissingSharedAccessKey
        );
        assert_eq!(
            rejects(&format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=p;SharedAccessKey={KEY_B64}")),
            E::MissingEntityPath
        );
        assert_eq!(
            rejects(&format!("HostName=https://myhub.azure-devices.net/;SharedAccessKeyName=p;SharedAccessKey={KEY_B64}")),
            E::InvalidHostName
        );
        assert_eq!(
            rejects(&format!("Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=p;SharedAccessKey={KEY_B64};EntityPath=hub")),
            E::InvalidEndpoint
        );
        assert_eq!(
            rejects(&format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=p;SharedAccessKey={KEY_B64};EntityPath=a/b")),
            E::InvalidEntityPath
        );
        assert_eq!(
            rejects(&format!("HostName=myhub.azure-devices.net;SharedAccessKeyName=a&b;SharedAccessKey={KEY_B64}")),
            E::InvalidSharedAccessKeyName
        );
        assert_eq!(rejects(&iothub("not*base64!")), E::KeyNotBase64);
        assert_eq!(rejects(&iothub("")), E::EmptyKey);
    }

    #[test]
    fn debug_display_and_errors_never_show_the_key() {
        for s in [iothub(KEY_B64), eventhub(KEY_B64)] {
            let cs = ConnectionString::parse(&s).unwrap();
            for text in [format!("{cs:?}"), format!("{cs:#?}"), cs.to_string()] {
                assert!(!text.contains(KEY_B64), "{text}");
                assert!(!text.contains("c2VjcmV0"), "{text}");
                assert!(text.contains(cs.host_name()), "{text}");
                assert!(text.contains("iothubowner"), "{text}");
            }
        }
        // A key in a place where a name is expected, or an unparsable key, is not echoed.
        let inputs = [
            KEY_B64.to_string(),
            format!("{};{KEY_B64}", iothub(KEY_B64)),
            format!("{KEY_B64}=x;{}", iothub(KEY_B64)),
            iothub(&format!("{KEY_B64}!")),
            format!("HostName=myhub.azure-devices.net;DeviceId=d;SharedAccessKey={KEY_B64}"),
        ];
        for input in inputs {
            let err = ConnectionString::parse(&input).unwrap_err();
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains("c2VjcmV0"), "{text}");
            }
        }
    }
}
