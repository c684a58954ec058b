//! The SQL shared by every list: attribute filters, keyset pages, counts.

use iothubgdr_store::{LocationFilter, Page, PageRequest, StoreResult};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::rows::backend;

pub(crate) fn push_location_filter(query: &mut QueryBuilder<'_, Sqlite>, filter: &LocationFilter) {
    if let Some(name) = &filter.display_name {
        query.push(" AND display_name = ");
        query.push_bind(name.clone());
    }
    crate::events::push_attribute_tests(query, "attributes", &filter.attributes);
}

fn push_page(query: &mut QueryBuilder<'_, Sqlite>, page: PageRequest) {
    if let Some(before) = page.before_seq {
        query.push(" AND seq < ");
        query.push_bind(before);
    }
    query.push(" ORDER BY seq DESC LIMIT ");
    // One row more than asked tells whether another page follows.
    query.push_bind(i64::from(page.page_size) + 1);
}

fn into_page<T>(mut items: Vec<T>, page: PageRequest, seq_of: impl Fn(&T) -> i64) -> Page<T> {
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

pub(crate) fn count_of(row: &sqlx::sqlite::SqliteRow) -> StoreResult<u64> {
    let count: i64 = row.try_get(0).map_err(backend)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// One keyset page of a list: `query` is the list's `SELECT … WHERE …` with its filters;
/// the page's bound, order and limit are added here, the same for every list.
pub(crate) async fn fetch_page<T>(
    pool: &sqlx::SqlitePool,
    mut query: QueryBuilder<'_, Sqlite>,
    page: PageRequest,
    from_row: impl Fn(&sqlx::sqlite::SqliteRow) -> StoreResult<T>,
    seq_of: impl Fn(&T) -> i64,
) -> StoreResult<Page<T>> {
    push_page(&mut query, page);
    let rows = query.build().fetch_all(pool).await.map_err(backend)?;
    let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(into_page(items, page, seq_of))
}

/// The total of a list: `query` is its `SELECT COUNT(*) … WHERE …` with the list's filters.
pub(crate) async fn fetch_count(
    pool: &sqlx::SqlitePool,
    mut query: QueryBuilder<'_, Sqlite>,
) -> StoreResult<u64> {
    let row = query.build().fetch_one(pool).await.map_err(backend)?;
    count_of(&row)
}
