//! The batch transformer: a job's [`Deidentifier`] and the [`DatasetDeid`] it makes for each dataset.
//!
//! Memory: nothing is buffered but one batch at a time and, for the whole job, one entry per distinct subject id
//! (its surrogate code, pseudonym or date offset), so memory grows with subjects, never with rows.

use super::{Action, DeidKey, Kind, Plan, Policy, Profile, Zip3List};
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::meta::{ColumnMeta, DatasetMeta};
use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, StringArray, StringBuilder,
};
use arrow::compute::kernels::temporal::{date_part, DatePart};
use arrow::compute::{cast, cast_with_options, CastOptions};
use arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The prefix of Safe Harbor surrogate codes (`SH` + 10 digits).
pub const SURROGATE_PREFIX: &str = "SH";
/// The prefix of pseudonyms (`PS` + 32 hexadecimal digits).
pub const PSEUDONYM_PREFIX: &str = "PS";
/// The largest date shift, in days, either way.
pub const MAX_SHIFT_DAYS: i32 = 365;

const SURROGATE_SPACE: u64 = 10_000_000_000;
const SURROGATE_LEN: u32 = 12;
const PSEUDONYM_LEN: u32 = 34;

/// What a job learned about its subjects: the only state that outlives a batch.
#[derive(Default)]
struct State {
    surrogates: HashMap<String, String>,
    used: HashSet<u64>,
    pseudonyms: HashMap<String, String>,
    offsets: HashMap<String, i32>,
}

struct Shared {
    policy: Policy,
    study: String,
    reference_year: i32,
    zip3: Option<Zip3List>,
    pseudonym_key: Option<hmac::Key>,
    shift_key: Option<hmac::Key>,
    key_id: Option<String>,
    rng: SystemRandom,
    state: Mutex<State>,
    /// The plan of each dataset, in the order first seen (a dataset encoded twice, e.g. checked then written,
    /// keeps one entry).
    plans: Mutex<Vec<Plan>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One job's de-identification: the policy, the keys and the per-subject state that all datasets of the job share,
/// so that a subject gets one surrogate code, pseudonym and date offset throughout the export.
pub struct Deidentifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Deidentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deidentifier")
            .field("policy", &self.shared.policy)
            .field("key_id", &self.shared.key_id)
            .finish_non_exhaustive()
    }
}

/// The bytes a subject's pseudonym and date offset are computed from: the study and the subject id, each
/// preceded by its length as a 4-byte big-endian integer.
fn subject_message(study: &str, id: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + study.len() + id.len());
    for part in [study, id] {
        m.extend_from_slice(&(part.len() as u32).to_be_bytes());
        m.extend_from_slice(part.as_bytes());
    }
    m
}

pub(crate) fn pseudonym(key: &hmac::Key, study: &str, id: &str) -> String {
    let tag = hmac::sign(key, &subject_message(study, id));
    format!("{PSEUDONYM_PREFIX}{}", hex(&tag.as_ref()[..16]))
}

pub(crate) fn offset(key: &hmac::Key, study: &str, id: &str) -> i32 {
    let tag = hmac::sign(key, &subject_message(study, id));
    let mut b = [0u8; 8];
    b.copy_from_slice(&tag.as_ref()[..8]);
    let span = 2 * MAX_SHIFT_DAYS as u64;
    let i = (u64::from_be_bytes(b) % span) as i32;
    if i < MAX_SHIFT_DAYS {
        -(i + 1)
    } else {
        i - (MAX_SHIFT_DAYS - 1)
    }
}

fn internal(message: &str) -> Error {
    Error::server(Reason::DeidError, message.to_string())
}

impl Deidentifier {
    /// A job's de-identifier for `study`. `reference` is the export's date (the job's creation time): Safe
    /// Harbor suppresses birth years that imply an age of 90 or more at it.
    ///
    /// # Errors
    /// EXP005 `key_unavailable` when a profile needs the key and there is none; EXP005 `invalid_zip3_list`.
    pub fn new(
        policy: Policy,
        key: Option<&DeidKey>,
        study: &str,
        reference: DateTime<Utc>,
    ) -> Result<Self> {
        let key = if policy.needs_key() {
            Some(key.ok_or_else(|| {
                Error::server(
                    Reason::KeyUnavailable,
                    "pseudonymize and date-shift need a de-identification key, and this engine has none",
                )
                .with_field("deidentify")
            })?)
        } else {
            None
        };
        let zip3 = if policy.has(Profile::SafeHarbor) {
            Some(Zip3List::builtin()?)
        } else {
            None
        };
        let pseudonym_key = key
            .filter(|_| policy.has(Profile::Pseudonymize))
            .map(|k| k.subkey("pseudonym"));
        let shift_key = key
            .filter(|_| policy.has(Profile::DateShift))
            .map(|k| k.subkey("date-shift"));
        Ok(Deidentifier {
            shared: Arc::new(Shared {
                key_id: key.map(|k| k.id().to_string()),
                policy,
                study: study.to_string(),
                reference_year: reference.year(),
                zip3,
                pseudonym_key,
                shift_key,
                rng: SystemRandom::new(),
                state: Mutex::new(State::default()),
                plans: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The id of the key the profiles use, if they use one.
    pub fn key_id(&self) -> Option<&str> {
        self.shared.key_id.as_deref()
    }

    /// Prepares one dataset: plans its columns, refuses identifying data the request did not allow, and gives
    /// the output schema and metadata.
    ///
    /// # Errors
    /// The errors of [`Policy::plan`] and [`Policy::check_identifiable`]; EXP002 when the metadata cannot be
    /// applied.
    pub fn dataset(
        &self,
        name: &str,
        schema: &SchemaRef,
        meta: &DatasetMeta,
    ) -> Result<DatasetDeid> {
        let policy = &self.shared.policy;
        let plan = policy.plan(name, schema, meta)?;
        policy.check_identifiable(std::slice::from_ref(&plan))?;
        {
            let mut plans = self.shared.plans.lock().unwrap_or_else(|p| p.into_inner());
            match plans.iter_mut().find(|p| p.dataset == plan.dataset) {
                Some(p) => *p = plan.clone(),
                None => plans.push(plan.clone()),
            }
        }
        if plan.columns.iter().all(|c| c.action == Action::Keep) {
            return Ok(DatasetDeid {
                shared: self.shared.clone(),
                plan,
                schema: schema.clone(),
                meta: meta.clone(),
                identity: true,
            });
        }
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (field, c) in schema.fields().iter().zip(&plan.columns) {
            if let Action::Drop(_) = c.action {
                continue;
            }
            let mut cm = meta.column(&c.name).cloned().unwrap_or_else(|| ColumnMeta {
                name: c.name.clone(),
                ..ColumnMeta::default()
            });
            let ty = output_type(c.action, c.kind, field.data_type());
            let changed = match c.action {
                Action::Keep => false,
                Action::Shift => ty != *field.data_type(),
                _ => true,
            };
            let out = if changed {
                restate(&mut cm, c.action, &ty);
                let md = field
                    .metadata()
                    .iter()
                    .filter(|(k, _)| !k.starts_with("trialport."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Field::new(c.name.clone(), ty, true).with_metadata(md)
            } else {
                field
                    .as_ref()
                    .clone()
                    .with_nullable(field.is_nullable() || c.action != Action::Keep)
            };
            fields.push(out);
            columns.push(cm);
        }
        let out_meta = DatasetMeta {
            columns,
            ..meta.clone()
        };
        let bare = Schema::new_with_metadata(fields, schema.metadata().clone());
        let out_schema = out_meta.apply_to(&bare)?;
        Ok(DatasetDeid {
            shared: self.shared.clone(),
            plan,
            schema: out_schema,
            meta: out_meta,
            identity: false,
        })
    }

    /// What the job did, for the manifest (`deidentification`) and the audit trail: the policy, the versions of
    /// the data and the key id used (never key material), and per dataset what happened to each column.
    pub fn describe(&self) -> Value {
        let s = &self.shared;
        let mut v = s.policy.describe(s.key_id.as_deref());
        if let Some(z) = &s.zip3 {
            v["restricted_zip3"] =
                json!({"version": z.version(), "census": z.census(), "source": z.source()});
            v["reference_year"] = json!(s.reference_year);
            v["surrogate"] = json!({"form": "SH + 10 random digits",
                "derived_from_identifier": false, "scope": "export", "stored": false});
        }
        if s.pseudonym_key.is_some() {
            v["pseudonym"] = json!({"algorithm": "HMAC-SHA256", "bits": 128, "form": "PS + 32 hex digits", "scope": "study"});
        }
        if s.shift_key.is_some() {
            v["date_shift"] = json!({"algorithm": "HMAC-SHA256", "min_days": -MAX_SHIFT_DAYS,
                "max_days": MAX_SHIFT_DAYS, "zero": false, "keyed_on": "study and subject id"});
        }
        let plans = s.plans.lock().unwrap_or_else(|p| p.into_inner());
        v["datasets"] = Value::Array(plans.iter().map(Plan::describe).collect());
        v
    }
}

/// The Arrow type a column has after its action.
fn output_type(action: Action, kind: Kind, input: &DataType) -> DataType {
    match action {
        Action::Keep | Action::Drop(_) => input.clone(),
        Action::Surrogate | Action::Pseudonym | Action::AgeCap | Action::Zip3 => DataType::Utf8,
        Action::Year { .. } if kind == Kind::Text => DataType::Utf8,
        Action::Year { .. } => DataType::Int32,
        Action::Shift => match kind {
            Kind::Text => DataType::Utf8,
            Kind::SasDays | Kind::SasSeconds => DataType::Float64,
            _ => input.clone(),
        },
    }
}

/// Updates a column's metadata for its new values: type, length and display format.
fn restate(cm: &mut ColumnMeta, action: Action, ty: &DataType) {
    if action == Action::Shift {
        return;
    }
    let text = *ty == DataType::Utf8;
    cm.data_type = Some(if text { "string" } else { "integer" }.to_string());
    cm.target_data_type = None;
    cm.display_format = None;
    cm.length = match action {
        Action::Surrogate => Some(SURROGATE_LEN),
        Action::Pseudonym => Some(PSEUDONYM_LEN),
        Action::Zip3 => Some(3),
        Action::Year { .. } if text => Some(4),
        _ => None,
    };
}

/// The de-identification of one dataset: its output schema and metadata, and the transform of its batches.
pub struct DatasetDeid {
    shared: Arc<Shared>,
    plan: Plan,
    schema: SchemaRef,
    meta: DatasetMeta,
    identity: bool,
}

impl std::fmt::Debug for DatasetDeid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetDeid")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// A per-row lookup that reuses the last answer for a run of equal values (data is usually sorted by subject).
fn per_subject<T>(
    ids: &StringArray,
    mut compute: impl FnMut(&str) -> Result<T>,
    mut emit: impl FnMut(Option<&T>),
) -> Result<()> {
    let mut last: Option<(&str, T)> = None;
    for id in ids.iter() {
        let Some(id) = id else {
            emit(None);
            continue;
        };
        match &last {
            Some((prev, v)) if *prev == id => emit(Some(v)),
            _ => {
                let v = compute(id)?;
                emit(Some(&v));
                last = Some((id, v));
            }
        }
    }
    Ok(())
}

impl DatasetDeid {
    /// The output schema (with the output metadata in it).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The output metadata.
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether batches pass unchanged.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// De-identifies one batch of the dataset's input schema.
    ///
    /// # Errors
    /// EXP005 `deid_error` for a batch that does not have the planned columns or a failing random generator.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.identity {
            return Ok(batch.clone());
        }
        if batch.num_columns() != self.plan.columns.len() {
            return Err(internal("a batch does not have the dataset's columns"));
        }
        let offsets = match self.plan.subject {
            Some((i, kind)) if self.plan.columns.iter().any(|c| c.action.shifts()) => {
                Some(self.offsets(batch.column(i), kind)?)
            }
            _ => None,
        };
        let offsets = offsets.as_deref();
        let mut out = Vec::with_capacity(self.schema.fields().len());
        for (a, c) in batch.columns().iter().zip(&self.plan.columns) {
            let birth_limit = self.shared.reference_year - 90;
            out.push(match c.action {
                Action::Keep => a.clone(),
                Action::Drop(_) => continue,
                Action::Surrogate => self.codes(a, c.kind, true)?,
                Action::Pseudonym => self.codes(a, c.kind, false)?,
                Action::Shift => shift(a, c.kind, offsets.unwrap_or_default())?,
                Action::Year { shift, birth } => year(
                    a,
                    c.kind,
                    if shift { offsets } else { None },
                    birth.then_some(birth_limit),
                )?,
                Action::AgeCap => age(a, c.kind)?,
                Action::Zip3 => match &self.shared.zip3 {
                    Some(z) => zip(a, c.kind, z)?,
                    None => return Err(internal("no ZIP list")),
                },
            });
        }
        RecordBatch::try_new(self.schema.clone(), out)
            .map_err(|_| internal("a de-identified batch does not fit the output schema"))
    }

    fn offsets(&self, ids: &ArrayRef, kind: Kind) -> Result<Vec<Option<i32>>> {
        let key = self
            .shared
            .shift_key
            .as_ref()
            .ok_or_else(|| internal("no date-shift key"))?;
        let ids = texts(ids, kind)?;
        let study = &self.shared.study;
        let mut state = self.shared.state();
        let mut out = Vec::with_capacity(ids.len());
        per_subject(
            &ids,
            |id| {
                Ok(match state.offsets.get(id) {
                    Some(o) => *o,
                    None => {
                        let o = offset(key, study, id);
                        state.offsets.insert(id.to_string(), o);
                        o
                    }
                })
            },
            |o| out.push(o.copied()),
        )?;
        Ok(out)
    }

    /// Surrogate codes (`surrogate`) or pseudonyms of a subject id column.
    fn codes(&self, ids: &ArrayRef, kind: Kind, surrogate: bool) -> Result<ArrayRef> {
        let ids = texts(ids, kind)?;
        let shared = &self.shared;
        let mut state = shared.state();
        let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * PSEUDONYM_LEN as usize);
        let emit = |c: Option<&String>| out.append_option(c);
        if surrogate {
            per_subject(
                &ids,
                |id| {
                    if let Some(c) = state.surrogates.get(id) {
                        return Ok(c.clone());
                    }
                    loop {
                        let mut b = [0u8; 8];
                        shared.rng.fill(&mut b).map_err(|_| {
                            Error::server(Reason::RngFailed, "the system random generator failed")
                        })?;
                        let n = u64::from_be_bytes(b) % SURROGATE_SPACE;
                        let code = format!("{SURROGATE_PREFIX}{n:010}");
                        if code != id && state.used.insert(n) {
                            state.surrogates.insert(id.to_string(), code.clone());
                            return Ok(code);
                        }
                    }
                },
                emit,
            )?;
        } else {
            let key = shared
                .pseudonym_key
                .as_ref()
                .ok_or_else(|| internal("no pseudonym key"))?;
            per_subject(
                &ids,
                |id| {
                    Ok(match state.pseudonyms.get(id) {
                        Some(p) => p.clone(),
                        None => {
                            let p = pseudonym(key, &shared.study, id);
                            state.pseudonyms.insert(id.to_string(), p.clone());
                            p
                        }
                    })
                },
                emit,
            )?;
        }
        Ok(Arc::new(out.finish()))
    }
}

fn cast_error(_: arrow::error::ArrowError) -> Error {
    internal("a column cannot be read for de-identification")
}

/// A column as text: strings as they are, integers in decimal, floats in their shortest form (`101` for
/// `101.0`), so that the same subject id stored as text or as a number gives the same text.
fn texts(a: &ArrayRef, kind: Kind) -> Result<StringArray> {
    if kind == Kind::Float {
        let f = cast(a, &DataType::Float64).map_err(cast_error)?;
        let f = f
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| internal("not a float column"))?;
        return Ok(f
            .iter()
            .map(|v| v.filter(|v| v.is_finite()).map(|v| format!("{v}")))
            .collect());
    }
    let s = cast(a, &DataType::Utf8).map_err(cast_error)?;
    s.as_string_opt::<i32>()
        .cloned()
        .ok_or_else(|| internal("not a text column"))
}

fn floats(a: &ArrayRef) -> Result<Float64Array> {
    let f = cast(a, &DataType::Float64).map_err(cast_error)?;
    f.as_primitive_opt::<Float64Type>()
        .cloned()
        .ok_or_else(|| internal("not a numeric column"))
}

/// `YYYY-MM-DD` exactly, as a date.
fn ymd(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// The year of an ISO 8601 date or date-time as SDTM writes them: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, a date with
/// a time after `T`, or a partial date with missing parts as `-` (`YYYY---DD`). `None` for anything else.
pub(crate) fn text_year(s: &str) -> Option<i32> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let year = s.get(..4)?.parse::<i32>().ok()?;
    let rest = &b[4..];
    let valid = match rest {
        [] => true,
        [b'-', b'-', ..] => true,
        [b'-', m1, m2] => {
            m1.is_ascii_digit()
                && m2.is_ascii_digit()
                && (1..=12).contains(&((m1 - b'0') * 10 + (m2 - b'0')))
        }
        [b'-', _, _, b'-', b'-', ..] => {
            let m = &rest[1..3];
            m.iter().all(u8::is_ascii_digit)
                && (1..=12).contains(&((m[0] - b'0') * 10 + (m[1] - b'0')))
        }
        _ => b.len() >= 10 && ymd(s.get(..10)?).is_some() && (b.len() == 10 || b[10] == b'T'),
    };
    valid.then_some(year)
}

/// An ISO 8601 date (`YYYY-MM-DD`, optionally followed by `T` and a time, which is kept) moved by `days`.
#[cfg(test)]
pub(crate) fn shift_text(s: &str, days: i32) -> Option<String> {
    let mut out = String::new();
    shift_text_into(s, days, &mut out).then_some(out)
}

/// [`shift_text`] into `out` (cleared first); `false` when the text cannot be shifted.
fn shift_text_into(s: &str, days: i32, out: &mut String) -> bool {
    use std::fmt::Write;
    out.clear();
    let s = s.trim();
    let (Some(date), Some(rest)) = (s.get(..10), s.get(10..)) else {
        return false;
    };
    if !(rest.is_empty() || rest.starts_with('T')) {
        return false;
    }
    let Some(d) =
        ymd(date).and_then(|d| d.checked_add_signed(chrono::Duration::days(i64::from(days))))
    else {
        return false;
    };
    if !(0..=9999).contains(&d.year()) {
        return false;
    }
    write!(out, "{:04}-{:02}-{:02}{rest}", d.year(), d.month(), d.day()).is_ok()
}

/// The year of a SAS date (days since 1960-01-01).
fn sas_year(days: f64) -> Option<i32> {
    if !days.is_finite() || days.abs() > 4.0e6 {
        return None;
    }
    let d = NaiveDate::from_ymd_opt(1960, 1, 1)?
        .checked_add_signed(chrono::Duration::days(days.floor() as i64))?;
    Some(d.year())
}

fn per_day(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 86_400,
        TimeUnit::Millisecond => 86_400_000,
        TimeUnit::Microsecond => 86_400_000_000,
        TimeUnit::Nanosecond => 86_400_000_000_000,
    }
}

/// Dates moved by each row's offset; rows without an offset (no subject id) become null.
fn shift(a: &ArrayRef, kind: Kind, offsets: &[Option<i32>]) -> Result<ArrayRef> {
    let off = |i: usize| offsets.get(i).copied().flatten();
    Ok(match kind {
        Kind::Text => {
            let s = texts(a, Kind::Text)?;
            let mut out = StringBuilder::with_capacity(s.len(), s.value_data().len());
            let mut buf = String::new();
            for (i, v) in s.iter().enumerate() {
                match (v, off(i)) {
                    (Some(v), Some(o)) if shift_text_into(v, o, &mut buf) => out.append_value(&buf),
                    _ => out.append_null(),
                }
            }
            Arc::new(out.finish())
        }
        Kind::SasDays | Kind::SasSeconds => {
            let unit = if kind == Kind::SasDays { 1.0 } else { 86_400.0 };
            let f = floats(a)?;
            Arc::new(
                f.iter()
                    .enumerate()
                    .map(|(i, v)| Some(v? + f64::from(off(i)?) * unit))
                    .collect::<Float64Array>(),
            )
        }
        Kind::Temporal => match a.data_type() {
            DataType::Date32 => {
                let d = a
                    .as_primitive_opt::<Date32Type>()
                    .ok_or_else(|| internal("not a date column"))?;
                let shifted: Int32Array = d
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v?.checked_add(off(i)?))
                    .collect();
                cast(&shifted, &DataType::Date32).map_err(cast_error)?
            }
            t @ (DataType::Date64 | DataType::Timestamp(_, _)) => {
                let step = match t {
                    DataType::Timestamp(unit, _) => per_day(unit),
                    _ => 86_400_000,
                };
                let ints = cast(a, &DataType::Int64).map_err(cast_error)?;
                let ints = ints
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| internal("not a date column"))?;
                let shifted: Int64Array = ints
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v?.checked_add(i64::from(off(i)?).checked_mul(step)?))
                    .collect();
                cast(&shifted, t).map_err(cast_error)?
            }
            _ => return Err(internal("not a date column")),
        },
        _ => return Err(internal("not a date column")),
    })
}

/// Dates reduced to their year (after the shift when `offsets` is given); with `birth_limit`, years at or before
/// it (an age of 90 or more at the export's date) become null.
fn year(
    a: &ArrayRef,
    kind: Kind,
    offsets: Option<&[Option<i32>]>,
    birth_limit: Option<i32>,
) -> Result<ArrayRef> {
    let shifted;
    let a = match offsets {
        Some(o) => {
            shifted = shift(a, kind, o)?;
            &shifted
        }
        None => a,
    };
    let keep = |y: i32| birth_limit.is_none_or(|limit| y > limit);
    Ok(match kind {
        Kind::Text => {
            use std::fmt::Write;
            let s = texts(a, Kind::Text)?;
            let mut out = StringBuilder::with_capacity(s.len(), s.len() * 4);
            let mut buf = String::with_capacity(4);
            for v in s.iter() {
                match v.and_then(text_year).filter(|y| keep(*y)) {
                    Some(y) => {
                        buf.clear();
                        let _ = write!(buf, "{y:04}");
                        out.append_value(&buf);
                    }
                    None => out.append_null(),
                }
            }
            Arc::new(out.finish())
        }
        Kind::SasDays | Kind::SasSeconds => {
            let unit = if kind == Kind::SasDays { 1.0 } else { 86_400.0 };
            let f = floats(a)?;
            Arc::new(
                f.iter()
                    .map(|v| sas_year(v? / unit).filter(|y| keep(*y)))
                    .collect::<Int32Array>(),
            )
        }
        Kind::Temporal => {
            let years = date_part(a.as_ref(), DatePart::Year).map_err(cast_error)?;
            let years = years
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(|| internal("not a year column"))?;
            Arc::new(
                years
                    .iter()
                    .map(|y| y.filter(|y| keep(*y)))
                    .collect::<Int32Array>(),
            )
        }
        _ => return Err(internal("not a date column")),
    })
}

/// Ages as text, `90+` from 90 on; text that is not a number becomes null.
fn age(a: &ArrayRef, kind: Kind) -> Result<ArrayRef> {
    const CAP: &str = "90+";
    Ok(Arc::new(match kind {
        Kind::Integer => {
            let opts = CastOptions {
                safe: true,
                ..CastOptions::default()
            };
            let ints = cast_with_options(a, &DataType::Int64, &opts).map_err(cast_error)?;
            let ints = ints
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| internal("not an integer column"))?;
            ints.iter()
                .map(|v| {
                    v.map(|v| {
                        if v >= 90 {
                            CAP.to_string()
                        } else {
                            v.to_string()
                        }
                    })
                })
                .collect::<StringArray>()
        }
        Kind::Float => floats(a)?
            .iter()
            .map(|v| {
                v.filter(|v| v.is_finite()).map(|v| {
                    if v >= 90.0 {
                        CAP.to_string()
                    } else {
                        format!("{v}")
                    }
                })
            })
            .collect::<StringArray>(),
        _ => texts(a, Kind::Text)?
            .iter()
            .map(|v| {
                let t = v?.trim();
                let n = t.parse::<f64>().ok().filter(|n| n.is_finite())?;
                Some(if n >= 90.0 {
                    CAP.to_string()
                } else {
                    t.to_string()
                })
            })
            .collect::<StringArray>(),
    }))
}

/// ZIP codes to their Safe Harbor form; anything that is not a US ZIP code becomes null.
fn zip(a: &ArrayRef, kind: Kind, list: &Zip3List) -> Result<ArrayRef> {
    Ok(Arc::new(match kind {
        Kind::Integer | Kind::Float => floats(a)?
            .iter()
            .map(|v| {
                let v = v.filter(|v| v.is_finite() && v.fract() == 0.0 && v.abs() < 1e12)?;
                list.generalize_number(v as i128)
            })
            .collect::<StringArray>(),
        _ => texts(a, Kind::Text)?
            .iter()
            .map(|v| list.generalize(v?))
            .collect::<StringArray>(),
    }))
}
