//! Mapping between SQLite rows and the store's records. Every value read from the database
//! is checked: a corrupt row becomes a `StoreError`, never a panic.

use iothubgdr_store::{
    App, Asset, Attributes, Import, ImportBreakdown, ImportStatus, Location, StoreError,
    StoreResult, Tenant,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

/// Sorts a driver error into the store's kinds: a busy or locked database, a lost
/// connection or an exhausted pool may pass if tried again; anything else is a backend error.
pub(crate) fn backend(err: sqlx::Error) -> StoreError {
    let retryable = match &err {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        _ => false,
    };
    let context = match &err {
        sqlx::Error::Database(_) => "SQLite refused a statement",
        sqlx::Error::Io(_) => "SQLite file I/O failed",
        sqlx::Error::PoolTimedOut => "no SQLite connection became free in time",
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_) => "a row read from SQLite does not decode",
        _ => "SQLite failed",
    }
    .to_owned();
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

pub(crate) fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|err| StoreError::backend(format!("bad timestamp {ms} in the database: {err}")))
}

pub(crate) fn to_json_text<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::backend(format!("cannot encode JSON: {err}")))
}

fn json_col<T: DeserializeOwned>(row: &SqliteRow, name: &str) -> StoreResult<T> {
    let text: String = row.try_get(name).map_err(backend)?;
    serde_json::from_str(&text)
        .map_err(|err| StoreError::backend(format!("bad JSON in column {name}: {err}")))
}

pub(crate) fn uuid_col(row: &SqliteRow, name: &str) -> StoreResult<Uuid> {
    let text: String = row.try_get(name).map_err(backend)?;
    Uuid::parse_str(&text)
        .map_err(|err| StoreError::backend(format!("bad UUID in column {name}: {err}")))
}

fn time_col(row: &SqliteRow, name: &str) -> StoreResult<OffsetDateTime> {
    from_millis(row.try_get(name).map_err(backend)?)
}

fn u64_col(row: &SqliteRow, name: &str) -> StoreResult<u64> {
    let value: i64 = row.try_get(name).map_err(backend)?;
    u64::try_from(value)
        .map_err(|_| StoreError::backend(format!("negative value in column {name}")))
}

pub(crate) fn status_col(row: &SqliteRow) -> StoreResult<ImportStatus> {
    let text: String = row.try_get("status").map_err(backend)?;
    ImportStatus::parse(&text)
        .ok_or_else(|| StoreError::backend(format!("unknown import status {text:?}")))
}

pub(crate) fn app_from_row(row: &SqliteRow) -> StoreResult<App> {
    Ok(App {
        client_id: row.try_get("client_id").map_err(backend)?,
        display_name: row.try_get("display_name").map_err(backend)?,
        tenant: Tenant {
            id: uuid_col(row, "tenant_id")?,
            name: row.try_get("tenant_name").map_err(backend)?,
        },
        secret_hash: row.try_get("secret_hash").map_err(backend)?,
        created_at: time_col(row, "created_at")?,
    })
}

pub(crate) fn location_from_row(row: &SqliteRow) -> StoreResult<Location> {
    Ok(Location {
        id: uuid_col(row, "id")?,
        tenant_id: uuid_col(row, "tenant_id")?,
        display_name: row.try_get("display_name").map_err(backend)?,
        description: row.try_get("description").map_err(backend)?,
        latitude: row.try_get("latitude").map_err(backend)?,
        longitude: row.try_get("longitude").map_err(backend)?,
        attributes: json_col::<Attributes>(row, "attributes")?,
        created_at: time_col(row, "created_at")?,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

pub(crate) fn asset_from_row(row: &SqliteRow) -> StoreResult<Asset> {
    Ok(Asset {
        id: uuid_col(row, "id")?,
        tenant_id: uuid_col(row, "tenant_id")?,
        behaviours: json_col(row, "behaviours")?,
        attributes: json_col::<Attributes>(row, "attributes")?,
        tracked: row.try_get::<i64, _>("tracked").map_err(backend)? != 0,
        at_time: time_col(row, "at_time")?,
        created_at: time_col(row, "created_at")?,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

pub(crate) fn import_from_row(row: &SqliteRow) -> StoreResult<Import> {
    let worker_id: Option<String> = row.try_get("worker_id").map_err(backend)?;
    let total: Option<i64> = row.try_get("number_devices_total").map_err(backend)?;
    let finished_at: Option<i64> = row.try_get("finished_at").map_err(backend)?;
    Ok(Import {
        id: uuid_col(row, "id")?,
        tenant_id: uuid_col(row, "tenant_id")?,
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
        worker_id: worker_id
            .map(|text| {
                Uuid::parse_str(&text)
                    .map_err(|err| StoreError::backend(format!("bad worker UUID: {err}")))
            })
            .transpose()?,
        accepted_at: time_col(row, "accepted_at")?,
        finished_at: finished_at.map(from_millis).transpose()?,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

#[cfg(test)]
mod tests {
    //! How driver errors are sorted decides what the import writer retries: a write that
    //! may pass if tried again must say so, and nothing else may (a mutation run found no
    //! test of either). The busy database is a real one: two connections to one file.

    use sqlx::{Connection, SqliteConnection};

    use super::*;

    async fn connection(url: &str) -> SqliteConnection {
        let mut conn = SqliteConnection::connect(url).await.expect("connect");
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut conn)
            .await
            .expect("pragma");
        conn
    }

    #[tokio::test]
    async fn a_busy_database_may_be_tried_again_and_a_refused_statement_may_not() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display());
        let mut holder = connection(&url).await;
        let mut other = connection(&url).await;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .expect("the write lock");
        let busy = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect_err("the lock is held");
        let busy = backend(busy);
        assert!(busy.is_retryable(), "{busy:?}");
        assert_eq!(
            busy.to_string(),
            "the database asked to try again (SQLite refused a statement)"
        );

        let refused = sqlx::query("SELECT * FROM no_such_table")
            .execute(&mut other)
            .await
            .expect_err("no table");
        let refused = backend(refused);
        assert!(!refused.is_retryable(), "{refused:?}");
        assert_eq!(
            refused.to_string(),
            "database error (SQLite refused a statement)"
        );
    }

    #[test]
    fn lost_io_and_an_exhausted_pool_may_be_tried_again() {
        let io = backend(sqlx::Error::Io(std::io::Error::other("disk went away")));
        assert!(io.is_retryable(), "{io:?}");
        assert_eq!(
            io.to_string(),
            "the database asked to try again (SQLite file I/O failed)"
        );
        let pool = backend(sqlx::Error::PoolTimedOut);
        assert!(pool.is_retryable(), "{pool:?}");
        assert_eq!(
            pool.to_string(),
            "the database asked to try again (no SQLite connection became free in time)"
        );
        let crashed = backend(sqlx::Error::WorkerCrashed);
        assert!(crashed.is_retryable(), "{crashed:?}");
    }

    #[test]
    fn a_row_that_does_not_decode_is_no_reason_to_try_again() {
        for err in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("seq".into()),
        ] {
            let err = backend(err);
            assert!(!err.is_retryable(), "{err:?}");
            assert_eq!(
                err.to_string(),
                "database error (a row read from SQLite does not decode)"
            );
        }
        let other = backend(sqlx::Error::PoolClosed);
        assert!(!other.is_retryable());
        assert_eq!(other.to_string(), "database error (SQLite failed)");
    }
}
