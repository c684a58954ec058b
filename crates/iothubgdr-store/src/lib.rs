//! The storage contract of iothubgdr.
//!
//! Every handler and the import engine talk to storage only through [`Store`], so a backend
//! (SQLite for a laptop, PostgreSQL for scale) is a crate of its own and no handler changes
//! when it is swapped. Records are plain data; identities are UUIDs and the API adds the
//! `locations/`, `assets/`, `iothubgdr/` prefixes.
//!
//! Paging is keyset paging on a per-table, ever-increasing `seq`: lists are newest first and
//! a page continues strictly below the last `seq` it returned, so rows inserted while a client
//! pages never shift what it sees.

pub mod filter;
pub mod history;
pub mod plan;
mod upsert;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

pub use filter::{
    AssetFilter, AttributeFilter, AttributeMatch, AttributeTest, EventFilter, LocationFilter,
    PrincipalFilter,
};
pub use history::{
    Event, EventRefused, EventWrite, ImportBreakdown, Incarnation, NewEvent, Observation, Principal,
};
pub use upsert::{distinct_sorted, AssetUpsert, ImportContext};

/// A token signing key kept in the database. Its `Debug` never shows the key.
#[derive(Clone, PartialEq)]
pub struct StoredSigningKey {
    /// The key id, `kid` in the header of the tokens it signs.
    pub kid: String,
    pub key: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("key", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// A string-keyed attribute map, as the Archivist stores asset and location attributes.
pub type Attributes = Map<String, Value>;

/// The source of a [`StoreError`]: the driver's own error, kept for logs and for deciding
/// what kind of failure it was.
pub type ErrorSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store call failed. Every kind keeps the driver's error as its `source()`; the
/// `Display` text is ours and never holds a secret (no secret is ever passed to the store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (for example an app's client id already exists).
    #[error("already exists: {what}")]
    Conflict {
        what: String,
        #[source]
        source: Option<ErrorSource>,
    },
    /// A failure that the same call may not meet again: a deadlock, a serialization
    /// failure, a lost connection, a failover, a database that is busy. Nothing was
    /// committed; the caller may try again.
    #[error("the database asked to try again ({context})")]
    Retryable {
        context: String,
        #[source]
        source: ErrorSource,
    },
    /// Any other failure of the database, or data in it that does not decode.
    #[error("database error ({context})")]
    Backend {
        context: String,
        #[source]
        source: Option<ErrorSource>,
    },
}

impl StoreError {
    /// A failure with no driver error behind it (bad data read back, a bad URL).
    pub fn backend(context: impl Into<String>) -> Self {
        Self::Backend {
            context: context.into(),
            source: None,
        }
    }

    pub fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict {
            what: what.into(),
            source: None,
        }
    }

    /// Is the same call worth trying again?
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// The error and every source below it, joined by `: `, for logs.
    pub fn detail(&self) -> String {
        let mut text = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
        text
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One tenant: every resource belongs to exactly one.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
}

/// An app registration ("custom integration"): a client id, a hash of its secret, and the
/// tenant it acts for. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub client_id: String,
    pub display_name: String,
    pub tenant: Tenant,
    /// Hash of the client secret (see iothubgdr-auth); compared in constant time.
    pub secret_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct NewApp {
    pub client_id: String,
    pub display_name: String,
    /// The tenant's name; the tenant is created when it does not exist yet.
    pub tenant_name: String,
    pub secret_hash: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub display_name: String,
    pub description: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub attributes: Attributes,
    pub created_at: OffsetDateTime,
    pub seq: i64,
}

#[derive(Debug, Clone)]
pub struct NewLocation {
    pub display_name: String,
    pub description: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub behaviours: Vec<String>,
    pub attributes: Attributes,
    /// `false` once a `StopTracking` event stopped it (until a `StartTracking`).
    pub tracked: bool,
    /// When the asset's attributes last changed.
    pub at_time: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub seq: i64,
}

#[derive(Debug, Clone)]
pub struct NewAsset {
    pub behaviours: Vec<String>,
    pub attributes: Attributes,
    /// Who created it: the principal of its `NewAsset` event.
    pub principal: Principal,
}

/// Which rows a list asks for: `page_size` rows, newest first, with `seq` strictly below
/// `before_seq` when continuing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRequest {
    pub page_size: u32,
    pub before_seq: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `before_seq` of the next page, or `None` when this was the last page.
    pub next_before_seq: Option<i64>,
}

/// Where an import stands. `Failed` is the page's `error` form of the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportStatus {
    Pending,
    InProgress,
    Finished,
    Cancelled,
    Failed,
}

impl ImportStatus {
    pub fn is_done(self) -> bool {
        matches!(self, Self::Finished | Self::Cancelled | Self::Failed)
    }

    /// The name kept in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "INPROGRESS",
            Self::Finished => "FINISHED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => Self::Pending,
            "INPROGRESS" => Self::InProgress,
            "FINISHED" => Self::Finished,
            "CANCELLED" => Self::Cancelled,
            "FAILED" => Self::Failed,
            _ => return None,
        })
    }
}

/// An import operation (`iothubgdr/<id>`). It never holds the connection string.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub display_name: String,
    pub arc_home_location_identity: Option<String>,
    pub status: ImportStatus,
    pub error_message: Option<String>,
    pub number_assets_imported: u64,
    /// The hub's device count when the engine learned it.
    pub number_devices_total: Option<u64>,
    /// Twins not copied because they break IoT Hub's own limits.
    pub number_devices_refused: u64,
    /// How the imported assets divide: created, changed, unchanged, stopped, ...
    pub breakdown: ImportBreakdown,
    /// The hub's host name, once the secret was parsed (not a secret).
    pub hub_host: Option<String>,
    /// The server process that holds this import's secret in memory and runs it.
    pub worker_id: Option<Uuid>,
    pub accepted_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    pub seq: i64,
}

#[derive(Debug, Clone)]
pub struct NewImport {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub display_name: String,
    pub arc_home_location_identity: Option<String>,
    pub hub_host: Option<String>,
    pub worker_id: Uuid,
    /// `None`: the import is accepted as `Pending`. `Some(message)`: it is recorded as
    /// failed at once (for example `invalid secret provided`).
    pub failed_with: Option<String>,
}

/// Bounds on imports that are waiting or running (pending or in progress), checked when an
/// import is accepted. Counted in the database, so every replica on it shares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Unfinished imports one tenant may have.
    pub per_tenant: u32,
    /// Unfinished imports all tenants together may have.
    pub total: u32,
}

impl ImportLimits {
    /// No bound (tools and tests).
    pub const UNLIMITED: Self = Self {
        per_tenant: u32::MAX,
        total: u32::MAX,
    };
}

/// Which bound refused an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Tenant,
    Total,
}

/// What [`Store::import_create`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Recorded (pending, or failed at once).
    Accepted(Box<Import>),
    /// Not recorded: `scope` already has `limit` unfinished imports.
    Refused { scope: LimitScope, limit: u32 },
}

/// How an import that ran ends.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    Finished,
    Cancelled,
    Failed(String),
}

/// What happened to a page an import tried to write.
#[derive(Debug, Clone, PartialEq)]
pub enum PageWrite {
    /// Written in one transaction with the new count.
    Written {
        number_assets_imported: u64,
        /// How this write's assets divided (the import's totals add them up).
        breakdown: ImportBreakdown,
    },
    /// The import is no longer in progress (cancelled, or failed by a reaper); nothing was
    /// written and the job must stop.
    Stopped(ImportStatus),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`sqlite`, `postgres`), for `/readyz` and logs.
    fn backend_name(&self) -> &'static str;

    /// How many page writes of one import may run at once. A backend whose writes queue
    /// behind one lock (SQLite) gains nothing from more than one; a server database runs
    /// each on its own connection and core, while the import maps the next pages.
    fn concurrent_page_writes(&self) -> usize {
        1
    }

    /// Is the database reachable? Backs `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    // ---- keys ---------------------------------------------------------------------------

    /// Every token signing key kept in the database, oldest first, retired ones included.
    /// The newest key that is not retired signs new tokens; every key that is not retired
    /// verifies.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Adds a signing key as the newest. With `only_if_none` it is added only when no key
    /// that is not retired exists (the first start of a fresh database, which several
    /// processes may race); returns whether it was added. A `kid` that exists is a
    /// [`StoreError::Conflict`].
    async fn signing_key_add(&self, kid: &str, key: &[u8], only_if_none: bool)
        -> StoreResult<bool>;
    /// Retires a key now: tokens it signed are refused from then on. Returns `false` when no
    /// key that is not retired has this id.
    async fn signing_key_retire(&self, kid: &str) -> StoreResult<bool>;
    /// The key that signs page tokens, shared by every process on this database and never
    /// rotated (a forged page token could only ask about the caller's own data): stores
    /// `candidate` if no key exists yet and returns the one stored.
    async fn paging_key_get_or_insert(&self, candidate: &[u8]) -> StoreResult<Vec<u8>>;

    // ---- tenants and app registrations --------------------------------------------------

    async fn app_create(&self, app: NewApp) -> StoreResult<App>;
    async fn app_get(&self, client_id: &str) -> StoreResult<Option<App>>;
    async fn app_list(&self) -> StoreResult<Vec<App>>;
    /// Returns whether an app was deleted.
    async fn app_delete(&self, client_id: &str) -> StoreResult<bool>;

    // ---- locations ----------------------------------------------------------------------

    async fn location_create(&self, tenant_id: Uuid, new: NewLocation) -> StoreResult<Location>;
    async fn location_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Location>>;
    async fn location_list(
        &self,
        tenant_id: Uuid,
        filter: &LocationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Location>>;
    async fn location_count(&self, tenant_id: Uuid, filter: &LocationFilter) -> StoreResult<u64>;

    // ---- assets -------------------------------------------------------------------------

    /// Creates the asset and its `NewAsset` event in one transaction.
    async fn asset_create(&self, tenant_id: Uuid, new: NewAsset) -> StoreResult<Asset>;
    async fn asset_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Asset>>;
    /// The asset as its events accepted up to `at` (inclusive) left it, folded with
    /// [`history::apply_event`]; `None` when it has no event by then (it did not exist
    /// yet) or does not exist for this tenant.
    async fn asset_get_at(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        at: OffsetDateTime,
    ) -> StoreResult<Option<Asset>>;
    async fn asset_list(
        &self,
        tenant_id: Uuid,
        filter: &AssetFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Asset>>;
    async fn asset_count(&self, tenant_id: Uuid, filter: &AssetFilter) -> StoreResult<u64>;

    // ---- events -------------------------------------------------------------------------

    /// Records an event on an asset and applies it (attributes, tracking) with
    /// [`history::apply_event`], in one transaction.
    async fn event_create(
        &self,
        tenant_id: Uuid,
        asset_id: Uuid,
        new: NewEvent,
    ) -> StoreResult<EventWrite>;
    async fn event_get(
        &self,
        tenant_id: Uuid,
        asset_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<Event>>;
    /// Events newest first (keyset pages on the events' own `seq`).
    async fn event_list(
        &self,
        tenant_id: Uuid,
        filter: &EventFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Event>>;
    async fn event_count(&self, tenant_id: Uuid, filter: &EventFilter) -> StoreResult<u64>;

    // ---- imports ------------------------------------------------------------------------

    /// Records an import. A pending one (`failed_with: None`) is accepted only while its
    /// tenant and the whole database are under `limits`, decided atomically, so replicas
    /// racing for the last slot cannot both win. An import failed at once is always
    /// recorded (it is done, so it counts against nothing).
    async fn import_create(&self, new: NewImport, limits: ImportLimits) -> StoreResult<Admission>;
    /// A tenant's import; deleted imports are not found.
    async fn import_get(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>>;
    async fn import_list(&self, tenant_id: Uuid, page: PageRequest) -> StoreResult<Page<Import>>;
    async fn import_count(&self, tenant_id: Uuid) -> StoreResult<u64>;
    /// Hides the import from GET and lists. A running job keeps running and writing.
    async fn import_delete(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// Pending or in progress → cancelled (done, finished now). An import that is already
    /// done is returned unchanged. `None`: no such import for this tenant (another
    /// tenant's import is never changed).
    async fn import_cancel(&self, tenant_id: Uuid, id: Uuid) -> StoreResult<Option<Import>>;
    /// Starts (pending → in progress) up to `max` of `worker_id`'s pending imports, oldest
    /// first, and returns their ids. A pending import starts only while its tenant's in
    /// progress imports plus its tenant's older pending imports — on every worker — are
    /// fewer than `per_tenant`: the limit is counted in the database, and a tenant's
    /// imports start in the order they were accepted whichever replica holds them. An
    /// import that cannot start stays pending for a later claim. Claims are serialised in
    /// the database, so two replicas never both take the last slot.
    async fn imports_claim(
        &self,
        worker_id: Uuid,
        per_tenant: u32,
        max: u32,
    ) -> StoreResult<Vec<Uuid>>;
    /// Records the hub's device count on an import (the engine's progress total).
    async fn import_set_total(&self, id: Uuid, total: u64) -> StoreResult<()>;
    /// Adds `refused` to the import's `number_devices_refused` (twins over IoT Hub's limits,
    /// counted and not copied).
    async fn import_add_refused(&self, id: Uuid, refused: u64) -> StoreResult<()>;
    /// Writes a page of assets (by `(tenant, source_key)`) as [`plan::plan_page`]
    /// decides: new ones with their `NewAsset` event, changed ones with the events that say
    /// what changed, unchanged ones not at all. Adds the number of distinct keys to
    /// `number_assets_imported` and the plan's breakdown to the import's, in one
    /// transaction, only while the import is in progress.
    ///
    /// Input contract: `assets` may hold the same `source_key` more than once (a hub can
    /// list a device twice); the store keeps the last occurrence of each key. The store
    /// writes keys in ascending byte order, so two writers importing the same hub at once
    /// lock rows in the same order and cannot deadlock each other. An empty page only
    /// checks that the import is still in progress. A [`StoreError::Retryable`] means
    /// nothing was written and the same call may be repeated.
    async fn import_write_page(
        &self,
        id: Uuid,
        tenant_id: Uuid,
        context: &ImportContext,
        assets: &[AssetUpsert],
    ) -> StoreResult<PageWrite>;
    /// The tracked assets whose `source_key` starts with `prefix`, in ascending byte order
    /// of the key, strictly after `after`: `(id, source_key)`, at most `limit`.
    async fn assets_tracked_by_source(
        &self,
        tenant_id: Uuid,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, String)>>;
    /// How many tracked assets have a `source_key` that starts with `prefix`: an import
    /// that wrote as many distinct keys of its hub has nothing left to stop, without
    /// reading them all.
    async fn assets_tracked_count_by_source(
        &self,
        tenant_id: Uuid,
        prefix: &str,
    ) -> StoreResult<u64>;
    /// Records [`plan::stop_tracking_event`] on each of `asset_ids` that is still
    /// tracked and adds them to the import's stopped count, in one transaction, only while
    /// the import is in progress.
    async fn import_stop_tracking(
        &self,
        id: Uuid,
        tenant_id: Uuid,
        context: &ImportContext,
        asset_ids: &[Uuid],
    ) -> StoreResult<PageWrite>;
    /// Pending or in progress → the outcome (done, finished now). Returns the import as it
    /// then is, also when it was already done (then nothing changes).
    async fn import_finish(&self, id: Uuid, outcome: ImportOutcome) -> StoreResult<Option<Import>>;
    /// The status of an import by id, whatever its tenant and whether deleted.
    async fn import_status(&self, id: Uuid) -> StoreResult<Option<ImportStatus>>;
    /// Which of `ids` are done (cancelled through any replica, failed by a reaper): one
    /// query per engine tick tells a replica which of its jobs to stop.
    async fn imports_done_among(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>>;

    // ---- workers (processes that run imports) -------------------------------------------

    /// Records that worker `worker_id` is alive and holds its lease for `lease` from now,
    /// "now" being the database's clock, so replicas with skewed clocks or different
    /// `--import-lease` flags agree on when a lease ends.
    async fn worker_heartbeat(&self, worker_id: Uuid, lease: Duration) -> StoreResult<()>;
    /// Fails, with `message`, every unfinished import whose worker's lease has ended by
    /// the database's clock (or that has no worker row), and removes the expired worker
    /// rows. Returns the ids it failed. The secret of such an import died with its
    /// process, so it can never resume. The imports of `reaper`, the worker asking, are
    /// kept whatever its lease says: it is alive, and a heartbeat it was late to write
    /// (a busy database, a loaded machine) is no reason to fail its own running imports.
    async fn imports_fail_orphaned(&self, reaper: Uuid, message: &str) -> StoreResult<Vec<Uuid>>;
    /// A worker leaving: fails its unfinished imports with `message` and removes its row,
    /// in one transaction. Returns how many imports it failed.
    async fn worker_retire(&self, worker_id: Uuid, message: &str) -> StoreResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_names_every_source() {
        let err = StoreError::Retryable {
            context: "page write".into(),
            source: Box::new(std::io::Error::other("deadlock detected")),
        };
        assert!(err.is_retryable());
        assert_eq!(
            err.detail(),
            "the database asked to try again (page write): deadlock detected"
        );
    }
}
