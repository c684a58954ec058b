//! A harness that runs the real `iothubgdr` binary for integration tests.
//!
//! ```ignore
//! mod common;
//! use common::TestServer;
//!
//! let server = TestServer::start();                       // or start_with(&["--token-ttl", "90s"])
//! let (client_id, secret) = server.create_app("acme");    // `iothubgdr apps create`
//! let token = server.token(&client_id, &secret).await;    // the token endpoint
//! let answer = server.client().get(server.url_of("/archivist/v2/locations"))
//!     .bearer_auth(&token).send().await?;
//! assert!(!server.logs().contains(&token));               // captured stderr
//! ```
//!
//! Each server gets a fresh temporary directory and a fresh database, listens on
//! `127.0.0.1:0` and is killed when the `TestServer` is dropped. Logs (stderr, at debug level
//! see [`TEST_LOG_LEVEL`], unless `--log-level` is passed) are captured for assertions such as "no secret in the
//! logs". [`TestServer::command`] runs any other subcommand against the same database.
//!
//! The database is a SQLite file in the server's directory, or, when the environment
//! variable `IOTHUBGDR_TEST_POSTGRES_URL` names a PostgreSQL server
//! (`postgres://postgres@127.0.0.1:PORT/postgres`), a fresh PostgreSQL database of its own
//! on that server ([`fresh_database_url`]): the whole integration suite runs on either
//! backend unchanged.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// The log filter of test servers: our crates at debug (so secret-leak assertions see
/// everything we log), chatty transport and SQL crates at info.
pub const TEST_LOG_LEVEL: &str =
    "debug,hyper=info,hyper_util=info,h2=info,rustls=info,reqwest=info,sqlx=info,tower=info";

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_iothubgdr")
}

/// An app registration created with `iothubgdr apps create`.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub client_id: String,
    pub client_secret: String,
    /// `tenant/<uuid>`.
    pub tenant_identity: String,
}

impl TestApp {
    /// The tenant's UUID.
    pub fn tenant_id(&self) -> uuid::Uuid {
        let id = self.tenant_identity.trim_start_matches("tenant/");
        uuid::Uuid::parse_str(id).expect("tenant identity")
    }
}

pub struct TestServer {
    child: Child,
    base_url: String,
    database_url: String,
    dir: tempfile::TempDir,
    logs: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// The threads reading stderr and stdout: they end when the process's pipes close.
    readers: Vec<JoinHandle<()>>,
}

impl TestServer {
    /// A server with default flags on a fresh database.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra `serve` flags (they come after the harness's own, so they win).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = fresh_database_url(dir.path());
        Self::start_on(dir, database_url, extra_args)
    }

    /// A server on an existing directory and database (for example a second process on the
    /// same database).
    pub fn start_on(dir: tempfile::TempDir, database_url: String, extra_args: &[&str]) -> Self {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--database", &database_url])
            .args(extra_args)
            .env_remove("RUST_LOG")
            .env("IOTHUBGDR_LOG_LEVEL", TEST_LOG_LEVEL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn iothubgdr serve");

        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let stderr_reader = collect(stderr, logs.clone());

        let stdout = Arc::new(Mutex::new(String::new()));
        let (first_line_tx, first_line_rx) = mpsc::channel();
        let child_stdout = child.stdout.take().expect("stdout");
        let rest = stdout.clone();
        let stdout_reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(child_stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = first_line_tx.send(first);
            let mut tail = String::new();
            let _ = reader.read_to_string(&mut tail);
            rest.lock().unwrap().push_str(&tail);
        });
        let first = match first_line_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                abandon(&mut child, stderr_reader);
                panic!("server did not start; logs:\n{}", logs.lock().unwrap());
            }
        };
        let Some(base_url) = first
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned)
        else {
            abandon(&mut child, stderr_reader);
            panic!(
                "unexpected first stdout line {first:?}; logs:\n{}",
                logs.lock().unwrap()
            );
        };
        Self {
            child,
            base_url,
            database_url,
            dir,
            logs,
            stdout,
            readers: vec![stderr_reader, stdout_reader],
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// `url()` followed by `path` (which starts with `/`).
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The server's temporary directory (its database lives there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// What the server wrote to stdout after its first line (available once it exited).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// `iothubgdr <args...> --database <this server's database>`, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(args)
            .args(["--database", &self.database_url])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        command
    }

    /// Runs `iothubgdr apps create` for `tenant` and returns what it printed.
    pub fn create_test_app(&self, tenant: &str) -> TestApp {
        let output = self
            .command(&[
                "apps",
                "create",
                "--display-name",
                "test app",
                "--tenant",
                tenant,
            ])
            .output()
            .expect("run apps create");
        assert!(
            output.status.success(),
            "apps create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: Value = serde_json::from_slice(&output.stdout).expect("apps create prints JSON");
        TestApp {
            client_id: json["client_id"].as_str().expect("client_id").to_owned(),
            client_secret: json["client_secret"]
                .as_str()
                .expect("client_secret")
                .to_owned(),
            tenant_identity: json["tenant_identity"].as_str().expect("tenant").to_owned(),
        }
    }

    /// `(client_id, client_secret)` of a new app registration of `tenant`.
    pub fn create_app(&self, tenant: &str) -> (String, String) {
        let app = self.create_test_app(tenant);
        (app.client_id, app.client_secret)
    }

    /// A reqwest client for this server.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }

    /// Asks the token endpoint; panics unless it answers 200.
    pub async fn token(&self, client_id: &str, client_secret: &str) -> String {
        let answer = self.request_token(client_id, client_secret).await;
        assert_eq!(answer.status(), 200, "token endpoint refused");
        let body: Value = answer.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The raw answer of the token endpoint.
    pub async fn request_token(&self, client_id: &str, client_secret: &str) -> reqwest::Response {
        self.client()
            .post(self.url_of("/archivist/iam/v1/appidp/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret),
            ])
            .send()
            .await
            .expect("token request")
    }

    /// A new app of `tenant` and a token for it.
    pub async fn tenant_token(&self, tenant: &str) -> String {
        let (client_id, secret) = self.create_app(tenant);
        self.token(&client_id, &secret).await
    }

    /// Stops the server gracefully and returns everything it wrote to stderr: for checks
    /// that must see the whole log (no secret in it), not what arrived so far.
    pub fn stop(&mut self) -> String {
        let status = self.terminate();
        assert!(status.success(), "the server failed to stop: {status}");
        self.logs()
    }

    /// Sends SIGTERM and waits for the process to exit and its pipes to close.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM")
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit and its pipes to close.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.signal("INT")
    }

    /// SIGKILL: the process records nothing on its way out. Returns once it exited and its
    /// pipes closed, so [`TestServer::logs`] holds everything it wrote.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.wait_exit(Duration::from_secs(30))
    }

    fn signal(&mut self, name: &str) -> ExitStatus {
        // The server prints its first line only once its SIGINT/SIGTERM handlers are
        // installed, and `start_on` waited for that line: the signal cannot arrive early.
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits for the exit, then for the reader threads to see the end of both pipes: after
    /// this, the captured logs are complete.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("a log reader panicked");
        }
        status
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a server that failed to start and waits for its stderr to close, so the panic
/// that follows shows everything it wrote.
fn abandon(child: &mut Child, stderr_reader: JoinHandle<()>) {
    let _ = child.kill();
    let _ = child.wait();
    let _ = stderr_reader.join();
}

/// Appends everything `source` yields to `sink` until the pipe closes.
pub fn collect(mut source: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        loop {
            match source.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n])),
            }
        }
    })
}

/// The PostgreSQL server the tests run on, if `IOTHUBGDR_TEST_POSTGRES_URL` names one.
pub fn postgres_server() -> Option<String> {
    std::env::var("IOTHUBGDR_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Which backend this run of the suite uses.
pub fn backend() -> &'static str {
    if postgres_server().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// A new, empty database for one test: a fresh PostgreSQL database on the test server when
/// one is named, else a SQLite file in `dir`.
pub fn fresh_database_url(dir: &Path) -> String {
    match postgres_server() {
        Some(server) => block_on(async move {
            iothubgdr_store_postgres::testing::fresh_database(&server)
                .await
                .expect("create a PostgreSQL test database")
        }),
        None => format!("sqlite://{}/iothubgdr.db", dir.display()),
    }
}

/// A store handle on `url` (SQLite or PostgreSQL), for tests that look inside.
pub async fn open_store(url: &str) -> std::sync::Arc<dyn iothubgdr_store::Store> {
    if url.starts_with("postgres") {
        let options = iothubgdr_store_postgres::PostgresOptions {
            pool_size: 2,
            ..Default::default()
        };
        std::sync::Arc::new(
            iothubgdr_store_postgres::PostgresStore::connect(url, options)
                .await
                .expect("open PostgreSQL"),
        )
    } else {
        std::sync::Arc::new(
            iothubgdr_store_sqlite::SqliteStore::connect(url)
                .await
                .expect("open SQLite"),
        )
    }
}

/// Every row of every table of a PostgreSQL database as text, one pseudo-file per table,
/// for "no secret in the database" checks (a SQLite database is checked through its
/// files). Empty for a SQLite URL.
pub fn database_contents(url: &str) -> Vec<(PathBuf, Vec<u8>)> {
    if !url.starts_with("postgres") {
        return Vec::new();
    }
    let url = url.to_owned();
    block_on(async move {
        use sqlx::{Connection, Row};
        let mut connection = sqlx::PgConnection::connect(&url)
            .await
            .expect("connect to PostgreSQL");
        let tables: Vec<String> =
            sqlx::query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                .fetch_all(&mut connection)
                .await
                .expect("list tables")
                .iter()
                .map(|row| row.get(0))
                .collect();
        let mut contents = Vec::new();
        for table in tables {
            let rows = sqlx::query(&format!("SELECT t::text FROM \"{table}\" t"))
                .fetch_all(&mut connection)
                .await
                .expect("read table");
            let mut bytes = Vec::new();
            for row in rows {
                bytes.extend(row.get::<String, _>(0).into_bytes());
                bytes.push(b'\n');
            }
            contents.push((PathBuf::from(format!("postgres table {table}")), bytes));
        }
        contents
    })
}

/// Runs `future` to completion on a runtime of its own (the harness is synchronous and is
/// called from inside async tests).
fn block_on<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    })
    .join()
    .expect("the helper thread panicked")
}

/// A path in a fresh temporary directory, for tests that need one of their own.
pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
