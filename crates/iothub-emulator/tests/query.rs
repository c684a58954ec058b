//! The twin query: paging, continuation tokens, filters and COUNT.
mod common;

use std::collections::HashSet;

use common::{config, Hub};
use iothub_emulator::EmulatorConfig;
use serde_json::{json, Value};

#[tokio::test]
async fn paging_returns_every_device_exactly_once_in_order() {
    let hub = Hub::start(config(1_234, 7)).await;
    let (ids, pages) = hub.query_all("SELECT * FROM devices", 100).await;
    assert_eq!(ids.len(), 1_234);
    assert_eq!(pages, 13);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
    assert_eq!(hub.emulator.stats().twins_served, 1_234);
}

#[tokio::test]
async fn twins_from_the_query_carry_no_keys_and_the_documented_fields() {
    let hub = Hub::start(config(20, 7)).await;
    let page: Vec<Value> = hub
        .query_page("SELECT * FROM devices", Some(20), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 20);
    for twin in &page {
        let text = twin.to_string();
        assert!(!text.contains("primaryKey"), "{text}");
        for field in [
            "deviceId",
            "etag",
            "deviceEtag",
            "status",
            "statusUpdateTime",
            "connectionState",
            "lastActivityTime",
            "cloudToDeviceMessageCount",
            "authenticationType",
            "x509Thumbprint",
            "version",
            "tags",
            "properties",
            "capabilities",
        ] {
            assert!(twin.get(field).is_some(), "{field} missing in {text}");
        }
        assert!(twin["properties"]["desired"]["$version"].is_u64());
        assert!(twin["properties"]["reported"]["$metadata"]["$lastUpdated"].is_string());
    }
    let edge = page
        .iter()
        .filter(|t| t["capabilities"]["iotEdge"] == true)
        .count();
    let disabled = page.iter().filter(|t| t["status"] == "disabled").count();
    assert!(edge < page.len() && disabled < page.len());
}

#[tokio::test]
async fn page_size_is_capped_at_the_hub_maximum_and_the_fault_cap() {
    let hub = Hub::start(config(500, 7)).await;
    let page: Vec<Value> = hub
        .query_page("SELECT * FROM devices", Some(1000), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page.len(),
        iothub_emulator::HUB_MAX_QUERY_PAGE_SIZE as usize
    );
    hub.emulator.set_faults(iothub_emulator::Faults {
        page_size_cap: Some(7),
        ..Default::default()
    });
    let page: Vec<Value> = hub
        .query_page("SELECT * FROM devices", Some(50), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 7);
}

#[tokio::test]
async fn where_filters_match_a_full_scan() {
    let hub = Hub::start(config(600, 11)).await;
    let (all, _) = hub.query_all("SELECT * FROM devices", 100).await;
    assert_eq!(all.len(), 600);
    let mut twins = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let response = hub
            .query_page("SELECT * FROM devices", Some(100), continuation.as_deref())
            .await;
        continuation = response
            .headers()
            .get("x-ms-continuation")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = response.json().await.unwrap();
        twins.extend(page);
        if continuation.is_none() {
            break;
        }
    }
    let expect = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        twins
            .iter()
            .filter(|t| pred(t))
            .map(|t| t["deviceId"].as_str().unwrap().to_string())
            .collect()
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "SELECT * FROM devices WHERE status = 'disabled'",
            expect(&|t| t["status"] == "disabled"),
        ),
        (
            "SELECT * FROM devices WHERE capabilities.iotEdge = true",
            expect(&|t| t["capabilities"]["iotEdge"] == true),
        ),
        (
            "SELECT * FROM devices WHERE tags.location = 'Oslo' AND status = 'enabled'",
            expect(&|t| t["tags"]["location"] == "Oslo" && t["status"] == "enabled"),
        ),
        (
            "SELECT * FROM devices WHERE tags.floor = 3",
            expect(&|t| t["tags"]["floor"] == 3),
        ),
        (
            "SELECT * FROM devices WHERE deviceId = 'device-000042'",
            vec!["device-000042".to_string()],
        ),
    ];
    for (query, expected) in cases {
        assert!(!expected.is_empty(), "{query} should match something");
        let (ids, _) = hub.query_all(query, 7).await;
        assert_eq!(ids, expected, "{query}");
        let count_query = query.replace("SELECT *", "SELECT COUNT() AS numberOfDevices");
        let count: Value = hub
            .query_page(&count_query, None, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            count,
            json!([{"numberOfDevices": expected.len()}]),
            "{count_query}"
        );
    }
}

#[tokio::test]
async fn continuation_stays_valid_while_devices_come_and_go() {
    let hub = Hub::start(config(300, 3)).await;
    let first = hub
        .query_page("SELECT * FROM devices", Some(100), None)
        .await;
    let token = first.headers()["x-ms-continuation"]
        .to_str()
        .unwrap()
        .to_string();
    let page: Vec<Value> = first.json().await.unwrap();
    assert_eq!(page.last().unwrap()["deviceId"], "device-000099");
    // Delete the next device and add one that sorts into the rest of the listing.
    let deleted = hub
        .client
        .delete(hub.url("/devices/device-000100"))
        .header("authorization", hub.token())
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let created = hub
        .client
        .put(hub.url("/devices/device-000150x"))
        .header("authorization", hub.token())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let mut ids = Vec::new();
    let mut continuation = Some(token);
    while let Some(token) = continuation {
        let response = hub
            .query_page("SELECT * FROM devices", Some(100), Some(&token))
            .await;
        continuation = response
            .headers()
            .get("x-ms-continuation")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = response.json().await.unwrap();
        ids.extend(
            page.iter()
                .map(|t| t["deviceId"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(ids[0], "device-000101");
    assert!(ids.contains(&"device-000150x".to_string()));
}

#[tokio::test]
async fn unsupported_queries_and_bad_tokens_get_400() {
    let hub = Hub::start(config(10, 3)).await;
    for query in [
        "SELECT deviceId FROM devices",
        "SELECT * FROM devices.modules",
        "DROP devices",
    ] {
        let response = hub.query_page(query, None, None).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["Message"].as_str().unwrap().starts_with("ErrorCode:"));
    }
    let response = hub
        .query_page("SELECT * FROM devices", None, Some("garbage!"))
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_hub() {
    let a = Hub::start(config(50, 99)).await;
    let b = Hub::start(config(50, 99)).await;
    let c = Hub::start(config(50, 100)).await;
    async fn page(hub: &Hub) -> Value {
        hub.query_page("SELECT * FROM devices", Some(50), None)
            .await
            .json::<Value>()
            .await
            .unwrap()
    }
    let (pa, pb, pc) = (page(&a).await, page(&b).await, page(&c).await);
    assert_eq!(pa, pb);
    assert_ne!(pa, pc);
    assert_eq!(
        a.emulator
            .iothub_connection_string()
            .split("HostName=")
            .nth(1),
        b.emulator
            .iothub_connection_string()
            .split("HostName=")
            .nth(1)
    );
    assert_ne!(
        a.emulator.iothub_connection_string(),
        c.emulator.iothub_connection_string()
    );
}

#[tokio::test]
async fn a_million_devices_start_instantly_and_count() {
    let hub = Hub::start(EmulatorConfig {
        devices: 1_000_000,
        ..EmulatorConfig::with_seed(5)
    })
    .await;
    let count: Value = hub
        .query_page("SELECT COUNT() AS numberOfDevices FROM devices", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(count, json!([{"numberOfDevices": 1_000_000}]));
    let token = {
        // Jump to the end with a token for the last-but-one device: continuation is O(log n).
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("emulator-v1:device-999998")
    };
    let page: Vec<Value> = hub
        .query_page("SELECT * FROM devices", None, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["deviceId"], "device-999999");
}

type IdFilter = Box<dyn Fn(&str) -> bool>;

async fn count_of(hub: &Hub, condition: &str) -> u64 {
    let body: Value = hub
        .query_page(
            &format!("SELECT COUNT() AS n FROM devices WHERE {condition}"),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    body[0]["n"].as_u64().unwrap()
}

#[tokio::test]
async fn device_id_ranges_and_startswith_page_and_count_their_part_only() {
    let hub = Hub::start(config(2_000, 7)).await;
    // Overlay devices inside and outside the seeded range, one of them deleted.
    hub.put_device("device-000100x", json!({})).await;
    hub.put_device("a-first", json!({})).await;
    hub.delete_device("device-000150").await;
    let (all, _) = hub.query_all("SELECT * FROM devices", 100).await;
    assert_eq!(all.len(), 2_001);

    let query =
        "SELECT * FROM devices WHERE deviceId >= 'device-000100' AND deviceId < 'device-000300'";
    let (ids, pages) = hub.query_all(query, 30).await;
    let expected: Vec<String> = all
        .iter()
        .filter(|id| id.as_str() >= "device-000100" && id.as_str() < "device-000300")
        .cloned()
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(ids.len(), 200);
    assert_eq!(pages, 7);
    assert_eq!(
        count_of(
            &hub,
            "deviceId >= 'device-000100' AND deviceId < 'device-000300'"
        )
        .await,
        200
    );
    // The other operators and STARTSWITH, each against a filter of the full list.
    let cases: [(&str, IdFilter); 6] = [
        ("deviceId < 'b'", Box::new(|id| id < "b")),
        ("deviceId <= 'device-000010'", Box::new(|id| id <= "device-000010")),
        ("deviceId > 'device-001990'", Box::new(|id| id > "device-001990")),
        ("devices.deviceId <> 'a-first' AND deviceId < 'device-000005'", Box::new(|id| id != "a-first" && id < "device-000005")),
        ("STARTSWITH(deviceId, 'device-0001')", Box::new(|id| id.starts_with("device-0001"))),
        ("STARTSWITH(deviceId, 'device-00010') AND status = 'enabled' AND deviceId != 'device-000101'", Box::new(|_| true)),
    ];
    for (condition, filter) in cases.iter().take(5) {
        let (ids, _) = hub
            .query_all(&format!("SELECT * FROM devices WHERE {condition}"), 100)
            .await;
        let expected: Vec<String> = all.iter().filter(|id| filter(id)).cloned().collect();
        assert_eq!(ids, expected, "{condition}");
        assert_eq!(
            count_of(&hub, condition).await,
            expected.len() as u64,
            "{condition}"
        );
    }
    let (mixed, _) = hub
        .query_all(&format!("SELECT * FROM devices WHERE {}", cases[5].0), 100)
        .await;
    assert!(!mixed.is_empty() && mixed.len() < 11);
    assert!(mixed
        .iter()
        .all(|id| id.starts_with("device-00010") && id != "device-000101"));
    assert_eq!(count_of(&hub, cases[5].0).await, mixed.len() as u64);
    // Empty and inverted ranges answer nothing rather than failing.
    assert_eq!(
        count_of(&hub, "deviceId >= 'z' AND deviceId < 'a'").await,
        0
    );
    let (none, _) = hub
        .query_all(
            "SELECT * FROM devices WHERE deviceId > 'x' AND deviceId <= 'x'",
            100,
        )
        .await;
    assert!(none.is_empty());
    // A double-quoted literal holds a quote; a comparison on anything but deviceId is refused.
    assert_eq!(count_of(&hub, "deviceId < \"a.'\"").await, 1);
    let refused = hub
        .query_page("SELECT * FROM devices WHERE status > 'a'", None, None)
        .await;
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn every_first_character_ids_cover_the_device_id_alphabet() {
    let hub = Hub::start(EmulatorConfig {
        devices: 800,
        id_style: iothub_emulator::IdStyle::EveryFirstCharacter,
        ..EmulatorConfig::with_seed(3)
    })
    .await;
    let (ids, _) = hub.query_all("SELECT * FROM devices", 100).await;
    assert_eq!(ids.len(), 800);
    let firsts: HashSet<char> = ids.iter().filter_map(|id| id.chars().next()).collect();
    assert_eq!(firsts.len(), 80);
    // Ids with a quote are served and filtered like any other.
    let quoted: Vec<&String> = ids.iter().filter(|id| id.starts_with('\'')).collect();
    assert_eq!(
        count_of(&hub, "STARTSWITH(deviceId, \"'\")").await,
        quoted.len() as u64
    );
    // A device id created with each special character the hub documents is accepted.
    hub.put_device("+#;x", json!({})).await;
}
