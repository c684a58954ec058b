//! Writing an export into a blob container, the way a hub does: Put Block for each slice of
//! `devices.txt`, then Put Block List
//! (<https://learn.microsoft.com/rest/api/storageservices/put-block>,
//! <https://learn.microsoft.com/rest/api/storageservices/put-block-list>), authorized by the
//! SAS in the container URL the job was given.
//!
//! The emulator is a test tool on a developer's machine: it writes only to hosts pinned to a
//! loopback address (a local Azurite, `EmulatorConfig::blob_endpoints`). Any other host is
//! refused before a connection is made, so a job's URL cannot make it reach the network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use zeroize::Zeroizing;

const STORAGE_VERSION: &str = "2021-08-06";

/// A container SAS URL, split for building blob URLs. Never logged.
#[derive(Clone)]
pub(crate) struct ContainerUrl {
    url: Zeroizing<String>,
    /// `https://host[:port]/container`
    base: Zeroizing<String>,
    query: Zeroizing<String>,
    host: String,
}

impl ContainerUrl {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(text.trim())
            .map_err(|_| "the container URI is not a URL".to_owned())?;
        if parsed.scheme() != "https" {
            return Err("the container URI must be https".to_owned());
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| "the container URI has no host".to_owned())?
            .to_ascii_lowercase();
        let container = parsed
            .path_segments()
            .and_then(|mut s| s.next().map(str::to_owned))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| "the container URI names no container".to_owned())?;
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(Self {
            url: Zeroizing::new(text.trim().to_owned()),
            base: Zeroizing::new(format!("https://{host}{port}/{container}")),
            query: Zeroizing::new(parsed.query().unwrap_or_default().to_owned()),
            host,
        })
    }

    pub(crate) fn expose_url(&self) -> &str {
        &self.url
    }

    fn blob(&self, name: &str, extra: &str) -> Zeroizing<String> {
        Zeroizing::new(format!("{}/{name}?{}{extra}", &*self.base, &*self.query))
    }
}

pub(crate) enum ProbeOutcome {
    Usable,
    Refused(String),
    Unreachable(String),
}

/// The emulator's storage client: pinned loopback hosts only, no redirects, no DNS.
#[derive(Clone)]
pub(crate) struct BlobWriter {
    http: Option<reqwest::Client>,
    endpoints: Vec<(String, SocketAddr)>,
}

/// Every name not pinned fails to resolve: the emulator reaches no host it was not told of.
struct NoDns;

impl reqwest::dns::Resolve for NoDns {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async {
            Err::<reqwest::dns::Addrs, _>(
                "the IoT Hub emulator writes only to blob hosts pinned to a loopback address"
                    .into(),
            )
        })
    }
}

impl BlobWriter {
    pub(crate) fn new(
        endpoints: Vec<(String, SocketAddr)>,
        ca_pem: Option<&str>,
    ) -> anyhow::Result<Self> {
        if let Some((host, addr)) = endpoints.iter().find(|(_, a)| !a.ip().is_loopback()) {
            anyhow::bail!("the blob endpoint {host} is pinned to {addr}, which is not a loopback address: the emulator writes only to a local storage emulator");
        }
        if endpoints.is_empty() {
            return Ok(Self {
                http: None,
                endpoints,
            });
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(NoDns))
            .timeout(Duration::from_secs(60));
        for (host, addr) in &endpoints {
            builder = builder.resolve(host, *addr);
        }
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Self {
            http: Some(builder.build()?),
            endpoints,
        })
    }

    fn client_for(&self, target: &ContainerUrl) -> Result<&reqwest::Client, String> {
        let pinned = self.endpoints.iter().any(|(host, _)| *host == target.host);
        match (&self.http, pinned) {
            (Some(http), true) => Ok(http),
            _ => Err(format!(
                "the emulator writes only to the storage emulator it was started with, not to {}",
                target.host
            )),
        }
    }

    /// Whether the container's SAS lets us at the blob: Get Blob Properties, where 404
    /// (no export yet) is as good as 200, and 401/403 is a refused SAS.
    pub(crate) async fn probe(&self, target: &ContainerUrl, blob: &str) -> ProbeOutcome {
        let http = match self.client_for(target) {
            Ok(http) => http,
            Err(reason) => return ProbeOutcome::Unreachable(reason),
        };
        let url = target.blob(blob, "");
        match http
            .head(url.as_str())
            .header("x-ms-version", STORAGE_VERSION)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => ProbeOutcome::Usable,
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                ProbeOutcome::Usable
            }
            Ok(response) => ProbeOutcome::Refused(format!(
                "the storage answered HTTP {}",
                response.status().as_u16()
            )),
            Err(_) => ProbeOutcome::Unreachable("the storage could not be reached".to_owned()),
        }
    }

    /// Uploads one block; returns its id for the block list.
    pub(crate) async fn put_block(
        &self,
        target: &ContainerUrl,
        blob: &str,
        index: usize,
        bytes: &[u8],
    ) -> Result<String, String> {
        let http = self.client_for(target)?;
        let block_id = base64::engine::general_purpose::STANDARD.encode(format!("{index:08}"));
        let encoded: String = url::form_urlencoded::byte_serialize(block_id.as_bytes()).collect();
        let url = target.blob(blob, &format!("&comp=block&blockid={encoded}"));
        let response = http
            .put(url.as_str())
            .header("x-ms-version", STORAGE_VERSION)
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|_| "the storage could not be reached while writing".to_owned())?;
        if !response.status().is_success() {
            return Err(format!(
                "the storage refused a block of the export (HTTP {})",
                response.status().as_u16()
            ));
        }
        Ok(block_id)
    }

    /// Commits the blocks as the blob (an empty list makes an empty blob).
    pub(crate) async fn put_block_list(
        &self,
        target: &ContainerUrl,
        blob: &str,
        blocks: &[String],
    ) -> Result<(), String> {
        let http = self.client_for(target)?;
        let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in blocks {
            body.push_str("<Latest>");
            body.push_str(id);
            body.push_str("</Latest>");
        }
        body.push_str("</BlockList>");
        let url = target.blob(blob, "&comp=blocklist");
        let response = http
            .put(url.as_str())
            .header("x-ms-version", STORAGE_VERSION)
            .header("x-ms-blob-content-type", "text/plain")
            .body(body)
            .send()
            .await
            .map_err(|_| "the storage could not be reached while committing".to_owned())?;
        if !response.status().is_success() {
            return Err(format!(
                "the storage refused the block list of the export (HTTP {})",
                response.status().as_u16()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(addr: &str) -> Vec<(String, SocketAddr)> {
        vec![(
            "devstoreaccount1.blob.core.windows.net".to_owned(),
            addr.parse().unwrap(),
        )]
    }

    #[test]
    fn only_loopback_endpoints_are_accepted() {
        for addr in ["10.0.0.1:443", "169.254.169.254:80", "8.8.8.8:443"] {
            assert!(BlobWriter::new(pin(addr), None).is_err(), "{addr}");
        }
        assert!(BlobWriter::new(pin("127.0.0.1:10000"), None).is_ok());
        assert!(BlobWriter::new(pin("[::1]:10000"), None).is_ok());
    }

    #[tokio::test]
    async fn a_container_on_another_host_is_never_reached() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let writer = BlobWriter::new(pin(&format!("127.0.0.1:{port}")), None).unwrap();
        for url in [
            format!("https://evil.example.com:{port}/exports?sig=x"),
            format!("https://localhost:{port}/exports?sig=x"),
            format!("https://127.0.0.1:{port}/exports?sig=x"),
        ] {
            let target = ContainerUrl::parse(&url).unwrap();
            assert!(matches!(
                writer.probe(&target, "devices.txt").await,
                ProbeOutcome::Unreachable(_)
            ));
            assert!(writer
                .put_block(&target, "devices.txt", 0, b"x")
                .await
                .is_err());
        }
        assert!(listener.accept().is_err(), "a connection was made");
        // Without endpoints the emulator writes nowhere.
        let none = BlobWriter::new(Vec::new(), None).unwrap();
        let target = ContainerUrl::parse(&format!(
            "https://devstoreaccount1.blob.core.windows.net:{port}/exports?sig=x"
        ))
        .unwrap();
        assert!(matches!(
            none.probe(&target, "devices.txt").await,
            ProbeOutcome::Unreachable(_)
        ));
    }
}
