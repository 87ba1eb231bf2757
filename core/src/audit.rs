//! The audit trail: one event per operation (allowed, denied or failed) and per job state change, hash-chained,
//! stored before the operation is acknowledged, and handed to every registered [`AuditHook`]. Fail-closed: when
//! recording fails, the operation fails.

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::sink::hex;
use crate::store::AuditStore;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Subject id (`apikey:<id>`, a JWT `sub`, or `system` for the engine's own work, `anonymous` when the
    /// credential could not be resolved).
    pub subject: String,
    /// Printed name at the time of the action.
    pub name: String,
    /// Organization.
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

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Sequence number, 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// UUIDv7.
    pub event_id: Uuid,
    /// UTC time from the engine's clock.
    pub timestamp: DateTime<Utc>,
    /// Who acted.
    pub actor: Actor,
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
    /// Computes the chain hash: SHA-256 of `prev_hash` (hex text) followed by the canonical JSON of every field
    /// but `hash`.
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
}

/// JSON with object keys sorted at every level and no insignificant white space.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Receives every audit event.
///
/// # Contract
/// `record` is called once per event, in sequence order, after the event is stored. An error fails the operation
/// being audited (fail-closed).
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

/// Assigns sequence numbers, times and hashes, stores each event, then calls the hooks.
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    hooks: Vec<Arc<dyn AuditHook>>,
    clock: Arc<dyn Clock>,
    lock: Mutex<()>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
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
        }
    }

    /// Records one event.
    ///
    /// # Errors
    /// EXP005 `audit_failed` when the store or a hook fails.
    pub fn emit(&self, record: AuditRecord) -> Result<AuditEvent> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let failed = |e: Error| {
            Error::server(
                "audit_failed",
                "the audit trail could not record the operation",
            )
            .with_detail("cause", e.reason().to_string())
        };
        let (seq, prev_hash) = match self.store.last().map_err(failed)? {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_string()),
        };
        let mut event = AuditEvent {
            seq,
            event_id: Uuid::now_v7(),
            timestamp: self.clock.now(),
            actor: record.actor,
            action: record.action,
            target: record.target,
            outcome: record.outcome,
            details: record.details,
            request_id: record.request_id,
            prev_hash,
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        self.store.append(&event).map_err(failed)?;
        for hook in &self.hooks {
            hook.record(&event).map_err(failed)?;
        }
        Ok(event)
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
    /// EXP005 `integrity_violation` with `details.seq` of the first bad event.
    pub fn verify(&self) -> Result<u64> {
        let mut prev = GENESIS_HASH.to_string();
        let mut expected_seq = 1u64;
        loop {
            let batch = self.store.read(expected_seq, 10_000)?;
            if batch.is_empty() {
                return Ok(expected_seq - 1);
            }
            for e in batch {
                if e.seq != expected_seq || e.prev_hash != prev || e.compute_hash() != e.hash {
                    return Err(Error::server(
                        "integrity_violation",
                        "the audit trail was altered",
                    )
                    .with_detail("seq", expected_seq));
                }
                prev = e.hash;
                expected_seq += 1;
            }
        }
    }
}
