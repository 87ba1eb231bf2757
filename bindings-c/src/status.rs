//! The one mapping of failures to C: a [`tp_status`] per error code, the thread's last error as the standard error
//! JSON, and [`guard`], which every exported function runs its body in (panics stop here).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use trialport_core::error::Reason;
use trialport_core::{Error, ErrorCode};

/// The result of every `tp_*` function that can fail: `TP_STATUS_OK` (0), one value per error code EXP001-EXP006,
/// `TP_STATUS_NULL_ARGUMENT` and `TP_STATUS_PANIC`. On any value but `TP_STATUS_OK`, `tp_last_error()` gives the
/// standard error JSON and no output argument was written.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tp_status {
    /// Success.
    TP_STATUS_OK = 0,
    /// EXP001: not found (job, dataset, study, format, artifact, file, home).
    TP_STATUS_NOT_FOUND = 1,
    /// EXP002: validation error (bad request JSON, option, metadata; data the format cannot represent).
    TP_STATUS_VALIDATION = 2,
    /// EXP003: unauthorized (missing, invalid or expired credential; permission denied).
    TP_STATUS_UNAUTHORIZED = 3,
    /// EXP004: conflict (illegal state transition, idempotency key reuse, file exists, artifact expired).
    TP_STATUS_CONFLICT = 4,
    /// EXP005: server error (I/O, audit failure including a failing audit callback, integrity failure).
    TP_STATUS_SERVER = 5,
    /// EXP006: rate limit exceeded (`details.retry_after_ms` in the error JSON).
    TP_STATUS_RATE_LIMITED = 6,
    /// A required pointer argument was NULL (the error JSON is EXP002 with reason `null_argument` and the
    /// argument's name as `field`).
    TP_STATUS_NULL_ARGUMENT = 7,
    /// A bug inside the library was caught at the boundary (the error JSON is EXP005 with reason `panic`). The
    /// engine stays usable; please report it.
    TP_STATUS_PANIC = 8,
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A required pointer argument was NULL: its name.
    Null(&'static str),
    /// The core's error.
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

/// The result of a body run by [`guard`].
pub(crate) type Outcome<T = ()> = Result<T, Failure>;

/// The status of a core error: one per code.
pub(crate) fn status_of(e: &Error) -> tp_status {
    match e.code() {
        ErrorCode::NotFound => tp_status::TP_STATUS_NOT_FOUND,
        ErrorCode::Validation => tp_status::TP_STATUS_VALIDATION,
        ErrorCode::Unauthorized => tp_status::TP_STATUS_UNAUTHORIZED,
        ErrorCode::Conflict => tp_status::TP_STATUS_CONFLICT,
        ErrorCode::RateLimited => tp_status::TP_STATUS_RATE_LIMITED,
        // EXP005, and any code added later (the enum is non-exhaustive).
        _ => tp_status::TP_STATUS_SERVER,
    }
}

thread_local! {
    /// The standard error JSON of this thread's last failure.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `error` as this thread's last error and returns its status.
fn fail(status: tp_status, error: &Error) -> tp_status {
    let text = error.render().to_string();
    // The JSON escapes every control character, so it has no NUL; keep a fixed text if that ever changes.
    let text = CString::new(text).unwrap_or_else(|_| c"{\"error\": {\"code\": \"EXP005\"}}".into());
    LAST_ERROR.with(|last| *last.borrow_mut() = Some(text));
    status
}

/// The standard error JSON of this thread's last failure (NULL when none), valid until this thread's next failure.
pub(crate) fn last_error() -> *const c_char {
    LAST_ERROR.with(|last| {
        last.borrow()
            .as_ref()
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Runs `body`, catching panics: `TP_STATUS_OK`, or the failure's status with the last error recorded.
pub(crate) fn guard(body: impl FnOnce() -> Outcome) -> tp_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => tp_status::TP_STATUS_OK,
        Ok(Err(Failure::Error(e))) => fail(status_of(&e), &e),
        Ok(Err(Failure::Null(name))) => fail(
            tp_status::TP_STATUS_NULL_ARGUMENT,
            &Error::validation(Reason::NullArgument, format!("argument '{name}' is NULL"))
                .with_field(name),
        ),
        Err(_) => fail(
            tp_status::TP_STATUS_PANIC,
            &Error::server(
                Reason::Panic,
                "an internal error was caught in the trialport library",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::ffi::CStr;

    fn last() -> serde_json::Value {
        let p = last_error();
        assert!(!p.is_null());
        // SAFETY: a non-NULL last error points to this thread's NUL-terminated CString, alive until the next failure.
        let text = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn each_code_has_its_status_and_the_error_json_is_kept() {
        std::thread::spawn(|| {
            assert!(last_error().is_null());
            let cases = [
                (
                    Error::not_found("x"),
                    tp_status::TP_STATUS_NOT_FOUND,
                    "EXP001",
                ),
                (
                    Error::validation(Reason::InvalidOption, "x"),
                    tp_status::TP_STATUS_VALIDATION,
                    "EXP002",
                ),
                (
                    Error::unauthorized(Reason::InvalidCredential, "x"),
                    tp_status::TP_STATUS_UNAUTHORIZED,
                    "EXP003",
                ),
                (
                    Error::conflict(Reason::IllegalTransition, "x"),
                    tp_status::TP_STATUS_CONFLICT,
                    "EXP004",
                ),
                (
                    Error::server(Reason::Internal, "x"),
                    tp_status::TP_STATUS_SERVER,
                    "EXP005",
                ),
                (
                    Error::new(ErrorCode::RateLimited, Reason::RateLimited, "x"),
                    tp_status::TP_STATUS_RATE_LIMITED,
                    "EXP006",
                ),
            ];
            for (e, status, code) in cases {
                assert_eq!(guard(|| Err(e.with_field("f").into())), status);
                let v = last();
                assert_eq!(v["error"]["code"], code);
                assert_eq!(v["error"]["field"], "f");
                // A success leaves the last failure in place.
                assert_eq!(guard(|| Ok(())), tp_status::TP_STATUS_OK);
                assert_eq!(last()["error"]["code"], code);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_panic_is_caught_and_a_null_argument_named() {
        std::thread::spawn(|| {
            assert_eq!(guard(|| panic!("a bug")), tp_status::TP_STATUS_PANIC);
            let v = last();
            assert_eq!(v["error"]["code"], "EXP005");
            assert_eq!(v["error"]["details"]["reason"], "panic");
            assert_eq!(
                guard(|| Err(Failure::Null("home"))),
                tp_status::TP_STATUS_NULL_ARGUMENT
            );
            let v = last();
            assert_eq!(v["error"]["code"], "EXP002");
            assert_eq!(v["error"]["field"], "home");
            assert_eq!(v["error"]["details"]["reason"], "null_argument");
        })
        .join()
        .unwrap();
    }
}
