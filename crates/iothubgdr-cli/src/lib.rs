//! Command-line client of the iothubgdr API, for any server: `iothubgdr import`,
//! `iothubgdr imports list|get|cancel|delete`, `iothubgdr locations create|list`,
//! `iothubgdr assets list`.
//!
//! # Connection
//! Every command takes the flags of [`ConnectionArgs`]: `--url` (`$IOTHUBGDR_URL`, default
//! `http://127.0.0.1:8080`), and a bearer token from `--token-file` / `$BEARER_TOKEN_FILE` (the
//! file holds `Authorization: Bearer <token>`, as `curl -H @file` sends it, or the bare
//! token), else from `--client-id` / `$IOTHUBGDR_CLIENT_ID` with the client secret read from
//! `--client-secret-file FILE` (`-`: standard input) or `$IOTHUBGDR_CLIENT_SECRET`, exchanged at
//! `POST /archivist/iam/v1/appidp/token`. The token file wins when both are set.
//!
//! # Secrets
//! No secret is ever taken from an argument (others can read the process list): the IoT Hub
//! connection string comes from `--secret-file FILE`, `--secret-file -` (standard input) or
//! `$IOTHUBGDR_IOTHUB_SECRET`. Secrets live in [`SecretString`] (redacted `Debug`/`Display`,
//! wiped on drop) and appear in no output or error message.
//!
//! # Waiting
//! `import --wait` polls the import every 300 ms and shows a progress bar on standard error
//! (plain lines when standard error is not a terminal): assets imported, rate, and a
//! percentage when the server gives `number_devices_total`. Ctrl-C on a terminal asks whether
//! to cancel the import (yes: cancel, exit 7; no: leave it running, exit 8); without a
//! terminal, Ctrl-C cancels it (exit 7). The lead's `iothubgdr demo` reuses
//! [`wait_for_import`].
//!
//! # Exit codes
//! See [`EXIT_CODES_HELP`] (also printed by `--help`) and [`exit_code`].

mod client;
mod commands;
mod connection;
mod error;
mod ids;
mod models;
mod output;
mod safe_text;
mod secret;
mod wait;

use std::process::ExitCode;

pub use client::ApiClient;
pub use commands::{
    AssetsCommand, ClientCommand, CreateLocationArgs, ImportArgs, ImportsCommand, LocationsCommand,
    OutputArgs, ProgressArg, IOTHUB_SECRET_ENV,
};
pub use connection::{
    parse_token, read_token_file, ConnectionArgs, Credentials, CLIENT_SECRET_ENV,
};
pub use error::{exit_code, exit_code_for_operation, ClientError};
pub use ids::{import_uuid, location_identity, InvalidId};
pub use models::{
    Asset, ImportStatus, Location, NewLocation, Operation, OperationError, OperationResult,
    OperationState,
};
pub use output::OutputFormat;
pub use secret::{read_secret, SecretReadError, SecretSource, SecretString};
pub use wait::{
    summary, wait_for_import, wait_for_import_with, InterruptMode, ProgressMode, WaitOptions,
};

/// The exit codes, as `--help` prints them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (with --wait: the import finished)
  1  other failure (an unexpected answer from the server)
  2  invalid input: a bad flag or value, or the server refused the request (400)
  3  the server cannot be reached or is unavailable (connection refused, timeout, 429, 5xx)
  4  no usable credentials: token file unreadable, or token / client secret refused (401, 403)
  5  not found (404)
  6  the import ended with an error
  7  the import was cancelled
  8  Ctrl-C stopped waiting and the import was left running

Secrets are never arguments: the IoT Hub connection string comes from --secret-file FILE,
--secret-file - (standard input) or IOTHUBGDR_IOTHUB_SECRET; the client secret from
--client-secret-file or IOTHUBGDR_CLIENT_SECRET; the token from --token-file or
BEARER_TOKEN_FILE.";

/// Runs one client command with the process's standard input and environment; errors are
/// printed to standard error and become the exit code.
pub async fn run(command: ClientCommand) -> ExitCode {
    let mut stdin = std::io::stdin();
    let mut io = commands::Io {
        stdin: &mut stdin,
        env: &secret::process_env,
    };
    match commands::execute(command, &mut io).await {
        Ok(outcome) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            if let Err(err) = stdout
                .write_all(safe_text::block(&outcome.stdout).as_bytes())
                .and_then(|()| stdout.flush())
            {
                // A closed pipe (`| head`) is not worth a message; anything else is.
                if err.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("error: cannot write the output: {err}");
                    return ExitCode::from(exit_code::OTHER);
                }
            }
            ExitCode::from(outcome.code)
        }
        Err(err) => {
            eprintln!("error: {}", safe_text::block(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}
