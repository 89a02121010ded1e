//! Per-peer token buckets (time is a parameter).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// A token bucket per key: `burst` tokens, refilled at `per_sec` a second.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter allowing `per_sec` events a second with bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key` at `now`; `false` if the bucket is empty.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        let (burst, rate) = (self.burst, self.per_sec);
        let (tokens, at) = self.buckets.entry(key.clone()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets `key` (e.g. when the peer disconnects).
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, 3);
        assert!((0..3).all(|_| r.allow(&1u8, t0)));
        assert!(!r.allow(&1u8, t0));
        assert!(r.allow(&2u8, t0), "buckets are per key");
        assert!(r.allow(&1u8, t0 + Duration::from_millis(500)));
        assert!(!r.allow(&1u8, t0 + Duration::from_millis(500)));
    }
}
