//! Typed models of what the API answers. Every model keeps the fields it does not know in
//! `extra`, so `--output json` prints the API's objects whole, also when the server adds
//! fields this client predates.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `result.status` of an operation (spec/README.md note 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportStatus {
    #[serde(rename = "STATUS_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "STATUS_PENDING")]
    Pending,
    #[serde(rename = "STATUS_INPROGRESS")]
    InProgress,
    #[serde(rename = "STATUS_FINISHED")]
    Finished,
    #[serde(rename = "STATUS_CANCELLED")]
    Cancelled,
    /// A status this client does not know; kept as the server sent it.
    #[serde(untagged)]
    Other(String),
}

impl ImportStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unspecified => "STATUS_UNSPECIFIED",
            Self::Pending => "STATUS_PENDING",
            Self::InProgress => "STATUS_INPROGRESS",
            Self::Finished => "STATUS_FINISHED",
            Self::Cancelled => "STATUS_CANCELLED",
            Self::Other(s) => s,
        }
    }
}

/// The `result` of an operation that has not failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationResult {
    #[serde(default)]
    pub display_name: String,
    #[serde(default, deserialize_with = "number_or_string")]
    pub number_assets_imported: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arc_home_location_identity: Option<String>,
    pub status: ImportStatus,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `error` of a failed operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationError {
    #[serde(default)]
    pub display_name: String,
    #[serde(default, deserialize_with = "number_or_string")]
    pub number_assets_imported: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arc_home_location_identity: Option<String>,
    #[serde(default)]
    pub error_message: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An import operation (`iothubgdr/<uuid>`), as the API page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub identity: String,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub timestamp_accepted: Option<String>,
    #[serde(default)]
    pub timestamp_finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<OperationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    /// The hub's device count, when the server knows it (an extra field of this server).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_number_or_string"
    )]
    pub number_devices_total: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How an operation stands, folded from `done`, `result.status` and `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationState {
    Pending,
    InProgress,
    Finished,
    Cancelled,
    Failed,
    /// Neither a known status nor an error (a server newer than this client).
    Unknown,
}

impl OperationState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "INPROGRESS",
            Self::Finished => "FINISHED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "ERROR",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl Operation {
    pub fn state(&self) -> OperationState {
        if self.error.is_some() {
            return OperationState::Failed;
        }
        match self.result.as_ref().map(|r| &r.status) {
            Some(ImportStatus::Pending) => OperationState::Pending,
            Some(ImportStatus::InProgress) => OperationState::InProgress,
            Some(ImportStatus::Finished) => OperationState::Finished,
            Some(ImportStatus::Cancelled) => OperationState::Cancelled,
            _ => OperationState::Unknown,
        }
    }

    pub fn number_assets_imported(&self) -> u64 {
        match (&self.result, &self.error) {
            (Some(result), _) => result.number_assets_imported,
            (None, Some(error)) => error.number_assets_imported,
            (None, None) => 0,
        }
    }

    pub fn display_name(&self) -> &str {
        match (&self.result, &self.error) {
            (Some(result), _) => &result.display_name,
            (None, Some(error)) => &error.display_name,
            (None, None) => "",
        }
    }

    pub fn location(&self) -> Option<&str> {
        match (&self.result, &self.error) {
            (Some(result), _) => result.arc_home_location_identity.as_deref(),
            (None, Some(error)) => error.arc_home_location_identity.as_deref(),
            (None, None) => None,
        }
    }

    pub fn error_message(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.error_message.as_str())
    }

    /// The hub's export job while an import on the export path waits for it (this
    /// server's `result.export_job`): its status as the hub says it, and its progress in
    /// percent. Text from the server is shown through `safe_text` by whoever prints it.
    pub fn export_job(&self) -> Option<(String, u64)> {
        let job = self.result.as_ref()?.extra.get("export_job")?;
        let status = job.get("status")?.as_str()?.to_owned();
        let progress = job.get("progress").and_then(value_as_u64).unwrap_or(0);
        Some((status, progress.min(100)))
    }

    /// The device count of the hub: the top-level extra field, or the same field inside
    /// `result` / `error`, wherever the server puts it.
    pub fn devices_total(&self) -> Option<u64> {
        self.number_devices_total.or_else(|| {
            let nested = self
                .result
                .as_ref()
                .map(|r| &r.extra)
                .or(self.error.as_ref().map(|e| &e.extra))?;
            value_as_u64(nested.get("number_devices_total")?)
        })
    }

    /// Twins the server did not copy because they break IoT Hub's limits (inside `result`
    /// or `error`).
    pub fn devices_refused(&self) -> Option<u64> {
        let nested = self
            .result
            .as_ref()
            .map(|r| &r.extra)
            .or(self.error.as_ref().map(|e| &e.extra))?;
        value_as_u64(nested.get("number_devices_refused")?)
    }
}

/// `GET /archivist/v2/iothubgdr`.
#[derive(Debug, Clone, Deserialize)]
pub struct OperationList {
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A location (`locations/<uuid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub identity: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `POST /archivist/v2/locations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewLocation {
    pub display_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LocationList {
    #[serde(default)]
    pub locations: Vec<Location>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// An asset (`assets/<uuid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub identity: String,
    #[serde(default)]
    pub behaviours: Vec<String>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_identity: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Asset {
    /// A string attribute, or `""`.
    pub fn attribute(&self, name: &str) -> &str {
        self.attributes
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssetList {
    #[serde(default)]
    pub assets: Vec<Asset>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// The swagger's `runtimeError` body of every failed request (spec/README.md note 6).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RuntimeError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The answer of the token endpoint. Its `access_token` is a secret: see
/// [`crate::client::ApiClient::token_from_client_credentials`].
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    #[allow(dead_code)] // read for completeness of the contract; the client re-asks per run
    pub expires_in: Option<u64>,
}

fn value_as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The page shows numbers, protobuf's JSON mapping of int64 gives strings: accept both.
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = Value::deserialize(d)?;
    value_as_u64(&value).ok_or_else(|| serde::de::Error::custom("expected a non-negative count"))
}

fn optional_number_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => value_as_u64(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected a non-negative count")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_pending_operation_parses() {
        let op: Operation = serde_json::from_str(
            r#"{
                "identity": "iothubgdr/08838336-c357-460d-902a-3aba9528dd22",
                "done": false,
                "timestamp_accepted": "2019-11-07T15:31:49Z",
                "timestamp_finished": null,
                "result": {
                    "display_name": "RKVST",
                    "number_assets_imported": 0,
                    "arc_home_location_identity": "locations/47b575c0-ff0f-11e9-8f0b-362b9e155667",
                    "status": "STATUS_PENDING"
                }
            }"#,
        )
        .unwrap();
        assert_eq!(op.state(), OperationState::Pending);
        assert_eq!(op.display_name(), "RKVST");
        assert_eq!(
            op.location(),
            Some("locations/47b575c0-ff0f-11e9-8f0b-362b9e155667")
        );
        assert_eq!(op.devices_total(), None);
    }

    #[test]
    fn the_pages_error_operation_parses() {
        let op: Operation = serde_json::from_str(
            r#"{
                "identity": "iothubgdr/08838336-c357-460d-902a-3aba9528dd22",
                "done": true,
                "timestamp_accepted": "2019-11-07T15:31:49Z",
                "timestamp_finished": "2019-11-07T15:31:55Z",
                "error": {
                    "display_name": "RKVST",
                    "number_assets_imported": "7",
                    "arc_home_location_identity": "locations/47b575c0-ff0f-11e9-8f0b-362b9e155667",
                    "error_message": "invalid secret provided"
                }
            }"#,
        )
        .unwrap();
        assert_eq!(op.state(), OperationState::Failed);
        assert_eq!(op.error_message(), Some("invalid secret provided"));
        assert_eq!(op.number_assets_imported(), 7);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip_and_the_total_is_found_anywhere() {
        let text = r#"{"identity":"iothubgdr/x","done":false,"timestamp_accepted":"t",
            "timestamp_finished":null,"number_devices_total":2500,"shard":"a",
            "result":{"display_name":"d","number_assets_imported":10,"status":"STATUS_INPROGRESS","new_field":1}}"#;
        let op: Operation = serde_json::from_str(text).unwrap();
        assert_eq!(op.devices_total(), Some(2500));
        let back = serde_json::to_value(&op).unwrap();
        assert_eq!(back["shard"], "a");
        assert_eq!(back["result"]["new_field"], 1);
        assert_eq!(back["timestamp_finished"], Value::Null);

        let nested: Operation = serde_json::from_str(
            r#"{"identity":"iothubgdr/x","result":{"status":"STATUS_FINISHED","number_devices_total":"9"}}"#,
        )
        .unwrap();
        assert_eq!(nested.devices_total(), Some(9));
        assert_eq!(nested.state(), OperationState::Finished);
    }

    #[test]
    fn an_unknown_status_is_kept_not_refused() {
        let op: Operation = serde_json::from_str(
            r#"{"identity":"iothubgdr/x","result":{"status":"STATUS_PAUSED"}}"#,
        )
        .unwrap();
        assert_eq!(op.state(), OperationState::Unknown);
        assert_eq!(op.result.unwrap().status.as_str(), "STATUS_PAUSED");
    }
}
