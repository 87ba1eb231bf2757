//! The engine: the eight operations, wired explicitly with a builder, running jobs on worker threads.
//!
//! Every operation takes a credential first, authenticates it, authorizes the principal through
//! [`crate::auth::authorize`], does its work and records one audit event, allowed, denied or failed
//! (fail-closed). Export operations validate the request, store a `queued` job and return it at once; a pool of
//! worker threads runs it.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use arrow::record_batch::RecordBatch;
//! use trialport_core::engine::Engine;
//! use trialport_core::request::ExportDataRequest;
//! use trialport_core::source::MemorySource;
//!
//! let source = Arc::new(MemorySource::new());
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("USUBJID", DataType::Utf8, false),
//!     Field::new("AGE", DataType::Int64, true),
//! ]));
//! let batch = RecordBatch::try_new(schema.clone(), vec![
//!     Arc::new(StringArray::from(vec!["S1-001", "S1-002"])),
//!     Arc::new(Int64Array::from(vec![Some(34), None])),
//! ]).unwrap();
//! source.add("S1", "DM", schema, vec![batch]).unwrap();
//!
//! // Formats come from trialport-formats (`default_formats()`); none are registered here.
//! let engine = Engine::builder().source(source).build().unwrap();
//! let key = engine.create_initial_admin_key("acme").unwrap();
//! let credential = format!("ApiKey {key}");
//! let err = engine
//!     .export_data(&credential, ExportDataRequest::new("S1", &["DM"], "csv"))
//!     .unwrap_err();
//! assert_eq!(err.code().as_str(), "EXP001"); // no format "csv" in this engine
//! ```

mod compute;
mod download;
mod encryption;
mod package;
mod retention;
mod run;
mod signing;
mod summary;

pub use download::{download_error, Download, SavedArtifact};
pub use retention::{PurgeSummary, DEFAULT_SWEEP_INTERVAL};

use crate::audit::{
    Actor, AuditEvent, AuditHook, AuditRecord, AuditScope, Auditor, Checkpoint, Outcome,
};
use crate::auth::{authorize, ApiKeyRecord, Authenticator, NewApiKey, Permission, Principal, Role};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorCode, Result};
use crate::format::{Capability, FormatInfo, FormatRegistry};
use crate::job::{Job, JobKind, JobState, Progress};
use crate::request::{
    BulkExportRequest, DashboardRequest, DatasetSelection, ExportDataRequest, ListJobsRequest,
    PackageContainer, PackageKind, ReportRequest,
};
use crate::sink::{hex, MemorySink, Sink};
use crate::source::{unknown_dataset, unknown_study, BatchStream, DataSource, Filter};
use crate::store::{AuditStore, JobPage, JobQuery, JobStore, KeyStore, MemoryStore, SqliteStore};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The engine's version, written into manifests.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Jobs per page when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;
/// The largest page.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// Builds an [`Engine`]. Every part has a default: memory stores, a memory sink, a random pepper, the system
/// clock, two workers, no formats and no sources.
pub struct EngineBuilder {
    formats: FormatRegistry,
    sources: Vec<Arc<dyn DataSource>>,
    sink: Option<Arc<dyn Sink>>,
    jobs: Option<Arc<dyn JobStore>>,
    keys: Option<Arc<dyn KeyStore>>,
    audit: Option<Arc<dyn AuditStore>>,
    hooks: Vec<Arc<dyn AuditHook>>,
    clock: Arc<dyn Clock>,
    pepper: Option<Vec<u8>>,
    workers: usize,
    retention: retention::Retention,
    /// How often the background sweep expires due jobs (`None`: no sweep).
    sweep_interval: Option<Duration>,
    /// Held (shared) while the engine lives, so that another process opening the same home knows it is alive.
    home_lock: Option<std::fs::File>,
    rate_limit: Option<crate::limit::RateLimiter>,
    /// Whether no other engine process is alive, so jobs left `running` belong to a dead process.
    sole_process: bool,
    jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    encryption: Option<Arc<dyn crate::crypto::KeyProvider>>,
    deid_key: Option<Arc<crate::deid::DeidKey>>,
    signing_key: Option<crate::signature::SigningKey>,
    password_store: Option<Arc<crate::signature::PasswordStore>>,
    signature_verifier: Option<Arc<dyn crate::signature::SignatureVerifier>>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("formats", &self.formats)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Sets the formats (replacing any set before).
    pub fn formats(mut self, formats: FormatRegistry) -> Self {
        self.formats = formats;
        self
    }

    /// Adds a data source; sources are asked in the order added.
    pub fn source(mut self, source: Arc<dyn DataSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Sets the artifact sink (default: memory).
    pub fn sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Uses one store for jobs, keys and the audit trail (e.g. [`SqliteStore`]).
    pub fn store<S: JobStore + KeyStore + AuditStore + 'static>(mut self, store: Arc<S>) -> Self {
        self.jobs = Some(store.clone());
        self.keys = Some(store.clone());
        self.audit = Some(store);
        self
    }

    /// Uses `store` for the audit trail (after [`EngineBuilder::store`], which sets all three).
    pub fn audit_store(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.audit = Some(store);
        self
    }

    /// Adds an audit hook; every event goes to the store, then to each hook in order.
    pub fn audit_hook(mut self, hook: Arc<dyn AuditHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Sets the clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the pepper of API key hashes (at least 32 bytes; default: random, so keys die with the engine).
    pub fn pepper(mut self, pepper: &[u8]) -> Self {
        self.pepper = Some(pepper.to_vec());
        self
    }

    /// Sets the number of worker threads (default 2; 0 runs no job, for tests of queued jobs).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Limits each principal to `burst` calls at once and `per_second` on average (default: no limit).
    /// Calls over the limit fail with EXP006 and `details.retry_after_ms`.
    ///
    /// # Errors
    /// EXP002 unless both are positive.
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Result<Self> {
        self.rate_limit = Some(crate::limit::RateLimiter::new(per_second, burst)?);
        Ok(self)
    }

    /// Accepts `Bearer <jwt>` credentials verified by `verifier` (default: none, so bearer tokens fail with
    /// EXP003 `unsupported_credential`). Token times are checked against the engine clock.
    pub fn jwt(mut self, verifier: crate::jwt::JwtVerifier) -> Self {
        self.jwt = Some(Arc::new(verifier));
        self
    }

    /// Encrypts every artifact at rest under data keys wrapped by `keys` (default: off; on for a home whose
    /// configuration says so): the sink set by [`EngineBuilder::sink`] or [`EngineBuilder::home`] is wrapped in a
    /// [`crate::crypto::EncryptedSink`] when the engine is built.
    pub fn encryption(mut self, keys: Arc<dyn crate::crypto::KeyProvider>) -> Self {
        self.encryption = Some(keys);
        self
    }

    /// The key of pseudonyms and date shifts (default: none, so `pseudonymize` and `date-shift` are refused with
    /// EXP005 `key_unavailable`; a home's `deid.key` with [`EngineBuilder::home`]).
    pub fn deid_key(mut self, key: crate::deid::DeidKey) -> Self {
        self.deid_key = Some(Arc::new(key));
        self
    }

    /// Artifacts of succeeded jobs of every kind without its own [`EngineBuilder::retention_for`] expire this
    /// long after the job finished (default: never). See [`Engine::purge`] for what expiry does.
    ///
    /// A retention time that is not positive makes [`EngineBuilder::build`] fail with EXP002
    /// `invalid_retention`.
    pub fn retention(mut self, after: chrono::Duration) -> Self {
        self.retention.set_default(after);
        self
    }

    /// Artifacts of succeeded jobs of `kind` expire this long after the job finished (default: as
    /// [`EngineBuilder::retention`]). Not positive: [`EngineBuilder::build`] fails with EXP002
    /// `invalid_retention`.
    pub fn retention_for(mut self, kind: JobKind, after: chrono::Duration) -> Self {
        self.retention.set(kind, after);
        self
    }

    /// How often a background thread expires the due jobs of every organization in the job store when any
    /// retention is set (default [`DEFAULT_SWEEP_INTERVAL`], 60 s; `None`: no sweep, jobs then expire at
    /// [`Engine::purge`] or when downloaded). A zero interval makes [`EngineBuilder::build`] fail with EXP002
    /// `invalid_sweep_interval`.
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Wires the engine to a home directory made by [`crate::home::Home::init`]: its SQLite store, its artifact
    /// directory, its pepper and, when its configuration turns encryption on, its key-encryption keys.
    ///
    /// # Errors
    /// EXP001 when `dir` is not a home; EXP002 `invalid_retention` for a bad retention setting; EXP005 for I/O.
    pub fn home(self, dir: &Path) -> Result<Self> {
        let home = crate::home::Home::open(dir)?;
        let store = Arc::new(SqliteStore::open(&home.database_path())?);
        // The audit trail lives in the append-only log; a trail an earlier version kept in SQLite moves there once.
        let audit = Arc::new(crate::store::AuditFileStore::open(&home.audit_log_path())?);
        audit.import(&*store)?;
        let sink = Arc::new(crate::sink::LocalDirSink::new(home.artifacts_dir())?);
        let pepper = home.pepper()?;
        // An exclusive lock succeeds only when no other engine has this home open: then jobs left `running`
        // were orphaned by a dead process. The lock is then held shared for the engine's lifetime.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("engine.lock"))
            .map_err(|e| Error::io("cannot open the home lock", &e))?;
        let sole = lock.try_lock().is_ok();
        if sole {
            lock.unlock()
                .map_err(|e| Error::io("cannot release the home lock", &e))?;
        }
        lock.lock_shared()
            .map_err(|e| Error::io("cannot take the home lock", &e))?;
        let mut b = self
            .store(store)
            .audit_store(audit)
            .sink(sink)
            .pepper(&pepper);
        b.home_lock = Some(lock);
        b.sole_process = sole;
        if let Some(w) = home.config().workers {
            b = b.workers(w);
        }
        for (kind, days) in home.config().retention_by_kind()? {
            if let Some(days) = days {
                b = b.retention_for(kind, chrono::Duration::days(i64::from(days)));
            }
        }
        if let Some(keys) = home.key_provider() {
            b = b.encryption(Arc::new(keys));
        }
        b = b.deid_key(home.deid_key()?);
        b = b.signing_key(home.signing_key()?);
        b = b.password_store(Arc::new(crate::signature::PasswordStore::open(
            &home.database_path(),
            home.config().signing.unwrap_or_default(),
        )?));
        Ok(b)
    }

    /// Builds the engine, re-queues jobs a dead process left running (on a home: only when no other engine has
    /// the home open), and starts the workers.
    ///
    /// # Errors
    /// EXP002 for a pepper shorter than 32 bytes, `invalid_retention` for a retention time that is not positive,
    /// `invalid_sweep_interval` for a zero sweep interval; EXP005 when randomness, the store or the audit trail
    /// fails.
    pub fn build(mut self) -> Result<Engine> {
        self.retention.check()?;
        if self.sweep_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::validation(
                "invalid_sweep_interval",
                "the retention sweep interval must be positive",
            )
            .with_field("sweep_interval"));
        }
        let signing = self.take_signing()?;
        let memory = Arc::new(MemoryStore::new());
        let pepper = match self.pepper {
            Some(p) if p.len() >= 32 => p,
            Some(_) => {
                return Err(Error::validation(
                    "weak_pepper",
                    "the API key pepper needs at least 32 bytes",
                ))
            }
            None => {
                let mut p = vec![0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut p).map_err(
                    |_| Error::server("rng_failed", "the system random generator failed"),
                )?;
                p
            }
        };
        let keys = self.keys.unwrap_or_else(|| memory.clone());
        let mut sink: Arc<dyn Sink> = self.sink.unwrap_or_else(|| Arc::new(MemorySink::new()));
        if let Some(kp) = &self.encryption {
            sink = Arc::new(crate::crypto::EncryptedSink::new(sink, kp.clone()));
        }
        let inner = Arc::new(Inner {
            formats: self.formats,
            sources: self.sources,
            sink,
            key_provider: self.encryption,
            deid_key: self.deid_key,
            jobs: self.jobs.unwrap_or_else(|| memory.clone()),
            auth: Authenticator::new(keys, &pepper).with_jwt(self.jwt),
            auditor: Auditor::new(
                self.audit.unwrap_or_else(|| memory.clone()),
                self.hooks,
                self.clock.clone(),
            ),
            clock: self.clock,
            retention: self.retention,
            expiry: Mutex::new(()),
            sweep_lock: Mutex::new(()),
            sweep_wake: Condvar::new(),
            running: Mutex::new(HashMap::new()),
            wake: Condvar::new(),
            wake_lock: Mutex::new(0),
            unaudited: Mutex::new(HashSet::new()),
            audited: Condvar::new(),
            changed: Condvar::new(),
            changed_lock: Mutex::new(0),
            shutdown: AtomicBool::new(false),
            _home_lock: self.home_lock,
            rate_limit: self.rate_limit,
            signing,
        });
        // A torn tail the audit log cut away when it was opened goes on the record at once.
        inner.auditor.flush_recoveries()?;
        let orphans = if self.sole_process {
            inner.jobs.requeue_running()?
        } else {
            vec![]
        };
        for job in orphans {
            inner.audit_system(
                "job.requeued",
                &job,
                json!({"reason": "worker_lost", "state": "queued"}),
            )?;
        }
        let workers = (0..self.workers)
            .map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("trialport-worker-{i}"))
                    .spawn(move || run::worker_loop(&inner))
                    .map_err(|e| Error::io("cannot start a worker thread", &e))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut engine = Engine {
            inner,
            workers,
            sweeper: None,
        };
        if let (true, Some(every)) = (engine.inner.retention.is_on(), self.sweep_interval) {
            let inner = engine.inner.clone();
            // On failure `engine` is dropped, which stops the workers.
            engine.sweeper = Some(
                std::thread::Builder::new()
                    .name("trialport-retention".into())
                    .spawn(move || retention::sweep_loop(&inner, every))
                    .map_err(|e| Error::io("cannot start the retention thread", &e))?,
            );
        }
        Ok(engine)
    }
}

/// State shared by the engine handle and its workers.
pub(crate) struct Inner {
    pub(crate) formats: FormatRegistry,
    pub(crate) sources: Vec<Arc<dyn DataSource>>,
    pub(crate) sink: Arc<dyn Sink>,
    /// The key provider when artifacts are encrypted at rest (`sink` is then an `EncryptedSink`).
    pub(crate) key_provider: Option<Arc<dyn crate::crypto::KeyProvider>>,
    /// The key of pseudonyms and date shifts.
    pub(crate) deid_key: Option<Arc<crate::deid::DeidKey>>,
    pub(crate) jobs: Arc<dyn JobStore>,
    pub(crate) auth: Authenticator,
    pub(crate) auditor: Auditor,
    pub(crate) clock: Arc<dyn Clock>,
    /// The retention of each kind of job (see [`retention`]).
    pub(crate) retention: retention::Retention,
    /// Held while a job expires: one expiry at a time.
    pub(crate) expiry: Mutex<()>,
    /// The retention sweep waits on `sweep_wake` between passes, and is woken to stop.
    pub(crate) sweep_lock: Mutex<()>,
    pub(crate) sweep_wake: Condvar,
    /// Cancel flags of the jobs this process is running.
    pub(crate) running: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
    pub(crate) wake: Condvar,
    pub(crate) wake_lock: Mutex<u64>,
    /// Jobs with an audit event on the way: submitted by a call not audited yet (a worker waits before it audits
    /// the job's start, so that the trail says `export_data` before `job.running`), or finished by a worker that
    /// has not audited the end yet (a `wait` waits, so that `job.succeeded` comes before the `wait`).
    pub(crate) unaudited: Mutex<HashSet<Uuid>>,
    /// Signalled when a call's audit event is written.
    pub(crate) audited: Condvar,
    pub(crate) changed: Condvar,
    pub(crate) changed_lock: Mutex<u64>,
    pub(crate) shutdown: AtomicBool,
    _home_lock: Option<std::fs::File>,
    rate_limit: Option<crate::limit::RateLimiter>,
    /// The signing key, the verifier of signers' passwords and the store of failed attempts.
    pub(crate) signing: crate::signature::Signing,
}

impl Inner {
    pub(crate) fn audit_system(
        &self,
        action: &str,
        job: &Job,
        details: Value,
    ) -> Result<AuditEvent> {
        self.auditor.emit_in(
            AuditRecord {
                actor: Actor::system(),
                action: action.to_string(),
                target: format!("job:{}", job.id),
                outcome: Outcome::Success,
                details,
                request_id: format!("job_{}", job.id.simple()),
            },
            AuditScope::new(job.org.clone(), Some(&job.study)),
        )
    }

    /// Wakes the workers: a job was queued.
    pub(crate) fn notify_queued(&self) {
        let mut n = self.wake_lock.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.wake.notify_all();
    }

    /// Waits (at most `limit`) until no audit event about job `id` is pending: the event of the call that submitted
    /// it, or the worker's event of its end.
    pub(crate) fn wait_audited(&self, id: Uuid, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut pending = self.unaudited.lock().unwrap_or_else(|p| p.into_inner());
        while pending.contains(&id) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            pending = self
                .audited
                .wait_timeout(pending, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wakes waiters: a job changed state.
    pub(crate) fn notify_changed(&self) {
        let mut n = self.changed_lock.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.changed.notify_all();
    }

    /// The source holding `dataset` of `study`.
    pub(crate) fn source_for(&self, study: &str, dataset: &str) -> Result<&Arc<dyn DataSource>> {
        let mut study_known = false;
        for s in &self.sources {
            match s.datasets(study) {
                Ok(list) => {
                    study_known = true;
                    if list.iter().any(|d| d.name == dataset) {
                        return Ok(s);
                    }
                }
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Err(if study_known {
            unknown_dataset(study, dataset)
        } else {
            unknown_study(study)
        })
    }

    /// Every dataset name of `study` across sources, sorted.
    pub(crate) fn dataset_names(&self, study: &str) -> Result<Vec<String>> {
        let mut names = BTreeSet::new();
        let mut known = false;
        for s in &self.sources {
            match s.datasets(study) {
                Ok(list) => {
                    known = true;
                    names.extend(list.into_iter().map(|d| d.name));
                }
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !known {
            return Err(unknown_study(study));
        }
        Ok(names.into_iter().collect())
    }

    /// Scans a selection of a dataset.
    pub(crate) fn scan(
        &self,
        study: &str,
        dataset: &str,
        columns: Option<&[String]>,
        filters: &[Filter],
    ) -> Result<BatchStream> {
        self.source_for(study, dataset)?
            .scan_selected(study, dataset, columns, filters)
    }
}

/// The export engine. Dropping it stops the workers; a job they were running goes back to `queued`.
pub struct Engine {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
    /// The retention sweep, when any retention is set.
    sweeper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("formats", &self.inner.formats)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        for flag in self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            flag.store(true, Ordering::SeqCst);
        }
        self.inner.notify_queued();
        self.inner.notify_sweeper();
        for w in self.workers.drain(..).chain(self.sweeper.take()) {
            let _ = w.join();
        }
    }
}

/// The context of one operation call: request id, time, and the principal once known.
struct Call<'a> {
    inner: &'a Inner,
    action: &'static str,
    request_id: String,
    at: chrono::DateTime<chrono::Utc>,
    principal: Option<Principal>,
    /// The organization and study the call concerns, once a job it reads names them (see [`Call::scope`]).
    scope: Mutex<Option<AuditScope>>,
    /// Jobs this call submitted, held back from their `job.running` event until the call is audited.
    submitted: Mutex<Vec<Uuid>>,
}

/// Releases the jobs a call submitted once the call is done (audited or failed).
struct ReleaseOnDrop<'c, 'a>(&'c Call<'a>);

impl Drop for ReleaseOnDrop<'_, '_> {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.0.submitted.lock().unwrap_or_else(|p| p.into_inner()));
        if ids.is_empty() {
            return;
        }
        let inner = self.0.inner;
        let mut pending = inner.unaudited.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            pending.remove(&id);
        }
        inner.audited.notify_all();
    }
}

impl<'a> Call<'a> {
    /// Records that the call concerns `org` and `study` (the job it reads), for its audit event.
    fn set_scope(&self, org: &str, study: Option<&str>) {
        *self.scope.lock().unwrap_or_else(|p| p.into_inner()) = Some(AuditScope::new(org, study));
    }

    /// The scope of the call's audit event: as set, else the caller's organization and the study of a
    /// `study:<id>` target.
    fn scope(&self, target: &str) -> AuditScope {
        if let Some(s) = self.scope.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return s;
        }
        AuditScope::new(
            self.principal
                .as_ref()
                .map(|p| p.org.clone())
                .unwrap_or_default(),
            target.strip_prefix("study:"),
        )
    }

    fn actor(&self) -> Actor {
        match &self.principal {
            Some(p) => Actor {
                subject: p.subject.clone(),
                name: p.name.clone(),
                org: p.org.clone(),
            },
            None => Actor {
                subject: "anonymous".into(),
                name: String::new(),
                org: String::new(),
            },
        }
    }

    fn principal(&self) -> &Principal {
        // Set by `Engine::call` before the body runs.
        self.principal
            .as_ref()
            .unwrap_or_else(|| unreachable!("operation body ran without a principal"))
    }

    fn audit(&self, target: &str, outcome: Outcome, details: Value) -> Result<AuditEvent> {
        self.inner.auditor.emit_in(
            AuditRecord {
                actor: self.actor(),
                action: self.action.to_string(),
                target: target.to_string(),
                outcome,
                details,
                request_id: self.request_id.clone(),
            },
            self.scope(target),
        )
    }
}

/// What an operation body returns on success: the value and its audit target and details.
struct Done<T> {
    value: T,
    target: String,
    details: Value,
}

impl Engine {
    /// A builder with every default.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            formats: FormatRegistry::new(),
            sources: Vec::new(),
            sink: None,
            jobs: None,
            keys: None,
            audit: None,
            hooks: Vec::new(),
            clock: Arc::new(SystemClock),
            pepper: None,
            workers: 2,
            retention: retention::Retention::default(),
            sweep_interval: Some(DEFAULT_SWEEP_INTERVAL),
            home_lock: None,
            rate_limit: None,
            sole_process: true,
            jwt: None,
            encryption: None,
            deid_key: None,
            signing_key: None,
            password_store: None,
            signature_verifier: None,
        }
    }

    /// Runs one operation: authenticate, run the body (which authorizes), audit the outcome, stamp errors.
    /// `target` names what a refused or failed call was aimed at; a successful body names its own.
    fn call<T>(
        &self,
        action: &'static str,
        target: String,
        credential: &str,
        body: impl FnOnce(&Call<'_>) -> Result<Done<T>>,
    ) -> Result<T> {
        let mut call = Call {
            inner: &self.inner,
            action,
            request_id: format!("req_{}", Uuid::now_v7().simple()),
            at: self.inner.clock.now(),
            principal: None,
            scope: Mutex::new(None),
            submitted: Mutex::new(Vec::new()),
        };
        let stamp = |e: Error, call: &Call<'_>| e.with_request(&call.request_id, call.at);
        let authenticated = self
            .inner
            .auth
            .authenticate(credential, call.at)
            .and_then(|p| {
                if let Some(limit) = &self.inner.rate_limit {
                    limit.check(&p.subject, Instant::now())?;
                }
                Ok(p)
            });
        match authenticated {
            Ok(p) => {
                call.principal = Some(p);
            }
            Err(e) => {
                let outcome =
                    if matches!(e.code(), ErrorCode::Unauthorized | ErrorCode::RateLimited) {
                        Outcome::Denied
                    } else {
                        Outcome::Failed
                    };
                call.audit(&target, outcome, json!({"reason": e.reason()}))
                    .map_err(|a| stamp(a, &call))?;
                return Err(stamp(e, &call));
            }
        }
        // A call aimed at a study concerns that study, whatever its body names as its target (e.g. the new job).
        if let (Some(study), Some(p)) = (target.strip_prefix("study:"), &call.principal) {
            call.set_scope(&p.org, Some(study));
        }
        let result = body(&call);
        // Whatever happens below, the jobs this call submitted may start once its event is written (or failed).
        let _release = ReleaseOnDrop(&call);
        match result {
            Ok(done) => {
                call.audit(&done.target, Outcome::Success, done.details)
                    .map_err(|e| stamp(e, &call))?;
                Ok(done.value)
            }
            Err(e) => {
                let outcome = if e.code() == ErrorCode::Unauthorized {
                    Outcome::Denied
                } else {
                    Outcome::Failed
                };
                let mut details = json!({"code": e.code().as_str(), "reason": e.reason()});
                if let Some(f) = e.field() {
                    details["field"] = json!(f);
                }
                call.audit(&target, outcome, details)
                    .map_err(|a| stamp(a, &call))?;
                Err(stamp(e, &call))
            }
        }
    }

    /// `export_data`: exports datasets of a study, one artifact per dataset. With `identifiable`, the request
    /// needs the `data:identifiable` permission and an e-signature (see [`crate::signature`]); any signature given
    /// is checked now and applied to the job's manifest when it succeeds.
    ///
    /// # Errors
    /// EXP003 unauthorized, or for the e-signature `signature_required`, `signature_invalid`, `signing_locked` or
    /// `signing_not_enrolled`; EXP002 for a bad request (no datasets, a name twice, a format without the data
    /// capability, a bad option, column or filter); EXP002 with field `deidentify` for a bad de-identification
    /// policy and `identifiable_data` for identifying columns without `identifiable` (see [`crate::deid`]);
    /// EXP001 for an unknown format, study or dataset; EXP004 for an idempotency key reused with another request;
    /// EXP005 for store or audit failures, `key_unavailable` for pseudonyms or date shifts without a key.
    pub fn export_data(&self, credential: &str, request: ExportDataRequest) -> Result<Job> {
        self.call(
            "export_data",
            format!("study:{}", request.study),
            credential,
            |call| {
                let p = call.principal();
                authorize(p, Permission::ExportData, &p.org, Some(&request.study))?;
                if request.identifiable {
                    authorize(
                        p,
                        Permission::IdentifiableData,
                        &p.org,
                        Some(&request.study),
                    )?;
                }
                crate::sink::validate_name(&request.study, "study")?;
                let describes = self
                    .inner
                    .formats
                    .get(&request.format)?
                    .info()
                    .can(Capability::Describe);
                let needed = if describes {
                    Capability::Describe
                } else {
                    Capability::Data
                };
                self.check_format(&request.format, needed, &request.options)?;
                self.check_selections(&request.study, &request.datasets)?;
                let deid = if describes {
                    // A metadata document carries no values: nothing to de-identify.
                    if request.deidentify.is_some() {
                        return Err(Error::validation(
                            "unsupported_by_format",
                            "de-identification applies to data formats, not to metadata documents",
                        )
                        .with_field("deidentify"));
                    }
                    None
                } else {
                    self.check_deidentify(
                        &request.study,
                        &request.datasets,
                        request.deidentify.as_ref(),
                        request.identifiable,
                    )?
                };
                let critical = request
                    .identifiable
                    .then_some(signing::Critical::IdentifiableData);
                let signed = self.check_signature(call, request.signature.as_ref(), critical)?;
                let total = request.datasets.len() as u32;
                let mut done = self.submit(
                    call,
                    JobKind::Data,
                    &request.study,
                    &request.format,
                    request.idempotency_key.clone(),
                    serde_json::to_value(&request).unwrap_or(Value::Null),
                    total,
                )?;
                if let Some(d) = deid {
                    done.details["deidentification"] = d;
                }
                if let Some(s) = signed {
                    done.details["signature"] = s;
                }
                Ok(done)
            },
        )
    }

    /// `bulk_export`: several datasets of a study in one zip package with `manifest.json`. An eCTD package, and
    /// a package with `identifiable`, needs an e-signature (see [`crate::signature`]).
    ///
    /// # Errors
    /// As [`Engine::export_data`]; EXP002 `ectd_requires_xpt_v5` or `ectd_requires_define` for an eCTD package
    /// the request or the engine cannot make, `unsupported_container` for a zip package in a directory; the job
    /// fails with EXP002 `fda_check_failed` listing every violation of every dataset, writing nothing.
    pub fn bulk_export(&self, credential: &str, request: BulkExportRequest) -> Result<Job> {
        self.call(
            "bulk_export",
            format!("study:{}", request.study),
            credential,
            |call| {
                let p = call.principal();
                authorize(p, Permission::ExportBulk, &p.org, Some(&request.study))?;
                if request.identifiable {
                    authorize(
                        p,
                        Permission::IdentifiableData,
                        &p.org,
                        Some(&request.study),
                    )?;
                }
                crate::sink::validate_name(&request.study, "study")?;
                self.check_package(&request)?;
                self.check_format(&request.format, Capability::Data, &request.options)?;
                let mut request = request;
                if request.datasets.is_empty() {
                    request.datasets = self
                        .inner
                        .dataset_names(&request.study)?
                        .into_iter()
                        .map(DatasetSelection::Name)
                        .collect();
                }
                self.check_selections(&request.study, &request.datasets)?;
                let deid = self.check_deidentify(
                    &request.study,
                    &request.datasets,
                    request.deidentify.as_ref(),
                    request.identifiable,
                )?;
                let critical = if request.package == PackageKind::Ectd {
                    Some(signing::Critical::EctdPackage)
                } else {
                    request
                        .identifiable
                        .then_some(signing::Critical::IdentifiableData)
                };
                let signed = self.check_signature(call, request.signature.as_ref(), critical)?;
                let total = request.datasets.len() as u32;
                let mut done = self.submit(
                    call,
                    JobKind::Bulk,
                    &request.study,
                    &request.format,
                    request.idempotency_key.clone(),
                    serde_json::to_value(&request).unwrap_or(Value::Null),
                    total,
                )?;
                if let Some(d) = deid {
                    done.details["deidentification"] = d;
                }
                if let Some(s) = signed {
                    done.details["signature"] = s;
                }
                Ok(done)
            },
        )
    }

    /// `export_report`: renders a report (title, parameters, text and table sections).
    ///
    /// # Errors
    /// EXP003; EXP002 for a bad spec or a format that does not render reports; EXP001 for unknown format, study or
    /// dataset; EXP004; EXP005.
    pub fn export_report(&self, credential: &str, request: ReportRequest) -> Result<Job> {
        self.call(
            "export_report",
            format!("study:{}", request.report.study),
            credential,
            |call| {
                let p = call.principal();
                let study = &request.report.study;
                authorize(p, Permission::ExportReport, &p.org, Some(study))?;
                crate::sink::validate_name(study, "study")?;
                self.check_format(&request.format, Capability::Report, &request.options)?;
                compute::check_report(&self.inner, &request.report)?;
                let signed = self.check_signature(call, request.signature.as_ref(), None)?;
                let mut done = self.submit(
                    call,
                    JobKind::Report,
                    study,
                    &request.format,
                    request.idempotency_key.clone(),
                    serde_json::to_value(&request).unwrap_or(Value::Null),
                    1,
                )?;
                if let Some(s) = signed {
                    done.details["signature"] = s;
                }
                Ok(done)
            },
        )
    }

    /// `export_dashboard`: renders a dashboard (KPI tiles, tables, bar and line charts).
    ///
    /// # Errors
    /// As [`Engine::export_report`].
    pub fn export_dashboard(&self, credential: &str, request: DashboardRequest) -> Result<Job> {
        self.call(
            "export_dashboard",
            format!("study:{}", request.dashboard.study),
            credential,
            |call| {
                let p = call.principal();
                let study = &request.dashboard.study;
                authorize(p, Permission::ExportDashboard, &p.org, Some(study))?;
                crate::sink::validate_name(study, "study")?;
                self.check_format(&request.format, Capability::Dashboard, &request.options)?;
                compute::check_dashboard(&self.inner, &request.dashboard)?;
                let signed = self.check_signature(call, request.signature.as_ref(), None)?;
                let mut done = self.submit(
                    call,
                    JobKind::Dashboard,
                    study,
                    &request.format,
                    request.idempotency_key.clone(),
                    serde_json::to_value(&request).unwrap_or(Value::Null),
                    1,
                )?;
                if let Some(s) = signed {
                    done.details["signature"] = s;
                }
                Ok(done)
            },
        )
    }

    /// `list_jobs`: the jobs the caller may see (own organization, permitted studies), newest first.
    ///
    /// # Errors
    /// EXP003; EXP002 with field `limit` (not 1..=100), `page` (below 1) or `status`; EXP005.
    pub fn list_jobs(&self, credential: &str, request: ListJobsRequest) -> Result<JobPage> {
        self.call("list_jobs", "jobs".to_string(), credential, |call| {
            let p = call.principal();
            authorize(p, Permission::JobsRead, &p.org, request.study.as_deref())?;
            let limit = request.limit.unwrap_or(i64::from(DEFAULT_PAGE_LIMIT));
            if !(1..=i64::from(MAX_PAGE_LIMIT)).contains(&limit) {
                return Err(Error::validation(
                    "out_of_range",
                    format!("limit must be between 1 and {MAX_PAGE_LIMIT}"),
                )
                .with_field("limit")
                .with_detail("min", 1)
                .with_detail("max", MAX_PAGE_LIMIT));
            }
            let page = request.page.unwrap_or(1);
            if !(1..=i64::from(u32::MAX)).contains(&page) {
                return Err(Error::validation("out_of_range", "page must be 1 or more")
                    .with_field("page")
                    .with_detail("min", 1));
            }
            let state = request.status.as_deref().map(JobState::parse).transpose()?;
            let studies = match &request.study {
                Some(s) => Some(vec![s.clone()]),
                None => p.study_scope(),
            };
            let result = self.inner.jobs.list(&JobQuery {
                org: p.org.clone(),
                studies,
                state,
                page: page as u32,
                limit: limit as u32,
            })?;
            Ok(Done {
                details: json!({"page": result.page, "limit": result.limit, "returned": result.items.len(),
                    "total": result.total}),
                target: format!("org:{}", p.org),
                value: result,
            })
        })
    }

    /// `get_job`: one job's state, progress, artifacts and error.
    ///
    /// # Errors
    /// EXP003; EXP001 for an unknown job; EXP005.
    pub fn get_job(&self, credential: &str, job_id: Uuid) -> Result<Job> {
        self.call("get_job", format!("job:{job_id}"), credential, |call| {
            let job = self.visible_job(call, job_id, Permission::JobsRead)?;
            Ok(Done {
                target: format!("job:{}", job.id),
                details: json!({"state": job.state}),
                value: job,
            })
        })
    }

    /// Waits until a job has finished (or `timeout` passed) and returns it.
    ///
    /// # Errors
    /// As [`Engine::get_job`]; a timeout is not an error: the job is returned as it is.
    pub fn wait(&self, credential: &str, job_id: Uuid, timeout: Option<Duration>) -> Result<Job> {
        self.wait_with_progress(credential, job_id, timeout, |_| {})
    }

    /// Like [`Engine::wait`], calling `on_progress` with the job whenever it is read again (about every 50 ms
    /// while it runs): one audited call however long the wait, for progress bars.
    ///
    /// # Errors
    /// As [`Engine::get_job`].
    pub fn wait_with_progress(
        &self,
        credential: &str,
        job_id: Uuid,
        timeout: Option<Duration>,
        mut on_progress: impl FnMut(&Job),
    ) -> Result<Job> {
        self.call("wait", format!("job:{job_id}"), credential, |call| {
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
                job = self.inner.jobs.get(job_id)?;
                on_progress(&job);
            }
            if job.state.is_finished() {
                // The worker audits the job's end right after storing it: the wait is recorded after that.
                self.inner.wait_audited(job_id, Duration::from_secs(5));
            }
            Ok(Done {
                target: format!("job:{}", job.id),
                details: json!({"state": job.state}),
                value: job,
            })
        })
    }

    /// Cancels a queued or running job. A running job stops at its next batch and leaves no artifact.
    ///
    /// # Errors
    /// EXP003; EXP001; EXP004 `illegal_transition` for a finished job; EXP005.
    pub fn cancel(&self, credential: &str, job_id: Uuid) -> Result<Job> {
        self.call("cancel", format!("job:{job_id}"), credential, |call| {
            let mut job = self.visible_job(call, job_id, Permission::JobsCancel)?;
            loop {
                let result = match job.state {
                    JobState::Queued => {
                        job.transition(JobState::Cancelled, self.inner.clock.now())?;
                        self.inner.jobs.update(&job)
                    }
                    JobState::Running => {
                        job.cancel_requested = true;
                        self.inner.jobs.update(&job)
                    }
                    other => {
                        return Err(Error::conflict(
                            "illegal_transition",
                            format!("a {other} job cannot be cancelled"),
                        )
                        .with_detail("from", other.as_str())
                        .with_detail("to", "cancelled"))
                    }
                };
                match result {
                    Ok(updated) => {
                        job = updated;
                        break;
                    }
                    Err(e) if e.reason() == "version_conflict" => {
                        job = self.inner.jobs.get(job_id)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(flag) = self
                .inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&job_id)
            {
                flag.store(true, Ordering::SeqCst);
            }
            if job.state == JobState::Cancelled {
                self.inner.audit_system(
                    "job.cancelled",
                    &job,
                    json!({"state": "cancelled", "from": "queued"}),
                )?;
                self.inner.notify_changed();
            }
            Ok(Done {
                target: format!("job:{}", job.id),
                details: json!({"state": job.state, "cancel_requested": job.cancel_requested}),
                value: job,
            })
        })
    }

    /// `formats`: the registered formats with their capabilities and options.
    ///
    /// # Errors
    /// EXP003; EXP005.
    pub fn formats(&self, credential: &str) -> Result<Vec<FormatInfo>> {
        self.call("formats", "formats".to_string(), credential, |call| {
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

    /// Creates an API key in the caller's organization; returns the key text (shown once) and its record.
    ///
    /// # Errors
    /// EXP003 (needs `keys:manage`; only for the caller's organization and studies it holds); EXP002 for bad roles,
    /// studies or name; EXP005.
    pub fn create_api_key(
        &self,
        credential: &str,
        new: NewApiKey,
    ) -> Result<(String, ApiKeyRecord)> {
        self.call(
            "create_api_key",
            "apikeys".to_string(),
            credential,
            |call| {
                let p = call.principal();
                authorize(p, Permission::KeysManage, &new.org, None)?;
                // A key grants no study its creator does not hold (`*` only from a creator with `*`).
                for s in &new.studies {
                    authorize(p, Permission::KeysManage, &new.org, Some(s))?;
                }
                let (text, rec) = self.inner.auth.create_key(new, &p.subject, call.at)?;
                Ok(Done {
                    target: format!("apikey:{}", rec.key_id),
                    details: json!({"roles": rec.roles, "studies": rec.studies, "org": rec.org}),
                    value: (text, rec),
                })
            },
        )
    }

    /// Revokes an API key of the caller's organization; it fails from the next call on.
    ///
    /// # Errors
    /// EXP003 (needs `keys:manage` and every study of the key); EXP001 for an unknown key or one of another
    /// organization; EXP005.
    pub fn revoke_api_key(&self, credential: &str, key_id: &str) -> Result<()> {
        self.call(
            "revoke_api_key",
            format!("apikey:{key_id}"),
            credential,
            |call| {
                let p = call.principal();
                let rec = self
                    .inner
                    .auth
                    .keys()
                    .get_key(key_id)?
                    .filter(|rec| rec.org == p.org)
                    // Another organization's key is reported as unknown: its existence is not disclosed.
                    .ok_or_else(|| Error::not_found("no such API key").with_field("key_id"))?;
                authorize(p, Permission::KeysManage, &rec.org, None)?;
                for s in &rec.studies {
                    authorize(p, Permission::KeysManage, &rec.org, Some(s))?;
                }
                self.inner.auth.keys().revoke_key(key_id, call.at)?;
                Ok(Done {
                    target: format!("apikey:{key_id}"),
                    details: json!({}),
                    value: (),
                })
            },
        )
    }

    /// Creates the first `admin` key of an organization, for `init`: refused once the organization has a key.
    ///
    /// # Errors
    /// EXP004 `already_initialized`; EXP005.
    pub fn create_initial_admin_key(&self, org: &str) -> Result<String> {
        crate::sink::validate_name(org, "org")?;
        if !self.inner.auth.keys().list_keys(org)?.is_empty() {
            return Err(Error::conflict(
                "already_initialized",
                "the organization already has API keys",
            ));
        }
        let (text, rec) = self.inner.auth.create_key(
            NewApiKey {
                name: "initial admin".into(),
                org: org.to_string(),
                roles: vec![Role::Admin],
                studies: vec!["*".into()],
                expires_at: None,
            },
            "system",
            self.inner.clock.now(),
        )?;
        self.inner.auditor.emit_in(
            AuditRecord {
                actor: Actor::system(),
                action: "create_api_key".into(),
                target: format!("apikey:{}", rec.key_id),
                outcome: Outcome::Success,
                details: json!({"roles": ["admin"], "studies": ["*"], "org": org, "initial": true}),
                request_id: format!("req_{}", Uuid::now_v7().simple()),
            },
            AuditScope::new(org, None),
        )?;
        Ok(text)
    }

    /// Reads up to `limit` (1..=1000) audit events from sequence number `from`, of those the caller may see: the
    /// events of the caller's organization (and of its studies, for a caller limited to some) and the events that
    /// concern no organization (refused credentials, the engine's own repairs). A page shorter than `limit` is the
    /// last one.
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP002 for a bad limit; EXP005.
    pub fn audit_events(
        &self,
        credential: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.call("audit_events", "audit".to_string(), credential, |call| {
            let p = call.principal();
            authorize(p, Permission::AuditRead, &p.org, None)?;
            if !(1..=1000).contains(&limit) {
                return Err(
                    Error::validation("out_of_range", "limit must be between 1 and 1000")
                        .with_field("limit"),
                );
            }
            let events = self.visible_events(p, from, limit)?;
            Ok(Done {
                target: "audit".into(),
                details: json!({"from": from, "returned": events.len()}),
                value: events,
            })
        })
    }

    /// Up to `limit` events from `from` that `p` may see (see [`Engine::audit_events`]).
    fn visible_events(&self, p: &Principal, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        const BATCH: usize = 1000;
        let mut out = Vec::new();
        let mut next = from.max(1);
        loop {
            let batch = self.inner.auditor.read(next, BATCH)?;
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

    /// Verifies the whole chain and returns a checkpoint of its last event: its sequence number and hash, to keep
    /// outside the system and give to [`Engine::verify_audit_against`] later (see [`crate::audit`]).
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP005 `integrity_violation` as [`Engine::verify_audit`].
    pub fn audit_checkpoint(&self, credential: &str) -> Result<Checkpoint> {
        self.call(
            "audit_checkpoint",
            "audit".to_string(),
            credential,
            |call| {
                let p = call.principal();
                authorize(p, Permission::AuditRead, &p.org, None)?;
                let cp = self.inner.auditor.checkpoint()?;
                Ok(Done {
                    target: "audit".into(),
                    details: json!({"seq": cp.seq, "hash": cp.hash}),
                    value: cp,
                })
            },
        )
    }

    /// [`Engine::verify_audit`], and that the trail still reaches `checkpoint` with the same hash: detects a trail
    /// cut below the checkpoint or rewritten whole. Audited as `verify_audit`.
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP005 `integrity_violation` with `details.seq` and `details.check`
    /// (`checkpoint` when only the checkpoint does not match).
    pub fn verify_audit_against(&self, credential: &str, checkpoint: &Checkpoint) -> Result<u64> {
        self.call("verify_audit", "audit".to_string(), credential, |call| {
            let p = call.principal();
            authorize(p, Permission::AuditRead, &p.org, None)?;
            let n = self.inner.auditor.verify_with(Some(checkpoint))?;
            Ok(Done {
                target: "audit".into(),
                details: json!({"events": n, "checkpoint_seq": checkpoint.seq}),
                value: n,
            })
        })
    }

    /// Verifies the audit trail's hash chain; returns the number of events checked.
    ///
    /// # Errors
    /// EXP003 (needs `audit:read`); EXP005 `integrity_violation` with `details.seq`.
    pub fn verify_audit(&self, credential: &str) -> Result<u64> {
        self.call("verify_audit", "audit".to_string(), credential, |call| {
            let p = call.principal();
            authorize(p, Permission::AuditRead, &p.org, None)?;
            let n = self.inner.auditor.verify()?;
            Ok(Done {
                target: "audit".into(),
                details: json!({"events": n}),
                value: n,
            })
        })
    }

    /// Loads a job and checks `permission` on its organization and study.
    fn visible_job(&self, call: &Call<'_>, job_id: Uuid, permission: Permission) -> Result<Job> {
        let job = self.inner.jobs.get(job_id)?;
        if job.org != call.principal().org {
            // Another organization's job is reported, and audited, exactly as a job that does not exist (the
            // stores' error): its existence is not disclosed.
            return Err(Error::not_found("no job with this id"));
        }
        call.set_scope(&job.org, Some(&job.study));
        authorize(call.principal(), permission, &job.org, Some(&job.study))?;
        Ok(job)
    }

    fn check_format(
        &self,
        id: &str,
        capability: Capability,
        options: &crate::format::FormatOptions,
    ) -> Result<()> {
        let format = self.inner.formats.get(id)?;
        let info = format.info();
        if !info.can(capability) {
            return Err(Error::validation(
                "unsupported_by_format",
                format!("format '{id}' cannot be used for this export"),
            )
            .with_field("format"));
        }
        format.check_options(options)
    }

    /// Checks what a package kind requires of the request and the engine.
    fn check_package(&self, request: &BulkExportRequest) -> Result<()> {
        match request.package {
            PackageKind::Zip => {
                if request.container != PackageContainer::Zip {
                    return Err(Error::validation(
                        "unsupported_container",
                        "a zip package is a zip: the directory container is for eCTD packages",
                    )
                    .with_field("container"));
                }
            }
            PackageKind::Ectd => {
                let version = request.options.get("version").unwrap_or("5");
                if request.format != package::ECTD_DATA_FORMAT || version != "5" {
                    return Err(Error::validation(
                        "ectd_requires_xpt_v5",
                        "an eCTD package holds SAS XPORT version 5 files: use format 'xpt' without version 8",
                    )
                    .with_field("format"));
                }
                let define = self
                    .inner
                    .formats
                    .get(package::ECTD_DEFINE_FORMAT)
                    .map_err(|_| {
                        Error::validation(
                            "ectd_requires_define",
                            "an eCTD package needs the 'define-xml' format, which this engine lacks",
                        )
                        .with_field("package")
                    })?;
                if !define.info().can(Capability::Describe) {
                    return Err(Error::validation(
                        "ectd_requires_define",
                        "the engine's 'define-xml' format cannot describe datasets",
                    )
                    .with_field("package"));
                }
            }
        }
        Ok(())
    }

    /// Checks a request's de-identification against its datasets before a job exists: the policy, the key it
    /// needs, the column lists, and identifying columns without the `identifiable` flag (the job checks each
    /// dataset again when it runs). Returns the policy as the audit records it, `None` when there is none.
    fn check_deidentify(
        &self,
        study: &str,
        selections: &[DatasetSelection],
        spec: Option<&crate::deid::Deidentify>,
        identifiable: bool,
    ) -> Result<Option<Value>> {
        let policy = crate::deid::Policy::new(spec, identifiable)?;
        let key = self.inner.deid_key.as_deref();
        // Building the job's de-identifier checks the key and the versioned data it needs.
        crate::deid::Deidentifier::new(policy.clone(), key, study, self.inner.clock.now())?;
        let mut plans = Vec::with_capacity(selections.len());
        for s in selections {
            let stream = self.inner.scan(study, s.name(), s.columns(), s.filters())?;
            plans.push(policy.plan(s.name(), stream.schema(), &stream.meta())?);
        }
        policy.check_columns(&plans)?;
        policy.check_identifiable(&plans)?;
        Ok((!policy.is_empty() || identifiable)
            .then(|| policy.describe(key.map(crate::deid::DeidKey::id))))
    }

    fn check_selections(&self, study: &str, selections: &[DatasetSelection]) -> Result<()> {
        if selections.is_empty() {
            return Err(
                Error::validation("missing_datasets", "name at least one dataset")
                    .with_field("datasets"),
            );
        }
        let mut seen = BTreeSet::new();
        for s in selections {
            crate::sink::validate_name(s.name(), "datasets")?;
            if !seen.insert(s.name().to_ascii_lowercase()) {
                return Err(Error::validation(
                    "duplicate_dataset",
                    format!("dataset '{}' is named twice", s.name()),
                )
                .with_field("datasets"));
            }
            // Opening the selection checks the dataset, its columns and filters before a job exists.
            drop(self.inner.scan(study, s.name(), s.columns(), s.filters())?);
        }
        Ok(())
    }

    /// Stores a queued job (or returns the existing one for a repeated idempotency key) and wakes a worker.
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        call: &Call<'_>,
        kind: JobKind,
        study: &str,
        format: &str,
        idempotency_key: Option<String>,
        request: Value,
        datasets_total: u32,
    ) -> Result<Done<Job>> {
        if let Some(k) = &idempotency_key {
            if k.is_empty() || k.len() > 200 || k.chars().any(char::is_control) {
                return Err(Error::validation(
                    "invalid_idempotency_key",
                    "an idempotency key has 1 to 200 printable characters",
                )
                .with_field("idempotency_key"));
            }
        }
        let p = call.principal();
        let mut hashed = request.clone();
        if let Some(o) = hashed.as_object_mut() {
            o.remove("idempotency_key");
        }
        let request_hash = hex(ring::digest::digest(
            &ring::digest::SHA256,
            crate::audit::canonical_json(&json!({"kind": kind, "request": hashed})).as_bytes(),
        )
        .as_ref());
        let job = Job {
            id: Uuid::now_v7(),
            kind,
            study: study.to_string(),
            org: p.org.clone(),
            requested_by: p.subject.clone(),
            requested_by_name: p.name.clone(),
            request,
            format: format.to_string(),
            state: JobState::Queued,
            progress: Progress {
                datasets_total,
                ..Progress::default()
            },
            created_at: call.at,
            started_at: None,
            finished_at: None,
            artifacts: vec![],
            error: None,
            idempotency_key,
            request_hash,
            cancel_requested: false,
            version: 0,
        };
        self.inner
            .unaudited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id);
        call.submitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(job.id);
        let stored = self.inner.jobs.insert(&job)?;
        let reused = stored.id != job.id;
        if !reused {
            self.inner.notify_queued();
        }
        Ok(Done {
            target: format!("job:{}", stored.id),
            details: json!({"study": study, "kind": kind, "format": format, "idempotent_replay": reused}),
            value: stored,
        })
    }
}
