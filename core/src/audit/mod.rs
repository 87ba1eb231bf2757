//! The audit trail: one event per operation (allowed, denied or failed) and per job state change, hash-chained,
//! stored durably before the operation is acknowledged, and handed to every registered [`AuditHook`]. Fail-closed:
//! when recording fails, the operation fails.
//!
//! # Events
//!
//! | member | JSON | meaning |
//! |---|---|---|
//! | `seq` | integer | sequence number: 1, 2, 3, ... without gaps |
//! | `event_id` | string | a UUIDv7 |
//! | `timestamp` | string | UTC time from the engine's clock, RFC 3339 with `Z` and 0, 3, 6 or 9 fraction digits |
//! | `actor` | object | `subject` (`apikey:<id>`, a JWT `sub`, `system` for the engine's own work, `anonymous` when the credential could not be resolved), `name` (printed name at the time), `org` (the actor's organization) |
//! | `org` | string | the organization the action concerns (a job's, a request's); omitted when none |
//! | `study` | string | the study the action concerns; omitted when none |
//! | `action` | string | the operation (`export_data`, `download`, ...) or event (`job.running`, `audit.recovered`, ...) |
//! | `target` | string | what it was aimed at: `study:<id>`, `job:<uuid>`, `apikey:<id>`, `audit`, ... |
//! | `outcome` | string | `success`, `denied` (authentication or authorization refused) or `failed` |
//! | `details` | any | what else the action needs said (`{"reason": ...}` for refusals); never data values or secrets |
//! | `request_id` | string | the operation's request id (`req_...`), `job_<id>` for a job's state changes |
//! | `prev_hash` | string | the previous event's `hash` (64 `0`s for the first event) |
//! | `hash` | string | this event's hash, 64 lowercase hex digits |
//!
//! # Hash chain (a specification to reimplement from)
//!
//! 1. Take the event as a JSON object with exactly the members above (`org` and `study` left out when the event
//!    has none), and remove `hash`.
//! 2. Encode it canonically with the JSON Canonicalization Scheme (RFC 8785, see [`canonical_json`]): members
//!    sorted by name, no white space, minimal string escapes, ECMAScript number text.
//! 3. `hash = lowercase_hex(SHA-256(ascii(prev_hash) || utf8(canonical)))`: the 64 hex characters of the
//!    previous hash, then the canonical text, hashed together.
//! 4. The chain holds when, for every event in order, `seq` is one more than its predecessor's (1 for the first),
//!    `prev_hash` is the predecessor's `hash` ([`GENESIS_HASH`] for the first), and `hash` is as computed above.
//!
//! The embedded log ([`crate::store::AuditFileStore`], `audit.log` in a home) stores each event as exactly this
//! canonical text *with* `hash`, one per line; the JSON Lines export writes the same lines. So any JCS library and
//! any SHA-256 can check an exported or stored trail without trialport: parse a line, remove `hash`,
//! canonicalize, prefix `prev_hash`, hash.
//!
//! # Checkpoints: what the chain proves and what it does not
//!
//! [`Auditor::verify`] finds any event that was modified, deleted, inserted or reordered, and names the first bad
//! sequence number. A chain alone cannot show that its newest events were cut off, nor that someone holding the
//! storage rewrote the *whole* history and recomputed every hash. A [`Checkpoint`] (the sequence number and hash
//! of the last event, taken with [`Auditor::checkpoint`] and kept *outside* the system, by an auditor) closes
//! that gap: [`Auditor::verify_with`] fails when the trail no longer reaches the checkpoint or its event at that
//! sequence number has another hash.
//!
//! # Durability and failures
//!
//! [`Auditor::emit`] returns only after the store has the event durably (the file log fsyncs each line; the SQLite
//! store commits with `synchronous=FULL`). A store failure (EXP005) fails the operation with EXP005 `audit_failed`
//! and *poisons* the auditor: an fsync that failed may have lost data the kernel then reports as written, so no
//! later event is appended by this auditor (each fails with cause `audit_poisoned`) until the engine is opened
//! again, which re-reads and re-checks the stored trail. A `sequence_conflict` (another process appended first) is
//! retried; a record the store refuses before writing anything (EXP002) fails the operation without poisoning.
//!
//! Torn writes: see [`crate::store::AuditFileStore`]. A last record cut short by a crash was never acknowledged;
//! it is cut away when the log is opened, and the next event the auditor records is an `audit.recovered` event
//! (actor `system`, target `audit`) whose details give the sequence number after which the bytes were cut, their
//! offset, length and SHA-256, so the repair is itself on the record.
//!
//! # Hooks
//!
//! Hooks receive every event, in sequence order, after it is stored. They run outside the lock that orders
//! appends (the next event can be stored while hooks still handle this one) but under a second lock taken before
//! the first is released, so no hook ever sees events out of order. A hook must not call the engine: such a call
//! fails with EXP005 `audit_failed` (cause `reentrant_audit`) rather than deadlocking.
//!
//! # No updates, no deletes
//!
//! Nothing in trialport updates or deletes an audit event: [`crate::store::AuditStore`] has `append`, `last` and
//! `read`, and every store implements only those. A correction is a new event. Reading the trail through the
//! engine ([`crate::engine::Session::audit_events`], `verify_audit`, `audit_checkpoint`) needs the `audit:read`
//! permission and is itself audited.

mod canonical;
pub mod export;

pub use canonical::canonical_json;

use crate::clock::Clock;
use crate::error::{Error, ErrorCode, Result};
use crate::sink::hex;
use crate::store::{AuditRecovery, AuditStore};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Subject id (`apikey:<id>`, a JWT `sub`, or `system` for the engine's own work, `anonymous` when the
    /// credential could not be resolved).
    pub subject: String,
    /// Printed name at the time of the action.
    pub name: String,
    /// The actor's organization.
    pub org: String,
}

impl Actor {
    /// The engine itself (job state changes made by workers).
    pub fn system() -> Self {
        Actor {
            subject: "system".into(),
            name: "trialport engine".into(),
            org: String::new(),
        }
    }
}

/// The outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused by authentication or authorization.
    Denied,
    /// Attempted and failed.
    Failed,
}

impl Outcome {
    /// `success`, `denied` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// One audit event (see the module docs for its members and hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Sequence number, 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// UUIDv7.
    pub event_id: Uuid,
    /// UTC time from the engine's clock.
    pub timestamp: DateTime<Utc>,
    /// Who acted.
    pub actor: Actor,
    /// The organization the action concerns (empty, and left out of the JSON, when none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    /// The study the action concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<String>,
    /// What was done, e.g. `export_data`, `job.running`.
    pub action: String,
    /// What it was done to, e.g. `study:S1`, `job:<id>`.
    pub target: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Details (never data values or secrets).
    pub details: Value,
    /// Request id of the operation.
    pub request_id: String,
    /// Hash of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over the previous hash and the canonical event.
    pub hash: String,
}

/// The hash of the first event's predecessor.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditEvent {
    /// Computes the chain hash: SHA-256 of `prev_hash` (hex text) followed by the canonical JSON of every member
    /// but `hash` (see the module docs).
    pub fn compute_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("hash");
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.prev_hash.as_bytes());
        ctx.update(canonical_json(&v).as_bytes());
        hex(ctx.finish().as_ref())
    }

    /// The event, `hash` included, in the canonical encoding: one line of the audit log and of the JSON Lines
    /// export (without the line feed).
    pub fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).unwrap_or(Value::Null))
    }
}

/// Receives every audit event.
///
/// # Contract
/// `record` is called once per event, in sequence order, after the event is stored. An error fails the operation
/// being audited (fail-closed). A hook must not call the engine (see the module docs).
pub trait AuditHook: Send + Sync {
    /// Receives one event.
    ///
    /// # Errors
    /// Any error; the audited operation then fails with EXP005 `audit_failed`.
    fn record(&self, event: &AuditEvent) -> Result<()>;
}

/// A hook that keeps every event in memory: for tests that assert the exact audit sequence.
#[derive(Debug, Default, Clone)]
pub struct RecordingHook {
    events: Arc<Mutex<Vec<AuditEvent>>>,
}

impl RecordingHook {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `(action, outcome)` of each event so far.
    pub fn actions(&self) -> Vec<(String, Outcome)> {
        self.events()
            .into_iter()
            .map(|e| (e.action, e.outcome))
            .collect()
    }
}

impl AuditHook for RecordingHook {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        Ok(())
    }
}

/// What is recorded, before sequence number, time and hashes are assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Who acted.
    pub actor: Actor,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Details.
    pub details: Value,
    /// Request id.
    pub request_id: String,
}

/// The organization and study an audited action concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditScope {
    /// Organization (empty when none).
    pub org: String,
    /// Study, if any.
    pub study: Option<String>,
}

impl AuditScope {
    /// A scope of `org` and, if given, `study`.
    pub fn new(org: impl Into<String>, study: Option<&str>) -> Self {
        AuditScope {
            org: org.into(),
            study: study.map(str::to_string),
        }
    }

    /// The scope [`Auditor::emit`] assumes for a record: the actor's organization, and the study of a
    /// `study:<id>` target.
    pub fn implied(record: &AuditRecord) -> Self {
        AuditScope {
            org: record.actor.org.clone(),
            study: record.target.strip_prefix("study:").map(str::to_string),
        }
    }
}

/// A commitment to the trail up to one event, kept outside the system to detect a rewritten or cut trail (see
/// the module docs). Its JSON form is the checkpoint file of `trialport audit checkpoint`:
/// `{"seq": 42, "hash": "<64 hex>", "timestamp": "2025-01-21T10:00:00Z"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Sequence number of the last event covered (0 for an empty trail).
    pub seq: u64,
    /// That event's hash ([`GENESIS_HASH`] for an empty trail).
    pub hash: String,
    /// That event's time, for people reading the file; not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
}

impl Checkpoint {
    /// Reads a checkpoint from its JSON text.
    ///
    /// # Errors
    /// EXP002 `invalid_checkpoint` (field `checkpoint`) for text that is not a checkpoint: unknown members, a hash
    /// that is not 64 lowercase hex digits, or sequence number 0 with another hash than [`GENESIS_HASH`].
    pub fn from_json(text: &str) -> Result<Checkpoint> {
        let invalid = || {
            Error::validation("invalid_checkpoint", "the text is not an audit checkpoint")
                .with_field("checkpoint")
        };
        let cp: Checkpoint = serde_json::from_str(text).map_err(|_| invalid())?;
        let hex_ok = cp.hash.len() == 64
            && cp
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok || (cp.seq == 0 && cp.hash != GENESIS_HASH) {
            return Err(invalid());
        }
        Ok(cp)
    }
}

thread_local! {
    /// Whether this thread is running audit hooks (an engine call from a hook would deadlock).
    static IN_HOOKS: Cell<bool> = const { Cell::new(false) };
}

/// Appends that lost the race to another process are retried this many times.
const CONFLICT_RETRIES: usize = 1000;

/// Events read at a time while verifying.
const VERIFY_BATCH: usize = 1000;

/// Assigns sequence numbers, times and hashes, stores each event, then calls the hooks.
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    hooks: Vec<Arc<dyn AuditHook>>,
    clock: Arc<dyn Clock>,
    /// Orders appends.
    lock: Mutex<()>,
    /// Orders hook calls: taken before `lock` is released, so hooks see events in sequence order.
    hook_order: Mutex<()>,
    /// Set when a store append failed: nothing more is appended (see the module docs).
    poisoned: AtomicBool,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("hooks", &self.hooks.len())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

/// EXP005 `audit_failed` with the cause.
fn audit_failed(cause: &str) -> Error {
    Error::server(
        "audit_failed",
        "the audit trail could not record the operation",
    )
    .with_detail("cause", cause.to_string())
}

/// EXP005 `integrity_violation` naming the first bad event and the check it failed.
fn violation(seq: u64, check: &str) -> Error {
    Error::server("integrity_violation", "the audit trail was altered")
        .with_detail("seq", seq)
        .with_detail("check", check.to_string())
}

/// Clears the thread's in-hooks flag when hooks are done, even if one panics.
struct HooksRunning;

impl HooksRunning {
    fn start() -> Self {
        IN_HOOKS.with(|f| f.set(true));
        HooksRunning
    }
}

impl Drop for HooksRunning {
    fn drop(&mut self) {
        IN_HOOKS.with(|f| f.set(false));
    }
}

/// Where a walk of the chain ended.
struct ChainEnd {
    events: u64,
    hash: String,
    timestamp: Option<DateTime<Utc>>,
}

impl Auditor {
    /// An auditor over a store, with hooks and a clock.
    pub fn new(
        store: Arc<dyn AuditStore>,
        hooks: Vec<Arc<dyn AuditHook>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Auditor {
            store,
            hooks,
            clock,
            lock: Mutex::new(()),
            hook_order: Mutex::new(()),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Whether a failed append poisoned this auditor (every later event then fails).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Records one event in the scope [`AuditScope::implied`] by the record.
    ///
    /// # Errors
    /// As [`Auditor::emit_in`].
    pub fn emit(&self, record: AuditRecord) -> Result<AuditEvent> {
        let scope = AuditScope::implied(&record);
        self.emit_in(record, scope)
    }

    /// Records one event concerning `scope`: stored durably, then handed to the hooks. Any `audit.recovered` event
    /// the store owes (a torn tail it cut away) is recorded first.
    ///
    /// # Errors
    /// EXP005 `audit_failed` when the store or a hook fails, with `details.cause`: the store's reason,
    /// `audit_poisoned` after an earlier failed append, `reentrant_audit` when called from a hook.
    pub fn emit_in(&self, record: AuditRecord, scope: AuditScope) -> Result<AuditEvent> {
        if IN_HOOKS.with(Cell::get) {
            return Err(audit_failed("reentrant_audit"));
        }
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut events = self.recoveries_locked()?;
        let timestamp = self.clock.now();
        let event = self.append_locked(|seq, prev_hash| AuditEvent {
            seq,
            event_id: Uuid::now_v7(),
            timestamp,
            actor: record.actor.clone(),
            org: scope.org.clone(),
            study: scope.study.clone(),
            action: record.action.clone(),
            target: record.target.clone(),
            outcome: record.outcome,
            details: record.details.clone(),
            request_id: record.request_id.clone(),
            prev_hash,
            hash: String::new(),
        })?;
        events.push(event.clone());
        let order = self.hook_order.lock().unwrap_or_else(|p| p.into_inner());
        drop(guard);
        self.dispatch(&events)?;
        drop(order);
        Ok(event)
    }

    /// Records the `audit.recovered` events the store owes, if any; called when an engine opens, so a repair
    /// made at open is on the record at once.
    ///
    /// # Errors
    /// As [`Auditor::emit_in`].
    pub fn flush_recoveries(&self) -> Result<Vec<AuditEvent>> {
        if IN_HOOKS.with(Cell::get) {
            return Err(audit_failed("reentrant_audit"));
        }
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let events = self.recoveries_locked()?;
        let order = self.hook_order.lock().unwrap_or_else(|p| p.into_inner());
        drop(guard);
        self.dispatch(&events)?;
        drop(order);
        Ok(events)
    }

    fn recoveries_locked(&self) -> Result<Vec<AuditEvent>> {
        if self.is_poisoned() {
            return Err(audit_failed("audit_poisoned"));
        }
        let mut events = Vec::new();
        for r in self.store.take_recoveries() {
            let timestamp = self.clock.now();
            let details = recovery_details(&r);
            events.push(self.append_locked(|seq, prev_hash| AuditEvent {
                seq,
                event_id: Uuid::now_v7(),
                timestamp,
                actor: Actor::system(),
                org: String::new(),
                study: None,
                action: "audit.recovered".into(),
                target: "audit".into(),
                outcome: Outcome::Success,
                details: details.clone(),
                request_id: format!("audit_{}", Uuid::now_v7().simple()),
                prev_hash,
                hash: String::new(),
            })?);
        }
        Ok(events)
    }

    /// Appends the event `make(seq, prev_hash)` builds, retrying when another writer took the sequence number;
    /// poisons the auditor when the store fails.
    fn append_locked(&self, make: impl Fn(u64, String) -> AuditEvent) -> Result<AuditEvent> {
        if self.is_poisoned() {
            return Err(audit_failed("audit_poisoned"));
        }
        for _ in 0..CONFLICT_RETRIES {
            let (seq, prev_hash) = match self.store.last() {
                Ok(Some((seq, hash))) => (seq + 1, hash),
                Ok(None) => (1, GENESIS_HASH.to_string()),
                Err(e) => return Err(audit_failed(e.reason())),
            };
            let mut event = make(seq, prev_hash);
            event.hash = event.compute_hash();
            match self.store.append(&event) {
                Ok(()) => return Ok(event),
                Err(e) if e.reason() == "sequence_conflict" => continue,
                Err(e) => {
                    if e.code() == ErrorCode::Server {
                        self.poisoned.store(true, Ordering::SeqCst);
                    }
                    return Err(audit_failed(e.reason()));
                }
            }
        }
        Err(audit_failed("sequence_conflict"))
    }

    fn dispatch(&self, events: &[AuditEvent]) -> Result<()> {
        if self.hooks.is_empty() || events.is_empty() {
            return Ok(());
        }
        let _running = HooksRunning::start();
        for event in events {
            for hook in &self.hooks {
                hook.record(event).map_err(|e| audit_failed(e.reason()))?;
            }
        }
        Ok(())
    }

    /// Reads up to `limit` events with `seq >= from`.
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.store.read(from, limit)
    }

    /// Checks the whole chain: sequence numbers without gaps, each `prev_hash` the previous `hash`, each hash
    /// recomputed. Returns the number of events.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` with `details.seq`, the first bad sequence number, and `details.check`:
    /// `sequence` (an event missing, inserted or moved there), `prev_hash` (the link to the previous event
    /// broken), `hash` (the event changed), `record` (the stored record unreadable).
    pub fn verify(&self) -> Result<u64> {
        self.walk(None).map(|end| end.events)
    }

    /// [`Auditor::verify`], and, given a checkpoint taken earlier, that the trail still reaches it with the same
    /// hash at its sequence number.
    ///
    /// # Errors
    /// As [`Auditor::verify`]; `details.check` is `checkpoint` when the trail is intact in itself but does not
    /// match the checkpoint (`details.seq`: the checkpoint's sequence number, or the first missing one when the
    /// trail is shorter).
    pub fn verify_with(&self, checkpoint: Option<&Checkpoint>) -> Result<u64> {
        self.walk(checkpoint).map(|end| end.events)
    }

    /// Verifies the chain and returns a checkpoint of its last event.
    ///
    /// # Errors
    /// As [`Auditor::verify`].
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let end = self.walk(None)?;
        Ok(Checkpoint {
            seq: end.events,
            hash: end.hash,
            timestamp: end.timestamp,
        })
    }

    fn walk(&self, checkpoint: Option<&Checkpoint>) -> Result<ChainEnd> {
        let mut prev = GENESIS_HASH.to_string();
        let mut timestamp = None;
        let mut expected = 1u64;
        loop {
            let batch = self.store.read(expected, VERIFY_BATCH)?;
            if batch.is_empty() {
                break;
            }
            for e in batch {
                let check = if e.seq != expected {
                    Some("sequence")
                } else if e.prev_hash != prev {
                    Some("prev_hash")
                } else if e.compute_hash() != e.hash {
                    Some("hash")
                } else {
                    None
                };
                if let Some(check) = check {
                    return Err(violation(expected, check));
                }
                if let Some(cp) = checkpoint {
                    if cp.seq == expected && cp.hash != e.hash {
                        return Err(checkpoint_mismatch(expected, cp));
                    }
                }
                prev = e.hash;
                timestamp = Some(e.timestamp);
                expected += 1;
            }
        }
        let events = expected - 1;
        if let Some(cp) = checkpoint {
            if cp.seq > events {
                return Err(checkpoint_mismatch(events + 1, cp).with_detail("events", events));
            }
            if cp.seq == 0 && cp.hash != GENESIS_HASH {
                return Err(checkpoint_mismatch(0, cp));
            }
        }
        Ok(ChainEnd {
            events,
            hash: prev,
            timestamp,
        })
    }
}

fn checkpoint_mismatch(seq: u64, cp: &Checkpoint) -> Error {
    Error::server(
        "integrity_violation",
        "the audit trail does not match the checkpoint",
    )
    .with_detail("seq", seq)
    .with_detail("check", "checkpoint")
    .with_detail("checkpoint_seq", cp.seq)
}

fn recovery_details(r: &AuditRecovery) -> Value {
    json!({"problem": "torn_tail", "after_seq": r.after_seq, "offset": r.offset, "bytes": r.bytes,
        "sha256": r.sha256})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::store::MemoryStore;

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            actor: Actor {
                subject: "apikey:0123456789ab".into(),
                name: "Alice Example".into(),
                org: "acme".into(),
            },
            action: action.into(),
            target: "study:S1".into(),
            outcome: Outcome::Success,
            details: json!({"n": 1}),
            request_id: "req_1".into(),
        }
    }

    fn auditor(hooks: Vec<Arc<dyn AuditHook>>) -> Auditor {
        let at = DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Auditor::new(
            Arc::new(MemoryStore::new()),
            hooks,
            Arc::new(FixedClock::new(at)),
        )
    }

    #[test]
    fn the_implied_scope_is_the_actors_org_and_a_study_target() {
        let a = auditor(vec![]);
        let e = a.emit(record("export_data")).unwrap();
        assert_eq!((e.org.as_str(), e.study.as_deref()), ("acme", Some("S1")));
        let mut r = record("get_job");
        r.target = "job:x".into();
        let e = a.emit_in(r, AuditScope::new("other", Some("S9"))).unwrap();
        assert_eq!((e.org.as_str(), e.study.as_deref()), ("other", Some("S9")));
        assert_eq!(a.verify().unwrap(), 2);
    }

    #[test]
    fn events_without_org_or_study_leave_them_out_of_the_json() {
        let a = auditor(vec![]);
        let mut r = record("formats");
        r.target = "formats".into();
        let e = a.emit_in(r, AuditScope::default()).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert!(v.get("org").is_none() && v.get("study").is_none(), "{v}");
        // Unknown members are refused, so no verifier can disagree on what an event holds.
        let mut extra = v.clone();
        extra["note"] = json!("added");
        assert!(serde_json::from_value::<AuditEvent>(extra).is_err());
        let back: AuditEvent = serde_json::from_str(&e.canonical()).unwrap();
        assert_eq!(back, e);
    }

    struct Reentrant(Arc<Mutex<Option<Arc<Auditor>>>>, Arc<Mutex<Vec<String>>>);
    impl AuditHook for Reentrant {
        fn record(&self, _: &AuditEvent) -> Result<()> {
            let a = self.0.lock().unwrap().clone().unwrap();
            let err = a.emit(record("nested")).unwrap_err();
            self.1
                .lock()
                .unwrap()
                .push(err.details()["cause"].to_string());
            Ok(())
        }
    }

    #[test]
    fn a_hook_calling_back_fails_instead_of_deadlocking() {
        let slot = Arc::new(Mutex::new(None));
        let causes = Arc::new(Mutex::new(Vec::new()));
        let a = Arc::new(auditor(vec![Arc::new(Reentrant(
            slot.clone(),
            causes.clone(),
        ))]));
        *slot.lock().unwrap() = Some(a.clone());
        a.emit(record("outer")).unwrap();
        assert_eq!(*causes.lock().unwrap(), vec!["\"reentrant_audit\""]);
        // The flag is cleared: the next event is recorded normally.
        a.emit(record("after")).unwrap();
        assert_eq!(a.verify().unwrap(), 2);
        *slot.lock().unwrap() = None;
    }

    #[test]
    fn hooks_see_every_event_in_order_under_concurrency() {
        let hook = RecordingHook::new();
        let a = Arc::new(auditor(vec![Arc::new(hook.clone())]));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let a = a.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        a.emit(record("x")).unwrap();
                    }
                });
            }
        });
        let seqs: Vec<u64> = hook.events().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn checkpoints_parse_strictly() {
        let good = format!("{{\"seq\": 3, \"hash\": \"{}\"}}", "a".repeat(64));
        assert_eq!(Checkpoint::from_json(&good).unwrap().seq, 3);
        for bad in [
            format!("{{\"seq\": 3, \"hash\": \"{}\"}}", "A".repeat(64)),
            format!("{{\"seq\": 3, \"hash\": \"{}\"}}", "a".repeat(63)),
            format!("{{\"seq\": 0, \"hash\": \"{}\"}}", "a".repeat(64)),
            format!("{{\"seq\": 3, \"hash\": \"{}\", \"x\": 1}}", "a".repeat(64)),
            "{\"seq\": \"3\"}".to_string(),
            "[]".to_string(),
        ] {
            let e = Checkpoint::from_json(&bad).unwrap_err();
            assert_eq!(
                (e.code().as_str(), e.reason()),
                ("EXP002", "invalid_checkpoint")
            );
        }
        let empty = format!("{{\"seq\": 0, \"hash\": \"{GENESIS_HASH}\"}}");
        assert_eq!(Checkpoint::from_json(&empty).unwrap().seq, 0);
    }
}
