//! `iothubgdr demo` runs end to end on a fresh data folder: emulator, server, app, location,
//! import, summary, and a token file only its owner can read; no hub key in its output.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn demo_imports_every_device_and_prints_how_to_explore() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("demo");
    let output = Command::new(common::binary())
        .args([
            "demo",
            "--devices",
            "300",
            "--listen",
            "127.0.0.1:0",
            "--exit",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("RUST_LOG")
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("Done: 300 devices of demo-hub.azure-devices.net imported"),
        "{stdout}"
    );
    assert!(
        stdout.contains("300 assets are registered at Demo plant"),
        "{stdout}"
    );
    assert!(
        stdout.contains("curl -s -H \"@$BEARER_TOKEN_FILE\""),
        "{stdout}"
    );
    let token_file = data.join("bearer-token");
    let token = std::fs::read_to_string(&token_file).expect("token file");
    assert!(token.starts_with("Authorization: Bearer "));
    let mode = std::fs::metadata(&token_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the token file is readable by others");
    let bearer = token.trim().trim_start_matches("Authorization: Bearer ");
    // The demo hub's keys come from seed 1: none of them may show, nor the token.
    for policy in iothub_emulator::AccessPolicy::defaults(1) {
        assert!(!stdout.contains(&policy.primary_key) && !stderr.contains(&policy.primary_key));
    }
    assert!(!stdout.contains(bearer) && !stderr.contains(bearer));
    assert!(data.join("iothubgdr.db").exists());

    // The console: its address, and a sign-in whose secret stays in a private file.
    assert!(stdout.contains("/console/"), "{stdout}");
    let client_id = stdout
        .split("sign in with client id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the console's client id");
    let secret_file = data.join("client-secret");
    let secret = std::fs::read_to_string(&secret_file).expect("client secret file");
    let mode = std::fs::metadata(&secret_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the client secret file is readable by others"
    );
    assert!(!secret.trim().is_empty());
    assert!(!stdout.contains(secret.trim()) && !stderr.contains(secret.trim()));
    let database = format!("sqlite://{}", data.join("iothubgdr.db").display());
    let apps = Command::new(common::binary())
        .args(["apps", "list", "--database", &database])
        .output()
        .expect("apps list");
    assert!(
        String::from_utf8_lossy(&apps.stdout).contains(client_id),
        "the printed client id is a registered app"
    );
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(common::binary())
            .args(["completions", shell])
            .output()
            .expect("run completions");
        assert!(output.status.success());
        let script = String::from_utf8_lossy(&output.stdout);
        for command in [
            "serve",
            "apps",
            "demo",
            "import",
            "imports",
            "locations",
            "assets",
        ] {
            assert!(
                script.contains(command),
                "{shell} completions lack {command}"
            );
        }
    }
}
