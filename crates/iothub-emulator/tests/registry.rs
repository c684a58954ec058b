//! Identity registry and twin operations.
mod common;

use common::{config, Hub};
use serde_json::{json, Value};

#[tokio::test]
async fn create_get_update_delete_a_device() {
    let hub = Hub::start(config(3, 1)).await;
    let created: Value = {
        let response = hub
            .client
            .put(hub.url("/devices/sensor-1"))
            .header("authorization", hub.token())
            .json(&json!({"deviceId": "sensor-1", "status": "enabled",
                "authentication": {"type": "sas", "symmetricKey": {"primaryKey": null, "secondaryKey": null}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    };
    assert_eq!(created["deviceId"], "sensor-1");
    assert_eq!(created["authentication"]["type"], "sas");
    assert!(created["authentication"]["symmetricKey"]["primaryKey"].is_string());
    let etag = created["etag"].as_str().unwrap().to_string();

    let again = hub
        .client
        .put(hub.url("/devices/sensor-1"))
        .header("authorization", hub.token())
        .json(&json!({"deviceId": "sensor-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    let got: Value = hub
        .client
        .get(hub.url("/devices/sensor-1"))
        .header("authorization", hub.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, created);

    let stale = hub
        .client
        .put(hub.url("/devices/sensor-1"))
        .header("authorization", hub.token())
        .header("if-match", "\"bm90LWl0\"")
        .json(&json!({"deviceId": "sensor-1", "status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);

    let updated: Value = hub
        .client
        .put(hub.url("/devices/sensor-1"))
        .header("authorization", hub.token())
        .header("if-match", format!("\"{etag}\""))
        .json(&json!({"deviceId": "sensor-1", "status": "disabled", "statusReason": "test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["status"], "disabled");
    assert_ne!(updated["etag"], created["etag"]);

    let deleted = hub
        .client
        .delete(hub.url("/devices/sensor-1"))
        .header("authorization", hub.token())
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = hub
        .client
        .get(hub.url("/devices/sensor-1"))
        .header("authorization", hub.token())
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.unwrap();
    assert!(body["Message"]
        .as_str()
        .unwrap()
        .starts_with("ErrorCode:DeviceNotFound;"));
}

#[tokio::test]
async fn invalid_input_is_refused_and_changes_nothing() {
    let hub = Hub::start(config(3, 1)).await;
    for (path, body) in [
        ("/devices/has%20space", json!({})),
        ("/devices/ok-id", json!({"deviceId": "other-id"})),
        (
            "/devices/ok-id",
            json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "bm9wZQ=="}}}),
        ),
    ] {
        let response = hub
            .client
            .put(hub.url(path))
            .header("authorization", hub.token())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path} {body}");
    }
    let count: Value = hub
        .query_page("SELECT COUNT() AS numberOfDevices FROM devices", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(count, json!([{"numberOfDevices": 3}]));
}

#[tokio::test]
async fn twin_patch_merges_tags_and_desired_properties_and_bumps_versions() {
    let hub = Hub::start(config(3, 1)).await;
    let before: Value = hub
        .client
        .get(hub.url("/twins/device-000000"))
        .header("authorization", hub.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(before.get("authentication").is_none());
    let patched: Value = hub
        .client
        .patch(hub.url("/twins/device-000000"))
        .header("authorization", hub.token())
        .header("if-match", before["etag"].as_str().unwrap())
        .json(&json!({"tags": {"owner": "ops", "floor": null}, "properties": {"desired": {"mode": "eco"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["tags"]["owner"], "ops");
    assert!(patched["tags"].get("floor").is_none());
    assert_eq!(patched["tags"]["location"], before["tags"]["location"]);
    assert_eq!(patched["properties"]["desired"]["mode"], "eco");
    assert_eq!(
        patched["properties"]["desired"]["$version"]
            .as_u64()
            .unwrap(),
        before["properties"]["desired"]["$version"]
            .as_u64()
            .unwrap()
            + 1
    );
    assert_eq!(
        patched["version"].as_u64().unwrap(),
        before["version"].as_u64().unwrap() + 1
    );
    assert_ne!(patched["etag"], before["etag"]);

    let stale = hub
        .client
        .patch(hub.url("/twins/device-000000"))
        .header("authorization", hub.token())
        .header("if-match", before["etag"].as_str().unwrap())
        .json(&json!({"tags": {"owner": "someone-else"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);

    let (ids, _) = hub
        .query_all("SELECT * FROM devices WHERE tags.owner = 'ops'", 10)
        .await;
    assert_eq!(ids, vec!["device-000000"]);
}

#[tokio::test]
async fn bulk_operations_report_per_device_errors() {
    let hub = Hub::start(config(3, 1)).await;
    let ops: Vec<Value> = (0..50)
        .map(|i| {
            json!({"id": format!("bulk-{i:03}"), "importMode": "create",
            "authentication": {"type": "sas"}})
        })
        .collect();
    let response = hub
        .client
        .post(hub.url("/devices"))
        .header("authorization", hub.token())
        .json(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let result: Value = response.json().await.unwrap();
    assert_eq!(
        result,
        json!({"isSuccessful": true, "errors": [], "warnings": []})
    );

    let mixed = json!([
        {"id": "bulk-000", "importMode": "create"},
        {"id": "bulk-001", "importMode": "delete"},
        {"id": "device-000001", "importMode": "update", "status": "disabled"},
        {"id": "fresh", "importMode": "create"},
    ]);
    let response = hub
        .client
        .post(hub.url("/devices"))
        .header("authorization", hub.token())
        .json(&mixed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["isSuccessful"], false);
    assert_eq!(result["errors"].as_array().unwrap().len(), 1);
    assert_eq!(result["errors"][0]["deviceId"], "bulk-000");
    assert_eq!(result["errors"][0]["errorCode"], "DeviceAlreadyExists");

    let count: Value = hub
        .query_page("SELECT COUNT() AS numberOfDevices FROM devices", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(count, json!([{"numberOfDevices": 3 + 50 - 1 + 1}]));

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"id": format!("x{i}"), "importMode": "create"}))
        .collect();
    let response = hub
        .client
        .post(hub.url("/devices"))
        .header("authorization", hub.token())
        .json(&too_many)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_rejected_body_never_echoes_its_values() {
    let hub = Hub::start(config(1, 1)).await;
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3ODkwYWI=";
    let response = hub
        .client
        .put(hub.url("/devices/leaky"))
        .header("authorization", hub.token())
        .json(&json!({"deviceId": "leaky", "status": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("ErrorCode:ArgumentInvalid;"), "{text}");
}
