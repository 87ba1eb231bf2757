//! `trialport formats` and `trialport convert`: the commands that need no home and no credential.

use crate::args::ConvertArgs;
use crate::output::{self, Table};
use serde_json::json;
use trialport_core::format::FormatOptions;
use trialport_core::Result;
use trialport_formats::convert::ConvertOptions;
use trialport_formats::read::ReadOptions;

/// `trialport formats [--json]`: every registered format with capabilities and options.
///
/// # Errors
/// EXP005 when stdout cannot be written.
pub fn formats(json: bool) -> Result<()> {
    let registry = trialport_formats::default_formats();
    if json {
        return output::json(&trialport_formats::read::format_listing(&registry));
    }
    let infos = registry.infos();
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
    let lists = infos.iter().flat_map(|f| {
        [
            (format!("{} options:", f.id), f.options.clone()),
            (
                format!("{} read options (convert --read-option K=V):", f.id),
                trialport_formats::read::read_options_of(f.id),
            ),
        ]
    });
    for (title, options) in lists.filter(|(_, o)| !o.is_empty()) {
        output::line("")?;
        output::line(&title)?;
        let mut t = Table::new(&["  OPTION", "DEFAULT", "DESCRIPTION"]);
        for o in &options {
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

/// `trialport convert INPUT -o OUTPUT ...`: [`trialport_formats::convert::convert`] with the command line's
/// arguments; an existing output is replaced (atomically).
///
/// # Errors
/// EXP001 for a missing input or unknown format; EXP002 for bad options, metadata or data the output format cannot
/// represent; EXP005 for I/O. Nothing is left at the output on error.
pub fn convert(args: &ConvertArgs, json: bool) -> Result<()> {
    let meta = match &args.meta {
        Some(path) => Some(trialport_formats::read::meta_file(path).map_err(|e| {
            if e.field().is_none() {
                e.with_field("meta")
            } else {
                e
            }
        })?),
        None => None,
    };
    let options = ConvertOptions {
        format: args.to.clone(),
        options: FormatOptions::from_pairs(args.options.iter().map(String::as_str))?,
        meta,
        dataset: args.dataset.clone(),
        label: args.label.clone(),
        overwrite: true,
        read: ReadOptions::from_pairs(args.read_options.iter().map(String::as_str))?,
    };
    let receipt = trialport_formats::convert::convert(&args.input, &args.output, &options)
        .map_err(|e| {
            // The format is named by `--to` here.
            if e.field() == Some("format") {
                e.with_field("to")
            } else {
                e
            }
        })?;
    if json {
        output::json(&json!({
            "input": args.input,
            "output": args.output,
            "format": receipt.format,
            "rows": receipt.rows,
            "bytes": receipt.bytes,
            "sha256": receipt.sha256,
        }))
    } else {
        output::line(&format!(
            "wrote {} rows to {} ({}, {}) sha256 {}",
            receipt.rows,
            args.output.display(),
            receipt.format,
            output::bytes(receipt.bytes),
            receipt.sha256
        ))
    }
}

/// `verify PACKAGE [--public-key FILE]`: every file listed in the manifest has its recorded size and SHA-256, the
/// package holds nothing else, and every e-signature verifies (with the trusted key when given); prints the
/// report, `UNSIGNED` included, then fails when a signature was required and there is none.
///
/// # Errors
/// EXP005 `integrity_violation` naming the first bad, missing or unlisted file or signature; EXP003
/// `signature_required` for an unsigned package that must be signed; EXP001/EXP002 for a missing, unsafe or
/// unreadable package or key.
pub fn verify(a: &crate::args::VerifyArgs, json: bool) -> trialport_core::Result<()> {
    let trusted = a
        .public_key
        .as_deref()
        .map(crate::signing_cmds::read_public_key)
        .transpose()?;
    let report = trialport_core::manifest::inspect_package(&a.package, trusted.as_ref())?;
    crate::signing_cmds::print_verified(&report, json)?;
    report.require_signature()
}
