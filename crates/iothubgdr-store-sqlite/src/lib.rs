//! SQLite backend of the iothubgdr [`Store`]: the embedded default that needs no server.
//!
//! The database file (and its parent directory) is created on first connect and the embedded
//! migrations run on every connect. WAL mode lets readers go on while one writer writes;
//! every writing transaction starts with `BEGIN IMMEDIATE` so it takes the write lock up
//! front and waits (`busy_timeout`) instead of failing when it would have to upgrade a read
//! lock. Queries are runtime-checked (`sqlx::query`) because no database exists at build time.

mod files;
mod query;
mod rows;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use iothubgdr_store::{
    distinct_sorted, Admission, App, Asset, AssetUpsert, AttributeFilter, Import, ImportLimits,
    ImportOutcome, ImportStatus, LimitScope, Location, LocationFilter, NewApp, NewAsset, NewImport,
    NewLocation, Page, PageRequest, PageWrite, Store, StoreError, StoreResult, StoredSigningKey,
    Tenant,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use time::OffsetDateTime;
use uuid::Uuid;

use files::{create_parent_dir, file_identity, restrict_database_files, OpenedFile};
use query::{count_of, into_page, push_attribute_filter, push_location_filter, push_page};
use rows::{
    asset_from_row, backend, from_millis, import_from_row, location_from_row, millis, to_json_text,
};

/// Rows per multi-row `INSERT` of an asset page. Each row binds 7 values, so a chunk stays
/// far below SQLite's limit of 32766 bound variables.
const ASSET_UPSERT_CHUNK: usize = 500;

const UNFINISHED: &str = "('PENDING', 'INPROGRESS')";

/// The database's clock in Unix milliseconds. Leases are computed with it, never with a
/// process's clock.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// Ids per `IN (...)` list, far below SQLite's bound-variable limit.
const ID_CHUNK: usize = 500;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The file the pool opened; `None` for an in-memory database.
    file: Option<OpenedFile>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path/to/file.db` or
    /// `sqlite:file.db`) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| StoreError::Backend {
                context: "invalid SQLite database URL".into(),
                source: Some(Box::new(err)),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let path = options.get_filename().to_path_buf();
        create_parent_dir(&path)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|err| StoreError::Backend {
                context: "SQLite migration failed".into(),
                source: Some(Box::new(err)),
            })?;
        restrict_database_files(&path)?;
        let file = file_identity(&path)
            .ok()
            .map(|identity| OpenedFile { path, identity });
        Ok(Self { pool, file })
    }

    /// The underlying pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }

    async fn import_by_id(&self, id: Uuid) -> StoreResult<Option<Import>> {
        let row = sqlx::query("SELECT * FROM imports WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(import_from_row).transpose()
    }
}

/// A broken uniqueness rule becomes a conflict naming `what`; anything else is sorted by
/// [`backend`].
fn unique_or_backend(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    if matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation()) {
        StoreError::Conflict {
            what: what(),
            source: Some(Box::new(err)),
        }
    } else {
        backend(err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if let Some(file) = &self.file {
            match file_identity(&file.path) {
                Ok(identity) if identity == file.identity => {}
                Ok(_) => {
                    return Err(StoreError::Backend {
                        context: format!(
                            "the database file {} was replaced since it was opened",
                            file.path.display()
                        ),
                        source: None,
                    })
                }
                Err(err) => {
                    return Err(StoreError::Backend {
                        context: format!("the database file {} is gone", file.path.display()),
                        source: Some(Box::new(err)),
                    })
                }
            }
        }
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
                    created_at: from_millis(row.try_get("created_at").map_err(backend)?)?,
                    retired_at: row
                        .try_get::<Option<i64>, _>("retired_at")
                        .map_err(backend)?
                        .map(from_millis)
                        .transpose()?,
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
        let mut tx = self.begin_write().await?;
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
            "INSERT INTO token_signing_keys (kid, key_bytes, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(kid)
        .bind(key)
        .bind(millis(OffsetDateTime::now_utc()))
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
            "UPDATE token_signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL",
        )
        .bind(millis(OffsetDateTime::now_utc()))
        .bind(kid)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(retired.rows_affected() > 0)
    }

    async fn paging_key_get_or_insert(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO paging_keys (id, key_bytes, created_at) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate)
        .bind(millis(OffsetDateTime::now_utc()))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row = sqlx::query("SELECT key_bytes FROM paging_keys WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        row.try_get::<Vec<u8>, _>(0).map_err(backend)
    }

    async fn app_create(&self, app: NewApp) -> StoreResult<App> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(&app.tenant_name)
        .bind(millis(now))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let tenant_row = sqlx::query("SELECT id FROM tenants WHERE name = ?")
            .bind(&app.tenant_name)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let tenant_id = rows::uuid_col(&tenant_row, "id")?;
        sqlx::query(
            "INSERT INTO apps (client_id, display_name, tenant_id, secret_hash, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&app.client_id)
        .bind(&app.display_name)
        .bind(tenant_id.to_string())
        .bind(&app.secret_hash)
        .bind(millis(now))
        .execute(&mut *tx)
        .await
        .map_err(|err| unique_or_backend(err, || format!("app {}", app.client_id)))?;
        tx.commit().await.map_err(backend)?;
        Ok(App {
            client_id: app.client_id,
            display_name: app.display_name,
            tenant: Tenant {
                id: tenant_id,
                name: app.tenant_name,
            },
            secret_hash: app.secret_hash,
            created_at: rows::from_millis(millis(now))?,
        })
    }

    async fn app_get(&self, client_id: &str) -> StoreResult<Option<App>> {
        let row = sqlx::query(
            "SELECT a.client_id, a.display_name, a.secret_hash, a.created_at, \
                    t.id AS tenant_id, t.name AS tenant_name \
             FROM apps a JOIN tenants t ON t.id = a.tenant_id WHERE a.client_id = ?",
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
        let done = sqlx::query("DELETE FROM apps WHERE client_id = ?")
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(tenant_id.to_string())
        .bind(&new.display_name)
        .bind(&new.description)
        .bind(new.latitude)
        .bind(new.longitude)
        .bind(to_json_text(&new.attributes)?)
        .bind(millis(OffsetDateTime::now_utc()))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        location_from_row(&row)
    }

    async fn location_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Location>> {
        let row = sqlx::query("SELECT * FROM locations WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id.to_string())
            .bind(id.to_string())
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
        query.push_bind(tenant_id.to_string());
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
        query.push_bind(tenant_id.to_string());
        push_location_filter(&mut query, filter);
        let row = query.build().fetch_one(&self.pool).await.map_err(backend)?;
        count_of(&row)
    }

    async fn asset_create(&self, tenant_id: Uuid, new: NewAsset) -> StoreResult<Asset> {
        let now = millis(OffsetDateTime::now_utc());
        let row = sqlx::query(
            "INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, at_time, created_at) \
             VALUES (?, ?, NULL, ?, ?, ?, ?) RETURNING *",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(tenant_id.to_string())
        .bind(to_json_text(&new.behaviours)?)
        .bind(to_json_text(&new.attributes)?)
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        asset_from_row(&row)
    }

    async fn asset_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Asset>> {
        let row = sqlx::query("SELECT * FROM assets WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id.to_string())
            .bind(id.to_string())
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
        query.push_bind(tenant_id.to_string());
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
        query.push_bind(tenant_id.to_string());
        push_attribute_filter(&mut query, filter);
        let row = query.build().fetch_one(&self.pool).await.map_err(backend)?;
        count_of(&row)
    }

    async fn import_create(&self, new: NewImport, limits: ImportLimits) -> StoreResult<Admission> {
        let now = millis(OffsetDateTime::now_utc());
        let (status, finished_at) = match &new.failed_with {
            None => (ImportStatus::Pending, None),
            Some(_) => (ImportStatus::Failed, Some(now)),
        };
        // BEGIN IMMEDIATE takes the write lock first: the counts and the insert are one
        // decision even with several processes on the file.
        let mut tx = self.begin_write().await?;
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

    async fn import_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>> {
        let row =
            sqlx::query("SELECT * FROM imports WHERE tenant_id = ? AND id = ? AND deleted = 0")
                .bind(tenant_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.as_ref().map(import_from_row).transpose()
    }

    async fn import_list(&self, tenant_id: Uuid, page: PageRequest) -> StoreResult<Page<Import>> {
        let mut query =
            QueryBuilder::new("SELECT * FROM imports WHERE deleted = 0 AND tenant_id = ");
        query.push_bind(tenant_id.to_string());
        push_page(&mut query, page);
        let rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
        let items = rows
            .iter()
            .map(import_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, page, |import| import.seq))
    }

    async fn import_count(&self, tenant_id: Uuid) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM imports WHERE deleted = 0 AND tenant_id = ?")
            .bind(tenant_id.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        count_of(&row)
    }

    async fn import_delete(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE imports SET deleted = 1 WHERE tenant_id = ? AND id = ? AND deleted = 0",
        )
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn import_cancel(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>> {
        let mut tx = self.begin_write().await?;
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
        let row =
            sqlx::query("SELECT * FROM imports WHERE tenant_id = ? AND id = ? AND deleted = 0")
                .bind(tenant_id.to_string())
                .bind(id.to_string())
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
        let mut tx = self.begin_write().await?;
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

    async fn import_set_total(&self, id: Uuid, total: u64) -> StoreResult<()> {
        sqlx::query("UPDATE imports SET number_devices_total = ? WHERE id = ?")
            .bind(i64::try_from(total).unwrap_or(i64::MAX))
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn import_add_refused(&self, id: Uuid, refused: u64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE imports SET number_devices_refused = number_devices_refused + ? WHERE id = ?",
        )
        .bind(i64::try_from(refused).unwrap_or(i64::MAX))
        .bind(id.to_string())
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
        let now = millis(OffsetDateTime::now_utc());
        // Serialise before taking the write lock so the lock is held only for SQL work.
        let assets = distinct_sorted(assets);
        let mut encoded = Vec::with_capacity(assets.len());
        for asset in &assets {
            encoded.push((
                asset.source_key.as_str(),
                to_json_text(&asset.behaviours)?,
                to_json_text(&asset.attributes)?,
            ));
        }
        let added = i64::try_from(assets.len()).unwrap_or(i64::MAX);

        let mut tx = self.begin_write().await?;
        // The count goes up only while the import is in progress; the same statement is the
        // check, so a cancel committed before this transaction stops the page entirely.
        let bumped = sqlx::query(
            "UPDATE imports SET number_assets_imported = number_assets_imported + ? \
             WHERE id = ? AND tenant_id = ? AND status = 'INPROGRESS' \
             RETURNING number_assets_imported",
        )
        .bind(added)
        .bind(id.to_string())
        .bind(tenant_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(bumped) = bumped else {
            let status_row = sqlx::query("SELECT status FROM imports WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            tx.rollback().await.map_err(backend)?;
            let status = match status_row {
                Some(row) => rows::status_col(&row)?,
                // An import that does not exist cannot take assets; report it as failed.
                None => ImportStatus::Failed,
            };
            return Ok(PageWrite::Stopped(status));
        };
        let number_assets_imported: i64 = bumped.try_get(0).map_err(backend)?;

        let tenant = tenant_id.to_string();
        for chunk in encoded.chunks(ASSET_UPSERT_CHUNK) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "INSERT INTO assets (id, tenant_id, source_key, behaviours, attributes, at_time, created_at) ",
            );
            query.push_values(chunk, |mut row, (source_key, behaviours, attributes)| {
                // Time-ordered ids: a page's new rows land together at the end of the id
                // index instead of dirtying a random index page each, which made inserts
                // four times slower than updates at 100,000 assets.
                row.push_bind(Uuid::now_v7().to_string())
                    .push_bind(tenant.clone())
                    .push_bind(*source_key)
                    .push_bind(behaviours.as_str())
                    .push_bind(attributes.as_str())
                    .push_bind(now)
                    .push_bind(now);
            });
            // An update keeps the asset's id and seq (pagers never see it twice) and moves
            // at_time only when the attributes really changed.
            query.push(
                " ON CONFLICT (tenant_id, source_key) DO UPDATE SET \
                   behaviours = excluded.behaviours, \
                   at_time = CASE WHEN assets.attributes = excluded.attributes \
                             THEN assets.at_time ELSE excluded.at_time END, \
                   attributes = excluded.attributes",
            );
            query.build().execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(PageWrite::Written {
            number_assets_imported: u64::try_from(number_assets_imported).unwrap_or(0),
        })
    }

    async fn import_finish(&self, id: Uuid, outcome: ImportOutcome) -> StoreResult<Option<Import>> {
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
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        self.import_by_id(id).await
    }

    async fn import_status(&self, id: Uuid) -> StoreResult<Option<ImportStatus>> {
        let row = sqlx::query("SELECT status FROM imports WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::status_col).transpose()
    }

    async fn imports_done_among(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
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
            let rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
            for row in &rows {
                done.push(rows::uuid_col(row, "id")?);
            }
        }
        Ok(done)
    }

    async fn worker_heartbeat(&self, worker_id: Uuid, lease: Duration) -> StoreResult<()> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        sqlx::query(&format!(
            "INSERT INTO workers (id, last_seen, expires_at) VALUES (?, {NOW_MS}, {NOW_MS} + ?) \
             ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, \
               expires_at = excluded.expires_at"
        ))
        .bind(worker_id.to_string())
        .bind(lease_ms)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn imports_fail_orphaned(&self, message: &str) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(&format!(
            "UPDATE imports SET status = 'FAILED', error_message = ?, finished_at = ? \
             WHERE status IN {UNFINISHED} AND (worker_id IS NULL OR worker_id NOT IN \
               (SELECT id FROM workers WHERE expires_at >= {NOW_MS})) \
             RETURNING id"
        ))
        .bind(message)
        .bind(millis(OffsetDateTime::now_utc()))
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

    async fn worker_retire(&self, worker_id: Uuid, message: &str) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
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
}
