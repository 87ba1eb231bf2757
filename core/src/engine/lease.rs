//! Job execution with leases: a worker claims a job for one attempt with a lease (owner, epoch, expiry), renews it
//! while it works, and every write of the attempt is fenced by the epoch, so a worker that lost its lease (expired
//! and rescued by another engine, or given back) can change nothing. Expired leases are rescued by any engine on
//! the store: the job goes back to the queue, or fails once it has had its attempts.
//!
//! Every step is one store transaction with its audit event: `job.running` (claim), `job.requeued` (rescue or
//! release), and the end events written by [`super::run`].

use super::Inner;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::job::{Job, JobState, Lease};
use crate::store::Tx;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long a lease lasts unless renewed, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Attempts a job gets by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Expired leases rescued per transaction.
const RESCUE_BATCH: u32 = 100;

/// An attempt this process is running, as the lease keeper sees it.
pub(crate) struct Held {
    /// The attempt's epoch.
    pub(crate) epoch: u32,
    /// Set to stop the attempt (a cancel request, shutdown, or a lost lease).
    pub(crate) cancel: Arc<AtomicBool>,
    /// Set when the lease was lost: the attempt must write nothing more.
    pub(crate) lost: Arc<AtomicBool>,
}

/// This engine's name as a lease owner: host, process id and a random part (engines of one process differ).
pub(crate) fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let mut random = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    format!(
        "{host}:{}:{}",
        std::process::id(),
        crate::codec::hex(&random)
    )
}

/// EXP004 `lease_lost`: the attempt no longer holds the job.
pub(crate) fn lease_lost() -> Error {
    Error::conflict(
        Reason::LeaseLost,
        "the worker's lease on the job was lost: another attempt owns it now",
    )
}

impl Inner {
    /// The expiry of a lease granted or renewed now.
    fn lease_until(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
            + chrono::Duration::from_std(self.lease)
                .unwrap_or_else(|_| chrono::Duration::seconds(30))
    }

    /// Claims a queued job for a new attempt (`only`: that job, if it is queued; else the oldest queued one) and
    /// records `job.running`, in one transaction. `None` when there is none to claim.
    ///
    /// # Errors
    /// The store's errors.
    pub(crate) fn claim(&self, only: Option<Uuid>) -> Result<Option<Job>> {
        let job = self.write(|tx| {
            let candidate = match only {
                Some(id) => tx.job(id)?.filter(|j| j.state == JobState::Queued),
                None => tx.oldest_queued()?,
            };
            let Some(mut job) = candidate else {
                return Ok(None);
            };
            let now = self.clock.now();
            job.transition(JobState::Running, now)?;
            job.attempt += 1;
            job.lease = Some(Lease {
                owner: self.owner.clone(),
                epoch: job.attempt,
                expires_at: self.lease_until(),
            });
            let job = tx.update_job(&job)?;
            self.record_system(
                tx,
                "job.running",
                &job,
                json!({"state": "running", "attempt": job.attempt}),
            )?;
            Ok(Some(job))
        })?;
        if job.is_some() {
            crate::failpoint::hit("job.claim.after");
        }
        Ok(job)
    }

    /// Runs `change` on the job inside a transaction if attempt `epoch` still holds it (fencing): otherwise EXP004
    /// `lease_lost` and nothing is written. `change` may record events in the transaction; the changed job is
    /// stored and returned.
    ///
    /// # Errors
    /// EXP004 `lease_lost`; the errors of `change`; the store's errors.
    pub(crate) fn fenced(
        &self,
        id: Uuid,
        epoch: u32,
        mut change: impl FnMut(&mut Job, &mut dyn Tx) -> Result<()>,
    ) -> Result<Job> {
        self.write(|tx| {
            let mut job = tx.job(id)?.ok_or_else(lease_lost)?;
            if !job.held_by(epoch) {
                return Err(lease_lost());
            }
            change(&mut job, tx)?;
            tx.update_job(&job)
        })
    }

    /// Renews the lease of attempt `epoch` on job `id` (fenced, not audited: a renewal changes no state).
    ///
    /// # Errors
    /// EXP004 `lease_lost`; the store's errors.
    pub(crate) fn renew(&self, id: Uuid, epoch: u32) -> Result<()> {
        let until = self.lease_until();
        self.fenced(id, epoch, |job, _| {
            if let Some(lease) = &mut job.lease {
                lease.expires_at = until;
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// Gives back the lease of attempt `epoch` (shutdown): the job goes back to the queue with `job.requeued`
    /// (reason `engine_shutdown`).
    ///
    /// # Errors
    /// EXP004 `lease_lost`; the store's errors.
    pub(crate) fn release(&self, id: Uuid, epoch: u32) -> Result<Job> {
        self.fenced(id, epoch, |job, tx| {
            job.requeue();
            self.record_system(
                tx,
                "job.requeued",
                job,
                json!({"reason": "engine_shutdown", "state": "queued", "attempt": epoch}),
            )?;
            Ok(())
        })
    }

    /// Rescues the jobs whose lease expired (their worker died, hangs or was cut off): each goes back to the
    /// queue with `job.requeued` (reason `lease_expired`), or, after its last attempt, fails with EXP005
    /// `worker_lost` (`job.failed`). Returns how many were rescued.
    ///
    /// # Errors
    /// The store's errors.
    pub(crate) fn rescue(&self) -> Result<usize> {
        let mut rescued = 0;
        loop {
            let n = self.write(|tx| {
                let now = self.clock.now();
                let expired = tx.expired_leases(now, RESCUE_BATCH)?;
                for mut job in expired.iter().cloned() {
                    let attempt = job.attempt;
                    if attempt >= self.max_attempts {
                        let error = Error::server(
                            Reason::WorkerLost,
                            "the job's worker stopped renewing its lease in its last attempt",
                        )
                        .with_detail("attempts", attempt);
                        job.lease = None;
                        job.error = Some(error.to_object());
                        job.transition(JobState::Failed, now)?;
                        let job = tx.update_job(&job)?;
                        self.record_system(
                            tx,
                            "job.failed",
                            &job,
                            json!({"state": "failed", "code": "EXP005", "reason": "worker_lost",
                                "attempt": attempt, "rows": 0, "bytes": 0}),
                        )?;
                    } else {
                        job.requeue();
                        let job = tx.update_job(&job)?;
                        self.record_system(
                            tx,
                            "job.requeued",
                            &job,
                            json!({"reason": "lease_expired", "state": "queued", "attempt": attempt}),
                        )?;
                    }
                }
                Ok(expired.len())
            })?;
            rescued += n;
            if n < RESCUE_BATCH as usize {
                break;
            }
        }
        if rescued > 0 {
            self.notify_queued();
            self.notify_changed();
        }
        Ok(rescued)
    }

    /// Wakes the lease keeper (to stop).
    pub(crate) fn notify_keeper(&self) {
        let _guard = self.keeper_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.keeper_wake.notify_all();
    }
}

/// Renews this engine's leases three times per lease period (an attempt whose lease was lost is told to stop),
/// and rescues expired leases every half period, until the engine shuts down and has no attempt left.
pub(crate) fn keeper_loop(inner: &Arc<Inner>) {
    let tick = inner.lease / 3;
    let mut last_rescue = std::time::Instant::now()
        .checked_sub(inner.lease)
        .unwrap_or_else(std::time::Instant::now);
    loop {
        let held: Vec<(Uuid, u32, Arc<AtomicBool>, Arc<AtomicBool>)> = inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, h)| (*id, h.epoch, h.cancel.clone(), h.lost.clone()))
            .collect();
        let stopping = inner.shutdown.load(Ordering::SeqCst);
        if stopping && held.is_empty() {
            return;
        }
        for (id, epoch, cancel, lost) in held {
            if let Err(e) = inner.renew(id, epoch) {
                if e.reason() == "lease_lost" {
                    lost.store(true, Ordering::SeqCst);
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        }
        if !stopping && last_rescue.elapsed() >= inner.lease / 2 {
            last_rescue = std::time::Instant::now();
            let _ = inner.rescue();
        }
        if stopping {
            // Attempts are stopping: keep their leases until they have given them back.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let guard = inner.keeper_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = inner
            .keeper_wake
            .wait_timeout_while(guard, tick, |_| !inner.shutdown.load(Ordering::SeqCst));
    }
}
