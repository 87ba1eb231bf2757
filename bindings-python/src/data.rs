//! Translation of arguments: Arrow streams in and out, JSON text to and from core types.
//!
//! The Python layer sends requests, metadata and options as JSON text and receives results as JSON text; the core's
//! serde types and parsers do all validation.

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use serde::de::DeserializeOwned;
use serde::Serialize;
use trialport_core::error::Reason;
use trialport_core::format::FormatOptions;
use trialport_core::meta::DatasetMeta;
use trialport_core::source::BatchStream;
use trialport_core::{Error, Result};
use uuid::Uuid;

/// A core batch stream over an Arrow reader imported from Python (zero copies: buffers stay the producer's).
pub(crate) fn stream(reader: Box<dyn RecordBatchReader + Send>) -> BatchStream {
    let schema = reader.schema();
    BatchStream::new(schema, reader.map(|b| b.map_err(Error::from)))
}

/// An Arrow reader over a core batch stream, for export to Python; a core error surfaces as an external error
/// whose text is the error's display (code, reason, message).
pub(crate) struct Reader {
    schema: SchemaRef,
    stream: BatchStream,
}

impl Reader {
    /// Wraps `stream`.
    pub(crate) fn new(stream: BatchStream) -> Self {
        Reader {
            schema: stream.schema().clone(),
            stream,
        }
    }
}

impl Iterator for Reader {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.stream
            .next()
            .map(|b| b.map_err(|e| ArrowError::ExternalError(Box::new(e))))
    }
}

impl RecordBatchReader for Reader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The dataset metadata document given as `columns=` (with `dataset=` and `label=`), parsed by the core.
///
/// # Errors
/// EXP002 `invalid_metadata` with field `columns`.
pub(crate) fn meta(json: Option<&str>) -> Result<DatasetMeta> {
    match json {
        Some(text) => DatasetMeta::from_json(text).map_err(|e| e.with_field("columns")),
        None => Ok(DatasetMeta::default()),
    }
}

/// Format options as a JSON object of strings.
///
/// # Errors
/// EXP002 `invalid_request` with field `options`.
pub(crate) fn options(json: Option<&str>) -> Result<FormatOptions> {
    match json {
        Some(text) => parse(text).map_err(|e| e.with_field("options")),
        None => Ok(FormatOptions::new()),
    }
}

/// A request of the engine from its JSON text, with the core's serde types ([`trialport_core::request::from_json`]).
///
/// # Errors
/// EXP002 `invalid_request`; the message names an unknown or missing field, never a value.
pub(crate) fn parse<T: DeserializeOwned>(text: &str) -> Result<T> {
    trialport_core::request::from_json(text)
}

/// JSON text of a result.
///
/// # Errors
/// EXP005 `internal` when it cannot be serialized (not expected).
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|_| Error::server(Reason::Internal, "a result could not be serialized"))
}

/// A job id ([`trialport_core::request::job_id`]); text that is no UUID names no job.
///
/// # Errors
/// EXP001 with field `job_id`.
pub(crate) fn job_id(text: &str) -> Result<Uuid> {
    trialport_core::request::job_id(text)
}

/// A timeout in seconds (as in the CLI).
///
/// # Errors
/// EXP002 `out_of_range` with field `timeout` for a negative or non-finite number.
pub(crate) fn timeout(seconds: Option<f64>) -> Result<Option<std::time::Duration>> {
    seconds
        .map(|s| {
            std::time::Duration::try_from_secs_f64(s).map_err(|_| {
                Error::validation(
                    Reason::OutOfRange,
                    "timeout must be a number of seconds, 0 or more",
                )
                .with_field("timeout")
            })
        })
        .transpose()
}

/// Maps a failed read of a verified download to its error ([`trialport_formats::convert::download_error`]).
pub(crate) fn download_error(e: &std::io::Error) -> Error {
    trialport_formats::convert::download_error(e)
}
