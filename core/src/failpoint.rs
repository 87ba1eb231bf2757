//! Named crash points, so that tests can kill a process exactly between two writes.
//!
//! Every write of a job, an API key, a signer's credential, a key-encryption key, an audit event or the audit
//! archive passes through [`hit`] with a name from [`FAILPOINTS`]. In builds with debug assertions (every test
//! build) or the `failpoints` feature, a process whose environment has `TRIALPORT_FAILPOINT=<name>` aborts at the
//! first hit of that point, and with `TRIALPORT_FAILPOINT=<name>@<n>` at its `n`-th hit: like a `kill -9`, no
//! destructor runs, nothing is flushed.
//! Release builds without the feature compile the checks away.

/// Every failpoint: the engine's (`store.commit.*` around the commit of a transaction that records audit events;
/// a job's, in the order a job meets them; a signer's credential about to be
/// written; a key rotation's, in the order of its steps), then `init`'s, in the order of its steps.
pub const FAILPOINTS: &[&str] = &[
    "store.commit.before",
    "store.commit.after",
    "audit.archive.before_write",
    "job.claim.after",
    "job.artifact.before_complete",
    "job.artifact.after_complete",
    "job.finish.before",
    "signing.commit.before",
    "signing.commit.after",
    "kek.pending.after",
    "kek.event.after",
    "kek.current.after",
    "init.marker.after",
    "init.secret.after",
    "init.keys.after",
    "init.deid.after",
    "init.signing.after",
    "init.admin_key.after",
    "init.delivered.after",
    "init.config.after",
];

/// Aborts the process when the environment chose this failpoint (see the module docs); otherwise does nothing.
#[inline]
pub fn hit(name: &str) {
    #[cfg(any(debug_assertions, feature = "failpoints"))]
    armed::check(name);
    #[cfg(not(any(debug_assertions, feature = "failpoints")))]
    let _ = name;
}

#[cfg(any(debug_assertions, feature = "failpoints"))]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The chosen failpoint and the hit that aborts (1 for the first).
    fn chosen() -> Option<&'static (String, u64)> {
        static CHOSEN: OnceLock<Option<(String, u64)>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| {
                let text = std::env::var("TRIALPORT_FAILPOINT").ok()?;
                match text.split_once('@') {
                    Some((name, n)) => Some((name.to_string(), n.parse().ok()?)),
                    None => Some((text, 1)),
                }
            })
            .as_ref()
    }

    pub(super) fn check(name: &str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        if let Some((chosen, at)) = chosen() {
            if chosen == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *at {
                std::process::abort();
            }
        }
    }
}
