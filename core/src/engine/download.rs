//! `download`: an artifact's bytes, decrypted (when the sink encrypts) and verified against the size and SHA-256
//! recorded when it was written, and [`Download::save_to`], the one way every surface saves a download to a file.
//!
//! # Integrity failures and the audit trail
//!
//! The `download` call is audited when it returns (`success`: the artifact was found, its key unwrapped and its
//! stream opened), before any byte is read. A damaged artifact may only show while it is read: a segment that
//! does not authenticate, or a size or SHA-256 that differs from the record at the end. The reader then fails
//! with EXP005 `integrity_violation` (an `io::Error` of kind `InvalidData` carrying the [`Error`]; map it with
//! [`download_error`]) and records one more audit event itself, whoever reads it (the CLI, a binding, a host):
//! action `download.failed`, outcome `failed`, the same actor, scope, target and request id as the `download` event,
//! details `{code, reason, artifact, bytes_read}`. A failure found at open (an altered header, a wrong or
//! missing key) fails the `download` call itself, which is audited as failed as usual.

use super::call::Call;
use super::call::Done;
use super::{attempt, Inner, Session};
use crate::access::{authorize, Permission};
use crate::audit::{Actor, AuditRecord, AuditScope, Outcome};
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::hashing::HashingWriter;
use crate::job::{Artifact, Job, JobState};
use serde_json::json;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// An artifact being downloaded: its record and a reader that decrypts and verifies as it goes.
pub struct Download {
    /// The artifact's record.
    pub artifact: Artifact,
    /// The bytes. Reading fails with an `io::Error` of kind `InvalidData` (EXP005 `integrity_violation` inside;
    /// see [`download_error`]) on a segment that does not authenticate or, at the end, on a size or SHA-256 that
    /// differs from the record; the failure is audited.
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("artifact", &self.artifact)
            .finish_non_exhaustive()
    }
}

/// What [`Download::save_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedArtifact {
    /// The file written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex (equal to the artifact's record).
    pub sha256: String,
}

/// The [`Error`] for a failed read of a download: the integrity error it carries (EXP005 `integrity_violation`),
/// or EXP005 `io_error`.
pub fn download_error(e: &io::Error) -> Error {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return inner.clone();
    }
    if e.kind() == io::ErrorKind::InvalidData {
        return Error::server(
            Reason::IntegrityViolation,
            "the artifact does not match its recorded SHA-256",
        )
        .with_field("artifact");
    }
    Error::io("cannot download the artifact", e)
}

impl Download {
    /// Saves the artifact to `path` (or, when `path` is an existing directory, to the artifact's name in it) and
    /// returns what was written. The bytes go to a temp file beside the target, which is fsynced and renamed
    /// into place only after the whole artifact was read and verified; an existing file is replaced then. On any
    /// failure nothing appears at the target (an existing file is left as it was) and the temp file is removed.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` when the artifact is damaged (audited); EXP001 with field `path` when the
    /// directory does not exist; EXP002 `output_is_directory`; EXP005 for I/O.
    pub fn save_to(self, path: &Path) -> Result<SavedArtifact> {
        self.save(path, true)
    }

    /// As [`Download::save_to`], but never replaces a file: EXP004 `output_exists` (field `path`) when the target
    /// exists, checked before reading and again, atomically, when the verified file is put in place.
    ///
    /// # Errors
    /// As [`Download::save_to`]; EXP004 `output_exists`.
    pub fn save_new(self, path: &Path) -> Result<SavedArtifact> {
        self.save(path, false)
    }

    fn save(mut self, path: &Path, replace: bool) -> Result<SavedArtifact> {
        let exists = || {
            Error::conflict(Reason::OutputExists, "a file exists at the output path")
                .with_field("path")
        };
        let target = if path.is_dir() {
            path.join(&self.artifact.name)
        } else {
            path.to_path_buf()
        };
        if target.is_dir() {
            return Err(Error::validation(
                Reason::OutputIsDirectory,
                "the output path is a directory",
            )
            .with_field("path"));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::not_found("the output directory does not exist").with_field("path"));
        }
        if !replace && fs::symlink_metadata(&target).is_ok() {
            return Err(exists());
        }
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download");
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
            .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))?;
        let tmp = dir.join(format!(".{name}.part-{}", hex(&suffix)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("cannot create the output file", &e))?;
        let result = (|| -> Result<(u64, String)> {
            let mut out = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
            copy(&mut self.reader, &mut out)?;
            let (buf, bytes, sha256) = out.into_parts();
            if bytes != self.artifact.bytes || sha256 != self.artifact.sha256 {
                // Only a reader that does not verify gets here (a `Download` built by hand).
                return Err(Error::server(
                    Reason::IntegrityViolation,
                    "the artifact does not match its recorded SHA-256",
                )
                .with_field("artifact"));
            }
            let file: File = buf
                .into_inner()
                .map_err(|e| Error::io("cannot write the output file", e.error()))?;
            file.sync_all()
                .map_err(|e| Error::io("cannot write the output file", &e))?;
            drop(file);
            if replace {
                fs::rename(&tmp, &target)
                    .map_err(|e| Error::io("cannot move the output file into place", &e))?;
            } else {
                // A hard link fails when the target appeared meanwhile; the temp name is then removed below.
                match fs::hard_link(&tmp, &target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
                    // A file system without hard links: the check above has to do.
                    Err(_) if fs::symlink_metadata(&target).is_err() => {
                        fs::rename(&tmp, &target)
                            .map_err(|e| Error::io("cannot move the output file into place", &e))?
                    }
                    Err(_) => return Err(exists()),
                }
                let _ = fs::remove_file(&tmp);
            }
            sync_dir(&dir).map_err(|e| Error::io("cannot write the output file", &e))?;
            Ok((bytes, sha256))
        })();
        match result {
            Ok((bytes, sha256)) => Ok(SavedArtifact {
                path: target,
                bytes,
                sha256,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Reads the whole artifact into memory (for small artifacts; prefer [`Download::save_to`] or the reader).
    ///
    /// # Errors
    /// As the reader: EXP005 `integrity_violation` (audited) or `io_error`.
    pub fn into_bytes(mut self) -> Result<Vec<u8>> {
        // The record's size is only a hint: the reader stops at the real end.
        let mut buf = Vec::with_capacity(self.artifact.bytes.min(64 << 20) as usize);
        self.reader
            .read_to_end(&mut buf)
            .map_err(|e| download_error(&e))?;
        Ok(buf)
    }
}

/// Copies `from` into `to`; read failures become [`download_error`]s, write failures I/O errors.
fn copy(from: &mut dyn Read, to: &mut dyn Write) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(download_error(&e)),
        };
        to.write_all(&buf[..n])
            .map_err(|e| Error::io("cannot write the output file", &e))?;
    }
}

/// Records an integrity failure found while a download is read (see the module docs).
struct ViolationAudit {
    inner: Arc<Inner>,
    actor: Actor,
    target: String,
    request_id: String,
    artifact: String,
    /// The job's organization and study, as in the `download` event.
    scope: AuditScope,
}

impl ViolationAudit {
    fn record(self, err: &Error, bytes_read: u64) {
        // The read fails whether or not this event is stored: a failing audit store cannot hide the violation.
        let _ = self.inner.audit(
            &AuditRecord {
                actor: self.actor,
                action: "download.failed".into(),
                target: self.target,
                outcome: Outcome::Failed,
                details: json!({"code": err.code().as_str(), "reason": err.reason(),
                    "artifact": self.artifact, "bytes_read": bytes_read}),
                request_id: self.request_id,
            },
            &self.scope,
        );
    }
}

/// Verifies size and SHA-256 of a stream as it is read; passes the inner reader's integrity failures on. The
/// first failure is audited once and repeated by every later read.
struct VerifyingReader {
    inner: Box<dyn Read + Send>,
    ctx: Option<ring::digest::Context>,
    bytes: u64,
    expected_bytes: u64,
    expected_sha256: String,
    audit: Option<ViolationAudit>,
    failed: Option<Error>,
}

impl VerifyingReader {
    fn fail(&mut self, mut err: Error) -> io::Error {
        if let Some(audit) = self.audit.take() {
            // Stamped with the download's request id, as the errors of the call itself are.
            err = err.with_request(&audit.request_id, audit.inner.clock.now());
            audit.record(&err, self.bytes);
        }
        self.failed = Some(err.clone());
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(self.fail(download_error(&e)));
            }
            Err(e) => return Err(e),
        };
        if let Some(ctx) = &mut self.ctx {
            ctx.update(&buf[..n]);
            self.bytes += n as u64;
            if n == 0 || self.bytes > self.expected_bytes {
                let sha = self.ctx.take().map(|c| hex(c.finish().as_ref()));
                if self.bytes != self.expected_bytes
                    || sha.as_deref() != Some(&self.expected_sha256)
                {
                    return Err(self.fail(
                        Error::server(
                            Reason::IntegrityViolation,
                            "the artifact does not match its recorded size and SHA-256",
                        )
                        .with_field("artifact"),
                    ));
                }
            }
        }
        Ok(n)
    }
}

impl Session<'_> {
    /// `download`: streams an artifact of a succeeded job, decrypting it when the sink encrypts and verifying
    /// its size and SHA-256 as it is read (see [`Download`]; save it with [`Download::save_to`]).
    ///
    /// `artifact` names the file (`dm.csv`, `manifest.json`, ...); when `None`, the job's one main artifact (a
    /// data job of several datasets needs a name).
    ///
    /// # Errors
    /// EXP003 (checked again at download), `identifiable_data` for an identifiable job ([`Job::identifiable`])
    /// without `data:identifiable`; EXP001 for an unknown job or artifact; EXP004 `job_not_succeeded`, or
    /// `expired` for an artifact other than `manifest.json` of a job whose retention time has passed (see
    /// [`Session::purge`]); EXP002 `artifact_required`; EXP005 `integrity_violation` when the stored artifact's
    /// header or key does not authenticate (later damage shows while reading), or when the artifact's record
    /// differs from the one in the job's `job.succeeded` audit event; EXP005.
    pub fn download(&self, job_id: Uuid, artifact: Option<&str>) -> Result<Download> {
        self.call("download", format!("job:{job_id}"), |call| {
            let job = self.visible_job(call, job_id, Permission::Download)?;
            if job.identifiable {
                // Identifiable stays identifiable: the permission is checked now, not only at submission.
                require_identifiable(call, &job)?;
            }
            let (job, _) = self.inner.expire_if_due(job, Some(&call.request_id))?;
            match job.state {
                JobState::Succeeded => {}
                // The manifest outlives the other artifacts: it is the record of what was written.
                JobState::Expired if artifact == Some(attempt::MANIFEST_NAME) => {}
                JobState::Expired => {
                    return Err(Error::conflict(
                        Reason::Expired,
                        "the job's artifacts passed their retention time and were deleted; its manifest.json is kept",
                    )
                    .with_field("artifact")
                    .with_detail("state", "expired"))
                }
                other => {
                    return Err(Error::conflict(
                        Reason::JobNotSucceeded,
                        format!("the job is {other}: only a succeeded job has artifacts"),
                    )
                    .with_detail("state", other.as_str()))
                }
            }
            let names: Vec<&str> = job.artifacts.iter().map(|a| a.name.as_str()).collect();
            let chosen = match artifact {
                Some(name) => job.artifact(name).ok_or_else(|| {
                    Error::not_found(format!("the job has no artifact '{name}'"))
                        .with_field("artifact")
                        .with_detail("artifacts", names.clone())
                })?,
                None => {
                    let main: Vec<&Artifact> = job
                        .artifacts
                        .iter()
                        .filter(|a| a.name != attempt::MANIFEST_NAME)
                        .collect();
                    match main.as_slice() {
                        [one] => *one,
                        _ => {
                            return Err(Error::validation(
                                Reason::ArtifactRequired,
                                "the job has several artifacts: name the one to download",
                            )
                            .with_field("artifact")
                            .with_detail("artifacts", names))
                        }
                    }
                }
            };
            check_succeeded_event(self.inner, &job, chosen)?;
            let target = format!("job:{}", job.id);
            let reader = self
                .inner
                .sink
                .open(&attempt::artifact_path(&job, &chosen.name))
                .map_err(|e| {
                    if e.reason() == "integrity_violation" {
                        e.with_detail("artifact", chosen.name.clone())
                    } else {
                        e
                    }
                })?;
            let audit = ViolationAudit {
                inner: self.inner.clone(),
                actor: call.actor(),
                target: target.clone(),
                request_id: call.request_id.clone(),
                artifact: chosen.name.clone(),
                scope: AuditScope::new(job.org.clone(), Some(&job.study)),
            };
            Ok(Done {
                target,
                details: json!({"artifact": chosen.name, "bytes": chosen.bytes, "sha256": chosen.sha256}),
                value: Download {
                    reader: Box::new(VerifyingReader {
                        inner: reader,
                        ctx: Some(ring::digest::Context::new(&ring::digest::SHA256)),
                        bytes: 0,
                        expected_bytes: chosen.bytes,
                        expected_sha256: chosen.sha256.clone(),
                        audit: Some(audit),
                        failed: None,
                    }),
                    artifact: chosen.clone(),
                },
            })
        })
    }
}

/// EXP003 `identifiable_data` unless the caller holds `data:identifiable` on the job's study.
fn require_identifiable(call: &Call<'_>, job: &Job) -> Result<()> {
    authorize(
        call.principal(),
        Permission::IdentifiableData,
        &job.org,
        Some(&job.study),
    )
    .map_err(|_| {
        Error::unauthorized(
            Reason::IdentifiableData,
            "the job holds identifiable data: this needs the permission data:identifiable",
        )
        .with_field("job")
        .with_detail("requires", "data:identifiable")
    })
}

/// Checks the artifact's record (name, size, SHA-256) against the job's `job.succeeded` audit event, read alone
/// through the store by the sequence number the job recorded when it committed: an edited job row cannot vouch
/// for an edited artifact. The event must be the job's `job.succeeded`, with a hash that matches its content.
/// Jobs that succeeded before the sequence number was recorded have none to check.
///
/// # Errors
/// EXP005 `integrity_violation` (`details.check`: `succeeded_event`) when the event is missing, is another
/// event, or records another artifact; the store's errors.
fn check_succeeded_event(inner: &Inner, job: &Job, artifact: &Artifact) -> Result<()> {
    let Some(seq) = job.succeeded_seq else {
        return Ok(());
    };
    let violation = |message: &str| {
        Error::server(Reason::IntegrityViolation, message.to_string())
            .with_field("artifact")
            .with_detail("check", "succeeded_event")
            .with_detail("seq", seq)
            .with_detail("artifact", artifact.name.clone())
    };
    let events = inner.store.audit_read(seq, 1)?;
    let Some(event) = events.first().filter(|e| e.seq == seq) else {
        return Err(violation(
            "the job's success is missing from the audit trail",
        ));
    };
    if event.action != "job.succeeded"
        || event.target != format!("job:{}", job.id)
        || event.hash != event.compute_hash()
    {
        return Err(violation(
            "the audit event the job records is not its own unaltered job.succeeded event",
        ));
    }
    let recorded = event.details["artifacts"].as_array().and_then(|list| {
        list.iter()
            .find(|a| a["name"].as_str() == Some(artifact.name.as_str()))
    });
    match recorded {
        Some(a)
            if a["sha256"].as_str() == Some(artifact.sha256.as_str())
                && a["bytes"].as_u64() == Some(artifact.bytes) =>
        {
            Ok(())
        }
        _ => Err(violation(
            "the artifact's record differs from the one in the job's job.succeeded audit event",
        )),
    }
}

/// What a view of jobs withheld from its caller (see [`Session::withhold_requests`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Withheld {
    /// Requests of identifiable jobs, withheld whole.
    identifiable: usize,
    /// Requests whose literals stayed sealed (see `literals`).
    literals: usize,
}

impl Session<'_> {
    /// Shows each of `jobs` as its caller may see it: the request (and idempotency key) of an identifiable job
    /// ([`Job::identifiable`]) is withheld whole from a caller without `data:identifiable` on its study, and
    /// becomes `{"withheld": "identifiable_data"}`; the literals of a request (filter values, idempotency key) are
    /// put back only for a caller who could have made the request, the permission of the job's kind on its study,
    /// and stay `{"withheld": "request_literal"}` for anyone else (see `literals`). State, progress and artifacts
    /// stay visible. Returns what it withheld, which the audit event of a read call records
    /// ([`withheld_details`]): every call is audited once.
    ///
    /// # Errors
    /// The errors of opening sealed literals (EXP005).
    pub(super) fn withhold_requests(&self, call: &Call<'_>, jobs: &mut [Job]) -> Result<Withheld> {
        let mut withheld = Withheld::default();
        for job in jobs.iter_mut() {
            if job.identifiable && require_identifiable(call, job).is_err() {
                job.request = json!({"withheld": "identifiable_data"});
                job.idempotency_key = None;
                job.literals = None;
                withheld.identifiable += 1;
                continue;
            }
            if job.literals.is_none() {
                continue;
            }
            let may_ask = authorize(
                call.principal(),
                job.kind.permission(),
                &job.org,
                Some(&job.study),
            )
            .is_ok();
            if may_ask {
                super::literals::reveal(self.inner, job)?;
            } else if super::literals::conceal(job) {
                withheld.literals += 1;
            }
        }
        Ok(withheld)
    }
}

/// The details of a job view's audit event with what it withheld, if anything:
/// `"requests_withheld": {"reason": "identifiable_data", "jobs": N}` and `"literals_withheld": {"reason":
/// "request_literal", "jobs": N}`.
pub(super) fn withheld_details(
    mut details: serde_json::Value,
    withheld: Withheld,
) -> serde_json::Value {
    if withheld.identifiable > 0 {
        details["requests_withheld"] =
            json!({"reason": "identifiable_data", "jobs": withheld.identifiable});
    }
    if withheld.literals > 0 {
        details["literals_withheld"] =
            json!({"reason": super::literals::MARKER, "jobs": withheld.literals});
    }
    details
}
