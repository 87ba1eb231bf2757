//! Running jobs: the worker loop, encoding datasets into artifacts, bulk packages, documents and manifests.

use super::{compute, package, Inner, ENGINE_VERSION};
use crate::error::{Error, Result};
use crate::format::{Capability, Format, FormatOptions};
use crate::job::{Artifact, Job, JobKind, JobState};
use crate::manifest::{Manifest, ManifestEntry, ManifestPrincipal, MANIFEST_VERSION};
use crate::meta::DatasetMeta;
use crate::request::{ExportContent, ExportRequest, PackageKind};
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

/// The sink path of a job's artifact ([`Job::artifact_path`]).
pub(crate) fn artifact_path(job: &Job, name: &str) -> String {
    job.artifact_path(name)
}

/// Claims and runs jobs until the engine shuts down.
pub(crate) fn worker_loop(inner: &Arc<Inner>) {
    while !inner.shutdown.load(Ordering::SeqCst) {
        match inner.claim(None) {
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
    /// The attempt lost its lease: it must write nothing more.
    LeaseLost,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        if e.reason() == "lease_lost" {
            Stop::LeaseLost
        } else {
            Stop::Failed(e)
        }
    }
}

/// A running attempt: the record, its cancel flag, and throttled progress saving.
pub(crate) struct Running<'a> {
    pub(super) inner: &'a Inner,
    pub(super) job: Job,
    /// The attempt's lease epoch, which fences its writes.
    epoch: u32,
    cancel: Arc<AtomicBool>,
    /// Set by the lease keeper when the lease was lost.
    lost: Arc<AtomicBool>,
    pub(super) bytes: Arc<AtomicU64>,
    pub(super) rows: u64,
    last_save: Instant,
    /// The job's de-identification, shared by its datasets (data and bulk jobs).
    pub(super) deid: Option<Arc<crate::deid::Deidentifier>>,
    /// The e-signatures of the manifests written so far, for the audit trail.
    pub(super) signatures: Vec<crate::signature::SignatureRecord>,
    /// The rendered document of a report or dashboard job, for the manifest.
    document: Option<crate::manifest::ManifestDocument>,
}

impl<'a> Running<'a> {
    pub(super) fn check(&mut self) -> Result<(), Stop> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Stop::LeaseLost);
        }
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

    /// Saves progress (fenced by the lease); picks up a cancel request made through the store (by another process).
    pub(super) fn save_progress(&mut self) -> Result<(), Stop> {
        self.last_save = Instant::now();
        let mut progress = self.job.progress;
        progress.rows_written = self.rows;
        progress.bytes_written = self.bytes.load(Ordering::Relaxed);
        let job = self.inner.fenced(self.job.id, self.epoch, |job, _| {
            job.progress = progress;
            Ok(())
        })?;
        self.job = job;
        if self.job.cancel_requested {
            return Err(Stop::Cancelled);
        }
        Ok(())
    }

    fn add_rows(&mut self, n: u64) {
        self.rows += n;
    }

    /// Creates an artifact of this attempt.
    pub(super) fn create(&self, name: &str) -> Result<Box<dyn crate::sink::SinkWriter>> {
        self.inner.sink.create(&artifact_path(&self.job, name))
    }
}

/// Completes an artifact of the attempt, between its failpoints.
pub(super) fn complete(
    writer: Box<dyn crate::sink::SinkWriter>,
) -> Result<crate::sink::ArtifactReceipt> {
    crate::failpoint::hit("job.artifact.before_complete");
    let receipt = writer.complete()?;
    crate::failpoint::hit("job.artifact.after_complete");
    Ok(receipt)
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

/// Runs attempt `job.attempt` of a job this engine claimed, to its end.
pub(crate) fn run_claimed(inner: &Inner, job: Job) {
    let cancel = Arc::new(AtomicBool::new(job.cancel_requested));
    let lost = Arc::new(AtomicBool::new(false));
    let epoch = job.attempt;
    inner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            job.id,
            super::lease::Held {
                epoch,
                cancel: cancel.clone(),
                lost: lost.clone(),
            },
        );
    let id = job.id;
    let mut run = Running {
        inner,
        job,
        epoch,
        cancel,
        lost,
        bytes: Arc::new(AtomicU64::new(0)),
        rows: 0,
        last_save: Instant::now(),
        deid: None,
        signatures: vec![],
        document: None,
    };
    let result = execute(&mut run);
    finish(&mut run, result);
    inner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    inner.notify_changed();
}

/// Records the end of an attempt: its state change and its events (`job.succeeded` with `job.signed`,
/// `job.failed`, `job.cancelled`) in one fenced transaction, so no job is seen succeeded whose success the audit
/// trail lacks, and no event reports an end that did not commit. When the end of a succeeded attempt cannot be
/// recorded (a hook refuses it), its artifacts are deleted and the job fails with EXP005 `audit_failed` instead.
/// A stopped attempt gives its lease back (shutdown) or, having lost it, leaves the job to its new attempt. The
/// folders of the job's other attempts, and of this one unless it succeeded, are deleted.
fn finish(run: &mut Running<'_>, result: Result<Vec<Artifact>, Stop>) {
    let inner = run.inner;
    let (id, epoch) = (run.job.id, run.epoch);
    let (state, artifacts, error) = match result {
        Ok(artifacts) => (JobState::Succeeded, artifacts, None),
        Err(Stop::Cancelled) => (JobState::Cancelled, vec![], None),
        Err(Stop::Failed(e)) => (JobState::Failed, vec![], Some(e)),
        Err(Stop::LeaseLost) => {
            // Another attempt owns the job: this one's files are garbage, the job is not ours to change.
            let _ = inner.sink.delete_tree(&run.job.attempt_folder(epoch));
            return;
        }
        Err(Stop::Shutdown) => {
            let _ = inner.sink.delete_tree(&run.job.attempt_folder(epoch));
            let _ = inner.release(id, epoch);
            return;
        }
    };
    let rows = run.rows;
    let bytes = run.bytes.load(Ordering::Relaxed);
    let deid = deidentification(run);
    let signatures = run.signatures.clone();
    crate::failpoint::hit("job.finish.before");
    let ended = inner.fenced(id, epoch, |job, tx| {
        let mut state = state;
        let mut artifacts = artifacts.clone();
        if state == JobState::Succeeded && job.cancel_requested {
            // Cancelled after the last batch but before completion: honour the cancel.
            (state, artifacts) = (JobState::Cancelled, vec![]);
        }
        end_job(job, state, rows, bytes, artifacts, error.as_ref(), inner)?;
        let details = end_details(
            state,
            rows,
            bytes,
            &job.artifacts,
            error.as_ref(),
            deid.as_ref(),
        );
        let event = inner.record_system(tx, &format!("job.{}", state.as_str()), job, details)?;
        if state == JobState::Succeeded {
            // Downloads check the artifacts' record against this event.
            job.succeeded_seq = Some(event.seq);
            super::signing::record_signatures(inner, tx, job, &signatures)?;
        }
        Ok(())
    });
    match ended {
        Ok(job) => {
            // Only the succeeded attempt's folder is the job's; everything else goes.
            let keep = (job.state == JobState::Succeeded).then_some(epoch);
            sweep_attempts(inner, &job, epoch, keep);
        }
        Err(e) if e.reason() == "lease_lost" => {
            let _ = inner.sink.delete_tree(&run.job.attempt_folder(epoch));
        }
        Err(e) => {
            // The end could not be recorded (a hook refused it, or the store failed): nothing of it committed.
            // A success is not claimed without its record: the artifacts go and the job fails, if that can be
            // recorded; else the lease expires and the job is rescued.
            let _ = inner.sink.delete_tree(&run.job.attempt_folder(epoch));
            if state == JobState::Succeeded {
                let failure =
                    Error::server("audit_failed", "the end of the job could not be audited")
                        .with_detail("cause", e.reason().to_string());
                let _ = inner.fenced(id, epoch, |job, tx| {
                    end_job(
                        job,
                        JobState::Failed,
                        rows,
                        bytes,
                        vec![],
                        Some(&failure),
                        inner,
                    )?;
                    let details =
                        end_details(JobState::Failed, rows, bytes, &[], Some(&failure), None);
                    inner.record_system(tx, "job.failed", job, details)?;
                    Ok(())
                });
            }
            sweep_attempts(inner, &run.job, epoch, None);
        }
    }
}

/// Moves `job` to its end `state` (fields, progress, lease released).
fn end_job(
    job: &mut Job,
    state: JobState,
    rows: u64,
    bytes: u64,
    artifacts: Vec<Artifact>,
    error: Option<&Error>,
    inner: &Inner,
) -> Result<()> {
    job.progress.rows_written = rows;
    job.progress.bytes_written = bytes;
    if state == JobState::Succeeded {
        job.progress.datasets_done = job.progress.datasets_total;
    }
    job.artifacts = artifacts;
    job.error = error.map(Error::to_object);
    job.lease = None;
    job.transition(state, inner.clock.now())
}

/// Deletes the folders of attempts 1..=`last` of a job but `keep` (best effort: a folder that stays is never
/// referenced).
fn sweep_attempts(inner: &Inner, job: &Job, last: u32, keep: Option<u32>) {
    for attempt in 1..=last {
        if Some(attempt) != keep {
            let _ = inner.sink.delete_tree(&job.attempt_folder(attempt));
        }
    }
}

/// The details of a job's end event: state, rows, bytes, and the error, or the artifacts and de-identification.
fn end_details(
    state: JobState,
    rows: u64,
    bytes: u64,
    artifacts: &[Artifact],
    error: Option<&Error>,
    deidentification: Option<&serde_json::Value>,
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
        if let Some(d) = deidentification {
            details["deidentification"] = d.clone();
        }
    }
    details
}

/// The request of a stored job, its sealed literals put back (see `literals`).
///
/// # Errors
/// EXP005 `corrupt_job` when the stored request cannot be read; the errors of [`super::literals::open`].
pub(super) fn parse_request(inner: &Inner, job: &Job) -> Result<ExportRequest> {
    let (request, _) = super::literals::open(inner, job)?;
    ExportRequest::from_value(job.kind, request).map_err(|_| {
        Error::server(
            "corrupt_job",
            "the stored request of the job cannot be read",
        )
    })
}

/// The de-identifier of a data or bulk job, from its request.
fn job_deidentifier(run: &Running<'_>, req: &ExportRequest) -> Result<crate::deid::Deidentifier> {
    let policy = crate::deid::Policy::new(req.deidentify.as_ref(), req.identifiable)?;
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
    let req = parse_request(run.inner, &run.job)?;
    let mut entries = Vec::new();
    let describes = format.info().can(Capability::Describe);
    // The privacy rule again, against the dataset metadata of now: it may have changed since the submission.
    super::submit::check_job_privacy(
        inner,
        &run.job,
        &req,
        describes && req.kind() == JobKind::Data,
    )?;
    let data = match req.kind() {
        JobKind::Bulk => true,
        JobKind::Data => !describes,
        _ => false,
    };
    if data {
        run.deid = Some(Arc::new(job_deidentifier(run, &req)?));
    }
    match &req.content {
        ExportContent::Data { .. } if describes => {
            entries.push(package::write_description(run, format.as_ref(), &req)?);
        }
        ExportContent::Data { datasets } => {
            for sel in datasets {
                let name = format!(
                    "{}.{}",
                    sel.name().to_ascii_lowercase(),
                    format.extension_for(&req.options)
                );
                let mut writer = run.create(&name)?;
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
                let receipt = complete(writer)?;
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
        ExportContent::Bulk { package, .. } => match package {
            PackageKind::Zip => {
                entries.push(package::write_zip(run, format.as_ref(), &req)?);
            }
            PackageKind::Ectd => {
                entries.extend(package::write_ectd(run, format.as_ref(), &req)?);
            }
        },
        ExportContent::Report(_) | ExportContent::Dashboard(_) => {
            let mut doc = match &req.content {
                ExportContent::Report(spec) => compute::report(inner, spec, inner.clock.now())?,
                ExportContent::Dashboard(spec) => {
                    compute::dashboard(inner, spec, inner.clock.now())?
                }
                _ => unreachable!("matched a report or dashboard"),
            };
            let options = &req.options;
            doc.signatures = document_signatures(&run.job);
            let content_sha256 = doc.content_sha256()?;
            run.check()?;
            let name = format!("{}.{}", run.job.kind.as_str(), format.info().extension);
            let mut writer = run.create(&name)?;
            let rendered = {
                let mut out = Counting {
                    inner: &mut *writer,
                    bytes: run.bytes.clone(),
                };
                format.render(&doc, options, &mut out)
            };
            if let Err(e) = rendered {
                writer.abort();
                return Err(e.into());
            }
            let receipt = complete(writer)?;
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
    let mut writer = run.create(MANIFEST_NAME)?;
    if let Err(e) = writer.write_all(&manifest.to_bytes()) {
        writer.abort();
        return Err(Error::io("cannot write the manifest", &e).into());
    }
    let receipt = complete(writer)?;
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
        request: super::literals::open(run.inner, job)?.0,
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
    // A document that states its creation time (an XPT header, Dataset-JSON's datasetJSONCreationDateTime) states
    // the job's, from the engine's clock, unless the request sets it.
    let options = options.created_by_default(&format.info(), run.job.created_at);
    let mut encoder = format.encoder(&schema, &meta, &options, &mut counted)?;
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
