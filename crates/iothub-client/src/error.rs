//! Failures of the hub client, as sentences a user can act on. They name the host and
//! never the key or a SAS token.

use std::time::Duration;

/// What kind of failure a [`HubError`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubErrorKind {
    /// Wrong key, or a policy without registry read rights (HTTP 401/403).
    Unauthorized,
    /// The host answered 404: no such hub.
    HubNotFound,
    /// The hub kept answering 429 past the retry budget.
    Throttled,
    /// The hub could not be reached (DNS, refused, reset, timeout) within the budget.
    Network,
    /// The hub answered something that is not the IoT Hub query API.
    Protocol,
    /// The outbound policy refused the host before any connection (domain not allowed, IP
    /// literal, or a name that resolves to an internal address).
    Refused,
    /// Anything else (a rejected query, server errors past the budget, bad options).
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("the IoT Hub {host} refused the credentials (HTTP {status}): check the shared access key and that the policy has registry read rights")]
    Unauthorized { host: String, status: u16 },
    #[error("IoT Hub {host} was not found: check the hub name in the connection string")]
    HubNotFound { host: String },
    #[error("the IoT Hub {host} kept throttling requests past the retry budget of {}s", budget.as_secs())]
    Throttled { host: String, budget: Duration },
    #[error("could not connect to the IoT Hub at {host}: {reason}")]
    Network { host: String, reason: String },
    #[error("the IoT Hub {host} sent an answer that is not a twin query result: {reason}")]
    Protocol { host: String, reason: String },
    #[error("the IoT Hub {host} kept failing with HTTP {status} past the retry budget of {}s", budget.as_secs())]
    ServerError {
        host: String,
        status: u16,
        budget: Duration,
    },
    #[error("the IoT Hub {host} rejected the request with HTTP {status}: {detail}")]
    Rejected {
        host: String,
        status: u16,
        detail: String,
    },
    #[error("the IoT Hub client could not be set up: {reason}")]
    InvalidOptions { reason: String },
    #[error("{0}")]
    Refused(#[from] iothubgdr_outbound::Refusal),
    /// Where it pointed is deliberately not said: a redirect is the hub's text, and
    /// following it (or repeating it) could reach the service's own network.
    #[error(
        "the IoT Hub {host} answered with a redirect (HTTP {status}); redirects are never followed"
    )]
    Redirected { host: String, status: u16 },
    #[error("the IoT Hub {host} sent a page larger than {limit_mib} MiB, more than IoT Hub's own limits allow (100 twins, tags 8 KB, desired and reported properties 32 KB each)")]
    PageTooLarge { host: String, limit_mib: usize },
    #[error(
        "the IoT Hub {host} answered the same continuation token twice: it would page forever"
    )]
    ContinuationLoop { host: String },
    #[error("the IoT Hub {host} kept sending devices past the {reported} it reported ({sent} sent; at most {limit} are read)")]
    Overshoot {
        host: String,
        reported: u64,
        sent: u64,
        limit: u64,
    },
    #[error("the IoT Hub {host} sent nothing for {}s", idle.as_secs())]
    Stalled { host: String, idle: Duration },
}

impl HubError {
    pub fn kind(&self) -> HubErrorKind {
        match self {
            HubError::Unauthorized { .. } => HubErrorKind::Unauthorized,
            HubError::HubNotFound { .. } => HubErrorKind::HubNotFound,
            HubError::Throttled { .. } => HubErrorKind::Throttled,
            HubError::Network { .. } => HubErrorKind::Network,
            HubError::Protocol { .. }
            | HubError::Redirected { .. }
            | HubError::PageTooLarge { .. }
            | HubError::ContinuationLoop { .. }
            | HubError::Overshoot { .. } => HubErrorKind::Protocol,
            HubError::Refused(_) => HubErrorKind::Refused,
            HubError::Stalled { .. } => HubErrorKind::Network,
            HubError::ServerError { .. }
            | HubError::Rejected { .. }
            | HubError::InvalidOptions { .. } => HubErrorKind::Other,
        }
    }
}

/// The sentence for a transport failure: the error chain without the request URL
/// (which is harmless but noisy); secrets never reach it because the SAS token travels in
/// a header, which reqwest errors do not carry.
pub(crate) fn describe_transport_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = if error.is_timeout() {
        "the request timed out".to_owned()
    } else if error.is_connect() {
        "the connection failed".to_owned()
    } else {
        "the connection broke".to_owned()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    let mut last = String::new();
    while let Some(cause) = source {
        let line = cause.to_string();
        // hyper and reqwest nest the same message several times, and hyper-util adds a
        // generic "client error (Connect)" layer; keep what tells the user something.
        if line != last && !text.ends_with(&line) && !line.starts_with("client error (") {
            text.push_str(": ");
            text.push_str(&line);
        }
        last = line;
        source = cause.source();
    }
    text
}
