//! The writes that make an asset's history in SQLite: asset creation with its `NewAsset`
//! event, posted events, import pages that record only what changed, and the
//! `StopTracking` of devices that left their hub. What each write means is decided by
//! `iothubgdr_store::history` (shared by every backend); this module only stores it.
//!
//! Every write here runs in one `BEGIN IMMEDIATE` transaction: SQLite has one writer at a
//! time, so reading the stored state and writing the plan cannot interleave with another
//! import of the same hub.

use std::collections::HashMap;

use iothubgdr_store::history::{apply_event, BEHAVIOUR_ASSET_CREATOR, OPERATION_NEW_ASSET};
use iothubgdr_store::plan::{
    plan_page, stop_tracking_event, EncodedEvent, StoredAsset, StoredAttributes,
};
use iothubgdr_store::{
    distinct_sorted, Asset, AssetUpsert, Attributes, Event, EventFilter, EventWrite,
    ImportBreakdown, ImportContext, ImportStatus, Incarnation, NewAsset, NewEvent, Page,
    PageRequest, PageWrite, StoreError, StoreResult,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::{event_from_row, insert_events, json_col, push_event_filter};
use crate::query::{fetch_count, fetch_page};
use crate::rows::{self, asset_from_row, backend, millis, to_json_text};
use crate::SqliteStore;

/// Keys or ids per `IN (...)` list and rows per multi-row statement.
const CHUNK: usize = 500;

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) async fn asset_create(
    store: &SqliteStore,
    tenant_id: Uuid,
    new: NewAsset,
) -> StoreResult<Asset> {
    let now = millis(OffsetDateTime::now_utc());
    let id = Uuid::now_v7();
    let behaviours = to_json_text(&new.behaviours)?;
    let attributes = to_json_text(&new.attributes)?;
    let mut event = NewEvent::new(BEHAVIOUR_ASSET_CREATOR, OPERATION_NEW_ASSET, new.principal);
    event.asset_attributes = new.attributes;
    let event = EncodedEvent::new(id, &event).map_err(encoding)?;
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, tracked, at_time, created_at) \
         VALUES (?, ?, NULL, ?, ?, 1, ?, ?) RETURNING *",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(behaviours)
    .bind(attributes)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    insert_events(&mut tx, tenant_id, &[event], now).await?;
    tx.commit().await.map_err(backend)?;
    asset_from_row(&row)
}

pub(crate) async fn event_create(
    store: &SqliteStore,
    tenant_id: Uuid,
    asset_id: Uuid,
    new: NewEvent,
) -> StoreResult<EventWrite> {
    let mut tx = store.begin_write().await?;
    let Some(row) =
        sqlx::query("SELECT attributes, tracked FROM assets WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id.to_string())
            .bind(asset_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
    else {
        return Ok(EventWrite::NoAsset);
    };
    let mut attributes: Attributes = json_col(&row, "attributes")?;
    let mut tracked = row.try_get::<i64, _>("tracked").map_err(backend)? != 0;
    if let Err(refused) = apply_event(
        &mut attributes,
        &mut tracked,
        &new.behaviour,
        &new.operation,
        &new.asset_attributes,
        true,
    ) {
        return Ok(EventWrite::Refused(refused));
    }
    let now = millis(OffsetDateTime::now_utc());
    let event = EncodedEvent::new(asset_id, &new).map_err(encoding)?;
    let event_id = event.id;
    insert_events(&mut tx, tenant_id, &[event], now).await?;
    sqlx::query("UPDATE assets SET attributes = ?, tracked = ?, at_time = ? WHERE id = ?")
        .bind(to_json_text(&attributes)?)
        .bind(i64::from(tracked))
        .bind(now)
        .bind(asset_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let row = sqlx::query("SELECT * FROM events WHERE id = ?")
        .bind(event_id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    let event = event_from_row(&row)?;
    tx.commit().await.map_err(backend)?;
    Ok(EventWrite::Recorded(Box::new(event)))
}

pub(crate) async fn asset_get_at(
    store: &SqliteStore,
    tenant_id: Uuid,
    id: Uuid,
    at: OffsetDateTime,
) -> StoreResult<Option<Asset>> {
    let mut conn = store.pool.acquire().await.map_err(backend)?;
    crate::events::asset_get_at(&mut conn, tenant_id, id, at).await
}

pub(crate) async fn event_get(
    store: &SqliteStore,
    tenant_id: Uuid,
    asset_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Event>> {
    let row = sqlx::query("SELECT * FROM events WHERE tenant_id = ? AND asset_id = ? AND id = ?")
        .bind(tenant_id.to_string())
        .bind(asset_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(event_from_row).transpose()
}

pub(crate) async fn event_list(
    store: &SqliteStore,
    tenant_id: Uuid,
    filter: &EventFilter,
    page: PageRequest,
) -> StoreResult<Page<Event>> {
    let mut query = QueryBuilder::new("SELECT * FROM events WHERE tenant_id = ");
    query.push_bind(tenant_id.to_string());
    push_event_filter(&mut query, filter);
    fetch_page(&store.pool, query, page, event_from_row, |event| event.seq).await
}

pub(crate) async fn event_count(
    store: &SqliteStore,
    tenant_id: Uuid,
    filter: &EventFilter,
) -> StoreResult<u64> {
    let mut query = QueryBuilder::new("SELECT COUNT(*) FROM events WHERE tenant_id = ");
    query.push_bind(tenant_id.to_string());
    push_event_filter(&mut query, filter);
    fetch_count(&store.pool, query).await
}

/// The page write of an import. What is stored for the page's keys is read, and the page
/// planned and encoded, before the write lock is taken (in WAL mode a reader never waits
/// for the writer), so the next page is read while this one is written and the lock is
/// held only for the writes. They check that nothing moved since the read: an insert
/// must not meet an existing key, an update must find the row as it was read. When
/// another import of the same hub got there first, the transaction rolls back and answers
/// [`StoreError::Retryable`], and the writer plans again from the new state. An unchanged
/// device costs one indexed read and no write.
pub(crate) async fn write_page(
    store: &SqliteStore,
    id: Uuid,
    tenant_id: Uuid,
    context: &ImportContext,
    assets: &[AssetUpsert],
) -> StoreResult<PageWrite> {
    let assets = distinct_sorted(assets);
    let added = u64::try_from(assets.len()).unwrap_or(u64::MAX);
    let tenant = tenant_id.to_string();
    let stored = {
        let mut conn = store.pool.acquire().await.map_err(backend)?;
        stored_assets(&mut conn, &tenant, &assets).await?
    };
    let plan = plan_page(&assets, &stored, context).map_err(stored_json)?;
    let events = plan.encode_events(context).map_err(encoding)?;
    let mut inserts = Vec::with_capacity(plan.inserts.len());
    for insert in &plan.inserts {
        inserts.push((
            insert.id.to_string(),
            insert.upsert.source_key.as_str(),
            to_json_text(&insert.upsert.behaviours)?,
            insert.upsert.attributes_json(),
            &insert.upsert.observation.incarnation,
        ));
    }
    let mut updates = Vec::with_capacity(plan.updates.len());
    for update in &plan.updates {
        // `plan_page` plans an update only for a key it was given as stored, and this
        // backend reads attributes as text: neither can fail, but skipping an update
        // would record its events on an asset left as it was.
        let read = stored
            .get(&update.upsert.source_key)
            .ok_or_else(|| StoreError::backend("a planned update has no stored row"))?;
        let StoredAttributes::Json(read_attributes) = &read.attributes else {
            return Err(StoreError::backend(
                "a planned update's stored attributes are not text",
            ));
        };
        updates.push((
            update,
            to_json_text(&update.upsert.behaviours)?,
            to_json_text(&update.attributes)?,
            read,
            read_attributes.as_str(),
        ));
    }

    let mut tx = store.begin_write().await?;
    let now = millis(OffsetDateTime::now_utc());
    let number_assets_imported =
        match bump_import(&mut tx, id, tenant_id, added, &plan.breakdown).await? {
            Ok(total) => total,
            Err(status) => {
                tx.rollback().await.map_err(backend)?;
                return Ok(PageWrite::Stopped(status));
            }
        };
    for chunk in inserts.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, tracked, \
             source_generation, source_version, at_time, created_at) ",
        );
        query.push_values(
            chunk,
            |mut row, (asset_id, key, behaviours, attributes, incarnation)| {
                row.push_bind(asset_id.as_str())
                    .push_bind(tenant.as_str())
                    .push_bind(*key)
                    .push_bind(behaviours.as_str())
                    .push_bind(*attributes)
                    .push_bind(1_i64)
                    .push_bind(incarnation.generation.as_deref())
                    .push_bind(incarnation.version)
                    .push_bind(now)
                    .push_bind(now);
            },
        );
        if let Err(err) = query.build().execute(&mut *tx).await {
            tx.rollback().await.map_err(backend)?;
            return Err(moved_or_backend(err));
        }
    }
    for (update, behaviours, attributes, read, read_attributes) in &updates {
        let incarnation = &update.upsert.observation.incarnation;
        let done = sqlx::query(
            "UPDATE assets SET behaviours = ?, attributes = ?, tracked = 1, \
             source_generation = ?, source_version = ?, at_time = ? \
             WHERE id = ? AND attributes = ? AND tracked = ? \
             AND source_generation IS ? AND source_version IS ?",
        )
        .bind(behaviours.as_str())
        .bind(attributes.as_str())
        .bind(incarnation.generation.as_deref())
        .bind(incarnation.version)
        .bind(now)
        .bind(update.id.to_string())
        .bind(*read_attributes)
        .bind(i64::from(read.tracked))
        .bind(read.incarnation.generation.as_deref())
        .bind(read.incarnation.version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(backend)?;
            return Err(moved());
        }
    }
    insert_events(&mut tx, tenant_id, &events, now).await?;
    tx.commit().await.map_err(backend)?;
    Ok(PageWrite::Written {
        number_assets_imported,
        breakdown: plan.breakdown,
    })
}

/// Another writer changed the page's assets between its read and its write.
fn moved() -> StoreError {
    StoreError::Retryable {
        context: "another import wrote the same assets meanwhile".into(),
        source: Box::new(std::io::Error::other("the page's plan is out of date")),
    }
}

fn moved_or_backend(err: sqlx::Error) -> StoreError {
    if matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation()) {
        moved()
    } else {
        backend(err)
    }
}

/// `StopTracking` for the given assets that are still tracked.
pub(crate) async fn stop_tracking(
    store: &SqliteStore,
    id: Uuid,
    tenant_id: Uuid,
    context: &ImportContext,
    asset_ids: &[Uuid],
) -> StoreResult<PageWrite> {
    let mut tx = store.begin_write().await?;
    let now = millis(OffsetDateTime::now_utc());
    let mut stopped: Vec<Uuid> = Vec::new();
    for chunk in asset_ids.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new("UPDATE assets SET tracked = 0, at_time = ");
        query.push_bind(now);
        query.push(" WHERE tracked = 1 AND tenant_id = ");
        query.push_bind(tenant_id.to_string());
        query.push(" AND id IN (");
        let mut list = query.separated(", ");
        for asset_id in chunk {
            list.push_bind(asset_id.to_string());
        }
        query.push(") RETURNING id");
        for row in query.build().fetch_all(&mut *tx).await.map_err(backend)? {
            stopped.push(rows::uuid_col(&row, "id")?);
        }
    }
    let breakdown = ImportBreakdown {
        stopped_tracking: u64::try_from(stopped.len()).unwrap_or(u64::MAX),
        ..ImportBreakdown::default()
    };
    let number_assets_imported = match bump_import(&mut tx, id, tenant_id, 0, &breakdown).await? {
        Ok(total) => total,
        Err(status) => {
            tx.rollback().await.map_err(backend)?;
            return Ok(PageWrite::Stopped(status));
        }
    };
    let event = stop_tracking_event(context);
    let rows = stopped
        .iter()
        .map(|asset_id| EncodedEvent::new(*asset_id, &event))
        .collect::<Result<Vec<_>, _>>()
        .map_err(encoding)?;
    insert_events(&mut tx, tenant_id, &rows, now).await?;
    tx.commit().await.map_err(backend)?;
    Ok(PageWrite::Written {
        number_assets_imported,
        breakdown,
    })
}

pub(crate) async fn tracked_count_by_source(
    store: &SqliteStore,
    tenant_id: Uuid,
    prefix: &str,
) -> StoreResult<u64> {
    let upper = format!("{prefix}\u{10FFFF}");
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM assets WHERE tenant_id = ? AND tracked = 1 \
         AND source_key >= ? AND source_key < ?",
    )
    .bind(tenant_id.to_string())
    .bind(prefix)
    .bind(upper)
    .fetch_one(&store.pool)
    .await
    .map_err(backend)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// `(id, source_key)` of tracked assets under a key prefix, in key order.
pub(crate) async fn tracked_by_source(
    store: &SqliteStore,
    tenant_id: Uuid,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<(Uuid, String)>> {
    // Every key that starts with `prefix` sorts below `prefix` + U+10FFFF (SQLite's
    // BINARY collation is the byte order of UTF-8), so an index range serves it.
    let upper = format!("{prefix}\u{10FFFF}");
    let rows = sqlx::query(
        "SELECT id, source_key FROM assets WHERE tenant_id = ? AND tracked = 1 \
         AND source_key >= ? AND source_key < ? AND source_key > ? \
         ORDER BY source_key LIMIT ?",
    )
    .bind(tenant_id.to_string())
    .bind(prefix)
    .bind(upper)
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|row| {
            Ok((
                rows::uuid_col(row, "id")?,
                row.try_get::<String, _>("source_key").map_err(backend)?,
            ))
        })
        .collect()
}

fn encoding(err: serde_json::Error) -> StoreError {
    StoreError::backend(format!("cannot encode JSON: {err}"))
}

fn stored_json(err: serde_json::Error) -> StoreError {
    StoreError::backend(format!("bad JSON in column attributes: {err}"))
}

/// What is stored for the page's keys, by key. The attributes stay text: the plan decodes
/// only those that are not the upsert's own.
async fn stored_assets(
    conn: &mut SqliteConnection,
    tenant: &str,
    assets: &[&AssetUpsert],
) -> StoreResult<HashMap<String, StoredAsset>> {
    let mut stored = HashMap::with_capacity(assets.len());
    for chunk in assets.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, source_key, attributes, tracked, source_generation, source_version \
             FROM assets WHERE tenant_id = ",
        );
        query.push_bind(tenant);
        query.push(" AND source_key IN (");
        let mut list = query.separated(", ");
        for asset in chunk {
            list.push_bind(asset.source_key.as_str());
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await.map_err(backend)? {
            let key: String = row.try_get("source_key").map_err(backend)?;
            stored.insert(
                key,
                StoredAsset {
                    id: rows::uuid_col(&row, "id")?,
                    attributes: StoredAttributes::Json(row.try_get("attributes").map_err(backend)?),
                    tracked: row.try_get::<i64, _>("tracked").map_err(backend)? != 0,
                    incarnation: Incarnation {
                        generation: row.try_get("source_generation").map_err(backend)?,
                        version: row.try_get("source_version").map_err(backend)?,
                    },
                },
            );
        }
    }
    Ok(stored)
}

/// Adds to the import's counts if it is still in progress (the same statement is the
/// check, so a cancel committed first stops the write); otherwise says why not.
async fn bump_import(
    conn: &mut SqliteConnection,
    id: Uuid,
    tenant_id: Uuid,
    added: u64,
    breakdown: &ImportBreakdown,
) -> StoreResult<Result<u64, ImportStatus>> {
    let bumped = sqlx::query(
        "UPDATE imports SET number_assets_imported = number_assets_imported + ?, \
           number_assets_created = number_assets_created + ?, \
           number_assets_changed = number_assets_changed + ?, \
           number_assets_unchanged = number_assets_unchanged + ?, \
           number_assets_stopped_tracking = number_assets_stopped_tracking + ?, \
           number_assets_tracked_again = number_assets_tracked_again + ?, \
           number_assets_recreated = number_assets_recreated + ? \
         WHERE id = ? AND tenant_id = ? AND status = 'INPROGRESS' \
         RETURNING number_assets_imported",
    )
    .bind(as_i64(added))
    .bind(as_i64(breakdown.created))
    .bind(as_i64(breakdown.changed))
    .bind(as_i64(breakdown.unchanged))
    .bind(as_i64(breakdown.stopped_tracking))
    .bind(as_i64(breakdown.tracked_again))
    .bind(as_i64(breakdown.recreated))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if let Some(row) = bumped {
        let total: i64 = row.try_get(0).map_err(backend)?;
        return Ok(Ok(u64::try_from(total).unwrap_or(0)));
    }
    let status_row = sqlx::query("SELECT status FROM imports WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(Err(match status_row {
        Some(row) => rows::status_col(&row)?,
        // An import that does not exist cannot take assets; report it as failed.
        None => ImportStatus::Failed,
    }))
}
