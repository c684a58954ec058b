//! The client against the project's IoT Hub emulator over real HTTPS on loopback: every
//! device exactly once, with and without faults; wrong keys; both connection-string forms.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use iothub_client::{
    ClientOptions, ConnectionString, HubClient, HubErrorKind, RequestObserver, RequestOutcome,
};
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};

const DEVICES: u64 = 10_000;
const PAGE_SIZE: u32 = 100;

#[derive(Default)]
struct Outcomes {
    ok: AtomicUsize,
    throttled: AtomicUsize,
    server_error: AtomicUsize,
    network: AtomicUsize,
    unauthorized: AtomicUsize,
    other: AtomicUsize,
    retried: AtomicUsize,
}

impl RequestObserver for Outcomes {
    fn on_response(&self, outcome: RequestOutcome, will_retry: bool) {
        let counter = match outcome {
            RequestOutcome::Ok => &self.ok,
            RequestOutcome::Throttled => &self.throttled,
            RequestOutcome::ServerError => &self.server_error,
            RequestOutcome::Network => &self.network,
            RequestOutcome::Unauthorized => &self.unauthorized,
            RequestOutcome::NotFound | RequestOutcome::Other => &self.other,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if will_retry {
            self.retried.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn emulator(devices: u64, faults: Faults) -> RunningEmulator {
    let config = EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hub_name: "client-test-hub".to_owned(),
        devices,
        seed: 7,
        faults,
        ..EmulatorConfig::default()
    };
    iothub_emulator::start(config).await.unwrap()
}

fn client_for(
    emulator: &RunningEmulator,
    connection_string: &str,
    observer: Arc<Outcomes>,
    retry_budget: Duration,
) -> HubClient {
    let connection = ConnectionString::parse(connection_string).unwrap();
    assert_eq!(connection.host_name(), emulator.host_name());
    let options = ClientOptions {
        extra_root_ca_pem: Some(emulator.ca_cert_pem().into_bytes()),
        resolve: vec![(emulator.host_name(), emulator.addr())],
        page_size: PAGE_SIZE,
        retry_budget,
        request_timeout: Duration::from_secs(10),
        observer: Some(observer),
        ..ClientOptions::default()
    };
    HubClient::new(connection, options).unwrap()
}

/// Reads every page and checks each device came exactly once.
async fn read_all_exactly_once(client: &HubClient) -> usize {
    let mut pages = client.query_devices("SELECT * FROM devices");
    let mut seen = HashSet::new();
    let mut page_count = 0;
    while let Some(page) = pages.next_page().await.unwrap() {
        assert!(page.len() <= PAGE_SIZE as usize, "page of {}", page.len());
        page_count += 1;
        for twin in page {
            let id = twin.device_id.clone();
            assert!(seen.insert(twin.device_id), "device {id} came twice");
        }
    }
    assert!(
        pages.next_page().await.unwrap().is_none(),
        "pages after the last"
    );
    assert_eq!(seen.len() as u64, DEVICES);
    page_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_exactly_once_without_faults() {
    let emulator = emulator(DEVICES, Faults::default()).await;
    let outcomes = Arc::new(Outcomes::default());
    let client = client_for(
        &emulator,
        &emulator.iothub_connection_string(),
        outcomes.clone(),
        Duration::from_secs(30),
    );
    assert_eq!(client.count_devices().await.unwrap(), DEVICES);
    let pages = read_all_exactly_once(&client).await;
    assert!(pages >= (DEVICES / PAGE_SIZE as u64) as usize);
    assert_eq!(outcomes.retried.load(Ordering::SeqCst), 0);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_exactly_once_through_throttling_server_errors_and_drops() {
    let faults = Faults {
        throttle_every: Some(9),
        retry_after: Duration::from_secs(1),
        server_error_rate: 0.05,
        drop_rate: 0.05,
        ..Faults::default()
    };
    let emulator = emulator(DEVICES, faults).await;
    let outcomes = Arc::new(Outcomes::default());
    let client = client_for(
        &emulator,
        &emulator.iothub_connection_string(),
        outcomes.clone(),
        Duration::from_secs(60),
    );
    let started = std::time::Instant::now();
    read_all_exactly_once(&client).await;
    eprintln!(
        "read {DEVICES} devices through faults in {:?}: emulator {:?}",
        started.elapsed(),
        emulator.stats()
    );
    // The faults really happened and were retried through.
    let stats = emulator.stats();
    assert!(stats.throttled > 0, "{stats:?}");
    assert!(stats.server_errors > 0, "{stats:?}");
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.twins_served, DEVICES, "{stats:?}");
    assert!(outcomes.throttled.load(Ordering::SeqCst) > 0);
    let transient =
        outcomes.server_error.load(Ordering::SeqCst) + outcomes.network.load(Ordering::SeqCst);
    assert!(transient > 0);
    assert_eq!(outcomes.unauthorized.load(Ordering::SeqCst), 0);
    assert_eq!(outcomes.other.load(Ordering::SeqCst), 0);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_hub_compatible_form_reads_the_same_hub() {
    let emulator = emulator(250, Faults::default()).await;
    let client = client_for(
        &emulator,
        &emulator.eventhub_connection_string(),
        Arc::new(Outcomes::default()),
        Duration::from_secs(30),
    );
    assert_eq!(client.count_devices().await.unwrap(), 250);
    // The pager owns its client and moves into a task, as the import engine uses it.
    let mut pages = client.query_devices("SELECT * FROM devices");
    let total = tokio::spawn(async move {
        let mut total = 0;
        while let Some(page) = pages.next_page().await.unwrap() {
            total += page.len();
        }
        total
    })
    .await
    .unwrap();
    assert_eq!(total, 250);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_unauthorized_and_not_retried() {
    let emulator = emulator(10, Faults::default()).await;
    let good = ConnectionString::parse(&emulator.iothub_connection_string()).unwrap();
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc=";
    let wrong = format!(
        "HostName={};SharedAccessKeyName={};SharedAccessKey={wrong_key}",
        good.host_name(),
        good.policy_name()
    );
    let outcomes = Arc::new(Outcomes::default());
    let client = client_for(&emulator, &wrong, outcomes.clone(), Duration::from_secs(30));
    let error = client
        .query_devices("SELECT * FROM devices")
        .next_page()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::Unauthorized, "{error}");
    let text = error.to_string();
    assert!(text.contains(good.host_name()), "{text}");
    assert!(!text.contains(wrong_key), "{text}");
    assert!(!text.contains("sig="), "{text}");
    assert_eq!(outcomes.unauthorized.load(Ordering::SeqCst), 1);
    assert_eq!(outcomes.retried.load(Ordering::SeqCst), 0);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_without_registry_read_is_unauthorized() {
    let emulator = emulator(10, Faults::default()).await;
    let no_registry_rights = emulator.connection_string_for("service").unwrap();
    let outcomes = Arc::new(Outcomes::default());
    let client = client_for(
        &emulator,
        &no_registry_rights,
        outcomes.clone(),
        Duration::from_secs(30),
    );
    let error = client.count_devices().await.unwrap_err();
    assert_eq!(error.kind(), HubErrorKind::Unauthorized, "{error}");
    assert!(error.to_string().contains("registry read"), "{error}");
    assert_eq!(outcomes.retried.load(Ordering::SeqCst), 0);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_pages_than_asked_still_read_everything_once() {
    let faults = Faults {
        page_size_cap: Some(37),
        ..Faults::default()
    };
    let emulator = emulator(DEVICES, faults).await;
    let client = client_for(
        &emulator,
        &emulator.iothub_connection_string(),
        Arc::new(Outcomes::default()),
        Duration::from_secs(30),
    );
    let pages = read_all_exactly_once(&client).await;
    assert_eq!(pages, (DEVICES as usize).div_ceil(37));
    emulator.shutdown().await;
}

/// Past a hub's query quota the client waits for the Retry-After and slows down instead of
/// running into 429 after 429. (Slow: it waits for the emulator's quota minute to roll.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_query_quota_it_waits_instead_of_hammering() {
    let faults = Faults {
        queries_per_minute: Some(10),
        ..Faults::default()
    };
    let emulator = emulator(1_500, faults).await;
    let outcomes = Arc::new(Outcomes::default());
    let client = client_for(
        &emulator,
        &emulator.iothub_connection_string(),
        outcomes.clone(),
        Duration::from_secs(90),
    );
    let mut pages = client.query_devices("SELECT * FROM devices");
    let mut seen = HashSet::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        for twin in page {
            assert!(seen.insert(twin.device_id));
        }
    }
    assert_eq!(seen.len(), 1_500);
    let stats = emulator.stats();
    assert!(stats.quota_throttled >= 1, "{stats:?}");
    assert!(stats.quota_throttled <= 3, "hammered the quota: {stats:?}");
    emulator.shutdown().await;
}
