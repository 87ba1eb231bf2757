//! One-shot conversion: a data file, or any batch stream, written to one output file in a format named by id or
//! chosen from the output's extension.
//!
//! `trialport convert`, Python's `trialport.write` and C's `tp_convert` are [`convert`] and [`write()`]; the output
//! is written by [`OutputFile`] (temp file beside the target, fsync, rename, fsync of the directory), so nothing
//! is visible at the output until it is complete, and nothing is left behind on error. The SHA-256 and the writes
//! to the file run on two threads of their own (one hashes a chunk while the other writes the one before), beside
//! the encoder.
//!
//! [`OutputFile`] is the one way a file is written at a path the user names: every `-o` of the CLI (`convert`,
//! `download`, `audit export`, `audit checkpoint`, `signing public-key`), Python's `write` and downloads, and the C
//! library's. Its rules:
//!
//! * An existing target that is not a regular file once symlinks are followed (a FIFO, a device such as
//!   `/dev/null`, a socket) is refused with EXP002 `not_a_regular_file`, before anything is written and again just
//!   before the rename, so that a rename never replaces a device node or a FIFO; a directory is
//!   `output_is_directory`.
//! * The temp file is created with mode 0600 (owner only): it may hold decrypted patient data. A new output keeps
//!   that mode; a replaced file's mode is carried over to its replacement.
//! * The temp file is named `.NAME.partial-XXXXXXXXXXXXXXXX` (16 random hex digits) beside the target `NAME`, and
//!   holds an exclusive lock (`flock`) while it is written. A run killed before its commit leaves it behind; the
//!   next [`OutputFile::create`] for the same target removes it ([`sweep_stale`]).
//!
//! ```no_run
//! use std::path::Path;
//! use trialport_formats::convert::{convert, ConvertOptions};
//!
//! let options = ConvertOptions { dataset: Some("DM".into()), ..ConvertOptions::default() };
//! let receipt = convert(Path::new("dm.csv"), Path::new("dm.xpt"), &options)?;
//! println!("{} rows, sha256 {}", receipt.rows, receipt.sha256);
//! # Ok::<(), trialport_core::Error>(())
//! ```

use crate::read;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use trialport_core::error::Reason;
use trialport_core::format::{Format, FormatOptions, FormatRegistry};
use trialport_core::fsutil::sync_dir;
use trialport_core::hashing::HashingWriter;
use trialport_core::meta::DatasetMeta;
use trialport_core::source::BatchStream;
use trialport_core::{Error, Result};

/// What a conversion does besides reading and writing: the output format, its options, metadata, and whether an
/// existing output may be replaced. As JSON (the C library's `options_json`), every member is optional:
/// `{"format": "xpt", "options": {"version": "5"}, "dataset": "DM", "label": "Demographics", "meta": {...},
/// "overwrite": false, "read": {"csv_max_field_bytes": 4194304}}` (`to` is accepted for `format`, as the CLI's
/// `--to`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvertOptions {
    /// Output format id. Default: from the output's extension ([`output_format`]).
    #[serde(alias = "to")]
    pub format: Option<String>,
    /// Format options, as the format lists them (`trialport formats`). Default: none.
    pub options: FormatOptions,
    /// A metadata document (Dataset-JSON `columns` shape plus `privacy`) layered over the input's own metadata.
    /// Default: none.
    pub meta: Option<DatasetMeta>,
    /// Dataset name stored with the data (e.g. `DM`), over `meta`'s. Default: the input's (the file stem).
    pub dataset: Option<String>,
    /// Dataset label stored with the data, over `meta`'s. Default: the input's.
    pub label: Option<String>,
    /// Whether an existing output file is replaced (atomically). Default `false`: it is EXP004 `artifact_exists`.
    pub overwrite: bool,
    /// How the input is read ([`read::ReadOptions`]: CSV field and record limits, XPT padding). Default: the
    /// documented defaults.
    pub read: read::ReadOptions,
}

impl ConvertOptions {
    /// The metadata to layer over the input's: `meta` with `dataset` and `label` over it.
    fn effective_meta(&self) -> DatasetMeta {
        let mut meta = self.meta.clone().unwrap_or_default();
        if let Some(name) = &self.dataset {
            meta.name.clone_from(name);
        }
        if let Some(label) = &self.label {
            meta.label = Some(label.clone());
        }
        meta
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The output format id.
    pub format: String,
    /// Rows written.
    pub rows: u64,
    /// Size of the output in bytes.
    pub bytes: u64,
    /// SHA-256 of the output, lowercase hex.
    pub sha256: String,
}

/// The output format: the format `id` when given, else the one of the output's extension. The documented mapping
/// comes first (`.json` is `json`, `.ndjson`/`.jsonl` are `ndjson`, `.arrow`/`.ipc` are `arrow-ipc`, `.dsjc` is
/// `dataset-json`), then any registered format with that extension.
///
/// # Errors
/// EXP001 with field `format` for an unknown `id`; EXP002 `unknown_output_format` with field `format` for a
/// format that writes no datasets (`pdf`, `html`), and when the
/// extension names no format (or two). The messages name what is unsupported and list the formats that write
/// datasets, with their extensions (`details.available`: every format id).
pub fn output_format(
    registry: &FormatRegistry,
    id: Option<&str>,
    output: &Path,
) -> Result<Arc<dyn Format>> {
    let format = chosen_format(registry, id, output)?;
    let info = format.info();
    if !info
        .capabilities
        .contains(&trialport_core::format::Capability::Data)
    {
        return Err(Error::validation(
            Reason::UnknownOutputFormat,
            format!(
                "{} writes reports and dashboards, not datasets: render one with 'trialport export report' or \
                 'trialport export dashboard'. {}",
                info.id,
                data_formats(registry)
            ),
        )
        .with_field("format")
        .with_detail("available", registry.ids()));
    }
    Ok(format)
}

/// The format `id` names, else the one of `output`'s extension (see [`output_format`]).
fn chosen_format(
    registry: &FormatRegistry,
    id: Option<&str>,
    output: &Path,
) -> Result<Arc<dyn Format>> {
    if let Some(id) = id {
        return match registry.get(id) {
            Ok(f) => Ok(f.clone()),
            Err(_) => Err(Error::not_found(format!(
                "'{id}' is not supported here: no format of this build has that id. {}",
                data_formats(registry)
            ))
            .with_field("format")
            .with_detail("available", registry.ids())),
        };
    }
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let documented = match ext.as_str() {
        "csv" => Some("csv"),
        "tsv" => Some("tsv"),
        "json" => Some("json"),
        "ndjson" | "jsonl" => Some("ndjson"),
        "parquet" => Some("parquet"),
        "arrow" | "ipc" => Some("arrow-ipc"),
        "xlsx" => Some("xlsx"),
        "xpt" => Some("xpt"),
        "dsjc" => Some("dataset-json"),
        _ => None,
    };
    if let Some(f) = documented.and_then(|id| registry.get(id).ok()) {
        return Ok(f.clone());
    }
    if !ext.is_empty() {
        if let Some(f) = registry.by_extension(&ext) {
            return Ok(f.clone());
        }
    }
    let sharing: Vec<&str> = registry
        .infos()
        .into_iter()
        .filter(|f| !ext.is_empty() && f.extension == ext)
        .map(|f| f.id)
        .collect();
    let why = match ext.as_str() {
        "" => "the output has no file extension to tell its format by: name the format".to_string(),
        "pdf" => {
            "pdf is not supported here: no format of this build writes '.pdf' files (this build has no pdf \
             feature)"
                .to_string()
        }
        _ if sharing.len() > 1 => format!(
            "'.{ext}' files are written by {}: name the one meant",
            sharing.join(" and ")
        ),
        _ => format!("'.{ext}' is not supported here: no format of this build writes such files"),
    };
    Err(Error::validation(
        Reason::UnknownOutputFormat,
        format!("{why}. {}", data_formats(registry)),
    )
    .with_field("format")
    .with_detail("extension", ext.as_str())
    .with_detail("available", registry.ids()))
}

/// "Formats that write datasets: csv (.csv), ..." from the registry.
fn data_formats(registry: &FormatRegistry) -> String {
    let list: Vec<String> = registry
        .infos()
        .into_iter()
        .filter(|f| {
            f.capabilities
                .contains(&trialport_core::format::Capability::Data)
        })
        .map(|f| match f.id {
            "dataset-json" => "dataset-json (.dsjc; .json and .ndjson when named)".to_string(),
            "arrow-ipc" => "arrow-ipc (.arrow, .ipc)".to_string(),
            "ndjson" => "ndjson (.ndjson, .jsonl)".to_string(),
            id => format!("{id} (.{})", f.extension),
        })
        .collect();
    format!("Formats that write datasets: {}", list.join(", "))
}

/// Converts the file `input` (any format [`read::open`] reads, by its extension) to `output`.
///
/// # Errors
/// EXP001 for a missing input or an unknown format; EXP002 for a bad option, bad metadata, an unknown output
/// extension or data the output format cannot represent; EXP004 `artifact_exists` when the output exists and
/// `overwrite` is off; EXP005 for I/O. Nothing is left at the output on error.
pub fn convert(input: &Path, output: &Path, options: &ConvertOptions) -> Result<Receipt> {
    let registry = crate::default_formats();
    let format = output_format(&registry, options.format.as_deref(), output)?;
    format.check_options(&options.options)?;
    let stream = read::open_with_options(input, None, &options.read).map_err(|e| {
        // The input's format comes from its extension alone here: it is the input that is wrong.
        if e.field() == Some("format") {
            e.with_field("input")
        } else {
            e
        }
    })?;
    write_as(format.as_ref(), stream, output, options)
}

/// Writes `stream` to `output` (the one-shot write of the bindings), with the format and metadata of `options`.
///
/// # Errors
/// As [`convert`], without the input's.
pub fn write(stream: BatchStream, output: &Path, options: &ConvertOptions) -> Result<Receipt> {
    let registry = crate::default_formats();
    let format = output_format(&registry, options.format.as_deref(), output)?;
    format.check_options(&options.options)?;
    write_as(format.as_ref(), stream, output, options)
}

fn write_as(
    format: &dyn Format,
    stream: BatchStream,
    output: &Path,
    options: &ConvertOptions,
) -> Result<Receipt> {
    let stream = stream.with_meta(&options.effective_meta())?;
    let schema = stream.schema().clone();
    let meta = stream.meta();
    let format_options = options_for_output(format, output, &options.options);
    let mut file = OutputFile::create(output, options.overwrite)?;
    let summary = {
        let mut encoder = format.encoder(&schema, &meta, &format_options, &mut file)?;
        for batch in stream {
            encoder.write(&batch?)?;
        }
        encoder.finish()?
    };
    let written = file.commit()?;
    Ok(Receipt {
        format: format.info().id.to_string(),
        rows: summary.rows,
        bytes: written.bytes,
        sha256: written.sha256,
    })
}

/// The format options for writing `output`: `options`, plus what the file name says when they do not (a Dataset-JSON
/// output named `.dsjc` or `.ndjson` is written in that form).
fn options_for_output(
    format: &dyn Format,
    output: &Path,
    options: &FormatOptions,
) -> FormatOptions {
    let mut options = options.clone();
    // An XPT header states when the file was created: now, or SOURCE_DATE_EPOCH for reproducible output, unless
    // the caller says (other formats keep their documented defaults).
    if format.info().id == "xpt" {
        options =
            options.created_by_default(&format.info(), trialport_core::clock::creation_time());
    }
    if format.info().id == "dataset-json" && options.get("form").is_none() {
        let form = output
            .extension()
            .and_then(|e| e.to_str())
            .and_then(crate::dataset_json::form_for_extension);
        if let Some(form) = form {
            options = options.with("form", form.as_str());
        }
    }
    options
}

/// Copies `reader` to the file `path` through an [`OutputFile`]: a verified download saved to disk. A read that
/// fails with `InvalidData` (the engine's verifying reader at a SHA-256 mismatch) leaves nothing behind.
///
/// # Errors
/// EXP005 `integrity_violation` when the bytes do not match their recorded SHA-256; as [`OutputFile::create`] for
/// the path; EXP005 for other I/O.
pub fn copy_to_file(reader: impl Read, path: &Path, overwrite: bool) -> Result<Written> {
    copy_to_file_expecting(reader, path, overwrite, None)
}

/// As [`copy_to_file`], and the file is put in place only when what was read has the size and SHA-256 of
/// `expected` (a download's record): a check of its own, whatever the reader verifies.
///
/// # Errors
/// As [`copy_to_file`]; EXP005 `integrity_violation` (field `artifact`) when the size or SHA-256 differ.
pub fn copy_to_file_expecting(
    mut reader: impl Read,
    path: &Path,
    overwrite: bool,
    expected: Option<&Written>,
) -> Result<Written> {
    let mut file = OutputFile::create(path, overwrite)?;
    io::copy(&mut reader, &mut file).map_err(|e| download_error(&e))?;
    file.commit_if(|written| match expected {
        Some(want) if want != written => Err(Error::server(
            Reason::IntegrityViolation,
            "the artifact does not match its recorded SHA-256",
        )
        .with_field("artifact")),
        _ => Ok(()),
    })
}

/// The error of a failed read of a verified download: the engine's error when the reader carries one (EXP005
/// `integrity_violation`, already audited), else `InvalidData` (a SHA-256 mismatch) is EXP005
/// `integrity_violation` with field `artifact`, anything else an I/O error.
pub fn download_error(e: &io::Error) -> Error {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return inner.clone();
    }
    if e.kind() == io::ErrorKind::InvalidData {
        Error::server(
            Reason::IntegrityViolation,
            "the artifact does not match its recorded SHA-256",
        )
        .with_field("artifact")
    } else {
        Error::io("cannot download the artifact", e)
    }
}

/// What a committed [`OutputFile`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Bytes handed to the output threads at a time.
const PIPE_CHUNK: usize = 1 << 20;
/// Chunks queued before each output thread (memory: about twice this many [`PIPE_CHUNK`]s more).
const PIPE_DEPTH: usize = 3;
/// Bytes after which the writer thread flushes the file's data to disk (`fdatasync`) while the encoder goes on, so
/// that the fsync of [`OutputFile::commit`] finds little left to write instead of the whole file.
const SYNC_EVERY: u64 = 32 << 20;

/// The threads of an [`OutputFile`], one after the other: the first hashes the chunks it receives and passes them
/// on; the second writes them, flushes the data to disk every [`SYNC_EVERY`] bytes, and sends each emptied buffer
/// back for reuse. So hashing and writing overlap. The writer stops at the first I/O error, which `join` returns.
struct Pipe {
    buf: Vec<u8>,
    to_writer: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    hasher: Option<JoinHandle<HashingWriter<io::Sink>>>,
    writer: Option<JoinHandle<io::Result<File>>>,
}

impl Pipe {
    fn start(file: File) -> io::Result<Pipe> {
        let (to_writer, chunks) = mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let (to_file, hashed) = mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let (give_back, spare) = mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH + 1);
        let writer = std::thread::Builder::new()
            .name("trialport-output".into())
            .spawn(move || {
                let mut file = file;
                let (mut written, mut synced) = (0u64, 0u64);
                for mut chunk in hashed {
                    file.write_all(&chunk)?;
                    written += chunk.len() as u64;
                    if written - synced >= SYNC_EVERY {
                        file.sync_data()?;
                        synced = written;
                    }
                    chunk.clear();
                    // The encoder may have enough buffers already; then this one is dropped.
                    let _ = give_back.try_send(chunk);
                }
                Ok(file)
            })?;
        let hasher = std::thread::Builder::new()
            .name("trialport-sha256".into())
            .spawn(move || {
                let mut hash = HashingWriter::new(io::sink());
                for chunk in chunks {
                    // Writing to a sink cannot fail.
                    let _ = hash.write_all(&chunk);
                    if to_file.send(chunk).is_err() {
                        // The writer stopped: its error is what `join` reports.
                        break;
                    }
                }
                hash
            });
        let hasher = match hasher {
            Ok(h) => h,
            Err(e) => {
                // Its channel is closed: the writer ends.
                let _ = writer.join();
                return Err(e);
            }
        };
        Ok(Pipe {
            buf: Vec::with_capacity(PIPE_CHUNK),
            to_writer: Some(to_writer),
            spare,
            hasher: Some(hasher),
            writer: Some(writer),
        })
    }

    /// Hands the buffered bytes to the output threads.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIPE_CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        let sent = match &self.to_writer {
            Some(tx) => tx.send(chunk).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The writer stopped: its error says why.
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the output writer stopped")))
        }
    }

    /// Stops the threads after the bytes sent, returning the file with the count and hash.
    fn join(&mut self) -> io::Result<(File, u64, String)> {
        self.to_writer = None;
        let hash = self.hasher.take().map(|h| h.join());
        let file = match self.writer.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the output writer failed")))?,
            None => return Err(io::Error::other("the output writer stopped")),
        };
        match hash {
            Some(Ok(hash)) => {
                let (_, bytes, sha256) = hash.into_parts();
                Ok((file, bytes, sha256))
            }
            _ => Err(io::Error::other("the output hasher failed")),
        }
    }

    /// Sends what is buffered and waits for the threads.
    fn finish(mut self) -> io::Result<(File, u64, String)> {
        self.send()?;
        self.join()
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PIPE_CHUNK.saturating_sub(self.buf.len()).max(1);
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= PIPE_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A file written atomically: bytes go to a temp file beside the target (hashed and written on threads of their own,
/// at most a few MiB behind); [`OutputFile::commit`] fsyncs it, moves it into place and fsyncs the directory.
/// Dropping it uncommitted (an error anywhere) removes the temp file. See the module docs for the rules it keeps
/// (non-regular targets refused, mode 0600, stale temp files swept).
pub struct OutputFile {
    target: PathBuf,
    tmp: PathBuf,
    overwrite: bool,
    file: Option<Pipe>,
    /// A second handle on the temp file: it holds the lock that tells [`sweep_stale`] the file is in use, until
    /// the file is renamed or removed.
    guard: Option<File>,
}

impl std::fmt::Debug for OutputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputFile")
            .field("overwrite", &self.overwrite)
            .finish_non_exhaustive()
    }
}

fn exists_error() -> Error {
    Error::conflict(Reason::ArtifactExists, "the output file already exists").with_field("output")
}

/// The infix of [`OutputFile`]'s temp files: `.NAME.partial-` and 16 hex digits.
const PARTIAL: &str = ".partial-";

/// Temp files of the lock-less naming of earlier versions ([`sweep_stale`]) are removed only once they have not
/// changed for this long: no live writer of a file leaves it untouched for minutes.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What an existing `target` is: `Ok(None)` when nothing (or a dangling symlink) is there, its metadata (symlinks
/// followed) when it is a regular file.
///
/// # Errors
/// EXP002 `output_is_directory` or `not_a_regular_file` (field `output`); EXP005 for I/O.
fn existing_target(target: &Path) -> Result<Option<fs::Metadata>> {
    match fs::metadata(target) {
        Ok(m) if m.is_dir() => Err(Error::validation(
            Reason::OutputIsDirectory,
            "the output path is a directory",
        )
        .with_field("output")),
        Ok(m) => {
            read::check_regular(&m.file_type(), "output")?;
            Ok(Some(m))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot check the output path", &e)),
    }
}

impl OutputFile {
    /// Starts writing `target`, whose directory must exist. With `overwrite`, an existing file is replaced at
    /// commit; without, an existing file is refused now and at commit. Stale temp files of earlier runs for the
    /// same target are removed first ([`sweep_stale`]).
    ///
    /// # Errors
    /// EXP001 with field `output` when the directory does not exist; EXP002 `output_is_directory`,
    /// `not_a_regular_file` (an existing FIFO, device or socket, symlinks followed) or `invalid_path`; EXP004
    /// `artifact_exists`; EXP005 for I/O.
    pub fn create(target: &Path, overwrite: bool) -> Result<Self> {
        let name = target.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Error::validation(Reason::InvalidPath, "the output path names no file")
                .with_field("output")
        })?;
        let dir = parent_of(target);
        if !dir.is_dir() {
            return Err(
                Error::not_found("the output directory does not exist").with_field("output")
            );
        }
        if existing_target(target)?.is_some() && !overwrite {
            return Err(exists_error());
        }
        sweep_stale(dir, name);
        let (tmp, file, guard) = create_locked_temp(dir, name)
            .map_err(|e| Error::io("cannot create the output file", &e))?;
        let pipe = match Pipe::start(file) {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(Error::io("cannot start writing the output file", &e));
            }
        };
        Ok(OutputFile {
            target: target.to_path_buf(),
            tmp,
            overwrite,
            file: Some(pipe),
            guard,
        })
    }

    /// Flushes and fsyncs the temp file, moves it into place and fsyncs the directory.
    ///
    /// # Errors
    /// EXP004 `artifact_exists` when the target appeared meanwhile (without `overwrite`); EXP002
    /// `not_a_regular_file` when something other than a regular file appeared there; EXP005 for I/O. The target is
    /// then unchanged and the temp file removed.
    pub fn commit(self) -> Result<Written> {
        self.commit_if(|_| Ok(()))
    }

    /// As [`OutputFile::commit`], but the file is put in place only when `check` accepts what was written (its
    /// size and SHA-256); otherwise the temp file is removed and `check`'s error returned.
    ///
    /// # Errors
    /// As [`OutputFile::commit`], and `check`'s.
    pub fn commit_if(mut self, check: impl FnOnce(&Written) -> Result<()>) -> Result<Written> {
        let Some(pipe) = self.file.take() else {
            return Err(Error::server(Reason::Closed, "the output file is closed"));
        };
        let io_error = |e: io::Error| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                exists_error()
            } else {
                Error::io("cannot complete the output file", &e)
            }
        };
        let result = (|| -> Result<Written> {
            let (file, bytes, sha256) = pipe.finish().map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
            drop(file);
            let written = Written { bytes, sha256 };
            check(&written)?;
            // Checked again at the last moment: a FIFO or device put there meanwhile must not be replaced.
            let existing = existing_target(&self.target)?;
            if let (Some(m), Some(guard)) = (&existing, &self.guard) {
                // A replaced file keeps its permissions (who may read it stays as its owner chose).
                guard.set_permissions(m.permissions()).map_err(io_error)?;
            }
            if self.overwrite {
                fs::rename(&self.tmp, &self.target).map_err(io_error)?;
            } else {
                // A hard link never replaces an existing file, unlike rename.
                match fs::hard_link(&self.tmp, &self.target) {
                    Ok(()) => fs::remove_file(&self.tmp).map_err(io_error)?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(exists_error())
                    }
                    // File systems without hard links: check, then rename.
                    Err(_) if fs::symlink_metadata(&self.target).is_ok() => {
                        return Err(exists_error())
                    }
                    Err(_) => fs::rename(&self.tmp, &self.target).map_err(io_error)?,
                }
            }
            sync_dir(parent_of(&self.target)).map_err(io_error)?;
            Ok(written)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        // The lock goes with the last handle, once the temp name is gone.
        self.guard = None;
        result
    }
}

/// Creates the temp file for `name` in `dir`: mode 0600, created new, exclusively locked. Returns its path, the file
/// and a second handle holding the lock (`None` where the file system has no locks).
fn create_locked_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File, Option<File>)> {
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(".{name}{PARTIAL}{}", random_hex()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = match options.open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            // A sweep found it in the instant between creation and lock, and removes it: take another name.
            Err(fs::TryLockError::WouldBlock) => {
                last = Some(io::Error::from(io::ErrorKind::WouldBlock));
                continue;
            }
            // No locks on this file system: no sweep will remove it either (a sweep needs the lock).
            Err(fs::TryLockError::Error(_)) => return Ok((tmp, file, None)),
        }
        // A sweep may have removed the name before the lock was taken: then the name is another file's, or none.
        if !same_file(&file, &tmp) {
            last = Some(io::Error::from(io::ErrorKind::NotFound));
            continue;
        }
        let guard = file.try_clone()?;
        return Ok((tmp, file, Some(guard)));
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot create a temp file")))
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// 16 hex digits that differ between calls and processes (a per-process random hasher keyed with a counter, the time
/// and the process id): a temp name that is not taken; `create_new` catches the rare collision.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Removes the temp files that runs killed before their commit left beside the target `name` in `dir`, and
/// nothing else. Exactly these names are considered, and only when they are regular files (never symlinks):
///
/// * `.NAME.partial-` + 16 hex digits: [`OutputFile`]'s own, removed when no live writer holds its lock (one that
///   is being written stays);
/// * `.NAME.tmp-` + three decimal numbers joined by `-`: [`OutputFile`]'s in versions before the lock, and
/// * `.NAME.part-` + 16 hex digits: downloads saved by `Download::save_to` (the CLI's `download` before it wrote
///   through [`OutputFile`]; hidden, decrypted and unverified),
///
///   these two removed only when not changed for [`STALE_AFTER`], as nothing tells a live writer of them from a
///   dead one.
///
/// Failures (a file of another user, a vanished file) are skipped: sweeping is housekeeping, never an error.
pub fn sweep_stale(dir: &Path, name: &str) {
    let Ok(listing) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in listing.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let locked_naming = match rest.split_once('-') {
            Some(("partial", suffix)) if is_hex16(suffix) => true,
            Some(("part", suffix)) if is_hex16(suffix) => false,
            Some(("tmp", suffix)) if is_legacy_suffix(suffix) => false,
            _ => continue,
        };
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        if !locked_naming {
            let idle = meta
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|d| d >= STALE_AFTER);
            if !idle {
                continue;
            }
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // Regular when listed; a file swapped in since must still be one before it is touched.
        if !file.metadata().is_ok_and(|m| m.is_file()) || !same_file(&file, &path) {
            continue;
        }
        if file.try_lock().is_ok() {
            let _ = fs::remove_file(&path);
        }
    }
}

fn is_hex16(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_legacy_suffix(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("the output file is closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(mut pipe) = self.file.take() {
            // The writer thread ends once its channel closes; the file is closed before it is removed, and the lock
            // (`guard`, dropped after this) held until then.
            let _ = pipe.join();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn output_format_from_id_or_extension() {
        let r = crate::default_formats();
        let id = |p: &str| output_format(&r, None, Path::new(p)).map(|f| f.info().id);
        assert_eq!(id("a/b.csv").unwrap(), "csv");
        assert_eq!(id("b.TSV").unwrap(), "tsv");
        assert_eq!(id("b.json").unwrap(), "json");
        assert_eq!(id("b.jsonl").unwrap(), "ndjson");
        assert_eq!(id("b.arrow").unwrap(), "arrow-ipc");
        assert_eq!(id("b.ipc").unwrap(), "arrow-ipc");
        assert_eq!(id("b.xpt").unwrap(), "xpt");
        for bad in ["b.unknown", "no_extension"] {
            let e = id(bad).unwrap_err();
            assert_eq!(
                (e.code().as_str(), e.reason(), e.field()),
                ("EXP002", "unknown_output_format", Some("format"))
            );
        }
        let e = output_format(&r, Some("nope"), Path::new("b.csv"))
            .map(|f| f.info().id)
            .unwrap_err();
        assert_eq!((e.code().as_str(), e.field()), ("EXP001", Some("format")));
        let named = output_format(&r, Some("csv"), Path::new("b.out")).unwrap();
        assert_eq!(named.info().id, "csv");
    }

    #[test]
    fn options_parse_from_json_with_to_as_an_alias() {
        let o: ConvertOptions = trialport_core::request::from_json(
            r#"{"to": "xpt", "dataset": "DM", "options": {"version": "5"}, "overwrite": true,
                "meta": {"label": "Demographics", "columns": [{"name": "AGE", "label": "Age"}]}}"#,
        )
        .unwrap();
        assert_eq!(o.format.as_deref(), Some("xpt"));
        assert!(o.overwrite);
        let meta = o.effective_meta();
        assert_eq!(
            (meta.name.as_str(), meta.label.as_deref()),
            ("DM", Some("Demographics"))
        );
        assert_eq!(meta.columns.len(), 1);
        let e =
            trialport_core::request::from_json::<ConvertOptions>(r#"{"formt": "x"}"#).unwrap_err();
        assert_eq!(e.reason(), "invalid_request");
        let d: ConvertOptions = trialport_core::request::from_json("{}").unwrap();
        assert_eq!(d, ConvertOptions::default());
    }

    #[test]
    fn an_existing_output_is_kept_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        fs::write(&target, b"old").unwrap();
        let e = OutputFile::create(&target, false).unwrap_err();
        assert_eq!(e.reason(), "artifact_exists");
        // Appearing while the file is written is refused at commit.
        fs::remove_file(&target).unwrap();
        let mut f = OutputFile::create(&target, false).unwrap();
        f.write_all(b"new").unwrap();
        fs::write(&target, b"other").unwrap();
        assert_eq!(f.commit().unwrap_err().reason(), "artifact_exists");
        assert_eq!(fs::read(&target).unwrap(), b"other");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut f = OutputFile::create(&target, true).unwrap();
        f.write_all(b"abc").unwrap();
        let w = f.commit().unwrap();
        assert_eq!(w.bytes, 3);
        assert_eq!(
            w.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fs::read(&target).unwrap(), b"abc");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn nothing_is_left_when_dropped_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = OutputFile::create(&dir.path().join("out.txt"), false).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let e = OutputFile::create(&dir.path().join("missing/out.txt"), false).unwrap_err();
        assert_eq!((e.code().as_str(), e.field()), ("EXP001", Some("output")));
        let e = OutputFile::create(dir.path(), true).unwrap_err();
        assert_eq!(e.reason(), "output_is_directory");
    }

    #[test]
    fn a_bad_download_leaves_nothing() {
        struct Bad;
        impl Read for Bad {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::InvalidData))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let e = copy_to_file(Bad, &dir.path().join("x.csv"), false).unwrap_err();
        assert_eq!(e.reason(), "integrity_violation");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let w = copy_to_file(&b"abc"[..], &dir.path().join("x.csv"), false).unwrap();
        assert_eq!(w.bytes, 3);
    }

    #[test]
    fn convert_writes_the_format_of_the_extension_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("dm.csv");
        fs::write(&input, "USUBJID,AGE\nS-1,34\nS-2,51\n").unwrap();
        let output = dir.path().join("dm.xpt");
        let options = ConvertOptions {
            label: Some("Demographics".into()),
            ..ConvertOptions::default()
        };
        let r = convert(&input, &output, &options).unwrap();
        assert_eq!((r.format.as_str(), r.rows), ("xpt", 2));
        assert_eq!(r.bytes, fs::metadata(&output).unwrap().len());
        // The XPT member header carries the dataset name (the input's stem) and the label.
        let bytes = fs::read(&output).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("DM      "), "{text}");
        assert!(text.contains("Demographics"), "{text}");
        // Again without overwrite: refused, the first output kept.
        let e = convert(&input, &output, &options).unwrap_err();
        assert_eq!(e.reason(), "artifact_exists");
        assert_eq!(fs::read(&output).unwrap(), bytes);
        // A missing input is not found, and nothing is written.
        let e = convert(
            &dir.path().join("no.csv"),
            &dir.path().join("no.xpt"),
            &options,
        )
        .unwrap_err();
        assert_eq!(e.code().as_str(), "EXP001");
        assert!(!dir.path().join("no.xpt").exists());
    }

    #[test]
    fn many_writes_of_every_size_arrive_in_order_with_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("big.bin");
        let mut f = OutputFile::create(&target, false).unwrap();
        let mut expected = Vec::new();
        let mut k = 0u32;
        // Sizes from 1 byte to past several pipe chunks, so that buffers are sent, reused and split.
        for size in [
            1,
            7,
            4096,
            PIPE_CHUNK - 3,
            5,
            3 * PIPE_CHUNK + 11,
            0,
            65_536,
            2,
        ] {
            let piece: Vec<u8> = (0..size)
                .map(|_| {
                    k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (k >> 16) as u8
                })
                .collect();
            f.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
            if size == 5 {
                f.flush().unwrap();
            }
        }
        let w = f.commit().unwrap();
        let written = fs::read(&target).unwrap();
        assert_eq!(written, expected);
        let (bytes, sha) = trialport_core::hashing::sha256_of(&expected[..]).unwrap();
        assert_eq!((w.bytes, w.sha256), (bytes, sha));
    }
}
