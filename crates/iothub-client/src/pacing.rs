//! Spacing of queries under a hub's query quota, shared by every clone of a client.
//!
//! IoT Hub limits twin queries per minute per unit (S1: 20/min/unit, S2: 20/min/unit,
//! S3: 1000/min/unit; <https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling>).
//! With a configured rate the client spaces requests evenly. After a 429 it halves its rate
//! (multiplicative decrease, as TCP does) and speeds up again by 10% per successful
//! request, never past the configured rate: under a real quota the rate settles near
//! what the quota allows instead of running into 429 after 429.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
/// A configured rate is kept 3% under: requests leave exactly one interval apart, but the
/// network and a busy host shift arrivals by milliseconds, and a hub counting its quota per
/// window must never see one query too many (at 1,000/min the margin is 1.8 ms a query).
const QUOTA_MARGIN_PERCENT: u32 = 103;
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// The spacing after a first 429 of an unpaced client: the rate of an S3 unit's query
/// quota (1000/min), the highest a single unit allows.
const FIRST_THROTTLE_INTERVAL: Duration = Duration::from_millis(60);
/// Each success shortens the spacing by 10%: a 429 (doubling) is undone by about seven
/// successes, so throttles that are not about rate do not slow a long read for good,
/// while a real quota keeps the rate near what it allows.
const RECOVERY_FACTOR: f64 = 0.9;
/// Below this an unpaced client stops spacing requests at all.
const NEGLIGIBLE_INTERVAL: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub(crate) struct Pacer {
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    floor: Option<Duration>,
    interval: Option<Duration>,
    next_slot: Instant,
    /// No request starts before this: the latest `Retry-After` any request was told.
    blocked_until: Instant,
}

impl Pacer {
    pub(crate) fn new(queries_per_minute: Option<u32>) -> Self {
        let floor = queries_per_minute
            .filter(|&qpm| qpm > 0)
            .map(|qpm| MINUTE * QUOTA_MARGIN_PERCENT / qpm / 100);
        Self {
            state: Mutex::new(PacerState {
                floor,
                interval: floor,
                next_slot: Instant::now(),
                blocked_until: Instant::now(),
            }),
        }
    }

    /// Waits for this request's turn (its slot is taken before waiting, so concurrent
    /// callers queue up in order). Every clone of a client shares one pacer, so the parts of
    /// a partitioned read together stay under the rate, and a `Retry-After` that one part
    /// hears holds back the requests the others were already waiting to send.
    pub(crate) async fn acquire(&self) {
        loop {
            let start_at = {
                let mut state = self.state.lock().await;
                let now = Instant::now().max(state.blocked_until);
                match state.interval {
                    Some(interval) => {
                        let slot = state.next_slot.max(now);
                        state.next_slot = slot + interval;
                        slot
                    }
                    None => now,
                }
            };
            tokio::time::sleep_until(start_at).await;
            if self.state.lock().await.blocked_until <= Instant::now() {
                return;
            }
        }
    }

    /// After a 429: halve the rate (double the spacing, starting from
    /// [`FIRST_THROTTLE_INTERVAL`]) and let nobody start before `retry_after`.
    pub(crate) async fn on_throttled(&self, retry_after: Option<Duration>) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let slower = match state.interval {
            Some(interval) => interval * 2,
            None => FIRST_THROTTLE_INTERVAL,
        };
        state.interval = Some(
            slower
                .max(state.floor.unwrap_or(Duration::ZERO))
                .min(MAX_INTERVAL),
        );
        if let Some(wait) = retry_after {
            state.next_slot = state.next_slot.max(now + wait);
            state.blocked_until = state.blocked_until.max(now + wait);
        }
    }

    pub(crate) async fn on_success(&self) {
        let mut state = self.state.lock().await;
        let Some(interval) = state.interval else {
            return;
        };
        let faster = interval.mul_f64(RECOVERY_FACTOR);
        state.interval = match state.floor {
            Some(floor) => Some(faster.max(floor)),
            None if faster < NEGLIGIBLE_INTERVAL => None,
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
        // Paused clock: the elapsed time is exactly the four waits between five requests,
        // each the rate's interval plus the margin.
        assert_eq!(Instant::now() - start, Duration::from_millis(4 * 515));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_slows_down_then_success_recovers_to_the_floor() {
        let pacer = Pacer::new(Some(600));
        assert_eq!(pacer.interval().await, Some(Duration::from_millis(103)));
        pacer.acquire().await;
        pacer.on_throttled(Some(Duration::from_secs(1))).await;
        assert_eq!(pacer.interval().await, Some(Duration::from_millis(206)));
        pacer.on_throttled(None).await;
        assert_eq!(pacer.interval().await, Some(Duration::from_millis(412)));
        let before = Instant::now();
        pacer.acquire().await;
        assert!(Instant::now() - before >= Duration::from_secs(1));
        for _ in 0..200 {
            pacer.on_success().await;
        }
        assert_eq!(pacer.interval().await, Some(Duration::from_millis(103)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_holds_back_requests_already_waiting_for_their_slot() {
        let pacer = std::sync::Arc::new(Pacer::new(Some(600)));
        let start = Instant::now();
        pacer.acquire().await;
        // Another part of the read waits for the next slot (100 ms away)...
        let waiting = {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                pacer.acquire().await;
                Instant::now()
            })
        };
        tokio::task::yield_now().await;
        // ...when this part hears "Retry-After: 5".
        pacer.on_throttled(Some(Duration::from_secs(5))).await;
        let sent_at = waiting.await.unwrap();
        assert!(
            sent_at - start >= Duration::from_secs(5),
            "{:?}",
            sent_at - start
        );
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
