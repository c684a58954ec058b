//! Fault injection: throttling, quotas, server errors, dropped connections.
mod common;

use std::time::Duration;

use common::{config, Hub};
use iothub_emulator::Faults;
use serde_json::Value;

#[tokio::test]
async fn every_kth_query_is_throttled_with_retry_after() {
    let hub = Hub::start(config(100, 1)).await;
    hub.emulator.set_faults(Faults {
        throttle_every: Some(3),
        retry_after: Duration::from_secs(2),
        ..Default::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..9 {
        let response = hub
            .query_page("SELECT * FROM devices", Some(10), None)
            .await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "2");
            let body: Value = response.json().await.unwrap();
            assert!(body["Message"]
                .as_str()
                .unwrap()
                .starts_with("ErrorCode:ThrottlingException;"));
        }
    }
    assert_eq!(statuses, vec![200, 200, 429, 200, 200, 429, 200, 200, 429]);
    assert_eq!(hub.emulator.stats().throttled, 3);
    assert_eq!(hub.emulator.stats().queries_served, 6);
}

#[tokio::test]
async fn a_query_quota_throttles_until_the_minute_rolls() {
    let hub = Hub::start(config(100, 1)).await;
    hub.emulator.set_faults(Faults {
        queries_per_minute: Some(iothub_emulator::QUERIES_PER_MINUTE_PER_UNIT_S1),
        ..Default::default()
    });
    for _ in 0..20 {
        assert_eq!(
            hub.query_page("SELECT * FROM devices", Some(5), None)
                .await
                .status(),
            200
        );
    }
    let response = hub.query_page("SELECT * FROM devices", Some(5), None).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(hub.emulator.stats().quota_throttled, 1);
}

#[tokio::test]
async fn server_errors_follow_the_rate_and_the_seed() {
    let run = |seed: u64| async move {
        let hub = Hub::start(config(10, seed)).await;
        hub.emulator.set_faults(Faults {
            server_error_rate: 0.3,
            ..Default::default()
        });
        let mut statuses = Vec::new();
        for _ in 0..100 {
            statuses.push(
                hub.query_page("SELECT * FROM devices", Some(5), None)
                    .await
                    .status()
                    .as_u16(),
            );
        }
        (statuses, hub.emulator.stats())
    };
    let (a, stats) = run(4).await;
    let (b, _) = run(4).await;
    assert_eq!(a, b, "the same seed injects the same faults");
    let errors = a.iter().filter(|s| **s == 500 || **s == 503).count();
    assert!(
        (10..=50).contains(&errors),
        "{errors} errors of 100 at rate 0.3"
    );
    assert!(a.iter().all(|s| [200, 500, 503].contains(s)));
    assert_eq!(stats.server_errors as usize, errors);
}

#[tokio::test]
async fn dropped_connections_get_no_answer() {
    let hub = Hub::start(config(10, 2)).await;
    hub.emulator.set_faults(Faults {
        drop_rate: 1.0,
        ..Default::default()
    });
    let result = hub
        .client
        .post(hub.url("/devices/query"))
        .header("authorization", hub.token())
        .json(&serde_json::json!({"query": "SELECT * FROM devices"}))
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a dropped connection, got {result:?}"
    );
    assert_eq!(hub.emulator.stats().dropped, 1);
    hub.emulator.set_faults(Faults {
        drop_rate: 0.5,
        ..Default::default()
    });
    let mut ok = 0;
    let mut dropped = 0;
    for _ in 0..40 {
        match hub.query_page_result().await {
            Ok(status) => {
                assert_eq!(status, 200);
                ok += 1
            }
            Err(_) => dropped += 1,
        }
    }
    assert!(ok > 5 && dropped > 5, "{ok} answered, {dropped} dropped");
}

#[tokio::test]
async fn latency_is_added() {
    let hub = Hub::start(config(10, 2)).await;
    hub.emulator.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    assert_eq!(
        hub.query_page("SELECT * FROM devices", None, None)
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
}

trait QueryResult {
    async fn query_page_result(&self) -> Result<u16, reqwest::Error>;
}

impl QueryResult for Hub {
    async fn query_page_result(&self) -> Result<u16, reqwest::Error> {
        self.client
            .post(self.url("/devices/query"))
            .header("authorization", self.token())
            .json(&serde_json::json!({"query": "SELECT * FROM devices"}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    }
}

#[tokio::test]
async fn a_drop_closes_an_http1_keep_alive_connection_and_the_next_one_is_served() {
    let hub = Hub::start(config(10, 2)).await;
    let client = reqwest::Client::builder()
        .http1_only()
        .add_root_certificate(
            reqwest::Certificate::from_pem(hub.emulator.ca_cert_pem().as_bytes()).unwrap(),
        )
        .resolve(&hub.emulator.host_name(), hub.emulator.addr())
        .build()
        .unwrap();
    let send = || {
        client
            .post(hub.url("/devices/query"))
            .header("authorization", hub.token())
            .json(&serde_json::json!({"query": "SELECT * FROM devices"}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    hub.emulator.set_faults(Faults {
        drop_rate: 1.0,
        ..Default::default()
    });
    assert!(send().await.is_err());
    hub.emulator.set_faults(Faults::default());
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(hub.emulator.stats().dropped, 1);
}
