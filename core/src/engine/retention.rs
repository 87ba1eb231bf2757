//! Retention: the artifacts of a succeeded job expire a configured time after the job finished, per kind of job
//! ([`super::EngineBuilder::retention`], [`super::EngineBuilder::retention_for`]; a home's `config.json`, see
//! [`crate::home`]).
//!
//! Expiring a job deletes the bytes of every artifact but `manifest.json`, moves the job from `succeeded` to
//! `expired` and keeps the rest: the job record with its `artifacts` list (names, sizes, SHA-256: what was
//! written), the manifest (still downloadable: it is the record of what was written) and the audit trail. A
//! download of any other artifact of an expired job is EXP004 `expired`. A job is due when
//! `finished_at + retention <= now` on the engine's clock; failed and cancelled jobs have no artifacts and are
//! never touched.
//!
//! Jobs expire three ways, all through one function: [`Session::purge`] (now, for the caller's organization), a
//! background sweep (every [`super::EngineBuilder::sweep_interval`], default 60 s, when any retention is set) and
//! a download, which expires a due job before it reads.
//!
//! # Audit trail
//!
//! Each deleted artifact is recorded right after its bytes are deleted: action `artifact.deleted`, actor
//! `system`, target `job:<id>`, details `{artifact, bytes, sha256, reason: "retention"}` (the size and SHA-256
//! of the record). Then the state change: `job.expired` with `{state, from, artifacts_deleted, bytes_freed,
//! kept}`. These events carry the request id of the `purge` or `download` call that expired the job, or
//! `job_<id>` for the sweep. The audit is fail-closed: when an event cannot be recorded, purging stops with that
//! error and the job stays `succeeded`; the next attempt deletes again (a no-op for bytes already gone), records
//! the deletion and expires the job. The `purge` call itself is audited like every operation, with its summary.
//!
//! # The sweep's reach
//!
//! The sweep reaches every organization in the job store, whether or not anyone of it has called this engine:
//! it walks the succeeded jobs of all organizations finished long enough ago to be due under the shortest
//! retention ([`crate::job::JobReads::list_finished`], oldest first, in pages with a cursor), and expires those
//! due under their own kind's retention. A job not yet due (its kind keeps artifacts longer, or never expires)
//! is passed over and does not hold up the jobs after it. Expiring is one job at a time, so a pass over many due
//! jobs takes a while; a job downloaded meanwhile expires at the download.

use super::call::Done;
use super::{attempt, Inner, Session};
use crate::access::{authorize, Permission};
use crate::audit::{Actor, AuditRecord, AuditScope, Outcome};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::job::{FinishedQuery, JobQuery};
use crate::job::{Job, JobKind, JobState};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the background sweep looks for due jobs when the builder does not say.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Jobs read per page while looking for due ones.
const PAGE: u32 = 100;

/// Jobs read per page by the sweep.
const SWEEP_PAGE: u32 = 500;

/// What a purge (or one sweep) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeSummary {
    /// Jobs moved from `succeeded` to `expired`.
    pub jobs_expired: u64,
    /// Artifacts whose bytes were deleted (each recorded as `artifact.deleted`).
    pub artifacts_deleted: u64,
    /// The recorded sizes of the deleted artifacts, summed (bytes as written, before any encryption at rest).
    pub bytes_freed: u64,
}

impl PurgeSummary {
    fn add(&mut self, other: PurgeSummary) {
        self.jobs_expired += other.jobs_expired;
        self.artifacts_deleted += other.artifacts_deleted;
        self.bytes_freed += other.bytes_freed;
    }
}

/// The retention of each kind of job.
#[derive(Debug, Clone, Default)]
pub(crate) struct Retention {
    default: Option<chrono::Duration>,
    kinds: Vec<(JobKind, chrono::Duration)>,
}

impl Retention {
    /// Sets the retention of every kind without its own.
    pub(crate) fn set_default(&mut self, after: chrono::Duration) {
        self.default = Some(after);
    }

    /// Sets the retention of `kind`.
    pub(crate) fn set(&mut self, kind: JobKind, after: chrono::Duration) {
        self.kinds.retain(|(k, _)| *k != kind);
        self.kinds.push((kind, after));
    }

    /// How long artifacts of `kind` are kept; `None`: for ever.
    pub(crate) fn of(&self, kind: JobKind) -> Option<chrono::Duration> {
        self.kinds
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .or(self.default)
    }

    /// The shortest retention of any kind (`None`: nothing expires).
    fn shortest(&self) -> Option<chrono::Duration> {
        self.default
            .iter()
            .chain(self.kinds.iter().map(|(_, d)| d))
            .min()
            .copied()
    }

    /// Whether any kind of job expires.
    pub(crate) fn is_on(&self) -> bool {
        self.default.is_some() || !self.kinds.is_empty()
    }

    /// Checks every retention time is positive.
    ///
    /// # Errors
    /// EXP002 `invalid_retention` with field `retention`.
    pub(crate) fn check(&self) -> Result<()> {
        let all = self.default.iter().chain(self.kinds.iter().map(|(_, d)| d));
        for d in all {
            if *d <= chrono::Duration::zero() {
                return Err(Error::validation(
                    Reason::InvalidRetention,
                    "a retention time must be positive",
                )
                .with_field("retention"));
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Whether `job` is succeeded and its retention time has passed at `now`.
    fn is_due(&self, job: &Job, now: chrono::DateTime<chrono::Utc>) -> bool {
        match (self.retention.of(job.kind), job.finished_at) {
            // A retention that reaches past the calendar never ends.
            (Some(after), Some(finished)) => {
                job.state == JobState::Succeeded
                    && finished.checked_add_signed(after).is_some_and(|t| t <= now)
            }
            _ => false,
        }
    }

    /// Records one event of an expiry in `tx`, as the system, in the job's scope.
    fn record_expiry(
        &self,
        tx: &mut dyn crate::store::Tx,
        action: &str,
        job: &Job,
        request_id: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        self.record(
            tx,
            &AuditRecord {
                actor: Actor::system(),
                action: action.to_string(),
                target: format!("job:{}", job.id),
                outcome: Outcome::Success,
                details,
                request_id: request_id.to_string(),
            },
            &AuditScope::new(job.org.clone(), Some(&job.study)),
        )?;
        Ok(())
    }

    /// Expires `job` when it is due (see the module docs): returns the job as stored afterwards and what was
    /// deleted. `request_id` is that of the call that expires it (`None`: the sweep).
    ///
    /// Write-ahead: the move to `expired` and its events (`artifact.deleted` per artifact, then `job.expired`)
    /// commit in one transaction, and only then are the bytes deleted; a crash in between leaves bytes that no
    /// download can reach (the job is expired), removed by the next expiry pass over the job.
    ///
    /// # Errors
    /// EXP005 when the store fails or an event cannot be recorded (the job then stays `succeeded`), or an
    /// artifact's bytes cannot be deleted (the job is expired; deleting is tried again by the next purge).
    pub(crate) fn expire_if_due(
        &self,
        job: Job,
        request_id: Option<&str>,
    ) -> Result<(Job, PurgeSummary)> {
        if !self.is_due(&job, self.clock.now()) {
            return Ok((job, PurgeSummary::default()));
        }
        // One expiry at a time in this process; across processes the transaction decides.
        let _one = self.expiry.lock().unwrap_or_else(|p| p.into_inner());
        let request_id = match request_id {
            Some(r) => r.to_string(),
            None => format!("job_{}", job.id.simple()),
        };
        let (stored, summary) = self.write(|tx| {
            let mut summary = PurgeSummary::default();
            let job = tx
                .job(job.id)?
                .ok_or_else(|| Error::not_found("no job with this id"))?;
            let now = self.clock.now();
            if !self.is_due(&job, now) {
                return Ok((job, summary));
            }
            for a in job
                .artifacts
                .iter()
                .filter(|a| a.name != attempt::MANIFEST_NAME)
            {
                self.record_expiry(
                    tx,
                    "artifact.deleted",
                    &job,
                    &request_id,
                    json!({"artifact": a.name, "bytes": a.bytes, "sha256": a.sha256, "reason": "retention"}),
                )?;
                summary.artifacts_deleted += 1;
                summary.bytes_freed += a.bytes;
            }
            let mut expired = job.clone();
            expired.transition(JobState::Expired, now)?;
            let stored = tx.update_job(&expired)?;
            let kept: Vec<&str> = stored
                .artifacts
                .iter()
                .map(|a| a.name.as_str())
                .filter(|n| *n == attempt::MANIFEST_NAME)
                .collect();
            self.record_expiry(
                tx,
                "job.expired",
                &stored,
                &request_id,
                json!({"state": "expired", "from": "succeeded",
                    "artifacts_deleted": summary.artifacts_deleted, "bytes_freed": summary.bytes_freed,
                    "kept": kept}),
            )?;
            summary.jobs_expired = 1;
            Ok((stored, summary))
        })?;
        if summary.jobs_expired == 1 {
            self.notify_changed();
            for a in stored
                .artifacts
                .iter()
                .filter(|a| a.name != attempt::MANIFEST_NAME)
            {
                self.sink
                    .delete(&attempt::artifact_path(&stored, &a.name))?;
            }
        }
        Ok((stored, summary))
    }

    /// Expires every due job of `org` (of `studies`, when given). Stops at the first error (fail-closed).
    ///
    /// # Errors
    /// As [`Inner::expire_if_due`]; EXP005 when the store cannot list jobs.
    pub(crate) fn purge_org(
        &self,
        org: &str,
        studies: Option<Vec<String>>,
        request_id: Option<&str>,
    ) -> Result<PurgeSummary> {
        let mut total = PurgeSummary::default();
        if !self.retention.is_on() {
            return Ok(total);
        }
        let now = self.clock.now();
        // Collected first: expiring moves jobs out of the `succeeded` pages being read.
        let mut due = Vec::new();
        let mut page = 1u32;
        loop {
            let found = self.store.list_jobs(&JobQuery {
                org: org.to_string(),
                studies: studies.clone(),
                state: Some(JobState::Succeeded),
                page,
                limit: PAGE,
            })?;
            let last = found.items.len() < PAGE as usize
                || u64::from(page) * u64::from(PAGE) >= found.total;
            due.extend(found.items.into_iter().filter(|j| self.is_due(j, now)));
            if last {
                break;
            }
            page += 1;
        }
        for job in due {
            let (_, done) = self.expire_if_due(job, request_id)?;
            total.add(done);
        }
        Ok(total)
    }

    /// One pass of the sweep: expires every due job of every organization (see the module docs), oldest first,
    /// until done or the engine shuts down. Stops at the first error (fail-closed).
    ///
    /// # Errors
    /// As [`Inner::expire_if_due`]; EXP005 when the store cannot list jobs.
    pub(crate) fn sweep_once(&self, request_id: Option<&str>) -> Result<PurgeSummary> {
        let mut total = PurgeSummary::default();
        let Some(shortest) = self.retention.shortest() else {
            return Ok(total);
        };
        let now = self.clock.now();
        // No succeeded job finished after this is due under any retention.
        let Some(finished_by) = now.checked_sub_signed(shortest) else {
            return Ok(total);
        };
        let mut after = None;
        loop {
            let page = self.store.list_finished(&FinishedQuery {
                state: JobState::Succeeded,
                finished_by,
                after,
                limit: SWEEP_PAGE,
            })?;
            let full = page.len() == SWEEP_PAGE as usize;
            // The cursor moves past every listed job, due or not: jobs kept longer never stall the walk, and
            // expired jobs leaving `succeeded` do not shift it.
            after = page.last().and_then(|j| j.finished_at.map(|f| (f, j.id)));
            for job in page {
                if self.shutdown.load(Ordering::SeqCst) {
                    return Ok(total);
                }
                if self.is_due(&job, now) {
                    let (_, done) = self.expire_if_due(job, request_id)?;
                    total.add(done);
                }
            }
            if !full || after.is_none() {
                return Ok(total);
            }
        }
    }

    /// Wakes the sweep (to stop it).
    pub(crate) fn notify_sweeper(&self) {
        let _guard = self.sweep_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep_wake.notify_all();
    }
}

/// The background sweep: every `every`, expires the due jobs of every organization ([`Inner::sweep_once`]), until
/// the engine shuts down. A pass that fails (a store or audit failure) stops and is tried again next time.
pub(crate) fn sweep_loop(inner: &Arc<Inner>, every: Duration) {
    loop {
        {
            let guard = inner.sweep_lock.lock().unwrap_or_else(|p| p.into_inner());
            if inner.shutdown.load(Ordering::SeqCst) {
                return;
            }
            let _ = inner
                .sweep_wake
                .wait_timeout_while(guard, every, |_| !inner.shutdown.load(Ordering::SeqCst));
        }
        if inner.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let _ = inner.sweep_once(None);
    }
}

impl Session<'_> {
    /// `purge`: expires now every job of the caller's organization (and studies) whose retention time has passed
    /// and returns what it did. Needs the `retention:purge` permission (`admin`). With no retention configured
    /// ([`super::EngineBuilder::retention`], [`super::EngineBuilder::retention_for`], a home's settings in
    /// [`crate::home`]), nothing expires.
    ///
    /// A succeeded job is due when `finished_at + retention <= now` on the engine's clock (failed and cancelled
    /// jobs have no artifacts and are never touched). Expiring it deletes the bytes of every artifact but
    /// `manifest.json`, moves it to `expired` and keeps its record, whose `artifacts` list still names every file
    /// with its size and SHA-256, and its manifest, still downloadable; downloading another artifact of it is
    /// EXP004 `expired`. A background sweep ([`super::EngineBuilder::sweep_interval`]) and a download of a due
    /// job expire jobs the same way.
    ///
    /// Audit: after each deletion one event `artifact.deleted` (actor `system`, target `job:<id>`, details
    /// `artifact`, `bytes`, `sha256`, `reason: "retention"`), then `job.expired` (`artifacts_deleted`,
    /// `bytes_freed`, `kept`), all with this call's request id, then the `purge` call's own event with the
    /// summary. Fail-closed: when an event cannot be recorded, purging stops with that error and the job stays
    /// `succeeded`; the next attempt deletes again (a no-op for bytes already gone), records and expires it.
    ///
    /// Scope: the `operator`, or an admin of every study (`*`) of the home's own organization
    /// ([`super::EngineBuilder::home_org`]), purges the whole home, every organization's jobs (audit target
    /// `home`, `details.scope` `home`); any other caller with `retention:purge` purges the jobs of the studies it
    /// holds in its own organization (target `org:<org>`, scope `organization`).
    ///
    /// # Errors
    /// EXP003 (needs `retention:purge`); EXP005 when an artifact cannot be deleted or an event recorded (purging
    /// stops there; what was done before is recorded).
    pub fn purge(&self) -> Result<PurgeSummary> {
        self.call("purge", "retention".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::Purge, &p.org, None)?;
            // The home's retention is the operator's (or its own organization's unscoped admin's) to run for
            // every organization; any other admin purges the studies it holds in its organization.
            let home_wide =
                super::encryption::authorize_home_wide(p, self.inner.home_org.as_deref()).is_ok();
            let (summary, target) = if home_wide {
                let summary = if self.inner.retention.is_on() {
                    self.inner.sweep_once(Some(&call.request_id))?
                } else {
                    PurgeSummary::default()
                };
                (summary, "home".to_string())
            } else {
                let summary =
                    self.inner
                        .purge_org(&p.org, p.study_scope(), Some(&call.request_id))?;
                (summary, format!("org:{}", p.org))
            };
            Ok(Done {
                target,
                details: json!({"jobs_expired": summary.jobs_expired,
                    "artifacts_deleted": summary.artifacts_deleted, "bytes_freed": summary.bytes_freed,
                    "retention": self.inner.retention.is_on(), "scope": if home_wide { "home" } else { "organization" }}),
                value: summary,
            })
        })
    }
}
