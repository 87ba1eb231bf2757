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
//! | `action` | string | the operation (`export_data`, `download`, ...) or event (`job.running`, `job.signed`, ...) |
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
//! The embedded home keeps each event as exactly this canonical text *with* `hash`, one per line, in `audit.log`
//! (see [`crate::store::SqliteStore`]); the JSON Lines export writes the same lines. So any JCS library and any
//! SHA-256 can check an exported or stored trail without trialport: parse a line, remove `hash`, canonicalize,
//! prefix `prev_hash`, hash.
//!
//! # Checkpoints: what the chain proves and what it does not
//!
//! [`Auditor::verify`] finds any event that was modified, deleted, inserted or reordered, and names the first bad
//! sequence number. A chain alone cannot show that its newest events were cut off, nor that someone holding the
//! storage rewrote the *whole* history and recomputed every hash. The store closes the first gap itself: the
//! SQLite home keeps the last event's sequence number and hash (the *anchor*) in its database, under a MAC, and
//! refuses to open when the log's end disagrees with it. A [`Checkpoint`] (the sequence number and hash of the
//! last event, taken with [`Auditor::checkpoint`] and kept *outside* the system, by an auditor) closes the other:
//! [`Auditor::verify_with`] fails when the trail no longer reaches the checkpoint or its event at that sequence
//! number has another hash, as after the whole home was rolled back to an older copy.
//!
//! # Write-ahead: an event for every change, and only for changes
//!
//! Events are never appended on their own. Each is sealed by [`Auditor::record`] inside the store transaction
//! that makes the change it reports ([`crate::store::Store::write`]), and committed with it or not at all: a crash
//! at any instant leaves either the change and its event, or neither. An operation is acknowledged only after the
//! commit, so an acknowledged event is durable. A refused or failed operation changes nothing and commits only its
//! event. When the store cannot commit, the operation fails with EXP005 (fail-closed).
//!
//! # Hooks
//!
//! Hooks receive the events of each transaction after its work and before its commit, in sequence order, while
//! the store holds its write lock ([`Auditor::witness`]): they see each event exactly once and never out of
//! order, and a hook's error fails the transaction, which then commits nothing. A hook must not call the engine:
//! such a call fails with EXP005 `audit_failed` (cause `reentrant_audit`) rather than deadlocking.
//!
//! # No updates, no deletes
//!
//! Nothing in trialport updates or deletes an audit event: [`AuditRows`] stages the next event and nothing else,
//! [`AuditReads`] reads. A correction is a new event. Reading the trail through the engine
//! ([`crate::engine::Session::audit_events`], `verify_audit`, `audit_checkpoint`) needs the `audit:read`
//! permission and is itself audited.

mod canonical;
pub mod export;

pub use canonical::canonical_json;

use crate::clock::Clock;
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::Cell;
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

    /// The scope assumed for a record with none given: the actor's organization, and the study of a
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
/// `{"seq": 42, "hash": "<64 hex>", "timestamp": "2025-01-21T10:00:00Z", "signed": {"algorithm": "ed25519",
/// "key_id": "<16 hex>", "signature": "<128 hex>"}}`.
///
/// The engine signs the checkpoints it takes with its Ed25519 key ([`crate::signature::SigningKey`]): the signed
/// bytes are [`Checkpoint::signed_payload`], the text `trialport audit checkpoint v1`, a newline, and the RFC 8785
/// canonical JSON of `seq`, `hash` and `timestamp` (when present). Verifying against a signed checkpoint checks the
/// signature with the engine's public key first, so a checkpoint that was edited, or made by anyone without the
/// key, is refused; a checkpoint without `signed` (made by an earlier version) is checked for its hash only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Sequence number of the last event covered (0 for an empty trail).
    pub seq: u64,
    /// That event's hash ([`GENESIS_HASH`] for an empty trail).
    pub hash: String,
    /// That event's time (covered by the signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// The engine's signature of the checkpoint, if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<CheckpointSignature>,
}

/// The signature of a [`Checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSignature {
    /// `ed25519`.
    pub algorithm: String,
    /// The id of the signing key's public key ([`crate::signature::PublicKey::id`]).
    pub key_id: String,
    /// The 64-byte signature of [`Checkpoint::signed_payload`], lowercase hex.
    pub signature: String,
}

/// What a checkpoint's signature covers, before its canonical JSON.
const CHECKPOINT_DOMAIN: &str = "trialport audit checkpoint v1\n";

impl Checkpoint {
    /// The bytes the engine signs: a domain line (`trialport audit checkpoint v1`) and the canonical JSON of
    /// `seq`, `hash` and `timestamp` (see the type's docs).
    pub fn signed_payload(&self) -> Vec<u8> {
        let mut body = serde_json::json!({"seq": self.seq, "hash": self.hash});
        if let Some(t) = &self.timestamp {
            body["timestamp"] = serde_json::json!(t);
        }
        let mut out = CHECKPOINT_DOMAIN.as_bytes().to_vec();
        out.extend_from_slice(canonical_json(&body).as_bytes());
        out
    }

    /// Reads a checkpoint from its JSON text.
    ///
    /// # Errors
    /// EXP002 `invalid_checkpoint` (field `checkpoint`) for text that is not a checkpoint: unknown members, a hash
    /// that is not 64 lowercase hex digits, sequence number 0 with another hash than [`GENESIS_HASH`], or a
    /// signature that is not an Ed25519 signature in hex.
    pub fn from_json(text: &str) -> Result<Checkpoint> {
        let invalid = || {
            Error::validation(
                Reason::InvalidCheckpoint,
                "the text is not an audit checkpoint",
            )
            .with_field("checkpoint")
        };
        let cp: Checkpoint = serde_json::from_str(text).map_err(|_| invalid())?;
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(&cp.hash, 64) || (cp.seq == 0 && cp.hash != GENESIS_HASH) {
            return Err(invalid());
        }
        if let Some(sig) = &cp.signed {
            if sig.algorithm != "ed25519" || !lower_hex(&sig.signature, 128) {
                return Err(invalid());
            }
        }
        Ok(cp)
    }
}

thread_local! {
    /// Whether this thread is running audit hooks (an engine call from a hook would deadlock).
    static IN_HOOKS: Cell<bool> = const { Cell::new(false) };
}

/// Events read at a time while verifying.
const VERIFY_BATCH: usize = 1000;

/// The audit operations of a store's transaction ([`crate::store::Tx`]): the chain's head and the events staged
/// with the transaction's changes. Staged events are stored durably with the commit, or not at all.
///
/// # Contract
/// - `audit_head` is the sequence number and hash of the last event, counting events staged earlier in this
///   transaction (`None` for an empty trail).
/// - `stage_event` accepts only the next event: `seq` one more than the head's (1 for the first) and `prev_hash`
///   the head's hash ([`GENESIS_HASH`] for the first); anything else is EXP004 `sequence_conflict` and stages
///   nothing. There is no update or delete of events.
pub trait AuditRows {
    /// The head of the chain as this transaction sees it.
    ///
    /// # Errors
    /// EXP005.
    fn audit_head(&mut self) -> Result<Option<(u64, String)>>;

    /// Stages the next event.
    ///
    /// # Errors
    /// EXP004 `sequence_conflict`; EXP002 for an event the store refuses (too large); EXP005.
    fn stage_event(&mut self, event: &AuditEvent) -> Result<()>;
}

/// Reading the audit trail outside a transaction.
///
/// # Contract
/// `audit_last` is the last committed event's sequence number and hash; `audit_read` returns the events with
/// `seq >= from` in order, at most `limit`. Several stores (or processes) on one backing storage see each other's
/// commits.
pub trait AuditReads: Send + Sync {
    /// The sequence number and hash of the last event, if any.
    ///
    /// # Errors
    /// EXP005.
    fn audit_last(&self) -> Result<Option<(u64, String)>>;

    /// Up to `limit` events with `seq >= from`, in order.
    ///
    /// # Errors
    /// EXP005; EXP005 `integrity_violation` for a stored record that cannot be read back.
    fn audit_read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>>;
}

/// Seals audit records into hash-chained events inside a store transaction, and hands the events of each
/// transaction to the hooks before it commits (see the module docs).
pub struct Auditor {
    hooks: Vec<Arc<dyn AuditHook>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// EXP005 `audit_failed` with the cause.
pub(crate) fn audit_failed(cause: &str) -> Error {
    Error::server(
        Reason::AuditFailed,
        "the audit trail could not record the operation",
    )
    .with_detail("cause", cause.to_string())
}

/// EXP005 `integrity_violation` naming the first bad event and the check it failed.
fn violation(seq: u64, check: &str) -> Error {
    Error::server(Reason::IntegrityViolation, "the audit trail was altered")
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

/// EXP005 `audit_failed` (cause `reentrant_audit`) when called from an audit hook: a hook must not call the
/// engine, whose store it would wait for while its caller holds it.
///
/// # Errors
/// As described.
pub fn refuse_reentry() -> Result<()> {
    if IN_HOOKS.with(Cell::get) {
        return Err(audit_failed("reentrant_audit"));
    }
    Ok(())
}

impl Auditor {
    /// An auditor with hooks and a clock.
    pub fn new(hooks: Vec<Arc<dyn AuditHook>>, clock: Arc<dyn Clock>) -> Self {
        Auditor { hooks, clock }
    }

    /// Seals `record` as the next event of the chain in `tx` (time from the clock, sequence number and hashes from
    /// the head) and stages it; it is stored if and when the transaction commits.
    ///
    /// # Errors
    /// The errors of [`AuditRows`].
    pub fn record(
        &self,
        tx: &mut dyn AuditRows,
        record: &AuditRecord,
        scope: &AuditScope,
    ) -> Result<AuditEvent> {
        let (seq, prev_hash) = match tx.audit_head()? {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_string()),
        };
        let mut event = AuditEvent {
            seq,
            event_id: Uuid::now_v7(),
            timestamp: self.clock.now(),
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
        };
        event.hash = event.compute_hash();
        tx.stage_event(&event)?;
        Ok(event)
    }

    /// Hands the events of a transaction about to commit to every hook, in sequence order (the store calls it
    /// holding its write lock, so hooks of concurrent transactions never interleave). A hook's error fails the
    /// transaction, which then commits nothing (fail-closed).
    ///
    /// # Errors
    /// EXP005 `audit_failed` with the hook's reason as `details.cause`.
    pub fn witness(&self, events: &[AuditEvent]) -> Result<()> {
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

    /// Checks the whole chain in `trail`: sequence numbers without gaps, each `prev_hash` the previous `hash`,
    /// each hash recomputed. Returns the number of events.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` with `details.seq`, the first bad sequence number, and `details.check`:
    /// `sequence` (an event missing, inserted or moved there), `prev_hash` (the link to the previous event
    /// broken), `hash` (the event changed), `record` (the stored record unreadable).
    pub fn verify(&self, trail: &dyn AuditReads) -> Result<u64> {
        walk(trail, None).map(|end| end.events)
    }

    /// [`Auditor::verify`], and, given a checkpoint taken earlier, that the trail still reaches it with the same
    /// hash at its sequence number.
    ///
    /// # Errors
    /// As [`Auditor::verify`]; `details.check` is `checkpoint` when the trail is intact in itself but does not
    /// match the checkpoint (`details.seq`: the checkpoint's sequence number, or the first missing one when the
    /// trail is shorter).
    pub fn verify_with(
        &self,
        trail: &dyn AuditReads,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<u64> {
        walk(trail, checkpoint).map(|end| end.events)
    }

    /// Verifies the chain and returns an unsigned checkpoint of its last event (the engine signs it).
    ///
    /// # Errors
    /// As [`Auditor::verify`].
    pub fn checkpoint(&self, trail: &dyn AuditReads) -> Result<Checkpoint> {
        let end = walk(trail, None)?;
        Ok(Checkpoint {
            seq: end.events,
            hash: end.hash,
            timestamp: end.timestamp,
            signed: None,
        })
    }
}

fn walk(trail: &dyn AuditReads, checkpoint: Option<&Checkpoint>) -> Result<ChainEnd> {
    let mut prev = GENESIS_HASH.to_string();
    let mut timestamp = None;
    let mut expected = 1u64;
    loop {
        let batch = trail.audit_read(expected, VERIFY_BATCH)?;
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

fn checkpoint_mismatch(seq: u64, cp: &Checkpoint) -> Error {
    Error::server(
        Reason::IntegrityViolation,
        "the audit trail does not match the checkpoint",
    )
    .with_detail("seq", seq)
    .with_detail("check", "checkpoint")
    .with_detail("checkpoint_seq", cp.seq)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::store::{MemoryStore, Store};
    use serde_json::json;

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

    /// An auditor with `hooks` over a memory store.
    struct Trail {
        auditor: Auditor,
        store: MemoryStore,
    }

    impl Trail {
        fn new(hooks: Vec<Arc<dyn AuditHook>>) -> Trail {
            let at = DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc);
            Trail {
                auditor: Auditor::new(hooks, Arc::new(FixedClock::new(at))),
                store: MemoryStore::new(),
            }
        }

        /// Records one event in its own transaction, witnessed by the hooks.
        fn emit(&self, record: AuditRecord, scope: AuditScope) -> Result<AuditEvent> {
            refuse_reentry()?;
            let mut out = None;
            self.store.write(
                &mut |tx| {
                    out = Some(self.auditor.record(tx, &record, &scope)?);
                    Ok(())
                },
                &|events| self.auditor.witness(events),
            )?;
            Ok(out.unwrap())
        }
    }

    #[test]
    fn events_carry_their_scope_and_chain() {
        let t = Trail::new(vec![]);
        let e = t
            .emit(record("export_data"), AuditScope::implied(&record("x")))
            .unwrap();
        assert_eq!((e.org.as_str(), e.study.as_deref()), ("acme", Some("S1")));
        assert_eq!((e.seq, e.prev_hash.as_str()), (1, GENESIS_HASH));
        let mut r = record("get_job");
        r.target = "job:x".into();
        let e2 = t.emit(r, AuditScope::new("other", Some("S9"))).unwrap();
        assert_eq!(
            (e2.org.as_str(), e2.study.as_deref()),
            ("other", Some("S9"))
        );
        assert_eq!((e2.seq, e2.prev_hash.as_str()), (2, e.hash.as_str()));
        assert_eq!(t.auditor.verify(&t.store).unwrap(), 2);
    }

    #[test]
    fn events_without_org_or_study_leave_them_out_of_the_json() {
        let t = Trail::new(vec![]);
        let mut r = record("formats");
        r.target = "formats".into();
        let e = t.emit(r, AuditScope::default()).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert!(v.get("org").is_none() && v.get("study").is_none(), "{v}");
        // Unknown members are refused, so no verifier can disagree on what an event holds.
        let mut extra = v.clone();
        extra["note"] = json!("added");
        assert!(serde_json::from_value::<AuditEvent>(extra).is_err());
        let back: AuditEvent = serde_json::from_str(&e.canonical()).unwrap();
        assert_eq!(back, e);
    }

    struct Reentrant(Arc<Mutex<Option<Arc<Trail>>>>, Arc<Mutex<Vec<String>>>);
    impl AuditHook for Reentrant {
        fn record(&self, _: &AuditEvent) -> Result<()> {
            let t = self.0.lock().unwrap().clone().unwrap();
            let err = t.emit(record("nested"), AuditScope::default()).unwrap_err();
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
        let t = Arc::new(Trail::new(vec![Arc::new(Reentrant(
            slot.clone(),
            causes.clone(),
        ))]));
        *slot.lock().unwrap() = Some(t.clone());
        t.emit(record("outer"), AuditScope::default()).unwrap();
        assert_eq!(*causes.lock().unwrap(), vec!["\"reentrant_audit\""]);
        // The flag is cleared: the next event is recorded normally.
        t.emit(record("after"), AuditScope::default()).unwrap();
        assert_eq!(t.auditor.verify(&t.store).unwrap(), 2);
        *slot.lock().unwrap() = None;
    }

    /// A hook that refuses every event.
    struct Refusing;
    impl AuditHook for Refusing {
        fn record(&self, _: &AuditEvent) -> Result<()> {
            Err(Error::server(Reason::HookRefused, "the hook refuses"))
        }
    }

    #[test]
    fn a_refusing_hook_leaves_nothing_recorded() {
        let t = Trail::new(vec![Arc::new(Refusing)]);
        let e = t.emit(record("x"), AuditScope::default()).unwrap_err();
        assert_eq!(
            (e.reason(), e.details()["cause"].as_str()),
            ("audit_failed", Some("hook_refused"))
        );
        assert_eq!(t.store.audit_last().unwrap(), None);
    }

    #[test]
    fn hooks_see_every_event_in_order_under_concurrency() {
        let hook = RecordingHook::new();
        let t = Arc::new(Trail::new(vec![Arc::new(hook.clone())]));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let t = t.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        t.emit(record("x"), AuditScope::default()).unwrap();
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
