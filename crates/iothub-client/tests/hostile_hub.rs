//! The client against the emulator's hostile modes: each misbehaviour ends the read with a
//! clear error of the right kind, after a bounded number of requests, with no retry.

use std::time::Duration;

use iothub_client::{ClientOptions, ConnectionString, HubClient, HubError, HubErrorKind};
use iothub_emulator::{EmulatorConfig, Faults, Hostility, RunningEmulator};

async fn hostile(devices: u64, hostility: Hostility) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        faults: Faults {
            hostility,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

fn client(emulator: &RunningEmulator, idle: Duration) -> HubClient {
    let connection = ConnectionString::parse(&emulator.iothub_connection_string()).unwrap();
    HubClient::new(
        connection,
        ClientOptions {
            extra_root_ca_pem: Some(emulator.ca_cert_pem().into_bytes()),
            resolve: vec![(emulator.host_name(), emulator.addr())],
            retry_budget: Duration::from_secs(5),
            idle_timeout: idle,
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

/// Reads pages until an error, returning it and how many twins came before.
async fn read_until_error(client: &HubClient, reported: Option<u64>) -> (HubError, u64) {
    let mut pages = client.query_devices("SELECT * FROM devices");
    if let Some(reported) = reported {
        pages = pages.expecting(reported);
    }
    let mut twins = 0;
    loop {
        match pages.next_page().await {
            Ok(Some(page)) => twins += page.len() as u64,
            Ok(None) => panic!("the hostile hub's query ended after {twins} twins"),
            Err(error) => return (error, twins),
        }
    }
}

#[tokio::test]
async fn a_repeated_continuation_token_is_a_loop() {
    let emulator = hostile(1_000, Hostility::RepeatedContinuation).await;
    let (error, twins) = read_until_error(&client(&emulator, Duration::from_secs(60)), None).await;
    assert!(
        matches!(error, HubError::ContinuationLoop { .. }),
        "{error}"
    );
    assert_eq!(twins, 100);
    assert_eq!(emulator.stats().queries_served, 2);
}

#[tokio::test]
async fn paging_far_past_the_reported_count_is_stopped() {
    let emulator = hostile(5_000, Hostility::ReportedCount(5)).await;
    let client = client(&emulator, Duration::from_secs(60));
    assert_eq!(client.count_devices().await.unwrap(), 5);
    let (error, twins) = read_until_error(&client, Some(5)).await;
    assert!(
        matches!(error, HubError::Overshoot { reported: 5, .. }),
        "{error}"
    );
    assert!(twins <= iothub_client::overshoot_limit(5), "{twins}");
    assert_eq!(error.kind(), HubErrorKind::Protocol);
}

#[tokio::test]
async fn an_honest_hub_is_read_to_the_end_with_the_limit_on() {
    let emulator = hostile(1_234, Hostility::None).await;
    let client = client(&emulator, Duration::from_secs(60));
    let total = client.count_devices().await.unwrap();
    let mut pages = client
        .query_devices("SELECT * FROM devices")
        .expecting(total);
    let mut twins = 0;
    while let Some(page) = pages.next_page().await.unwrap() {
        twins += page.len() as u64;
    }
    assert_eq!(twins, 1_234);
}

#[tokio::test]
async fn a_huge_page_is_cut_off_and_not_retried() {
    let emulator = hostile(10, Hostility::HugePage { bytes: 100 << 20 }).await;
    let (error, _) = read_until_error(&client(&emulator, Duration::from_secs(60)), None).await;
    assert!(matches!(error, HubError::PageTooLarge { .. }), "{error}");
    assert!(error.to_string().contains("32 MiB"), "{error}");
    assert_eq!(
        emulator.stats().queries_served,
        1,
        "retried a page that can never fit"
    );
}

#[tokio::test]
async fn a_redirect_is_reported_without_its_target() {
    let target = "https://127.0.0.1:9/metadata/instance";
    let emulator = hostile(
        10,
        Hostility::Redirect {
            location: target.to_owned(),
        },
    )
    .await;
    let error = client(&emulator, Duration::from_secs(60))
        .count_devices()
        .await
        .unwrap_err();
    assert!(
        matches!(error, HubError::Redirected { status: 307, .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("metadata"),
        "{text}"
    );
}

#[tokio::test]
async fn a_hub_that_stalls_past_the_idle_timeout_ends_the_read() {
    let emulator = iothub_emulator::start(EmulatorConfig {
        devices: 10,
        faults: Faults {
            latency: Duration::from_secs(5),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let error = client(&emulator, Duration::from_millis(500))
        .count_devices()
        .await
        .unwrap_err();
    assert!(matches!(error, HubError::Stalled { .. }), "{error}");
}

#[tokio::test]
async fn hosts_outside_the_iot_hub_domains_are_refused_before_connecting() {
    let key = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5YWJjZGVm";
    for host in [
        "evil.example.com",
        "127.0.0.1",
        "localhost",
        "metadata.google.internal",
    ] {
        let connection = ConnectionString::parse(&format!(
            "HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"
        ))
        .unwrap();
        let error = HubClient::new(connection, ClientOptions::default()).unwrap_err();
        assert_eq!(error.kind(), HubErrorKind::Refused, "{host}: {error}");
        assert!(!error.to_string().contains(key));
    }
}
