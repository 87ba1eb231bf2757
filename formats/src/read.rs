//! Readers: a file of any readable format as a [`BatchStream`] of 8192-row batches.
//!
//! | format | extension | reader |
//! |---|---|---|
//! | `csv`, `tsv` | .csv, .tsv | our own (below): keeps NULL (unquoted empty field) apart from `""` (empty string) |
//! | `json` | .json | arrow-json, the outer array streamed record by record |
//! | `ndjson` | .ndjson, .jsonl | arrow-json |
//! | `parquet` | .parquet | parquet's Arrow reader (feature `parquet`) |
//! | `arrow-ipc` | .arrow, .ipc, .feather, .arrows | Arrow IPC file (or stream) reader |
//! | `dataset-json` | .dsjc; .json and .ndjson holding Dataset-JSON | [`crate::dataset_json`], with the file's metadata |
//!
//! Types: CSV and JSON are read with a known schema ([`open_with_schema`]) or infer one from the first
//! [`INFER_SAMPLE_ROWS`] records. CSV inference: `true`/`false` (any case) -> Boolean, integers -> Int64 (not
//! with a leading zero such as `007`, which stays text, nor beyond the i64 range), decimals and `NaN`/`inf` ->
//! Float64, `YYYY-MM-DD` -> Date32, `YYYY-MM-DDTHH:MM:SS[.f]` -> Timestamp(Microsecond) (with `Z` or an offset:
//! time zone `UTC`), anything else (and a column without any value) -> Utf8. A later value that does not fit the
//! inferred type is EXP002 `type_mismatch`: read such files with a known schema. A column that the file's
//! `<STEM>.meta.json` declares with `dataType` `string` (or `text`) is read as text whatever its values look like.
//! JSON inference is arrow-json's.
//! Parquet and Arrow IPC keep their schema and its metadata.
//!
//! Metadata: the dataset name defaults to the file stem uppercased, and a `<STEM>.meta.json` file beside the input
//! (a [`DatasetMeta`] document) is layered over the file's own metadata.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float32Builder, Float64Builder, Int64Builder,
    StringBuilder, UInt64Builder,
};
use arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use trialport_core::error::Reason;
use trialport_core::format::OptionInfo;
use trialport_core::meta::DatasetMeta;
use trialport_core::source::BatchStream;
use trialport_core::{Error, Result};

/// Rows per batch of every reader.
pub const BATCH_SIZE: usize = 8192;

/// Records read to infer the types of a CSV, TSV, JSON or NDJSON file.
pub const INFER_SAMPLE_ROWS: usize = 100_000;

/// A format the readers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Csv,
    Tsv,
    Json,
    Ndjson,
    Parquet,
    Ipc,
    Xpt,
    DatasetJson,
}

impl Kind {
    fn from_id(id: &str) -> Result<Kind> {
        Ok(match id {
            "csv" => Kind::Csv,
            "tsv" => Kind::Tsv,
            "json" => Kind::Json,
            "ndjson" => Kind::Ndjson,
            "parquet" => Kind::Parquet,
            "arrow-ipc" | "arrow" | "ipc" | "feather" => Kind::Ipc,
            "xpt" => Kind::Xpt,
            "dataset-json" => Kind::DatasetJson,
            _ => {
                return Err(Error::validation(
                    Reason::UnsupportedFormat,
                    format!(
                        "format '{id}' cannot be read; readable: {}",
                        READABLE.join(", ")
                    ),
                )
                .with_field("format"))
            }
        })
    }

    fn from_path(path: &Path) -> Result<Kind> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "csv" => Kind::Csv,
            "tsv" | "tab" => Kind::Tsv,
            "json" => Kind::Json,
            "ndjson" | "jsonl" => Kind::Ndjson,
            "parquet" | "pq" => Kind::Parquet,
            "arrow" | "ipc" | "feather" | "arrows" => Kind::Ipc,
            "xpt" => Kind::Xpt,
            "dsjc" => Kind::DatasetJson,
            _ => return Err(unreadable_extension(&ext)),
        })
    }
}

/// The readable formats with their extensions, for messages.
const READABLE_BY_EXTENSION: &str = "csv (.csv), tsv (.tsv, .tab), json (.json), ndjson (.ndjson, .jsonl), \
     parquet (.parquet, .pq), arrow-ipc (.arrow, .ipc, .feather, .arrows), xpt (.xpt), dataset-json (.dsjc, and \
     .json or .ndjson files holding Dataset-JSON)";

/// EXP002 `unknown_format` for an input whose extension `ext` (lowercase, maybe empty) names no readable format,
/// saying what is unsupported and what is readable.
fn unreadable_extension(ext: &str) -> Error {
    let why = match ext {
        "" => "the input has no file extension to tell its format by".to_string(),
        "xlsx" | "xls" | "xlsm" => format!(
            "'.{ext}' files cannot be read: spreadsheets are an output format only (save the sheet as CSV to \
             read it)"
        ),
        "xml" | "html" | "htm" | "pdf" => {
            format!("'.{ext}' files cannot be read: they are written (documents, Define-XML, ODM), not read")
        }
        "sas7bdat" => "'.sas7bdat' files cannot be read: export the dataset from SAS as XPT (.xpt)".to_string(),
        _ => format!("'.{ext}' files cannot be read: no readable format has that extension"),
    };
    Error::validation(
        Reason::UnknownFormat,
        format!("{why}. Readable formats: {READABLE_BY_EXTENSION}"),
    )
    .with_field("format")
    .with_detail("extension", ext)
    .with_detail("readable", READABLE)
}

/// The format ids [`open`] reads.
pub const READABLE: &[&str] = &[
    "arrow-ipc",
    "csv",
    "dataset-json",
    "json",
    "ndjson",
    "parquet",
    "tsv",
    "xpt",
];

/// The file extensions (without the dot) [`open`] recognises, lowercase.
pub const EXTENSIONS: &[&str] = &[
    "csv", "tsv", "tab", "json", "ndjson", "jsonl", "parquet", "pq", "arrow", "ipc", "feather",
    "arrows", "xpt", "dsjc",
];

/// The default of [`ReadOptions::csv_max_field_bytes`]: 4 MiB.
pub const DEFAULT_MAX_FIELD_BYTES: u64 = 4 << 20;

/// The default of [`ReadOptions::csv_max_record_bytes`]: 16 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 20;

/// How files are read: limits and choices that the file itself does not settle. As JSON (in
/// [`crate::convert::ConvertOptions`]'s `read`, Python's `trialport.read(..., options=...)`), every member is
/// optional: `{"csv_max_field_bytes": 4194304, "csv_max_record_bytes": 16777216, "xpt_allow_nul_padding": false,
/// "xpt_dates": "typed"}`; as `name=value` text (the CLI's `convert --read-option`): [`ReadOptions::from_pairs`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadOptions {
    /// CSV and TSV: the largest field, in bytes of its text (quotes removed). A longer one is EXP002
    /// `field_too_large`, found with memory bounded by about twice this (the reader stops there), so a file of one
    /// endless field cannot exhaust memory. Defaults to [`DEFAULT_MAX_FIELD_BYTES`] (4 MiB: real clinical text,
    /// even a long narrative, is far below it; SAS and XPT cap a value at 32,767 and 200 bytes).
    pub csv_max_field_bytes: u64,
    /// CSV and TSV: the largest record, in bytes as stored (every line of a record whose quoted fields hold line
    /// breaks). A larger one is EXP002 `record_too_large`, found with memory bounded by this. Defaults to
    /// [`DEFAULT_MAX_RECORD_BYTES`] (16 MiB: 10,000 columns of 200 bytes are 2 MB).
    pub csv_max_record_bytes: u64,
    /// XPT: NUL bytes accepted as padding of a member's last record (see
    /// [`crate::xpt::XptReadOptions::allow_nul_padding`]). Defaults to `false`: EXP002 `invalid_padding`.
    pub xpt_allow_nul_padding: bool,
    /// XPT: how numerics with a SAS date, datetime or time display format (`DATE9.`, `DATETIME20.`, `TIME8.`, ...)
    /// are read: `typed` (the default: Arrow `Date32`, `Timestamp(Microsecond)`, `Time64(Microsecond)`) or `number`
    /// (the SAS numbers as `Float64`). See [`crate::xpt::decode`].
    pub xpt_dates: crate::xpt::XptDates,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            csv_max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            csv_max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            xpt_allow_nul_padding: false,
            xpt_dates: crate::xpt::XptDates::Typed,
        }
    }
}

/// The read options, as `trialport formats` lists them (under `read_options` of the formats they apply to: see
/// [`read_options_of`]) and as `name=value` text takes them ([`ReadOptions::from_pairs`]); in the order of
/// [`ReadOptions`]'s members.
pub const READ_OPTIONS: &[OptionInfo] = &[
    OptionInfo::new(
        "csv_max_field_bytes",
        "4194304",
        "CSV/TSV: the largest field in bytes (EXP002 field_too_large beyond it)",
    ),
    OptionInfo::new(
        "csv_max_record_bytes",
        "16777216",
        "CSV/TSV: the largest record in bytes (EXP002 record_too_large beyond it)",
    ),
    OptionInfo::one_of(
        "xpt_allow_nul_padding",
        "false",
        "XPT: accept NUL bytes as the padding of a member's last record",
        &["true", "false"],
    ),
    OptionInfo::one_of(
        "xpt_dates",
        "typed",
        "XPT: numerics with a SAS date, datetime or time format (DATE9., DATETIME20., TIME8., ...) are read as \
         Arrow dates, timestamps and times (typed) or kept as the SAS numbers (number)",
        &["typed", "number"],
    ),
];

/// The read options that apply to files of format `id` (`csv_*` to `csv` and `tsv`, `xpt_*` to `xpt`); empty
/// for the others.
pub fn read_options_of(id: &str) -> Vec<OptionInfo> {
    let prefix = match id {
        "csv" | "tsv" => "csv_",
        "xpt" => "xpt_",
        _ => return Vec::new(),
    };
    READ_OPTIONS
        .iter()
        .filter(|o| o.name.starts_with(prefix))
        .cloned()
        .collect()
}

/// Every format of `registry` as `trialport formats --json` and Python's `trialport.formats()` list it: the
/// [`FormatInfo`](trialport_core::format::FormatInfo) members, plus `read_options` ([`read_options_of`]) for a
/// format that has some.
pub fn format_listing(registry: &trialport_core::format::FormatRegistry) -> Vec<serde_json::Value> {
    registry
        .infos()
        .iter()
        .map(|info| {
            let mut v = serde_json::to_value(info).unwrap_or_default();
            let read = read_options_of(info.id);
            if let (false, Some(obj)) = (read.is_empty(), v.as_object_mut()) {
                obj.insert(
                    "read_options".to_string(),
                    serde_json::to_value(read).unwrap_or_default(),
                );
            }
            v
        })
        .collect()
}

impl ReadOptions {
    /// Parses `name=value` pairs (the CLI's `--read-option`) over the defaults: the names of [`READ_OPTIONS`],
    /// byte limits as positive integers, `xpt_allow_nul_padding` as `true`/`false`, `xpt_dates` as
    /// `typed`/`number`.
    ///
    /// # Errors
    /// EXP002 `invalid_option` (field = the option, or `read_option` for a pair without `=`) for a malformed pair
    /// or value, `unknown_option` (field = the name) for a name that is not a read option; `invalid_option` as
    /// [`open_with_options`] for limits out of range.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<ReadOptions> {
        let mut o = ReadOptions::default();
        for pair in pairs {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(Error::validation(
                    Reason::InvalidOption,
                    "a read option must be name=value",
                )
                .with_field("read_option"));
            };
            let (name, value) = (name.trim(), value.trim());
            let bad = |what: &str| {
                Error::validation(
                    Reason::InvalidOption,
                    format!("read option '{name}' must be {what}"),
                )
                .with_field(name.to_string())
            };
            let bytes = || {
                value
                    .parse::<u64>()
                    .map_err(|_| bad("a whole number of bytes"))
            };
            match name {
                "csv_max_field_bytes" => o.csv_max_field_bytes = bytes()?,
                "csv_max_record_bytes" => o.csv_max_record_bytes = bytes()?,
                "xpt_allow_nul_padding" => {
                    o.xpt_allow_nul_padding = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("true or false")),
                    }
                }
                "xpt_dates" => {
                    o.xpt_dates =
                        crate::xpt::XptDates::parse(value).ok_or_else(|| bad("typed or number"))?
                }
                _ => {
                    let known: Vec<&str> = READ_OPTIONS.iter().map(|o| o.name).collect();
                    return Err(Error::validation(
                        Reason::UnknownOption,
                        format!(
                            "'{name}' is not a read option; read options: {}",
                            known.join(", ")
                        ),
                    )
                    .with_field(name.to_string()));
                }
            }
        }
        o.check()?;
        Ok(o)
    }

    /// EXP002 `invalid_option` (field = the option) for a limit of 0, or a record limit below the field limit.
    fn check(&self) -> Result<()> {
        let bad = |name: &str, message: &str| {
            Err(
                Error::validation(Reason::InvalidOption, message.to_string())
                    .with_field(name.to_string()),
            )
        };
        if self.csv_max_field_bytes == 0 {
            return bad(
                "csv_max_field_bytes",
                "csv_max_field_bytes must be positive",
            );
        }
        if self.csv_max_record_bytes < self.csv_max_field_bytes {
            return bad(
                "csv_max_record_bytes",
                "csv_max_record_bytes must be at least csv_max_field_bytes",
            );
        }
        Ok(())
    }
}

/// Opens `path` as a stream of batches, in `format` (a format id) or the format its extension names, with the
/// default [`ReadOptions`].
///
/// # Errors
/// EXP001 (field `path`) when the file does not exist; EXP002 `not_a_regular_file` for a directory, FIFO, socket
/// or device ([`open_input`]); `unknown_format`/`unsupported_format` (field `format`), or a reason such as
/// `malformed_csv`, `invalid_utf8`, `field_too_large`, `duplicate_column`, `truncated_file` or `invalid_padding`
/// for unreadable content (never quoting the data); EXP005 for I/O. A batch of the stream may fail likewise.
pub fn open(path: &Path, format: Option<&str>) -> Result<BatchStream> {
    open_impl(path, format, None, &ReadOptions::default())
}

/// Opens `path` like [`open`], with `options`.
///
/// # Errors
/// As [`open`]; EXP002 `invalid_option` for options out of range.
pub fn open_with_options(
    path: &Path,
    format: Option<&str>,
    options: &ReadOptions,
) -> Result<BatchStream> {
    open_impl(path, format, None, options)
}

/// Opens `path` like [`open`], reading columns as `schema` says instead of inferring types (CSV, TSV, JSON,
/// NDJSON) or converting them to it (Parquet, Arrow IPC). Columns are matched by name; `schema`'s metadata is
/// kept.
///
/// # Errors
/// As [`open`], and EXP002 `schema_mismatch` (field `columns`) when the file's columns differ from the
/// schema's, `type_mismatch` (field = the column) for a value that does not parse as its column's type.
pub fn open_with_schema(
    path: &Path,
    format: Option<&str>,
    schema: SchemaRef,
) -> Result<BatchStream> {
    open_impl(path, format, Some(schema), &ReadOptions::default())
}

fn open_impl(
    path: &Path,
    format: Option<&str>,
    schema: Option<SchemaRef>,
    options: &ReadOptions,
) -> Result<BatchStream> {
    options.check()?;
    let kind = match format {
        Some(id) => Kind::from_id(id)?,
        None => Kind::from_path(path)?,
    };
    let file = open_file(path)?;
    // A `.json` or `.ndjson` file that holds Dataset-JSON is read as Dataset-JSON, with its metadata.
    let kind = match kind {
        Kind::Json | Kind::Ndjson if crate::dataset_json::is_dataset_json(path)? => {
            Kind::DatasetJson
        }
        k => k,
    };
    let stream = match kind {
        Kind::Csv => csv_stream(path, file, b',', schema, options)?,
        Kind::Tsv => csv_stream(path, file, b'\t', schema, options)?,
        Kind::Json => json_stream(path, file, true, schema)?,
        Kind::Ndjson => json_stream(path, file, false, schema)?,
        Kind::Parquet => conform(parquet_stream(file)?, schema)?,
        Kind::Ipc => conform(rechunk(ipc_stream(file)?), schema)?,
        Kind::Xpt => {
            let len = file
                .metadata()
                .map_err(|e| Error::io("opening input file", &e))?
                .len();
            let xpt = crate::xpt::XptReadOptions {
                allow_nul_padding: options.xpt_allow_nul_padding,
                dates: options.xpt_dates,
                ..crate::xpt::XptReadOptions::default()
            };
            conform(crate::xpt::decode::read_xpt_file(file, len, &xpt)?, schema)?
        }
        Kind::DatasetJson => conform(crate::dataset_json::read_dataset_json_from(file)?, schema)?,
    };
    with_file_meta(path, stream)
}

fn open_file(path: &Path) -> Result<File> {
    open_input(path)
}

/// Opens the input file `path` for reading, refusing anything that is not a regular file once symlinks are
/// followed: a directory, FIFO, socket or device would block the reader (a FIFO with no writer) or feed it without
/// end (`/dev/zero`). The type is checked before opening and again on the opened file, which is opened
/// non-blocking, so that a path swapped for a FIFO in between cannot hang the open. Every reader opens its input
/// through this: [`open`], [`open_with_schema`], the XPT reader, the directory source and the metadata files beside
/// an input.
///
/// # Errors
/// EXP001 (field `path`) when the file does not exist; EXP002 `not_a_regular_file` (field `path`,
/// `details.kind`: `directory`, `fifo`, `socket`, `character_device`, `block_device` or `other`); EXP005 for
/// other I/O.
pub fn open_input(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| open_error(&e))?;
    check_regular(&meta.file_type(), "path")?;
    let file = open_nonblocking(path).map_err(|e| open_error(&e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("opening input file", &e))?;
    check_regular(&meta.file_type(), "path")?;
    Ok(file)
}

fn open_error(e: &std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found("input file not found").with_field("path"),
        _ => Error::io("opening input file", e),
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one. It changes nothing
    // for the regular files that are then read.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// EXP002 `not_a_regular_file` (with `field`) unless `t` is a regular file's type.
pub(crate) fn check_regular(t: &std::fs::FileType, field: &str) -> Result<()> {
    if t.is_file() {
        return Ok(());
    }
    let kind = file_kind(t);
    let what = match kind {
        "directory" => "a directory",
        "fifo" => "a FIFO (named pipe)",
        "socket" => "a socket",
        "character_device" => "a character device",
        "block_device" => "a block device",
        _ => "a special file",
    };
    Err(Error::validation(
        Reason::NotARegularFile,
        format!(
            "the {} is not a regular file but {what}: only regular files are read or replaced",
            if field == "path" { "input" } else { field },
        ),
    )
    .with_field(field)
    .with_detail("kind", kind))
}

/// What kind of file system object `t` is, as named in `not_a_regular_file` errors.
pub(crate) fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_file() {
        return "file";
    }
    if t.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "fifo";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_char_device() {
            return "character_device";
        }
        if t.is_block_device() {
            return "block_device";
        }
    }
    "other"
}

/// Names the dataset after the file stem when the file does not, then layers `<STEM>.meta.json` over it.
fn with_file_meta(path: &Path, stream: BatchStream) -> Result<BatchStream> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mut meta = DatasetMeta::default();
    if stream.meta().name.is_empty() {
        meta.name = stem.to_uppercase();
    }
    if let Some(sidecar) = sidecar_meta(path)? {
        meta = meta.merged_with(&sidecar);
    }
    stream.with_meta(&meta)
}

/// The `<STEM>.meta.json` document beside `path`, if there is one.
///
/// # Errors
/// EXP002 `invalid_metadata` for a document of the wrong shape; EXP005 for I/O.
pub fn sidecar_meta(path: &Path) -> Result<Option<DatasetMeta>> {
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return Ok(None);
    };
    let side = path.with_file_name(format!("{stem}.meta.json"));
    match meta_file(&side) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.code() == trialport_core::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the metadata document (a [`DatasetMeta`] as JSON) at `path`, which must be a regular file of at most
/// [`MAX_META_BYTES`] (`convert --meta`, `<STEM>.meta.json`).
///
/// # Errors
/// EXP001 (field `meta`) when it does not exist; EXP002 `not_a_regular_file` or `invalid_metadata` (field
/// `meta`); EXP005 for I/O.
pub fn meta_file(path: &Path) -> Result<DatasetMeta> {
    let file = open_input(path).map_err(|e| match e.code() {
        trialport_core::ErrorCode::NotFound => {
            Error::not_found("the metadata file does not exist").with_field("meta")
        }
        _ if e.reason() == "not_a_regular_file" => e.with_field("meta"),
        _ => e,
    })?;
    let mut text = String::new();
    // A metadata document is small: more than this is not one (and is not read into memory).
    file.take(MAX_META_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::validation(
                Reason::InvalidMetadata,
                "the metadata file is not UTF-8 text",
            )
            .with_field("meta"),
            _ => Error::io("reading metadata file", &e),
        })?;
    if text.len() as u64 > MAX_META_BYTES {
        return Err(Error::validation(
            Reason::InvalidMetadata,
            format!("the metadata file is larger than {MAX_META_BYTES} bytes"),
        )
        .with_field("meta")
        .with_detail("max_bytes", MAX_META_BYTES));
    }
    DatasetMeta::from_json(&text)
}

/// The largest metadata document ([`sidecar_meta`], `convert --meta`) read: 64 MiB.
pub const MAX_META_BYTES: u64 = 64 << 20;

/// Selects and converts the columns of `stream` to `schema` (by name), keeping `schema`'s metadata.
fn conform(stream: BatchStream, schema: Option<SchemaRef>) -> Result<BatchStream> {
    let Some(target) = schema else {
        return Ok(stream);
    };
    let source = stream.schema().clone();
    let indices = target
        .fields()
        .iter()
        .map(|f| {
            source.index_of(f.name()).map_err(|_| {
                Error::validation(
                    Reason::SchemaMismatch,
                    format!("the file has no column '{}'", f.name()),
                )
                .with_field("columns")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let out = target.clone();
    let batches = stream.map(move |b| {
        let b = b?;
        let columns = indices
            .iter()
            .zip(out.fields())
            .map(|(&i, f)| {
                let c = b.column(i);
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type())
                        .map_err(|_| mismatch(f.name(), None, f.data_type()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(out.clone(), columns)?)
    });
    Ok(BatchStream::new(target, batches))
}

/// Slices batches longer than [`BATCH_SIZE`] (zero-copy), for readers that return batches as they were stored.
fn rechunk(stream: BatchStream) -> BatchStream {
    let schema = stream.schema().clone();
    let batches = stream.flat_map(|b| {
        let pieces: Vec<Result<RecordBatch>> = match b {
            Ok(b) if b.num_rows() > BATCH_SIZE => (0..b.num_rows())
                .step_by(BATCH_SIZE)
                .map(|start| Ok(b.slice(start, BATCH_SIZE.min(b.num_rows() - start))))
                .collect(),
            other => vec![other],
        };
        pieces
    });
    BatchStream::new(schema, batches)
}

fn mismatch(column: &str, row: Option<u64>, ty: &DataType) -> Error {
    let mut e = Error::validation(
        Reason::TypeMismatch,
        format!("a value of column '{column}' does not convert to {ty}"),
    )
    .with_field(column.to_string());
    if let Some(r) = row {
        e = e.with_detail("row", r);
    }
    e
}

// ---------------------------------------------------------------------------------------------------------------
// Parquet and Arrow IPC
// ---------------------------------------------------------------------------------------------------------------

#[cfg(feature = "parquet")]
fn malformed_parquet() -> Error {
    Error::validation(Reason::MalformedParquet, "the file is not valid Parquet")
}

#[cfg(feature = "parquet")]
fn parquet_stream(file: File) -> Result<BatchStream> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let malformed =
        |_| Error::validation(Reason::MalformedParquet, "the file is not valid Parquet");
    let reader = guarded(
        || ParquetRecordBatchReaderBuilder::try_new(file),
        malformed_parquet,
    )?
    .map_err(malformed)?;
    let schema = reader.schema().clone();
    let reader = guarded(
        || reader.with_batch_size(BATCH_SIZE).build(),
        malformed_parquet,
    )?
    .map_err(malformed)?;
    Ok(BatchStream::new(
        schema,
        Guarded::new(
            reader.map(|b| b.map_err(|e| decode_error(e, Reason::MalformedParquet, "Parquet"))),
            malformed_parquet,
        ),
    ))
}

#[cfg(not(feature = "parquet"))]
fn parquet_stream(_file: File) -> Result<BatchStream> {
    Err(Error::validation(
        Reason::UnsupportedFormat,
        "this build has no Parquet support (feature `parquet`)",
    )
    .with_field("format"))
}

fn ipc_stream(file: File) -> Result<BatchStream> {
    use arrow::ipc::reader::{FileReader, StreamReader};
    use std::io::{Seek, SeekFrom};
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut reader, &mut magic)?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("reading Arrow IPC", &e))?;
    let malformed = |_| malformed_ipc();
    let size = reader
        .get_ref()
        .metadata()
        .map_err(|e| Error::io("reading Arrow IPC", &e))?
        .len();
    let is_file = n == 6 && &magic == b"ARROW1";
    // arrow allocates what lengths in the file claim before reading: check them against the file size first,
    // so a damaged file is an error, not a multi-gigabyte allocation.
    check_ipc_lengths(&mut reader, size, is_file)?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("reading Arrow IPC", &e))?;
    let decode = |b: std::result::Result<RecordBatch, ArrowError>| {
        b.map_err(|e| decode_error(e, Reason::MalformedIpc, "Arrow IPC"))
    };
    if is_file {
        let r = guarded(|| FileReader::try_new(reader, None), malformed_ipc)?.map_err(malformed)?;
        let schema = r.schema();
        Ok(BatchStream::new(
            schema,
            Guarded::new(r.map(decode), malformed_ipc),
        ))
    } else {
        let r =
            guarded(|| StreamReader::try_new(reader, None), malformed_ipc)?.map_err(malformed)?;
        let schema = r.schema();
        Ok(BatchStream::new(
            schema,
            Guarded::new(r.map(decode), malformed_ipc),
        ))
    }
}

/// Runs a third-party decoder step on untrusted bytes: a panic inside it (a decoder bug on damaged input) becomes
/// the error `malformed` instead of unwinding through the caller.
fn guarded<T>(step: impl FnOnce() -> T, malformed: fn() -> Error) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|_| malformed())
}

/// An iterator of decoded batches whose `next` is [`guarded`]; it ends after the first error.
struct Guarded<I> {
    inner: I,
    malformed: fn() -> Error,
    done: bool,
}

impl<I> Guarded<I> {
    fn new(inner: I, malformed: fn() -> Error) -> Self {
        Guarded {
            inner,
            malformed,
            done: false,
        }
    }
}

impl<I: Iterator<Item = Result<RecordBatch>>> Iterator for Guarded<I> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match guarded(|| self.inner.next(), self.malformed) {
            Ok(item) => item,
            Err(e) => Some(Err(e)),
        };
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

fn malformed_ipc() -> Error {
    Error::validation(Reason::MalformedIpc, "the file is not valid Arrow IPC")
}

/// Checks that every length an Arrow IPC file or stream claims (footer, blocks, messages and bodies) lies
/// within the file's `size`.
fn check_ipc_lengths<R: Read + std::io::Seek>(r: &mut R, size: u64, is_file: bool) -> Result<()> {
    use std::io::SeekFrom;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => malformed_ipc(),
        _ => Error::io("reading Arrow IPC", &e),
    };
    if is_file {
        if size < 18 {
            return Err(malformed_ipc());
        }
        let mut trailer = [0u8; 10];
        r.seek(SeekFrom::Start(size - 10)).map_err(io)?;
        r.read_exact(&mut trailer).map_err(io)?;
        if &trailer[4..] != b"ARROW1" {
            return Err(malformed_ipc());
        }
        let footer_len = i32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let footer_len = u64::try_from(footer_len).map_err(|_| malformed_ipc())?;
        if footer_len + 18 > size {
            return Err(malformed_ipc());
        }
        let mut footer = vec![0u8; footer_len as usize];
        r.seek(SeekFrom::Start(size - 10 - footer_len))
            .map_err(io)?;
        r.read_exact(&mut footer).map_err(io)?;
        let footer = arrow::ipc::root_as_footer(&footer).map_err(|_| malformed_ipc())?;
        let blocks = footer
            .recordBatches()
            .into_iter()
            .flatten()
            .chain(footer.dictionaries().into_iter().flatten());
        for b in blocks {
            let end = u64::try_from(b.offset())
                .ok()
                .zip(u64::try_from(b.metaDataLength()).ok())
                .zip(u64::try_from(b.bodyLength()).ok())
                .and_then(|((o, m), l)| o.checked_add(m)?.checked_add(l));
            if end.is_none_or(|e| e > size) {
                return Err(malformed_ipc());
            }
        }
        return Ok(());
    }
    let mut pos = 0u64;
    while pos < size {
        let mut word = [0u8; 4];
        r.seek(SeekFrom::Start(pos)).map_err(io)?;
        r.read_exact(&mut word).map_err(io)?;
        pos += 4;
        if word == [0xFF; 4] {
            r.read_exact(&mut word).map_err(io)?;
            pos += 4;
        }
        let len = u64::try_from(i32::from_le_bytes(word)).map_err(|_| malformed_ipc())?;
        if len == 0 {
            return Ok(());
        }
        if pos + len > size {
            return Err(malformed_ipc());
        }
        let mut meta = vec![0u8; len as usize];
        r.read_exact(&mut meta).map_err(io)?;
        let message = arrow::ipc::root_as_message(&meta).map_err(|_| malformed_ipc())?;
        let body = u64::try_from(message.bodyLength()).map_err(|_| malformed_ipc())?;
        pos = pos
            .checked_add(len)
            .and_then(|p| p.checked_add(body))
            .filter(|&p| p <= size)
            .ok_or_else(malformed_ipc)?;
    }
    Ok(())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading input", &e)),
        }
    }
    Ok(n)
}

/// An error of a decoder: I/O stays EXP005; anything else is malformed input, said without quoting it.
fn decode_error(e: ArrowError, reason: Reason, what: &str) -> Error {
    match e {
        ArrowError::IoError(_, io) if io.kind() != std::io::ErrorKind::InvalidData => {
            Error::io("reading input", &io)
        }
        ArrowError::ExternalError(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) if io.kind() != std::io::ErrorKind::InvalidData => {
                Error::io("reading input", &io)
            }
            _ => Error::validation(reason, format!("the file is not valid {what}")),
        },
        _ => Error::validation(reason, format!("the file is not valid {what}")),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON and NDJSON
// ---------------------------------------------------------------------------------------------------------------

fn json_input(file: File, array: bool) -> Box<dyn BufRead + Send> {
    let inner = BufReader::with_capacity(1 << 16, file);
    if array {
        Box::new(BufReader::with_capacity(1 << 16, ArrayRecords::new(inner)))
    } else {
        Box::new(inner)
    }
}

fn json_stream(
    path: &Path,
    file: File,
    array: bool,
    schema: Option<SchemaRef>,
) -> Result<BatchStream> {
    let schema = match schema {
        Some(s) => s,
        None => {
            let input = json_input(file, array);
            let values = serde_json::Deserializer::from_reader(input)
                .into_iter::<serde_json::Value>()
                .take(INFER_SAMPLE_ROWS)
                .map(|v| {
                    v.map_err(|_| ArrowError::JsonError("malformed JSON".to_string()))
                        .and_then(|v| match v {
                            serde_json::Value::Object(_) => Ok(v),
                            _ => Err(ArrowError::JsonError("a record is not an object".into())),
                        })
                });
            let inferred = arrow::json::reader::infer_json_schema_from_iterator(values)
                .map_err(|e| decode_error(e, Reason::MalformedJson, "JSON records"))?;
            Arc::new(inferred)
        }
    };
    // Without the chrono-tz feature arrow-json parses only offset time zones: decode named ones (such as "UTC")
    // as "+00:00" (the values are UTC instants either way) and put the name back afterwards.
    let mut retag = Vec::new();
    let decode_fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match f.data_type() {
            DataType::Timestamp(unit, Some(tz))
                if tz.parse::<arrow::array::timezone::Tz>().is_err() =>
            {
                retag.push((i, *unit, tz.clone()));
                f.as_ref()
                    .clone()
                    .with_data_type(DataType::Timestamp(*unit, Some("+00:00".into())))
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    let decode_schema = Arc::new(Schema::new_with_metadata(
        decode_fields,
        schema.metadata().clone(),
    ));
    let reader = arrow::json::ReaderBuilder::new(decode_schema)
        .with_batch_size(BATCH_SIZE)
        .build(json_input(open_file(path)?, array))
        .map_err(|e| decode_error(e, Reason::MalformedJson, "JSON records"))?;
    let out = schema.clone();
    let batches = reader.map(move |b| {
        let b = b.map_err(|e| decode_error(e, Reason::MalformedJson, "JSON records"))?;
        let mut columns = b.columns().to_vec();
        for (i, unit, tz) in &retag {
            columns[*i] = with_timezone(&columns[*i], *unit, tz.clone());
        }
        Ok(RecordBatch::try_new(out.clone(), columns)?)
    });
    Ok(BatchStream::new(schema, batches))
}

fn with_timezone(a: &ArrayRef, unit: TimeUnit, tz: Arc<str>) -> ArrayRef {
    match unit {
        TimeUnit::Second => Arc::new(
            a.as_primitive::<TimestampSecondType>()
                .clone()
                .with_timezone(tz),
        ),
        TimeUnit::Millisecond => Arc::new(
            a.as_primitive::<TimestampMillisecondType>()
                .clone()
                .with_timezone(tz),
        ),
        TimeUnit::Microsecond => Arc::new(
            a.as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone(tz),
        ),
        TimeUnit::Nanosecond => Arc::new(
            a.as_primitive::<TimestampNanosecondType>()
                .clone()
                .with_timezone(tz),
        ),
    }
}

/// Turns a JSON array of records into whitespace-separated records, streaming, so arrow-json (which reads a
/// sequence of values) can decode it without holding the file in memory: the outer `[` and `]` are dropped and
/// the commas between records become newlines. A file that is not one array is `InvalidData`.
struct ArrayRecords<R: Read> {
    inner: R,
    state: ArrayState,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Whether a value was seen since the last top-level comma (or the opening bracket).
    value_seen: bool,
    chunk: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    Before,
    Inside,
    After,
}

impl<R: Read> ArrayRecords<R> {
    fn new(inner: R) -> Self {
        ArrayRecords {
            inner,
            state: ArrayState::Before,
            depth: 0,
            in_string: false,
            escaped: false,
            value_seen: false,
            chunk: vec![0; 1 << 16],
        }
    }
}

fn not_an_array() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "a JSON file must hold one array of records",
    )
}

impl<R: Read> Read for ArrayRecords<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let want = out.len().min(self.chunk.len());
            if want == 0 {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.chunk[..want])?;
            if n == 0 {
                return if self.state == ArrayState::After {
                    Ok(0)
                } else {
                    Err(not_an_array())
                };
            }
            let mut written = 0;
            for &b in &self.chunk[..n] {
                let emit = match self.state {
                    ArrayState::Before => match b {
                        b'[' => {
                            self.state = ArrayState::Inside;
                            None
                        }
                        b' ' | b'\t' | b'\r' | b'\n' => None,
                        0xEF | 0xBB | 0xBF => None,
                        _ => return Err(not_an_array()),
                    },
                    ArrayState::After => match b {
                        b' ' | b'\t' | b'\r' | b'\n' => None,
                        _ => return Err(not_an_array()),
                    },
                    ArrayState::Inside if self.in_string => {
                        if self.escaped {
                            self.escaped = false;
                        } else if b == b'\\' {
                            self.escaped = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                        Some(b)
                    }
                    ArrayState::Inside => match b {
                        b'"' => {
                            self.in_string = true;
                            self.value_seen = true;
                            Some(b)
                        }
                        b'{' | b'[' => {
                            self.depth += 1;
                            self.value_seen = true;
                            Some(b)
                        }
                        b']' if self.depth == 0 => {
                            self.state = ArrayState::After;
                            Some(b'\n')
                        }
                        b'}' | b']' => {
                            self.depth = self.depth.saturating_sub(1);
                            Some(b)
                        }
                        b',' if self.depth == 0 => {
                            if !self.value_seen {
                                return Err(not_an_array());
                            }
                            self.value_seen = false;
                            Some(b'\n')
                        }
                        b' ' | b'\t' | b'\r' | b'\n' => Some(b),
                        _ => {
                            self.value_seen = true;
                            Some(b)
                        }
                    },
                };
                if let Some(b) = emit {
                    out[written] = b;
                    written += 1;
                }
            }
            if written > 0 {
                return Ok(written);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// CSV and TSV
// ---------------------------------------------------------------------------------------------------------------

fn malformed_csv(message: &str, record: u64) -> Error {
    Error::validation(Reason::MalformedCsv, message.to_string()).with_detail("line", record)
}

/// Splits delimited text into records of fields, remembering which fields were quoted.
struct RecordReader<R: BufRead> {
    input: R,
    delimiter: u8,
    /// The limits of [`ReadOptions`].
    max_field: u64,
    max_record: u64,
    /// Bytes since the last delimiter byte of the current record (the raw text of one field at most), followed
    /// once a line is longer than [`LINE_STEP`]; `u64::MAX` until then.
    run: u64,
    line: Vec<u8>,
    /// Unescaped bytes of the current record's fields.
    text: Vec<u8>,
    /// (start, end, quoted) of each field in `text`.
    fields: Vec<(usize, usize, bool)>,
    /// Physical lines read so far (for error details).
    lines: u64,
    started: bool,
}

impl<R: BufRead> RecordReader<R> {
    fn new(input: R, delimiter: u8, options: &ReadOptions) -> Self {
        RecordReader {
            input,
            delimiter,
            max_field: options.csv_max_field_bytes,
            max_record: options.csv_max_record_bytes,
            run: u64::MAX,
            line: Vec::with_capacity(4096),
            text: Vec::with_capacity(4096),
            fields: Vec::with_capacity(64),
            lines: 0,
            started: false,
        }
    }

    /// Appends the next physical line to `line`; false at the end of input. Reads at most [`LINE_STEP`] bytes at a
    /// time (a whole line at once, as usual), so the limits are found before much more than them is held: the
    /// record's bytes against the record limit and, once a line is longer than a step, the bytes since the last
    /// delimiter (one field's raw text at most) against twice the field limit plus its two quotes, which no field
    /// within the limit reaches even when every character is a doubled quote.
    fn read_line(&mut self) -> Result<bool> {
        let field_cap = self.max_field.saturating_mul(2).saturating_add(2);
        let d = self.delimiter;
        let mut n = 0usize;
        loop {
            let before = self.line.len();
            let want = (self.max_record + 1)
                .saturating_sub(before as u64)
                .min(LINE_STEP);
            let got = (&mut self.input)
                .take(want)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io("reading CSV", &e))?;
            n += got;
            if self.line.len() as u64 > self.max_record {
                return Err(self.over_record(field_cap));
            }
            if got == 0 || self.line.last() == Some(&b'\n') || (got as u64) < want {
                break;
            }
            // A long line: follow the field being read, from its start.
            let new = &self.line[before..];
            if self.run == u64::MAX {
                self.run = trailing_run(&self.line, d);
            } else {
                let first = new.iter().position(|&b| b == d).unwrap_or(new.len()) as u64;
                if self.run + first > field_cap {
                    return Err(self.field_over(self.lines + 1));
                }
                self.run = match new.iter().rposition(|&b| b == d) {
                    Some(last) => (new.len() - last - 1) as u64,
                    None => self.run + new.len() as u64,
                };
            }
            if self.run > field_cap {
                return Err(self.field_over(self.lines + 1));
            }
        }
        if n > 0 {
            self.lines += 1;
        }
        Ok(n > 0)
    }

    /// The error of a record over the limit: `field_too_large` when a run of bytes without a delimiter in it is
    /// over `field_cap` (one field is), else `record_too_large`.
    fn over_record(&self, field_cap: u64) -> Error {
        let d = self.delimiter;
        let longest = self
            .line
            .split(|&b| b == d)
            .map(|f| f.len() as u64)
            .max()
            .unwrap_or(0);
        if longest > field_cap {
            return self.field_over(self.lines + 1);
        }
        too_large(
            Reason::RecordTooLarge,
            "a record",
            "csv_max_record_bytes",
            self.max_record,
            self.lines + 1,
        )
    }

    fn field_over(&self, line: u64) -> Error {
        too_large(
            Reason::FieldTooLarge,
            "a field",
            "csv_max_field_bytes",
            self.max_field,
            line,
        )
    }

    /// EXP002 `field_too_large` when the field that ends at `text[start..]` is over the limit.
    fn check_field(&self, start: usize) -> Result<()> {
        if (self.text.len() - start) as u64 > self.max_field {
            return Err(self.field_over(self.lines));
        }
        Ok(())
    }

    /// Reads the next record into `fields`; false at the end of input.
    fn next_record(&mut self) -> Result<bool> {
        self.line.clear();
        self.text.clear();
        self.fields.clear();
        self.run = u64::MAX;
        if !self.read_line()? {
            return Ok(false);
        }
        if !self.started {
            self.started = true;
            if self.line.starts_with(&[0xEF, 0xBB, 0xBF]) {
                self.line.drain(..3);
            }
        }
        let d = self.delimiter;
        let mut i = 0;
        loop {
            // At the start of a field.
            let start = self.text.len();
            if self.line.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match self.line.get(i) {
                        Some(&b'"') => {
                            if self.line.get(i + 1) == Some(&b'"') {
                                self.text.push(b'"');
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&b) => {
                            self.text.push(b);
                            i += 1;
                        }
                        None => {
                            if !self.read_line()? {
                                return Err(malformed_csv(
                                    "a quoted field is not closed",
                                    self.lines,
                                ));
                            }
                        }
                    }
                }
                self.check_field(start)?;
                self.fields.push((start, self.text.len(), true));
                match self.line.get(i) {
                    Some(&b) if b == d => i += 1,
                    None | Some(&b'\n') => break,
                    Some(&b'\r') if matches!(self.line.get(i + 1), None | Some(&b'\n')) => break,
                    Some(_) => {
                        return Err(malformed_csv(
                            "a quoted field is followed by text before the delimiter",
                            self.lines,
                        ))
                    }
                }
            } else {
                let rest = &self.line[i..];
                let end = rest
                    .iter()
                    .position(|&b| b == d || b == b'\n')
                    .unwrap_or(rest.len());
                let mut field = &rest[..end];
                let at_delim = rest.get(end) == Some(&d);
                if !at_delim && field.last() == Some(&b'\r') {
                    field = &field[..field.len() - 1];
                }
                self.text.extend_from_slice(field);
                self.check_field(start)?;
                self.fields.push((start, self.text.len(), false));
                if at_delim {
                    i += end + 1;
                } else {
                    break;
                }
            }
        }
        Ok(true)
    }

    /// The current record's text, checked to be UTF-8.
    fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.text).map_err(|_| {
            Error::validation(Reason::InvalidUtf8, "the file is not valid UTF-8")
                .with_detail("line", self.lines)
        })
    }

    /// Whether the current record is a blank line (one unquoted empty field).
    fn is_blank(&self) -> bool {
        self.fields.len() == 1 && !self.fields[0].2 && self.fields[0].0 == self.fields[0].1
    }
}

/// Bytes a CSV line is read in at most: lines are read whole up to this, and longer ones in steps of it, each
/// checked against the limits.
const LINE_STEP: u64 = 1 << 20;

/// The bytes after the last `delimiter` in `line` (all of them when there is none).
fn trailing_run(line: &[u8], delimiter: u8) -> u64 {
    match line.iter().rposition(|&b| b == delimiter) {
        Some(last) => (line.len() - last - 1) as u64,
        None => line.len() as u64,
    }
}

/// EXP002 `reason` for `what` over the limit `option` = `max` bytes, found at `line`.
fn too_large(reason: Reason, what: &str, option: &str, max: u64, line: u64) -> Error {
    Error::validation(
        reason,
        format!("{what} on line {line} is larger than {max} bytes, the limit of the read option {option}"),
    )
    .with_detail("line", line)
    .with_detail("limit", option)
    .with_detail("max_bytes", max)
}

/// The header and the open record reader of a delimited file.
///
/// # Errors
/// EXP002 `malformed_csv` for an empty file, `duplicate_column` (field `columns`, `details.column`) for a name
/// the header gives twice: which of the two a reader, a schema or a filter would take is anyone's guess.
fn csv_header(
    file: File,
    delimiter: u8,
    options: &ReadOptions,
) -> Result<(RecordReader<BufReader<File>>, Vec<String>)> {
    let mut r = RecordReader::new(BufReader::with_capacity(1 << 16, file), delimiter, options);
    if !r.next_record()? {
        return Err(Error::validation(
            Reason::MalformedCsv,
            "the file is empty: a header row is required",
        ));
    }
    let text = r.text()?;
    let names: Vec<String> = r
        .fields
        .iter()
        .map(|&(s, e, _)| text[s..e].to_string())
        .collect();
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if !seen.insert(name.as_str()) {
            return Err(Error::validation(
                Reason::DuplicateColumn,
                format!(
                    "the header names column '{name}' twice (again as column {}): column names must be unique",
                    i + 1
                ),
            )
            .with_field("columns")
            .with_detail("column", name.clone())
            .with_detail("position", i + 1));
        }
    }
    Ok((r, names))
}

fn csv_stream(
    path: &Path,
    file: File,
    delimiter: u8,
    schema: Option<SchemaRef>,
    options: &ReadOptions,
) -> Result<BatchStream> {
    let (records, names) = csv_header(file, delimiter, options)?;
    let (schema, columns, records) = match schema {
        Some(schema) => {
            let mut columns = Vec::with_capacity(schema.fields().len());
            for f in schema.fields() {
                let i = names.iter().position(|n| n == f.name()).ok_or_else(|| {
                    Error::validation(
                        Reason::SchemaMismatch,
                        format!("the file has no column '{}'", f.name()),
                    )
                    .with_field("columns")
                })?;
                columns.push(i);
            }
            if names.len() != schema.fields().len() {
                return Err(Error::validation(
                    Reason::SchemaMismatch,
                    "the file has columns the schema does not name",
                )
                .with_field("columns"));
            }
            (schema, columns, records)
        }
        None => {
            drop(records);
            let types = infer_csv(open_file(path)?, delimiter, names.len(), options)?;
            // A column its `<STEM>.meta.json` declares as text stays text, whatever its values look like
            // (site ids such as `701`, codes such as `1`): inference only decides what the metadata leaves open.
            let declared = sidecar_meta(path)?.unwrap_or_default();
            let fields: Vec<Field> = names
                .iter()
                .zip(types)
                .map(|(n, t)| {
                    let text = declared
                        .column(n)
                        .and_then(|c| c.data_type.as_deref())
                        .is_some_and(|d| matches!(d, "string" | "text"));
                    Field::new(n.clone(), if text { DataType::Utf8 } else { t }, true)
                })
                .collect();
            let (records, _) = csv_header(open_file(path)?, delimiter, options)?;
            (
                Arc::new(Schema::new(fields)),
                (0..names.len()).collect(),
                records,
            )
        }
    };
    let batches = CsvBatches {
        records,
        schema: schema.clone(),
        columns,
        file_columns: names.len(),
        rows: 0,
        done: false,
    };
    Ok(BatchStream::new(schema, batches))
}

const C_BOOL: u8 = 1;
const C_INT: u8 = 2;
const C_FLOAT: u8 = 4;
const C_DATE: u8 = 8;
const C_TS: u8 = 16;
const C_TS_TZ: u8 = 32;

fn infer_csv(
    file: File,
    delimiter: u8,
    ncols: usize,
    options: &ReadOptions,
) -> Result<Vec<DataType>> {
    let (mut r, _) = csv_header(file, delimiter, options)?;
    let mut candidates = vec![C_BOOL | C_INT | C_FLOAT | C_DATE | C_TS | C_TS_TZ; ncols];
    let mut seen = vec![false; ncols];
    let mut n = 0;
    while n < INFER_SAMPLE_ROWS && r.next_record()? {
        if r.fields.len() != ncols {
            if r.is_blank() {
                continue;
            }
            return Err(wrong_field_count(r.lines));
        }
        n += 1;
        let text = r.text()?;
        for (j, &(s, e, quoted)) in r.fields.iter().enumerate() {
            if !quoted && s == e {
                continue;
            }
            seen[j] = true;
            if candidates[j] != 0 {
                candidates[j] &= classify(&text[s..e]);
            }
        }
    }
    Ok(candidates
        .iter()
        .zip(seen)
        .map(|(&c, seen)| {
            if !seen {
                DataType::Utf8
            } else if c & C_BOOL != 0 {
                DataType::Boolean
            } else if c & C_INT != 0 {
                DataType::Int64
            } else if c & C_FLOAT != 0 {
                DataType::Float64
            } else if c & C_DATE != 0 {
                DataType::Date32
            } else if c & C_TS != 0 {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            } else if c & C_TS_TZ != 0 {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            } else {
                DataType::Utf8
            }
        })
        .collect())
}

fn wrong_field_count(line: u64) -> Error {
    malformed_csv(
        "a record has a different number of fields than the header",
        line,
    )
}

/// The types a non-null CSV value fits, as a set of `C_*` bits.
fn classify(s: &str) -> u8 {
    let b = s.as_bytes();
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return C_BOOL;
    }
    if is_int_syntax(b) {
        return if s.parse::<i64>().is_ok() {
            C_INT | C_FLOAT
        } else {
            0
        };
    }
    if is_float_syntax(b) {
        return C_FLOAT;
    }
    if b.len() >= 10 && b.len() <= 11 && parse_date(b).is_some() {
        return C_DATE;
    }
    if b.len() >= 16 {
        if let Some((secs, nanos, offset)) = parse_datetime(b) {
            if to_unit(secs, nanos, TimeUnit::Microsecond).is_some() {
                return if offset { C_TS_TZ } else { C_TS };
            }
        }
    }
    0
}

/// `-?digits` without a leading zero (so `007` stays text).
fn is_int_syntax(b: &[u8]) -> bool {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0')
}

/// `-?digits[.digits][e[+-]digits]`, or `NaN`, `inf`, `-inf`, without a leading zero before other digits.
fn is_float_syntax(b: &[u8]) -> bool {
    if matches!(b, b"NaN" | b"inf" | b"-inf") {
        return true;
    }
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 || (int_len > 1 && b[0] == b'0') {
        return false;
    }
    let mut rest = &b[int_len..];
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &r[n..];
    }
    if let Some(r) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let r = r
            .strip_prefix(b"-")
            .or_else(|| r.strip_prefix(b"+"))
            .unwrap_or(r);
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &r[n..];
    }
    rest.is_empty()
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        b.iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0')),
    )
}

/// Parses `YYYY-MM-DD` (years beyond 0000-9999 with a sign and more digits) to days since 1970-01-01, and how
/// many bytes it took.
fn parse_date_prefix(b: &[u8]) -> Option<(i64, usize)> {
    let (sign, body) = match b.first() {
        Some(b'+') => (1, &b[1..]),
        Some(b'-') => (-1, &b[1..]),
        _ => (0, b),
    };
    let year_len = body.iter().take_while(|c| c.is_ascii_digit()).count();
    if year_len < 4 || (year_len > 4 && sign == 0) || body.len() < year_len + 6 {
        return None;
    }
    let rest = &body[year_len..];
    if rest[0] != b'-' || rest[3] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(&body[..year_len])?).ok()?;
    let year = if sign < 0 { -year } else { year };
    let month = digits(&rest[1..3])?;
    let day = digits(&rest[4..6])?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let days = i64::from(chrono::Datelike::num_days_from_ce(&date))
        - crate::csv::cell::UNIX_EPOCH_DAYS_FROM_CE;
    Some((days, usize::from(sign != 0) + year_len + 6))
}

/// Parses a whole `YYYY-MM-DD` to days since 1970-01-01.
fn parse_date(b: &[u8]) -> Option<i64> {
    match parse_date_prefix(b)? {
        (days, n) if n == b.len() => Some(days),
        _ => None,
    }
}

/// Parses `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][Z|±HH[:MM]]` to UTC seconds since the epoch, nanoseconds, and
/// whether it carried a zone.
fn parse_datetime(b: &[u8]) -> Option<(i64, u32, bool)> {
    let (days, n) = parse_date_prefix(b)?;
    let rest = b.get(n..)?;
    if !matches!(rest.first(), Some(b'T' | b't' | b' ')) || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let hour = digits(&rest[1..3])?;
    let minute = digits(&rest[4..6])?;
    let mut rest = &rest[6..];
    let mut second = 0;
    let mut nanos = 0;
    if rest.first() == Some(&b':') {
        second = digits(rest.get(1..3)?)?;
        rest = &rest[3..];
        if let Some(r) = rest.strip_prefix(b".") {
            let len = r.iter().take_while(|c| c.is_ascii_digit()).count();
            if len == 0 || len > 9 {
                return None;
            }
            nanos = digits(&r[..len])? * 10u32.pow(9 - len as u32);
            rest = &r[len..];
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset: Option<i64> = match rest {
        b"" => None,
        b"Z" | b"z" => Some(0),
        [s @ (b'+' | b'-'), h1, h2, tail @ ..] => {
            let h = i64::from(digits(&[*h1, *h2])?);
            let m = match tail {
                [] => 0,
                [b':', m1, m2] | [m1, m2] => i64::from(digits(&[*m1, *m2])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            Some(if *s == b'-' { -secs } else { secs })
        }
        _ => return None,
    };
    let local = days
        .checked_mul(86_400)?
        .checked_add(i64::from(hour * 3600 + minute * 60 + second))?;
    let utc = local.checked_sub(offset.unwrap_or(0))?;
    Some((utc, nanos, offset.is_some()))
}

/// Seconds and nanoseconds as a count of `unit`; `None` on overflow or when the fraction is finer than `unit`.
fn to_unit(secs: i64, nanos: u32, unit: TimeUnit) -> Option<i64> {
    let (per_sec, nanos_per) = match unit {
        TimeUnit::Second => (1, 1_000_000_000),
        TimeUnit::Millisecond => (1_000, 1_000_000),
        TimeUnit::Microsecond => (1_000_000, 1_000),
        TimeUnit::Nanosecond => (1_000_000_000, 1),
    };
    if !nanos.is_multiple_of(nanos_per) {
        return None;
    }
    secs.checked_mul(per_sec)?
        .checked_add(i64::from(nanos / nanos_per))
}

/// How a column's text is parsed while reading.
enum ColumnBuilder {
    /// Text, cast to the target type at the end of the batch when it is not Utf8.
    Text(StringBuilder),
    Int(Int64Builder),
    Date(Int64Builder),
    DateMillis(Int64Builder),
    Timestamp(Int64Builder, TimeUnit),
    UInt(UInt64Builder),
    F64(Float64Builder),
    F32(Float32Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn for_type(t: &DataType) -> Self {
        let cap = BATCH_SIZE;
        match t {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                ColumnBuilder::Int(Int64Builder::with_capacity(cap))
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                ColumnBuilder::UInt(UInt64Builder::with_capacity(cap))
            }
            DataType::Float64 => ColumnBuilder::F64(Float64Builder::with_capacity(cap)),
            DataType::Float32 | DataType::Float16 => {
                ColumnBuilder::F32(Float32Builder::with_capacity(cap))
            }
            DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Date32 => ColumnBuilder::Date(Int64Builder::with_capacity(cap)),
            DataType::Date64 => ColumnBuilder::DateMillis(Int64Builder::with_capacity(cap)),
            DataType::Timestamp(unit, _) => {
                ColumnBuilder::Timestamp(Int64Builder::with_capacity(cap), *unit)
            }
            _ => ColumnBuilder::Text(StringBuilder::with_capacity(cap, cap * 8)),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Int(b)
            | ColumnBuilder::Date(b)
            | ColumnBuilder::DateMillis(b)
            | ColumnBuilder::Timestamp(b, _) => b.append_null(),
            ColumnBuilder::UInt(b) => b.append_null(),
            ColumnBuilder::F64(b) => b.append_null(),
            ColumnBuilder::F32(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
        }
    }

    /// Appends a non-null value; false when it does not parse.
    fn append(&mut self, s: &str) -> bool {
        match self {
            ColumnBuilder::Text(b) => {
                b.append_value(s);
                true
            }
            ColumnBuilder::Int(b) => s.parse::<i64>().map(|v| b.append_value(v)).is_ok(),
            ColumnBuilder::UInt(b) => s.parse::<u64>().map(|v| b.append_value(v)).is_ok(),
            ColumnBuilder::F64(b) => s.parse::<f64>().map(|v| b.append_value(v)).is_ok(),
            ColumnBuilder::F32(b) => s.parse::<f32>().map(|v| b.append_value(v)).is_ok(),
            ColumnBuilder::Bool(b) => {
                if s.eq_ignore_ascii_case("true") {
                    b.append_value(true);
                } else if s.eq_ignore_ascii_case("false") {
                    b.append_value(false);
                } else {
                    return false;
                }
                true
            }
            ColumnBuilder::Date(b) => parse_date(s.as_bytes())
                .map(|d| b.append_value(d))
                .is_some(),
            ColumnBuilder::DateMillis(b) => parse_date(s.as_bytes())
                .and_then(|d| d.checked_mul(86_400_000))
                .map(|d| b.append_value(d))
                .is_some(),
            ColumnBuilder::Timestamp(b, unit) => parse_datetime(s.as_bytes())
                .and_then(|(secs, nanos, _)| to_unit(secs, nanos, *unit))
                .map(|v| b.append_value(v))
                .is_some(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b)
            | ColumnBuilder::Date(b)
            | ColumnBuilder::DateMillis(b)
            | ColumnBuilder::Timestamp(b, _) => Arc::new(b.finish()),
            ColumnBuilder::UInt(b) => Arc::new(b.finish()),
            ColumnBuilder::F64(b) => Arc::new(b.finish()),
            ColumnBuilder::F32(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// Converts a finished builder's array to the column type (integers narrowed, days to Date32, counts to
/// timestamps, text to the rarer types).
fn to_target(a: ArrayRef, target: &DataType, column: &str, first_row: u64) -> Result<ArrayRef> {
    if a.data_type() == target {
        return Ok(a);
    }
    let opts = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    if let DataType::Timestamp(unit, tz) = target {
        // Int64 -> Timestamp is a relabelling; arrow's cast would need to parse named zones.
        let a = arrow::compute::cast(&a, &DataType::Timestamp(*unit, None))
            .map_err(|_| mismatch(column, Some(first_row), target))?;
        return Ok(match tz {
            Some(tz) => with_timezone(&a, *unit, tz.clone()),
            None => a,
        });
    }
    let from = match (a.data_type(), target) {
        (DataType::Int64, DataType::Date32) => {
            arrow::compute::cast_with_options(&a, &DataType::Int32, &opts)
                .map_err(|_| mismatch(column, Some(first_row), target))?
        }
        _ => a,
    };
    arrow::compute::cast_with_options(&from, target, &opts)
        .map_err(|_| mismatch(column, Some(first_row), target))
}

/// The batches of a delimited file.
struct CsvBatches {
    records: RecordReader<BufReader<File>>,
    schema: SchemaRef,
    /// For each schema field, its column in the file.
    columns: Vec<usize>,
    file_columns: usize,
    rows: u64,
    done: bool,
}

impl CsvBatches {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut builders: Vec<ColumnBuilder> = self
            .schema
            .fields()
            .iter()
            .map(|f| ColumnBuilder::for_type(f.data_type()))
            .collect();
        let first_row = self.rows;
        let mut n = 0;
        while n < BATCH_SIZE && self.records.next_record()? {
            let r = &self.records;
            if r.fields.len() != self.file_columns {
                if r.is_blank() {
                    continue;
                }
                return Err(wrong_field_count(r.lines));
            }
            let text = r.text()?;
            for (k, (b, &c)) in builders.iter_mut().zip(&self.columns).enumerate() {
                let (s, e, quoted) = r.fields[c];
                if !quoted && s == e {
                    b.append_null();
                } else if !b.append(&text[s..e]) {
                    let f = &self.schema.fields()[k];
                    return Err(mismatch(f.name(), Some(self.rows + 1), f.data_type()));
                }
            }
            n += 1;
            self.rows += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let columns = builders
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(b, f)| to_target(b.finish(), f.data_type(), f.name(), first_row + 1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

impl Iterator for CsvBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classifies_values() {
        assert_eq!(classify("12"), C_INT | C_FLOAT);
        assert_eq!(classify("-9223372036854775808"), C_INT | C_FLOAT);
        assert_eq!(classify("9223372036854775808"), 0);
        assert_eq!(classify("007"), 0);
        assert_eq!(classify("1.5e-300"), C_FLOAT);
        assert_eq!(classify("NaN"), C_FLOAT);
        assert_eq!(classify("nan"), 0);
        assert_eq!(classify("TRUE"), C_BOOL);
        assert_eq!(classify("2024-02-29"), C_DATE);
        assert_eq!(classify("2023-02-29"), 0);
        assert_eq!(classify("2024-02-29T10:11:12.123456"), C_TS);
        assert_eq!(classify("2024-02-29T10:11:12Z"), C_TS_TZ);
        assert_eq!(classify("2024-02-29T10:11:12.1234567"), 0);
        assert_eq!(classify("abc"), 0);
    }

    #[test]
    fn parses_dates_and_datetimes() {
        assert_eq!(parse_date(b"1970-01-02"), Some(1));
        assert_eq!(parse_date(b"1969-12-31"), Some(-1));
        assert_eq!(parse_date(b"+10183-09-21"), Some(3_000_000));
        assert_eq!(parse_date(b"0000-01-01"), Some(-719_528));
        assert_eq!(parse_date(b"10183-10-11"), None);
        assert_eq!(
            parse_datetime(b"1970-01-01T01:00:00+01:00"),
            Some((0, 0, true))
        );
        assert_eq!(
            parse_datetime(b"1970-01-01 00:00:01.5"),
            Some((1, 500_000_000, false))
        );
        assert_eq!(parse_datetime(b"1970-01-01T24:00:00"), None);
    }

    #[test]
    fn json_array_becomes_a_sequence() {
        let text = br#" [ {"a": [1, 2], "b": "x,]"} , {"a": []} ] "#;
        let mut r = ArrayRecords::new(&text[..]);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        let values: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(values.len(), 2);
        for bad in [&b"{}"[..], b"[{},,{}]", b"[{}", b"[{}] x"] {
            let mut s = String::new();
            assert!(ArrayRecords::new(bad).read_to_string(&mut s).is_err());
        }
    }
}
