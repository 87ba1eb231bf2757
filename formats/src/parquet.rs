//! Apache Parquet through the parquet crate's Arrow column writers, encoding columns in parallel.
//!
//! The Arrow schema is stored in the file (as the `ARROW:schema` key), so field metadata under `trialport.*` keys
//! survives a round trip; the dataset name and label are also written as plain key-value metadata
//! (`trialport.dataset`, `trialport.label`) for readers that do not decode the Arrow schema. The output is
//! deterministic: no timestamps, and metadata keys in sorted order.

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use std::io::Write;
use std::sync::Arc;
use trialport_core::error::Reason;
use trialport_core::format::{
    Capability, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, OptionInfo, Output,
};
use trialport_core::meta::{DatasetMeta, KEY_DATASET, KEY_LABEL};
use trialport_core::{Error, Result};

/// Rows per row group unless `row_group_size` says otherwise (the parquet crate's default).
pub const DEFAULT_ROW_GROUP_SIZE: usize = 1024 * 1024;

/// zstd level of `compression=zstd`: level 1 compresses about as well as pyarrow's default and faster.
pub const ZSTD_LEVEL: i32 = 1;

/// Apache Parquet, id `parquet`.
#[derive(Debug, Clone)]
pub struct ParquetFormat;

const OPTIONS: &[OptionInfo] = &[
    OptionInfo::one_of(
        "compression",
        "zstd",
        "page compression (zstd at level 1)",
        &["zstd", "snappy", "none"],
    ),
    OptionInfo::new(
        "row_group_size",
        "1048576",
        "most rows per row group (1 to 1073741824); a row group is buffered in memory while written",
    ),
];

impl Format for ParquetFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "parquet",
            name: "Apache Parquet",
            extension: "parquet",
            media_type: "application/vnd.apache.parquet",
            capabilities: vec![Capability::Data, Capability::Streaming, Capability::Read],
            options: OPTIONS.to_vec(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        ParquetOptions::from_format_options(options).map(|_| ())
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let options = ParquetOptions::from_format_options(options)?;
        Ok(Box::new(ParquetWriter::try_new(
            out, schema, meta, options,
        )?))
    }
}

/// Page compression of Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetCompression {
    /// zstd at level [`ZSTD_LEVEL`] (the default).
    #[default]
    Zstd,
    /// Snappy.
    Snappy,
    /// No compression.
    None,
}

/// The typed options of Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetOptions {
    /// Page compression. Defaults to [`ParquetCompression::Zstd`].
    pub compression: ParquetCompression,
    /// Most rows per row group. Defaults to [`DEFAULT_ROW_GROUP_SIZE`] (1,048,576).
    pub row_group_size: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: ParquetCompression::Zstd,
            row_group_size: DEFAULT_ROW_GROUP_SIZE,
        }
    }
}

impl ParquetOptions {
    /// Parses the string options: the one place they are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn from_format_options(options: &FormatOptions) -> Result<Self> {
        options.check_known("parquet", OPTIONS)?;
        Ok(ParquetOptions {
            compression: match options.get("compression") {
                Some("snappy") => ParquetCompression::Snappy,
                Some("none") => ParquetCompression::None,
                _ => ParquetCompression::Zstd,
            },
            row_group_size: options.usize_in(
                "row_group_size",
                DEFAULT_ROW_GROUP_SIZE,
                1..=1 << 30,
            )?,
        })
    }

    fn properties(&self, key_values: Vec<KeyValue>) -> Result<WriterProperties> {
        let compression = match self.compression {
            ParquetCompression::Zstd => Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL)
                    .map_err(|_| Error::server(Reason::Internal, "zstd level out of range"))?,
            ),
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::None => Compression::UNCOMPRESSED,
        };
        Ok(WriterProperties::builder()
            .set_compression(compression)
            .set_key_value_metadata(Some(key_values))
            .build())
    }
}

/// Rejects a schema with a column Parquet cannot store, naming the first.
fn check_schema(schema: &Schema) -> Result<()> {
    let converter = ArrowSchemaConverter::new();
    for f in schema.fields() {
        let single = Schema::new(vec![f.clone()]);
        if converter.convert(&single).is_err() {
            return Err(Error::validation(
                Reason::UnsupportedType,
                format!(
                    "format 'parquet' cannot write column '{}' of type {}",
                    f.name(),
                    f.data_type()
                ),
            )
            .with_field(f.name().clone()));
        }
    }
    Ok(())
}

fn parquet_error(e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => Error::io("writing Parquet", &io),
                Err(_) => Error::server(Reason::WriteFailed, "writing Parquet failed"),
            }
        }
        parquet::errors::ParquetError::ArrowError(_) => {
            Error::validation(Reason::InvalidData, "data cannot be written as Parquet")
        }
        _ => Error::server(Reason::WriteFailed, "writing Parquet failed"),
    }
}

/// Batches shorter than this are encoded on the calling thread only: a thread costs more than it saves.
const PARALLEL_MIN_ROWS: usize = 1024;

/// A streaming Parquet writer: memory is bounded by one row group.
///
/// Columns are encoded in parallel (parquet's `ArrowColumnWriter`s, one task per column, on up to
/// [`ParquetWriter::threads`] scoped threads per batch) and their chunks appended in column order, so the bytes
/// are the same whatever the thread count.
pub struct ParquetWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The column writers of the row group in progress, grouped by field (a nested field has several leaves).
    writers: Option<Vec<Vec<ArrowColumnWriter>>>,
    /// Leaves per field.
    leaves: Vec<usize>,
    row_group_size: usize,
    rows_in_group: usize,
    row_groups: usize,
    threads: usize,
    rows: u64,
}

impl<W: Write + Send> std::fmt::Debug for ParquetWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetWriter")
            .field("rows", &self.rows)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// One column's share of a batch: its writers and its array.
struct Task<'w> {
    field: arrow::datatypes::FieldRef,
    array: arrow::array::ArrayRef,
    writers: &'w mut Vec<ArrowColumnWriter>,
}

impl Task<'_> {
    fn run(self) -> parquet::errors::Result<()> {
        let leaves = compute_leaves(&self.field, &self.array)?;
        for (leaf, writer) in leaves.iter().zip(self.writers.iter_mut()) {
            writer.write(leaf)?;
        }
        Ok(())
    }
}

/// Runs `jobs` on up to `threads` threads (the caller's included), each taking the next job until none is left.
fn run_parallel<J: Send>(
    jobs: Vec<J>,
    threads: usize,
    run: impl Fn(J) -> Result<()> + Sync,
) -> Result<()> {
    let threads = threads.min(jobs.len());
    if threads <= 1 {
        return jobs.into_iter().try_for_each(run);
    }
    let queue: Vec<std::sync::Mutex<Option<J>>> = jobs
        .into_iter()
        .map(|j| std::sync::Mutex::new(Some(j)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_error: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(slot) = queue.get(i) else { break };
        let job = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(job) = job {
            if let Err(e) = run(job) {
                let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(e);
                break;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl<W: Write + Send> ParquetWriter<W> {
    /// Validates the schema, then writes the file header. `meta` is layered over the schema's metadata.
    ///
    /// # Errors
    /// EXP002 `unsupported_type` (field = the column) for a column Parquet cannot store, or metadata naming an
    /// unknown column; EXP005 for I/O.
    pub fn try_new(
        out: W,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: ParquetOptions,
    ) -> Result<Self> {
        check_schema(schema)?;
        let merged = DatasetMeta::from_schema(schema).merged_with(meta);
        let with_meta = merged.apply_to(schema)?;
        let mut key_values = Vec::new();
        if !merged.name.is_empty() {
            key_values.push(KeyValue::new(KEY_DATASET.to_string(), merged.name.clone()));
        }
        if let Some(label) = &merged.label {
            key_values.push(KeyValue::new(KEY_LABEL.to_string(), label.clone()));
        }
        let mut props = options.properties(key_values)?;
        let parquet_schema = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&with_meta)
            .map_err(parquet_error)?;
        // The Arrow schema (with the field metadata) is stored as `ARROW:schema`, as ArrowWriter does.
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&with_meta, &mut props);
        let file =
            SerializedFileWriter::new(out, parquet_schema.root_schema_ptr(), Arc::new(props))
                .map_err(parquet_error)?;
        let factory = ArrowRowGroupWriterFactory::new(&file, with_meta.clone());
        // Leaves per field, as parquet itself splits the field (a struct or list may have several).
        let leaves = with_meta
            .fields()
            .iter()
            .map(|f| {
                compute_leaves(f, &arrow::array::new_empty_array(f.data_type())).map(|l| l.len())
            })
            .collect::<parquet::errors::Result<Vec<_>>>()
            .map_err(parquet_error)?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_THREADS);
        Ok(ParquetWriter {
            file,
            factory,
            schema: with_meta,
            writers: None,
            leaves,
            row_group_size: options.row_group_size,
            rows_in_group: 0,
            row_groups: 0,
            threads,
            rows: 0,
        })
    }

    /// Sets the most threads that encode columns at once (at least 1). Defaults to the available parallelism,
    /// at most 4.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The most threads that encode columns at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Encodes one batch (buffered until a row group is full).
    ///
    /// # Errors
    /// EXP002 `schema_mismatch` for a batch of another schema; EXP005 for I/O.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        crate::csv::cell::check_batch(&self.schema, batch)?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let n = (self.row_group_size - self.rows_in_group).min(batch.num_rows() - offset);
            self.write_piece(&batch.slice(offset, n))?;
            offset += n;
            if self.rows_in_group == self.row_group_size {
                self.flush_row_group()?;
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn write_piece(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.writers.is_none() {
            let flat = self
                .factory
                .create_column_writers(self.row_groups)
                .map_err(parquet_error)?;
            let mut flat = flat.into_iter();
            self.writers = Some(
                self.leaves
                    .iter()
                    .map(|&n| flat.by_ref().take(n).collect())
                    .collect(),
            );
        }
        let Some(writers) = self.writers.as_mut() else {
            return Ok(());
        };
        let tasks: Vec<Task<'_>> = writers
            .iter_mut()
            .zip(self.schema.fields())
            .zip(batch.columns())
            .map(|((writers, field), array)| Task {
                field: field.clone(),
                array: array.clone(),
                writers,
            })
            .collect();
        let threads = if batch.num_rows() >= PARALLEL_MIN_ROWS {
            self.threads
        } else {
            1
        };
        run_parallel(tasks, threads, |t| t.run().map_err(parquet_error))?;
        self.rows_in_group += batch.num_rows();
        Ok(())
    }

    /// Closes the column writers of the row group in progress (in parallel) and appends their chunks in order.
    fn flush_row_group(&mut self) -> Result<()> {
        let Some(writers) = self.writers.take() else {
            return Ok(());
        };
        let slots: Vec<std::sync::Mutex<Option<ArrowColumnChunk>>> = writers
            .iter()
            .flatten()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        let jobs: Vec<(
            ArrowColumnWriter,
            &std::sync::Mutex<Option<ArrowColumnChunk>>,
        )> = writers.into_iter().flatten().zip(slots.iter()).collect();
        run_parallel(jobs, self.threads, |(w, slot)| {
            let chunk = w.close().map_err(parquet_error)?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(chunk);
            Ok(())
        })?;
        let mut row_group = self.file.next_row_group().map_err(parquet_error)?;
        for slot in slots {
            if let Some(chunk) = slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                chunk
                    .append_to_row_group(&mut row_group)
                    .map_err(parquet_error)?;
            }
        }
        row_group.close().map_err(parquet_error)?;
        self.row_groups += 1;
        self.rows_in_group = 0;
        Ok(())
    }

    /// Writes the last row group and the footer, flushes and reports the rows written.
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn finish(mut self) -> Result<EncodeSummary> {
        self.flush_row_group()?;
        let mut out = self.file.into_inner().map_err(parquet_error)?;
        out.flush().map_err(|e| Error::io("writing Parquet", &e))?;
        Ok(EncodeSummary::rows(self.rows))
    }
}

/// Most threads a Parquet writer uses.
const MAX_THREADS: usize = 4;

impl<W: Write + Send> Encoder for ParquetWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        ParquetWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        ParquetWriter::finish(*self)
    }
}
