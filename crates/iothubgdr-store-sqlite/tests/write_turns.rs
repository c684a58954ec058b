//! SQLite only: one writer at a time holds the database's write lock, and an import's page
//! writes take it back to back. A write outside the process's write turn waits in SQLite's
//! busy handler, which finds the lock free only by chance, in the instant between two page
//! writes. A mutation run's flaky test saw an engine's heartbeat miss its 5 s lease under
//! load, and the engine's own reaper then failed its running import. Now every write
//! queues for the turn, first come first served, and a reaper keeps its own worker's
//! imports (conformance: `a_reaper_keeps_its_own_imports_whatever_its_lease_says`).
//!
//! This bounds how long a heartbeat and an import's end wait beside page writes. It did
//! not reproduce the starvation on an idle machine: with the heartbeat on the pool, its
//! slowest was 54-233 ms over five runs; in the turn, 54-64 ms.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iothubgdr_store::{ImportOutcome, ImportStatus, PageWrite, Store};
use iothubgdr_store_conformance::fixtures::{device, running_import, tenant, write_retrying};
use iothubgdr_store_sqlite::SqliteStore;
use uuid::Uuid;

/// How long `write` took, failing the test past 30 s.
async fn timed<T>(write: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let done = tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .expect("done within 30 s");
    (done, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_and_an_import_end_are_not_starved_by_back_to_back_page_writes() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("iothubgdr.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.expect("store"));
    let t = tenant(&store, "t").await;
    let import = running_import(&store, t).await;
    let other = running_import(&store, t).await;

    // Three writers of pages of 1,000 new devices each, as an import's concurrent page
    // writes: there is always one waiting when another commits.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (store, stop, next) = (store.clone(), stop.clone(), next.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let first = next.fetch_add(1_000, Ordering::Relaxed);
                    let page: Vec<_> = (first..first + 1_000).map(|n| device(n, "red")).collect();
                    let written = write_retrying(&store, import, t, &page).await;
                    assert!(matches!(written, PageWrite::Written { .. }), "{written:?}");
                }
            })
        })
        .collect();

    let worker = Uuid::new_v4();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (beat, took) = timed(store.worker_heartbeat(worker, Duration::from_secs(30))).await;
        beat.expect("heartbeat");
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (finished, finishing) = timed(store.import_finish(other, ImportOutcome::Finished)).await;
    let finished = finished.expect("finish").expect("the import");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    let written = next.load(Ordering::Relaxed);
    assert!(
        written >= 5_000,
        "the writers kept the lock busy: {written}"
    );
    assert_eq!(finished.status, ImportStatus::Finished);
    // In its turn a write waits for the page writes queued before it (tens of ms each); on
    // the busy handler it waited seconds.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest heartbeat {slowest:?} beside {written} devices written"
    );
    assert!(
        finishing < Duration::from_secs(2),
        "an import's end took {finishing:?} beside {written} devices written"
    );
}
