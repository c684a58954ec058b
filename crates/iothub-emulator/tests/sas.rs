//! The emulator accepts exactly the shared access signatures the hub would.
mod common;

use common::{config, in_an_hour, policy_key, sign, Hub};
use serde_json::Value;

async fn status_with(hub: &Hub, authorization: &str) -> (u16, Value) {
    let response = hub
        .client
        .get(hub.url("/twins/device-000001"))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_token_signed_with_the_owner_key_is_accepted() {
    let hub = Hub::start(config(5, 1)).await;
    let (status, twin) = status_with(&hub, &hub.token()).await;
    assert_eq!(status, 200);
    assert_eq!(twin["deviceId"], "device-000001");
}

#[tokio::test]
async fn bad_tokens_get_401_with_an_iothub_error_body() {
    let hub = Hub::start(config(5, 1)).await;
    let host = hub.emulator.host_name();
    let owner_key = policy_key(&hub.emulator, "iothubowner");
    let other_key = policy_key(&hub.emulator, "registryRead");
    let cases = [
        (
            "wrong key",
            sign(&host, &other_key, in_an_hour(), "iothubowner"),
        ),
        (
            "expired",
            sign(&host, &owner_key, 1_600_000_000, "iothubowner"),
        ),
        (
            "unknown policy",
            sign(&host, &owner_key, in_an_hour(), "nobody"),
        ),
        (
            "wrong hub",
            sign(
                "other.azure-devices.net",
                &owner_key,
                in_an_hour(),
                "iothubowner",
            ),
        ),
        ("no registry rights", hub.token_for("service")),
        ("not a SAS", "Bearer abc".to_string()),
    ];
    for (case, authorization) in cases {
        let (status, body) = status_with(&hub, &authorization).await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(
            body["Message"], "ErrorCode:IotHubUnauthorizedAccess;Unauthorized",
            "{case}"
        );
        assert!(body["ExceptionMessage"]
            .as_str()
            .unwrap()
            .starts_with("Tracking ID:"));
    }
    let missing = hub
        .client
        .get(hub.url("/twins/device-000001"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(hub.emulator.stats().unauthorized, 7);
}

#[tokio::test]
async fn read_only_policies_cannot_write() {
    let hub = Hub::start(config(5, 1)).await;
    let (status, _) = status_with(&hub, &hub.token_for("registryRead")).await;
    assert_eq!(status, 200);
    let response = hub
        .client
        .put(hub.url("/devices/new-one"))
        .header("authorization", hub.token_for("registryRead"))
        .json(&serde_json::json!({"deviceId": "new-one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn the_host_and_port_the_caller_dialled_is_an_accepted_resource() {
    let hub = Hub::start(config(5, 1)).await;
    let addr = hub.emulator.addr();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(hub.emulator.ca_cert_pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let authority = format!("localhost:{}", addr.port());
    let token = sign(
        &authority,
        &policy_key(&hub.emulator, "iothubowner"),
        in_an_hour(),
        "iothubowner",
    );
    let response = client
        .get(format!(
            "https://{authority}/twins/device-000002?{}",
            common::API
        ))
        .header("authorization", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn policy_debug_output_redacts_the_key() {
    let policies = iothub_emulator::AccessPolicy::defaults(3);
    let text = format!("{policies:?}");
    assert!(!text.contains(&policies[0].primary_key));
    assert!(text.contains("<redacted>"));
}
