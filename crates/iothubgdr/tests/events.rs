//! The event routes end to end: create, get, list, filters, paging and signed page tokens,
//! immutability, other tenants; and the asset create body's `proof_mechanism` and `public`.

mod common;
mod history_support;

use common::TestServer;
use history_support::Api;
use reqwest::Method;
use serde_json::json;

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
