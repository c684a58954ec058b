//! Apps (tenants and their clients), locations and assets: the records the API serves.

use crate::events::push_asset_filter;
use crate::query::push_location_filter;
use crate::query::{fetch_count, fetch_page};
use crate::rows;
use crate::rows::{asset_from_row, backend, location_from_row, millis, to_json_text};
use crate::ExecuteInWriteTurn;
use iothubgdr_store::{
    App, Asset, AssetFilter, Location, LocationFilter, NewApp, NewLocation, Page, PageRequest,
    StoreResult, Tenant,
};
use sqlx::QueryBuilder;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{unique_or_backend, SqliteStore};

pub(crate) async fn app_create(store: &SqliteStore, app: NewApp) -> StoreResult<App> {
    let now = OffsetDateTime::now_utc();
    let mut tx = store.begin_write().await?;
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

pub(crate) async fn app_get(store: &SqliteStore, client_id: &str) -> StoreResult<Option<App>> {
    let row = sqlx::query(
        "SELECT a.client_id, a.display_name, a.secret_hash, a.created_at, \
                t.id AS tenant_id, t.name AS tenant_name \
         FROM apps a JOIN tenants t ON t.id = a.tenant_id WHERE a.client_id = ?",
    )
    .bind(client_id)
    .fetch_optional(&store.pool)
    .await
    .map_err(backend)?;
    row.as_ref().map(rows::app_from_row).transpose()
}

pub(crate) async fn app_list(store: &SqliteStore) -> StoreResult<Vec<App>> {
    let rows = sqlx::query(
        "SELECT a.client_id, a.display_name, a.secret_hash, a.created_at, \
                t.id AS tenant_id, t.name AS tenant_name \
         FROM apps a JOIN tenants t ON t.id = a.tenant_id ORDER BY a.created_at, a.client_id",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(backend)?;
    rows.iter().map(rows::app_from_row).collect()
}

pub(crate) async fn app_delete(store: &SqliteStore, client_id: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM apps WHERE client_id = ?")
        .bind(client_id)
        .execute_in_write_turn(store)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn location_create(
    store: &SqliteStore,
    tenant_id: Uuid,
    new: NewLocation,
) -> StoreResult<Location> {
    let mut tx = store.begin_write().await?;
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
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    location_from_row(&row)
}

pub(crate) async fn location_get(
    store: &SqliteStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Location>> {
    let row = sqlx::query("SELECT * FROM locations WHERE tenant_id = ? AND id = ?")
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(location_from_row).transpose()
}

pub(crate) async fn location_list(
    store: &SqliteStore,
    tenant_id: Uuid,
    filter: &LocationFilter,
    page: PageRequest,
) -> StoreResult<Page<Location>> {
    let mut query = QueryBuilder::new("SELECT * FROM locations WHERE tenant_id = ");
    query.push_bind(tenant_id.to_string());
    push_location_filter(&mut query, filter);
    fetch_page(&store.pool, query, page, location_from_row, |location| {
        location.seq
    })
    .await
}

pub(crate) async fn location_count(
    store: &SqliteStore,
    tenant_id: Uuid,
    filter: &LocationFilter,
) -> StoreResult<u64> {
    let mut query = QueryBuilder::new("SELECT COUNT(*) FROM locations WHERE tenant_id = ");
    query.push_bind(tenant_id.to_string());
    push_location_filter(&mut query, filter);
    fetch_count(&store.pool, query).await
}

pub(crate) async fn asset_get(
    store: &SqliteStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Asset>> {
    let row = sqlx::query("SELECT * FROM assets WHERE tenant_id = ? AND id = ?")
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(asset_from_row).transpose()
}

pub(crate) async fn asset_list(
    store: &SqliteStore,
    tenant_id: Uuid,
    filter: &AssetFilter,
    page: PageRequest,
) -> StoreResult<Page<Asset>> {
    let mut query = QueryBuilder::new("SELECT * FROM assets WHERE tenant_id = ");
    query.push_bind(tenant_id.to_string());
    push_asset_filter(&mut query, filter);
    fetch_page(&store.pool, query, page, asset_from_row, |asset| asset.seq).await
}

pub(crate) async fn asset_count(
    store: &SqliteStore,
    tenant_id: Uuid,
    filter: &AssetFilter,
) -> StoreResult<u64> {
    let mut query = QueryBuilder::new("SELECT COUNT(*) FROM assets WHERE tenant_id = ");
    query.push_bind(tenant_id.to_string());
    push_asset_filter(&mut query, filter);
    fetch_count(&store.pool, query).await
}
