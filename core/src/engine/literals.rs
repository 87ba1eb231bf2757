//! A job's request literals at rest: no data value a request names is kept in plain text outside the encryption.
//!
//! A request's literals are the values of its row filters (`filters[].value`, wherever a dataset selection, a
//! report table or a dashboard widget has them) and its idempotency key. At submission they leave the request the
//! store keeps: each filter value becomes `{"withheld": "request_literal"}`, and the values and the key are sealed
//! together into [`Job::literals`] under the engine's keys ([`crate::crypto::Sealer`], bound to the job id). The
//! store indexes a keyed digest of the idempotency key instead of the key, and the request hash is keyed too, so
//! that a reader of the store cannot test guesses of a filter value against it.
//!
//! The runner opens the literals to run the job; a view of the job (`get_job`, `list_jobs`, `wait`, `cancel`)
//! opens them only for a caller who could have made the request: the permission of the job's kind on its study
//! (an identifiable job's whole request already needs `data:identifiable`, see `download`). Everyone else sees
//! the markers, and no idempotency key. Jobs stored before this sealing keep their plain request and key.

use super::Inner;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::job::Job;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What replaces a literal in the request the store keeps.
pub(super) const MARKER: &str = "request_literal";

/// The purpose of the keyed digest of an idempotency key.
const IDEMPOTENCY: &str = "idempotency_key";

/// The sealed content of [`Job::literals`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Literals {
    /// The filter values, in the order [`visit`] meets them.
    values: Vec<Value>,
    /// The idempotency key, if the request had one.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Calls `f` on every filter value of `request` that is not null, in a fixed order (members in the map's order,
/// arrays in theirs).
fn visit(request: &mut Value, f: &mut dyn FnMut(&mut Value) -> Result<()>) -> Result<()> {
    match request {
        Value::Object(map) => {
            for (name, member) in map.iter_mut() {
                match member {
                    Value::Array(filters) if name == "filters" => {
                        for filter in filters.iter_mut() {
                            if let Some(value) = filter.get_mut("value").filter(|v| !v.is_null()) {
                                f(value)?;
                            }
                        }
                    }
                    other => visit(other, f)?,
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                visit(item, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The keyed digest the store indexes for an idempotency key.
pub(super) fn idempotency_digest(inner: &Inner, key: &str) -> String {
    inner.sealer.digest(IDEMPOTENCY, key.as_bytes())
}

/// The keyed hash of a canonical request (tells a repeated request from a different one under one key).
pub(super) fn request_hash(inner: &Inner, canonical: &str) -> String {
    inner.sealer.digest("request", canonical.as_bytes())
}

/// Moves the literals of `job` (whose `request` and `idempotency_key` are as given) into [`Job::literals`]: the
/// request keeps markers, the idempotency key becomes its digest.
///
/// # Errors
/// EXP005 when sealing fails.
pub(super) fn seal(inner: &Inner, job: &mut Job) -> Result<()> {
    let mut values = Vec::new();
    if let Some(o) = job.request.as_object_mut() {
        o.remove("idempotency_key");
    }
    visit(&mut job.request, &mut |v| {
        values.push(std::mem::replace(v, json!({"withheld": MARKER})));
        Ok(())
    })?;
    let idempotency_key = job.idempotency_key.take();
    job.idempotency_key = idempotency_key
        .as_deref()
        .map(|k| idempotency_digest(inner, k));
    if values.is_empty() && idempotency_key.is_none() {
        return Ok(());
    }
    let text = serde_json::to_vec(&Literals {
        values,
        idempotency_key,
    })
    .map_err(|_| {
        Error::server(
            Reason::EncodeFailed,
            "the request's literals cannot be encoded",
        )
    })?;
    job.literals = Some(inner.sealer.seal(job.id.as_bytes(), &text)?);
    Ok(())
}

/// EXP005 `corrupt_job`: the sealed literals do not fit the stored request.
fn corrupt() -> Error {
    Error::server(
        Reason::CorruptJob,
        "the stored request of the job and its sealed literals do not match",
    )
    .with_field("job")
}

/// The request of `job` as it was given, and its idempotency key, with the sealed literals put back. A job
/// without sealed literals (stored before them, or with none) is returned as stored.
///
/// # Errors
/// EXP005 `integrity_violation` for literals that do not open, `corrupt_job` for ones that do not fit.
pub(super) fn open(inner: &Inner, job: &Job) -> Result<(Value, Option<String>)> {
    let Some(sealed) = &job.literals else {
        return Ok((job.request.clone(), job.idempotency_key.clone()));
    };
    let text = inner.sealer.open(job.id.as_bytes(), sealed)?;
    let literals: Literals = serde_json::from_slice(&text).map_err(|_| corrupt())?;
    let mut values = literals.values.into_iter();
    let mut request = job.request.clone();
    visit(&mut request, &mut |slot| {
        if slot != &json!({"withheld": MARKER}) {
            return Err(corrupt());
        }
        *slot = values.next().ok_or_else(corrupt)?;
        Ok(())
    })?;
    if values.next().is_some() {
        return Err(corrupt());
    }
    if let (Some(key), Some(o)) = (&literals.idempotency_key, request.as_object_mut()) {
        o.insert("idempotency_key".into(), json!(key));
    }
    Ok((request, literals.idempotency_key))
}

/// `job` as its requester sees it: the literals put back in its request and idempotency key, none left sealed.
///
/// # Errors
/// As [`open`].
pub(super) fn reveal(inner: &Inner, job: &mut Job) -> Result<()> {
    if job.literals.is_some() {
        let (request, key) = open(inner, job)?;
        job.request = request;
        job.idempotency_key = key;
        job.literals = None;
    }
    Ok(())
}

/// `job` as someone who may not see its literals sees it: the markers stay, no idempotency key, nothing sealed.
/// Returns whether it withheld anything.
pub(super) fn conceal(job: &mut Job) -> bool {
    let had = job.literals.take().is_some();
    if had {
        job.idempotency_key = None;
    }
    had
}
