//! The engine's injectable clock: every timestamp trialport writes comes from here, never from a caller.

use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::Mutex;

/// A source of UTC time.
///
/// # Contract
/// `now` is cheap and never fails. It need not be monotonic: the audit trail orders by sequence number.
pub trait Clock: Send + Sync {
    /// The current UTC time.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told otherwise: for tests and for re-deriving past exports byte for byte.
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<DateTime<Utc>>,
}

impl FixedClock {
    /// A clock fixed at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        FixedClock {
            now: Mutex::new(at),
        }
    }

    /// Sets the time.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Moves the time forward (or backward, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// RFC 3339 in UTC with a `Z`, with fractional seconds only when there are any.
pub fn format_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The creation time stamped into a document written outside a job (`convert`, the bindings' `write`):
/// `SOURCE_DATE_EPOCH` (whole seconds since 1970-01-01T00:00:00Z, the reproducible-builds convention) when it is
/// set to a valid number, else the operating system's clock. Jobs take theirs from the engine's clock instead.
pub fn creation_time() -> DateTime<Utc> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(Utc::now)
}
