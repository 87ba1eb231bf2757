//! Encoding one dataset selection (or a part of its rows) through a format into an artifact of the attempt,
//! with its row count checked against the source.

use super::attempt::{Counting, Running, Stop};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::format::{Format, FormatOptions};
use crate::meta::DatasetMeta;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::io::Write;

/// What encoding one dataset wrote.
pub(super) struct Encoded {
    /// Rows written.
    pub(super) rows: u64,
    /// Rows the source yielded.
    pub(super) source_rows: u64,
    /// The dataset's schema, with its metadata.
    pub(super) schema: SchemaRef,
    /// The dataset's metadata.
    pub(super) meta: DatasetMeta,
}

/// A slice of a dataset's rows written as a dataset of its own (a part of a split dataset).
pub(super) struct Part {
    /// Rows of the source to skip.
    pub(super) skip: u64,
    /// Rows to write after them.
    pub(super) take: u64,
    /// The name of the part's dataset, e.g. `LB1`.
    pub(super) name: String,
}

/// Encodes one dataset selection into `out`.
pub(super) fn encode_dataset(
    run: &mut Running<'_>,
    format: &dyn Format,
    study: &str,
    sel: &crate::request::DatasetSelection,
    options: &FormatOptions,
    out: &mut (dyn Write + Send),
) -> Result<Encoded, Stop> {
    encode_part(run, format, study, sel, options, out, None)
}

/// Encodes one dataset selection, or the `part` of its rows, into `out`.
pub(super) fn encode_part(
    run: &mut Running<'_>,
    format: &dyn Format,
    study: &str,
    sel: &crate::request::DatasetSelection,
    options: &FormatOptions,
    out: &mut (dyn Write + Send),
    part: Option<&Part>,
) -> Result<Encoded, Stop> {
    let inner = run.inner;
    let stream = inner.scan(study, sel.name(), sel.columns(), sel.filters())?;
    let mut schema = stream.schema().clone();
    let mut meta = stream.meta();
    let deid = match &run.deid {
        Some(d) => Some(d.dataset(sel.name(), &schema, &meta)?),
        None => None,
    };
    if let Some(t) = &deid {
        schema = t.schema().clone();
        meta = t.meta().clone();
    }
    if let Some(p) = part {
        meta.name = p.name.clone();
        schema = meta.apply_to(&schema)?;
    }
    let (skip, take) = part.map_or((0, u64::MAX), |p| (p.skip, p.take));
    let mut counted = Counting {
        inner: out,
        bytes: run.bytes.clone(),
    };
    // A document that states its creation time (an XPT header, Dataset-JSON's datasetJSONCreationDateTime) states
    // the job's, from the engine's clock, unless the request sets it.
    let options = options.created_by_default(&format.info(), run.job.created_at);
    let mut encoder = format.encoder(&schema, &meta, &options, &mut counted)?;
    let mut seen = 0u64;
    let mut source_rows = 0u64;
    for batch in stream {
        run.check()?;
        let batch = batch?;
        let n = batch.num_rows() as u64;
        let (from, to) = (seen.max(skip), (seen + n).min(skip.saturating_add(take)));
        seen += n;
        if from >= to {
            if seen >= skip.saturating_add(take) {
                break;
            }
            continue;
        }
        let slice = if from == seen - n && to == seen {
            batch
        } else {
            batch.slice((from - (seen - n)) as usize, (to - from) as usize)
        };
        let slice = match &deid {
            Some(t) => t.apply(&slice)?,
            None => slice,
        };
        // A part carries its own name in the schema; whole datasets keep their batches as the source made them.
        let slice = if part.is_some() {
            RecordBatch::try_new(schema.clone(), slice.columns().to_vec()).map_err(|e| {
                Error::server(
                    Reason::SchemaMismatch,
                    format!("a batch does not fit the dataset's schema: {e}"),
                )
            })?
        } else {
            slice
        };
        source_rows += to - from;
        encoder.write(&slice)?;
        run.add_rows(to - from);
    }
    run.check()?;
    let summary = encoder.finish()?;
    if summary.rows != source_rows {
        return Err(Error::server(
            Reason::RowCountMismatch,
            "the rows written differ from the rows the source yielded",
        )
        .with_detail("written", summary.rows)
        .with_detail("source", source_rows)
        .into());
    }
    // What the file says of itself (e.g. measured character lengths) is what a define must describe.
    let (schema, meta) = match &summary.written {
        Some(written) => {
            let meta = meta.merged_with(written);
            (meta.apply_to(&schema)?, meta)
        }
        None => (schema, meta),
    };
    Ok(Encoded {
        rows: summary.rows,
        source_rows,
        schema,
        meta,
    })
}
