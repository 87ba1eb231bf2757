//! One operation call: authenticate, run the body (which authorizes), audit the outcome, stamp errors. Every
//! operation of a [`Session`] goes through [`Session::call`], so no operation can skip the credential or the
//! audit trail.

use super::{Inner, Session};
use crate::audit::{Actor, AuditEvent, AuditRecord, AuditScope, Outcome};
use crate::auth::Principal;
use crate::error::{Error, ErrorCode, Result};
use crate::store::Tx;
use serde_json::{json, Value};
use std::cell::Cell;
use std::sync::Mutex;
use uuid::Uuid;

/// The context of one operation call: request id, time, and the principal once known.
pub(crate) struct Call<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) action: &'static str,
    pub(crate) request_id: String,
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    principal: Option<Principal>,
    /// The organization and study the call concerns, once a job it reads names them (see [`Call::scope`]).
    scope: Mutex<Option<AuditScope>>,
    /// Whether the body recorded the call's success event in the transaction of its change (see
    /// [`Call::record_success`]).
    recorded: Cell<bool>,
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
    /// details, and do nothing that can fail after the transaction commits.
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
}

/// What an operation body returns on success: the value and its audit target and details.
pub(crate) struct Done<T> {
    pub(crate) value: T,
    pub(crate) target: String,
    pub(crate) details: Value,
}

/// The longest request id a caller may give (see [`Session::with_request_id`]).
pub const MAX_REQUEST_ID: usize = 128;

/// Whether `id` may be used as a request id: 1 to [`MAX_REQUEST_ID`] printable ASCII characters, no space.
pub(crate) fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh request id: `req_` and 32 hex digits of a UUIDv7.
pub(crate) fn new_request_id() -> String {
    format!("req_{}", Uuid::now_v7().simple())
}

impl Session<'_> {
    /// Runs one operation: authenticate, run the body (which authorizes), audit the outcome, stamp errors.
    /// `target` names what a refused or failed call was aimed at; a successful body names its own.
    pub(crate) fn call<T>(
        &self,
        action: &'static str,
        target: String,
        body: impl FnOnce(&Call<'_>) -> Result<Done<T>>,
    ) -> Result<T> {
        let inner: &Inner = self.inner;
        self.learned(|l| *l = super::session::LastCall::default());
        let mut call = Call {
            inner,
            action,
            request_id: self.request_id.clone().unwrap_or_else(new_request_id),
            at: inner.clock.now(),
            principal: None,
            scope: Mutex::new(None),
            recorded: Cell::new(false),
        };
        let stamp = |e: Error, call: &Call<'_>| e.with_request(&call.request_id, call.at);
        let authenticated = inner
            .auth
            .authenticate(&self.credential, call.at)
            .and_then(|p| {
                self.learned(|l| l.subject = Some(p.subject.clone()));
                if let Some(limit) = &inner.rate_limit {
                    let status = limit.check(&p.subject, call.at)?;
                    self.learned(|l| l.rate_limit = Some(status));
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
        match result {
            // The body committed its change with the event.
            Ok(done) if call.recorded.get() => Ok(done.value),
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
}
