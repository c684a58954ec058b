//! WAL checkpoints away from the writers.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold: the
//! import's page write that happens to commit then copies the WAL into the database file
//! and waits for its fsync while holding the write turn, so every other page waits too
//! (an import of 100,000 devices spent about a fifth of its time there). Here a task of
//! the store's own checkpoints with `PASSIVE` (it never blocks a reader or a writer) from
//! a connection of its own, shortly after writes, and the automatic checkpoint is only the
//! backstop for a WAL that grows past [`AUTOCHECKPOINT_PAGES`] anyway.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::SqlitePool;
use tracing::debug;

/// How long after a write the WAL is checkpointed.
const CHECKPOINT_AFTER: Duration = Duration::from_millis(200);
/// The automatic checkpoint's threshold in pages (SQLite's default is 1,000): a WAL only
/// reaches it if the checkpoint task cannot keep up.
pub(crate) const AUTOCHECKPOINT_PAGES: &str = "10000";

/// Says the WAL has new frames. The task ends once the last handle of its store is gone.
#[derive(Debug, Default)]
pub(crate) struct Checkpoints {
    pending: AtomicBool,
}

impl Checkpoints {
    pub(crate) fn start(pool: SqlitePool) -> Arc<Self> {
        let checkpoints = Arc::new(Self::default());
        let handle = Arc::downgrade(&checkpoints);
        tokio::spawn(run(pool, handle));
        checkpoints
    }

    pub(crate) fn wrote(&self) {
        self.pending.store(true, Ordering::Relaxed);
    }
}

async fn run(pool: SqlitePool, checkpoints: Weak<Checkpoints>) {
    let mut tick = tokio::time::interval(CHECKPOINT_AFTER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(checkpoints) = checkpoints.upgrade() else {
            return;
        };
        if pool.is_closed() {
            return;
        }
        if !checkpoints.pending.swap(false, Ordering::Relaxed) {
            continue;
        }
        drop(checkpoints);
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            // The automatic checkpoint still bounds the WAL; the next write tries again.
            debug!(error = %err, "WAL checkpoint did not run");
        }
    }
}
