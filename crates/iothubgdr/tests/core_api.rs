//! The Archivist core over HTTP, against the real binary: tokens, tenants, locations,
//! assets, paging and every validation error.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::TestServer;
use iothubgdr_auth::{SigningKey, TokenService};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Asserts the runtimeError shape and returns its message.
async fn runtime_error(answer: reqwest::Response, status: StatusCode, code: i64) -> String {
    assert_eq!(answer.status(), status);
    let body: Value = answer.json().await.expect("runtimeError JSON");
    assert_eq!(body["code"], json!(code), "{body}");
    assert_eq!(body["details"], json!([]), "{body}");
    body["message"].as_str().expect("message").to_owned()
}

async fn post_location(server: &TestServer, token: &str, body: &Value) -> reqwest::Response {
    server
        .client()
        .post(server.url_of("/archivist/v2/locations"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(server: &TestServer, token: &str, path: &str) -> reqwest::Response {
    server
        .client()
        .get(server.url_of(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The server's signing key, read from its database.
async fn server_key(server: &TestServer) -> SigningKey {
    let store = common::open_store(server.database_url()).await;
    let stored = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|key| key.retired_at.is_none())
        .expect("a signing key");
    SigningKey::new(stored.kid, stored.key).unwrap()
}

/// A key-holder's view: a token service with the server's key.
async fn forger(server: &TestServer) -> TokenService {
    TokenService::new(&server_key(server).await, &[], Duration::from_secs(60))
}

/// A JWT built by hand: base64url header and claims, and an HMAC-SHA256 signature with
/// `key` or an empty one.
fn hand_built(header: &str, claims: &str, key: Option<&[u8]>) -> String {
    use hmac::{Hmac, Mac};
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = match key {
        Some(key) => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(signed.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signed}.{signature}")
}

#[tokio::test]
async fn token_issue_and_every_rejection() {
    let server = TestServer::start_with(&["--token-ttl", "90s"]);
    let app = server.create_test_app("acme");

    let answer = server
        .request_token(&app.client_id, &app.client_secret)
        .await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 90);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&server, &token, "/archivist/v2/locations")
            .await
            .status(),
        200
    );

    // Wrong secret, unknown client: 401 with the same message.
    let wrong = server.request_token(&app.client_id, "not-the-secret").await;
    let wrong_message = runtime_error(wrong, StatusCode::UNAUTHORIZED, 16).await;
    let unknown = server
        .request_token(&uuid::Uuid::new_v4().to_string(), &app.client_secret)
        .await;
    assert_eq!(
        runtime_error(unknown, StatusCode::UNAUTHORIZED, 16).await,
        wrong_message
    );

    // Wrong grant type and missing fields: 400 naming the field.
    let client = server.client();
    let token_url = server.url_of("/archivist/iam/v1/appidp/token");
    let bad_grant = client
        .post(&token_url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", &app.client_id),
            ("client_secret", &app.client_secret),
        ])
        .send()
        .await
        .unwrap();
    assert!(runtime_error(bad_grant, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("grant_type"));
    let no_secret = client
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app.client_id),
        ])
        .send()
        .await
        .unwrap();
    assert!(runtime_error(no_secret, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("client_secret"));

    let locations = "/archivist/v2/locations";
    // No header, a malformed header, garbage.
    let none = client.get(server.url_of(locations)).send().await.unwrap();
    runtime_error(none, StatusCode::UNAUTHORIZED, 16).await;
    let basic = client
        .get(server.url_of(locations))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    runtime_error(basic, StatusCode::UNAUTHORIZED, 16).await;
    runtime_error(
        get(&server, "garbage", locations).await,
        StatusCode::UNAUTHORIZED,
        16,
    )
    .await;

    // An altered signature.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut altered: Vec<char> = signature.chars().collect();
    altered[10] = if altered[10] == 'A' { 'B' } else { 'A' };
    let altered = format!("{signed}.{}", altered.into_iter().collect::<String>());
    runtime_error(
        get(&server, &altered, locations).await,
        StatusCode::UNAUTHORIZED,
        16,
    )
    .await;

    // Tokens built by hand (no JWT library: it could not even write `alg: none`) from the
    // claims of the real token. The control, signed by hand with the server's key, is
    // accepted: each refusal after it is about the signature or the algorithm alone.
    let key = server_key(&server).await;
    let claims = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let claims = String::from_utf8(claims).unwrap();
    // Headers name the server's key id, so each refusal is about the algorithm or the
    // signature, not an unknown key.
    let hs256 = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, key.kid());
    let hs256 = hs256.as_str();
    let none = format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, key.kid());
    let none = none.as_str();
    let control = hand_built(hs256, &claims, Some(key.as_bytes()));
    assert_eq!(get(&server, &control, locations).await.status(), 200);
    let stranger_key = SigningKey::generate();
    for (what, forged) in [
        ("alg none, empty signature", hand_built(none, &claims, None)),
        (
            "alg none, no signature part",
            hand_built(none, &claims, None)
                .trim_end_matches('.')
                .to_owned(),
        ),
        (
            "alg none, the key's signature",
            hand_built(none, &claims, Some(key.as_bytes())),
        ),
        ("HS256, empty signature", hand_built(hs256, &claims, None)),
        (
            "HS256, signed with another key",
            hand_built(hs256, &claims, Some(stranger_key.as_bytes())),
        ),
    ] {
        let answer = get(&server, &forged, locations).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{what}");
        runtime_error(answer, StatusCode::UNAUTHORIZED, 16).await;
    }

    // Signed with another key by the library, with this app's real client id and tenant.
    let stranger = TokenService::new(&stranger_key, &[], Duration::from_secs(60));
    let foreign = stranger.issue(&app.client_id, app.tenant_id()).unwrap();
    runtime_error(
        get(&server, foreign.access_token.expose(), locations).await,
        StatusCode::UNAUTHORIZED,
        16,
    )
    .await;

    // Expired (signed with the real key, expired 2 minutes ago).
    let forger = forger(&server).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = forger
        .issue_at(&app.client_id, app.tenant_id(), now - 300, now - 120)
        .unwrap();
    let message = runtime_error(
        get(&server, expired.expose(), locations).await,
        StatusCode::UNAUTHORIZED,
        16,
    )
    .await;
    assert!(message.contains("expired"), "{message}");
    // The real key with a valid token works, so the rejection above was the expiry.
    let fresh = forger
        .issue_at(&app.client_id, app.tenant_id(), now, now + 60)
        .unwrap();
    assert_eq!(get(&server, fresh.expose(), locations).await.status(), 200);

    // A real key but an app that does not exist, or the wrong tenant for the app.
    let ghost = forger
        .issue_at("no-such-app", app.tenant_id(), now, now + 60)
        .unwrap();
    runtime_error(
        get(&server, ghost.expose(), locations).await,
        StatusCode::UNAUTHORIZED,
        16,
    )
    .await;
    let other_tenant = forger
        .issue_at(&app.client_id, uuid::Uuid::new_v4(), now, now + 60)
        .unwrap();
    runtime_error(
        get(&server, other_tenant.expose(), locations).await,
        StatusCode::UNAUTHORIZED,
        16,
    )
    .await;

    // A deleted app's tokens stop working at once.
    let deleted = server
        .command(&["apps", "delete", &app.client_id])
        .output()
        .unwrap();
    assert!(deleted.status.success());
    runtime_error(
        get(&server, &token, locations).await,
        StatusCode::UNAUTHORIZED,
        16,
    )
    .await;
    let after_delete = server
        .request_token(&app.client_id, &app.client_secret)
        .await;
    runtime_error(after_delete, StatusCode::UNAUTHORIZED, 16).await;

    // Neither the token, nor the secret, nor the forged tokens reach the logs.
    let logs = server.logs();
    assert!(logs.contains("token issued"), "logs are captured");
    for secret in [
        token.as_str(),
        app.client_secret.as_str(),
        altered.as_str(),
        fresh.expose(),
        signature,
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}

#[tokio::test]
async fn locations_create_get_list_and_tenant_isolation() {
    let server = TestServer::start();
    let mine = server.tenant_token("mine").await;
    let theirs = server.tenant_token("theirs").await;

    let answer = post_location(
        &server,
        &mine,
        &json!({
            "display_name": "Cambridge depot",
            "description": "north gate",
            "latitude": 52.2,
            "longitude": 0.12,
            "attributes": {"site": "cam", "floor": "2"}
        }),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let created: Value = answer.json().await.unwrap();
    let identity = created["identity"].as_str().unwrap().to_owned();
    let id = identity
        .strip_prefix("locations/")
        .expect("locations/ prefix");
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(created["display_name"], "Cambridge depot");
    assert_eq!(created["latitude"], 52.2);
    assert_eq!(created["attributes"]["site"], "cam");

    let fetched: Value = get(&server, &mine, &format!("/archivist/v2/{identity}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);

    // Another tenant: 404, as if it did not exist, in lists too.
    let message = runtime_error(
        get(&server, &theirs, &format!("/archivist/v2/{identity}")).await,
        StatusCode::NOT_FOUND,
        5,
    )
    .await;
    assert!(message.contains(id), "{message}");
    let their_list: Value = get(&server, &theirs, "/archivist/v2/locations")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(their_list["locations"], json!([]));

    // Filters.
    post_location(
        &server,
        &mine,
        &json!({"display_name": "Other", "attributes": {"site": "ely"}}),
    )
    .await;
    let by_name: Value = get(
        &server,
        &mine,
        "/archivist/v2/locations?display_name=Cambridge%20depot",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_name["locations"].as_array().unwrap().len(), 1);
    assert_eq!(by_name["locations"][0]["identity"], identity.as_str());
    let by_attribute: Value = get(
        &server,
        &mine,
        "/archivist/v2/locations?attributes.site=ely",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_attribute["locations"][0]["display_name"], "Other");
    let none: Value = get(
        &server,
        &mine,
        "/archivist/v2/locations?attributes.site=ely&display_name=Cambridge%20depot",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(none["locations"], json!([]));
    assert!(none.get("next_page_token").is_none());
}

#[tokio::test]
async fn validation_errors_name_the_field_and_change_nothing() {
    let server = TestServer::start();
    let token = server.tenant_token("acme").await;
    let client = server.client();
    let url = server.url_of("/archivist/v2/locations");

    let malformed = client
        .post(&url)
        .bearer_auth(&token)
        .body("{\"display_name\": ")
        .send()
        .await
        .unwrap();
    assert!(runtime_error(malformed, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("JSON"));
    let empty = client.post(&url).bearer_auth(&token).send().await.unwrap();
    runtime_error(empty, StatusCode::BAD_REQUEST, 3).await;
    let missing = post_location(&server, &token, &json!({"description": "no name"})).await;
    assert!(runtime_error(missing, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("display_name"));
    let wrong_type = post_location(&server, &token, &json!({"display_name": 5})).await;
    assert!(runtime_error(wrong_type, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("display_name"));
    let unknown_field = post_location(
        &server,
        &token,
        &json!({"display_name": "x", "colour": "red"}),
    )
    .await;
    assert!(runtime_error(unknown_field, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("colour"));
    let long = "a".repeat(1025);
    for body in [
        json!({"display_name": long}),
        json!({"display_name": "x", "description": long}),
        json!({"display_name": "x", "attributes": {"site": long}}),
    ] {
        let answer = post_location(&server, &token, &body).await;
        let message = runtime_error(answer, StatusCode::BAD_REQUEST, 3).await;
        assert!(message.contains("1024"), "{message}");
    }
    let exactly_1024 =
        post_location(&server, &token, &json!({"display_name": "a".repeat(1024)})).await;
    assert_eq!(exactly_1024.status(), 200);
    let out_of_range = post_location(
        &server,
        &token,
        &json!({"display_name": "x", "latitude": 91.0}),
    )
    .await;
    assert!(runtime_error(out_of_range, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("latitude"));

    // Over 1 MiB: 413.
    let huge = json!({"display_name": "x", "description": "d".repeat(1024 * 1024 + 10)});
    let too_large = post_location(&server, &token, &huge).await;
    runtime_error(too_large, StatusCode::PAYLOAD_TOO_LARGE, 8).await;

    // Unknown identities: 404 naming them.
    let unknown = uuid::Uuid::new_v4();
    let message = runtime_error(
        get(
            &server,
            &token,
            &format!("/archivist/v2/locations/{unknown}"),
        )
        .await,
        StatusCode::NOT_FOUND,
        5,
    )
    .await;
    assert!(message.contains(&unknown.to_string()));
    let message = runtime_error(
        get(&server, &token, "/archivist/v2/assets/not-a-uuid").await,
        StatusCode::NOT_FOUND,
        5,
    )
    .await;
    assert!(message.contains("not-a-uuid"));

    // Paging parameters.
    for query in [
        "page_token=garbled!!",
        "page_token=e30",
        "page_size=0",
        "page_size=abc",
        "page_size=100000",
        "colour=red",
    ] {
        let answer = get(&server, &token, &format!("/archivist/v2/locations?{query}")).await;
        runtime_error(answer, StatusCode::BAD_REQUEST, 3).await;
    }

    // Unknown route, wrong method.
    runtime_error(
        get(&server, &token, "/archivist/v2/nothing-here").await,
        StatusCode::NOT_FOUND,
        5,
    )
    .await;
    let wrong_method = client
        .delete(server.url_of("/archivist/v2/locations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);

    // None of the bad requests created anything: only the 1024-character one exists.
    let answer = client
        .get(&url)
        .bearer_auth(&token)
        .header("X-Request-Total-Count", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-total-count"], "1");
}

#[tokio::test]
async fn paging_250_locations_sees_each_once_while_inserting() {
    let server = TestServer::start();
    let token = server.tenant_token("acme").await;
    let mut existing = HashSet::new();
    for n in 0..250 {
        let answer = post_location(
            &server,
            &token,
            &json!({"display_name": format!("loc-{n}"), "attributes": {"batch": "first"}}),
        )
        .await;
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        existing.insert(body["identity"].as_str().unwrap().to_owned());
    }

    // Writers keep inserting while the reader pages.
    let writer = {
        let client = server.client();
        let url = server.url_of("/archivist/v2/locations");
        let token = token.clone();
        tokio::spawn(async move {
            for n in 0..60 {
                let answer = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"display_name": format!("late-{n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200);
            }
        })
    };

    let client = server.client();
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut url = server.url_of("/archivist/v2/locations?page_size=100&attributes.batch=first");
    loop {
        let answer = client
            .get(&url)
            .bearer_auth(&token)
            .header("X-Request-Total-Count", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        if pages == 0 {
            assert_eq!(answer.headers()["x-total-count"], "250");
        }
        let body: Value = answer.json().await.unwrap();
        pages += 1;
        for location in body["locations"].as_array().unwrap() {
            seen.push(location["identity"].as_str().unwrap().to_owned());
        }
        match body.get("next_page_token").and_then(Value::as_str) {
            // Later pages send the token alone, as Archivist clients do.
            Some(next) if !next.is_empty() => {
                url = server.url_of(&format!(
                    "/archivist/v2/locations?page_size=100&page_token={next}"
                ));
            }
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.await.unwrap();
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    let unique: HashSet<_> = seen.into_iter().collect();
    assert_eq!(unique, existing);

    // Unfiltered, token-only paging while more inserts run: no location twice, and every
    // location that existed before the first page (250 + 60) is seen.
    let mut all = HashSet::new();
    let mut total_rows = 0;
    let mut url = server.url_of("/archivist/v2/locations?page_size=100");
    let start_total: usize = 310;
    let late_writer = {
        let client = server.client();
        let url = server.url_of("/archivist/v2/locations");
        let token = token.clone();
        tokio::spawn(async move {
            for n in 0..30 {
                client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"display_name": format!("later-{n}")}))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    loop {
        let body: Value = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = body["locations"].as_array().unwrap();
        total_rows += items.len();
        for location in items {
            all.insert(location["identity"].as_str().unwrap().to_owned());
        }
        match body.get("next_page_token").and_then(Value::as_str) {
            Some(next) => {
                url = server.url_of(&format!("/archivist/v2/locations?page_token={next}"))
            }
            None => break,
        }
    }
    late_writer.await.unwrap();
    assert_eq!(all.len(), total_rows, "no location twice");
    assert!(
        total_rows >= start_total,
        "every location that existed was seen"
    );
    assert!(existing.is_subset(&all));
}

#[tokio::test]
async fn assets_create_get_filter_and_shape() {
    let server = TestServer::start();
    let token = server.tenant_token("acme").await;
    let other = server.tenant_token("other").await;
    let client = server.client();
    let url = server.url_of("/archivist/v2/assets");
    let mut identities = Vec::new();
    for (name, colour, kind) in [
        ("a", "red", "pump"),
        ("b", "red", "valve"),
        ("c", "blue", "pump"),
    ] {
        let answer = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({
                "behaviours": ["RecordEvidence", "Attachments"],
                "attributes": {"arc_display_name": name, "colour": colour, "kind": kind, "size": 3}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let asset: Value = answer.json().await.unwrap();
        identities.push(asset["identity"].as_str().unwrap().to_owned());
        assert!(asset["identity"].as_str().unwrap().starts_with("assets/"));
        assert_eq!(
            asset["behaviours"],
            json!(["RecordEvidence", "Attachments"])
        );
        assert_eq!(asset["attributes"]["colour"], colour);
        assert_eq!(asset["confirmation_status"], "CONFIRMED");
        assert_eq!(asset["tracked"], "TRACKED");
        assert_eq!(asset["storage_integrity"], "TENANT_STORAGE");
        assert_eq!(asset["proof_mechanism"], "SIMPLE_HASH");
        assert_eq!(asset["public"], false);
        assert!(asset["tenant_identity"]
            .as_str()
            .unwrap()
            .starts_with("tenant/"));
        let at_time = asset["at_time"].as_str().unwrap();
        assert!(at_time.ends_with('Z') && at_time.len() == 20, "{at_time}");
        let fetched: Value = get(
            &server,
            &token,
            &format!("/archivist/v2/{}", identities.last().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(fetched, asset);
    }
    let red_pumps: Value = get(
        &server,
        &token,
        "/archivist/v2/assets?attributes.colour=red&attributes.kind=pump",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(red_pumps["assets"].as_array().unwrap().len(), 1);
    assert_eq!(
        red_pumps["assets"][0]["attributes"]["arc_display_name"],
        "a"
    );
    let red: Value = get(
        &server,
        &token,
        "/archivist/v2/assets?attributes.colour=red&page_size=1",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        red["assets"][0]["attributes"]["arc_display_name"], "b",
        "newest first"
    );
    let next = red["next_page_token"].as_str().unwrap();
    let red2: Value = get(
        &server,
        &token,
        &format!("/archivist/v2/assets?page_token={next}&page_size=1"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(red2["assets"][0]["attributes"]["arc_display_name"], "a");
    assert!(red2.get("next_page_token").is_none(), "{red2}");
    // A token with different filters next to it is refused; a locations token on assets too.
    let mixed = get(
        &server,
        &token,
        &format!("/archivist/v2/assets?page_token={next}&attributes.colour=blue"),
    )
    .await;
    runtime_error(mixed, StatusCode::BAD_REQUEST, 3).await;
    let cross = get(
        &server,
        &token,
        &format!("/archivist/v2/locations?page_token={next}"),
    )
    .await;
    runtime_error(cross, StatusCode::BAD_REQUEST, 3).await;

    // Other tenants see nothing.
    runtime_error(
        get(&server, &other, &format!("/archivist/v2/{}", identities[0])).await,
        StatusCode::NOT_FOUND,
        5,
    )
    .await;
    let theirs: Value = get(&server, &other, "/archivist/v2/assets")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["assets"], json!([]));

    let bad = client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"behaviours": "RecordEvidence"}))
        .send()
        .await
        .unwrap();
    assert!(runtime_error(bad, StatusCode::BAD_REQUEST, 3)
        .await
        .contains("behaviours"));
}
