//! Events in PostgreSQL: how they are read back, the filters of event and asset lists, and
//! `at_time` (an asset folded from its events). What an event means is decided by
//! `iothubgdr_store::history`, shared by every backend.

use iothubgdr_store::history::Replay;
use iothubgdr_store::{
    Asset, AssetFilter, AttributeFilter, AttributeTest, Attributes, Event, EventFilter, Principal,
    PrincipalFilter, StoreResult,
};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rows::{asset_from_row, backend, json_col, optional_json_col};

pub(crate) fn event_from_row(row: &PgRow) -> StoreResult<Event> {
    let principal_accepted: Principal = json_col(row, "principal_accepted")?;
    // NULL: the accepted principal (stored only when it differs, see migration 0006).
    let principal_declared =
        optional_json_col(row, "principal_declared")?.unwrap_or_else(|| principal_accepted.clone());
    Ok(Event {
        id: row.try_get("id").map_err(backend)?,
        asset_id: row.try_get("asset_id").map_err(backend)?,
        tenant_id: row.try_get("tenant_id").map_err(backend)?,
        behaviour: row.try_get("behaviour").map_err(backend)?,
        operation: row.try_get("operation").map_err(backend)?,
        event_attributes: json_col(row, "event_attributes")?,
        asset_attributes: json_col(row, "asset_attributes")?,
        timestamp_declared: row.try_get("timestamp_declared").map_err(backend)?,
        timestamp_accepted: row.try_get("timestamp_accepted").map_err(backend)?,
        principal_declared,
        principal_accepted,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

/// The asset as the events accepted up to `at` left it.
pub(crate) async fn asset_get_at(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    at: OffsetDateTime,
) -> StoreResult<Option<Asset>> {
    let Some(row) = sqlx::query("SELECT * FROM assets WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(backend)?
    else {
        return Ok(None);
    };
    let events = sqlx::query(
        "SELECT behaviour, operation, asset_attributes, timestamp_accepted FROM events \
         WHERE asset_id = $1 AND timestamp_accepted <= $2 ORDER BY seq",
    )
    .bind(id)
    .bind(at)
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    let mut replay = Replay::default();
    for event in &events {
        let behaviour: String = event.try_get("behaviour").map_err(backend)?;
        let operation: String = event.try_get("operation").map_err(backend)?;
        let changes: Attributes = json_col(event, "asset_attributes")?;
        let accepted = event.try_get("timestamp_accepted").map_err(backend)?;
        replay.apply(&behaviour, &operation, &changes, accepted);
    }
    Ok(replay.into_asset(asset_from_row(&row)?))
}

/// Appends the AND-ed tests of `filter` on the JSONB object in `column`: equality is a
/// containment test (served by the GIN index of assets' attributes and of events'
/// `event_attributes`; events' `asset_attributes` are tested row by row in seq order, see
/// migration 0006), the wildcards read the key directly.
pub(crate) fn push_attribute_tests(
    query: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    filter: &AttributeFilter,
) {
    for test in &filter.0 {
        match &test.test {
            AttributeTest::Equals(value) => {
                let mut wanted = serde_json::Map::new();
                wanted.insert(test.name.clone(), serde_json::Value::String(value.clone()));
                query.push(format!(" AND {column} @> "));
                query.push_bind(serde_json::Value::Object(wanted));
            }
            AttributeTest::Present | AttributeTest::Absent => {
                let op = if test.test == AttributeTest::Absent {
                    "IN"
                } else {
                    "NOT IN"
                };
                query.push(format!(" AND COALESCE({column} -> "));
                query.push_bind(test.name.clone());
                query.push(format!(
                    "::text, 'null'::jsonb) {op} ('null'::jsonb, '\"\"'::jsonb)"
                ));
            }
        }
    }
}

pub(crate) fn push_asset_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &AssetFilter) {
    if let Some(tracked) = filter.tracked {
        query.push(" AND tracked = ");
        query.push_bind(tracked);
    }
    push_attribute_tests(query, "attributes", &filter.attributes);
}

fn push_principal_filter(
    query: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    filter: &PrincipalFilter,
) {
    for (field, value) in filter.fields() {
        query.push(format!(" AND {column} ->> '{field}' = "));
        query.push_bind(value.to_owned());
    }
}

pub(crate) fn push_event_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &EventFilter) {
    if let Some(asset_id) = filter.asset_id {
        query.push(" AND asset_id = ");
        query.push_bind(asset_id);
    }
    for (column, value) in [
        ("behaviour", &filter.behaviour),
        ("operation", &filter.operation),
    ] {
        if let Some(value) = value {
            query.push(format!(" AND {column} = "));
            query.push_bind(value.clone());
        }
    }
    push_principal_filter(
        query,
        "COALESCE(principal_declared, principal_accepted)",
        &filter.principal_declared,
    );
    push_principal_filter(query, "principal_accepted", &filter.principal_accepted);
    for (column, op, at) in [
        ("timestamp_accepted", ">", filter.accepted_since),
        ("timestamp_accepted", "<", filter.accepted_before),
        ("timestamp_declared", ">", filter.declared_since),
        ("timestamp_declared", "<", filter.declared_before),
    ] {
        if let Some(at) = at {
            query.push(format!(" AND {column} {op} "));
            query.push_bind(at);
        }
    }
    push_attribute_tests(query, "event_attributes", &filter.event_attributes);
    push_attribute_tests(query, "asset_attributes", &filter.asset_attributes);
}
