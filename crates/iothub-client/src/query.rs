//! A twin query read one page at a time.

use std::sync::Arc;

use crate::client::HubClient;
use crate::error::HubError;
use crate::twin::{decode_twin_page, Twin};

/// The pages of one twin query. Holds at most one page at a time; owns its client, so it
/// can move into a task.
#[derive(Debug)]
pub struct DevicePages {
    client: HubClient,
    query: Arc<str>,
    continuation: Option<String>,
    finished: bool,
}

impl DevicePages {
    pub(crate) fn new(client: HubClient, query: &str, continuation: Option<String>) -> Self {
        Self {
            client,
            query: Arc::from(query),
            continuation,
            finished: false,
        }
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
