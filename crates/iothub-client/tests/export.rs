//! The jobs API and the blob read against the IoT Hub emulator and a real Azurite on
//! loopback: an export holds every device exactly once with keys null; one job runs at a
//! time; cancel, failures and a refused SAS come back as their own errors, none quoting
//! the SAS; a line over the bound ends the read.
//!
//! Without Azurite (`bash scripts/azurite.sh`) the tests print SKIPPED, except under CI.

use std::collections::HashSet;
use std::time::Duration;

use iothub_client::{
    BlobClient, BlobContainerSas, BlobOptions, ClientOptions, ConnectionString, ExportError,
    ExportedDevices, HubClient, JobStatus, EXPORT_BLOB_NAME,
};
use iothub_emulator::azurite::RunningAzurite;
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};

struct Fixture {
    azurite: RunningAzurite,
    hub: RunningEmulator,
    client: HubClient,
    blob: BlobClient,
}

async fn fixture(devices: u64, faults: Faults) -> Option<Fixture> {
    let Some(azurite) = RunningAzurite::start_for_test().await.expect("Azurite") else {
        eprintln!("SKIPPED: Azurite is not installed (bash scripts/azurite.sh)");
        return None;
    };
    azurite
        .create_container("exports")
        .await
        .expect("container");
    let hub = iothub_emulator::start(EmulatorConfig {
        hub_name: "export-client-hub".to_owned(),
        devices,
        faults,
        blob_endpoints: vec![(azurite.host().to_owned(), azurite.addr())],
        blob_ca_pem: Some(azurite.ca_cert_pem().to_owned()),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let connection = ConnectionString::parse(&hub.iothub_connection_string()).unwrap();
    let client = HubClient::new(
        connection,
        ClientOptions {
            extra_root_ca_pem: Some(hub.ca_cert_pem().into_bytes()),
            resolve: vec![(hub.host_name(), hub.addr())],
            retry_budget: Duration::from_secs(5),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let blob =
        BlobClient::new(blob_options(&azurite, iothub_client::blob::MAX_LINE_BYTES)).unwrap();
    Some(Fixture {
        azurite,
        hub,
        client,
        blob,
    })
}

fn blob_options(azurite: &RunningAzurite, max_line_bytes: usize) -> BlobOptions {
    BlobOptions {
        extra_root_ca_pem: Some(azurite.ca_cert_pem().as_bytes().to_vec()),
        resolve: vec![(azurite.host().to_owned(), azurite.addr())],
        max_line_bytes,
        ..BlobOptions::default()
    }
}

fn assert_quiet(error: &ExportError, sas: &str) {
    let signature = sas.split("sig=").nth(1).unwrap();
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(signature), "{text}");
        assert!(!text.contains("sig="), "{text}");
    }
}

#[tokio::test]
async fn an_export_holds_every_device_once_and_one_job_runs_at_a_time() {
    let Some(f) = fixture(3_000, Faults::default()).await else {
        return;
    };
    let url = f.azurite.container_sas_url("exports", "racwdl");
    let container = BlobContainerSas::parse(&url).unwrap();
    let job = f.client.create_export_job(&container).await.unwrap();
    let mut seen_progress = Vec::new();
    let done = f
        .client
        .wait_for_job(&job.job_id, Duration::from_secs(60), |job| {
            seen_progress.push(job.progress)
        })
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.progress, 100);
    assert!(
        seen_progress.windows(2).all(|w| w[0] <= w[1]),
        "{seen_progress:?}"
    );

    let lines = f
        .blob
        .open_lines(&container, EXPORT_BLOB_NAME)
        .await
        .unwrap();
    let mut devices = ExportedDevices::new(lines, 3_000);
    let mut ids = HashSet::new();
    while let Some(batch) = devices.next_batch(100).await.unwrap() {
        assert!(batch.len() <= 100);
        for twin in batch {
            assert!(twin.etag.is_some() && twin.status.is_some());
            assert!(ids.insert(twin.device_id), "a device twice");
        }
    }
    assert_eq!(ids.len(), 3_000);
    assert_eq!(f.hub.stats().devices_exported, 3_000);

    // One job at a time: a slow job blocks a second one until it is cancelled.
    f.hub.set_faults(Faults {
        export_duration: Duration::from_secs(60),
        ..Faults::default()
    });
    let slow = f.client.create_export_job(&container).await.unwrap();
    let second = f.client.create_export_job(&container).await.unwrap_err();
    assert!(
        matches!(second, ExportError::JobAlreadyRunning { .. }),
        "{second}"
    );
    f.client.cancel_job(&slow.job_id).await.unwrap();
    let cancelled = f.client.get_job(&slow.job_id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let waited = f
        .client
        .wait_for_job(&slow.job_id, Duration::from_secs(5), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(waited, ExportError::JobCancelled { .. }),
        "{waited}"
    );
    assert_eq!(f.hub.stats().jobs_cancelled, 1);
    // The slot is free again.
    f.hub.set_faults(Faults::default());
    let again = f.client.create_export_job(&container).await.unwrap();
    f.client
        .wait_for_job(&again.job_id, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
}

/// The jobs API throttles apart from queries: a 429 on a job request is waited out for its
/// `Retry-After`, and the job is still followed to its end.
#[tokio::test]
async fn a_throttled_jobs_api_is_waited_out_for_its_retry_after() {
    let Some(f) = fixture(
        500,
        Faults {
            jobs_throttle_every: Some(2),
            retry_after: Duration::from_secs(1),
            export_duration: Duration::from_secs(2),
            ..Faults::default()
        },
    )
    .await
    else {
        return;
    };
    let url = f.azurite.container_sas_url("exports", "racwdl");
    let container = BlobContainerSas::parse(&url).unwrap();
    let started = std::time::Instant::now();
    let job = f.client.create_export_job(&container).await.unwrap();
    let done = f
        .client
        .wait_for_job(&job.job_id, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    let stats = f.hub.stats();
    assert!(stats.jobs_throttled >= 1, "{stats:?}");
    // Every second request was throttled with Retry-After: 1, and each was waited out.
    assert!(
        started.elapsed() >= Duration::from_secs(stats.jobs_throttled),
        "{:?} for {} throttles",
        started.elapsed(),
        stats.jobs_throttled
    );
    assert_eq!(stats.jobs_created, 1);
}

#[tokio::test]
async fn failures_are_their_own_errors_and_never_quote_the_sas() {
    let Some(f) = fixture(200, Faults::default()).await else {
        return;
    };
    let good = f.azurite.container_sas_url("exports", "racwdl");
    let (head, _) = good.split_once("sig=").unwrap();
    let forged = format!("{head}sig=Rk9SR0VEU0lHTkFUVVJFMDEyMzQ1Njc4OWFiY2RlZg%3D%3D");
    let container = BlobContainerSas::parse(&forged).unwrap();
    let refused = f.client.create_export_job(&container).await.unwrap_err();
    assert!(
        matches!(refused, ExportError::ContainerRejected { .. }),
        "{refused}"
    );
    assert_quiet(&refused, &forged);
    // Reading with the forged SAS: the storage refuses it.
    let read = f
        .blob
        .open_lines(&container, EXPORT_BLOB_NAME)
        .await
        .unwrap_err();
    assert!(
        matches!(read, ExportError::BlobUnauthorized { status: 403, .. }),
        "{read}"
    );
    assert_quiet(&read, &forged);

    f.hub.set_faults(Faults {
        export_fails: true,
        ..Faults::default()
    });
    let container = BlobContainerSas::parse(&good).unwrap();
    let job = f.client.create_export_job(&container).await.unwrap();
    let failed = f
        .client
        .wait_for_job(&job.job_id, Duration::from_secs(60), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(failed, ExportError::JobFailed { .. }), "{failed}");
    assert!(failed.to_string().contains("injected failure"), "{failed}");
    assert_quiet(&failed, &good);

    f.hub.set_faults(Faults {
        job_already_running: true,
        ..Faults::default()
    });
    let busy = f.client.create_export_job(&container).await.unwrap_err();
    assert!(
        matches!(busy, ExportError::JobAlreadyRunning { .. }),
        "{busy}"
    );

    // A blob host that is not pinned is not reached (it does not resolve to a public
    // address here, and pinning is the only way to loopback).
    let unpinned = BlobClient::new(BlobOptions {
        extra_root_ca_pem: Some(f.azurite.ca_cert_pem().as_bytes().to_vec()),
        ..BlobOptions::default()
    })
    .unwrap();
    let error = unpinned
        .open_lines(&container, EXPORT_BLOB_NAME)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ExportError::BlobRefused(_) | ExportError::BlobNetwork { .. }
        ),
        "{error}"
    );
    assert_quiet(&error, &good);
}

#[tokio::test]
async fn a_line_over_the_bound_ends_the_read() {
    let Some(f) = fixture(50, Faults::default()).await else {
        return;
    };
    let url = f.azurite.container_sas_url("exports", "racwdl");
    let container = BlobContainerSas::parse(&url).unwrap();
    let job = f.client.create_export_job(&container).await.unwrap();
    f.client
        .wait_for_job(&job.job_id, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    // Every exported device is a few hundred bytes: a 64-byte bound refuses the first.
    let tight = BlobClient::new(blob_options(&f.azurite, 64)).unwrap();
    let lines = tight
        .open_lines(&container, EXPORT_BLOB_NAME)
        .await
        .unwrap();
    let mut devices = ExportedDevices::new(lines, 50);
    let error = devices.next_batch(10).await.unwrap_err();
    assert!(matches!(error, ExportError::LineTooLong { .. }), "{error}");
    // And a hub that claims far fewer devices than its export holds is not read through.
    let lines = f
        .blob
        .open_lines(&container, EXPORT_BLOB_NAME)
        .await
        .unwrap();
    let mut devices = ExportedDevices::new(lines, 0);
    let mut result = Ok(Some(Vec::new()));
    while let Ok(Some(_)) = result {
        result = devices.next_batch(10).await;
    }
    // 50 devices are within overshoot_limit(0) = 1,000: read to the end.
    assert!(matches!(result, Ok(None)), "{result:?}");
}
