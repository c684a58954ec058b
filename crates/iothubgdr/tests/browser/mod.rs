//! Headless Chromium for the console's browser tests, driven over WebDriver (chromedriver
//! and the `fantoccini` client). `fixtures` holds the hub, server and API they share, and
//! `pages` what they read from the console's pages.
//!
//! Without `chromium` and `chromedriver` on the PATH the tests print that they were
//! skipped and pass, so `cargo test` works on any machine; under CI (`CI` set) a missing
//! browser fails instead, since `.ci/run` installs it.

#![allow(dead_code)]

pub mod fixtures;
pub mod pages;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Desktop and phone window sizes of the screenshots.
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A running chromedriver with one headless Chromium session; both end on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts the browser, or `None` (after saying so) when this machine has none.
    pub async fn start(test: &str) -> Option<Browser> {
        let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
        let driver = on_path("chromedriver");
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the browser tests: install Debian's chromium and chromium-driver"
            );
            eprintln!(
                "SKIPPED {test}: chromium and chromedriver are not installed \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = free_port();
        // Its own process group, so that dropping the browser ends chromedriver and every
        // Chromium process it started, even when a test panics before closing the session.
        let mut driver = Command::new(driver);
        driver
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut driver, 0);
        let mut driver = driver.spawn().expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({
            "browserName": "chrome",
            // An alert left open (say by injected script) stays open for the test to see.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-crash-reporter",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--disable-default-apps",
                    "--hide-scrollbars",
                    "--lang=en-GB",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(err) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => {
                    let _ = driver.kill();
                    panic!("cannot start a Chromium session: {err}");
                }
            }
        };
        client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .expect("window size");
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    pub async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        );
        self.js(&script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until `css` matches a displayed element and returns it.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no element {css}: {err}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Clears the field `css` and types `text` into it, as a person would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .expect("select");
    }

    /// The open alert's text, if a script opened one.
    pub async fn alert(&self) -> Option<String> {
        self.client.get_alert_text().await.ok()
    }

    /// Everything the page keeps: session and local storage, and its cookies.
    pub async fn stored(&self) -> String {
        self.js("const all = {};
             for (const s of [sessionStorage, localStorage]) {
               for (let i = 0; i < s.length; i++) { all[s.key(i)] = s.getItem(s.key(i)); }
             }
             return JSON.stringify(all) + document.cookie;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot at desktop width and one at phone width as `<name>.png` and
    /// `<name>-phone.png` under [`screenshot_dir`].
    pub async fn screenshots(&self, name: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        for (suffix, (width, height)) in [("", DESKTOP), ("-phone", PHONE)] {
            self.client
                .set_window_size(width, height)
                .await
                .expect("window size");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{name}{suffix}.png")), png).expect("write png");
        }
        self.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .expect("window size");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `$CONSOLE_SCREENSHOTS`, else `<target dir>/ci-artifacts/console`,
/// which CI keeps.
pub fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("ci-artifacts").join("console")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Polls `check` every 100 ms until it gives a value, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
