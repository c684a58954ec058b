//! Following an import to its end: polling, the live progress bar, and Ctrl-C.

use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::client::ApiClient;
use crate::error::ClientError;
use crate::ids;
use crate::models::{Operation, OperationState};
use crate::safe_text;

/// How progress is shown while waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live bar when standard error is a terminal, else plain lines.
    #[default]
    Auto,
    /// A live bar on standard error (drawn only when it is a terminal).
    Bar,
    /// A plain line on standard error when the state changes and at most every 10 seconds.
    Lines,
    /// Nothing.
    Hidden,
}

/// What Ctrl-C does while waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InterruptMode {
    /// Not handled here: the caller owns the signal (as `iothubgdr demo` does).
    #[default]
    Ignore,
    /// On a terminal, ask whether to cancel the import: yes cancels it and waits for the
    /// cancelled state, no stops waiting and leaves it running ([`ClientError::Interrupted`]).
    /// Without a terminal (scripts, CI), cancel it: a job whose waiter was interrupted should
    /// not keep running with nobody watching.
    AskToCancel,
}

#[derive(Debug, Clone)]
pub struct WaitOptions {
    pub progress: ProgressMode,
    pub poll_interval: Duration,
    pub interrupt: InterruptMode,
    /// How long the server may stay unreachable (or answer 5xx / 429) before waiting gives up.
    pub outage_budget: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            progress: ProgressMode::Auto,
            poll_interval: Duration::from_millis(300),
            interrupt: InterruptMode::Ignore,
            outage_budget: Duration::from_secs(60),
        }
    }
}

/// Polls the import `id` (`iothubgdr/<uuid>` or `<uuid>`) until it is done, showing progress,
/// and returns its final operation (finished, cancelled, or with `error`).
pub async fn wait_for_import(
    client: &ApiClient,
    id: &str,
    progress: ProgressMode,
) -> Result<Operation, ClientError> {
    wait_for_import_with(
        client,
        id,
        &WaitOptions {
            progress,
            ..WaitOptions::default()
        },
    )
    .await
}

type Interrupt = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// The Ctrl-C listener of `mode`. The handler is installed here, not when the future is
/// first polled, so once this returns a Ctrl-C cannot kill the process with the default
/// action any more.
fn interrupt_listener(mode: InterruptMode) -> Interrupt {
    match mode {
        InterruptMode::Ignore => Box::pin(std::future::pending()),
        #[cfg(unix)]
        InterruptMode::AskToCancel => {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::interrupt()) {
                Ok(mut interrupt) => Box::pin(async move {
                    interrupt.recv().await;
                    Ok(())
                }),
                Err(err) => {
                    eprintln!("warning: cannot handle Ctrl-C ({err})");
                    Box::pin(std::future::pending())
                }
            }
        }
        #[cfg(not(unix))]
        InterruptMode::AskToCancel => Box::pin(tokio::signal::ctrl_c()),
    }
}

/// [`wait_for_import`] with every option.
pub async fn wait_for_import_with(
    client: &ApiClient,
    id: &str,
    options: &WaitOptions,
) -> Result<Operation, ClientError> {
    let uuid = ids::import_uuid(id).map_err(|e| ClientError::InvalidInput(e.to_string()))?;
    let identity = format!("iothubgdr/{uuid}");
    let mut reporter = Reporter::new(options.progress, &identity);
    let mut interrupt = interrupt_listener(options.interrupt);
    if options.interrupt == InterruptMode::AskToCancel {
        // Printed once the handler is installed: a script (or a test) that waits for this
        // line knows its Ctrl-C will be handled.
        eprintln!("waiting for import {identity}; Ctrl-C to stop waiting");
    }
    let mut outage_since: Option<Instant> = None;
    let mut cancelled_by_us = false;
    loop {
        let polled = tokio::select! {
            biased;
            _ = &mut interrupt => None,
            polled = client.get_import(&identity) => Some(polled),
        };
        match polled {
            Some(Ok(operation)) => {
                outage_since = None;
                reporter.update(&operation);
                if is_done(&operation) {
                    reporter.finish(&operation);
                    return Ok(operation);
                }
            }
            Some(Err(err)) if err.is_transient() => {
                let since = *outage_since.get_or_insert_with(Instant::now);
                if since.elapsed() > options.outage_budget {
                    reporter.abandon();
                    return Err(err);
                }
                reporter.note(&format!("{err} (retrying)"));
            }
            Some(Err(err)) => {
                reporter.abandon();
                return Err(err);
            }
            None => {
                interrupt = interrupt_listener(options.interrupt);
                if cancelled_by_us {
                    // A second Ctrl-C after the cancel: stop waiting for the cancelled state.
                    reporter.abandon();
                    return Err(ClientError::Interrupted { identity });
                }
                reporter.pause();
                match decide_on_interrupt(&identity, &mut interrupt).await {
                    Decision::Detach => {
                        return Err(ClientError::Interrupted { identity });
                    }
                    Decision::Cancel => {
                        let operation = client.cancel_import(&identity).await?;
                        cancelled_by_us = true;
                        reporter.update(&operation);
                        if is_done(&operation) {
                            reporter.finish(&operation);
                            return Ok(operation);
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(options.poll_interval) => {}
            _ = &mut interrupt => {
                // Handled at the top of the next round, where the same listener fires again
                // only on a new signal: re-arm it and go straight to the decision.
                interrupt = Box::pin(std::future::ready(Ok(())));
            }
        }
    }
}

/// `done`, or a final state even if a server forgot to set `done`.
fn is_done(operation: &Operation) -> bool {
    operation.done
        || matches!(
            operation.state(),
            OperationState::Finished | OperationState::Cancelled | OperationState::Failed
        )
}

enum Decision {
    Cancel,
    Detach,
}

async fn decide_on_interrupt(identity: &str, interrupt: &mut Interrupt) -> Decision {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        eprintln!("interrupted: cancelling import {identity}");
        return Decision::Cancel;
    }
    eprint!(
        "\nStopped waiting for import {identity}. Cancel the import too? [y/N] (Ctrl-C again: leave it running) "
    );
    // A plain thread, not the runtime's blocking pool: a read of the terminal cannot be
    // aborted, and the runtime would wait for it at shutdown.
    let (sender, answer) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().read_line(&mut line);
        let _ = sender.send(read.map(|_| line));
    });
    let yes = tokio::select! {
        answer = answer => matches!(answer, Ok(Ok(line)) if is_yes(&line)),
        _ = interrupt => { eprintln!(); false }
    };
    if yes {
        eprintln!("cancelling import {identity}");
        Decision::Cancel
    } else {
        Decision::Detach
    }
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Shows progress on standard error.
struct Reporter {
    identity: String,
    bar: Option<ProgressBar>,
    lines: bool,
    last_line: Option<(Instant, OperationState, Option<String>)>,
    started: Instant,
    first_count: Option<u64>,
}

const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// "hub export job running, 40%": the export path's first phase, shown while it lasts.
fn export_job(operation: &Operation) -> Option<String> {
    let (status, progress) = operation.export_job()?;
    Some(format!(
        "hub export job {}, {progress}%",
        safe_text::value(&status)
    ))
}

fn rate_key(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0} assets/s", state.per_sec());
}

fn style(total_known: bool) -> ProgressStyle {
    let template = if total_known {
        "{spinner:.green} {prefix} {msg:<10} [{bar:30.cyan/blue}] {pos}/{len} assets ({percent}%) {rate} {elapsed_precise} eta {eta}"
    } else {
        "{spinner:.green} {prefix} {msg:<10} {pos} assets imported, {rate} {elapsed_precise}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key("rate", rate_key)
        .progress_chars("=> ")
}

impl Reporter {
    fn new(mode: ProgressMode, identity: &str) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let (bar, lines) = match mode {
            ProgressMode::Auto if terminal => (true, false),
            ProgressMode::Auto => (false, true),
            ProgressMode::Bar => (true, false),
            ProgressMode::Lines => (false, true),
            ProgressMode::Hidden => (false, false),
        };
        let bar = bar.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(false));
            bar.set_prefix(identity.to_owned());
            bar.set_message("WAITING");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            identity: identity.to_owned(),
            bar,
            lines,
            last_line: None,
            started: Instant::now(),
            first_count: None,
        }
    }

    fn update(&mut self, operation: &Operation) {
        let count = operation.number_assets_imported();
        self.first_count.get_or_insert(count);
        let state = operation.state();
        if let Some(bar) = &self.bar {
            if let Some(total) = operation.devices_total() {
                if bar.length() != Some(total) {
                    bar.set_length(total);
                    bar.set_style(style(true));
                }
            }
            bar.set_position(count);
            match export_job(operation) {
                // The import writes nothing until the hub's job has written the blob.
                Some(job) => bar.set_message(format!("{}, {job}", state.label())),
                None => bar.set_message(state.label()),
            }
        }
        if self.lines {
            let job = export_job(operation);
            let due = match &self.last_line {
                None => true,
                Some((at, last_state, last_job)) => {
                    *last_state != state || *last_job != job || at.elapsed() >= LINE_INTERVAL
                }
            };
            if due && !is_done(operation) {
                eprintln!("{}", safe_text::block(&self.progress_line(operation)));
                self.last_line = Some((Instant::now(), state, job));
            }
        }
    }

    fn progress_line(&self, operation: &Operation) -> String {
        let count = operation.number_assets_imported();
        let mut line = format!("{}: {}, {count}", self.identity, operation.state().label());
        if let Some(total) = operation.devices_total().filter(|t| *t > 0) {
            let percent = count.saturating_mul(100) / total;
            line.push_str(&format!("/{total} assets imported ({percent}%)"));
        } else {
            line.push_str(" assets imported");
        }
        if let Some(job) = export_job(operation) {
            line.push_str(&format!(", {job}"));
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let gained = count.saturating_sub(self.first_count.unwrap_or(0));
        if elapsed >= 1.0 && gained > 0 {
            line.push_str(&format!(", {:.0} assets/s", gained as f64 / elapsed));
        }
        line
    }

    /// Something worth saying that is not progress (a retried failure).
    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{}", safe_text::block(text))),
            None if self.lines => eprintln!("{}", safe_text::block(text)),
            None => {}
        }
    }

    /// Clears the bar for a question; progress goes on as plain lines.
    fn pause(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            self.lines = true;
            self.last_line = None;
        }
    }

    fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }

    fn finish(&mut self, operation: &Operation) {
        let show = self.bar.is_some() || self.lines;
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if show {
            eprintln!(
                "{}",
                safe_text::block(&summary(operation, self.started.elapsed()))
            );
        }
    }
}

/// The one line that says how an import ended.
pub fn summary(operation: &Operation, waited: Duration) -> String {
    let count = operation.number_assets_imported();
    let took = server_duration(operation).unwrap_or(waited);
    let secs = took.as_secs_f64();
    let rate = if secs >= 0.5 {
        format!(" ({:.0} assets/s)", count as f64 / secs)
    } else {
        String::new()
    };
    let identity = &operation.identity;
    match operation.state() {
        OperationState::Finished => {
            format!("import {identity} finished: {count} assets imported in {secs:.1}s{rate}")
        }
        OperationState::Cancelled => {
            format!("import {identity} cancelled after {count} assets imported")
        }
        OperationState::Failed => format!(
            "import {identity} failed after {count} assets imported: {}",
            operation.error_message().unwrap_or("no error message")
        ),
        other => format!("import {identity} is {}", other.label()),
    }
}

/// `timestamp_finished - timestamp_accepted`, when both parse (seconds precision).
fn server_duration(operation: &Operation) -> Option<Duration> {
    use time::format_description::well_known::Rfc3339;
    let accepted =
        time::OffsetDateTime::parse(operation.timestamp_accepted.as_deref()?, &Rfc3339).ok()?;
    let finished =
        time::OffsetDateTime::parse(operation.timestamp_finished.as_deref()?, &Rfc3339).ok()?;
    let seconds = (finished - accepted).as_seconds_f64();
    (seconds >= 1.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(text: &str) -> Operation {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn answers_that_mean_yes() {
        for yes in ["y\n", "Y", " yes\r\n", "YES"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "q"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn summaries_say_how_it_ended() {
        let finished = op(r#"{"identity":"iothubgdr/a","done":true,
            "timestamp_accepted":"2026-01-01T00:00:00Z","timestamp_finished":"2026-01-01T00:00:04Z",
            "result":{"number_assets_imported":2000,"status":"STATUS_FINISHED"}}"#);
        assert_eq!(
            summary(&finished, Duration::from_secs(1)),
            "import iothubgdr/a finished: 2000 assets imported in 4.0s (500 assets/s)"
        );
        let failed = op(r#"{"identity":"iothubgdr/b","done":true,
            "error":{"number_assets_imported":3,"error_message":"invalid secret provided"}}"#);
        assert_eq!(
            summary(&failed, Duration::from_secs(1)),
            "import iothubgdr/b failed after 3 assets imported: invalid secret provided"
        );
        let cancelled = op(r#"{"identity":"iothubgdr/c","done":true,
            "result":{"number_assets_imported":10,"status":"STATUS_CANCELLED"}}"#);
        assert!(summary(&cancelled, Duration::ZERO).contains("cancelled after 10"));
    }

    #[test]
    fn plain_progress_lines_show_percentage_when_the_total_is_known() {
        let reporter = Reporter::new(ProgressMode::Hidden, "iothubgdr/a");
        let line = reporter.progress_line(&op(
            r#"{"identity":"iothubgdr/a","number_devices_total":200,
            "result":{"number_assets_imported":50,"status":"STATUS_INPROGRESS"}}"#,
        ));
        assert_eq!(
            line,
            "iothubgdr/a: INPROGRESS, 50/200 assets imported (25%)"
        );
        let line = reporter.progress_line(&op(
            r#"{"identity":"iothubgdr/a","result":{"number_assets_imported":7,"status":"STATUS_PENDING"}}"#,
        ));
        assert_eq!(line, "iothubgdr/a: PENDING, 7 assets imported");
        // The export path says how far the hub's job is while it writes the blob.
        let line = reporter.progress_line(&op(
            r#"{"identity":"iothubgdr/a","number_devices_total":200,
            "result":{"number_assets_imported":0,"status":"STATUS_INPROGRESS",
            "export_job":{"status":"running","progress":40}}}"#,
        ));
        assert_eq!(
            line,
            "iothubgdr/a: INPROGRESS, 0/200 assets imported (0%), hub export job running, 40%"
        );
    }

    #[test]
    fn a_final_state_counts_as_done_even_without_the_flag() {
        assert!(is_done(&op(
            r#"{"identity":"i","done":false,"result":{"status":"STATUS_FINISHED"}}"#
        )));
        assert!(!is_done(&op(
            r#"{"identity":"i","done":false,"result":{"status":"STATUS_INPROGRESS"}}"#
        )));
    }
}
