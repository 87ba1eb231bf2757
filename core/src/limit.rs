//! Rate limiting: a token bucket per principal, so one caller cannot starve the others.

use crate::error::{Error, ErrorCode, Result};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket per principal subject: `burst` calls at once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `burst` calls at once and `per_second` calls per second on average.
    ///
    /// # Errors
    /// EXP002 `invalid_rate_limit` unless both are positive and finite.
    pub fn new(per_second: f64, burst: u32) -> Result<Self> {
        if !(per_second.is_finite() && per_second > 0.0 && burst > 0) {
            return Err(Error::validation(
                "invalid_rate_limit",
                "a rate limit needs a positive rate and burst",
            ));
        }
        Ok(RateLimiter {
            per_second,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `subject`.
    ///
    /// # Errors
    /// EXP006 `rate_limited` with `details.retry_after_ms` when the bucket is empty.
    pub fn check(&self, subject: &str, now: Instant) -> Result<()> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets
            .entry(subject.to_string())
            .or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - *tokens) / self.per_second);
        Err(Error::new(
            ErrorCode::RateLimited,
            "rate_limited",
            "too many calls: retry later",
        )
        .with_detail("retry_after_ms", wait.as_millis().max(1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_are_per_subject() {
        let l = RateLimiter::new(10.0, 2).unwrap();
        let t = Instant::now();
        l.check("a", t).unwrap();
        l.check("a", t).unwrap();
        let e = l.check("a", t).unwrap_err();
        assert_eq!(e.code(), ErrorCode::RateLimited);
        assert_eq!(e.details()["retry_after_ms"], 100);
        l.check("b", t).unwrap();
        l.check("a", t + Duration::from_millis(100)).unwrap();
        assert!(RateLimiter::new(0.0, 1).is_err());
    }
}
