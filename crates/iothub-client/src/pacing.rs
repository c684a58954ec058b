//! Spacing of queries under a hub's query quota, shared by every clone of a client.
//!
//! IoT Hub limits twin queries per minute per unit (S1: 20/min/unit, S2: 20/min/unit,
//! S3: 1000/min/unit; <https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling>).
//! With a configured rate the client spaces requests evenly. After a 429 it slows to half
//! the rate it was sending at (multiplicative decrease) and speeds up again by a few
//! percent per successful request (additive-ish increase), never past the configured rate.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Below this the pacer stops spacing requests at all (no configured rate).
const NEGLIGIBLE_INTERVAL: Duration = Duration::from_millis(1);
const RECENT_REQUESTS_KEPT: usize = 64;

#[derive(Debug)]
pub(crate) struct Pacer {
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    floor: Option<Duration>,
    interval: Option<Duration>,
    next_slot: Instant,
    recent: VecDeque<Instant>,
}

impl Pacer {
    pub(crate) fn new(queries_per_minute: Option<u32>) -> Self {
        let floor = queries_per_minute
            .filter(|&qpm| qpm > 0)
            .map(|qpm| WINDOW / qpm);
        Self {
            state: Mutex::new(PacerState {
                floor,
                interval: floor,
                next_slot: Instant::now(),
                recent: VecDeque::with_capacity(RECENT_REQUESTS_KEPT),
            }),
        }
    }

    /// Waits for this request's turn and records it.
    pub(crate) async fn acquire(&self) {
        let start_at = {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            let start_at = match state.interval {
                Some(interval) => {
                    let slot = state.next_slot.max(now);
                    state.next_slot = slot + interval;
                    slot
                }
                None => now,
            };
            if state.recent.len() == RECENT_REQUESTS_KEPT {
                state.recent.pop_front();
            }
            state.recent.push_back(start_at);
            start_at
        };
        tokio::time::sleep_until(start_at).await;
    }

    /// After a 429: halve the recent rate, and let nobody start before `retry_after`.
    pub(crate) async fn on_throttled(&self, retry_after: Option<Duration>) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        while state
            .recent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) > WINDOW)
        {
            state.recent.pop_front();
        }
        let recent_spacing = match (state.recent.front(), state.recent.back()) {
            (Some(&first), Some(&last)) if state.recent.len() > 1 => {
                (last - first) / (state.recent.len() as u32 - 1)
            }
            _ => Duration::ZERO,
        };
        let current = state.interval.unwrap_or(Duration::ZERO);
        let slower = (current.max(recent_spacing) * 2)
            .max(NEGLIGIBLE_INTERVAL * 10)
            .max(state.floor.unwrap_or(Duration::ZERO))
            .min(MAX_INTERVAL);
        state.interval = Some(slower);
        if let Some(wait) = retry_after {
            state.next_slot = state.next_slot.max(now + wait);
        }
    }

    pub(crate) async fn on_success(&self) {
        let mut state = self.state.lock().await;
        let Some(interval) = state.interval else {
            return;
        };
        let faster = interval.mul_f64(0.95);
        state.interval = match state.floor {
            Some(floor) => Some(faster.max(floor)),
            None if faster < NEGLIGIBLE_INTERVAL * 10 => None,
            None => Some(faster),
        };
    }

    #[cfg(test)]
    async fn interval(&self) -> Option<Duration> {
        self.state.lock().await.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn configured_rate_spaces_requests_evenly() {
        let pacer = Pacer::new(Some(120));
        let start = Instant::now();
        for _ in 0..5 {
            pacer.acquire().await;
        }
        // Paused clock: the elapsed time is exactly the four waits between five requests.
        assert_eq!(Instant::now() - start, Duration::from_millis(2000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_slows_down_then_success_recovers_to_the_floor() {
        let pacer = Pacer::new(Some(600));
        assert_eq!(pacer.interval().await, Some(Duration::from_millis(100)));
        pacer.acquire().await;
        pacer.acquire().await;
        pacer.on_throttled(Some(Duration::from_secs(1))).await;
        let slowed = pacer.interval().await.unwrap();
        assert!(slowed >= Duration::from_millis(200), "{slowed:?}");
        let before = Instant::now();
        pacer.acquire().await;
        assert!(Instant::now() - before >= Duration::from_secs(1));
        for _ in 0..200 {
            pacer.on_success().await;
        }
        assert_eq!(pacer.interval().await, Some(Duration::from_millis(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_client_learns_from_a_429_and_forgets_it() {
        let pacer = Pacer::new(None);
        assert_eq!(pacer.interval().await, None);
        pacer.on_throttled(None).await;
        assert!(pacer.interval().await.is_some());
        for _ in 0..200 {
            pacer.on_success().await;
        }
        assert_eq!(pacer.interval().await, None);
    }
}
