//! PostgreSQL backend of the iothubgdr [`Store`]: several `iothubgdr serve` replicas on one
//! database.
//!
//! - Native types: UUID, TIMESTAMPTZ, JSONB; `attributes.X=value` filters are JSONB
//!   containment tests served by a GIN (`jsonb_path_ops`) index.
//! - Migrations run on every connect under sqlx's migration lock (a PostgreSQL advisory
//!   lock), so replicas starting at once migrate once and the others wait.
//! - A page of assets is one statement (`UNNEST` of arrays), whatever its size: no bound
//!   parameter limit, one round trip.
//! - Decisions that replicas must share — admitting an import under the limits, claiming
//!   pending imports under the per-tenant running limit — are serialised by one
//!   transaction-scoped advisory lock; they are short and rare next to page writes.
//! - Leases are computed with the database's `now()`.
//!
//! Queries are runtime-checked (`sqlx::query`): no database exists at build time.

mod rows;
pub mod testing;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use iothubgdr_store::{
    distinct_sorted, Admission, App, Asset, AssetUpsert, AttributeFilter, Import, ImportLimits,
    ImportOutcome, ImportStatus, LimitScope, Location, LocationFilter, NewApp, NewAsset, NewImport,
    NewLocation, Page, PageRequest, PageWrite, Store, StoreError, StoreResult, StoredSigningKey,
    Tenant,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use rows::{asset_from_row, backend, import_from_row, location_from_row, to_json_text};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const UNFINISHED: &str = "('PENDING', 'INPROGRESS')";

/// The advisory lock that serialises admissions and claims across replicas ("iothubgdr"
/// in ASCII, to be recognisable in `pg_locks`).
const SCHEDULING_LOCK: i64 = 0x696f_7468_7562_6764;

/// How the pool is sized and how long a statement may run.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections this process keeps at most.
    pub pool_size: u32,
    /// A statement running longer is cancelled by the server (`statement_timeout`).
    pub statement_timeout: Duration,
    /// How long to wait for a free connection.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 10,
            statement_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL store. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=...`) and
    /// runs the migrations. The URL may hold a password: it is never logged or put in an
    /// error by this crate.
    pub async fn connect(url: &str, options: PostgresOptions) -> StoreResult<Self> {
        let statement_timeout = options.statement_timeout.as_millis().max(1).to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::Backend {
                context: "invalid PostgreSQL database URL".into(),
                // The parser's message may quote the URL, password included: drop it.
                source: Some(Box::new(std::io::Error::other(redact_kind(&err)))),
            })?
            .options([("statement_timeout", statement_timeout.as_str())])
            .application_name("iothubgdr");
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(backend)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|err| StoreError::Backend {
                context: "PostgreSQL migration failed".into(),
                source: Some(Box::new(err)),
            })?;
        Ok(Self { pool })
    }

    /// The underlying pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_scheduling(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEDULING_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        Ok(tx)
    }

    async fn import_by_id(&self, id: Uuid) -> StoreResult<Option<Import>> {
        let row = sqlx::query("SELECT * FROM imports WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(import_from_row).transpose()
    }
}

/// What kind of URL error it was, without the text (which may quote the password).
fn redact_kind(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::Configuration(_) => "the URL does not parse as a PostgreSQL URL",
        _ => "the URL was refused",
    }
}

/// Appends `AND attributes @> {"name": "value"}` per filter: exact key, string values
/// only, served by the GIN index.
fn push_attribute_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &AttributeFilter) {
    for (name, value) in &filter.0 {
        let mut wanted = serde_json::Map::new();
        wanted.insert(name.clone(), serde_json::Value::String(value.clone()));
        query.push(" AND attributes @> ");
        query.push_bind(serde_json::Value::Object(wanted));
    }
}

fn push_location_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &LocationFilter) {
    if let Some(name) = &filter.display_name {
        query.push(" AND display_name = ");
        query.push_bind(name.clone());
    }
    push_attribute_filter(query, &filter.attributes);
}

fn push_page(query: &mut QueryBuilder<'_, Postgres>, page: PageRequest) {
    if let Some(before) = page.before_seq {
        query.push(" AND seq < ");
        query.push_bind(before);
    }
    query.push(" ORDER BY seq DESC LIMIT ");
    // One row more than asked tells whether another page follows.
    query.push_bind(i64::from(page.page_size) + 1);
}

fn into_page<T>(mut items: Vec<T>, page: PageRequest, seq_of: impl Fn(&T) -> i64) -> Page<T> {
    let size = page.page_size as usize;
    if items.len() > size {
        items.truncate(size);
        let next_before_seq = items.last().map(&seq_of);
        Page {
            items,
            next_before_seq,
        }
    } else {
        Page {
            items,
            next_before_seq: None,
        }
    }
}

fn count_of(row: &PgRow) -> StoreResult<u64> {
    let count: i64 = row.try_get(0).map_err(backend)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

fn lease_interval(lease: Duration) -> f64 {
    // Seconds, as `make_interval` takes them.
    lease.as_secs_f64()
}

#[async_trait]
impl Store for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query(
            "SELECT kid, key_bytes, created_at, retired_at FROM token_signing_keys ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(StoredSigningKey {
                    kid: row.try_get("kid").map_err(backend)?,
                    key: row.try_get("key_bytes").map_err(backend)?,
                    created_at: row.try_get("created_at").map_err(backend)?,
                    retired_at: row.try_get("retired_at").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn signing_key_add(
        &self,
        kid: &str,
        key: &[u8],
        only_if_none: bool,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Replicas starting on a fresh database race to add the first key: this lock
        // conflicts with itself (and not with readers), so one adds and the others then
        // see its key.
        sqlx::query("LOCK TABLE token_signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if only_if_none {
            let active: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM token_signing_keys WHERE retired_at IS NULL",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            if active > 0 {
                return Ok(false);
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO token_signing_keys (kid, key_bytes, created_at) VALUES ($1, $2, now()) \
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(kid)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::conflict(format!("signing key {kid}")));
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn signing_key_retire(&self, kid: &str) -> StoreResult<bool> {
        let retired = sqlx::query(
            "UPDATE token_signing_keys SET retired_at = now() \
             WHERE kid = $1 AND retired_at IS NULL",
        )
        .bind(kid)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(retired.rows_affected() > 0)
    }

    async fn paging_key_get_or_insert(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO paging_keys (id, key_bytes, created_at) VALUES (1, $1, now()) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // A new statement, a new snapshot: it sees a key another replica just committed.
        let row = sqlx::query("SELECT key_bytes FROM paging_keys WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        row.try_get::<Vec<u8>, _>(0).map_err(backend)
    }

    async fn app_create(&self, app: NewApp) -> StoreResult<App> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, now()) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(Uuid::new_v4())
        .bind(&app.tenant_name)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let tenant_row = sqlx::query("SELECT id FROM tenants WHERE name = $1")
            .bind(&app.tenant_name)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let tenant_id: Uuid = tenant_row.try_get("id").map_err(backend)?;
        let row = sqlx::query(
            "INSERT INTO apps (client_id, display_name, tenant_id, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, date_trunc('milliseconds', now())) RETURNING created_at",
        )
        .bind(&app.client_id)
        .bind(&app.display_name)
        .bind(tenant_id)
        .bind(&app.secret_hash)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| rows::unique_or_backend(err, || format!("app {}", app.client_id)))?;
        tx.commit().await.map_err(backend)?;
        Ok(App {
            client_id: app.client_id,
            display_name: app.display_name,
            tenant: Tenant {
                id: tenant_id,
                name: app.tenant_name,
            },
            secret_hash: app.secret_hash,
            created_at: row.try_get("created_at").map_err(backend)?,
        })
    }

    async fn app_get(&self, client_id: &str) -> StoreResult<Option<App>> {
        let row = sqlx::query(
            "SELECT a.client_id, a.display_name, a.secret_hash, a.created_at, \
                    t.id AS tenant_id, t.name AS tenant_name \
             FROM apps a JOIN tenants t ON t.id = a.tenant_id WHERE a.client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(rows::app_from_row).transpose()
    }

    async fn app_list(&self) -> StoreResult<Vec<App>> {
        let rows = sqlx::query(
            "SELECT a.client_id, a.display_name, a.secret_hash, a.created_at, \
                    t.id AS tenant_id, t.name AS tenant_name \
             FROM apps a JOIN tenants t ON t.id = a.tenant_id ORDER BY a.created_at, a.client_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::app_from_row).collect()
    }

    async fn app_delete(&self, client_id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM apps WHERE client_id = $1")
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn location_create(&self, tenant_id: Uuid, new: NewLocation) -> StoreResult<Location> {
        let row = sqlx::query(
            "INSERT INTO locations \
               (id, tenant_id, display_name, description, latitude, longitude, attributes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, date_trunc('milliseconds', now())) RETURNING *",
        )
        .bind(Uuid::new_v4())
        .bind(tenant_id)
        .bind(&new.display_name)
        .bind(&new.description)
        .bind(new.latitude)
        .bind(new.longitude)
        .bind(serde_json::Value::Object(new.attributes))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        location_from_row(&row)
    }

    async fn location_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Location>> {
        let row = sqlx::query("SELECT * FROM locations WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(location_from_row).transpose()
    }

    async fn location_list(
        &self,
        tenant_id: Uuid,
        filter: &LocationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Location>> {
        let mut query = QueryBuilder::new("SELECT * FROM locations WHERE tenant_id = ");
        query.push_bind(tenant_id);
        push_location_filter(&mut query, filter);
        push_page(&mut query, page);
        let rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
        let items = rows
            .iter()
            .map(location_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, page, |location| location.seq))
    }

    async fn location_count(&self, tenant_id: Uuid, filter: &LocationFilter) -> StoreResult<u64> {
        let mut query = QueryBuilder::new("SELECT COUNT(*) FROM locations WHERE tenant_id = ");
        query.push_bind(tenant_id);
        push_location_filter(&mut query, filter);
        let row = query.build().fetch_one(&self.pool).await.map_err(backend)?;
        count_of(&row)
    }

    async fn asset_create(&self, tenant_id: Uuid, new: NewAsset) -> StoreResult<Asset> {
        let row = sqlx::query(
            "INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, at_time, created_at) \
             VALUES ($1, $2, NULL, $3, $4, date_trunc('milliseconds', now()), \
                     date_trunc('milliseconds', now())) RETURNING *",
        )
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(serde_json::Value::from(new.behaviours))
        .bind(serde_json::Value::Object(new.attributes))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        asset_from_row(&row)
    }

    async fn asset_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Asset>> {
        let row = sqlx::query("SELECT * FROM assets WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(asset_from_row).transpose()
    }

    async fn asset_list(
        &self,
        tenant_id: Uuid,
        filter: &AttributeFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Asset>> {
        let mut query = QueryBuilder::new("SELECT * FROM assets WHERE tenant_id = ");
        query.push_bind(tenant_id);
        push_attribute_filter(&mut query, filter);
        push_page(&mut query, page);
        let rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
        let items = rows
            .iter()
            .map(asset_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, page, |asset| asset.seq))
    }

    async fn asset_count(&self, tenant_id: Uuid, filter: &AttributeFilter) -> StoreResult<u64> {
        let mut query = QueryBuilder::new("SELECT COUNT(*) FROM assets WHERE tenant_id = ");
        query.push_bind(tenant_id);
        push_attribute_filter(&mut query, filter);
        let row = query.build().fetch_one(&self.pool).await.map_err(backend)?;
        count_of(&row)
    }

    async fn import_create(&self, new: NewImport, limits: ImportLimits) -> StoreResult<Admission> {
        let pending = new.failed_with.is_none();
        let mut tx = if pending {
            // Counting and inserting under the scheduling lock: replicas racing for the
            // last slot are served one at a time.
            let mut tx = self.begin_scheduling().await?;
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
            self.pool.begin().await.map_err(backend)?
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

    async fn import_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>> {
        let row =
            sqlx::query("SELECT * FROM imports WHERE tenant_id = $1 AND id = $2 AND NOT deleted")
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.as_ref().map(import_from_row).transpose()
    }

    async fn import_list(&self, tenant_id: Uuid, page: PageRequest) -> StoreResult<Page<Import>> {
        let mut query =
            QueryBuilder::new("SELECT * FROM imports WHERE NOT deleted AND tenant_id = ");
        query.push_bind(tenant_id);
        push_page(&mut query, page);
        let rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
        let items = rows
            .iter()
            .map(import_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, page, |import| import.seq))
    }

    async fn import_count(&self, tenant_id: Uuid) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM imports WHERE NOT deleted AND tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        count_of(&row)
    }

    async fn import_delete(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE imports SET deleted = TRUE WHERE tenant_id = $1 AND id = $2 AND NOT deleted",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn import_cancel(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(&format!(
            "UPDATE imports SET status = 'CANCELLED', finished_at = date_trunc('milliseconds', now()) \
             WHERE tenant_id = $1 AND id = $2 AND NOT deleted AND status IN {UNFINISHED}"
        ))
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row =
            sqlx::query("SELECT * FROM imports WHERE tenant_id = $1 AND id = $2 AND NOT deleted")
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        row.as_ref().map(import_from_row).transpose()
    }

    async fn imports_claim(
        &self,
        worker_id: Uuid,
        per_tenant: u32,
        max: u32,
    ) -> StoreResult<Vec<Uuid>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_scheduling().await?;
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

    async fn import_set_total(&self, id: Uuid, total: u64) -> StoreResult<()> {
        sqlx::query("UPDATE imports SET number_devices_total = $1 WHERE id = $2")
            .bind(i64::try_from(total).unwrap_or(i64::MAX))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn import_add_refused(&self, id: Uuid, refused: u64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE imports SET number_devices_refused = number_devices_refused + $1 WHERE id = $2",
        )
        .bind(i64::try_from(refused).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn import_write_page(
        &self,
        id: Uuid,
        tenant_id: Uuid,
        assets: &[AssetUpsert],
    ) -> StoreResult<PageWrite> {
        // Distinct keys in ascending order: ON CONFLICT DO UPDATE refuses a key twice in one
        // statement, and two writers of one hub lock the same rows in the same order.
        let assets = distinct_sorted(assets);
        let mut ids = Vec::with_capacity(assets.len());
        let mut keys = Vec::with_capacity(assets.len());
        let mut behaviours = Vec::with_capacity(assets.len());
        let mut attributes = Vec::with_capacity(assets.len());
        for asset in &assets {
            // Time-ordered ids: new rows append to the id index.
            ids.push(Uuid::now_v7());
            keys.push(asset.source_key.as_str());
            behaviours.push(to_json_text(&asset.behaviours)?);
            attributes.push(to_json_text(&asset.attributes)?);
        }
        let added = i64::try_from(assets.len()).unwrap_or(i64::MAX);
        // One statement: the count goes up only while the import is in progress (the row
        // lock also orders this page after a cancel that got there first), and the assets
        // are written only when it did.
        let row = sqlx::query(
            "WITH bumped AS ( \
               UPDATE imports SET number_assets_imported = number_assets_imported + $3 \
               WHERE id = $1 AND tenant_id = $2 AND status = 'INPROGRESS' \
               RETURNING number_assets_imported \
             ), written AS ( \
               INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, at_time, created_at) \
               SELECT page.id, $2, page.source_key, page.behaviours::jsonb, page.attributes::jsonb, \
                      date_trunc('milliseconds', now()), date_trunc('milliseconds', now()) \
               FROM UNNEST($4::uuid[], $5::text[], $6::text[], $7::text[]) \
                    AS page (id, source_key, behaviours, attributes) \
               WHERE EXISTS (SELECT 1 FROM bumped) \
               ON CONFLICT (tenant_id, source_key) DO UPDATE SET \
                 behaviours = excluded.behaviours, \
                 at_time = CASE WHEN assets.attributes = excluded.attributes \
                           THEN assets.at_time ELSE excluded.at_time END, \
                 attributes = excluded.attributes \
               RETURNING 1 \
             ) \
             SELECT (SELECT number_assets_imported FROM bumped) AS number_assets_imported, \
                    (SELECT COUNT(*) FROM written) AS written",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(added)
        .bind(&ids)
        .bind(&keys)
        .bind(&behaviours)
        .bind(&attributes)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let number: Option<i64> = row.try_get("number_assets_imported").map_err(backend)?;
        match number {
            Some(number) => Ok(PageWrite::Written {
                number_assets_imported: u64::try_from(number).unwrap_or(0),
            }),
            None => {
                let status = match self.import_status(id).await? {
                    Some(status) => status,
                    None => ImportStatus::Failed,
                };
                Ok(PageWrite::Stopped(status))
            }
        }
    }

    async fn import_finish(&self, id: Uuid, outcome: ImportOutcome) -> StoreResult<Option<Import>> {
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
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        self.import_by_id(id).await
    }

    async fn import_status(&self, id: Uuid) -> StoreResult<Option<ImportStatus>> {
        let row = sqlx::query("SELECT status FROM imports WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::status_col).transpose()
    }

    async fn imports_done_among(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT id FROM imports WHERE id = ANY($1) AND status NOT IN {UNFINISHED}"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| row.try_get::<Uuid, _>("id").map_err(backend))
            .collect()
    }

    async fn worker_heartbeat(&self, worker_id: Uuid, lease: Duration) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO workers (id, last_seen, expires_at) \
             VALUES ($1, now(), now() + make_interval(secs => $2)) \
             ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, \
               expires_at = excluded.expires_at",
        )
        .bind(worker_id)
        .bind(lease_interval(lease))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn imports_fail_orphaned(&self, message: &str) -> StoreResult<Vec<Uuid>> {
        // One statement: both parts see one snapshot and one `now()`.
        let rows = sqlx::query(&format!(
            "WITH expired AS (DELETE FROM workers WHERE expires_at < now() RETURNING id) \
             UPDATE imports SET status = 'FAILED', error_message = $1, \
               finished_at = date_trunc('milliseconds', now()) \
             WHERE status IN {UNFINISHED} AND (worker_id IS NULL OR NOT EXISTS \
               (SELECT 1 FROM workers w WHERE w.id = imports.worker_id AND w.expires_at >= now())) \
             RETURNING id"
        ))
        .bind(message)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| row.try_get::<Uuid, _>("id").map_err(backend))
            .collect()
    }

    async fn worker_retire(&self, worker_id: Uuid, message: &str) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
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
}
