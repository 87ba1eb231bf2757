//! A document as JSON, for the `json` format.

use super::cells::Displayable;
use super::write_error;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::record_batch::RecordBatch;
use serde_json::{json, Map, Number, Value};
use trialport_core::clock::format_utc;
use trialport_core::document::{Block, ChartKind, Document, DocumentKind};
use trialport_core::error::Result;
use trialport_core::format::{FormatOptions, Output};

/// Writes `doc` as one JSON object (and a newline) to `out`.
///
/// ```json
/// {"kind": "report", "title": "...", "study": "...", "generated_at": "2025-01-21T10:00:00Z",
///  "data_cutoff": "2024-12-31", "parameters": {"population": "Safety"},
///  "blocks": [
///   {"type": "text", "heading": "Summary", "body": "..."},
///   {"type": "table", "heading": null, "dataset": "DM", "columns": ["USUBJID", "AGE"],
///    "rows": [["S1", 34]], "total_rows": 120, "footnotes": ["..."]},
///   {"type": "tiles", "items": [{"label": "Subjects", "value": 120}]},
///   {"type": "chart", "title": "...", "kind": "bar", "x_label": "ARM", "y_label": "count",
///    "points": [{"x": "A", "y": 60}]}],
///  "signatures": [{"printed_name": "Dr. A. Reviewer", "meaning": "approval",
///                  "signed_at": "2025-01-21T10:00:00Z"}],
///  "content_sha256": "..."}
/// ```
///
/// `data_cutoff` is `null` when the spec states none; `signatures` is empty for an unsigned document;
/// `content_sha256` is [`Document::content_sha256`], which the job's manifest records.
///
/// Parameters keep their order. Cells are typed: booleans, integers and floats as JSON booleans and numbers
/// (non-finite floats as the strings `NaN`, `inf`, `-inf`), strings as strings, nulls as `null`, and every other
/// type (dates, timestamps, decimals, ...) as Arrow's display text, which keeps decimals exact. Missing or non-finite
/// KPI and chart values are `null`. No option changes the output: `options` is accepted so every renderer has the
/// same signature, and the `json` format checks its own options.
///
/// # Errors
/// EXP002 when a table value cannot be displayed; EXP005 for I/O.
pub fn render_json(doc: &Document, options: &FormatOptions, out: Output<'_>) -> Result<()> {
    let _ = options;
    let parameters: Map<String, Value> = doc
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let blocks = doc
        .blocks
        .iter()
        .map(block)
        .collect::<Result<Vec<Value>>>()?;
    let signatures: Vec<Value> = doc
        .signatures
        .iter()
        .map(|s| {
            json!({"printed_name": s.printed_name, "meaning": s.meaning.as_str(),
                        "signed_at": format_utc(s.signed_at)})
        })
        .collect();
    let value = json!({
        "kind": match doc.kind { DocumentKind::Report => "report", DocumentKind::Dashboard => "dashboard" },
        "title": doc.title,
        "study": doc.study,
        "generated_at": format_utc(doc.generated_at),
        "data_cutoff": doc.data_cutoff,
        "parameters": parameters,
        "blocks": blocks,
        "signatures": signatures,
        "content_sha256": doc.content_sha256()?,
    });
    serde_json::to_writer(&mut *out, &value).map_err(|e| write_error(e.into()))?;
    out.write_all(b"\n").map_err(write_error)?;
    out.flush().map_err(write_error)
}

fn number(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn block(b: &Block) -> Result<Value> {
    Ok(match b {
        Block::Text { heading, body } => json!({"type": "text", "heading": heading, "body": body}),
        Block::Table {
            heading,
            dataset,
            rows,
            total_rows,
            footnotes,
        } => {
            let columns: Vec<&str> = rows
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            json!({"type": "table", "heading": heading, "dataset": dataset, "columns": columns,
                   "rows": table_rows(rows)?, "total_rows": total_rows, "footnotes": footnotes})
        }
        Block::Tiles(kpis) => {
            let items: Vec<Value> = kpis
                .iter()
                .map(|k| json!({"label": k.label, "value": k.value.map_or(Value::Null, number)}))
                .collect();
            json!({"type": "tiles", "items": items})
        }
        Block::Chart(c) => {
            let points: Vec<Value> = c
                .points
                .iter()
                .map(|(x, y)| json!({"x": x, "y": number(*y)}))
                .collect();
            json!({"type": "chart", "title": c.title,
                   "kind": match c.kind { ChartKind::Bar => "bar", ChartKind::Line => "line" },
                   "x_label": c.x_label, "y_label": c.y_label, "points": points})
        }
    })
}

fn float(v: f64) -> Value {
    if v.is_finite() {
        number(v)
    } else if v.is_nan() {
        Value::String("NaN".into())
    } else if v > 0.0 {
        Value::String("inf".into())
    } else {
        Value::String("-inf".into())
    }
}

/// One column's values as JSON, in row order.
fn column_values(array: &ArrayRef, name: &str) -> Result<Vec<Value>> {
    use DataType as D;
    let n = array.len();
    let each = |f: &dyn Fn(usize) -> Value| -> Vec<Value> {
        (0..n)
            .map(|i| if array.is_null(i) { Value::Null } else { f(i) })
            .collect()
    };
    macro_rules! ints {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            each(&|i| Value::from(a.value(i)))
        }};
    }
    Ok(match array.data_type() {
        D::Null => vec![Value::Null; n],
        D::Boolean => {
            let a = array.as_boolean();
            each(&|i| Value::Bool(a.value(i)))
        }
        D::Int8 => ints!(Int8Type),
        D::Int16 => ints!(Int16Type),
        D::Int32 => ints!(Int32Type),
        D::Int64 => ints!(Int64Type),
        D::UInt8 => ints!(UInt8Type),
        D::UInt16 => ints!(UInt16Type),
        D::UInt32 => ints!(UInt32Type),
        D::UInt64 => ints!(UInt64Type),
        D::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            each(&|i| float(f64::from(a.value(i))))
        }
        D::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            // Through the shortest decimal text, so 0.1f32 stays 0.1.
            each(&|i| {
                let v = a.value(i);
                float(v.to_string().parse::<f64>().unwrap_or(f64::from(v)))
            })
        }
        D::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            each(&|i| float(a.value(i)))
        }
        D::Utf8 => {
            let a = array.as_string::<i32>();
            each(&|i| Value::String(a.value(i).to_string()))
        }
        D::LargeUtf8 => {
            let a = array.as_string::<i64>();
            each(&|i| Value::String(a.value(i).to_string()))
        }
        D::Utf8View => {
            let a = array.as_string_view();
            each(&|i| Value::String(a.value(i).to_string()))
        }
        D::Dictionary(_, values) => {
            let decoded = arrow::compute::cast(array, values)?;
            return column_values(&decoded, name);
        }
        _ => {
            let column = Displayable::new(array, name)?;
            let f = column.formatter()?;
            (0..n)
                .map(|i| Ok(f.text(i)?.map_or(Value::Null, Value::String)))
                .collect::<Result<Vec<_>>>()?
        }
    })
}

fn table_rows(rows: &RecordBatch) -> Result<Vec<Value>> {
    let schema = rows.schema();
    let mut columns = rows
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| column_values(c, f.name()).map(Vec::into_iter))
        .collect::<Result<Vec<_>>>()?;
    Ok((0..rows.num_rows())
        .map(|_| {
            Value::Array(
                columns
                    .iter_mut()
                    .map(|c| c.next().unwrap_or(Value::Null))
                    .collect(),
            )
        })
        .collect())
}
