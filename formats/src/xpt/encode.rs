//! The streaming XPORT writer, [`XptWriter`]: checks, header, observations, padding.
//!
//! Each batch is encoded column by column, [`CHUNK_BYTES`] of observations at a time (a batch of any size is cut
//! into zero-copy slices), into a reusable buffer filled with blanks first and handed to the output in one write;
//! no cell allocates (text in an encoding other than ASCII or UTF-8 goes through one reusable scratch buffer).
//!
//! From the first batch of 256 KiB of observations on, the slices are encoded on up to four threads of their own
//! (the available parallelism), fed in turn and read back in the same turn, so the output is written in order by
//! the caller's thread while the next slices are encoded, and the bytes never depend on the thread count. At most
//! two slices per thread are in flight. Every check (text lengths and encodings, numbers) is done on the whole
//! batch before any of it is handed over, so a bad value still leaves nothing of its batch written.

use super::checks::{self, Violation};
use super::header::{
    format_timestamp, header_record, namestr_digits, put_text, Namestr, SasFormat, XptVersion,
    MEMBER30, RECORD, ZEROS30,
};
use super::ibm;
use super::text::XptEncoding;
use super::{XptOptions, KEY_DATASET_TYPE, KEY_INFORMAT, KEY_JUSTIFY, KEY_NUMERIC_LENGTH};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, StringArray, StringViewArray,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Field, Float16Type, Float32Type,
    Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, Schema, SchemaRef,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use trialport_core::error::Reason;
use trialport_core::format::{EncodeSummary, Encoder};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_core::{Error, Result};

/// Batches kept in memory while measuring character lengths before they go to a spool file (or the size of the
/// largest batch received, when larger: see [`XptWriter::write`]).
const SPOOL_IN_MEMORY: usize = 64 << 20;
/// Observation bytes encoded per step: a batch is encoded in slices of about this size, so the buffer stays small
/// (and in cache) whatever the batch size.
pub const CHUNK_BYTES: usize = 2 << 20;
/// Observation bytes of a batch from which it is encoded on threads of their own.
const PARALLEL_MIN_BYTES: usize = 256 << 10;
/// Most threads that encode observations.
const MAX_THREADS: usize = 4;
/// Days from 1960-01-01 (the SAS epoch) to 1970-01-01.
const SAS_EPOCH_DAYS: i64 = 3_653;
/// Seconds from 1960-01-01T00:00:00 to 1970-01-01T00:00:00.
const SAS_EPOCH_SECONDS: i64 = SAS_EPOCH_DAYS * 86_400;
/// The smallest magnitude beyond the largest IBM double.
const IBM_MAX: f64 = 7.237_005_577_332_262e75;
/// The largest integer magnitude a double holds exactly.
const EXACT_INT: u64 = 1 << 53;

/// How an Arrow column becomes an XPT numeric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    F64,
    F32,
    F16,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    Date32,
    Date64,
    Timestamp(TimeUnit),
    Time32(TimeUnit),
    Time64(TimeUnit),
    Null,
}

/// The kind of an XPT variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Char,
    Num(Num),
}

fn kind_of(t: &DataType) -> Option<Kind> {
    use DataType as D;
    Some(match t {
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Kind::Char,
        D::Dictionary(_, v) if matches!(v.as_ref(), D::Utf8 | D::LargeUtf8 | D::Utf8View) => {
            Kind::Char
        }
        D::Float64 => Kind::Num(Num::F64),
        D::Float32 => Kind::Num(Num::F32),
        D::Float16 => Kind::Num(Num::F16),
        D::Int8 => Kind::Num(Num::I8),
        D::Int16 => Kind::Num(Num::I16),
        D::Int32 => Kind::Num(Num::I32),
        D::Int64 => Kind::Num(Num::I64),
        D::UInt8 => Kind::Num(Num::U8),
        D::UInt16 => Kind::Num(Num::U16),
        D::UInt32 => Kind::Num(Num::U32),
        D::UInt64 => Kind::Num(Num::U64),
        D::Boolean => Kind::Num(Num::Bool),
        D::Date32 => Kind::Num(Num::Date32),
        D::Date64 => Kind::Num(Num::Date64),
        D::Timestamp(u, _) => Kind::Num(Num::Timestamp(*u)),
        D::Time32(u) => Kind::Num(Num::Time32(*u)),
        D::Time64(u) => Kind::Num(Num::Time64(*u)),
        D::Null => Kind::Num(Num::Null),
        _ => return None,
    })
}

/// The default display format of a kind when the metadata gives none.
fn default_format(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Num(Num::Date32 | Num::Date64) => Some("DATE9."),
        Kind::Num(Num::Timestamp(_)) => Some("DATETIME20."),
        Kind::Num(Num::Time32(_) | Num::Time64(_)) => Some("TIME8."),
        _ => None,
    }
}

/// One variable as it will be written.
#[derive(Debug, Clone)]
struct Column {
    kind: Kind,
    /// Bytes in the observation (for a measured character column: known at `finish`).
    length: usize,
    /// Whether the length is measured from the data rather than given.
    measured: bool,
    /// The longest encoded value seen.
    longest: usize,
    /// Offset in the observation.
    pos: usize,
    namestr: Namestr,
}

/// Batches kept while character lengths are measured.
enum Spool {
    Memory {
        batches: Vec<RecordBatch>,
        /// The size of the batches kept.
        bytes: usize,
        /// `bytes` when the batches' sharing was last looked at (see [`XptWriter::write`]).
        checked: usize,
    },
    /// An unnamed spool file (see [`crate::spool::tempfile`]): nothing is left behind, even by a killed process.
    Disk {
        writer: Box<StreamWriter<BufWriter<File>>>,
    },
}

/// A streaming SAS XPORT writer: [`XptWriter::try_new`], [`XptWriter::write`] any number of times,
/// [`XptWriter::finish`] once. Nothing reaches the output before the first batch has passed its checks.
pub struct XptWriter<W: Write> {
    out: W,
    schema: SchemaRef,
    options: XptOptions,
    dataset: String,
    label: Vec<u8>,
    dataset_type: Vec<u8>,
    columns: Vec<Column>,
    /// Observation length (known once every character length is).
    obs_len: usize,
    header_written: bool,
    spool: Option<Spool>,
    /// Bytes of batches kept in memory before spooling to disk.
    spool_limit: usize,
    /// The largest batch received while measuring, in bytes (it raises the in-memory limit).
    largest_batch: usize,
    /// The schema of spooled batches (dictionaries decoded to `Utf8`).
    spool_schema: SchemaRef,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    rows: u64,
    data_bytes: u64,
    /// The most threads that encode observations.
    threads: usize,
    /// The encoding threads, started by the first batch of at least `parallel_min` bytes of observations.
    pipeline: Option<Pipeline>,
    /// Observation bytes per step (per job of an encoding thread).
    chunk_bytes: usize,
    /// Observation bytes of a batch from which the encoding threads start.
    parallel_min: usize,
}

impl<W: Write> std::fmt::Debug for XptWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XptWriter")
            .field("dataset", &self.dataset)
            .field("options", &self.options)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn unsupported(field: &Field) -> Error {
    Error::validation(
        Reason::UnsupportedType,
        format!(
            "format 'xpt' cannot write column '{}' of type {}",
            field.name(),
            field.data_type()
        ),
    )
    .with_field(field.name().clone())
}

fn unrepresentable(column: &str, row: u64, what: &str) -> Error {
    Error::validation(Reason::UnrepresentableValue, what.to_string())
        .with_field(column.to_string())
        .with_detail("row", row)
}

impl<W: Write> XptWriter<W> {
    /// Validates the schema, metadata and options; nothing is written yet.
    ///
    /// # Errors
    /// EXP002 `unsupported_type` (field = the column) for a type XPT cannot hold; EXP002 `fda_check_failed` with
    /// every broken rule of the names, labels, lengths and formats in `details.violations` ([`super::checks`]).
    pub fn try_new(
        out: W,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: XptOptions,
    ) -> Result<Self> {
        let merged = DatasetMeta::from_schema(schema).merged_with(meta);
        let version = options.version;
        let enc = options.encoding;
        let dataset = options.dataset.clone().unwrap_or(merged.name.clone());
        let mut v = Vec::new();
        checks::check_name(&dataset, None, version, &mut v);
        let label =
            checks::check_label(merged.label.as_deref().unwrap_or(""), None, 40, enc, &mut v);
        if schema.fields().len() > version.max_variables() {
            v.push(Violation::new("variable_count", None).limit(version.max_variables()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (j, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            let kind = kind_of(field.data_type()).ok_or_else(|| unsupported(field))?;
            let col = Some(name);
            checks::check_name(name, col, version, &mut v);
            if !seen.insert(name.to_ascii_uppercase()) {
                v.push(Violation::new("name_duplicate", col));
            }
            let cm = merged.column(name).cloned().unwrap_or_default();
            let label = checks::check_label(
                cm.label.as_deref().unwrap_or(""),
                col,
                version.max_label(),
                enc,
                &mut v,
            );
            let md = field.metadata();
            let format_text = cm
                .display_format
                .as_deref()
                .filter(|f| !f.trim().is_empty())
                .or_else(|| default_format(kind));
            let format = parse_format(format_text, name, version, &mut v);
            let informat = parse_format(
                md.get(KEY_INFORMAT).map(String::as_str),
                name,
                version,
                &mut v,
            );
            let justify = md
                .get(KEY_JUSTIFY)
                .and_then(|j| j.trim().parse::<i16>().ok())
                .unwrap_or(0);
            let (length, measured) = match kind {
                Kind::Char => match cm.length {
                    Some(n) if n >= 1 && n as usize <= version.max_char() => (n as usize, false),
                    Some(_) => {
                        v.push(Violation::new("column_length", col).limit(version.max_char()));
                        (1, false)
                    }
                    None => (0, true),
                },
                Kind::Num(_) => match md.get(KEY_NUMERIC_LENGTH) {
                    None => (8, false),
                    Some(s) => match s.trim().parse::<usize>() {
                        Ok(n) if (2..=8).contains(&n) => (n, false),
                        _ => {
                            v.push(Violation::new("numeric_length", col).limit(8));
                            (8, false)
                        }
                    },
                },
            };
            columns.push(Column {
                kind,
                length,
                measured,
                longest: 0,
                pos: 0,
                namestr: Namestr {
                    ntype: if kind == Kind::Char { 2 } else { 1 },
                    number: (j + 1) as i16,
                    name: name.as_bytes().to_vec(),
                    label,
                    format,
                    informat,
                    justify,
                    ..Namestr::default()
                },
            });
        }
        if !v.is_empty() {
            return Err(checks::failed(&dataset, version, &v));
        }
        let dataset_type = schema
            .metadata()
            .get(KEY_DATASET_TYPE)
            .map(|t| t.as_bytes().to_vec())
            .unwrap_or_default();
        let measuring = columns.iter().any(|c| c.measured);
        let spool_schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Dictionary(_, _) => f.as_ref().clone().with_data_type(DataType::Utf8),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ));
        let mut w = XptWriter {
            out,
            schema: schema.clone(),
            options,
            dataset,
            label,
            dataset_type,
            columns,
            obs_len: 0,
            header_written: false,
            spool: measuring.then(|| Spool::Memory {
                batches: Vec::new(),
                bytes: 0,
                checked: 0,
            }),
            spool_limit: SPOOL_IN_MEMORY,
            largest_batch: 0,
            spool_schema,
            buf: Vec::new(),
            scratch: Vec::with_capacity(256),
            rows: 0,
            data_bytes: 0,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_THREADS),
            pipeline: None,
            chunk_bytes: CHUNK_BYTES,
            parallel_min: PARALLEL_MIN_BYTES,
        };
        if !measuring {
            w.lay_out();
        }
        Ok(w)
    }

    /// Sets the positions and the observation length from the column lengths.
    fn lay_out(&mut self) {
        let mut pos = 0;
        for c in &mut self.columns {
            if c.measured {
                c.length = c.longest.max(1);
            }
            c.pos = pos;
            c.namestr.length = c.length as u16;
            c.namestr.position = pos as u32;
            pos += c.length;
        }
        self.obs_len = pos;
    }

    /// Checks that a batch has the encoder's column types.
    fn check_batch(&self, batch: &RecordBatch) -> Result<()> {
        let ok = batch.num_columns() == self.schema.fields().len()
            && batch
                .columns()
                .iter()
                .zip(self.schema.fields())
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

    /// The batch's columns with dictionaries decoded.
    fn prepare(batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        batch
            .columns()
            .iter()
            .map(|a| match a.data_type() {
                DataType::Dictionary(_, _) => {
                    arrow::compute::cast(a, &DataType::Utf8).map_err(Error::from)
                }
                _ => Ok(a.clone()),
            })
            .collect()
    }

    /// Checks every character value (length and encoding), collecting all violations of the batch, and records
    /// the longest value of each column.
    fn check_values(&mut self, arrays: &[ArrayRef]) -> Result<()> {
        let version = self.options.version;
        let enc = self.options.encoding;
        let plain = self.plain_lengths(arrays)?;
        let mut v = Vec::new();
        for (c, (col, arr)) in self.columns.iter_mut().zip(arrays).enumerate() {
            if col.kind != Kind::Char {
                continue;
            }
            let limit = if col.measured {
                version.max_char()
            } else {
                col.length
            };
            let view = StrView::new(arr)?;
            // Fast path: all text ASCII (or UTF-8 chosen), so only lengths matter.
            if let Some(longest) = plain[c] {
                if longest <= limit {
                    col.longest = col.longest.max(longest);
                    continue;
                }
            }
            let name = self.schema.field(c).name();
            let mut longest = col.longest;
            for i in 0..arr.len() {
                if view.is_null(i) {
                    continue;
                }
                let row = self.rows + i as u64;
                match enc.encoded_len(view.value(i)) {
                    Ok(n) => {
                        if n > limit {
                            v.push(
                                Violation::new("value_length", Some(name))
                                    .row(row)
                                    .limit(limit),
                            );
                        }
                        longest = longest.max(n);
                    }
                    Err(issue) => v.push(checks::text_issue(issue, name, row)),
                }
            }
            col.longest = longest;
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(checks::failed(&self.dataset, version, &v))
        }
    }

    /// For each text column, [`StrView::longest_if_plain`] (`None` for the others): split among the threads, by
    /// columns, for a large batch.
    fn plain_lengths(&self, arrays: &[ArrayRef]) -> Result<Vec<Option<usize>>> {
        let enc = self.options.encoding;
        let columns = &self.columns;
        let one = |c: usize| -> Result<Option<usize>> {
            match columns[c].kind {
                Kind::Char => Ok(StrView::new(&arrays[c])?.longest_if_plain(enc)),
                Kind::Num(_) => Ok(None),
            }
        };
        let n = arrays.first().map_or(0, |a| a.len());
        let threads = self.threads.min(self.columns.len());
        if threads < 2 || n.saturating_mul(self.obs_len.max(1)) < 8 * self.chunk_bytes {
            return (0..arrays.len()).map(one).collect();
        }
        // Column c goes to thread c % threads; the results are put back in column order.
        let parts: Vec<Result<Vec<Option<usize>>>> = std::thread::scope(|s| {
            let one = &one;
            let handles: Vec<_> = (1..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t..arrays.len())
                            .step_by(threads)
                            .map(one)
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut parts = vec![(0..arrays.len()).step_by(threads).map(one).collect()];
            parts.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(thread_failed()))),
            );
            parts
        });
        let mut out = vec![None; arrays.len()];
        for (t, part) in parts.into_iter().enumerate() {
            for (k, longest) in part?.into_iter().enumerate() {
                out[t + k * threads] = longest;
            }
        }
        Ok(out)
    }

    /// Encodes one batch.
    ///
    /// # Errors
    /// EXP002 `schema_mismatch` for a batch of another schema; EXP002 `fda_check_failed` listing every character
    /// value of the batch that is too long or not in the encoding (nothing of the batch is written then); EXP002
    /// `unrepresentable_value` (field = the column, `details.row`) for an infinite or too large number, an integer
    /// beyond 2^53, or a value a short numeric cannot hold exactly; EXP005 for I/O.
    ///
    /// While character lengths are measured, batches are kept in memory up to 64 MiB or the size of the largest
    /// batch received, whichever is larger (a producer that hands over one large batch already holds it: keeping
    /// it adds nothing, and writing it to a spool file and back would only copy it twice), then in the spool file.
    /// Past that limit, columns the producer still holds (its arrays are shared) are not counted, for the same
    /// reason; this is looked at again each time the batches kept have doubled.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check_batch(batch)?;
        let arrays = Self::prepare(batch)?;
        self.check_values(&arrays)?;
        let n = batch.num_rows();
        if self.spool.is_some() {
            // Numbers are checked now, so that a bad value fails this write rather than `finish`.
            self.check_numbers(&arrays, n)?;
            let spooled = RecordBatch::try_new(self.spool_schema.clone(), arrays)?;
            self.spool_batch(spooled)?;
        } else {
            let chunk = self.chunk_rows();
            if n <= chunk && !self.parallel(n) {
                // One step: encoded before the header, so a bad number leaves nothing written.
                self.encode(&arrays, n, self.rows)?;
                if !self.header_written {
                    self.write_header()?;
                }
                self.emit()?;
            } else {
                // Several steps, or steps on other threads: numbers are checked first, so a bad one leaves nothing
                // of the batch written.
                self.check_numbers(&arrays, n)?;
                if !self.header_written {
                    self.write_header()?;
                }
                self.encode_chunks(&arrays, n)?;
            }
        }
        self.rows += n as u64;
        Ok(())
    }

    /// Sets the most threads that encode observations (at least 1; 1 encodes on the caller's thread). Defaults to
    /// the available parallelism, at most 4. The threads start with the first batch of at least 256 KiB of
    /// observations; the bytes written never depend on the thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Rows encoded per step (at least 1).
    fn chunk_rows(&self) -> usize {
        (self.chunk_bytes / self.obs_len.max(1)).max(1)
    }

    /// Whether `n` rows are encoded on the encoding threads: once started, every batch is.
    fn parallel(&self, n: usize) -> bool {
        self.threads > 1
            && (self.pipeline.is_some() || n.saturating_mul(self.obs_len) >= self.parallel_min)
    }

    /// Encodes and writes `n` rows of `arrays` (numbers already checked) in steps of [`Self::chunk_rows`] rows,
    /// each over zero-copy slices of the columns; on the encoding threads when [`Self::parallel`].
    fn encode_chunks(&mut self, arrays: &[ArrayRef], n: usize) -> Result<()> {
        if self.parallel(n) {
            return self.submit_chunks(arrays, n);
        }
        let chunk = self.chunk_rows();
        if n <= chunk {
            self.encode(arrays, n, self.rows)?;
            return self.emit();
        }
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let sliced: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(start, len)).collect();
            self.encode(&sliced, len, self.rows + start as u64)?;
            self.emit()?;
            start += len;
        }
        Ok(())
    }

    /// Hands `n` rows of `arrays` (numbers already checked) to the encoding threads in steps of
    /// [`Self::chunk_rows`] rows, writing the encoded steps in order as they come back; at most
    /// [`Pipeline::depth`] steps stay in flight when it returns.
    fn submit_chunks(&mut self, arrays: &[ArrayRef], n: usize) -> Result<()> {
        if self.pipeline.is_none() {
            let layout = Layout {
                columns: &self.columns,
                schema: &self.schema,
                obs_len: self.obs_len,
                encoding: self.options.encoding,
            };
            self.pipeline = Some(Pipeline::start(layout, self.threads)?);
        }
        let chunk = self.chunk_rows();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let sliced: Vec<ArrayRef> = if len == n {
                arrays.to_vec()
            } else {
                arrays.iter().map(|a| a.slice(start, len)).collect()
            };
            while self
                .pipeline
                .as_ref()
                .is_some_and(|p| p.pending.len() >= p.depth())
            {
                self.emit_next()?;
            }
            match self.pipeline.as_mut() {
                Some(p) => p.submit(sliced, len, self.rows + start as u64)?,
                None => return Err(thread_failed()),
            }
            start += len;
        }
        Ok(())
    }

    /// Writes the oldest step in flight on the encoding threads; `false` when none is.
    fn emit_next(&mut self) -> Result<bool> {
        let Some(done) = self.pipeline.as_mut().and_then(Pipeline::take) else {
            return Ok(false);
        };
        let buf = done?;
        let written = self
            .out
            .write_all(&buf)
            .map_err(|e| Error::io("writing XPT", &e));
        self.data_bytes += buf.len() as u64;
        if let Some(p) = self.pipeline.as_mut() {
            p.free.push(buf);
        }
        written.map(|()| true)
    }

    fn spool_batch(&mut self, batch: RecordBatch) -> Result<()> {
        let spool_err = |e: arrow::error::ArrowError| match e {
            arrow::error::ArrowError::IoError(_, io) => {
                Error::io("cannot write the XPT spool file", &io)
            }
            other => Error::from(other),
        };
        match self.spool.as_mut() {
            Some(Spool::Memory {
                batches,
                bytes,
                checked,
            }) => {
                let size = batch.get_array_memory_size();
                self.largest_batch = self.largest_batch.max(size);
                *bytes += size;
                let limit = self.spool_limit.max(self.largest_batch);
                // Over the limit: columns the producer still holds cost nothing more to keep, so only the others
                // count, and this batch (the producer may drop it once this returns). Looked at again each time
                // the batches kept have doubled, so what the encoder alone holds stays within about the limit
                // plus what the producer held at the last look.
                let over = *bytes > limit && *bytes >= checked.saturating_mul(2) && {
                    *checked = *bytes;
                    unshared_bytes(batches) + size > limit
                };
                batches.push(batch);
                if over {
                    let file = crate::spool::tempfile()
                        .map_err(|e| Error::io("cannot create the XPT spool file", &e))?;
                    let mut writer = StreamWriter::try_new(
                        BufWriter::with_capacity(1 << 20, file),
                        &self.spool_schema,
                    )
                    .map_err(spool_err)?;
                    for b in batches.drain(..) {
                        writer.write(&b).map_err(spool_err)?;
                    }
                    self.spool = Some(Spool::Disk {
                        writer: Box::new(writer),
                    });
                }
            }
            Some(Spool::Disk { writer, .. }) => writer.write(&batch).map_err(spool_err)?,
            None => {}
        }
        Ok(())
    }

    /// Writes the header records (library, member, descriptor, NAMESTRs, v8 labels, obs header).
    fn write_header(&mut self) -> Result<()> {
        let bytes = self.header_bytes();
        self.out
            .write_all(&bytes)
            .map_err(|e| Error::io("writing XPT", &e))?;
        self.header_written = true;
        Ok(())
    }

    fn header_bytes(&self) -> Vec<u8> {
        let o = &self.options;
        let v = o.version;
        let names = v.names();
        let created = format_timestamp(o.created);
        let modified = format_timestamp(o.modified.unwrap_or(o.created));
        let mut h = Vec::with_capacity(RECORD * (8 + self.columns.len() * 2));
        h.extend_from_slice(&header_record(names[0], ZEROS30));
        // First real header: SAS SAS SASLIB, version, OS, 24 blanks, created.
        let mut r = [b' '; RECORD];
        r[..24].copy_from_slice(b"SAS     SAS     SASLIB  ");
        put_text(&mut r[24..32], o.sas_version.as_bytes());
        put_text(&mut r[32..40], o.os.as_bytes());
        r[64..80].copy_from_slice(&created);
        h.extend_from_slice(&r);
        let mut r = [b' '; RECORD];
        r[..16].copy_from_slice(&modified);
        h.extend_from_slice(&r);
        h.extend_from_slice(&header_record(names[1], MEMBER30));
        h.extend_from_slice(&header_record(names[2], ZEROS30));
        // Member data 1: v5 has an 8-byte name and 24 blanks, v8 a 32-byte name and none.
        let mut r = [b' '; RECORD];
        r[..8].copy_from_slice(b"SAS     ");
        let at = match v {
            XptVersion::V5 => {
                put_text(&mut r[8..16], self.dataset.as_bytes());
                16
            }
            XptVersion::V8 => {
                put_text(&mut r[8..40], self.dataset.as_bytes());
                40
            }
        };
        r[at..at + 8].copy_from_slice(b"SASDATA ");
        put_text(&mut r[at + 8..at + 16], o.sas_version.as_bytes());
        put_text(&mut r[at + 16..at + 24], o.os.as_bytes());
        r[64..80].copy_from_slice(&created);
        h.extend_from_slice(&r);
        // Member data 2: modified, 16 blanks, dataset label (40), dataset type (8).
        let mut r = [b' '; RECORD];
        r[..16].copy_from_slice(&modified);
        put_text(&mut r[32..72], &self.label);
        put_text(&mut r[72..80], &self.dataset_type);
        h.extend_from_slice(&r);
        h.extend_from_slice(&header_record(
            names[3],
            &namestr_digits(self.columns.len()),
        ));
        for c in &self.columns {
            h.extend_from_slice(&c.namestr.encode(v));
        }
        pad_record(&mut h);
        if v == XptVersion::V8 {
            self.label_section(&mut h);
        }
        h.extend_from_slice(&header_record(names[4], ZEROS30));
        h
    }

    /// The v8 label section: entries for labels over 40 bytes and (LABELV9) format names over 8.
    fn label_section(&self, h: &mut Vec<u8>) {
        let long_name = |f: &Option<SasFormat>| f.as_ref().is_some_and(|f| f.name.len() > 8);
        let v9 = self
            .columns
            .iter()
            .any(|c| long_name(&c.namestr.format) || long_name(&c.namestr.informat));
        let entries: Vec<&Namestr> = self
            .columns
            .iter()
            .map(|c| &c.namestr)
            .filter(|n| n.label.len() > 40 || long_name(&n.format) || long_name(&n.informat))
            .collect();
        if entries.is_empty() {
            return;
        }
        let name: &[u8; 8] = if v9 { b"LABELV9 " } else { b"LABELV8 " };
        let count = format!("{:<32}", entries.len());
        h.extend_from_slice(&header_record(name, count.as_bytes()));
        let be = |n: usize| (n as i16).to_be_bytes();
        for n in entries {
            h.extend_from_slice(&n.number.to_be_bytes());
            h.extend_from_slice(&be(n.name.len()));
            h.extend_from_slice(&be(n.label.len()));
            if v9 {
                let f = n.format.as_ref().map(SasFormat::text).unwrap_or_default();
                let i = n.informat.as_ref().map(SasFormat::text).unwrap_or_default();
                h.extend_from_slice(&be(f.len()));
                h.extend_from_slice(&be(i.len()));
                h.extend_from_slice(&n.name);
                h.extend_from_slice(&n.label);
                h.extend_from_slice(f.as_bytes());
                h.extend_from_slice(i.as_bytes());
            } else {
                h.extend_from_slice(&n.name);
                h.extend_from_slice(&n.label);
            }
        }
        pad_record(h);
    }

    /// Writes the encoded batch in `buf`.
    fn emit(&mut self) -> Result<()> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io("writing XPT", &e))?;
        self.data_bytes += self.buf.len() as u64;
        Ok(())
    }

    /// Checks the numbers of a batch without keeping the bytes (while measuring).
    fn check_numbers(&mut self, arrays: &[ArrayRef], n: usize) -> Result<()> {
        let mut sink = std::mem::take(&mut self.buf);
        let result = (|| {
            for (j, col) in self.columns.iter().enumerate() {
                if let Kind::Num(kind) = col.kind {
                    if !can_fail(kind, col.length) {
                        continue;
                    }
                    if kind == Num::F64 && col.length == 8 {
                        // Only infinities and magnitudes of 2^252 or more fail: one scan finds whether any is here
                        // (null slots included; the exact check below skips them).
                        let v = arrays[j].as_primitive::<Float64Type>().values();
                        if !v.iter().any(|x| x.is_infinite() || x.abs() >= IBM_MAX) {
                            continue;
                        }
                    }
                    sink.clear();
                    sink.resize(n * col.length, 0);
                    put_numbers(
                        &mut sink,
                        col.length,
                        0,
                        col.length,
                        kind,
                        &arrays[j],
                        self.schema.field(j).name(),
                        self.rows,
                    )?;
                }
            }
            Ok(())
        })();
        self.buf = sink;
        result
    }

    /// Encodes `n` rows of `arrays` into `buf`; `first_row` is the number of rows before them (for error details).
    fn encode(&mut self, arrays: &[ArrayRef], n: usize, first_row: u64) -> Result<()> {
        let layout = Layout {
            columns: &self.columns,
            schema: &self.schema,
            obs_len: self.obs_len,
            encoding: self.options.encoding,
        };
        layout.encode(arrays, n, first_row, &mut self.buf, &mut self.scratch)
    }

    /// Writes the header when still due, the spooled rows, and the blank padding of the last record.
    ///
    /// # Errors
    /// EXP005 for I/O (the output or the spool file).
    pub fn finish(mut self) -> Result<EncodeSummary> {
        if let Some(spool) = self.spool.take() {
            self.lay_out();
            self.write_header()?;
            let rows = self.rows;
            self.rows = 0;
            match spool {
                Spool::Memory { batches, .. } => {
                    for b in batches {
                        self.replay(&b)?;
                    }
                }
                Spool::Disk { writer } => {
                    let read_err = |e: arrow::error::ArrowError| match e {
                        arrow::error::ArrowError::IoError(_, io) => {
                            Error::io("cannot read the XPT spool file", &io)
                        }
                        other => Error::from(other),
                    };
                    let buffered = writer.into_inner().map_err(read_err)?;
                    let mut f = buffered
                        .into_inner()
                        .map_err(|e| Error::io("cannot write the XPT spool file", e.error()))?;
                    f.rewind()
                        .map_err(|e| Error::io("cannot read the XPT spool file", &e))?;
                    let reader = StreamReader::try_new(BufReader::with_capacity(1 << 20, f), None)
                        .map_err(read_err)?;
                    for b in reader {
                        self.replay(&b.map_err(read_err)?)?;
                    }
                }
            }
            debug_assert_eq!(rows, self.rows);
            self.rows = rows;
        } else if !self.header_written {
            self.write_header()?;
        }
        while self.emit_next()? {}
        self.pipeline = None;
        let rem = (self.data_bytes % RECORD as u64) as usize;
        if rem != 0 {
            let pad = [b' '; RECORD];
            self.out
                .write_all(&pad[..RECORD - rem])
                .map_err(|e| Error::io("writing XPT", &e))?;
        }
        self.out.flush().map_err(|e| Error::io("writing XPT", &e))?;
        let measured: Vec<ColumnMeta> = self
            .columns
            .iter()
            .zip(self.schema.fields())
            .filter(|(c, _)| c.measured && matches!(c.kind, Kind::Char))
            .map(|(c, f)| ColumnMeta {
                name: f.name().clone(),
                length: Some(c.length as u32),
                ..ColumnMeta::default()
            })
            .collect();
        Ok(EncodeSummary {
            rows: self.rows,
            written: (!measured.is_empty()).then(|| DatasetMeta {
                columns: measured,
                ..DatasetMeta::default()
            }),
        })
    }

    /// Encodes and writes a spooled batch (already checked).
    fn replay(&mut self, batch: &RecordBatch) -> Result<()> {
        let arrays = Self::prepare(batch)?;
        let n = batch.num_rows();
        self.encode_chunks(&arrays, n)?;
        self.rows += n as u64;
        Ok(())
    }
}

/// What encoding observations needs, borrowed from the writer: one value is shared by the encoding threads.
#[derive(Clone, Copy)]
struct Layout<'a> {
    columns: &'a [Column],
    schema: &'a SchemaRef,
    obs_len: usize,
    encoding: XptEncoding,
}

impl Layout<'_> {
    /// Encodes `n` rows of `arrays` into `buf` (cleared first); `first_row` is the number of rows before them (for
    /// error details).
    fn encode(
        &self,
        arrays: &[ArrayRef],
        n: usize,
        first_row: u64,
        buf: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let l = self.obs_len;
        buf.clear();
        buf.resize(n * l, b' ');
        let enc = self.encoding;
        let direct = matches!(enc, XptEncoding::Ascii | XptEncoding::Utf8);
        for (j, col) in self.columns.iter().enumerate() {
            let arr = &arrays[j];
            match col.kind {
                Kind::Char => {
                    let view = StrView::new(arr)?;
                    let (pos, len) = (col.pos, col.length);
                    let rows = buf.chunks_exact_mut(l).take(n);
                    let scratch = &mut *scratch;
                    // Checked before: every value fits (a longer one is a violation, never cut).
                    let mut put = |row: &mut [u8], v: &[u8]| {
                        let v = if direct || v.is_ascii() {
                            v
                        } else {
                            scratch.clear();
                            // Valid UTF-8: it came from a string array.
                            enc.encode_into(std::str::from_utf8(v).unwrap_or(""), scratch);
                            &scratch[..]
                        };
                        let k = v.len().min(len);
                        copy_short(&mut row[pos..pos + k], &v[..k]);
                    };
                    match view {
                        StrView::Utf8(a) => put_strings(a, rows, &mut put),
                        StrView::Large(a) => put_strings(a, rows, &mut put),
                        StrView::View(a) => put_views(a, rows, &mut put),
                    }
                }
                Kind::Num(kind) => put_numbers(
                    buf,
                    l,
                    col.pos,
                    col.length,
                    kind,
                    arr,
                    self.schema.field(j).name(),
                    first_row,
                )?,
            }
        }
        Ok(())
    }
}

/// A slice of observations for an encoding thread, with the buffer to fill.
struct Job {
    arrays: Vec<ArrayRef>,
    rows: usize,
    first_row: u64,
    buf: Vec<u8>,
}

/// An encoding thread: its queue of jobs and of encoded buffers (in the order of its jobs).
struct Worker {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<(Result<()>, Vec<u8>)>,
    handle: Option<JoinHandle<()>>,
}

/// Encoding threads fed round-robin, so that taking each job's result from its thread in submission order gives
/// the observations in order: the bytes are those of one thread. At most [`Pipeline::depth`] jobs are in flight.
struct Pipeline {
    workers: Vec<Worker>,
    /// The thread of the next job.
    next: usize,
    /// The thread of each job in flight, oldest first.
    pending: VecDeque<usize>,
    /// Emptied buffers for the next jobs.
    free: Vec<Vec<u8>>,
}

impl Pipeline {
    /// Starts `threads` encoding threads over a copy of the layout.
    fn start(layout: Layout<'_>, threads: usize) -> Result<Pipeline> {
        let owned = Arc::new((
            layout.columns.to_vec(),
            layout.schema.clone(),
            layout.obs_len,
            layout.encoding,
        ));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (jobs, job_rx) = mpsc::sync_channel::<Job>(2);
            let (done_tx, done) = mpsc::channel();
            let owned = owned.clone();
            let handle = std::thread::Builder::new()
                .name("trialport-xpt".into())
                .spawn(move || {
                    let (columns, schema, obs_len, encoding) = &*owned;
                    let layout = Layout {
                        columns,
                        schema,
                        obs_len: *obs_len,
                        encoding: *encoding,
                    };
                    let mut scratch = Vec::new();
                    for mut job in job_rx {
                        let r = layout.encode(
                            &job.arrays,
                            job.rows,
                            job.first_row,
                            &mut job.buf,
                            &mut scratch,
                        );
                        drop(job.arrays);
                        if done_tx.send((r, job.buf)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::io("cannot start an XPT encoding thread", &e))?;
            workers.push(Worker {
                jobs: Some(jobs),
                done,
                handle: Some(handle),
            });
        }
        Ok(Pipeline {
            workers,
            next: 0,
            pending: VecDeque::new(),
            free: Vec::new(),
        })
    }

    /// The most jobs in flight.
    fn depth(&self) -> usize {
        2 * self.workers.len()
    }

    /// Hands a job to the next thread (the caller keeps fewer than [`Pipeline::depth`] in flight).
    fn submit(&mut self, arrays: Vec<ArrayRef>, rows: usize, first_row: u64) -> Result<()> {
        let buf = self.free.pop().unwrap_or_default();
        let w = self.next;
        let sent = self.workers[w].jobs.as_ref().is_some_and(|tx| {
            tx.send(Job {
                arrays,
                rows,
                first_row,
                buf,
            })
            .is_ok()
        });
        if !sent {
            return Err(thread_failed());
        }
        self.pending.push_back(w);
        self.next = (w + 1) % self.workers.len();
        Ok(())
    }

    /// Waits for the oldest job in flight: its encoded observations, or `None` when none is in flight.
    fn take(&mut self) -> Option<Result<Vec<u8>>> {
        let w = self.pending.pop_front()?;
        Some(match self.workers[w].done.recv() {
            Ok((Ok(()), buf)) => Ok(buf),
            Ok((Err(e), _)) => Err(e),
            Err(_) => Err(thread_failed()),
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Closing the job queues ends the threads once their current job is done.
        for w in &mut self.workers {
            w.jobs = None;
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

fn thread_failed() -> Error {
    Error::server(Reason::Internal, "an XPT encoding thread failed")
}

impl<W: Write + Send> Encoder for XptWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        XptWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        XptWriter::finish(*self)
    }
}

/// The size of the columns of `batches` that nothing but them holds: an array counts unless it has more owners
/// than the places it fills in `batches` (once, however many places it fills).
fn unshared_bytes(batches: &[RecordBatch]) -> usize {
    let mut places: std::collections::HashMap<*const (), (usize, &ArrayRef)> =
        std::collections::HashMap::new();
    for a in batches.iter().flat_map(RecordBatch::columns) {
        places
            .entry(Arc::as_ptr(a) as *const ())
            .or_insert((0, a))
            .0 += 1;
    }
    places
        .values()
        .filter(|(n, a)| Arc::strong_count(a) <= *n)
        .map(|(_, a)| a.get_array_memory_size())
        .sum()
}

/// Pads `h` with blanks to a whole record.
fn pad_record(h: &mut Vec<u8>) {
    let rem = h.len() % RECORD;
    if rem != 0 {
        h.resize(h.len() + RECORD - rem, b' ');
    }
}

/// Parses a display format or informat, recording a `display_format` violation when it cannot be stored.
fn parse_format(
    text: Option<&str>,
    column: &str,
    version: XptVersion,
    v: &mut Vec<Violation>,
) -> Option<SasFormat> {
    let text = text?.trim();
    if text.is_empty() {
        return None;
    }
    let limit = version.max_name();
    match SasFormat::parse(text) {
        Some(f) if f.name.len() <= limit => Some(f),
        _ => {
            v.push(Violation::new("display_format", Some(column)).limit(limit));
            None
        }
    }
}

/// A typed view of a text column.
enum StrView<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

/// Hands each non-null value of `a` with its observation to `put`, reading the offsets directly.
#[inline]
fn put_strings<'r, O: arrow::array::OffsetSizeTrait>(
    a: &arrow::array::GenericStringArray<O>,
    rows: impl Iterator<Item = &'r mut [u8]>,
    put: &mut impl FnMut(&mut [u8], &[u8]),
) {
    let offsets = a.value_offsets();
    let data = a.value_data();
    let nulls = a.nulls().filter(|n| n.null_count() > 0);
    for (i, row) in rows.enumerate() {
        if nulls.is_some_and(|n| n.is_null(i)) {
            continue;
        }
        let v = &data[offsets[i].as_usize()..offsets[i + 1].as_usize()];
        if !v.is_empty() {
            put(row, v);
        }
    }
}

/// The bytes of value `i` (view `view`) of a string view array whose views are `raw` as bytes: inline in the view
/// (up to 12 bytes) or in a data buffer (empty when the view points outside its buffers, which a valid array never
/// does).
#[inline(always)]
fn view_bytes<'a>(
    i: usize,
    view: u128,
    raw: &'a [u8],
    buffers: &'a [arrow::buffer::Buffer],
) -> &'a [u8] {
    let len = view as u32 as usize;
    if len <= 12 {
        // Each view is 16 bytes: 4 of length, then the bytes.
        let at = 16 * i + 4;
        raw.get(at..at + len).unwrap_or(&[])
    } else {
        let buffer = (view >> 64) as u32 as usize;
        let offset = (view >> 96) as u32 as usize;
        buffers
            .get(buffer)
            .and_then(|b| b.as_slice().get(offset..offset + len))
            .unwrap_or(&[])
    }
}

/// Hands each non-null, non-empty value of the string view array `a` with its observation to `put`, reading the
/// views directly (short values are inline in the view).
#[inline]
fn put_views<'r>(
    a: &StringViewArray,
    rows: impl Iterator<Item = &'r mut [u8]>,
    put: &mut impl FnMut(&mut [u8], &[u8]),
) {
    let views = a.views();
    let raw = views.inner().as_slice();
    let buffers = a.data_buffers();
    let nulls = a.nulls().filter(|n| n.null_count() > 0);
    for ((i, row), &view) in rows.enumerate().zip(views.iter()) {
        if nulls.is_some_and(|n| n.is_null(i)) {
            continue;
        }
        let v = view_bytes(i, view, raw, buffers);
        if !v.is_empty() {
            put(row, v);
        }
    }
}

/// The longest value in bytes of the string view array `a` when all its text is ASCII (checked only when
/// `check_ascii`), else `None`.
fn longest_ascii_view(a: &StringViewArray, check_ascii: bool) -> Option<usize> {
    const HIGH: u128 = 0x8080_8080_8080_8080_8080_8080_8080_8080;
    let views = a.views();
    let raw = views.inner().as_slice();
    let buffers = a.data_buffers();
    let nulls = a.nulls().filter(|n| n.null_count() > 0);
    let mut longest = 0;
    for (i, &view) in views.iter().enumerate() {
        if nulls.is_some_and(|n| n.is_null(i)) {
            continue;
        }
        let len = view as u32 as usize;
        if check_ascii {
            if len <= 12 {
                // The inline bytes, masked to the value's length, have no high bit set.
                let mask = HIGH & ((1u128 << (8 * len)) - 1);
                if (view >> 32) & mask != 0 {
                    return None;
                }
            } else if !view_bytes(i, view, raw, buffers).is_ascii() {
                return None;
            }
        }
        longest = longest.max(len);
    }
    Some(longest)
}

/// The longest value in bytes of `a` when all its text is ASCII, else `None`.
fn longest_ascii<O: arrow::array::OffsetSizeTrait>(
    a: &arrow::array::GenericStringArray<O>,
    check_ascii: bool,
) -> Option<usize> {
    let offsets = a.value_offsets();
    let (first, last) = (offsets[0].as_usize(), offsets[offsets.len() - 1].as_usize());
    if check_ascii && !a.value_data()[first..last].is_ascii() {
        return None;
    }
    let len = |w: &[O]| w[1].as_usize() - w[0].as_usize();
    Some(match a.nulls().filter(|n| n.null_count() > 0) {
        None => offsets.windows(2).map(len).max().unwrap_or(0),
        Some(nulls) => offsets
            .windows(2)
            .enumerate()
            .filter(|(i, _)| nulls.is_valid(*i))
            .map(|(_, w)| len(w))
            .max()
            .unwrap_or(0),
    })
}

impl<'a> StrView<'a> {
    /// The longest value in bytes when no value needs an encoding check (all ASCII, or UTF-8 chosen), else
    /// `None` (then every value is checked one by one).
    fn longest_if_plain(&self, enc: XptEncoding) -> Option<usize> {
        let check = enc != XptEncoding::Utf8;
        match self {
            StrView::Utf8(a) => longest_ascii(*a, check),
            StrView::Large(a) => longest_ascii(*a, check),
            StrView::View(a) => longest_ascii_view(a, check),
        }
    }

    fn new(a: &'a ArrayRef) -> Result<Self> {
        Ok(match a.data_type() {
            DataType::Utf8 => StrView::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => StrView::Large(a.as_string::<i64>()),
            DataType::Utf8View => StrView::View(a.as_string_view()),
            other => {
                return Err(Error::validation(
                    Reason::UnsupportedType,
                    format!("format 'xpt' cannot write text of type {other}"),
                ))
            }
        })
    }

    #[inline]
    fn is_null(&self, i: usize) -> bool {
        match self {
            StrView::Utf8(a) => a.is_null(i),
            StrView::Large(a) => a.is_null(i),
            StrView::View(a) => a.is_null(i),
        }
    }

    #[inline]
    fn value(&self, i: usize) -> &'a str {
        match self {
            StrView::Utf8(a) => a.value(i),
            StrView::Large(a) => a.value(i),
            StrView::View(a) => a.value(i),
        }
    }
}

/// Copies `src` into `dst` (of the same length): values of up to 16 bytes, most text cells, as two overlapping
/// fixed-size moves instead of a call to `memcpy`.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let k = src.len().min(dst.len());
    let (dst, src) = (&mut dst[..k], &src[..k]);
    if (8..=16).contains(&k) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[k - 8..].copy_from_slice(&src[k - 8..]);
    } else if (4..8).contains(&k) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[k - 4..].copy_from_slice(&src[k - 4..]);
    } else if k < 4 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// Why a number cannot be written.
const NOT_EXACT: &str = "an integer beyond 2^53 would lose digits as a SAS numeric";
const SHORT: &str =
    "a value does not fit the numeric's length exactly (trailing bytes are not zero)";
const NOT_WHOLE_DAY: &str = "a Date64 value is not a whole day";

/// Stores `x` in `dst` (1-8 bytes): the leading bytes of its IBM double, which must hold it exactly.
#[inline(always)]
fn store(dst: &mut [u8], x: Option<f64>) -> std::result::Result<(), &'static str> {
    let len = dst.len();
    match x {
        None => dst.copy_from_slice(&ibm::MISSING[..len]),
        Some(x) => {
            let b = ibm::to_ibm(x).map_err(ibm::IbmError::describe)?;
            if len < 8 && b[len..].iter().any(|&z| z != 0) {
                return Err(SHORT);
            }
            dst.copy_from_slice(&b[..len]);
        }
    }
    Ok(())
}

/// Writes the numbers of `arr` (kind `kind`) at `pos` of each `l`-byte observation of `buf`, `len` bytes each.
#[allow(clippy::too_many_arguments)]
fn put_numbers(
    buf: &mut [u8],
    l: usize,
    pos: usize,
    len: usize,
    kind: Num,
    arr: &ArrayRef,
    column: &str,
    row0: u64,
) -> Result<()> {
    let n = arr.len();
    let rows = buf.chunks_exact_mut(l).take(n);
    let fail = |i: usize, what: &'static str| unrepresentable(column, row0 + i as u64, what);
    macro_rules! each {
        ($ty:ty, $conv:expr) => {{
            let a = arr.as_primitive::<$ty>();
            let conv = $conv;
            let to_bytes = |i: usize, x| {
                conv(x)
                    .and_then(|v| ibm::to_ibm(v).map_err(ibm::IbmError::describe))
                    .map_err(|w| fail(i, w))
            };
            if len == 8 {
                // Full-length numerics (the usual case): eight bytes stored as one, no length test.
                if a.null_count() == 0 {
                    for (i, (row, &x)) in rows.zip(a.values().iter()).enumerate() {
                        row[pos..pos + 8].copy_from_slice(&to_bytes(i, x)?);
                    }
                } else {
                    for (i, (row, x)) in rows.zip(a.iter()).enumerate() {
                        let b = match x {
                            None => ibm::MISSING,
                            Some(x) => to_bytes(i, x)?,
                        };
                        row[pos..pos + 8].copy_from_slice(&b);
                    }
                }
            } else if a.null_count() == 0 {
                for (i, (row, &x)) in rows.zip(a.values().iter()).enumerate() {
                    conv(x)
                        .and_then(|v| store(&mut row[pos..pos + len], Some(v)))
                        .map_err(|w| fail(i, w))?;
                }
            } else {
                for (i, (row, x)) in rows.zip(a.iter()).enumerate() {
                    x.map(conv)
                        .transpose()
                        .and_then(|v| store(&mut row[pos..pos + len], v))
                        .map_err(|w| fail(i, w))?;
                }
            }
        }};
    }
    type R = std::result::Result<f64, &'static str>;
    match kind {
        Num::F64 => each!(Float64Type, |x: f64| -> R { Ok(x) }),
        Num::F32 => each!(Float32Type, |x: f32| -> R { Ok(f64::from(x)) }),
        Num::F16 => each!(
            Float16Type,
            |x: <Float16Type as ArrowPrimitiveType>::Native| -> R { Ok(x.to_f64()) }
        ),
        Num::I8 => each!(Int8Type, |x: i8| -> R { Ok(f64::from(x)) }),
        Num::I16 => each!(Int16Type, |x: i16| -> R { Ok(f64::from(x)) }),
        Num::I32 => each!(Int32Type, |x: i32| -> R { Ok(f64::from(x)) }),
        Num::U8 => each!(UInt8Type, |x: u8| -> R { Ok(f64::from(x)) }),
        Num::U16 => each!(UInt16Type, |x: u16| -> R { Ok(f64::from(x)) }),
        Num::U32 => each!(UInt32Type, |x: u32| -> R { Ok(f64::from(x)) }),
        Num::I64 => each!(Int64Type, exact_i64),
        Num::U64 => each!(UInt64Type, |x: u64| -> R {
            if x <= EXACT_INT {
                Ok(x as f64)
            } else {
                Err(NOT_EXACT)
            }
        }),
        Num::Date32 => each!(Date32Type, |x: i32| -> R {
            Ok(f64::from(x) + SAS_EPOCH_DAYS as f64)
        }),
        Num::Date64 => each!(Date64Type, |x: i64| -> R {
            if x % 86_400_000 != 0 {
                return Err(NOT_WHOLE_DAY);
            }
            exact_i64(x / 86_400_000 + SAS_EPOCH_DAYS)
        }),
        Num::Timestamp(TimeUnit::Second) => {
            each!(TimestampSecondType, |x: i64| -> R { seconds(x, 1, true) })
        }
        Num::Timestamp(TimeUnit::Millisecond) => {
            each!(TimestampMillisecondType, |x: i64| -> R {
                seconds(x, 1_000, true)
            })
        }
        Num::Timestamp(TimeUnit::Microsecond) => {
            each!(TimestampMicrosecondType, |x: i64| -> R {
                seconds(x, 1_000_000, true)
            })
        }
        Num::Timestamp(TimeUnit::Nanosecond) => {
            each!(TimestampNanosecondType, |x: i64| -> R {
                seconds(x, 1_000_000_000, true)
            })
        }
        Num::Time32(TimeUnit::Millisecond) => {
            each!(Time32MillisecondType, |x: i32| -> R {
                seconds(i64::from(x), 1_000, false)
            })
        }
        Num::Time32(_) => each!(Time32SecondType, |x: i32| -> R { Ok(f64::from(x)) }),
        Num::Time64(TimeUnit::Nanosecond) => {
            each!(Time64NanosecondType, |x: i64| -> R {
                seconds(x, 1_000_000_000, false)
            })
        }
        Num::Time64(_) => each!(Time64MicrosecondType, |x: i64| -> R {
            seconds(x, 1_000_000, false)
        }),
        Num::Bool => {
            let a: &BooleanArray = arr.as_boolean();
            for (i, (row, x)) in rows.zip(a.iter()).enumerate() {
                store(
                    &mut row[pos..pos + len],
                    x.map(|b| if b { 1.0 } else { 0.0 }),
                )
                .map_err(|w| fail(i, w))?;
            }
        }
        Num::Null => {
            for row in rows {
                row[pos..pos + len].copy_from_slice(&ibm::MISSING[..len]);
            }
        }
    }
    Ok(())
}

/// Whether writing a number of `kind` in `len` bytes can fail (only then must a spooled batch be checked).
fn can_fail(kind: Num, len: usize) -> bool {
    len < 8
        || !matches!(
            kind,
            Num::I8
                | Num::I16
                | Num::I32
                | Num::U8
                | Num::U16
                | Num::U32
                | Num::Bool
                | Num::Date32
                | Num::Null
        )
}

#[inline]
fn exact_i64(x: i64) -> std::result::Result<f64, &'static str> {
    if x.unsigned_abs() <= EXACT_INT {
        Ok(x as f64)
    } else {
        Err(NOT_EXACT)
    }
}

/// Seconds (since the SAS epoch when `epoch`, else since midnight) of a value counted in `1/per` seconds. Whole
/// seconds are exact; a fraction is the nearest double (about 0.24 microseconds apart for today's datetimes).
#[inline]
fn seconds(x: i64, per: i64, epoch: bool) -> std::result::Result<f64, &'static str> {
    let whole = x.div_euclid(per);
    let frac = x.rem_euclid(per);
    let whole = if epoch {
        whole.checked_add(SAS_EPOCH_SECONDS).ok_or(NOT_EXACT)?
    } else {
        whole
    };
    let w = exact_i64(whole)?;
    Ok(if frac == 0 {
        w
    } else {
        w + frac as f64 / per as f64
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};

    fn batches(schema: &SchemaRef) -> Vec<RecordBatch> {
        (0..5)
            .map(|k| {
                let names: Vec<String> = (0..1000).map(|i| "X".repeat((i * k) % 37)).collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from(names)),
                        Arc::new(Float64Array::from_iter_values((0..1000).map(f64::from))),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    fn encode(limit: usize) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("TEXT", DataType::Utf8, true),
            Field::new("N", DataType::Float64, true),
        ]));
        let meta = DatasetMeta {
            name: "T".into(),
            ..DatasetMeta::default()
        };
        let mut out = Vec::new();
        let mut w = XptWriter::try_new(&mut out, &schema, &meta, XptOptions::default()).unwrap();
        w.spool_limit = limit;
        for b in batches(&schema) {
            w.write(&b).unwrap();
        }
        assert_eq!(w.finish().unwrap().rows, 5000);
        out
    }

    #[test]
    fn the_disk_spool_writes_what_the_memory_spool_writes() {
        let memory = encode(usize::MAX);
        let disk = encode(0);
        assert_eq!(memory, disk);
        // TEXT is measured: 36 bytes, the longest value.
        let ns = &memory[8 * 80..8 * 80 + 140];
        assert_eq!(&ns[4..6], &36i16.to_be_bytes());
        assert_eq!(memory.len() % 80, 0);
    }

    /// A text column as `Utf8` and as `Utf8View` (inline and buffer-held values, nulls, empty strings), with a
    /// number column, as one batch.
    fn text_batch(view: bool, values: &[Option<&str>]) -> (SchemaRef, RecordBatch) {
        let t = if view {
            DataType::Utf8View
        } else {
            DataType::Utf8
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("TEXT", t, true),
            Field::new("N", DataType::Float64, true),
        ]));
        let text: ArrayRef = if view {
            Arc::new(StringViewArray::from(values.to_vec()))
        } else {
            Arc::new(StringArray::from(values.to_vec()))
        };
        let n = Float64Array::from_iter_values((0..values.len()).map(|i| i as f64 * 0.5));
        let batch = RecordBatch::try_new(schema.clone(), vec![text, Arc::new(n)]).unwrap();
        (schema, batch)
    }

    fn encode_batches(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        options: XptOptions,
    ) -> Result<Vec<u8>> {
        let meta = DatasetMeta {
            name: "T".into(),
            ..DatasetMeta::default()
        };
        let mut out = Vec::new();
        let mut w = XptWriter::try_new(&mut out, schema, &meta, options)?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
        Ok(out)
    }

    fn sample_text(rows: usize) -> Vec<Option<String>> {
        (0..rows)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(String::new()),
                2 => Some("ABCDEFGHIJKL".into()), // 12 bytes: the longest inline value
                3 => Some(format!("LONGER VALUE {i} IN A DATA BUFFER")),
                4 => Some(format!("S-{i}")),
                _ => Some("x".repeat(i % 40)),
            })
            .collect()
    }

    #[test]
    fn utf8_view_columns_write_the_bytes_of_utf8_columns() {
        let owned = sample_text(3000);
        let values: Vec<Option<&str>> = owned.iter().map(|v| v.as_deref()).collect();
        let (s1, plain) = text_batch(false, &values);
        let (s2, view) = text_batch(true, &values);
        let a = encode_batches(&s1, &[plain], XptOptions::default()).unwrap();
        let b = encode_batches(&s2, std::slice::from_ref(&view), XptOptions::default()).unwrap();
        assert_eq!(a, b);
        // Sliced views (offsets into the views buffer) too.
        let parts = [view.slice(0, 1234), view.slice(1234, 3000 - 1234)];
        assert_eq!(
            encode_batches(&s2, &parts, XptOptions::default()).unwrap(),
            a
        );
        // Measured length: the longest value.
        let longest = owned.iter().flatten().map(String::len).max().unwrap();
        assert_eq!(&b[8 * 80 + 4..8 * 80 + 6], &(longest as i16).to_be_bytes());
    }

    #[test]
    fn utf8_view_text_is_checked_like_utf8_text() {
        // Non-ASCII inline and in a buffer: a violation in ASCII (the default), bytes equal to Utf8's in latin1.
        for bad in ["café", "a much longer value with é in it"] {
            let values = [Some("ok"), Some(bad), None];
            let (s, view) = text_batch(true, &values);
            let e =
                encode_batches(&s, std::slice::from_ref(&view), XptOptions::default()).unwrap_err();
            assert_eq!(e.reason(), "fda_check_failed", "{bad}");
            let latin1 = XptOptions {
                encoding: XptEncoding::Latin1,
                ..XptOptions::default()
            };
            let (s1, plain) = text_batch(false, &values);
            assert_eq!(
                encode_batches(&s, &[view], latin1.clone()).unwrap(),
                encode_batches(&s1, &[plain], latin1).unwrap(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_large_batch_is_encoded_in_steps_with_the_same_bytes() {
        // Over CHUNK_BYTES of observations in one batch, with given lengths (straight through) and measured ones
        // (kept in memory: one batch raises the in-memory limit to its own size).
        let rows = CHUNK_BYTES / 40 * 3 + 17;
        let owned = sample_text(rows);
        let values: Vec<Option<&str>> = owned.iter().map(|v| v.as_deref()).collect();
        let (schema, batch) = text_batch(true, &values);
        let small: Vec<RecordBatch> = (0..rows)
            .step_by(1000)
            .map(|i| batch.slice(i, 1000.min(rows - i)))
            .collect();
        let one =
            encode_batches(&schema, std::slice::from_ref(&batch), XptOptions::default()).unwrap();
        assert_eq!(
            one,
            encode_batches(&schema, &small, XptOptions::default()).unwrap()
        );
        let meta = DatasetMeta {
            name: "T".into(),
            columns: vec![ColumnMeta {
                name: "TEXT".into(),
                length: Some(40),
                ..ColumnMeta::default()
            }],
            ..DatasetMeta::default()
        };
        let mut given = Vec::new();
        let mut w = XptWriter::try_new(&mut given, &schema, &meta, XptOptions::default()).unwrap();
        assert!(w.chunk_rows() < rows / 2);
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let mut given_small = Vec::new();
        let mut w =
            XptWriter::try_new(&mut given_small, &schema, &meta, XptOptions::default()).unwrap();
        for b in &small {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(given, given_small);
        // Measuring: one large batch stays in memory even over the limit; a second one goes to the spool file
        // (batches the producer does not keep: columns of their own, dropped after the write).
        let own = |b: &RecordBatch| {
            let columns = b
                .columns()
                .iter()
                .map(|a| arrow::array::make_array(a.to_data()))
                .collect();
            RecordBatch::try_new(b.schema(), columns).unwrap()
        };
        let mut out = Vec::new();
        let mut w =
            XptWriter::try_new(&mut out, &schema, &meta_named(), XptOptions::default()).unwrap();
        w.spool_limit = 1024;
        w.write(&own(&batch)).unwrap();
        assert!(matches!(w.spool, Some(Spool::Memory { .. })));
        w.write(&own(&batch.slice(0, 10))).unwrap();
        w.write(&own(&batch)).unwrap();
        assert!(matches!(w.spool, Some(Spool::Disk { .. })));
    }

    fn meta_named() -> DatasetMeta {
        DatasetMeta {
            name: "T".into(),
            ..DatasetMeta::default()
        }
    }

    #[test]
    fn a_bad_number_in_a_large_batch_writes_nothing_of_it() {
        let rows = CHUNK_BYTES / 8 * 2;
        let schema = Arc::new(Schema::new(vec![Field::new("N", DataType::Float64, true)]));
        let mut v: Vec<f64> = (0..rows).map(|i| i as f64).collect();
        v[rows - 3] = f64::INFINITY;
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(v))]).unwrap();
        let mut out = Vec::new();
        let mut w =
            XptWriter::try_new(&mut out, &schema, &meta_named(), XptOptions::default()).unwrap();
        let e = w.write(&batch).unwrap_err();
        assert_eq!(e.reason(), "unrepresentable_value");
        drop(w);
        assert!(out.is_empty());
    }

    /// A table with every kind of column the threads encode: three text types (nulls, empty, inline and
    /// buffer-held values), doubles with nulls and special missing values, a 4-byte numeric, integers with nulls,
    /// dates, booleans and a dictionary.
    fn mixed(rows: usize) -> (SchemaRef, RecordBatch) {
        use arrow::array::{BooleanArray, Date32Array, DictionaryArray, Int32Array};
        use arrow::datatypes::Int32Type as K;
        let short = Field::new("SHORT", DataType::Float64, true).with_metadata(
            [(KEY_NUMERIC_LENGTH.to_string(), "4".to_string())]
                .into_iter()
                .collect(),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("TEXT", DataType::Utf8, true),
            Field::new("VIEW", DataType::Utf8View, true),
            Field::new("LARGE", DataType::LargeUtf8, true),
            Field::new("N", DataType::Float64, true),
            short,
            Field::new("I", DataType::Int32, true),
            Field::new("D", DataType::Date32, true),
            Field::new("B", DataType::Boolean, true),
            Field::new(
                "DICT",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        let text = sample_text(rows);
        let values: Vec<Option<&str>> = text.iter().map(|v| v.as_deref()).collect();
        let n: Vec<Option<f64>> = (0..rows)
            .map(|i| match i % 11 {
                0 => None,
                1 => ibm::special_missing(b'A' + (i % 26) as u8),
                2 => ibm::special_missing(b'_'),
                3 => Some(f64::NAN),
                _ => Some((i as f64 - 500.0) * 0.37),
            })
            .collect();
        let dict: DictionaryArray<K> = (0..rows)
            .map(|i| (i % 5 != 0).then(|| ["LOW", "NORMAL", "HIGH"][i % 3]))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(values.clone())),
            Arc::new(StringViewArray::from(values.clone())),
            Arc::new(LargeStringArray::from(values)),
            Arc::new(Float64Array::from(n)),
            Arc::new(Float64Array::from_iter(
                (0..rows).map(|i| (i % 13 != 0).then_some((i % 1000) as f64)),
            )),
            Arc::new(Int32Array::from_iter(
                (0..rows).map(|i| (i % 9 != 0).then_some(i as i32 * 7 - 3000)),
            )),
            Arc::new(Date32Array::from_iter(
                (0..rows).map(|i| (i % 17 != 0).then_some(i as i32 - 4000)),
            )),
            Arc::new(BooleanArray::from_iter(
                (0..rows).map(|i| (i % 4 != 0).then_some(i % 3 == 0)),
            )),
            Arc::new(dict),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        (schema, batch)
    }

    /// Encodes `parts` with `threads` threads, `chunk_bytes` of observations per step, the threads starting at
    /// the first batch (when more than one).
    fn encode_with(
        schema: &SchemaRef,
        meta: &DatasetMeta,
        parts: &[RecordBatch],
        threads: usize,
        chunk_bytes: usize,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = XptWriter::try_new(&mut out, schema, meta, XptOptions::default())
            .unwrap()
            .with_threads(threads);
        w.chunk_bytes = chunk_bytes;
        w.parallel_min = 0;
        for b in parts {
            w.write(b).unwrap();
        }
        // With given lengths the threads start at the first batch; measured ones are encoded at `finish`.
        assert!(threads == 1 || meta.columns.is_empty() || w.pipeline.is_some());
        w.finish().unwrap();
        out
    }

    #[test]
    fn threads_write_the_bytes_of_one_thread() {
        let rows = 5000;
        let (schema, batch) = mixed(rows);
        let cut = |sizes: &[usize]| -> Vec<RecordBatch> {
            let mut at = 0;
            let mut parts = Vec::new();
            for &k in sizes.iter().cycle() {
                if at >= rows {
                    break;
                }
                let k = k.min(rows - at);
                parts.push(batch.slice(at, k));
                at += k;
            }
            parts
        };
        let shapes: Vec<Vec<RecordBatch>> = vec![
            vec![batch.clone()],
            cut(&[1000]),
            cut(&[1, 7, 333, 0, 2048]),
            cut(&[4999, 1]),
        ];
        let given = DatasetMeta {
            name: "T".into(),
            columns: ["TEXT", "VIEW", "LARGE", "DICT"]
                .iter()
                .map(|c| ColumnMeta {
                    name: c.to_string(),
                    length: Some(45),
                    ..ColumnMeta::default()
                })
                .collect(),
            ..DatasetMeta::default()
        };
        // Measured lengths (batches kept, encoded at finish) and given ones (encoded as they come).
        for meta in [meta_named(), given] {
            let expected = encode_with(&schema, &meta, &shapes[0], 1, CHUNK_BYTES);
            for parts in &shapes {
                assert_eq!(
                    encode_with(&schema, &meta, parts, 1, 1000),
                    expected,
                    "one thread, small steps"
                );
                for threads in [2, 3] {
                    for chunk in [1, 97 * 3, 4096, CHUNK_BYTES] {
                        assert_eq!(
                            encode_with(&schema, &meta, parts, threads, chunk),
                            expected,
                            "{threads} threads, {chunk} bytes a step, {} batches",
                            parts.len()
                        );
                    }
                }
            }
        }
        // The independent check of the values: what the decoder reads back equals the input.
        let bytes = encode_with(&schema, &meta_named(), &shapes[2], 2, 4096);
        assert_eq!(bytes.len() % 80, 0);
        let n = batch.column(3).as_primitive::<Float64Type>();
        let read = crate::xpt::read_xpt_from(
            std::io::Cursor::new(bytes),
            &crate::xpt::XptReadOptions::default(),
        )
        .unwrap();
        let schema_back = read.schema().clone();
        let back = arrow::compute::concat_batches(&schema_back, &read.collect().unwrap()).unwrap();
        assert_eq!(back.num_rows(), rows);
        let m = back.column(3).as_primitive::<Float64Type>();
        for i in 0..rows {
            let (a, b) = (
                n.is_valid(i).then(|| n.value(i)),
                m.is_valid(i).then(|| m.value(i)),
            );
            match (a.map(ibm::missing_tag), b.map(ibm::missing_tag)) {
                (Some(Some(x)), Some(Some(y))) => assert_eq!(x, y, "row {i}"),
                _ => assert_eq!(
                    a.filter(|x| !x.is_nan()),
                    b.filter(|x| !x.is_nan()),
                    "row {i}"
                ),
            }
        }
    }

    #[test]
    fn a_bad_number_on_the_threads_writes_nothing_of_its_batch() {
        let (schema, batch) = mixed(3000);
        let mut v: Vec<Option<f64>> = (0..3000).map(|i| Some(i as f64)).collect();
        v[2500] = Some(f64::INFINITY);
        let mut columns = batch.columns().to_vec();
        columns[3] = Arc::new(Float64Array::from(v));
        let bad = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let meta = DatasetMeta {
            name: "T".into(),
            columns: ["TEXT", "VIEW", "LARGE", "DICT"]
                .iter()
                .map(|c| ColumnMeta {
                    name: c.to_string(),
                    length: Some(45),
                    ..ColumnMeta::default()
                })
                .collect(),
            ..DatasetMeta::default()
        };
        let mut out = Vec::new();
        let mut w = XptWriter::try_new(&mut out, &schema, &meta, XptOptions::default())
            .unwrap()
            .with_threads(2);
        w.chunk_bytes = 4096;
        w.parallel_min = 0;
        w.write(&batch).unwrap();
        let e = w.write(&bad).unwrap_err();
        assert_eq!(e.reason(), "unrepresentable_value");
        assert_eq!(e.details().get("row").and_then(|r| r.as_u64()), Some(5500));
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let good = encode_with(&schema, &meta, &[batch.clone(), batch], 1, CHUNK_BYTES);
        assert_eq!(out, good);
    }

    #[test]
    fn batches_the_producer_holds_stay_in_memory_past_the_limit() {
        // No dictionary column: decoded, it would be the encoder's own.
        let (schema, batch) = mixed(2000);
        let schema = Arc::new(Schema::new(schema.fields()[..8].to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), batch.columns()[..8].to_vec()).unwrap();
        let expected = encode_with(
            &schema,
            &meta_named(),
            std::slice::from_ref(&batch),
            1,
            CHUNK_BYTES,
        );
        let held: Vec<RecordBatch> = (0..2000)
            .step_by(200)
            .map(|i| {
                // Columns of their own (not slices of one shared array), held here.
                let columns = batch.columns().iter().map(|a| a.slice(i, 200)).collect();
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect();
        let mut out = Vec::new();
        let mut w =
            XptWriter::try_new(&mut out, &schema, &meta_named(), XptOptions::default()).unwrap();
        w.spool_limit = 1024;
        for b in &held {
            w.write(b).unwrap();
        }
        assert!(matches!(w.spool, Some(Spool::Memory { .. })));
        w.finish().unwrap();
        assert_eq!(out, expected);
        // Batches dropped by the producer count: once the kept ones have doubled, they go to the spool file.
        let mut out = Vec::new();
        let mut w =
            XptWriter::try_new(&mut out, &schema, &meta_named(), XptOptions::default()).unwrap();
        w.spool_limit = 1024;
        for b in &held {
            let columns: Vec<ArrayRef> = b
                .columns()
                .iter()
                .map(|a| arrow::array::make_array(a.to_data()))
                .collect();
            w.write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
                .unwrap();
        }
        assert!(matches!(w.spool, Some(Spool::Disk { .. })));
        w.finish().unwrap();
        assert_eq!(out, expected);
    }
}
