//! What the history tests share: an API client of one tenant, and the hub's own REST API
//! to change the hub between imports.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use iothub_emulator::RunningEmulator;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestServer;

pub struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub async fn new(server: &TestServer, tenant: &str) -> Self {
        Self {
            url: server.url().to_owned(),
            token: server.tenant_token(tenant).await,
            http: server.client(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("request");
        let status = answer.status().as_u16();
        let json = answer.json().await.unwrap_or(Value::Null);
        (status, json)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `X-Total-Count` of a list.
    pub async fn total(&self, path: &str) -> u64 {
        let answer = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("X-Request-Total-Count", "true")
            .send()
            .await
            .expect("list");
        assert_eq!(answer.status(), 200, "{path}");
        answer.headers()["x-total-count"]
            .to_str()
            .expect("header")
            .parse()
            .expect("number")
    }

    /// Every item of a list, following `next_page_token` with the token alone.
    pub async fn all(&self, path: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut body = self.get(path).await;
        loop {
            items.extend(body[key].as_array().expect("items").iter().cloned());
            let Some(token) = body["next_page_token"].as_str().filter(|t| !t.is_empty()) else {
                return items;
            };
            let base = path.split('?').next().expect("path");
            body = self.get(&format!("{base}?page_token={token}")).await;
        }
    }

    /// Runs an import of `hub` to its end and returns the finished operation.
    pub async fn import(&self, hub: &RunningEmulator) -> Value {
        let (status, operation) = self
            .call(
                Method::POST,
                "/archivist/v2/iothubgdr",
                Some(json!({"display_name": "history", "secret": hub.iothub_connection_string()})),
            )
            .await;
        assert_eq!(status, 200, "{operation}");
        let path = format!(
            "/archivist/v2/{}",
            operation["identity"].as_str().expect("id")
        );
        let started = Instant::now();
        loop {
            let now = self.get(&path).await;
            if now["done"] == json!(true) {
                assert_eq!(now["result"]["status"], "STATUS_FINISHED", "{now}");
                return now;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{now}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The asset of device `id`, whether tracked or not.
    pub async fn device_asset(&self, id: &str) -> Value {
        let list = self
            .get(&format!(
                "/archivist/v2/assets?tracked=ANY&attributes.iothub_device_id={id}"
            ))
            .await;
        let assets = list["assets"].as_array().expect("assets");
        assert_eq!(assets.len(), 1, "one asset for {id}: {list}");
        assets[0].clone()
    }

    /// One asset's events, oldest first.
    pub async fn history(&self, asset: &Value) -> Vec<Value> {
        let id = asset["identity"].as_str().expect("identity");
        let mut events = self
            .all(&format!("/archivist/v2/{id}/events?page_size=2"), "events")
            .await;
        events.reverse();
        events
    }
}

/// The hub's own REST API, signed with its owner policy.
pub struct HubAdmin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HubAdmin {
    pub fn new(hub: &RunningEmulator) -> Self {
        let policy = hub
            .policies()
            .into_iter()
            .find(|p| p.name == "iothubowner")
            .expect("owner policy");
        let key = base64::engine::general_purpose::STANDARD
            .decode(&policy.primary_key)
            .expect("key");
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 3600;
        let token =
            iothub_client::generate_sas_token(&hub.host_name(), &key, Some("iothubowner"), expiry);
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(hub.ca_cert_pem().as_bytes()).expect("ca"),
            )
            .resolve(&hub.host_name(), hub.addr())
            .build()
            .expect("client");
        Self {
            http,
            base: format!("https://{}:{}", hub.host_name(), hub.addr().port()),
            token,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>, if_match: bool) {
        let mut request = self
            .http
            .request(
                method.clone(),
                format!("{}{path}?api-version=2021-04-12", self.base),
            )
            .header("authorization", &self.token);
        if if_match {
            request = request.header("If-Match", "*");
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("hub request");
        assert!(
            answer.status().is_success(),
            "{method} {path}: {}",
            answer.status()
        );
    }

    pub async fn create(&self, id: &str) {
        self.send(
            Method::PUT,
            &format!("/devices/{id}"),
            Some(json!({"deviceId": id})),
            false,
        )
        .await;
    }

    pub async fn set_status(&self, id: &str, status: &str) {
        self.send(
            Method::PUT,
            &format!("/devices/{id}"),
            Some(json!({"deviceId": id, "status": status})),
            true,
        )
        .await;
    }

    pub async fn tag(&self, id: &str, tags: Value) {
        self.send(
            Method::PATCH,
            &format!("/twins/{id}"),
            Some(json!({"tags": tags})),
            true,
        )
        .await;
    }

    pub async fn delete(&self, id: &str) {
        self.send(Method::DELETE, &format!("/devices/{id}"), None, true)
            .await;
    }
}
