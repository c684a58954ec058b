//! The `iothub-emulator` binary: flags from the environment, the info file, clean shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[tokio::test]
async fn the_binary_writes_its_info_file_and_serves_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let info_path = dir.path().join("info.json");
    let ca_path = dir.path().join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .args(["--listen", "127.0.0.1:0", "--ca-cert-out"])
        .arg(&ca_path)
        .arg("--info-out")
        .arg(&info_path)
        .env("IOTHUB_EMULATOR_HUB_NAME", "bin-hub")
        .env("IOTHUB_EMULATOR_DEVICES", "321")
        .env("IOTHUB_EMULATOR_SEED", "9")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut info: Option<Value> = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&info_path) {
            info = serde_json::from_str(&text).ok();
            if info.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = info.expect("the emulator wrote its info file");
    assert_eq!(info["hostname"], "bin-hub.azure-devices.net");
    let iothub = info["iothub_connection_string"].as_str().unwrap();
    assert!(iothub.starts_with(
        "HostName=bin-hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey="
    ));
    let eventhub = info["eventhub_connection_string"].as_str().unwrap();
    assert!(eventhub.starts_with("Endpoint=sb://iothub-ns-bin-hub-"));
    assert!(eventhub.ends_with(";EntityPath=bin-hub"));
    assert_eq!(
        info["ca_cert_path"].as_str().unwrap(),
        std::fs::canonicalize(&ca_path).unwrap().to_str().unwrap()
    );

    let key = iothub.split("SharedAccessKey=").nth(1).unwrap();
    let addr: std::net::SocketAddr = info["address"].as_str().unwrap().parse().unwrap();
    let pem = std::fs::read(&ca_path).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("bin-hub.azure-devices.net", addr)
        .build()
        .unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = {
        use base64::Engine;
        use hmac::Mac;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("bin-hub.azure-devices.net\n{expiry}").as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
        format!("SharedAccessSignature sr=bin-hub.azure-devices.net&sig={sig}&se={expiry}&skn=iothubowner")
    };
    let count: Value = client
        .post(format!(
            "https://bin-hub.azure-devices.net:{}/devices/query?api-version=2021-04-12",
            addr.port()
        ))
        .header("authorization", token)
        .json(&serde_json::json!({"query": "SELECT COUNT() AS numberOfDevices FROM devices"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count, serde_json::json!([{"numberOfDevices": 321}]));

    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("listening on 127.0.0.1:"), "{out}");
}
