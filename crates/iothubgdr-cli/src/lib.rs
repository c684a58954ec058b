//! Command-line client of the iothubgdr API (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Placeholder until the client commands land.
    #[command(hide = true)]
    Placeholder,
}

pub async fn run(command: ClientCommand) -> ExitCode {
    let _ = command;
    ExitCode::FAILURE
}
