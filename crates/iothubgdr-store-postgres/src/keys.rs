//! Token signing keys and the page-token key: the secrets the API signs with.

use iothubgdr_store::{StoreError, StoreResult, StoredSigningKey};

use sqlx::Row;

use crate::rows::backend;
use crate::PostgresStore;

pub(crate) async fn signing_keys(store: &PostgresStore) -> StoreResult<Vec<StoredSigningKey>> {
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
                created_at: row.try_get("created_at").map_err(backend)?,
                retired_at: row.try_get("retired_at").map_err(backend)?,
            })
        })
        .collect()
}

pub(crate) async fn signing_key_add(
    store: &PostgresStore,
    kid: &str,
    key: &[u8],
    only_if_none: bool,
) -> StoreResult<bool> {
    let mut tx = store.pool.begin().await.map_err(backend)?;
    // Replicas starting on a fresh database race to add the first key: this lock
    // conflicts with itself (and not with readers), so one adds and the others then
    // see its key.
    sqlx::query("LOCK TABLE token_signing_keys IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
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

pub(crate) async fn signing_key_retire(store: &PostgresStore, kid: &str) -> StoreResult<bool> {
    let retired = sqlx::query(
        "UPDATE token_signing_keys SET retired_at = now() \
         WHERE kid = $1 AND retired_at IS NULL",
    )
    .bind(kid)
    .execute(&store.pool)
    .await
    .map_err(backend)?;
    Ok(retired.rows_affected() > 0)
}

pub(crate) async fn paging_key_get_or_insert(
    store: &PostgresStore,
    candidate: &[u8],
) -> StoreResult<Vec<u8>> {
    let mut tx = store.pool.begin().await.map_err(backend)?;
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
