//! [`Session`]: a credential bound to an engine. Every operation (the eight of the seed's API and the engine's
//! own: keys, audit trail, signing, retention) is a method of a session, which authenticates the credential,
//! authorizes the principal and audits the outcome through one [`Session::call`]. The CLI, the Python and C
//! bindings and the HTTP service each hold a session per credential and decide nothing themselves.

use super::call::{valid_request_id, Call, Done, LastCall};
use super::download::withheld_details;
use super::{Engine, Inner, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use crate::access::{authorize, Permission, Principal};
use crate::audit::{AuditEvent, Checkpoint};
use crate::auth::{ApiKeyInfo, ApiKeyRecord, NewApiKey};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::format::FormatInfo;
use crate::job::{Job, JobState};
use crate::job::{JobPage, JobQuery};
use crate::request::ListJobsRequest;
use crate::study::{unbound_study, StudyRecord};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A credential bound to an engine: every operation, authenticated, authorized and audited.
///
/// Made by [`Engine::session`]; cheap, and as long-lived as the caller likes (the credential is checked again at
/// every call, so a revoked key or an expired token fails at its next call).
///
/// ```
/// use std::sync::Arc;
/// use trialport_core::engine::Engine;
/// use trialport_core::request::ListJobsRequest;
///
/// let engine = Engine::builder().workers(0).build().unwrap();
/// let key = engine.create_initial_admin_key("acme").unwrap();
/// let session = engine.session(&format!("ApiKey {key}"));
/// let page = session.list_jobs(ListJobsRequest::default()).unwrap();
/// assert_eq!(page.total, 0);
/// ```
pub struct Session<'e> {
    pub(super) inner: &'e Arc<Inner>,
    pub(super) credential: String,
    pub(super) request_id: Option<String>,
    /// What the last call learned of the caller (see [`Session::last_call`]).
    last_call: std::sync::Mutex<LastCall>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("Session")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// How many jobs an engine remembers the credential of, for [`Engine::known_session`]: the oldest is forgotten first.
const KNOWN_JOBS: usize = 10_000;

/// The credential each job was last obtained with through a session of this engine (see [`Engine::known_session`]).
#[derive(Default)]
pub(crate) struct KnownJobs {
    by_job: HashMap<Uuid, Arc<str>>,
    order: VecDeque<Uuid>,
}

impl KnownJobs {
    fn remember(&mut self, id: Uuid, credential: &Arc<str>) {
        if self.by_job.insert(id, credential.clone()).is_none() {
            self.order.push_back(id);
            while self.order.len() > KNOWN_JOBS {
                if let Some(old) = self.order.pop_front() {
                    self.by_job.remove(&old);
                }
            }
        }
    }

    fn credential(&self, id: Uuid) -> Option<Arc<str>> {
        self.by_job.get(&id).cloned()
    }
}

impl Engine {
    /// A session of `credential` (`"ApiKey <key>"` or `"Bearer <jwt>"`): nothing is checked until its first call.
    pub fn session(&self, credential: &str) -> Session<'_> {
        Session {
            inner: &self.inner,
            credential: credential.to_string(),
            request_id: None,
            last_call: std::sync::Mutex::new(LastCall::default()),
        }
    }

    /// A session of the credential that last obtained `job_id` through a session of this engine (an export,
    /// `get_job`, `list_jobs`, ...): for surfaces whose `wait` takes no credential (Python's `engine.wait(job)`,
    /// C's `tp_engine_wait`). For a job this engine has not handed out, a session without a credential, whose calls
    /// are refused and audited like any call without one. The engine remembers the last 10,000 jobs.
    pub fn known_session(&self, job_id: Uuid) -> Session<'_> {
        let credential = self
            .inner
            .known_jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .credential(job_id);
        self.session(credential.as_deref().unwrap_or_default())
    }

    /// [`Session::wait`] in the [`Engine::known_session`] of the job.
    ///
    /// # Errors
    /// As [`Session::wait`].
    pub fn wait_known(&self, job_id: Uuid, timeout: Option<Duration>) -> Result<Job> {
        self.known_session(job_id).wait(job_id, timeout)
    }
}

impl<'e> Session<'e> {
    /// The session with `id` as the request id of its calls (their audit events and errors), e.g. an HTTP
    /// request's `X-Request-Id`. An id that is not 1 to 128 printable ASCII characters without spaces is ignored
    /// and each call gets a fresh one.
    #[must_use]
    pub fn with_request_id(mut self, id: &str) -> Self {
        self.request_id = valid_request_id(id).then(|| id.to_string());
        self
    }

    /// What the last call of this session learned of its caller: the subject it authenticated (so an adapter can
    /// tell a refused credential, HTTP 401, from a refused permission, 403) and the rate-limit quota left.
    pub fn last_call(&self) -> LastCall {
        self.last_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs one operation of this session through [`super::call::run`]: authenticate, run the body (which
    /// authorizes), audit the outcome, stamp errors.
    pub(crate) fn call<T>(
        &self,
        action: &'static str,
        target: String,
        body: impl FnOnce(&Call<'_>) -> Result<Done<T>>,
    ) -> Result<T> {
        super::call::run(
            self.inner,
            &self.credential,
            self.request_id.as_deref(),
            &self.last_call,
            action,
            target,
            body,
        )
    }

    /// Remembers that `jobs` were obtained with this session's credential (see [`Engine::known_session`]).
    pub(super) fn remember<'j>(&self, jobs: impl IntoIterator<Item = &'j Job>) {
        let credential: Arc<str> = Arc::from(self.credential.as_str());
        let mut known = self
            .inner
            .known_jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for job in jobs {
            known.remember(job.id, &credential);
        }
    }

    /// `list_jobs`: the jobs the caller may see (own organization, permitted studies it holds), newest first.
    ///
    /// # Errors
    /// EXP003; EXP002 with field `limit` (not 1..=100), `page` (below 1) or `status`; EXP005.
    pub fn list_jobs(&self, request: ListJobsRequest) -> Result<JobPage> {
        let page = self.call("list_jobs", "jobs".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::JobsRead, &p.org, request.study.as_deref())?;
            if let Some(study) = &request.study {
                self.inner.resolve_study(&p.org, study)?;
            }
            let limit = request.limit.unwrap_or(i64::from(DEFAULT_PAGE_LIMIT));
            if !(1..=i64::from(MAX_PAGE_LIMIT)).contains(&limit) {
                return Err(Error::validation(
                    Reason::OutOfRange,
                    format!("limit must be between 1 and {MAX_PAGE_LIMIT}"),
                )
                .with_field("limit")
                .with_detail("min", 1)
                .with_detail("max", MAX_PAGE_LIMIT));
            }
            let page = request.page.unwrap_or(1);
            if !(1..=i64::from(u32::MAX)).contains(&page) {
                return Err(Error::validation(Reason::OutOfRange, "page must be 1 or more")
                    .with_field("page")
                    .with_detail("min", 1));
            }
            let state = request.status.as_deref().map(JobState::parse).transpose()?;
            let studies = match &request.study {
                Some(s) => Some(vec![s.clone()]),
                // With the registry, only the studies the organization holds now: a job of a study moved away or
                // unbound is as invisible in the list as to `get_job`.
                None if self.inner.study_registry => Some(
                    self.inner
                        .store
                        .list_studies(Some(&p.org))?
                        .into_iter()
                        .map(|r| r.study)
                        .filter(|s| p.sees_study(s))
                        .collect(),
                ),
                None => p.study_scope(),
            };
            let mut result = self.inner.store.list_jobs(&JobQuery {
                org: p.org.clone(),
                studies,
                state,
                page: page as u32,
                limit: limit as u32,
            })?;
            let withheld = self.withhold_requests(call, &mut result.items)?;
            Ok(Done {
                details: withheld_details(
                    json!({"page": result.page, "limit": result.limit, "returned": result.items.len(),
                        "total": result.total}),
                    withheld,
                ),
                target: format!("org:{}", p.org),
                value: result,
            })
        })?;
        self.remember(&page.items);
        Ok(page)
    }

    /// `get_job`: one job's state, progress, artifacts and error.
    ///
    /// # Errors
    /// EXP003; EXP001 for an unknown job; EXP005.
    pub fn get_job(&self, job_id: Uuid) -> Result<Job> {
        let job = self.call("get_job", format!("job:{job_id}"), |call| {
            let mut job = self.visible_job(call, job_id, Permission::JobsRead)?;
            let withheld = self.withhold_requests(call, std::slice::from_mut(&mut job))?;
            Ok(Done {
                target: format!("job:{}", job.id),
                details: withheld_details(json!({"state": job.state}), withheld),
                value: job,
            })
        })?;
        self.remember([&job]);
        Ok(job)
    }

    /// Waits until a job has finished (or `timeout` passed) and returns it.
    ///
    /// # Errors
    /// As [`Session::get_job`]; a timeout is not an error: the job is returned as it is.
    pub fn wait(&self, job_id: Uuid, timeout: Option<Duration>) -> Result<Job> {
        self.wait_with_progress(job_id, timeout, |_| {})
    }

    /// Like [`Session::wait`], calling `on_progress` with the job whenever it is read again (about every 50 ms
    /// while it runs): one audited call however long the wait, for progress bars.
    ///
    /// # Errors
    /// As [`Session::get_job`].
    pub fn wait_with_progress(
        &self,
        job_id: Uuid,
        timeout: Option<Duration>,
        mut on_progress: impl FnMut(&Job),
    ) -> Result<Job> {
        let job = self.call("wait", format!("job:{job_id}"), |call| {
            let mut job = self.visible_job(call, job_id, Permission::JobsRead)?;
            let deadline = timeout.map(|t| Instant::now() + t);
            on_progress(&job);
            while !job.state.is_finished() {
                let step = Duration::from_millis(50);
                let step = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left.min(step),
                        _ => break,
                    },
                    None => step,
                };
                let guard = self
                    .inner
                    .changed_lock
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let _ = self.inner.changed.wait_timeout(guard, step);
                job = self.inner.store.get_job(job_id)?;
                on_progress(&job);
            }
            let withheld = self.withhold_requests(call, std::slice::from_mut(&mut job))?;
            Ok(Done {
                target: format!("job:{}", job.id),
                details: withheld_details(json!({"state": job.state}), withheld),
                value: job,
            })
        })?;
        self.remember([&job]);
        Ok(job)
    }

    /// Cancels a queued or running job. A running job stops at its next batch and leaves no artifact.
    ///
    /// # Errors
    /// EXP003; EXP001; EXP004 `illegal_transition` for a finished job; EXP005.
    pub fn cancel(&self, job_id: Uuid) -> Result<Job> {
        let job = self.call("cancel", format!("job:{job_id}"), |call| {
            self.visible_job(call, job_id, Permission::JobsCancel)?;
            let now = self.inner.clock.now();
            // Read, change and record in one transaction: a cancel never races a worker's end.
            let job = self.inner.write(|tx| {
                let mut job = tx
                    .job(job_id)?
                    .ok_or_else(|| Error::not_found("no job with this id"))?;
                match job.state {
                    JobState::Queued => job.transition(JobState::Cancelled, now)?,
                    JobState::Running => job.cancel_requested = true,
                    other => {
                        return Err(Error::conflict(
                            Reason::IllegalTransition,
                            format!("a {other} job cannot be cancelled"),
                        )
                        .with_detail("from", other.as_str())
                        .with_detail("to", "cancelled"))
                    }
                }
                let job = tx.update_job(&job)?;
                if job.state == JobState::Cancelled {
                    self.inner.record_system(
                        tx,
                        "job.cancelled",
                        &job,
                        json!({"state": "cancelled", "from": "queued"}),
                    )?;
                }
                call.record_success(
                    tx,
                    &format!("job:{}", job.id),
                    &json!({"state": job.state, "cancel_requested": job.cancel_requested}),
                )?;
                Ok(job)
            })?;
            if let Some(held) = self
                .inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&job_id)
            {
                held.cancel.store(true, Ordering::SeqCst);
            }
            self.inner.notify_changed();
            // The cancel's event committed with it; the request is withheld from the answer all the same.
            let mut job = job;
            self.withhold_requests(call, std::slice::from_mut(&mut job))?;
            Ok(Done {
                target: format!("job:{}", job.id),
                details: json!({"state": job.state, "cancel_requested": job.cancel_requested}),
                value: job,
            })
        })?;
        self.remember([&job]);
        Ok(job)
    }

    /// `formats`: the registered formats with their capabilities and options.
    ///
    /// # Errors
    /// EXP003; EXP005.
    pub fn formats(&self) -> Result<Vec<FormatInfo>> {
        self.call("formats", "formats".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::FormatsRead, &p.org, None)?;
            let infos = self.inner.formats.infos();
            Ok(Done {
                target: "formats".into(),
                details: json!({"count": infos.len()}),
                value: infos,
            })
        })
    }

    /// Creates an API key (in the caller's organization unless `new.org` names another, which only a caller
    /// entitled there may do); returns the key text (shown once) and its record.
    ///
    /// # Errors
    /// EXP003 (needs `keys:manage`; only for the caller's organization and studies it holds, unless the caller is
    /// the `operator`; a key with the `operator` role only from the operator or an admin of every study of the
    /// home's organization); EXP001 for a study of another organization (as for an unknown one); EXP002 for bad
    /// roles, studies or name; EXP005.
    pub fn create_api_key(&self, new: NewApiKey) -> Result<(String, ApiKeyRecord)> {
        self.call("create_api_key", "apikeys".to_string(), |call| {
            let p = call.principal();
            let mut new = new;
            let org = new.org.get_or_insert_with(|| p.org.clone()).clone();
            authorize(p, Permission::KeysManage, &org, None)?;
            // The operator role acts in every organization: only the operator or an admin of the whole home may
            // grant it (an organization's admin may not make itself the platform's operator).
            if new.roles.contains(&crate::access::Role::Operator) {
                super::encryption::authorize_home_wide(p, self.inner.home_org.as_deref())?;
            }
            // A key grants no study its creator does not hold (`*` only from a creator with `*`).
            for s in &new.studies {
                authorize(p, Permission::KeysManage, &org, Some(s))?;
                if s != "*" {
                    self.inner.resolve_study(&org, s)?;
                }
            }
            let (text, rec) = self.inner.auth.new_key(new, &p.subject, call.at)?;
            let target = format!("apikey:{}", rec.key_id);
            let details = json!({"roles": rec.roles, "studies": rec.studies, "org": rec.org});
            self.inner.write(|tx| {
                tx.insert_key(&rec)?;
                call.record_success(tx, &target, &details)
            })?;
            Ok(Done {
                target,
                details,
                value: (text, rec),
            })
        })
    }

    /// Revokes an API key of the caller's organization; it fails from the next call on.
    ///
    /// # Errors
    /// EXP003 (needs `keys:manage` and every study of the key); EXP001 for an unknown key or one of another
    /// organization; EXP005.
    pub fn revoke_api_key(&self, key_id: &str) -> Result<()> {
        self.call("revoke_api_key", format!("apikey:{key_id}"), |call| {
            let p = call.principal();
            let rec = self
                .inner
                .store
                .get_key(key_id)?
                .filter(|rec| rec.org == p.org || p.operates(Permission::KeysManage))
                // Another organization's key is reported as unknown: its existence is not disclosed.
                .ok_or_else(|| Error::not_found("no such API key").with_field("key_id"))?;
            authorize(p, Permission::KeysManage, &rec.org, None)?;
            for s in &rec.studies {
                authorize(p, Permission::KeysManage, &rec.org, Some(s))?;
            }
            let target = format!("apikey:{key_id}");
            self.inner.write(|tx| {
                let mut rec = tx
                    .key(key_id)?
                    .ok_or_else(|| Error::not_found("no such API key").with_field("key_id"))?;
                rec.revoked_at = Some(call.at);
                tx.update_key(&rec)?;
                call.record_success(tx, &target, &json!({}))
            })?;
            Ok(Done {
                target,
                details: json!({}),
                value: (),
            })
        })
    }

    /// The API keys of organization `org` (default: the caller's) that the caller manages (those whose every study
    /// the caller holds, as revoking needs), oldest first, revoked and expired ones included; never their secrets.
    /// Another organization's keys are the `operator`'s only, as creating and revoking them are.
    ///
    /// # Errors
    /// EXP003 (needs `keys:manage`, in `org`: scope `organization` for another organization's keys without the
    /// `operator` role); EXP002 for an invalid organization name; EXP005.
    pub fn list_api_keys(&self, org: Option<&str>) -> Result<Vec<ApiKeyInfo>> {
        self.call("list_api_keys", "apikeys".to_string(), |call| {
            let p = call.principal();
            let org = org.unwrap_or(&p.org);
            authorize(p, Permission::KeysManage, org, None)?;
            crate::name::validate_name(org, "org")?;
            call.set_scope(org, None);
            let keys: Vec<ApiKeyInfo> = self
                .inner
                .store
                .list_keys(org)?
                .iter()
                .filter(|rec| {
                    rec.studies
                        .iter()
                        .all(|s| authorize(p, Permission::KeysManage, &rec.org, Some(s)).is_ok())
                })
                .map(ApiKeyInfo::from)
                .collect();
            Ok(Done {
                target: "apikeys".to_string(),
                details: json!({"org": org, "count": keys.len()}),
                value: keys,
            })
        })
    }

    /// Reads up to `limit` (1..=1000) audit events from sequence number `from`, of those the caller may see: the
    /// events of the caller's organization (and of its studies, for a caller limited to some) and the events that
    /// concern no organization (refused credentials, the engine's own repairs). A page shorter than `limit` is the
    /// last one.
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP002 for a bad limit; EXP005.
    pub fn audit_events(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.call("audit_events", "audit".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::AuditRead, &p.org, None)?;
            if !(1..=1000).contains(&limit) {
                return Err(Error::validation(
                    Reason::OutOfRange,
                    "limit must be between 1 and 1000",
                )
                .with_field("limit"));
            }
            let events = self.visible_events(p, from, limit)?;
            Ok(Done {
                target: "audit".into(),
                details: json!({"from": from, "returned": events.len()}),
                value: events,
            })
        })
    }

    /// Up to `limit` events from `from` that `p` may see (see [`Session::audit_events`]).
    fn visible_events(&self, p: &Principal, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        const BATCH: usize = 1000;
        let mut out = Vec::new();
        let mut next = from.max(1);
        loop {
            let batch = self.inner.store.audit_read(next, BATCH)?;
            if batch.is_empty() {
                return Ok(out);
            }
            next = next.saturating_add(batch.len() as u64);
            for e in batch {
                let org_ok = e.org.is_empty() || e.org == p.org;
                let study_ok = e.study.as_deref().is_none_or(|s| p.sees_study(s));
                if org_ok && study_ok {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
    }

    /// Verifies the whole chain and returns a checkpoint of its last event: its sequence number and hash, signed
    /// with the engine's Ed25519 key, to keep outside the system and give to [`Session::verify_audit_against`]
    /// later (see [`crate::audit::Checkpoint`]).
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP005 `integrity_violation` as [`Session::verify_audit`].
    pub fn audit_checkpoint(&self) -> Result<Checkpoint> {
        self.call("audit_checkpoint", "audit".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::AuditRead, &p.org, None)?;
            self.inner.store.check_trail()?;
            let mut cp = self.inner.auditor.checkpoint(&*self.inner.store)?;
            let key = self.inner.signing.key();
            cp.signed = Some(crate::audit::CheckpointSignature {
                algorithm: "ed25519".into(),
                key_id: key.public_key().id(),
                signature: crate::codec::hex(&key.sign(&cp.signed_payload())),
            });
            Ok(Done {
                target: "audit".into(),
                details: json!({"seq": cp.seq, "hash": cp.hash, "signed": true}),
                value: cp,
            })
        })
    }

    /// [`Session::verify_audit`], and that the trail still reaches `checkpoint` with the same hash: detects a trail
    /// cut below the checkpoint or rewritten whole. A signed checkpoint's signature is checked first, with the
    /// engine's public key. Audited as `verify_audit`.
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP005 `integrity_violation` with `details.seq` and `details.check`
    /// (`checkpoint` when only the checkpoint does not match, `checkpoint_signature` when its signature is another
    /// key's or does not verify).
    pub fn verify_audit_against(&self, checkpoint: &Checkpoint) -> Result<u64> {
        self.call("verify_audit", "audit".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::AuditRead, &p.org, None)?;
            let signed = check_checkpoint_signature(self.inner, checkpoint)?;
            self.inner.store.check_trail()?;
            let n = self
                .inner
                .auditor
                .verify_with(&*self.inner.store, Some(checkpoint))?;
            Ok(Done {
                target: "audit".into(),
                details: json!({"events": n, "checkpoint_seq": checkpoint.seq,
                    "checkpoint_signed": signed}),
                value: n,
            })
        })
    }

    /// Verifies the audit trail's hash chain; returns the number of events checked.
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP005 `integrity_violation` with `details.seq`.
    pub fn verify_audit(&self) -> Result<u64> {
        self.call("verify_audit", "audit".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::AuditRead, &p.org, None)?;
            self.inner.store.check_trail()?;
            let n = self.inner.auditor.verify(&*self.inner.store)?;
            Ok(Done {
                target: "audit".into(),
                details: json!({"events": n}),
                value: n,
            })
        })
    }

    /// The study registry (see [`crate::study`]): an operator sees every binding; anyone else with `jobs:read` the
    /// studies of their own organization they may touch, by study id.
    ///
    /// # Errors
    /// EXP003 (needs `studies:manage` or `jobs:read`); EXP005.
    pub fn list_studies(&self) -> Result<Vec<StudyRecord>> {
        self.call("list_studies", "studies".to_string(), |call| {
            let p = call.principal();
            let list = if p.operates(Permission::StudiesManage) {
                self.inner.store.list_studies(None)?
            } else {
                authorize(p, Permission::JobsRead, &p.org, None)?;
                let mut list = self.inner.store.list_studies(Some(&p.org))?;
                list.retain(|r| p.sees_study(&r.study));
                list
            };
            Ok(Done {
                target: "studies".into(),
                details: json!({"returned": list.len()}),
                value: list,
            })
        })
    }

    /// Binds `study` to organization `org` (`studies:manage`, the `operator`'s), committed with its audit event
    /// (`add_study`, scoped to `org` and the study). The study need not have data yet.
    ///
    /// # Errors
    /// EXP003; EXP002 for an invalid study or organization name; EXP004 `study_exists` when the study is bound
    /// already (remove it first to move it); EXP005.
    pub fn add_study(&self, study: &str, org: &str) -> Result<StudyRecord> {
        self.call("add_study", format!("study:{study}"), |call| {
            let p = call.principal();
            authorize(p, Permission::StudiesManage, org, Some(study))?;
            crate::name::validate_name(study, "study")?;
            crate::name::validate_name(org, "org")?;
            call.set_scope(org, Some(study));
            let record = StudyRecord {
                study: study.to_string(),
                org: org.to_string(),
                added_at: call.at,
                added_by: p.subject.clone(),
            };
            let target = format!("study:{study}");
            let details = json!({"org": org});
            self.inner.write(|tx| {
                tx.insert_study(&record)?;
                call.record_success(tx, &target, &details)
            })?;
            Ok(Done {
                target,
                details,
                value: record,
            })
        })
    }

    /// Removes the binding of `study` (`studies:manage`), committed with its audit event (`remove_study`, scoped to
    /// the organization it belonged to): from then on it answers as an unknown study to everyone, and its jobs as
    /// unknown jobs, until it is bound again.
    ///
    /// # Errors
    /// EXP003; EXP001 for an unbound study; EXP005.
    pub fn remove_study(&self, study: &str) -> Result<StudyRecord> {
        self.call("remove_study", format!("study:{study}"), |call| {
            let p = call.principal();
            authorize(p, Permission::StudiesManage, &p.org, Some(study))?;
            let target = format!("study:{study}");
            let removed = self.inner.write(|tx| {
                let record = tx.study(study)?.ok_or_else(|| unbound_study(study))?;
                tx.delete_study(study)?;
                call.set_scope(&record.org, Some(study));
                call.record_success(tx, &target, &json!({"org": record.org}))?;
                Ok(record)
            })?;
            Ok(Done {
                target,
                details: json!({"org": removed.org}),
                value: removed,
            })
        })
    }

    /// Loads a job and checks `permission` on its organization and study.
    pub(super) fn visible_job(
        &self,
        call: &Call<'_>,
        job_id: Uuid,
        permission: Permission,
    ) -> Result<Job> {
        let job = self.inner.store.get_job(job_id)?;
        if job.org != call.principal().org || !self.inner.study_belongs(&job.org, &job.study)? {
            // Another organization's job, or a job of a study that is not the organization's (any more), is
            // reported, and audited, exactly as a job that does not exist (the stores' error): its existence is
            // not disclosed.
            return Err(Error::not_found("no job with this id"));
        }
        call.set_scope(&job.org, Some(&job.study));
        authorize(call.principal(), permission, &job.org, Some(&job.study))?;
        Ok(job)
    }
}

/// Checks a checkpoint's signature with the engine's public key; `false` for an unsigned checkpoint (made before
/// checkpoints were signed).
///
/// # Errors
/// EXP005 `integrity_violation` (check `checkpoint_signature`) for a signature of another key, or one that does not
/// verify (the checkpoint was edited).
fn check_checkpoint_signature(inner: &Inner, checkpoint: &Checkpoint) -> Result<bool> {
    let Some(sig) = &checkpoint.signed else {
        return Ok(false);
    };
    let public = inner.signing.key().public_key();
    let refused = |message: &str| {
        Error::server(Reason::IntegrityViolation, message.to_string())
            .with_detail("check", "checkpoint_signature")
            .with_detail("seq", checkpoint.seq)
    };
    if sig.key_id != public.id() {
        return Err(refused(
            "the checkpoint was signed by another key than this engine's",
        ));
    }
    let bytes = crate::codec::hex_decode(&sig.signature)
        .ok_or_else(|| refused("the checkpoint's signature is not hex"))?;
    if !public.verify(&checkpoint.signed_payload(), &bytes) {
        return Err(refused(
            "the checkpoint's signature does not verify: it was altered",
        ));
    }
    Ok(true)
}
