//! Device history end to end: the real server imports from the real emulator, the hub is
//! changed between imports through its own REST API (create, twin tags, status, delete,
//! delete and recreate), and each change must appear as exactly the event described.
//! Also the event routes themselves: create, get, list, filters, paging, other tenants.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::TestServer;
use iothub_emulator::{EmulatorConfig, RunningEmulator};
use reqwest::Method;
use serde_json::{json, Value};

struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(server: &TestServer, tenant: &str) -> Self {
        Self {
            url: server.url().to_owned(),
            token: server.tenant_token(tenant).await,
            http: server.client(),
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
        let json = answer.json().await.unwrap_or(Value::Null);
        (status, json)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `X-Total-Count` of a list.
    async fn total(&self, path: &str) -> u64 {
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
    async fn all(&self, path: &str, key: &str) -> Vec<Value> {
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
    async fn import(&self, hub: &RunningEmulator) -> Value {
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
    async fn device_asset(&self, id: &str) -> Value {
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
    async fn history(&self, asset: &Value) -> Vec<Value> {
        let id = asset["identity"].as_str().expect("identity");
        let mut events = self
            .all(&format!("/archivist/v2/{id}/events?page_size=2"), "events")
            .await;
        events.reverse();
        events
    }
}

/// The hub's own REST API, signed with its owner policy.
struct HubAdmin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HubAdmin {
    fn new(hub: &RunningEmulator) -> Self {
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

    async fn send(&self, method: Method, path: &str, body: Option<Value>, if_match: bool) {
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

    async fn create(&self, id: &str) {
        self.send(
            Method::PUT,
            &format!("/devices/{id}"),
            Some(json!({"deviceId": id})),
            false,
        )
        .await;
    }

    async fn set_status(&self, id: &str, status: &str) {
        self.send(
            Method::PUT,
            &format!("/devices/{id}"),
            Some(json!({"deviceId": id, "status": status})),
            true,
        )
        .await;
    }

    async fn tag(&self, id: &str, tags: Value) {
        self.send(
            Method::PATCH,
            &format!("/twins/{id}"),
            Some(json!({"tags": tags})),
            true,
        )
        .await;
    }

    async fn delete(&self, id: &str) {
        self.send(Method::DELETE, &format!("/devices/{id}"), None, true)
            .await;
    }
}

fn counts(operation: &Value) -> [u64; 6] {
    let r = &operation["result"];
    [
        "number_assets_created",
        "number_assets_changed",
        "number_assets_unchanged",
        "number_assets_stopped_tracking",
        "number_assets_tracked_again",
        "number_assets_recreated",
    ]
    .map(|name| r[name].as_u64().unwrap_or_else(|| panic!("{name} in {r}")))
}

fn ops(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["behaviour"].as_str().unwrap(),
                e["operation"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimports_record_each_change_of_the_hub_as_one_event() {
    let hub = iothub_emulator::start(EmulatorConfig {
        devices: 0,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let admin = HubAdmin::new(&hub);
    for id in ["d1", "d2", "d3", "d4"] {
        admin.create(id).await;
    }
    // d4's twin moves past version 1, so its recreation later is told apart.
    admin.tag("d4", json!({"role": "gateway"})).await;

    let files = tempfile::tempdir().expect("dir");
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, hub.ca_cert_pem()).expect("ca");
    let resolve = format!("{}={}", hub.host_name(), hub.addr());
    let server = TestServer::start_with(&[
        "--iothub-ca-file",
        ca.to_str().expect("path"),
        "--iothub-resolve",
        &resolve,
    ]);
    let api = Api::new(&server, "acme").await;

    // First sight: four assets, each with its NewAsset event.
    let first = api.import(&hub).await;
    assert_eq!(counts(&first), [4, 0, 0, 0, 0, 0]);
    assert_eq!(api.total("/archivist/v2/assets/-/events").await, 4);
    let d1 = api.device_asset("d1").await;
    let created = api.history(&d1).await;
    assert_eq!(ops(&created), ["AssetCreator/NewAsset"]);
    assert_eq!(created[0]["asset_attributes"], d1["attributes"]);
    assert!(d1["attributes"].get("iothub_connection_state").is_none());
    assert!(created[0]["event_attributes"]["iothub_twin_version"].is_string());

    // The unchanged hub again: nothing written.
    let second = api.import(&hub).await;
    assert_eq!(counts(&second), [0, 0, 4, 0, 0, 0]);
    assert_eq!(second["result"]["number_assets_imported"], 4);
    assert_eq!(api.total("/archivist/v2/assets/-/events").await, 4);

    // Change the hub through its own API.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before_changes = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    admin.tag("d1", json!({"building": "B7"})).await;
    admin.set_status("d2", "disabled").await;
    admin.delete("d3").await;
    admin.delete("d4").await;
    admin.create("d4").await;

    let third = api.import(&hub).await;
    let import3 = third["identity"].as_str().expect("identity").to_owned();
    // d1, d2, d4 changed (d4 as recreated), d3 stopped.
    assert_eq!(counts(&third), [0, 3, 0, 1, 0, 1]);
    assert_eq!(third["result"]["number_assets_imported"], 3);

    let d1_events = api.history(&api.device_asset("d1").await).await;
    assert_eq!(
        ops(&d1_events),
        ["AssetCreator/NewAsset", "RecordEvidence/Record"]
    );
    let change = &d1_events[1];
    assert_eq!(
        change["asset_attributes"],
        json!({"iothub_tag_building": "B7"})
    );
    assert_eq!(change["event_attributes"]["iothub_import"], import3);
    assert_eq!(
        change["event_attributes"]["iothub_hub"],
        hub.host_name().to_lowercase()
    );
    assert!(change["event_attributes"]["iothub_twin_version"].is_string());

    let d2_events = api.history(&api.device_asset("d2").await).await;
    assert_eq!(
        ops(&d2_events),
        ["AssetCreator/NewAsset", "RecordEvidence/Record"]
    );
    assert_eq!(
        d2_events[1]["asset_attributes"],
        json!({"iothub_status": "disabled"})
    );

    let d3 = api.device_asset("d3").await;
    assert_eq!(d3["tracked"], "NOT_TRACKED");
    assert_eq!(
        ops(&api.history(&d3).await),
        ["AssetCreator/NewAsset", "Builtin/StopTracking"]
    );

    let d4_events = api.history(&api.device_asset("d4").await).await;
    assert_eq!(
        ops(&d4_events),
        ["AssetCreator/NewAsset", "RecordEvidence/Record"]
    );
    assert_eq!(
        d4_events[1]["event_attributes"]["arc_display_type"],
        "Recreated"
    );
    assert_eq!(
        d4_events[1]["asset_attributes"],
        json!({"iothub_tag_role": ""})
    );

    // Lists: tracked only by default; the stopped one on request.
    assert_eq!(api.total("/archivist/v2/assets").await, 3);
    assert_eq!(
        api.total("/archivist/v2/assets?tracked=NOT_TRACKED").await,
        1
    );
    assert_eq!(api.total("/archivist/v2/assets?tracked=ANY").await, 4);
    assert_eq!(
        api.total("/archivist/v2/assets?attributes.iothub_tag_building=*")
            .await,
        1
    );
    assert_eq!(
        api.total("/archivist/v2/assets?attributes.iothub_tag_building!=*")
            .await,
        2
    );

    // at_time answers the state before the changes.
    let d1_id = api.device_asset("d1").await["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    let then = api
        .get(&format!("/archivist/v2/{d1_id}?at_time={before_changes}"))
        .await;
    assert!(
        then["attributes"].get("iothub_tag_building").is_none(),
        "{then}"
    );
    let now = api.get(&format!("/archivist/v2/{d1_id}")).await;
    assert_eq!(now["attributes"]["iothub_tag_building"], "B7");
    let d3_id = d3["identity"].as_str().unwrap();
    let d3_then = api
        .get(&format!("/archivist/v2/{d3_id}?at_time={before_changes}"))
        .await;
    assert_eq!(d3_then["tracked"], "TRACKED");

    // The events of one import, by its identity.
    assert_eq!(
        api.total(&format!(
            "/archivist/v2/assets/-/events?event_attributes.iothub_import={import3}"
        ))
        .await,
        4
    );

    // d3 comes back.
    admin.create("d3").await;
    let fourth = api.import(&hub).await;
    assert_eq!(counts(&fourth), [0, 1, 3, 0, 1, 0]);
    let d3 = api.device_asset("d3").await;
    assert_eq!(d3["tracked"], "TRACKED");
    assert_eq!(
        ops(&api.history(&d3).await),
        [
            "AssetCreator/NewAsset",
            "Builtin/StopTracking",
            "Builtin/StartTracking"
        ]
    );
    // 4 NewAsset, 3 Record, 1 StopTracking, 1 StartTracking.
    assert_eq!(api.total("/archivist/v2/assets/-/events").await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_routes_filters_paging_and_tenants() {
    let server = TestServer::start();
    let api = Api::new(&server, "acme").await;
    let other = Api::new(&server, "globex").await;

    // Create bodies: proof_mechanism and public as documented, refusing what is unsupported.
    for (body, expected) in [
        (
            json!({"behaviours": ["RecordEvidence"], "proof_mechanism": "MERKLE_LOG"}),
            400,
        ),
        (
            json!({"behaviours": ["RecordEvidence"], "public": true}),
            400,
        ),
        (
            json!({"behaviours": ["RecordEvidence"], "proof_mechanism": "SIMPLE_HASH", "public": false, "attributes": {"kind": "pump"}}),
            200,
        ),
    ] {
        let (status, answer) = api
            .call(Method::POST, "/archivist/v2/assets", Some(body))
            .await;
        assert_eq!(status, expected, "{answer}");
    }
    let asset = api.get("/archivist/v2/assets").await["assets"][0].clone();
    let id = asset["identity"].as_str().unwrap().to_owned();
    let events_path = format!("/archivist/v2/{id}/events");
    let created = api.get(&events_path).await["events"][0].clone();
    assert_eq!(created["operation"], "NewAsset");
    assert_eq!(created["asset_attributes"], json!({"kind": "pump"}));
    assert_eq!(created["principal_accepted"]["issuer"], "iothubgdr");

    // Record evidence, declared by someone else at another time.
    for n in 0..5 {
        let (status, event) = api
            .call(
                Method::POST,
                &events_path,
                Some(json!({
                    "behaviour": "RecordEvidence", "operation": "Record",
                    "event_attributes": {"arc_display_type": "Inspection", "n": n.to_string()},
                    "asset_attributes": {"inspected": n.to_string()},
                    "timestamp_declared": "2020-01-02T03:04:05Z",
                    "principal_declared": {"issuer": "idp.example", "subject": "inspector"}
                })),
            )
            .await;
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["timestamp_declared"], "2020-01-02T03:04:05Z");
        assert_eq!(event["confirmation_status"], "CONFIRMED");
        assert!(event["identity"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}/events/")));
    }
    assert_eq!(
        api.get(&format!("/archivist/v2/{id}")).await["attributes"]["inspected"],
        "4"
    );

    // Refusals: unsupported behaviour, behaviour the asset lacks, bad time, bad body.
    for body in [
        json!({"behaviour": "Firmware", "operation": "Update"}),
        json!({"behaviour": "RecordEvidence"}),
        json!({"behaviour": "RecordEvidence", "operation": "Record", "timestamp_declared": "yesterday"}),
        json!({"behaviour": "RecordEvidence", "operation": "Record", "colour": "red"}),
        json!({"behaviour": "Builtin", "operation": "StartTracking"}),
    ] {
        let (status, answer) = api
            .call(Method::POST, &events_path, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (_, bare) = api
        .call(
            Method::POST,
            "/archivist/v2/assets",
            Some(json!({"behaviours": []})),
        )
        .await;
    let (status, _) = api
        .call(
            Method::POST,
            &format!(
                "/archivist/v2/{}/events",
                bare["identity"].as_str().unwrap()
            ),
            Some(json!({"behaviour": "RecordEvidence", "operation": "Record"})),
        )
        .await;
    assert_eq!(status, 400, "the asset has no RecordEvidence behaviour");

    // Untrack and track again.
    let (status, stop) = api
        .call(
            Method::POST,
            &events_path,
            Some(json!({"behaviour": "Builtin", "operation": "StopTracking"})),
        )
        .await;
    assert_eq!(status, 200, "{stop}");
    assert_eq!(
        api.get(&format!("/archivist/v2/{id}")).await["tracked"],
        "NOT_TRACKED"
    );
    assert_eq!(
        api.total("/archivist/v2/assets").await,
        1,
        "only the bare asset is tracked"
    );
    let (status, _) = api
        .call(
            Method::POST,
            &events_path,
            Some(json!({"behaviour": "Builtin", "operation": "StopTracking"})),
        )
        .await;
    assert_eq!(status, 400, "already stopped");

    // Filters.
    assert_eq!(api.total(&events_path).await, 7);
    assert_eq!(api.total("/archivist/v2/assets/-/events").await, 8);
    for (query, expected) in [
        ("behaviour=RecordEvidence", 5),
        ("behaviour=Builtin&operation=StopTracking", 1),
        ("event_attributes.n=3", 1),
        ("event_attributes.arc_display_type=*", 5),
        ("event_attributes.arc_display_type!=*", 2),
        ("asset_attributes.inspected=0", 1),
        ("principal_declared.subject=inspector", 5),
        ("principal_accepted.issuer=iothubgdr", 7),
        ("timestamp_declared_before=2021-01-01T00:00:00Z", 5),
        ("timestamp_accepted_since=2021-01-01T00:00:00Z", 7),
        ("timestamp_accepted_before=2021-01-01T00:00:00Z", 0),
        ("confirmation_status=CONFIRMED", 7),
        ("confirmation_status=PENDING", 0),
        ("order_by=DEFAULT", 7),
    ] {
        assert_eq!(
            api.total(&format!("{events_path}?{query}")).await,
            expected,
            "{query}"
        );
    }
    for bad in [
        "colour=red",
        "timestamp_accepted_since=yesterday",
        "order_by=SIMPLEHASHV1",
        "confirmation_status=MAYBE",
        "event_attributes.n!=3",
        "page_size=0",
    ] {
        let (status, answer) = api
            .call(Method::GET, &format!("{events_path}?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }

    // Paging: newest first, each event exactly once, the token alone continues.
    let paged = api
        .all(&format!("{events_path}?page_size=2"), "events")
        .await;
    assert_eq!(paged.len(), 7);
    assert_eq!(paged[0]["operation"], "StopTracking");
    assert_eq!(paged[6]["operation"], "NewAsset");
    let filtered = api
        .all(
            "/archivist/v2/assets/-/events?page_size=2&behaviour=RecordEvidence",
            "events",
        )
        .await;
    assert_eq!(filtered.len(), 5);

    // Page tokens are signed and belong to their list: a forged one, or one asset's token
    // sent to every asset's list, answers 400.
    let first_page = api.get(&format!("{events_path}?page_size=2")).await;
    let token = first_page["next_page_token"]
        .as_str()
        .expect("token")
        .to_owned();
    for bad in [
        format!("/archivist/v2/assets/-/events?page_token={token}"),
        format!("{events_path}?page_token=e30.c2lnbmF0dXJl"),
        format!("{events_path}?page_token={token}&behaviour=Builtin"),
    ] {
        let (status, answer) = api.call(Method::GET, &bad, None).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let second_page = api.get(&format!("{events_path}?page_token={token}")).await;
    assert_eq!(
        second_page["events"][0]["identity"], paged[2]["identity"],
        "the token alone continues the list"
    );

    // One event; events are immutable.
    let event_id = paged[3]["identity"].as_str().unwrap().to_owned();
    assert_eq!(
        api.get(&format!("/archivist/v2/{event_id}")).await,
        paged[3]
    );
    for method in [Method::PATCH, Method::DELETE, Method::PUT] {
        let (status, _) = api
            .call(method.clone(), &format!("/archivist/v2/{event_id}"), None)
            .await;
        assert_eq!(status, 405, "{method}");
    }

    // Another tenant: 404 for the asset's events, the event, posting; nothing in its lists.
    for path in [events_path.clone(), format!("/archivist/v2/{event_id}")] {
        let (status, _) = other.call(Method::GET, &path, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = other
        .call(
            Method::POST,
            &events_path,
            Some(json!({"behaviour": "Builtin", "operation": "StartTracking"})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(other.total("/archivist/v2/assets/-/events").await, 0);
    let (status, _) = api
        .call(
            Method::GET,
            "/archivist/v2/assets/00000000-0000-0000-0000-000000000000/events",
            None,
        )
        .await;
    assert_eq!(status, 404);
}
