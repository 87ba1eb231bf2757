//! `libtrialport`: the C library of trialport (`libtrialport.so`, `libtrialport.a`, `include/trialport.h`).
//!
//! This crate only translates: C strings into core requests (parsed by the core), `struct ArrowArrayStream` into
//! batch streams (`stream.rs`), core errors into a status and the thread's last error JSON (`status.rs`), C
//! functions into audit hooks (`hooks.rs`). The functions below are the boundary: each checks its pointers, runs
//! its body inside `status::guard` (no panic crosses into C) and writes its outputs only on success. The
//! conventions (ownership, strings, errors, threads, callbacks) are in `README.md` and the header.

mod engine;
mod hooks;
mod status;
mod stream;

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use trialport_core::error::Reason;
use trialport_core::job::JobKind;

pub use engine::{tp_engine, TP_WAIT_FOREVER};
pub use hooks::tp_audit_fn;
pub use status::tp_status;
pub use stream::ArrowArrayStream;

use status::{guard, Failure, Outcome};

/// The text behind `p`, a required string argument named `name`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
unsafe fn text<'a>(p: *const c_char, name: &'static str) -> Outcome<&'a str> {
    if p.is_null() {
        return Err(Failure::Null(name));
    }
    // SAFETY: not NULL, and NUL-terminated and valid for 'a by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map_err(|_| {
        Failure::Error(
            trialport_core::Error::validation(
                Reason::InvalidUtf8,
                "a string argument is not UTF-8",
            )
            .with_field(name),
        )
    })
}

/// The text behind `p`, an optional string argument (NULL is `None`).
///
/// # Safety
/// As [`text`].
unsafe fn optional_text<'a>(p: *const c_char, name: &'static str) -> Outcome<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's contract, passed on.
        unsafe { text(p, name) }.map(Some)
    }
}

/// A path argument (any bytes but NUL on Unix).
///
/// # Safety
/// As [`text`].
unsafe fn path(p: *const c_char, name: &'static str) -> Outcome<PathBuf> {
    if p.is_null() {
        return Err(Failure::Null(name));
    }
    // SAFETY: not NULL, and NUL-terminated and valid for the call by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        // SAFETY: as above.
        unsafe { text(p, name) }.map(PathBuf::from)
    }
}

/// The engine behind a handle argument.
///
/// # Safety
/// `p` is NULL or a handle from `tp_engine_open` that is not freed during `'a`.
unsafe fn engine_of<'a>(p: *const tp_engine) -> Outcome<&'a tp_engine> {
    // SAFETY: a non-NULL handle is a live Box<tp_engine> by the caller's contract; only shared references are
    // made from it (tp_engine is Sync).
    unsafe { p.as_ref() }.ok_or(Failure::Null("engine"))
}

/// Fails with `TP_STATUS_NULL_ARGUMENT` when the output pointer `p` is NULL.
fn output<T>(p: *mut T, name: &'static str) -> Outcome {
    if p.is_null() {
        Err(Failure::Null(name))
    } else {
        Ok(())
    }
}

/// Hands `s` to C through `out` (freed by `tp_string_free`).
///
/// # Safety
/// `out` is a valid, writable `char **`.
unsafe fn put_string(out: *mut *mut c_char, s: String) -> Outcome {
    let s = CString::new(s).map_err(|_| {
        Failure::Error(trialport_core::Error::server(
            Reason::Internal,
            "a result holds a NUL character",
        ))
    })?;
    // SAFETY: `out` is valid and writable by the caller's contract.
    unsafe { *out = s.into_raw() };
    Ok(())
}

/// The version of the library, e.g. `"0.1.0"`: a static string, never freed.
#[no_mangle]
pub extern "C" fn tp_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Opens the engine on the home directory `home`, writing the new handle to `*out` (free it with `tp_engine_free`).
///
/// When `home` is already a trialport home (made by `trialport init`, `trialport.init_home` or an earlier call),
/// it is opened with its stored configuration and `config_json` is only checked to be valid. When it is not a
/// home yet and `config_json` is not NULL, the home is created first, as `trialport --home DIR init` does, with
/// these settings, each optional (the members of the home's `config.json` but `version`):
///
/// ```text
/// {"org": "default", "source": null, "workers": null, "retention_days": null, "retention": null, "jwt": null,
///  "encryption": true}
/// ```
///
/// (the defaults of `trialport init`: `source` is a directory of `<study>/<DATASET>.<ext>` files, `workers` null
/// means 2 threads, `jwt` holds the JWT settings `trialport init` writes; `retention_days` N expires the
/// artifacts of every kind of job N days after it finished, `retention` sets days per kind: `{"default_days",
/// "data_days", "report_days", "dashboard_days", "bulk_days"}`, null: never; see `tp_engine_purge`), and its
/// first `admin` API key is kept for `tp_engine_initial_api_key`. With `config_json` NULL, a directory
/// that is not a home is an error (EXP001 `not_a_home`).
///
/// # Safety
/// `home` and `config_json` (or NULL) are NUL-terminated strings; `out` is a valid `tp_engine **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_open(
    home: *const c_char,
    config_json: *const c_char,
    out: *mut *mut tp_engine,
) -> tp_status {
    guard(|| {
        output(out, "out")?;
        // SAFETY: the caller's contract for `home` and `config_json`.
        let (home, config) = unsafe {
            (
                path(home, "home")?,
                optional_text(config_json, "config_json")?,
            )
        };
        let engine = tp_engine::open(&home, config)?;
        // SAFETY: `out` is valid and writable by the caller's contract.
        unsafe { *out = Box::into_raw(Box::new(engine)) };
        Ok(())
    })
}

/// Frees an engine: stops its workers (a running job goes back to `queued` for the next engine on the home),
/// then frees each audit callback's userdata with its `free_userdata`. NULL is a no-op.
///
/// # Safety
/// `engine` is NULL or a handle from `tp_engine_open` not freed before; no other call on it may be in progress or
/// follow.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_free(engine: *mut tp_engine) {
    let _ = guard(|| {
        if !engine.is_null() {
            // SAFETY: a handle from tp_engine_open is a Box<tp_engine> given up by Box::into_raw, freed only here,
            // once, with no other call in progress (the caller's contract).
            drop(unsafe { Box::from_raw(engine) });
        }
        Ok(())
    });
}

/// Writes the first `admin` API key of the home (`"tp_..."`; the credential is `"ApiKey "` followed by it) to
/// `*api_key` when this handle created the home in `tp_engine_open`: once, as `trialport init` prints it once.
/// Free it with `tp_string_free`. EXP001 `no_initial_key` when the home existed or the key was taken.
///
/// # Safety
/// `engine` is a live handle; `api_key` is a valid `char **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_initial_api_key(
    engine: *mut tp_engine,
    api_key: *mut *mut c_char,
) -> tp_status {
    guard(|| {
        output(api_key, "api_key")?;
        // SAFETY: the caller's contract for `engine`.
        let engine = unsafe { engine_of(engine)? };
        let key = engine.take_initial_key()?;
        // SAFETY: checked above; valid by the caller's contract.
        unsafe { put_string(api_key, key) }
    })
}

/// Registers (or replaces) dataset `name` of `study` in the engine's in-memory source, reading every batch of
/// `stream` (Arrow C stream interface). `metadata_json` (or NULL) is a metadata document, the Dataset-JSON
/// `columns` shape plus `privacy`, layered over the stream's own metadata:
/// `{"label": "Demographics", "columns": [{"name": "AGE", "label": "Age", "privacy": "age"}]}`.
///
/// Ownership: when `stream` is not NULL the library takes it over in every case, success or not: afterwards
/// `stream->release` is NULL and the caller must not release it. The imported buffers are released when the
/// dataset is replaced or the engine is freed.
///
/// # Safety
/// `engine` is a live handle; the strings are NUL-terminated (`metadata_json` may be NULL); `stream` is a valid
/// `struct ArrowArrayStream` following the Arrow C stream interface.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_add_dataset(
    engine: *mut tp_engine,
    study: *const c_char,
    name: *const c_char,
    stream: *mut ArrowArrayStream,
    metadata_json: *const c_char,
) -> tp_status {
    guard(|| {
        // Taken first, so that the stream is owned (and released) here whatever else fails.
        let imported = if stream.is_null() {
            None
        } else {
            // SAFETY: not NULL, a valid stream by the caller's contract.
            Some(unsafe { stream::import(stream) })
        };
        // SAFETY: the caller's contract for `engine` and the strings.
        let (engine, study, name, meta) = unsafe {
            (
                engine_of(engine)?,
                text(study, "study")?,
                text(name, "name")?,
                optional_text(metadata_json, "metadata_json")?,
            )
        };
        let stream = imported.ok_or(Failure::Null("stream"))??;
        engine.add_dataset(study, name, stream, meta)?;
        Ok(())
    })
}

/// The common shape of the functions that take a credential and a JSON text and return JSON text.
///
/// # Safety
/// As the exported functions that call it.
unsafe fn json_call(
    engine: *mut tp_engine,
    credential: *const c_char,
    input: *const c_char,
    input_name: &'static str,
    out: *mut *mut c_char,
    out_name: &'static str,
    call: impl FnOnce(&tp_engine, &str, &str) -> trialport_core::Result<String>,
) -> tp_status {
    guard(|| {
        output(out, out_name)?;
        // SAFETY: the caller's contract for `engine` and the strings.
        let (engine, credential, input) = unsafe {
            (
                engine_of(engine)?,
                text(credential, "credential")?,
                text(input, input_name)?,
            )
        };
        let result = call(engine, credential, input)?;
        // SAFETY: checked above; valid by the caller's contract.
        unsafe { put_string(out, result) }
    })
}

/// `export_data`: exports datasets of a study, one artifact per dataset. `request_json` is an export data request
/// (`{"study": "S1", "datasets": ["DM"], "format": "xpt", "options": {...}, "idempotency_key": "..."}`; a dataset
/// may also be `{"name": "LB", "columns": [...], "filters": [{"column": "LBTESTCD", "op": "eq", "value": "ALT"}]}`).
/// Writes the queued job's JSON to `*job_json` (free with `tp_string_free`); workers run it: `tp_engine_wait`.
///
/// # Safety
/// `engine` is a live handle; the strings are NUL-terminated; `job_json` is a valid `char **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_export_data(
    engine: *mut tp_engine,
    credential: *const c_char,
    request_json: *const c_char,
    job_json: *mut *mut c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        json_call(
            engine,
            credential,
            request_json,
            "request_json",
            job_json,
            "job_json",
            |e, c, r| e.export(c, JobKind::Data, r),
        )
    }
}

/// `export_report`: renders a report. `request_json`: `{"report": {"study": "S1", "title": "...", "parameters":
/// {...}, "sections": [{"type": "text", "body": "..."}, {"type": "table", "dataset": "AE"}]}, "format": "html"}`.
/// Writes the queued job's JSON to `*job_json`.
///
/// # Safety
/// As `tp_engine_export_data`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_export_report(
    engine: *mut tp_engine,
    credential: *const c_char,
    request_json: *const c_char,
    job_json: *mut *mut c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        json_call(
            engine,
            credential,
            request_json,
            "request_json",
            job_json,
            "job_json",
            |e, c, r| e.export(c, JobKind::Report, r),
        )
    }
}

/// `export_dashboard`: renders a dashboard. `request_json`: `{"dashboard": {"study": "S1", "title": "...",
/// "tiles": [...], "tables": [...], "charts": [...]}, "format": "json"}`. Writes the queued job's JSON to
/// `*job_json`.
///
/// # Safety
/// As `tp_engine_export_data`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_export_dashboard(
    engine: *mut tp_engine,
    credential: *const c_char,
    request_json: *const c_char,
    job_json: *mut *mut c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        json_call(
            engine,
            credential,
            request_json,
            "request_json",
            job_json,
            "job_json",
            |e, c, r| e.export(c, JobKind::Dashboard, r),
        )
    }
}

/// `bulk_export`: several datasets (all when `datasets` is empty or absent) of a study in one zip package with
/// `manifest.json`. `request_json`: `{"study": "S1", "datasets": ["DM", "AE"], "format": "xpt", "package": "zip"}`.
/// Writes the queued job's JSON to `*job_json`.
///
/// # Safety
/// As `tp_engine_export_data`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_bulk_export(
    engine: *mut tp_engine,
    credential: *const c_char,
    request_json: *const c_char,
    job_json: *mut *mut c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        json_call(
            engine,
            credential,
            request_json,
            "request_json",
            job_json,
            "job_json",
            |e, c, r| e.export(c, JobKind::Bulk, r),
        )
    }
}

/// `list_jobs`: the jobs the caller may see, newest first. `query_json` (or NULL for the defaults):
/// `{"page": 1, "limit": 20, "status": "succeeded", "study": "S1"}`, each optional (limit 1 to 100, default 20).
/// Writes `{"items": [jobs...], "page", "limit", "total"}` to `*page_json`.
///
/// # Safety
/// `engine` is a live handle; `credential` and `query_json` (or NULL) are NUL-terminated; `page_json` is a valid
/// `char **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_list_jobs(
    engine: *mut tp_engine,
    credential: *const c_char,
    query_json: *const c_char,
    page_json: *mut *mut c_char,
) -> tp_status {
    guard(|| {
        output(page_json, "page_json")?;
        // SAFETY: the caller's contract for `engine` and the strings.
        let (engine, credential, query) = unsafe {
            (
                engine_of(engine)?,
                text(credential, "credential")?,
                optional_text(query_json, "query_json")?,
            )
        };
        let page = engine.list_jobs(credential, query)?;
        // SAFETY: checked above; valid by the caller's contract.
        unsafe { put_string(page_json, page) }
    })
}

/// `get_job`: one job's state, progress, artifacts (name, size, SHA-256) and error. Writes the job's JSON to
/// `*job_json`. A `job_id` that is not a UUID names no job (EXP001).
///
/// # Safety
/// `engine` is a live handle; the strings are NUL-terminated; `job_json` is a valid `char **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_get_job(
    engine: *mut tp_engine,
    credential: *const c_char,
    job_id: *const c_char,
    job_json: *mut *mut c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        json_call(
            engine,
            credential,
            job_id,
            "job_id",
            job_json,
            "job_json",
            |e, c, id| e.get_job(c, id),
        )
    }
}

/// Waits until a job has finished, or `timeout_ms` milliseconds passed (`TP_WAIT_FOREVER`: no limit; 0: look
/// once), and writes the job's JSON to `*job_json`; a timeout is not an error (the job is then `queued` or
/// `running`). The credential is the one the job was last obtained with from this handle (`tp_engine_export_*`,
/// `tp_engine_get_job`, `tp_engine_list_jobs`, ...); for a job this handle has not seen, use
/// `tp_engine_wait_as`. The wait is one audited call, however long.
///
/// # Safety
/// `engine` is a live handle; `job_id` is NUL-terminated; `job_json` is a valid `char **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_wait(
    engine: *mut tp_engine,
    job_id: *const c_char,
    timeout_ms: u32,
    job_json: *mut *mut c_char,
) -> tp_status {
    guard(|| {
        output(job_json, "job_json")?;
        // SAFETY: the caller's contract for `engine` and `job_id`.
        let (engine, id) = unsafe { (engine_of(engine)?, text(job_id, "job_id")?) };
        let job = engine.wait(None, id, timeout_ms)?;
        // SAFETY: checked above; valid by the caller's contract.
        unsafe { put_string(job_json, job) }
    })
}

/// `tp_engine_wait` with an explicit credential.
///
/// # Safety
/// As `tp_engine_wait`; `credential` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_wait_as(
    engine: *mut tp_engine,
    credential: *const c_char,
    job_id: *const c_char,
    timeout_ms: u32,
    job_json: *mut *mut c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        json_call(
            engine,
            credential,
            job_id,
            "job_id",
            job_json,
            "job_json",
            |e, c, id| e.wait(Some(c), id, timeout_ms),
        )
    }
}

/// Cancels a queued or running job (a running job stops at its next batch and leaves no artifact); writes the
/// job's JSON to `*job_json`. EXP004 `illegal_transition` for a finished job.
///
/// # Safety
/// As `tp_engine_get_job`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_cancel(
    engine: *mut tp_engine,
    credential: *const c_char,
    job_id: *const c_char,
    job_json: *mut *mut c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        json_call(
            engine,
            credential,
            job_id,
            "job_id",
            job_json,
            "job_json",
            |e, c, id| e.cancel(c, id),
        )
    }
}

/// `download`: writes the one main artifact of a succeeded job to the new file `path`, verifying its SHA-256 as it
/// is read. The file appears only when complete and verified (temp file, fsync, rename); an existing file is not
/// replaced (EXP004 `artifact_exists`). A job with several artifacts needs `tp_engine_download_artifact`
/// (EXP002 `artifact_required`).
///
/// # Safety
/// `engine` is a live handle; the strings are NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_download(
    engine: *mut tp_engine,
    credential: *const c_char,
    job_id: *const c_char,
    path: *const c_char,
) -> tp_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { tp_engine_download_artifact(engine, credential, job_id, std::ptr::null(), path) }
}

/// `tp_engine_download` of the artifact named `artifact` (e.g. `"dm.csv"` or `"manifest.json"`; NULL for the one
/// main artifact).
///
/// # Safety
/// `engine` is a live handle; the strings are NUL-terminated (`artifact` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn tp_engine_download_artifact(
    engine: *mut tp_engine,
    credential: *const c_char,
    job_id: *const c_char,
    artifact: *const c_char,
    path: *const c_char,
) -> tp_status {
    guard(|| {
        // SAFETY: the caller's contract for `engine` and the strings.
        let (engine, credential, id, artifact, path) = unsafe {
            (
                engine_of(engine)?,
                text(credential, "credential")?,
                text(job_id, "job_id")?,
                optional_text(artifact, "artifact")?,
                self::path(path, "path")?,
            )
        };
        engine.download(credential, id, artifact, &path)?;
        Ok(())
    })
}

/// `formats`: the engine's formats with their capabilities and options (as `trialport formats --json` lists
/// them), written to `*formats_json`. Needs `formats:read` and is audited, as every operation.
///
/// # Safety
/// `engine` is a live handle; `credential` is NUL-terminated; `formats_json` is a valid `char **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_formats(
    engine: *mut tp_engine,
    credential: *const c_char,
    formats_json: *mut *mut c_char,
) -> tp_status {
    guard(|| {
        output(formats_json, "formats_json")?;
        // SAFETY: the caller's contract for `engine` and `credential`.
        let (engine, credential) = unsafe { (engine_of(engine)?, text(credential, "credential")?) };
        let formats = engine.formats(credential)?;
        // SAFETY: checked above; valid by the caller's contract.
        unsafe { put_string(formats_json, formats) }
    })
}

/// Verifies the hash chain of the audit trail (needs `audit:read`) and writes the number of events checked to
/// `*events`. EXP005 `integrity_violation` (with `details.seq`) when an event was modified, deleted, inserted or
/// reordered.
///
/// # Safety
/// `engine` is a live handle; `credential` is NUL-terminated; `events` is a valid `uint64_t *`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_verify_audit(
    engine: *mut tp_engine,
    credential: *const c_char,
    events: *mut u64,
) -> tp_status {
    guard(|| {
        output(events, "events")?;
        // SAFETY: the caller's contract for `engine` and `credential`.
        let (engine, credential) = unsafe { (engine_of(engine)?, text(credential, "credential")?) };
        let n = engine.verify_audit(credential)?;
        // SAFETY: checked above; valid by the caller's contract.
        unsafe { *events = n };
        Ok(())
    })
}

/// Expires now every job of the caller's organization (and studies) whose retention time has passed (needs
/// `retention:purge`: the `admin` role) and writes what it did to `*result_json` (free with `tp_string_free`):
/// `{"jobs_expired": 1, "artifacts_deleted": 2, "bytes_freed": 5120}`. With no retention configured (the home's
/// `retention_days` or `retention` settings, see `tp_engine_open`), nothing expires and every count is 0.
///
/// A succeeded job is due when it finished at least its kind's retention time ago. Expiring it deletes the bytes
/// of every artifact but `manifest.json`, moves it to `expired` and keeps its record (with each artifact's name,
/// size and SHA-256) and its manifest; downloading another artifact of it is then EXP004 `expired`. Each deletion
/// and state change is audited (`artifact.deleted`, `job.expired`), then the call itself. The engine also
/// expires due jobs of every organization in the background (every 60 s) and at a download.
///
/// EXP003 without the permission; EXP005 when an artifact cannot be deleted or an event recorded (purging stops
/// there; what was done before is recorded).
///
/// # Safety
/// `engine` is a live handle; `credential` is NUL-terminated; `result_json` is a valid `char **`.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_purge(
    engine: *mut tp_engine,
    credential: *const c_char,
    result_json: *mut *mut c_char,
) -> tp_status {
    guard(|| {
        output(result_json, "result_json")?;
        // SAFETY: the caller's contract for `engine` and `credential`.
        let (engine, credential) = unsafe { (engine_of(engine)?, text(credential, "credential")?) };
        let summary = engine.purge(credential)?;
        // SAFETY: checked above; valid by the caller's contract.
        unsafe { put_string(result_json, summary) }
    })
}

/// Adds an audit callback: from the next event on, `fn(userdata, event_json)` receives every audit event of the
/// engine (one per operation, allowed or denied, and per job state change) as JSON text valid only during the
/// call. Returning non-zero fails the operation being audited (EXP005 `audit_failed`): fail-closed.
///
/// Callbacks run on the thread of the operation or on a worker thread of the engine, one event at a time, in
/// sequence order, while the audit trail is locked: they must be thread-safe, return quickly, and not call
/// functions of the same engine. On success the engine owns `userdata` and calls `free_userdata(userdata)` (when
/// not NULL) once, from `tp_engine_free`; on failure nothing is kept and `free_userdata` is not called.
///
/// # Safety
/// `engine` is a live handle; `fn` and `free_userdata` (or NULL) are functions of these signatures, callable from
/// any thread with `userdata` until the engine is freed.
#[no_mangle]
pub unsafe extern "C" fn tp_engine_add_audit_callback(
    engine: *mut tp_engine,
    r#fn: tp_audit_fn,
    userdata: *mut c_void,
    free_userdata: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
) -> tp_status {
    guard(|| {
        // SAFETY: the caller's contract for `engine`.
        let engine = unsafe { engine_of(engine)? };
        let call = r#fn.ok_or(Failure::Null("fn"))?;
        engine.hooks().push(call, userdata, free_userdata);
        Ok(())
    })
}

/// `trialport convert`: converts the file `input_path` (CSV, TSV, JSON, NDJSON, Parquet, Arrow IPC, XPT, ... by
/// its extension) to `output_path`, in the format named in the options or else the one of the output's extension
/// (`.csv`, `.xpt`, `.parquet`, `.xlsx`, ...). `options_json` (or NULL), each member optional:
/// `{"format": "xpt", "options": {"version": "5"}, "dataset": "DM", "label": "Demographics", "meta": {...metadata
/// document...}, "overwrite": false}`. The output appears only when complete; an existing file is replaced only
/// with `"overwrite": true` (else EXP004 `artifact_exists`).
///
/// # Safety
/// The strings are NUL-terminated (`options_json` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn tp_convert(
    input_path: *const c_char,
    output_path: *const c_char,
    options_json: *const c_char,
) -> tp_status {
    guard(|| {
        // SAFETY: the caller's contract for the strings.
        let (input, output, options) = unsafe {
            (
                path(input_path, "input_path")?,
                path(output_path, "output_path")?,
                optional_text(options_json, "options_json")?,
            )
        };
        engine::convert(&input, &output, options)?;
        Ok(())
    })
}

/// The standard error JSON of this thread's last failure, or NULL when no call failed on this thread:
/// `{"error": {"code": "EXP002", "message": "...", "field": "...", "details": {"reason": "...", ...},
/// "timestamp": "...", "request_id": "..."}}`. Owned by the library (do not free it); valid until the next failing
/// call on this thread. A success does not clear it.
#[no_mangle]
pub extern "C" fn tp_last_error() -> *const c_char {
    status::last_error()
}

/// Frees a string the library returned (the `char **` outputs). NULL is a no-op.
///
/// # Safety
/// `s` is NULL or a string from this library, not freed before.
#[no_mangle]
pub unsafe extern "C" fn tp_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: strings handed out come from CString::into_raw and are freed once (the caller's contract).
        drop(unsafe { CString::from_raw(s) });
    }
}
