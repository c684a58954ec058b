//! Secrets at rest and in messages, against the real binary: the data folder is private and
//! the database files 0600; signing keys carry an id, rotate without logging anyone out and
//! are refused once retired; keys given in a file never reach the database; errors never
//! echo a value that could be a secret.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::TestServer;
use iothubgdr_store::Store;
use iothubgdr_store_sqlite::SqliteStore;
use serde_json::Value;

const CONNECTION_STRING: &str = "HostName=leaky.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0LWtleS1tYXRlcmlhbA==";

#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_is_0700_and_database_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("nested").join("data");
    let url = format!("sqlite://{}/iothubgdr.db", folder.display());
    let server = TestServer::start_on(dir, url, &[]);
    // Writes through the server, so the -wal and -shm files are in use.
    let token = server.tenant_token("files").await;
    let answer = server
        .client()
        .post(server.url_of("/archivist/v2/locations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"display_name": "somewhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&folder), 0o700);
    for name in ["iothubgdr.db", "iothubgdr.db-wal", "iothubgdr.db-shm"] {
        assert_eq!(mode(&folder.join(name)), 0o600, "{name}");
    }
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&json).unwrap();
    header["kid"].as_str().expect("a kid").to_owned()
}

fn run_json(server: &TestServer, args: &[&str]) -> Vec<Value> {
    let output = server.command(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn status_with(server: &TestServer, token: &str) -> u16 {
    server
        .client()
        .get(server.url_of("/archivist/v2/locations"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `check` for up to 20 s (servers re-read the keys every few seconds).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_a_retired_key_is_refused() {
    let server = TestServer::start();
    let (client_id, secret) = server.create_app("keys");
    let old_token = server.token(&client_id, &secret).await;
    let old_kid = kid_of(&old_token);

    let rotated = run_json(&server, &["keys", "rotate"]);
    let new_kid = rotated[0]["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let listed = run_json(&server, &["keys", "list"]);
    assert_eq!(listed.len(), 2);
    for key in &listed {
        let fields: Vec<&String> = key.as_object().unwrap().keys().collect();
        assert!(
            !fields
                .iter()
                .any(|field| field.contains("key") && *field != "kid"),
            "{key}"
        );
    }

    // The running server signs with the new key within seconds; old tokens keep working.
    let started = Instant::now();
    let new_token = loop {
        let token = server.token(&client_id, &secret).await;
        if kid_of(&token) == new_kid {
            break token;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server never signed with the rotated key"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status_with(&server, &old_token).await, 200);
    assert_eq!(status_with(&server, &new_token).await, 200);

    // The key that signs cannot be retired; the old one can, and its tokens are refused.
    let refused = server
        .command(&["keys", "retire", &new_kid])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rotate"));
    run_json(&server, &["keys", "retire", &old_kid]);
    eventually("the retired key's token is refused", || async {
        status_with(&server, &old_token).await == 401
    })
    .await;
    assert_eq!(status_with(&server, &new_token).await, 200);
}

#[tokio::test]
async fn keys_from_a_file_sign_tokens_and_never_reach_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let generated = std::process::Command::new(common::binary())
        .args(["keys", "generate"])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let line = String::from_utf8(generated.stdout).unwrap();
    let (kid, material) = line.trim().split_once(' ').unwrap();
    let keys_file = dir.path().join("token-keys");
    std::fs::write(&keys_file, &line).unwrap();

    let database = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/iothubgdr.db", database.path().display());
    let server = TestServer::start_on(
        database,
        url.clone(),
        &["--token-keys-file", keys_file.to_str().unwrap()],
    );
    let token = server.tenant_token("file-keys").await;
    assert_eq!(kid_of(&token), kid);
    assert_eq!(status_with(&server, &token).await, 200);
    let store = SqliteStore::connect(&url).await.unwrap();
    assert!(store.signing_keys().await.unwrap().is_empty());
    assert!(!server.logs().contains(material));

    // A malformed keys file stops the server, naming the line and not its content.
    std::fs::write(&keys_file, format!("{kid} not-base64-{material}\n")).unwrap();
    let output = server
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-keys-file",
            keys_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 1"), "{stderr}");
    assert!(!stderr.contains(material), "{stderr}");
}

#[tokio::test]
async fn errors_name_the_field_and_never_echo_a_secret() {
    let server = TestServer::start();
    let token = server.tenant_token("echo").await;
    let client = server.client();
    let post = |path: &str, body: String| {
        client
            .post(server.url_of(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases = [
        ("/archivist/v2/iothubgdr", format!("\"{CONNECTION_STRING}\"")),
        ("/archivist/v2/iothubgdr", format!("{{\"secret\": [\"{CONNECTION_STRING}\"]}}")),
        ("/archivist/v2/iothubgdr", format!("{{\"{CONNECTION_STRING}\": 1}}")),
        (
            "/archivist/v2/iothubgdr",
            format!("{{\"display_name\": \"x\", \"secret\": \"s\", \"arc_home_location_identity\": \"{CONNECTION_STRING}\"}}"),
        ),
        ("/archivist/v2/locations", format!("{{\"display_name\": 5, \"description\": {{\"a\": \"{CONNECTION_STRING}\"}}}}")),
        ("/archivist/v2/assets", format!("{{\"public\": \"{CONNECTION_STRING}\"}}")),
    ];
    for (path, body) in cases {
        let answer = post(path, body.clone()).await.unwrap();
        assert_eq!(answer.status(), 400, "{path} {body}");
        let text = answer.text().await.unwrap();
        assert!(!text.contains("SharedAccessKey"), "{path}: {text}");
        assert!(!text.contains("c2VjcmV0"), "{path}: {text}");
    }
    let answer = post(
        "/archivist/v2/iothubgdr",
        format!("\"{CONNECTION_STRING}\""),
    )
    .await
    .unwrap();
    let body: Value = answer.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("JSON object"), "{message}");

    // Identities in paths and unknown query parameters are not echoed either.
    let answer = client
        .get(server.url_of(&format!(
            "/archivist/v2/locations/{}",
            CONNECTION_STRING.replace(';', "%3B")
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert!(!answer.text().await.unwrap().contains("SharedAccessKey"));
    let answer = client
        .get(server.url_of("/archivist/v2/assets"))
        .query(&[(CONNECTION_STRING, "1")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(!answer.text().await.unwrap().contains("SharedAccessKey"));
    assert!(!server.logs().contains("c2VjcmV0LWtleS1tYXRlcmlhbA"));
}
