//! The writes that make an asset's history in PostgreSQL: asset creation with its
//! `NewAsset` event, posted events, import pages that record only what changed, and the
//! `StopTracking` of devices that left their hub. What each write means is decided by
//! `iothubgdr_store::history` (shared by every backend); this module only stores it.
//!
//! A page write reads the stored state of its keys without locking them, plans, and
//! writes the plan in one statement that checks nothing moved meanwhile, then raises the
//! import's counts last (their row lock is held only for the commit): an insert must
//! not meet an existing key, an update must find the row version (`xmin`) it read. When
//! another writer of the same hub got there first, the transaction rolls back and answers
//! [`StoreError::Retryable`], and the writer plans again from the new state. So an
//! unchanged device costs one indexed read and no write, not even a row lock.

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
use sqlx::{Postgres, QueryBuilder, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::{event_from_row, push_event_filter};
use crate::query::{fetch_count, fetch_page};
use crate::rows::{asset_from_row, backend, json_col, status_col, to_json_text};
use crate::PostgresStore;

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns of events to insert, as parallel arrays for one `UNNEST`, borrowed from
/// the encoded events.
#[derive(Default)]
struct EventColumns<'a> {
    ids: Vec<Uuid>,
    asset_ids: Vec<Uuid>,
    behaviours: Vec<&'a str>,
    operations: Vec<&'a str>,
    event_attributes: Vec<&'a str>,
    /// `None`: the attributes its asset was created with in the same statement (see
    /// [`insert_events_sql`]).
    asset_attributes: Vec<Option<&'a str>>,
    declared: Vec<Option<OffsetDateTime>>,
    /// `None`: the same as the accepted one (nearly every event), stored as NULL.
    principal_declared: Vec<Option<&'a str>>,
    principal_accepted: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    fn new(events: &'a [EncodedEvent<'a>]) -> Self {
        let mut columns = Self::default();
        for event in events {
            columns.push(event, Some(&event.asset_attributes));
        }
        columns
    }

    fn push(&mut self, event: &'a EncodedEvent<'a>, asset_attributes: Option<&'a str>) {
        self.ids.push(event.id);
        self.asset_ids.push(event.asset_id);
        self.behaviours.push(event.behaviour);
        self.operations.push(event.operation);
        self.event_attributes.push(&event.event_attributes);
        self.asset_attributes.push(asset_attributes);
        self.declared.push(event.timestamp_declared);
        self.principal_declared.push(
            (event.principal_declared != event.principal_accepted)
                .then_some(event.principal_declared.as_str()),
        );
        self.principal_accepted.push(&event.principal_accepted);
    }

    /// Binds the nine arrays, in the order of [`insert_events_sql`]'s `UNNEST`.
    fn bind_to<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.asset_ids)
            .bind(&self.behaviours)
            .bind(&self.operations)
            .bind(&self.event_attributes)
            .bind(&self.asset_attributes)
            .bind(&self.declared)
            .bind(&self.principal_declared)
            .bind(&self.principal_accepted)
    }
}

fn encoding(err: serde_json::Error) -> StoreError {
    StoreError::backend(format!("cannot encode JSON: {err}"))
}

/// Inserts the events bound at `$E+0..$E+8` (see [`EventColumns::bind_to`]); `{tenant}`
/// is the parameter of the tenant, `{e}` the first event parameter. With `created`, the
/// name of a CTE that inserted assets and returned their `id` and `attributes`: an event
/// without `asset_attributes` takes its asset's from there (the jsonb already parsed, not
/// sent and parsed a second time), and is left out when its asset was not inserted. The
/// statement ends in a `WHERE` clause, which a caller may extend with `AND …`.
fn insert_events_sql(tenant: usize, e: usize, created: Option<&str>) -> String {
    let (asset_attributes, join) = match created {
        Some(cte) => (
            "COALESCE(ev.asset_attributes::jsonb, c.attributes)".to_owned(),
            format!(
                "LEFT JOIN {cte} c ON c.id = ev.asset_id \
                 WHERE (ev.asset_attributes IS NOT NULL OR c.id IS NOT NULL)"
            ),
        ),
        None => (
            "ev.asset_attributes::jsonb".to_owned(),
            "WHERE TRUE".to_owned(),
        ),
    };
    format!(
        "INSERT INTO events (id, asset_id, tenant_id, behaviour, operation, event_attributes, \
           asset_attributes, timestamp_declared, timestamp_accepted, principal_declared, \
           principal_accepted) \
         SELECT ev.id, ev.asset_id, ${tenant}, ev.behaviour, ev.operation, \
           ev.event_attributes::jsonb, {asset_attributes}, \
           COALESCE(ev.declared, date_trunc('milliseconds', now())), \
           date_trunc('milliseconds', now()), ev.principal_declared::jsonb, \
           ev.principal_accepted::jsonb \
         FROM UNNEST(${}::uuid[], ${}::uuid[], ${}::text[], ${}::text[], ${}::text[], \
           ${}::text[], ${}::timestamptz[], ${}::text[], ${}::text[]) \
           AS ev (id, asset_id, behaviour, operation, event_attributes, asset_attributes, \
                  declared, principal_declared, principal_accepted) \
         {join}",
        e,
        e + 1,
        e + 2,
        e + 3,
        e + 4,
        e + 5,
        e + 6,
        e + 7,
        e + 8
    )
}

pub(crate) async fn asset_create(
    store: &PostgresStore,
    tenant_id: Uuid,
    new: NewAsset,
) -> StoreResult<Asset> {
    let id = Uuid::now_v7();
    let behaviours = to_json_text(&new.behaviours)?;
    let attributes = to_json_text(&new.attributes)?;
    let mut event = NewEvent::new(BEHAVIOUR_ASSET_CREATOR, OPERATION_NEW_ASSET, new.principal);
    event.asset_attributes = new.attributes;
    let encoded = [EncodedEvent::new(id, &event).map_err(encoding)?];
    let events = EventColumns::new(&encoded);
    let mut tx = store.pool.begin().await.map_err(backend)?;
    let row = sqlx::query(
        "INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, tracked, at_time, created_at) \
         VALUES ($1, $2, NULL, $3::jsonb, $4::jsonb, TRUE, date_trunc('milliseconds', now()), \
                 date_trunc('milliseconds', now())) RETURNING *",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(behaviours)
    .bind(attributes)
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    let sql = insert_events_sql(1, 2, None);
    events
        .bind_to(sqlx::query(&sql).bind(tenant_id))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    asset_from_row(&row)
}

pub(crate) async fn event_create(
    store: &PostgresStore,
    tenant_id: Uuid,
    asset_id: Uuid,
    new: NewEvent,
) -> StoreResult<EventWrite> {
    let mut tx = store.pool.begin().await.map_err(backend)?;
    let Some(row) = sqlx::query(
        "SELECT attributes, tracked FROM assets WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant_id)
    .bind(asset_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?
    else {
        return Ok(EventWrite::NoAsset);
    };
    let mut attributes: Attributes = json_col(&row, "attributes")?;
    let mut tracked: bool = row.try_get("tracked").map_err(backend)?;
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
    let encoded = [EncodedEvent::new(asset_id, &new).map_err(encoding)?];
    let events = EventColumns::new(&encoded);
    let sql = format!("{} RETURNING *", insert_events_sql(1, 2, None));
    let row = events
        .bind_to(sqlx::query(&sql).bind(tenant_id))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    let event = event_from_row(&row)?;
    sqlx::query(
        "UPDATE assets SET attributes = $1::jsonb, tracked = $2, at_time = $3 WHERE id = $4",
    )
    .bind(to_json_text(&attributes)?)
    .bind(tracked)
    .bind(event.timestamp_accepted)
    .bind(asset_id)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(EventWrite::Recorded(Box::new(event)))
}

pub(crate) async fn event_get(
    store: &PostgresStore,
    tenant_id: Uuid,
    asset_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Event>> {
    let row =
        sqlx::query("SELECT * FROM events WHERE tenant_id = $1 AND asset_id = $2 AND id = $3")
            .bind(tenant_id)
            .bind(asset_id)
            .bind(id)
            .fetch_optional(&store.pool)
            .await
            .map_err(backend)?;
    row.as_ref().map(event_from_row).transpose()
}

pub(crate) async fn event_list(
    store: &PostgresStore,
    tenant_id: Uuid,
    filter: &EventFilter,
    page: PageRequest,
) -> StoreResult<Page<Event>> {
    let mut query = QueryBuilder::new("SELECT * FROM events WHERE tenant_id = ");
    query.push_bind(tenant_id);
    push_event_filter(&mut query, filter);
    fetch_page(&store.pool, query, page, event_from_row, |event| event.seq).await
}

pub(crate) async fn event_count(
    store: &PostgresStore,
    tenant_id: Uuid,
    filter: &EventFilter,
) -> StoreResult<u64> {
    let mut query = QueryBuilder::new("SELECT COUNT(*) FROM events WHERE tenant_id = ");
    query.push_bind(tenant_id);
    push_event_filter(&mut query, filter);
    fetch_count(&store.pool, query).await
}

/// What a page write answers when the import is no longer in progress (cancelled, or
/// failed by another replica's reaper; gone: failed).
async fn stopped(store: &PostgresStore, id: Uuid) -> StoreResult<PageWrite> {
    let status = crate::imports::import_status(store, id).await?;
    Ok(PageWrite::Stopped(status.unwrap_or(ImportStatus::Failed)))
}

pub(crate) async fn write_page(
    store: &PostgresStore,
    id: Uuid,
    tenant_id: Uuid,
    context: &ImportContext,
    assets: &[AssetUpsert],
) -> StoreResult<PageWrite> {
    let assets = distinct_sorted(assets);
    let keys: Vec<&str> = assets.iter().map(|a| a.source_key.as_str()).collect();
    let rows = sqlx::query(
        "SELECT id, source_key, attributes, tracked, source_generation, source_version, \
           xmin::text AS row_version \
         FROM assets WHERE tenant_id = $1 AND source_key = ANY($2::text[])",
    )
    .bind(tenant_id)
    .bind(&keys)
    .fetch_all(&store.pool)
    .await
    .map_err(backend)?;
    let mut stored = HashMap::with_capacity(rows.len());
    let mut versions: HashMap<Uuid, String> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let asset_id: Uuid = row.try_get("id").map_err(backend)?;
        versions.insert(asset_id, row.try_get("row_version").map_err(backend)?);
        stored.insert(
            row.try_get::<String, _>("source_key").map_err(backend)?,
            StoredAsset {
                id: asset_id,
                attributes: StoredAttributes::Decoded(json_col(row, "attributes")?),
                tracked: row.try_get("tracked").map_err(backend)?,
                incarnation: Incarnation {
                    generation: row.try_get("source_generation").map_err(backend)?,
                    version: row.try_get("source_version").map_err(backend)?,
                },
            },
        );
    }
    let plan = plan_page(&assets, &stored, context).map_err(encoding)?;
    let b = &plan.breakdown;
    if plan.inserts.is_empty() && plan.updates.is_empty() {
        // Nothing changed: only the counts, in one statement (an unchanged hub's re-import
        // is this read and this update per page).
        let number: Option<i64> = sqlx::query_scalar(
            "UPDATE imports SET number_assets_imported = number_assets_imported + $3, \
               number_assets_unchanged = number_assets_unchanged + $4 \
             WHERE id = $1 AND tenant_id = $2 AND status = 'INPROGRESS' \
             RETURNING number_assets_imported",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(as_i64(u64::try_from(assets.len()).unwrap_or(u64::MAX)))
        .bind(as_i64(b.unchanged))
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
        return match number {
            Some(number) => Ok(PageWrite::Written {
                number_assets_imported: u64::try_from(number).unwrap_or(0),
                breakdown: plan.breakdown,
            }),
            None => stopped(store, id).await,
        };
    }

    // New assets.
    let mut new_ids = Vec::with_capacity(plan.inserts.len());
    let mut new_keys = Vec::with_capacity(plan.inserts.len());
    let mut new_behaviours = Vec::with_capacity(plan.inserts.len());
    let mut new_attributes = Vec::with_capacity(plan.inserts.len());
    let mut new_generations = Vec::with_capacity(plan.inserts.len());
    let mut new_versions = Vec::with_capacity(plan.inserts.len());
    for insert in &plan.inserts {
        new_ids.push(insert.id);
        new_keys.push(insert.upsert.source_key.as_str());
        new_behaviours.push(to_json_text(&insert.upsert.behaviours)?);
        new_attributes.push(insert.upsert.attributes_json());
        let incarnation = &insert.upsert.observation.incarnation;
        new_generations.push(incarnation.generation.clone());
        new_versions.push(incarnation.version);
    }
    // Changed assets, each with the row version it was planned from.
    let mut upd_ids = Vec::with_capacity(plan.updates.len());
    let mut upd_row_versions = Vec::with_capacity(plan.updates.len());
    let mut upd_behaviours = Vec::with_capacity(plan.updates.len());
    let mut upd_attributes = Vec::with_capacity(plan.updates.len());
    let mut upd_generations = Vec::with_capacity(plan.updates.len());
    let mut upd_versions = Vec::with_capacity(plan.updates.len());
    for update in &plan.updates {
        upd_ids.push(update.id);
        upd_row_versions.push(versions.get(&update.id).cloned().unwrap_or_default());
        upd_behaviours.push(to_json_text(&update.upsert.behaviours)?);
        upd_attributes.push(to_json_text(&update.attributes)?);
        let incarnation = &update.upsert.observation.incarnation;
        upd_generations.push(incarnation.generation.clone());
        upd_versions.push(incarnation.version);
    }
    let encoded = plan.encode_events(context).map_err(encoding)?;
    let mut events = EventColumns::default();
    for event in &encoded {
        // A page's NewAsset events are those of the assets it inserts: they take the
        // attributes from the `inserted` CTE.
        let asset_attributes =
            (event.operation != OPERATION_NEW_ASSET).then_some(event.asset_attributes.as_ref());
        events.push(event, asset_attributes);
    }

    // The assets and events first, in one statement, written only while the import is in
    // progress; the import's counts last, so their row lock is held only for the commit and
    // concurrent pages of one import write side by side.
    let sql = format!(
        "WITH live AS ( \
           SELECT 1 FROM imports WHERE id = $1 AND tenant_id = $2 AND status = 'INPROGRESS' \
         ), inserted AS ( \
           INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, tracked, \
             source_generation, source_version, at_time, created_at) \
           SELECT n.id, $2, n.source_key, n.behaviours::jsonb, n.attributes::jsonb, TRUE, \
             n.generation, n.version, date_trunc('milliseconds', now()), \
             date_trunc('milliseconds', now()) \
           FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], \
                $8::bigint[]) AS n (id, source_key, behaviours, attributes, generation, version) \
           WHERE EXISTS (SELECT 1 FROM live) \
           ON CONFLICT (tenant_id, source_key) DO NOTHING \
           RETURNING id, attributes \
         ), updated AS ( \
           UPDATE assets a SET behaviours = u.behaviours::jsonb, \
             attributes = u.attributes::jsonb, tracked = TRUE, \
             source_generation = u.generation, source_version = u.version, \
             at_time = date_trunc('milliseconds', now()) \
           FROM UNNEST($9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[], \
                $14::bigint[]) AS u (id, row_version, behaviours, attributes, generation, version) \
           WHERE a.id = u.id AND a.xmin::text = u.row_version \
             AND EXISTS (SELECT 1 FROM live) \
           RETURNING 1 \
         ), recorded AS ( \
           {} AND EXISTS (SELECT 1 FROM live) RETURNING 1 \
         ) \
         SELECT (SELECT COUNT(*) FROM live) AS live, \
                (SELECT COUNT(*) FROM inserted) AS inserted, \
                (SELECT COUNT(*) FROM updated) AS updated",
        insert_events_sql(2, 15, Some("inserted"))
    );
    let query = sqlx::query(&sql)
        .bind(id)
        .bind(tenant_id)
        .bind(&new_ids)
        .bind(&new_keys)
        .bind(&new_behaviours)
        .bind(&new_attributes)
        .bind(&new_generations)
        .bind(&new_versions)
        .bind(&upd_ids)
        .bind(&upd_row_versions)
        .bind(&upd_behaviours)
        .bind(&upd_attributes)
        .bind(&upd_generations)
        .bind(&upd_versions);
    let mut tx = store.pool.begin().await.map_err(backend)?;
    let row = events
        .bind_to(query)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    let live: i64 = row.try_get("live").map_err(backend)?;
    let inserted: i64 = row.try_get("inserted").map_err(backend)?;
    let updated: i64 = row.try_get("updated").map_err(backend)?;
    if live > 0
        && (inserted != as_i64(plan.inserts.len() as u64)
            || updated != as_i64(plan.updates.len() as u64))
    {
        tx.rollback().await.map_err(backend)?;
        return Err(StoreError::Retryable {
            context: "another import wrote the same assets meanwhile".into(),
            source: Box::new(std::io::Error::other("the page's plan is out of date")),
        });
    }
    // Waits for a concurrent cancel (or another page) holding the row, then re-reads it: a
    // cancel that committed first leaves no row to update, and this page is rolled back.
    let number: Option<i64> = sqlx::query_scalar(
        "UPDATE imports SET number_assets_imported = number_assets_imported + $3, \
           number_assets_created = number_assets_created + $4, \
           number_assets_changed = number_assets_changed + $5, \
           number_assets_unchanged = number_assets_unchanged + $6, \
           number_assets_tracked_again = number_assets_tracked_again + $7, \
           number_assets_recreated = number_assets_recreated + $8 \
         WHERE id = $1 AND tenant_id = $2 AND status = 'INPROGRESS' \
         RETURNING number_assets_imported",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(as_i64(u64::try_from(assets.len()).unwrap_or(u64::MAX)))
    .bind(as_i64(b.created))
    .bind(as_i64(b.changed))
    .bind(as_i64(b.unchanged))
    .bind(as_i64(b.tracked_again))
    .bind(as_i64(b.recreated))
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let Some(number) = number else {
        tx.rollback().await.map_err(backend)?;
        return stopped(store, id).await;
    };
    tx.commit().await.map_err(backend)?;
    Ok(PageWrite::Written {
        number_assets_imported: u64::try_from(number).unwrap_or(0),
        breakdown: plan.breakdown,
    })
}

pub(crate) async fn stop_tracking(
    store: &PostgresStore,
    id: Uuid,
    tenant_id: Uuid,
    context: &ImportContext,
    asset_ids: &[Uuid],
) -> StoreResult<PageWrite> {
    let mut tx = store.pool.begin().await.map_err(backend)?;
    // The import's row lock orders this after a cancel that got there first.
    let status =
        sqlx::query("SELECT status FROM imports WHERE id = $1 AND tenant_id = $2 FOR UPDATE")
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    let status = match status {
        Some(row) => status_col(&row)?,
        None => ImportStatus::Failed,
    };
    if status != ImportStatus::InProgress {
        tx.rollback().await.map_err(backend)?;
        return Ok(PageWrite::Stopped(status));
    }
    let stopped: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE assets SET tracked = FALSE, at_time = date_trunc('milliseconds', now()) \
         WHERE tenant_id = $1 AND tracked AND id = ANY($2::uuid[]) RETURNING id",
    )
    .bind(tenant_id)
    .bind(asset_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let event = stop_tracking_event(context);
    let encoded = stopped
        .iter()
        .map(|asset_id| EncodedEvent::new(*asset_id, &event))
        .collect::<Result<Vec<_>, _>>()
        .map_err(encoding)?;
    let events = EventColumns::new(&encoded);
    let sql = insert_events_sql(1, 2, None);
    events
        .bind_to(sqlx::query(&sql).bind(tenant_id))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let breakdown = ImportBreakdown {
        stopped_tracking: stopped.len() as u64,
        ..ImportBreakdown::default()
    };
    let number: i64 = sqlx::query_scalar(
        "UPDATE imports SET number_assets_stopped_tracking = \
           number_assets_stopped_tracking + $2 WHERE id = $1 RETURNING number_assets_imported",
    )
    .bind(id)
    .bind(as_i64(breakdown.stopped_tracking))
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(PageWrite::Written {
        number_assets_imported: u64::try_from(number).unwrap_or(0),
        breakdown,
    })
}

pub(crate) async fn tracked_count_by_source(
    store: &PostgresStore,
    tenant_id: Uuid,
    prefix: &str,
) -> StoreResult<u64> {
    let upper = format!("{prefix}\u{10FFFF}");
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM assets WHERE tenant_id = $1 AND tracked \
         AND (source_key COLLATE \"C\") >= $2 AND (source_key COLLATE \"C\") < $3",
    )
    .bind(tenant_id)
    .bind(prefix)
    .bind(upper)
    .fetch_one(&store.pool)
    .await
    .map_err(backend)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(crate) async fn tracked_by_source(
    store: &PostgresStore,
    tenant_id: Uuid,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<(Uuid, String)>> {
    // Byte order (COLLATE "C"), whatever the database's collation: every key that starts
    // with `prefix` sorts below `prefix` + U+10FFFF, and the partial index serves it.
    let upper = format!("{prefix}\u{10FFFF}");
    let rows = sqlx::query(
        "SELECT id, source_key FROM assets WHERE tenant_id = $1 AND tracked \
         AND (source_key COLLATE \"C\") >= $2 AND (source_key COLLATE \"C\") < $3 \
         AND (source_key COLLATE \"C\") > $4 \
         ORDER BY (source_key COLLATE \"C\") LIMIT $5",
    )
    .bind(tenant_id)
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
                row.try_get("id").map_err(backend)?,
                row.try_get::<String, _>("source_key").map_err(backend)?,
            ))
        })
        .collect()
}
