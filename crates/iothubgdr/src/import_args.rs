//! `iothubgdr serve`'s import engine options: how imports reach IoT Hubs and, for the
//! export path, customers' blob containers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use iothub_client::ClientOptions;
use iothubgdr_import::EngineConfig;

use crate::serve::parse_duration;

/// The import engine and how it reaches IoT Hubs.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Extra trusted root CA (PEM file) for IoT Hub connections, beside the public roots:
    /// for a hub behind a TLS-inspecting proxy, or the IoT Hub emulator.
    #[arg(long, env = "IOTHUBGDR_IOTHUB_CA_FILE", value_name = "PEM")]
    pub iothub_ca_file: Option<PathBuf>,
    /// Reach an IoT Hub host at another address, keeping its name for TLS (like curl's
    /// --resolve). A pinned host may be reached at a loopback or private address (the
    /// emulator, a Private Link endpoint), but must still be under an allowed domain.
    /// Repeatable; comma-separated in the environment variable.
    #[arg(long, env = "IOTHUBGDR_IOTHUB_RESOLVE", value_name = "HOST=ADDR:PORT", value_delimiter = ',', value_parser = parse_resolve)]
    pub iothub_resolve: Vec<(String, SocketAddr)>,
    /// Also allow IoT Hub hosts matching this pattern (`*.azure-devices.contoso.internal`
    /// or an exact host), beside the IoT Hub domains of the Azure clouds
    /// (*.azure-devices.net, *.azure-devices.cn, *.azure-devices.us). Repeatable;
    /// comma-separated in the environment variable.
    #[arg(
        long,
        env = "IOTHUBGDR_IOTHUB_ALLOWED_HOSTS",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub iothub_allowed_host: Vec<iothub_client::HostPattern>,
    /// An import fails when its hub sends nothing (no page, no answer) for this long.
    #[arg(long, env = "IOTHUBGDR_IOTHUB_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub iothub_idle_timeout: Duration,
    /// Devices asked per IoT Hub query page (the hub allows at most 100).
    #[arg(long, env = "IOTHUBGDR_IOTHUB_PAGE_SIZE", default_value_t = iothub_client::MAX_PAGE_SIZE)]
    pub iothub_page_size: u32,
    /// Pace IoT Hub queries to this many a minute (a hub's quota is 20 a minute per S1/S2
    /// unit, 1000 per S3 unit); unset, the client slows down only when throttled.
    #[arg(long, env = "IOTHUBGDR_IOTHUB_QUERIES_PER_MINUTE")]
    pub iothub_queries_per_minute: Option<u32>,
    /// The most parallel readers one import uses on a large hub (5,000+ devices) whose
    /// quota allows more queries than one reader can send: each reads its own part of the
    /// registry, all paced together under --iothub-queries-per-minute. 1 reads every hub
    /// with one reader.
    #[arg(long, env = "IOTHUBGDR_IOTHUB_READERS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub iothub_readers: u16,
    /// How long one page may keep being retried (throttling, 5xx, network) before the
    /// import fails.
    #[arg(long, env = "IOTHUBGDR_IOTHUB_RETRY_BUDGET", default_value = "2m", value_parser = parse_duration)]
    pub iothub_retry_budget: Duration,
    /// Extra trusted root CA (PEM file) for blob storage (the export path), beside the
    /// public roots: for a local storage emulator such as Azurite.
    #[arg(long, env = "IOTHUBGDR_BLOB_CA_FILE", value_name = "PEM")]
    pub blob_ca_file: Option<PathBuf>,
    /// Reach a blob storage host at another address, keeping its name for TLS, like
    /// --iothub-resolve: how tests and the demo reach a loopback Azurite as
    /// devstoreaccount1.blob.core.windows.net. The host must still be under an allowed
    /// domain. Repeatable; comma-separated in the environment variable.
    #[arg(long, env = "IOTHUBGDR_BLOB_RESOLVE", value_name = "HOST=ADDR:PORT", value_delimiter = ',', value_parser = parse_resolve)]
    pub blob_resolve: Vec<(String, SocketAddr)>,
    /// Also allow blob storage hosts matching this pattern, beside the blob domains of the
    /// Azure clouds (*.blob.core.windows.net, *.blob.core.chinacloudapi.cn,
    /// *.blob.core.usgovcloudapi.net). Repeatable; comma-separated in the environment.
    #[arg(
        long,
        env = "IOTHUBGDR_BLOB_ALLOWED_HOSTS",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub blob_allowed_host: Vec<iothub_client::HostPattern>,
    /// An export-path import fails when the hub's export job has not finished by then.
    #[arg(long, env = "IOTHUBGDR_EXPORT_JOB_TIMEOUT", default_value = "4h", value_parser = parse_duration)]
    pub export_job_timeout: Duration,
    /// Imports this process runs at once, all tenants together.
    #[arg(long, env = "IOTHUBGDR_IMPORT_WORKERS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub import_workers: u16,
    /// Imports one tenant may run at once, counted over every replica on the database;
    /// more wait in STATUS_PENDING, first come first served.
    #[arg(long, env = "IOTHUBGDR_IMPORTS_PER_TENANT", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub imports_per_tenant: u16,
    /// Imports one tenant may have waiting or running (all replicas); past it, starting
    /// one answers 429.
    #[arg(long, env = "IOTHUBGDR_IMPORTS_QUEUED_PER_TENANT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub imports_queued_per_tenant: u32,
    /// Imports all tenants together may have waiting or running (all replicas); past it,
    /// starting one answers 429.
    #[arg(long, env = "IOTHUBGDR_IMPORTS_QUEUED_TOTAL", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub imports_queued_total: u32,
    /// This server's lease: a server that has not renewed it for this long (by the
    /// database's clock) is taken as gone, and any other server on the same database fails
    /// its unfinished imports (their secrets died with it).
    #[arg(long, env = "IOTHUBGDR_IMPORT_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub import_lease: Duration,
}

impl ImportArgs {
    pub(crate) fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let extra_root_ca_pem =
            match &self.iothub_ca_file {
                Some(path) => Some(std::fs::read(path).with_context(|| {
                    format!("cannot read the IoT Hub CA file {}", path.display())
                })?),
                None => None,
            };
        let policy = iothubgdr_outbound::OutboundPolicy::iot_hub()
            .allow(self.iothub_allowed_host.iter().cloned());
        for (host, _) in &self.iothub_resolve {
            if let Err(refusal) = policy.check_host(host) {
                tracing::warn!(%refusal, "--iothub-resolve pins a host that imports may not reach; add it with --iothub-allowed-host");
            }
        }
        let blob = iothub_client::BlobOptions {
            extra_root_ca_pem: match &self.blob_ca_file {
                Some(path) => Some(std::fs::read(path).with_context(|| {
                    format!("cannot read the blob storage CA file {}", path.display())
                })?),
                None => None,
            },
            resolve: self.blob_resolve.clone(),
            allowed_hosts: self.blob_allowed_host.clone(),
            ..iothub_client::BlobOptions::default()
        };
        for (host, _) in &self.blob_resolve {
            if let Err(refusal) = blob.policy().check_host(host) {
                tracing::warn!(%refusal, "--blob-resolve pins a host that imports may not reach; add it with --blob-allowed-host");
            }
        }
        anyhow::ensure!(
            (1..=iothub_client::MAX_PAGE_SIZE).contains(&self.iothub_page_size),
            "--iothub-page-size must be from 1 to {}",
            iothub_client::MAX_PAGE_SIZE
        );
        Ok(EngineConfig {
            workers: usize::from(self.import_workers),
            per_tenant: usize::from(self.imports_per_tenant),
            queued_per_tenant: self.imports_queued_per_tenant,
            queued_total: self.imports_queued_total,
            client: ClientOptions {
                extra_root_ca_pem,
                resolve: self.iothub_resolve.clone(),
                allowed_hosts: self.iothub_allowed_host.clone(),
                idle_timeout: self.iothub_idle_timeout,
                page_size: self.iothub_page_size,
                retry_budget: self.iothub_retry_budget,
                queries_per_minute: self.iothub_queries_per_minute,
                ..ClientOptions::default()
            },
            lease: self.import_lease,
            readers_per_import: usize::from(self.iothub_readers),
            blob,
            export_job_timeout: self.export_job_timeout,
            ..EngineConfig::default()
        })
    }
}

/// Parses `HOST=ADDR:PORT`.
fn parse_resolve(text: &str) -> Result<(String, SocketAddr), String> {
    let (host, address) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not HOST=ADDR:PORT"))?;
    let address: SocketAddr = address
        .trim()
        .parse()
        .map_err(|_| format!("`{address}` is not an ADDR:PORT such as 127.0.0.1:8443"))?;
    let host = host.trim().to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("`{text}` names no host"));
    }
    Ok((host, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_overrides() {
        let (host, address) = parse_resolve("Hub.azure-devices.net=127.0.0.1:8443").unwrap();
        assert_eq!(host, "hub.azure-devices.net");
        assert_eq!(address, "127.0.0.1:8443".parse().unwrap());
        for bad in ["hub", "=127.0.0.1:1", "hub=localhost", "hub=127.0.0.1"] {
            assert!(parse_resolve(bad).is_err(), "{bad}");
        }
    }
}
