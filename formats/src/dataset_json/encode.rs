//! The Dataset-JSON writer: one [`DatasetJsonWriter`] for the three forms, specialised by [`Form`].
//!
//! `records` precedes `rows` (formats.md §4.1) and NDJSON's first line holds it, so the count must be known before
//! the first row is written. Unless option `records` gives it, rows are encoded into a spool (memory up to
//! [`SPOOL_IN_MEMORY`], then an unnamed temporary file that the system deletes when it is closed) and the header
//! is written in `finish`, followed by the spooled rows. Memory stays bounded; the cost is writing the encoded rows
//! twice, which for the page cache is a copy. With option `records` the header is written first and rows go
//! straight to the output (compressed on the way for DSJC); `finish` fails with EXP002 `records_mismatch` when the
//! count differs, and the caller discards the output.

use super::temporal::{self, SAS_DAYS_TO_UNIX, SAS_SECONDS_TO_UNIX};
use super::types::{ColumnSpec, Mode};
use super::{Form, TopLevel};
use crate::csv::cell::{self, ColumnView};
use crate::json::push_json_string;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringViewArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int64Type, SchemaRef,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use flate2::write::ZlibEncoder;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use trialport_core::error::Reason;
use trialport_core::format::{EncodeSummary, Encoder};
use trialport_core::{Error, Result};

/// Bytes of encoded rows buffered before they go to the output or the spool.
const FLUSH_AT: usize = 1 << 20;
/// Bytes of encoded rows the spool keeps in memory before it moves them to a temporary file.
pub const SPOOL_IN_MEMORY: usize = 8 << 20;

fn io_error(e: &std::io::Error) -> Error {
    Error::io("writing Dataset-JSON", e)
}

/// The output, compressed for DSJC.
enum Out<W: Write> {
    Plain(W),
    Zlib(ZlibEncoder<W>),
}

impl<W: Write> Out<W> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Out::Plain(w) => w.write_all(bytes),
            Out::Zlib(z) => z.write_all(bytes),
        }
        .map_err(|e| io_error(&e))
    }

    fn finish(self) -> Result<()> {
        let mut w = match self {
            Out::Plain(w) => w,
            Out::Zlib(z) => z.finish().map_err(|e| io_error(&e))?,
        };
        w.flush().map_err(|e| io_error(&e))
    }
}

/// Encoded rows waiting for the header.
#[derive(Default)]
struct Spool {
    mem: Vec<u8>,
    file: Option<File>,
}

impl Spool {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.file.is_none() && self.mem.len() + bytes.len() <= SPOOL_IN_MEMORY {
            self.mem.extend_from_slice(bytes);
            return Ok(());
        }
        let spool_error = |e: std::io::Error| Error::io("writing the Dataset-JSON spool file", &e);
        if self.file.is_none() {
            let mut f = crate::spool::tempfile().map_err(spool_error)?;
            f.write_all(&self.mem).map_err(spool_error)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        if let Some(f) = &mut self.file {
            f.write_all(bytes).map_err(spool_error)?;
        }
        Ok(())
    }

    fn drain_into<W: Write>(&mut self, out: &mut Out<W>) -> Result<()> {
        out.write_all(&self.mem)?;
        self.mem = Vec::new();
        if let Some(mut f) = self.file.take() {
            let spool_error =
                |e: std::io::Error| Error::io("reading the Dataset-JSON spool file", &e);
            f.seek(SeekFrom::Start(0)).map_err(spool_error)?;
            let mut chunk = vec![0u8; FLUSH_AT];
            loop {
                let n = match f.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(spool_error(e)),
                };
                out.write_all(&chunk[..n])?;
            }
        }
        Ok(())
    }
}

/// A streaming Dataset-JSON writer: [`super::DatasetJsonFormat::writer`], [`DatasetJsonWriter::write`] any number
/// of times, [`DatasetJsonWriter::finish`] once.
pub struct DatasetJsonWriter<W: Write> {
    out: Option<Out<W>>,
    form: Form,
    schema: SchemaRef,
    columns: Vec<ColumnSpec>,
    /// The header up to and including `"records":`.
    head: Vec<u8>,
    /// The header after the records count, through the `columns` array.
    tail: Vec<u8>,
    /// The row count option `records` announced.
    expected: Option<u64>,
    header_written: bool,
    spool: Spool,
    buf: Vec<u8>,
    rows: u64,
}

impl<W: Write> std::fmt::Debug for DatasetJsonWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetJsonWriter")
            .field("form", &self.form)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn push_key(buf: &mut Vec<u8>, key: &str) {
    push_json_string(buf, key.as_bytes());
    buf.push(b':');
}

fn push_str_attr(buf: &mut Vec<u8>, key: &str, value: &str) {
    push_key(buf, key);
    push_json_string(buf, value.as_bytes());
    buf.push(b',');
}

fn push_u32_attr(buf: &mut Vec<u8>, key: &str, value: u32) {
    push_key(buf, key);
    cell::push_u64(buf, u64::from(value));
    buf.push(b',');
}

/// The header bytes before and after the records count.
fn header(top: &TopLevel, columns: &[ColumnSpec]) -> (Vec<u8>, Vec<u8>) {
    let mut head = vec![b'{'];
    push_str_attr(&mut head, "datasetJSONCreationDateTime", &top.created);
    push_str_attr(&mut head, "datasetJSONVersion", super::VERSION);
    let opt = |buf: &mut Vec<u8>, key: &str, v: &Option<String>| {
        if let Some(v) = v {
            push_str_attr(buf, key, v);
        }
    };
    opt(&mut head, "fileOID", &top.file_oid);
    opt(&mut head, "dbLastModifiedDateTime", &top.db_last_modified);
    opt(&mut head, "originator", &top.originator);
    if let Some((name, version)) = &top.source_system {
        push_key(&mut head, "sourceSystem");
        head.push(b'{');
        push_str_attr(&mut head, "name", name);
        push_key(&mut head, "version");
        push_json_string(&mut head, version.as_bytes());
        head.extend_from_slice(b"},");
    }
    opt(&mut head, "studyOID", &top.study_oid);
    opt(&mut head, "metaDataVersionOID", &top.metadata_version_oid);
    opt(&mut head, "metaDataRef", &top.metadata_ref);
    push_str_attr(&mut head, "itemGroupOID", &top.item_group_oid);
    push_key(&mut head, "records");

    let mut tail = vec![b','];
    push_str_attr(&mut tail, "name", &top.name);
    push_str_attr(&mut tail, "label", &top.label);
    push_key(&mut tail, "columns");
    tail.push(b'[');
    for (j, c) in columns.iter().enumerate() {
        if j > 0 {
            tail.push(b',');
        }
        tail.push(b'{');
        push_str_attr(&mut tail, "itemOID", &c.item_oid);
        push_str_attr(&mut tail, "name", &c.name);
        push_str_attr(&mut tail, "label", &c.label);
        push_str_attr(&mut tail, "dataType", c.ty.data_type.as_str());
        if let Some(t) = c.ty.target {
            push_str_attr(&mut tail, "targetDataType", t.as_str());
        }
        if let Some(n) = c.length {
            push_u32_attr(&mut tail, "length", n);
        }
        if let Some(f) = &c.display_format {
            push_str_attr(&mut tail, "displayFormat", f);
        }
        if let Some(k) = c.key_sequence {
            push_u32_attr(&mut tail, "keySequence", k);
        }
        // Every object has at least itemOID, so there is a trailing comma to replace.
        if let Some(last) = tail.last_mut() {
            *last = b'}';
        }
    }
    tail.push(b']');
    (head, tail)
}

impl<W: Write> DatasetJsonWriter<W> {
    /// A writer of `columns` (resolved from the schema and metadata by the format) with the top-level attributes
    /// `top`; nothing reaches `out` before the first flush of rows or [`DatasetJsonWriter::finish`].
    pub(crate) fn new(
        out: W,
        schema: &SchemaRef,
        columns: Vec<ColumnSpec>,
        top: &TopLevel,
        form: Form,
        expected: Option<u64>,
        compression_level: u32,
    ) -> Self {
        let (head, tail) = header(top, &columns);
        let out = match form {
            Form::Dsjc => Out::Zlib(ZlibEncoder::new(
                out,
                flate2::Compression::new(compression_level),
            )),
            Form::Json | Form::Ndjson => Out::Plain(out),
        };
        DatasetJsonWriter {
            out: Some(out),
            form,
            schema: schema.clone(),
            columns,
            head,
            tail,
            expected,
            header_written: false,
            spool: Spool::default(),
            buf: Vec::with_capacity(FLUSH_AT + 64 * 1024),
            rows: 0,
        }
    }

    fn out(&mut self) -> Result<&mut Out<W>> {
        self.out.as_mut().ok_or_else(|| {
            Error::server(
                Reason::IoError,
                "the Dataset-JSON writer was used after it failed",
            )
        })
    }

    /// Writes the header with `records`.
    fn write_header(&mut self, records: u64) -> Result<()> {
        let mut h = std::mem::take(&mut self.head);
        cell::push_u64(&mut h, records);
        h.extend_from_slice(&self.tail);
        match self.form {
            Form::Json => h.extend_from_slice(b",\"rows\":["),
            Form::Ndjson | Form::Dsjc => h.extend_from_slice(b"}\n"),
        }
        self.out()?.write_all(&h)?;
        self.header_written = true;
        Ok(())
    }

    /// Hands the buffered rows to the output (header first when the count is known) or the spool.
    fn flush_buf(&mut self) -> Result<()> {
        if let Some(n) = self.expected {
            if !self.header_written {
                self.write_header(n)?;
            }
            let buf = std::mem::take(&mut self.buf);
            let r = self.out()?.write_all(&buf);
            self.buf = buf;
            r?;
        } else {
            self.spool.write(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Encodes one batch.
    ///
    /// # Errors
    /// EXP002 (field = the column, `details.row` = the row from 0) `unrepresentable_value` for an infinity, a
    /// non-whole number in an `integer` column, or a date or time outside the years 0000-9999 (or a time outside
    /// one day); `records_mismatch` when more rows arrive than option `records` announced; `schema_mismatch` for
    /// a batch of another schema; EXP005 for I/O.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        cell::check_batch(&self.schema, batch)?;
        if let Some(n) = self.expected {
            if self.rows + batch.num_rows() as u64 > n {
                return Err(records_mismatch(n, self.rows + batch.num_rows() as u64));
            }
        }
        let prepared = batch
            .columns()
            .iter()
            .map(prepare)
            .collect::<Result<Vec<_>>>()?;
        let views = prepared.iter().map(View::new).collect::<Result<Vec<_>>>()?;
        let nulls: Vec<Option<NullBuffer>> = prepared.iter().map(|a| a.logical_nulls()).collect();
        let all_null: Vec<bool> = prepared
            .iter()
            .map(|a| a.data_type() == &DataType::Null)
            .collect();
        for row in 0..batch.num_rows() {
            match self.form {
                Form::Json => self.buf.extend_from_slice(if self.rows == 0 && row == 0 {
                    b"\n"
                } else {
                    b",\n"
                }),
                Form::Ndjson | Form::Dsjc => {}
            }
            self.buf.push(b'[');
            for (j, view) in views.iter().enumerate() {
                if j > 0 {
                    self.buf.push(b',');
                }
                let null = all_null[j] || nulls[j].as_ref().is_some_and(|n| n.is_null(row));
                if null {
                    self.buf.extend_from_slice(b"null");
                    continue;
                }
                if let Err(what) = view.write(self.columns[j].mode, row, &mut self.buf) {
                    return Err(Error::validation(Reason::UnrepresentableValue, what)
                        .with_field(self.columns[j].name.clone())
                        .with_detail("row", self.rows + row as u64));
                }
            }
            self.buf.push(b']');
            if self.form != Form::Json {
                self.buf.push(b'\n');
            }
            if self.buf.len() >= FLUSH_AT {
                self.flush_buf()?;
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes the header (when rows were spooled) and the spooled rows, the trailer, and flushes.
    ///
    /// # Errors
    /// EXP002 `records_mismatch` when option `records` announced another count; EXP005 for I/O.
    pub fn finish(mut self) -> Result<EncodeSummary> {
        if let Some(n) = self.expected {
            if n != self.rows {
                return Err(records_mismatch(n, self.rows));
            }
            self.flush_buf()?;
        } else {
            self.write_header(self.rows)?;
            let mut spool = std::mem::take(&mut self.spool);
            spool.drain_into(self.out()?)?;
            let buf = std::mem::take(&mut self.buf);
            self.out()?.write_all(&buf)?;
        }
        if self.form == Form::Json {
            let end: &[u8] = if self.rows == 0 { b"]}\n" } else { b"\n]}\n" };
            self.out()?.write_all(end)?;
        }
        if let Some(out) = self.out.take() {
            out.finish()?;
        }
        Ok(EncodeSummary::rows(self.rows))
    }
}

fn records_mismatch(expected: u64, rows: u64) -> Error {
    Error::validation(
        Reason::RecordsMismatch,
        "the rows written differ from the count given in option 'records'",
    )
    .with_field("options.records")
    .with_detail("records", expected)
    .with_detail("rows", rows)
}

impl<W: Write + Send> Encoder for DatasetJsonWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        DatasetJsonWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        DatasetJsonWriter::finish(*self)
    }
}

/// Casts a column to the few types [`View`] reads: dictionaries decoded, small integers widened, half floats to
/// `Float32`.
fn prepare(a: &ArrayRef) -> Result<ArrayRef> {
    use DataType as D;
    let to = match a.data_type() {
        D::Dictionary(_, value) => Some(value.as_ref().clone()),
        D::Int8 | D::Int16 | D::Int32 => Some(D::Int64),
        D::UInt8 | D::UInt16 | D::UInt32 => Some(D::UInt64),
        D::Float16 => Some(D::Float32),
        _ => None,
    };
    match to {
        Some(t) => {
            let c = arrow::compute::cast(a, &t)?;
            if matches!(
                t,
                D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16 | D::UInt32 | D::Float16
            ) {
                prepare(&c)
            } else {
                Ok(c)
            }
        }
        None => Ok(a.clone()),
    }
}

/// A typed view of one prepared column of one batch.
enum View<'a> {
    Null,
    /// Offsets and bytes of a `Utf8` column (read directly: `value` checks bounds per cell).
    Utf8(&'a [i32], &'a [u8]),
    LargeUtf8(&'a [i64], &'a [u8]),
    Utf8Views(&'a StringViewArray),
    I64(&'a [i64]),
    U64(&'a [u64]),
    F64(&'a [f64]),
    F32(&'a [f32]),
    Bool(&'a BooleanArray),
    Date32(&'a [i32]),
    Date64(&'a [i64]),
    /// Values, units per second, time-zone aware.
    Timestamp(&'a [i64], i64, bool),
    Time32(&'a [i32], i64),
    Time64(&'a [i64], i64),
    Decimal(Box<ColumnView>),
}

fn per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

const OUT_OF_RANGE: &str = "a date or time is outside what ISO 8601 text holds here (years 0000-9999; times within one day)";
const NOT_FINITE: &str = "JSON cannot represent an infinite number";
const NOT_WHOLE: &str = "a value of an integer or date column is not a whole number";

impl<'a> View<'a> {
    fn new(a: &'a ArrayRef) -> Result<Self> {
        use DataType as D;
        Ok(match a.data_type() {
            D::Null => View::Null,
            D::Utf8 => {
                let s = a.as_string::<i32>();
                View::Utf8(s.value_offsets(), s.value_data())
            }
            D::LargeUtf8 => {
                let s = a.as_string::<i64>();
                View::LargeUtf8(s.value_offsets(), s.value_data())
            }
            D::Utf8View => View::Utf8Views(a.as_string_view()),
            D::Int64 => View::I64(a.as_primitive::<Int64Type>().values()),
            D::UInt64 => View::U64(a.as_primitive::<UInt64Type>().values()),
            D::Float64 => View::F64(a.as_primitive::<Float64Type>().values()),
            D::Float32 => View::F32(a.as_primitive::<Float32Type>().values()),
            D::Boolean => View::Bool(a.as_boolean()),
            D::Date32 => View::Date32(a.as_primitive::<Date32Type>().values()),
            D::Date64 => View::Date64(a.as_primitive::<Date64Type>().values()),
            D::Timestamp(unit, tz) => {
                let values = match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().values(),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().values(),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().values(),
                };
                View::Timestamp(values, per_second(unit), tz.is_some())
            }
            D::Time32(TimeUnit::Second) => {
                View::Time32(a.as_primitive::<Time32SecondType>().values(), 1)
            }
            D::Time32(TimeUnit::Millisecond) => {
                View::Time32(a.as_primitive::<Time32MillisecondType>().values(), 1_000)
            }
            D::Time64(TimeUnit::Microsecond) => View::Time64(
                a.as_primitive::<Time64MicrosecondType>().values(),
                1_000_000,
            ),
            D::Time64(TimeUnit::Nanosecond) => View::Time64(
                a.as_primitive::<Time64NanosecondType>().values(),
                1_000_000_000,
            ),
            D::Decimal32(_, _) | D::Decimal64(_, _) | D::Decimal128(_, _) | D::Decimal256(_, _) => {
                View::Decimal(Box::new(ColumnView::new(a)?))
            }
            other => {
                return Err(Error::validation(
                    Reason::UnsupportedType,
                    format!("format 'dataset-json' cannot write type {other}"),
                ))
            }
        })
    }

    /// The value of numeric cell `row` as a float (for the SAS modes), or `None` for a non-numeric view.
    #[inline]
    fn number(&self, row: usize) -> Option<f64> {
        match self {
            View::I64(v) => Some(v[row] as f64),
            View::U64(v) => Some(v[row] as f64),
            View::F64(v) => Some(v[row]),
            View::F32(v) => Some(f64::from(v[row])),
            _ => None,
        }
    }

    /// Appends non-null cell `row` as `mode` says; `Err` holds why it cannot be written.
    #[inline]
    fn write(
        &self,
        mode: Mode,
        row: usize,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<(), &'static str> {
        match (mode, self) {
            (Mode::Null, _) | (_, View::Null) => buf.extend_from_slice(b"null"),
            (Mode::Text, View::Utf8(offsets, data)) => {
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                push_str(buf, &data[start..end])
            }
            (Mode::Text, View::LargeUtf8(offsets, data)) => {
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                push_str(buf, &data[start..end])
            }
            (Mode::Text, View::Utf8Views(a)) => push_str(buf, a.value(row).as_bytes()),
            (Mode::Int, View::I64(v)) => cell::push_i64(buf, v[row]),
            (Mode::Int, View::U64(v)) => cell::push_u64(buf, v[row]),
            (Mode::IntAsDecimal, View::I64(v)) => {
                buf.push(b'"');
                cell::push_i64(buf, v[row]);
                buf.push(b'"');
            }
            (Mode::IntAsDecimal, View::U64(v)) => {
                buf.push(b'"');
                cell::push_u64(buf, v[row]);
                buf.push(b'"');
            }
            (Mode::Float, View::F64(v)) => push_float(buf, v[row])?,
            (Mode::Float, View::F32(v)) => {
                let x = v[row];
                if x.is_nan() {
                    buf.extend_from_slice(b"null");
                } else if x.is_infinite() {
                    return Err(NOT_FINITE);
                } else {
                    cell::push_f32(buf, x);
                    strip_point_zero(buf);
                }
            }
            (Mode::FloatAsInt, _) => match self.number(row) {
                Some(x) if x.is_nan() => buf.extend_from_slice(b"null"),
                Some(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => cell::push_i64(buf, x as i64),
                _ => return Err(NOT_WHOLE),
            },
            (Mode::FloatAsDecimal, _) => match self.number(row) {
                Some(x) if x.is_nan() => buf.extend_from_slice(b"null"),
                Some(x) if x.is_finite() => {
                    use std::fmt::Write as _;
                    let mut s = String::new();
                    let _ = write!(s, "{x}");
                    push_json_string(buf, s.as_bytes());
                }
                _ => return Err(NOT_FINITE),
            },
            (Mode::SasDate, View::I64(v)) => quoted(buf, |b| {
                v[row]
                    .checked_sub(SAS_DAYS_TO_UNIX)
                    .and_then(|d| temporal::push_date(b, d))
            })?,
            (Mode::SasDate, _) => match self.number(row) {
                Some(x) if x.is_nan() => buf.extend_from_slice(b"null"),
                Some(x) if x.fract() == 0.0 && x.abs() < 1e9 => {
                    quoted(buf, |b| temporal::push_date(b, x as i64 - SAS_DAYS_TO_UNIX))?
                }
                Some(x) if x.is_finite() => return Err(NOT_WHOLE),
                _ => return Err(OUT_OF_RANGE),
            },
            (Mode::SasDatetime, _) => match self.number(row) {
                Some(x) if x.is_nan() => buf.extend_from_slice(b"null"),
                Some(x) => quoted(buf, |b| {
                    let (secs, nanos) = temporal::sas_seconds(x)?;
                    temporal::push_datetime(b, secs.checked_sub(SAS_SECONDS_TO_UNIX)?, nanos)
                })?,
                None => return Err(OUT_OF_RANGE),
            },
            (Mode::SasTime, _) => match self.number(row) {
                Some(x) if x.is_nan() => buf.extend_from_slice(b"null"),
                Some(x) => quoted(buf, |b| {
                    let (secs, nanos) = temporal::sas_seconds(x)?;
                    let n = secs
                        .checked_mul(1_000_000_000)?
                        .checked_add(i64::from(nanos))?;
                    temporal::push_time(b, n)
                })?,
                None => return Err(OUT_OF_RANGE),
            },
            (Mode::Bool, View::Bool(a)) => {
                buf.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
            }
            (Mode::Date, View::Date32(v)) => {
                quoted(buf, |b| temporal::push_date(b, i64::from(v[row])))?
            }
            (Mode::Date, View::Date64(v)) => quoted(buf, |b| {
                temporal::push_date(b, v[row].div_euclid(86_400_000))
            })?,
            (Mode::Timestamp, View::Timestamp(v, per, utc)) => quoted(buf, |b| {
                let (secs, nanos) = temporal::split(v[row], *per);
                temporal::push_datetime(b, secs, nanos)?;
                if *utc {
                    b.push(b'Z');
                }
                Some(())
            })?,
            (Mode::Time, View::Time32(v, per)) => quoted(buf, |b| {
                temporal::push_time(b, i64::from(v[row]) * (1_000_000_000 / per))
            })?,
            (Mode::Time, View::Time64(v, per)) => quoted(buf, |b| {
                temporal::push_time(b, v[row].checked_mul(1_000_000_000 / per)?)
            })?,
            (Mode::Decimal, View::Decimal(view)) => {
                buf.push(b'"');
                let _ = view.write_raw(row, buf, &cell::Temporal::default());
                buf.push(b'"');
            }
            // The mode was chosen from the column's type, so the view always matches it.
            _ => buf.extend_from_slice(b"null"),
        }
        Ok(())
    }
}

/// Appends `"` + what `f` writes + `"`; nothing when `f` fails.
#[inline]
fn quoted(
    buf: &mut Vec<u8>,
    f: impl FnOnce(&mut Vec<u8>) -> Option<()>,
) -> std::result::Result<(), &'static str> {
    let start = buf.len();
    buf.push(b'"');
    if f(buf).is_none() {
        buf.truncate(start);
        return Err(OUT_OF_RANGE);
    }
    buf.push(b'"');
    Ok(())
}

/// Whether any byte of `s` must be escaped in a JSON string (a control character, `"` or `\`), eight bytes at a
/// time: most values have none and are copied whole.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact tests on eight bytes at once: a byte below 0x20, a byte equal to `"`, a byte equal to `\`.
    let word = |w: u64| {
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let q = w ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q & HIGH;
        let b = w ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b & HIGH;
        control | quote | backslash != 0
    };
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if word(u64::from_le_bytes(w)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| ESCAPED[usize::from(c)])
}

/// The bytes a JSON string escapes.
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Appends `s` (UTF-8) as a JSON string.
#[inline]
fn push_str(buf: &mut Vec<u8>, s: &[u8]) {
    if needs_escape(s) {
        push_json_string(buf, s);
    } else {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s);
        buf.push(b'"');
    }
}

/// Drops a trailing `.0` (a whole number is written as the CDISC examples write it, `54` rather than `54.0`).
#[inline]
fn strip_point_zero(buf: &mut Vec<u8>) {
    if buf.ends_with(b".0") {
        buf.truncate(buf.len() - 2);
    }
}

/// Appends a float as a JSON number (shortest round trip), `null` for NaN.
#[inline]
fn push_float(buf: &mut Vec<u8>, x: f64) -> std::result::Result<(), &'static str> {
    if x.is_nan() {
        buf.extend_from_slice(b"null");
    } else if x.is_infinite() {
        return Err(NOT_FINITE);
    } else {
        cell::push_f64(buf, x);
        strip_point_zero(buf);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn float(x: f64) -> String {
        let mut b = Vec::new();
        push_float(&mut b, x).unwrap();
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_where_json_needs_it() {
        for s in [
            "",
            "plain",
            "exactly8",
            "sixteen bytes ok",
            "é😀アプリ",
            "a\"b",
            "1234567\\",
            "12345678\u{1f}",
            "\u{7f}\u{80}",
            "tab\there",
            "\"",
            "long text without anything to escape at all",
        ] {
            let mut ours = Vec::new();
            push_str(&mut ours, s.as_bytes());
            let mut reference = Vec::new();
            push_json_string(&mut reference, s.as_bytes());
            assert_eq!(ours, reference, "{s:?}");
            assert_eq!(serde_json::from_slice::<String>(&ours).unwrap(), s);
            let expect = s.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
            assert_eq!(needs_escape(s.as_bytes()), expect, "{s:?}");
        }
    }

    #[test]
    fn floats_are_shortest_and_whole_numbers_bare() {
        assert_eq!(float(54.0), "54");
        assert_eq!(float(25.1), "25.1");
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(1e300), "1e300");
        assert_eq!(float(f64::NAN), "null");
        assert!(push_float(&mut Vec::new(), f64::INFINITY).is_err());
        for x in [0.1, 1.0 / 3.0, 123_456.789_012_345, 5e-324, f64::MAX] {
            assert_eq!(float(x).parse::<f64>().unwrap(), x);
        }
    }
}
