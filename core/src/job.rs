//! Jobs: the record of one export, its states and the legal transitions between them.

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
                    "invalid_status",
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
    /// Idempotency key given by the caller.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical request, to tell a repeated request from a different one under the same key.
    pub request_hash: String,
    /// Whether a user asked to cancel it while it ran.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Version for optimistic locking: the store increments it on every update.
    pub version: u64,
}

impl Job {
    /// Moves the job to `next`, stamping times.
    ///
    /// # Errors
    /// EXP004 `illegal_transition` when the move is not legal.
    pub fn transition(&mut self, next: JobState, now: DateTime<Utc>) -> Result<()> {
        if !self.state.can_become(next) {
            return Err(Error::conflict(
                "illegal_transition",
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
