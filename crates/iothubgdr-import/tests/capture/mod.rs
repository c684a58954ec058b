//! What the engine logs, captured by a real `tracing` subscriber installed once for the
//! test binary that uses this module (a binary of its own, so no other test file's lines
//! mix in; a case keeps only the lines that name its own import).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything logged at WARN and above since the first call, as text.
pub fn warnings() -> String {
    let log = log();
    let bytes = log.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Installs the subscriber (once); call before the engine starts.
pub fn install() {
    log();
}

/// The lines of [`warnings`] that name `import`.
pub fn warnings_of(import: impl std::fmt::Display) -> Vec<String> {
    let id = import.to_string();
    warnings()
        .lines()
        .filter(|line| line.contains(&id))
        .map(str::to_owned)
        .collect()
}

fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .init();
        log
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
