//! Packages: the bulk zip, the eCTD Module 5 tree, and metadata documents (Define-XML) describing datasets.
//!
//! # The eCTD layout
//!
//! A `bulk_export` with `package = "ectd"` writes, for study `S` (folder names in lowercase):
//!
//! ```text
//! m5/datasets/s/tabulations/sdtm/<dataset>.xpt        SDTM datasets
//! m5/datasets/s/tabulations/sdtm/define.xml           their Define-XML
//! m5/datasets/s/analysis/adam/datasets/<dataset>.xpt  ADaM datasets
//! m5/datasets/s/analysis/adam/datasets/define.xml     their Define-XML
//! manifest.json                                       every file with its SHA-256, bytes and rows
//! ```
//!
//! A dataset is ADaM when its metadata class is one of the ADaM classes (`SUBJECT LEVEL ANALYSIS DATASET`,
//! `BASIC DATA STRUCTURE`, `OCCURRENCE DATA STRUCTURE`, `ADAM OTHER`, ...) or, without a class, when its name starts
//! with `AD`; every other dataset is SDTM. The files are XPT version 5, as the FDA requires. Before a byte is
//! written, every dataset is encoded once into nothing so that every FDA check runs over every dataset: a package
//! with any violation fails with all of them (EXP002 `fda_check_failed`, `details.violations` naming dataset,
//! column, row and rule) and writes nothing. The tree is one zip artifact (`<study>_ectd.zip`, holding its own
//! `manifest.json`) or, with `container = "directory"`, the job's artifacts at their paths in the tree.

use super::attempt::{Counting, Running, Stop, MANIFEST_NAME};
use super::encode::{encode_dataset, encode_part, Encoded, Part};
use super::signing::manifest_of;
use crate::error::Reason;
use crate::error::{Error, ErrorCode};
use crate::format::{Described, Format, FormatOptions, StudyInfo};
use crate::hashing::HashingWriter;
use crate::manifest::ManifestEntry;
use crate::request::{DatasetSelection, ExportContent, ExportRequest, PackageContainer};
use crate::sink::SinkWriter;
use serde_json::Value;
use std::io::{self, Write};

/// The format id of the datasets of an eCTD package.
pub(crate) const ECTD_DATA_FORMAT: &str = "xpt";
/// The format id of the metadata documents of an eCTD package.
pub(crate) const ECTD_DEFINE_FORMAT: &str = "define-xml";

/// The Define-XML dataset classes of ADaM (ADaMIG 1.1-1.3 and the ADaM Other class).
const ADAM_CLASSES: [&str; 6] = [
    "SUBJECT LEVEL ANALYSIS DATASET",
    "BASIC DATA STRUCTURE",
    "OCCURRENCE DATA STRUCTURE",
    "ADAM OTHER",
    "INTEGRATED SUBJECT LEVEL",
    "INTEGRATED BASIC DATA STRUCTURE",
];

/// Whether a dataset belongs under `analysis/adam` rather than `tabulations/sdtm`.
pub(crate) fn is_adam(name: &str, class: Option<&str>) -> bool {
    match class {
        Some(c) => ADAM_CLASSES
            .iter()
            .any(|a| a.eq_ignore_ascii_case(c.trim())),
        None => name.len() > 2 && name[..2].eq_ignore_ascii_case("AD"),
    }
}

/// Where a package's files are written: entries of one zip, or artifacts of the job.
enum Container<'s> {
    Zip(Box<zip::ZipWriter<zip::write::StreamWriter<Counting<'s>>>>),
    Directory,
}

/// One file of a package being written.
enum Open<'z> {
    Zip(Box<HashingWriter<&'z mut (dyn Write + Send)>>),
    Artifact(Box<dyn SinkWriter>),
}

fn zip_error(e: zip::result::ZipError) -> Stop {
    Stop::Failed(Error::server(Reason::PackageError, format!("zip: {e}")))
}

fn zip_options(run: &Running<'_>) -> zip::write::SimpleFileOptions {
    use chrono::{Datelike, Timelike};
    let t = run.job.created_at;
    let mtime = zip::DateTime::from_date_and_time(
        t.year().clamp(1980, 2107) as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .unwrap_or_default();
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(mtime)
        .large_file(true)
}

/// Writes one file of a package with `body` and returns its manifest entry (without rows and dataset).
fn write_file<T>(
    run: &mut Running<'_>,
    container: &mut Container<'_>,
    path: &str,
    media_type: &str,
    body: impl FnOnce(&mut Running<'_>, &mut (dyn Write + Send)) -> Result<T, Stop>,
) -> Result<(ManifestEntry, T), Stop> {
    let opts = zip_options(run);
    let mut open = match container {
        Container::Zip(zip) => {
            zip.start_file(path, opts).map_err(zip_error)?;
            Open::Zip(Box::new(HashingWriter::new(
                &mut **zip as &mut (dyn Write + Send),
            )))
        }
        Container::Directory => Open::Artifact(run.create(path)?),
    };
    let result = match &mut open {
        Open::Zip(w) => body(run, &mut **w),
        Open::Artifact(w) => {
            let mut counted = Counting {
                inner: &mut **w,
                bytes: run.bytes.clone(),
            };
            body(run, &mut counted)
        }
    };
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            if let Open::Artifact(w) = open {
                w.abort();
            }
            return Err(e);
        }
    };
    let (bytes, sha256) = match open {
        Open::Zip(w) => {
            let (_, bytes, sha256) = w.into_parts();
            (bytes, sha256)
        }
        Open::Artifact(w) => {
            let receipt = super::attempt::complete(w)?;
            (receipt.bytes, receipt.sha256)
        }
    };
    let entry = ManifestEntry {
        path: path.to_string(),
        media_type: media_type.to_string(),
        bytes,
        sha256,
        rows: None,
        source_rows: None,
        dataset: None,
    };
    Ok((entry, value))
}

/// Writes one dataset of a package and returns its manifest entry with the schema and metadata it had.
fn write_dataset(
    run: &mut Running<'_>,
    container: &mut Container<'_>,
    format: &dyn Format,
    path: &str,
    study: &str,
    sel: &DatasetSelection,
    options: &FormatOptions,
) -> Result<(ManifestEntry, Encoded), Stop> {
    let media_type = format.media_type_for(options);
    let (mut entry, encoded) = write_file(run, container, path, media_type, |run, out| {
        encode_dataset(run, format, study, sel, options, out)
    })?;
    entry.rows = Some(encoded.rows);
    entry.source_rows = Some(encoded.source_rows);
    entry.dataset = Some(sel.name().to_string());
    run.job.progress.datasets_done += 1;
    run.save_progress()?;
    Ok((entry, encoded))
}

/// Runs `body` with a zip container over a new sink artifact `name`, then adds the package's own manifest and
/// returns the zip's manifest entry.
fn in_zip(
    run: &mut Running<'_>,
    name: &str,
    body: impl FnOnce(&mut Running<'_>, &mut Container<'_>) -> Result<Vec<ManifestEntry>, Stop>,
) -> Result<ManifestEntry, Stop> {
    let mut writer: Box<dyn SinkWriter> = run.create(name)?;
    let result = (|| -> Result<(), Stop> {
        let zip = zip::ZipWriter::new_stream(Counting {
            inner: &mut *writer,
            bytes: run.bytes.clone(),
        });
        let mut container = Container::Zip(Box::new(zip));
        let files = body(run, &mut container)?;
        let manifest = manifest_of(run, files)?;
        let Container::Zip(mut zip) = container else {
            return Err(
                Error::server(Reason::PackageError, "the zip container was replaced").into(),
            );
        };
        zip.start_file(MANIFEST_NAME, zip_options(run))
            .map_err(zip_error)?;
        zip.write_all(&manifest.to_bytes())
            .map_err(|e| Error::io("cannot write the package manifest", &e))?;
        zip.finish().map_err(zip_error)?;
        Ok(())
    })();
    if let Err(e) = result {
        writer.abort();
        return Err(e);
    }
    let receipt = super::attempt::complete(writer)?;
    Ok(ManifestEntry {
        path: name.to_string(),
        media_type: "application/zip".into(),
        bytes: receipt.bytes,
        sha256: receipt.sha256,
        rows: Some(run.rows),
        source_rows: None,
        dataset: None,
    })
}

/// Writes the bulk zip package: one file per dataset under `<study>/`, and `manifest.json` at the root.
pub(super) fn write_zip(
    run: &mut Running<'_>,
    format: &dyn Format,
    req: &ExportRequest,
) -> Result<ManifestEntry, Stop> {
    let name = format!("{}_package.zip", req.study.to_ascii_lowercase());
    in_zip(run, &name, |run, container| {
        let mut files = Vec::new();
        for sel in req.datasets() {
            let path = format!(
                "{}/{}.{}",
                req.study,
                sel.name().to_ascii_lowercase(),
                format.extension_for(&req.options)
            );
            let (entry, _) =
                write_dataset(run, container, format, &path, &req.study, sel, &req.options)?;
            files.push(entry);
        }
        Ok(files)
    })
}

/// A byte counter that keeps nothing.
#[derive(Default)]
struct Measure(u64);

impl Write for Measure {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How large a dataset's file is, from the check pass, and what the pass saw of it.
struct Size {
    rows: u64,
    bytes: u64,
    encoded: Encoded,
}

/// Encodes every dataset into nothing, collecting every format check's violations: the package is written only
/// when there is none. Returns each dataset's rows and file size.
fn check_all(
    run: &mut Running<'_>,
    format: &dyn Format,
    req: &ExportRequest,
) -> Result<Vec<Size>, Stop> {
    let mut violations = Vec::new();
    let mut failed = Vec::new();
    let mut reasons = Vec::new();
    let mut sizes = Vec::new();
    for sel in req.datasets() {
        let mut measure = Measure::default();
        match encode_dataset(run, format, &req.study, sel, &req.options, &mut measure) {
            Ok(encoded) => sizes.push(Size {
                rows: encoded.rows,
                bytes: measure.0,
                encoded,
            }),
            Err(Stop::Failed(e)) if e.code() == ErrorCode::Validation => {
                failed.push(sel.name().to_string());
                if !reasons.iter().any(|r| r == e.reason()) {
                    reasons.push(e.reason().to_string());
                }
                match e.details().get("violations") {
                    Some(Value::Array(list)) => violations.extend(list.iter().cloned()),
                    _ => violations.push(serde_json::json!({
                        "dataset": sel.name(), "rule": e.reason(), "message": e.message()})),
                }
            }
            Err(other) => return Err(other),
        }
    }
    // The check pass wrote nothing; progress counts the written pass only.
    run.rows = 0;
    run.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
    if failed.is_empty() {
        return Ok(sizes);
    }
    let reason = match reasons.as_slice() {
        [one] => Reason::parse(one).unwrap_or(Reason::PackageCheckFailed),
        _ => Reason::PackageCheckFailed,
    };
    Err(Error::validation(
        reason,
        format!(
            "{} violation(s) in {} of {} dataset(s): nothing was written",
            violations.len(),
            failed.len(),
            req.datasets().len()
        ),
    )
    .with_field("datasets")
    .with_detail("datasets", failed)
    .with_detail("violations", Value::Array(violations))
    .into())
}

/// The FDA's largest submission data file (5 GB, as 10^9 bytes).
const FDA_MAX_FILE_BYTES: u64 = 5_000_000_000;

/// The parts a dataset of `size` is split into so that no file exceeds `limit` bytes (none when it fits). The
/// per-row size comes from the measured file less the file of no rows, so any format whose rows take a fixed size
/// (XPT) is split exactly; a margin of one 80-byte record covers the padding.
fn plan_parts(
    run: &mut Running<'_>,
    format: &dyn Format,
    req: &ExportRequest,
    sel: &DatasetSelection,
    size: &Size,
    limit: u64,
) -> Result<Vec<Part>, Stop> {
    if size.bytes <= limit || size.rows == 0 {
        return Ok(vec![]);
    }
    let empty = Part {
        skip: 0,
        take: 0,
        name: sel.name().to_string(),
    };
    let mut measure = Measure::default();
    encode_part(
        run,
        format,
        &req.study,
        sel,
        &req.options,
        &mut measure,
        Some(&empty),
    )?;
    let header = measure.0;
    let per_row = (size.bytes - header).div_ceil(size.rows).max(1);
    let room = limit.saturating_sub(header + 80);
    let rows_per_part = room / per_row;
    if rows_per_part == 0 {
        return Err(Error::validation(
            Reason::MaxFileBytesTooSmall,
            "max_file_bytes does not leave room for one row of the dataset",
        )
        .with_field("max_file_bytes")
        .with_detail("dataset", sel.name())
        .with_detail("minimum", header + 80 + per_row)
        .into());
    }
    let parts = size.rows.div_ceil(rows_per_part);
    Ok((0..parts)
        .map(|i| Part {
            skip: i * rows_per_part,
            take: rows_per_part.min(size.rows - i * rows_per_part),
            name: format!("{}{}", sel.name(), i + 1),
        })
        .collect())
}

/// Describes the datasets into nothing, so that metadata a define cannot be made from fails the package before a
/// byte is written.
fn check_defines(
    run: &Running<'_>,
    define: &dyn Format,
    req: &ExportRequest,
    sizes: &[Size],
) -> Result<(), Stop> {
    let files: Vec<String> = req
        .datasets()
        .iter()
        .map(|sel| format!("{}.{ECTD_DATA_FORMAT}", sel.name().to_ascii_lowercase()))
        .collect();
    for adam in [false, true] {
        let described: Vec<Described<'_>> = sizes
            .iter()
            .zip(&files)
            .filter(|(size, _)| {
                is_adam(&size.encoded.meta.name, size.encoded.meta.class.as_deref()) == adam
            })
            .map(|(size, file)| Described {
                schema: &size.encoded.schema,
                meta: &size.encoded.meta,
                file,
                rows: Some(size.rows),
            })
            .collect();
        if described.is_empty() {
            continue;
        }
        let study = StudyInfo {
            study: &req.study,
            created: run.job.created_at,
        };
        define.describe(
            &study,
            &described,
            &FormatOptions::new(),
            &mut Measure::default(),
        )?;
    }
    Ok(())
}

/// A dataset written into a package, remembered for its define.
struct Written {
    file: String,
    rows: u64,
    encoded: Encoded,
}

/// Writes the eCTD Module 5 package (see the module documentation).
pub(super) fn write_ectd(
    run: &mut Running<'_>,
    format: &dyn Format,
    req: &ExportRequest,
) -> Result<Vec<ManifestEntry>, Stop> {
    let define = run.inner.formats.get(ECTD_DEFINE_FORMAT)?.clone();
    let sizes = check_all(run, format, req)?;
    run.check()?;
    let limit = max_file_bytes(req).unwrap_or(FDA_MAX_FILE_BYTES);
    let mut plans = Vec::new();
    for (sel, size) in req.datasets().iter().zip(&sizes) {
        plans.push(plan_parts(run, format, req, sel, size, limit)?);
    }
    check_defines(run, define.as_ref(), req, &sizes)?;
    run.rows = 0;
    run.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
    let study_dir = req.study.to_ascii_lowercase();
    let sdtm_dir = format!("m5/datasets/{study_dir}/tabulations/sdtm");
    let adam_dir = format!("m5/datasets/{study_dir}/analysis/adam/datasets");
    let body = |run: &mut Running<'_>,
                container: &mut Container<'_>|
     -> Result<Vec<ManifestEntry>, Stop> {
        let mut files = Vec::new();
        let mut sdtm: Vec<Written> = Vec::new();
        let mut adam: Vec<Written> = Vec::new();
        let ext = format.extension_for(&req.options);
        for ((sel, parts), size) in req.datasets().iter().zip(&plans).zip(&sizes) {
            let adam_set = is_adam(sel.name(), size.encoded.meta.class.as_deref());
            let dir = if adam_set { &adam_dir } else { &sdtm_dir };
            let group = if adam_set { &mut adam } else { &mut sdtm };
            if parts.is_empty() {
                let file = format!("{}.{ext}", sel.name().to_ascii_lowercase());
                let path = format!("{dir}/{file}");
                let (entry, encoded) =
                    write_dataset(run, container, format, &path, &req.study, sel, &req.options)?;
                files.push(entry);
                group.push(Written {
                    file,
                    rows: encoded.rows,
                    encoded,
                });
                continue;
            }
            for part in parts {
                let file = format!("split/{}.{ext}", part.name.to_ascii_lowercase());
                let path = format!("{dir}/{file}");
                let media_type = format.media_type_for(&req.options);
                let (mut entry, encoded) =
                    write_file(run, container, &path, media_type, |run, out| {
                        encode_part(run, format, &req.study, sel, &req.options, out, Some(part))
                    })?;
                entry.rows = Some(encoded.rows);
                entry.source_rows = Some(encoded.source_rows);
                entry.dataset = Some(sel.name().to_string());
                files.push(entry);
                group.push(Written {
                    file,
                    rows: encoded.rows,
                    encoded,
                });
            }
            run.job.progress.datasets_done += 1;
            run.save_progress()?;
        }
        for (dir, group) in [(&sdtm_dir, &sdtm), (&adam_dir, &adam)] {
            if group.is_empty() {
                continue;
            }
            let described: Vec<Described<'_>> = group
                .iter()
                .map(|w| Described {
                    schema: &w.encoded.schema,
                    meta: &w.encoded.meta,
                    file: &w.file,
                    rows: Some(w.rows),
                })
                .collect();
            let study = StudyInfo {
                study: &req.study,
                created: run.job.created_at,
            };
            let path = format!("{dir}/define.xml");
            let media_type = define.info().media_type;
            let (entry, ()) = write_file(run, container, &path, media_type, |_, out| {
                define
                    .describe(&study, &described, &FormatOptions::new(), out)
                    .map_err(Stop::from)
            })?;
            files.push(entry);
        }
        Ok(files)
    };
    match container(req) {
        PackageContainer::Zip => {
            let name = format!("{study_dir}_ectd.zip");
            Ok(vec![in_zip(run, &name, body)?])
        }
        PackageContainer::Directory => {
            let mut container = Container::Directory;
            body(run, &mut container)
        }
    }
}

/// The container of a bulk request (a zip for any other kind).
fn container(req: &ExportRequest) -> PackageContainer {
    match &req.content {
        ExportContent::Bulk { container, .. } => *container,
        _ => PackageContainer::Zip,
    }
}

/// The eCTD file-size limit of a bulk request, if it sets one.
fn max_file_bytes(req: &ExportRequest) -> Option<u64> {
    match &req.content {
        ExportContent::Bulk { max_file_bytes, .. } => *max_file_bytes,
        _ => None,
    }
}

/// Writes one metadata document (e.g. `define.xml`) describing the selected datasets of an `export_data` request,
/// each as the XPT file of its lowercase name, which is how a submission carries them.
pub(super) fn write_description(
    run: &mut Running<'_>,
    format: &dyn Format,
    req: &ExportRequest,
) -> Result<ManifestEntry, Stop> {
    let mut datasets = Vec::new();
    for sel in req.datasets() {
        run.check()?;
        let stream = run
            .inner
            .scan(&req.study, sel.name(), sel.columns(), sel.filters())?;
        let schema = stream.schema().clone();
        let mut meta = stream.meta();
        // Text columns whose metadata gives no length get the longest value's bytes (at least 1, as XPT stores
        // them), measured over the rows, as `convert --to define-xml` and the eCTD package measure them.
        let mut longest: Vec<Option<usize>> = vec![None; schema.fields().len()];
        let mut rows = 0u64;
        for batch in stream {
            run.check()?;
            let batch = batch?;
            rows += batch.num_rows() as u64;
            for (slot, col) in longest.iter_mut().zip(batch.columns()) {
                if let Some(n) = longest_text(col) {
                    *slot = Some(slot.unwrap_or(0).max(n));
                }
            }
        }
        for (field, n) in schema.fields().iter().zip(longest) {
            let Some(n) = n else { continue };
            let length = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
            match meta.columns.iter_mut().find(|c| &c.name == field.name()) {
                Some(c) => {
                    c.length.get_or_insert(length);
                }
                None => meta.columns.push(crate::meta::ColumnMeta {
                    name: field.name().clone(),
                    length: Some(length),
                    ..Default::default()
                }),
            }
        }
        let file = format!("{}.{ECTD_DATA_FORMAT}", sel.name().to_ascii_lowercase());
        datasets.push((schema, meta, file, rows));
    }
    let described: Vec<Described<'_>> = datasets
        .iter()
        .map(|(schema, meta, file, rows)| Described {
            schema,
            meta,
            file,
            rows: Some(*rows),
        })
        .collect();
    let study = StudyInfo {
        study: &req.study,
        created: run.job.created_at,
    };
    let name = format!("define.{}", format.info().extension);
    let mut container = Container::Directory;
    let (entry, ()) = write_file(
        run,
        &mut container,
        &name,
        format.info().media_type,
        |_, out| {
            format
                .describe(&study, &described, &req.options, out)
                .map_err(Stop::from)
        },
    )?;
    run.job.progress.datasets_done = req.datasets().len() as u32;
    Ok(entry)
}

/// The longest value of a text column in UTF-8 bytes (`None` for a column that is not text).
fn longest_text(col: &arrow::array::ArrayRef) -> Option<usize> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    let cast;
    let col = match col.data_type() {
        DataType::Utf8 => col,
        DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            cast = arrow::compute::cast(col, &DataType::Utf8).ok()?;
            &cast
        }
        _ => return None,
    };
    let s = col.as_string_opt::<i32>()?;
    Some(s.iter().flatten().map(str::len).max().unwrap_or(0))
}
