//! `iothubgdr serve`: the HTTP API on a store.
//!
//! Split in steps the import engine can hook into: [`DatabaseArgs::open_store`] opens the
//! backend named by the URL, [`build_state`] makes the token service and the API state,
//! [`bind`] takes the listening socket and [`serve_until_shutdown`] serves until SIGINT or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use iothub_client::ClientOptions;
use iothubgdr_api::{
    ApiState, PagingKey, RateLimitConfig, RequestLimits, ServeOptions, SharedRegistry,
};
use iothubgdr_auth::{SigningKey, TokenService};
use iothubgdr_import::{Engine, EngineConfig};
use iothubgdr_store::Store;
use iothubgdr_store_postgres::{PostgresOptions, PostgresStore};
use iothubgdr_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

/// Where the data lives. Shared by `serve` and `apps`.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Directory of the default SQLite database (created if missing).
    #[arg(long, env = "IOTHUBGDR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://PATH` (default `sqlite://<data dir>/iothubgdr.db`) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` for several replicas on one database.
    /// Prefer the environment variable when the URL holds a password.
    #[arg(long, env = "IOTHUBGDR_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// PostgreSQL: connections this process keeps at most.
    #[arg(long, env = "IOTHUBGDR_DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    /// PostgreSQL: a statement running longer is cancelled by the server.
    #[arg(long, env = "IOTHUBGDR_DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub database_statement_timeout: Duration,
}

impl DatabaseArgs {
    /// The database URL to open.
    pub fn url(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("iothubgdr.db").display()),
        }
    }

    /// Opens the backend the URL's scheme names, creating and migrating it as needed.
    /// Errors never quote a PostgreSQL URL: it may hold a password.
    pub async fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        let url = self.url();
        if url.starts_with("sqlite:") {
            let store = SqliteStore::connect(&url)
                .await
                .map_err(|err| anyhow::anyhow!(err.detail()))
                .with_context(|| format!("cannot open the SQLite database {url}"))?;
            Ok(Arc::new(store))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PostgresOptions {
                pool_size: self.database_pool_size,
                statement_timeout: self.database_statement_timeout,
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect(&url, options)
                .await
                .map_err(|err| anyhow::anyhow!(err.detail()))
                .context("cannot open the PostgreSQL database")?;
            Ok(Arc::new(store))
        } else {
            anyhow::bail!("unsupported database URL: it must start with sqlite:// or postgres://")
        }
    }
}

/// The HTTP side of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Address to listen on; port 0 picks a free port. The first line on stdout is
    /// `listening on http://ADDR` (`https://` with --tls-cert).
    #[arg(long, env = "IOTHUBGDR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Lifetime of issued bearer tokens: seconds (`3600`) or with a unit (`90s`, `15m`,
    /// `1h`, `1d`).
    #[arg(long, env = "IOTHUBGDR_TOKEN_TTL", default_value = "1h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// Token signing keys from this file instead of the database: one `<kid> <base64 key>`
    /// a line (`iothubgdr keys generate` prints one); the first signs, all verify. The
    /// environment variable IOTHUBGDR_TOKEN_KEYS may hold the same text instead.
    #[arg(long, env = "IOTHUBGDR_TOKEN_KEYS_FILE", value_name = "FILE")]
    pub token_keys_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "IOTHUBGDR_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "IOTHUBGDR_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// A client must send a whole request head (and finish the TLS handshake) within this
    /// long, or its connection is closed.
    #[arg(long, env = "IOTHUBGDR_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A request (body upload included) not answered within this long answers 504.
    #[arg(long, env = "IOTHUBGDR_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, env = "IOTHUBGDR_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Requests handled at once; more wait for a slot (then 503).
    #[arg(long, env = "IOTHUBGDR_MAX_CONCURRENT_REQUESTS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Requests a second one tenant may make (all its apps together); it may burst to ten
    /// times this after a quiet spell. Past it: 429 with Retry-After.
    #[arg(long, env = "IOTHUBGDR_RATE_LIMIT_TENANT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_tenant: u32,
    /// Token requests a minute for one client id.
    #[arg(long, env = "IOTHUBGDR_RATE_LIMIT_TOKEN_CLIENT", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_token_client: u32,
    /// Token requests a minute from one remote address.
    #[arg(long, env = "IOTHUBGDR_RATE_LIMIT_TOKEN_ADDRESS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_token_address: u32,
}

impl HttpArgs {
    /// These flags' defaults, for servers started in-process (the demo).
    pub fn local(listen: SocketAddr, token_ttl: Duration) -> Self {
        Self {
            listen,
            token_ttl,
            token_keys_file: None,
            tls_cert: None,
            tls_key: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_concurrent_requests: 256,
            rate_limit_tenant: 100,
            rate_limit_token_client: 120,
            rate_limit_token_address: 600,
        }
    }

    fn rate_limits(&self) -> RateLimitConfig {
        RateLimitConfig {
            tenant_per_second: self.rate_limit_tenant,
            tenant_burst: self.rate_limit_tenant.saturating_mul(10),
            token_per_client_per_minute: self.rate_limit_token_client,
            token_per_address_per_minute: self.rate_limit_token_address,
        }
    }

    fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            request_timeout: self.request_timeout,
            max_concurrent_requests: self.max_concurrent_requests as usize,
        }
    }

    /// How the listener treats connections, TLS included when asked for.
    pub fn serve_options(&self) -> anyhow::Result<ServeOptions> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(iothubgdr_api::load_tls(cert, key).context("cannot set up HTTPS")?)
            }
            _ => None,
        };
        Ok(ServeOptions {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections as usize,
            tls,
            ..ServeOptions::default()
        })
    }
}

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
    fn engine_config(&self) -> anyhow::Result<EngineConfig> {
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

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub import: ImportArgs,
}

/// Parses `3600`, `90s`, `15m`, `1h`, `1d`. Hand-written: five suffixes do not justify a
/// dependency.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 3600, 90s, 15m, 1h"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}`: use s, m, h or d")),
    };
    let seconds = number
        .checked_mul(scale)
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("`{text}` must be at least one second and not absurdly long"))?;
    Ok(Duration::from_secs(seconds))
}

/// Where the token signing keys come from.
enum KeySource {
    /// Keys the operator gave (file or environment): the database holds none.
    Operator(Vec<SigningKey>),
    /// Keys kept in the database, generated on the first start, rotated with `iothubgdr
    /// keys rotate`.
    Store,
}

/// How often servers re-read keys kept in the database, so a rotation or retirement made
/// with `iothubgdr keys` takes effect without a restart.
pub const KEY_REFRESH: Duration = Duration::from_secs(5);

fn key_source(http: &HttpArgs) -> anyhow::Result<KeySource> {
    let text = match (&http.token_keys_file, std::env::var("IOTHUBGDR_TOKEN_KEYS")) {
        (Some(path), _) => zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token keys file {}", path.display()))?,
        ),
        (None, Ok(text)) => zeroize::Zeroizing::new(text),
        (None, Err(_)) => return Ok(KeySource::Store),
    };
    let keys = iothubgdr_auth::parse_keys(&text).context("invalid token signing keys")?;
    Ok(KeySource::Operator(keys))
}

/// The keys kept in the database that are not retired, oldest first; a first key is
/// generated when there is none.
pub async fn stored_keys(store: &dyn Store) -> anyhow::Result<Vec<SigningKey>> {
    let candidate = SigningKey::generate();
    store
        .signing_key_add(candidate.kid(), candidate.as_bytes(), true)
        .await
        .context("cannot store the first token signing key")?;
    let keys = store
        .signing_keys()
        .await
        .context("cannot read the token signing keys")?
        .into_iter()
        .filter(|key| key.retired_at.is_none())
        .map(|key| SigningKey::new(key.kid.clone(), key.key.clone()))
        .collect::<Result<Vec<_>, _>>()
        .context("a stored token signing key is unusable")?;
    anyhow::ensure!(!keys.is_empty(), "every token signing key is retired");
    Ok(keys)
}

/// The newest key signs; every key verifies.
fn split_keys(keys: &[SigningKey], newest_signs: bool) -> (&SigningKey, &[SigningKey]) {
    if newest_signs {
        let (signing, _) = keys.split_last().unwrap_or_else(|| unreachable!());
        (signing, keys)
    } else {
        (&keys[0], keys)
    }
}

/// The token service on the operator's keys, or on those shared through the store (kept
/// fresh every [`KEY_REFRESH`] by a background task).
pub async fn token_service(
    store: &Arc<dyn Store>,
    http: &HttpArgs,
) -> anyhow::Result<Arc<TokenService>> {
    match key_source(http)? {
        KeySource::Operator(keys) => {
            let (signing, verifying) = split_keys(&keys, false);
            Ok(Arc::new(TokenService::new(
                signing,
                verifying,
                http.token_ttl,
            )))
        }
        KeySource::Store => {
            let keys = stored_keys(store.as_ref()).await?;
            let (signing, verifying) = split_keys(&keys, true);
            let tokens = Arc::new(TokenService::new(signing, verifying, http.token_ttl));
            tokio::spawn(refresh_keys(store.clone(), Arc::downgrade(&tokens)));
            Ok(tokens)
        }
    }
}

async fn refresh_keys(store: Arc<dyn Store>, tokens: std::sync::Weak<TokenService>) {
    let mut ticks = tokio::time::interval(KEY_REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(tokens) = tokens.upgrade() else {
            return;
        };
        match stored_keys(store.as_ref()).await {
            Ok(keys) => {
                let (signing, verifying) = split_keys(&keys, true);
                tokens.set_keys(signing, verifying);
            }
            // Keep the keys we have: a database hiccup must not log everyone out.
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot refresh the token signing keys")
            }
        }
    }
}

/// The API state on `store`, registering the HTTP metrics in `registry`.
pub async fn build_state(
    store: Arc<dyn Store>,
    http: &HttpArgs,
    registry: SharedRegistry,
) -> anyhow::Result<ApiState> {
    let tokens = token_service(&store, http).await?;
    let paging = store
        .paging_key_get_or_insert(PagingKey::random_bytes().as_slice())
        .await
        .context("cannot read the page token key")?;
    Ok(ApiState::new(store, tokens, registry)
        .with_paging_key(PagingKey::new(paging))
        .with_rate_limits(http.rate_limits())
        .with_request_limits(http.request_limits()))
}

/// Binds the listener and prints `listening on http://ADDR` (or `https://`) as the first
/// stdout line.
pub async fn bind(listen: SocketAddr, tls: bool) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let scheme = if tls { "https" } else { "http" };
    println!("listening on {scheme}://{address}");
    tracing::info!(%address, scheme, "listening");
    if !tls && !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "serving plain HTTP on a non-loopback address: bearer tokens and connection strings cross the network in clear; use --tls-cert/--tls-key or a TLS proxy"
        );
    }
    Ok(listener)
}

/// Serves `app` until `shutdown` resolves (see [`ShutdownSignal`]), then lets requests in
/// flight finish.
pub async fn serve_until_shutdown(
    listener: TcpListener,
    app: iothubgdr_api::Router,
    options: ServeOptions,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    iothubgdr_api::server::serve(listener, app, options, shutdown.received())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, handled from the moment this value exists.
///
/// Tokio installs a signal handler only when a signal stream is created: created lazily
/// (inside the serving future), a signal sent just after `listening on` was printed could
/// still kill the process with the default action. `serve` installs this before it binds,
/// so its first stdout line also says "signals are handled now", which scripts and tests wait
/// for before they send one.
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub async fn received(self) {
        #[cfg(unix)]
        {
            let Self {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C received, shutting down");
        }
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM; handlers are installed at the call.
pub async fn shutdown_signal() {
    match ShutdownSignal::install() {
        Ok(signals) => signals.received().await,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for signals");
            std::future::pending::<()>().await;
        }
    }
}

/// The import engine on `store`, registering its figures in `registry`, started.
pub async fn start_engine(
    store: Arc<dyn Store>,
    args: &ImportArgs,
    registry: &SharedRegistry,
) -> anyhow::Result<Engine> {
    let config = args.engine_config()?;
    let engine = {
        let mut registry = registry
            .lock()
            .map_err(|_| anyhow::anyhow!("the metrics registry is unusable"))?;
        Engine::new(store, config, &mut registry)
    };
    engine
        .start()
        .await
        .context("cannot start the import engine")?;
    Ok(engine)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Fail on bad TLS files before the database or the engine is touched.
    args.http.serve_options()?;
    let store = args.database.open_store().await?;
    let registry = iothubgdr_api::new_registry();
    let engine = start_engine(store.clone(), &args.import, &registry).await?;
    let state = build_state(store, &args.http, registry)
        .await?
        .with_engine(engine.clone());
    let options = args.http.serve_options()?;
    // Before `bind` prints `listening on`: from that line on, SIGINT/SIGTERM are handled.
    let signals = ShutdownSignal::install()?;
    let listener = bind(args.http.listen, options.tls.is_some()).await?;
    let served =
        serve_until_shutdown(listener, iothubgdr_api::router(state), options, signals).await;
    // Imports still running can never finish once this process is gone: record that now
    // rather than leaving them to another server's reaper.
    engine.shutdown().await;
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "h", "0", "1x", "-5", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
