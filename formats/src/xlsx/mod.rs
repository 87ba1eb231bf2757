//! XLSX: a streaming Excel workbook writer for datasets, and a renderer of reports and dashboards.
//!
//! Datasets are written with rust_xlsxwriter's *constant-memory* mode: each row goes to a per-sheet temporary file
//! as soon as the next row starts, so memory stays bounded by one row whatever the row count. A sheet holds at most
//! 1,048,576 rows (Excel's limit, header row included); past that the rows continue on `<name>_2`, `<name>_3`, ...
//! each with its own header row.
//!
//! # Cells
//!
//! | Arrow type | cell |
//! |---|---|
//! | integers, floats | number; `Int64`/`UInt64` beyond ±2^53 as text (a double would silently change the value); NaN and infinities as text |
//! | decimals | number when it has at most 15 significant digits (what Excel keeps), else its exact text |
//! | boolean | boolean |
//! | `Date32`, `Date64` | date, number format `yyyy-mm-dd` |
//! | `Timestamp` | date-time in UTC (Excel has no time zones), number format `yyyy-mm-dd hh:mm:ss` |
//! | `Time32`, `Time64` | time of day, number format `hh:mm:ss` |
//! | strings (and dictionaries of any supported type) | string |
//! | null | empty cell |
//!
//! Dates and timestamps outside Excel's calendar (before 1900-01-01 or after 9999-12-31) are written as ISO 8601
//! text rather than as wrong dates. Excel has no empty-string cell: an empty string reads back as an empty cell.
//! Other types (binary, lists, structs, durations, intervals) are rejected with EXP002 `unsupported_type` before
//! anything is written. A string longer than Excel's 32,767-character cell limit is EXP002 `unrepresentable_value`
//! with the column name as field: it is never truncated.
//!
//! # Spreadsheet safety
//!
//! With `neutralize_formulas` (the default), text that begins with `=`, `+`, `-`, `@`, tab or carriage return is
//! written with a leading single quote (OWASP CSV/formula injection advice), so it can never be taken for a formula
//! when the sheet is edited or re-exported. Numbers are never altered.
//!
//! # Output and determinism
//!
//! rust_xlsxwriter 0.102 assembles the zip container through a *streaming* zip writer, so
//! [`Workbook::save_to_writer`](rust_xlsxwriter::Workbook::save_to_writer) needs only `Write`: the workbook is
//! written straight to the encoder's output in `finish`, and no extra staging copy is made (the worksheets' rows
//! themselves wait in rust_xlsxwriter's own temporary files until then). The document properties' creation time is
//! the `created_at` option (default 1970-01-01T00:00:00Z; a rendered document uses its `generated_at`), and zip
//! entries carry a fixed time, so the same input and options give byte-identical files.
//!
//! # Example
//!
//! ```
//! use arrow::array::{Int64Array, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use arrow::record_batch::RecordBatch;
//! use std::sync::Arc;
//! use trialport_core::format::{Format, FormatOptions};
//! use trialport_core::meta::DatasetMeta;
//! use trialport_formats::xlsx::XlsxFormat;
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("USUBJID", DataType::Utf8, false),
//!     Field::new("AGE", DataType::Int64, true),
//! ]));
//! let batch = RecordBatch::try_new(
//!     schema.clone(),
//!     vec![Arc::new(StringArray::from(vec!["S-001"])), Arc::new(Int64Array::from(vec![34]))],
//! )?;
//! let meta = DatasetMeta { name: "DM".into(), ..Default::default() };
//! let options = FormatOptions::new().with("labels_as_header", "true");
//! let mut bytes = Vec::new();
//! let mut encoder = XlsxFormat.encoder(&schema, &meta, &options, &mut bytes)?;
//! encoder.write(&batch)?;
//! assert_eq!(encoder.finish()?.rows, 1);
//! assert!(bytes.starts_with(b"PK"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cells;
mod encoder;
mod render;
mod sheet_name;

pub use encoder::XlsxEncoder;
pub use render::render_xlsx;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use trialport_core::document::Document;
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};
use trialport_core::format::{
    Capability, Encoder, Format, FormatInfo, FormatOptions, OptionInfo, Output,
};
use trialport_core::meta::DatasetMeta;

/// The most rows an Excel sheet holds, header row included.
pub const MAX_ROWS_PER_SHEET: u32 = 1_048_576;
/// The most columns an Excel sheet holds.
pub const MAX_COLUMNS: usize = 16_384;
/// The most characters (UTF-16 code units) an Excel cell holds.
pub const MAX_CELL_CHARS: usize = 32_767;
/// The longest sheet name Excel accepts, in characters (UTF-16 code units).
pub const MAX_SHEET_NAME_CHARS: usize = 31;

/// The sheet name used when neither the option nor the dataset metadata gives one.
pub const DEFAULT_SHEET_NAME: &str = "Sheet1";

/// The `xlsx` format: [`XlsxEncoder`] for datasets, [`render_xlsx`] for reports and dashboards.
#[derive(Debug, Clone, Copy, Default)]
pub struct XlsxFormat;

/// The typed options of the `xlsx` format, parsed from the string map by [`XlsxOptions::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlsxOptions {
    /// Name of the (first) sheet. Defaults to the dataset name from the metadata (made a valid sheet name), else
    /// `Sheet1`. An explicit value must be a valid Excel sheet name. Not used when rendering documents.
    pub sheet_name: String,
    /// Whether the first row of each sheet holds the column headers. Defaults to `true`.
    pub header: bool,
    /// Whether the headers are the column labels from the metadata (the name where a column has none) rather than
    /// the column names. Defaults to `false`.
    pub labels_as_header: bool,
    /// Whether text beginning with `=`, `+`, `-`, `@`, tab or CR gets a leading single quote. Defaults to `true`.
    pub neutralize_formulas: bool,
    /// Whether the header row stays visible while scrolling. Defaults to `true`.
    pub freeze_header: bool,
    /// The creation time recorded in the document properties. Defaults to `None`: 1970-01-01T00:00:00Z for
    /// datasets, the document's `generated_at` for rendered documents.
    pub created_at: Option<DateTime<Utc>>,
    /// Rows per sheet, header included (Excel's limit by default). Lowered only by tests of the sheet split.
    #[doc(hidden)]
    pub max_rows_per_sheet: u32,
}

impl Default for XlsxOptions {
    fn default() -> Self {
        XlsxOptions {
            sheet_name: DEFAULT_SHEET_NAME.to_string(),
            header: true,
            labels_as_header: false,
            neutralize_formulas: true,
            freeze_header: true,
            created_at: None,
            max_rows_per_sheet: MAX_ROWS_PER_SHEET,
        }
    }
}

const OPTIONS: &[OptionInfo] = &[
    OptionInfo::new(
        "sheet_name",
        "dataset name, else Sheet1",
        "name of the first sheet; further sheets past 1,048,576 rows are <name>_2, <name>_3, ...",
    ),
    OptionInfo::new("header", "true", "write the column headers as the first row of each sheet"),
    OptionInfo::new(
        "labels_as_header",
        "false",
        "use the column labels from the metadata as headers (the name where a column has none)",
    ),
    OptionInfo::new(
        "neutralize_formulas",
        "true",
        "prefix text beginning with = + - @ tab or CR with a single quote (OWASP); numbers are never changed",
    ),
    OptionInfo::new("freeze_header", "true", "keep the header row visible while scrolling"),
    OptionInfo::new(
        "created_at",
        "1970-01-01T00:00:00Z",
        "RFC 3339 creation time recorded in the document properties (documents: their generated_at)",
    ),
];

impl XlsxOptions {
    /// The options the `xlsx` format accepts, with their defaults.
    pub fn infos() -> Vec<OptionInfo> {
        OPTIONS.to_vec()
    }

    /// Parses the string map: the one place the `xlsx` options are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` for a name not in [`XlsxOptions::infos`], `invalid_option` for a bad value (a
    /// boolean that is not one, an invalid sheet name, a `created_at` that is not RFC 3339).
    pub fn parse(options: &FormatOptions, meta: &DatasetMeta) -> Result<Self> {
        options.check_known("xlsx", OPTIONS)?;
        let sheet_name = match options.get("sheet_name") {
            Some(name) => {
                sheet_name::validate(name).map_err(|why| {
                    Error::validation(
                        Reason::InvalidOption,
                        format!("option 'sheet_name' is not a valid Excel sheet name: {why}"),
                    )
                    .with_field("options.sheet_name")
                })?;
                name.to_string()
            }
            None if meta.name.is_empty() => DEFAULT_SHEET_NAME.to_string(),
            None => sheet_name::sanitize(&meta.name),
        };
        let created_at = match options.get("created_at") {
            None => None,
            Some(v) => Some(
                DateTime::parse_from_rfc3339(v.trim())
                    .map_err(|_| {
                        Error::validation(
                            Reason::InvalidOption,
                            "option 'created_at' must be an RFC 3339 date-time",
                        )
                        .with_field("options.created_at")
                    })?
                    .with_timezone(&Utc),
            ),
        };
        if let Some(at) = created_at {
            properties(at)?;
        }
        Ok(XlsxOptions {
            sheet_name,
            header: options.bool("header", true)?,
            labels_as_header: options.bool("labels_as_header", false)?,
            neutralize_formulas: options.bool("neutralize_formulas", true)?,
            freeze_header: options.bool("freeze_header", true)?,
            created_at,
            max_rows_per_sheet: MAX_ROWS_PER_SHEET,
        })
    }
}

impl Format for XlsxFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "xlsx",
            name: "Excel workbook (XLSX)",
            extension: "xlsx",
            media_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            capabilities: vec![
                Capability::Data,
                Capability::Streaming,
                Capability::Report,
                Capability::Dashboard,
            ],
            options: XlsxOptions::infos(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        XlsxOptions::parse(options, &DatasetMeta::default()).map(|_| ())
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let options = XlsxOptions::parse(options, meta)?;
        Ok(Box::new(XlsxEncoder::try_new(schema, meta, options, out)?))
    }

    fn render(&self, doc: &Document, options: &FormatOptions, out: Output<'_>) -> Result<()> {
        render_xlsx(doc, options, out)
    }
}

/// Maps a rust_xlsxwriter error to the crate error without quoting its text (it can hold cell values).
fn xlsx_error(e: rust_xlsxwriter::XlsxError) -> Error {
    use rust_xlsxwriter::XlsxError as X;
    match e {
        X::IoError(io) => Error::io("writing the XLSX workbook", &io),
        X::TempFileError(_, io) => Error::io("creating an XLSX temporary file", &io),
        X::MaxStringLengthExceeded => Error::validation(
            Reason::UnrepresentableValue,
            "a text is longer than the 32767 characters an Excel cell holds",
        ),
        _ => Error::server(Reason::XlsxError, "the XLSX writer failed"),
    }
}

/// The document properties recording creation time `at`.
///
/// # Errors
/// EXP002 `invalid_option` when `at` is outside Excel's years 1900 to 9999.
fn properties(at: DateTime<Utc>) -> Result<rust_xlsxwriter::DocProperties> {
    let when = rust_xlsxwriter::ExcelDateTime::from_timestamp(at.timestamp()).map_err(|_| {
        Error::validation(
            Reason::InvalidOption,
            "option 'created_at' must be a time in the years 1900 to 9999",
        )
        .with_field("options.created_at")
    })?;
    Ok(rust_xlsxwriter::DocProperties::new().set_creation_datetime(&when))
}
