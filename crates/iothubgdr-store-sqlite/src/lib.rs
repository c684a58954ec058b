//! SQLite backend of the iothubgdr [`Store`]: the embedded default that needs no server.
//!
//! The database file (and its parent directory) is created on first connect and the embedded
//! migrations run on every connect. WAL mode lets readers go on while one writer writes;
//! every writing transaction starts with `BEGIN IMMEDIATE` so it takes the write lock up
//! front and waits (`busy_timeout`) instead of failing when it would have to upgrade a read
//! lock. Queries are runtime-checked (`sqlx::query`) because no database exists at build time.

mod checkpoint;
mod events;
mod files;
mod history;
mod imports;
mod keys;
mod query;
mod registry;
mod rows;
mod workers;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use iothubgdr_store::{
    Admission, App, Asset, AssetFilter, AssetUpsert, Event, EventFilter, EventWrite, Import,
    ImportContext, ImportLimits, ImportOutcome, ImportStatus, Location, LocationFilter, NewApp,
    NewAsset, NewEvent, NewImport, NewLocation, Page, PageRequest, PageWrite, Store, StoreError,
    StoreResult, StoredSigningKey,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use checkpoint::Checkpoints;
use files::{create_parent_dir, file_identity, restrict_database_files, OpenedFile};
use rows::{backend, import_from_row};

const UNFINISHED: &str = "('PENDING', 'INPROGRESS')";

/// The database's clock in Unix milliseconds. Leases are computed with it, never with a
/// process's clock.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Held for the whole of each write transaction of this process (`begin_write`).
    write_turn: Arc<Mutex<()>>,
    checkpoints: Arc<Checkpoints>,
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
            .busy_timeout(Duration::from_secs(30))
            // 16 MiB of page cache a connection (SQLite's default is 2 MiB): an import's
            // inserts land all over the key index, and a miss is a read from the file.
            .pragma("cache_size", "-16384")
            .pragma("wal_autocheckpoint", checkpoint::AUTOCHECKPOINT_PAGES);
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
        Ok(Self {
            checkpoints: Checkpoints::start(pool.clone()),
            pool,
            write_turn: Arc::new(Mutex::new(())),
            file,
        })
    }

    /// The underlying pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction. Writers of this process take turns on an async mutex before
    /// `BEGIN IMMEDIATE`: SQLite lets one writer in at a time, and a writer that finds the
    /// lock taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between
    /// tries, so two page writes of one import would lose most of that to sleeping.
    /// Other processes on the file (the CLI) still meet `busy_timeout`.
    async fn begin_write(&self) -> StoreResult<WriteTx> {
        let turn = Arc::clone(&self.write_turn).lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        Ok(WriteTx {
            tx,
            checkpoints: Arc::clone(&self.checkpoints),
            _turn: turn,
        })
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

/// A write transaction holding this process's write turn until it commits, rolls back or
/// is dropped. It derefs to the connection, like `sqlx::Transaction`.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
    checkpoints: Arc<Checkpoints>,
    _turn: OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.checkpoints.wrote();
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// One writing statement in a write transaction of its own, in this process's write turn
/// ([`SqliteStore::begin_write`]). Run on the pool instead, it would wait in SQLite's busy
/// handler while page writes take the lock back to back, and could starve there for as
/// long as an import writes: a heartbeat that waited out the lease, or an import's end.
pub(crate) trait ExecuteInWriteTurn {
    async fn execute_in_write_turn(
        self,
        store: &SqliteStore,
    ) -> StoreResult<sqlx::sqlite::SqliteQueryResult>;
}

impl<'q> ExecuteInWriteTurn for sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    async fn execute_in_write_turn(
        self,
        store: &SqliteStore,
    ) -> StoreResult<sqlx::sqlite::SqliteQueryResult> {
        let mut tx = store.begin_write().await?;
        let done = self.execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done)
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
    /// Two: while one page is written, the next one's stored state is read and planned
    /// (`history::write_page`); the writes themselves take turns.
    fn concurrent_page_writes(&self) -> usize {
        2
    }

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
        keys::signing_keys(self).await
    }

    async fn signing_key_add(
        &self,
        kid: &str,
        key: &[u8],
        only_if_none: bool,
    ) -> StoreResult<bool> {
        keys::signing_key_add(self, kid, key, only_if_none).await
    }

    async fn signing_key_retire(&self, kid: &str) -> StoreResult<bool> {
        keys::signing_key_retire(self, kid).await
    }

    async fn paging_key_get_or_insert(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        keys::paging_key_get_or_insert(self, candidate).await
    }

    async fn app_create(&self, app: NewApp) -> StoreResult<App> {
        registry::app_create(self, app).await
    }

    async fn app_get(&self, client_id: &str) -> StoreResult<Option<App>> {
        registry::app_get(self, client_id).await
    }

    async fn app_list(&self) -> StoreResult<Vec<App>> {
        registry::app_list(self).await
    }

    async fn app_delete(&self, client_id: &str) -> StoreResult<bool> {
        registry::app_delete(self, client_id).await
    }

    async fn location_create(&self, tenant_id: Uuid, new: NewLocation) -> StoreResult<Location> {
        registry::location_create(self, tenant_id, new).await
    }

    async fn location_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Location>> {
        registry::location_get(self, tenant_id, id).await
    }

    async fn location_list(
        &self,
        tenant_id: Uuid,
        filter: &LocationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Location>> {
        registry::location_list(self, tenant_id, filter, page).await
    }

    async fn location_count(&self, tenant_id: Uuid, filter: &LocationFilter) -> StoreResult<u64> {
        registry::location_count(self, tenant_id, filter).await
    }

    async fn asset_create(&self, tenant_id: Uuid, new: NewAsset) -> StoreResult<Asset> {
        history::asset_create(self, tenant_id, new).await
    }

    async fn asset_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Asset>> {
        registry::asset_get(self, tenant_id, id).await
    }

    async fn asset_get_at(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Asset>> {
        history::asset_get_at(self, tenant_id, id, at).await
    }

    async fn asset_list(
        &self,
        tenant_id: Uuid,
        filter: &AssetFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Asset>> {
        registry::asset_list(self, tenant_id, filter, page).await
    }

    async fn asset_count(&self, tenant_id: Uuid, filter: &AssetFilter) -> StoreResult<u64> {
        registry::asset_count(self, tenant_id, filter).await
    }

    async fn event_create(
        &self,
        tenant_id: Uuid,
        asset_id: Uuid,
        new: NewEvent,
    ) -> StoreResult<EventWrite> {
        history::event_create(self, tenant_id, asset_id, new).await
    }

    async fn event_get(
        &self,
        tenant_id: Uuid,
        asset_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<Event>> {
        history::event_get(self, tenant_id, asset_id, id).await
    }

    async fn event_list(
        &self,
        tenant_id: Uuid,
        filter: &EventFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Event>> {
        history::event_list(self, tenant_id, filter, page).await
    }

    async fn event_count(&self, tenant_id: Uuid, filter: &EventFilter) -> StoreResult<u64> {
        history::event_count(self, tenant_id, filter).await
    }

    async fn import_create(&self, new: NewImport, limits: ImportLimits) -> StoreResult<Admission> {
        imports::import_create(self, new, limits).await
    }

    async fn import_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>> {
        imports::import_get(self, tenant_id, id).await
    }

    async fn import_list(&self, tenant_id: Uuid, page: PageRequest) -> StoreResult<Page<Import>> {
        imports::import_list(self, tenant_id, page).await
    }

    async fn import_count(&self, tenant_id: Uuid) -> StoreResult<u64> {
        imports::import_count(self, tenant_id).await
    }

    async fn import_delete(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<bool> {
        imports::import_delete(self, tenant_id, id).await
    }

    async fn import_cancel(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>> {
        imports::import_cancel(self, tenant_id, id).await
    }

    async fn imports_claim(
        &self,
        worker_id: Uuid,
        per_tenant: u32,
        max: u32,
    ) -> StoreResult<Vec<Uuid>> {
        imports::imports_claim(self, worker_id, per_tenant, max).await
    }

    async fn import_set_total(&self, id: Uuid, total: u64) -> StoreResult<()> {
        imports::import_set_total(self, id, total).await
    }

    async fn import_add_refused(&self, id: Uuid, refused: u64) -> StoreResult<()> {
        imports::import_add_refused(self, id, refused).await
    }

    async fn import_write_page(
        &self,
        id: Uuid,
        tenant_id: Uuid,
        context: &ImportContext,
        assets: &[AssetUpsert],
    ) -> StoreResult<PageWrite> {
        history::write_page(self, id, tenant_id, context, assets).await
    }

    async fn assets_tracked_by_source(
        &self,
        tenant_id: Uuid,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, String)>> {
        history::tracked_by_source(self, tenant_id, prefix, after, limit).await
    }

    async fn assets_tracked_count_by_source(
        &self,
        tenant_id: Uuid,
        prefix: &str,
    ) -> StoreResult<u64> {
        history::tracked_count_by_source(self, tenant_id, prefix).await
    }

    async fn import_stop_tracking(
        &self,
        id: Uuid,
        tenant_id: Uuid,
        context: &ImportContext,
        asset_ids: &[Uuid],
    ) -> StoreResult<PageWrite> {
        history::stop_tracking(self, id, tenant_id, context, asset_ids).await
    }

    async fn import_finish(&self, id: Uuid, outcome: ImportOutcome) -> StoreResult<Option<Import>> {
        imports::import_finish(self, id, outcome).await
    }

    async fn import_status(&self, id: Uuid) -> StoreResult<Option<ImportStatus>> {
        imports::import_status(self, id).await
    }

    async fn imports_done_among(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
        imports::imports_done_among(self, ids).await
    }

    async fn worker_heartbeat(&self, worker_id: Uuid, lease: Duration) -> StoreResult<()> {
        workers::worker_heartbeat(self, worker_id, lease).await
    }

    async fn imports_fail_orphaned(&self, reaper: Uuid, message: &str) -> StoreResult<Vec<Uuid>> {
        workers::imports_fail_orphaned(self, reaper, message).await
    }

    async fn worker_retire(&self, worker_id: Uuid, message: &str) -> StoreResult<u64> {
        workers::worker_retire(self, worker_id, message).await
    }
}
