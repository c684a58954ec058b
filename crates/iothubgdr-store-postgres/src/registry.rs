//! Apps (tenants and their clients), locations and assets: the records the API serves.

use iothubgdr_store::{
    App, Asset, AssetFilter, Location, LocationFilter, NewApp, NewLocation, Page, PageRequest,
    StoreResult, Tenant,
};
use sqlx::QueryBuilder;
use sqlx::Row;
use uuid::Uuid;

use crate::events::push_asset_filter;
use crate::query::push_location_filter;
use crate::query::{fetch_count, fetch_page};
use crate::rows;
use crate::rows::{asset_from_row, backend, location_from_row};
use crate::PostgresStore;

pub(crate) async fn app_create(store: &PostgresStore, app: NewApp) -> StoreResult<App> {
    let mut tx = store.pool.begin().await.map_err(backend)?;
    sqlx::query(
        "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, now()) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(&app.tenant_name)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let tenant_row = sqlx::query("SELECT id FROM tenants WHERE name = $1")
        .bind(&app.tenant_name)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    let tenant_id: Uuid = tenant_row.try_get("id").map_err(backend)?;
    let row = sqlx::query(
        "INSERT INTO apps (client_id, display_name, tenant_id, secret_hash, created_at) \
         VALUES ($1, $2, $3, $4, date_trunc('milliseconds', now())) RETURNING created_at",
    )
    .bind(&app.client_id)
    .bind(&app.display_name)
    .bind(tenant_id)
    .bind(&app.secret_hash)
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| rows::unique_or_backend(err, || format!("app {}", app.client_id)))?;
    tx.commit().await.map_err(backend)?;
    Ok(App {
        client_id: app.client_id,
        display_name: app.display_name,
        tenant: Tenant {
            id: tenant_id,
            name: app.tenant_name,
        },
        secret_hash: app.secret_hash,
        created_at: row.try_get("created_at").map_err(backend)?,
    })
}

pub(crate) async fn app_get(store: &PostgresStore, client_id: &str) -> StoreResult<Option<App>> {
    let row = sqlx::query(
        "SELECT a.client_id, a.display_name, a.secret_hash, a.created_at, \
                t.id AS tenant_id, t.name AS tenant_name \
         FROM apps a JOIN tenants t ON t.id = a.tenant_id WHERE a.client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(&store.pool)
    .await
    .map_err(backend)?;
    row.as_ref().map(rows::app_from_row).transpose()
}

pub(crate) async fn app_list(store: &PostgresStore) -> StoreResult<Vec<App>> {
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

pub(crate) async fn app_delete(store: &PostgresStore, client_id: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM apps WHERE client_id = $1")
        .bind(client_id)
        .execute(&store.pool)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn location_create(
    store: &PostgresStore,
    tenant_id: Uuid,
    new: NewLocation,
) -> StoreResult<Location> {
    let row = sqlx::query(
        "INSERT INTO locations \
           (id, tenant_id, display_name, description, latitude, longitude, attributes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, date_trunc('milliseconds', now())) RETURNING *",
    )
    .bind(Uuid::new_v4())
    .bind(tenant_id)
    .bind(&new.display_name)
    .bind(&new.description)
    .bind(new.latitude)
    .bind(new.longitude)
    .bind(serde_json::Value::Object(new.attributes))
    .fetch_one(&store.pool)
    .await
    .map_err(backend)?;
    location_from_row(&row)
}

pub(crate) async fn location_get(
    store: &PostgresStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Location>> {
    let row = sqlx::query("SELECT * FROM locations WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(location_from_row).transpose()
}

pub(crate) async fn location_list(
    store: &PostgresStore,
    tenant_id: Uuid,
    filter: &LocationFilter,
    page: PageRequest,
) -> StoreResult<Page<Location>> {
    let mut query = QueryBuilder::new("SELECT * FROM locations WHERE tenant_id = ");
    query.push_bind(tenant_id);
    push_location_filter(&mut query, filter);
    fetch_page(&store.pool, query, page, location_from_row, |location| {
        location.seq
    })
    .await
}

pub(crate) async fn location_count(
    store: &PostgresStore,
    tenant_id: Uuid,
    filter: &LocationFilter,
) -> StoreResult<u64> {
    let mut query = QueryBuilder::new("SELECT COUNT(*) FROM locations WHERE tenant_id = ");
    query.push_bind(tenant_id);
    push_location_filter(&mut query, filter);
    fetch_count(&store.pool, query).await
}

pub(crate) async fn asset_get(
    store: &PostgresStore,
    tenant_id: Uuid,
    id: Uuid,
) -> StoreResult<Option<Asset>> {
    let row = sqlx::query("SELECT * FROM assets WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&store.pool)
        .await
        .map_err(backend)?;
    row.as_ref().map(asset_from_row).transpose()
}

pub(crate) async fn asset_list(
    store: &PostgresStore,
    tenant_id: Uuid,
    filter: &AssetFilter,
    page: PageRequest,
) -> StoreResult<Page<Asset>> {
    let mut query = QueryBuilder::new("SELECT * FROM assets WHERE tenant_id = ");
    query.push_bind(tenant_id);
    push_asset_filter(&mut query, filter);
    fetch_page(&store.pool, query, page, asset_from_row, |asset| asset.seq).await
}

pub(crate) async fn asset_count(
    store: &PostgresStore,
    tenant_id: Uuid,
    filter: &AssetFilter,
) -> StoreResult<u64> {
    let mut query = QueryBuilder::new("SELECT COUNT(*) FROM assets WHERE tenant_id = ");
    query.push_bind(tenant_id);
    push_asset_filter(&mut query, filter);
    fetch_count(&store.pool, query).await
}
