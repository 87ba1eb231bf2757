//! The export pipeline: one path for the four export operations (`export_data`, `bulk_export`, `export_report`,
//! `export_dashboard`), whatever surface asked (Rust, CLI, Python, C, HTTP).
//!
//! 1. **Who may ask**: the permission of the kind of export on the request's study; `data:identifiable` when the
//!    request asks for identifiable data.
//! 2. **What is asked**: the study name, the format (its capability for the kind, its options), the content (the
//!    dataset selections, the package, the report or dashboard spec), every dataset, column and filter checked
//!    against the source before a job exists.
//! 3. **Privacy**: one rule ([`crate::deid::PrivacyCheck`]) over every use of a column, whatever the kind: written
//!    out, filtered on, sorted by, grouped by, aggregated. The job records whether it is identifiable.
//! 4. **E-signature**: required for critical exports (an eCTD package, identifiable data) and re-authenticated.
//! 5. **The job**: idempotency, the queued job stored, the call's audit event (written by [`Session::call`]
//!    before any worker may start the job), the workers woken.

use super::call::{Call, Done};
use super::signing::Critical;
use super::{compute, package, Inner, Session};
use crate::access::{authorize, Permission};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::format::{Capability, Format, FormatOptions};
use crate::job::{Job, JobKind, JobState, Progress};
use crate::request::{
    DatasetSelection, ExportContent, ExportRequest, PackageContainer, PackageKind,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The operation (and audit action) of each kind of export.
pub(crate) fn action_of(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Data => "export_data",
        JobKind::Bulk => "bulk_export",
        JobKind::Report => "export_report",
        JobKind::Dashboard => "export_dashboard",
    }
}

impl Session<'_> {
    /// Submits an export of any kind (see the module docs) and returns its job, `queued` (or the existing job of
    /// a repeated idempotency key). Audited as the operation of its kind (`export_data`, ...).
    ///
    /// # Errors
    /// EXP003 unauthorized, `identifiable_data` for a use of a classed column the caller may not make (see
    /// [`crate::deid::PrivacyCheck`]), or for the e-signature `signature_required`, `signature_invalid`,
    /// `signing_locked` or `signing_not_enrolled`; EXP002 for a bad request (no datasets, a name twice, a format without the kind's
    /// capability, a bad option, column, filter or spec), with field `deidentify` for a bad de-identification
    /// policy and `identifiable_data` for identifying columns without `identifiable` (see [`crate::deid`]),
    /// `ectd_requires_xpt_v5`, `ectd_requires_define` or `unsupported_container` for a package the request or the
    /// engine cannot make; EXP001 for an unknown format, study or dataset; EXP004 for an idempotency key reused
    /// with another request; EXP005 for store or audit failures, `key_unavailable` for pseudonyms or date shifts
    /// without a key.
    pub fn export(&self, request: ExportRequest) -> Result<Job> {
        self.export_as(request.kind(), request)
    }

    /// [`Session::export`] of a request of `kind` given as its JSON text ([`ExportRequest::from_json`]): the way in
    /// of the bindings and the HTTP service. A request that cannot be read is refused (EXP002 `invalid_request`)
    /// inside the audited call, after the credential is checked.
    ///
    /// # Errors
    /// As [`Session::export`].
    pub fn export_json(&self, kind: JobKind, json: &str) -> Result<Job> {
        match ExportRequest::from_json(kind, json) {
            Ok(request) => self.export_as(kind, request),
            Err(e) => self.call(action_of(kind), "request".to_string(), |_| Err(e)),
        }
    }

    /// [`Session::export`] as the operation of `kind`: a request of another kind is EXP002 `wrong_kind`.
    pub(super) fn export_as(&self, kind: JobKind, request: ExportRequest) -> Result<Job> {
        let job = self.call(
            action_of(kind),
            format!("study:{}", request.study),
            |call| {
                if request.kind() != kind {
                    return Err(Error::validation(
                        Reason::WrongKind,
                        format!(
                            "a {} request cannot be submitted as {}",
                            request.kind().as_str(),
                            action_of(kind)
                        ),
                    ));
                }
                submit(self.inner, call, request)
            },
        )?;
        self.remember([&job]);
        Ok(job)
    }
}

/// The pipeline (see the module docs).
fn submit(inner: &Inner, call: &Call<'_>, mut request: ExportRequest) -> Result<Done<Job>> {
    let p = call.principal();
    let kind = request.kind();
    let study = request.study.clone();
    // 1. Who may ask.
    authorize(p, kind.permission(), &p.org, Some(&study))?;
    if request.identifiable {
        authorize(p, Permission::IdentifiableData, &p.org, Some(&study))?;
    }
    crate::name::validate_name(&study, "study")?;
    // The study is the caller's organization's (one resolution for every operation, see `Inner::resolve_study`).
    inner.resolve_study(&p.org, &study)?;
    // 2. What is asked.
    let format = inner.formats.get(&request.format)?.clone();
    // A metadata format (Define-XML) describes the datasets of a data export instead of holding their values.
    let describes = kind == JobKind::Data && format.info().can(Capability::Describe);
    match &mut request.content {
        ExportContent::Data { datasets } => {
            let needed = if describes {
                Capability::Describe
            } else {
                Capability::Data
            };
            check_format(format.as_ref(), needed, &request.options)?;
            check_selections(inner, &study, datasets)?;
        }
        ExportContent::Bulk {
            datasets,
            package,
            container,
            ..
        } => {
            check_package(
                inner,
                *package,
                *container,
                &request.format,
                &request.options,
            )?;
            check_format(format.as_ref(), Capability::Data, &request.options)?;
            if datasets.is_empty() {
                *datasets = inner
                    .dataset_names(&study)?
                    .into_iter()
                    .map(DatasetSelection::Name)
                    .collect();
            }
            check_selections(inner, &study, datasets)?;
        }
        ExportContent::Report(spec) => {
            check_spec_study(&spec.study, &study)?;
            check_format(format.as_ref(), Capability::Report, &request.options)?;
            compute::check_report(inner, spec)?;
        }
        ExportContent::Dashboard(spec) => {
            check_spec_study(&spec.study, &study)?;
            check_format(format.as_ref(), Capability::Dashboard, &request.options)?;
            compute::check_dashboard(inner, spec)?;
        }
    }
    // 3. Privacy: one rule for every kind and every use of a column.
    let may_identify = authorize(p, Permission::IdentifiableData, &p.org, Some(&study)).is_ok();
    let privacy = check_privacy(inner, &request, describes, may_identify)?;
    if !describes {
        check_encodings(inner, &request, format.as_ref(), call.at)?;
    }
    // 4. E-signature.
    let critical = match &request.content {
        ExportContent::Bulk {
            package: PackageKind::Ectd,
            ..
        } => Some(Critical::EctdPackage),
        _ => request.identifiable.then_some(Critical::IdentifiableData),
    };
    let signed =
        super::signing::check_signature(inner, call, request.signature.as_ref(), critical)?;
    // 5. The job.
    let mut extra = serde_json::Map::new();
    if let Some(d) = privacy.deidentification {
        extra.insert("deidentification".into(), d);
    }
    let mut signer = None;
    if let Some((s, verified)) = signed {
        extra.insert("signature".into(), s);
        signer = Some(verified);
    }
    if privacy.identifiable {
        extra.insert("identifiable".into(), Value::Bool(true));
    }
    enqueue(
        inner,
        call,
        &request,
        privacy.identifiable,
        extra,
        signer.as_ref(),
    )
}

/// EXP002 `study_mismatch` when a report's or dashboard's spec names another study than its request.
fn check_spec_study(spec: &str, request: &str) -> Result<()> {
    if spec == request {
        return Ok(());
    }
    Err(Error::validation(
        Reason::StudyMismatch,
        "the request names another study than its spec",
    )
    .with_field("study"))
}

/// Checks that `format` has `capability` and takes `options`.
fn check_format(
    format: &dyn Format,
    capability: Capability,
    options: &FormatOptions,
) -> Result<()> {
    let info = format.info();
    if !info.can(capability) {
        return Err(Error::validation(
            Reason::UnsupportedByFormat,
            format!("format '{}' cannot be used for this export", info.id),
        )
        .with_field("format"));
    }
    format.check_options(options)
}

/// Checks what a package kind requires of the request and the engine.
fn check_package(
    inner: &Inner,
    package: PackageKind,
    container: PackageContainer,
    format: &str,
    options: &FormatOptions,
) -> Result<()> {
    match package {
        PackageKind::Zip => {
            if container != PackageContainer::Zip {
                return Err(Error::validation(
                    Reason::UnsupportedContainer,
                    "a zip package is a zip: the directory container is for eCTD packages",
                )
                .with_field("container"));
            }
        }
        PackageKind::Ectd => {
            let version = options.get("version").unwrap_or("5");
            if format != package::ECTD_DATA_FORMAT || version != "5" {
                return Err(Error::validation(
                    Reason::EctdRequiresXptV5,
                    "an eCTD package holds SAS XPORT version 5 files: use format 'xpt' without version 8",
                )
                .with_field("format"));
            }
            let define = inner
                .formats
                .get(package::ECTD_DEFINE_FORMAT)
                .map_err(|_| {
                    Error::validation(
                        Reason::EctdRequiresDefine,
                        "an eCTD package needs the 'define-xml' format, which this engine lacks",
                    )
                    .with_field("package")
                })?;
            if !define.info().can(Capability::Describe) {
                return Err(Error::validation(
                    Reason::EctdRequiresDefine,
                    "the engine's 'define-xml' format cannot describe datasets",
                )
                .with_field("package"));
            }
        }
    }
    Ok(())
}

/// Checks the dataset selections: at least one, no name twice, and each dataset, column and filter known to the
/// source before a job exists.
fn check_selections(inner: &Inner, study: &str, selections: &[DatasetSelection]) -> Result<()> {
    if selections.is_empty() {
        return Err(
            Error::validation(Reason::MissingDatasets, "name at least one dataset")
                .with_field("datasets"),
        );
    }
    let mut seen = BTreeSet::new();
    for s in selections {
        crate::name::validate_name(s.name(), "datasets")?;
        if !seen.insert(s.name().to_ascii_lowercase()) {
            return Err(Error::validation(
                Reason::DuplicateDataset,
                format!("dataset '{}' is named twice", s.name()),
            )
            .with_field("datasets"));
        }
        // Opening the selection checks the dataset, its columns and filters before a job exists.
        drop(inner.scan(study, s.name(), s.columns(), s.filters())?);
    }
    Ok(())
}

/// What [`check_privacy`] found.
pub(super) struct Privacy {
    /// The de-identification as the audit and the manifest record it; `None` when there is none.
    pub(super) deidentification: Option<Value>,
    /// Whether the job is identifiable ([`Job::identifiable`]).
    pub(super) identifiable: bool,
}

/// Checks a request's privacy: the de-identification policy, the key it needs, the column lists, and every use
/// the request makes of a column against [`crate::deid::PrivacyCheck`], for a caller who holds
/// `data:identifiable` on the study (`may_identify`) or not. Called before a job exists and again when the job
/// runs ([`check_job_privacy`]), against the dataset metadata of that moment.
pub(super) fn check_privacy(
    inner: &Inner,
    request: &ExportRequest,
    describes: bool,
    may_identify: bool,
) -> Result<Privacy> {
    let study = &request.study;
    let rule = crate::deid::PrivacyCheck::new(may_identify, request.identifiable);
    let datasets = match &request.content {
        ExportContent::Data { datasets } | ExportContent::Bulk { datasets, .. } => datasets,
        ExportContent::Report(_) | ExportContent::Dashboard(_) => {
            if request.deidentify.is_some() {
                return Err(Error::validation(
                    Reason::UnsupportedByKind,
                    "de-identification profiles apply to data and bulk exports: a report or dashboard shows \
                     identifying columns only with 'identifiable'",
                )
                .with_field("deidentify"));
            }
            let uses = match &request.content {
                ExportContent::Report(spec) => spec.column_uses(),
                ExportContent::Dashboard(spec) => spec.column_uses(),
                _ => vec![],
            };
            let verdict = rule
                .flag_field("identifiable")
                .check(&classify(inner, study, &uses)?)?;
            let deidentification = if request.identifiable {
                Some(crate::deid::Policy::new(None, true)?.describe(None))
            } else {
                None
            };
            return Ok(Privacy {
                deidentification,
                identifiable: verdict.identifying || request.identifiable,
            });
        }
    };
    if describes {
        // A metadata document carries no values: nothing to de-identify.
        if request.deidentify.is_some() {
            return Err(Error::validation(
                Reason::UnsupportedByFormat,
                "de-identification applies to data formats, not to metadata documents",
            )
            .with_field("deidentify"));
        }
        return Ok(Privacy {
            deidentification: None,
            identifiable: request.identifiable,
        });
    }
    let policy = crate::deid::Policy::new(request.deidentify.as_ref(), request.identifiable)?;
    let key = inner.deid_key.as_deref();
    // Building the job's de-identifier checks the key and the versioned data it needs.
    crate::deid::Deidentifier::new(policy.clone(), key, study, inner.clock.now())?;
    let mut plans = Vec::with_capacity(datasets.len());
    let mut uses = Vec::new();
    for s in datasets {
        let stream = inner.scan(study, s.name(), s.columns(), s.filters())?;
        let plan = policy.plan(s.name(), stream.schema(), &stream.meta())?;
        uses.extend(plan.uses());
        if !s.filters().is_empty() {
            // Filters may name columns the selection leaves out: their classes come from the whole dataset.
            let whole = inner.scan(study, s.name(), None, &[])?.meta();
            for f in s.filters() {
                uses.push(classed(
                    s.name(),
                    &f.column,
                    crate::deid::ColumnUse::Filter,
                    "filters",
                    &whole,
                ));
            }
        }
        plans.push(plan);
    }
    policy.check_columns(&plans)?;
    let verdict = rule.check(&uses)?;
    Ok(Privacy {
        deidentification: (!policy.is_empty() || request.identifiable)
            .then(|| policy.describe(key.map(crate::deid::DeidKey::id))),
        identifiable: verdict.identifying || request.identifiable,
    })
}

/// Sets up the format's encoder for each dataset of a data export as the job will (the selected columns after
/// the request's de-identification, the job's options and creation time), writing nothing: what the format cannot
/// represent, or an option it needs for this data (such as ODM's `event` column), is refused now, before a job is
/// queued, with the error the job would have failed with. The rows themselves are checked when they are written.
///
/// # Errors
/// The encoder's EXP002; the source's errors.
fn check_encodings(
    inner: &Inner,
    request: &ExportRequest,
    format: &dyn Format,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let ExportContent::Data { datasets } = &request.content else {
        return Ok(());
    };
    let policy = crate::deid::Policy::new(request.deidentify.as_ref(), request.identifiable)?;
    let deid =
        crate::deid::Deidentifier::new(policy, inner.deid_key.as_deref(), &request.study, at)?;
    let options = request.options.created_by_default(&format.info(), at);
    for s in datasets {
        let stream = inner.scan(&request.study, s.name(), s.columns(), s.filters())?;
        let out = deid.dataset(s.name(), stream.schema(), &stream.meta())?;
        let mut nowhere = std::io::sink();
        drop(format.encoder(out.schema(), out.meta(), &options, &mut nowhere)?);
    }
    Ok(())
}

/// The run-time check of a job's privacy, against the dataset metadata of the moment (it may have changed since
/// the job was submitted): the rule as it was decided at submission, where the job's [`Job::identifiable`] stands
/// for the caller's `data:identifiable` (a request with `identifiable` was authorized for it).
///
/// # Errors
/// As [`check_privacy`]: EXP003 `identifiable_data` for a use the job was not allowed, EXP002 for a raw column
/// without `identifiable`.
pub(super) fn check_job_privacy(
    inner: &Inner,
    job: &Job,
    request: &ExportRequest,
    describes: bool,
) -> Result<()> {
    check_privacy(
        inner,
        request,
        describes,
        job.identifiable || request.identifiable,
    )
    .map(|_| ())
}

/// A use of `column` with its class from the dataset's metadata (matched without regard to ASCII case).
fn classed(
    dataset: &str,
    column: &str,
    usage: crate::deid::ColumnUse,
    field: &'static str,
    meta: &crate::meta::DatasetMeta,
) -> crate::deid::ClassedUse {
    let privacy = meta
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(column))
        .map(|c| c.privacy)
        .unwrap_or_default();
    crate::deid::ClassedUse {
        dataset: dataset.to_string(),
        column: column.to_string(),
        usage,
        field,
        privacy,
        // Documents have no de-identification profile.
        transformed: false,
    }
}

/// The classes of the columns a document uses, from each dataset's metadata; a use of every column (a table
/// without a column list) becomes a use of each column of the dataset.
fn classify(
    inner: &Inner,
    study: &str,
    uses: &[crate::deid::UsedColumn],
) -> Result<Vec<crate::deid::ClassedUse>> {
    let mut metas: std::collections::BTreeMap<&str, (crate::meta::DatasetMeta, Vec<String>)> =
        std::collections::BTreeMap::new();
    let mut out = Vec::with_capacity(uses.len());
    for u in uses {
        if !metas.contains_key(u.dataset.as_str()) {
            let stream = inner.scan(study, &u.dataset, None, &[])?;
            let names = stream
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            metas.insert(u.dataset.as_str(), (stream.meta(), names));
        }
        let Some((meta, names)) = metas.get(u.dataset.as_str()) else {
            continue;
        };
        match &u.column {
            Some(c) => out.push(classed(&u.dataset, c, u.usage, u.field, meta)),
            None => out.extend(
                names
                    .iter()
                    .map(|c| classed(&u.dataset, c, u.usage, u.field, meta)),
            ),
        }
    }
    Ok(out)
}

/// Stores a queued job (or returns the existing one for a repeated idempotency key) with the call's event, whose
/// details get `extra` (the de-identification and signature the pipeline checked), and the signer's verified
/// attempt, if any; wakes a worker.
fn enqueue(
    inner: &Inner,
    call: &Call<'_>,
    request: &ExportRequest,
    identifiable: bool,
    extra: serde_json::Map<String, Value>,
    signer: Option<&super::signing::Reauthenticated>,
) -> Result<Done<Job>> {
    if let Some(k) = &request.idempotency_key {
        if k.is_empty() || k.len() > 200 || k.chars().any(char::is_control) {
            return Err(Error::validation(
                Reason::InvalidIdempotencyKey,
                "an idempotency key has 1 to 200 printable characters",
            )
            .with_field("idempotency_key"));
        }
    }
    let p = call.principal();
    let kind = request.kind();
    let recorded = request.to_json();
    let mut hashed = recorded.clone();
    if let Some(o) = hashed.as_object_mut() {
        o.remove("idempotency_key");
    }
    let request_hash = super::literals::request_hash(
        inner,
        &crate::audit::canonical_json(&json!({"kind": kind, "request": hashed})),
    );
    let datasets_total = match &request.content {
        ExportContent::Data { datasets } | ExportContent::Bulk { datasets, .. } => {
            datasets.len() as u32
        }
        ExportContent::Report(_) | ExportContent::Dashboard(_) => 1,
    };
    let mut job = Job {
        id: Uuid::now_v7(),
        kind,
        study: request.study.clone(),
        org: p.org.clone(),
        requested_by: p.subject.clone(),
        requested_by_name: p.name.clone(),
        request: recorded,
        format: request.format.clone(),
        state: JobState::Queued,
        progress: Progress {
            datasets_total,
            ..Progress::default()
        },
        created_at: call.at,
        started_at: None,
        finished_at: None,
        artifacts: vec![],
        error: None,
        idempotency_key: request.idempotency_key.clone(),
        request_hash,
        cancel_requested: false,
        attempt: 0,
        lease: None,
        version: 0,
        identifiable,
        succeeded_seq: None,
        literals: None,
    };
    // Filter values and the idempotency key are kept sealed (see `literals`).
    super::literals::seal(inner, &mut job)?;
    let details = |replay: bool| {
        let mut d = json!({"study": request.study, "kind": kind, "format": request.format,
            "idempotent_replay": replay});
        if let Some(o) = d.as_object_mut() {
            o.extend(extra.clone());
        }
        d
    };
    // The job and the call's event commit together: no job exists whose submission the trail lacks.
    let stored = inner.write(|tx| {
        if let Some(verified) = signer {
            verified.commit(inner, tx)?;
        }
        if let Some(key) = &job.idempotency_key {
            if let Some(existing) = tx.job_by_idempotency_key(&job.org, &job.requested_by, key)? {
                if existing.request_hash != job.request_hash {
                    return Err(Error::conflict(
                        Reason::IdempotencyConflict,
                        "the idempotency key was used for a different request",
                    ));
                }
                call.record_success(tx, &format!("job:{}", existing.id), &details(true))?;
                return Ok(existing);
            }
        }
        let stored = tx.insert_job(&job)?;
        call.record_success(tx, &format!("job:{}", stored.id), &details(false))?;
        Ok(stored)
    })?;
    let reused = stored.id != job.id;
    if !reused {
        inner.notify_queued();
    }
    // The caller made this request (or the same one under its key): they see it whole.
    let mut stored = stored;
    super::literals::reveal(inner, &mut stored)?;
    Ok(Done {
        target: format!("job:{}", stored.id),
        details: details(reused),
        value: stored,
    })
}
