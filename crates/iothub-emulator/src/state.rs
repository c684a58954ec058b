//! State shared by every connection: policies, the registry, the faults and the counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::blob::BlobWriter;
use crate::error::HubError;
use crate::jobs::Jobs;
use crate::registry::Registry;
use crate::{AccessPolicy, Faults, Stats};

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) queries_served: AtomicU64,
    pub(crate) twins_served: AtomicU64,
    pub(crate) ranged_twins_served: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) quota_throttled: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) lost_answers: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) jobs_created: AtomicU64,
    pub(crate) jobs_cancelled: AtomicU64,
    pub(crate) jobs_throttled: AtomicU64,
    pub(crate) devices_exported: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) hub_host: String,
    pub(crate) seed: u64,
    pub(crate) policies: Vec<AccessPolicy>,
    pub(crate) max_page_size: u32,
    pub(crate) faults: RwLock<Faults>,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) stats: Counters,
    pub(crate) query_counter: AtomicU64,
    pub(crate) jobs_counter: AtomicU64,
    pub(crate) request_counter: AtomicU64,
    quota_window: Mutex<(Instant, u32)>,
    started: Instant,
    /// When each query request arrived (capped), to check a client's pacing.
    query_arrivals: Mutex<Vec<Duration>>,
    pub(crate) jobs: Jobs,
    pub(crate) blob: BlobWriter,
}

/// Query arrivals kept for [`Shared::query_arrivals`]: a 1,000,000-device read is 10,000.
const MAX_QUERY_ARRIVALS: usize = 1_000_000;

/// What the connection layer does with one request before routing it.
pub(crate) enum RequestFault {
    None,
    Drop,
    ServerError(u16),
    /// Handle the request, then close the connection instead of answering.
    LoseAnswer,
}

impl Shared {
    pub(crate) fn new(
        hub_host: String,
        seed: u64,
        policies: Vec<AccessPolicy>,
        max_page_size: u32,
        faults: Faults,
        registry: Registry,
        blob: BlobWriter,
    ) -> Self {
        Shared {
            hub_host,
            seed,
            policies,
            max_page_size,
            faults: RwLock::new(faults),
            registry: RwLock::new(registry),
            stats: Counters::default(),
            query_counter: AtomicU64::new(0),
            jobs_counter: AtomicU64::new(0),
            request_counter: AtomicU64::new(0),
            quota_window: Mutex::new((Instant::now(), 0)),
            started: Instant::now(),
            query_arrivals: Mutex::new(Vec::new()),
            jobs: Jobs::default(),
            blob,
        }
    }

    pub(crate) fn faults(&self) -> Faults {
        match self.faults.read() {
            Ok(faults) => faults.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        match self.faults.write() {
            Ok(mut slot) => *slot = faults,
            Err(poisoned) => *poisoned.into_inner() = faults,
        }
    }

    pub(crate) fn registry_read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn registry_write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn effective_max_page(&self) -> u32 {
        let cap = self.faults().page_size_cap.unwrap_or(u32::MAX);
        self.max_page_size.min(cap).max(1)
    }

    /// Decides, deterministically from the seed and the request's ordinal, whether this request
    /// is dropped, answered with a 5xx, or handled with its answer lost.
    pub(crate) fn request_fault(&self, faults: &Faults) -> RequestFault {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let draw = |salt: u64| {
            let h = crate::seed::mix(self.seed ^ crate::seed::mix(n ^ salt));
            (h >> 11) as f64 / (1u64 << 53) as f64
        };
        if faults.drop_rate > 0.0 && draw(0xD20) < faults.drop_rate {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return RequestFault::Drop;
        }
        if faults.server_error_rate > 0.0 && draw(0x5E) < faults.server_error_rate {
            self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
            let code = if draw(0x503) < 0.5 { 500 } else { 503 };
            return RequestFault::ServerError(code);
        }
        if faults.lost_answer_rate > 0.0 && draw(0x105) < faults.lost_answer_rate {
            return RequestFault::LoseAnswer;
        }
        RequestFault::None
    }

    pub(crate) fn throttle_query(&self) -> Result<(), HubError> {
        let faults = self.faults();
        let n = self.query_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let retry_after = faults.retry_after.as_secs();
        if let Some(every) = faults.throttle_every.filter(|k| *k > 0) {
            if n.is_multiple_of(u64::from(every)) {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                return Err(HubError::throttled(retry_after));
            }
        }
        if let Some(quota) = faults.queries_per_minute {
            let mut window = self.quota_window.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let length = faults.quota_window_length();
            if now.duration_since(window.0) >= length {
                *window = (now, 0);
            }
            window.1 = window.1.saturating_add(1);
            if window.1 > quota {
                let left = length.saturating_sub(now.duration_since(window.0));
                let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                self.stats.quota_throttled.fetch_add(1, Ordering::Relaxed);
                return Err(HubError::throttled(seconds.max(1)));
            }
        }
        Ok(())
    }

    /// The jobs API's own throttle (`Faults::jobs_throttle_every`).
    pub(crate) fn throttle_job(&self) -> Result<(), HubError> {
        let faults = self.faults();
        let n = self.jobs_counter.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(every) = faults.jobs_throttle_every.filter(|k| *k > 0) {
            if n.is_multiple_of(u64::from(every)) {
                self.stats.jobs_throttled.fetch_add(1, Ordering::Relaxed);
                return Err(HubError::throttled(faults.retry_after.as_secs()));
            }
        }
        Ok(())
    }

    /// Notes that a query request arrived (before any fault or check), for pacing tests.
    pub(crate) fn note_query_arrival(&self) {
        let mut arrivals = self
            .query_arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if arrivals.len() < MAX_QUERY_ARRIVALS {
            arrivals.push(self.started.elapsed());
        }
    }

    pub(crate) fn query_arrivals(&self) -> Vec<Duration> {
        self.query_arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let s = &self.stats;
        Stats {
            requests: s.requests.load(Ordering::Relaxed),
            queries_served: s.queries_served.load(Ordering::Relaxed),
            twins_served: s.twins_served.load(Ordering::Relaxed),
            ranged_twins_served: s.ranged_twins_served.load(Ordering::Relaxed),
            throttled: s.throttled.load(Ordering::Relaxed),
            quota_throttled: s.quota_throttled.load(Ordering::Relaxed),
            server_errors: s.server_errors.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            lost_answers: s.lost_answers.load(Ordering::Relaxed),
            unauthorized: s.unauthorized.load(Ordering::Relaxed),
            jobs_created: s.jobs_created.load(Ordering::Relaxed),
            jobs_cancelled: s.jobs_cancelled.load(Ordering::Relaxed),
            jobs_throttled: s.jobs_throttled.load(Ordering::Relaxed),
            devices_exported: s.devices_exported.load(Ordering::Relaxed),
        }
    }
}
