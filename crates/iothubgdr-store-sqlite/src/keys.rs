//! Token signing keys and the page-token key: the secrets the API signs with.

use sqlx::Row;

use crate::rows::{backend, from_millis, millis};
use crate::ExecuteInWriteTurn;
use iothubgdr_store::{StoreError, StoreResult, StoredSigningKey};
use time::OffsetDateTime;

use crate::SqliteStore;

pub(crate) async fn signing_keys(store: &SqliteStore) -> StoreResult<Vec<StoredSigningKey>> {
    let rows = sqlx::query(
        "SELECT kid, key_bytes, created_at, retired_at FROM token_signing_keys ORDER BY seq",
    )
    .fetch_all(&store.pool)
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

pub(crate) async fn signing_key_add(
    store: &SqliteStore,
    kid: &str,
    key: &[u8],
    only_if_none: bool,
) -> StoreResult<bool> {
    let mut tx = store.begin_write().await?;
    if only_if_none {
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM token_signing_keys WHERE retired_at IS NULL")
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

pub(crate) async fn signing_key_retire(store: &SqliteStore, kid: &str) -> StoreResult<bool> {
    let retired = sqlx::query(
        "UPDATE token_signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL",
    )
    .bind(millis(OffsetDateTime::now_utc()))
    .bind(kid)
    .execute_in_write_turn(store)
    .await?;
    Ok(retired.rows_affected() > 0)
}

pub(crate) async fn paging_key_get_or_insert(
    store: &SqliteStore,
    candidate: &[u8],
) -> StoreResult<Vec<u8>> {
    let mut tx = store.begin_write().await?;
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
