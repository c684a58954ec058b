//! A real Azure Storage emulator for tests, benchmarks and the demo: Azurite's blob service
//! (npm package `azurite`), started on an ephemeral loopback port over HTTPS with a
//! certificate of a throwaway CA, and reached by its production-style name
//! `devstoreaccount1.blob.core.windows.net` (Azurite takes the account from the host's first
//! label). Clients pin that name to [`RunningAzurite::addr`] and trust
//! [`RunningAzurite::ca_cert_pem`], so they keep every rule of real blob storage (https, a
//! blob domain, TLS names) and the traffic stays on this machine.
//!
//! Where Azurite is found: `$AZURITE_BLOB_BIN`, then `azurite/node_modules/.bin/azurite-blob`
//! under `$CARGO_TARGET_DIR` or the workspace's `target/` (where `scripts/azurite.sh`
//! installs it), then `azurite-blob` on the `PATH`. Telemetry is switched off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, Mac};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Azurite's well-known development account and key (published in its README; it grants
/// nothing outside a local emulator).
pub const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The blob host clients use: a real blob domain, pinned to the loopback address.
pub const HOST: &str = "devstoreaccount1.blob.core.windows.net";
const SAS_VERSION: &str = "2021-08-06";

/// Where the Azurite blob binary is, if anywhere.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AZURITE_BLOB_BIN") {
        return Some(PathBuf::from(path));
    }
    let relative = Path::new("azurite/node_modules/.bin/azurite-blob");
    let mut candidates = Vec::new();
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(target).join(relative));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(relative),
    );
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("azurite-blob"))
            .find(|p| p.is_file())
    })
}

/// Under CI (`CI` set) a test that needs Azurite fails when it is missing instead of being
/// skipped.
pub fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A running Azurite blob service; stopped when dropped.
pub struct RunningAzurite {
    child: Child,
    addr: SocketAddr,
    ca_cert_pem: String,
    dir: PathBuf,
    http: reqwest::Client,
}

impl std::fmt::Debug for RunningAzurite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAzurite")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for RunningAzurite {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RunningAzurite {
    /// Starts Azurite, or `Ok(None)` when it is not installed (and not [`required`]).
    pub async fn start_for_test() -> anyhow::Result<Option<Self>> {
        match find_binary() {
            Some(binary) => Self::start(&binary).await.map(Some),
            None if required() => anyhow::bail!(
                "Azurite is not installed and CI is set: run `bash scripts/azurite.sh` (npm install azurite)"
            ),
            None => Ok(None),
        }
    }

    pub async fn start(binary: &Path) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "azurite-{}-{}",
            std::process::id(),
            crate::seed::mix(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            )
        ));
        std::fs::create_dir_all(&dir).context("creating Azurite's folder")?;
        let tls = certificate()?;
        std::fs::write(dir.join("cert.pem"), &tls.cert_pem)?;
        std::fs::write(dir.join("key.pem"), &tls.key_pem)?;
        let mut child = Command::new(binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
            .args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
            .args(["--skipApiVersionCheck", "--loose"])
            .current_dir(&dir)
            .arg("--cert")
            .arg(dir.join("cert.pem"))
            .arg("--key")
            .arg(dir.join("key.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting Azurite ({})", binary.display()))?;
        let stdout = child.stdout.take().context("Azurite's output")?;
        let mut errors = child.stderr.take().map(|e| BufReader::new(e).lines());
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("listens on https://").nth(1) {
                    return rest
                        .trim()
                        .parse::<SocketAddr>()
                        .context("Azurite's address");
                }
            }
            let mut said = String::new();
            if let Some(errors) = errors.as_mut() {
                while let Ok(Some(line)) = errors.next_line().await {
                    said.push_str(&line);
                    said.push('\n');
                }
            }
            anyhow::bail!("Azurite stopped before listening: {said}")
        })
        .await
        .context("Azurite did not start within 60 s")??;
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        if let Some(mut errors) = errors {
            tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes())?)
            .resolve(HOST, addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            child,
            addr,
            ca_cert_pem: tls.ca_pem,
            dir,
            http,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The PEM of the CA that signed Azurite's certificate.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// `--blob-resolve` / `--blob-endpoint` value: `HOST=ADDR`.
    pub fn pin(&self) -> String {
        format!("{HOST}={}", self.addr)
    }

    /// Creates a container (with an account SAS).
    pub async fn create_container(&self, name: &str) -> anyhow::Result<()> {
        let url = format!(
            "https://{HOST}:{}/{name}?restype=container&{}",
            self.addr.port(),
            account_sas("rwdlac", "sco")
        );
        let response = self
            .http
            .put(url)
            .header("x-ms-version", SAS_VERSION)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success() || response.status().as_u16() == 409,
            "creating the container answered {}",
            response.status()
        );
        Ok(())
    }

    /// A container SAS URL with `permissions` (e.g. `racwdl`), valid for a day.
    pub fn container_sas_url(&self, container: &str, permissions: &str) -> String {
        let expiry = sas_time(time::OffsetDateTime::now_utc() + time::Duration::days(1));
        let resource = format!("/blob/{ACCOUNT}/{container}");
        let to_sign = [
            permissions,
            "",
            &expiry,
            &resource,
            "",
            "",
            "https",
            SAS_VERSION,
            "c",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", SAS_VERSION)
            .append_pair("spr", "https")
            .append_pair("se", &expiry)
            .append_pair("sr", "c")
            .append_pair("sp", permissions)
            .append_pair("sig", &sign(&to_sign))
            .finish();
        format!("https://{HOST}:{}/{container}?{query}", self.addr.port())
    }

    /// The blob's bytes (for tests), read with an account SAS.
    pub async fn read_blob(&self, container: &str, blob: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!(
            "https://{HOST}:{}/{container}/{blob}?{}",
            self.addr.port(),
            account_sas("r", "o")
        );
        let response = self
            .http
            .get(url)
            .header("x-ms-version", SAS_VERSION)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "reading the blob answered {}",
            response.status()
        );
        Ok(response.bytes().await?.to_vec())
    }
}

fn account_sas(permissions: &str, resource_types: &str) -> String {
    let expiry = sas_time(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    let to_sign = [
        ACCOUNT,
        permissions,
        "b",
        resource_types,
        "",
        &expiry,
        "",
        "https",
        SAS_VERSION,
        "",
        "",
    ]
    .join("\n");
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", "b")
        .append_pair("srt", resource_types)
        .append_pair("sp", permissions)
        .append_pair("se", &expiry)
        .append_pair("spr", "https")
        .append_pair("sig", &sign(&to_sign))
        .finish()
}

fn sign(text: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(ACCOUNT_KEY)
        .unwrap_or_default();
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn sas_time(at: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

struct AzuriteTls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn certificate() -> anyhow::Result<AzuriteTls> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Azurite test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut leaf =
        CertificateParams::new(vec![HOST.to_owned(), "*.blob.core.windows.net".to_owned()])?;
    leaf.distinguished_name.push(DnType::CommonName, HOST);
    leaf.use_authority_key_identifier_extension = true;
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;
    Ok(AzuriteTls {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
