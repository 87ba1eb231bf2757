//! Jobs: the record of one export, its states and the legal transitions between them, its lease while a worker
//! runs it, and the persistence operations jobs need ([`JobRows`] inside a transaction, [`JobReads`] outside).

use crate::access::Permission;
use crate::error::Reason;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a job exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Datasets (`export_data`).
    Data,
    /// A dashboard.
    Dashboard,
    /// A report.
    Report,
    /// A package of datasets (`bulk_export`).
    Bulk,
}

impl JobKind {
    /// The permission a principal needs to export this kind (and to download its artifacts).
    pub fn permission(self) -> Permission {
        match self {
            JobKind::Data => Permission::ExportData,
            JobKind::Bulk => Permission::ExportBulk,
            JobKind::Report => Permission::ExportReport,
            JobKind::Dashboard => Permission::ExportDashboard,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Data => "data",
            JobKind::Dashboard => "dashboard",
            JobKind::Report => "report",
            JobKind::Bulk => "bulk",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            JobKind::Data,
            JobKind::Dashboard,
            JobKind::Report,
            JobKind::Bulk,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The state of a job (**contract**).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker is exporting.
    Running,
    /// Done; artifacts available.
    Succeeded,
    /// Stopped by an error; no artifact.
    Failed,
    /// Stopped by a user; no artifact.
    Cancelled,
    /// Succeeded, then its artifacts passed their retention time and were deleted.
    Expired,
}

impl JobState {
    /// All states.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Expired,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Expired => "expired",
        }
    }

    /// Parses the snake_case name.
    ///
    /// # Errors
    /// EXP002 `invalid_status` with field `status`.
    pub fn parse(s: &str) -> Result<Self> {
        JobState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::validation(
                    Reason::InvalidStatus,
                    "status must be one of queued, running, succeeded, failed, cancelled, expired",
                )
                .with_field("status")
            })
    }

    /// Whether the job will change no more (except `succeeded` → `expired`).
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }

    /// Whether `self` → `next` is legal: queued→running→{succeeded|failed|cancelled}, queued→cancelled,
    /// succeeded→expired.
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Succeeded, Expired)
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a job has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Rows written so far.
    pub rows_written: u64,
    /// Bytes written so far.
    pub bytes_written: u64,
    /// Datasets (or documents) finished.
    pub datasets_done: u32,
    /// Datasets (or documents) in the job.
    pub datasets_total: u32,
}

/// One file a job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Name within the job, e.g. `dm.csv` or `manifest.json`.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Rows, for dataset artifacts.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rows: Option<u64>,
}

/// The record of one export job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// UUIDv7.
    pub id: Uuid,
    /// What it exports.
    pub kind: JobKind,
    /// Study id.
    pub study: String,
    /// Organization.
    pub org: String,
    /// Subject of the principal who asked.
    pub requested_by: String,
    /// Printed name of the principal who asked, at the time of asking.
    #[serde(default)]
    pub requested_by_name: String,
    /// The full request, as given.
    pub request: serde_json::Value,
    /// Output format id.
    pub format: String,
    /// State.
    pub state: JobState,
    /// Progress.
    pub progress: Progress,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Artifacts, once succeeded (data files first, `manifest.json` last).
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// The standard error object (`code`, `message`, `field`, `details`) when failed.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    /// Idempotency key given by the caller (in the store, its keyed digest: see `literals`).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// A keyed SHA-256 (HMAC under the engine's secret) of the canonical request, to tell a repeated request from
    /// a different one under the same key without letting a reader of the store test guesses of its values.
    pub request_hash: String,
    /// Whether a user asked to cancel it while it ran.
    #[serde(default)]
    pub cancel_requested: bool,
    /// The number of the latest attempt to run it (0: never started). Each claim starts the next attempt; the
    /// artifacts of a succeeded job are those of its last attempt.
    #[serde(default)]
    pub attempt: u32,
    /// The lease of the worker running it (only while `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Version for optimistic locking: the store increments it on every update.
    pub version: u64,
    /// Whether the job carries or selects identifiable data: it writes columns classed as identifying unchanged
    /// (the request's `identifiable`), or filters or sorts by them. Its downloads and the view of its request
    /// need `data:identifiable` (see [`crate::deid::PrivacyCheck`]). Jobs stored before this field read `false`.
    #[serde(default)]
    pub identifiable: bool,
    /// The sequence number of the job's `job.succeeded` audit event, set when it commits: downloads check the
    /// artifact's record against that event. Jobs that succeeded before this field have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded_seq: Option<u64>,
    /// The request's literals (filter values, the idempotency key) sealed under the engine's keys, while the
    /// stored `request` holds `{"withheld": "request_literal"}` in their place and `idempotency_key` a keyed
    /// digest. Never shown: a view of the job either puts them back (for a caller who could have made the
    /// request) or leaves the markers. Jobs stored before sealing have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literals: Option<String>,
}

/// A worker's claim on a running job: who holds it, for which attempt, until when (see [`crate::engine`]'s job
/// execution). Every write of the attempt is fenced by its epoch: once the lease is lost (expired and rescued, or
/// given back), the attempt can change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The engine that holds it (`<host>:<pid>:<engine id>`).
    pub owner: String,
    /// The fencing token: the attempt number it was granted for.
    pub epoch: u32,
    /// When it expires unless renewed.
    pub expires_at: DateTime<Utc>,
}

impl Job {
    /// Moves the job to `next`, stamping times.
    ///
    /// # Errors
    /// EXP004 `illegal_transition` when the move is not legal.
    pub fn transition(&mut self, next: JobState, now: DateTime<Utc>) -> Result<()> {
        if !self.state.can_become(next) {
            return Err(Error::conflict(
                Reason::IllegalTransition,
                format!("a {} job cannot become {}", self.state, next),
            )
            .with_detail("from", self.state.as_str())
            .with_detail("to", next.as_str()));
        }
        match next {
            JobState::Running => self.started_at = Some(now),
            JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                self.finished_at = Some(now)
            }
            _ => {}
        }
        self.state = next;
        Ok(())
    }

    /// The artifact named `name`.
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }

    /// The path of one of its artifacts in the sink: under the folder of the attempt that wrote it,
    /// `<job id>/<attempt>/<name>` (a job that ran before attempts existed, attempt 0, keeps `<job id>/<name>`).
    pub fn artifact_path(&self, name: &str) -> String {
        format!("{}/{name}", self.attempt_folder(self.attempt))
    }

    /// The sink folder of attempt `attempt`'s artifacts.
    pub fn attempt_folder(&self, attempt: u32) -> String {
        if attempt == 0 {
            self.id.to_string()
        } else {
            format!("{}/{attempt}", self.id)
        }
    }

    /// Puts a running job back in the queue (its lease lost or given back): no lease, no progress, not started.
    pub fn requeue(&mut self) {
        self.state = JobState::Queued;
        self.lease = None;
        self.started_at = None;
        self.progress.rows_written = 0;
        self.progress.bytes_written = 0;
        self.progress.datasets_done = 0;
    }

    /// Whether the job is running under the lease of attempt `epoch`.
    pub fn held_by(&self, epoch: u32) -> bool {
        self.state == JobState::Running && self.lease.as_ref().is_some_and(|l| l.epoch == epoch)
    }
}

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
/// (`finished_at`, `id`) order (see [`JobReads::list_finished`]).
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

/// The largest page of [`JobReads::list_finished`].
pub const MAX_FINISHED_LIMIT: u32 = 1000;

/// EXP002 `invalid_limit` (field `limit`) unless `limit` is in 1..=[`MAX_FINISHED_LIMIT`].
pub(crate) fn check_finished_limit(limit: u32) -> Result<()> {
    if (1..=MAX_FINISHED_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(Error::validation(
            Reason::InvalidLimit,
            "a page of finished jobs holds 1 to 1000 jobs",
        )
        .with_field("limit"))
    }
}

/// The job operations of a store's transaction ([`crate::store::Tx`]): reads see the transaction's own writes,
/// and nothing is visible to others until it commits.
///
/// # Contract
/// - `insert_job` stores a new job with version 1: EXP004 `duplicate_id` when the id exists, EXP004
///   `idempotency_conflict` when another job of the same organization and requester has its idempotency key.
/// - `update_job` writes `job` if the stored version equals `job.version` and returns it with the version
///   incremented: EXP004 `version_conflict` for a stale version, EXP001 for an unknown id.
/// - `oldest_queued` is the queued job with the smallest (`created_at`, `id`).
/// - `expired_leases` are running jobs whose lease expires at or before `now`, soonest expiry first, at most
///   `limit`.
pub trait JobRows {
    /// The job with `id`, if any.
    ///
    /// # Errors
    /// EXP005 for I/O or a record that cannot be read.
    fn job(&mut self, id: Uuid) -> Result<Option<Job>>;

    /// Stores a new job (see the contract).
    ///
    /// # Errors
    /// EXP004 `duplicate_id` or `idempotency_conflict`; EXP005.
    fn insert_job(&mut self, job: &Job) -> Result<Job>;

    /// Conditionally replaces a job (see the contract).
    ///
    /// # Errors
    /// EXP004 `version_conflict`; EXP001; EXP005.
    fn update_job(&mut self, job: &Job) -> Result<Job>;

    /// The job of an organization's requester with idempotency key `key`, if any.
    ///
    /// # Errors
    /// EXP005.
    fn job_by_idempotency_key(
        &mut self,
        org: &str,
        requested_by: &str,
        key: &str,
    ) -> Result<Option<Job>>;

    /// The oldest queued job, if any.
    ///
    /// # Errors
    /// EXP005.
    fn oldest_queued(&mut self) -> Result<Option<Job>>;

    /// Running jobs whose lease has expired by `now` (see the contract).
    ///
    /// # Errors
    /// EXP005.
    fn expired_leases(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>>;
}

/// Reading jobs outside a transaction.
///
/// # Contract
/// - `get_job` of an unknown id is EXP001.
/// - `list_jobs` returns the matching jobs newest first (created_at descending, then id descending) with the total.
/// - `list_finished` returns, across every organization, up to `limit` jobs in `state` whose `finished_at` is at
///   or before `finished_by` and whose (`finished_at`, `id`) comes after `after`, oldest first by (`finished_at`,
///   `id`); fewer than `limit` means the walk is over. Jobs without `finished_at` never match. Walking page by page,
///   each `after` the last job of the previous page, visits every matching job once even while jobs leave
///   `state` between pages. A limit outside 1..=[`MAX_FINISHED_LIMIT`] is EXP002 `invalid_limit`.
pub trait JobReads {
    /// The job with `id`.
    ///
    /// # Errors
    /// EXP001; EXP005.
    fn get_job(&self, id: Uuid) -> Result<Job>;

    /// One page of jobs.
    ///
    /// # Errors
    /// EXP005.
    fn list_jobs(&self, query: &JobQuery) -> Result<JobPage>;

    /// One page of the jobs in a state finished at or before a time (see the contract).
    ///
    /// # Errors
    /// EXP002 `invalid_limit`; EXP005.
    fn list_finished(&self, query: &FinishedQuery) -> Result<Vec<Job>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contract_transitions_are_legal() {
        let legal = [
            ("queued", "running"),
            ("queued", "cancelled"),
            ("running", "succeeded"),
            ("running", "failed"),
            ("running", "cancelled"),
            ("succeeded", "expired"),
        ];
        for a in JobState::ALL {
            for b in JobState::ALL {
                let expect = legal.contains(&(a.as_str(), b.as_str()));
                assert_eq!(a.can_become(b), expect, "{a} -> {b}");
            }
        }
    }
}
