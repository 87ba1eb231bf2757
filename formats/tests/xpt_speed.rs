//! Throughput of the `xpt` encoder and reader on 1,000,000 LB-like rows (20 columns: 13 text, 6 float, 1 date, as
//! `shared/bench/gen_lb.py`). pyreadstat writes such a table as XPT v5 in about 11.8 s on a 2-core machine; the
//! target is well under 1 s. Run with `cargo test --release -p trialport-formats --test xpt_speed -- --ignored
//! --nocapture`. Without `--ignored` a 20,000-row run checks that both paths (lengths from the metadata, and lengths
//! measured through the spool) write the same bytes.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{ArrayRef, Date32Array, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_formats::xpt::{self, XptFormat};

const TEXT: [&str; 13] = [
    "STUDYID", "DOMAIN", "USUBJID", "LBTESTCD", "LBTEST", "LBCAT", "LBORRES", "LBORRESU",
    "LBSTRESC", "LBSTRESU", "LBNRIND", "VISIT", "LBDTC",
];
const NUM: [&str; 6] = [
    "LBSEQ", "LBSTRESN", "LBSTNRLO", "LBSTNRHI", "VISITNUM", "LBDY",
];

fn schema() -> SchemaRef {
    let mut f: Vec<Field> = TEXT
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, false))
        .collect();
    f.extend(NUM.iter().map(|n| Field::new(*n, DataType::Float64, true)));
    f.push(Field::new("LBDT", DataType::Date32, false));
    Arc::new(Schema::new(f))
}

fn batch(schema: &SchemaRef, from: usize, n: usize) -> RecordBatch {
    let rows = from..from + n;
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (k, _) in TEXT.iter().enumerate() {
        cols.push(Arc::new(StringArray::from_iter_values(rows.clone().map(
            |r| match k {
                0 => "CDISCPILOT01".to_string(),
                1 => "LB".to_string(),
                2 => format!("CDISCPILOT01-01-{:03}-{:04}", r / 480 % 18, r / 480),
                4 => format!("Laboratory test number {}", r % 40),
                6 | 8 => format!("{}.{}", r % 97, r % 10),
                12 => format!("2014-{:02}-{:02}T08:30", r % 12 + 1, r % 28 + 1),
                _ => format!("V{}", r % 40),
            },
        ))));
    }
    for (k, _) in NUM.iter().enumerate() {
        cols.push(Arc::new(Float64Array::from_iter(rows.clone().map(|r| {
            (k != 1 || r % 20 != 0).then_some(r as f64 * 0.25 + k as f64)
        }))));
    }
    cols.push(Arc::new(Date32Array::from_iter_values(
        rows.map(|r| 15_522 + (r % 730) as i32),
    )));
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

fn meta(with_lengths: bool) -> DatasetMeta {
    DatasetMeta {
        name: "LB".into(),
        label: Some("Laboratory Test Results".into()),
        columns: if with_lengths {
            TEXT.iter()
                .map(|n| ColumnMeta {
                    name: n.to_string(),
                    length: Some(if *n == "LBTEST" { 40 } else { 28 }),
                    ..ColumnMeta::default()
                })
                .collect()
        } else {
            vec![]
        },
        ..Default::default()
    }
}

fn write_all(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    meta: &DatasetMeta,
    out: &mut (dyn Write + Send),
) -> u64 {
    let mut enc = XptFormat
        .encoder(schema, meta, &FormatOptions::new(), out)
        .unwrap();
    for b in batches {
        enc.write(b).unwrap();
    }
    enc.finish().unwrap().rows
}

fn batches(total: usize) -> (SchemaRef, Vec<RecordBatch>) {
    let s = schema();
    let b = (0..total)
        .step_by(8192)
        .map(|from| batch(&s, from, 8192.min(total - from)))
        .collect();
    (s, b)
}

#[test]
fn measured_and_declared_lengths_write_the_same_rows() {
    let (s, b) = batches(20_000);
    let read = |bytes: Vec<u8>| {
        let stream = xpt::read_xpt_from(std::io::Cursor::new(bytes), &Default::default()).unwrap();
        let schema = stream.schema().clone();
        let all = arrow::compute::concat_batches(&schema, &stream.collect().unwrap()).unwrap();
        all.columns().to_vec()
    };
    let mut declared = Vec::new();
    assert_eq!(write_all(&s, &b, &meta(true), &mut declared), 20_000);
    let mut measured = Vec::new();
    assert_eq!(write_all(&s, &b, &meta(false), &mut measured), 20_000);
    assert!(measured.len() < declared.len());
    let (d, m) = (read(declared), read(measured));
    assert_eq!(d[0].len(), 20_000);
    assert_eq!(d, m);
}

/// CPU seconds used by this process so far (Linux; the machines are shared, so wall time alone misleads).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit(')').next()?.split_whitespace().collect::<Vec<_>>();
            let ticks: f64 =
                after.get(11)?.parse::<f64>().ok()? + after.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

#[test]
#[ignore = "timing run; use --release"]
fn a_million_lb_rows() {
    let (s, b) = batches(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    for (label, with_lengths) in [
        ("lengths from metadata", true),
        ("lengths measured (spool)", false),
    ] {
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let rows = write_all(&s, &b, &meta(with_lengths), &mut std::io::sink());
        eprintln!(
            "xpt encode only, {label}: {rows} rows in {:.3} s ({:.2} s CPU)",
            start.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
    }
    for (label, with_lengths) in [
        ("lengths from metadata", true),
        ("lengths measured (spool)", false),
    ] {
        let path = dir.path().join("lb.xpt");
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let rows = write_all(&s, &b, &meta(with_lengths), &mut f);
        f.flush().unwrap();
        drop(f);
        let took = start.elapsed();
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "xpt write, {label}: {rows} rows, {:.1} MB in {:.3} s ({:.2} s CPU)",
            size as f64 / 1e6,
            took.as_secs_f64(),
            cpu_seconds() - cpu
        );
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let read: usize = xpt::read_xpt(&path)
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        eprintln!(
            "xpt read: {read} rows in {:.3} s ({:.2} s CPU)",
            start.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
        assert_eq!(read, 1_000_000);
    }
}
