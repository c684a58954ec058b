//! Housekeeping: keeping this worker's lease, failing the imports of replicas whose lease
//! ran out, and stopping local jobs whose imports were cancelled through another replica.
//!
//! Heartbeats run in a task of their own, so a slow reaping or cancel query (a busy
//! database, a long queue) cannot delay them and make a live replica look dead.

use std::sync::Arc;
use std::time::Duration;

use iothubgdr_store::{ImportStatus, StoreError};
use tracing::{info, warn};

use crate::engine::{Inner, MSG_RESTARTED};

pub(crate) fn spawn(inner: &Arc<Inner>) {
    let heartbeat = Arc::clone(inner);
    inner
        .tasks
        .spawn(async move { heartbeat.keep_lease().await });
    let upkeep = Arc::clone(inner);
    inner.tasks.spawn(async move { upkeep.upkeep().await });
}

impl Inner {
    /// How often the lease is renewed: three chances before it runs out.
    fn heartbeat_every(&self) -> Duration {
        (self.config.lease / 3).max(Duration::from_millis(100))
    }

    async fn keep_lease(self: Arc<Self>) {
        let mut heartbeat = tokio::time::interval(self.heartbeat_every());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = heartbeat.tick() => {
                    if let Err(err) = self
                        .store
                        .worker_heartbeat(self.config.worker_id, self.config.lease)
                        .await
                    {
                        warn!(error = %err.detail(), "heartbeat failed");
                    }
                }
            }
        }
    }

    /// Reaping every heartbeat period, cancel notice every tick, until shutdown.
    async fn upkeep(self: Arc<Self>) {
        let mut reap = tokio::time::interval(self.heartbeat_every());
        let mut poll =
            tokio::time::interval(self.config.cancel_poll.max(Duration::from_millis(50)));
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = reap.tick() => {
                    if let Err(err) = self.reap_orphans().await {
                        warn!(error = %err.detail(), "reaping stopped workers' imports failed");
                    }
                }
                _ = poll.tick() => self.notice_remote_cancels().await,
            }
        }
    }

    /// Fails the unfinished imports of workers whose lease ran out.
    pub(crate) async fn reap_orphans(&self) -> Result<(), StoreError> {
        let failed = self
            .store
            .imports_fail_orphaned(self.config.worker_id, MSG_RESTARTED)
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

    /// One query for every import this process holds: those that are done elsewhere
    /// (cancelled through another replica, failed by a reaper) are stopped here.
    async fn notice_remote_cancels(&self) {
        let held = self.lock_jobs().held();
        if held.is_empty() {
            return;
        }
        match self.store.imports_done_among(&held).await {
            Ok(done) => {
                for id in done {
                    self.stop_local(id);
                }
            }
            Err(err) => warn!(error = %err.detail(), "could not read which imports were cancelled"),
        }
    }
}
