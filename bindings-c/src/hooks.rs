//! C functions as audit hooks.
//!
//! The engine takes its hooks when it is built, so every engine gets one [`CHooks`] at build time and C appends
//! callbacks to it afterwards (`tp_engine_add_audit_callback`). Fail-closed as the core's contract says: a callback
//! that returns non-zero fails the audited operation (EXP005 `audit_failed`, cause `audit_hook_failed`).

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{Mutex, MutexGuard};
use trialport_core::audit::{AuditEvent, AuditHook};
use trialport_core::error::Reason;
use trialport_core::{Error, Result};

/// An audit callback: called with the `userdata` given at registration and the event as JSON text (valid only
/// during the call); returns 0 to accept the event, anything else to fail the operation being audited.
#[allow(non_camel_case_types)]
pub type tp_audit_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event_json: *const c_char) -> c_int>;

/// Frees a callback's userdata; called once, when the engine is freed.
pub(crate) type FreeFn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// One registered callback.
struct Callback {
    call: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
    userdata: *mut c_void,
    free: FreeFn,
}

// SAFETY: the header requires the callback and its userdata to be usable from any thread (audit events come from
// the caller's threads and the engine's workers); the library only passes the pointer back to the caller's
// functions and never dereferences it.
unsafe impl Send for Callback {}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: `free` and `userdata` were given together by the caller, who promised that `free(userdata)`
            // may be called once, from any thread; a Callback is dropped once.
            unsafe { free(self.userdata) }
        }
    }
}

/// The C callbacks of one engine, called in the order added.
#[derive(Default)]
pub(crate) struct CHooks {
    /// Held while the callbacks run; the auditor already calls hooks one event at a time.
    callbacks: Mutex<Vec<Callback>>,
}

impl std::fmt::Debug for CHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CHooks").finish_non_exhaustive()
    }
}

impl CHooks {
    fn lock(&self) -> MutexGuard<'_, Vec<Callback>> {
        self.callbacks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a callback; it receives every event from the next one on, and `free(userdata)` when dropped.
    pub(crate) fn push(
        &self,
        call: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
        userdata: *mut c_void,
        free: FreeFn,
    ) {
        self.lock().push(Callback {
            call,
            userdata,
            free,
        });
    }
}

impl AuditHook for CHooks {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        let callbacks = self.lock();
        if callbacks.is_empty() {
            return Ok(());
        }
        let text = serde_json::to_string(event)
            .ok()
            .and_then(|t| CString::new(t).ok())
            .ok_or_else(|| {
                Error::server(Reason::Internal, "an audit event could not be serialized")
            })?;
        for (index, c) in callbacks.iter().enumerate() {
            // SAFETY: `call` is the caller's function with the signature of tp_audit_fn, given with `userdata`;
            // `text` is a NUL-terminated string that outlives the call, as documented.
            let answer = unsafe { (c.call)(c.userdata, text.as_ptr()) };
            if answer != 0 {
                return Err(Error::server(
                    Reason::AuditHookFailed,
                    "a C audit callback refused the event",
                )
                .with_detail("callback", index)
                .with_detail("returned", answer));
            }
        }
        Ok(())
    }
}
