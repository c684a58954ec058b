//! `iothubgdr`: the server, the operator's commands, the demo and the API client, in one binary.

mod apps;
mod demo;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "iothubgdr", version, about = "Import every device of an Azure IoT Hub into an asset registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the import engine.
    Serve(serve::ServeArgs),
    /// Manage app registrations (client id and secret) directly in the database.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Start an emulated IoT Hub and the server, and import every device end to end.
    Demo(demo::DemoArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(iothubgdr_cli::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => report(serve::run(args).await),
            Command::Apps(command) => report(apps::run(command).await),
            Command::Demo(args) => report(demo::run(args).await),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "iothubgdr", &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            Command::Client(command) => iothubgdr_cli::run(command).await,
        }
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
