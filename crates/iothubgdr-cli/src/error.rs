//! What can go wrong, what the user should do about it, and the exit code of each case.

use crate::models::Operation;

/// The exit codes of every client command; scripts tell the failures apart by them.
pub mod exit_code {
    /// The command did what was asked (an awaited import finished).
    pub const SUCCESS: u8 = 0;
    /// Anything not listed below (an unexpected server answer, a local I/O failure).
    pub const OTHER: u8 = 1;
    /// Invalid input: a bad flag or value, or the server answered 400 / 409.
    pub const INVALID_INPUT: u8 = 2;
    /// The server could not be reached, or answered 503 / 429 / 5xx.
    pub const UNREACHABLE: u8 = 3;
    /// No usable credentials: the token file is unreadable, or the server refused the token or
    /// the client id and secret (401 / 403).
    pub const AUTH: u8 = 4;
    /// The identity does not exist (404), also when it belongs to another tenant.
    pub const NOT_FOUND: u8 = 5;
    /// The awaited import ended with an error.
    pub const IMPORT_FAILED: u8 = 6;
    /// The awaited import was cancelled (by someone else, or by answering yes after Ctrl-C).
    pub const IMPORT_CANCELLED: u8 = 7;
    /// Ctrl-C stopped the wait and the import was left running.
    pub const INTERRUPTED: u8 = 8;
}

/// A failed client action. Messages name the cause and what to do, and never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Input refused before anything was sent.
    #[error("{0}")]
    InvalidInput(String),
    /// The server answered 400 or 409: the input was refused.
    #[error("the server refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// No connection could be made (or it broke before an answer).
    #[error("cannot reach the server at {url}: {cause}. Is `iothubgdr serve` running there? Point the client at it with --url or IOTHUBGDR_URL.")]
    Unreachable { url: String, cause: String },
    /// The server answered that it cannot serve now (429, 5xx).
    #[error("the server could not serve the request ({status}): {message}. Try again later.")]
    Unavailable { status: u16, message: String },
    /// No credentials could be found or read.
    #[error("{0}")]
    Credentials(String),
    /// The server refused the token or the client credentials (401, 403).
    #[error("the server refused the credentials ({status}): {message}. Get a fresh token (`curl .../archivist/iam/v1/appidp/token`) or check --client-id and its secret.")]
    Unauthorized { status: u16, message: String },
    /// 404.
    #[error(
        "not found: {message}. List what exists with `iothubgdr imports list` / `locations list`."
    )]
    NotFound { message: String },
    /// Any other answer this client cannot use.
    #[error("unexpected answer from the server ({status}): {message}")]
    Unexpected { status: u16, message: String },
    /// Ctrl-C stopped waiting; the import goes on.
    #[error("stopped waiting; import {identity} is still running. Follow it with `iothubgdr imports get {identity}`, stop it with `iothubgdr imports cancel {identity}`.")]
    Interrupted { identity: String },
    /// A local failure (terminal, standard streams).
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// The process exit code for this failure (see [`exit_code`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidInput(_) | Self::Rejected { .. } => exit_code::INVALID_INPUT,
            Self::Unreachable { .. } | Self::Unavailable { .. } => exit_code::UNREACHABLE,
            Self::Credentials(_) | Self::Unauthorized { .. } => exit_code::AUTH,
            Self::NotFound { .. } => exit_code::NOT_FOUND,
            Self::Interrupted { .. } => exit_code::INTERRUPTED,
            Self::Unexpected { .. } | Self::Local(_) => exit_code::OTHER,
        }
    }

    /// Worth asking again (while waiting for an import): the server may come back.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Unavailable { .. })
    }

    /// The error for an HTTP answer with `status` whose runtimeError carried `message`.
    pub(crate) fn from_status(status: u16, message: String) -> Self {
        match status {
            400 | 409 | 413 | 422 => Self::Rejected { status, message },
            401 | 403 => Self::Unauthorized { status, message },
            404 => Self::NotFound { message },
            429 | 500..=599 => Self::Unavailable { status, message },
            _ => Self::Unexpected { status, message },
        }
    }
}

/// The exit code for how an awaited import ended.
pub fn exit_code_for_operation(operation: &Operation) -> u8 {
    use crate::models::OperationState;
    match operation.state() {
        OperationState::Finished => exit_code::SUCCESS,
        OperationState::Failed => exit_code::IMPORT_FAILED,
        OperationState::Cancelled => exit_code::IMPORT_CANCELLED,
        OperationState::Pending | OperationState::InProgress | OperationState::Unknown => {
            exit_code::OTHER
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_http_failure_has_its_own_exit_code() {
        let cases = [
            (400, exit_code::INVALID_INPUT),
            (409, exit_code::INVALID_INPUT),
            (401, exit_code::AUTH),
            (403, exit_code::AUTH),
            (404, exit_code::NOT_FOUND),
            (429, exit_code::UNREACHABLE),
            (503, exit_code::UNREACHABLE),
            (500, exit_code::UNREACHABLE),
            (418, exit_code::OTHER),
        ];
        for (status, code) in cases {
            assert_eq!(
                ClientError::from_status(status, "m".into()).exit_code(),
                code,
                "{status}"
            );
        }
    }

    #[test]
    fn local_failures_map_to_their_codes() {
        assert_eq!(ClientError::InvalidInput("x".into()).exit_code(), 2);
        assert_eq!(
            ClientError::Unreachable {
                url: "http://127.0.0.1:1".into(),
                cause: "refused".into()
            }
            .exit_code(),
            3
        );
        assert_eq!(ClientError::Credentials("x".into()).exit_code(), 4);
        assert_eq!(
            ClientError::Interrupted {
                identity: "iothubgdr/x".into()
            }
            .exit_code(),
            8
        );
    }

    #[test]
    fn messages_show_the_servers_message_and_what_to_do() {
        let err = ClientError::from_status(404, "import iothubgdr/abc not found".into());
        let text = err.to_string();
        assert!(text.contains("import iothubgdr/abc not found"));
        assert!(text.contains("imports list"));
        let err = ClientError::from_status(401, "token expired".into());
        assert!(err.to_string().contains("token expired"));
        assert!(err.to_string().contains("fresh token"));
    }

    #[test]
    fn final_states_map_to_exit_codes() {
        let op = |body: &str| -> Operation { serde_json::from_str(body).unwrap() };
        assert_eq!(
            exit_code_for_operation(&op(
                r#"{"identity":"i","done":true,"result":{"status":"STATUS_FINISHED"}}"#
            )),
            0
        );
        assert_eq!(
            exit_code_for_operation(&op(
                r#"{"identity":"i","done":true,"result":{"status":"STATUS_CANCELLED"}}"#
            )),
            7
        );
        assert_eq!(
            exit_code_for_operation(&op(
                r#"{"identity":"i","done":true,"error":{"error_message":"invalid secret provided"}}"#
            )),
            6
        );
    }
}
