//! Measures how fast one keep-alive HTTPS client pages through the seeded twins.
//! `cargo run -p iothub-emulator --example page_throughput -- [DEVICES] [PAGE_SIZE]`

use std::time::Instant;

use base64::Engine;
use hmac::{Hmac, Mac};
use iothub_emulator::EmulatorConfig;
use sha2::Sha256;

fn token(host: &str, key_b64: &str, policy: &str) -> anyhow::Result<String> {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let key = base64::engine::general_purpose::STANDARD.decode(key_b64)?;
    let resource: String = url::form_urlencoded::byte_serialize(host.as_bytes()).collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(format!("{resource}\n{expiry}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    Ok(format!(
        "SharedAccessSignature sr={resource}&sig={sig}&se={expiry}&skn={policy}"
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let devices: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let page_size: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let emulator = iothub_emulator::start(EmulatorConfig {
        devices,
        ..EmulatorConfig::with_seed(1)
    })
    .await?;
    let owner = emulator
        .policies()
        .into_iter()
        .find(|p| p.name == "iothubowner")
        .ok_or_else(|| anyhow::anyhow!("no iothubowner policy"))?;
    let authorization = token(&emulator.host_name(), &owner.primary_key, "iothubowner")?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            emulator.ca_cert_pem().as_bytes(),
        )?)
        .resolve(&emulator.host_name(), emulator.addr())
        .build()?;
    let url = format!(
        "https://{}:{}/devices/query?api-version=2021-04-12",
        emulator.host_name(),
        emulator.addr().port()
    );
    let started = Instant::now();
    let (mut twins, mut pages, mut bytes) = (0usize, 0usize, 0usize);
    let mut continuation: Option<String> = None;
    loop {
        let mut request = client
            .post(&url)
            .header("authorization", &authorization)
            .header("x-ms-max-item-count", page_size.to_string())
            .json(&serde_json::json!({"query": "SELECT * FROM devices"}));
        if let Some(token) = &continuation {
            request = request.header("x-ms-continuation", token);
        }
        let response = request.send().await?.error_for_status()?;
        continuation = response
            .headers()
            .get("x-ms-continuation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await?;
        bytes += body.len();
        let page: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        twins += page.len();
        pages += 1;
        if continuation.is_none() {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{twins} twins in {pages} pages ({:.1} MB) in {seconds:.2} s: {:.0} twins/s",
        bytes as f64 / 1e6,
        twins as f64 / seconds
    );
    emulator.shutdown().await;
    Ok(())
}
