//! Two `iothubgdr serve` processes on one database and one IoT Hub emulator, as replicas
//! behind a load balancer run: on PostgreSQL when IOTHUBGDR_TEST_POSTGRES_URL names a
//! server, else on one SQLite file (which two processes can share on one machine).

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};
use reqwest::Method;
use serde_json::{json, Value};

/// One tenant's view of one replica.
struct Replica {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Replica {
    fn of(server: &TestServer, token: &str) -> Self {
        Self {
            url: server.url().to_owned(),
            token: token.to_owned(),
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

    async fn start_import(&self, secret: &str) -> String {
        let (status, operation) = self
            .call(
                Method::POST,
                "/archivist/v2/iothubgdr",
                Some(json!({"display_name": "replicas", "secret": secret})),
            )
            .await;
        assert_eq!(status, 200, "{operation}");
        operation["identity"].as_str().expect("identity").to_owned()
    }

    async fn get(&self, identity: &str) -> Value {
        let (status, operation) = self
            .call(Method::GET, &format!("/archivist/v2/{identity}"), None)
            .await;
        assert_eq!(status, 200, "{operation}");
        operation
    }

    async fn wait_done(&self, identity: &str, within: Duration) -> Value {
        let started = Instant::now();
        loop {
            let operation = self.get(identity).await;
            if operation["done"] == json!(true) {
                return operation;
            }
            assert!(
                started.elapsed() < within,
                "not done in {within:?}: {operation}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn assets(&self) -> u64 {
        let answer = self
            .http
            .get(format!("{}/archivist/v2/assets?page_size=1", self.url))
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

fn status(operation: &Value) -> &str {
    operation["result"]["status"].as_str().unwrap_or("error")
}

async fn slow_hub(devices: u64, latency_ms: u64) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        faults: Faults {
            latency: Duration::from_millis(latency_ms),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

/// Two servers on one fresh database, both pointed at `hub`.
fn two_replicas(
    hub: &RunningEmulator,
    files: &tempfile::TempDir,
    extra: &[&str],
) -> (TestServer, TestServer) {
    let ca = files.path().join("emulator-ca.pem");
    std::fs::write(&ca, hub.ca_cert_pem()).expect("write CA");
    let mut args = vec![
        "--iothub-ca-file".to_owned(),
        ca.display().to_string(),
        "--iothub-resolve".to_owned(),
        format!("{}={}", hub.host_name(), hub.addr()),
        "--iothub-retry-budget".to_owned(),
        "10s".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = TestServer::start_with(&args);
    let b = TestServer::start_on(
        tempfile::tempdir().expect("dir"),
        a.database_url().to_owned(),
        &args,
    );
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_tokens_progress_cancels_limits_and_assets() {
    println!("replicas on {}", common::backend());
    let hub = slow_hub(3_000, 60).await;
    let files = tempfile::tempdir().expect("dir");
    let (a, b) = two_replicas(&hub, &files, &["--imports-per-tenant", "2"]);

    // A token issued by A works on B.
    let app = a.create_test_app("acme");
    let token = a.token(&app.client_id, &app.client_secret).await;
    let (on_a, on_b) = (Replica::of(&a, &token), Replica::of(&b, &token));
    let (ok, _) = on_b
        .call(Method::GET, "/archivist/v2/locations", None)
        .await;
    assert_eq!(ok, 200, "a token of A is refused by B");

    // An import started on A is watched on B with live progress, and a cancel sent to B
    // stops it within about two seconds.
    let identity = on_a.start_import(&hub.iothub_connection_string()).await;
    let mut progress = Vec::new();
    let started = Instant::now();
    while progress.len() < 2 {
        let now = on_b.get(&identity).await;
        assert_eq!(
            now["done"],
            json!(false),
            "done before seen in progress: {now}"
        );
        let count = imported(&now);
        if count > 0 && progress.last() != Some(&count) {
            progress.push(count);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress seen on B"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (cancelled_status, cancelled) = on_b
        .call(
            Method::POST,
            &format!("/archivist/v2/{identity}:cancel"),
            None,
        )
        .await;
    let cancelled_at = Instant::now();
    assert_eq!(cancelled_status, 200, "{cancelled}");
    assert_eq!(status(&cancelled), "STATUS_CANCELLED");
    // A's job stops writing: the count freezes (within its poll) and equals the assets.
    let mut last = imported(&cancelled);
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_millis(800) {
        let count = imported(&on_a.get(&identity).await);
        if count != last {
            last = count;
            stable_since = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped_within = stable_since.duration_since(cancelled_at);
    assert!(
        stopped_within < Duration::from_secs(2),
        "A kept writing {stopped_within:?} after the cancel"
    );
    assert_eq!(last, imported(&cancelled), "pages written after the cancel");
    assert!(last < 3_000);
    assert_eq!(on_a.assets().await, last);

    // The per-tenant limit holds across A and B: a third import waits pending while two
    // run, on either replica.
    let first = on_a.start_import(&hub.iothub_connection_string()).await;
    let second = on_b.start_import(&hub.eventhub_connection_string()).await;
    let third = on_a.start_import(&hub.iothub_connection_string()).await;
    let mut saw_third_waiting = false;
    let started = Instant::now();
    loop {
        let operations = [
            on_b.get(&first).await,
            on_a.get(&second).await,
            on_b.get(&third).await,
        ];
        let running = operations
            .iter()
            .filter(|op| status(op) == "STATUS_INPROGRESS")
            .count();
        assert!(running <= 2, "three imports of one tenant ran at once");
        if running == 2 && status(&operations[2]) == "STATUS_PENDING" {
            saw_third_waiting = true;
        }
        if operations.iter().all(|op| op["done"] == json!(true)) {
            for op in &operations {
                assert_eq!(status(op), "STATUS_FINISHED", "{op}");
                assert_eq!(imported(op), 3_000);
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "imports never ended"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        saw_third_waiting,
        "the third import never waited for a slot"
    );
    // Three imports of one hub on two replicas: one asset per device.
    assert_eq!(on_b.assets().await, 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_of_one_hub_started_at_once_on_both_replicas_leave_one_asset_per_device() {
    let hub = slow_hub(2_000, 5).await;
    let files = tempfile::tempdir().expect("dir");
    let (a, b) = two_replicas(&hub, &files, &[]);
    let token = a.tenant_token("acme").await;
    let (on_a, on_b) = (Replica::of(&a, &token), Replica::of(&b, &token));
    let (iothub_form, eventhub_form) = (
        hub.iothub_connection_string(),
        hub.eventhub_connection_string(),
    );
    let (x, y) = tokio::join!(
        on_a.start_import(&iothub_form),
        on_b.start_import(&eventhub_form),
    );
    for (replica, identity) in [(&on_b, x), (&on_a, y)] {
        let done = replica.wait_done(&identity, Duration::from_secs(120)).await;
        assert_eq!(status(&done), "STATUS_FINISHED", "{done}");
        assert_eq!(imported(&done), 2_000);
    }
    assert_eq!(on_a.assets().await, 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_import_is_reported_failed_by_the_other_within_its_lease() {
    let hub = slow_hub(3_000, 80).await;
    let files = tempfile::tempdir().expect("dir");
    let (a, b) = two_replicas(&hub, &files, &["--import-lease", "2s"]);
    let token = a.tenant_token("acme").await;
    let (on_a, on_b) = (Replica::of(&a, &token), Replica::of(&b, &token));
    let identity = on_a.start_import(&hub.iothub_connection_string()).await;
    let started = Instant::now();
    while imported(&on_b.get(&identity).await) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no page written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(a); // SIGKILL: nothing is recorded on the way out.
    let killed_at = Instant::now();
    // B notices within the lease (2 s) plus its reaping period (a third of it) and the poll.
    let done = on_b.wait_done(&identity, Duration::from_secs(10)).await;
    let noticed_after = killed_at.elapsed();
    assert!(
        noticed_after < Duration::from_millis(4_500),
        "B took {noticed_after:?} to notice"
    );
    let message = done["error"]["error_message"].as_str().expect("message");
    assert!(message.contains("restarted"), "{done}");
    let count = imported(&done);
    assert!(count > 0 && count < 3_000, "{done}");
    let (status, _) = on_b.call(Method::GET, "/archivist/v2/assets", None).await;
    assert_eq!(status, 200, "B's logs:\n{}", b.logs());
    assert_eq!(on_b.assets().await, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_bound_is_shared_by_replicas_and_answers_429() {
    let hub = slow_hub(3_000, 80).await;
    let files = tempfile::tempdir().expect("dir");
    let (a, b) = two_replicas(
        &hub,
        &files,
        &[
            "--imports-queued-per-tenant",
            "2",
            "--imports-per-tenant",
            "1",
        ],
    );
    let flooder = a.tenant_token("flooder").await;
    let (on_a, on_b) = (Replica::of(&a, &flooder), Replica::of(&b, &flooder));
    let first = on_a.start_import(&hub.iothub_connection_string()).await;
    on_b.start_import(&hub.iothub_connection_string()).await;
    // The third, on either replica, is refused: the bound is counted in the database.
    for replica in [&on_a, &on_b] {
        let answer = replica
            .http
            .post(format!("{}/archivist/v2/iothubgdr", replica.url))
            .bearer_auth(&replica.token)
            .json(
                &json!({"display_name": "one too many", "secret": hub.iothub_connection_string()}),
            )
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status(), 429);
        let headers = answer.headers().clone();
        assert!(
            headers["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
        assert_eq!(
            headers["retry-after"],
            headers["archivist-rate-limit-reset"]
        );
        let body: Value = answer.json().await.expect("error body");
        assert_eq!(body["code"], 8, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("waiting or running"),
            "{body}"
        );
    }
    let (_, list) = on_b
        .call(Method::GET, "/archivist/v2/iothubgdr", None)
        .await;
    assert_eq!(list["operations"].as_array().expect("operations").len(), 2);
    // Another tenant is not held up by the flooder.
    let other = Replica::of(&b, &b.tenant_token("other").await);
    let theirs = other.start_import(&hub.iothub_connection_string()).await;
    let started = Instant::now();
    while status(&other.get(&theirs).await) == "STATUS_PENDING" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the other tenant waited"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // A slot freed by a cancel admits the next import.
    on_b.call(Method::POST, &format!("/archivist/v2/{first}:cancel"), None)
        .await;
    on_b.start_import(&hub.iothub_connection_string()).await;
    // The refused secrets were dropped: nothing of them in either replica's logs.
    let key = hub
        .iothub_connection_string()
        .split(';')
        .find_map(|part| part.strip_prefix("SharedAccessKey=").map(str::to_owned))
        .expect("key");
    assert!(!a.logs().contains(&key) && !b.logs().contains(&key));
}
