//! The command-line client (`iothubgdr import|imports|locations|assets`) against the real
//! server binary and the real IoT Hub emulator: exit codes, counts, and no secret in any
//! output, whichever way the secret was given.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::TestServer;
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};
use serde_json::Value;

/// Exit codes the client documents (iothubgdr_cli::exit_code).
const EXIT_INVALID_INPUT: i32 = 2;
const EXIT_UNREACHABLE: i32 = 3;
const EXIT_AUTH: i32 = 4;
const EXIT_NOT_FOUND: i32 = 5;
const EXIT_IMPORT_FAILED: i32 = 6;
const EXIT_IMPORT_CANCELLED: i32 = 7;

/// Client environment variables a developer's shell may have set; every run starts without.
const CLIENT_ENV: &[&str] = &[
    "IOTHUBGDR_URL",
    "BEARER_TOKEN_FILE",
    "IOTHUBGDR_CLIENT_ID",
    "IOTHUBGDR_CLIENT_SECRET",
    "IOTHUBGDR_IOTHUB_SECRET",
];

/// An emulated hub on its own runtime, and the server pointed at it.
struct Setup {
    // Field order matters for drop: the server stops before the emulator's runtime.
    server: TestServer,
    /// `None` for tests of the core server alone (no import).
    emulator: Option<RunningEmulator>,
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    token_file: PathBuf,
    token: String,
    client_id: String,
    client_secret: String,
}

impl Setup {
    fn new(devices: u64) -> Self {
        Self::with_faults(devices, Faults::default())
    }

    fn with_faults(devices: u64, faults: Faults) -> Self {
        Self::build(Some((devices, faults)))
    }

    /// The server alone, for commands that need no hub.
    fn core() -> Self {
        Self::build(None)
    }

    fn build(hub: Option<(u64, Faults)>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let (emulator, server) = match hub {
            Some((devices, faults)) => {
                let emulator = runtime
                    .block_on(iothub_emulator::start(EmulatorConfig {
                        devices,
                        faults,
                        ..EmulatorConfig::default()
                    }))
                    .expect("start the emulator");
                let ca_file = dir.path().join("emulator-ca.pem");
                std::fs::write(&ca_file, emulator.ca_cert_pem()).expect("write CA");
                let resolve = format!("{}={}", emulator.host_name(), emulator.addr());
                let server = TestServer::start_with(&[
                    "--iothub-ca-file",
                    ca_file.to_str().expect("utf-8 path"),
                    "--iothub-resolve",
                    &resolve,
                ]);
                (Some(emulator), server)
            }
            None => (None, TestServer::start()),
        };
        let (client_id, client_secret) = server.create_app("cli-tests");
        let token = runtime.block_on(server.token(&client_id, &client_secret));
        let token_file = dir.path().join("bearer-token");
        std::fs::write(&token_file, format!("Authorization: Bearer {token}\n"))
            .expect("write token file");
        Self {
            server,
            emulator,
            _runtime: runtime,
            dir,
            token_file,
            token,
            client_id,
            client_secret,
        }
    }

    /// `iothubgdr <args>` with the server's URL and nothing from the caller's environment.
    fn bare(&self, args: &[&str]) -> Command {
        let mut command = Command::new(common::binary());
        for name in CLIENT_ENV {
            command.env_remove(name);
        }
        command
            .args(args)
            .args(["--url", self.server.url()])
            .timeout(Duration::from_secs(120));
        command
    }

    /// `iothubgdr <args>` with the server's URL and the token file.
    fn cli(&self, args: &[&str]) -> Command {
        let mut command = self.bare(args);
        command.args([
            "--token-file",
            self.token_file.to_str().expect("utf-8 path"),
        ]);
        command
    }

    fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write file");
        path
    }

    fn connection_string(&self) -> String {
        match &self.emulator {
            Some(emulator) => emulator.iothub_connection_string(),
            // A well-formed connection string for setups without a hub.
            None => "HostName=nohub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=bm8taHViLWtleS1ub3QtdXNlZA==".to_owned(),
        }
    }

    /// The connection string with another (valid base64) key.
    fn wrong_key_connection_string(&self) -> String {
        let good = self.connection_string();
        let (head, _) = good
            .split_once("SharedAccessKey=")
            .expect("connection string with a key");
        format!("{head}SharedAccessKey=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXkhIQ==")
    }

    /// The key of the emulator's policy, the most secret part of the connection string.
    fn key(&self) -> String {
        key_of(&self.connection_string())
    }

    fn create_location(&self) -> String {
        let output = self
            .cli(&[
                "locations",
                "create",
                "--display-name",
                "Plant 7",
                "--description",
                "north site",
                "--latitude",
                "52.2",
                "--longitude",
                "-0.12",
                "--attribute",
                "site=n7",
                "-o",
                "json",
            ])
            .output()
            .expect("run locations create");
        assert_eq!(code(&output), 0, "{}", text(&output));
        let location: Value = json(&output);
        assert_eq!(location["display_name"], "Plant 7");
        assert_eq!(location["attributes"]["site"], "n7");
        location["identity"]
            .as_str()
            .expect("location identity")
            .to_owned()
    }

    /// Starts an import without waiting and returns its identity.
    fn start_import(&self, secret_file: &Path) -> String {
        let output = self
            .cli(&[
                "import",
                "--display-name",
                "slow hub",
                "--secret-file",
                secret_file.to_str().expect("utf-8 path"),
                "-o",
                "json",
            ])
            .output()
            .expect("run import");
        assert_eq!(code(&output), 0, "{}", text(&output));
        let operation = json(&output);
        assert_eq!(operation["done"], false, "{operation}");
        operation["identity"].as_str().expect("identity").to_owned()
    }

    /// Every secret this setup knows; none may appear in any output.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![
            self.connection_string(),
            self.key(),
            self.wrong_key_connection_string(),
            key_of(&self.wrong_key_connection_string()),
            self.token.clone(),
            self.client_secret.clone(),
        ];
        if let Some(emulator) = &self.emulator {
            secrets.push(emulator.eventhub_connection_string());
        }
        secrets
    }

    fn assert_no_secret(&self, what: &str, output: &Output) {
        let all = text(output);
        for secret in self.secrets() {
            assert!(
                !all.contains(&secret),
                "{what}: a secret appears in the output:\n{all}"
            );
        }
    }
}

fn key_of(connection_string: &str) -> String {
    connection_string
        .split(';')
        .find_map(|part| part.strip_prefix("SharedAccessKey="))
        .expect("a key")
        .to_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited with a code")
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(output)))
}

/// A hub slow enough that an import is still running seconds after it started.
fn slow_hub_faults() -> Faults {
    Faults {
        latency: Duration::from_millis(250),
        page_size_cap: Some(10),
        ..Faults::default()
    }
}

#[test]
fn import_with_wait_ends_with_the_exact_count_and_exit_code_0() {
    let setup = Setup::new(250);
    let location = setup.create_location();
    let secret_file = setup.write_file("hub-secret", &setup.connection_string());

    let output = setup
        .cli(&[
            "import",
            "--display-name",
            "factory hub",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--location",
            &location,
            "--wait",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", text(&output));
    let operation = json(&output);
    assert_eq!(operation["done"], true);
    assert_eq!(operation["result"]["status"], "STATUS_FINISHED");
    assert_eq!(operation["result"]["number_assets_imported"], 250);
    assert_eq!(operation["result"]["arc_home_location_identity"], location);
    assert!(
        stderr(&output).contains("finished: 250 assets imported"),
        "{}",
        text(&output)
    );
    setup.assert_no_secret("import --wait", &output);
    let identity = operation["identity"].as_str().unwrap().to_owned();

    // The assets of the location, through every page (100 per page by default).
    let assets = setup
        .cli(&["assets", "list", "--location", &location, "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&assets), 0, "{}", text(&assets));
    let assets = json(&assets);
    let assets = assets.as_array().expect("one array");
    assert_eq!(assets.len(), 250);
    let mut names: Vec<&str> = assets
        .iter()
        .map(|a| a["attributes"]["arc_display_name"].as_str().unwrap_or(""))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 250, "each device exactly once");

    // The table form has a header and one row per asset.
    let table = setup
        .cli(&["assets", "list", "--location", &location])
        .output()
        .unwrap();
    assert_eq!(code(&table), 0, "{}", text(&table));
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("IDENTITY"));
    assert_eq!(table.lines().count(), 251);

    // list and get show it.
    let list = setup
        .cli(&["imports", "list", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&list), 0, "{}", text(&list));
    let list = json(&list);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|op| op["identity"] == identity.as_str()));
    let get = setup
        .cli(&["imports", "get", identity.trim_start_matches("iothubgdr/")])
        .output()
        .unwrap();
    assert_eq!(code(&get), 0, "{}", text(&get));
    let get = String::from_utf8(get.stdout).unwrap();
    assert!(get.contains("FINISHED"), "{get}");
    assert!(get.contains("250"), "{get}");

    let locations = setup.cli(&["locations", "list"]).output().unwrap();
    assert_eq!(code(&locations), 0, "{}", text(&locations));
    assert!(String::from_utf8_lossy(&locations.stdout).contains(&location));
}

#[test]
fn a_wrong_key_ends_with_the_error_and_exit_code_6() {
    let setup = Setup::new(20);
    let secret_file = setup.write_file("wrong-secret", &setup.wrong_key_connection_string());
    let output = setup
        .cli(&[
            "import",
            "--display-name",
            "wrong key",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--wait",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), EXIT_IMPORT_FAILED, "{}", text(&output));
    let operation = json(&output);
    assert_eq!(operation["done"], true);
    let message = operation["error"]["error_message"].as_str().unwrap();
    assert!(!message.is_empty());
    assert!(stderr(&output).contains(message), "{}", text(&output));
    setup.assert_no_secret("wrong key", &output);

    // A home location that is not one of the caller's is not found (404), as any other
    // resource that is not the caller's.
    let secret_file = setup.write_file("hub-secret", &setup.connection_string());
    let unknown_location = setup
        .cli(&[
            "import",
            "--display-name",
            "x",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--location",
            "locations/0b0e7e0a-1111-4222-8333-444455556666",
        ])
        .output()
        .unwrap();
    assert_eq!(
        code(&unknown_location),
        EXIT_NOT_FOUND,
        "{}",
        text(&unknown_location)
    );
    setup.assert_no_secret("unknown location", &unknown_location);
}

#[test]
fn a_secret_that_is_no_connection_string_fails_at_once_with_exit_code_6() {
    let setup = Setup::new(0);
    let output = setup
        .cli(&["import", "--display-name", "garbage", "--secret-file", "-"])
        .write_stdin("this is not a connection string")
        .output()
        .unwrap();
    assert_eq!(code(&output), EXIT_IMPORT_FAILED, "{}", text(&output));
    assert!(
        text(&output).contains("invalid secret provided"),
        "{}",
        text(&output)
    );
    assert!(!text(&output).contains("this is not a connection string"));
}

#[test]
fn cancel_get_and_delete_work_and_a_deleted_import_is_not_found() {
    let setup = Setup::with_faults(3000, slow_hub_faults());
    let secret_file = setup.write_file("hub-secret", &setup.connection_string());
    let identity = setup.start_import(&secret_file);

    let cancel = setup
        .cli(&["imports", "cancel", &identity, "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&cancel), 0, "{}", text(&cancel));
    let cancelled = json(&cancel);
    assert_eq!(cancelled["result"]["status"], "STATUS_CANCELLED");
    assert_eq!(cancelled["done"], true);

    let get = setup
        .cli(&["imports", "get", &identity, "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&get), 0, "{}", text(&get));
    let got = json(&get);
    assert_eq!(got["result"]["status"], "STATUS_CANCELLED");
    assert!(got["result"]["number_assets_imported"].as_u64().unwrap() < 3000);

    let delete = setup
        .cli(&["imports", "delete", &identity])
        .output()
        .unwrap();
    assert_eq!(code(&delete), 0, "{}", text(&delete));
    assert!(String::from_utf8_lossy(&delete.stdout).contains(&identity));

    let gone = setup.cli(&["imports", "get", &identity]).output().unwrap();
    assert_eq!(code(&gone), EXIT_NOT_FOUND, "{}", text(&gone));
    assert!(stderr(&gone).contains("not found"));

    let list = setup
        .cli(&["imports", "list", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&list), 0, "{}", text(&list));
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&identity));
}

#[test]
fn ctrl_c_without_a_terminal_cancels_the_awaited_import_with_exit_code_7() {
    let setup = Setup::with_faults(3000, slow_hub_faults());
    let secret_file = setup.write_file("hub-secret", &setup.connection_string());
    let mut child = StdCommand::new(common::binary());
    for name in CLIENT_ENV {
        child.env_remove(name);
    }
    let mut child = child
        .args([
            "import",
            "--display-name",
            "interrupted",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--wait",
            "-o",
            "json",
            "--url",
            setup.server.url(),
            "--token-file",
            setup.token_file.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr, line by line as written; the whole text once the pipe closes.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let child_stderr = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(child_stderr).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    // The client says when its Ctrl-C handler is installed: wait for that line, then for
    // the import to run, then interrupt the client.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the client never said it handles Ctrl-C");
        if line.contains("Ctrl-C to stop waiting") {
            break;
        }
    }
    let started = Instant::now();
    let identity = loop {
        let list = setup
            .cli(&["imports", "list", "-o", "json"])
            .output()
            .unwrap();
        let list = json(&list);
        if let Some(op) = list.as_array().unwrap().first() {
            if op["result"]["status"] == "STATUS_INPROGRESS" {
                break op["identity"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never in progress"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let sent = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "client did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut output = child.wait_with_output().unwrap();
    // Exited and its stderr closed: the reader has all of it.
    output.stderr = stderr_reader.join().unwrap().into_bytes();
    assert_eq!(code(&output), EXIT_IMPORT_CANCELLED, "{}", text(&output));
    assert!(
        stderr(&output).contains("cancelling import"),
        "{}",
        text(&output)
    );
    let get = setup
        .cli(&["imports", "get", &identity, "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(json(&get)["result"]["status"], "STATUS_CANCELLED");
}

#[test]
fn the_secret_never_shows_whichever_way_it_is_given() {
    let setup = Setup::new(5);
    let connection_string = setup.connection_string();
    let secret_file = setup.write_file("hub-secret", &connection_string);
    let client_secret_file = setup.write_file("client-secret", &setup.client_secret);
    let bare_token_file = setup.write_file("bare-token", &setup.token);
    let base = ["import", "--display-name", "quiet", "--wait", "-o", "json"];

    let mut runs: Vec<(&str, Output)> = Vec::new();
    // Connection string from a file, standard input and the environment; token file with
    // the curl header and a bare token; client id with the secret from a file, from the
    // environment, and from standard input.
    runs.push((
        "secret file",
        setup
            .cli(&base)
            .args(["--secret-file", secret_file.to_str().unwrap()])
            .output()
            .unwrap(),
    ));
    runs.push((
        "secret on stdin",
        setup
            .cli(&base)
            .args(["--secret-file", "-"])
            .write_stdin(format!("{connection_string}\n"))
            .output()
            .unwrap(),
    ));
    runs.push((
        "secret in env",
        setup
            .cli(&base)
            .env("IOTHUBGDR_IOTHUB_SECRET", &connection_string)
            .output()
            .unwrap(),
    ));
    runs.push((
        "bare token file",
        setup
            .bare(&base)
            .args(["--secret-file", secret_file.to_str().unwrap()])
            .env("BEARER_TOKEN_FILE", &bare_token_file)
            .output()
            .unwrap(),
    ));
    runs.push((
        "client secret file",
        setup
            .bare(&base)
            .args(["--secret-file", secret_file.to_str().unwrap()])
            .args(["--client-id", &setup.client_id])
            .args(["--client-secret-file", client_secret_file.to_str().unwrap()])
            .output()
            .unwrap(),
    ));
    runs.push((
        "client secret in env",
        setup
            .bare(&base)
            .env("IOTHUBGDR_IOTHUB_SECRET", &connection_string)
            .env("IOTHUBGDR_CLIENT_ID", &setup.client_id)
            .env("IOTHUBGDR_CLIENT_SECRET", &setup.client_secret)
            .output()
            .unwrap(),
    ));
    runs.push((
        "client secret on stdin",
        setup
            .bare(&base)
            .args(["--secret-file", secret_file.to_str().unwrap()])
            .args(["--client-id", &setup.client_id, "--client-secret-file", "-"])
            .write_stdin(setup.client_secret.clone())
            .output()
            .unwrap(),
    ));
    for (what, output) in &runs {
        assert_eq!(code(output), 0, "{what}: {}", text(output));
        assert_eq!(
            json(output)["result"]["number_assets_imported"],
            5,
            "{what}"
        );
        setup.assert_no_secret(what, output);
    }

    // Failures that handle secrets: a refused client secret, a wrong hub key, a token file
    // in an unknown form.
    let refused = setup
        .bare(&["imports", "list"])
        .args(["--client-id", &setup.client_id])
        .env(
            "IOTHUBGDR_CLIENT_SECRET",
            format!("{}x", setup.client_secret),
        )
        .output()
        .unwrap();
    assert_eq!(code(&refused), EXIT_AUTH, "{}", text(&refused));
    assert!(!text(&refused).contains(&setup.client_secret));

    let garbled_token = setup.write_file("garbled", &format!("Token: {}", setup.token));
    let garbled = setup
        .bare(&[
            "imports",
            "list",
            "--token-file",
            garbled_token.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&garbled), EXIT_AUTH, "{}", text(&garbled));
    setup.assert_no_secret("garbled token file", &garbled);

    let wrong = setup
        .cli(&["import", "--display-name", "wrong", "--wait"])
        .env(
            "IOTHUBGDR_IOTHUB_SECRET",
            setup.wrong_key_connection_string(),
        )
        .output()
        .unwrap();
    assert_eq!(code(&wrong), EXIT_IMPORT_FAILED, "{}", text(&wrong));
    setup.assert_no_secret("wrong key", &wrong);

    // Nor in the server's logs.
    let logs = setup.server.logs();
    for secret in [connection_string, setup.key(), setup.client_secret.clone()] {
        assert!(
            !logs.contains(&secret),
            "a secret appears in the server logs"
        );
    }
}

#[test]
fn failures_have_their_own_exit_codes() {
    let setup = Setup::core();

    // Invalid input, refused before any request.
    let bad_id = setup
        .cli(&["imports", "get", "not-an-id"])
        .output()
        .unwrap();
    assert_eq!(code(&bad_id), EXIT_INVALID_INPUT, "{}", text(&bad_id));
    assert!(stderr(&bad_id).contains("iothubgdr/<uuid>"));

    // Not found.
    let missing = setup
        .cli(&["imports", "cancel", "0b0e7e0a-1111-4222-8333-444455556666"])
        .output()
        .unwrap();
    assert_eq!(code(&missing), EXIT_NOT_FOUND, "{}", text(&missing));

    // Token refused.
    let bad_token = setup.write_file("bad-token", "Authorization: Bearer not.a.token");
    let refused = setup
        .bare(&[
            "locations",
            "list",
            "--token-file",
            bad_token.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&refused), EXIT_AUTH, "{}", text(&refused));

    // Unreadable token file.
    let unreadable = setup
        .bare(&["locations", "list", "--token-file", "/nonexistent/token"])
        .output()
        .unwrap();
    assert_eq!(code(&unreadable), EXIT_AUTH, "{}", text(&unreadable));

    // Server unreachable: a loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(common::binary());
    for name in CLIENT_ENV {
        command.env_remove(name);
    }
    let unreachable = command
        .args([
            "imports",
            "list",
            "--url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--token-file", setup.token_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        code(&unreachable),
        EXIT_UNREACHABLE,
        "{}",
        text(&unreachable)
    );
    assert!(stderr(&unreachable).contains("--url"));

    // Help documents the exit codes.
    let help = Command::new(common::binary())
        .args(["import", "--help"])
        .output()
        .unwrap();
    assert_eq!(code(&help), 0);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("IOTHUBGDR_IOTHUB_SECRET"), "{help}");
}

#[test]
fn locations_create_and_list_follow_every_page() {
    let setup = Setup::core();
    let first = setup.create_location();
    // More than two pages of the server's default page size, made over HTTP for speed.
    let client = setup.server.client();
    setup._runtime.block_on(async {
        for i in 0..230 {
            let answer = client
                .post(setup.server.url_of("/archivist/v2/locations"))
                .bearer_auth(&setup.token)
                .json(&serde_json::json!({"display_name": format!("site {i}")}))
                .send()
                .await
                .expect("create location");
            assert_eq!(answer.status(), 200);
        }
    });
    let list = setup
        .cli(&["locations", "list", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&list), 0, "{}", text(&list));
    let list = json(&list);
    let identities: std::collections::HashSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["identity"].as_str().unwrap())
        .collect();
    assert_eq!(list.as_array().unwrap().len(), 231);
    assert_eq!(identities.len(), 231, "each location exactly once");
    assert!(identities.contains(first.as_str()));

    // The same through client credentials from the environment, as a table.
    let table = setup
        .bare(&["locations", "list"])
        .env("IOTHUBGDR_CLIENT_ID", &setup.client_id)
        .env("IOTHUBGDR_CLIENT_SECRET", &setup.client_secret)
        .output()
        .unwrap();
    assert_eq!(code(&table), 0, "{}", text(&table));
    assert_eq!(String::from_utf8_lossy(&table.stdout).lines().count(), 232);
    setup.assert_no_secret("locations list", &table);
}
