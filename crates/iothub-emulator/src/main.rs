//! `iothub-emulator`: serves the IoT Hub service REST API over HTTPS for tests and demos.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use iothub_emulator::azurite::RunningAzurite;
use iothub_emulator::{EmulatorConfig, Faults, IdStyle, HUB_MAX_QUERY_PAGE_SIZE};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A local Azure IoT Hub service API emulator over HTTPS"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one (read it from --info-out).
    #[arg(long, env = "IOTHUB_EMULATOR_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The hub's name: it answers as <NAME>.azure-devices.net.
    #[arg(long, env = "IOTHUB_EMULATOR_HUB_NAME", default_value = "emulated-hub")]
    hub_name: String,
    /// Synthetic devices to seed (computed on demand; a million is fine).
    #[arg(long, env = "IOTHUB_EMULATOR_DEVICES", default_value_t = 1000)]
    devices: u64,
    /// Seed of the synthetic devices, policy keys and faults.
    #[arg(long, env = "IOTHUB_EMULATOR_SEED", default_value_t = 1)]
    seed: u64,
    /// Where to write the PEM of the CA that signed the server certificate.
    #[arg(long, env = "IOTHUB_EMULATOR_CA_CERT_OUT")]
    ca_cert_out: PathBuf,
    /// Where to write the address and connection strings as JSON for scripts.
    #[arg(long, env = "IOTHUB_EMULATOR_INFO_OUT")]
    info_out: Option<PathBuf>,
    /// Largest page a twin query returns (the real hub's is 100).
    #[arg(long, env = "IOTHUB_EMULATOR_MAX_PAGE_SIZE", default_value_t = HUB_MAX_QUERY_PAGE_SIZE)]
    max_page_size: u32,
    /// Answer every k-th query 429 with Retry-After.
    #[arg(long, env = "IOTHUB_EMULATOR_THROTTLE_EVERY")]
    throttle_every: Option<u32>,
    /// Retry-After seconds of injected 429 and 503 answers.
    #[arg(long, env = "IOTHUB_EMULATOR_RETRY_AFTER_SECS", default_value_t = 1)]
    retry_after_secs: u64,
    /// Query quota per minute, like a hub unit's (S1/S2: 20, S3: 1000).
    #[arg(long, env = "IOTHUB_EMULATOR_QUERIES_PER_MINUTE")]
    queries_per_minute: Option<u32>,
    /// The window of --queries-per-minute in seconds (60, the hub's; smaller for tests).
    #[arg(long, env = "IOTHUB_EMULATOR_QUOTA_WINDOW_SECS", default_value_t = 60)]
    quota_window_secs: u64,
    /// How seeded device ids look: `sequential` (device-000042) or `every-first-character`
    /// (the first character walks through every character a device id may start with).
    #[arg(long, env = "IOTHUB_EMULATOR_IDS", default_value = "sequential", value_parser = parse_id_style)]
    ids: IdStyle,
    /// Fraction of requests answered 500/503.
    #[arg(long, env = "IOTHUB_EMULATOR_SERVER_ERROR_RATE", default_value_t = 0.0)]
    server_error_rate: f64,
    /// Fraction of requests whose connection is dropped without an answer.
    #[arg(long, env = "IOTHUB_EMULATOR_DROP_RATE", default_value_t = 0.0)]
    drop_rate: f64,
    /// Fraction of requests that are carried out but whose answer is lost on the way back.
    #[arg(long, env = "IOTHUB_EMULATOR_LOST_ANSWER_RATE", default_value_t = 0.0)]
    lost_answer_rate: f64,
    /// Milliseconds added to every request.
    #[arg(long, env = "IOTHUB_EMULATOR_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// A page-size cap below --max-page-size.
    #[arg(long, env = "IOTHUB_EMULATOR_PAGE_SIZE_CAP")]
    page_size_cap: Option<u32>,
    /// Start a local Azurite (npm `azurite`, see scripts/azurite.sh) on a loopback port for
    /// export jobs, create the container `exports`, and print (and write to --info-out) its
    /// SAS URL and what a server needs to reach it (--blob-resolve, --blob-ca-file).
    #[arg(long, env = "IOTHUB_EMULATOR_WITH_AZURITE")]
    with_azurite: bool,
    /// A blob host export jobs may write to, pinned to a loopback address (HOST=ADDR:PORT);
    /// repeatable. Any other host is refused.
    #[arg(long, value_name = "HOST=ADDR:PORT", value_parser = parse_endpoint)]
    blob_endpoint: Vec<(String, SocketAddr)>,
    /// PEM of the CA that signed the blob endpoints' certificates.
    #[arg(long, value_name = "PEM")]
    blob_ca_file: Option<PathBuf>,
    /// Export jobs take at least this many milliseconds.
    #[arg(long, env = "IOTHUB_EMULATOR_EXPORT_DURATION_MS", default_value_t = 0)]
    export_duration_ms: u64,
    /// Export jobs end failed.
    #[arg(long)]
    export_fails: bool,
    /// Creating a job answers JobQuotaExceeded, as when another job runs.
    #[arg(long)]
    job_already_running: bool,
}

fn parse_endpoint(text: &str) -> Result<(String, SocketAddr), String> {
    let (host, addr) = text
        .split_once('=')
        .ok_or_else(|| "expected HOST=ADDR:PORT".to_owned())?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| "expected HOST=ADDR:PORT".to_owned())?;
    Ok((host.trim().to_ascii_lowercase(), addr))
}

fn parse_id_style(text: &str) -> Result<IdStyle, String> {
    match text {
        "sequential" => Ok(IdStyle::Sequential),
        "every-first-character" => Ok(IdStyle::EveryFirstCharacter),
        _ => Err("expected sequential or every-first-character".to_owned()),
    }
}

fn rate(name: &str, value: f64) -> anyhow::Result<f64> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        anyhow::bail!("--{name} must be between 0 and 1")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let azurite = if args.with_azurite {
        let binary = iothub_emulator::azurite::find_binary()
            .context("--with-azurite: Azurite is not installed (bash scripts/azurite.sh)")?;
        let azurite = RunningAzurite::start(&binary).await?;
        azurite.create_container("exports").await?;
        Some(azurite)
    } else {
        None
    };
    let mut blob_endpoints = args.blob_endpoint.clone();
    let mut blob_ca_pem = match &args.blob_ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    if let Some(azurite) = &azurite {
        blob_endpoints.push((azurite.host().to_owned(), azurite.addr()));
        blob_ca_pem = Some(azurite.ca_cert_pem().to_owned());
    }
    let config = EmulatorConfig {
        listen: args.listen,
        hub_name: args.hub_name,
        devices: args.devices,
        max_page_size: args.max_page_size,
        id_style: args.ids,
        faults: Faults {
            throttle_every: args.throttle_every,
            retry_after: Duration::from_secs(args.retry_after_secs),
            queries_per_minute: args.queries_per_minute,
            quota_window: Duration::from_secs(args.quota_window_secs.max(1)),
            server_error_rate: rate("server-error-rate", args.server_error_rate)?,
            drop_rate: rate("drop-rate", args.drop_rate)?,
            lost_answer_rate: rate("lost-answer-rate", args.lost_answer_rate)?,
            latency: Duration::from_millis(args.latency_ms),
            page_size_cap: args.page_size_cap,
            export_duration: Duration::from_millis(args.export_duration_ms),
            export_fails: args.export_fails,
            job_already_running: args.job_already_running,
            ..Faults::default()
        },
        blob_endpoints,
        blob_ca_pem,
        ..EmulatorConfig::with_seed(args.seed)
    };
    let emulator = iothub_emulator::start(config).await?;
    std::fs::write(&args.ca_cert_out, emulator.ca_cert_pem())
        .with_context(|| format!("writing {}", args.ca_cert_out.display()))?;
    let ca_cert_path =
        std::fs::canonicalize(&args.ca_cert_out).unwrap_or_else(|_| args.ca_cert_out.clone());
    // Printing the connection strings is this binary's purpose: they are test fixtures.
    println!(
        "iothub-emulator listening on {} as {}",
        emulator.addr(),
        emulator.host_name()
    );
    println!(
        "IoT Hub connection string:   {}",
        emulator.iothub_connection_string()
    );
    println!(
        "Event Hub connection string: {}",
        emulator.eventhub_connection_string()
    );
    println!("CA certificate: {}", ca_cert_path.display());
    let mut blob = serde_json::Map::new();
    if let Some(azurite) = &azurite {
        let ca_path = args.ca_cert_out.with_extension("azurite.pem");
        std::fs::write(&ca_path, azurite.ca_cert_pem())
            .with_context(|| format!("writing {}", ca_path.display()))?;
        let ca_path = std::fs::canonicalize(&ca_path).unwrap_or(ca_path);
        let sas_url = azurite.container_sas_url("exports", "racwdl");
        println!(
            "Azurite blob service: {} as {}",
            azurite.addr(),
            azurite.host()
        );
        println!("Blob container SAS URL (output_blob_container_uri): {sas_url}");
        println!(
            "Server options: --blob-resolve {} --blob-ca-file {}",
            azurite.pin(),
            ca_path.display()
        );
        blob.insert("output_blob_container_uri".into(), sas_url.into());
        blob.insert("blob_resolve".into(), azurite.pin().into());
        blob.insert(
            "blob_ca_cert_path".into(),
            ca_path.display().to_string().into(),
        );
    }
    if let Some(info_out) = &args.info_out {
        let per_policy: serde_json::Map<String, serde_json::Value> = emulator
            .policies()
            .iter()
            .filter_map(|p| {
                emulator
                    .connection_string_for(&p.name)
                    .map(|cs| (p.name.clone(), serde_json::Value::from(cs)))
            })
            .collect();
        let info = serde_json::json!({
            "hostname": emulator.host_name(),
            "address": emulator.addr().to_string(),
            "iothub_connection_string": emulator.iothub_connection_string(),
            "eventhub_connection_string": emulator.eventhub_connection_string(),
            "ca_cert_path": ca_cert_path.display().to_string(),
            "connection_strings": per_policy,
            "blob": blob,
        });
        // Written to a temporary name and renamed, so a script polling for the file never
        // reads half of it.
        let partial = info_out.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(&info)?)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, info_out)
            .with_context(|| format!("writing {}", info_out.display()))?;
    }
    wait_for_signal().await?;
    emulator.shutdown().await;
    drop(azurite);
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
