//! The IoT Hub service client: TLS connection set-up, SAS authorization, and one query
//! page fetched with retries.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use iothubgdr_outbound::{HostPattern, OutboundPolicy};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::connection_string::ConnectionString;
use crate::error::HubError;
use crate::failure::{backoff_delay, error_detail, parse_retry_after, AttemptFailure};
use crate::pacing::Pacer;
use crate::query::DevicePages;
use crate::sas::{generate_sas_token, SasToken};
use crate::twin::decode_device_count;

/// The current GA service API version (the one the official SDKs send).
pub const API_VERSION: &str = "2021-04-12";

/// The largest page a twin query returns: "The query object is instantiated with a page
/// size (up to 100)" (IoT Hub docs, "Queries for IoT Hub device and module twins", the
/// service SDK example, <https://learn.microsoft.com/azure/iot-hub/query-twins>; revisions
/// before 2021 said "up to 1000"). The REST reference lets the service lower a larger
/// `x-ms-max-item-count` ("The service may use a different value if the value specified is
/// not acceptable", <https://learn.microsoft.com/rest/api/iothub/service/query/get-twins>),
/// and the pager never assumes a page is full, so asking for more is harmless.
pub const MAX_PAGE_SIZE: u32 = 100;

/// SAS tokens are issued for an hour, like the official SDKs, and renewed when less than
/// five minutes remain so a slow request never carries an expired token.
const TOKEN_TTL_SECS: u64 = 3600;
const TOKEN_RENEW_MARGIN_SECS: u64 = 300;

/// Most of an error body read at all (the rest is not waited for).
const ERROR_BODY_MAX_BYTES: usize = 16 * 1024;

/// The largest page body read. IoT Hub's own limits bound a real page: at most 100 twins
/// ([`MAX_PAGE_SIZE`]), each with tags of at most 8 KB and desired and reported properties
/// of at most 32 KB each ("Device twins" in "IoT Hub quotas and throttling"), about 7.2 MB
/// of values in all. The limits leave out `$metadata` (a timestamp and version per leaf,
/// which can be larger than short values), `$version`, the twin's system fields and JSON
/// escaping (`\u0000` is six bytes for one): four times that, 32 MiB, keeps a margin no
/// real page comes near, and one page in memory stays small next to the server's budget.
pub const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

/// Told about every answer (or failure) of every request, for metrics.
pub trait RequestObserver: Send + Sync {
    fn on_response(&self, outcome: RequestOutcome, will_retry: bool);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    Ok,
    Throttled,
    ServerError,
    Network,
    Unauthorized,
    NotFound,
    Other,
}

impl RequestOutcome {
    /// A metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Throttled => "throttled",
            RequestOutcome::ServerError => "server_error",
            RequestOutcome::Network => "network",
            RequestOutcome::Unauthorized => "unauthorized",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::Other => "other",
        }
    }
}

#[derive(Clone)]
pub struct ClientOptions {
    /// PEM certificates trusted in addition to the webpki roots (a local emulator's CA).
    pub extra_root_ca_pem: Option<Vec<u8>>,
    /// Host to address overrides, like curl's `--resolve`; TLS still checks the host name.
    /// A pinned host skips DNS and the outbound policy's address rule, not its domain rule.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Hosts allowed beside the IoT Hub domains of every Azure cloud.
    pub allowed_hosts: Vec<HostPattern>,
    /// `x-ms-max-item-count`; defaults to [`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// Total time one page may spend retrying.
    pub retry_budget: Duration,
    /// Time limit of one HTTP request, body included.
    pub request_timeout: Duration,
    /// Longest wait for one page (or the count), retries and pacing included, before the
    /// read is given up as stalled.
    pub idle_timeout: Duration,
    /// Pace under a hub's query quota; `None` is unpaced until a 429 says otherwise.
    pub queries_per_minute: Option<u32>,
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            extra_root_ca_pem: None,
            resolve: Vec::new(),
            allowed_hosts: Vec::new(),
            page_size: MAX_PAGE_SIZE,
            retry_budget: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            queries_per_minute: None,
            observer: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field(
                "extra_root_ca_pem",
                &self.extra_root_ca_pem.as_ref().map(Vec::len),
            )
            .field("resolve", &self.resolve)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("page_size", &self.page_size)
            .field("retry_budget", &self.retry_budget)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("queries_per_minute", &self.queries_per_minute)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// A client of one hub's service API. Cheap to clone: clones share the connection pool,
/// the SAS token and the pacing.
#[derive(Clone)]
pub struct HubClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    connection: ConnectionString,
    query_url: String,
    page_size: u32,
    retry_budget: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
    observer: Option<Arc<dyn RequestObserver>>,
    pacer: Pacer,
    token: StdMutex<Option<SasToken>>,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("connection", &self.inner.connection)
            .field("page_size", &self.inner.page_size)
            .field("retry_budget", &self.inner.retry_budget)
            .finish_non_exhaustive()
    }
}

/// One page of a query as the hub sent it.
pub(crate) struct RawPage {
    pub(crate) body: bytes::Bytes,
    pub(crate) continuation: Option<String>,
}

impl HubClient {
    /// A client of the connection string's hub. Refuses, before any connection, a host the
    /// outbound policy does not allow (see [`iothubgdr_outbound`]); every request then
    /// resolves the host through the policy, and no redirect is ever followed.
    pub fn new(connection: ConnectionString, options: ClientOptions) -> Result<Self, HubError> {
        let invalid = |reason: String| HubError::InvalidOptions { reason };
        let policy = OutboundPolicy::iot_hub()
            .allow(options.allowed_hosts.iter().cloned())
            .pin(options.resolve.iter().cloned());
        policy.check_host(connection.host_name())?;
        let mut builder = policy
            .client_builder()
            .use_rustls_tls()
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30));
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
        if options.page_size == 0 {
            return Err(invalid("the page size must be at least 1".to_owned()));
        }
        let query_url = format!(
            "https://{}/devices/query?api-version={API_VERSION}",
            connection.host_name()
        );
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                query_url,
                page_size: options.page_size,
                retry_budget: options.retry_budget,
                request_timeout: options.request_timeout,
                idle_timeout: options.idle_timeout,
                observer: options.observer,
                pacer: Pacer::new(options.queries_per_minute),
                token: StdMutex::new(None),
                connection,
            }),
        })
    }

    /// How long a request may keep failing before its failure is final.
    pub(crate) fn retry_budget(&self) -> Duration {
        self.inner.retry_budget
    }

    pub fn host_name(&self) -> &str {
        self.inner.connection.host_name()
    }

    /// For other service APIs of the hub (the jobs API): the HTTPS client, which keeps to
    /// the outbound policy.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// For other service APIs of the hub: the `Authorization` header (sensitive).
    pub(crate) fn authorization_header(&self) -> Result<HeaderValue, HubError> {
        self.authorization().map_err(|failure| failure.error)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// The number of device twins in the hub.
    pub async fn count_devices(&self) -> Result<u64, HubError> {
        let page = self
            .fetch_page("SELECT COUNT() AS numberOfDevices FROM devices", None)
            .await?;
        decode_device_count(&page.body).map_err(|e| HubError::Protocol {
            host: self.host_name().to_owned(),
            reason: format!("the device count could not be read: {e}"),
        })
    }

    /// Pages through the twins matching `query` (e.g. `SELECT * FROM devices`).
    pub fn query_devices(&self, query: &str) -> DevicePages {
        DevicePages::new(self.clone(), query, None)
    }

    /// Continues a query from a continuation token a previous [`DevicePages`] reported.
    pub fn resume_query_devices(&self, query: &str, continuation: Option<String>) -> DevicePages {
        DevicePages::new(self.clone(), query, continuation)
    }

    /// Fetches one page, retrying within the budget. Every attempt sends the same
    /// continuation token, so a retried page is the same page. Gives up as stalled when the
    /// idle timeout passes first.
    pub(crate) async fn fetch_page(
        &self,
        query: &str,
        continuation: Option<&str>,
    ) -> Result<RawPage, HubError> {
        let idle = self.inner.idle_timeout;
        match tokio::time::timeout(idle, self.fetch_page_with_retries(query, continuation)).await {
            Ok(answer) => answer,
            Err(_) => Err(HubError::Stalled {
                host: self.host_name().to_owned(),
                idle,
            }),
        }
    }

    async fn fetch_page_with_retries(
        &self,
        query: &str,
        continuation: Option<&str>,
    ) -> Result<RawPage, HubError> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.retry_budget;
        let mut attempt: u32 = 0;
        loop {
            inner.pacer.acquire().await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = inner
                .request_timeout
                .min(remaining.max(Duration::from_secs(1)));
            match self.attempt(query, continuation, timeout).await {
                Ok(page) => {
                    inner.pacer.on_success().await;
                    self.observe(RequestOutcome::Ok, false);
                    return Ok(page);
                }
                Err(failure) => {
                    if failure.outcome == RequestOutcome::Throttled {
                        inner.pacer.on_throttled(failure.retry_after).await;
                    }
                    let delay = failure
                        .retry_after
                        .unwrap_or_else(|| backoff_delay(attempt));
                    let will_retry = failure.retryable && Instant::now() + delay < deadline;
                    self.observe(failure.outcome, will_retry);
                    if !will_retry {
                        return Err(failure.error);
                    }
                    tracing::debug!(
                        host = %self.host_name(),
                        outcome = failure.outcome.as_str(),
                        delay_ms = delay.as_millis() as u64,
                        "retrying an IoT Hub query page"
                    );
                    tokio::time::sleep(delay).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    async fn attempt(
        &self,
        query: &str,
        continuation: Option<&str>,
        timeout: Duration,
    ) -> Result<RawPage, AttemptFailure> {
        let inner = &self.inner;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.authorization()?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-ms-max-item-count", HeaderValue::from(inner.page_size));
        if let Some(token) = continuation {
            let value = HeaderValue::from_str(token).map_err(|_| {
                self.protocol_failure("the continuation token is not a valid header value")
            })?;
            headers.insert("x-ms-continuation", value);
        }
        let body = serde_json::json!({ "query": query }).to_string();
        let response = inner
            .http
            .post(&inner.query_url)
            .headers(headers)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| self.network_failure(e))?;
        let status = response.status();
        if status.is_success() {
            let continuation = match response.headers().get("x-ms-continuation") {
                None => None,
                Some(value) => match value.to_str() {
                    Ok(text) if text.trim().is_empty() => None,
                    Ok(text) => Some(text.to_owned()),
                    Err(_) => {
                        return Err(self.protocol_failure(
                            "the continuation token is not a valid header value",
                        ))
                    }
                },
            };
            let body = self.read_capped(response, MAX_PAGE_BYTES).await?;
            self.check_body_is_json(&body)?;
            return Ok(RawPage { body, continuation });
        }
        if status.is_redirection() {
            // Neither the Location nor the body is read: both are the hub's words about
            // somewhere else.
            return Err(self.redirect_failure(status));
        }
        let retry_after = parse_retry_after(response.headers());
        let body = self
            .read_capped(response, ERROR_BODY_MAX_BYTES)
            .await
            .unwrap_or_default();
        let detail = error_detail(body);
        Err(self.status_failure(status, retry_after, detail))
    }

    /// The body, read chunk by chunk and abandoned as soon as it passes `limit` bytes, so a
    /// hostile hub cannot make the service hold more than one capped page.
    async fn read_capped(
        &self,
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<bytes::Bytes, AttemptFailure> {
        let too_large = || AttemptFailure {
            outcome: RequestOutcome::Other,
            retryable: false,
            retry_after: None,
            error: HubError::PageTooLarge {
                host: self.host_name().to_owned(),
                limit_mib: limit / (1024 * 1024),
            },
        };
        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_large());
        }
        let mut body = BytesMut::with_capacity(announced as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.network_failure(e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn observe(&self, outcome: RequestOutcome, will_retry: bool) {
        if let Some(observer) = &self.inner.observer {
            observer.on_response(outcome, will_retry);
        }
    }

    /// The `Authorization` header: a cached SAS token for the hub host, renewed before it
    /// expires. Marked sensitive so HTTP-level logging never prints it.
    fn authorization(&self) -> Result<HeaderValue, AttemptFailure> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut cached = match self.inner.token.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while holding the lock leaves at worst a stale token,
            // which the expiry check below replaces.
            Err(poisoned) => poisoned.into_inner(),
        };
        let fresh = cached
            .as_ref()
            .is_some_and(|token| token.expiry_unix_secs > now + TOKEN_RENEW_MARGIN_SECS);
        if !fresh {
            let expiry = now + TOKEN_TTL_SECS;
            let connection = &self.inner.connection;
            *cached = Some(SasToken {
                value: Zeroizing::new(generate_sas_token(
                    connection.host_name(),
                    connection.key(),
                    Some(connection.policy_name()),
                    expiry,
                )),
                expiry_unix_secs: expiry,
            });
        }
        let token = cached.as_ref().map(|t| t.value.as_str()).unwrap_or("");
        let mut value = HeaderValue::from_str(token)
            .map_err(|_| self.protocol_failure("the SAS token is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use reqwest::StatusCode;

    use super::*;

    const KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5YWJjZGVm";

    pub(crate) fn client() -> HubClient {
        let connection = ConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY_B64}"
        ))
        .unwrap();
        HubClient::new(connection, ClientOptions::default()).unwrap()
    }

    #[test]
    fn debug_and_errors_never_show_the_key_or_the_token() {
        let client = client();
        let header = client.authorization().ok().unwrap();
        let token = header.to_str().unwrap().to_owned();
        assert!(token.starts_with("SharedAccessSignature sr=myhub.azure-devices.net&sig="));
        let signature = token
            .split("sig=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert!(format!("{header:?}").contains("Sensitive"));

        let mut texts = vec![format!("{client:?}"), format!("{client:#?}")];
        texts.push(format!("{:?}", client.inner.token.lock().unwrap()));
        for code in [400u16, 401, 403, 404, 429, 500, 503] {
            let failure =
                client.status_failure(StatusCode::from_u16(code).unwrap(), None, "body".to_owned());
            texts.push(failure.error.to_string());
            texts.push(format!("{:?}", failure.error));
        }
        for text in texts {
            assert!(!text.contains(KEY_B64), "{text}");
            assert!(!text.contains(signature), "{text}");
            assert!(!text.contains("sig="), "{text}");
        }
    }

    #[test]
    fn token_is_reused_until_close_to_expiry() {
        let client = client();
        let first = client.authorization().ok().unwrap();
        let second = client.authorization().ok().unwrap();
        assert_eq!(first, second);
        client
            .inner
            .token
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .expiry_unix_secs = 0;
        client.authorization().ok().unwrap();
        let renewed_expiry = client
            .inner
            .token
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .expiry_unix_secs;
        assert!(renewed_expiry > TOKEN_RENEW_MARGIN_SECS);
    }

    #[test]
    fn bad_options_are_rejected() {
        let connection = ConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY_B64}"
        ))
        .unwrap();
        let options = ClientOptions {
            extra_root_ca_pem: Some(b"not a certificate".to_vec()),
            ..ClientOptions::default()
        };
        let err = HubClient::new(connection.clone(), options).unwrap_err();
        assert_eq!(err.kind(), crate::error::HubErrorKind::Other);
        let options = ClientOptions {
            page_size: 0,
            ..ClientOptions::default()
        };
        assert!(HubClient::new(connection, options).is_err());
    }
}
