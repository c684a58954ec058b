//! Mapping between PostgreSQL rows and the store's records, and driver errors to store
//! errors. Every value read back is checked: a corrupt row becomes a `StoreError`.

use iothubgdr_store::{
    App, Asset, Attributes, Import, ImportBreakdown, ImportStatus, Location, StoreError,
    StoreResult, Tenant,
};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

/// SQLSTATEs worth another try: the same statement may well pass next time and nothing
/// was committed.
fn retryable_state(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected
        "40001" | "40P01"
        // admin_shutdown, crash_shutdown, cannot_connect_now (a restart or failover)
        | "57P01" | "57P02" | "57P03"
        // too_many_connections, read_only_sql_transaction (a standby after a failover)
        | "53300" | "25006"
    ) || code.starts_with("08") // connection exceptions
}

/// Sorts a driver error into the store's kinds, keeping it as the source.
pub(crate) fn backend(err: sqlx::Error) -> StoreError {
    let (retryable, context) = match &err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            (
                retryable_state(&code),
                format!("PostgreSQL refused a statement (SQLSTATE {code})"),
            )
        }
        sqlx::Error::Io(_) => (true, "the PostgreSQL connection failed".to_owned()),
        sqlx::Error::PoolTimedOut => (
            true,
            "no PostgreSQL connection became free in time".to_owned(),
        ),
        sqlx::Error::PoolClosed => (false, "the PostgreSQL pool is closed".to_owned()),
        sqlx::Error::Tls(_) => (true, "the PostgreSQL TLS session failed".to_owned()),
        sqlx::Error::Protocol(_) => (true, "PostgreSQL broke its protocol".to_owned()),
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_) => (
            false,
            "a row read from PostgreSQL does not decode".to_owned(),
        ),
        _ => (false, "PostgreSQL failed".to_owned()),
    };
    if retryable {
        StoreError::Retryable {
            context,
            source: Box::new(err),
        }
    } else {
        StoreError::Backend {
            context,
            source: Some(Box::new(err)),
        }
    }
}

/// A broken uniqueness rule becomes a conflict naming `what`.
pub(crate) fn unique_or_backend(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    if matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation()) {
        StoreError::Conflict {
            what: what(),
            source: Some(Box::new(err)),
        }
    } else {
        backend(err)
    }
}

pub(crate) fn to_json_text<T: serde::Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Backend {
        context: "cannot encode JSON".into(),
        source: Some(Box::new(err)),
    })
}

pub(crate) fn json_col<T: DeserializeOwned>(row: &PgRow, name: &str) -> StoreResult<T> {
    let value: serde_json::Value = row.try_get(name).map_err(backend)?;
    decode_json(value, name)
}

/// [`json_col`] of a nullable column.
pub(crate) fn optional_json_col<T: DeserializeOwned>(
    row: &PgRow,
    name: &str,
) -> StoreResult<Option<T>> {
    let value: Option<serde_json::Value> = row.try_get(name).map_err(backend)?;
    value.map(|value| decode_json(value, name)).transpose()
}

fn decode_json<T: DeserializeOwned>(value: serde_json::Value, name: &str) -> StoreResult<T> {
    serde_json::from_value(value).map_err(|err| StoreError::Backend {
        context: format!("bad JSON in column {name}"),
        source: Some(Box::new(err)),
    })
}

fn u64_col(row: &PgRow, name: &str) -> StoreResult<u64> {
    let value: i64 = row.try_get(name).map_err(backend)?;
    u64::try_from(value)
        .map_err(|_| StoreError::backend(format!("negative value in column {name}")))
}

pub(crate) fn status_col(row: &PgRow) -> StoreResult<ImportStatus> {
    let text: String = row.try_get("status").map_err(backend)?;
    ImportStatus::parse(&text)
        .ok_or_else(|| StoreError::backend(format!("unknown import status {text:?}")))
}

pub(crate) fn app_from_row(row: &PgRow) -> StoreResult<App> {
    Ok(App {
        client_id: row.try_get("client_id").map_err(backend)?,
        display_name: row.try_get("display_name").map_err(backend)?,
        tenant: Tenant {
            id: row.try_get("tenant_id").map_err(backend)?,
            name: row.try_get("tenant_name").map_err(backend)?,
        },
        secret_hash: row.try_get("secret_hash").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
    })
}

pub(crate) fn location_from_row(row: &PgRow) -> StoreResult<Location> {
    Ok(Location {
        id: row.try_get("id").map_err(backend)?,
        tenant_id: row.try_get("tenant_id").map_err(backend)?,
        display_name: row.try_get("display_name").map_err(backend)?,
        description: row.try_get("description").map_err(backend)?,
        latitude: row.try_get("latitude").map_err(backend)?,
        longitude: row.try_get("longitude").map_err(backend)?,
        attributes: json_col::<Attributes>(row, "attributes")?,
        created_at: row.try_get("created_at").map_err(backend)?,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

pub(crate) fn asset_from_row(row: &PgRow) -> StoreResult<Asset> {
    Ok(Asset {
        id: row.try_get("id").map_err(backend)?,
        tenant_id: row.try_get("tenant_id").map_err(backend)?,
        behaviours: json_col(row, "behaviours")?,
        attributes: json_col::<Attributes>(row, "attributes")?,
        tracked: row.try_get("tracked").map_err(backend)?,
        at_time: row.try_get("at_time").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

pub(crate) fn import_from_row(row: &PgRow) -> StoreResult<Import> {
    let total: Option<i64> = row.try_get("number_devices_total").map_err(backend)?;
    Ok(Import {
        id: row.try_get("id").map_err(backend)?,
        tenant_id: row.try_get("tenant_id").map_err(backend)?,
        display_name: row.try_get("display_name").map_err(backend)?,
        arc_home_location_identity: row.try_get("arc_home_location_identity").map_err(backend)?,
        status: status_col(row)?,
        error_message: row.try_get("error_message").map_err(backend)?,
        number_assets_imported: u64_col(row, "number_assets_imported")?,
        number_devices_total: total.map(|n| u64::try_from(n).unwrap_or(0)),
        number_devices_refused: u64_col(row, "number_devices_refused")?,
        breakdown: ImportBreakdown {
            created: u64_col(row, "number_assets_created")?,
            changed: u64_col(row, "number_assets_changed")?,
            unchanged: u64_col(row, "number_assets_unchanged")?,
            stopped_tracking: u64_col(row, "number_assets_stopped_tracking")?,
            tracked_again: u64_col(row, "number_assets_tracked_again")?,
            recreated: u64_col(row, "number_assets_recreated")?,
        },
        hub_host: row.try_get("hub_host").map_err(backend)?,
        worker_id: row
            .try_get::<Option<Uuid>, _>("worker_id")
            .map_err(backend)?,
        accepted_at: row.try_get("accepted_at").map_err(backend)?,
        finished_at: row.try_get("finished_at").map_err(backend)?,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

#[cfg(test)]
mod tests {
    //! How driver errors are sorted decides what the import writer retries: what may pass
    //! if tried again (a failover, a deadlock, a serialization failure) must say so, and
    //! nothing else may. A mutation run found no test of either. The SQLSTATE cases use
    //! the PostgreSQL server IOTHUBGDR_TEST_POSTGRES_URL names (skipped without one).

    use sqlx::{Connection, PgConnection};

    use super::*;

    #[test]
    fn the_sqlstates_worth_another_try() {
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "53300", "25006", "08000", "08006",
        ] {
            assert!(retryable_state(code), "{code}");
        }
        for code in ["", "23505", "42601", "22012", "P0001", "57014", "40002"] {
            assert!(!retryable_state(code), "{code}");
        }
    }

    #[test]
    fn errors_without_a_statement_are_sorted_by_kind() {
        let cases: [(sqlx::Error, bool, &str); 7] = [
            (
                sqlx::Error::Io(std::io::Error::other("reset")),
                true,
                "the PostgreSQL connection failed",
            ),
            (
                sqlx::Error::PoolTimedOut,
                true,
                "no PostgreSQL connection became free in time",
            ),
            (
                sqlx::Error::PoolClosed,
                false,
                "the PostgreSQL pool is closed",
            ),
            (
                sqlx::Error::Tls(Box::new(std::io::Error::other("handshake"))),
                true,
                "the PostgreSQL TLS session failed",
            ),
            (
                sqlx::Error::Protocol("unexpected message".into()),
                true,
                "PostgreSQL broke its protocol",
            ),
            (
                sqlx::Error::RowNotFound,
                false,
                "a row read from PostgreSQL does not decode",
            ),
            (sqlx::Error::WorkerCrashed, false, "PostgreSQL failed"),
        ];
        for (err, retryable, context) in cases {
            let err = backend(err);
            assert_eq!(err.is_retryable(), retryable, "{err:?}");
            assert!(err.to_string().contains(&format!("({context})")), "{err}");
        }
    }

    #[tokio::test]
    async fn a_refused_statement_names_its_sqlstate_and_only_some_may_be_retried() {
        let Ok(url) = std::env::var("IOTHUBGDR_TEST_POSTGRES_URL") else {
            println!("SKIPPED: IOTHUBGDR_TEST_POSTGRES_URL names no PostgreSQL server");
            return;
        };
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let serialization =
            sqlx::query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
                .execute(&mut conn)
                .await
                .expect_err("raised");
        let serialization = backend(serialization);
        assert!(serialization.is_retryable(), "{serialization:?}");
        assert_eq!(
            serialization.to_string(),
            "the database asked to try again (PostgreSQL refused a statement (SQLSTATE 40001))"
        );
        let syntax = sqlx::query("SELEC 1")
            .execute(&mut conn)
            .await
            .expect_err("bad syntax");
        let syntax = backend(syntax);
        assert!(!syntax.is_retryable(), "{syntax:?}");
        assert_eq!(
            syntax.to_string(),
            "database error (PostgreSQL refused a statement (SQLSTATE 42601))"
        );
    }
}
