//! Arrow IPC file format (`.arrow`, also read as `.ipc` and `.feather`) through `arrow::ipc::writer::FileWriter`.
//!
//! The schema, with its `trialport.*` metadata, is stored as is; arrow-rs writes metadata keys in sorted order,
//! so the output is deterministic.

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use std::io::Write;
use trialport_core::format::{
    Capability, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, Output,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

/// Arrow IPC file format, id `arrow-ipc`. It has no options.
#[derive(Debug, Clone)]
pub struct ArrowIpcFormat;

impl Format for ArrowIpcFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "arrow-ipc",
            name: "Apache Arrow IPC file",
            extension: "arrow",
            media_type: "application/vnd.apache.arrow.file",
            capabilities: vec![Capability::Data, Capability::Streaming, Capability::Read],
            options: vec![],
        }
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        self.check_options(options)?;
        Ok(Box::new(IpcWriter::try_new(out, schema, meta)?))
    }
}

/// A streaming Arrow IPC file writer.
pub struct IpcWriter<W: Write> {
    inner: FileWriter<W>,
    schema: SchemaRef,
    rows: u64,
}

impl<W: Write> std::fmt::Debug for IpcWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcWriter")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<W: Write> IpcWriter<W> {
    /// Writes the file header and schema; `meta` is layered over the schema's metadata.
    ///
    /// # Errors
    /// EXP002 for metadata naming an unknown column or a schema IPC cannot encode; EXP005 for I/O.
    pub fn try_new(out: W, schema: &SchemaRef, meta: &DatasetMeta) -> Result<Self> {
        let merged = DatasetMeta::from_schema(schema).merged_with(meta);
        let with_meta = merged.apply_to(schema)?;
        let inner = FileWriter::try_new(out, &with_meta)?;
        Ok(IpcWriter {
            inner,
            schema: with_meta,
            rows: 0,
        })
    }

    /// Encodes one batch.
    ///
    /// # Errors
    /// EXP002 `schema_mismatch` for a batch of another schema; EXP005 for I/O.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        crate::csv::cell::check_batch(&self.schema, batch)?;
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        self.inner.write(&batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes the footer, flushes and reports the rows written.
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn finish(mut self) -> Result<EncodeSummary> {
        self.inner.finish()?;
        let mut out = self.inner.into_inner()?;
        out.flush()
            .map_err(|e| Error::io("writing Arrow IPC", &e))?;
        Ok(EncodeSummary::rows(self.rows))
    }
}

impl<W: Write + Send> Encoder for IpcWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        IpcWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        IpcWriter::finish(*self)
    }
}
