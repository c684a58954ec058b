//! Worker leases: a replica's heartbeat, and failing the imports of replicas that died.

use std::time::Duration;

use crate::rows;
use crate::rows::{backend, millis};
use crate::ExecuteInWriteTurn;
use iothubgdr_store::StoreResult;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{SqliteStore, NOW_MS, UNFINISHED};

pub(crate) async fn worker_heartbeat(
    store: &SqliteStore,
    worker_id: Uuid,
    lease: Duration,
) -> StoreResult<()> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    sqlx::query(&format!(
        "INSERT INTO workers (id, last_seen, expires_at) VALUES (?, {NOW_MS}, {NOW_MS} + ?) \
         ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, \
           expires_at = excluded.expires_at"
    ))
    .bind(worker_id.to_string())
    .bind(lease_ms)
    .execute_in_write_turn(store)
    .await?;
    Ok(())
}

pub(crate) async fn imports_fail_orphaned(
    store: &SqliteStore,
    reaper: Uuid,
    message: &str,
) -> StoreResult<Vec<Uuid>> {
    let mut tx = store.begin_write().await?;
    let rows = sqlx::query(&format!(
        "UPDATE imports SET status = 'FAILED', error_message = ?, finished_at = ? \
         WHERE status IN {UNFINISHED} AND (worker_id IS NULL OR (worker_id <> ? AND worker_id \
           NOT IN (SELECT id FROM workers WHERE expires_at >= {NOW_MS}))) \
         RETURNING id"
    ))
    .bind(message)
    .bind(millis(OffsetDateTime::now_utc()))
    .bind(reaper.to_string())
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    sqlx::query(&format!("DELETE FROM workers WHERE expires_at < {NOW_MS}"))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    rows.iter().map(|row| rows::uuid_col(row, "id")).collect()
}

pub(crate) async fn worker_retire(
    store: &SqliteStore,
    worker_id: Uuid,
    message: &str,
) -> StoreResult<u64> {
    let mut tx = store.begin_write().await?;
    let done = sqlx::query(&format!(
        "UPDATE imports SET status = 'FAILED', error_message = ?, finished_at = ? \
         WHERE worker_id = ? AND status IN {UNFINISHED}"
    ))
    .bind(message)
    .bind(millis(OffsetDateTime::now_utc()))
    .bind(worker_id.to_string())
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    sqlx::query("DELETE FROM workers WHERE id = ?")
        .bind(worker_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(done.rows_affected())
}
