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
use iothubgdr_api::{
    ApiState, PagingKey, RateLimitConfig, RequestLimits, ServeOptions, SharedRegistry,
};
use iothubgdr_auth::{SigningKey, TokenService};
use iothubgdr_import::Engine;
use iothubgdr_store::Store;
use iothubgdr_store_postgres::{PostgresOptions, PostgresStore};
use iothubgdr_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use crate::import_args::ImportArgs;

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
}
