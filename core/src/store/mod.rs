//! Persistence of jobs, API keys and audit events: the store traits and their memory and SQLite implementations,
//! and the append-only audit log file ([`AuditFileStore`]) that holds a home's audit trail.
//!
//! One conformance suite ([`conformance`]) states the contracts in code; every implementation must pass it.

use crate::audit::AuditEvent;
use crate::auth::ApiKeyRecord;
use crate::error::Result;
use crate::job::{Job, JobState};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

mod audit_file;
pub mod conformance;
mod memory;
mod sqlite;
mod sqlite_limit;

pub use audit_file::AuditFileStore;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;
pub use sqlite_limit::SqliteRateLimitStore;

/// Which jobs to list and which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs of this organization.
    pub org: String,
    /// Only jobs of these studies (`None`: every study).
    pub studies: Option<Vec<String>>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// 1-based page number.
    pub page: u32,
    /// Jobs per page (1..=100).
    pub limit: u32,
}

/// One page of jobs, newest first (by creation time, then id).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobPage {
    /// The jobs on this page.
    pub items: Vec<Job>,
    /// 1-based page number.
    pub page: u32,
    /// Jobs per page.
    pub limit: u32,
    /// Jobs matching the query in all pages.
    pub total: u64,
}

/// Which finished jobs to list across every organization, and from where: one page of a keyset walk in
/// (`finished_at`, `id`) order (see [`JobStore::list_finished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedQuery {
    /// Only jobs in this state.
    pub state: JobState,
    /// Only jobs with `finished_at` at or before this time (jobs without `finished_at` never match).
    pub finished_by: DateTime<Utc>,
    /// Only jobs after this (`finished_at`, `id`) in that order: the last job of the previous page (`None`: from
    /// the oldest).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Jobs per page (1..=[`MAX_FINISHED_LIMIT`]).
    pub limit: u32,
}

/// The largest page of [`JobStore::list_finished`].
pub const MAX_FINISHED_LIMIT: u32 = 1000;

/// EXP002 `invalid_limit` (field `limit`) unless `limit` is in 1..=[`MAX_FINISHED_LIMIT`].
pub(crate) fn check_finished_limit(limit: u32) -> Result<()> {
    if (1..=MAX_FINISHED_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(crate::error::Error::validation(
            "invalid_limit",
            "a page of finished jobs holds 1 to 1000 jobs",
        )
        .with_field("limit"))
    }
}

/// Persistent jobs with optimistic locking.
///
/// # Contract
/// - `insert` stores a new job with version 1 and returns it. When the job has an idempotency key that a job of
///   the same organization and requester already has, nothing is stored: the existing job is returned when its
///   `request_hash` is the same, else EXP004 `idempotency_conflict`.
/// - `get` of an unknown id is EXP001.
/// - `update` writes `job` only if the stored version equals `job.version`, and returns it with the version
///   incremented; a stale version is EXP004 `version_conflict`, an unknown id EXP001.
/// - `list` returns the matching jobs newest first (created_at descending, then id descending) with the total.
/// - `claim_next` atomically moves the oldest queued job (created_at, then id) to `running` with `started_at = now`
///   and returns it; two concurrent claims never return the same job.
/// - `requeue_running` moves every `running` job back to `queued` (progress reset) and returns them: called when a
///   store is opened, for jobs whose worker died with the process.
/// - `list_finished` returns, across every organization, up to `limit` jobs in `state` whose `finished_at` is at
///   or before `finished_by` and whose (`finished_at`, `id`) comes after `after`, oldest first by (`finished_at`,
///   `id`); fewer than `limit` means the walk is over. Jobs without `finished_at` never match. Walking page by page,
///   each `after` the last job of the previous page, visits every matching job once even while jobs leave
///   `state` between pages (the cursor is a position in that order, not an offset). A limit outside
///   1..=[`MAX_FINISHED_LIMIT`] is EXP002 `invalid_limit`.
pub trait JobStore: Send + Sync {
    /// Stores a new job (see the contract for idempotency keys).
    ///
    /// # Errors
    /// EXP004 `idempotency_conflict`; EXP005 for I/O.
    fn insert(&self, job: &Job) -> Result<Job>;

    /// The job with `id`.
    ///
    /// # Errors
    /// EXP001; EXP005 for I/O.
    fn get(&self, id: Uuid) -> Result<Job>;

    /// Conditionally replaces a job.
    ///
    /// # Errors
    /// EXP004 `version_conflict`, EXP001, EXP005.
    fn update(&self, job: &Job) -> Result<Job>;

    /// Lists jobs.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn list(&self, query: &JobQuery) -> Result<JobPage>;

    /// Claims the oldest queued job.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<Job>>;

    /// Re-queues jobs left running by a dead process.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn requeue_running(&self) -> Result<Vec<Job>>;

    /// One page of the jobs in a state finished at or before a time, across every organization, oldest first
    /// (see the contract).
    ///
    /// # Errors
    /// EXP002 `invalid_limit`; EXP005 for I/O.
    fn list_finished(&self, query: &FinishedQuery) -> Result<Vec<Job>>;
}

/// Persistent API keys (only keyed hashes of their secrets).
///
/// # Contract
/// `insert_key` of an existing key id is EXP004. `get_key` of an unknown id is `Ok(None)`. `revoke_key` sets
/// `revoked_at` (EXP001 for an unknown id) and takes effect on the next `get_key`.
pub trait KeyStore: Send + Sync {
    /// Stores a new key record.
    ///
    /// # Errors
    /// EXP004 when the id exists; EXP005 for I/O.
    fn insert_key(&self, key: &ApiKeyRecord) -> Result<()>;

    /// The key record with `key_id`.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;

    /// Revokes a key.
    ///
    /// # Errors
    /// EXP001 for an unknown id; EXP005 for I/O.
    fn revoke_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<()>;

    /// Every key of an organization, by creation.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>>;
}

/// Append-only storage of audit events.
///
/// # Contract
/// - `append` stores the event durably before returning `Ok` (the file log fsyncs each record; the SQLite store
///   commits with `synchronous=FULL`). It is EXP004 `sequence_conflict`, storing nothing, unless `event.seq` is
///   exactly one more than the last stored sequence number (1 for the first). An EXP002 error also means nothing
///   was stored; after an EXP005 error part of the record may have reached storage, and the caller must stop
///   appending through this store (the [`crate::audit::Auditor`] poisons itself).
/// - There is no update or delete.
/// - `last` is the sequence number and hash of the last stored event.
/// - `read` returns the events with `seq >= from` in order, at most `limit`.
/// - Several stores (or processes) on one backing storage see each other's appends, and their sequence checks
///   are atomic across them.
/// - `take_recoveries` returns, once each, the repairs the store made to its storage (a torn last record cut
///   away) for the auditor to record; stores that never repair return none.
pub trait AuditStore: Send + Sync {
    /// Appends one event.
    ///
    /// # Errors
    /// EXP004 `sequence_conflict`; EXP002 for a record the store refuses before writing (nothing stored);
    /// EXP005 for I/O.
    fn append(&self, event: &AuditEvent) -> Result<()>;

    /// The sequence number and hash of the last event, if any.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn last(&self) -> Result<Option<(u64, String)>>;

    /// Up to `limit` events with `seq >= from`, in order.
    ///
    /// # Errors
    /// EXP005 for I/O; EXP005 `integrity_violation` for a stored record that cannot be read back.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>>;

    /// Repairs made to the storage and not yet reported (each returned once).
    fn take_recoveries(&self) -> Vec<AuditRecovery> {
        Vec::new()
    }
}

/// A repair an [`AuditStore`] made to its storage: a torn last record (bytes of an append that never completed,
/// so was never acknowledged) cut away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecovery {
    /// The sequence number of the last intact event before the cut bytes (0 when none).
    pub after_seq: u64,
    /// Where the cut bytes began.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
}
