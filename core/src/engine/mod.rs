//! The engine: the eight operations, wired explicitly with a builder, running jobs on worker threads.
//!
//! Every operation is a method of a [`Session`] (a credential bound to the engine, [`Engine::session`]): it
//! authenticates the credential, authorizes the principal through [`crate::auth::authorize`], does its work and
//! records one audit event, allowed, denied or failed (fail-closed). The four export operations are one pipeline
//! ([`Session::export`], see `submit`): it validates the request, stores a `queued` job and returns it at once; a
//! pool of worker threads runs it. The eight operations of the seed's API are also methods of [`Engine`] taking the
//! credential first.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use arrow::record_batch::RecordBatch;
//! use trialport_core::engine::Engine;
//! use trialport_core::request::ExportRequest;
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
//!     .session(&credential)
//!     .export(ExportRequest::data("S1", &["DM"], "csv"))
//!     .unwrap_err();
//! assert_eq!(err.code().as_str(), "EXP001"); // no format "csv" in this engine
//! ```

mod call;
mod compute;
mod download;
mod encryption;
mod package;
mod retention;
mod run;
mod session;
mod signing;
mod submit;

pub use call::MAX_REQUEST_ID;
pub use download::{download_error, Download, SavedArtifact};
pub use retention::{PurgeSummary, DEFAULT_SWEEP_INTERVAL};
pub use session::{LastCall, Session};

use crate::audit::{Actor, AuditEvent, AuditHook, AuditRecord, AuditScope, Auditor, Outcome};
use crate::auth::{Authenticator, NewApiKey, Role};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorCode, Result};
use crate::format::{FormatInfo, FormatRegistry};
use crate::job::{Job, JobKind};
use crate::request::{ExportRequest, ListJobsRequest};
use crate::sink::{MemorySink, Sink};
use crate::source::{unknown_dataset, unknown_study, BatchStream, DataSource, Filter};
use crate::store::{AuditStore, JobPage, JobStore, KeyStore, MemoryStore, SqliteStore};
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

    /// Limits each principal to `burst` calls at once and `per_second` on average, counted in this process's
    /// memory (default: no limit; see [`crate::limit::RateLimiter::in_memory`]). Calls over the limit fail with
    /// EXP006 and `details.retry_after_ms`.
    ///
    /// # Errors
    /// EXP002 unless both are positive.
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Result<Self> {
        self.rate_limit = Some(crate::limit::RateLimiter::in_memory(per_second, burst)?);
        Ok(self)
    }

    /// Limits each principal with `limiter` (e.g. counted in a store that every process of a deployment shares;
    /// a home's `rate_limit` setting sets one on its database). Calls over the limit fail with EXP006.
    pub fn rate_limiter(mut self, limiter: crate::limit::RateLimiter) -> Self {
        self.rate_limit = Some(limiter);
        self
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
    /// long after the job finished (default: never). See [`Session::purge`] for what expiry does.
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
    /// [`Session::purge`] or when downloaded). A zero interval makes [`EngineBuilder::build`] fail with EXP002
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
        if let Some(policy) = home.config().rate_limit_policy()? {
            let counts = crate::store::SqliteRateLimitStore::open(&home.database_path())?;
            b = b.rate_limiter(crate::limit::RateLimiter::new(policy, Arc::new(counts)));
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
            known_jobs: Mutex::new(session::KnownJobs::default()),
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
    /// The credential each job was last obtained with (see [`Engine::known_session`]).
    pub(crate) known_jobs: Mutex<session::KnownJobs>,
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

    /// `export_data`: exports datasets of a study, one artifact per dataset ([`Session::export`] of a data
    /// request). With `identifiable`, the request needs the `data:identifiable` permission and an e-signature (see
    /// [`crate::signature`]); any signature given is checked now and applied to the job's manifest when it
    /// succeeds.
    ///
    /// # Errors
    /// As [`Session::export`]; EXP002 `wrong_kind` for a request of another kind.
    pub fn export_data(&self, credential: &str, request: ExportRequest) -> Result<Job> {
        self.session(credential).export_as(JobKind::Data, request)
    }

    /// `bulk_export`: several datasets of a study in one package with `manifest.json`, a zip or an eCTD tree
    /// ([`Session::export`] of a bulk request). An eCTD package, and a package with `identifiable`, needs an
    /// e-signature; the job fails with EXP002 `fda_check_failed` listing every violation of every dataset,
    /// writing nothing.
    ///
    /// # Errors
    /// As [`Session::export`]; EXP002 `wrong_kind` for a request of another kind.
    pub fn bulk_export(&self, credential: &str, request: ExportRequest) -> Result<Job> {
        self.session(credential).export_as(JobKind::Bulk, request)
    }

    /// `export_report`: renders a report (title, parameters, text and table sections) ([`Session::export`] of a
    /// report request).
    ///
    /// # Errors
    /// As [`Session::export`]; EXP002 `wrong_kind` for a request of another kind.
    pub fn export_report(&self, credential: &str, request: ExportRequest) -> Result<Job> {
        self.session(credential).export_as(JobKind::Report, request)
    }

    /// `export_dashboard`: renders a dashboard (KPI tiles, tables, bar and line charts) ([`Session::export`] of
    /// a dashboard request).
    ///
    /// # Errors
    /// As [`Session::export`]; EXP002 `wrong_kind` for a request of another kind.
    pub fn export_dashboard(&self, credential: &str, request: ExportRequest) -> Result<Job> {
        self.session(credential)
            .export_as(JobKind::Dashboard, request)
    }

    /// `list_jobs`: [`Session::list_jobs`].
    ///
    /// # Errors
    /// As [`Session::list_jobs`].
    pub fn list_jobs(&self, credential: &str, request: ListJobsRequest) -> Result<JobPage> {
        self.session(credential).list_jobs(request)
    }

    /// `get_job`: [`Session::get_job`].
    ///
    /// # Errors
    /// As [`Session::get_job`].
    pub fn get_job(&self, credential: &str, job_id: Uuid) -> Result<Job> {
        self.session(credential).get_job(job_id)
    }

    /// `download`: [`Session::download`].
    ///
    /// # Errors
    /// As [`Session::download`].
    pub fn download(
        &self,
        credential: &str,
        job_id: Uuid,
        artifact: Option<&str>,
    ) -> Result<Download> {
        self.session(credential).download(job_id, artifact)
    }

    /// `formats`: [`Session::formats`].
    ///
    /// # Errors
    /// As [`Session::formats`].
    pub fn formats(&self, credential: &str) -> Result<Vec<FormatInfo>> {
        self.session(credential).formats()
    }

    /// [`Session::wait`].
    ///
    /// # Errors
    /// As [`Session::wait`].
    pub fn wait(&self, credential: &str, job_id: Uuid, timeout: Option<Duration>) -> Result<Job> {
        self.session(credential).wait(job_id, timeout)
    }

    /// [`Session::cancel`].
    ///
    /// # Errors
    /// As [`Session::cancel`].
    pub fn cancel(&self, credential: &str, job_id: Uuid) -> Result<Job> {
        self.session(credential).cancel(job_id)
    }

    /// The rate limit every principal's calls are counted against, if any (for the `RateLimit-Policy` of an HTTP
    /// response that made no call).
    pub fn rate_limit_policy(&self) -> Option<crate::limit::RateLimitPolicy> {
        self.inner.rate_limit.as_ref().map(|l| l.policy())
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
                org: Some(org.to_string()),
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
}
