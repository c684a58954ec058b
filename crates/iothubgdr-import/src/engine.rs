//! The job engine: a bounded pool of import jobs, a per-tenant limit, and the bookkeeping
//! that keeps every import's state true in the store.
//!
//! The connection string of an import lives only inside its queued job (and then inside its
//! `HubClient`), in this process's memory. That shapes everything here:
//! - an import is owned by the process that accepted it (`worker_id`), because no other
//!   process could ever read its hub;
//! - each process sends heartbeats, and any process fails the unfinished imports of a worker
//!   whose heartbeats stopped, since their secrets died with it;
//! - a cancel may arrive at another process: it is written to the store, and the owner
//!   notices it by polling the statuses of the imports it runs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use iothub_client::{ClientOptions, ConnectionString, HubClient, HubError};
use iothubgdr_store::{
    AssetUpsert, Import, ImportOutcome, ImportStatus, NewImport, PageWrite, Store, StoreError,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::mapping::device_asset;
use crate::metrics::{ImportMetrics, StateLabel};

/// The page's own words for a secret that is no connection string.
pub const MSG_INVALID_SECRET: &str = "invalid secret provided";
/// Why an import that a stopped process owned can never finish.
pub const MSG_RESTARTED: &str = "the iothubgdr service restarted before this import finished; \
     the connection string is never stored, so start the import again";

/// The query that reads every device twin.
const ALL_DEVICES: &str = "SELECT * FROM devices";
/// The swagger's limit on `error_message`.
const MAX_ERROR_MESSAGE: usize = 1024;
/// Pages fetched ahead of the one being written: reading the hub and writing the store
/// overlap, and memory stays bounded by a few pages whatever the hub's size.
const PAGES_AHEAD: usize = 4;
/// The most assets one write transaction takes when several pages are waiting.
const MAX_BATCH_ASSETS: usize = 1_000;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This process's identity as an import owner; new at every start.
    pub worker_id: Uuid,
    /// Imports this process runs at once, all tenants together.
    pub workers: usize,
    /// Imports one tenant may have running at once in this process; more wait pending,
    /// first come first served.
    pub per_tenant: usize,
    /// How to reach IoT Hubs (extra CA, address overrides, page size, retry budget).
    pub client: ClientOptions,
    /// A worker silent for this long is taken as gone, and its unfinished imports failed.
    pub lease: Duration,
    /// How often the engine notices a cancel made through another process.
    pub cancel_poll: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            worker_id: Uuid::new_v4(),
            workers: 8,
            per_tenant: 2,
            client: ClientOptions::default(),
            lease: Duration::from_secs(30),
            cancel_poll: Duration::from_millis(500),
        }
    }
}

/// What a caller gives to start an import.
pub struct ImportRequest {
    pub display_name: String,
    /// The connection string, wiped from memory when dropped.
    pub secret: Zeroizing<String>,
    pub arc_home_location_identity: Option<String>,
}

impl std::fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportRequest")
            .field("display_name", &self.display_name)
            .field("secret", &"<redacted>")
            .field(
                "arc_home_location_identity",
                &self.arc_home_location_identity,
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the service is shutting down and accepts no new imports")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The import engine. Cheap to clone; all clones drive the same jobs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: EngineConfig,
    metrics: ImportMetrics,
    jobs: Mutex<Jobs>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A job waiting for a worker. It holds the only copy of the secret.
struct QueuedJob {
    import_id: Uuid,
    tenant_id: Uuid,
    connection: ConnectionString,
    home_location: Option<String>,
}

#[derive(Default)]
struct Jobs {
    accepting: bool,
    queue: VecDeque<QueuedJob>,
    running_total: usize,
    running_by_tenant: HashMap<Uuid, usize>,
    /// A cancel token per running import.
    running: HashMap<Uuid, CancellationToken>,
}

impl Engine {
    /// Builds the engine and registers its figures in `registry`. Call [`Engine::start`]
    /// before submitting.
    pub fn new(
        store: Arc<dyn Store>,
        config: EngineConfig,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let metrics = ImportMetrics::default();
        metrics.register(registry);
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                metrics,
                jobs: Mutex::new(Jobs {
                    accepting: true,
                    ..Jobs::default()
                }),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn worker_id(&self) -> Uuid {
        self.inner.config.worker_id
    }

    /// Announces this worker, fails the imports that stopped processes left unfinished,
    /// and starts the background duties (heartbeats, reaping, noticing remote cancels).
    pub async fn start(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.store.worker_heartbeat(inner.config.worker_id).await?;
        inner.reap_orphans().await?;
        let background = Arc::clone(inner);
        inner
            .tasks
            .spawn(async move { background.housekeeping().await });
        Ok(())
    }

    /// Accepts an import: records it (failed at once when the secret is no connection
    /// string) and queues it for a worker. Returns the import as recorded.
    pub async fn submit(
        &self,
        tenant_id: Uuid,
        request: ImportRequest,
    ) -> Result<Import, SubmitError> {
        let inner = &self.inner;
        if !inner.lock_jobs().accepting {
            return Err(SubmitError::ShuttingDown);
        }
        let ImportRequest {
            display_name,
            secret,
            arc_home_location_identity,
        } = request;
        let parsed = ConnectionString::parse(secret.trim());
        drop(secret);
        let id = Uuid::new_v4();
        let mut new = NewImport {
            id,
            tenant_id,
            display_name,
            arc_home_location_identity: arc_home_location_identity.clone(),
            hub_host: None,
            worker_id: inner.config.worker_id,
            failed_with: None,
        };
        let connection = match parsed {
            Ok(connection) => connection,
            Err(reason) => {
                // The reason names what is wrong with the string, never its content.
                info!(import = %id, %reason, "import refused: the secret is no connection string");
                new.failed_with = Some(MSG_INVALID_SECRET.to_owned());
                let import = inner.store.import_create(new).await?;
                inner.count_final(import.status);
                return Ok(import);
            }
        };
        new.hub_host = Some(connection.host_name().to_owned());
        let import = inner.store.import_create(new).await?;
        info!(import = %id, hub = connection.host_name(), "import accepted");
        {
            let mut jobs = inner.lock_jobs();
            jobs.queue.push_back(QueuedJob {
                import_id: id,
                tenant_id,
                connection,
                home_location: arc_home_location_identity,
            });
            inner.metrics.imports_pending.set(jobs.queue.len() as i64);
        }
        Arc::clone(inner).dispatch();
        Ok(import)
    }

    /// Cancels a tenant's import: recorded as cancelled at once, and its job (if this
    /// process runs it) stops before writing another page. A done import is returned as it
    /// is. `None`: no such import for this tenant.
    pub async fn cancel(&self, tenant_id: Uuid, id: Uuid) -> Result<Option<Import>, StoreError> {
        let inner = &self.inner;
        let import = inner.store.import_cancel(tenant_id, id).await?;
        if import.is_some() {
            inner.stop_local(id);
        }
        Ok(import)
    }

    /// Stops accepting imports, stops the running ones and fails every unfinished import of
    /// this process with [`MSG_RESTARTED`]: its secrets are about to disappear.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let queued = {
            let mut jobs = inner.lock_jobs();
            jobs.accepting = false;
            std::mem::take(&mut jobs.queue)
        };
        drop(queued);
        inner.shutdown.cancel();
        inner.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), inner.tasks.wait())
            .await
            .is_err()
        {
            warn!("import jobs did not stop within 10 seconds");
        }
        match inner
            .store
            .imports_fail_for_worker(inner.config.worker_id, MSG_RESTARTED)
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(imports = n, "unfinished imports failed at shutdown"),
            Err(err) => warn!(%err, "could not fail this process's unfinished imports"),
        }
    }
}

enum JobEnd {
    /// Every device was read and written.
    Completed,
    /// Cancelled by its owner.
    Cancelled,
    /// The store says the import is no longer in progress (cancelled, or failed by a
    /// reaper): nothing more to record.
    Stopped,
    /// The process is shutting down.
    ShuttingDown,
}

impl Inner {
    fn lock_jobs(&self) -> MutexGuard<'_, Jobs> {
        // A panic while holding this lock cannot leave `Jobs` half-updated in a way that
        // matters more than stopping the service would, so a poisoned lock is used as is.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts queued jobs while workers are free, oldest first, skipping (not blocking on)
    /// tenants at their limit.
    fn dispatch(self: Arc<Self>) {
        let mut jobs = self.lock_jobs();
        if !jobs.accepting {
            return;
        }
        let mut index = 0;
        while jobs.running_total < self.config.workers && index < jobs.queue.len() {
            let tenant = jobs.queue[index].tenant_id;
            let running = jobs.running_by_tenant.get(&tenant).copied().unwrap_or(0);
            if running >= self.config.per_tenant {
                index += 1;
                continue;
            }
            let Some(job) = jobs.queue.remove(index) else {
                break;
            };
            jobs.running_total += 1;
            *jobs.running_by_tenant.entry(tenant).or_default() += 1;
            let cancel = CancellationToken::new();
            jobs.running.insert(job.import_id, cancel.clone());
            let inner = Arc::clone(&self);
            self.tasks
                .spawn(async move { inner.run(job, cancel).await });
        }
        self.metrics.imports_pending.set(jobs.queue.len() as i64);
        self.metrics.imports_running.set(jobs.running_total as i64);
    }

    /// Stops a local job: a queued one is dropped with its secret, a running one is told to
    /// stop.
    fn stop_local(&self, id: Uuid) {
        let mut jobs = self.lock_jobs();
        if let Some(token) = jobs.running.get(&id) {
            token.cancel();
        }
        jobs.queue.retain(|job| job.import_id != id);
        self.metrics.imports_pending.set(jobs.queue.len() as i64);
    }

    async fn run(self: Arc<Self>, job: QueuedJob, cancel: CancellationToken) {
        let id = job.import_id;
        let tenant = job.tenant_id;
        let end = self.execute(job, &cancel).await;
        let outcome = match end {
            Ok(JobEnd::Completed) => Some(ImportOutcome::Finished),
            Ok(JobEnd::Cancelled) => Some(ImportOutcome::Cancelled),
            Ok(JobEnd::Stopped) => None,
            Ok(JobEnd::ShuttingDown) => Some(ImportOutcome::Failed(MSG_RESTARTED.to_owned())),
            Err(message) => Some(ImportOutcome::Failed(message)),
        };
        match outcome {
            Some(outcome) => match self.store.import_finish(id, outcome).await {
                Ok(Some(import)) => {
                    info!(import = %id, status = import.status.as_str(), assets = import.number_assets_imported, "import ended");
                    self.count_final(import.status);
                }
                Ok(None) => warn!(import = %id, "import vanished from the store"),
                Err(err) => warn!(import = %id, %err, "could not record the end of an import"),
            },
            None => {
                if let Ok(Some(status)) = self.store.import_status(id).await {
                    info!(import = %id, status = status.as_str(), "import stopped");
                    self.count_final(status);
                }
            }
        }
        {
            let mut jobs = self.lock_jobs();
            jobs.running.remove(&id);
            jobs.running_total = jobs.running_total.saturating_sub(1);
            if let Some(n) = jobs.running_by_tenant.get_mut(&tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    jobs.running_by_tenant.remove(&tenant);
                }
            }
        }
        Arc::clone(&self).dispatch();
    }

    /// Reads every device of the hub and writes it, page by page. An `Err` is the
    /// user-facing reason the import failed.
    async fn execute(&self, job: QueuedJob, cancel: &CancellationToken) -> Result<JobEnd, String> {
        let QueuedJob {
            import_id: id,
            tenant_id,
            connection,
            home_location,
        } = job;
        if !self.store.import_start(id).await.map_err(store_failure)? {
            return Ok(JobEnd::Stopped);
        }
        let hub_host = connection.host_name().to_owned();
        let mut options = self.config.client.clone();
        options.observer = Some(Arc::new(self.metrics.clone()));
        // The client takes the connection string: from here on the secret lives (and dies)
        // inside it.
        let client = HubClient::new(connection, options).map_err(|e| hub_failure(&e))?;

        let total = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(JobEnd::Cancelled),
            _ = self.shutdown.cancelled() => return Ok(JobEnd::ShuttingDown),
            total = client.count_devices() => total.map_err(|e| hub_failure(&e))?,
        };
        self.store
            .import_set_total(id, total)
            .await
            .map_err(store_failure)?;

        // The reader fetches pages and maps them to assets while the writer writes the
        // previous ones: on two cores the hub side and the database side run side by side.
        let (pages_tx, mut pages_rx) =
            mpsc::channel::<Result<Vec<AssetUpsert>, HubError>>(PAGES_AHEAD);
        let mut pages = client.query_devices(ALL_DEVICES);
        drop(client);
        let reader = tokio::spawn(async move {
            loop {
                let item = match pages.next_page().await {
                    Ok(Some(twins)) => Ok(twins
                        .iter()
                        .map(|twin| device_asset(&hub_host, twin, home_location.as_deref()))
                        .collect()),
                    Ok(None) => break,
                    Err(err) => Err(err),
                };
                let failed = item.is_err();
                if pages_tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        // The reader owns the last copy of the secret; it must end with this function.
        let _reader = AbortOnDrop(reader);

        let mut written: u64 = 0;
        let mut batch: Vec<AssetUpsert> = Vec::new();
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(JobEnd::Cancelled),
                _ = self.shutdown.cancelled() => return Ok(JobEnd::ShuttingDown),
                next = pages_rx.recv() => next,
            };
            match next {
                None => break,
                Some(Ok(assets)) => batch.extend(assets),
                Some(Err(err)) => return Err(hub_failure(&err)),
            }
            // Pages that are already waiting join this transaction: fewer, larger commits
            // when the database is the slower side, and still one page at a time when the
            // hub is.
            let mut failure = None;
            while batch.len() < MAX_BATCH_ASSETS {
                match pages_rx.try_recv() {
                    Ok(Ok(assets)) => batch.extend(assets),
                    Ok(Err(err)) => {
                        failure = Some(err);
                        break;
                    }
                    Err(_) => break,
                }
            }
            match self
                .store
                .import_write_page(id, tenant_id, &batch)
                .await
                .map_err(store_failure)?
            {
                PageWrite::Written {
                    number_assets_imported,
                } => {
                    self.metrics.devices_imported.inc_by(batch.len() as u64);
                    written = number_assets_imported;
                    debug!(import = %id, assets = written, "page written");
                }
                PageWrite::Stopped(status) => {
                    debug!(import = %id, status = status.as_str(), "import stopped by its state");
                    return Ok(JobEnd::Stopped);
                }
            }
            batch.clear();
            if let Some(err) = failure {
                return Err(hub_failure(&err));
            }
        }
        debug!(import = %id, assets = written, "every device read");
        Ok(JobEnd::Completed)
    }

    fn count_final(&self, status: ImportStatus) {
        let state = match status {
            ImportStatus::Finished => "finished",
            ImportStatus::Cancelled => "cancelled",
            ImportStatus::Failed => "failed",
            ImportStatus::Pending | ImportStatus::InProgress => return,
        };
        self.metrics
            .imports_finished
            .get_or_create(&StateLabel { state })
            .inc();
    }

    /// Fails the unfinished imports of workers whose heartbeats stopped.
    async fn reap_orphans(&self) -> Result<(), StoreError> {
        let lease = time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::MINUTE);
        let stale_before = OffsetDateTime::now_utc() - lease;
        let failed = self
            .store
            .imports_fail_orphaned(stale_before, MSG_RESTARTED)
            .await?;
        if !failed.is_empty() {
            info!(
                imports = failed.len(),
                "failed imports left unfinished by a stopped process"
            );
            for _ in &failed {
                self.count_final(ImportStatus::Failed);
            }
        }
        Ok(())
    }

    /// Heartbeats, reaping and noticing cancels made through other processes, until
    /// shutdown.
    async fn housekeeping(self: Arc<Self>) {
        let heartbeat_every = (self.config.lease / 3).max(Duration::from_millis(100));
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        let mut poll =
            tokio::time::interval(self.config.cancel_poll.max(Duration::from_millis(50)));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = heartbeat.tick() => {
                    if let Err(err) = self.store.worker_heartbeat(self.config.worker_id).await {
                        warn!(%err, "heartbeat failed");
                    }
                    if let Err(err) = self.reap_orphans().await {
                        warn!(%err, "reaping stopped workers' imports failed");
                    }
                }
                _ = poll.tick() => self.notice_remote_cancels().await,
            }
        }
    }

    async fn notice_remote_cancels(&self) {
        let ids: Vec<Uuid> = {
            let jobs = self.lock_jobs();
            jobs.running
                .keys()
                .copied()
                .chain(jobs.queue.iter().map(|job| job.import_id))
                .collect()
        };
        for id in ids {
            match self.store.import_status(id).await {
                Ok(Some(status)) if status.is_done() => self.stop_local(id),
                Ok(_) => {}
                Err(err) => warn!(import = %id, %err, "could not read an import's status"),
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hub_failure(err: &HubError) -> String {
    truncate(err.to_string())
}

fn store_failure(err: StoreError) -> String {
    truncate(format!(
        "the import could not write to the asset store ({err}); start the import again"
    ))
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_request_never_shows_its_secret() {
        let secret = "HostName=h.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0";
        let request = ImportRequest {
            display_name: "plant".into(),
            secret: Zeroizing::new(secret.into()),
            arc_home_location_identity: None,
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("plant") && shown.contains("<redacted>"));
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("HostName"));
    }

    #[test]
    fn error_messages_fit_the_swagger_limit_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_MESSAGE);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_ERROR_MESSAGE);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
