//! `tp_bench`: trialport as one more child of the peer harness (`../shared/bench/bench_peers.py`).
//!
//! ```text
//! tp_bench one CASE N     load $BENCH_DATA/lb_N.parquet into memory (untimed), time ONE write, print a JSON line
//! tp_bench cases          list the cases, one per line
//! ```
//!
//! Like the harness's Python children: the input (default `<tmpdir>/perfdata`, made by `gen_lb.py N`) is read
//! fully into memory first (with `trialport_formats::read::open`, in its 8,192-row batches, or re-cut into
//! batches of `$TP_BATCH_ROWS` rows when that is set) and that time is reported as `load_s` but not counted; then only the write is timed
//! (`Format::encoder` over a 256 KiB `BufWriter<File>` in `$BENCH_OUT`, default `<tmpdir>/perfout`, from creating
//! the file to closing it; page cache, no fsync). The output is deleted afterwards. The JSON line has the keys of
//! the harness's `run_one` (`case`, `n`, `load_s`, `write_s`, `write_cpu_s`, `out_bytes`,
//! `maxrss_before_write_mib`, `maxrss_after_write_mib`) plus `rows_written` and `batch_rows`, so its
//! `summarize` and `print_table` take trialport rows as they are.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::error::Error;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;
use trialport_benches::{bench_dir, lb_meta, process};
use trialport_core::format::FormatOptions;
use trialport_formats::default_formats;

/// The output buffer, the size the local sink uses.
const OUT_BUFFER: usize = 256 * 1024;

/// A case: name, format id, options.
struct Case {
    name: &'static str,
    format: &'static str,
    options: &'static [(&'static str, &'static str)],
}

const fn case(
    name: &'static str,
    format: &'static str,
    options: &'static [(&'static str, &'static str)],
) -> Case {
    Case {
        name,
        format,
        options,
    }
}

const CASES: &[Case] = &[
    case("tp_csv", "csv", &[]),
    case("tp_tsv", "tsv", &[]),
    case("tp_ndjson", "ndjson", &[]),
    case("tp_json", "json", &[]),
    case("tp_parquet", "parquet", &[]),
    case("tp_parquet_zstd", "parquet", &[("compression", "zstd")]),
    case("tp_parquet_snappy", "parquet", &[("compression", "snappy")]),
    case("tp_parquet_none", "parquet", &[("compression", "none")]),
    case("tp_ipc", "arrow-ipc", &[]),
    case("tp_xlsx", "xlsx", &[]),
    // Default options: SAS transport version 5.
    case("tp_xpt", "xpt", &[]),
    case("tp_dataset_json", "dataset-json", &[]),
    case(
        "tp_dataset_json_ndjson",
        "dataset-json",
        &[("form", "ndjson")],
    ),
    case("tp_dataset_json_dsjc", "dataset-json", &[("form", "dsjc")]),
];

const USAGE: &str = "usage: tp_bench one CASE N | tp_bench cases";

fn mib(kib: Option<u64>) -> f64 {
    kib.unwrap_or(0) as f64 / 1024.0
}

/// Reads the whole Parquet file into memory with trialport's reader (batches of its `BATCH_SIZE` rows), re-cut
/// into batches of `batch_rows` rows when given.
fn load(
    path: &Path,
    batch_rows: Option<usize>,
) -> Result<(SchemaRef, Vec<RecordBatch>), Box<dyn Error>> {
    if !path.exists() {
        return Err(format!("{} is missing: make it with gen_lb.py", path.display()).into());
    }
    let stream = trialport_formats::read::open(path, None)?;
    let schema = stream.schema().clone();
    let batches = stream.collect()?;
    let Some(size) = batch_rows else {
        return Ok((schema, batches));
    };
    let all = arrow::compute::concat_batches(&schema, &batches)?;
    drop(batches);
    let rechunked = (0..all.num_rows())
        .step_by(size.max(1))
        .map(|at| all.slice(at, size.min(all.num_rows() - at)))
        .collect();
    Ok((schema, rechunked))
}

fn run_one(name: &str, n: usize) -> Result<(), Box<dyn Error>> {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("unknown case '{name}'; `tp_bench cases` lists them"))?;
    let formats = default_formats();
    let format = formats.get(case.format)?.clone();
    let options = case
        .options
        .iter()
        .fold(FormatOptions::new(), |o, (k, v)| o.with(k, v));
    format.check_options(&options)?;
    let batch_rows: Option<usize> = match std::env::var("TP_BATCH_ROWS") {
        Ok(v) if !v.is_empty() => Some(
            v.parse()
                .map_err(|_| format!("TP_BATCH_ROWS={v}: not a number"))?,
        ),
        _ => None,
    };

    let data = bench_dir("BENCH_DATA", "perfdata").join(format!("lb_{n}.parquet"));
    let out_dir = bench_dir("BENCH_OUT", "perfout");
    fs::create_dir_all(&out_dir)?;

    let t0 = Instant::now();
    let (schema, batches) = load(&data, batch_rows)?;
    let load_s = t0.elapsed().as_secs_f64();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != n {
        return Err(format!("{} has {rows} rows, not {n}", data.display()).into());
    }
    let meta = lb_meta();
    let rss_before = mib(process::peak_rss_kib());
    let ext = format.info().extension;
    let path = out_dir.join(format!("{name}_{n}_{}.{ext}", std::process::id()));
    let _ = fs::remove_file(&path);

    let c0 = process::cpu_seconds();
    let t0 = Instant::now();
    let summary = {
        let mut out = BufWriter::with_capacity(OUT_BUFFER, File::create(&path)?);
        let summary = {
            let mut encoder = format.encoder(&schema, &meta, &options, &mut out)?;
            for b in &batches {
                encoder.write(b)?;
            }
            encoder.finish()?
        };
        out.flush()?;
        summary
    };
    let write_s = t0.elapsed().as_secs_f64();
    let write_cpu_s = process::cpu_seconds() - c0;
    let rss_after = mib(process::peak_rss_kib());
    let out_bytes = fs::metadata(&path)?.len();
    fs::remove_file(&path)?;
    if summary.rows != n as u64 {
        return Err(format!("the encoder wrote {} rows of {n}", summary.rows).into());
    }
    let line = serde_json::json!({
        "case": name,
        "n": n,
        "load_s": load_s,
        "write_s": write_s,
        "write_cpu_s": write_cpu_s,
        "out_bytes": out_bytes,
        "maxrss_before_write_mib": rss_before,
        "maxrss_after_write_mib": rss_after,
        "rows_written": summary.rows,
        "batch_rows": batch_rows.unwrap_or(trialport_formats::read::BATCH_SIZE),
    });
    println!("{line}");
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["one", name, n] => {
            let n: usize = n
                .replace('_', "")
                .parse()
                .map_err(|_| format!("N must be a row count, not '{n}'"))?;
            run_one(name, n)
        }
        ["cases"] => {
            for c in CASES {
                println!("{}", c.name);
            }
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}
