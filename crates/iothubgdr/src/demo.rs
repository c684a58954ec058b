//! `iothubgdr demo`: the whole product on one machine in one command. An emulated IoT Hub
//! with a few thousand devices, the server on SQLite in a data folder, an app registration,
//! a location, and an import followed with a live progress bar; then a summary and the curl
//! commands to explore the same server, which stays up until Ctrl-C.
//!
//! It runs the same pieces as `serve` (store, engine, API) and the same client as
//! `iothubgdr import --wait`, in one process.
//!
//! `--export` shows the path for large hubs instead: a local Azurite (npm, see
//! scripts/azurite.sh) plays the customer's blob container, and the import runs an export
//! job on the hub and reads the devices from the blob it writes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use iothub_emulator::EmulatorConfig;
use iothubgdr_cli::{ApiClient, NewLocation, OperationState, ProgressMode, SecretString};
use tokio::net::TcpListener;

use crate::serve::{self, DatabaseArgs, HttpArgs, ImportArgs};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Devices the emulated hub starts with.
    #[arg(long, default_value_t = 5_000)]
    pub devices: u64,
    /// Where the server listens; when the port is taken, a free one is used instead.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder of the demo's SQLite database, bearer token file and emulator CA.
    #[arg(long, default_value = "./data/demo")]
    pub data_dir: PathBuf,
    /// Stop after the summary instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Import through the export path (an export job into a blob container of a local
    /// Azurite, which must be installed: `bash scripts/azurite.sh`) instead of twin queries.
    #[arg(long)]
    pub export: bool,
}

const HUB_NAME: &str = "demo-hub";

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;

    let azurite = if args.export {
        let binary = iothub_emulator::azurite::find_binary().context(
            "--export needs Azurite, the Azure Storage emulator: run `bash scripts/azurite.sh` (npm install azurite)",
        )?;
        eprintln!("Starting Azurite (a local Azure Blob Storage) for the export...");
        let azurite = iothub_emulator::azurite::RunningAzurite::start(&binary).await?;
        azurite.create_container("exports").await?;
        Some(azurite)
    } else {
        None
    };
    eprintln!(
        "Starting an emulated Azure IoT Hub `{HUB_NAME}` with {} devices...",
        args.devices
    );
    let hub = iothub_emulator::start(EmulatorConfig {
        hub_name: HUB_NAME.to_owned(),
        devices: args.devices,
        blob_endpoints: azurite
            .iter()
            .map(|a| (a.host().to_owned(), a.addr()))
            .collect(),
        blob_ca_pem: azurite.as_ref().map(|a| a.ca_cert_pem().to_owned()),
        ..EmulatorConfig::with_seed(1)
    })
    .await
    .context("cannot start the IoT Hub emulator")?;
    let ca_file = data_dir.join("emulator-ca.pem");
    std::fs::write(&ca_file, hub.ca_cert_pem())
        .with_context(|| format!("cannot write {}", ca_file.display()))?;

    // The server, exactly as `serve` builds it, pointed at the emulator under the hub's
    // real host name.
    let database = DatabaseArgs {
        data_dir: data_dir.clone(),
        database: None,
        database_pool_size: 10,
        database_statement_timeout: Duration::from_secs(30),
    };
    let store = database.open_store().await?;
    let registry = iothubgdr_api::new_registry();
    let import = ImportArgs {
        iothub_ca_file: Some(ca_file),
        iothub_resolve: vec![(hub.host_name(), hub.addr())],
        iothub_allowed_host: Vec::new(),
        iothub_idle_timeout: Duration::from_secs(300),
        iothub_page_size: iothub_client::MAX_PAGE_SIZE,
        iothub_queries_per_minute: None,
        iothub_readers: 8,
        iothub_retry_budget: Duration::from_secs(120),
        blob_ca_file: match &azurite {
            Some(azurite) => {
                let path = data_dir.join("azurite-ca.pem");
                std::fs::write(&path, azurite.ca_cert_pem())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Some(path)
            }
            None => None,
        },
        blob_resolve: azurite
            .iter()
            .map(|a| (a.host().to_owned(), a.addr()))
            .collect(),
        blob_allowed_host: Vec::new(),
        export_job_timeout: Duration::from_secs(3600),
        import_workers: 8,
        imports_per_tenant: 2,
        imports_queued_per_tenant: 10,
        imports_queued_total: 1000,
        import_lease: Duration::from_secs(30),
    };
    let engine = serve::start_engine(store.clone(), &import, &registry).await?;
    let http = HttpArgs::local(args.listen, Duration::from_secs(24 * 3600));
    let state = serve::build_state(store.clone(), &http, registry)
        .await?
        .with_engine(engine.clone());
    let listener = bind_or_any(args.listen).await?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let url = format!("http://{address}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(iothubgdr_api::serve(
        listener,
        iothubgdr_api::router(state),
        async move {
            let _ = stop_rx.await;
        },
    ));
    eprintln!("Server listening on {url} (database {})", database.url());

    // What a user does: an app registration, a token, a location, an import.
    let (app, client_secret) = crate::apps::create(
        store.as_ref(),
        "iothubgdr demo".to_owned(),
        "demo".to_owned(),
    )
    .await?;
    let client_secret = SecretString::new(client_secret.expose().to_owned());
    let token = ApiClient::token_from_client_credentials(&url, &app.client_id, &client_secret)
        .await
        .context("cannot get a token")?;
    let token_file = data_dir.join("bearer-token");
    write_private(
        &token_file,
        &format!("Authorization: Bearer {}\n", token.expose()),
    )?;
    // The console's sign-in: the client id is printed, the secret stays in a file only the
    // user can read, like the token.
    let secret_file = data_dir.join("client-secret");
    write_private(&secret_file, &format!("{}\n", client_secret.expose()))?;
    let client = ApiClient::new(&url, token).context("cannot build the API client")?;
    let location = client
        .create_location(&NewLocation {
            display_name: "Demo plant".to_owned(),
            description: "Where the demo hub's devices are registered".to_owned(),
            latitude: Some(52.2053),
            longitude: Some(0.1218),
            attributes: Default::default(),
        })
        .await
        .context("cannot create the demo location")?;

    let secret = SecretString::new(hub.iothub_connection_string());
    let container = azurite
        .as_ref()
        .map(|a| SecretString::new(a.container_sas_url("exports", "racwdl")));
    let started = Instant::now();
    let operation = client
        .start_import(
            "demo import",
            &secret,
            Some(&location.identity),
            container.as_ref(),
        )
        .await
        .context("cannot start the import")?;
    drop(secret);
    drop(container);
    let path = if args.export {
        "through an export job into Azurite"
    } else {
        "with twin queries (`--export` for the export path of large hubs)"
    };
    eprintln!(
        "Importing every device of {} as {}, {path}",
        hub.host_name(),
        operation.identity
    );
    let operation =
        iothubgdr_cli::wait_for_import(&client, &operation.identity, ProgressMode::Auto)
            .await
            .context("lost track of the import")?;
    let waited = started.elapsed();

    let ok = operation.state() == OperationState::Finished;
    if ok {
        let count = operation.number_assets_imported();
        let seconds = waited.as_secs_f64();
        println!(
            "\nDone: {count} devices of {} imported in {seconds:.2} s ({:.0} devices/s).",
            hub.host_name(),
            count as f64 / seconds.max(0.001)
        );
    }
    if ok {
        let filters = vec![(
            "attributes.arc_home_location_identity".to_owned(),
            location.identity.clone(),
        )];
        let assets = client
            .list_assets(&filters)
            .await
            .context("cannot list assets")?;
        println!(
            "\n{} assets are registered at {} ({}). A few of them:",
            assets.len(),
            location.display_name,
            location.identity
        );
        for asset in assets.iter().take(5) {
            println!(
                "  {}  {:<14} {:<16} {}",
                asset.identity,
                asset.attribute("arc_display_name"),
                asset.attribute("arc_display_type"),
                asset.attribute("iothub_status"),
            );
        }
    }
    print_console(&url, &app.client_id, &secret_file, &token_file);
    print_next_steps(&url, &token_file, &operation.identity, &location.identity);

    if ok && !args.exit {
        eprintln!("\nThe server keeps running at {url}; press Ctrl-C to stop it.");
        serve::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    if let Ok(Err(err)) = server.await {
        tracing::warn!(%err, "the demo server stopped with an error");
    }
    engine.shutdown().await;
    hub.shutdown().await;
    anyhow::ensure!(
        ok,
        "the demo import did not finish: {}",
        operation.error_message().unwrap_or("cancelled")
    );
    Ok(())
}

/// Binds `listen`, or any free port on the same address when it is taken (a second demo,
/// or another service on 8080).
async fn bind_or_any(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(listen).await {
        Ok(listener) => Ok(listener),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            let any = SocketAddr::new(listen.ip(), 0);
            eprintln!("{listen} is in use; using a free port instead");
            TcpListener::bind(any)
                .await
                .with_context(|| format!("cannot listen on {any}"))
        }
        Err(err) => Err(err).with_context(|| format!("cannot listen on {listen}")),
    }
}

/// Writes a file only its owner can read: it holds a bearer token.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_console(url: &str, client_id: &str, secret_file: &Path, token_file: &Path) {
    println!(
        r#"
Open the web console: {url}/console/
  sign in with client id {client_id}
  and the client secret in {secret} (cat it and paste it),
  or paste the token from {token}."#,
        secret = secret_file.display(),
        token = token_file.display(),
    );
}

fn print_next_steps(url: &str, token_file: &Path, import: &str, location: &str) {
    let uuid = import.trim_start_matches("iothubgdr/");
    let location_uuid = location.trim_start_matches("locations/");
    println!(
        r#"
Explore the same server with curl (the token file holds "Authorization: Bearer ..."):

  export URL={url}
  export BEARER_TOKEN_FILE={token}
  curl -s -H "@$BEARER_TOKEN_FILE" $URL/archivist/v2/iothubgdr
  curl -s -H "@$BEARER_TOKEN_FILE" $URL/archivist/v2/iothubgdr/{uuid}
  curl -s -H "@$BEARER_TOKEN_FILE" "$URL/archivist/v2/assets?page_size=3&attributes.arc_display_type=IoT%20Edge%20Device"
  curl -s -H "@$BEARER_TOKEN_FILE" $URL/archivist/v2/locations/{location_uuid}
  curl -s $URL/metrics | grep ^iothubgdr_

or with the command line client:

  IOTHUBGDR_URL=$URL cargo run --release -- imports list
  IOTHUBGDR_URL=$URL cargo run --release -- assets list --location {location}"#,
        token = token_file.display(),
    );
}
