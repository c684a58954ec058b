//! [`ApiClient`]: the iothubgdr API over HTTP, with typed answers and errors that say what
//! to do. Used by the command-line client and by `iothubgdr demo`.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::ids;
use crate::models::{
    Asset, AssetList, Location, LocationList, NewLocation, Operation, OperationList, RuntimeError,
    TokenResponse,
};
use crate::secret::SecretString;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest server message shown when an answer is not the runtimeError JSON.
const MAX_RAW_MESSAGE: usize = 300;

/// A client of one iothubgdr server with one bearer token.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    authorization: HeaderValue,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base.as_str())
            .field("authorization", &"[redacted]")
            .finish()
    }
}

/// The body of `POST /archivist/v2/iothubgdr`.
#[derive(Serialize)]
struct CreateImport<'a> {
    display_name: &'a str,
    secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arc_home_location_identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_blob_container_uri: Option<&'a str>,
}

#[derive(Deserialize)]
struct Empty {}

/// No redirect is followed: requests carry a bearer token, a client secret or a connection
/// string, and a redirect would hand them to wherever the answer points.
fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("iothubgdr-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Local(format!("cannot set up the HTTP client: {e}")))
}

/// The server's base URL; `http://host:port` or `https://...`, any path kept as a prefix.
fn parse_base_url(url: &str) -> Result<Url, ClientError> {
    let mut base = Url::parse(url.trim()).map_err(|e| {
        ClientError::InvalidInput(format!(
            "--url `{url}` is not a URL ({e}); give one like http://127.0.0.1:8080"
        ))
    })?;
    if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
        return Err(ClientError::InvalidInput(format!(
            "--url `{url}` must be an http:// or https:// URL with a host, like http://127.0.0.1:8080"
        )));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(ClientError::InvalidInput(format!(
            "--url `{url}` must not carry a query or fragment"
        )));
    }
    let trimmed = base.path().trim_end_matches('/').to_owned();
    base.set_path(&trimmed);
    Ok(base)
}

fn endpoint(base: &Url, path: &str) -> Result<Url, ClientError> {
    let joined = format!("{}{}", base.as_str().trim_end_matches('/'), path);
    Url::parse(&joined)
        .map_err(|e| ClientError::InvalidInput(format!("cannot build the URL {joined}: {e}")))
}

/// The message of a reqwest failure with its causes, for a transport error.
fn transport_cause(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unreachable(base: &Url, err: &reqwest::Error) -> ClientError {
    ClientError::Unreachable {
        url: base.as_str().trim_end_matches('/').to_owned(),
        cause: transport_cause(err),
    }
}

/// Whether `base` is plain HTTP to a host other than this machine: credentials sent there can
/// be read on the way.
fn is_plain_http_off_machine(base: &Url) -> bool {
    if base.scheme() != "http" {
        return false;
    }
    match base.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
        None => true,
    }
}

/// Warns (once per process) before credentials go over plain HTTP to another machine.
fn warn_if_plain_http(base: &Url) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if is_plain_http_off_machine(base) {
        WARNED.call_once(|| {
            eprintln!(
                "warning: sending credentials over plain HTTP to {}: anyone on the network path can read them; use an https:// --url",
                crate::safe_text::value(base.host_str().unwrap_or_default())
            );
        });
    }
}

/// Turns a non-success answer into the error that says what to do.
async fn error_from_response(response: reqwest::Response) -> ClientError {
    let status = response.status();
    if status.is_redirection() {
        return ClientError::Unexpected {
            status: status.as_u16(),
            message: "the server answered with a redirect, which this client never follows (it would carry credentials elsewhere); give the final address in --url".to_owned(),
        };
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<RuntimeError>(&text)
        .ok()
        .and_then(|e| e.message.filter(|m| !m.is_empty()).or(e.error))
        .unwrap_or_else(|| {
            let raw = text.trim();
            if raw.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                raw.chars().take(MAX_RAW_MESSAGE).collect()
            }
        });
    ClientError::from_status(status.as_u16(), message)
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Unexpected {
            status: status.as_u16(),
            message: format!("the answer broke off: {}", transport_cause(&e)),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
        status: status.as_u16(),
        message: format!("the answer is not what this client expects: {e}"),
    })
}

impl ApiClient {
    /// A client of the server at `url` (like `http://127.0.0.1:8080`) sending `token` as
    /// `Authorization: Bearer <token>`.
    pub fn new(url: &str, token: SecretString) -> Result<Self, ClientError> {
        let base = parse_base_url(url)?;
        warn_if_plain_http(&base);
        let header = Zeroizing::new(format!("Bearer {}", token.expose()));
        let mut authorization = HeaderValue::from_str(&header).map_err(|_| {
            ClientError::Credentials(
                "the bearer token holds characters that cannot be sent in a header".to_owned(),
            )
        })?;
        authorization.set_sensitive(true);
        Ok(Self {
            http: http_client()?,
            base,
            authorization,
        })
    }

    /// Exchanges an app registration's client id and secret for a bearer token at
    /// `POST /archivist/iam/v1/appidp/token`.
    pub async fn token_from_client_credentials(
        url: &str,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<SecretString, ClientError> {
        let base = parse_base_url(url)?;
        warn_if_plain_http(&base);
        let response = http_client()?
            .post(endpoint(&base, "/archivist/iam/v1/appidp/token")?)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose()),
            ])
            .send()
            .await
            .map_err(|e| unreachable(&base, &e))?;
        if !response.status().is_success() {
            return Err(match error_from_response(response).await {
                ClientError::Unauthorized { status, message }
                | ClientError::Rejected { status, message } => ClientError::Credentials(format!(
                    "the token endpoint refused client id `{client_id}` and its secret ({status}): {message}. Check --client-id and the secret (--client-secret-file or IOTHUBGDR_CLIENT_SECRET)."
                )),
                other => other,
            });
        }
        let token: TokenResponse = decode(response).await?;
        let token = SecretString::new(token.access_token);
        if token.is_empty() {
            return Err(ClientError::Unexpected {
                status: 200,
                message: "the token endpoint answered an empty access_token".to_owned(),
            });
        }
        Ok(token)
    }

    /// Both steps: a token for the client credentials, then a client using it.
    pub async fn from_client_credentials(
        url: &str,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<Self, ClientError> {
        let token = Self::token_from_client_credentials(url, client_id, client_secret).await?;
        Self::new(url, token)
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&dyn erased::JsonBody>,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .request(method, endpoint(&self.base, path)?)
            .header(AUTHORIZATION, self.authorization.clone());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            let bytes = Zeroizing::new(
                body.to_json()
                    .map_err(|e| ClientError::Local(format!("cannot encode the request: {e}")))?,
            );
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.to_vec());
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        if response.status() == StatusCode::OK || response.status().is_success() {
            decode(response).await
        } else {
            Err(error_from_response(response).await)
        }
    }

    /// Follows `next_page_token` to the end. The first request carries `query`; later ones
    /// carry the token alone (spec/README.md note 7).
    async fn list_all<P, T>(
        &self,
        path: &str,
        query: &[(String, String)],
        split: impl Fn(P) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, ClientError>
    where
        P: DeserializeOwned,
    {
        let mut items = Vec::new();
        let mut page: P = self.call(Method::GET, path, query, None).await?;
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            let (mut batch, next) = split(page);
            items.append(&mut batch);
            let Some(token) = next.filter(|t| !t.is_empty()) else {
                return Ok(items);
            };
            if !seen_tokens.insert(token.clone()) {
                return Err(ClientError::Unexpected {
                    status: 200,
                    message: "the server repeated a page token; stopping instead of looping"
                        .to_owned(),
                });
            }
            page = self
                .call(Method::GET, path, &[("page_token".to_owned(), token)], None)
                .await?;
        }
    }

    // ---- imports --------------------------------------------------------------------

    /// Starts an import of every device of the hub whose service connection string is
    /// `secret`, into the location `location` (`locations/<uuid>` or `<uuid>`) if given.
    pub async fn start_import(
        &self,
        display_name: &str,
        secret: &SecretString,
        location: Option<&str>,
        container: Option<&SecretString>,
    ) -> Result<Operation, ClientError> {
        let location = location
            .map(ids::location_identity)
            .transpose()
            .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        let body = CreateImport {
            display_name,
            secret: secret.expose(),
            arc_home_location_identity: location.as_deref(),
            output_blob_container_uri: container.map(SecretString::expose),
        };
        self.call(Method::POST, "/archivist/v2/iothubgdr", &[], Some(&body))
            .await
    }

    /// One import, by `iothubgdr/<uuid>` or `<uuid>`.
    pub async fn get_import(&self, id: &str) -> Result<Operation, ClientError> {
        let path = import_path(id, "")?;
        self.call(Method::GET, &path, &[], None).await
    }

    /// Cancels an import; one that is already done comes back unchanged.
    pub async fn cancel_import(&self, id: &str) -> Result<Operation, ClientError> {
        let path = import_path(id, ":cancel")?;
        self.call(Method::POST, &path, &[], None).await
    }

    /// Deletes an import from the list (a running job is not stopped: cancel it first).
    pub async fn delete_import(&self, id: &str) -> Result<(), ClientError> {
        let path = import_path(id, "")?;
        let _: Empty = self.call(Method::DELETE, &path, &[], None).await?;
        Ok(())
    }

    /// Every import of the caller's tenant, newest first.
    pub async fn list_imports(&self) -> Result<Vec<Operation>, ClientError> {
        self.list_all("/archivist/v2/iothubgdr", &[], |p: OperationList| {
            (p.operations, p.next_page_token)
        })
        .await
    }

    // ---- locations ------------------------------------------------------------------

    pub async fn create_location(&self, location: &NewLocation) -> Result<Location, ClientError> {
        self.call(Method::POST, "/archivist/v2/locations", &[], Some(location))
            .await
    }

    pub async fn list_locations(&self) -> Result<Vec<Location>, ClientError> {
        self.list_all("/archivist/v2/locations", &[], |p: LocationList| {
            (p.locations, p.next_page_token)
        })
        .await
    }

    // ---- assets ---------------------------------------------------------------------

    /// Every asset whose string attributes match all `filters`; each is a pair like
    /// (`attributes.arc_display_type`, `IoT Edge device`).
    pub async fn list_assets(
        &self,
        filters: &[(String, String)],
    ) -> Result<Vec<Asset>, ClientError> {
        self.list_all("/archivist/v2/assets", filters, |p: AssetList| {
            (p.assets, p.next_page_token)
        })
        .await
    }
}

fn import_path(id: &str, suffix: &str) -> Result<String, ClientError> {
    let uuid: Uuid = ids::import_uuid(id).map_err(|e| ClientError::InvalidInput(e.to_string()))?;
    Ok(format!("/archivist/v2/iothubgdr/{uuid}{suffix}"))
}

/// A request body of any serialisable type, behind a trait object so `call` is not generic
/// over it (one copy of the request code in the binary).
mod erased {
    pub trait JsonBody: Send + Sync {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }

    impl<T: serde::Serialize + Send + Sync> JsonBody for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_flagged_only_off_this_machine() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://LOCALHOST.",
            "http://api.localhost",
            "https://iothubgdr.example.com",
            "https://10.0.0.5",
        ] {
            assert!(
                !is_plain_http_off_machine(&parse_base_url(url).unwrap()),
                "{url}"
            );
        }
        for url in [
            "http://iothubgdr.example.com",
            "http://10.0.0.5:8080",
            "http://[2001:db8::1]",
            "http://localhost.example.com",
        ] {
            assert!(
                is_plain_http_off_machine(&parse_base_url(url).unwrap()),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed_with_credentials() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // The redirect's target counts the connections it receives.
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_port = target.local_addr().unwrap().port();
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = reached.clone();
        tokio::spawn(async move {
            if target.accept().await.is_ok() {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = server.accept().await {
                let mut buffer = vec![0u8; 65536];
                let _ = socket.read(&mut buffer).await;
                let answer = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{target_port}/steal\r\nContent-Length: 0\r\n\r\n");
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let url = format!("http://127.0.0.1:{port}");
        let secret = SecretString::new("client-secret-value".to_owned());
        let err = ApiClient::token_from_client_credentials(&url, "id", &secret)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("redirect"), "{err}");
        assert!(!err.to_string().contains("steal"), "{err}");
        let client = ApiClient::new(&url, SecretString::new("token".to_owned())).unwrap();
        let err = client
            .get_import("iothubgdr/00000000-0000-0000-0000-000000000001")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("redirect"), "{err}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !reached.load(std::sync::atomic::Ordering::SeqCst),
            "the redirect was followed"
        );
    }

    #[test]
    fn base_urls_are_checked_and_normalised() {
        let base = parse_base_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            endpoint(&base, "/archivist/v2/iothubgdr").unwrap().as_str(),
            "http://127.0.0.1:8080/archivist/v2/iothubgdr"
        );
        let prefixed = parse_base_url("https://example.test/api/").unwrap();
        assert_eq!(
            endpoint(&prefixed, "/archivist/v2/locations")
                .unwrap()
                .as_str(),
            "https://example.test/api/archivist/v2/locations"
        );
        for bad in ["127.0.0.1:8080", "ftp://h/", "http://h/?x=1", "not a url"] {
            let err = parse_base_url(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn import_paths_take_both_identity_forms() {
        let id = "08838336-c357-460d-902a-3aba9528dd22";
        assert_eq!(
            import_path(&format!("iothubgdr/{id}"), ":cancel").unwrap(),
            format!("/archivist/v2/iothubgdr/{id}:cancel")
        );
        assert_eq!(
            import_path(id, "").unwrap(),
            format!("/archivist/v2/iothubgdr/{id}")
        );
        assert_eq!(import_path("../x", "").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn debug_of_a_client_hides_the_token() {
        let client = ApiClient::new(
            "http://127.0.0.1:9",
            SecretString::new("eyJhbGciOiJIUzI1NiJ9.secret-token-body".to_owned()),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("secret-token-body"), "{debug}");
        assert!(debug.contains("127.0.0.1:9"));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_without_echo() {
        let err = ApiClient::new(
            "http://127.0.0.1:9",
            SecretString::new("abc\ndef-secret".to_owned()),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(!err.to_string().contains("def-secret"));
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_unreachable() {
        // Bind then drop a listener to get a loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ApiClient::new(
            &format!("http://127.0.0.1:{port}"),
            SecretString::new("t".to_owned()),
        )
        .unwrap();
        let err = client.list_imports().await.unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("--url"), "{err}");
    }
}
