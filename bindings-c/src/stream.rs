//! Importing a `struct ArrowArrayStream` (the Arrow C stream interface) as a core [`BatchStream`].
//!
//! arrow's own reader unwraps the producer's callbacks and error text, so a stream without `get_next`, or one that
//! fails without a message, would panic inside it; this reader checks every callback, validates every array it
//! imports, and reports a producer's failure without quoting its text (which may hold data values).

use arrow::array::StructArray;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::ffi::{from_ffi_and_data_type, FFI_ArrowArray, FFI_ArrowSchema};
use arrow::ffi_stream::FFI_ArrowArrayStream;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use std::ffi::c_int;
use std::sync::Arc;
use trialport_core::error::Reason;
use trialport_core::source::BatchStream;
use trialport_core::{Error, Result};

/// `struct ArrowArrayStream` of the Arrow C stream interface, as the header declares it.
pub type ArrowArrayStream = FFI_ArrowArrayStream;

type GetNext = unsafe extern "C" fn(*mut FFI_ArrowArrayStream, *mut FFI_ArrowArray) -> c_int;

/// A stream moved out of the caller's struct: released (by its own `release`) when dropped.
struct Imported {
    stream: FFI_ArrowArrayStream,
    get_next: GetNext,
    schema: SchemaRef,
    done: bool,
}

fn invalid(message: &str) -> Error {
    Error::validation(Reason::InvalidStream, message.to_string()).with_field("stream")
}

/// Takes ownership of the stream at `raw` (its `release` is NULL afterwards, whatever the outcome) and reads its
/// schema.
///
/// # Safety
/// `raw` points to a valid, writable `struct ArrowArrayStream` (released or not) that follows the Arrow C stream
/// interface.
///
/// # Errors
/// EXP002 `invalid_stream` (field `stream`) for a released stream, a missing callback, a failing `get_schema` or a
/// schema Arrow cannot import.
pub unsafe fn import(raw: *mut ArrowArrayStream) -> Result<BatchStream> {
    // SAFETY: the caller guarantees `raw` is valid; the struct is moved out and replaced by a released one, so the
    // producer's struct no longer owns anything and ours is released exactly once, when dropped.
    let mut stream = unsafe { FFI_ArrowArrayStream::from_raw(raw) };
    if stream.release.is_none() {
        return Err(invalid("the stream is released"));
    }
    let (Some(get_schema), Some(get_next)) = (stream.get_schema, stream.get_next) else {
        return Err(invalid("the stream lacks get_schema or get_next"));
    };
    let mut c_schema = FFI_ArrowSchema::empty();
    // SAFETY: `get_schema` is the producer's callback for this stream, called with the stream and an empty schema
    // to fill, as the interface defines.
    let code = unsafe { get_schema(&mut stream, &mut c_schema) };
    if code != 0 {
        return Err(invalid("the stream failed to give its schema").with_detail("errno", code));
    }
    let schema = Schema::try_from(&c_schema).map_err(Error::from)?;
    let imported = Imported {
        stream,
        get_next,
        schema: Arc::new(schema),
        done: false,
    };
    let schema = imported.schema.clone();
    Ok(BatchStream::new(schema, imported))
}

impl Iterator for Imported {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        if self.done {
            return None;
        }
        let mut array = FFI_ArrowArray::empty();
        // SAFETY: `get_next` is the producer's callback for this stream, which is not released; it fills `array`
        // or leaves it released at the end of the stream.
        let code = unsafe { (self.get_next)(&mut self.stream, &mut array) };
        if code != 0 {
            self.done = true;
            return Some(Err(
                invalid("the stream failed to give its next batch").with_detail("errno", code)
            ));
        }
        if array.is_released() {
            self.done = true;
            return None;
        }
        let struct_type = DataType::Struct(self.schema.fields().clone());
        // SAFETY: `array` was just filled by the producer and is owned here; the interface requires it to match
        // the stream's schema, and the data is fully validated below before any use.
        let imported = unsafe { from_ffi_and_data_type(array, struct_type) };
        let batch = imported
            .and_then(|data| {
                data.validate_full()?;
                let rows = data.len();
                let columns = StructArray::from(data).into_parts().1;
                RecordBatch::try_new_with_options(
                    self.schema.clone(),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(rows)),
                )
            })
            .map_err(|e| {
                self.done = true;
                Error::from(e).with_field("stream")
            });
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, RecordBatchIterator, StringArray};
    use arrow::datatypes::{DataType, Field};

    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("USUBJID", DataType::Utf8, false),
            Field::new("AGE", DataType::Int64, true),
        ]));
        let batch = |ids: &[&str], ages: &[Option<i64>]| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(ages.to_vec())),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let all = vec![
            batch(&["S1-001", "S1-002"], &[Some(34), None]),
            batch(&["S1-003"], &[Some(61)]),
        ];
        (schema, all)
    }

    /// A stream exported by arrow's own producer, the independent side of the interface.
    fn exported() -> FFI_ArrowArrayStream {
        let (schema, all) = batches();
        let reader = RecordBatchIterator::new(all.into_iter().map(Ok), schema);
        FFI_ArrowArrayStream::new(Box::new(reader))
    }

    #[test]
    fn imports_every_batch_and_takes_the_stream() {
        let mut raw = exported();
        // SAFETY: `raw` is a valid stream made by arrow's exporter, alive for the call.
        let stream = unsafe { import(&mut raw) }.unwrap();
        assert!(raw.release.is_none(), "the caller's struct is moved out");
        let (schema, want) = batches();
        assert_eq!(stream.schema().fields(), schema.fields());
        assert_eq!(stream.collect().unwrap(), want);
    }

    #[test]
    fn a_released_stream_or_one_without_callbacks_is_refused() {
        let mut raw = FFI_ArrowArrayStream::empty();
        // SAFETY: an empty (released) stream is a valid struct.
        let e = unsafe { import(&mut raw) }.unwrap_err();
        assert_eq!((e.reason(), e.field()), ("invalid_stream", Some("stream")));
        let mut raw = exported();
        raw.get_next = None;
        // SAFETY: a valid stream without one callback; it is still released through its own `release`.
        let e = unsafe { import(&mut raw) }.unwrap_err();
        assert_eq!(e.reason(), "invalid_stream");
        assert!(raw.release.is_none());
    }
}
