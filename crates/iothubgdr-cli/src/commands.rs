//! The client commands: their flags (clap) and what each one does.

use std::io::Read;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::client::ApiClient;
use crate::connection::ConnectionArgs;
use crate::error::{exit_code, exit_code_for_operation, ClientError};
use crate::ids;
use crate::models::{NewLocation, OperationState};
use crate::output::{self, OutputFormat};
use crate::secret::{read_secret, SecretSource, SecretString};
use crate::wait::{wait_for_import_with, InterruptMode, ProgressMode, WaitOptions};
use crate::EXIT_CODES_HELP;

/// Environment variable holding the IoT Hub connection string when --secret-file is not given.
pub const IOTHUB_SECRET_ENV: &str = "IOTHUBGDR_IOTHUB_SECRET";
/// Environment variable holding the blob container SAS URL (the export path) when
/// --blob-container-sas-file is not given.
pub const BLOB_CONTAINER_SAS_ENV: &str = "IOTHUBGDR_BLOB_CONTAINER_SAS";

/// The client commands, flattened into the `iothubgdr` binary's commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Start an import of every device of an Azure IoT Hub (optionally wait for it).
    #[command(after_long_help = EXIT_CODES_HELP)]
    Import(ImportArgs),
    /// List, show, cancel and delete imports.
    #[command(subcommand)]
    Imports(ImportsCommand),
    /// Create and list locations.
    #[command(subcommand)]
    Locations(LocationsCommand),
    /// List assets (the imported devices).
    #[command(subcommand)]
    Assets(AssetsCommand),
}

/// Where a command prints to.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// `table`: aligned columns for people; `json`: the API's objects (one array for lists).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressArg {
    /// A live bar when standard error is a terminal, else plain lines.
    #[default]
    Auto,
    /// Always the live bar.
    Bar,
    /// Plain lines, at most every 10 seconds and on each change of state.
    Lines,
    /// No progress, only the final line.
    None,
}

impl From<ProgressArg> for ProgressMode {
    fn from(value: ProgressArg) -> Self {
        match value {
            ProgressArg::Auto => Self::Auto,
            ProgressArg::Bar => Self::Bar,
            ProgressArg::Lines => Self::Lines,
            ProgressArg::None => Self::Hidden,
        }
    }
}

/// `iothubgdr import`.
///
/// The IoT Hub connection string (`HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`
/// or the Event Hub-compatible `Endpoint=sb://...;EntityPath=<hub>` form) is read from
/// --secret-file FILE, from standard input with `--secret-file -`, or from
/// $IOTHUBGDR_IOTHUB_SECRET; never from an argument, which others can read in the process
/// list. Its policy needs the registry read right (`iothubowner` or `registryRead`).
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// A name for this import.
    #[arg(long, value_name = "NAME")]
    pub display_name: String,

    /// File holding the IoT Hub connection string (`-`: standard input). Without it, the
    /// connection string comes from $IOTHUBGDR_IOTHUB_SECRET.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Location of the imported assets: `locations/<uuid>` or `<uuid>`.
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,

    /// File holding the SAS URL of a blob container you own (`-`: standard input), for
    /// large hubs: the import then runs an export job on the hub, which writes every device
    /// into the container, instead of paging twin queries under the hub's query quota. The
    /// SAS needs read, write and list. Without it, $IOTHUBGDR_BLOB_CONTAINER_SAS if set.
    #[arg(long, value_name = "FILE")]
    pub blob_container_sas_file: Option<PathBuf>,

    /// Follow the import to its end with a progress bar; the exit code tells how it ended.
    /// Ctrl-C asks (on a terminal) whether to cancel the import; without a terminal Ctrl-C
    /// cancels it.
    #[arg(long)]
    pub wait: bool,

    /// How --wait shows progress (on standard error).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImportsCommand {
    /// List every import, newest first.
    #[command(after_long_help = EXIT_CODES_HELP)]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Show one import.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Get {
        /// `iothubgdr/<uuid>` or `<uuid>`.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Cancel an import (assets written so far stay); a finished one is left as it is.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Cancel {
        /// `iothubgdr/<uuid>` or `<uuid>`.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Delete an import from the list. A running import keeps running: cancel it first.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Delete {
        /// `iothubgdr/<uuid>` or `<uuid>`.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum LocationsCommand {
    /// Create a location and print it.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Create(CreateLocationArgs),
    /// List every location.
    #[command(after_long_help = EXIT_CODES_HELP)]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateLocationArgs {
    #[arg(long, value_name = "NAME")]
    pub display_name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    #[arg(long, allow_negative_numbers = true)]
    pub latitude: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub longitude: Option<f64>,
    /// An attribute as NAME=VALUE (repeat the flag for several).
    #[arg(long = "attribute", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub attributes: Vec<(String, String)>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AssetsCommand {
    /// List assets, all or those matching every filter.
    #[command(after_long_help = EXIT_CODES_HELP)]
    List {
        /// Only the assets of this location (`locations/<uuid>` or `<uuid>`); the same as
        /// --filter attributes.arc_home_location_identity=locations/<uuid>.
        #[arg(long, value_name = "ID")]
        location: Option<String>,
        /// Only assets whose attribute equals the value: `attributes.NAME=VALUE` (or
        /// `NAME=VALUE`). Repeat for several; they combine with AND.
        #[arg(long = "filter", value_name = "attributes.NAME=VALUE", value_parser = parse_filter)]
        filters: Vec<(String, String)>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// `attributes.NAME=VALUE` as the query pair the API takes; a bare `NAME=VALUE` gets the
/// `attributes.` prefix.
fn parse_filter(text: &str) -> Result<(String, String), String> {
    let (key, value) =
        parse_key_value(text).map_err(|_| format!("`{text}` is not attributes.NAME=VALUE"))?;
    let key = if key.starts_with("attributes.") {
        key
    } else {
        format!("attributes.{key}")
    };
    if key == "attributes." {
        return Err(format!("`{text}` names no attribute"));
    }
    Ok((key, value))
}

/// What a command printed and how the process should exit.
pub(crate) struct Outcome {
    pub stdout: String,
    pub code: u8,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Self {
            stdout,
            code: exit_code::SUCCESS,
        }
    }
}

/// The process's standard input and environment, passed in so tests can supply their own.
pub(crate) struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

fn connection_of(command: &ClientCommand) -> &ConnectionArgs {
    match command {
        ClientCommand::Import(args) => &args.connection,
        ClientCommand::Imports(
            ImportsCommand::List { connection, .. }
            | ImportsCommand::Get { connection, .. }
            | ImportsCommand::Cancel { connection, .. }
            | ImportsCommand::Delete { connection, .. },
        ) => connection,
        ClientCommand::Locations(LocationsCommand::Create(args)) => &args.connection,
        ClientCommand::Locations(LocationsCommand::List { connection, .. }) => connection,
        ClientCommand::Assets(AssetsCommand::List { connection, .. }) => connection,
    }
}

/// Reads the blob container SAS URL when one is given (flag or environment variable).
fn container_sas(args: &ImportArgs, io: &mut Io<'_>) -> Result<Option<SecretString>, ClientError> {
    let source = match &args.blob_container_sas_file {
        Some(path) => SecretSource::from_flag(Some(path), BLOB_CONTAINER_SAS_ENV),
        None if (io.env)(BLOB_CONTAINER_SAS_ENV).is_some() => {
            SecretSource::Env(BLOB_CONTAINER_SAS_ENV)
        }
        None => return Ok(None),
    };
    let secret_on_stdin = args.secret_file.as_deref() == Some(std::path::Path::new("-"));
    if source == SecretSource::Stdin && (secret_on_stdin || args.connection.reads_stdin()) {
        return Err(ClientError::InvalidInput(
            "--blob-container-sas-file - cannot share standard input with another secret; \
             give one of them as a file or through its environment variable"
                .to_owned(),
        ));
    }
    read_secret(
        &source,
        "blob container SAS URL",
        "give --blob-container-sas-file FILE (`-` for standard input) or set IOTHUBGDR_BLOB_CONTAINER_SAS",
        io.stdin,
        io.env,
    )
    .map(Some)
    .map_err(|e| ClientError::InvalidInput(e.to_string()))
}

/// Reads the import's connection string, after checking nothing else wants standard input.
fn import_secret(args: &ImportArgs, io: &mut Io<'_>) -> Result<SecretString, ClientError> {
    let source = SecretSource::from_flag(args.secret_file.as_deref(), IOTHUB_SECRET_ENV);
    if source == SecretSource::Stdin && args.connection.reads_stdin() {
        return Err(ClientError::InvalidInput(
            "--secret-file - and --client-secret-file - cannot both read standard input; \
             give one of them as a file or through its environment variable"
                .to_owned(),
        ));
    }
    read_secret(
        &source,
        "IoT Hub connection string",
        "give --secret-file FILE (`-` for standard input) or set IOTHUBGDR_IOTHUB_SECRET",
        io.stdin,
        io.env,
    )
    .map_err(|e| ClientError::InvalidInput(e.to_string()))
}

pub(crate) async fn execute(
    command: ClientCommand,
    io: &mut Io<'_>,
) -> Result<Outcome, ClientError> {
    // Inputs are checked and the import's secret read before any request, so bad input
    // changes nothing on the server.
    let import_secret = match &command {
        ClientCommand::Import(args) => {
            if let Some(location) = &args.location {
                ids::location_identity(location)
                    .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
            }
            let container = container_sas(args, io)?;
            Some((import_secret(args, io)?, container))
        }
        _ => None,
    };
    let client = connection_of(&command).connect(io.stdin, io.env).await?;
    match command {
        ClientCommand::Import(args) => {
            let (secret, container) = import_secret.ok_or_else(|| {
                ClientError::Local("internal: the connection string was not read".to_owned())
            })?;
            start_import(&client, &args, &secret, container.as_ref()).await
        }
        ClientCommand::Imports(command) => imports(&client, command).await,
        ClientCommand::Locations(command) => locations(&client, command).await,
        ClientCommand::Assets(AssetsCommand::List {
            location,
            mut filters,
            output,
            ..
        }) => {
            if let Some(location) = location {
                let identity = ids::location_identity(&location)
                    .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
                filters.push(("attributes.arc_home_location_identity".to_owned(), identity));
            }
            let assets = client.list_assets(&filters).await?;
            Ok(Outcome::ok(match output.output {
                OutputFormat::Table => output::assets_table(&assets),
                OutputFormat::Json => output::to_json(&assets) + "\n",
            }))
        }
    }
}

async fn start_import(
    client: &ApiClient,
    args: &ImportArgs,
    secret: &SecretString,
    container: Option<&SecretString>,
) -> Result<Outcome, ClientError> {
    let started = client
        .start_import(
            &args.display_name,
            secret,
            args.location.as_deref(),
            container,
        )
        .await?;
    let operation = if args.wait && started.state() != OperationState::Failed {
        eprintln!(
            "started import {}",
            crate::safe_text::value(&started.identity)
        );
        let options = WaitOptions {
            progress: args.progress.into(),
            interrupt: InterruptMode::AskToCancel,
            ..WaitOptions::default()
        };
        wait_for_import_with(client, &started.identity, &options).await?
    } else {
        started
    };
    let code = if args.wait || operation.state() == OperationState::Failed {
        exit_code_for_operation(&operation)
    } else {
        exit_code::SUCCESS
    };
    if operation.state() == OperationState::Failed && !args.wait {
        eprintln!(
            "import {} failed: {}",
            crate::safe_text::value(&operation.identity),
            crate::safe_text::value(operation.error_message().unwrap_or("no error message"))
        );
    }
    let stdout = match args.output.output {
        OutputFormat::Table => output::import_fields(&operation),
        OutputFormat::Json => output::to_json(&operation) + "\n",
    };
    Ok(Outcome { stdout, code })
}

async fn imports(client: &ApiClient, command: ImportsCommand) -> Result<Outcome, ClientError> {
    let (operation, output) = match command {
        ImportsCommand::List { output, .. } => {
            let operations = client.list_imports().await?;
            return Ok(Outcome::ok(match output.output {
                OutputFormat::Table => output::imports_table(&operations),
                OutputFormat::Json => output::to_json(&operations) + "\n",
            }));
        }
        ImportsCommand::Delete { id, output, .. } => {
            client.delete_import(&id).await?;
            return Ok(Outcome::ok(match output.output {
                OutputFormat::Table => format!(
                    "deleted import iothubgdr/{}\n",
                    ids::import_uuid(&id).map_err(|e| ClientError::InvalidInput(e.to_string()))?
                ),
                OutputFormat::Json => "{}\n".to_owned(),
            }));
        }
        ImportsCommand::Get { id, output, .. } => (client.get_import(&id).await?, output),
        ImportsCommand::Cancel { id, output, .. } => (client.cancel_import(&id).await?, output),
    };
    Ok(Outcome::ok(match output.output {
        OutputFormat::Table => output::import_fields(&operation),
        OutputFormat::Json => output::to_json(&operation) + "\n",
    }))
}

async fn locations(client: &ApiClient, command: LocationsCommand) -> Result<Outcome, ClientError> {
    match command {
        LocationsCommand::Create(args) => {
            let attributes: Map<String, Value> = args
                .attributes
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let location = client
                .create_location(&NewLocation {
                    display_name: args.display_name,
                    description: args.description,
                    latitude: args.latitude,
                    longitude: args.longitude,
                    attributes,
                })
                .await?;
            Ok(Outcome::ok(match args.output.output {
                OutputFormat::Table => output::location_fields(&location),
                OutputFormat::Json => output::to_json(&location) + "\n",
            }))
        }
        LocationsCommand::List { output, .. } => {
            let locations = client.list_locations().await?;
            Ok(Outcome::ok(match output.output {
                OutputFormat::Table => output::locations_table(&locations),
                OutputFormat::Json => output::to_json(&locations) + "\n",
            }))
        }
    }
}

#[cfg(test)]
mod tests;
