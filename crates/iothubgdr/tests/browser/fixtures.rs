//! The emulated hub, the server pointed at it, and the API as a script calls it: what the
//! console shows is compared with these.

use std::time::Duration;

use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};
use serde_json::{json, Value};

use crate::common::TestServer;

/// An emulated hub of `devices` whose every query takes `latency`.
pub async fn hub(devices: u64, latency: Duration) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        faults: Faults {
            latency,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

/// The server, pointed at `hub` under its real host name.
pub fn server_for(hub: &RunningEmulator) -> (tempfile::TempDir, TestServer) {
    let files = tempfile::tempdir().expect("dir");
    let ca = files.path().join("emulator-ca.pem");
    std::fs::write(&ca, hub.ca_cert_pem()).expect("write CA");
    let resolve = format!("{}={}", hub.host_name(), hub.addr());
    let server = TestServer::start_with(&[
        "--iothub-ca-file",
        &ca.display().to_string(),
        "--iothub-resolve",
        &resolve,
        "--iothub-retry-budget",
        "10s",
    ]);
    (files, server)
}

/// Merges `tags` into the twin of `device_id`, through the hub's own REST API.
pub async fn tag_device(hub: &RunningEmulator, device_id: &str, tags: Value) {
    use base64::Engine;
    let policy = hub
        .policies()
        .into_iter()
        .find(|policy| policy.name == "iothubowner")
        .expect("iothubowner policy");
    let key = base64::engine::general_purpose::STANDARD
        .decode(&policy.primary_key)
        .expect("base64 key");
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let sas =
        iothub_client::generate_sas_token(&hub.host_name(), &key, Some("iothubowner"), expiry);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(hub.ca_cert_pem().as_bytes()).expect("CA"),
        )
        .resolve(&hub.host_name(), hub.addr())
        .build()
        .expect("client");
    let answer = client
        .patch(format!(
            "https://{}:{}/twins/{device_id}?api-version=2021-04-12",
            hub.host_name(),
            hub.addr().port()
        ))
        .header("authorization", sas)
        .json(&json!({ "tags": tags }))
        .send()
        .await
        .expect("patch twin");
    assert!(answer.status().is_success(), "{}", answer.status());
}

/// The API, as a script would call it, to compare what the console shows with.
pub struct Api {
    pub server_url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn new(server: &TestServer, client_id: &str, secret: &str) -> Api {
        Api {
            server_url: server.url().to_owned(),
            token: server.token(client_id, secret).await,
            http: server.client(),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.server_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}{path}", self.server_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert!(answer.status().is_success(), "{}", answer.status());
        answer.json().await.expect("JSON")
    }

    /// `X-Total-Count` of the assets matching `query` (`attributes.x=y&...`).
    pub async fn asset_count(&self, query: &str) -> u64 {
        let answer = self
            .http
            .get(format!(
                "{}/archivist/v2/assets?page_size=1&{query}",
                self.server_url
            ))
            .bearer_auth(&self.token)
            .header("X-Request-Total-Count", "true")
            .send()
            .await
            .expect("GET");
        answer.headers()["X-Total-Count"]
            .to_str()
            .expect("header")
            .parse()
            .expect("number")
    }
}
