//! `trialport formats` and `trialport convert`: the commands that need no home and no credential.

use crate::args::ConvertArgs;
use crate::files::AtomicFile;
use crate::output::{self, Table};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions, FormatRegistry};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

/// `trialport formats [--json]`: every registered format with capabilities and options.
///
/// # Errors
/// EXP005 when stdout cannot be written.
pub fn formats(json: bool) -> Result<()> {
    let infos = trialport_formats::default_formats().infos();
    if json {
        return output::json(&infos);
    }
    let mut t = Table::new(&["ID", "EXT", "MEDIA TYPE", "CAPABILITIES", "NAME"]);
    for f in &infos {
        let caps: Vec<String> = f
            .capabilities
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
            })
            .map(Option::unwrap_or_default)
            .collect();
        t.row(vec![
            f.id.to_string(),
            format!(".{}", f.extension),
            f.media_type.to_string(),
            caps.join(", "),
            f.name.to_string(),
        ]);
    }
    t.print()?;
    for f in infos.iter().filter(|f| !f.options.is_empty()) {
        output::line("")?;
        output::line(&format!("{} options:", f.id))?;
        let mut t = Table::new(&["  OPTION", "DEFAULT", "DESCRIPTION"]);
        for o in &f.options {
            let mut desc = o.description.to_string();
            if !o.values.is_empty() {
                desc.push_str(&format!(" (one of: {})", o.values.join(", ")));
            }
            t.row(vec![
                format!("  {}", o.name),
                format!("{:?}", o.default),
                desc,
            ]);
        }
        t.print()?;
    }
    Ok(())
}

/// The output format of `convert`: `--to`, else the output file's extension.
///
/// # Errors
/// EXP001 for an unknown `--to`; EXP002 `unknown_output_format` when the extension names no format.
pub fn output_format(
    registry: &FormatRegistry,
    to: Option<&str>,
    output: &Path,
) -> Result<Arc<dyn Format>> {
    if let Some(id) = to {
        return Ok(registry.get(id).map_err(|e| e.with_field("to"))?.clone());
    }
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    // The documented mapping first (`.json` is `json`, not `dataset-json`), then any format with that extension.
    let id = match ext.as_str() {
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
    if let Some(f) = id.and_then(|id| registry.get(id).ok()) {
        return Ok(f.clone());
    }
    if !ext.is_empty() {
        if let Some(f) = registry.by_extension(&ext) {
            return Ok(f.clone());
        }
    }
    Err(Error::validation(
        "unknown_output_format",
        "cannot tell the output format from the file name: give --to FORMAT",
    )
    .with_field("to")
    .with_detail("available", registry.ids()))
}

/// `trialport convert INPUT -o OUTPUT ...`: reads, applies metadata, checks options, writes atomically.
///
/// # Errors
/// EXP001 for a missing input or unknown format; EXP002 for bad options, metadata or data the output format cannot
/// represent; EXP005 for I/O. Nothing is left at the output on error.
pub fn convert(args: &ConvertArgs, json: bool) -> Result<()> {
    let registry = trialport_formats::default_formats();
    let format = output_format(&registry, args.to.as_deref(), &args.output)?;
    let info = format.info();
    let options = FormatOptions::from_pairs(args.options.iter().map(String::as_str))?;
    format.check_options(&options)?;

    let mut meta = match &args.meta {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::not_found("the metadata file does not exist").with_field("meta")
                }
                _ => Error::io("cannot read the metadata file", &e),
            })?;
            DatasetMeta::from_json(&text).map_err(|e| e.with_field("meta"))?
        }
        None => DatasetMeta::default(),
    };
    if let Some(name) = &args.dataset {
        meta.name = name.clone();
    }
    if let Some(label) = &args.label {
        meta.label = Some(label.clone());
    }

    let stream = trialport_formats::read::open(&args.input, None)?.with_meta(&meta)?;
    let schema = stream.schema().clone();
    let meta = stream.meta();

    let mut file = AtomicFile::create(&args.output, "output")?;
    let summary = {
        let mut encoder = format.encoder(&schema, &meta, &options, &mut file)?;
        for batch in stream {
            encoder.write(&batch?)?;
        }
        encoder.finish()?
    };
    let written = file.commit()?;

    if json {
        output::json(&json!({
            "input": args.input,
            "output": args.output,
            "format": info.id,
            "rows": summary.rows,
            "bytes": written.bytes,
            "sha256": written.sha256,
        }))
    } else {
        output::line(&format!(
            "wrote {} rows to {} ({}, {}) sha256 {}",
            summary.rows,
            args.output.display(),
            info.id,
            output::bytes(written.bytes),
            written.sha256
        ))
    }
}

/// `verify PACKAGE`: every file listed in the manifest has its recorded size and SHA-256.
///
/// # Errors
/// EXP005 `integrity_violation` naming the first bad file; EXP001/EXP002 for a missing or unreadable package.
pub fn verify(a: &crate::args::VerifyArgs, json: bool) -> trialport_core::Result<()> {
    let report = trialport_core::manifest::verify_package(&a.package)?;
    if json {
        crate::output::json(
            &serde_json::json!({"verified": true, "job_id": report.job_id,
            "files": report.files_verified}),
        )
    } else {
        crate::output::line(&format!(
            "package verified: {} files match the manifest of job {}",
            report.files_verified, report.job_id
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn output_format_from_extension() {
        let r = trialport_formats::default_formats();
        let id = |p: &str| output_format(&r, None, Path::new(p)).map(|f| f.info().id);
        assert_eq!(id("a/b.csv").unwrap(), "csv");
        assert_eq!(id("b.TSV").unwrap(), "tsv");
        assert_eq!(id("b.json").unwrap(), "json");
        assert_eq!(id("b.arrow").unwrap(), "arrow-ipc");
        let e = id("b.unknown").unwrap_err();
        assert_eq!(e.code().as_str(), "EXP002");
        assert_eq!(e.field(), Some("to"));
        let e = output_format(&r, Some("nope"), Path::new("b.csv"))
            .map(|f| f.info().id)
            .unwrap_err();
        assert_eq!(e.code().as_str(), "EXP001");
    }
}
