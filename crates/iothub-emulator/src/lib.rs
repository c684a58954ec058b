//! A local emulator of the Azure IoT Hub *service* REST API over HTTPS: identity registry,
//! twins, bulk registry operations and the twin query with paging, with shared access
//! signature checks as the hub makes them and deterministic fault injection.
//!
//! The jobs API runs export jobs that write `devices.txt` into a blob container of a local
//! Azure Storage emulator ([`azurite`]), reached only at loopback addresses it was given.
//!
//! Clients reach it as `<hub>.azure-devices.net` by resolving that name to [`RunningEmulator::addr`]
//! and trusting [`RunningEmulator::ca_cert_pem`].

pub mod azurite;
mod blob;
mod error;
mod hostile;
mod jobs;
mod model;
mod query;
mod registry;
mod sas;
mod seed;
mod server;
mod state;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use zeroize::Zeroize;

pub use crate::hostile::Hostility;

use crate::error::HubError;
use crate::registry::Registry;
use crate::state::{RequestFault, Shared};

pub use crate::seed::IdStyle;

/// The largest page a twin query returns. The IoT Hub query language documentation says the
/// service SDK's query object "is instantiated with a page size (up to 100)"
/// (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language>, C# example;
/// older revisions said 1000); `x-ms-max-item-count` above it is lowered to it, as the REST
/// reference allows ("The service may use a different value if the value specified is not
/// acceptable", <https://learn.microsoft.com/rest/api/iothub/service/query/get-twins>).
pub const HUB_MAX_QUERY_PAGE_SIZE: u32 = 100;

/// Query throttles per unit from "IoT Hub quotas and throttling"
/// (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling>):
/// "Queries (device and module): 20/min/unit" for S1 and S2 (and Free/B1 has none of the
/// standard-tier query API), "1,000/min/unit" for S3.
pub const QUERIES_PER_MINUTE_PER_UNIT_S1: u32 = 20;
/// See [`QUERIES_PER_MINUTE_PER_UNIT_S1`].
pub const QUERIES_PER_MINUTE_PER_UNIT_S2: u32 = 20;
/// See [`QUERIES_PER_MINUTE_PER_UNIT_S1`].
pub const QUERIES_PER_MINUTE_PER_UNIT_S3: u32 = 1_000;

/// A shared access policy of the hub. The key is a secret: `Debug` redacts it and it is wiped
/// from memory when dropped.
#[derive(Clone)]
pub struct AccessPolicy {
    pub name: String,
    /// Base64, as the portal shows it.
    pub primary_key: String,
    pub registry_read: bool,
    pub registry_write: bool,
    pub service_connect: bool,
}

impl fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("name", &self.name)
            .field("primary_key", &"<redacted>")
            .field("registry_read", &self.registry_read)
            .field("registry_write", &self.registry_write)
            .field("service_connect", &self.service_connect)
            .finish()
    }
}

impl Drop for AccessPolicy {
    fn drop(&mut self) {
        self.primary_key.zeroize();
    }
}

impl AccessPolicy {
    /// The hub's built-in policies with keys derived from `seed`: `iothubowner` (registry read
    /// and write, service connect), `service` (service connect only: no registry rights),
    /// `registryRead` and `registryReadWrite`.
    pub fn defaults(seed: u64) -> Vec<AccessPolicy> {
        let policy = |name: &str, read: bool, write: bool, connect: bool| AccessPolicy {
            name: name.to_string(),
            primary_key: seed::derived_key(seed, &format!("policy/{name}")),
            registry_read: read,
            registry_write: write,
            service_connect: connect,
        };
        vec![
            policy("iothubowner", true, true, true),
            policy("service", false, false, true),
            policy("registryRead", true, false, false),
            policy("registryReadWrite", true, true, false),
        ]
    }
}

impl Faults {
    pub(crate) fn quota_window_length(&self) -> Duration {
        if self.quota_window.is_zero() {
            Duration::from_secs(60)
        } else {
            self.quota_window
        }
    }
}

/// Faults injected into the emulator's answers, deterministic from the seed.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every k-th query answers 429 with `Retry-After`.
    pub throttle_every: Option<u32>,
    /// The `Retry-After` of `throttle_every` throttles and injected 503s, in whole seconds
    /// (zero is allowed for fast tests).
    pub retry_after: Duration,
    /// A query quota like a hub unit's (see [`QUERIES_PER_MINUTE_PER_UNIT_S1`]): past it,
    /// 429 with `Retry-After` until the window rolls.
    pub queries_per_minute: Option<u32>,
    /// The window `queries_per_minute` counts in: zero means the hub's minute; tests scale
    /// it down (20 queries per 2 s behaves like 600 a minute, only faster to observe).
    pub quota_window: Duration,
    /// Fraction of requests answered 500 or 503.
    pub server_error_rate: f64,
    /// Fraction of requests whose connection is closed without an answer.
    pub drop_rate: f64,
    /// Fraction of requests that the hub carries out, but whose answer is lost: the
    /// connection closes after the request was handled (and counted), as when a network
    /// fails on the way back. The client cannot tell this from a drop and retries.
    pub lost_answer_rate: f64,
    /// Added to every request.
    pub latency: Duration,
    /// A smaller page-size cap than `max_page_size`.
    pub page_size_cap: Option<u32>,
    /// Export jobs run at least this long (their slices are spread over it), so that a
    /// test can cancel one while it runs.
    pub export_duration: Duration,
    /// Export jobs end `failed` after writing their blocks (the failure reason quotes the
    /// container URL, as a hub's may: clients must not show it).
    pub export_fails: bool,
    /// Creating a job answers `JobQuotaExceeded`, as when another import or export job runs.
    pub job_already_running: bool,
    /// Every k-th jobs API request (create, get, cancel) answers 429 with `Retry-After`
    /// (`retry_after`): the jobs API has a throttle of its own, apart from the queries'.
    pub jobs_throttle_every: Option<u32>,
    /// Twin query answers no real hub gives (loops, lies, huge pages, redirects, twins over
    /// the limits), for tests of clients.
    pub hostility: Hostility,
}

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    /// The hub host is `<hub_name>.azure-devices.net`.
    pub hub_name: String,
    /// Synthetic devices seeded at start (computed on demand, so millions are cheap).
    pub devices: u64,
    pub seed: u64,
    pub policies: Vec<AccessPolicy>,
    pub faults: Faults,
    /// Defaults to [`HUB_MAX_QUERY_PAGE_SIZE`], the real hub's documented maximum.
    pub max_page_size: u32,
    /// How seeded device ids look.
    pub id_style: IdStyle,
    /// Blob hosts export jobs may write to, each pinned to a loopback address (a local
    /// Azurite); any other host is refused.
    pub blob_endpoints: Vec<(String, SocketAddr)>,
    /// PEM of the CA that signed the blob endpoints' certificates.
    pub blob_ca_pem: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let seed = 1;
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            hub_name: "emulated-hub".to_string(),
            devices: 0,
            seed,
            policies: AccessPolicy::defaults(seed),
            faults: Faults::default(),
            max_page_size: HUB_MAX_QUERY_PAGE_SIZE,
            id_style: IdStyle::default(),
            blob_endpoints: Vec::new(),
            blob_ca_pem: None,
        }
    }
}

impl EmulatorConfig {
    /// The defaults with the policy keys derived from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        EmulatorConfig {
            seed,
            policies: AccessPolicy::defaults(seed),
            ..EmulatorConfig::default()
        }
    }
}

/// Counters of what the emulator did since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    /// Queries answered 200 (twin pages and counts).
    pub queries_served: u64,
    pub twins_served: u64,
    /// Twins served by queries bounded on deviceId (the parts of a partitioned read).
    pub ranged_twins_served: u64,
    /// 429s from `throttle_every`.
    pub throttled: u64,
    /// 429s from `queries_per_minute`.
    pub quota_throttled: u64,
    /// Injected 500/503 answers.
    pub server_errors: u64,
    /// Connections dropped without an answer.
    pub dropped: u64,
    /// Requests handled (and counted above) whose answer was then lost.
    pub lost_answers: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// Export jobs created.
    pub jobs_created: u64,
    /// Export jobs cancelled while they ran.
    pub jobs_cancelled: u64,
    /// Jobs API requests answered 429 by `jobs_throttle_every`.
    pub jobs_throttled: u64,
    /// Devices written by export jobs.
    pub devices_exported: u64,
}

pub struct RunningEmulator {
    addr: SocketAddr,
    hub_name: String,
    ca_cert_pem: String,
    eventhub_namespace: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("addr", &self.addr)
            .field("hub_name", &self.hub_name)
            .finish_non_exhaustive()
    }
}

impl RunningEmulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn host_name(&self) -> String {
        self.shared.hub_host.clone()
    }

    pub fn hub_name(&self) -> &str {
        &self.hub_name
    }

    /// The PEM of the CA that signed the server certificate.
    pub fn ca_cert_pem(&self) -> String {
        self.ca_cert_pem.clone()
    }

    fn policy(&self, name: &str) -> Option<&AccessPolicy> {
        self.shared.policies.iter().find(|p| p.name == name)
    }

    /// `HostName=<host>;SharedAccessKeyName=iothubowner;SharedAccessKey=<key>`.
    pub fn iothub_connection_string(&self) -> String {
        self.connection_string_for("iothubowner")
            .unwrap_or_default()
    }

    /// The Event Hub-compatible built-in endpoint form, whose `EntityPath` names the hub.
    pub fn eventhub_connection_string(&self) -> String {
        self.eventhub_connection_string_for("iothubowner")
            .unwrap_or_default()
    }

    pub fn eventhub_connection_string_for(&self, policy: &str) -> Option<String> {
        self.policy(policy).map(|p| {
            format!(
                "Endpoint=sb://{}.servicebus.windows.net/;SharedAccessKeyName={};SharedAccessKey={};EntityPath={}",
                self.eventhub_namespace, p.name, p.primary_key, self.hub_name
            )
        })
    }

    /// The IoT Hub form of the connection string for `policy`.
    pub fn connection_string_for(&self, policy: &str) -> Option<String> {
        self.policy(policy).map(|p| {
            format!(
                "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
                self.shared.hub_host, p.name, p.primary_key
            )
        })
    }

    /// The policies the emulator accepts (keys included: this is a test fixture).
    pub fn policies(&self) -> Vec<AccessPolicy> {
        self.shared.policies.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    pub fn stats(&self) -> Stats {
        self.shared.snapshot()
    }

    /// When each twin query request arrived, measured from the emulator's start, whatever
    /// its answer (429s and injected faults included): what a hub's quota counts.
    pub fn query_arrivals(&self) -> Vec<Duration> {
        self.shared.query_arrivals()
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
    }
}

/// The error a faulty request returns to hyper so that it closes the connection unanswered.
#[derive(Debug)]
struct DroppedConnection;

impl fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedConnection {}

pub async fn start(config: EmulatorConfig) -> anyhow::Result<RunningEmulator> {
    if config.hub_name.is_empty()
        || !config
            .hub_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        anyhow::bail!("the hub name must be letters, digits and dashes");
    }
    if config.max_page_size == 0 {
        anyhow::bail!("max_page_size must be at least 1");
    }
    let hub_host = format!("{}.azure-devices.net", config.hub_name);
    let tls = tls::generate(&hub_host)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let namespace_hash = seed::mix(config.seed ^ 0xE7E7);
    let eventhub_namespace = format!(
        "iothub-ns-{}-{}-{:010x}",
        config.hub_name,
        namespace_hash % 10_000_000,
        (namespace_hash >> 24) & 0xff_ffff_ffff
    );
    let blob = blob::BlobWriter::new(config.blob_endpoints.clone(), config.blob_ca_pem.as_deref())?;
    let shared = Arc::new(Shared::new(
        hub_host,
        config.seed,
        config.policies.clone(),
        config.max_page_size,
        config.faults.clone(),
        Registry::new(config.seed, config.devices, config.id_style),
        blob,
    ));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    let router = server::router(shared.clone());
    let server = tokio::spawn(accept_loop(
        listener,
        acceptor,
        router,
        shared.clone(),
        shutdown_rx,
    ));
    Ok(RunningEmulator {
        addr,
        hub_name: config.hub_name,
        ca_cert_pem: tls.ca_cert_pem,
        eventhub_namespace,
        shared,
        shutdown,
        server,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shared = shared.clone();
        let mut connection_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                };
            // A dropped-connection fault closes the whole TCP connection (not just one HTTP/2
            // stream), like a network failure would.
            let drop_connection = Arc::new(tokio::sync::Notify::new());
            let drop_signal = drop_connection.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let router = router.clone();
                let shared = shared.clone();
                let drop_connection = drop_connection.clone();
                async move {
                    let answer = handle(shared, router, request).await;
                    if answer.is_err() {
                        drop_connection.notify_one();
                    }
                    answer
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = connection => {}
                _ = drop_signal.notified() => {}
                _ = connection_shutdown.changed() => {}
            }
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    router: axum::Router,
    request: hyper::Request<Incoming>,
) -> Result<axum::response::Response, DroppedConnection> {
    if request.uri().path() == "/devices/query" {
        shared.note_query_arrival();
    }
    let faults = shared.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let fault = shared.request_fault(&faults);
    match fault {
        RequestFault::Drop => return Err(DroppedConnection),
        RequestFault::ServerError(500) => {
            return Ok(HubError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "ServerError",
                "Injected server error",
            )
            .into_response())
        }
        RequestFault::ServerError(_) => {
            let error = HubError {
                retry_after_seconds: Some(faults.retry_after.as_secs()),
                ..HubError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Injected service unavailable",
                )
            };
            return Ok(error.into_response());
        }
        RequestFault::None | RequestFault::LoseAnswer => {}
    }
    let answer = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if matches!(fault, RequestFault::LoseAnswer) {
        // The hub has done the work; only the answer never reaches the client.
        shared.stats.lost_answers.fetch_add(1, Ordering::Relaxed);
        return Err(DroppedConnection);
    }
    Ok(answer)
}
