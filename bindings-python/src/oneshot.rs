//! Calls that need no engine: one-shot `write`, and creating a home.
//!
//! Interim: the CLI's `convert`, `download` and `init` compose the same core calls in `cli/src`, with the output
//! format chosen by a mapping only the CLI has. Once the core offers these one-shot helpers to the CLI and the
//! bindings alike, each function here becomes one call.

use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions, FormatRegistry};
use trialport_core::meta::DatasetMeta;
use trialport_core::sink::{ArtifactReceipt, LocalDirSink, Sink};
use trialport_core::source::BatchStream;
use trialport_core::{Error, Result};

/// Writes `stream` to `path` in `format` (by default the registry's format for the path's extension), with `meta`
/// layered over the data's own metadata. The file appears only when complete (the core's local sink: temp file,
/// fsync, rename); an existing file is not replaced.
///
/// # Errors
/// EXP001 for an unknown format; EXP002 for bad options, metadata, or data the format cannot represent, and when
/// the extension names no format; EXP004 when the file exists; EXP005 for I/O.
pub(crate) fn write(
    stream: BatchStream,
    path: &Path,
    format: Option<&str>,
    meta: &DatasetMeta,
    options: &FormatOptions,
) -> Result<Value> {
    let registry = trialport_formats::default_formats();
    let format = choose_format(&registry, format, path)?;
    format.check_options(options)?;
    let stream = stream.with_meta(meta)?;
    let schema = stream.schema().clone();
    let meta = stream.meta();
    let (summary, receipt) = write_file(path, |out| {
        let mut encoder = format.encoder(&schema, &meta, options, out)?;
        for batch in stream {
            encoder.write(&batch?)?;
        }
        encoder.finish()
    })?;
    Ok(json!({
        "path": path,
        "format": format.info().id,
        "rows": summary.rows,
        "bytes": receipt.bytes,
        "sha256": receipt.sha256,
    }))
}

/// Copies `reader` to `path` atomically (a verified download).
///
/// # Errors
/// EXP005 `integrity_violation` when the bytes do not match their SHA-256; EXP004 when the file exists; EXP005.
pub(crate) fn copy_to(path: &Path, mut reader: impl Read) -> Result<ArtifactReceipt> {
    let ((), receipt) = write_file(path, |out| {
        std::io::copy(&mut reader, out).map_err(|e| crate::data::download_error(&e))?;
        Ok(())
    })?;
    Ok(receipt)
}

/// Runs `body` over a new file at `path` through the core's local sink, completing it only when `body` succeeds.
fn write_file<T>(
    path: &Path,
    body: impl FnOnce(trialport_core::format::Output<'_>) -> Result<T>,
) -> Result<(T, ArtifactReceipt)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::validation("invalid_path", "the output path names no file").with_field("path")
    })?;
    let sink = LocalDirSink::new(dir)?;
    let mut writer = sink.create(name).map_err(|e| e.with_field("path"))?;
    // On error the writer is dropped uncompleted, which removes its temp file.
    let value = body(&mut writer)?;
    let receipt = writer.complete()?;
    Ok((value, receipt))
}

/// The format `id`, or the registry's format for the extension of `path`.
fn choose_format(
    registry: &FormatRegistry,
    id: Option<&str>,
    path: &Path,
) -> Result<Arc<dyn Format>> {
    if let Some(id) = id {
        return Ok(registry.get(id)?.clone());
    }
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(|e| registry.by_extension(e))
        .cloned()
        .ok_or_else(|| {
            Error::validation(
                "unknown_output_format",
                "cannot tell the output format from the file name: give format=",
            )
            .with_field("format")
            .with_detail("available", registry.ids())
        })
}

/// Creates a home in `dir` and the first admin key of `org`, as `trialport --home DIR init` does.
///
/// # Errors
/// EXP004 `already_initialized`; EXP002 for an invalid organization or source; EXP005 for I/O.
pub(crate) fn init_home(dir: &Path, org: &str, source: Option<&Path>) -> Result<String> {
    trialport_core::home::Home::init(dir, org, source)?;
    let engine = trialport_formats::home::engine_builder(dir)?
        .workers(0)
        .build()?;
    engine.create_initial_admin_key(org)
}
