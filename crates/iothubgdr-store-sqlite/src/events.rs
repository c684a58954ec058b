//! Events in SQLite: how they are stored and read back, the filters of event and asset
//! lists, and `at_time` (an asset folded from its events). What an event means is decided
//! by `iothubgdr_store::history`, shared by every backend.

use iothubgdr_store::history::Replay;
use iothubgdr_store::plan::EncodedEvent;
use iothubgdr_store::{
    Asset, AssetFilter, AttributeFilter, AttributeTest, Attributes, Event, EventFilter,
    PrincipalFilter, StoreError, StoreResult,
};
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rows::{asset_from_row, backend, from_millis, millis, uuid_col};

/// Rows per multi-row statement: an event binds 11 values, far below SQLite's limit of
/// 32766 bound variables.
const CHUNK: usize = 500;

pub(crate) fn json_col<T: DeserializeOwned>(row: &SqliteRow, name: &str) -> StoreResult<T> {
    let text: String = row.try_get(name).map_err(backend)?;
    serde_json::from_str(&text)
        .map_err(|err| StoreError::backend(format!("bad JSON in column {name}: {err}")))
}

pub(crate) fn event_from_row(row: &SqliteRow) -> StoreResult<Event> {
    Ok(Event {
        id: uuid_col(row, "id")?,
        asset_id: uuid_col(row, "asset_id")?,
        tenant_id: uuid_col(row, "tenant_id")?,
        behaviour: row.try_get("behaviour").map_err(backend)?,
        operation: row.try_get("operation").map_err(backend)?,
        event_attributes: json_col(row, "event_attributes")?,
        asset_attributes: json_col(row, "asset_attributes")?,
        timestamp_declared: from_millis(row.try_get("timestamp_declared").map_err(backend)?)?,
        timestamp_accepted: from_millis(row.try_get("timestamp_accepted").map_err(backend)?)?,
        principal_declared: json_col(row, "principal_declared")?,
        principal_accepted: json_col(row, "principal_accepted")?,
        seq: row.try_get("seq").map_err(backend)?,
    })
}

pub(crate) async fn insert_events(
    conn: &mut SqliteConnection,
    tenant_id: Uuid,
    events: &[EncodedEvent<'_>],
    now: i64,
) -> StoreResult<()> {
    let tenant = tenant_id.to_string();
    for chunk in events.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, asset_id, tenant_id, behaviour, operation, event_attributes, \
             asset_attributes, timestamp_declared, timestamp_accepted, principal_declared, \
             principal_accepted) ",
        );
        query.push_values(chunk, |mut row, event| {
            row.push_bind(event.id.to_string())
                .push_bind(event.asset_id.to_string())
                .push_bind(tenant.as_str())
                .push_bind(event.behaviour)
                .push_bind(event.operation)
                .push_bind(event.event_attributes.as_str())
                .push_bind(event.asset_attributes.as_ref())
                .push_bind(event.timestamp_declared.map_or(now, millis))
                .push_bind(now)
                .push_bind(event.principal_declared.as_str())
                .push_bind(event.principal_accepted.as_str());
        });
        query.build().execute(&mut *conn).await.map_err(backend)?;
    }
    Ok(())
}

/// The asset as the events accepted up to `at` left it.
pub(crate) async fn asset_get_at(
    conn: &mut SqliteConnection,
    tenant_id: Uuid,
    id: Uuid,
    at: OffsetDateTime,
) -> StoreResult<Option<Asset>> {
    let Some(row) = sqlx::query("SELECT * FROM assets WHERE tenant_id = ? AND id = ?")
        .bind(tenant_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
    else {
        return Ok(None);
    };
    let asset = asset_from_row(&row)?;
    let events = sqlx::query(
        "SELECT behaviour, operation, asset_attributes, timestamp_accepted FROM events \
         WHERE asset_id = ? AND timestamp_accepted <= ? ORDER BY seq",
    )
    .bind(id.to_string())
    .bind(millis(at))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut replay = Replay::default();
    for event in &events {
        let behaviour: String = event.try_get("behaviour").map_err(backend)?;
        let operation: String = event.try_get("operation").map_err(backend)?;
        let changes: Attributes = json_col(event, "asset_attributes")?;
        let accepted = from_millis(event.try_get("timestamp_accepted").map_err(backend)?)?;
        replay.apply(&behaviour, &operation, &changes, accepted);
    }
    Ok(replay.into_asset(asset))
}

/// Appends the AND-ed tests of `filter` on the JSON object in `column`. `json_each` matches
/// keys exactly (no JSON path quoting of names with dots or quotes).
pub(crate) fn push_attribute_tests(
    query: &mut QueryBuilder<'_, Sqlite>,
    column: &str,
    filter: &AttributeFilter,
) {
    for test in &filter.0 {
        match &test.test {
            AttributeTest::Equals(value) => {
                query.push(format!(
                    " AND EXISTS (SELECT 1 FROM json_each({column}) AS a WHERE a.type = 'text' AND a.key = "
                ));
                query.push_bind(test.name.clone());
                query.push(" AND a.value = ");
                query.push_bind(value.clone());
                query.push(")");
            }
            AttributeTest::Present | AttributeTest::Absent => {
                let negate = if test.test == AttributeTest::Absent {
                    "NOT "
                } else {
                    ""
                };
                query.push(format!(
                    " AND {negate}EXISTS (SELECT 1 FROM json_each({column}) AS a WHERE a.key = "
                ));
                query.push_bind(test.name.clone());
                query.push(" AND a.type <> 'null' AND NOT (a.type = 'text' AND a.value = ''))");
            }
        }
    }
}

pub(crate) fn push_asset_filter(query: &mut QueryBuilder<'_, Sqlite>, filter: &AssetFilter) {
    if let Some(tracked) = filter.tracked {
        query.push(" AND tracked = ");
        query.push_bind(i64::from(tracked));
    }
    push_attribute_tests(query, "attributes", &filter.attributes);
}

fn push_principal_filter(
    query: &mut QueryBuilder<'_, Sqlite>,
    column: &str,
    filter: &PrincipalFilter,
) {
    for (field, value) in filter.fields() {
        query.push(format!(" AND json_extract({column}, '$.{field}') = "));
        query.push_bind(value.to_owned());
    }
}

pub(crate) fn push_event_filter(query: &mut QueryBuilder<'_, Sqlite>, filter: &EventFilter) {
    if let Some(asset_id) = filter.asset_id {
        query.push(" AND asset_id = ");
        query.push_bind(asset_id.to_string());
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
    push_principal_filter(query, "principal_declared", &filter.principal_declared);
    push_principal_filter(query, "principal_accepted", &filter.principal_accepted);
    for (column, op, at) in [
        ("timestamp_accepted", ">", filter.accepted_since),
        ("timestamp_accepted", "<", filter.accepted_before),
        ("timestamp_declared", ">", filter.declared_since),
        ("timestamp_declared", "<", filter.declared_before),
    ] {
        if let Some(at) = at {
            query.push(format!(" AND {column} {op} "));
            query.push_bind(millis(at));
        }
    }
    push_attribute_tests(query, "event_attributes", &filter.event_attributes);
    push_attribute_tests(query, "asset_attributes", &filter.asset_attributes);
}
