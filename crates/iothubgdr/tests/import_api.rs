//! `/archivist/v2/iothubgdr` end to end: the real server binary imports from the real IoT
//! Hub emulator over TLS under the hub's own host name. Every test asserts exact counts,
//! and every response, log line and database byte is checked for the secrets used.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};
use reqwest::Method;
use serde_json::{json, Value};

/// Secrets a test used, and everything the server answered, for the final leak check.
#[derive(Clone, Default)]
struct Seen {
    secrets: Arc<Mutex<Vec<String>>>,
    responses: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn secret(&self, connection_string: &str) {
        let mut secrets = self.secrets.lock().unwrap();
        secrets.push(connection_string.to_owned());
        // The key alone must not leak either.
        for part in connection_string.split(';') {
            if let Some(key) = part.strip_prefix("SharedAccessKey=") {
                secrets.push(key.to_owned());
            }
        }
    }

    /// No secret in any response, in the logs, or in any file under `dirs` (the SQLite
    /// database with its WAL).
    fn assert_no_leak(&self, logs: &str, dirs: &[&std::path::Path], databases: &[&str]) {
        let secrets = self.secrets.lock().unwrap();
        assert!(!secrets.is_empty());
        let responses = self.responses.lock().unwrap().join("\n");
        let mut files = Vec::new();
        for dir in dirs {
            for entry in std::fs::read_dir(dir).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    files.push((path.clone(), std::fs::read(&path).expect("read file")));
                }
            }
        }
        for database in databases {
            files.extend(common::database_contents(database));
        }
        assert!(files.iter().any(|(path, _)| {
            let path = path.to_string_lossy();
            path.ends_with(".db") || path.starts_with("postgres table")
        }));
        for secret in secrets.iter() {
            assert!(
                !responses.contains(secret.as_str()),
                "a response holds a secret"
            );
            assert!(!logs.contains(secret.as_str()), "the logs hold a secret");
            for (path, bytes) in &files {
                let found = bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes());
                assert!(!found, "{} holds a secret", path.display());
            }
        }
    }
}

struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
    seen: Seen,
}

impl Api {
    async fn new(server: &TestServer, tenant: &str, seen: &Seen) -> Self {
        Self {
            url: server.url().to_owned(),
            token: server.tenant_token(tenant).await,
            http: server.client(),
            seen: seen.clone(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("request");
        let status = answer.status().as_u16();
        let text = answer.text().await.expect("body");
        self.seen.responses.lock().unwrap().push(text.clone());
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, json)
    }

    async fn start_import(&self, secret: &str, location: Option<&str>) -> Value {
        self.seen.secret(secret);
        let mut body = json!({"display_name": "RKVST", "secret": secret});
        if let Some(location) = location {
            body["arc_home_location_identity"] = json!(location);
        }
        let (status, operation) = self
            .call(Method::POST, "/archivist/v2/iothubgdr", Some(body))
            .await;
        assert_eq!(status, 200, "{operation}");
        operation
    }

    async fn get(&self, operation: &Value) -> (u16, Value) {
        self.call(
            Method::GET,
            &format!("/archivist/v2/{}", identity(operation)),
            None,
        )
        .await
    }

    /// Waits until the import has written its first page, and returns it then.
    async fn wait_first_page(&self, operation: &Value) -> Value {
        let started = Instant::now();
        loop {
            let (_, now) = self.get(operation).await;
            if imported(&now) > 0 {
                return now;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no page written: {now}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_done(&self, operation: &Value) -> Value {
        let started = Instant::now();
        loop {
            let (status, now) = self.get(operation).await;
            assert_eq!(status, 200, "{now}");
            if now["done"] == json!(true) {
                return now;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "import never finished: {now}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Assets of this tenant imported from `host` (X-Total-Count of the filtered list).
    async fn assets_of(&self, host: &str) -> u64 {
        self.count_assets(&format!("&attributes.iothub_hub={host}"))
            .await
    }

    /// Every asset of this tenant, whichever hub it came from.
    async fn assets_of_any_hub(&self) -> u64 {
        self.count_assets("").await
    }

    async fn count_assets(&self, filter: &str) -> u64 {
        let answer = self
            .http
            .get(format!(
                "{}/archivist/v2/assets?page_size=1{filter}",
                self.url
            ))
            .bearer_auth(&self.token)
            .header("X-Request-Total-Count", "true")
            .send()
            .await
            .expect("assets");
        assert_eq!(answer.status(), 200);
        answer.headers()["x-total-count"]
            .to_str()
            .expect("header")
            .parse()
            .expect("number")
    }
}

fn identity(operation: &Value) -> String {
    operation["identity"].as_str().expect("identity").to_owned()
}

fn imported(operation: &Value) -> u64 {
    let part = if operation.get("error").is_some() {
        "error"
    } else {
        "result"
    };
    operation[part]["number_assets_imported"]
        .as_u64()
        .expect("count")
}

/// A Prometheus/OpenMetrics text exposition, parsed.
struct Exposition {
    /// The name of every series as a client queries it: counters with `_total`, histograms
    /// by their family name.
    names: std::collections::BTreeSet<String>,
    /// Every sample line: `name{labels}` → value.
    samples: std::collections::BTreeMap<String, f64>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut names = std::collections::BTreeSet::new();
        let mut families = Vec::new();
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let mut parts = declared.split(' ');
                let family = parts.next().expect("family").to_owned();
                let kind = parts.next().expect("type");
                let name = match kind {
                    "counter" => format!("{family}_total"),
                    _ => family.clone(),
                };
                names.insert(name);
                families.push((family, kind.to_owned()));
            } else if !line.starts_with('#') && !line.is_empty() {
                let (series, value) = line.rsplit_once(' ').expect("sample line");
                let name = series.split('{').next().expect("name");
                assert!(
                    families.iter().any(|(family, kind)| match kind.as_str() {
                        "counter" => name == format!("{family}_total") || name == format!("{family}_created"),
                        "histogram" => ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|suffix| name == format!("{family}{suffix}")),
                        _ => name == family,
                    }),
                    "sample {line:?} belongs to no declared metric"
                );
                samples.insert(series.to_owned(), value.parse().expect("sample value"));
            }
        }
        Self { names, samples }
    }

    fn value(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }
}

/// The metric names the README's "Operating it" section lists for `GET /metrics`.
fn readme_metric_names() -> std::collections::BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("read README.md");
    let start = readme
        .find("- `GET /metrics`")
        .expect("the README's /metrics item");
    let item = &readme[start..];
    // The item runs until the next bullet.
    let item = &item[..item[2..].find("\n- ").map_or(item.len(), |end| end + 2)];
    let names: std::collections::BTreeSet<String> = item
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| code.starts_with("iothubgdr_"))
        .map(|code| code.split('{').next().expect("name").to_owned())
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    names
}

async fn emulator(devices: u64, faults: Faults) -> RunningEmulator {
    named_emulator("emulated-hub", devices, faults).await
}

/// An emulator whose host is `<hub_name>.azure-devices.net`: tests that share a database
/// give each hub its own name so each counts only its own assets.
async fn named_emulator(hub_name: &str, devices: u64, faults: Faults) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        hub_name: hub_name.to_owned(),
        devices,
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

/// An emulator whose every query takes `latency`, so an import can be seen mid-way.
async fn slow_emulator(devices: u64, latency: Duration) -> RunningEmulator {
    emulator(
        devices,
        Faults {
            latency,
            ..Faults::default()
        },
    )
    .await
}

/// The `serve` flags that point the server at `hub` (CA file written under `dir`).
fn hub_args(hub: &RunningEmulator, dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let ca = dir.join("emulator-ca.pem");
    std::fs::write(&ca, hub.ca_cert_pem()).expect("write CA");
    let mut args = vec![
        "--iothub-ca-file".to_owned(),
        ca.display().to_string(),
        "--iothub-resolve".to_owned(),
        format!("{}={}", hub.host_name(), hub.addr()),
    ];
    if !extra.contains(&"--iothub-retry-budget") {
        args.extend(["--iothub-retry-budget".to_owned(), "10s".to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn start_server(hub: &RunningEmulator, extra: &[&str]) -> (tempfile::TempDir, TestServer) {
    let files = tempfile::tempdir().expect("dir");
    let args = hub_args(hub, files.path(), extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (files, TestServer::start_with(&args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_every_device_exactly_once_in_both_connection_string_forms() {
    let seen = Seen::default();
    for devices in [0u64, 1, 2_500] {
        let hub = emulator(devices, Faults::default()).await;
        let (_files, mut server) = start_server(&hub, &[]);
        let api = Api::new(&server, "acme", &seen).await;
        let (status, location) = api
            .call(
                Method::POST,
                "/archivist/v2/locations",
                Some(json!({"display_name": "Plant 1"})),
            )
            .await;
        assert_eq!(status, 200);
        let location = location["identity"].as_str().expect("identity").to_owned();

        let first = api
            .start_import(&hub.iothub_connection_string(), Some(&location))
            .await;
        assert_eq!(first["done"], json!(false));
        assert_eq!(first["result"]["status"], "STATUS_PENDING");
        assert_eq!(first["result"]["number_assets_imported"], json!(0));
        assert_eq!(
            first["result"]["arc_home_location_identity"],
            json!(location)
        );
        assert_eq!(first["timestamp_finished"], Value::Null);
        assert!(identity(&first).starts_with("iothubgdr/"));
        let first = api.wait_done(&first).await;
        assert_eq!(first["result"]["status"], "STATUS_FINISHED", "{first}");
        assert_eq!(imported(&first), devices);
        assert_eq!(first["result"]["number_devices_total"], json!(devices));
        assert!(first["timestamp_finished"]
            .as_str()
            .expect("finished")
            .ends_with('Z'));
        assert_eq!(api.assets_of(&hub.host_name()).await, devices);

        // The Event Hub-compatible form names the same hub: the second import updates the
        // same assets and counts every device again.
        let second = api
            .start_import(&hub.eventhub_connection_string(), None)
            .await;
        let second = api.wait_done(&second).await;
        assert_eq!(second["result"]["status"], "STATUS_FINISHED", "{second}");
        assert_eq!(imported(&second), devices);
        assert_eq!(api.assets_of(&hub.host_name()).await, devices);

        if devices > 0 {
            let (_, assets) = api
                .call(
                    Method::GET,
                    &format!(
                        "/archivist/v2/assets?attributes.iothub_hub={}&page_size=1",
                        hub.host_name()
                    ),
                    None,
                )
                .await;
            let asset = &assets["assets"][0];
            let attributes = &asset["attributes"];
            assert!(asset["identity"]
                .as_str()
                .expect("identity")
                .starts_with("assets/"));
            assert!(attributes["arc_display_name"].is_string());
            assert!(["IoT Edge Device", "IoT Device"]
                .contains(&attributes["arc_display_type"].as_str().expect("type")));
            assert_eq!(
                attributes["arc_display_name"],
                attributes["iothub_device_id"]
            );
            // The second import named no location: the asset's facts are the latest import's.
            // A fact that went is recorded as "" (an event cannot delete an attribute), which
            // the `!=*` filter reads as not set.
            assert_eq!(attributes["arc_home_location_identity"], json!(""));
        }
        let (_, list) = api.call(Method::GET, "/archivist/v2/iothubgdr", None).await;
        let operations = list["operations"].as_array().expect("operations");
        assert_eq!(operations.len(), 2);
        assert_eq!(
            operations[0]["identity"], second["identity"],
            "newest first"
        );
        seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
        hub.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_grows_mid_import_and_always_equals_the_assets_written() {
    let seen = Seen::default();
    let hub = slow_emulator(2_500, Duration::from_millis(60)).await;
    let (_files, mut server) = start_server(&hub, &[]);
    let api = Api::new(&server, "acme", &seen).await;
    let operation = api
        .start_import(&hub.iothub_connection_string(), None)
        .await;
    let mut seen_counts = Vec::new();
    loop {
        let (_, now) = api.get(&operation).await;
        let count = imported(&now);
        let assets = api.assets_of(&hub.host_name()).await;
        // The count is written with its page: it can never run ahead of the assets.
        assert!(count <= assets, "count {count} ahead of assets {assets}");
        seen_counts.push(count);
        if now["done"] == json!(true) {
            assert_eq!(count, 2_500);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen_counts.iter().any(|&c| c > 0 && c < 2_500),
        "no progress seen mid-import: {seen_counts:?}"
    );
    assert!(
        seen_counts.windows(2).all(|w| w[0] <= w[1]),
        "{seen_counts:?}"
    );
    let exposition = server
        .client()
        .get(server.url_of("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let metrics = Exposition::parse(&exposition);
    assert_eq!(
        metrics.names,
        readme_metric_names(),
        "metric names served vs. listed in README.md"
    );
    assert_eq!(
        metrics.value("iothubgdr_devices_imported_total"),
        Some(2_500.0),
        "{exposition}"
    );
    assert_eq!(
        metrics.value(r#"iothubgdr_imports_completed_total{state="finished"}"#),
        Some(1.0),
        "{exposition}"
    );
    // One count query and 25 pages of 100, none retried.
    assert_eq!(
        metrics.value(r#"iothubgdr_iothub_requests_total{outcome="ok",retried="false"}"#),
        Some(26.0),
        "{exposition}"
    );
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_import_stops_within_a_page_and_keeps_what_was_written() {
    let seen = Seen::default();
    let hub = slow_emulator(2_500, Duration::from_millis(80)).await;
    let (_files, mut server) = start_server(&hub, &[]);
    let api = Api::new(&server, "acme", &seen).await;
    let operation = api
        .start_import(&hub.iothub_connection_string(), None)
        .await;
    api.wait_first_page(&operation).await;
    let path = format!("/archivist/v2/{}:cancel", identity(&operation));
    let (status, cancelled) = api.call(Method::POST, &path, None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["result"]["status"], "STATUS_CANCELLED");
    assert_eq!(cancelled["done"], json!(true));
    assert!(cancelled["timestamp_finished"].is_string());
    // Nothing more is written after the cancel.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (_, later) = api.get(&operation).await;
    let count = imported(&later);
    assert_eq!(later["result"]["status"], "STATUS_CANCELLED");
    assert!(count > 0 && count < 2_500, "{later}");
    assert_eq!(count, imported(&cancelled));
    assert_eq!(api.assets_of(&hub.host_name()).await, count);
    // Cancelling again changes nothing.
    let (status, again) = api.call(Method::POST, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(again, later);
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_mid_import_hides_it_but_the_job_runs_to_the_end() {
    let seen = Seen::default();
    let hub = slow_emulator(1_000, Duration::from_millis(50)).await;
    let (_files, mut server) = start_server(&hub, &[]);
    let api = Api::new(&server, "acme", &seen).await;
    let operation = api
        .start_import(&hub.iothub_connection_string(), None)
        .await;
    let path = format!("/archivist/v2/{}", identity(&operation));
    let (status, body) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({}));
    let (status, body) = api.call(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], json!(5));
    let (_, list) = api.call(Method::GET, "/archivist/v2/iothubgdr", None).await;
    assert_eq!(list["operations"], json!([]));
    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
    // The page: "the underlying job will not stop".
    let started = Instant::now();
    while api.assets_of(&hub.host_name()).await < 1_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the deleted import stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.assets_of(&hub.host_name()).await, 1_000);
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_server_errors_and_dropped_connections_still_give_the_exact_count() {
    let seen = Seen::default();
    let hub = emulator(
        2_500,
        Faults {
            throttle_every: Some(4),
            retry_after: Duration::from_secs(0),
            server_error_rate: 0.1,
            drop_rate: 0.05,
            ..Faults::default()
        },
    )
    .await;
    let (_files, mut server) = start_server(&hub, &["--iothub-retry-budget", "60s"]);
    let api = Api::new(&server, "acme", &seen).await;
    let operation = api
        .start_import(&hub.iothub_connection_string(), None)
        .await;
    let done = api.wait_done(&operation).await;
    assert_eq!(done["result"]["status"], "STATUS_FINISHED", "{done}");
    assert_eq!(imported(&done), 2_500);
    assert_eq!(api.assets_of(&hub.host_name()).await, 2_500);
    let stats = hub.stats();
    assert!(
        stats.throttled > 0 && stats.server_errors > 0 && stats.dropped > 0,
        "{stats:?}"
    );
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_secrets_wrong_keys_and_unreachable_hubs_end_in_a_clear_error() {
    let seen = Seen::default();
    let hub = emulator(10, Faults::default()).await;
    // A hub nobody answers for: its name resolves to a closed loopback port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let nowhere = format!("unreachable-hub.azure-devices.net=127.0.0.1:{port}");
    let (_files, mut server) = start_server(
        &hub,
        &["--iothub-retry-budget", "2s", "--iothub-resolve", &nowhere],
    );
    let api = Api::new(&server, "acme", &seen).await;

    // Not a connection string: the page's error operation, at once, and GET shows it too.
    let not_a_secret = "this is not a connection string";
    let operation = api.start_import(not_a_secret, None).await;
    assert_eq!(operation["done"], json!(true));
    assert_eq!(
        operation["error"]["error_message"],
        "invalid secret provided"
    );
    assert_eq!(operation["error"]["number_assets_imported"], json!(0));
    assert!(operation.get("result").is_none());
    let (_, again) = api.get(&operation).await;
    assert_eq!(again, operation);

    // The right hub, a wrong key.
    let right = hub.iothub_connection_string();
    let (head, _key) = right.split_once("SharedAccessKey=").expect("key part");
    // A well-formed key of the right length that is not the hub's.
    let wrong_key = format!("{head}SharedAccessKey=eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=");
    let done = api
        .wait_done(&api.start_import(&wrong_key, None).await)
        .await;
    let message = done["error"]["error_message"].as_str().expect("message");
    assert!(message.contains("refused"), "{message}");

    // A policy without registry read rights.
    let service = hub
        .connection_string_for("service")
        .expect("service policy");
    let done = api.wait_done(&api.start_import(&service, None).await).await;
    assert!(done["error"]["error_message"]
        .as_str()
        .expect("message")
        .contains("refused"));

    let unreachable = "HostName=unreachable-hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0a2V5c2VjcmV0a2V5";
    let done = api
        .wait_done(&api.start_import(unreachable, None).await)
        .await;
    let message = done["error"]["error_message"].as_str().expect("message");
    assert!(message.contains("could not connect"), "{message}");
    assert_eq!(api.assets_of(&hub.host_name()).await, 0);
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_change_nothing_and_tenants_see_only_their_own() {
    let seen = Seen::default();
    let hub = emulator(5, Faults::default()).await;
    let (_files, mut server) = start_server(&hub, &[]);
    let api = Api::new(&server, "acme", &seen).await;
    let other = Api::new(&server, "globex", &seen).await;
    let secret = hub.iothub_connection_string();
    seen.secret(&secret);
    let cases = [
        (json!({"secret": secret}), "display_name"),
        (json!({"display_name": "x"}), "secret"),
        (
            json!({"display_name": "x".repeat(1025), "secret": secret}),
            "display_name",
        ),
        (
            json!({"display_name": "x", "secret": "A".repeat(1025)}),
            "secret",
        ),
        (
            json!({"display_name": "x", "secret": secret, "secrte": 1}),
            "secrte",
        ),
        (
            json!({"display_name": "x", "secret": secret, "arc_home_location_identity": "locations/nope"}),
            "arc_home_location_identity",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = api
            .call(Method::POST, "/archivist/v2/iothubgdr", Some(body))
            .await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["code"], json!(3));
        assert!(
            error["message"].as_str().expect("message").contains(field),
            "{error}"
        );
    }
    // Another tenant's location is not one of yours.
    let (_, location) = other
        .call(
            Method::POST,
            "/archivist/v2/locations",
            Some(json!({"display_name": "Theirs"})),
        )
        .await;
    let body = json!({"display_name": "x", "secret": secret, "arc_home_location_identity": location["identity"]});
    let (status, error) = api
        .call(Method::POST, "/archivist/v2/iothubgdr", Some(body))
        .await;
    // Not found, as any other tenant's resource is.
    assert_eq!(status, 404);
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("arc_home_location_identity"),
        "{error}"
    );
    let (_, list) = api.call(Method::GET, "/archivist/v2/iothubgdr", None).await;
    assert_eq!(
        list["operations"],
        json!([]),
        "a refused request created an import"
    );

    let operation = api.start_import(&secret, None).await;
    let done = api.wait_done(&operation).await;
    let path = format!("/archivist/v2/{}", identity(&operation));
    for (method, path) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}:cancel")),
    ] {
        let (status, error) = other.call(method, &path, None).await;
        assert_eq!(status, 404, "{error}");
        assert_eq!(error["code"], json!(5));
    }
    let (_, list) = other
        .call(Method::GET, "/archivist/v2/iothubgdr", None)
        .await;
    assert_eq!(list["operations"], json!([]));
    // Cancel of a finished import returns it unchanged.
    let (status, after) = api
        .call(Method::POST, &format!("{path}:cancel"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(after, done);
    for bad in [
        "/archivist/v2/iothubgdr/not-a-uuid",
        "/archivist/v2/iothubgdr/00000000-0000-4000-8000-000000000000",
    ] {
        let (status, _) = api.call(Method::GET, bad, None).await;
        assert_eq!(status, 404);
    }
    let (status, _) = api
        .call(
            Method::POST,
            "/archivist/v2/iothubgdr/00000000-0000-4000-8000-000000000000:stop",
            None,
        )
        .await;
    assert_eq!(status, 404);
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_imports_sees_each_once() {
    let seen = Seen::default();
    let hub = emulator(1, Faults::default()).await;
    let (_files, server) = start_server(&hub, &[]);
    let api = Api::new(&server, "acme", &seen).await;
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(identity(&api.start_import("not a secret", None).await));
    }
    let mut listed = Vec::new();
    let (_, mut page) = api
        .call(Method::GET, "/archivist/v2/iothubgdr?page_size=3", None)
        .await;
    loop {
        for operation in page["operations"].as_array().expect("operations") {
            listed.push(identity(operation));
        }
        let Some(token) = page["next_page_token"].as_str().filter(|t| !t.is_empty()) else {
            break;
        };
        page = api
            .call(
                Method::GET,
                &format!("/archivist/v2/iothubgdr?page_token={token}"),
                None,
            )
            .await
            .1;
    }
    made.reverse();
    assert_eq!(listed, made, "newest first, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_import_leaves_it_done_with_the_restart_error() {
    let seen = Seen::default();
    let data = tempfile::tempdir().expect("data");
    let database = common::fresh_database_url(data.path());

    // Each round has its own hub and tenant on the same database, so each checks its own
    // import against its own assets.
    for (graceful, name) in [(true, "sigterm"), (false, "sigkill")] {
        let hub = named_emulator(
            &format!("{name}-hub"),
            2_500,
            Faults {
                latency: Duration::from_millis(80),
                ..Faults::default()
            },
        )
        .await;
        let files = tempfile::tempdir().expect("dir");
        let args = hub_args(&hub, files.path(), &["--import-lease", "1s"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut first =
            TestServer::start_on(tempfile::tempdir().expect("dir"), database.clone(), &args);
        let api = Api::new(&first, &format!("{name}-tenant"), &seen).await;
        let operation = api
            .start_import(&hub.iothub_connection_string(), None)
            .await;
        api.wait_first_page(&operation).await;
        if graceful {
            assert!(first.terminate().success());
        } else {
            // SIGKILL: nothing is recorded on the way out; another process's reaper must
            // notice the silence.
            assert!(!first.kill().success());
        }
        let mut second =
            TestServer::start_on(tempfile::tempdir().expect("dir"), database.clone(), &args);
        let api = Api {
            url: second.url().to_owned(),
            ..api
        };
        let done = api.wait_done(&operation).await;
        let message = done["error"]["error_message"].as_str().expect("message");
        assert!(message.contains("restarted"), "{message}");
        assert!(imported(&done) > 0 && imported(&done) < 2_500, "{done}");
        assert_eq!(imported(&done), api.assets_of(&hub.host_name()).await);
        // This round's tenant has this round's import only, and no asset of another hub.
        let (_, list) = api.call(Method::GET, "/archivist/v2/iothubgdr", None).await;
        let listed = list["operations"].as_array().expect("ops");
        assert_eq!(listed.len(), 1, "{list}");
        assert_eq!(listed[0]["identity"], operation["identity"]);
        let all = api.assets_of_any_hub().await;
        assert_eq!(all, imported(&done), "assets of this tenant");
        // `first` has exited and its pipes closed: its logs are complete.
        let logs = format!("{}{}", first.logs(), second.stop());
        seen.assert_no_leak(&logs, &[data.path()], &[&database]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_see_cancel_or_delete_a_running_import() {
    let seen = Seen::default();
    let hub = slow_emulator(2_500, Duration::from_millis(60)).await;
    let (_files, mut server) = start_server(&hub, &[]);
    let api = Api::new(&server, "acme", &seen).await;
    let other = Api::new(&server, "globex", &seen).await;
    let operation = api
        .start_import(&hub.iothub_connection_string(), None)
        .await;
    api.wait_first_page(&operation).await;
    let path = format!("/archivist/v2/{}", identity(&operation));
    for (method, path) in [
        (Method::GET, path.clone()),
        (Method::POST, format!("{path}:cancel")),
        (Method::DELETE, path.clone()),
    ] {
        let (status, error) = other.call(method.clone(), &path, None).await;
        assert_eq!(status, 404, "{method} {path}: {error}");
        assert_eq!(error["code"], json!(5));
        // Still running, still listed, for its own tenant.
        let (status, now) = api.get(&operation).await;
        assert_eq!(status, 200, "after {method} by another tenant: {now}");
        assert_eq!(
            now["result"]["status"], "STATUS_INPROGRESS",
            "after {method} by another tenant: {now}"
        );
    }
    let (_, theirs) = other
        .call(Method::GET, "/archivist/v2/iothubgdr", None)
        .await;
    assert_eq!(theirs["operations"], json!([]));
    let (_, ours) = api.call(Method::GET, "/archivist/v2/iothubgdr", None).await;
    assert_eq!(ours["operations"].as_array().expect("ops").len(), 1);
    let done = api.wait_done(&operation).await;
    assert_eq!(done["result"]["status"], "STATUS_FINISHED", "{done}");
    assert_eq!(imported(&done), 2_500);
    assert_eq!(api.assets_of(&hub.host_name()).await, 2_500);
    assert_eq!(other.assets_of(&hub.host_name()).await, 0);
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_longer_than_several_leases_finishes_while_another_process_reaps() {
    // 26 queries of 200 ms: over 5 s, five leases of 1 s. Heartbeats (every lease/3) keep
    // the import alive; a second process on the same database reaps every 1/3 s, so an
    // import whose owner stopped sending heartbeats would be failed as orphaned.
    let seen = Seen::default();
    let hub = slow_emulator(2_500, Duration::from_millis(200)).await;
    let files = tempfile::tempdir().expect("dir");
    let data = tempfile::tempdir().expect("data");
    let database = common::fresh_database_url(data.path());
    let args = hub_args(&hub, files.path(), &["--import-lease", "1s"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut owner =
        TestServer::start_on(tempfile::tempdir().expect("dir"), database.clone(), &args);
    let mut reaper =
        TestServer::start_on(tempfile::tempdir().expect("dir"), database.clone(), &args);
    let api = Api::new(&owner, "acme", &seen).await;
    let started = Instant::now();
    let operation = api
        .start_import(&hub.iothub_connection_string(), None)
        .await;
    let done = api.wait_done(&operation).await;
    assert_eq!(done["result"]["status"], "STATUS_FINISHED", "{done}");
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the import did not outlast several leases: {:?}",
        started.elapsed()
    );
    assert_eq!(imported(&done), 2_500);
    assert_eq!(api.assets_of(&hub.host_name()).await, 2_500);
    let logs = format!("{}{}", owner.stop(), reaper.stop());
    seen.assert_no_leak(&logs, &[data.path()], &[&database]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_after_the_hub_moved_on_are_retried_with_the_exact_count() {
    let seen = Seen::default();
    let hub = emulator(
        2_500,
        Faults {
            lost_answer_rate: 0.25,
            ..Faults::default()
        },
    )
    .await;
    let (_files, mut server) = start_server(&hub, &["--iothub-retry-budget", "60s"]);
    let api = Api::new(&server, "acme", &seen).await;
    let operation = api
        .start_import(&hub.iothub_connection_string(), None)
        .await;
    let done = api.wait_done(&operation).await;
    assert_eq!(done["result"]["status"], "STATUS_FINISHED", "{done}");
    assert_eq!(imported(&done), 2_500);
    assert_eq!(done["result"]["number_devices_total"], json!(2_500));
    assert_eq!(api.assets_of(&hub.host_name()).await, 2_500);
    let stats = hub.stats();
    assert!(stats.lost_answers > 0, "{stats:?}");
    // The hub answered every query it handled, the lost ones included; the client saw each
    // lost answer as a network failure and asked again.
    let exposition = server
        .client()
        .get(server.url_of("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let metrics = Exposition::parse(&exposition);
    let seen_ok = metrics
        .value(r#"iothubgdr_iothub_requests_total{outcome="ok",retried="false"}"#)
        .expect("ok requests");
    let seen_lost = metrics
        .value(r#"iothubgdr_iothub_requests_total{outcome="network",retried="true"}"#)
        .expect("lost answers seen by the client");
    assert_eq!(seen_ok, 26.0, "one count query and 25 pages: {exposition}");
    assert_eq!(seen_lost, stats.lost_answers as f64, "{exposition}");
    assert_eq!(stats.queries_served, 26 + stats.lost_answers, "{stats:?}");
    // Every twin once, plus the pages whose answers were lost (a lost count has no twins).
    let twins_lost = stats.twins_served - 2_500;
    assert!(
        twins_lost % 100 == 0 && twins_lost <= 100 * stats.lost_answers,
        "{stats:?}"
    );
    seen.assert_no_leak(&server.stop(), &[server.dir()], &[server.database_url()]);
}
