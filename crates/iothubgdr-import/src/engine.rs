//! The engine's public face: configuration, accepting imports, cancelling them, shutting
//! down. The work itself is split by concern:
//! - [`crate::schedule`]: the local queue and the claims that start jobs under limits
//!   counted in the database;
//! - [`crate::pipeline`]: one job, from hub to store (reader, mapper, writer);
//! - [`crate::housekeeping`]: heartbeats, reaping stopped replicas, noticing cancels made
//!   through other replicas.
//!
//! The connection string of an import lives only inside its queued job (and then inside
//! its `HubClient`), in this process's memory. That shapes everything here:
//! - an import is owned by the process that accepted it (`worker_id`), because no other
//!   process could ever read its hub, so a replica claims only imports it accepted;
//! - each process holds a lease in the database, and any process fails the unfinished
//!   imports of a worker whose lease ran out, since their secrets died with it;
//! - a cancel may arrive at another process: it is written to the store, and the owner
//!   learns it from one query per tick.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iothub_client::{BlobContainerSas, BlobOptions, ClientOptions, ConnectionString};
use iothubgdr_store::{Admission, Import, ImportLimits, LimitScope, NewImport, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::metrics::ImportMetrics;
use crate::schedule::{Jobs, QueuedJob};

/// The page's own words for a secret that is no connection string.
pub const MSG_INVALID_SECRET: &str = "invalid secret provided";
/// Why an import that a stopped process owned can never finish.
pub const MSG_RESTARTED: &str = "the iothubgdr service restarted before this import finished; \
     the connection string is never stored, so start the import again";

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This process's identity as an import owner; new at every start.
    pub worker_id: Uuid,
    /// Imports this process runs at once, all tenants together.
    pub workers: usize,
    /// Imports one tenant may have running at once, counted over every replica on the
    /// database; more wait pending, first come first served.
    pub per_tenant: usize,
    /// Imports one tenant may have waiting or running (all replicas); more are refused.
    pub queued_per_tenant: u32,
    /// Imports all tenants together may have waiting or running (all replicas).
    pub queued_total: u32,
    /// How to reach IoT Hubs (extra CA, address overrides, page size, retry budget).
    pub client: ClientOptions,
    /// This worker's lease: a worker that has not renewed it for this long (by the
    /// database's clock) is taken as gone, and its unfinished imports failed.
    pub lease: Duration,
    /// How often the engine asks the database which of its jobs were cancelled elsewhere
    /// and whether a slot freed on another replica.
    pub cancel_poll: Duration,
    /// The most readers one import uses on a large hub whose quota allows more than one
    /// reader can use (1: always one reader).
    pub readers_per_import: usize,
    /// How to reach customers' blob containers (the export path).
    pub blob: BlobOptions,
    /// Longest wait for a hub's export job to finish.
    pub export_job_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            worker_id: Uuid::new_v4(),
            workers: 8,
            per_tenant: 2,
            queued_per_tenant: 10,
            queued_total: 1000,
            client: ClientOptions::default(),
            lease: Duration::from_secs(30),
            cancel_poll: Duration::from_millis(500),
            readers_per_import: 8,
            blob: BlobOptions::default(),
            export_job_timeout: Duration::from_secs(4 * 3600),
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
    /// Too many imports waiting or running; nothing was recorded and the secret is gone.
    #[error("{}", limit_message(*.scope, *.limit))]
    LimitReached { scope: LimitScope, limit: u32 },
    /// `output_blob_container_uri` is unusable; nothing was recorded. The text names the
    /// problem (and at most the host), never the URL.
    #[error("{0}")]
    InvalidContainer(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn limit_message(scope: LimitScope, limit: u32) -> String {
    match scope {
        LimitScope::Tenant => format!(
            "this tenant already has {limit} imports waiting or running; retry when one has finished"
        ),
        LimitScope::Total => format!(
            "the service already has {limit} imports waiting or running; retry later"
        ),
    }
}

/// The import engine. Cheap to clone; all clones drive the same jobs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What the engine's tasks share.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: EngineConfig,
    pub(crate) metrics: ImportMetrics,
    pub(crate) jobs: std::sync::Mutex<Jobs>,
    /// Wakes the scheduler: a job was queued or ended.
    pub(crate) wake: Notify,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// The hub's export job of each export-path import this process runs, as last polled.
    pub(crate) export_jobs: std::sync::Mutex<HashMap<Uuid, ExportJobState>>,
}

/// Where the hub's export job of an import stands (the export path), as last polled by
/// the process that runs the import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportJobState {
    /// The jobs API's status: `enqueued`, `running`, `completed`, ...
    pub status: &'static str,
    /// Percent done, as the hub reports it.
    pub progress: u8,
}

impl Inner {
    pub(crate) fn set_export_job(&self, id: Uuid, state: Option<ExportJobState>) {
        let mut jobs = self.export_jobs.lock().unwrap_or_else(|p| p.into_inner());
        match state {
            Some(state) => jobs.insert(id, state),
            None => jobs.remove(&id),
        };
    }
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
                jobs: std::sync::Mutex::new(Jobs::accepting()),
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                export_jobs: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The export job of an export-path import this process runs, while it runs.
    pub fn export_job(&self, id: Uuid) -> Option<ExportJobState> {
        let jobs = self
            .inner
            .export_jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        jobs.get(&id).copied()
    }

    pub fn worker_id(&self) -> Uuid {
        self.inner.config.worker_id
    }

    /// Takes this worker's lease, fails the imports that stopped processes left
    /// unfinished, and starts the scheduler and the housekeeping tasks.
    pub async fn start(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner
            .store
            .worker_heartbeat(inner.config.worker_id, inner.config.lease)
            .await?;
        inner.reap_orphans().await?;
        crate::schedule::spawn_scheduler(inner);
        crate::housekeeping::spawn(inner);
        Ok(())
    }

    /// Accepts an import: records it (failed at once when the secret is no connection
    /// string) and queues it for a worker. Refused, with nothing recorded and the secret
    /// dropped, when the tenant or the service is at its bound of unfinished imports.
    pub async fn submit(
        &self,
        tenant_id: Uuid,
        request: ImportRequest,
    ) -> Result<Import, SubmitError> {
        self.submit_to(tenant_id, request, None).await
    }

    /// Accepts an import through the export path: `container` is the SAS URL of the
    /// customer's blob container (a secret like the connection string: wiped from memory
    /// when dropped, never stored). The import runs an export job on the hub and reads the
    /// devices from the container. A URL that is not a blob container the outbound policy
    /// allows is refused with nothing recorded.
    pub async fn submit_export(
        &self,
        tenant_id: Uuid,
        request: ImportRequest,
        container: Zeroizing<String>,
    ) -> Result<Import, SubmitError> {
        self.submit_to(tenant_id, request, Some(container)).await
    }

    async fn submit_to(
        &self,
        tenant_id: Uuid,
        request: ImportRequest,
        output_blob_container_uri: Option<Zeroizing<String>>,
    ) -> Result<Import, SubmitError> {
        let inner = &self.inner;
        if !inner.lock_jobs().is_accepting() {
            return Err(SubmitError::ShuttingDown);
        }
        let ImportRequest {
            display_name,
            secret,
            arc_home_location_identity,
        } = request;
        // Checked before anything is recorded: a container we would not read is refused
        // with the request, like any other bad field.
        let export = match output_blob_container_uri {
            None => None,
            Some(text) => {
                let container = BlobContainerSas::parse(&text)
                    .map_err(|e| SubmitError::InvalidContainer(e.to_string()))?;
                drop(text);
                inner.config.blob.check(&container).map_err(|refusal| {
                    SubmitError::InvalidContainer(format!("`output_blob_container_uri`: {refusal}"))
                })?;
                Some(container)
            }
        };
        let parsed = ConnectionString::parse(secret.trim());
        drop(secret);
        let id = Uuid::new_v4();
        let mut new = NewImport {
            id,
            tenant_id,
            display_name: display_name.clone(),
            arc_home_location_identity: arc_home_location_identity.clone(),
            hub_host: None,
            worker_id: inner.config.worker_id,
            failed_with: None,
        };
        let limits = ImportLimits {
            per_tenant: inner.config.queued_per_tenant,
            total: inner.config.queued_total,
        };
        let connection = match parsed {
            Ok(connection) => connection,
            Err(reason) => {
                // The reason names what is wrong with the string, never its content.
                info!(import = %id, %reason, "import refused: the secret is no connection string");
                new.failed_with = Some(MSG_INVALID_SECRET.to_owned());
                return match inner.store.import_create(new, limits).await? {
                    Admission::Accepted(import) => {
                        inner.count_final(import.status);
                        Ok(*import)
                    }
                    Admission::Refused { scope, limit } => {
                        Err(SubmitError::LimitReached { scope, limit })
                    }
                };
            }
        };
        let hub_host = connection.host_name().to_owned();
        let path = if export.is_some() { "export" } else { "query" };
        new.hub_host = Some(hub_host.clone());
        // Queued locally before it exists in the database, so a claim that sees it pending
        // always finds its job here.
        inner.queue(QueuedJob {
            import_id: id,
            tenant_id,
            connection,
            home_location: arc_home_location_identity,
            display_name,
            export,
        });
        let admission = inner.store.import_create(new, limits).await;
        match admission {
            Ok(Admission::Accepted(import)) => {
                info!(import = %id, hub = %hub_host, path, "import accepted");
                inner.wake.notify_one();
                Ok(*import)
            }
            Ok(Admission::Refused { scope, limit }) => {
                // Drops the job and, with it, the only copy of the secret.
                inner.unqueue(id);
                info!(import = %id, ?scope, limit, "import refused: too many imports waiting or running");
                Err(SubmitError::LimitReached { scope, limit })
            }
            Err(err) => {
                inner.unqueue(id);
                Err(err.into())
            }
        }
    }

    /// Cancels a tenant's import: recorded as cancelled at once, and its job (if this
    /// process runs it) stops before writing another page. A done import is returned as it
    /// is. `None`: no such import for this tenant.
    pub async fn cancel(&self, tenant_id: Uuid, id: Uuid) -> Result<Option<Import>, StoreError> {
        let inner = &self.inner;
        let import = inner.store.import_cancel(tenant_id, id).await?;
        if let Some(import) = &import {
            if import.status.is_done() {
                inner.stop_local(id);
            }
        }
        Ok(import)
    }

    /// Stops accepting imports, stops the running ones, fails every unfinished import of
    /// this process with [`MSG_RESTARTED`] (its secrets are about to disappear) and gives
    /// up its lease.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        drop(inner.lock_jobs().close());
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
            .worker_retire(inner.config.worker_id, MSG_RESTARTED)
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(imports = n, "unfinished imports failed at shutdown"),
            Err(err) => {
                warn!(error = %err.detail(), "could not fail this process's unfinished imports")
            }
        }
    }
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
    fn a_refusal_says_which_bound_and_how_many() {
        let tenant = SubmitError::LimitReached {
            scope: LimitScope::Tenant,
            limit: 10,
        };
        assert!(tenant
            .to_string()
            .contains("this tenant already has 10 imports"));
        let total = SubmitError::LimitReached {
            scope: LimitScope::Total,
            limit: 1000,
        };
        assert!(total
            .to_string()
            .contains("the service already has 1000 imports"));
    }
}
