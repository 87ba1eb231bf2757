//! In-memory stores: jobs, API keys and audit events behind one mutex. For tests and for embedding without a
//! file; nothing survives the process.
use super::*;
use crate::audit::AuditEvent;
use crate::auth::ApiKeyRecord;
use crate::error::Error;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Jobs, keys and audit events in memory.
///
/// Every operation takes one lock for its whole duration, so each is atomic (in particular `claim_next` and the
/// sequence check of `append`). Cloning is not offered: share it with an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<Uuid, Job>,
    /// Keys in insertion order (key ids are unique).
    keys: Vec<ApiKeyRecord>,
    /// Events in sequence order: `audit[i].seq == i + 1`.
    audit: Vec<AuditEvent>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state. A poisoned lock is taken over: no operation leaves the state half-changed before a panic,
    /// since every mutation is a single assignment after all checks.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The ordering key of a job: creation time, then id.
fn order_key(job: &Job) -> (DateTime<Utc>, Uuid) {
    (job.created_at, job.id)
}

fn job_not_found() -> Error {
    Error::not_found("no job with this id")
}

impl KeyStore for MemoryStore {
    fn insert_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let mut state = self.lock();
        if state.keys.iter().any(|k| k.key_id == key.key_id) {
            return Err(Error::conflict(
                "key_exists",
                "an API key with this id exists",
            ));
        }
        state.keys.push(key.clone());
        Ok(())
    }

    fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self
            .lock()
            .keys
            .iter()
            .find(|k| k.key_id == key_id)
            .cloned())
    }

    fn revoke_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<()> {
        let mut state = self.lock();
        match state.keys.iter_mut().find(|k| k.key_id == key_id) {
            Some(k) => {
                k.revoked_at = Some(at);
                Ok(())
            }
            None => Err(Error::not_found("no API key with this id")),
        }
    }

    fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>> {
        let state = self.lock();
        let mut keys: Vec<ApiKeyRecord> = state
            .keys
            .iter()
            .filter(|k| k.org == org)
            .cloned()
            .collect();
        // By creation time, then id: the same order as the SQLite store. The sort is stable, so equal keys keep
        // insertion order (ids are unique, so there are none).
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }
}

impl JobStore for MemoryStore {
    fn insert(&self, job: &Job) -> Result<Job> {
        let mut state = self.lock();
        if let Some(key) = &job.idempotency_key {
            let existing = state.jobs.values().find(|j| {
                j.idempotency_key.as_deref() == Some(key.as_str())
                    && j.org == job.org
                    && j.requested_by == job.requested_by
            });
            if let Some(existing) = existing {
                if existing.request_hash == job.request_hash {
                    return Ok(existing.clone());
                }
                return Err(idempotency_conflict());
            }
        }
        if state.jobs.contains_key(&job.id) {
            return Err(duplicate_id());
        }
        let mut stored = job.clone();
        stored.version = 1;
        state.jobs.insert(stored.id, stored.clone());
        Ok(stored)
    }

    fn get(&self, id: Uuid) -> Result<Job> {
        self.lock().jobs.get(&id).cloned().ok_or_else(job_not_found)
    }

    fn update(&self, job: &Job) -> Result<Job> {
        let mut state = self.lock();
        let current = state.jobs.get(&job.id).ok_or_else(job_not_found)?;
        if current.version != job.version {
            return Err(version_conflict(current.version, job.version));
        }
        if let Some(key) = &job.idempotency_key {
            // Keep the uniqueness of (org, requested_by, idempotency_key), as the SQLite index does.
            let taken = state.jobs.values().any(|j| {
                j.id != job.id
                    && j.idempotency_key.as_deref() == Some(key.as_str())
                    && j.org == job.org
                    && j.requested_by == job.requested_by
            });
            if taken {
                return Err(idempotency_conflict());
            }
        }
        let mut stored = job.clone();
        stored.version = job
            .version
            .checked_add(1)
            .ok_or_else(|| Error::server("store_error", "job version overflow"))?;
        state.jobs.insert(stored.id, stored.clone());
        Ok(stored)
    }

    fn list(&self, q: &JobQuery) -> Result<JobPage> {
        let state = self.lock();
        let mut matching: Vec<&Job> = state
            .jobs
            .values()
            .filter(|j| j.org == q.org)
            .filter(|j| match &q.studies {
                Some(studies) => studies.contains(&j.study),
                None => true,
            })
            .filter(|j| q.state.is_none_or(|s| j.state == s))
            .collect();
        matching.sort_by_key(|j| std::cmp::Reverse(order_key(j)));
        let total = matching.len() as u64;
        let offset = u64::from(q.page.saturating_sub(1)) * u64::from(q.limit);
        let items = matching
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(q.limit as usize)
            .cloned()
            .collect();
        Ok(JobPage {
            items,
            page: q.page,
            limit: q.limit,
            total,
        })
    }

    fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<Job>> {
        let mut state = self.lock();
        let Some(id) = state
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .min_by_key(|j| order_key(j))
            .map(|j| j.id)
        else {
            return Ok(None);
        };
        let Some(stored) = state.jobs.get_mut(&id) else {
            return Ok(None);
        };
        let mut job = stored.clone();
        job.transition(JobState::Running, now)?;
        job.version = job
            .version
            .checked_add(1)
            .ok_or_else(|| Error::server("store_error", "job version overflow"))?;
        *stored = job.clone();
        Ok(Some(job))
    }

    fn requeue_running(&self) -> Result<Vec<Job>> {
        let mut state = self.lock();
        let mut requeued = Vec::new();
        for stored in state.jobs.values_mut() {
            if stored.state != JobState::Running {
                continue;
            }
            let mut job = stored.clone();
            requeue(&mut job)?;
            *stored = job.clone();
            requeued.push(job);
        }
        requeued.sort_by_key(order_key);
        Ok(requeued)
    }

    fn list_finished(&self, q: &FinishedQuery) -> Result<Vec<Job>> {
        check_finished_limit(q.limit)?;
        let state = self.lock();
        let mut matching: Vec<((DateTime<Utc>, Uuid), &Job)> = state
            .jobs
            .values()
            .filter(|j| j.state == q.state)
            .filter_map(|j| j.finished_at.map(|f| ((f, j.id), j)))
            .filter(|(key, _)| key.0 <= q.finished_by && q.after.is_none_or(|after| *key > after))
            .collect();
        matching.sort_by_key(|(key, _)| *key);
        Ok(matching
            .into_iter()
            .take(q.limit as usize)
            .map(|(_, j)| j.clone())
            .collect())
    }
}

/// Moves a running job back to queued: no start time, progress reset (the dataset total kept), no cancellation
/// request, version incremented.
pub(super) fn requeue(job: &mut Job) -> Result<()> {
    job.state = JobState::Queued;
    job.started_at = None;
    job.progress = crate::job::Progress {
        datasets_total: job.progress.datasets_total,
        ..Default::default()
    };
    job.cancel_requested = false;
    job.version = job
        .version
        .checked_add(1)
        .ok_or_else(|| Error::server("store_error", "job version overflow"))?;
    Ok(())
}

/// EXP004 `idempotency_conflict`.
pub(super) fn idempotency_conflict() -> Error {
    Error::conflict(
        "idempotency_conflict",
        "the idempotency key was used for a different request",
    )
}

/// EXP004 `version_conflict`.
pub(super) fn version_conflict(stored: u64, given: u64) -> Error {
    Error::conflict(
        "version_conflict",
        "the job was changed by someone else; reload it and retry",
    )
    .with_detail("stored_version", stored)
    .with_detail("given_version", given)
}

/// EXP004 `duplicate_id`.
pub(super) fn duplicate_id() -> Error {
    Error::conflict("duplicate_id", "a job with this id exists")
}

/// EXP004 `sequence_conflict`.
pub(super) fn sequence_conflict(expected: u64, given: u64) -> Error {
    Error::conflict(
        "sequence_conflict",
        "the audit event's sequence number does not follow the last stored one",
    )
    .with_detail("expected_seq", expected)
    .with_detail("given_seq", given)
}

impl AuditStore for MemoryStore {
    fn append(&self, e: &AuditEvent) -> Result<()> {
        let mut state = self.lock();
        let expected = state.audit.len() as u64 + 1;
        if e.seq != expected {
            return Err(sequence_conflict(expected, e.seq));
        }
        state.audit.push(e.clone());
        Ok(())
    }

    fn last(&self) -> Result<Option<(u64, String)>> {
        Ok(self.lock().audit.last().map(|e| (e.seq, e.hash.clone())))
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        let state = self.lock();
        let start = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(state
            .audit
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{run_all, Stores};

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        run_all(&|| Stores::from_one(MemoryStore::new()));
    }
}
