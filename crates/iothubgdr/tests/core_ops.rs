//! Operating the server: health, readiness, metrics, the `apps` commands, shared tokens
//! across processes, JSON logs and graceful shutdown.

mod common;

use common::TestServer;
use serde_json::{json, Value};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start();
    let client = server.client();
    let health = client.get(server.url_of("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(server.url_of("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "database": common::backend()}),
        "readyz names the database that answered"
    );

    let token = server.tenant_token("acme").await;
    let location = client
        .post(server.url_of("/archivist/v2/locations"))
        .bearer_auth(&token)
        .json(&json!({"display_name": "x"}))
        .send()
        .await
        .unwrap();
    let identity = location.json::<Value>().await.unwrap()["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .get(server.url_of(&format!("/archivist/v2/{identity}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    client.get(server.url_of("/nope")).send().await.unwrap();

    let metrics = client.get(server.url_of("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("iothubgdr_http_requests_total"), "{text}");
    assert!(
        text.contains(r#"route="/archivist/v2/locations/{id}""#),
        "route templates, not paths: {text}"
    );
    assert!(
        !text.contains(identity.trim_start_matches("locations/")),
        "no identities in labels"
    );
    assert!(text.contains(r#"status="404""#));
    assert!(text.contains("iothubgdr_http_request_duration_seconds_bucket"));
    assert!(!text.contains(&token));
}

#[tokio::test]
async fn readiness_is_503_while_the_database_is_gone() {
    // The database disappears by moving its file; a shared PostgreSQL test server cannot be
    // taken away from one test (there a gone server already fails the ping's `SELECT 1`).
    if common::backend() != "sqlite" {
        println!("SKIPPED readiness_is_503_while_the_database_is_gone: moves a SQLite file");
        eprintln!("SKIPPED readiness_is_503_while_the_database_is_gone: moves a SQLite file");
        return;
    }
    let server = TestServer::start();
    let client = server.client();
    let ready = |client: reqwest::Client| {
        let url = server.url_of("/readyz");
        async move { client.get(url).send().await.unwrap() }
    };
    assert_eq!(ready(client.clone()).await.status(), 200);
    let file = server
        .database_url()
        .strip_prefix("sqlite://")
        .map(std::path::PathBuf::from)
        .expect("a SQLite test server");
    let moved = file.with_extension("moved");
    std::fs::rename(&file, &moved).unwrap();

    let answer = ready(client.clone()).await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], json!(14), "{body}");
    assert!(
        !body["message"].as_str().unwrap().contains("iothubgdr.db"),
        "the answer names no path: {body}"
    );
    // The process itself is alive.
    let health = client.get(server.url_of("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // The same file back: ready again.
    std::fs::rename(&moved, &file).unwrap();
    assert_eq!(ready(client).await.status(), 200);
}

#[tokio::test]
async fn apps_list_and_delete_never_show_secrets() {
    let server = TestServer::start();
    let first = server.create_test_app("acme");
    let second = server.create_test_app("globex");
    assert_ne!(first.tenant_identity, second.tenant_identity);
    assert_eq!(
        server.create_test_app("acme").tenant_identity,
        first.tenant_identity
    );

    let listed = server.command(&["apps", "list"]).output().unwrap();
    assert!(listed.status.success());
    let text = String::from_utf8(listed.stdout).unwrap();
    let apps: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(apps.len(), 3);
    assert!(apps
        .iter()
        .any(|app| app["client_id"] == first.client_id.as_str()));
    for secret in [&first.client_secret, &second.client_secret] {
        assert!(!text.contains(secret.as_str()));
    }
    assert!(apps.iter().all(|app| app.get("client_secret").is_none()));

    let deleted = server
        .command(&["apps", "delete", &first.client_id])
        .output()
        .unwrap();
    assert!(deleted.status.success());
    let again = server
        .command(&["apps", "delete", &first.client_id])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&first.client_id));

    // The database file holds no client secret.
    drop(server.command(&["apps", "list"]).output().unwrap());
    let mut database = Vec::new();
    for entry in std::fs::read_dir(server.dir()).unwrap() {
        database.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for (_, rows) in common::database_contents(server.database_url()) {
        database.extend(rows);
    }
    assert!(!database.is_empty());
    let database = String::from_utf8_lossy(&database);
    assert!(!database.contains(second.client_secret.as_str()));
}

#[tokio::test]
async fn an_unreachable_postgres_database_is_a_clear_error_without_its_password() {
    // Nothing listens on port 1 of the loopback.
    let output = std::process::Command::new(common::binary())
        .args([
            "apps",
            "list",
            "--database",
            "postgres://iothubgdr:hunter2-secret@127.0.0.1:1/iothubgdr",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the PostgreSQL database"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
    let output = std::process::Command::new(common::binary())
        .args(["apps", "list", "--database", "mysql://localhost/x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("sqlite:// or postgres://"));
}

#[tokio::test]
async fn every_process_on_one_database_accepts_the_same_tokens() {
    let first = TestServer::start();
    let token = first.tenant_token("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let second = TestServer::start_on(dir, first.database_url().to_owned(), &[]);
    let answer = second
        .client()
        .get(second.url_of("/archivist/v2/locations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn json_logs_flags_from_env_and_graceful_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("fresh").join("data");
    // The database comes from IOTHUBGDR_DATA_DIR; the harness's --database is overridden.
    let mut child = std::process::Command::new(common::binary())
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .env("IOTHUBGDR_DATA_DIR", &data_dir)
        .env("IOTHUBGDR_TOKEN_TTL", "2m")
        .env_remove("RUST_LOG")
        .env_remove("IOTHUBGDR_DATABASE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first_line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first_line).unwrap();
    let url = first_line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();
    assert!(
        data_dir.join("iothubgdr.db").exists(),
        "database created in the data dir"
    );

    let output = std::process::Command::new(common::binary())
        .args(["apps", "create", "--display-name", "ci"])
        .env("IOTHUBGDR_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    let app: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(app["tenant"], "default");
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/archivist/iam/v1/appidp/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app["client_id"].as_str().unwrap()),
            ("client_secret", app["client_secret"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["expires_in"], 120);

    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(lines
        .iter()
        .any(|line| line["message"] == "SIGTERM received, shutting down"));
    assert!(!logs.contains(app["client_secret"].as_str().unwrap()));
    assert!(!logs.contains(answer["access_token"].as_str().unwrap()));
}

#[tokio::test]
async fn ctrl_c_right_after_the_ready_line_stops_the_server_cleanly() {
    // The first stdout line is printed only once SIGINT/SIGTERM are handled, so a signal
    // sent the moment it appears is handled, never the default "die at once".
    for signal in ["INT", "TERM"] {
        let mut server = TestServer::start();
        let status = if signal == "INT" {
            server.interrupt()
        } else {
            server.terminate()
        };
        assert!(status.success(), "SIG{signal}: {status}");
        // `interrupt`/`terminate` return once the pipes closed: the last line is there.
        let logs = server.logs();
        assert!(
            logs.contains(&format!("SIG{signal} received, shutting down")),
            "{logs}"
        );
        assert!(logs.contains("stopped"), "{logs}");
    }
}
