//! Device history end to end: the real server imports from the real emulator, the hub is
//! changed between imports through its own REST API (create, twin tags, status, delete,
//! delete and recreate), and each change must appear as exactly the event described.

mod common;
mod history_support;

use std::time::Duration;

use common::TestServer;
use history_support::{Api, HubAdmin};
use iothub_emulator::EmulatorConfig;
use serde_json::{json, Value};

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
