//! Throwaway databases for tests: every test gets a database of its own on a shared test
//! server, so tests run in parallel without seeing each other's rows.

use std::str::FromStr;

use iothubgdr_store::{StoreError, StoreResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

use crate::rows::backend;

/// Creates an empty database on the server that `server_url` reaches (a role allowed to
/// create databases) and returns the URL of the new database.
pub async fn fresh_database(server_url: &str) -> StoreResult<String> {
    let name = format!("iothubgdr_test_{}", Uuid::new_v4().simple());
    let options = PgConnectOptions::from_str(server_url).map_err(backend)?;
    let mut connection = options.connect().await.map_err(backend)?;
    // The name is ours (hex digits), so it is safe to splice into the statement.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .map_err(backend)?;
    connection.close().await.map_err(backend)?;
    let mut url = url::Url::parse(server_url).map_err(|err| StoreError::Backend {
        context: "the test server URL does not parse".into(),
        source: Some(Box::new(err)),
    })?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}
