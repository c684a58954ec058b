//! Pages through every twin of a hub and prints how fast: the "client alone" baseline of
//! the benchmark.
//!
//! cargo run --release -p iothub-client --example page_devices -- \
//!     --connection-string-file F --ca-file PEM --resolve HOST=ADDR:PORT [--page-size N]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::Parser;
use iothub_client::{ClientOptions, ConnectionString, HubClient, MAX_PAGE_SIZE};

#[derive(Parser)]
struct Args {
    /// File holding the service connection string (kept out of the process list).
    #[arg(long)]
    connection_string_file: PathBuf,
    /// Extra trusted root CA, PEM.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// HOST=ADDR:PORT, like curl --resolve; may repeat.
    #[arg(long)]
    resolve: Vec<String>,
    #[arg(long, default_value_t = MAX_PAGE_SIZE)]
    page_size: u32,
    #[arg(long, default_value = "SELECT * FROM devices")]
    query: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.connection_string_file)
        .with_context(|| format!("reading {}", args.connection_string_file.display()))?;
    let connection = ConnectionString::parse(text.trim())?;
    let extra_root_ca_pem = match &args.ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let resolve = args
        .resolve
        .iter()
        .map(|entry| {
            let (host, addr) = entry
                .split_once('=')
                .ok_or_else(|| anyhow!("--resolve wants HOST=ADDR:PORT, got {entry}"))?;
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("--resolve address {addr}"))?;
            Ok((host.to_owned(), addr))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = ClientOptions {
        extra_root_ca_pem,
        resolve,
        page_size: args.page_size,
        ..ClientOptions::default()
    };
    let client = HubClient::new(connection, options)?;

    let started = Instant::now();
    let mut pages = client.query_devices(&args.query);
    let mut devices: u64 = 0;
    while let Some(page) = pages.next_page().await? {
        devices += page.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 {
        devices as f64 / seconds
    } else {
        0.0
    };
    println!(
        "{}",
        serde_json::json!({ "devices": devices, "seconds": seconds, "devices_per_second": rate })
    );
    Ok(())
}
