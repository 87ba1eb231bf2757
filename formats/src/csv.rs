//! CSV and TSV (RFC 4180): one [`CsvFormat`] with two ids, and the streaming [`CsvWriter`].
//!
//! The writer is hand-written for speed: for each batch it takes a typed view of every column once, then writes
//! row by row into reusable byte buffers handed to the output in blocks of about 1 MiB. No cell allocates. Large
//! batches are split among up to four threads by row ranges and written out in order, so the bytes never depend
//! on the thread count. NULL and the empty string stay distinguishable: a null writes the `null` text unquoted (by default
//! nothing) and an empty string writes `""`.
//!
//! Spreadsheet safety (OWASP CSV injection): a text cell beginning with `=`, `+`, `-`, `@`, tab or CR is prefixed
//! with a single quote unless `neutralize_formulas=false`. Numbers, booleans, dates and times are never touched.
//!
//! The `cell` module holds the cell formatting shared with the JSON formats.

use crate::csv::cell::{ColumnView, Kind, Temporal};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::io::Write;
use trialport_core::error::Reason;
use trialport_core::format::{
    Capability, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, OptionInfo, Output,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

/// Bytes buffered before they are handed to the output.
const FLUSH_AT: usize = 1 << 20;

/// CSV (`csv`) and TSV (`tsv`): the same writer with a different default delimiter.
#[derive(Debug, Clone)]
pub struct CsvFormat {
    id: &'static str,
}

impl CsvFormat {
    /// Comma-separated values, id `csv`.
    pub fn csv() -> Self {
        CsvFormat { id: "csv" }
    }

    /// Tab-separated values, id `tsv`.
    pub fn tsv() -> Self {
        CsvFormat { id: "tsv" }
    }

    fn is_tsv(&self) -> bool {
        self.id == "tsv"
    }
}

fn option_infos(tsv: bool) -> Vec<OptionInfo> {
    vec![
        OptionInfo::new(
            "delimiter",
            if tsv { "tab" } else { "," },
            "field separator: one ASCII character (`tab` or `\\t` for a tab); not a letter, digit, \
             quote, CR, LF, `.`, `+`, `-` or `:`",
        ),
        OptionInfo::new("header", "true", "write a header row"),
        OptionInfo::new(
            "null",
            "",
            "text written, unquoted, for a null; an empty string is always written as \"\"",
        ),
        OptionInfo::new("quote_all", "false", "quote every non-null cell"),
        OptionInfo::new(
            "date_format",
            "iso",
            "dates: `iso` (YYYY-MM-DD) or a strftime pattern such as %d/%m/%Y",
        ),
        OptionInfo::new(
            "datetime_format",
            "iso",
            "timestamps: `iso` (YYYY-MM-DDTHH:MM:SS, a fraction when non-zero, Z when time-zone aware) \
             or a strftime pattern",
        ),
        OptionInfo::new(
            "labels_as_header",
            "false",
            "header from the column labels of the metadata (names where a column has none)",
        ),
        OptionInfo::new(
            "neutralize_formulas",
            "true",
            "prefix text cells beginning with = + - @ tab or CR with a single quote (OWASP CSV injection)",
        ),
        OptionInfo::one_of(
            "line_terminator",
            "lf",
            "record terminator",
            &["lf", "crlf"],
        ),
    ]
}

impl Format for CsvFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: self.id,
            name: if self.is_tsv() {
                "Tab-separated values"
            } else {
                "Comma-separated values (RFC 4180)"
            },
            extension: if self.is_tsv() { "tsv" } else { "csv" },
            media_type: if self.is_tsv() {
                "text/tab-separated-values"
            } else {
                "text/csv"
            },
            capabilities: vec![Capability::Data, Capability::Streaming, Capability::Read],
            options: option_infos(self.is_tsv()),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        CsvOptions::from_format_options(self.id, options).map(|_| ())
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let options = CsvOptions::from_format_options(self.id, options)?;
        Ok(Box::new(CsvWriter::try_new(out, schema, meta, options)?))
    }
}

/// How records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineTerminator {
    /// `\n` (the default).
    #[default]
    Lf,
    /// `\r\n`, as RFC 4180 writes it.
    CrLf,
}

/// The typed options of CSV and TSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator. Defaults to `b','` for CSV and `b'\t'` for TSV.
    pub delimiter: u8,
    /// Whether a header row is written. Defaults to `true`.
    pub header: bool,
    /// Text written, unquoted, for a null. Defaults to the empty text. A string equal to it is quoted.
    pub null: String,
    /// Whether every non-null cell is quoted. Defaults to `false` (quote only where needed).
    pub quote_all: bool,
    /// strftime pattern for dates. Defaults to `None`: ISO 8601 `YYYY-MM-DD`.
    pub date_format: Option<String>,
    /// strftime pattern for timestamps. Defaults to `None`: ISO 8601 `YYYY-MM-DDTHH:MM:SS`, with the fraction
    /// digits of the unit when the fraction is non-zero and `Z` when the column is time-zone aware (the instant
    /// is written in UTC).
    pub datetime_format: Option<String>,
    /// Whether the header shows column labels from the metadata (the name where a column has none).
    /// Defaults to `false`: column names.
    pub labels_as_header: bool,
    /// Whether text cells beginning with `=`, `+`, `-`, `@`, tab or CR get a leading single quote.
    /// Defaults to `true`.
    pub neutralize_formulas: bool,
    /// Record terminator. Defaults to [`LineTerminator::Lf`].
    pub line_terminator: LineTerminator,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions::csv()
    }
}

impl CsvOptions {
    /// The defaults of CSV.
    pub fn csv() -> Self {
        CsvOptions {
            delimiter: b',',
            header: true,
            null: String::new(),
            quote_all: false,
            date_format: None,
            datetime_format: None,
            labels_as_header: false,
            neutralize_formulas: true,
            line_terminator: LineTerminator::Lf,
        }
    }

    /// The defaults of TSV.
    pub fn tsv() -> Self {
        CsvOptions {
            delimiter: b'\t',
            ..CsvOptions::csv()
        }
    }

    /// Parses the string options of format `format_id` (`csv` or `tsv`): the one place they are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn from_format_options(format_id: &str, options: &FormatOptions) -> Result<Self> {
        let tsv = format_id == "tsv";
        options.check_known(format_id, &option_infos(tsv))?;
        let defaults = if tsv {
            CsvOptions::tsv()
        } else {
            CsvOptions::csv()
        };
        let pattern = |name: &str| -> Result<Option<String>> {
            match options.get(name) {
                None | Some("iso") => Ok(None),
                Some(p) => {
                    Temporal::parse_pattern(name, p)?;
                    Ok(Some(p.to_string()))
                }
            }
        };
        let parsed = CsvOptions {
            delimiter: options.byte("delimiter", defaults.delimiter)?,
            header: options.bool("header", defaults.header)?,
            null: options.string("null", &defaults.null),
            quote_all: options.bool("quote_all", defaults.quote_all)?,
            date_format: pattern("date_format")?,
            datetime_format: pattern("datetime_format")?,
            labels_as_header: options.bool("labels_as_header", defaults.labels_as_header)?,
            neutralize_formulas: options
                .bool("neutralize_formulas", defaults.neutralize_formulas)?,
            line_terminator: match options.get("line_terminator") {
                Some("crlf") => LineTerminator::CrLf,
                _ => LineTerminator::Lf,
            },
        };
        parsed.validate()?;
        Ok(parsed)
    }

    /// Checks the combination: a delimiter that cannot appear in an unquoted number or date, and a null text
    /// that needs no quoting.
    fn validate(&self) -> Result<()> {
        let d = self.delimiter;
        if d.is_ascii_alphanumeric() || b"\"\r\n.+-:".contains(&d) || !d.is_ascii() {
            return Err(invalid_option(
                "delimiter",
                "option 'delimiter' cannot be a letter, digit, quote, CR, LF, '.', '+', '-' or ':'",
            ));
        }
        if self
            .null
            .bytes()
            .any(|b| b == d || b == b'"' || b == b'\r' || b == b'\n')
        {
            return Err(invalid_option(
                "null",
                "option 'null' cannot contain the delimiter, a quote, CR or LF",
            ));
        }
        Ok(())
    }
}

fn invalid_option(name: &str, message: &str) -> Error {
    Error::validation(Reason::InvalidOption, message).with_field(format!("options.{name}"))
}

/// A streaming CSV/TSV writer: [`CsvWriter::try_new`], [`CsvWriter::write`] any number of times,
/// [`CsvWriter::finish`] once.
pub struct CsvWriter<W: Write> {
    out: W,
    schema: SchemaRef,
    options: CsvOptions,
    temporal: Temporal,
    quoter: Quoter,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// Buffers of the rows other threads encode.
    parts: Vec<Vec<u8>>,
    threads: usize,
    rows: u64,
}

impl<W: Write> std::fmt::Debug for CsvWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvWriter")
            .field("options", &self.options)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<W: Write> CsvWriter<W> {
    /// Validates the schema and options and prepares the header; nothing reaches `out` before the first
    /// [`CsvWriter::write`] or [`CsvWriter::finish`].
    ///
    /// # Errors
    /// EXP002 `unsupported_type` (field = the column) for a column CSV cannot hold (lists, structs, binary, ...);
    /// EXP002 `invalid_option` for a bad combination of options.
    pub fn try_new(
        out: W,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: CsvOptions,
    ) -> Result<Self> {
        cell::check_schema(
            schema,
            if options.delimiter == b'\t' {
                "tsv"
            } else {
                "csv"
            },
        )?;
        options.validate()?;
        let temporal = Temporal::new(
            options.date_format.as_deref(),
            options.datetime_format.as_deref(),
        )?;
        let quoter = Quoter::new(options.delimiter, options.null.as_bytes());
        let mut w = CsvWriter {
            out,
            schema: schema.clone(),
            options,
            temporal,
            quoter,
            buf: Vec::with_capacity(FLUSH_AT + 64 * 1024),
            scratch: Vec::with_capacity(64),
            parts: Vec::new(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_THREADS),
            rows: 0,
        };
        if w.options.header {
            let merged = DatasetMeta::from_schema(schema).merged_with(meta);
            for (j, field) in schema.fields().iter().enumerate() {
                if j > 0 {
                    w.buf.push(w.options.delimiter);
                }
                let name = if w.options.labels_as_header {
                    merged
                        .column(field.name())
                        .and_then(|c| c.label.as_deref())
                        .unwrap_or(field.name())
                } else {
                    field.name()
                };
                push_text(
                    &mut w.buf,
                    name.as_bytes(),
                    w.options.neutralize_formulas,
                    w.options.quote_all,
                    &w.quoter,
                );
            }
            w.end_record();
        }
        Ok(w)
    }

    fn end_record(&mut self) {
        if self.options.line_terminator == LineTerminator::CrLf {
            self.buf.push(b'\r');
        }
        self.buf.push(b'\n');
    }

    fn flush_buf(&mut self) -> Result<()> {
        write_out(&mut self.out, &mut self.buf)
    }

    /// Sets the most threads that encode the rows of a batch at once (at least 1). Defaults to the available
    /// parallelism, at most 4; batches of fewer than 4,096 rows use one.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Encodes one batch.
    ///
    /// # Errors
    /// EXP002 `schema_mismatch` for a batch of another schema, `unrepresentable_value` for a date outside the
    /// calendar range; EXP005 for I/O.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        cell::check_batch(&self.schema, batch)?;
        let views = batch
            .columns()
            .iter()
            .map(ColumnView::new)
            .collect::<Result<Vec<_>>>()?;
        let CsvWriter {
            out,
            schema,
            options,
            temporal,
            quoter,
            buf,
            scratch,
            parts,
            threads,
            rows,
        } = self;
        let encoder = RowEncoder {
            schema,
            options,
            quoter,
            temporal,
        };
        let (encoder, views) = (&encoder, &views);
        let n = batch.num_rows();
        for start in (0..n).step_by(CHUNK_ROWS) {
            let end = n.min(start + CHUNK_ROWS);
            let pieces = (*threads).min((end - start) / PARALLEL_MIN_ROWS).max(1);
            if pieces == 1 {
                encoder.encode(views, start..end, *rows, buf, scratch)?;
                if buf.len() >= FLUSH_AT {
                    write_out(out, buf)?;
                }
                continue;
            }
            // Split the rows among threads, each into its own buffer, written out in row order: the bytes are
            // the same as from one thread.
            let per = (end - start).div_ceil(pieces);
            parts.resize_with(pieces - 1, Vec::new);
            let first_row = *rows;
            let result = std::thread::scope(|s| {
                let handles: Vec<_> = parts
                    .iter_mut()
                    .enumerate()
                    .map(|(k, part)| {
                        let from = (start + (k + 1) * per).min(end);
                        let to = (from + per).min(end);
                        s.spawn(move || {
                            part.clear();
                            let mut scratch = Vec::new();
                            encoder.encode(views, from..to, first_row, part, &mut scratch)
                        })
                    })
                    .collect();
                let mut result = encoder.encode(
                    views,
                    start..(start + per).min(end),
                    first_row,
                    buf,
                    scratch,
                );
                for h in handles {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(Error::server(
                            Reason::Internal,
                            "a CSV encoding thread failed",
                        ))
                    });
                    if result.is_ok() {
                        result = r;
                    }
                }
                result
            });
            result?;
            write_out(out, buf)?;
            for part in parts.iter_mut() {
                write_out(out, part)?;
            }
        }
        *rows += n as u64;
        Ok(())
    }

    /// Flushes everything and reports the rows written.
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn finish(mut self) -> Result<EncodeSummary> {
        self.flush_buf()?;
        self.out.flush().map_err(|e| Error::io("writing CSV", &e))?;
        Ok(EncodeSummary::rows(self.rows))
    }
}

/// Writes `buf` to `out` and empties it.
fn write_out(out: &mut impl Write, buf: &mut Vec<u8>) -> Result<()> {
    out.write_all(buf)
        .map_err(|e| Error::io("writing CSV", &e))?;
    buf.clear();
    Ok(())
}

/// Rows encoded per step of [`CsvWriter::write`]; a step's rows may be split among threads.
const CHUNK_ROWS: usize = 16_384;
/// Fewest rows a thread is given.
const PARALLEL_MIN_ROWS: usize = 2048;
/// Most threads a CSV writer uses.
const MAX_THREADS: usize = 4;

/// Everything that encodes rows, shared (read-only) by the threads of one batch.
struct RowEncoder<'a> {
    schema: &'a SchemaRef,
    options: &'a CsvOptions,
    quoter: &'a Quoter,
    temporal: &'a Temporal,
}

impl RowEncoder<'_> {
    /// Appends rows `rows` of the batch whose columns are `views` to `buf`; `first_row` is the number of rows
    /// written before the batch (for error details).
    fn encode(
        &self,
        views: &[ColumnView],
        rows: std::ops::Range<usize>,
        first_row: u64,
        buf: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let delim = self.options.delimiter;
        let quote_all = self.options.quote_all;
        let neutralize = self.options.neutralize_formulas;
        let null = self.options.null.as_bytes();
        let crlf = self.options.line_terminator == LineTerminator::CrLf;
        let quoter = self.quoter;
        // Text that can be copied as it is once it is known to hold no special byte: not every cell quoted and
        // no null text to tell apart.
        let plain_text = !quote_all && null.is_empty();
        let mut plans: Vec<Plan> = views
            .iter()
            .map(|view| Plan::new(view, rows.clone(), plain_text, quoter))
            .collect();
        for row in rows {
            for (j, (view, plan)) in views.iter().zip(plans.iter_mut()).enumerate() {
                if j > 0 {
                    buf.push(delim);
                }
                if view.is_null(row) {
                    buf.extend_from_slice(null);
                    continue;
                }
                match plan {
                    Plan::Str32 {
                        offsets,
                        data,
                        clean,
                    } => {
                        let (a, b) = span(offsets, row, row + 1);
                        self.stored_text(buf, data, a, b, *clean, view, row);
                    }
                    Plan::Str64 {
                        offsets,
                        data,
                        clean,
                    } => {
                        let (a, b) = span(offsets, row, row + 1);
                        self.stored_text(buf, data, a, b, *clean, view, row);
                    }
                    Plan::View(a) if plain_text => {
                        let Some(&v) = a.views().get(row) else {
                            self.text(buf, view.text(row).as_bytes());
                            continue;
                        };
                        let len = v as u32 as usize;
                        if len <= 12 {
                            let bytes = v.to_le_bytes();
                            let s = &bytes[4..4 + len];
                            if len == 0
                                || (neutralize && looks_like_formula(s))
                                || quoter.has_special(s)
                            {
                                self.text(buf, s);
                            } else {
                                let at = buf.len();
                                buf.extend_from_slice(&bytes[4..]);
                                buf.truncate(at + len);
                            }
                        } else {
                            let s = view.text(row).as_bytes();
                            if (neutralize && looks_like_formula(s)) || quoter.has_special(s) {
                                self.text(buf, s);
                            } else {
                                buf.extend_from_slice(s);
                            }
                        }
                    }
                    Plan::View(_) => self.text(buf, view.text(row).as_bytes()),
                    Plan::F64(values, memo) => {
                        let x = values.get(row).copied().unwrap_or(f64::NAN);
                        let key = x.to_bits();
                        if memo.replay(key, buf) {
                            continue;
                        }
                        let at = buf.len();
                        if quote_all {
                            buf.push(b'"');
                        }
                        if x.is_finite() {
                            cell::push_f64(buf, x);
                        } else {
                            buf.extend_from_slice(view.non_finite_text(row).as_bytes());
                        }
                        if quote_all {
                            buf.push(b'"');
                        }
                        memo.store(key, &buf[at..]);
                    }
                    Plan::Temporal(key, memo) => {
                        let key = key.get(row);
                        if memo.replay(key, buf) {
                            continue;
                        }
                        let at = buf.len();
                        self.generic(view, j, row, first_row, buf, scratch)?;
                        memo.store(key, &buf[at..]);
                    }
                    Plan::Other => self.generic(view, j, row, first_row, buf, scratch)?,
                }
            }
            if crlf {
                buf.push(b'\r');
            }
            buf.push(b'\n');
        }
        Ok(())
    }

    /// Appends one text cell the general way.
    #[inline]
    fn text(&self, buf: &mut Vec<u8>, s: &[u8]) {
        push_text(
            buf,
            s,
            self.options.neutralize_formulas,
            self.options.quote_all,
            self.quoter,
        );
    }

    /// Appends the text `data[a..b]` of cell `row` of a `Utf8` or `LargeUtf8` column; `clean` when the rows being
    /// encoded hold no special byte and the options let plain text be copied as it is.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn stored_text(
        &self,
        buf: &mut Vec<u8>,
        data: &[u8],
        a: usize,
        b: usize,
        clean: bool,
        view: &ColumnView,
        row: usize,
    ) {
        let Some(s) = data.get(a..b) else {
            self.text(buf, view.text(row).as_bytes());
            return;
        };
        if !clean || s.is_empty() || (self.options.neutralize_formulas && looks_like_formula(s)) {
            self.text(buf, s);
            return;
        }
        // Short cells: a copy of a fixed 16 or 32 bytes (no call), cut back to the cell's length.
        let n = s.len();
        let at = buf.len();
        if n <= 16 {
            if let Some(c) = data.get(a..a + 16) {
                buf.extend_from_slice(c);
                buf.truncate(at + n);
                return;
            }
        } else if n <= 32 {
            if let Some(c) = data.get(a..a + 32) {
                buf.extend_from_slice(c);
                buf.truncate(at + n);
                return;
            }
        }
        buf.extend_from_slice(s);
    }

    /// Appends non-null cell `row` of column `j` through its view (every type, every option).
    #[inline]
    fn generic(
        &self,
        view: &ColumnView,
        j: usize,
        row: usize,
        first_row: u64,
        buf: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let quote_all = self.options.quote_all;
        match view.kind() {
            Kind::Text => self.text(buf, view.text(row).as_bytes()),
            Kind::Number | Kind::Bool => {
                if quote_all {
                    buf.push(b'"');
                }
                if !view.write_raw(row, buf, self.temporal)? {
                    buf.extend_from_slice(view.non_finite_text(row).as_bytes());
                }
                if quote_all {
                    buf.push(b'"');
                }
            }
            Kind::Temporal | Kind::Null => {
                scratch.clear();
                view.write_raw(row, scratch, self.temporal).map_err(|e| {
                    e.with_field(self.schema.field(j).name().clone())
                        .with_detail("row", first_row + row as u64)
                })?;
                push_text(buf, scratch, false, quote_all, self.quoter);
            }
        }
        Ok(())
    }
}

/// How the cells of one column are written for a run of rows: a typed path where there is one, else through the
/// column's view.
enum Plan<'a> {
    /// `Utf8`; `clean`: the rows' bytes hold no special byte and plain text may be copied as it is.
    Str32 {
        offsets: &'a [i32],
        data: &'a [u8],
        clean: bool,
    },
    /// `LargeUtf8`, as `Str32`.
    Str64 {
        offsets: &'a [i64],
        data: &'a [u8],
        clean: bool,
    },
    /// `Utf8View`.
    View(&'a arrow::array::StringViewArray),
    /// `Float64`, with the text of the last value.
    F64(&'a [f64], Memo),
    /// Dates, times and timestamps: the integer behind each cell, with the text of the last one.
    Temporal(Key<'a>, Memo),
    /// Through the view.
    Other,
}

impl<'a> Plan<'a> {
    fn new(
        view: &'a ColumnView,
        rows: std::ops::Range<usize>,
        plain_text: bool,
        quoter: &Quoter,
    ) -> Self {
        /// Whether `data[offsets[rows.start]..offsets[rows.end]]`, the bytes of the rows, is free of special bytes.
        fn clean<O: Copy + TryInto<usize>>(
            offsets: &[O],
            data: &[u8],
            rows: &std::ops::Range<usize>,
            quoter: &Quoter,
        ) -> bool {
            let (a, b) = span(offsets, rows.start, rows.end);
            data.get(a..b).is_some_and(|s| !quoter.has_special_long(s))
        }
        match view.raw() {
            cell::Raw::Str32(offsets, data) => Plan::Str32 {
                offsets,
                data,
                clean: plain_text && clean(offsets, data, &rows, quoter),
            },
            cell::Raw::Str64(offsets, data) => Plan::Str64 {
                offsets,
                data,
                clean: plain_text && clean(offsets, data, &rows, quoter),
            },
            cell::Raw::View(a) => Plan::View(a),
            cell::Raw::F64(v) => Plan::F64(v, Memo::default()),
            cell::Raw::I32(v) => Plan::Temporal(Key::I32(v), Memo::default()),
            cell::Raw::I64(v) => Plan::Temporal(Key::I64(v), Memo::default()),
            cell::Raw::Other => Plan::Other,
        }
    }
}

/// The byte range `offsets[start]..offsets[end]` of a text column's data, or `(0, usize::MAX)`, which
/// no slice of the data matches, when an offset is missing.
#[inline]
fn span<O: Copy + TryInto<usize>>(offsets: &[O], start: usize, end: usize) -> (usize, usize) {
    let at = |i: usize| offsets.get(i).and_then(|&o| o.try_into().ok());
    match (at(start), at(end)) {
        (Some(a), Some(b)) => (a, b),
        _ => (0, usize::MAX),
    }
}

/// The integers behind a temporal column.
enum Key<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Key<'_> {
    /// The value of cell `row` as memo key (0 past the end: the view reports that case).
    #[inline]
    fn get(&self, row: usize) -> u64 {
        match self {
            Key::I32(v) => v.get(row).map_or(0, |&x| i64::from(x) as u64),
            Key::I64(v) => v.get(row).map_or(0, |&x| x as u64),
        }
    }
}

/// The output of the last cell of a column and the value it was written from: runs of equal values (a visit's
/// date, its number) are copied instead of formatted again. The output depends on the value alone, so the bytes
/// are the same.
#[derive(Default)]
struct Memo {
    key: u64,
    len: usize,
    bytes: [u8; 32],
    valid: bool,
}

impl Memo {
    /// Appends the remembered output when it was written from `key`.
    #[inline]
    fn replay(&self, key: u64, buf: &mut Vec<u8>) -> bool {
        if !self.valid || self.key != key {
            return false;
        }
        let at = buf.len();
        buf.extend_from_slice(&self.bytes);
        buf.truncate(at + self.len);
        true
    }

    /// Remembers that `key` was written as `out` (when it fits).
    #[inline]
    fn store(&mut self, key: u64, out: &[u8]) {
        self.valid = out.len() <= self.bytes.len();
        if self.valid {
            self.key = key;
            self.len = out.len();
            self.bytes[..out.len()].copy_from_slice(out);
        }
    }
}

impl<W: Write + Send> Encoder for CsvWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        CsvWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        CsvWriter::finish(*self)
    }
}

/// Whether `s` begins like a spreadsheet formula (OWASP: `=`, `+`, `-`, `@`, tab, CR).
pub fn looks_like_formula(s: &[u8]) -> bool {
    matches!(s.first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'))
}

/// What forces a text cell into quotes: the delimiter, a quote, CR, LF, or being the null text.
struct Quoter {
    special: [bool; 256],
    delimiter: u8,
    null: Vec<u8>,
}

impl Quoter {
    fn new(delimiter: u8, null: &[u8]) -> Self {
        let mut special = [false; 256];
        for b in [delimiter, b'"', b'\r', b'\n'] {
            special[b as usize] = true;
        }
        Quoter {
            special,
            delimiter,
            null: null.to_vec(),
        }
    }

    /// Whether `s` holds a special byte: eight bytes at a time (the usual test for a zero byte in a word, against
    /// each special byte), the tail by table.
    #[inline]
    fn has_special(&self, s: &[u8]) -> bool {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        #[inline]
        fn has_byte(x: u64, b: u8) -> bool {
            let y = x ^ (LO * u64::from(b));
            (y.wrapping_sub(LO) & !y & HI) != 0
        }
        let word = |c: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            let x = u64::from_le_bytes(w);
            has_byte(x, b'"')
                || has_byte(x, b'\n')
                || has_byte(x, b'\r')
                || has_byte(x, self.delimiter)
        };
        if s.len() < 8 {
            return s.iter().any(|&b| self.special[b as usize]);
        }
        let mut chunks = s.chunks_exact(8);
        for c in &mut chunks {
            if word(c) {
                return true;
            }
        }
        // The last eight bytes, overlapping the words already seen.
        !chunks.remainder().is_empty() && word(&s[s.len() - 8..])
    }

    /// [`Quoter::has_special`] for long runs of bytes: 32 at a time without a branch per byte.
    fn has_special_long(&self, s: &[u8]) -> bool {
        let d = self.delimiter;
        let mut chunks = s.chunks_exact(32);
        for c in &mut chunks {
            let mut hit = 0u8;
            for &b in c {
                hit |= u8::from(b == b'"')
                    | u8::from(b == b'\n')
                    | u8::from(b == b'\r')
                    | u8::from(b == d);
            }
            if hit != 0 {
                return true;
            }
        }
        self.has_special(chunks.remainder())
    }
}

/// Appends one text cell, quoting it when it holds a special byte, is empty (so it differs from a null), equals
/// the null text, or when `force_quote`.
#[inline]
fn push_text(buf: &mut Vec<u8>, s: &[u8], neutralize: bool, force_quote: bool, quoter: &Quoter) {
    let prefix = neutralize && looks_like_formula(s);
    let needs_quotes = force_quote
        || s.is_empty()
        || quoter.has_special(s)
        || (!quoter.null.is_empty() && s == quoter.null.as_slice());
    if !needs_quotes {
        if prefix {
            buf.push(b'\'');
        }
        buf.extend_from_slice(s);
        return;
    }
    buf.push(b'"');
    if prefix {
        buf.push(b'\'');
    }
    let mut rest = s;
    while let Some(p) = rest.iter().position(|&b| b == b'"') {
        buf.extend_from_slice(&rest[..=p]);
        buf.push(b'"');
        rest = &rest[p + 1..];
    }
    buf.extend_from_slice(rest);
    buf.push(b'"');
}

/// Cell formatting shared by the text formats (CSV, TSV, JSON, NDJSON): typed column views, exact integers,
/// shortest round-trip floats and ISO 8601 dates and times.
pub(crate) mod cell {
    use arrow::array::{
        Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, PrimitiveArray, StringArray,
        StringViewArray,
    };
    use arrow::buffer::{NullBuffer, ScalarBuffer};
    use arrow::datatypes::{
        DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type,
        Int64Type, Schema, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
        Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
        TimestampNanosecondType, TimestampSecondType, UInt64Type,
    };
    use arrow::record_batch::RecordBatch;
    use chrono::format::Item;
    use chrono::{DateTime, Datelike, NaiveDate};
    use std::fmt::Write as _;
    use trialport_core::error::Reason;
    use trialport_core::{Error, Result};

    /// Days from 0001-01-01 (day 1 of the common era in chrono's count) to 1970-01-01.
    pub(crate) const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
    const SECONDS_PER_DAY: i64 = 86_400;

    /// How a cell's value is written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Kind {
        /// Text: quoted and escaped by the format, subject to formula neutralisation.
        Text,
        /// A number, written bare.
        Number,
        /// `true` or `false`, written bare.
        Bool,
        /// A date, time or timestamp: text that the format quotes as text (JSON) but never neutralises.
        Temporal,
        /// A column of the Null type: every cell is null.
        Null,
    }

    /// Whether the text formats can write a column of type `dt`.
    pub(crate) fn supported(dt: &DataType) -> bool {
        use DataType as D;
        match dt {
            D::Null
            | D::Boolean
            | D::Int8
            | D::Int16
            | D::Int32
            | D::Int64
            | D::UInt8
            | D::UInt16
            | D::UInt32
            | D::UInt64
            | D::Float16
            | D::Float32
            | D::Float64
            | D::Utf8
            | D::LargeUtf8
            | D::Utf8View
            | D::Date32
            | D::Date64
            | D::Timestamp(_, _)
            | D::Time32(TimeUnit::Second | TimeUnit::Millisecond)
            | D::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond)
            | D::Decimal32(_, _)
            | D::Decimal64(_, _)
            | D::Decimal128(_, _)
            | D::Decimal256(_, _) => true,
            D::Dictionary(_, value) => {
                !matches!(value.as_ref(), D::Dictionary(_, _)) && supported(value)
            }
            _ => false,
        }
    }

    /// Rejects a schema with a column the text formats cannot write.
    ///
    /// # Errors
    /// EXP002 `unsupported_type` with field = the first such column.
    pub(crate) fn check_schema(schema: &Schema, format_id: &str) -> Result<()> {
        for f in schema.fields() {
            if !supported(f.data_type()) {
                return Err(Error::validation(
                    Reason::UnsupportedType,
                    format!(
                        "format '{format_id}' cannot write column '{}' of type {}",
                        f.name(),
                        f.data_type()
                    ),
                )
                .with_field(f.name().clone()));
            }
        }
        Ok(())
    }

    /// Rejects a batch whose column types differ from the encoder's schema.
    ///
    /// # Errors
    /// EXP002 `schema_mismatch`.
    pub(crate) fn check_batch(schema: &Schema, batch: &RecordBatch) -> Result<()> {
        let ok = batch.num_columns() == schema.fields().len()
            && batch
                .columns()
                .iter()
                .zip(schema.fields())
                .all(|(c, f)| c.data_type() == f.data_type());
        if ok {
            Ok(())
        } else {
            Err(Error::validation(
                Reason::SchemaMismatch,
                "a batch's columns differ from the schema the encoder was created for",
            ))
        }
    }

    /// The date and timestamp patterns (`None`: ISO 8601).
    #[derive(Debug, Default)]
    pub(crate) struct Temporal {
        date: Option<Vec<Item<'static>>>,
        datetime: Option<Vec<Item<'static>>>,
    }

    impl Temporal {
        /// Parses a strftime pattern given as option `name`.
        ///
        /// # Errors
        /// EXP002 `invalid_option` when it is not a valid pattern.
        pub(crate) fn parse_pattern(name: &str, pattern: &str) -> Result<Vec<Item<'static>>> {
            chrono::format::StrftimeItems::new(pattern)
                .parse_to_owned()
                .map_err(|_| {
                    Error::validation(
                        Reason::InvalidOption,
                        format!("option '{name}' is not a valid strftime pattern"),
                    )
                    .with_field(format!("options.{name}"))
                })
        }

        /// The patterns for dates and timestamps.
        ///
        /// # Errors
        /// EXP002 `invalid_option` for an invalid pattern.
        pub(crate) fn new(date: Option<&str>, datetime: Option<&str>) -> Result<Self> {
            Ok(Temporal {
                date: date
                    .map(|p| Temporal::parse_pattern("date_format", p))
                    .transpose()?,
                datetime: datetime
                    .map(|p| Temporal::parse_pattern("datetime_format", p))
                    .transpose()?,
            })
        }
    }

    enum Data {
        Null,
        Bool(BooleanArray),
        I64(ScalarBuffer<i64>),
        U64(ScalarBuffer<u64>),
        F32(ScalarBuffer<f32>),
        F64(ScalarBuffer<f64>),
        Utf8(StringArray),
        LargeUtf8(LargeStringArray),
        Utf8View(StringViewArray),
        Date32(ScalarBuffer<i32>),
        Date64(ScalarBuffer<i64>),
        Timestamp {
            values: ScalarBuffer<i64>,
            unit: TimeUnit,
            utc: bool,
        },
        Time32(ScalarBuffer<i32>, TimeUnit),
        Time64(ScalarBuffer<i64>, TimeUnit),
        Decimal128(ScalarBuffer<i128>, i8),
        Decimal256(PrimitiveArray<Decimal256Type>, i8),
    }

    /// The raw parts of a [`ColumnView`]: text offsets and bytes, float values, or the integers behind a
    /// temporal column (one value, one text).
    pub(crate) enum Raw<'a> {
        /// `Utf8`: offsets into the bytes.
        Str32(&'a [i32], &'a [u8]),
        /// `LargeUtf8`: offsets into the bytes.
        Str64(&'a [i64], &'a [u8]),
        /// `Utf8View`.
        View(&'a StringViewArray),
        /// `Float64`.
        F64(&'a [f64]),
        /// `Date32`, `Time32`.
        I32(&'a [i32]),
        /// `Date64`, `Timestamp`, `Time64`.
        I64(&'a [i64]),
        /// Anything else.
        Other,
    }

    /// A typed view of one column of one batch, taken once per batch so cells need no downcast.
    pub(crate) struct ColumnView {
        nulls: Option<NullBuffer>,
        data: Data,
    }

    fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
        Ok(arrow::compute::cast(array, to)?)
    }

    impl ColumnView {
        /// The view of `array` (of a type [`supported`] accepts).
        ///
        /// # Errors
        /// EXP002 `unsupported_type` for another type.
        pub(crate) fn new(array: &ArrayRef) -> Result<Self> {
            use DataType as D;
            let data = match array.data_type() {
                D::Null => Data::Null,
                D::Boolean => Data::Bool(array.as_boolean().clone()),
                D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16 | D::UInt32 => {
                    let a = cast(array, &D::Int64)?;
                    Data::I64(a.as_primitive::<Int64Type>().values().clone())
                }
                D::Int64 => Data::I64(array.as_primitive::<Int64Type>().values().clone()),
                D::UInt64 => Data::U64(array.as_primitive::<UInt64Type>().values().clone()),
                D::Float16 => {
                    let a = cast(array, &D::Float32)?;
                    Data::F32(a.as_primitive::<Float32Type>().values().clone())
                }
                D::Float32 => Data::F32(array.as_primitive::<Float32Type>().values().clone()),
                D::Float64 => Data::F64(array.as_primitive::<Float64Type>().values().clone()),
                D::Utf8 => Data::Utf8(array.as_string::<i32>().clone()),
                D::LargeUtf8 => Data::LargeUtf8(array.as_string::<i64>().clone()),
                D::Utf8View => Data::Utf8View(array.as_string_view().clone()),
                D::Date32 => Data::Date32(array.as_primitive::<Date32Type>().values().clone()),
                D::Date64 => Data::Date64(array.as_primitive::<Date64Type>().values().clone()),
                D::Timestamp(unit, tz) => {
                    let values = match unit {
                        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
                        TimeUnit::Millisecond => {
                            array.as_primitive::<TimestampMillisecondType>().values()
                        }
                        TimeUnit::Microsecond => {
                            array.as_primitive::<TimestampMicrosecondType>().values()
                        }
                        TimeUnit::Nanosecond => {
                            array.as_primitive::<TimestampNanosecondType>().values()
                        }
                    }
                    .clone();
                    Data::Timestamp {
                        values,
                        unit: *unit,
                        utc: tz.is_some(),
                    }
                }
                D::Time32(TimeUnit::Second) => Data::Time32(
                    array.as_primitive::<Time32SecondType>().values().clone(),
                    TimeUnit::Second,
                ),
                D::Time32(TimeUnit::Millisecond) => Data::Time32(
                    array
                        .as_primitive::<Time32MillisecondType>()
                        .values()
                        .clone(),
                    TimeUnit::Millisecond,
                ),
                D::Time64(TimeUnit::Microsecond) => Data::Time64(
                    array
                        .as_primitive::<Time64MicrosecondType>()
                        .values()
                        .clone(),
                    TimeUnit::Microsecond,
                ),
                D::Time64(TimeUnit::Nanosecond) => Data::Time64(
                    array
                        .as_primitive::<Time64NanosecondType>()
                        .values()
                        .clone(),
                    TimeUnit::Nanosecond,
                ),
                D::Decimal32(_, s) | D::Decimal64(_, s) => {
                    let a = cast(array, &D::Decimal128(38, *s))?;
                    Data::Decimal128(a.as_primitive::<Decimal128Type>().values().clone(), *s)
                }
                D::Decimal128(_, s) => {
                    Data::Decimal128(array.as_primitive::<Decimal128Type>().values().clone(), *s)
                }
                D::Decimal256(_, s) => {
                    Data::Decimal256(array.as_primitive::<Decimal256Type>().clone(), *s)
                }
                D::Dictionary(_, value) if supported(value) => {
                    let a = cast(array, value)?;
                    return ColumnView::new(&a);
                }
                other => {
                    return Err(Error::validation(
                        Reason::UnsupportedType,
                        format!("type {other} cannot be written as text"),
                    ))
                }
            };
            Ok(ColumnView {
                nulls: array.logical_nulls(),
                data,
            })
        }

        /// How the cells of this column are written.
        pub(crate) fn kind(&self) -> Kind {
            match &self.data {
                Data::Null => Kind::Null,
                Data::Bool(_) => Kind::Bool,
                Data::I64(_)
                | Data::U64(_)
                | Data::F32(_)
                | Data::F64(_)
                | Data::Decimal128(..)
                | Data::Decimal256(..) => Kind::Number,
                Data::Utf8(_) | Data::LargeUtf8(_) | Data::Utf8View(_) => Kind::Text,
                Data::Date32(_)
                | Data::Date64(_)
                | Data::Timestamp { .. }
                | Data::Time32(..)
                | Data::Time64(..) => Kind::Temporal,
            }
        }

        /// The raw parts of the column for the CSV writer's typed paths.
        pub(crate) fn raw(&self) -> Raw<'_> {
            match &self.data {
                Data::Utf8(a) => Raw::Str32(a.value_offsets(), a.value_data()),
                Data::LargeUtf8(a) => Raw::Str64(a.value_offsets(), a.value_data()),
                Data::Utf8View(a) => Raw::View(a),
                Data::F64(v) => Raw::F64(v),
                Data::Date32(v) | Data::Time32(v, _) => Raw::I32(v),
                Data::Date64(v) | Data::Timestamp { values: v, .. } | Data::Time64(v, _) => {
                    Raw::I64(v)
                }
                _ => Raw::Other,
            }
        }

        /// Whether cell `row` is null.
        #[inline]
        pub(crate) fn is_null(&self, row: usize) -> bool {
            match &self.nulls {
                Some(n) => n.is_null(row),
                None => matches!(self.data, Data::Null),
            }
        }

        /// The text of cell `row` of a [`Kind::Text`] column (empty for another kind).
        #[inline]
        pub(crate) fn text(&self, row: usize) -> &str {
            match &self.data {
                Data::Utf8(a) => a.value(row),
                Data::LargeUtf8(a) => a.value(row),
                Data::Utf8View(a) => a.value(row),
                _ => "",
            }
        }

        /// Whether cell `row` is a NaN or an infinity.
        #[inline]
        pub(crate) fn is_non_finite(&self, row: usize) -> bool {
            match &self.data {
                Data::F32(v) => !v[row].is_finite(),
                Data::F64(v) => !v[row].is_finite(),
                _ => false,
            }
        }

        /// `NaN`, `inf` or `-inf` for a non-finite float cell.
        pub(crate) fn non_finite_text(&self, row: usize) -> &'static str {
            let v = match &self.data {
                Data::F32(v) => f64::from(v[row]),
                Data::F64(v) => v[row],
                _ => 0.0,
            };
            if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "inf"
            } else {
                "-inf"
            }
        }

        /// Appends the value of non-null, non-text cell `row`. Returns `false`, writing nothing, for a
        /// non-finite float.
        ///
        /// # Errors
        /// EXP002 `unrepresentable_value` for a date or time outside the calendar's range.
        #[inline]
        pub(crate) fn write_raw(
            &self,
            row: usize,
            buf: &mut Vec<u8>,
            temporal: &Temporal,
        ) -> Result<bool> {
            match &self.data {
                Data::I64(v) => push_i64(buf, v[row]),
                Data::U64(v) => push_u64(buf, v[row]),
                Data::F64(v) => {
                    let x = v[row];
                    if !x.is_finite() {
                        return Ok(false);
                    }
                    push_f64(buf, x);
                }
                Data::F32(v) => {
                    let x = v[row];
                    if !x.is_finite() {
                        return Ok(false);
                    }
                    push_f32(buf, x);
                }
                Data::Bool(a) => {
                    buf.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
                }
                Data::Date32(v) => push_date_with(buf, i64::from(v[row]), temporal)?,
                Data::Date64(v) => push_date_with(buf, v[row].div_euclid(86_400_000), temporal)?,
                Data::Timestamp { values, unit, utc } => {
                    push_timestamp_with(buf, values[row], *unit, *utc, temporal)?
                }
                Data::Time32(v, unit) => push_time(buf, i64::from(v[row]), *unit)?,
                Data::Time64(v, unit) => push_time(buf, v[row], *unit)?,
                Data::Decimal128(v, scale) => {
                    let mut digits = [0u8; 40];
                    let n = v[row];
                    let len = u128_digits(n.unsigned_abs(), &mut digits);
                    push_decimal(buf, n < 0, &digits[40 - len..], *scale);
                }
                Data::Decimal256(a, scale) => {
                    let s = a.value(row).to_string();
                    let (neg, digits) = match s.strip_prefix('-') {
                        Some(d) => (true, d),
                        None => (false, s.as_str()),
                    };
                    push_decimal(buf, neg, digits.as_bytes(), *scale);
                }
                Data::Null | Data::Utf8(_) | Data::LargeUtf8(_) | Data::Utf8View(_) => {}
            }
            Ok(true)
        }
    }

    const DIGITS2: [u8; 200] = {
        let mut t = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            t[2 * i] = b'0' + (i / 10) as u8;
            t[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    };

    /// Appends the decimal digits of `n`.
    #[inline]
    pub(crate) fn push_u64(buf: &mut Vec<u8>, n: u64) {
        let mut tmp = [0u8; 20];
        let pos = u64_digits(n, &mut tmp);
        buf.extend_from_slice(&tmp[pos..]);
    }

    /// Writes the decimal digits of `n` right-aligned into `tmp`, returning where they start.
    #[inline]
    fn u64_digits(mut n: u64, tmp: &mut [u8; 20]) -> usize {
        let mut pos = 20;
        while n >= 100 {
            let r = (n % 100) as usize * 2;
            n /= 100;
            pos -= 2;
            tmp[pos..pos + 2].copy_from_slice(&DIGITS2[r..r + 2]);
        }
        if n >= 10 {
            let r = n as usize * 2;
            pos -= 2;
            tmp[pos..pos + 2].copy_from_slice(&DIGITS2[r..r + 2]);
        } else {
            pos -= 1;
            tmp[pos] = b'0' + n as u8;
        }
        pos
    }

    /// Appends `n` exactly, `-` first when negative (`i64::MIN` included).
    #[inline]
    pub(crate) fn push_i64(buf: &mut Vec<u8>, n: i64) {
        if n < 0 {
            buf.push(b'-');
        }
        push_u64(buf, n.unsigned_abs());
    }

    /// Writes the digits of `n` right-aligned into `out`, returning how many.
    fn u128_digits(mut n: u128, out: &mut [u8; 40]) -> usize {
        let mut pos = 40;
        loop {
            pos -= 1;
            out[pos] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        40 - pos
    }

    /// Appends an unscaled decimal `digits` with `scale` digits after the point.
    fn push_decimal(buf: &mut Vec<u8>, negative: bool, digits: &[u8], scale: i8) {
        if negative {
            buf.push(b'-');
        }
        if scale <= 0 {
            buf.extend_from_slice(digits);
            if digits != b"0" {
                buf.extend(std::iter::repeat_n(b'0', usize::from(scale.unsigned_abs())));
            }
            return;
        }
        let scale = scale as usize;
        if digits.len() > scale {
            let split = digits.len() - scale;
            buf.extend_from_slice(&digits[..split]);
            buf.push(b'.');
            buf.extend_from_slice(&digits[split..]);
        } else {
            buf.extend_from_slice(b"0.");
            buf.extend(std::iter::repeat_n(b'0', scale - digits.len()));
            buf.extend_from_slice(digits);
        }
    }

    struct VecFmt<'a>(&'a mut Vec<u8>);

    impl std::fmt::Write for VecFmt<'_> {
        #[inline]
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }

    /// Appends a finite `v` in the shortest form that parses back to the same `f64`: plain decimals with a
    /// `.0` for whole numbers, scientific notation below 1e-4 and from 1e16 (Rust's `{:?}`).
    #[inline]
    pub(crate) fn push_f64(buf: &mut Vec<u8>, v: f64) {
        // Fast path for the common short decimals (80.0, 42.17, 0.125): the first k (fewest digits) whose
        // m = round(v * 10^k) gives back v as m / 10^k is the shortest exact text, the one `{:?}` writes; the
        // division of two exact values is correctly rounded, so equality proves the round trip.
        // The work is done on |v| (products, rounding and quotients are symmetric in the sign), rounding half
        // away from zero as `f64::round` does but without a call: below 2^53 the truncation and the fraction
        // `x - trunc(x)` are exact. From 2^53 no m can pass the test, and x only grows with k.
        // Only m below 10^15 (at most 15 significant digits): two different decimals of 15 digits are never the
        // same f64, so such an m is the one shortest text. With 16 or 17 digits several neighbours can round-trip
        // and `{:?}` picks the closest, which rounding `x` does not always find: those go to `{:?}` itself.
        let a = v.abs();
        if a < 1e15 && (a >= 1e-4 || (v == 0.0 && v.is_sign_positive())) {
            for (k, p) in POW10.iter().enumerate() {
                let x = a * p;
                if x >= TWO_53 {
                    break;
                }
                let mut m = x as u64;
                if x - m as f64 >= 0.5 {
                    m += 1;
                }
                let mf = m as f64;
                // m / p == a puts x within a few units in the last place of m: a cheap test first, then the
                // (slower) exact one.
                if mf < 1e15 && (x - mf).abs() <= x * 1e-12 && mf / p == a {
                    push_scaled(buf, v < 0.0, m, k);
                    return;
                }
            }
        }
        let _ = write!(VecFmt(buf), "{v:?}");
    }

    const POW10: [f64; 8] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7];
    /// 2^53: integers from here on are not all exact in an `f64`.
    const TWO_53: f64 = 9_007_199_254_740_992.0;

    /// Appends `m / 10^k` as plain decimal text, with `.0` when `k` is 0.
    fn push_scaled(buf: &mut Vec<u8>, negative: bool, m: u64, k: usize) {
        if negative {
            buf.push(b'-');
        }
        let mut tmp = [0u8; 20];
        let start = u64_digits(m, &mut tmp);
        let digits = &tmp[start..];
        if k == 0 {
            buf.extend_from_slice(digits);
            buf.extend_from_slice(b".0");
            return;
        }
        let len = digits.len();
        if len <= k {
            // 0.00ddd: the integer zero and the leading zeros of the fraction.
            buf.extend_from_slice(b"0.");
            buf.extend(std::iter::repeat_n(b'0', k - len));
            buf.extend_from_slice(digits);
        } else {
            buf.extend_from_slice(&digits[..len - k]);
            buf.push(b'.');
            buf.extend_from_slice(&digits[len - k..]);
        }
    }

    /// Appends a finite `v` in the shortest form that parses back to the same `f32`.
    #[inline]
    pub(crate) fn push_f32(buf: &mut Vec<u8>, v: f32) {
        let _ = write!(VecFmt(buf), "{v:?}");
    }

    fn out_of_range() -> Error {
        Error::validation(
            Reason::UnrepresentableValue,
            "a date or time is outside the representable calendar range",
        )
    }

    fn push_2(buf: &mut Vec<u8>, n: u32) {
        let r = (n as usize % 100) * 2;
        buf.extend_from_slice(&DIGITS2[r..r + 2]);
    }

    /// The calendar date of `days` since 1970-01-01.
    pub(crate) fn date_of(days: i64) -> Option<NaiveDate> {
        let ce = i32::try_from(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?).ok()?;
        NaiveDate::from_num_days_from_ce_opt(ce)
    }

    /// Appends `YYYY-MM-DD` (years outside 0000-9999 with a sign, as ISO 8601 expands them).
    fn push_iso_date(buf: &mut Vec<u8>, d: NaiveDate) {
        let y = d.year();
        if (0..=9999).contains(&y) {
            push_2(buf, (y / 100) as u32);
            push_2(buf, (y % 100) as u32);
        } else {
            buf.push(if y < 0 { b'-' } else { b'+' });
            let a = y.unsigned_abs();
            if a < 1000 {
                buf.extend(std::iter::repeat_n(b'0', 4 - a.to_string().len()));
            }
            push_u64(buf, u64::from(a));
        }
        buf.push(b'-');
        push_2(buf, d.month());
        buf.push(b'-');
        push_2(buf, d.day());
    }

    fn push_date_with(buf: &mut Vec<u8>, days: i64, temporal: &Temporal) -> Result<()> {
        let d = date_of(days).ok_or_else(out_of_range)?;
        match &temporal.date {
            None => push_iso_date(buf, d),
            Some(items) => {
                write!(VecFmt(buf), "{}", d.format_with_items(items.iter()))
                    .map_err(|_| pattern_failed("date_format"))?;
            }
        }
        Ok(())
    }

    fn pattern_failed(name: &str) -> Error {
        Error::validation(
            Reason::InvalidOption,
            format!("option '{name}' cannot format this column's values"),
        )
        .with_field(format!("options.{name}"))
    }

    /// Splits a value of `unit` into whole seconds and nanoseconds, plus the digits of the unit's fraction.
    fn split(value: i64, unit: TimeUnit) -> (i64, u32, usize, u32) {
        let (per_sec, digits) = match unit {
            TimeUnit::Second => (1, 0),
            TimeUnit::Millisecond => (1_000, 3),
            TimeUnit::Microsecond => (1_000_000, 6),
            TimeUnit::Nanosecond => (1_000_000_000, 9),
        };
        let secs = value.div_euclid(per_sec);
        let frac = value.rem_euclid(per_sec) as u32;
        let nanos = frac * (1_000_000_000 / per_sec as u32);
        (secs, nanos, digits, frac)
    }

    fn push_clock(buf: &mut Vec<u8>, sod: u32, frac: u32, digits: usize) {
        push_2(buf, sod / 3600);
        buf.push(b':');
        push_2(buf, sod / 60 % 60);
        buf.push(b':');
        push_2(buf, sod % 60);
        if frac != 0 {
            buf.push(b'.');
            let mut tmp = [b'0'; 9];
            let mut f = frac;
            for i in (0..digits).rev() {
                tmp[i] = b'0' + (f % 10) as u8;
                f /= 10;
            }
            buf.extend_from_slice(&tmp[..digits]);
        }
    }

    fn push_timestamp_with(
        buf: &mut Vec<u8>,
        value: i64,
        unit: TimeUnit,
        utc: bool,
        temporal: &Temporal,
    ) -> Result<()> {
        let (secs, nanos, digits, frac) = split(value, unit);
        let days = secs.div_euclid(SECONDS_PER_DAY);
        let sod = secs.rem_euclid(SECONDS_PER_DAY) as u32;
        let d = date_of(days).ok_or_else(out_of_range)?;
        match &temporal.datetime {
            None => {
                push_iso_date(buf, d);
                buf.push(b'T');
                push_clock(buf, sod, frac, digits);
                if utc {
                    buf.push(b'Z');
                }
            }
            Some(items) => {
                let dt = DateTime::from_timestamp(secs, nanos).ok_or_else(out_of_range)?;
                let r = if utc {
                    write!(VecFmt(buf), "{}", dt.format_with_items(items.iter()))
                } else {
                    write!(
                        VecFmt(buf),
                        "{}",
                        dt.naive_utc().format_with_items(items.iter())
                    )
                };
                r.map_err(|_| pattern_failed("datetime_format"))?;
            }
        }
        Ok(())
    }

    fn push_time(buf: &mut Vec<u8>, value: i64, unit: TimeUnit) -> Result<()> {
        let (secs, _, digits, frac) = split(value, unit);
        if !(0..SECONDS_PER_DAY).contains(&secs) {
            return Err(out_of_range());
        }
        push_clock(buf, secs as u32, frac, digits);
        Ok(())
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use super::*;

        fn f(v: f64) -> String {
            let mut b = Vec::new();
            push_f64(&mut b, v);
            String::from_utf8(b).unwrap()
        }

        #[test]
        fn floats_are_shortest_and_exact() {
            for v in [
                0.0,
                -0.0,
                1.0,
                -80.5,
                0.1,
                1e-300,
                5e-324,
                1e15,
                1e16,
                123456.789,
                -1e300,
                f64::MAX,
                f64::MIN_POSITIVE,
                9007199254740993.0,
            ] {
                let s = f(v);
                let back: f64 = s.parse().unwrap();
                assert_eq!(back.to_bits(), v.to_bits(), "{s}");
                assert_eq!(s, format!("{v:?}"));
            }
        }

        #[test]
        fn floats_match_debug_over_many_values() {
            // Independent oracle: Rust's own `{:?}`. Short decimals of 0 to 9 digits after the point (the fast
            // path), values next to the rounding boundaries, and arbitrary bit patterns.
            let mut state = 0x2545_F491_4F6C_DD1D_u64;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for i in 0..200_000 {
                let v = match i % 4 {
                    0 => f64::from_bits(next()),
                    1 => {
                        let m = (next() % 2_000_000_000) as f64 - 1_000_000_000.0;
                        m / 10f64.powi((next() % 10) as i32)
                    }
                    2 => (next() % 100_000) as f64 / 1000.0 + 0.0005,
                    _ => {
                        let base = (next() % 1_000_000) as f64 + 0.5;
                        let bits = base.to_bits().wrapping_add(next() % 5).wrapping_sub(2);
                        f64::from_bits(bits) / 10f64.powi((next() % 8) as i32)
                    }
                };
                if v.is_finite() {
                    // Exact, and the very text of `{:?}`.
                    let s = f(v);
                    assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
                    assert_eq!(s, format!("{v:?}"), "{:#x}", v.to_bits());
                }
            }
            for v in [
                // 16 and 17 significant digits, where more than one text round-trips.
                -831211736725923.3,
                123456789012345.67,
                0.1234567890123456,
                999999999999999.9,
                0.49999999999999994,
                4503599627370495.5,
                4503599627370497.0,
                1e-4,
                9.999e-5,
            ] {
                assert_eq!(f(v), format!("{v:?}"));
            }
        }

        #[test]
        fn integers_are_exact() {
            for v in [0, 7, 10, 99, 100, -1, i64::MIN, i64::MAX, (1 << 53) + 1] {
                let mut b = Vec::new();
                push_i64(&mut b, v);
                assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
            }
        }

        #[test]
        fn decimals_and_dates() {
            let mut b = Vec::new();
            push_decimal(&mut b, true, b"5", 3);
            b.push(b' ');
            push_decimal(&mut b, false, b"12345", 2);
            b.push(b' ');
            push_decimal(&mut b, false, b"12", -2);
            b.push(b' ');
            push_iso_date(&mut b, date_of(-719_528).unwrap());
            b.push(b' ');
            push_iso_date(&mut b, date_of(3_000_000).unwrap());
            assert_eq!(
                String::from_utf8(b).unwrap(),
                "-0.005 123.45 1200 0000-01-01 +10183-09-21"
            );
            assert!(date_of(i64::from(i32::MAX)).is_none());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, Date32Array, Float64Array, LargeStringArray, StringArray, StringViewArray,
    };
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    const TEXTS: &[&str] = &[
        "",
        "a",
        "plain text",
        "a,b",
        "say \"hi\"",
        "line\nbreak",
        "cr\rx",
        "=SUM(A1)",
        "+1",
        "-x",
        "@a",
        "\tt",
        "NA",
        "x;y",
        "exactly 16 bytes",
        "seventeen bytes!!",
        "a text of more than thirty-two bytes, with a comma",
        "a text of more than thirty-two bytes and no specials",
        "é日本語",
    ];

    /// The cell rules written out plainly, as the oracle of the typed paths.
    fn reference(s: Option<&str>, o: &CsvOptions) -> String {
        let Some(s) = s else {
            return o.null.clone();
        };
        let prefix = o.neutralize_formulas && looks_like_formula(s.as_bytes());
        let text = if prefix {
            format!("'{s}")
        } else {
            s.to_string()
        };
        let quote = o.quote_all
            || s.is_empty()
            || (!o.null.is_empty() && s == o.null)
            || s.bytes()
                .any(|b| b == o.delimiter || b"\"\r\n".contains(&b));
        if quote {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    }

    fn encode(batches: &[RecordBatch], options: &CsvOptions, threads: usize) -> String {
        let schema = batches[0].schema();
        let mut out = Vec::new();
        let mut w = CsvWriter::try_new(&mut out, &schema, &DatasetMeta::default(), options.clone())
            .unwrap()
            .with_threads(threads);
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_paths_follow_the_rules_for_every_string_type() {
        // Cells cycle through TEXTS with a null every seventh row; the batch is sliced so offsets do not
        // start at zero; several threads and options.
        let n = 9_000;
        let cells: Vec<Option<&str>> = (0..n)
            .map(|i| (i % 7 != 3).then(|| TEXTS[i % TEXTS.len()]))
            .collect();
        let clean: Vec<Option<&str>> = (0..n)
            .map(|i| {
                (i % 5 != 1).then(|| ["ab", "plain", "=f", "", "long text without specials"][i % 5])
            })
            .collect();
        let mut options = vec![CsvOptions::csv(), CsvOptions::tsv()];
        for (k, v) in [
            ("null", "NA"),
            ("quote_all", "true"),
            ("neutralize_formulas", "false"),
        ] {
            let f = FormatOptions::new().with(k, v);
            options.push(CsvOptions::from_format_options("csv", &f).unwrap());
        }
        for data in [&cells, &clean] {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(data.clone())),
                Arc::new(LargeStringArray::from(data.clone())),
                Arc::new(StringViewArray::from(data.clone())),
            ];
            for column in columns {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "t",
                    column.data_type().clone(),
                    true,
                )]));
                let batch = RecordBatch::try_new(schema, vec![column]).unwrap();
                let parts = [batch.slice(5, 4_000), batch.slice(4_005, 4_990)];
                for o in &options {
                    let mut expected = reference(Some("t"), o) + "\n";
                    for s in &data[5..8_995] {
                        expected.push_str(&reference(*s, o));
                        expected.push('\n');
                    }
                    for threads in [1, 3] {
                        assert_eq!(encode(&parts, o, threads), expected, "{o:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn repeated_numbers_and_dates_are_written_like_single_ones() {
        // Runs of equal values, a value changing back, NaN payloads and infinities; each cell checked against
        // its own formatting (Rust's `{:?}`, chrono's ISO date).
        let floats: Vec<Option<f64>> = [
            1.0,
            1.0,
            1.0,
            2.5,
            2.5,
            1.0,
            -0.0,
            0.0,
            f64::NAN,
            f64::NAN,
            f64::INFINITY,
            4.27,
            4.27,
            1e-7,
            1e-7,
            1e300,
        ]
        .into_iter()
        .map(Some)
        .chain([None, Some(7.0), None, Some(7.0)])
        .collect();
        let days: Vec<Option<i32>> = floats
            .iter()
            .enumerate()
            .map(|(i, f)| f.map(|_| [15_700, 15_700, -1, 15_700, 0][i % 5]))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Float64, true),
            Field::new("d", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(floats.clone())),
                Arc::new(Date32Array::from(days.clone())),
            ],
        )
        .unwrap();
        for quote_all in [false, true] {
            let o = CsvOptions {
                quote_all,
                ..CsvOptions::csv()
            };
            let q = |s: String| if quote_all { format!("\"{s}\"") } else { s };
            let mut expected = String::from(if quote_all { "\"f\",\"d\"\n" } else { "f,d\n" });
            for (f, d) in floats.iter().zip(&days) {
                let f = f.map_or(String::new(), |v| {
                    q(if v.is_nan() {
                        "NaN".into()
                    } else if v.is_infinite() {
                        "inf".into()
                    } else {
                        format!("{v:?}")
                    })
                });
                let d = d.map_or(String::new(), |d| {
                    q(cell::date_of(i64::from(d))
                        .unwrap()
                        .format("%Y-%m-%d")
                        .to_string())
                });
                expected.push_str(&format!("{f},{d}\n"));
            }
            assert_eq!(encode(std::slice::from_ref(&batch), &o, 1), expected);
        }
    }
}
