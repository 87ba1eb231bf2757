//! The engine: the eight operations, wired explicitly with a builder, running jobs on worker threads.
//!
//! Every operation is a method of a [`Session`] (a credential bound to the engine, [`Engine::session`]): it
//! authenticates the credential, authorizes the principal through [`crate::access::authorize`], does its work and
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

mod aggregate;
mod attempt;
mod call;
mod compute;
mod download;
mod encode;
mod encryption;
mod lease;
mod literals;
mod package;
mod retention;
mod run;
mod session;
mod signing;
mod submit;
mod summary;

pub use call::{LastCall, MAX_REQUEST_ID};
pub use download::{download_error, Download, SavedArtifact};
pub use lease::{DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS};
pub use retention::{PurgeSummary, DEFAULT_SWEEP_INTERVAL};
pub use session::Session;

use crate::access::Role;
use crate::audit::{Actor, AuditEvent, AuditHook, AuditRecord, AuditScope, Auditor, Outcome};
use crate::auth::{Authenticator, NewApiKey};
use crate::clock::{Clock, SystemClock};
use crate::error::Reason;
use crate::error::{Error, ErrorCode, Result};
use crate::format::{FormatInfo, FormatRegistry};
use crate::job::JobPage;
use crate::job::{Job, JobKind};
use crate::request::{ExportRequest, ListJobsRequest};
use crate::sink::{MemorySink, Sink};
use crate::source::{unknown_dataset, unknown_study, BatchStream, DataSource, Filter};
use crate::store::{MemoryStore, Store, Tx};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
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
    store: Option<Arc<dyn Store>>,
    hooks: Vec<Arc<dyn AuditHook>>,
    clock: Arc<dyn Clock>,
    pepper: Option<Vec<u8>>,
    workers: usize,
    retention: retention::Retention,
    /// How often the background sweep expires due jobs (`None`: no sweep).
    sweep_interval: Option<Duration>,
    rate_limit: Option<crate::limit::RateLimiter>,
    /// How long a worker's lease on a job lasts unless renewed.
    lease: Duration,
    /// Attempts a job gets before a lost lease fails it.
    max_attempts: u32,
    jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    encryption: Option<Arc<dyn crate::crypto::KeyProvider>>,
    deid_key: Option<Arc<crate::deid::DeidKey>>,
    signing_key: Option<crate::signature::SigningKey>,
    signing_settings: Option<crate::signature::SigningSettings>,
    signature_verifier: Option<Arc<dyn crate::signature::SignatureVerifier>>,
    /// The organization owning what the whole engine shares (see [`EngineBuilder::home_org`]).
    pub(crate) home_org: Option<String>,
    /// Whether studies are resolved through the store's registry (see [`EngineBuilder::study_registry`]).
    pub(crate) study_registry: bool,
    /// Whether the store was upgraded from a version without the registry (see [`EngineBuilder::home`]).
    pub(crate) adopt_studies: bool,
    /// What the home's modes let others read (see [`Engine::warnings`]).
    pub(crate) warnings: Vec<String>,
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

    /// Keeps jobs, keys and the audit trail in `store` (default: a [`MemoryStore`]; a home's SQLite store with
    /// [`EngineBuilder::home`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How long a worker's lease on a job lasts unless renewed (default [`DEFAULT_LEASE`], 30 s; at least 1 s).
    /// A worker renews its leases three times per period; an engine with workers rescues expired leases of every
    /// engine on its store every half period.
    pub fn lease(mut self, period: Duration) -> Self {
        self.lease = period;
        self
    }

    /// Attempts a job gets (default [`DEFAULT_MAX_ATTEMPTS`], 3, at least 1): a job whose lease expires in its
    /// last attempt fails with EXP005 `worker_lost` instead of going back to the queue.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
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

    /// Resolves the study of every operation through the store's study registry (see [`crate::study`]; default:
    /// off, for engines embedded without a home, where every study of the sources belongs to the caller's
    /// organization; on for an engine on a home, [`EngineBuilder::home`]). With the registry, a study bound to
    /// another organization, or to none, answers exactly as a study that does not exist (EXP001), and a job of
    /// such a study as a job that does not exist.
    pub fn study_registry(mut self, on: bool) -> Self {
        self.study_registry = on;
        self
    }

    /// Builds the engine, resolves the key rotations a dead process left pending (see
    /// [`Session::rotate_encryption_key`]), re-queues jobs a dead process left running (on a home: only when no
    /// other engine has the home open), and starts the workers.
    ///
    /// # Errors
    /// EXP002 for a pepper shorter than 32 bytes, `invalid_retention` for a retention time that is not positive,
    /// `invalid_sweep_interval` for a zero sweep interval, `invalid_signing_settings` for signing settings out of
    /// bounds; EXP005 when randomness, the store, the audit trail or the key provider fails.
    pub fn build(mut self) -> Result<Engine> {
        self.retention.check()?;
        if self.sweep_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::validation(
                Reason::InvalidSweepInterval,
                "the retention sweep interval must be positive",
            )
            .with_field("sweep_interval"));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(Error::validation(
                Reason::InvalidLease,
                "a lease lasts at least one second",
            )
            .with_field("lease"));
        }
        if self.max_attempts == 0 {
            return Err(Error::validation(
                Reason::InvalidMaxAttempts,
                "a job needs at least one attempt",
            )
            .with_field("max_attempts"));
        }
        let signing = self.take_signing()?;
        let pepper = match self.pepper {
            Some(p) if p.len() >= 32 => p,
            Some(_) => {
                return Err(Error::validation(
                    Reason::WeakPepper,
                    "the API key pepper needs at least 32 bytes",
                ))
            }
            None => {
                let mut p = vec![0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut p).map_err(
                    |_| Error::server(Reason::RngFailed, "the system random generator failed"),
                )?;
                p
            }
        };
        let store: Arc<dyn Store> = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        if let Some(kp) = &self.encryption {
            // Key rotations a dead process left pending: made current, or removed (see `encryption`).
            encryption::resolve_rotations(&*store, kp.as_ref())?;
        }
        let keys: Arc<dyn crate::auth::KeyReads> = Arc::new(KeysOf(store.clone()));
        let mut sink: Arc<dyn Sink> = self.sink.unwrap_or_else(|| Arc::new(MemorySink::new()));
        if let Some(kp) = &self.encryption {
            sink = Arc::new(crate::crypto::EncryptedSink::new(sink, kp.clone()));
        }
        let inner = Arc::new(Inner {
            formats: self.formats,
            sources: self.sources,
            sink,
            sealer: crate::crypto::Sealer::new(self.encryption.clone(), &pepper),
            key_provider: self.encryption,
            deid_key: self.deid_key,
            store,
            auth: Authenticator::new(keys, &pepper).with_jwt(self.jwt),
            auditor: Auditor::new(self.hooks, self.clock.clone()),
            clock: self.clock,
            retention: self.retention,
            expiry: Mutex::new(()),
            sweep_lock: Mutex::new(()),
            sweep_wake: Condvar::new(),
            running: Mutex::new(HashMap::new()),
            claiming: std::sync::atomic::AtomicUsize::new(0),
            wake: Condvar::new(),
            wake_lock: Mutex::new(0),
            known_jobs: Mutex::new(session::KnownJobs::default()),
            changed: Condvar::new(),
            changed_lock: Mutex::new(0),
            shutdown: AtomicBool::new(false),
            rate_limit: self.rate_limit,
            signing,
            owner: lease::owner_id(),
            lease: self.lease,
            max_attempts: self.max_attempts,
            keeper_lock: Mutex::new(()),
            keeper_wake: Condvar::new(),
            home_org: self.home_org,
            study_registry: self.study_registry,
        });
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
            keeper: None,
            warnings: self.warnings,
        };
        if self.adopt_studies {
            if let Some(org) = engine.inner.home_org.clone() {
                // The bindings and the end of the adoption commit together: an engine that fails before this
                // point leaves the adoption to the next one.
                let found = engine.source_studies()?;
                engine.bind(&org, &found, "upgrade", true)?;
            }
        }
        let keeper_inner = engine.inner.clone();
        // On failure `engine` is dropped, which stops the threads started so far.
        engine.keeper = Some(
            std::thread::Builder::new()
                .name("trialport-leases".into())
                .spawn(move || lease::keeper_loop(&keeper_inner))
                .map_err(|e| Error::io("cannot start the lease thread", &e))?,
        );
        if let (true, Some(every)) = (engine.inner.retention.is_on(), self.sweep_interval) {
            let inner = engine.inner.clone();
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

/// The store's key reads, for the authenticator.
struct KeysOf(Arc<dyn Store>);

impl crate::auth::KeyReads for KeysOf {
    fn get_key(&self, key_id: &str) -> Result<Option<crate::auth::ApiKeyRecord>> {
        self.0.get_key(key_id)
    }

    fn list_keys(&self, org: &str) -> Result<Vec<crate::auth::ApiKeyRecord>> {
        self.0.list_keys(org)
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
    /// Seals the request literals of jobs at rest (see `literals`).
    pub(crate) sealer: crate::crypto::Sealer,
    /// Jobs, keys and the audit trail.
    pub(crate) store: Arc<dyn Store>,
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
    /// The attempts this process is running: their cancel flags and lease epochs, for the lease keeper.
    pub(crate) running: Mutex<HashMap<Uuid, lease::Held>>,
    /// Workers between deciding to claim a job and registering its attempt in `running` (see
    /// [`run::Claiming`]): `shutdown` waits for them too, or it could return while a job it never saw was
    /// claimed.
    pub(crate) claiming: std::sync::atomic::AtomicUsize,
    pub(crate) wake: Condvar,
    pub(crate) wake_lock: Mutex<u64>,
    /// The credential each job was last obtained with (see [`Engine::known_session`]).
    pub(crate) known_jobs: Mutex<session::KnownJobs>,
    pub(crate) changed: Condvar,
    pub(crate) changed_lock: Mutex<u64>,
    pub(crate) shutdown: AtomicBool,
    rate_limit: Option<crate::limit::RateLimiter>,
    /// The signing key, the verifier of signers' passwords and the store of failed attempts.
    pub(crate) signing: crate::signature::Signing,
    /// This engine's name as a lease owner (`<host>:<pid>:<random>`).
    pub(crate) owner: String,
    /// How long a lease lasts unless renewed.
    pub(crate) lease: Duration,
    /// Attempts a job gets.
    pub(crate) max_attempts: u32,
    /// The lease keeper waits on `keeper_wake` between passes, and is woken to stop.
    pub(crate) keeper_lock: Mutex<()>,
    pub(crate) keeper_wake: Condvar,
    /// The organization owning what the whole engine shares (its key-encryption keys).
    pub(crate) home_org: Option<String>,
    /// Whether studies are resolved through the store's registry.
    pub(crate) study_registry: bool,
}

impl Inner {
    /// Runs one store transaction: `work` reads and writes records and records audit events (with
    /// [`Inner::record`]); the hooks see the events before they commit with the changes (see [`crate::store`]).
    /// Returns what `work` returned.
    ///
    /// # Errors
    /// The errors of `work`; EXP005 `audit_failed` when a hook refuses, or (cause `reentrant_audit`) when called
    /// from a hook; EXP005 when the store fails.
    pub(crate) fn write<T>(&self, mut work: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        crate::audit::refuse_reentry()?;
        let mut out = None;
        self.store.write(
            &mut |tx| {
                out = Some(work(tx)?);
                Ok(())
            },
            &|events| self.auditor.witness(events),
        )?;
        out.ok_or_else(|| Error::server(Reason::Internal, "a transaction returned nothing"))
    }

    /// Records one audit event in `tx` (it commits with the transaction's changes).
    ///
    /// # Errors
    /// The store's errors.
    pub(crate) fn record(
        &self,
        tx: &mut dyn Tx,
        record: &AuditRecord,
        scope: &AuditScope,
    ) -> Result<AuditEvent> {
        self.auditor.record(tx, record, scope)
    }

    /// Records one audit event that reports no change (a refused or read-only call, a security event).
    ///
    /// # Errors
    /// As [`Inner::write`].
    pub(crate) fn audit(&self, record: &AuditRecord, scope: &AuditScope) -> Result<AuditEvent> {
        self.write(|tx| self.record(tx, record, scope))
    }

    /// Records an event of the engine's own about `job` (a state change made by a worker, an expiry) in `tx`.
    ///
    /// # Errors
    /// The store's errors.
    pub(crate) fn record_system(
        &self,
        tx: &mut dyn Tx,
        action: &str,
        job: &Job,
        details: Value,
    ) -> Result<AuditEvent> {
        self.record(
            tx,
            &AuditRecord {
                actor: Actor::system(),
                action: action.to_string(),
                target: format!("job:{}", job.id),
                outcome: Outcome::Success,
                details,
                request_id: format!("job_{}", job.id.simple()),
            },
            &AuditScope::new(job.org.clone(), Some(&job.study)),
        )
    }

    /// Wakes the workers: a job was queued.
    pub(crate) fn notify_queued(&self) {
        let mut n = self.wake_lock.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.wake.notify_all();
    }

    /// Wakes waiters: a job changed state.
    pub(crate) fn notify_changed(&self) {
        let mut n = self.changed_lock.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.changed.notify_all();
    }

    /// The one study resolution every operation goes through: whether `study` belongs to `org`. Without a
    /// registry (see [`EngineBuilder::study_registry`]) every study belongs to the caller's organization.
    ///
    /// # Errors
    /// The store's errors.
    pub(crate) fn study_belongs(&self, org: &str, study: &str) -> Result<bool> {
        if !self.study_registry {
            return Ok(true);
        }
        Ok(self.store.get_study(study)?.is_some_and(|r| r.org == org))
    }

    /// [`Inner::study_belongs`] as an error: a study of another organization, or one bound to none, is EXP001
    /// exactly as a study no source has ([`unknown_study`]).
    ///
    /// # Errors
    /// EXP001 (field `study`); the store's errors.
    pub(crate) fn resolve_study(&self, org: &str, study: &str) -> Result<()> {
        if self.study_belongs(org, study)? {
            Ok(())
        } else {
            Err(unknown_study(study))
        }
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

/// The export engine. Dropping it stops the workers: a job they were running stops at its next batch and goes
/// back to `queued` (its lease given back, `job.requeued` with reason `engine_shutdown`).
pub struct Engine {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
    /// The retention sweep, when any retention is set.
    sweeper: Option<JoinHandle<()>>,
    /// The lease keeper: renews this engine's leases, rescues expired ones.
    keeper: Option<JoinHandle<()>>,
    /// Warnings about the home found when the engine was built (see [`Engine::warnings`]).
    warnings: Vec<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("formats", &self.inner.formats)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Tells the workers to stop, as dropping the engine does, without needing the only handle (a host whose
    /// requests may still hold the engine, such as `trialport serve` past its drain limit): no job is claimed any
    /// more, each running attempt stops at its next batch and gives its job back (`queued`, for another process
    /// to run), and the sweep stops. Waits up to `timeout` for the running attempts to end; returns how many were
    /// still running then (their leases expire unrenewed and other processes rescue them). Calls on the engine
    /// that need no worker keep working; dropping it afterwards joins the threads.
    pub fn shutdown(&self, timeout: Duration) -> usize {
        self.begin_shutdown();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let running = self
                .inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
                + self.inner.claiming.load(Ordering::SeqCst);
            if running == 0 || std::time::Instant::now() >= deadline {
                return running;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sets the shutdown flag, asks every running attempt of this engine to stop and wakes the threads.
    fn begin_shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        for held in self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            held.cancel.store(true, Ordering::SeqCst);
        }
        self.inner.notify_queued();
        self.inner.notify_sweeper();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.begin_shutdown();
        for w in self.workers.drain(..).chain(self.sweeper.take()) {
            let _ = w.join();
        }
        // The keeper goes last: it renews the leases of the jobs still stopping.
        self.inner.notify_keeper();
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
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
            store: None,
            hooks: Vec::new(),
            clock: Arc::new(SystemClock),
            pepper: None,
            workers: 2,
            retention: retention::Retention::default(),
            sweep_interval: Some(DEFAULT_SWEEP_INTERVAL),
            rate_limit: None,
            lease: DEFAULT_LEASE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            jwt: None,
            encryption: None,
            deid_key: None,
            signing_key: None,
            signing_settings: None,
            signature_verifier: None,
            home_org: None,
            study_registry: false,
            adopt_studies: false,
            warnings: Vec::new(),
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

    /// Runs job `id` on the calling thread if it is queued: claims it as a worker would (a new attempt under this
    /// engine's lease, renewed while it runs), runs it to its end and returns `true`. A job that another worker
    /// holds, or that has finished, is left alone (`false`): wait for it instead. For processes that run the one
    /// job they submitted (`trialport export --wait`) without taking others from the queue.
    ///
    /// # Errors
    /// The store's errors while claiming (the job's own failures are its state, not errors).
    pub fn run_job(&self, id: Uuid) -> Result<bool> {
        let claiming = run::Claiming::new(&self.inner);
        match self.inner.claim(Some(id))? {
            Some(job) => {
                run::run_claimed(&self.inner, job, claiming);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Sees job `id` through on the calling thread: runs it ([`Engine::run_job`]) whenever it is queued (now, or
    /// again after the worker that held it died and its expired lease was rescued, by this engine's lease keeper
    /// or another engine's), until the job has finished or `stop` is set. Other queued jobs are left alone. For
    /// processes that wait for the one job they submitted (`trialport export --wait`, `trialport jobs wait`).
    ///
    /// # Errors
    /// The store's errors.
    pub fn see_job_through(&self, id: Uuid, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::SeqCst) {
            if self.run_job(id)? {
                continue;
            }
            match self.inner.store.get_job(id) {
                Ok(job) if job.state.is_finished() => return Ok(()),
                Ok(_) => {}
                Err(e) if e.code() == crate::error::ErrorCode::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
            // Woken by this engine's changes (a rescue by its keeper); else look again shortly.
            let step =
                (self.inner.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
            let guard = self
                .inner
                .changed_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let _ = self.inner.changed.wait_timeout(guard, step);
        }
        Ok(())
    }

    /// Warnings about the home the engine was built on ([`EngineBuilder::home`]): a home directory, database,
    /// audit log or secret file that others than its owner may read or write ([`crate::home::Home::warnings`]). The
    /// CLI prints them on stderr; empty for an engine without a home.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Binds every study the sources list ([`DataSource::studies`]) that is bound to no organization yet to `org`
    /// (see [`Engine::bind_studies`]); returns the studies bound.
    ///
    /// # Errors
    /// As [`Engine::bind_studies`]; EXP005 when a source cannot list its studies.
    pub fn bind_source_studies(&self, org: &str, reason: &str) -> Result<Vec<String>> {
        let found = self.source_studies()?;
        self.bind_studies(org, &found, reason)
    }

    /// Every study the sources list, once each, in order.
    fn source_studies(&self) -> Result<Vec<String>> {
        let mut found = BTreeSet::new();
        for s in &self.inner.sources {
            found.extend(s.studies()?);
        }
        Ok(found.into_iter().collect())
    }

    /// For a host that registers studies in its own in-memory source (the Python and C bindings' `add_dataset`):
    /// binds the sources' unbound studies to the home's organization ([`EngineBuilder::home_org`]); nothing
    /// without one. A study bound to any organization is left as it is.
    ///
    /// # Errors
    /// As [`Engine::bind_source_studies`].
    pub fn bind_host_studies(&self) -> Result<Vec<String>> {
        match self.inner.home_org.clone() {
            Some(org) if self.inner.study_registry => self.bind_source_studies(&org, "host"),
            _ => Ok(Vec::new()),
        }
    }

    /// Binds each of `studies` that is bound to no organization yet to `org`, in one transaction with one
    /// `bind_study` audit event each (actor `system`, `details.reason` as given: `init` for `trialport init --org`,
    /// `upgrade` for a home made before the registry, `host` for [`Engine::bind_host_studies`]); returns the
    /// studies bound. A host operation, without a credential: operators bind studies with [`Session::add_study`].
    ///
    /// # Errors
    /// EXP002 for an invalid organization or study name; EXP005 for the store or the audit trail.
    pub fn bind_studies(&self, org: &str, studies: &[String], reason: &str) -> Result<Vec<String>> {
        self.bind(org, studies, reason, false)
    }

    /// [`Engine::bind_studies`]; with `adopted`, the same transaction also ends the store's adoption of an upgraded
    /// home's studies ([`crate::study::StudyRows::studies_adopted`]).
    fn bind(
        &self,
        org: &str,
        studies: &[String],
        reason: &str,
        adopted: bool,
    ) -> Result<Vec<String>> {
        crate::name::validate_name(org, "org")?;
        for s in studies {
            crate::name::validate_name(s, "study")?;
        }
        let inner = &self.inner;
        let now = inner.clock.now();
        let request_id = format!("req_{}", Uuid::now_v7().simple());
        inner.write(|tx| {
            let mut bound = Vec::new();
            for study in studies {
                if tx.study(study)?.is_some() {
                    continue;
                }
                tx.insert_study(&crate::study::StudyRecord {
                    study: study.clone(),
                    org: org.to_string(),
                    added_at: now,
                    added_by: "system".into(),
                })?;
                inner.record(
                    tx,
                    &AuditRecord {
                        actor: Actor::system(),
                        action: "bind_study".into(),
                        target: format!("study:{study}"),
                        outcome: Outcome::Success,
                        details: json!({"org": org, "reason": reason}),
                        request_id: request_id.clone(),
                    },
                    &AuditScope::new(org, Some(study)),
                )?;
                bound.push(study.clone());
            }
            if adopted {
                tx.studies_adopted()?;
            }
            Ok(bound)
        })
    }

    /// The rate limit every principal's calls are counted against, if any (for the `RateLimit-Policy` of an HTTP
    /// response that made no call).
    pub fn rate_limit_policy(&self) -> Option<crate::limit::RateLimitPolicy> {
        self.inner.rate_limit.as_ref().map(|l| l.policy())
    }

    /// Creates the first `admin` key of an organization, for `init`: refused once the organization has a key. With
    /// the study registry ([`EngineBuilder::study_registry`]), the studies of the sources that no organization
    /// holds yet are then bound to `org`, as `init --org` binds those of its source ([`Engine::bind_source_studies`],
    /// reason `init`).
    ///
    /// # Errors
    /// EXP004 `already_initialized`; EXP005.
    pub fn create_initial_admin_key(&self, org: &str) -> Result<String> {
        crate::name::validate_name(org, "org")?;
        let inner = &self.inner;
        let (text, rec) = inner.auth.new_key(
            NewApiKey {
                name: "initial admin".into(),
                org: Some(org.to_string()),
                roles: vec![Role::Admin],
                studies: vec!["*".into()],
                expires_at: None,
            },
            "system",
            inner.clock.now(),
        )?;
        inner.write(|tx| {
            if tx.org_has_keys(org)? {
                return Err(Error::conflict(
                    Reason::AlreadyInitialized,
                    "the organization already has API keys",
                ));
            }
            tx.insert_key(&rec)?;
            inner.record(
                tx,
                &AuditRecord {
                    actor: Actor::system(),
                    action: "create_api_key".into(),
                    target: format!("apikey:{}", rec.key_id),
                    outcome: Outcome::Success,
                    details: json!({"roles": ["admin"], "studies": ["*"], "org": org, "initial": true}),
                    request_id: format!("req_{}", Uuid::now_v7().simple()),
                },
                &AuditScope::new(org, None),
            )
        })?;
        if self.inner.study_registry {
            self.bind_source_studies(org, "init")?;
        }
        Ok(text)
    }
}
