//! One operation call ([`run`]): authenticate, run the body (which authorizes), audit the outcome, stamp errors.
//! Every operation of a `Session` goes through `Session::call`, which runs it here, so no operation can skip the
//! credential or the audit trail.

use super::Inner;
use crate::access::Principal;
use crate::audit::{Actor, AuditEvent, AuditRecord, AuditScope, Outcome};
use crate::error::{Error, ErrorCode, Result};
use crate::store::Tx;
use serde_json::{json, Value};
use std::cell::Cell;
use std::sync::Mutex;
use uuid::Uuid;

/// What a session's last call learned of its caller, for an adapter's response headers and logs: the principal's
/// subject once authenticated, and its rate-limit quota once counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastCall {
    /// The authenticated principal's subject (`None`: the credential was refused, or no call was made).
    pub subject: Option<String>,
    /// The quota after the call, when the engine limits calls (see [`crate::limit`]).
    pub rate_limit: Option<crate::limit::RateLimitStatus>,
}

/// The context of one operation call: request id, time, and the principal once known.
pub(crate) struct Call<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) action: &'static str,
    pub(crate) request_id: String,
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    /// What a refused or failed call was aimed at (the target given to `Session::call`).
    target: String,
    principal: Option<Principal>,
    /// The organization and study the call concerns, once a job it reads names them (see [`Call::scope`]).
    scope: Mutex<Option<AuditScope>>,
    /// Whether the body recorded the call's success event in the transaction of its change (see
    /// [`Call::record_success`]).
    recorded: Cell<bool>,
    /// Whether the body recorded the call's refusal event in the transaction of the change the refusal made (see
    /// [`Call::record_refusal`]).
    refused: Cell<bool>,
    /// Whether the body's error follows the commit of the call's success event (see [`Call::failed_after_commit`]).
    committed_then_failed: Cell<bool>,
}

/// The outcome and details of the audit event of a call that ends with `e`.
fn refusal(e: &Error) -> (Outcome, Value) {
    let outcome = if e.code() == ErrorCode::Unauthorized {
        Outcome::Denied
    } else {
        Outcome::Failed
    };
    let mut details = json!({"code": e.code().as_str(), "reason": e.reason()});
    if let Some(f) = e.field() {
        details["field"] = json!(f);
    }
    (outcome, details)
}

impl Call<'_> {
    /// Records that the call concerns `org` and `study` (the job it reads), for its audit event.
    pub(crate) fn set_scope(&self, org: &str, study: Option<&str>) {
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

    /// Who the audit trail says acted.
    pub(crate) fn actor(&self) -> Actor {
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

    /// The authenticated principal.
    pub(crate) fn principal(&self) -> &Principal {
        // Set by `Session::call` before the body runs.
        self.principal
            .as_ref()
            .unwrap_or_else(|| unreachable!("operation body ran without a principal"))
    }

    fn event(&self, target: &str, outcome: Outcome, details: Value) -> AuditRecord {
        AuditRecord {
            actor: self.actor(),
            action: self.action.to_string(),
            target: target.to_string(),
            outcome,
            details,
            request_id: self.request_id.clone(),
        }
    }

    fn audit(&self, target: &str, outcome: Outcome, details: Value) -> Result<AuditEvent> {
        self.inner
            .audit(&self.event(target, outcome, details), &self.scope(target))
    }

    /// Records the call's success event in `tx`, the transaction of the change it reports (write-ahead audit:
    /// the change and its event commit together). The body must then return `Done` with the same target and
    /// details, and do nothing that can fail after the transaction commits (or, failing, call
    /// [`Call::failed_after_commit`]).
    ///
    /// # Errors
    /// The store's errors.
    pub(crate) fn record_success(
        &self,
        tx: &mut dyn Tx,
        target: &str,
        details: &Value,
    ) -> Result<AuditEvent> {
        let event = self.inner.record(
            tx,
            &self.event(target, Outcome::Success, details.clone()),
            &self.scope(target),
        )?;
        self.recorded.set(true);
        Ok(event)
    }

    /// Records the call's refusal event for `err` in `tx`, the transaction of a change the refusal itself makes
    /// (a failed signature's count, a lock): the change and the event commit together, and `Session::call`
    /// records no second event. The event is the one `Session::call` would record for `err` (its target, outcome
    /// and details); the body must then return `err` once the transaction committed, or call
    /// [`Call::rolled_back`] when it did not.
    ///
    /// # Errors
    /// The store's errors.
    pub(crate) fn record_refusal(&self, tx: &mut dyn Tx, err: &Error) -> Result<AuditEvent> {
        let (outcome, details) = refusal(err);
        let event = self.inner.record(
            tx,
            &self.event(&self.target, outcome, details),
            &self.scope(&self.target),
        )?;
        self.refused.set(true);
        Ok(event)
    }

    /// Says that the call's success event committed with its change, and that what the body then failed to do
    /// completes without the call (a rotated KEK made current when an engine next opens the home): the body's error
    /// is returned and `Session::call` records no event of it, which would contradict the committed one.
    pub(crate) fn failed_after_commit(&self) {
        self.committed_then_failed.set(true);
    }

    /// Says that the transaction in which the body recorded the call's success or refusal event did not commit:
    /// `Session::call` then records the call's outcome itself.
    pub(crate) fn rolled_back(&self) {
        self.recorded.set(false);
        self.refused.set(false);
    }
}

/// What an operation body returns on success: the value and its audit target and details.
pub(crate) struct Done<T> {
    pub(crate) value: T,
    pub(crate) target: String,
    pub(crate) details: Value,
}

/// The longest request id a caller may give (see [`super::Session::with_request_id`]).
pub const MAX_REQUEST_ID: usize = 128;

/// Whether `id` may be used as a request id: 1 to [`MAX_REQUEST_ID`] printable ASCII characters, no space.
pub(crate) fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh request id: `req_` and 32 hex digits of a UUIDv7.
pub(crate) fn new_request_id() -> String {
    format!("req_{}", Uuid::now_v7().simple())
}

/// Runs one operation with `credential`: authenticate, run the body (which authorizes), audit the outcome, stamp
/// errors; what it learns of the caller goes to `last_call`. `target` names what a refused or failed call was
/// aimed at; a successful body names its own.
pub(crate) fn run<T>(
    inner: &Inner,
    credential: &str,
    request_id: Option<&str>,
    last_call: &Mutex<LastCall>,
    action: &'static str,
    target: String,
    body: impl FnOnce(&Call<'_>) -> Result<Done<T>>,
) -> Result<T> {
    let learned =
        |f: &dyn Fn(&mut LastCall)| f(&mut last_call.lock().unwrap_or_else(|p| p.into_inner()));
    learned(&|l| *l = LastCall::default());
    let mut call = Call {
        inner,
        action,
        request_id: request_id.map_or_else(new_request_id, str::to_string),
        at: inner.clock.now(),
        target: target.clone(),
        principal: None,
        scope: Mutex::new(None),
        recorded: Cell::new(false),
        refused: Cell::new(false),
        committed_then_failed: Cell::new(false),
    };
    let stamp = |e: Error, call: &Call<'_>| e.with_request(&call.request_id, call.at);
    let authenticated = inner.auth.authenticate(credential, call.at).and_then(|p| {
        learned(&|l| l.subject = Some(p.subject.clone()));
        if let Some(limit) = &inner.rate_limit {
            let status = limit.check(&p.subject, call.at)?;
            learned(&|l| l.rate_limit = Some(status));
            if !status.allowed {
                return Err(status.error());
            }
        }
        Ok(p)
    });
    match authenticated {
        Ok(p) => {
            call.principal = Some(p);
        }
        Err(e) => {
            let outcome = if matches!(e.code(), ErrorCode::Unauthorized | ErrorCode::RateLimited) {
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
    match result {
        // The body committed its change with the event.
        Ok(done) if call.recorded.get() => Ok(done.value),
        Ok(done) => {
            call.audit(&done.target, Outcome::Success, done.details)
                .map_err(|e| stamp(e, &call))?;
            Ok(done.value)
        }
        // The body committed the change its refusal made with the refusal's event, or the change it reports
        // with its success event before failing to finish it.
        Err(e) if call.refused.get() || call.committed_then_failed.get() => Err(stamp(e, &call)),
        Err(e) => {
            let (outcome, details) = refusal(&e);
            call.audit(&target, outcome, details)
                .map_err(|a| stamp(a, &call))?;
            Err(stamp(e, &call))
        }
    }
}
