//! Running jobs: the worker loop, encoding datasets into artifacts, bulk packages, documents and manifests.

use super::{compute, package, Inner, ENGINE_VERSION};
use crate::error::{Error, Result};
use crate::format::{Capability, Format, FormatOptions};
use crate::job::{Artifact, Job, JobKind, JobState};
use crate::manifest::{Manifest, ManifestEntry, ManifestPrincipal, MANIFEST_VERSION};
use crate::meta::DatasetMeta;
use crate::request::{
    BulkExportRequest, DashboardRequest, ExportDataRequest, PackageKind, ReportRequest,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde_json::json;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name of every job's manifest artifact.
pub(crate) const MANIFEST_NAME: &str = "manifest.json";

/// How often a running job's progress is saved.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The sink path of a job's artifact.
pub(crate) fn artifact_path(job: &Job, name: &str) -> String {
    format!("{}/{}", job.id, name)
}

/// Claims and runs jobs until the engine shuts down.
pub(crate) fn worker_loop(inner: &Arc<Inner>) {
    while !inner.shutdown.load(Ordering::SeqCst) {
        let claimed = inner.jobs.claim_next(inner.clock.now());
        match claimed {
            Ok(Some(job)) => run_claimed(inner, job),
            Ok(None) | Err(_) => {
                // Nothing to do (or the store is failing): sleep until woken or a short time passed.
                let guard = inner.wake_lock.lock().unwrap_or_else(|p| p.into_inner());
                if inner.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                let _ = inner.wake.wait_timeout(guard, Duration::from_millis(200));
            }
        }
    }
}

/// Why a job stopped before succeeding.
pub(super) enum Stop {
    Cancelled,
    Shutdown,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

/// A running job: the record, its cancel flag, and throttled progress saving.
pub(crate) struct Running<'a> {
    pub(super) inner: &'a Inner,
    pub(super) job: Job,
    cancel: Arc<AtomicBool>,
    pub(super) bytes: Arc<AtomicU64>,
    pub(super) rows: u64,
    last_save: Instant,
    /// Artifacts completed so far, deleted if the job does not succeed.
    pub(super) completed: Vec<String>,
    /// The job's de-identification, shared by its datasets (data and bulk jobs).
    pub(super) deid: Option<Arc<crate::deid::Deidentifier>>,
    /// The e-signatures of the manifests written so far, for the audit trail.
    pub(super) signatures: Vec<crate::signature::SignatureRecord>,
    /// The rendered document of a report or dashboard job, for the manifest.
    document: Option<crate::manifest::ManifestDocument>,
}

impl<'a> Running<'a> {
    pub(super) fn check(&mut self) -> Result<(), Stop> {
        if self.inner.shutdown.load(Ordering::SeqCst) {
            return Err(Stop::Shutdown);
        }
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Stop::Cancelled);
        }
        if self.last_save.elapsed() >= PROGRESS_EVERY {
            self.save_progress()?;
        }
        Ok(())
    }

    /// Saves progress; picks up a cancel request made through the store (by another process).
    pub(super) fn save_progress(&mut self) -> Result<(), Stop> {
        self.last_save = Instant::now();
        self.job.progress.rows_written = self.rows;
        self.job.progress.bytes_written = self.bytes.load(Ordering::Relaxed);
        loop {
            match self.inner.jobs.update(&self.job) {
                Ok(j) => {
                    self.job = j;
                    return Ok(());
                }
                Err(e) if e.reason() == "version_conflict" => {
                    let fresh = self.inner.jobs.get(self.job.id)?;
                    if fresh.cancel_requested {
                        self.job = fresh;
                        return Err(Stop::Cancelled);
                    }
                    let progress = self.job.progress;
                    self.job = fresh;
                    self.job.progress = progress;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn add_rows(&mut self, n: u64) {
        self.rows += n;
    }
}

/// A writer that counts bytes into a shared counter, for progress.
pub(super) struct Counting<'w> {
    pub(super) inner: &'w mut (dyn Write + Send),
    pub(super) bytes: Arc<AtomicU64>,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn run_claimed(inner: &Arc<Inner>, job: Job) {
    let cancel = Arc::new(AtomicBool::new(job.cancel_requested));
    inner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(job.id, cancel.clone());
    let id = job.id;
    let mut run = Running {
        inner,
        job,
        cancel,
        bytes: Arc::new(AtomicU64::new(0)),
        rows: 0,
        last_save: Instant::now(),
        completed: vec![],
        deid: None,
        signatures: vec![],
        document: None,
    };
    // The call that submitted the job audits itself first (bounded: a call in another process is not waited for).
    inner.wait_audited(id, Duration::from_secs(5));
    // A failure to audit the start fails the job (fail-closed).
    let result = inner
        .audit_system("job.running", &run.job, json!({"state": "running"}))
        .map_err(Stop::from)
        .and_then(|_| execute(&mut run));
    finish(&mut run, result);
    inner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    inner.notify_changed();
}

/// Records the outcome of a job in the audit trail, then in the store.
///
/// Fail-closed: the end is audited before it is stored, so no job is seen succeeded whose success the audit trail
/// lacks. When the `job.succeeded` event (or the `job.signed` event of its e-signatures) cannot be recorded, the
/// artifacts' bytes are deleted and the job ends `failed` with EXP005 `audit_failed` instead (itself audited when
/// the trail still takes events).
fn finish(run: &mut Running<'_>, result: Result<Vec<Artifact>, Stop>) {
    let inner = run.inner;
    let (mut state, mut artifacts, mut error) = match result {
        Ok(artifacts) => (JobState::Succeeded, artifacts, None),
        Err(stop) => {
            discard(run);
            match stop {
                Stop::Cancelled => (JobState::Cancelled, vec![], None),
                Stop::Failed(e) => (JobState::Failed, vec![], Some(e)),
                Stop::Shutdown => {
                    requeue(run);
                    return;
                }
            }
        }
    };
    let Ok(job) = inner.jobs.get(run.job.id) else {
        return;
    };
    if state == JobState::Succeeded && job.cancel_requested {
        // Cancelled after the last batch but before completion: honour the cancel.
        delete_artifacts(inner, &job, &artifacts);
        (state, artifacts) = (JobState::Cancelled, vec![]);
    }
    // Until its end is stored, a waiter holds its own event back (see `Inner::wait_audited`).
    let _pending = PendingAudit::new(inner, job.id);
    let rows = run.rows;
    let bytes = run.bytes.load(Ordering::Relaxed);
    let recorded = inner
        .audit_system(
            &format!("job.{}", state.as_str()),
            &job,
            end_details(run, state, rows, bytes, &artifacts, error.as_ref()),
        )
        .and_then(|_| match state {
            JobState::Succeeded => super::signing::audit_signatures(inner, &job, &run.signatures),
            _ => Ok(()),
        });
    if let Err(e) = recorded {
        if state == JobState::Succeeded {
            delete_artifacts(inner, &job, &artifacts);
            let failure = Error::server("audit_failed", "the end of the job could not be audited")
                .with_detail("cause", e.reason().to_string());
            let details = end_details(run, JobState::Failed, rows, bytes, &[], Some(&failure));
            let _ = inner.audit_system("job.failed", &job, details);
            (state, artifacts, error) = (JobState::Failed, vec![], Some(failure));
        }
    }
    // Store the audited end; retry on version conflicts (a cancel request may have bumped the version, too late to
    // change an end already audited).
    for _ in 0..10 {
        let mut job = match inner.jobs.get(run.job.id) {
            Ok(j) => j,
            Err(_) => return,
        };
        job.progress = run.job.progress;
        job.progress.rows_written = rows;
        job.progress.bytes_written = bytes;
        if state == JobState::Succeeded {
            job.artifacts = artifacts.clone();
            job.progress.datasets_done = job.progress.datasets_total;
        }
        job.error = error.as_ref().map(Error::to_object);
        if job.transition(state, inner.clock.now()).is_err() {
            return;
        }
        match inner.jobs.update(&job) {
            Err(e) if e.reason() == "version_conflict" => continue,
            _ => return,
        }
    }
}

/// Deletes the bytes of a finished job's artifacts, which it will not keep (best effort: a job that does not end
/// `succeeded` is never downloadable, whatever stays on disk).
fn delete_artifacts(inner: &Inner, job: &Job, artifacts: &[Artifact]) {
    for a in artifacts {
        let _ = inner.sink.delete(&artifact_path(job, &a.name));
    }
}

/// Deletes the artifacts a stopped job had completed.
fn discard(run: &mut Running<'_>) {
    for path in run.completed.drain(..) {
        let _ = run.inner.sink.delete(&path);
    }
}

/// The details of a job's end event: state, rows, bytes, and the error, or the artifacts and de-identification.
fn end_details(
    run: &Running<'_>,
    state: JobState,
    rows: u64,
    bytes: u64,
    artifacts: &[Artifact],
    error: Option<&Error>,
) -> serde_json::Value {
    let mut details = json!({"state": state, "rows": rows, "bytes": bytes});
    if let Some(e) = error {
        details["code"] = json!(e.code().as_str());
        details["reason"] = json!(e.reason());
    }
    if state == JobState::Succeeded {
        details["artifacts"] = json!(artifacts
            .iter()
            .map(|a| json!({"name": a.name, "sha256": a.sha256, "bytes": a.bytes}))
            .collect::<Vec<_>>());
        if let Some(d) = deidentification(run) {
            details["deidentification"] = d;
        }
    }
    details
}

/// Marks a job's audit event as on the way (see `Inner::wait_audited`) for as long as it lives.
struct PendingAudit<'i> {
    inner: &'i Inner,
    id: uuid::Uuid,
}

impl<'i> PendingAudit<'i> {
    fn new(inner: &'i Inner, id: uuid::Uuid) -> Self {
        inner
            .unaudited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        PendingAudit { inner, id }
    }
}

impl Drop for PendingAudit<'_> {
    fn drop(&mut self) {
        self.inner
            .unaudited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.inner.audited.notify_all();
    }
}

/// Puts a job interrupted by shutdown back in the queue.
fn requeue(run: &mut Running<'_>) {
    let inner = run.inner;
    if let Ok(mut job) = inner.jobs.get(run.job.id) {
        job.state = JobState::Queued;
        job.started_at = None;
        job.progress.rows_written = 0;
        job.progress.bytes_written = 0;
        job.progress.datasets_done = 0;
        if let Ok(j) = inner.jobs.update(&job) {
            let _ = inner.audit_system(
                "job.requeued",
                &j,
                json!({"reason": "engine_shutdown", "state": "queued"}),
            );
        }
    }
}

pub(super) fn parse_request<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T> {
    serde_json::from_value(job.request.clone()).map_err(|_| {
        Error::server(
            "corrupt_job",
            "the stored request of the job cannot be read",
        )
    })
}

/// The de-identifier of a data or bulk job, from its request.
fn job_deidentifier(run: &Running<'_>) -> Result<crate::deid::Deidentifier> {
    let (spec, identifiable) = if run.job.kind == JobKind::Bulk {
        let r: BulkExportRequest = parse_request(&run.job)?;
        (r.deidentify, r.identifiable)
    } else {
        let r: ExportDataRequest = parse_request(&run.job)?;
        (r.deidentify, r.identifiable)
    };
    let policy = crate::deid::Policy::new(spec.as_ref(), identifiable)?;
    // The job's creation time is the reference date, so a re-run of the request decides the same way.
    crate::deid::Deidentifier::new(
        policy,
        run.inner.deid_key.as_deref(),
        &run.job.study,
        run.job.created_at,
    )
}

/// What the manifest and the audit record of de-identification: `None` for a job without a policy.
fn deidentification(run: &Running<'_>) -> Option<serde_json::Value> {
    let d = run.deid.as_ref()?;
    (!d.policy().is_empty() || d.policy().identifiable()).then(|| d.describe())
}

fn execute(run: &mut Running<'_>) -> Result<Vec<Artifact>, Stop> {
    let inner = run.inner;
    let format = inner.formats.get(&run.job.format)?.clone();
    let mut entries = Vec::new();
    let data = match run.job.kind {
        JobKind::Bulk => true,
        JobKind::Data => !format.info().can(Capability::Describe),
        _ => false,
    };
    if data {
        run.deid = Some(Arc::new(job_deidentifier(run)?));
    }
    match run.job.kind {
        JobKind::Data if format.info().can(Capability::Describe) => {
            let req: ExportDataRequest = parse_request(&run.job)?;
            entries.push(package::write_description(run, format.as_ref(), &req)?);
        }
        JobKind::Data => {
            let req: ExportDataRequest = parse_request(&run.job)?;
            for sel in &req.datasets {
                let name = format!(
                    "{}.{}",
                    sel.name().to_ascii_lowercase(),
                    format.extension_for(&req.options)
                );
                let path = artifact_path(&run.job, &name);
                let mut writer = inner.sink.create(&path)?;
                let encoded = match encode_dataset(
                    run,
                    format.as_ref(),
                    &req.study,
                    sel,
                    &req.options,
                    &mut *writer,
                ) {
                    Ok(encoded) => encoded,
                    Err(e) => {
                        writer.abort();
                        return Err(e);
                    }
                };
                let receipt = writer.complete()?;
                run.completed.push(path);
                entries.push(ManifestEntry {
                    path: name,
                    media_type: format.media_type_for(&req.options).to_string(),
                    bytes: receipt.bytes,
                    sha256: receipt.sha256,
                    rows: Some(encoded.rows),
                    source_rows: Some(encoded.source_rows),
                    dataset: Some(sel.name().to_string()),
                });
                run.job.progress.datasets_done += 1;
                run.save_progress()?;
            }
        }
        JobKind::Bulk => {
            let req: BulkExportRequest = parse_request(&run.job)?;
            match req.package {
                PackageKind::Zip => {
                    entries.push(package::write_zip(run, format.as_ref(), &req)?);
                }
                PackageKind::Ectd => {
                    entries.extend(package::write_ectd(run, format.as_ref(), &req)?);
                }
            }
        }
        JobKind::Report | JobKind::Dashboard => {
            let (mut doc, options) = if run.job.kind == JobKind::Report {
                let req: ReportRequest = parse_request(&run.job)?;
                (
                    compute::report(inner, &req.report, inner.clock.now())?,
                    req.options,
                )
            } else {
                let req: DashboardRequest = parse_request(&run.job)?;
                (
                    compute::dashboard(inner, &req.dashboard, inner.clock.now())?,
                    req.options,
                )
            };
            doc.signatures = document_signatures(&run.job);
            let content_sha256 = doc.content_sha256()?;
            run.check()?;
            let name = format!("{}.{}", run.job.kind.as_str(), format.info().extension);
            let path = artifact_path(&run.job, &name);
            let mut writer = inner.sink.create(&path)?;
            let rendered = {
                let mut out = Counting {
                    inner: &mut *writer,
                    bytes: run.bytes.clone(),
                };
                format.render(&doc, &options, &mut out)
            };
            if let Err(e) = rendered {
                writer.abort();
                return Err(e.into());
            }
            let receipt = writer.complete()?;
            run.completed.push(path);
            run.job.progress.datasets_done = 1;
            run.document = Some(crate::manifest::ManifestDocument {
                artifact: name.clone(),
                content_sha256,
            });
            entries.push(ManifestEntry {
                path: name,
                media_type: format.info().media_type.to_string(),
                bytes: receipt.bytes,
                sha256: receipt.sha256,
                rows: None,
                source_rows: None,
                dataset: None,
            });
        }
    }
    run.check()?;
    let mut artifacts: Vec<Artifact> = entries
        .iter()
        .map(|e| Artifact {
            name: e.path.clone(),
            media_type: e.media_type.clone(),
            bytes: e.bytes,
            sha256: e.sha256.clone(),
            rows: e.rows,
        })
        .collect();
    let manifest = manifest_of(run, entries)?;
    let path = artifact_path(&run.job, MANIFEST_NAME);
    let mut writer = inner.sink.create(&path)?;
    if let Err(e) = writer.write_all(&manifest.to_bytes()) {
        writer.abort();
        return Err(Error::io("cannot write the manifest", &e).into());
    }
    let receipt = writer.complete()?;
    run.completed.push(path);
    artifacts.push(Artifact {
        name: MANIFEST_NAME.into(),
        media_type: "application/json".into(),
        bytes: receipt.bytes,
        sha256: receipt.sha256,
        rows: None,
    });
    Ok(artifacts)
}

/// The e-signatures a report or dashboard shows: those [`super::signing::sign_manifest`] will bind to the job's
/// manifest when the job succeeds, known before rendering (the request's meaning, the requester's printed name,
/// the time of the request, which is when the signer re-authenticated).
fn document_signatures(job: &Job) -> Vec<crate::document::DocumentSignature> {
    crate::signature::requested_meaning(&job.request)
        .map(|meaning| crate::document::DocumentSignature {
            printed_name: job.requested_by_name.clone(),
            signer_id: job.requested_by.clone(),
            meaning,
            signed_at: job.created_at,
        })
        .into_iter()
        .collect()
}

/// The manifest of a job's `files`, signed when the request asked for an e-signature.
pub(super) fn manifest_of(
    run: &mut Running<'_>,
    files: Vec<ManifestEntry>,
) -> Result<Manifest, Stop> {
    let job = &run.job;
    let mut manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        engine: format!("trialport {ENGINE_VERSION}"),
        job_id: job.id,
        kind: job.kind.as_str().into(),
        study: job.study.clone(),
        format: job.format.clone(),
        requested_by: ManifestPrincipal {
            subject: job.requested_by.clone(),
            name: job.requested_by_name.clone(),
            org: job.org.clone(),
        },
        created_at: job.created_at,
        completed_at: run.inner.clock.now(),
        request: job.request.clone(),
        deidentification: deidentification(run),
        files,
        document: run.document.clone(),
        signatures: vec![],
    };
    super::signing::sign_manifest(run, &mut manifest)?;
    Ok(manifest)
}

/// What encoding one dataset wrote.
pub(super) struct Encoded {
    /// Rows written.
    pub(super) rows: u64,
    /// Rows the source yielded.
    pub(super) source_rows: u64,
    /// The dataset's schema, with its metadata.
    pub(super) schema: SchemaRef,
    /// The dataset's metadata.
    pub(super) meta: DatasetMeta,
}

/// A slice of a dataset's rows written as a dataset of its own (a part of a split dataset).
pub(super) struct Part {
    /// Rows of the source to skip.
    pub(super) skip: u64,
    /// Rows to write after them.
    pub(super) take: u64,
    /// The name of the part's dataset, e.g. `LB1`.
    pub(super) name: String,
}

/// Encodes one dataset selection into `out`.
pub(super) fn encode_dataset(
    run: &mut Running<'_>,
    format: &dyn Format,
    study: &str,
    sel: &crate::request::DatasetSelection,
    options: &FormatOptions,
    out: &mut (dyn Write + Send),
) -> Result<Encoded, Stop> {
    encode_part(run, format, study, sel, options, out, None)
}

/// Encodes one dataset selection, or the `part` of its rows, into `out`.
pub(super) fn encode_part(
    run: &mut Running<'_>,
    format: &dyn Format,
    study: &str,
    sel: &crate::request::DatasetSelection,
    options: &FormatOptions,
    out: &mut (dyn Write + Send),
    part: Option<&Part>,
) -> Result<Encoded, Stop> {
    let inner = run.inner;
    let stream = inner.scan(study, sel.name(), sel.columns(), sel.filters())?;
    let mut schema = stream.schema().clone();
    let mut meta = stream.meta();
    let deid = match &run.deid {
        Some(d) => Some(d.dataset(sel.name(), &schema, &meta)?),
        None => None,
    };
    if let Some(t) = &deid {
        schema = t.schema().clone();
        meta = t.meta().clone();
    }
    if let Some(p) = part {
        meta.name = p.name.clone();
        schema = meta.apply_to(&schema)?;
    }
    let (skip, take) = part.map_or((0, u64::MAX), |p| (p.skip, p.take));
    let mut counted = Counting {
        inner: out,
        bytes: run.bytes.clone(),
    };
    let mut encoder = format.encoder(&schema, &meta, options, &mut counted)?;
    let mut seen = 0u64;
    let mut source_rows = 0u64;
    for batch in stream {
        run.check()?;
        let batch = batch?;
        let n = batch.num_rows() as u64;
        let (from, to) = (seen.max(skip), (seen + n).min(skip.saturating_add(take)));
        seen += n;
        if from >= to {
            if seen >= skip.saturating_add(take) {
                break;
            }
            continue;
        }
        let slice = if from == seen - n && to == seen {
            batch
        } else {
            batch.slice((from - (seen - n)) as usize, (to - from) as usize)
        };
        let slice = match &deid {
            Some(t) => t.apply(&slice)?,
            None => slice,
        };
        // A part carries its own name in the schema; whole datasets keep their batches as the source made them.
        let slice = if part.is_some() {
            RecordBatch::try_new(schema.clone(), slice.columns().to_vec()).map_err(|e| {
                Error::server(
                    "schema_mismatch",
                    format!("a batch does not fit the dataset's schema: {e}"),
                )
            })?
        } else {
            slice
        };
        source_rows += to - from;
        encoder.write(&slice)?;
        run.add_rows(to - from);
    }
    run.check()?;
    let summary = encoder.finish()?;
    if summary.rows != source_rows {
        return Err(Error::server(
            "row_count_mismatch",
            "the rows written differ from the rows the source yielded",
        )
        .with_detail("written", summary.rows)
        .with_detail("source", source_rows)
        .into());
    }
    // What the file says of itself (e.g. measured character lengths) is what a define must describe.
    let (schema, meta) = match &summary.written {
        Some(written) => {
            let meta = meta.merged_with(written);
            (meta.apply_to(&schema)?, meta)
        }
        None => (schema, meta),
    };
    Ok(Encoded {
        rows: summary.rows,
        source_rows,
        schema,
        meta,
    })
}
