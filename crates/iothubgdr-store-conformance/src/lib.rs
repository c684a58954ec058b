//! The conformance suite of the iothubgdr [`Store`] trait: one library of async test cases
//! that every backend runs unchanged from its own tests (atuin's database crates are the
//! model), so SQLite and PostgreSQL are held to the same contract.
//!
//! A backend's `tests/conformance.rs` is two items:
//!
//! ```ignore
//! async fn fresh() -> Option<iothubgdr_store_conformance::TestDatabase> { /* a new, empty database */ }
//! iothubgdr_store_conformance::store_conformance_tests!(fresh);
//! ```
//!
//! `fresh` answers `None` when the backend is not available (no PostgreSQL server named):
//! then every case prints that it was skipped and passes.
//!
//! Cases take a [`TestDatabase`], which opens as many independent store handles (each with
//! its own connection pool) on one database as a case needs: the replica cases use two,
//! the way two server processes share one database.

pub mod cases;
pub mod fixtures;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use iothubgdr_store::Store;

/// The environment variable that names a PostgreSQL server for tests
/// (`postgres://user@127.0.0.1:PORT/postgres`); each test creates its own database on it.
pub const POSTGRES_URL_ENV: &str = "IOTHUBGDR_TEST_POSTGRES_URL";

/// The PostgreSQL server tests may use, or `None` after printing that `test` is skipped.
pub fn postgres_server_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("SKIPPED {test}: {POSTGRES_URL_ENV} names no PostgreSQL server");
            eprintln!("SKIPPED {test}: {POSTGRES_URL_ENV} names no PostgreSQL server");
            None
        }
    }
}

type OpenFuture = Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>>;

/// One fresh database of some backend, and how to open store handles on it.
pub struct TestDatabase {
    backend: &'static str,
    url: String,
    open: Box<dyn Fn() -> OpenFuture + Send + Sync>,
    /// Whatever must live as long as the database (a temporary directory).
    _keep: Box<dyn Any + Send + Sync>,
}

impl TestDatabase {
    /// `open` makes a new, independent handle (its own pool) each time it is called.
    pub fn new<F, Fut>(
        backend: &'static str,
        url: String,
        keep: impl Any + Send + Sync,
        open: F,
    ) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Arc<dyn Store>> + Send + 'static,
    {
        Self {
            backend,
            url,
            open: Box::new(move || Box::pin(open())),
            _keep: Box::new(keep),
        }
    }

    /// A new store handle on this database.
    pub async fn open(&self) -> Arc<dyn Store> {
        (self.open)().await
    }

    /// `sqlite`, `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The database's URL (for starting a server process on it).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on a database made by the
/// async fn `$fresh` (`async fn() -> Option<TestDatabase>`; `None` skips).
#[macro_export]
macro_rules! store_conformance_tests {
    ($fresh:path) => {
        $crate::store_conformance_tests!(@cases $fresh;
            ping_names_the_backend,
            reopening_keeps_data_and_the_signing_keys,
            signing_keys_rotate_and_retire,
            apps_share_tenants_by_name_and_reject_duplicate_ids,
            locations_are_per_tenant_filtered_and_paged,
            assets_are_per_tenant_filtered_and_paged,
            paging_while_inserting_sees_every_older_row_once,
            import_pages_upsert_and_count,
            a_page_with_duplicate_keys_keeps_the_last_and_counts_each_key_once,
            cancelled_import_writes_nothing_more,
            pending_import_cancelled_before_claim_never_starts,
            failed_on_create_delete_hides_and_list_pages,
            admission_bounds_unfinished_imports_per_tenant_and_in_total,
            claims_keep_the_tenant_limit_and_start_the_oldest_first,
            done_among_names_only_done_imports,
            orphaned_imports_are_failed_and_live_ones_kept,
            retiring_a_worker_fails_its_imports_and_removes_it,
            a_reaper_keeps_its_own_imports_whatever_its_lease_says,
            two_handles_write_the_same_keys_at_once,
            two_handles_write_duplicate_keys_in_one_page,
            a_cancel_racing_page_writes_freezes_an_exact_count,
            keys_and_apps_created_at_once_agree,
            claims_on_two_handles_never_exceed_the_tenant_limit,
            admissions_on_two_handles_share_one_limit,
            another_tenant_cannot_touch_a_running_import,
            an_import_id_is_unique_and_a_duplicate_changes_nothing,
            creating_an_asset_records_its_new_asset_event,
            posted_events_change_the_asset_or_are_refused,
            imports_record_only_what_changed,
            devices_gone_from_the_hub_stop_and_come_back,
            at_time_answers_the_asset_as_its_events_left_it,
            events_filter_and_page,
            two_imports_of_one_hub_record_each_device_once,
            two_imports_of_one_change_record_it_once,
            a_stopped_import_records_no_event,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(database) = $fresh().await else { return };
                $crate::cases::$case(&database).await;
            }
        )*
    };
}
