//! Test helpers: a reqwest client that reaches the emulator under the hub's real host name,
//! and a SAS token signer written from the IoT Hub security documentation.
#![allow(dead_code)]

use base64::Engine;
use hmac::{Hmac, Mac};
use iothub_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::Value;
use sha2::Sha256;

pub const API: &str = "api-version=2021-04-12";

pub struct Hub {
    pub emulator: RunningEmulator,
    pub client: reqwest::Client,
    pub base: String,
}

pub fn policy_key(emulator: &RunningEmulator, name: &str) -> String {
    emulator
        .policies()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.primary_key.clone())
        .expect("policy exists")
}

pub fn sign(resource: &str, key_b64: &str, expiry: u64, policy: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap();
    let encoded: String = url::form_urlencoded::byte_serialize(resource.as_bytes()).collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{encoded}\n{expiry}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    format!("SharedAccessSignature sr={encoded}&sig={sig}&se={expiry}&skn={policy}")
}

pub fn in_an_hour() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

impl Hub {
    pub async fn start(config: EmulatorConfig) -> Hub {
        let emulator = iothub_emulator::start(config).await.unwrap();
        let client = client_for(&emulator);
        let base = format!(
            "https://{}:{}",
            emulator.host_name(),
            emulator.addr().port()
        );
        Hub {
            emulator,
            client,
            base,
        }
    }

    pub fn token(&self) -> String {
        self.token_for("iothubowner")
    }

    pub fn token_for(&self, policy: &str) -> String {
        sign(
            &self.emulator.host_name(),
            &policy_key(&self.emulator, policy),
            in_an_hour(),
            policy,
        )
    }

    pub fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}{API}", self.base)
    }

    pub async fn query_page(
        &self,
        query: &str,
        max: Option<u32>,
        continuation: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/devices/query"))
            .header("authorization", self.token())
            .json(&serde_json::json!({ "query": query }));
        if let Some(max) = max {
            request = request.header("x-ms-max-item-count", max.to_string());
        }
        if let Some(token) = continuation {
            request = request.header("x-ms-continuation", token);
        }
        request.send().await.unwrap()
    }

    /// Creates a device (the id percent-encoded into the path) and checks it was created.
    pub async fn put_device(&self, id: &str, body: Value) {
        let path = format!(
            "/devices/{}",
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        );
        let response = self
            .client
            .put(self.url(&path))
            .header("authorization", self.token())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "creating {id}");
    }

    pub async fn delete_device(&self, id: &str) {
        let path = format!(
            "/devices/{}",
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        );
        let response = self
            .client
            .delete(self.url(&path))
            .header("authorization", self.token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "deleting {id}");
    }

    /// Pages through a query and returns every deviceId in order, and the number of pages.
    pub async fn query_all(&self, query: &str, max: u32) -> (Vec<String>, usize) {
        let mut ids = Vec::new();
        let mut continuation: Option<String> = None;
        let mut pages = 0;
        loop {
            let response = self
                .query_page(query, Some(max), continuation.as_deref())
                .await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-ms-item-type"], "twin");
            continuation = response
                .headers()
                .get("x-ms-continuation")
                .map(|v| v.to_str().unwrap().to_string());
            let page: Vec<Value> = response.json().await.unwrap();
            assert!(page.len() <= max as usize);
            pages += 1;
            ids.extend(
                page.iter()
                    .map(|t| t["deviceId"].as_str().unwrap().to_string()),
            );
            if continuation.is_none() {
                return (ids, pages);
            }
        }
    }
}

pub fn client_for(emulator: &RunningEmulator) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_cert_pem().as_bytes()).unwrap(),
        )
        .resolve(&emulator.host_name(), emulator.addr())
        .build()
        .unwrap()
}

pub fn config(devices: u64, seed: u64) -> EmulatorConfig {
    EmulatorConfig {
        devices,
        ..EmulatorConfig::with_seed(seed)
    }
}
