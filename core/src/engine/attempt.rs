//! One attempt of a job while it runs: its record, lease epoch, cancel and lost flags, throttled progress saving,
//! why it stops ([`Stop`]), and where its artifacts go ([`artifact_path`]).

use super::Inner;
use crate::error::{Error, Result};
use crate::job::Job;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name of every job's manifest artifact.
pub(crate) const MANIFEST_NAME: &str = "manifest.json";

/// How often a running job's progress is saved.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The sink path of a job's artifact ([`Job::artifact_path`]).
pub(crate) fn artifact_path(job: &Job, name: &str) -> String {
    job.artifact_path(name)
}

/// Why a job stopped before succeeding.
pub(super) enum Stop {
    Cancelled,
    Shutdown,
    /// The attempt lost its lease: it must write nothing more.
    LeaseLost,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        if e.reason() == "lease_lost" {
            Stop::LeaseLost
        } else {
            Stop::Failed(e)
        }
    }
}

/// A running attempt: the record, its cancel flag, and throttled progress saving.
pub(crate) struct Running<'a> {
    pub(super) inner: &'a Inner,
    pub(super) job: Job,
    /// The attempt's lease epoch, which fences its writes.
    pub(super) epoch: u32,
    pub(super) cancel: Arc<AtomicBool>,
    /// Set by the lease keeper when the lease was lost.
    pub(super) lost: Arc<AtomicBool>,
    pub(super) bytes: Arc<AtomicU64>,
    pub(super) rows: u64,
    pub(super) last_save: Instant,
    /// The job's de-identification, shared by its datasets (data and bulk jobs).
    pub(super) deid: Option<Arc<crate::deid::Deidentifier>>,
    /// The e-signatures of the manifests written so far, for the audit trail.
    pub(super) signatures: Vec<crate::signature::SignatureRecord>,
    /// The rendered document of a report or dashboard job, for the manifest.
    pub(super) document: Option<crate::manifest::ManifestDocument>,
}

impl<'a> Running<'a> {
    pub(super) fn check(&mut self) -> Result<(), Stop> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Stop::LeaseLost);
        }
        if self.inner.shutdown.load(Ordering::SeqCst) {
            return Err(Stop::Shutdown);
        }
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Stop::Cancelled);
        }
        if self.last_save.elapsed() >= PROGRESS_EVERY {
            self.save_progress()?;
        }
        Ok(())
    }

    /// Saves progress (fenced by the lease); picks up a cancel request made through the store (by another process).
    pub(super) fn save_progress(&mut self) -> Result<(), Stop> {
        self.last_save = Instant::now();
        let mut progress = self.job.progress;
        progress.rows_written = self.rows;
        progress.bytes_written = self.bytes.load(Ordering::Relaxed);
        let job = self.inner.fenced(self.job.id, self.epoch, |job, _| {
            job.progress = progress;
            Ok(())
        })?;
        self.job = job;
        if self.job.cancel_requested {
            return Err(Stop::Cancelled);
        }
        Ok(())
    }

    pub(super) fn add_rows(&mut self, n: u64) {
        self.rows += n;
    }

    /// What the manifest and the audit record of de-identification: `None` for a job without a policy.
    pub(super) fn deidentification(&self) -> Option<serde_json::Value> {
        let d = self.deid.as_ref()?;
        (!d.policy().is_empty() || d.policy().identifiable()).then(|| d.describe())
    }

    /// Creates an artifact of this attempt.
    pub(super) fn create(&self, name: &str) -> Result<Box<dyn crate::sink::SinkWriter>> {
        self.inner.sink.create(&artifact_path(&self.job, name))
    }
}

/// Completes an artifact of the attempt, between its failpoints.
pub(super) fn complete(
    writer: Box<dyn crate::sink::SinkWriter>,
) -> Result<crate::sink::ArtifactReceipt> {
    crate::failpoint::hit("job.artifact.before_complete");
    let receipt = writer.complete()?;
    crate::failpoint::hit("job.artifact.after_complete");
    Ok(receipt)
}

/// A writer that counts bytes into a shared counter, for progress.
pub(super) struct Counting<'w> {
    pub(super) inner: &'w mut (dyn Write + Send),
    pub(super) bytes: Arc<AtomicU64>,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
