//! The hub's twin query read in parts (`iothubgdr_import::source`), against the real IoT
//! Hub emulator, without the engine: what the parts read must add up to the hub's count,
//! or to its count after the read (devices that left meanwhile are no failure); anything
//! else ends the read with [`ReadError::Incomplete`], never a silently short import.

use std::collections::HashSet;
use std::time::Duration;

use iothub_client::{ClientOptions, ConnectionString, HubClient};
use iothub_emulator::{EmulatorConfig, Faults, Hostility, IdStyle, RunningEmulator};
use iothubgdr_import::source::{self, HubCount, ReadError, ReadPlan};
use tokio::sync::mpsc;

const DEVICES: u64 = 6_000;
const PAGE_SIZE: u32 = 100;

async fn hub(faults: Faults) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices: DEVICES,
        faults,
        id_style: IdStyle::EveryFirstCharacter,
        ..EmulatorConfig::with_seed(23)
    })
    .await
    .expect("emulator")
}

fn client(hub: &RunningEmulator) -> HubClient {
    let connection = ConnectionString::parse(&hub.iothub_connection_string()).expect("parse");
    HubClient::new(
        connection,
        ClientOptions {
            extra_root_ca_pem: Some(hub.ca_cert_pem().into_bytes()),
            resolve: vec![(hub.host_name(), hub.addr())],
            page_size: PAGE_SIZE,
            retry_budget: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    )
    .expect("client")
}

/// Reads the hub as an import would after counting `total` devices: four readers, no
/// quota. Answers the device ids sent (each page mapped to its ids) and the failure, if
/// the read ended with one.
async fn read(hub: &RunningEmulator, total: u64) -> (Vec<String>, Option<ReadError>) {
    let plan = ReadPlan {
        max_readers: 4,
        queries_per_minute: None,
        page_size: PAGE_SIZE,
    };
    let count = HubCount {
        total,
        round_trip: Duration::from_millis(5),
    };
    assert!(
        source::readers_for(&plan, &count) > 1,
        "the hub must be read in parts"
    );
    let (pages, mut received) = mpsc::channel(16);
    let reading = tokio::spawn(source::read_all(
        client(hub),
        plan,
        count,
        |twins: &[iothub_client::Twin]| {
            twins
                .iter()
                .map(|twin| twin.device_id.clone())
                .collect::<Vec<_>>()
        },
        pages,
    ));
    let mut ids = Vec::new();
    let mut failure = None;
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(page) = received.recv().await {
            match page {
                Ok(page) => ids.extend(page),
                Err(err) => failure = Some(err),
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the read did not end in 60 s");
    reading.await.expect("the read panicked");
    (ids, failure)
}

/// The hub counted 6,050 devices, then 50 left before the read: the parts hold the 6,000
/// the hub counts now, each once, and that is a complete read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_left_before_the_read_are_no_failure() {
    let hub = hub(Faults::default()).await;
    let (ids, failure) = read(&hub, DEVICES + 50).await;
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(ids.len() as u64, DEVICES);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len() as u64, DEVICES);
    // Really in parts: range queries served (almost) every twin.
    assert!(
        hub.stats().ranged_twins_served >= DEVICES - 100,
        "{:?}",
        hub.stats()
    );
}

/// A hub that counts 100 devices more than its parts hold, before and after the read: the
/// read ends with `Incomplete`, naming both numbers, after sending what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_that_miss_devices_the_hub_counts_end_the_read_as_incomplete() {
    let hub = hub(Faults {
        hostility: Hostility::ReportedCount(DEVICES + 100),
        ..Faults::default()
    })
    .await;
    let counted = source::count(&client(&hub)).await.expect("count").total;
    assert_eq!(counted, DEVICES + 100);
    let (ids, failure) = read(&hub, counted).await;
    assert_eq!(ids.len() as u64, DEVICES);
    match failure {
        Some(ReadError::Incomplete { read, counted }) => {
            assert_eq!((read, counted), (DEVICES, DEVICES + 100));
        }
        other => panic!("expected Incomplete, got {other:?}"),
    }
}

/// The same hub read in parts when it is honest: no failure, every device once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_hub_read_in_parts_sends_every_device_once() {
    let hub = hub(Faults::default()).await;
    let counted = source::count(&client(&hub)).await.expect("count").total;
    assert_eq!(counted, DEVICES);
    let (ids, failure) = read(&hub, counted).await;
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len() as u64, DEVICES);
    assert_eq!(ids.len() as u64, DEVICES);
}

/// Planning parts costs queries, so only hubs of at least `MIN_PAGES_FOR_PARTS` pages are
/// read in parts: 4,900 devices are 49 pages of 100, 4,901 are 50.
#[test]
fn parts_start_at_exactly_the_minimum_number_of_pages() {
    let plan = ReadPlan {
        max_readers: 8,
        queries_per_minute: None,
        page_size: 100,
    };
    let hub = |total| HubCount {
        total,
        round_trip: Duration::from_millis(150),
    };
    assert_eq!(source::MIN_PAGES_FOR_PARTS, 50);
    assert_eq!(source::readers_for(&plan, &hub(4_900)), 1);
    assert_eq!(source::readers_for(&plan, &hub(4_901)), 8);
    assert_eq!(source::readers_for(&plan, &hub(5_000)), 8);
}
