//! A twin query read one page at a time, ended with an error when the hub pages in a loop or
//! far past the count it reported.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::client::HubClient;
use crate::error::HubError;
use crate::twin::{decode_twin_page, Twin};

/// How far past its reported count a hub may page: twice the count plus ten full pages.
/// Devices created while an import runs are real, so some overshoot is normal; a hub that
/// doubles during one import is not, and this keeps what a lying hub can make us read (and
/// write) proportional to the size it admits.
pub fn overshoot_limit(reported: u64) -> u64 {
    reported
        .saturating_mul(2)
        .saturating_add(10 * u64::from(crate::client::MAX_PAGE_SIZE))
}

/// The pages of one twin query. Holds at most one page at a time; owns its client, so it
/// can move into a task.
#[derive(Debug)]
pub struct DevicePages {
    client: HubClient,
    query: Arc<str>,
    continuation: Option<String>,
    finished: bool,
    /// Hashes of every continuation token answered so far (8 bytes a page), keyed with a
    /// per-query random key so a hub cannot aim at collisions.
    seen_tokens: HashSet<u64>,
    token_hasher: RandomState,
    /// `(reported count, most twins read)` when the caller knows the count.
    expected: Option<(u64, u64)>,
    twins_read: u64,
    pages_read: u64,
}

impl DevicePages {
    pub(crate) fn new(client: HubClient, query: &str, continuation: Option<String>) -> Self {
        let token_hasher = RandomState::new();
        let mut seen_tokens = HashSet::new();
        if let Some(token) = &continuation {
            seen_tokens.insert(token_hasher.hash_one(token));
        }
        Self {
            client,
            query: Arc::from(query),
            continuation,
            finished: false,
            seen_tokens,
            token_hasher,
            expected: None,
            twins_read: 0,
            pages_read: 0,
        }
    }

    /// Ends the query with [`HubError::Overshoot`] once the hub has sent more than
    /// [`overshoot_limit`]`(reported)` twins, or more pages than that (a hub sending empty
    /// pages with fresh tokens).
    pub fn expecting(mut self, reported: u64) -> Self {
        self.expected = Some((reported, overshoot_limit(reported)));
        self
    }

    /// The next page, or `None` after the last. A failed page can be asked for again: the
    /// position only moves forward when a page is returned.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Twin>>, HubError> {
        if self.finished {
            return Ok(None);
        }
        let page = self
            .client
            .fetch_page(&self.query, self.continuation.as_deref())
            .await?;
        let twins = decode_twin_page(&page.body).map_err(|e| HubError::Protocol {
            host: self.client.host_name().to_owned(),
            reason: format!("a page of twins could not be read: {e}"),
        })?;
        drop(page.body);
        if let Some(token) = &page.continuation {
            if !self.seen_tokens.insert(self.token_hasher.hash_one(token)) {
                self.finished = true;
                return Err(HubError::ContinuationLoop {
                    host: self.client.host_name().to_owned(),
                });
            }
        }
        self.twins_read = self.twins_read.saturating_add(twins.len() as u64);
        self.pages_read += 1;
        if let Some((reported, limit)) = self.expected {
            if self.twins_read > limit || self.pages_read > limit.max(1) {
                self.finished = true;
                return Err(HubError::Overshoot {
                    host: self.client.host_name().to_owned(),
                    reported,
                    sent: self.twins_read,
                    limit,
                });
            }
        }
        self.finished = page.continuation.is_none();
        self.continuation = page.continuation;
        Ok(Some(twins))
    }

    /// The token that continues after the last returned page (`None` at the start of a
    /// query, or after the last page), for resuming with
    /// [`HubClient::resume_query_devices`].
    pub fn continuation_token(&self) -> Option<&str> {
        self.continuation.as_deref()
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}
