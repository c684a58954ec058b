//! The HTTP edge against the real binary: slow clients are cut off, metric labels come from
//! a closed set, `OPTIONS` and 405 name the allowed methods, HTTPS is served from a
//! certificate and key, and rate limits keep one tenant (or one token client) from crowding
//! out the others.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::Value;

fn address_of(server: &TestServer) -> String {
    server
        .url()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_owned()
}

#[test]
fn a_half_sent_request_head_is_cut_off() {
    let server = TestServer::start_with(&["--header-read-timeout", "2s"]);
    let mut stream = TcpStream::connect(address_of(&server)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    // The server closes the connection (possibly after a 408): reading ends, never times out.
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!("the connection was kept open: {err}"),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "cut off too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "cut off too late: {waited:?}"
    );

    // A client that sends its head in time is served as usual.
    let mut stream = TcpStream::connect(address_of(&server)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The series of a metrics text: every sample line without its value.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            line.rsplit_once(' ')
                .map(|(name, _)| name)
                .unwrap_or(line)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn unknown_methods_leave_metrics_the_same_size() {
    let server = TestServer::start();
    let client = server.client();
    let metrics = || async {
        client
            .get(server.url_of("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let made_up =
        |i: usize| Method::from_bytes(format!("M{i}{}", "X".repeat(2000)).as_bytes()).unwrap();
    // One made-up method on each path kind first, so the `other` series exist.
    for path in ["/archivist/v2/locations", "/no/such/path"] {
        client
            .request(made_up(0), server.url_of(path))
            .send()
            .await
            .unwrap();
    }
    metrics().await;
    let before = metrics().await;
    for i in 1..=50 {
        let path = if i % 2 == 0 {
            "/archivist/v2/locations"
        } else {
            "/no/such/path"
        };
        let answer = client
            .request(made_up(i), server.url_of(path))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_client_error(), "{}", answer.status());
    }
    let after = metrics().await;
    assert_eq!(series(&before), series(&after), "new series appeared");
    assert!(
        after.len() < before.len() + 200,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    assert!(!after.contains("XXXXXXXX"));
    assert!(after.contains("method=\"other\""));
}

#[tokio::test]
async fn options_answers_with_allow_and_405_carries_allow() {
    let server = TestServer::start();
    let client = server.client();
    let allowed = |answer: &reqwest::Response| -> BTreeSet<String> {
        answer
            .headers()
            .get("allow")
            .expect("an Allow header")
            .to_str()
            .unwrap()
            .split(',')
            .map(|method| method.trim().to_owned())
            .collect()
    };
    // No token needed to ask what a path allows.
    let answer = client
        .request(Method::OPTIONS, server.url_of("/archivist/v2/locations"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let methods = allowed(&answer);
    for method in ["GET", "POST", "OPTIONS"] {
        assert!(methods.contains(method), "{methods:?}");
    }
    assert!(!methods.contains("DELETE"), "{methods:?}");

    let item = "/archivist/v2/iothubgdr/0190b6c2-8d2e-7000-8000-000000000000";
    let answer = client
        .request(Method::OPTIONS, server.url_of(item))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let methods = allowed(&answer);
    for method in ["GET", "DELETE", "OPTIONS"] {
        assert!(methods.contains(method), "{methods:?}");
    }
    assert!(!methods.contains("POST"), "{methods:?}");
    // `<uuid>:cancel` is the same route template but only takes POST.
    let cancel = format!("{item}:cancel");
    let answer = client
        .request(Method::OPTIONS, server.url_of(&cancel))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed(&answer),
        BTreeSet::from(["POST".to_owned(), "OPTIONS".to_owned()])
    );
    let token = server.tenant_token("allow").await;
    let answer = client
        .get(server.url_of(&cancel))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(allowed(&answer).contains("POST"));

    let answer = client
        .request(Method::PUT, server.url_of("/archivist/v2/locations"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    let methods = allowed(&answer);
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods:?}"
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], 12);

    // Unknown paths stay 404, whatever the method.
    let answer = client
        .request(Method::OPTIONS, server.url_of("/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn https_is_served_with_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).unwrap();
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let (client_id, secret) = server.create_app("tls");
    let answer = client
        .post(server.url_of("/archivist/iam/v1/appidp/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let token: Value = answer.json().await.unwrap();
    let answer = client
        .get(server.url_of("/archivist/v2/locations"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    // Plain HTTP on the TLS port gets no answer.
    let plain = format!("http://{}/healthz", address_of(&server));
    assert!(server.client().get(plain).send().await.is_err());

    // A key file that is not a key stops the server before it listens, naming the file.
    let output = server
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            cert_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cert.pem"), "{stderr}");
    assert!(!stderr.contains("BEGIN"), "{stderr}");
}

async fn assert_rate_limited(answer: reqwest::Response) {
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(
        answer.headers()["archivist-rate-limit-reset"],
        answer.headers()["retry-after"]
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], 8);
}

#[tokio::test]
async fn a_flooding_tenant_gets_429_while_another_tenant_is_served() {
    let server = TestServer::start_with(&["--rate-limit-tenant", "2"]);
    let flooder = server.tenant_token("flooder").await;
    let other = server.tenant_token("other").await;
    let client = server.client();
    let list = |token: String| {
        client
            .get(server.url_of("/archivist/v2/locations"))
            .bearer_auth(token)
            .send()
    };
    let mut refused = None;
    for _ in 0..60 {
        let answer = list(flooder.clone()).await.unwrap();
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(answer);
            break;
        }
        assert_eq!(answer.status(), StatusCode::OK);
    }
    assert_rate_limited(refused.expect("the flooding tenant was never refused")).await;
    assert_eq!(list(other.clone()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        list(flooder).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_token_endpoint_is_limited_per_client_and_per_address() {
    let server = TestServer::start_with(&[
        "--rate-limit-token-client",
        "3",
        "--rate-limit-token-address",
        "5",
    ]);
    let (a, a_secret) = server.create_app("a");
    let (b, b_secret) = server.create_app("b");
    for _ in 0..3 {
        assert_eq!(server.request_token(&a, &a_secret).await.status(), 200);
    }
    let refused = server.request_token(&a, &a_secret).await;
    assert_eq!(refused.headers()["cache-control"], "no-store");
    assert_rate_limited(refused).await;
    // Another client is still served: its own budget, and the address has one request left.
    assert_eq!(server.request_token(&b, &b_secret).await.status(), 200);
    assert_rate_limited(server.request_token(&b, &b_secret).await).await;
}

#[tokio::test]
async fn token_answers_are_never_cached() {
    let server = TestServer::start();
    let (client_id, secret) = server.create_app("cache");
    let issued = server.request_token(&client_id, &secret).await;
    assert_eq!(issued.status(), 200);
    assert_eq!(issued.headers()["cache-control"], "no-store");
    assert_eq!(issued.headers()["pragma"], "no-cache");
    let refused = server.request_token(&client_id, "wrong").await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn page_tokens_the_server_did_not_issue_are_refused() {
    use base64::Engine;
    let server = TestServer::start();
    let token = server.tenant_token("pages").await;
    let client = server.client();
    for i in 0..3 {
        let answer = client
            .post(server.url_of("/archivist/v2/locations"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"display_name": format!("place {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let list = |path: &str, page_token: &str| {
        client
            .get(server.url_of(path))
            .query(&[("page_size", "1"), ("page_token", page_token)])
            .bearer_auth(&token)
            .send()
    };
    let first: Value = list("/archivist/v2/locations", "")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issued = first["next_page_token"]
        .as_str()
        .expect("a next page")
        .to_owned();
    assert_eq!(
        list("/archivist/v2/locations", &issued)
            .await
            .unwrap()
            .status(),
        200
    );

    let (payload, signature) = issued.split_once('.').expect("payload.signature");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let edited_json = String::from_utf8(json.clone())
        .unwrap()
        .replace("\"b\":", "\"b\":9");
    let edited = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(edited_json);
    for forged in [
        format!("{edited}.{signature}"),
        payload.to_owned(),
        format!("{payload}."),
        format!("{payload}.{}", "A".repeat(43)),
        "not a token".to_owned(),
    ] {
        let answer = list("/archivist/v2/locations", &forged).await.unwrap();
        assert_eq!(answer.status(), 400, "{forged}");
        let body: Value = answer.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("page_token"));
    }
    // A real token of another list.
    assert_eq!(
        list("/archivist/v2/assets", &issued)
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn too_many_or_too_long_filters_are_refused() {
    let server = TestServer::start();
    let token = server.tenant_token("filters").await;
    let client = server.client();
    let list = |query: Vec<(String, String)>| {
        client
            .get(server.url_of("/archivist/v2/assets"))
            .query(&query)
            .bearer_auth(&token)
            .send()
    };
    let filters = |n: usize, len: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("attributes.a{i}"), "v".repeat(len)))
            .collect()
    };
    assert_eq!(list(filters(10, 10)).await.unwrap().status(), 200);
    let answer = list(filters(11, 10)).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("at most 10"),
        "{body}"
    );
    assert_eq!(list(filters(1, 1025)).await.unwrap().status(), 400);
    assert_eq!(list(filters(5, 1000)).await.unwrap().status(), 400);
    let long_name = vec![(format!("attributes.{}", "n".repeat(1025)), "v".to_owned())];
    assert_eq!(list(long_name).await.unwrap().status(), 400);
}
