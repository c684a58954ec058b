//! PostgreSQL backend of the iothubgdr [`Store`]: several `iothubgdr serve` replicas on one
//! database.
//!
//! - Native types: UUID, TIMESTAMPTZ, JSONB; `attributes.X=value` filters are JSONB
//!   containment tests served by a GIN (`jsonb_path_ops`) index.
//! - Migrations run on every connect under sqlx's migration lock (a PostgreSQL advisory
//!   lock), so replicas starting at once migrate once and the others wait.
//! - A page of assets is one read of what is stored for its keys, then, when something
//!   changed, one statement (`UNNEST` of arrays) for its assets and events, whatever its
//!   size: no bound parameter limit (history.rs). The import's count is raised after it, in
//!   the same transaction, so the count's row lock is held only for the commit and pages of
//!   one import write side by side (see `concurrent_page_writes`).
//! - Decisions that replicas must share — admitting an import under the limits, claiming
//!   pending imports under the per-tenant running limit — are serialised by one
//!   transaction-scoped advisory lock; they are short and rare next to page writes.
//! - Leases are computed with the database's `now()`.
//!
//! Queries are runtime-checked (`sqlx::query`): no database exists at build time.

mod events;
mod history;
mod imports;
mod keys;
mod query;
mod registry;
mod rows;
pub mod testing;
mod workers;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use iothubgdr_store::{
    Admission, App, Asset, AssetFilter, AssetUpsert, Event, EventFilter, EventWrite, Import,
    ImportContext, ImportLimits, ImportOutcome, ImportStatus, Location, LocationFilter, NewApp,
    NewAsset, NewEvent, NewImport, NewLocation, Page, PageRequest, PageWrite, Store, StoreError,
    StoreResult, StoredSigningKey,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use time::OffsetDateTime;
use uuid::Uuid;

use rows::{backend, import_from_row};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(crate) const UNFINISHED: &str = "('PENDING', 'INPROGRESS')";

/// The advisory lock that serialises admissions and claims across replicas ("iothubgdr"
/// in ASCII, to be recognisable in `pg_locks`).
pub(crate) const SCHEDULING_LOCK: i64 = 0x696f_7468_7562_6764;

/// Page writes of one import in flight at once (see `concurrent_page_writes`).
const PAGE_WRITERS: usize = 3;

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

#[async_trait]
impl Store for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    fn concurrent_page_writes(&self) -> usize {
        // Pages of one import hold disjoint devices, written in key order, so concurrent
        // writes neither block nor deadlock each other. A page write spends part of its
        // time writing WAL and extending files, so a third keeps the database's CPU busy
        // meanwhile (bench/import.sh, PostgreSQL first import: median 88-90% of the
        // build without history with three, 76-89% with two); a fourth gained nothing
        // and takes a connection other requests need.
        PAGE_WRITERS
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
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
        events::asset_get_at(&self.pool, tenant_id, id, at).await
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
