//! Where an import's devices come from: the hub's twin query, read by one reader or, when
//! the hub's quota allows more than one reader can use, by several readers over disjoint
//! parts of the registry (see `iothub_client::partition`).
//!
//! The source sends pages (already mapped, so mapping runs in the reader tasks beside the
//! writer) into a channel and checks, for a partitioned read, that the parts' counts add up
//! to the hub's count.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iothub_client::partition::{plan_partition, sample_ids};
use iothub_client::{ExportError, HubClient, HubError, IdRange, Partition, Twin};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info};

/// Hubs with fewer pages than this are read by one reader: planning parts costs queries
/// (a sample page and a few dozen counts), worth it only when there is much to read.
pub const MIN_PAGES_FOR_PARTS: u64 = 50;
/// Parts per reader: more parts than readers even out the end of a read (a reader that
/// finishes early takes the next part instead of idling while one long part finishes),
/// but every part costs planning counts, which come out of the same quota as the pages
/// and delay the first page. Two measured best on a quota-bound hub (`SCENARIOS=azure`:
/// 70.1 s for 1,000 pages under 1,000 queries a minute, against 72.5 s with four).
const PARTS_PER_READER: usize = 2;
/// Readers are sized for this much more than the measured round trip needs, so a slower
/// page now and then does not leave the quota unused.
const READER_HEADROOM: f64 = 1.5;

/// How to read a hub.
#[derive(Clone, Debug)]
pub struct ReadPlan {
    /// The most readers one import uses (the operator's `--iothub-readers`).
    pub max_readers: usize,
    /// The operator's pace for the hub, if any.
    pub queries_per_minute: Option<u32>,
    /// Twins per page the client asks for.
    pub page_size: u32,
}

/// Why reading the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The export path (`crate::export_source`).
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("the hub returned {read} devices across the parts of the registry but counts {counted}: devices were added or removed while the import ran, or the hub did not answer every part; start the import again")]
    Incomplete { read: u64, counted: u64 },
    #[error("a reader of the registry stopped unexpectedly; start the import again")]
    ReaderFailed,
    #[error("the hub answered the query of one part of the registry with a device outside it; the import stopped so that no device is counted twice")]
    OutsidePart,
}

/// The hub's device count, and how long asking took (a measure of its round trip).
pub struct HubCount {
    pub total: u64,
    pub round_trip: Duration,
}

pub async fn count(client: &HubClient) -> Result<HubCount, HubError> {
    let started = Instant::now();
    let total = client.count_devices().await?;
    Ok(HubCount {
        total,
        round_trip: started.elapsed(),
    })
}

/// How many readers the hub's size, quota and round trip call for (1: no partitioning).
pub fn readers_for(plan: &ReadPlan, hub: &HubCount) -> usize {
    let pages = hub.total.div_ceil(u64::from(plan.page_size.max(1)));
    if plan.max_readers <= 1 || pages < MIN_PAGES_FOR_PARTS {
        return 1;
    }
    let wanted = match plan.queries_per_minute {
        // One reader sends one query per round trip; the quota allows qpm/60 per second.
        Some(qpm) => {
            let per_second = f64::from(qpm) / 60.0;
            (per_second * hub.round_trip.as_secs_f64() * READER_HEADROOM).ceil() as usize
        }
        // Unknown quota: start with every reader allowed; 429s teach the shared pacer.
        None => plan.max_readers,
    };
    wanted.clamp(1, plan.max_readers)
}

/// Reads every device and sends the mapped pages into `pages`; a failure is the last item
/// sent. Returns when everything is sent, or at the first failure. Dropping the future
/// (aborting its task) stops every reader.
pub async fn read_all<T, F>(
    client: HubClient,
    plan: ReadPlan,
    hub: HubCount,
    map: F,
    pages: mpsc::Sender<Result<T, ReadError>>,
) where
    T: Send + 'static,
    F: Fn(&[Twin]) -> T + Send + Sync + 'static,
{
    let readers = readers_for(&plan, &hub);
    let map = Arc::new(map);
    let result = if readers <= 1 {
        read_part(&client, &IdRange::whole(), false, hub.total, &*map, &pages)
            .await
            .map(drop)
    } else {
        read_partitioned(client, readers, hub.total, map, &pages).await
    };
    if let Err(err) = result {
        let _ = pages.send(Err(err)).await;
    }
}

async fn read_partitioned<T, F>(
    client: HubClient,
    readers: usize,
    total: u64,
    map: Arc<F>,
    pages: &mpsc::Sender<Result<T, ReadError>>,
) -> Result<(), ReadError>
where
    T: Send + 'static,
    F: Fn(&[Twin]) -> T + Send + Sync + 'static,
{
    let planning = Instant::now();
    let sample = sample_ids(&client).await?;
    let planned = plan_partition(&client, total, readers * PARTS_PER_READER, &sample).await?;
    let partition: Partition = planned.partition;
    // Largest parts first: the read ends when its last part does, and a small last part
    // keeps every reader busy until the end.
    let mut parts: Vec<(IdRange, u64)> = partition
        .parts()
        .into_iter()
        .zip(planned.estimates)
        .collect();
    parts.sort_by_key(|part| std::cmp::Reverse(part.1));
    let parts: Vec<IdRange> = parts.into_iter().map(|(part, _)| part).collect();
    info!(
        hub = client.host_name(),
        readers,
        parts = parts.len(),
        planning_ms = planning.elapsed().as_millis() as u64,
        "reading the registry in parts"
    );
    debug!(boundaries = ?partition.boundaries(), "partition");
    let queue = Arc::new(Mutex::new(parts.into_iter().collect::<VecDeque<IdRange>>()));
    let mut tasks = JoinSet::new();
    for _ in 0..readers.min(partition.len()) {
        let client = client.clone();
        let queue = Arc::clone(&queue);
        let map = Arc::clone(&map);
        let pages = pages.clone();
        tasks.spawn(async move {
            let mut read = 0u64;
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(part) = next else {
                    return Ok::<u64, ReadError>(read);
                };
                read += read_part(&client, &part, true, total, &*map, &pages).await?;
            }
        });
    }
    let mut read = 0u64;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(part_read)) => read += part_read,
            Ok(Err(err)) => return Err(err),
            // The set is only aborted by dropping this future; a reader that ended without a
            // result panicked, and its part was not read.
            Err(_) => return Err(ReadError::ReaderFailed),
        }
    }
    if read != total {
        // The registry may have changed while it was read; only a count that matches
        // neither before nor after is a failure.
        let now = client.count_devices().await?;
        if read != now {
            return Err(ReadError::Incomplete {
                read,
                counted: total,
            });
        }
    }
    Ok(())
}

/// Pages through one part, each page retried by the client with the same continuation
/// token. Returns the twins read; `Err` after the receiver is gone is reported as done.
/// No part of a hub that reported `hub_total` devices may page far past it (a hub that
/// pages in a loop or lies about its count ends the read; see `DevicePages::expecting`).
async fn read_part<T, F>(
    client: &HubClient,
    part: &IdRange,
    check_part: bool,
    hub_total: u64,
    map: &F,
    pages: &mpsc::Sender<Result<T, ReadError>>,
) -> Result<u64, ReadError>
where
    F: Fn(&[Twin]) -> T,
{
    let mut reader = client
        .query_devices(&part.twin_query())
        .expecting(hub_total);
    let mut read = 0u64;
    while let Some(twins) = reader.next_page().await? {
        if check_part && !twins.iter().all(|twin| part.contains(&twin.device_id)) {
            return Err(ReadError::OutsidePart);
        }
        read += twins.len() as u64;
        if pages.send(Ok(map(&twins))).await.is_err() {
            break;
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(max_readers: usize, qpm: Option<u32>) -> ReadPlan {
        ReadPlan {
            max_readers,
            queries_per_minute: qpm,
            page_size: 100,
        }
    }

    fn hub(total: u64, round_trip_ms: u64) -> HubCount {
        HubCount {
            total,
            round_trip: Duration::from_millis(round_trip_ms),
        }
    }

    #[test]
    fn small_hubs_and_tight_quotas_keep_one_reader() {
        // A 50-device hub: one reader, no planning queries.
        assert_eq!(readers_for(&plan(8, None), &hub(50, 150)), 1);
        assert_eq!(readers_for(&plan(8, None), &hub(4_900, 150)), 1);
        // S1 (20/min): one reader at 150 ms could send 400/min, far more than allowed.
        assert_eq!(readers_for(&plan(8, Some(20)), &hub(100_000, 150)), 1);
        assert_eq!(readers_for(&plan(1, None), &hub(100_000, 150)), 1);
    }

    #[test]
    fn a_generous_quota_gets_enough_readers_to_use_it() {
        // S3 (1000/min) at 150 ms: 16.7 queries/s, 2.5 readers' worth, with headroom 4.
        assert_eq!(readers_for(&plan(8, Some(1000)), &hub(100_000, 150)), 4);
        assert_eq!(readers_for(&plan(3, Some(1000)), &hub(100_000, 150)), 3);
        assert_eq!(readers_for(&plan(8, None), &hub(100_000, 150)), 8);
    }
}
