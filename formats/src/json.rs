//! JSON (an array of records) and NDJSON (one record per line): one [`JsonFormat`] and one streaming
//! [`JsonWriter`] specialised by a small [`JsonLayout`] strategy.
//!
//! Records are objects keyed by column name in schema order. Integers are exact JSON numbers (including beyond
//! 2^53), floats the shortest text that parses back to the same value, dates `"YYYY-MM-DD"`, timestamps ISO 8601
//! strings (`Z` when time-zone aware, the instant in UTC). JSON has no NaN or infinity: such a value is EXP002
//! `unrepresentable_value` unless `nan=null`.
//!
//! The JSON format also renders reports and dashboards through [`crate::document::render_json`].

use crate::csv::cell::{self, ColumnView, Kind, Temporal};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::io::Write;
use trialport_core::document::Document;
use trialport_core::error::Reason;
use trialport_core::format::{
    Capability, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, OptionInfo, Output,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

/// Bytes buffered before they are handed to the output.
const FLUSH_AT: usize = 1 << 20;

/// How records are laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonLayout {
    /// One JSON array of records: `[` record `,` record ... `]`, one record per line.
    Array,
    /// Newline-delimited JSON: one record per line and nothing else.
    Lines,
}

impl JsonLayout {
    fn begin_record(self, buf: &mut Vec<u8>, first: bool) {
        if self == JsonLayout::Array {
            buf.extend_from_slice(if first { b"[\n" } else { b",\n" });
        }
    }

    fn end_record(self, buf: &mut Vec<u8>) {
        if self == JsonLayout::Lines {
            buf.push(b'\n');
        }
    }

    fn finish(self, buf: &mut Vec<u8>, rows: u64) {
        if self == JsonLayout::Array {
            buf.extend_from_slice(if rows == 0 { b"[]\n" } else { b"\n]\n" });
        }
    }
}

/// JSON (`json`) and NDJSON (`ndjson`).
#[derive(Debug, Clone)]
pub struct JsonFormat {
    id: &'static str,
    layout: JsonLayout,
}

impl JsonFormat {
    /// A JSON array of records, id `json`; also renders reports and dashboards.
    pub fn array() -> Self {
        JsonFormat {
            id: "json",
            layout: JsonLayout::Array,
        }
    }

    /// Newline-delimited JSON records, id `ndjson`.
    pub fn ndjson() -> Self {
        JsonFormat {
            id: "ndjson",
            layout: JsonLayout::Lines,
        }
    }
}

const OPTIONS: &[OptionInfo] = &[
    OptionInfo::new(
        "explicit_nulls",
        "true",
        "write `\"COLUMN\": null` for a null; false leaves the key out",
    ),
    OptionInfo::one_of(
        "nan",
        "error",
        "what a NaN or infinite float becomes: an EXP002 error, or null",
        &["error", "null"],
    ),
];

impl Format for JsonFormat {
    fn info(&self) -> FormatInfo {
        let mut capabilities = vec![Capability::Data, Capability::Streaming, Capability::Read];
        if self.layout == JsonLayout::Array {
            capabilities.extend([Capability::Report, Capability::Dashboard]);
        }
        capabilities.sort();
        FormatInfo {
            id: self.id,
            name: match self.layout {
                JsonLayout::Array => "JSON array of records",
                JsonLayout::Lines => "Newline-delimited JSON records",
            },
            extension: match self.layout {
                JsonLayout::Array => "json",
                JsonLayout::Lines => "ndjson",
            },
            media_type: match self.layout {
                JsonLayout::Array => "application/json",
                JsonLayout::Lines => "application/x-ndjson",
            },
            capabilities,
            options: OPTIONS.to_vec(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        JsonOptions::from_format_options(self.id, options).map(|_| ())
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        _meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let options = JsonOptions::from_format_options(self.id, options)?;
        Ok(Box::new(JsonWriter::try_new(
            out,
            schema,
            self.layout,
            options,
        )?))
    }

    fn render(&self, doc: &Document, options: &FormatOptions, out: Output<'_>) -> Result<()> {
        if self.layout != JsonLayout::Array {
            let _ = (doc, options, out);
            return Err(Error::validation(
                Reason::UnsupportedByFormat,
                "format 'ndjson' does not write reports or dashboards",
            )
            .with_field("format"));
        }
        JsonOptions::from_format_options(self.id, options)?;
        crate::document::render_json(doc, options, out)
    }
}

/// The typed options of JSON and NDJSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonOptions {
    /// Whether a null is written as `"COLUMN": null`. Defaults to `true`; `false` leaves the key out.
    pub explicit_nulls: bool,
    /// Whether NaN and infinities become `null`. Defaults to `false`: they are an EXP002 error.
    pub nan_as_null: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            explicit_nulls: true,
            nan_as_null: false,
        }
    }
}

impl JsonOptions {
    /// Parses the string options of format `format_id`: the one place they are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn from_format_options(format_id: &str, options: &FormatOptions) -> Result<Self> {
        options.check_known(format_id, OPTIONS)?;
        let d = JsonOptions::default();
        Ok(JsonOptions {
            explicit_nulls: options.bool("explicit_nulls", d.explicit_nulls)?,
            nan_as_null: options.get("nan") == Some("null"),
        })
    }
}

/// A streaming JSON/NDJSON writer: [`JsonWriter::try_new`], [`JsonWriter::write`] any number of times,
/// [`JsonWriter::finish`] once.
pub struct JsonWriter<W: Write> {
    out: W,
    schema: SchemaRef,
    layout: JsonLayout,
    options: JsonOptions,
    /// Each column's key, escaped and followed by `:`.
    keys: Vec<Vec<u8>>,
    temporal: Temporal,
    buf: Vec<u8>,
    rows: u64,
}

impl<W: Write> std::fmt::Debug for JsonWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonWriter")
            .field("layout", &self.layout)
            .field("options", &self.options)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<W: Write> JsonWriter<W> {
    /// Validates the schema; nothing reaches `out` before the first [`JsonWriter::write`] or
    /// [`JsonWriter::finish`].
    ///
    /// # Errors
    /// EXP002 `unsupported_type` (field = the column) for a column JSON records cannot hold here (lists,
    /// structs, binary, ...).
    pub fn try_new(
        out: W,
        schema: &SchemaRef,
        layout: JsonLayout,
        options: JsonOptions,
    ) -> Result<Self> {
        let id = match layout {
            JsonLayout::Array => "json",
            JsonLayout::Lines => "ndjson",
        };
        cell::check_schema(schema, id)?;
        let keys = schema
            .fields()
            .iter()
            .map(|f| {
                let mut k = Vec::with_capacity(f.name().len() + 3);
                push_json_string(&mut k, f.name().as_bytes());
                k.push(b':');
                k
            })
            .collect();
        Ok(JsonWriter {
            out,
            schema: schema.clone(),
            layout,
            options,
            keys,
            temporal: Temporal::default(),
            buf: Vec::with_capacity(FLUSH_AT + 64 * 1024),
            rows: 0,
        })
    }

    fn flush_buf(&mut self) -> Result<()> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io("writing JSON", &e))?;
        self.buf.clear();
        Ok(())
    }

    /// Encodes one batch.
    ///
    /// # Errors
    /// EXP002 `unrepresentable_value` (field = the column) for NaN or infinity without `nan=null`, or a date
    /// outside the calendar range; `schema_mismatch` for a batch of another schema; EXP005 for I/O.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        cell::check_batch(&self.schema, batch)?;
        let views = batch
            .columns()
            .iter()
            .map(ColumnView::new)
            .collect::<Result<Vec<_>>>()?;
        let explicit_nulls = self.options.explicit_nulls;
        let nan_as_null = self.options.nan_as_null;
        for row in 0..batch.num_rows() {
            self.layout
                .begin_record(&mut self.buf, self.rows == 0 && row == 0);
            self.buf.push(b'{');
            let mut first = true;
            for (j, view) in views.iter().enumerate() {
                let null = view.is_null(row) || (nan_as_null && view.is_non_finite(row));
                if null && !explicit_nulls {
                    continue;
                }
                if !first {
                    self.buf.push(b',');
                }
                first = false;
                self.buf.extend_from_slice(&self.keys[j]);
                if null {
                    self.buf.extend_from_slice(b"null");
                    continue;
                }
                let kind = view.kind();
                let written = match kind {
                    Kind::Text => {
                        push_json_string(&mut self.buf, view.text(row).as_bytes());
                        true
                    }
                    Kind::Temporal => {
                        self.buf.push(b'"');
                        let ok = view.write_raw(row, &mut self.buf, &self.temporal);
                        self.buf.push(b'"');
                        ok.map_err(|e| self.located(e, j, row))?
                    }
                    Kind::Number | Kind::Bool | Kind::Null => view
                        .write_raw(row, &mut self.buf, &self.temporal)
                        .map_err(|e| self.located(e, j, row))?,
                };
                if !written {
                    return Err(self.located(
                        Error::validation(
                            Reason::UnrepresentableValue,
                            "JSON cannot represent NaN or infinity; set option nan=null to write null",
                        ),
                        j,
                        row,
                    ));
                }
            }
            self.buf.push(b'}');
            self.layout.end_record(&mut self.buf);
            if self.buf.len() >= FLUSH_AT {
                self.flush_buf()?;
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn located(&self, e: Error, column: usize, row: usize) -> Error {
        e.with_field(self.schema.field(column).name().clone())
            .with_detail("row", self.rows + row as u64)
    }

    /// Writes the trailer, flushes and reports the rows written.
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn finish(mut self) -> Result<EncodeSummary> {
        self.layout.finish(&mut self.buf, self.rows);
        self.flush_buf()?;
        self.out
            .flush()
            .map_err(|e| Error::io("writing JSON", &e))?;
        Ok(EncodeSummary::rows(self.rows))
    }
}

impl<W: Write + Send> Encoder for JsonWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        JsonWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        JsonWriter::finish(*self)
    }
}

const ESCAPE: [bool; 256] = {
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

/// Appends `s` (UTF-8) as a JSON string: quotes, backslashes and control characters escaped, the rest as is.
pub(crate) fn push_json_string(buf: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if !ESCAPE[b as usize] {
            continue;
        }
        buf.extend_from_slice(&s[start..i]);
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x08 => buf.extend_from_slice(b"\\b"),
            0x0c => buf.extend_from_slice(b"\\f"),
            _ => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 15)]);
            }
        }
        start = i + 1;
    }
    buf.extend_from_slice(&s[start..]);
    buf.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut b = Vec::new();
        push_json_string(&mut b, "a\"b\\c\nd\u{1}é\t".as_bytes());
        let s = String::from_utf8(b).unwrap();
        assert_eq!(s, r#""a\"b\\c\nd\u0001é\t""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é\t");
    }
}
