//! Hostile hubs against the real server binary: the emulator's hostile modes (a hub that
//! pages forever, lies about its count, sends a 300 MB page, redirects to an internal
//! listener, sends twins with 1 MB tags) and hosts outside the allowed domains. For each:
//! the import ends with a clear error (or refuses the bad twins), an internal listener gets
//! no connection, the server's peak memory stays under 200 MB, nothing over IoT Hub's limits
//! is stored, and the secret appears in no response, log line or database file.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use iothub_emulator::{EmulatorConfig, Faults, Hostility, RunningEmulator};
use serde_json::{json, Value};

const MAX_SERVER_PEAK_MB: u64 = 200;
/// IoT Hub's limit on a twin's tags, which bounds every imported attribute value.
const MAX_TAGS_BYTES: usize = 8 * 1024;

async fn hostile_hub(devices: u64, hostility: Hostility) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        faults: Faults {
            hostility,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

/// A server that reaches `hub` under its real name (CA file + pin), with `extra` flags.
fn server_for(hub: &RunningEmulator, extra: &[&str]) -> (tempfile::TempDir, TestServer) {
    let files = tempfile::tempdir().expect("dir");
    let ca = files.path().join("emulator-ca.pem");
    std::fs::write(&ca, hub.ca_cert_pem()).expect("write CA");
    let mut args = vec![
        "--iothub-ca-file".to_owned(),
        ca.display().to_string(),
        "--iothub-resolve".to_owned(),
        format!("{}={}", hub.host_name(), hub.addr()),
        // Generous for a loaded machine: no hostile mode here is retried.
        "--iothub-retry-budget".to_owned(),
        "60s".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (files, TestServer::start_with(&args))
}

/// A plain TCP listener on loopback that counts the connections it accepts: a service
/// inside the network that no hub may point the server at.
struct InternalListener {
    port: u16,
    accepted: Arc<AtomicU64>,
}

impl InternalListener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { port, accepted }
    }

    fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

struct Tenant {
    url: String,
    token: String,
    http: reqwest::Client,
    answers: std::sync::Mutex<Vec<String>>,
}

impl Tenant {
    async fn new(server: &TestServer) -> Self {
        Self {
            url: server.url().to_owned(),
            token: server.tenant_token("acme").await,
            http: server.client(),
            answers: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 200);
        let text = answer.text().await.expect("body");
        self.answers.lock().unwrap().push(text.clone());
        serde_json::from_str(&text).expect("json")
    }

    /// Starts an import and waits until it is done; returns the final operation.
    async fn import(&self, secret: &str) -> Value {
        let answer = self
            .http
            .post(format!("{}/archivist/v2/iothubgdr", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"display_name": "hostile", "secret": secret}))
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 200);
        let text = answer.text().await.expect("body");
        self.answers.lock().unwrap().push(text.clone());
        let operation: Value = serde_json::from_str(&text).expect("json");
        let path = format!(
            "/archivist/v2/{}",
            operation["identity"].as_str().expect("id")
        );
        let started = Instant::now();
        loop {
            let now = self.get(&path).await;
            if now["done"] == json!(true) {
                return now;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "import never ended: {now}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every asset of this tenant imported from `host`.
    async fn assets_of(&self, host: &str) -> Vec<Value> {
        let mut assets = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .get(&format!(
                    "/archivist/v2/assets?page_size=100&attributes.iothub_hub={host}{page_token}"
                ))
                .await;
            assets.extend(page["assets"].as_array().expect("assets").iter().cloned());
            match page["next_page_token"].as_str() {
                Some(token) if !token.is_empty() => page_token = format!("&page_token={token}"),
                _ => return assets,
            }
        }
    }

    /// The secret and its key appear in no answer, log line or file of the server.
    fn assert_no_leak(&self, server: &TestServer, secret: &str) {
        let key = secret
            .split(';')
            .find_map(|part| part.strip_prefix("SharedAccessKey="))
            .expect("key");
        let answers = self.answers.lock().unwrap().join("\n");
        let logs = server.logs();
        for needle in [secret, key] {
            assert!(!answers.contains(needle), "an answer holds the secret");
            assert!(!logs.contains(needle), "the logs hold the secret");
            for entry in std::fs::read_dir(server.dir()).expect("dir") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    let bytes = std::fs::read(&path).expect("read");
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                        "{} holds the secret",
                        path.display()
                    );
                }
            }
        }
    }
}

/// The server's peak resident memory (VmHWM) in MB.
fn peak_memory_mb(server: &TestServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024
}

fn error_message(operation: &Value) -> &str {
    operation["error"]["error_message"]
        .as_str()
        .unwrap_or_else(|| panic!("the import did not fail: {operation}"))
}

fn assert_bounded(server: &TestServer) {
    let peak = peak_memory_mb(server);
    assert!(peak < MAX_SERVER_PEAK_MB, "server peak memory {peak} MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_repeats_its_continuation_token_ends_the_import() {
    let hub = hostile_hub(500, Hostility::RepeatedContinuation).await;
    let (_files, server) = server_for(&hub, &[]);
    let tenant = Tenant::new(&server).await;
    let secret = hub.iothub_connection_string();
    let operation = tenant.import(&secret).await;
    let message = error_message(&operation);
    assert!(message.contains("same continuation token"), "{message}");
    // The first page was real; the loop was caught on the second.
    assert!(tenant.assets_of(&hub.host_name()).await.len() <= 100);
    assert!(hub.stats().queries_served <= 3, "{:?}", hub.stats());
    assert_bounded(&server);
    tenant.assert_no_leak(&server, &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_lies_about_its_count_is_not_read_far_past_it() {
    let hub = hostile_hub(20_000, Hostility::ReportedCount(5)).await;
    let (_files, server) = server_for(&hub, &[]);
    let tenant = Tenant::new(&server).await;
    let secret = hub.iothub_connection_string();
    let operation = tenant.import(&secret).await;
    let message = error_message(&operation);
    assert!(message.contains("past the 5 it reported"), "{message}");
    assert_eq!(operation["error"]["number_devices_total"], json!(5));
    // At most twice the count plus ten pages are read (and so written).
    let limit = iothub_client::overshoot_limit(5);
    let assets = tenant.assets_of(&hub.host_name()).await.len() as u64;
    assert!(assets <= limit, "{assets} assets");
    assert!(hub.stats().twins_served <= limit + 100, "{:?}", hub.stats());
    assert_bounded(&server);
    tenant.assert_no_leak(&server, &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_page_is_cut_off_while_it_streams() {
    let hub = hostile_hub(10, Hostility::HugePage { bytes: 300 << 20 }).await;
    let (_files, server) = server_for(&hub, &[]);
    let tenant = Tenant::new(&server).await;
    let secret = hub.iothub_connection_string();
    let operation = tenant.import(&secret).await;
    let message = error_message(&operation);
    assert!(message.contains("larger than 32 MiB"), "{message}");
    assert!(tenant.assets_of(&hub.host_name()).await.is_empty());
    assert_bounded(&server);
    tenant.assert_no_leak(&server, &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_an_internal_listener_is_never_followed() {
    let internal = InternalListener::start();
    let location = format!("https://127.0.0.1:{}/internal", internal.port);
    let hub = hostile_hub(
        10,
        Hostility::Redirect {
            location: location.clone(),
        },
    )
    .await;
    let (_files, server) = server_for(&hub, &[]);
    let tenant = Tenant::new(&server).await;
    let secret = hub.iothub_connection_string();
    let operation = tenant.import(&secret).await;
    let message = error_message(&operation);
    assert!(message.contains("redirect (HTTP 307)"), "{message}");
    assert!(
        !message.contains("127.0.0.1") && !message.contains("internal"),
        "{message}"
    );
    assert!(!server.logs().contains(&location));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        internal.connections(),
        0,
        "the internal listener was reached"
    );
    assert_bounded(&server);
    tenant.assert_no_leak(&server, &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twins_over_iot_hub_limits_are_refused_counted_and_logged_safely() {
    // Every 25th twin has a 1 MB tag, and the twin after it a device id with terminal
    // escapes, a newline and a bidi override, 200 characters too long.
    let hub = hostile_hub(
        1_000,
        Hostility::OversizedTwins {
            every: 25,
            tag_bytes: 1 << 20,
        },
    )
    .await;
    let (_files, server) = server_for(&hub, &[]);
    let tenant = Tenant::new(&server).await;
    let secret = hub.iothub_connection_string();
    let operation = tenant.import(&secret).await;
    let result = &operation["result"];
    assert_eq!(result["status"], "STATUS_FINISHED", "{operation}");
    assert_eq!(result["number_devices_total"], json!(1_000));
    assert_eq!(result["number_devices_refused"], json!(80));
    assert_eq!(result["number_assets_imported"], json!(920));

    let assets = tenant.assets_of(&hub.host_name()).await;
    assert_eq!(assets.len(), 920);
    for asset in &assets {
        let attributes = asset["attributes"].as_object().expect("attributes");
        for (name, value) in attributes {
            let text = value.as_str().unwrap_or_default();
            assert!(
                text.len() <= MAX_TAGS_BYTES,
                "{name} is {} bytes",
                text.len()
            );
            assert!(
                !text.chars().any(char::is_control),
                "{name} has control characters"
            );
        }
    }
    // The database holds no 1 MB tag (40 of them would be 40 MB).
    let database_bytes: u64 = std::fs::read_dir(server.dir())
        .expect("dir")
        .map(|entry| entry.expect("entry").metadata().expect("meta").len())
        .sum();
    assert!(
        database_bytes < 20 << 20,
        "database is {database_bytes} bytes"
    );

    let logs = server.logs();
    assert!(logs.contains("twin refused"), "refused ids are logged");
    assert!(
        !logs.contains('\u{1b}') && !logs.contains('\u{202e}'),
        "raw hub text in the logs"
    );
    assert_bounded(&server);
    tenant.assert_no_leak(&server, &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_outside_the_rules_are_refused_before_any_connection() {
    let internal = InternalListener::start();
    let hub = hostile_hub(10, Hostility::None).await;
    let pinned_elsewhere = format!("hub.example.internal=127.0.0.1:{}", internal.port);
    // `localhost` is allowed by pattern here, so only the address rule stands in its way.
    let (_files, server) = server_for(
        &hub,
        &[
            "--iothub-resolve",
            &pinned_elsewhere,
            "--iothub-allowed-host",
            "localhost",
        ],
    );
    let tenant = Tenant::new(&server).await;
    let key = "c2VjcmV0LWtleS1mb3ItaG9zdGlsZS10ZXN0cw==";
    let cases = [
        ("evil.example.com", "is not allowed"),
        ("127.0.0.1", "not an IP address"),
        ("hub.azure-devices.net.evil.com", "is not allowed"),
        // A pin lifts the address rule only, never the domain rule.
        ("hub.example.internal", "is not allowed"),
        ("localhost", "resolves to a loopback address"),
    ];
    for (host, why) in cases {
        let secret =
            format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={key}");
        let operation = tenant.import(&secret).await;
        let message = error_message(&operation);
        assert!(message.contains(why), "{host}: {message}");
        tenant.assert_no_leak(&server, &secret);
    }
    // The Event Hub-compatible form of another cloud maps to that cloud's registry domain;
    // one of no known cloud is refused as an invalid secret.
    let secret = format!("Endpoint=sb://ns.servicebus.example.com/;SharedAccessKeyName=iothubowner;SharedAccessKey={key};EntityPath=hub");
    let operation = tenant.import(&secret).await;
    assert_eq!(error_message(&operation), "invalid secret provided");
    tenant.assert_no_leak(&server, &secret);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        internal.connections(),
        0,
        "the internal listener was reached"
    );
    assert_eq!(hub.stats().requests, 0, "the emulator was reached");
    assert_bounded(&server);
}
