//! A hub that cannot be reached gives a Network error once the retry budget is spent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iothub_client::{
    ClientOptions, ConnectionString, HubClient, HubErrorKind, RequestObserver, RequestOutcome,
};

const KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5YWJjZGVm";

#[derive(Default)]
struct Counter {
    network: AtomicUsize,
    other: AtomicUsize,
}

impl RequestObserver for Counter {
    fn on_response(&self, outcome: RequestOutcome, _will_retry: bool) {
        match outcome {
            RequestOutcome::Network => self.network.fetch_add(1, Ordering::SeqCst),
            _ => self.other.fetch_add(1, Ordering::SeqCst),
        };
    }
}

#[tokio::test]
async fn closed_port_is_a_network_error_within_the_budget() {
    // A port that was just free and is now closed: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);

    let host = "unreachable-hub.azure-devices.net";
    let connection = ConnectionString::parse(&format!(
        "HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY_B64}"
    ))
    .unwrap();
    let counter = Arc::new(Counter::default());
    let budget = Duration::from_secs(2);
    let options = ClientOptions {
        resolve: vec![(host.to_owned(), addr)],
        retry_budget: budget,
        request_timeout: Duration::from_secs(2),
        observer: Some(counter.clone()),
        ..ClientOptions::default()
    };
    let client = HubClient::new(connection, options).unwrap();
    let started = Instant::now();
    let mut pages = client.query_devices("SELECT * FROM devices");
    let error = pages.next_page().await.unwrap_err();
    let elapsed = started.elapsed();

    eprintln!("{error}");
    assert_eq!(error.kind(), HubErrorKind::Network, "{error}");
    let text = error.to_string();
    assert!(text.contains(host), "{text}");
    assert!(!text.contains(KEY_B64), "{text}");
    assert!(!text.contains("sig="), "{text}");
    // It retried (refused connections are transient) but gave up: generous bound, this is
    // about "terminates", not about speed.
    assert!(counter.network.load(Ordering::SeqCst) >= 2);
    assert_eq!(counter.other.load(Ordering::SeqCst), 0);
    assert!(elapsed < budget + Duration::from_secs(20), "{elapsed:?}");
}
