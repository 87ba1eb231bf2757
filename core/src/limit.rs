//! Rate limiting: each principal's first N calls in a window pass, the rest fail with EXP006 until the window ends.
//!
//! The count lives behind [`RateLimitStore`], so that every process of a deployment shares one quota per
//! principal: [`MemoryRateLimitStore`] for one process, [`crate::store::SqliteRateLimitStore`] for every process of
//! a home (a table in its database), and a PostgreSQL store later for several machines. [`RateLimiter`] holds the
//! policy and turns a count into a [`RateLimitStatus`]: what the HTTP service sends as the IETF `RateLimit` and
//! `RateLimit-Policy` header fields (draft-ietf-httpapi-ratelimit-headers-09), so the service computes no quota
//! itself.
//!
//! A window starts at a principal's first call after the previous window ended and lasts the policy's
//! `window`; calls in it are counted, refused ones included.

use crate::error::Reason;
use crate::error::{Error, ErrorCode, Result};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How many calls a principal may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Calls that pass in one window (at least 1).
    pub requests: u32,
    /// The window's length (at least one millisecond).
    pub window: Duration,
}

impl RateLimitPolicy {
    /// `requests` calls per `window`.
    ///
    /// # Errors
    /// EXP002 `invalid_rate_limit` (field `rate_limit`) unless both are positive.
    pub fn new(requests: u32, window: Duration) -> Result<Self> {
        if requests == 0 || window.as_millis() == 0 {
            return Err(Error::validation(
                Reason::InvalidRateLimit,
                "a rate limit needs a positive number of requests and a positive window",
            )
            .with_field("rate_limit"));
        }
        Ok(RateLimitPolicy { requests, window })
    }

    /// The window in whole seconds, rounded up (as the `w` parameter of `RateLimit-Policy`).
    pub fn window_seconds(&self) -> u64 {
        self.window.as_millis().div_ceil(1000) as u64
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What one call learned of its principal's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// The policy.
    pub policy: RateLimitPolicy,
    /// Calls left in the current window after this one.
    pub remaining: u32,
    /// Time until the current window ends and the quota is whole again.
    pub reset: Duration,
    /// Whether this call passed.
    pub allowed: bool,
}

impl RateLimitStatus {
    /// The time until the window ends in whole seconds, rounded up (the `t` parameter of `RateLimit` and the
    /// `Retry-After` of a refused call).
    pub fn reset_seconds(&self) -> u64 {
        self.reset.as_millis().div_ceil(1000) as u64
    }

    /// EXP006 `rate_limited` for a refused call, with `details.retry_after_ms`, `limit` and `window_seconds`.
    pub fn error(&self) -> Error {
        Error::new(
            ErrorCode::RateLimited,
            Reason::RateLimited,
            "too many calls: retry later",
        )
        .with_detail("retry_after_ms", self.reset.as_millis().max(1) as u64)
        .with_detail("limit", self.policy.requests)
        .with_detail("window_seconds", self.policy.window_seconds())
    }
}

/// One principal's current window, as a [`RateLimitStore`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// When the window started, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// Calls counted in it, this one included.
    pub count: u64,
}

/// Where call counts live: shared by every process that enforces one quota.
///
/// # Contract
/// [`RateLimitStore::hit`] is atomic across every process using the store: of concurrent hits of one key, each
/// sees a distinct count. A key whose window has ended (`started_ms + window_ms <= now_ms`) starts a new window at
/// `now_ms` with count 1; otherwise its count grows by one. Keys are opaque (a principal's subject).
pub trait RateLimitStore: Send + Sync + std::fmt::Debug {
    /// Counts one call of `key` at `now_ms` in windows of `window_ms`, and returns its window after the call.
    ///
    /// # Errors
    /// EXP005 when the store cannot be written.
    fn hit(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<WindowCount>;
}

/// A [`RateLimitStore`] in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryRateLimitStore {
    windows: Mutex<HashMap<String, WindowCount>>,
}

impl MemoryRateLimitStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RateLimitStore for MemoryRateLimitStore {
    fn hit(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<WindowCount> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(key.to_string()).or_insert(WindowCount {
            started_ms: now_ms,
            count: 0,
        });
        if w.started_ms.saturating_add(window_ms) <= now_ms {
            *w = WindowCount {
                started_ms: now_ms,
                count: 0,
            };
        }
        w.count += 1;
        Ok(*w)
    }
}

/// A policy enforced over a [`RateLimitStore`].
#[derive(Debug, Clone)]
pub struct RateLimiter {
    policy: RateLimitPolicy,
    store: std::sync::Arc<dyn RateLimitStore>,
}

impl RateLimiter {
    /// `policy` counted in `store`.
    pub fn new(policy: RateLimitPolicy, store: std::sync::Arc<dyn RateLimitStore>) -> Self {
        RateLimiter { policy, store }
    }

    /// A limiter in this process's memory allowing `burst` calls at once and `per_second` calls per second on
    /// average: `burst` calls per window of `burst / per_second` seconds.
    ///
    /// # Errors
    /// EXP002 `invalid_rate_limit` unless both are positive and finite.
    pub fn in_memory(per_second: f64, burst: u32) -> Result<Self> {
        let secs = f64::from(burst) / per_second;
        if !(per_second.is_finite() && per_second > 0.0 && secs.is_finite()) {
            return Err(Error::validation(
                Reason::InvalidRateLimit,
                "a rate limit needs a positive rate and burst",
            )
            .with_field("rate_limit"));
        }
        let policy = RateLimitPolicy::new(burst, Duration::from_secs_f64(secs.min(1e9)))?;
        Ok(Self::new(
            policy,
            std::sync::Arc::new(MemoryRateLimitStore::new()),
        ))
    }

    /// The policy.
    pub fn policy(&self) -> RateLimitPolicy {
        self.policy
    }

    /// Counts one call of `key` at `now` and tells whether it passes, with the quota left.
    ///
    /// # Errors
    /// EXP005 when the store fails (a refused call is not an error here: see [`RateLimitStatus::allowed`]).
    pub fn check(&self, key: &str, now: DateTime<Utc>) -> Result<RateLimitStatus> {
        let now_ms = now.timestamp_millis();
        let window_ms = self.policy.window_ms();
        let w = self.store.hit(key, now_ms, window_ms)?;
        let ends = w.started_ms.saturating_add(window_ms);
        let reset_ms = ends.saturating_sub(now_ms).clamp(0, window_ms);
        let requests = u64::from(self.policy.requests);
        Ok(RateLimitStatus {
            policy: self.policy,
            remaining: requests.saturating_sub(w.count) as u32,
            reset: Duration::from_millis(reset_ms as u64),
            allowed: w.count <= requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_first_n_calls_of_a_window_pass_per_key() {
        let l = RateLimiter::new(
            RateLimitPolicy::new(2, Duration::from_secs(10)).unwrap(),
            Arc::new(MemoryRateLimitStore::new()),
        );
        let s = l.check("a", at(0)).unwrap();
        assert_eq!((s.allowed, s.remaining, s.reset_seconds()), (true, 1, 10));
        let s = l.check("a", at(2_500)).unwrap();
        assert_eq!((s.allowed, s.remaining, s.reset_seconds()), (true, 0, 8));
        let s = l.check("a", at(3_000)).unwrap();
        assert_eq!((s.allowed, s.remaining), (false, 0));
        assert_eq!(s.reset, Duration::from_millis(7_000));
        let e = s.error();
        assert_eq!(e.code(), ErrorCode::RateLimited);
        assert_eq!(e.details()["retry_after_ms"], 7_000);
        assert_eq!(e.details()["limit"], 2);
        // Another key has its own window.
        assert!(l.check("b", at(3_000)).unwrap().allowed);
        // The window ends 10 s after its first call: a new one starts.
        let s = l.check("a", at(10_000)).unwrap();
        assert_eq!((s.allowed, s.remaining, s.reset_seconds()), (true, 1, 10));
    }

    #[test]
    fn policies_and_in_memory_limits_are_checked() {
        assert!(RateLimitPolicy::new(0, Duration::from_secs(1)).is_err());
        assert!(RateLimitPolicy::new(1, Duration::ZERO).is_err());
        assert!(RateLimiter::in_memory(0.0, 1).is_err());
        assert!(RateLimiter::in_memory(f64::NAN, 1).is_err());
        let l = RateLimiter::in_memory(0.5, 3).unwrap();
        assert_eq!(l.policy().window, Duration::from_secs(6));
        assert_eq!(l.policy().window_seconds(), 6);
    }
}
