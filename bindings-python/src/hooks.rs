//! Python callables as audit hooks.
//!
//! The engine takes hooks when it is built, so every engine gets one [`PyHooks`] at build time and Python appends
//! callables to it afterwards (`Engine.add_audit_hook`). Fail-closed as the core's contract says: a callable that
//! raises fails the audited operation (EXP005 `audit_failed`, cause `audit_hook_failed`).

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use trialport_core::audit::{AuditEvent, AuditHook};
use trialport_core::error::Reason;
use trialport_core::{Error, Result};

/// The Python callables of one engine, each called with the event's JSON text.
#[derive(Default)]
pub(crate) struct PyHooks {
    /// Locked only for moments, never while Python code runs.
    callables: Mutex<Vec<Py<PyAny>>>,
    /// How many callables there are, so that an engine without Python hooks never attaches to Python.
    count: AtomicUsize,
}

impl PyHooks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Py<PyAny>>> {
        self.callables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a callable; it receives every event from the next one on.
    pub(crate) fn push(&self, callable: Py<PyAny>) {
        let mut list = self.lock();
        list.push(callable);
        self.count.store(list.len(), Ordering::SeqCst);
    }

    /// Shows the callables to Python's garbage collector (a hook may refer back to its engine).
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> std::result::Result<(), PyTraverseError> {
        if let Ok(list) = self.callables.try_lock() {
            for c in list.iter() {
                visit.call(c)?;
            }
        }
        Ok(())
    }

    /// Drops every callable (garbage collection of a cycle through a hook).
    pub(crate) fn clear(&self) {
        let mut list = self.lock();
        list.clear();
        self.count.store(0, Ordering::SeqCst);
    }
}

impl AuditHook for PyHooks {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        if self.count.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let text = crate::data::to_json(event)?;
        Python::try_attach(|py| {
            let callables: Vec<Py<PyAny>> = self.lock().iter().map(|c| c.clone_ref(py)).collect();
            for c in callables {
                c.call1(py, (text.as_str(),)).map_err(|e| {
                    let kind = e
                        .get_type(py)
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default();
                    // The exception's text may quote anything: only its type is kept.
                    Error::server(
                        Reason::AuditHookFailed,
                        "a Python audit hook raised an exception",
                    )
                    .with_detail("exception", kind)
                })?;
            }
            Ok(())
        })
        .unwrap_or_else(|| {
            Err(Error::server(
                Reason::AuditHookUnavailable,
                "the Python interpreter cannot run audit hooks now",
            ))
        })
    }
}
