//! Running jobs: the worker loop, encoding datasets into artifacts, bulk packages, documents and manifests.

use super::{compute, Inner, ENGINE_VERSION};
use crate::error::{Error, Result};
use crate::format::{Format, FormatOptions};
use crate::job::{Artifact, Job, JobKind, JobState};
use crate::manifest::{Manifest, ManifestEntry, ManifestPrincipal, MANIFEST_VERSION};
use crate::request::{BulkExportRequest, DashboardRequest, ExportDataRequest, ReportRequest};
use crate::sink::{HashingWriter, SinkWriter};
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
enum Stop {
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
    inner: &'a Inner,
    job: Job,
    cancel: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    rows: u64,
    last_save: Instant,
    /// Artifacts completed so far, deleted if the job does not succeed.
    completed: Vec<String>,
}

impl<'a> Running<'a> {
    fn check(&mut self) -> Result<(), Stop> {
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
    fn save_progress(&mut self) -> Result<(), Stop> {
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
struct Counting<'w> {
    inner: &'w mut (dyn Write + Send),
    bytes: Arc<AtomicU64>,
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
    };
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

/// Records the outcome of a job in the store and the audit trail.
fn finish(run: &mut Running<'_>, result: Result<Vec<Artifact>, Stop>) {
    let inner = run.inner;
    let (state, artifacts, error) = match result {
        Ok(artifacts) => (JobState::Succeeded, artifacts, None),
        Err(stop) => {
            for path in run.completed.drain(..) {
                let _ = inner.sink.delete(&path);
            }
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
    // Retry on version conflicts (a cancel request may have bumped the version).
    for _ in 0..10 {
        let mut job = match inner.jobs.get(run.job.id) {
            Ok(j) => j,
            Err(_) => return,
        };
        let mut state = state;
        if state == JobState::Succeeded && job.cancel_requested {
            // Cancelled after the last batch but before completion: honour the cancel.
            for a in &artifacts {
                let _ = inner.sink.delete(&artifact_path(&job, &a.name));
            }
            state = JobState::Cancelled;
        }
        job.progress = run.job.progress;
        job.progress.rows_written = run.rows;
        job.progress.bytes_written = run.bytes.load(Ordering::Relaxed);
        if state == JobState::Succeeded {
            job.artifacts = artifacts.clone();
            job.progress.datasets_done = job.progress.datasets_total;
        }
        job.error = error.as_ref().map(Error::to_object);
        if job.transition(state, inner.clock.now()).is_err() {
            return;
        }
        match inner.jobs.update(&job) {
            Ok(j) => {
                let mut details = json!({"state": state, "rows": j.progress.rows_written,
                    "bytes": j.progress.bytes_written});
                if let Some(e) = &error {
                    details["code"] = json!(e.code().as_str());
                    details["reason"] = json!(e.reason());
                }
                if state == JobState::Succeeded {
                    details["artifacts"] = json!(j
                        .artifacts
                        .iter()
                        .map(|a| json!({"name": a.name, "sha256": a.sha256, "bytes": a.bytes}))
                        .collect::<Vec<_>>());
                }
                let _ = inner.audit_system(&format!("job.{}", state.as_str()), &j, details);
                return;
            }
            Err(e) if e.reason() == "version_conflict" => continue,
            Err(_) => return,
        }
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

fn parse_request<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T> {
    serde_json::from_value(job.request.clone()).map_err(|_| {
        Error::server(
            "corrupt_job",
            "the stored request of the job cannot be read",
        )
    })
}

fn execute(run: &mut Running<'_>) -> Result<Vec<Artifact>, Stop> {
    let inner = run.inner;
    let format = inner.formats.get(&run.job.format)?.clone();
    let mut entries = Vec::new();
    match run.job.kind {
        JobKind::Data => {
            let req: ExportDataRequest = parse_request(&run.job)?;
            for sel in &req.datasets {
                let name = format!(
                    "{}.{}",
                    sel.name().to_ascii_lowercase(),
                    format.info().extension
                );
                let path = artifact_path(&run.job, &name);
                let mut writer = inner.sink.create(&path)?;
                let counts = match encode_dataset(
                    run,
                    format.as_ref(),
                    &req.study,
                    sel,
                    &req.options,
                    &mut *writer,
                ) {
                    Ok(c) => c,
                    Err(e) => {
                        writer.abort();
                        return Err(e);
                    }
                };
                let receipt = writer.complete()?;
                run.completed.push(path);
                entries.push(ManifestEntry {
                    path: name,
                    media_type: format.info().media_type.to_string(),
                    bytes: receipt.bytes,
                    sha256: receipt.sha256,
                    rows: Some(counts.0),
                    source_rows: Some(counts.1),
                    dataset: Some(sel.name().to_string()),
                });
                run.job.progress.datasets_done += 1;
                run.save_progress()?;
            }
        }
        JobKind::Bulk => {
            let req: BulkExportRequest = parse_request(&run.job)?;
            entries.push(write_package(run, format.as_ref(), &req)?);
        }
        JobKind::Report | JobKind::Dashboard => {
            let (doc, options) = if run.job.kind == JobKind::Report {
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
    let manifest = manifest_of(run, entries);
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

fn manifest_of(run: &Running<'_>, files: Vec<ManifestEntry>) -> Manifest {
    let job = &run.job;
    Manifest {
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
        deidentification: None,
        files,
        signatures: vec![],
    }
}

/// Encodes one dataset selection into `out`; returns (rows written, rows read from the source).
fn encode_dataset(
    run: &mut Running<'_>,
    format: &dyn Format,
    study: &str,
    sel: &crate::request::DatasetSelection,
    options: &FormatOptions,
    out: &mut (dyn Write + Send),
) -> Result<(u64, u64), Stop> {
    let inner = run.inner;
    let stream = inner.scan(study, sel.name(), sel.columns(), sel.filters())?;
    let schema = stream.schema().clone();
    let meta = stream.meta();
    let mut counted = Counting {
        inner: out,
        bytes: run.bytes.clone(),
    };
    let mut encoder = format.encoder(&schema, &meta, options, &mut counted)?;
    let mut source_rows = 0u64;
    for batch in stream {
        run.check()?;
        let batch = batch?;
        source_rows += batch.num_rows() as u64;
        encoder.write(&batch)?;
        run.add_rows(batch.num_rows() as u64);
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
    Ok((summary.rows, source_rows))
}

/// Writes the bulk zip package: one file per dataset under `<study>/`, and `manifest.json` at the root.
fn write_package(
    run: &mut Running<'_>,
    format: &dyn Format,
    req: &BulkExportRequest,
) -> Result<ManifestEntry, Stop> {
    let inner = run.inner;
    let name = format!("{}_package.zip", req.study.to_ascii_lowercase());
    let path = artifact_path(&run.job, &name);
    let mut writer: Box<dyn SinkWriter> = inner.sink.create(&path)?;
    let result = (|| -> Result<(), Stop> {
        let bytes = run.bytes.clone();
        let mut zip = zip::ZipWriter::new_stream(Counting {
            inner: &mut *writer,
            bytes,
        });
        let t = run.job.created_at;
        use chrono::{Datelike, Timelike};
        let mtime = zip::DateTime::from_date_and_time(
            t.year().clamp(1980, 2107) as u16,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
        )
        .unwrap_or_default();
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(mtime)
            .large_file(true);
        let zerr = |e: zip::result::ZipError| {
            Stop::Failed(Error::server("package_error", format!("zip: {e}")))
        };
        let mut files = Vec::new();
        for sel in &req.datasets {
            let file = format!(
                "{}/{}.{}",
                req.study,
                sel.name().to_ascii_lowercase(),
                format.info().extension
            );
            zip.start_file(file.as_str(), opts).map_err(zerr)?;
            let mut hashing = HashingWriter::new(&mut zip);
            let counts = encode_dataset(run, format, &req.study, sel, &req.options, &mut hashing)?;
            let (_, bytes, sha256) = hashing.into_parts();
            files.push(ManifestEntry {
                path: file,
                media_type: format.info().media_type.to_string(),
                bytes,
                sha256,
                rows: Some(counts.0),
                source_rows: Some(counts.1),
                dataset: Some(sel.name().to_string()),
            });
            run.job.progress.datasets_done += 1;
            run.save_progress()?;
        }
        let manifest = manifest_of(run, files);
        zip.start_file(MANIFEST_NAME, opts).map_err(zerr)?;
        zip.write_all(&manifest.to_bytes())
            .map_err(|e| Error::io("cannot write the package manifest", &e))?;
        zip.finish().map_err(zerr)?;
        Ok(())
    })();
    if let Err(e) = result {
        writer.abort();
        return Err(e);
    }
    let receipt = writer.complete()?;
    run.completed.push(path);
    Ok(ManifestEntry {
        path: name,
        media_type: "application/zip".into(),
        bytes: receipt.bytes,
        sha256: receipt.sha256,
        rows: Some(run.rows),
        source_rows: None,
        dataset: None,
    })
}
