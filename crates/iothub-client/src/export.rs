//! The export of a hub's registry: what its failures say, and the exported devices read
//! back from `devices.txt`.
//!
//! An export job writes one JSON object per line ("Import and export IoT Hub device
//! identities in bulk": the `ExportImportDevice` form), for example
//! `{"id":"dev-1","eTag":"MA==","status":"enabled","statusReason":"","authentication":{…},
//! "twinETag":"AAAAAAAAAAE=","tags":{…},"properties":{"desired":{…},"reported":{…}},
//! "capabilities":{"iotEdge":false}}`. Modules of IoT Edge devices are exported as lines of
//! their own with a `moduleId`; they are not devices and are skipped. With
//! `excludeKeysInExport` the keys are null (and a line's keys, if a hub sent them anyway,
//! are never read: the typed form below has no field for them).

use std::time::Duration;

use bytes::Bytes;
use iothubgdr_outbound::Refusal;
use serde::Deserialize;

use crate::blob::BlobLines;
use crate::error::HubError;
use crate::query::overshoot_limit;
use crate::twin::{Capabilities, Twin};

/// The blob an export job writes in the output container (the jobs API's default
/// `outputBlobName`).
pub const EXPORT_BLOB_NAME: &str = "devices.txt";

/// Why an export could not be made or read. Names hosts, never the SAS URL, the key or a
/// token; text that comes from the hub is stripped of URLs and signatures first.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("the IoT Hub {host} is already running an import or export job, and a hub runs one at a time: wait until it ends (or cancel it) and start the import again")]
    JobAlreadyRunning { host: String },
    #[error("the IoT Hub {host} could not use the blob container: {detail}; check that the SAS URL grants read, write and list and has not expired")]
    ContainerRejected { host: String, detail: String },
    #[error("the export job on the IoT Hub {host} failed: {reason}")]
    JobFailed { host: String, reason: String },
    #[error("the export job on the IoT Hub {host} was cancelled outside this import")]
    JobCancelled { host: String },
    #[error("the export job on the IoT Hub {host} did not finish within {}s", limit.as_secs())]
    JobTimedOut { host: String, limit: Duration },
    #[error("the IoT Hub {host} answered the jobs API with something that is not a job: {reason}")]
    JobProtocol { host: String, reason: String },
    #[error("{0}")]
    BlobRefused(Refusal),
    #[error("the blob storage {host} refused the SAS URL (HTTP {status}): check that it grants read, write and list on the container and has not expired")]
    BlobUnauthorized { host: String, status: u16 },
    #[error("the export job finished but its blob {blob} is not in the container at {host}")]
    BlobNotFound { host: String, blob: String },
    #[error("could not read the export from the blob storage {host}: {reason}")]
    BlobNetwork { host: String, reason: String },
    #[error("the blob storage {host} answered with a redirect (HTTP {status}); redirects are never followed")]
    BlobRedirected { host: String, status: u16 },
    #[error("the blob storage {host} answered HTTP {status} to reading the export")]
    BlobRejected { host: String, status: u16 },
    #[error("the blob storage {host} sent nothing for {}s while the export was read", idle.as_secs())]
    BlobStalled { host: String, idle: Duration },
    #[error("reading the export from the blob storage {host} took longer than {}s", limit.as_secs())]
    BlobTooSlow { host: String, limit: Duration },
    #[error("a line of the export in the blob storage {host} is longer than {limit_kib} KiB, more than any device IoT Hub allows")]
    LineTooLong { host: String, limit_kib: usize },
    #[error("the export in the blob storage {host} holds more than {limit} devices, far more than the {reported} the hub counts")]
    TooManyDevices {
        host: String,
        reported: u64,
        limit: u64,
    },
    #[error(
        "line {line} of the export in the blob storage {host} is not an exported device ({reason})"
    )]
    BadLine {
        host: String,
        line: u64,
        reason: String,
    },
    #[error("the blob storage client could not be set up: {reason}")]
    InvalidOptions { reason: String },
}

/// One line of `devices.txt`, typed for what the import uses. Everything but `id` may be
/// missing; unknown fields (and the keys) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportedDevice {
    id: String,
    #[serde(default)]
    module_id: Option<String>,
    /// Not in Microsoft's documented export format; read when a hub sends it, so a device
    /// deleted and created again is told apart as on the query path.
    #[serde(default)]
    generation_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    status_reason: Option<String>,
    #[serde(default)]
    authentication: Option<ExportedAuthentication>,
    #[serde(default, rename = "twinETag")]
    twin_etag: Option<String>,
    #[serde(default)]
    tags: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    capabilities: Option<Capabilities>,
    #[serde(default)]
    device_scope: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ExportedAuthentication {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl ExportedDevice {
    /// The same facts a twin query gives for the device. The export has no connection
    /// state, last activity, model id or twin version, so those stay unknown; the twin's
    /// etag is the export's `twinETag`, and an empty status reason is no reason, as in a
    /// twin.
    fn into_twin(self) -> Twin {
        Twin {
            device_id: self.id,
            generation_id: self.generation_id,
            etag: self.twin_etag,
            status: self.status,
            status_reason: self.status_reason.filter(|r| !r.is_empty()),
            connection_state: None,
            last_activity_time: None,
            authentication_type: self.authentication.and_then(|a| a.kind),
            capabilities: self.capabilities,
            model_id: None,
            device_scope: self.device_scope.filter(|s| !s.is_empty()),
            tags: self.tags,
            properties: None,
            version: None,
        }
    }
}

/// Decodes one line: `Ok(None)` for a module's line or a blank line.
pub fn decode_export_line(line: &[u8]) -> Result<Option<Twin>, serde_json::Error> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let device: ExportedDevice = serde_json::from_slice(line)?;
    if device.module_id.is_some() {
        return Ok(None);
    }
    Ok(Some(device.into_twin()))
}

/// The devices of an export, read in batches from its blob, bounded by the hub's count
/// (a blob far larger than the hub reported is not read to its end: see [`overshoot_limit`]).
#[derive(Debug)]
pub struct ExportedDevices {
    lines: BlobLines,
    reported: u64,
    limit: u64,
    devices: u64,
    line_number: u64,
}

impl ExportedDevices {
    pub fn new(lines: BlobLines, reported: u64) -> Self {
        Self {
            lines,
            reported,
            limit: overshoot_limit(reported),
            devices: 0,
            line_number: 0,
        }
    }

    pub fn devices_read(&self) -> u64 {
        self.devices
    }

    /// Up to `max` devices, or `None` at the end of the export.
    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Twin>>, ExportError> {
        let mut batch = Vec::with_capacity(max);
        while batch.len() < max {
            let Some(line) = self.lines.next_line().await? else {
                break;
            };
            self.line_number += 1;
            if let Some(twin) = self.decode(&line)? {
                self.devices += 1;
                if self.devices > self.limit {
                    return Err(ExportError::TooManyDevices {
                        host: self.lines.host().to_owned(),
                        reported: self.reported,
                        limit: self.limit,
                    });
                }
                batch.push(twin);
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }

    fn decode(&self, line: &Bytes) -> Result<Option<Twin>, ExportError> {
        decode_export_line(line).map_err(|e| ExportError::BadLine {
            host: self.lines.host().to_owned(),
            line: self.line_number,
            // The category and column only: serde's message may quote the line.
            reason: format!("{:?} error at column {}", e.classify(), e.column()),
        })
    }
}

/// Hub text (a job's failure reason, an error body) made safe to show: no control
/// characters, every URL and signature replaced (a hub may quote the container URL it was
/// given, SAS included), at most 300 characters.
pub(crate) fn scrub_hub_text(text: &str) -> String {
    const MAX: usize = 300;
    let mut out = String::new();
    for word in text.split_inclusive(char::is_whitespace) {
        let lower = word.to_ascii_lowercase();
        if lower.contains("://") || lower.contains("sig=") || lower.contains("?sv=") {
            out.push_str("<redacted>");
            if word.ends_with(char::is_whitespace) {
                out.push(' ');
            }
        } else {
            out.push_str(word);
        }
    }
    let cleaned: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    let mut shown: String = cleaned.chars().take(MAX).collect();
    if cleaned.chars().count() > MAX {
        shown.push('…');
    }
    if shown.is_empty() {
        shown.push_str("no reason given");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_device_maps_to_the_twin_facts_and_modules_are_skipped() {
        let line = br#"{"id":"pump-7","eTag":"ODcwMDE5Njk1","status":"disabled","statusReason":"stolen","authentication":{"symmetricKey":{"primaryKey":null,"secondaryKey":null},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"},"twinETag":"AAAAAAAAAAE=","tags":{"plant":"Redmond43"},"properties":{"desired":{"$version":1},"reported":{"$version":1}},"capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://pump-7-1"}"#;
        let twin = decode_export_line(line).unwrap().unwrap();
        assert_eq!(twin.device_id, "pump-7");
        assert_eq!(twin.etag.as_deref(), Some("AAAAAAAAAAE="));
        assert_eq!(twin.status.as_deref(), Some("disabled"));
        assert_eq!(twin.status_reason.as_deref(), Some("stolen"));
        assert_eq!(twin.authentication_type.as_deref(), Some("sas"));
        assert_eq!(twin.capabilities, Some(Capabilities { iot_edge: true }));
        assert_eq!(twin.tags.as_ref().unwrap()["plant"], "Redmond43");
        assert_eq!(
            twin.device_scope.as_deref(),
            Some("ms-azure-iot-edge://pump-7-1")
        );
        let bare = br#"{"id":"d","statusReason":"","authentication":null}"#;
        let twin = decode_export_line(bare).unwrap().unwrap();
        assert_eq!(twin.status_reason, None);
        assert_eq!(twin.authentication_type, None);
        let module = br#"{"id":"edge-1","moduleId":"$edgeAgent","status":"enabled"}"#;
        assert!(decode_export_line(module).unwrap().is_none());
        assert!(decode_export_line(b"  \r").unwrap().is_none());
        assert!(decode_export_line(b"{\"status\":\"enabled\"}").is_err());
        assert!(decode_export_line(b"[1,2]").is_err());
    }

    #[test]
    fn hub_text_loses_urls_and_signatures() {
        let text = "Failed to write to https://acct.blob.core.windows.net/c?sv=1&sig=SECRET: denied\n\u{7}x sig=SECRET2 ok";
        let shown = scrub_hub_text(text);
        assert!(
            !shown.contains("SECRET") && !shown.contains("acct"),
            "{shown}"
        );
        assert!(shown.contains("Failed to write to <redacted>"), "{shown}");
        assert!(shown.ends_with("ok"), "{shown}");
        assert_eq!(scrub_hub_text(" "), "no reason given");
        assert_eq!(scrub_hub_text(&"a".repeat(400)).chars().count(), 301);
    }
}
