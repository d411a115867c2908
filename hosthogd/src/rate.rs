//! Per-uid token buckets: how fast one user may ask for something costly.
//!
//! A bucket holds at most `burst` tokens and gains `per_minute` a minute;
//! each charged request takes one. A user who has none left is told how long to
//! wait. Only what the request cost is charged (a refused change writes
//! nothing and costs nothing). The map holds one entry per uid that asked recently (full buckets
//! are forgotten), so it is bounded by the number of accounts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets keyed by uid.
#[derive(Debug)]
pub struct Buckets {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<u32, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Buckets {
    pub fn new(per_minute: u32, burst: u32) -> Buckets {
        Buckets {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Whether `uid` has a token at `now`, or how long until there is one.
    /// Tokens are taken by [`Buckets::charge`] once a request has done what
    /// costs (so a refused request costs none).
    ///
    /// # Errors
    /// The wait until the next token.
    pub fn check(&self, uid: u32, now: Instant) -> Result<(), Duration> {
        let rate = self.rate();
        let burst = f64::from(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 4096 {
            // Forget buckets that have refilled: they hold no state.
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(uid).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// Takes a token from `uid`'s bucket. It may go below zero (requests
    /// checked at once and charged after): the debt is waited off before
    /// the next check passes.
    pub fn charge(&self, uid: u32) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&uid) {
            bucket.tokens -= 1.0;
        }
    }

    fn rate(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_uid() {
        let buckets = Buckets::new(60, 3);
        let t0 = Instant::now();
        let take = |uid, at| buckets.check(uid, at).map(|()| buckets.charge(uid));
        for _ in 0..3 {
            take(1000, t0).unwrap();
        }
        let wait = take(1000, t0).unwrap_err();
        assert!(wait > Duration::from_millis(990) && wait <= Duration::from_secs(1));
        // Another uid has its own bucket.
        take(1001, t0).unwrap();
        // One a second comes back, never more than the burst.
        take(1000, t0 + Duration::from_secs(1)).unwrap();
        take(1000, t0 + Duration::from_secs(1)).unwrap_err();
        for _ in 0..3 {
            take(1000, t0 + Duration::from_secs(100)).unwrap();
        }
        take(1000, t0 + Duration::from_secs(100)).unwrap_err();
        // Checked without a charge (a refused request) costs nothing.
        for _ in 0..10 {
            buckets.check(1002, t0).unwrap();
        }
        // Charges after a shared check go into debt, waited off after.
        buckets.charge(1000);
        buckets.charge(1000);
        assert!(buckets.check(1000, t0 + Duration::from_secs(101)).is_err());
        buckets.check(1000, t0 + Duration::from_secs(103)).unwrap();
    }
}
