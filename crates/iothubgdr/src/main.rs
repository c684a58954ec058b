//! `iothubgdr`: the server, the operator's commands, the demo and the API client, in one binary.

mod apps;
mod demo;
mod import_args;
mod keys;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "iothubgdr",
    version,
    about = "Import every device of an Azure IoT Hub into an asset registry"
)]
struct Cli {
    #[command(flatten)]
    logging: LoggingArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct LoggingArgs {
    /// Log line format (logs go to stderr).
    #[arg(
        long,
        global = true,
        env = "IOTHUBGDR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Log filter such as `info` or `iothubgdr=debug,tower_http=info`; RUST_LOG is used when
    /// this is not given.
    #[arg(long, global = true, env = "IOTHUBGDR_LOG_LEVEL")]
    log_level: Option<String>,
}

/// Structured logs on stderr, so stdout stays for results (`listening on ...`, JSON).
fn init_logging(args: &LoggingArgs, default_level: &str) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match &args.log_level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|err| format!("invalid --log-level: {err}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|err| format!("cannot set up logging: {err}"))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the import engine.
    Serve(Box<serve::ServeArgs>),
    /// Manage app registrations (client id and secret) directly in the database.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Token signing keys: list, rotate, retire (in the database), or generate one for a
    /// keys file.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
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

/// Every file this process creates (the database and its `-wal`/`-shm`, token files, keys)
/// is readable by its user only, whatever umask it was started with.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask(2) only sets the process's file mode mask and cannot fail; it runs
    // before any thread is started.
    unsafe {
        libc::umask(0o077);
    }
}

fn main() -> ExitCode {
    private_files();
    let cli = Cli::parse();
    // The demo draws a progress bar and a summary: its server logs only what goes wrong
    // unless asked for more.
    let default_level = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    if let Err(err) = init_logging(&cli.logging, default_level) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => report(serve::run(*args).await),
            Command::Apps(command) => report(apps::run(command).await),
            Command::Keys(command) => report(keys::run(command).await),
            Command::Demo(args) => report(demo::run(args).await),
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "iothubgdr",
                    &mut std::io::stdout(),
                );
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
