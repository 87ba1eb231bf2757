//! The in-memory store: jobs, API keys, signers' credentials and audit events behind one mutex. For tests and for
//! embedding without a file; nothing survives the process.

use super::{Store, Witness, Work};
use crate::audit::{AuditEvent, AuditReads, AuditRows};
use crate::auth::{ApiKeyRecord, KeyReads, KeyRows};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::job::{
    check_finished_limit, FinishedQuery, Job, JobPage, JobQuery, JobReads, JobRows, JobState,
};
use crate::signer::{SignerCredential, SignerReads, SignerRows};
use crate::study::{study_exists, StudyReads, StudyRecord, StudyRows};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// Jobs, keys, signers' credentials and audit events in memory.
///
/// A transaction holds the one lock from start to commit, writing into an overlay that is applied only when it
/// commits: transactions are serial, and a failed one leaves no trace. Share it with an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<Uuid, Job>,
    /// Keys in insertion order (key ids are unique).
    keys: Vec<ApiKeyRecord>,
    /// The study registry, by study id.
    studies: BTreeMap<String, StudyRecord>,
    /// Signers' credentials by (organization, subject).
    signers: BTreeMap<(String, String), SignerCredential>,
    /// Events in sequence order: `audit[i].seq == i + 1`.
    audit: Vec<AuditEvent>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state. A poisoned lock is taken over: a transaction changes the state only in one step at its commit.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The ordering key of a job: creation time, then id.
fn order_key(job: &Job) -> (DateTime<Utc>, Uuid) {
    (job.created_at, job.id)
}

/// A transaction: reads go to the overlay first, writes only to the overlay.
struct MemoryTx<'s> {
    state: &'s State,
    jobs: BTreeMap<Uuid, Job>,
    keys: BTreeMap<String, ApiKeyRecord>,
    /// Key ids inserted by this transaction, in order.
    new_keys: Vec<String>,
    /// Studies bound (`Some`) or unbound (`None`) by this transaction.
    studies: BTreeMap<String, Option<StudyRecord>>,
    signers: BTreeMap<(String, String), SignerCredential>,
    staged: Vec<AuditEvent>,
}

impl MemoryTx<'_> {
    /// Every job as this transaction sees it.
    fn all_jobs(&self) -> impl Iterator<Item = &Job> {
        self.state
            .jobs
            .values()
            .filter(|j| !self.jobs.contains_key(&j.id))
            .chain(self.jobs.values())
    }

    /// Every key as this transaction sees it.
    fn all_keys(&self) -> impl Iterator<Item = &ApiKeyRecord> {
        self.state
            .keys
            .iter()
            .filter(|k| !self.keys.contains_key(&k.key_id))
            .chain(self.keys.values())
    }

    /// What the transaction wrote, to apply at its commit.
    fn into_overlay(self) -> Overlay {
        Overlay {
            jobs: self.jobs,
            keys: self.keys,
            new_keys: self.new_keys,
            studies: self.studies,
            signers: self.signers,
            staged: self.staged,
        }
    }
}

/// The writes of a transaction.
struct Overlay {
    jobs: BTreeMap<Uuid, Job>,
    keys: BTreeMap<String, ApiKeyRecord>,
    new_keys: Vec<String>,
    studies: BTreeMap<String, Option<StudyRecord>>,
    signers: BTreeMap<(String, String), SignerCredential>,
    staged: Vec<AuditEvent>,
}

impl Overlay {
    fn commit(self, state: &mut State) -> Vec<AuditEvent> {
        for (id, job) in self.jobs {
            state.jobs.insert(id, job);
        }
        for key in state.keys.iter_mut() {
            if let Some(k) = self.keys.get(&key.key_id) {
                *key = k.clone();
            }
        }
        for id in &self.new_keys {
            if let Some(k) = self.keys.get(id) {
                state.keys.push(k.clone());
            }
        }
        for (id, record) in self.studies {
            match record {
                Some(r) => state.studies.insert(id, r),
                None => state.studies.remove(&id),
            };
        }
        state.signers.extend(self.signers);
        state.audit.extend(self.staged.iter().cloned());
        self.staged
    }
}

impl JobRows for MemoryTx<'_> {
    fn job(&mut self, id: Uuid) -> Result<Option<Job>> {
        Ok(self
            .jobs
            .get(&id)
            .or_else(|| self.state.jobs.get(&id))
            .cloned())
    }

    fn insert_job(&mut self, job: &Job) -> Result<Job> {
        if self.jobs.contains_key(&job.id) || self.state.jobs.contains_key(&job.id) {
            return Err(duplicate_id());
        }
        if let Some(key) = &job.idempotency_key {
            if self
                .job_by_idempotency_key(&job.org, &job.requested_by, key)?
                .is_some()
            {
                return Err(idempotency_conflict());
            }
        }
        let mut stored = job.clone();
        stored.version = 1;
        self.jobs.insert(stored.id, stored.clone());
        Ok(stored)
    }

    fn update_job(&mut self, job: &Job) -> Result<Job> {
        let current = self
            .job(job.id)?
            .ok_or_else(|| Error::not_found("no job with this id"))?;
        if current.version != job.version {
            return Err(version_conflict(current.version, job.version));
        }
        if let Some(key) = &job.idempotency_key {
            // Keep the uniqueness of (org, requested_by, idempotency_key), as the SQLite index does.
            let taken = self.all_jobs().any(|j| {
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
        stored.version = next_version(job.version)?;
        self.jobs.insert(stored.id, stored.clone());
        Ok(stored)
    }

    fn job_by_idempotency_key(
        &mut self,
        org: &str,
        requested_by: &str,
        key: &str,
    ) -> Result<Option<Job>> {
        Ok(self
            .all_jobs()
            .find(|j| {
                j.idempotency_key.as_deref() == Some(key)
                    && j.org == org
                    && j.requested_by == requested_by
            })
            .cloned())
    }

    fn oldest_queued(&mut self) -> Result<Option<Job>> {
        Ok(self
            .all_jobs()
            .filter(|j| j.state == JobState::Queued)
            .min_by_key(|j| order_key(j))
            .cloned())
    }

    fn expired_leases(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let mut expired: Vec<&Job> = self
            .all_jobs()
            .filter(|j| j.state == JobState::Running)
            .filter(|j| j.lease.as_ref().is_none_or(|l| l.expires_at <= now))
            .collect();
        expired.sort_by_key(|j| (j.lease.as_ref().map(|l| l.expires_at), j.id));
        Ok(expired.into_iter().take(limit as usize).cloned().collect())
    }
}

impl KeyRows for MemoryTx<'_> {
    fn key(&mut self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self
            .keys
            .get(key_id)
            .or_else(|| self.state.keys.iter().find(|k| k.key_id == key_id))
            .cloned())
    }

    fn insert_key(&mut self, key: &ApiKeyRecord) -> Result<()> {
        if self.key(&key.key_id)?.is_some() {
            return Err(key_exists());
        }
        self.keys.insert(key.key_id.clone(), key.clone());
        self.new_keys.push(key.key_id.clone());
        Ok(())
    }

    fn update_key(&mut self, key: &ApiKeyRecord) -> Result<()> {
        if self.key(&key.key_id)?.is_none() {
            return Err(Error::not_found("no API key with this id"));
        }
        self.keys.insert(key.key_id.clone(), key.clone());
        Ok(())
    }

    fn org_has_keys(&mut self, org: &str) -> Result<bool> {
        Ok(self.all_keys().any(|k| k.org == org))
    }
}

impl StudyRows for MemoryTx<'_> {
    fn study(&mut self, study: &str) -> Result<Option<StudyRecord>> {
        Ok(match self.studies.get(study) {
            Some(r) => r.clone(),
            None => self.state.studies.get(study).cloned(),
        })
    }

    fn insert_study(&mut self, record: &StudyRecord) -> Result<()> {
        if self.study(&record.study)?.is_some() {
            return Err(study_exists());
        }
        self.studies
            .insert(record.study.clone(), Some(record.clone()));
        Ok(())
    }

    fn delete_study(&mut self, study: &str) -> Result<()> {
        if self.study(study)?.is_none() {
            return Err(Error::not_found("no such study").with_field("study"));
        }
        self.studies.insert(study.to_string(), None);
        Ok(())
    }
}

impl SignerRows for MemoryTx<'_> {
    fn signer(&mut self, org: &str, subject: &str) -> Result<Option<SignerCredential>> {
        let key = (org.to_string(), subject.to_string());
        Ok(self
            .signers
            .get(&key)
            .or_else(|| self.state.signers.get(&key))
            .cloned())
    }

    fn put_signer(&mut self, credential: &SignerCredential) -> Result<()> {
        self.signers.insert(
            (credential.org.clone(), credential.subject.clone()),
            credential.clone(),
        );
        Ok(())
    }
}

impl AuditRows for MemoryTx<'_> {
    fn audit_head(&mut self) -> Result<Option<(u64, String)>> {
        Ok(self
            .staged
            .last()
            .or_else(|| self.state.audit.last())
            .map(|e| (e.seq, e.hash.clone())))
    }

    fn stage_event(&mut self, event: &AuditEvent) -> Result<()> {
        check_next(self.audit_head()?, event)?;
        self.staged.push(event.clone());
        Ok(())
    }
}

impl Store for MemoryStore {
    fn write(&self, work: &mut Work<'_>, witness: &Witness<'_>) -> Result<Vec<AuditEvent>> {
        let mut state = self.lock();
        let overlay = {
            let mut tx = MemoryTx {
                state: &state,
                jobs: BTreeMap::new(),
                keys: BTreeMap::new(),
                new_keys: Vec::new(),
                studies: BTreeMap::new(),
                signers: BTreeMap::new(),
                staged: Vec::new(),
            };
            work(&mut tx)?;
            witness(&tx.staged)?;
            tx.into_overlay()
        };
        Ok(overlay.commit(&mut state))
    }
}

impl JobReads for MemoryStore {
    fn get_job(&self, id: Uuid) -> Result<Job> {
        self.lock()
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("no job with this id"))
    }

    fn list_jobs(&self, q: &JobQuery) -> Result<JobPage> {
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

impl KeyReads for MemoryStore {
    fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self
            .lock()
            .keys
            .iter()
            .find(|k| k.key_id == key_id)
            .cloned())
    }

    fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>> {
        let state = self.lock();
        let mut keys: Vec<ApiKeyRecord> = state
            .keys
            .iter()
            .filter(|k| k.org == org)
            .cloned()
            .collect();
        // By creation time, then id: the same order as the SQLite store.
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }
}

impl StudyReads for MemoryStore {
    fn get_study(&self, study: &str) -> Result<Option<StudyRecord>> {
        Ok(self.lock().studies.get(study).cloned())
    }

    fn list_studies(&self, org: Option<&str>) -> Result<Vec<StudyRecord>> {
        Ok(self
            .lock()
            .studies
            .values()
            .filter(|r| org.is_none_or(|o| r.org == o))
            .cloned()
            .collect())
    }
}

impl SignerReads for MemoryStore {
    fn get_signer(&self, org: &str, subject: &str) -> Result<Option<SignerCredential>> {
        Ok(self
            .lock()
            .signers
            .get(&(org.to_string(), subject.to_string()))
            .cloned())
    }
}

impl AuditReads for MemoryStore {
    fn audit_last(&self) -> Result<Option<(u64, String)>> {
        Ok(self.lock().audit.last().map(|e| (e.seq, e.hash.clone())))
    }

    fn audit_read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
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

/// The version after `v`.
pub(super) fn next_version(v: u64) -> Result<u64> {
    v.checked_add(1)
        .ok_or_else(|| Error::server(Reason::StoreError, "job version overflow"))
}

/// EXP004 `sequence_conflict` unless `event` follows `head` (see [`AuditRows`]).
pub(super) fn check_next(head: Option<(u64, String)>, event: &AuditEvent) -> Result<()> {
    let (expected, prev) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, crate::audit::GENESIS_HASH.to_string()),
    };
    if event.seq != expected || event.prev_hash != prev {
        return Err(sequence_conflict(expected, event.seq));
    }
    Ok(())
}

/// EXP004 `idempotency_conflict`.
pub(super) fn idempotency_conflict() -> Error {
    Error::conflict(
        Reason::IdempotencyConflict,
        "the idempotency key was used for a different request",
    )
}

/// EXP004 `version_conflict`.
pub(super) fn version_conflict(stored: u64, given: u64) -> Error {
    Error::conflict(
        Reason::VersionConflict,
        "the job was changed by someone else; reload it and retry",
    )
    .with_detail("stored_version", stored)
    .with_detail("given_version", given)
}

/// EXP004 `duplicate_id`.
pub(super) fn duplicate_id() -> Error {
    Error::conflict(Reason::DuplicateId, "a job with this id exists")
}

/// EXP004 `key_exists`.
pub(super) fn key_exists() -> Error {
    Error::conflict(Reason::KeyExists, "an API key with this id exists")
}

/// EXP004 `sequence_conflict`.
pub(super) fn sequence_conflict(expected: u64, given: u64) -> Error {
    Error::conflict(
        Reason::SequenceConflict,
        "the audit event does not follow the last stored one",
    )
    .with_detail("expected_seq", expected)
    .with_detail("given_seq", given)
}
