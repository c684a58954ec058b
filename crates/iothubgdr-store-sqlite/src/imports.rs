//! Imports: admission, claiming, page writes and their end.

use crate::query::count_of;
use crate::query::fetch_page;
use crate::rows;
use crate::rows::{backend, import_from_row, millis};
use crate::ExecuteInWriteTurn;
use iothubgdr_store::{
    Admission, Import, ImportLimits, ImportOutcome, ImportStatus, LimitScope, NewImport, Page,
    PageRequest, StoreResult,
};
use sqlx::Row;
use sqlx::{QueryBuilder, Sqlite};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{unique_or_backend, SqliteStore, UNFINISHED};

/// Ids per `IN (...)` list, far below SQLite's bound-variable limit.
const ID_CHUNK: usize = 500;

pub(crate) async fn import_create(
    store: &SqliteStore,
    new: NewImport,
    limits: ImportLimits,
) -> StoreResult<Admission> {
    let now = millis(OffsetDateTime::now_utc());
    let (status, finished_at) = match &new.failed_with {
        None => (ImportStatus::Pending, None),
        Some(_) => (ImportStatus::Failed, Some(now)),
    };
    // BEGIN IMMEDIATE takes the write lock first: the counts and the insert are one
    // decision even with several processes on the file.
    let mut tx = store.begin_write().await?;
    if status == ImportStatus::Pending {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*), COALESCE(SUM(tenant_id = ?), 0) FROM imports \
             WHERE status IN {UNFINISHED}"
        ))
        .bind(new.tenant_id.to_string())
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
    }
    let row = sqlx::query(
        "INSERT INTO imports (id, tenant_id, display_name, arc_home_location_identity, status, \
           error_message, hub_host, worker_id, accepted_at, finished_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(new.id.to_string())
    .bind(new.tenant_id.to_string())
    .bind(&new.display_name)
    .bind(&new.arc_home_location_identity)
    .bind(status.as_str())
    .bind(&new.failed_with)
    .bind(&new.hub_host)
    .bind(new.worker_id.to_string())
    .bind(now)
    .bind(finished_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| unique_or_backend(err, || format!("import {}", new.id)))?;
    let import = import_from_row(&row)?;
    tx.commit().await.map_err(backend)?;
    Ok(Admission::Accepted(Box::new(import)))
}

pub(crate) async fn import_get(
    store: &SqliteStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Import>> {
    let row = sqlx::query("SELECT * FROM imports WHERE tenant_id = ? AND id = ? AND deleted = 0")
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(import_from_row).transpose()
}

pub(crate) async fn import_list(
    store: &SqliteStore,
    tenant_id: Uuid,
    page: PageRequest,
) -> StoreResult<Page<Import>> {
    let mut query = QueryBuilder::new("SELECT * FROM imports WHERE deleted = 0 AND tenant_id = ");
    query.push_bind(tenant_id.to_string());
    fetch_page(&store.pool, query, page, import_from_row, |import| {
        import.seq
    })
    .await
}

pub(crate) async fn import_count(store: &SqliteStore, tenant_id: Uuid) -> StoreResult<u64> {
    let row = sqlx::query("SELECT COUNT(*) FROM imports WHERE deleted = 0 AND tenant_id = ?")
        .bind(tenant_id.to_string())
        .fetch_one(&store.pool)
        .await
        .map_err(backend)?;
    count_of(&row)
}

pub(crate) async fn import_delete(
    store: &SqliteStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE imports SET deleted = 1 WHERE tenant_id = ? AND id = ? AND deleted = 0",
    )
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .execute_in_write_turn(store)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn import_cancel(
    store: &SqliteStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Import>> {
    let mut tx = store.begin_write().await?;
    sqlx::query(&format!(
        "UPDATE imports SET status = 'CANCELLED', finished_at = ? \
         WHERE tenant_id = ? AND id = ? AND deleted = 0 AND status IN {UNFINISHED}"
    ))
    .bind(millis(OffsetDateTime::now_utc()))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let row = sqlx::query("SELECT * FROM imports WHERE tenant_id = ? AND id = ? AND deleted = 0")
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    row.as_ref().map(import_from_row).transpose()
}

pub(crate) async fn imports_claim(
    store: &SqliteStore,
    worker_id: Uuid,
    per_tenant: u32,
    max: u32,
) -> StoreResult<Vec<Uuid>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.begin_write().await?;
    // A pending import may start while its tenant's running imports plus its tenant's
    // older pending ones (on any worker) stay under the limit: the tenant's queue is
    // first come first served across processes.
    let rows = sqlx::query(
        "UPDATE imports SET status = 'INPROGRESS' WHERE id IN ( \
           SELECT p.id FROM imports p \
           WHERE p.worker_id = ? AND p.status = 'PENDING' \
             AND (SELECT COUNT(*) FROM imports r WHERE r.tenant_id = p.tenant_id \
                    AND (r.status = 'INPROGRESS' OR (r.status = 'PENDING' AND r.seq < p.seq))) < ? \
           ORDER BY p.seq LIMIT ?) \
         RETURNING id, seq",
    )
    .bind(worker_id.to_string())
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
                rows::uuid_col(row, "id")?,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    claimed.sort();
    Ok(claimed.into_iter().map(|(_, id)| id).collect())
}

pub(crate) async fn import_set_total(store: &SqliteStore, id: Uuid, total: u64) -> StoreResult<()> {
    sqlx::query("UPDATE imports SET number_devices_total = ? WHERE id = ?")
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .bind(id.to_string())
        .execute_in_write_turn(store)
        .await?;
    Ok(())
}

pub(crate) async fn import_add_refused(
    store: &SqliteStore,
    id: Uuid,
    refused: u64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE imports SET number_devices_refused = number_devices_refused + ? WHERE id = ?",
    )
    .bind(i64::try_from(refused).unwrap_or(i64::MAX))
    .bind(id.to_string())
    .execute_in_write_turn(store)
    .await?;
    Ok(())
}

pub(crate) async fn import_finish(
    store: &SqliteStore,
    id: Uuid,
    outcome: ImportOutcome,
) -> StoreResult<Option<Import>> {
    let (status, message) = match outcome {
        ImportOutcome::Finished => (ImportStatus::Finished, None),
        ImportOutcome::Cancelled => (ImportStatus::Cancelled, None),
        ImportOutcome::Failed(message) => (ImportStatus::Failed, Some(message)),
    };
    sqlx::query(&format!(
        "UPDATE imports SET status = ?, error_message = ?, finished_at = ? \
         WHERE id = ? AND status IN {UNFINISHED}"
    ))
    .bind(status.as_str())
    .bind(message)
    .bind(millis(OffsetDateTime::now_utc()))
    .bind(id.to_string())
    .execute_in_write_turn(store)
    .await?;
    store.import_by_id(id).await
}

pub(crate) async fn import_status(
    store: &SqliteStore,
    id: Uuid,
) -> StoreResult<Option<ImportStatus>> {
    let row = sqlx::query("SELECT status FROM imports WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(rows::status_col).transpose()
}

pub(crate) async fn imports_done_among(
    store: &SqliteStore,
    ids: &[Uuid],
) -> StoreResult<Vec<Uuid>> {
    let mut done = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT id FROM imports WHERE status NOT IN {UNFINISHED} AND id IN ("
        ));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id.to_string());
        }
        query.push(")");
        let rows = query
            .build()
            .fetch_all(&store.pool)
            .await
            .map_err(backend)?;
        for row in &rows {
            done.push(rows::uuid_col(row, "id")?);
        }
    }
    Ok(done)
}
