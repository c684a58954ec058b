//! Worker leases: a replica's heartbeat, and failing the imports of replicas that died.

use std::time::Duration;

use iothubgdr_store::StoreResult;
use sqlx::Row;
use uuid::Uuid;

use crate::rows::backend;
use crate::{PostgresStore, UNFINISHED};

pub(crate) async fn worker_heartbeat(
    store: &PostgresStore,
    worker_id: Uuid,
    lease: Duration,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO workers (id, last_seen, expires_at) \
         VALUES ($1, now(), now() + make_interval(secs => $2)) \
         ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, \
           expires_at = excluded.expires_at",
    )
    .bind(worker_id)
    .bind(lease_interval(lease))
    .execute(&store.pool)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn imports_fail_orphaned(
    store: &PostgresStore,
    reaper: Uuid,
    message: &str,
) -> StoreResult<Vec<Uuid>> {
    // One statement: both parts see one snapshot and one `now()`.
    let rows = sqlx::query(&format!(
        "WITH expired AS (DELETE FROM workers WHERE expires_at < now() RETURNING id) \
         UPDATE imports SET status = 'FAILED', error_message = $1, \
           finished_at = date_trunc('milliseconds', now()) \
         WHERE status IN {UNFINISHED} AND (worker_id IS NULL OR (worker_id <> $2 AND NOT EXISTS \
           (SELECT 1 FROM workers w WHERE w.id = imports.worker_id AND w.expires_at >= now()))) \
         RETURNING id"
    ))
    .bind(message)
    .bind(reaper)
    .fetch_all(&store.pool)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|row| row.try_get::<Uuid, _>("id").map_err(backend))
        .collect()
}

pub(crate) async fn worker_retire(
    store: &PostgresStore,
    worker_id: Uuid,
    message: &str,
) -> StoreResult<u64> {
    let mut tx = store.pool.begin().await.map_err(backend)?;
    let done = sqlx::query(&format!(
        "UPDATE imports SET status = 'FAILED', error_message = $1, \
           finished_at = date_trunc('milliseconds', now()) \
         WHERE worker_id = $2 AND status IN {UNFINISHED}"
    ))
    .bind(message)
    .bind(worker_id)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    sqlx::query("DELETE FROM workers WHERE id = $1")
        .bind(worker_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(done.rows_affected())
}

fn lease_interval(lease: Duration) -> f64 {
    // Seconds, as `make_interval` takes them.
    lease.as_secs_f64()
}
