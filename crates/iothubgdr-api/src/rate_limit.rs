//! Fair sharing: requests are rate-limited per tenant, and the token endpoint per client id
//! and per remote address, with `governor`'s keyed GCRA limiters. Past a limit the answer is
//! 429 (code 8) with `Retry-After` and `Archivist-Rate-Limit-Reset`.
//!
//! Keys come from outside (client ids, addresses), so the limiters' maps are swept of keys
//! that are back to a full bucket every [`SWEEP_EVERY`] checks: memory stays bounded by the
//! keys seen between two sweeps, not by every key ever sent.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::ApiError;

/// Checks between two sweeps of a limiter's map.
const SWEEP_EVERY: u64 = 4096;

/// How fast each kind of caller may go. Bursts let a client that was quiet catch up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests a second one tenant may make, all its apps together.
    pub tenant_per_second: u32,
    /// Requests one tenant may make at once after a quiet spell.
    pub tenant_burst: u32,
    /// Token requests a minute for one client id (also the burst).
    pub token_per_client_per_minute: u32,
    /// Token requests a minute from one remote address (also the burst).
    pub token_per_address_per_minute: u32,
}

impl Default for RateLimitConfig {
    /// Far above what a person, a script or the CLI does: a tenant polling imports and
    /// paging lists makes a few requests a second; a client asks for a token an hour.
    fn default() -> Self {
        Self {
            tenant_per_second: 100,
            tenant_burst: 1000,
            token_per_client_per_minute: 120,
            token_per_address_per_minute: 600,
        }
    }
}

struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
    what: &'static str,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(quota: Quota, what: &'static str) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
            what,
        }
    }

    fn check(&self, key: &K) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up, at least one: a client that waits this long is
            // served.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::resource_exhausted(
                format!(
                    "too many requests {}: retry after {} s",
                    self.what,
                    seconds.max(1)
                ),
                seconds.max(1),
            )
        })
    }
}

/// The limiters of one server process.
pub struct RateLimits {
    tenant: Keyed<Uuid>,
    token_client: Keyed<String>,
    token_address: Keyed<IpAddr>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

fn at_least_one(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Self {
        let tenant = Quota::per_second(at_least_one(config.tenant_per_second)).allow_burst(
            at_least_one(config.tenant_burst.max(config.tenant_per_second)),
        );
        let client = Quota::per_minute(at_least_one(config.token_per_client_per_minute));
        let address = Quota::per_minute(at_least_one(config.token_per_address_per_minute));
        Self {
            tenant: Keyed::new(tenant, "for this tenant"),
            token_client: Keyed::new(client, "for this client_id"),
            token_address: Keyed::new(address, "for tokens from this address"),
        }
    }

    /// One request of `tenant`.
    pub fn check_tenant(&self, tenant: Uuid) -> Result<(), ApiError> {
        self.tenant.check(&tenant)
    }

    /// One token request for `client_id` from `address` (when known).
    pub fn check_token(&self, client_id: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        if let Some(address) = address {
            self.token_address.check(&address)?;
        }
        self.token_client.check(&client_id.to_owned())
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new(RateLimitConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_tenant_is_held_back_while_another_is_served() {
        let limits = RateLimits::new(RateLimitConfig {
            tenant_per_second: 1,
            tenant_burst: 5,
            ..RateLimitConfig::default()
        });
        let (flooder, other) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..5 {
            limits.check_tenant(flooder).unwrap();
        }
        let refused = limits.check_tenant(flooder).unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert_eq!(refused.retry_after, Some(1));
        limits.check_tenant(other).unwrap();
    }

    #[test]
    fn token_requests_are_limited_per_client_and_per_address() {
        let limits = RateLimits::new(RateLimitConfig {
            token_per_client_per_minute: 2,
            token_per_address_per_minute: 3,
            ..RateLimitConfig::default()
        });
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        limits.check_token("a", Some(here)).unwrap();
        limits.check_token("a", Some(there)).unwrap();
        let by_client = limits.check_token("a", Some(there)).unwrap_err();
        assert!(by_client.message.contains("client_id"));
        assert!(by_client.retry_after.unwrap() >= 1);
        limits.check_token("b", Some(here)).unwrap();
        limits.check_token("c", Some(here)).unwrap();
        // `here` has asked three times already.
        let by_address = limits.check_token("d", Some(here)).unwrap_err();
        assert!(by_address.message.contains("address"));
    }
}
