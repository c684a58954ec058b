//! Imports: admission, claiming, page writes and their end.

use iothubgdr_store::{
    Admission, Import, ImportLimits, ImportOutcome, ImportStatus, LimitScope, NewImport, Page,
    PageRequest, StoreResult,
};
use sqlx::QueryBuilder;
use sqlx::Row;
use uuid::Uuid;

use crate::query::count_of;
use crate::query::fetch_page;
use crate::rows;
use crate::rows::{backend, import_from_row};
use crate::{PostgresStore, UNFINISHED};

pub(crate) async fn import_create(
    store: &PostgresStore,
    new: NewImport,
    limits: ImportLimits,
) -> StoreResult<Admission> {
    let pending = new.failed_with.is_none();
    let mut tx = if pending {
        // Counting and inserting under the scheduling lock: replicas racing for the
        // last slot are served one at a time.
        let mut tx = store.begin_scheduling().await?;
        let row = sqlx::query(&format!(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE tenant_id = $1) FROM imports \
             WHERE status IN {UNFINISHED}"
        ))
        .bind(new.tenant_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let total: i64 = row.try_get(0).map_err(backend)?;
        let of_tenant: i64 = row.try_get(1).map_err(backend)?;
        if of_tenant >= i64::from(limits.per_tenant) {
            return Ok(Admission::Refused {
                scope: LimitScope::Tenant,
                limit: limits.per_tenant,
            });
        }
        if total >= i64::from(limits.total) {
            return Ok(Admission::Refused {
                scope: LimitScope::Total,
                limit: limits.total,
            });
        }
        tx
    } else {
        store.pool.begin().await.map_err(backend)?
    };
    let status = if pending {
        ImportStatus::Pending
    } else {
        ImportStatus::Failed
    };
    let row = sqlx::query(
        "INSERT INTO imports (id, tenant_id, display_name, arc_home_location_identity, status, \
           error_message, hub_host, worker_id, accepted_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, date_trunc('milliseconds', now()), \
           CASE WHEN $9 THEN NULL ELSE date_trunc('milliseconds', now()) END) RETURNING *",
    )
    .bind(new.id)
    .bind(new.tenant_id)
    .bind(&new.display_name)
    .bind(&new.arc_home_location_identity)
    .bind(status.as_str())
    .bind(&new.failed_with)
    .bind(&new.hub_host)
    .bind(new.worker_id)
    .bind(pending)
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| rows::unique_or_backend(err, || format!("import {}", new.id)))?;
    let import = import_from_row(&row)?;
    tx.commit().await.map_err(backend)?;
    Ok(Admission::Accepted(Box::new(import)))
}

pub(crate) async fn import_get(
    store: &PostgresStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Import>> {
    let row = sqlx::query("SELECT * FROM imports WHERE tenant_id = $1 AND id = $2 AND NOT deleted")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(import_from_row).transpose()
}

pub(crate) async fn import_list(
    store: &PostgresStore,
    tenant_id: Uuid,
    page: PageRequest,
) -> StoreResult<Page<Import>> {
    let mut query = QueryBuilder::new("SELECT * FROM imports WHERE NOT deleted AND tenant_id = ");
    query.push_bind(tenant_id);
    fetch_page(&store.pool, query, page, import_from_row, |import| {
        import.seq
    })
    .await
}

pub(crate) async fn import_count(store: &PostgresStore, tenant_id: Uuid) -> StoreResult<u64> {
    let row = sqlx::query("SELECT COUNT(*) FROM imports WHERE NOT deleted AND tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&store.pool)
        .await
        .map_err(backend)?;
    count_of(&row)
}

pub(crate) async fn import_delete(
    store: &PostgresStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE imports SET deleted = TRUE WHERE tenant_id = $1 AND id = $2 AND NOT deleted",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(&store.pool)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn import_cancel(
    store: &PostgresStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Import>> {
    let mut tx = store.pool.begin().await.map_err(backend)?;
    sqlx::query(&format!(
        "UPDATE imports SET status = 'CANCELLED', finished_at = date_trunc('milliseconds', now()) \
         WHERE tenant_id = $1 AND id = $2 AND NOT deleted AND status IN {UNFINISHED}"
    ))
    .bind(tenant_id)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let row = sqlx::query("SELECT * FROM imports WHERE tenant_id = $1 AND id = $2 AND NOT deleted")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    row.as_ref().map(import_from_row).transpose()
}

pub(crate) async fn imports_claim(
    store: &PostgresStore,
    worker_id: Uuid,
    per_tenant: u32,
    max: u32,
) -> StoreResult<Vec<Uuid>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.begin_scheduling().await?;
    // A pending import may start while its tenant's running imports plus its tenant's
    // older pending ones (on any worker) stay under the limit.
    let rows = sqlx::query(
        "UPDATE imports SET status = 'INPROGRESS' WHERE id IN ( \
           SELECT p.id FROM imports p \
           WHERE p.worker_id = $1 AND p.status = 'PENDING' \
             AND (SELECT COUNT(*) FROM imports r WHERE r.tenant_id = p.tenant_id \
                    AND (r.status = 'INPROGRESS' OR (r.status = 'PENDING' AND r.seq < p.seq))) < $2 \
           ORDER BY p.seq LIMIT $3) \
         RETURNING id, seq",
    )
    .bind(worker_id)
    .bind(i64::from(per_tenant))
    .bind(i64::from(max))
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<i64, _>("seq").map_err(backend)?,
                row.try_get::<Uuid, _>("id").map_err(backend)?,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    claimed.sort();
    Ok(claimed.into_iter().map(|(_, id)| id).collect())
}

pub(crate) async fn import_set_total(
    store: &PostgresStore,
    id: Uuid,
    total: u64,
) -> StoreResult<()> {
    sqlx::query("UPDATE imports SET number_devices_total = $1 WHERE id = $2")
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&store.pool)
        .await
        .map_err(backend)?;
    Ok(())
}

pub(crate) async fn import_add_refused(
    store: &PostgresStore,
    id: Uuid,
    refused: u64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE imports SET number_devices_refused = number_devices_refused + $1 WHERE id = $2",
    )
    .bind(i64::try_from(refused).unwrap_or(i64::MAX))
    .bind(id)
    .execute(&store.pool)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn import_finish(
    store: &PostgresStore,
    id: Uuid,
    outcome: ImportOutcome,
) -> StoreResult<Option<Import>> {
    let (status, message) = match outcome {
        ImportOutcome::Finished => (ImportStatus::Finished, None),
        ImportOutcome::Cancelled => (ImportStatus::Cancelled, None),
        ImportOutcome::Failed(message) => (ImportStatus::Failed, Some(message)),
    };
    sqlx::query(&format!(
        "UPDATE imports SET status = $1, error_message = $2, \
           finished_at = date_trunc('milliseconds', now()) \
         WHERE id = $3 AND status IN {UNFINISHED}"
    ))
    .bind(status.as_str())
    .bind(message)
    .bind(id)
    .execute(&store.pool)
    .await
    .map_err(backend)?;
    store.import_by_id(id).await
}

pub(crate) async fn import_status(
    store: &PostgresStore,
    id: Uuid,
) -> StoreResult<Option<ImportStatus>> {
    let row = sqlx::query("SELECT status FROM imports WHERE id = $1")
        .bind(id)
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(rows::status_col).transpose()
}

pub(crate) async fn imports_done_among(
    store: &PostgresStore,
    ids: &[Uuid],
) -> StoreResult<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT id FROM imports WHERE id = ANY($1) AND status NOT IN {UNFINISHED}"
    ))
    .bind(ids)
    .fetch_all(&store.pool)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|row| row.try_get::<Uuid, _>("id").map_err(backend))
        .collect()
}
