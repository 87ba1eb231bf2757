//! Calls that need no engine: one-shot `write`, saving a download, and creating a home. Each is one call into the
//! formats or core crate, shared with the CLI and the C library.

use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;
use trialport_core::format::FormatOptions;
use trialport_core::home::{Home, HomeConfig};
use trialport_core::meta::DatasetMeta;
use trialport_core::source::BatchStream;
use trialport_core::Result;
use trialport_formats::convert::{self, ConvertOptions, Written};

/// Writes `stream` to `path` in `format` (by default the format of the path's extension), with `meta` layered
/// over the data's own metadata. The file appears only when complete; an existing file is not replaced.
///
/// # Errors
/// EXP001 for an unknown format or a missing directory; EXP002 for bad options, metadata, or data the format cannot
/// represent, and when the extension names no format; EXP004 when the file exists; EXP005 for I/O.
pub(crate) fn write(
    stream: BatchStream,
    path: &Path,
    format: Option<&str>,
    meta: &DatasetMeta,
    options: &FormatOptions,
) -> Result<Value> {
    let options = ConvertOptions {
        format: format.map(str::to_string),
        options: options.clone(),
        meta: Some(meta.clone()),
        overwrite: false,
        ..ConvertOptions::default()
    };
    let receipt = convert::write(stream, path, &options)?;
    Ok(json!({
        "path": path,
        "format": receipt.format,
        "rows": receipt.rows,
        "bytes": receipt.bytes,
        "sha256": receipt.sha256,
    }))
}

/// Copies `reader` (a verified download) to `path` atomically; an existing file is not replaced.
///
/// # Errors
/// EXP005 `integrity_violation` when the bytes do not match their SHA-256; EXP004 when the file exists; EXP005.
pub(crate) fn copy_to(path: &Path, reader: impl Read) -> Result<Written> {
    convert::copy_to_file(reader, path, false)
}

/// Creates a home in `dir` and the first admin key of `org`, as `trialport --home DIR init` does.
///
/// # Errors
/// EXP004 `already_initialized`; EXP002 for an invalid organization or source; EXP005 for I/O.
pub(crate) fn init_home(dir: &Path, org: &str, source: Option<&Path>) -> Result<String> {
    let mut config = HomeConfig::new(org);
    config.source = source.map(Path::to_path_buf);
    let (_, key) = Home::init_with_admin_key(dir, &config)?;
    Ok(key)
}
