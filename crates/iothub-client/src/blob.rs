//! The customer's blob container, handed over as a SAS URL (what the IoT Hub jobs API calls
//! `outputBlobContainerUri`), and a bounded streaming read of one blob in it.
//!
//! The SAS URL is a secret: whoever holds it can read and write the container.
//! [`BlobContainerSas`] keeps it wiped-on-drop, shows only its host and container in
//! `Debug`, and no error of this module quotes it. Its host must pass the outbound policy
//! for blob storage ([`iothubgdr_outbound::OutboundPolicy::blob_storage`]): a blob domain of
//! an Azure cloud, never an IP literal, never a name that resolves to an internal address
//! unless the operator pinned it (how tests reach a local Azurite), no redirects.
//!
//! A blob is read line by line as it streams: a line longer than [`BlobOptions::max_line_bytes`],
//! a silence longer than the idle timeout, or a download longer than its deadline ends the
//! read, so a hostile storage endpoint cannot make the service hold or wait for more than
//! a bounded amount.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iothubgdr_outbound::{refusal_in, HostPattern, OutboundPolicy, Refusal};
use reqwest::StatusCode;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::describe_transport_error;
use crate::export::ExportError;

/// Longest SAS URL accepted. Real ones are a few hundred characters (account, container,
/// and a dozen short query parameters); the bound keeps a request body from carrying
/// megabytes into the engine's memory.
pub const MAX_SAS_URL_CHARS: usize = 4096;

/// Longest line of an export read. One exported device holds at most 8 KB of tags and
/// 32 KB each of desired and reported properties ("IoT Hub quotas and throttling", device
/// twins), plus its identity and, depending on the hub, `$metadata` per property; 1 MiB is
/// over ten times that, so no real device reaches it and one line in memory stays small.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Why a text is not a usable blob container SAS URL. Never quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasUrlError {
    #[error("`output_blob_container_uri` is longer than {MAX_SAS_URL_CHARS} characters")]
    TooLong,
    #[error("`output_blob_container_uri` is not a URL: give the SAS URL of a blob container (https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…), as the portal or `az storage container generate-sas` gives it")]
    NotUrl,
    #[error("`output_blob_container_uri` must be an https URL")]
    NotHttps,
    #[error("`output_blob_container_uri` must not carry a user name or password")]
    HasCredentials,
    #[error("`output_blob_container_uri` must name one container and nothing after it (https://ACCOUNT.blob.core.windows.net/CONTAINER?…)")]
    NotAContainer,
    #[error("the container name in `output_blob_container_uri` is not a blob container name (3 to 63 lowercase letters, digits and single hyphens)")]
    BadContainerName,
    #[error("`output_blob_container_uri` carries no shared access signature (no `sig` parameter): create a SAS for the container and give its full URL")]
    NoSignature,
    #[error("`output_blob_container_uri` must not have a fragment (`#…`)")]
    Fragment,
    #[error("`output_blob_container_uri` is not shaped like a container SAS URL: a lowercase https://ACCOUNT.blob.… host (ACCOUNT: 3 to 24 lowercase letters and digits), an optional port, one container, then SAS parameters name=value (names of 2 to 5 lowercase letters; values of letters, digits and `%:._-`) with one `sig`, nothing else")]
    BadShape,
}

/// A blob container's SAS URL: `https://<account>.blob.<cloud suffix>/<container>?<sas>`.
/// Wiped from memory when dropped; `Debug` shows the host and container only.
pub struct BlobContainerSas {
    /// The whole URL as given: what the hub is sent.
    url: Zeroizing<String>,
    host: String,
    port: Option<u16>,
    container: String,
    /// The SAS query, without the `?`.
    query: Zeroizing<String>,
}

impl fmt::Debug for BlobContainerSas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobContainerSas")
            .field("host", &self.host)
            .field("container", &self.container)
            .field("sas", &"<redacted>")
            .finish()
    }
}

impl BlobContainerSas {
    /// Checks the shape of a container SAS URL. The host is checked against the outbound
    /// policy separately ([`BlobOptions::check`]), because the operator may allow more hosts.
    pub fn parse(text: &str) -> Result<Self, SasUrlError> {
        if text.chars().count() > MAX_SAS_URL_CHARS {
            return Err(SasUrlError::TooLong);
        }
        let parsed = url::Url::parse(text).map_err(|_| SasUrlError::NotUrl)?;
        if parsed.scheme() != "https" {
            return Err(SasUrlError::NotHttps);
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(SasUrlError::HasCredentials);
        }
        if parsed.fragment().is_some() {
            return Err(SasUrlError::Fragment);
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(host)) => host.to_ascii_lowercase(),
            // IP literals are refused by the policy with its own message; keep the text so
            // that message names what was given.
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(SasUrlError::NotUrl),
        };
        let mut segments = parsed.path_segments().ok_or(SasUrlError::NotAContainer)?;
        let container = segments.next().unwrap_or_default().to_owned();
        let rest: Vec<&str> = segments.collect();
        if container.is_empty() || !(rest.is_empty() || rest == [""]) {
            return Err(SasUrlError::NotAContainer);
        }
        if !is_container_name(&container) {
            return Err(SasUrlError::BadContainerName);
        }
        let query = Zeroizing::new(parsed.query().unwrap_or_default().to_owned());
        let signed = url::form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name == "sig" && !value.is_empty());
        if !signed {
            return Err(SasUrlError::NoSignature);
        }
        check_documented_shape(text)?;
        Ok(Self {
            url: Zeroizing::new(text.to_owned()),
            host,
            port: parsed.port(),
            container,
            query,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    /// The URL itself, for the one place it must go: the hub's `outputBlobContainerUri`.
    pub fn expose_url(&self) -> &str {
        &self.url
    }

    /// `https://host[:port]/container/<blob>?<sas>`. `blob` is a fixed name of ours
    /// (`devices.txt`), never the hub's text.
    fn blob_url(&self, blob: &str) -> Zeroizing<String> {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        Zeroizing::new(format!(
            "https://{}{}/{}/{}?{}",
            self.host,
            port,
            self.container,
            blob,
            self.query.as_str()
        ))
    }
}

/// The shape the API documents for `output_blob_container_uri` (its OpenAPI `pattern`),
/// checked on the raw text before the URL parser normalises it, so nothing the document
/// calls invalid is accepted: lowercase `https://`, a lowercase host whose first label is a
/// storage account name, a port of 1 to 65535, one path segment, and a query of `name=value`
/// pairs with exactly one non-empty `sig`. The URL parser and the outbound policy then check
/// the rest (container name, host domain, addresses). Written by hand because it is a
/// dozen lines and the `regex` crate would be a new dependency for one field.
fn check_documented_shape(text: &str) -> Result<(), SasUrlError> {
    let rest = text.strip_prefix("https://").ok_or(SasUrlError::BadShape)?;
    let (authority, rest) = rest.split_once('/').ok_or(SasUrlError::BadShape)?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let lowercase_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    // Hosts that are no storage account (other domains, IP literals) pass here and meet
    // the outbound policy, whose refusal says what is allowed.
    let labels: Vec<&str> = host.split('.').collect();
    let host_ok = !host.bytes().any(|b| b.is_ascii_uppercase())
        && match labels.iter().position(|label| *label == "blob") {
            Some(1) => (3..=24).contains(&labels[0].len()) && labels[0].bytes().all(lowercase_name),
            Some(_) => false,
            None => true,
        };
    let port_ok = port.is_none_or(|port| {
        !port.starts_with('0')
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    let (path, query) = rest.split_once('?').ok_or(SasUrlError::BadShape)?;
    let path_ok = !path.trim_end_matches('/').contains('/')
        && path
            .bytes()
            .all(|b| lowercase_name(b) || b == b'-' || b == b'/');
    let mut signatures = 0;
    // Parameters before and after `sig`: at most 16 each, as the documented pattern says.
    let mut others = [0usize; 2];
    let mut query_ok = true;
    for pair in query.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            query_ok = false;
            break;
        };
        let name_ok = (2..=5).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase());
        let value_ok = if name == "sig" {
            signatures += 1;
            (1..=200).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'%')
        } else {
            others[signatures.min(1)] += 1;
            (1..=100).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"%:._-".contains(&b))
        };
        query_ok &= name_ok && value_ok;
    }
    if host_ok
        && port_ok
        && path_ok
        && query_ok
        && signatures == 1
        && others.iter().all(|&n| n <= 16)
    {
        Ok(())
    } else if signatures == 0 && host_ok && port_ok && path_ok {
        Err(SasUrlError::NoSignature)
    } else {
        Err(SasUrlError::BadShape)
    }
}

/// Blob container names: 3 to 63 characters, lowercase letters, digits and hyphens, starting
/// and ending with a letter or digit ("Naming and referencing containers, blobs, and
/// metadata"). `$root` and `$logs` are not places an export goes. Azure also refuses two
/// hyphens in a row; this check does not, because it must accept exactly what the
/// published OpenAPI pattern does, and a pattern cannot bound the length and forbid `--`
/// at once without a lookahead, which the generators clients use cannot satisfy. Such a
/// name fails at the storage service instead, with its own clear error.
fn is_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// How blob containers are reached.
#[derive(Clone)]
pub struct BlobOptions {
    /// PEM certificates trusted in addition to the webpki roots (a local storage emulator's).
    pub extra_root_ca_pem: Option<Vec<u8>>,
    /// Host to address pins, like curl's `--resolve`: a pinned host skips DNS and the
    /// address rule (a loopback Azurite in tests), never the domain rule.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Hosts allowed beside the blob domains of every Azure cloud.
    pub allowed_hosts: Vec<HostPattern>,
    /// Connecting and waiting for the answer's head.
    pub request_timeout: Duration,
    /// Longest silence while a blob streams.
    pub idle_timeout: Duration,
    /// Longest whole download.
    pub download_timeout: Duration,
    pub max_line_bytes: usize,
}

impl Default for BlobOptions {
    fn default() -> Self {
        Self {
            extra_root_ca_pem: None,
            resolve: Vec::new(),
            allowed_hosts: Vec::new(),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            download_timeout: Duration::from_secs(4 * 3600),
            max_line_bytes: MAX_LINE_BYTES,
        }
    }
}

impl fmt::Debug for BlobOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobOptions")
            .field(
                "extra_root_ca_pem",
                &self.extra_root_ca_pem.as_ref().map(Vec::len),
            )
            .field("resolve", &self.resolve)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("download_timeout", &self.download_timeout)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish()
    }
}

impl BlobOptions {
    pub fn policy(&self) -> OutboundPolicy {
        OutboundPolicy::blob_storage()
            .allow(self.allowed_hosts.iter().cloned())
            .pin(self.resolve.iter().cloned())
    }

    /// The domain rule for a container: decided before anything is sent anywhere (the hub
    /// is never told about a container we would not read ourselves).
    pub fn check(&self, container: &BlobContainerSas) -> Result<(), Refusal> {
        self.policy().check_host(container.host())
    }
}

/// Reads blobs from customers' containers. Cheap to clone.
#[derive(Clone)]
pub struct BlobClient {
    http: reqwest::Client,
    options: BlobOptions,
}

impl fmt::Debug for BlobClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl BlobClient {
    pub fn new(options: BlobOptions) -> Result<Self, ExportError> {
        let invalid = |reason: String| ExportError::InvalidOptions { reason };
        let mut builder = options
            .policy()
            .client_builder()
            .use_rustls_tls()
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        if let Some(pem) = &options.extra_root_ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(format!("the extra root CA is not a PEM certificate: {e}")))?;
            if certificates.is_empty() {
                return Err(invalid(
                    "the extra root CA file holds no PEM certificate".to_owned(),
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| invalid(format!("the HTTPS client could not be built: {e}")))?;
        Ok(Self { http, options })
    }

    pub fn options(&self) -> &BlobOptions {
        &self.options
    }

    /// Starts reading `blob` of the container, line by line.
    pub async fn open_lines(
        &self,
        container: &BlobContainerSas,
        blob: &str,
    ) -> Result<BlobLines, ExportError> {
        self.options
            .check(container)
            .map_err(ExportError::BlobRefused)?;
        let host = container.host().to_owned();
        let url = container.blob_url(blob);
        let started = Instant::now();
        let request = self
            .http
            .get(url.as_str())
            .header("x-ms-version", "2021-08-06")
            .send();
        let response = match tokio::time::timeout(self.options.request_timeout, request).await {
            Err(_) => {
                return Err(ExportError::BlobNetwork {
                    host,
                    reason: "the request timed out".to_owned(),
                })
            }
            Ok(Err(error)) => return Err(network_error(&host, error)),
            Ok(Ok(response)) => response,
        };
        drop(url);
        let status = response.status();
        if !status.is_success() {
            // The body is the storage service's words: neither read nor quoted.
            return Err(status_error(&host, blob, status));
        }
        Ok(BlobLines {
            response,
            buffer: BytesMut::new(),
            host,
            max_line: self.options.max_line_bytes,
            idle: self.options.idle_timeout,
            deadline: started + self.options.download_timeout,
            download_timeout: self.options.download_timeout,
            finished: false,
            bytes_read: 0,
        })
    }
}

fn network_error(host: &str, error: reqwest::Error) -> ExportError {
    if let Some(refusal) = refusal_in(&error) {
        return ExportError::BlobRefused(refusal.clone());
    }
    ExportError::BlobNetwork {
        host: host.to_owned(),
        reason: describe_transport_error(error),
    }
}

fn status_error(host: &str, blob: &str, status: StatusCode) -> ExportError {
    let host = host.to_owned();
    let code = status.as_u16();
    if status.is_redirection() {
        ExportError::BlobRedirected { host, status: code }
    } else if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
        ExportError::BlobUnauthorized { host, status: code }
    } else if status == StatusCode::NOT_FOUND {
        ExportError::BlobNotFound {
            host,
            blob: blob.to_owned(),
        }
    } else {
        ExportError::BlobRejected { host, status: code }
    }
}

/// One blob, read as lines while it streams. Holds at most one chunk and one line.
pub struct BlobLines {
    response: reqwest::Response,
    buffer: BytesMut,
    host: String,
    max_line: usize,
    idle: Duration,
    deadline: Instant,
    download_timeout: Duration,
    finished: bool,
    bytes_read: u64,
}

impl fmt::Debug for BlobLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobLines")
            .field("host", &self.host)
            .field("bytes_read", &self.bytes_read)
            .finish_non_exhaustive()
    }
}

impl BlobLines {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next line without its `\n` (and `\r`), or `None` at the end of the blob. The
    /// last line needs no newline.
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, ExportError> {
        loop {
            if let Some(at) = self.buffer.iter().position(|&b| b == b'\n') {
                if at > self.max_line {
                    return Err(self.line_too_long());
                }
                let mut line = self.buffer.split_to(at + 1);
                line.truncate(at);
                if line.last() == Some(&b'\r') {
                    line.truncate(at - 1);
                }
                return Ok(Some(line.freeze()));
            }
            if self.buffer.len() > self.max_line {
                return Err(self.line_too_long());
            }
            if self.finished {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.buffer.split().freeze()));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), ExportError> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(self.too_slow());
        }
        let wait = self.idle.min(self.deadline - now);
        match tokio::time::timeout(wait, self.response.chunk()).await {
            Err(_) if Instant::now() >= self.deadline => Err(self.too_slow()),
            Err(_) => Err(ExportError::BlobStalled {
                host: self.host.clone(),
                idle: self.idle,
            }),
            Ok(Err(error)) => Err(network_error(&self.host, error)),
            Ok(Ok(None)) => {
                self.finished = true;
                Ok(())
            }
            Ok(Ok(Some(chunk))) => {
                // Chunks are the transport's (kilobytes each), so the buffer stays within
                // one chunk of the line bound, checked after every chunk.
                self.bytes_read += chunk.len() as u64;
                self.buffer.extend_from_slice(&chunk);
                Ok(())
            }
        }
    }

    fn line_too_long(&self) -> ExportError {
        ExportError::LineTooLong {
            host: self.host.clone(),
            limit_kib: self.max_line / 1024,
        }
    }

    fn too_slow(&self) -> ExportError {
        ExportError::BlobTooSlow {
            host: self.host.clone(),
            limit: self.download_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";

    fn url(rest: &str) -> String {
        format!("https://acct.blob.core.windows.net/{rest}")
    }

    #[test]
    fn a_container_sas_url_is_parsed_and_never_shown() {
        let text = url(&format!("exports?sv=2021-08-06&sr=c&sp=rwl&sig={SIG}"));
        let sas = BlobContainerSas::parse(&text).unwrap();
        assert_eq!(sas.host(), "acct.blob.core.windows.net");
        assert_eq!(sas.container(), "exports");
        assert_eq!(sas.expose_url(), text);
        assert_eq!(
            sas.blob_url("devices.txt").as_str(),
            url(&format!(
                "exports/devices.txt?sv=2021-08-06&sr=c&sp=rwl&sig={SIG}"
            ))
        );
        for shown in [format!("{sas:?}"), format!("{sas:#?}")] {
            assert!(shown.contains("acct.blob.core.windows.net"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
            assert!(!shown.contains(SIG) && !shown.contains("sig") && !shown.contains("sv="));
        }
        // A trailing slash names the same container.
        assert!(BlobContainerSas::parse(&url(&format!("exports/?sig={SIG}"))).is_ok());
    }

    #[test]
    fn only_the_documented_shape_is_accepted() {
        let good = [
            url(&format!("exports?sv=2021-08-06&sr=c&sp=rwl&sig={SIG}")),
            format!("https://acct.blob.core.windows.net:10000/exports?sig={SIG}&se=2026-12-01T00%3A00%3A00Z"),
            format!("https://devstoreaccount1.blob.core.windows.net:65535/c-1?sig={SIG}"),
            // The pattern's container name: 3 to 63, no hyphen at either end (`--` is left
            // to the storage service, see `is_container_name`).
            url(&format!("{}?sig={SIG}", "a-1".repeat(21))),
            url(&format!("a--b/?sig={SIG}")),
        ];
        for text in good {
            assert!(BlobContainerSas::parse(&text).is_ok(), "{text}");
        }
        let seventeen = "sv=1&".repeat(17);
        let bad = [
            format!("  {}", url(&format!("exports?sig={SIG}"))),
            format!("{}\n", url(&format!("exports?sig={SIG}"))),
            url(&format!("exports?sig={SIG}&xetd=myDonjlx-p0lx7*")),
            url(&format!("exports?sig={SIG}&Sv=1")),
            url(&format!("exports?sig={SIG}&sig={SIG}")),
            url(&format!("exports?sig={SIG}&sv")),
            url(&format!("exports?{seventeen}sig={SIG}")),
            format!("https://ACCT.blob.core.windows.net/exports?sig={SIG}"),
            format!("HTTPS://acct.blob.core.windows.net/exports?sig={SIG}"),
            format!("https://ab.blob.core.windows.net/exports?sig={SIG}"),
            format!("https://acct.blob.core.windows.net:65536/exports?sig={SIG}"),
            format!("https://acct.blob.core.windows.net:0443/exports?sig={SIG}"),
        ];
        // Each is refused (most for their shape; a port past 65535 is no URL at all).
        for text in bad {
            let error = BlobContainerSas::parse(&text).expect_err(&text);
            assert!(!error.to_string().contains(SIG), "{error}");
        }
    }

    #[test]
    fn what_is_not_a_container_sas_url_is_refused_without_quoting_it() {
        let cases = [
            ("not a url sig=SECRETSIG".to_owned(), SasUrlError::NotUrl),
            (
                format!("http://acct.blob.core.windows.net/c1x?sig={SIG}"),
                SasUrlError::NotHttps,
            ),
            (
                format!("https://user:SECRETSIG@acct.blob.core.windows.net/c1x?sig={SIG}"),
                SasUrlError::HasCredentials,
            ),
            (url(&format!("?sig={SIG}")), SasUrlError::NotAContainer),
            (
                url(&format!("c1x/devices.txt?sig={SIG}")),
                SasUrlError::NotAContainer,
            ),
            (
                url(&format!("Exports?sig={SIG}")),
                SasUrlError::BadContainerName,
            ),
            (
                url(&format!("-ab?sig={SIG}")),
                SasUrlError::BadContainerName,
            ),
            (
                url(&format!("ab-?sig={SIG}")),
                SasUrlError::BadContainerName,
            ),
            (
                url(&format!("{}?sig={SIG}", "a".repeat(64))),
                SasUrlError::BadContainerName,
            ),
            (url(&format!("ab?sig={SIG}")), SasUrlError::BadContainerName),
            (url("exports?sv=2021&sp=rwl"), SasUrlError::NoSignature),
            (url("exports?sig="), SasUrlError::NoSignature),
            (
                url(&format!("exports?sig={SIG}#SECRETSIG")),
                SasUrlError::Fragment,
            ),
            (
                url(&format!("exports?sig={}", "A".repeat(MAX_SAS_URL_CHARS))),
                SasUrlError::TooLong,
            ),
        ];
        for (text, expected) in cases {
            let error = BlobContainerSas::parse(&text).unwrap_err();
            assert_eq!(error, expected, "{text}");
            let message = error.to_string();
            assert!(
                !message.contains("SECRETSIG") && !message.contains(SIG),
                "{message}"
            );
        }
    }

    #[test]
    fn only_blob_storage_hosts_pass_and_pins_do_not_widen_the_domains() {
        let options = BlobOptions {
            resolve: vec![
                (
                    "devstoreaccount1.blob.core.windows.net".to_owned(),
                    "127.0.0.1:10000".parse().unwrap(),
                ),
                (
                    "evil.example.com".to_owned(),
                    "127.0.0.1:1".parse().unwrap(),
                ),
            ],
            ..BlobOptions::default()
        };
        let check = |host: &str| {
            let sas = BlobContainerSas::parse(&format!("https://{host}/exports?sig={SIG}"))
                .expect("shape");
            options.check(&sas)
        };
        assert_eq!(check("acct.blob.core.windows.net"), Ok(()));
        assert_eq!(check("acct.blob.core.chinacloudapi.cn"), Ok(()));
        assert_eq!(check("devstoreaccount1.blob.core.windows.net"), Ok(()));
        for host in [
            "evil.example.com",
            "127.0.0.1",
            "169.254.169.254",
            "[::1]",
            "myhub.azure-devices.net",
            "acct.blob.core.windows.net.evil.com",
        ] {
            let refusal = check(host).expect_err(host);
            assert!(!refusal.to_string().contains(SIG));
        }
    }
}
