//! Throughput of the `xlsx` encoder: 100,000 rows x 20 columns (5 integer, 5 float, 5 string, 5 date), the size
//! of the polars `write_excel` comparison. Run with `cargo test --release -p trialport-formats --test xlsx_speed --
//! --ignored --nocapture`; the target is at least 5x polars' 17.5 s on a 2-core machine (under 3.5 s).
#![cfg(feature = "xlsx")]

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;
use std::time::Instant;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::DatasetMeta;
use trialport_formats::xlsx::XlsxFormat;

#[test]
#[ignore = "timing run; use --release"]
fn hundred_thousand_rows_by_twenty_columns() {
    let mut fields = Vec::new();
    for i in 0..5 {
        fields.push(Field::new(format!("I{i}"), DataType::Int64, true));
        fields.push(Field::new(format!("F{i}"), DataType::Float64, true));
        fields.push(Field::new(format!("S{i}"), DataType::Utf8, true));
        fields.push(Field::new(format!("D{i}"), DataType::Date32, true));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch_rows = 8192;
    let make = |from: usize, n: usize| {
        let mut cols: Vec<ArrayRef> = Vec::new();
        for i in 0..5 {
            cols.push(Arc::new(Int64Array::from_iter_values(
                (from..from + n).map(|r| (r * 7 + i) as i64),
            )));
            cols.push(Arc::new(Float64Array::from_iter_values(
                (from..from + n).map(|r| r as f64 * 1.25 + i as f64),
            )));
            cols.push(Arc::new(StringArray::from_iter_values(
                (from..from + n).map(|r| format!("SUBJ-{i}-{r:06}")),
            )));
            cols.push(Arc::new(Date32Array::from_iter_values(
                (from..from + n).map(|r| 19_000 + (r % 3000) as i32),
            )));
        }
        RecordBatch::try_new(schema.clone(), cols).expect("batch")
    };
    let total = 100_000;
    let batches: Vec<RecordBatch> = (0..total)
        .step_by(batch_rows)
        .map(|from| make(from, batch_rows.min(total - from)))
        .collect();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut enc = XlsxFormat
        .encoder(
            &schema,
            &DatasetMeta::default(),
            &FormatOptions::new(),
            &mut out,
        )
        .expect("encoder");
    for b in &batches {
        enc.write(b).expect("write");
    }
    let rows = enc.finish().expect("finish").rows;
    let took = start.elapsed();
    eprintln!(
        "xlsx: {rows} rows x 20 columns in {:.2} s, {} bytes",
        took.as_secs_f64(),
        out.len()
    );
    assert_eq!(rows, total as u64);
}
