//! What an engine does for jobs it did not start itself, and the figures it serves: reaping
//! a replica whose lease ran out while this one runs, dropping or stopping its own jobs when
//! their imports were cancelled through another replica, leaving no job behind for a
//! refused import, counting refused twins, and the `/metrics` figures of each. Every case
//! runs on a SQLite file and on PostgreSQL (when IOTHUBGDR_TEST_POSTGRES_URL names a
//! server), against the real emulator.
//!
//! Waits are bounded polls on what the engine publishes (its store rows, its gauges), never
//! sleeps that guess how long the engine takes: a slow machine only makes them wait longer.

mod backends;
use backends::{new_tenant, started_engine};

use std::sync::Arc;
use std::time::Duration;

use iothub_client::ClientOptions;
use iothub_emulator::{EmulatorConfig, Faults, Hostility, RunningEmulator};
use iothubgdr_import::{Engine, EngineConfig, ImportRequest, SubmitError, MSG_RESTARTED};
use iothubgdr_store::{
    Admission, AssetFilter, Import, ImportLimits, ImportStatus, NewImport, Store,
};
use iothubgdr_store_conformance::TestDatabase;
use prometheus_client::registry::Registry;
use uuid::Uuid;
use zeroize::Zeroizing;

/// How long a poll waits for what a working engine does in well under a second.
const PATIENCE: Duration = Duration::from_secs(30);

on_every_backend!(
    heartbeats_keep_a_long_import_alive_against_a_reaper_that_is_not_an_engine,
    a_running_engine_fails_the_imports_of_a_worker_whose_lease_ran_out,
    a_queued_job_cancelled_through_another_engine_is_dropped,
    a_running_job_cancelled_through_another_engine_stops_without_waiting_for_the_hub,
    a_refused_import_leaves_no_job_behind_and_final_states_are_counted,
    refused_twins_are_counted_and_never_written,
    a_hub_that_refuses_the_key_fails_the_import_with_the_reason,
);

/// An engine with the figures it registered, read back as `/metrics` would serve them.
struct Observed {
    engine: Engine,
    registry: Registry,
}

impl Observed {
    fn figures(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }

    /// The value of the sample named exactly `sample` (with its labels), 0 when absent.
    fn figure(&self, sample: &str) -> f64 {
        self.figures()
            .lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(name, _)| *name == sample)
            .map(|(_, value)| value.parse().expect("a number"))
            .unwrap_or(0.0)
    }

    async fn wait_for_figure(&self, sample: &str, want: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let now = self.figure(sample);
            if now == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sample} stayed {now}, expected {want}:\n{}",
                self.figures()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const PENDING: &str = "imports_pending";
const RUNNING: &str = "imports_running";
const FINISHED: &str = "imports_completed_total{state=\"finished\"}";
const CANCELLED: &str = "imports_completed_total{state=\"cancelled\"}";
const FAILED: &str = "imports_completed_total{state=\"failed\"}";

async fn emulator(devices: u64, faults: Faults) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

fn slow(latency: Duration) -> Faults {
    Faults {
        latency,
        ..Faults::default()
    }
}

fn config(emulator: &RunningEmulator, per_tenant: usize) -> EngineConfig {
    EngineConfig {
        worker_id: Uuid::new_v4(),
        per_tenant,
        client: ClientOptions {
            extra_root_ca_pem: Some(emulator.ca_cert_pem().into_bytes()),
            resolve: vec![(emulator.host_name(), emulator.addr())],
            retry_budget: Duration::from_secs(5),
            page_size: 100,
            ..ClientOptions::default()
        },
        lease: Duration::from_secs(2),
        cancel_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    }
}

async fn started(db: &TestDatabase, config: EngineConfig) -> Observed {
    let (engine, registry) = started_engine(db.open().await, config).await;
    Observed { engine, registry }
}

fn request(secret: String) -> ImportRequest {
    ImportRequest {
        display_name: "housekeeping".into(),
        secret: Zeroizing::new(secret),
        arc_home_location_identity: None,
    }
}

async fn get(store: &Arc<dyn Store>, tenant: Uuid, id: Uuid) -> Import {
    store
        .import_get(tenant, id)
        .await
        .expect("get")
        .expect("exists")
}

/// Polls the import until `done` says so; panics with its last state after [`PATIENCE`].
async fn wait_until(
    store: &Arc<dyn Store>,
    tenant: Uuid,
    id: Uuid,
    what: &str,
    done: impl Fn(&Import) -> bool,
) -> Import {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let import = get(store, tenant, id).await;
        if done(&import) {
            return import;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "import never {what}: {import:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An import accepted by `worker_id`, a process this test plays.
async fn import_of_worker(store: &Arc<dyn Store>, tenant: Uuid, worker_id: Uuid) -> Uuid {
    let admission = store
        .import_create(
            NewImport {
                id: Uuid::new_v4(),
                tenant_id: tenant,
                display_name: "another replica's".into(),
                arc_home_location_identity: None,
                hub_host: Some("h.azure-devices.net".into()),
                worker_id,
                failed_with: None,
            },
            ImportLimits::UNLIMITED,
        )
        .await
        .expect("create");
    let Admission::Accepted(import) = admission else {
        panic!("an unlimited admission refused")
    };
    import.id
}

/// The owner's heartbeats alone keep its import alive: the test itself reaps through the
/// store every 50 ms (as any other replica would, whatever its own code) while the import
/// runs for about two leases. An owner that renewed its lease less often than the lease
/// lasts would see its import failed as orphaned.
async fn heartbeats_keep_a_long_import_alive_against_a_reaper_that_is_not_an_engine(
    db: TestDatabase,
) {
    // 40 pages of 100 ms: about 4 s, two leases of 2 s.
    let hub = emulator(4_000, slow(Duration::from_millis(100))).await;
    let store = db.open().await;
    let owner = started(&db, config(&hub, 2)).await;
    let tenant = new_tenant(&store).await;
    let import = owner
        .engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    // Reaping as another replica does, which only the owner's lease can hold off.
    let another_replica = uuid::Uuid::new_v4();
    let done = loop {
        let reaped = store
            .imports_fail_orphaned(another_replica, MSG_RESTARTED)
            .await
            .expect("reap");
        assert!(reaped.is_empty(), "a live owner's import was reaped");
        let now = get(&store, tenant, import.id).await;
        if now.status.is_done() {
            break now;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.status, ImportStatus::Finished, "{done:?}");
    assert_eq!(done.number_assets_imported, 4_000);
    owner.engine.shutdown().await;
}

/// A replica dies while this engine runs: its import is failed by this engine's own
/// periodic reaping (not only at start), counted as failed, and a live replica's import is
/// left alone.
async fn a_running_engine_fails_the_imports_of_a_worker_whose_lease_ran_out(db: TestDatabase) {
    let hub = emulator(0, Faults::default()).await;
    let store = db.open().await;
    let reaper = started(&db, config(&hub, 2)).await;
    // Nothing was orphaned when it started.
    assert_eq!(reaper.figure(FAILED), 0.0);

    let tenant = new_tenant(&store).await;
    let (dead, live) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .worker_heartbeat(live, Duration::from_secs(3600))
        .await
        .expect("heartbeat");
    let kept = import_of_worker(&store, tenant, live).await;
    store
        .worker_heartbeat(dead, Duration::from_secs(3600))
        .await
        .expect("heartbeat");
    let orphan = import_of_worker(&store, tenant, dead).await;
    // The dead replica's last heartbeat: a lease that runs out at once.
    store
        .worker_heartbeat(dead, Duration::from_millis(1))
        .await
        .expect("heartbeat");

    let failed = wait_until(&store, tenant, orphan, "reaped", |i| i.status.is_done()).await;
    assert_eq!(failed.status, ImportStatus::Failed, "{failed:?}");
    assert_eq!(failed.error_message.as_deref(), Some(MSG_RESTARTED));
    reaper.wait_for_figure(FAILED, 1.0).await;
    assert_eq!(
        get(&store, tenant, kept).await.status,
        ImportStatus::Pending
    );
    reaper.engine.shutdown().await;
    // Shutting down fails only the reaper's own imports (it has none).
    assert_eq!(
        get(&store, tenant, kept).await.status,
        ImportStatus::Pending
    );
}

/// A job waiting in engine A's queue (its tenant is at its running limit) is cancelled
/// through engine B: A drops it, with its secret, without waiting for a worker.
async fn a_queued_job_cancelled_through_another_engine_is_dropped(db: TestDatabase) {
    let hub = emulator(1_000, slow(Duration::from_millis(200))).await;
    let store = db.open().await;
    let a = started(&db, config(&hub, 1)).await;
    let b = started(&db, config(&hub, 1)).await;
    let tenant = new_tenant(&store).await;
    let running = a
        .engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    let queued = a
        .engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    a.wait_for_figure(RUNNING, 1.0).await;
    a.wait_for_figure(PENDING, 1.0).await;
    assert_eq!(
        get(&store, tenant, queued.id).await.status,
        ImportStatus::Pending
    );

    let cancelled = b
        .engine
        .cancel(tenant, queued.id)
        .await
        .expect("cancel")
        .expect("found");
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    a.wait_for_figure(PENDING, 0.0).await;
    // The other job was not disturbed.
    assert_eq!(a.figure(RUNNING), 1.0);
    let finished = wait_until(&store, tenant, running.id, "done", |i| i.status.is_done()).await;
    assert_eq!(finished.status, ImportStatus::Finished, "{finished:?}");
    assert_eq!(finished.number_assets_imported, 1_000);
    a.wait_for_figure(RUNNING, 0.0).await;
    let never_ran = get(&store, tenant, queued.id).await;
    assert_eq!(never_ran.status, ImportStatus::Cancelled);
    assert_eq!(never_ran.number_assets_imported, 0);
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}

/// Engine A's job waits on a hub that takes two minutes to answer; engine B cancels its
/// import. A stops the job within its cancel poll, not when the hub answers or the
/// client gives up (both far past [`PATIENCE`]), and counts it cancelled.
async fn a_running_job_cancelled_through_another_engine_stops_without_waiting_for_the_hub(
    db: TestDatabase,
) {
    let stall = Duration::from_secs(120);
    let hub = emulator(100, slow(stall)).await;
    let store = db.open().await;
    let mut patient = config(&hub, 2);
    patient.client.request_timeout = stall * 2;
    let a = started(&db, patient.clone()).await;
    let b = started(
        &db,
        EngineConfig {
            worker_id: Uuid::new_v4(),
            ..patient
        },
    )
    .await;
    let tenant = new_tenant(&store).await;
    let import = a
        .engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    wait_until(&store, tenant, import.id, "started", |i| {
        i.status == ImportStatus::InProgress
    })
    .await;
    a.wait_for_figure(RUNNING, 1.0).await;

    let cancelled = b
        .engine
        .cancel(tenant, import.id)
        .await
        .expect("cancel")
        .expect("found");
    assert_eq!(cancelled.status, ImportStatus::Cancelled);
    a.wait_for_figure(RUNNING, 0.0).await;
    a.wait_for_figure(CANCELLED, 1.0).await;
    assert_eq!(a.figure(FAILED), 0.0);
    let after = get(&store, tenant, import.id).await;
    assert_eq!(after.status, ImportStatus::Cancelled);
    assert_eq!(after.number_assets_imported, 0);
    a.engine.shutdown().await;
    b.engine.shutdown().await;
}

/// A submit refused by the queue bound keeps no job (and no secret) in the engine: once the
/// accepted imports are done nothing is pending. Each final state is counted once.
async fn a_refused_import_leaves_no_job_behind_and_final_states_are_counted(db: TestDatabase) {
    let hub = emulator(300, slow(Duration::from_millis(40))).await;
    let store = db.open().await;
    let mut small = config(&hub, 1);
    small.queued_per_tenant = 2;
    let a = started(&db, small).await;
    let tenant = new_tenant(&store).await;
    let mut accepted = Vec::new();
    for _ in 0..2 {
        let import = a
            .engine
            .submit(tenant, request(hub.iothub_connection_string()))
            .await
            .expect("submit");
        accepted.push(import.id);
    }
    match a
        .engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
    {
        Err(SubmitError::LimitReached { limit: 2, .. }) => {}
        other => panic!("expected the tenant bound: {other:?}"),
    }
    for id in &accepted {
        let import = wait_until(&store, tenant, *id, "done", |i| i.status.is_done()).await;
        assert_eq!(import.status, ImportStatus::Finished, "{import:?}");
        assert_eq!(import.number_assets_imported, 300);
    }
    a.wait_for_figure(RUNNING, 0.0).await;
    assert_eq!(a.figure(PENDING), 0.0, "{}", a.figures());
    a.wait_for_figure(FINISHED, 2.0).await;
    assert_eq!(a.figure("devices_imported_total"), 600.0);

    let invalid = a
        .engine
        .submit(tenant, request("HostName=only-a-host".into()))
        .await
        .expect("recorded as failed");
    assert_eq!(invalid.status, ImportStatus::Failed);
    assert_eq!(a.figure(FAILED), 1.0);
    assert_eq!(a.figure(CANCELLED), 0.0);
    a.engine.shutdown().await;
}

/// Twins over IoT Hub's limits are counted as refused, exactly, and not written; the rest
/// are imported.
async fn refused_twins_are_counted_and_never_written(db: TestDatabase) {
    let hub = emulator(
        1_000,
        Faults {
            hostility: Hostility::OversizedTwins {
                every: 25,
                tag_bytes: 16 * 1024,
            },
            ..Faults::default()
        },
    )
    .await;
    let store = db.open().await;
    let a = started(&db, config(&hub, 2)).await;
    let tenant = new_tenant(&store).await;
    let import = a
        .engine
        .submit(tenant, request(hub.iothub_connection_string()))
        .await
        .expect("submit");
    let done = wait_until(&store, tenant, import.id, "done", |i| i.status.is_done()).await;
    assert_eq!(done.status, ImportStatus::Finished, "{done:?}");
    // Per page of 100: 4 twins with oversized tags and the 4 after them with bad ids.
    assert_eq!(done.number_devices_refused, 80, "{done:?}");
    assert_eq!(done.number_assets_imported, 920);
    assert_eq!(
        store
            .asset_count(tenant, &AssetFilter::default())
            .await
            .expect("count"),
        920
    );
    a.engine.shutdown().await;
}

/// A wrong key fails the import with the hub client's reason, which names neither key.
async fn a_hub_that_refuses_the_key_fails_the_import_with_the_reason(db: TestDatabase) {
    let hub = emulator(10, Faults::default()).await;
    let store = db.open().await;
    let a = started(&db, config(&hub, 2)).await;
    let tenant = new_tenant(&store).await;
    let wrong_key = "d3Jvbmcga2V5IG9mIHRoaXMgdGVzdA==";
    let secret = format!(
        "HostName={};SharedAccessKeyName=iothubowner;SharedAccessKey={wrong_key}",
        hub.host_name()
    );
    let import = a
        .engine
        .submit(tenant, request(secret))
        .await
        .expect("submit");
    let done = wait_until(&store, tenant, import.id, "done", |i| i.status.is_done()).await;
    assert_eq!(done.status, ImportStatus::Failed, "{done:?}");
    let message = done.error_message.expect("a reason");
    assert!(
        message.contains("refused the credentials (HTTP 401)")
            && message.contains(&hub.host_name()),
        "{message}"
    );
    assert!(!message.contains(wrong_key), "{message}");
    for policy in hub.policies() {
        assert!(!message.contains(&policy.primary_key), "{message}");
    }
    a.wait_for_figure(FAILED, 1.0).await;
    a.engine.shutdown().await;
}
