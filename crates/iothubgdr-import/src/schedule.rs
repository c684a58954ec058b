//! Scheduling: the jobs this process holds, and the claims that start them.
//!
//! A job waits in the local queue (it holds the secret) while its import is pending in
//! the database. The scheduler asks the database to claim as many of this worker's pending
//! imports as it has free workers; the database starts only those whose tenant is under
//! its running limit counted over every replica, oldest first. A job that cannot start
//! stays queued and is tried again when a local job ends, when a new one is queued, and
//! on every tick (a slot may have freed on another replica).

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use iothub_client::{BlobContainerSas, ConnectionString};
use iothubgdr_store::ImportStatus;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::engine::Inner;
use crate::metrics::StateLabel;

/// A job waiting for a worker. It holds the only copy of the secret.
pub(crate) struct QueuedJob {
    pub(crate) import_id: Uuid,
    pub(crate) tenant_id: Uuid,
    pub(crate) connection: ConnectionString,
    pub(crate) home_location: Option<String>,
    /// The import's name: the principal of the events it records.
    pub(crate) display_name: String,
    /// The customer's container for the export path (a secret too), or `None` for the
    /// twin query.
    pub(crate) export: Option<BlobContainerSas>,
}

/// The jobs of this process.
pub(crate) struct Jobs {
    accepting: bool,
    queue: HashMap<Uuid, QueuedJob>,
    /// A cancel token per running import.
    running: HashMap<Uuid, CancellationToken>,
}

impl Jobs {
    pub(crate) fn accepting() -> Self {
        Self {
            accepting: true,
            queue: HashMap::new(),
            running: HashMap::new(),
        }
    }

    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting
    }

    /// Stops accepting and hands back the queued jobs (dropping them drops their secrets).
    pub(crate) fn close(&mut self) -> HashMap<Uuid, QueuedJob> {
        self.accepting = false;
        std::mem::take(&mut self.queue)
    }

    /// Every import this process holds, queued or running.
    pub(crate) fn held(&self) -> Vec<Uuid> {
        self.running
            .keys()
            .chain(self.queue.keys())
            .copied()
            .collect()
    }
}

impl Inner {
    pub(crate) fn lock_jobs(&self) -> MutexGuard<'_, Jobs> {
        // A panic while holding this lock cannot leave `Jobs` half-updated in a way that
        // matters more than stopping the service would, so a poisoned lock is used as is.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_gauges(&self, jobs: &Jobs) {
        self.metrics.imports_pending.set(jobs.queue.len() as i64);
        self.metrics.imports_running.set(jobs.running.len() as i64);
    }

    pub(crate) fn queue(&self, job: QueuedJob) {
        let mut jobs = self.lock_jobs();
        jobs.queue.insert(job.import_id, job);
        self.publish_gauges(&jobs);
    }

    pub(crate) fn unqueue(&self, id: Uuid) {
        let mut jobs = self.lock_jobs();
        jobs.queue.remove(&id);
        self.publish_gauges(&jobs);
    }

    /// Stops a local job whose import is done: a queued one is dropped with its secret, a
    /// running one is told to stop.
    pub(crate) fn stop_local(&self, id: Uuid) {
        let mut jobs = self.lock_jobs();
        if let Some(token) = jobs.running.get(&id) {
            token.cancel();
        }
        jobs.queue.remove(&id);
        self.publish_gauges(&jobs);
    }

    /// A running job ended: frees its worker and lets the scheduler fill it.
    pub(crate) fn job_ended(&self, id: Uuid) {
        let mut jobs = self.lock_jobs();
        jobs.running.remove(&id);
        self.publish_gauges(&jobs);
        drop(jobs);
        self.wake.notify_one();
    }

    pub(crate) fn count_final(&self, status: ImportStatus) {
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

    /// Claims as many queued jobs as there are free workers and starts them.
    async fn claim_and_start(self: &Arc<Self>) {
        let free = {
            let jobs = self.lock_jobs();
            if !jobs.accepting || jobs.queue.is_empty() {
                return;
            }
            self.config.workers.saturating_sub(jobs.running.len())
        };
        if free == 0 {
            return;
        }
        let per_tenant = u32::try_from(self.config.per_tenant).unwrap_or(u32::MAX);
        let max = u32::try_from(free).unwrap_or(u32::MAX);
        let claimed = match self
            .store
            .imports_claim(self.config.worker_id, per_tenant, max)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                warn!(error = %err.detail(), "claiming pending imports failed; trying again next tick");
                return;
            }
        };
        let mut jobs = self.lock_jobs();
        for id in claimed {
            // A job missing here was cancelled (or the process began shutting down) after
            // the claim: its import is done or is failed by the shutdown.
            let Some(job) = jobs.queue.remove(&id) else {
                debug!(import = %id, "claimed import has no queued job any more");
                continue;
            };
            let cancel = CancellationToken::new();
            jobs.running.insert(id, cancel.clone());
            let inner = Arc::clone(self);
            self.tasks
                .spawn(async move { crate::pipeline::run(inner, job, cancel).await });
        }
        self.publish_gauges(&jobs);
    }
}

/// The scheduler task: claims on every wake-up and every tick, until shutdown.
pub(crate) fn spawn_scheduler(inner: &Arc<Inner>) {
    let inner = Arc::clone(inner);
    let tasks = inner.tasks.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(
            inner
                .config
                .cancel_poll
                .max(std::time::Duration::from_millis(50)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = inner.shutdown.cancelled() => return,
                _ = inner.wake.notified() => {}
                _ = tick.tick() => {}
            }
            inner.claim_and_start().await;
        }
    });
}
