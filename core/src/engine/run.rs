//! Running jobs: the worker loop, and each attempt from its claim to its recorded end (the datasets are encoded
//! in `encode`, bulk packages written in `package`, manifests signed in `signing`).

use super::attempt::{complete, Counting, Running, Stop, MANIFEST_NAME};
use super::encode::encode_dataset;
use super::signing::manifest_of;
use super::{compute, package, Inner};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::format::Capability;
use crate::job::{Artifact, Job, JobKind, JobState};
use crate::manifest::ManifestEntry;
use crate::request::{ExportContent, ExportRequest, PackageKind};
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A worker on its way to running a job, counted in `Inner::claiming` from before it looks at the shutdown flag
/// until its claimed attempt is in `Inner::running` (or it claimed nothing). `Engine::shutdown` sets the flag and
/// then waits until both are empty: a worker counted before that wait either sees the flag and claims nothing, or
/// is waited for until its attempt is registered, stopped and its job given back. Without it, shutdown could
/// return between the commit of a claim and the registration of its attempt, with the job still `running`.
pub(crate) struct Claiming<'a>(&'a Inner);

impl<'a> Claiming<'a> {
    pub(crate) fn new(inner: &'a Inner) -> Self {
        inner.claiming.fetch_add(1, Ordering::SeqCst);
        Claiming(inner)
    }
}

impl Drop for Claiming<'_> {
    fn drop(&mut self) {
        self.0.claiming.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Claims and runs jobs until the engine shuts down.
pub(crate) fn worker_loop(inner: &Arc<Inner>) {
    loop {
        let claiming = Claiming::new(inner);
        if inner.shutdown.load(Ordering::SeqCst) {
            break;
        }
        match inner.claim(None) {
            Ok(Some(job)) => run_claimed(inner, job, claiming),
            Ok(None) | Err(_) => {
                drop(claiming);
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

/// Runs attempt `job.attempt` of a job this engine claimed, to its end (`claiming` ends once the attempt is
/// registered).
pub(crate) fn run_claimed(inner: &Inner, job: Job, claiming: Claiming<'_>) {
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
    drop(claiming);
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
    let deid = run.deidentification();
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
                let failure = Error::server(
                    Reason::AuditFailed,
                    "the end of the job could not be audited",
                )
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
            Reason::CorruptJob,
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
