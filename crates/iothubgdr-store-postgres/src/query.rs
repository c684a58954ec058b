//! The SQL shared by every list: attribute filters, keyset pages, counts.

use iothubgdr_store::{AttributeFilter, LocationFilter, Page, PageRequest, StoreResult};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::rows::backend;

/// Appends `AND attributes @> {"name": "value"}` per filter: exact key, string values
/// only, served by the GIN index.
pub(crate) fn push_attribute_filter(
    query: &mut QueryBuilder<'_, Postgres>,
    filter: &AttributeFilter,
) {
    for (name, value) in &filter.0 {
        let mut wanted = serde_json::Map::new();
        wanted.insert(name.clone(), serde_json::Value::String(value.clone()));
        query.push(" AND attributes @> ");
        query.push_bind(serde_json::Value::Object(wanted));
    }
}

pub(crate) fn push_location_filter(
    query: &mut QueryBuilder<'_, Postgres>,
    filter: &LocationFilter,
) {
    if let Some(name) = &filter.display_name {
        query.push(" AND display_name = ");
        query.push_bind(name.clone());
    }
    push_attribute_filter(query, &filter.attributes);
}

pub(crate) fn push_page(query: &mut QueryBuilder<'_, Postgres>, page: PageRequest) {
    if let Some(before) = page.before_seq {
        query.push(" AND seq < ");
        query.push_bind(before);
    }
    query.push(" ORDER BY seq DESC LIMIT ");
    // One row more than asked tells whether another page follows.
    query.push_bind(i64::from(page.page_size) + 1);
}

pub(crate) fn into_page<T>(
    mut items: Vec<T>,
    page: PageRequest,
    seq_of: impl Fn(&T) -> i64,
) -> Page<T> {
    let size = page.page_size as usize;
    if items.len() > size {
        items.truncate(size);
        let next_before_seq = items.last().map(&seq_of);
        Page {
            items,
            next_before_seq,
        }
    } else {
        Page {
            items,
            next_before_seq: None,
        }
    }
}

pub(crate) fn count_of(row: &PgRow) -> StoreResult<u64> {
    let count: i64 = row.try_get(0).map_err(backend)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
