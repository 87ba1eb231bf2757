//! Criterion benchmarks of every dataset encoder and of the whole job path.
//!
//! * `encode/<format id>/<rows>`: one format's encoder, from `Format::encoder` to `finish`, over 1,000,000
//!   in-memory rows of the synthetic LB table (XLSX: 100,000 rows), generated once before any timing, writing to a
//!   `BufWriter` (256 KiB, as the local sink uses) over a file in a temporary directory: page cache, no fsync, the
//!   file deleted after each run outside the timing (as the peer harness does).
//! * `encode_one_view_batch/<format id>/<rows>`: the same rows handed over as ONE batch whose text columns are
//!   `Utf8View`, the shape a polars DataFrame exports through the Arrow C stream (`trialport.write(df, ...)`), for
//!   the encoders that take it on a path of their own (XPT, CSV).
//! * `job_path/csv/<rows>`: `Engine::export_data` + `wait` of the same 1,000,000 rows (in a `MemorySource`) to CSV
//!   in a `LocalDirSink` (which hashes, fsyncs and renames), one worker.
//! * `job_path/csv_encrypted/<rows>`: the same with the sink encrypted at rest (`EngineBuilder::encryption` with a
//!   `FileKeyProvider`, as a home does): AES-256-GCM in 64 KiB segments, the plaintext's SHA-256 recorded.
//!
//! Ten samples of one run each (flat sampling; criterion's "Unable to complete 10 samples" warning is expected),
//! after one untimed run that checks the encoder and measures the output size; throughput in rows and bytes. Run with
//! `cargo bench -p trialport-benches`; narrow with a filter, e.g. `cargo bench -p trialport-benches -- csv`.

use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trialport_benches::{lb_batches, lb_meta, lb_schema, DATASET, DEFAULT_BATCH_ROWS, STUDY};
use trialport_core::crypto::FileKeyProvider;
use trialport_core::engine::Engine;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::job::JobState;
use trialport_core::request::ExportRequest;
use trialport_core::sink::LocalDirSink;
use trialport_core::source::MemorySource;
use trialport_formats::default_formats;

/// Rows of every encoder benchmark but XLSX.
const ROWS: usize = 1_000_000;
/// Rows of the XLSX benchmark (the peers' XLSX figures are at this size too).
const XLSX_ROWS: usize = 100_000;
/// The output buffer, the size the local sink uses.
const OUT_BUFFER: usize = 256 * 1024;

/// The encoder cases: format id and rows.
const CASES: &[(&str, usize)] = &[
    ("csv", ROWS),
    ("tsv", ROWS),
    ("ndjson", ROWS),
    ("json", ROWS),
    ("parquet", ROWS),
    ("arrow-ipc", ROWS),
    ("xlsx", XLSX_ROWS),
    ("dataset-json", ROWS),
    ("xpt", ROWS),
];

/// The one-batch `Utf8View` cases.
const VIEW_CASES: &[&str] = &["xpt", "csv"];

type BoxError = Box<dyn std::error::Error>;

/// The first `rows` rows of `batches`.
fn first_rows(batches: &[RecordBatch], rows: usize) -> Vec<RecordBatch> {
    let mut left = rows;
    let mut out = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let n = left.min(b.num_rows());
        out.push(b.slice(0, n));
        left -= n;
    }
    out
}

/// `batches` as one batch with every `Utf8` column cast to `Utf8View` (field and schema metadata kept).
fn one_view_batch(batches: &[RecordBatch]) -> Result<RecordBatch, BoxError> {
    let schema = lb_schema();
    let whole = arrow::compute::concat_batches(&schema, batches)?;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(whole.columns()) {
        if *f.data_type() == DataType::Utf8 {
            fields.push(f.as_ref().clone().with_data_type(DataType::Utf8View));
            columns.push(arrow::compute::cast(c, &DataType::Utf8View)?);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Encodes `batches` with `format` to a new file at `path`; returns the file's size.
fn encode(format: &dyn Format, batches: &[RecordBatch], path: &Path) -> Result<u64, BoxError> {
    let schema = batches.first().map_or_else(lb_schema, RecordBatch::schema);
    let meta = lb_meta();
    let mut out = BufWriter::with_capacity(OUT_BUFFER, File::create(path)?);
    {
        let mut encoder = format.encoder(&schema, &meta, &FormatOptions::new(), &mut out)?;
        for b in batches {
            encoder.write(b)?;
        }
        encoder.finish()?;
    }
    out.flush()?;
    drop(out);
    Ok(fs::metadata(path)?.len())
}

fn group_settings<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        // Shorter than ten runs of any case, so that every sample is exactly one run (criterion then prints
        // "Unable to complete 10 samples in 1.0s": expected).
        .measurement_time(Duration::from_secs(1));
    group
}

fn encoders(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("encoders: no temporary directory: {e}");
            return;
        }
    };
    let formats = default_formats();
    let all: Vec<RecordBatch> = lb_batches(ROWS, DEFAULT_BATCH_ROWS).collect();
    let mut group = group_settings(c, "encode");
    for &(id, rows) in CASES {
        let format = match formats.get(id) {
            Ok(f) => f.clone(),
            Err(e) => {
                eprintln!("encode/{id}: skipped, not registered: {e}");
                continue;
            }
        };
        let batches = first_rows(&all, rows);
        bench_encoder(&mut group, dir.path(), id, format.as_ref(), &batches, rows);
    }
    group.finish();
    let one = match one_view_batch(&all) {
        Ok(b) => vec![b],
        Err(e) => {
            eprintln!("encode_one_view_batch: skipped: {e}");
            return;
        }
    };
    let mut group = group_settings(c, "encode_one_view_batch");
    for &id in VIEW_CASES {
        let Ok(format) = formats.get(id).cloned() else {
            continue;
        };
        bench_encoder(&mut group, dir.path(), id, format.as_ref(), &one, ROWS);
    }
    group.finish();
}

/// One encoder case: an untimed probe run (checks it and measures the output), then the timed runs.
fn bench_encoder(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    dir: &Path,
    id: &str,
    format: &dyn Format,
    batches: &[RecordBatch],
    rows: usize,
) {
    let probe = dir.join(format!("probe.{id}"));
    let bytes = match encode(format, batches, &probe) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{id}: skipped, the encoder failed: {e}");
            return;
        }
    };
    let _ = fs::remove_file(&probe);
    group.throughput(Throughput::ElementsAndBytes {
        elements: rows as u64,
        bytes,
    });
    group.bench_function(BenchmarkId::new(id, rows), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let path = dir.join(format!("run{i}.{id}"));
                let start = Instant::now();
                let result = encode(format, black_box(batches), &path);
                total += start.elapsed();
                if let Err(e) = result {
                    eprintln!("{id}: failed: {e}");
                }
                let _ = fs::remove_file(&path);
            }
            total
        })
    });
}

/// One export job of the whole dataset to CSV: returns the job id and the artifacts' size.
fn run_job(engine: &Engine, credential: &str) -> Result<(String, u64), BoxError> {
    let job = engine.export_data(credential, ExportRequest::data(STUDY, &[DATASET], "csv"))?;
    let job = engine.wait(credential, job.id, None)?;
    if job.state != JobState::Succeeded {
        return Err(format!("job ended {:?}: {:?}", job.state, job.error).into());
    }
    Ok((
        job.id.to_string(),
        job.artifacts.iter().map(|a| a.bytes).sum(),
    ))
}

fn job_path(c: &mut Criterion) {
    let mut group = group_settings(c, "job_path");
    for (name, encrypted) in [("csv", false), ("csv_encrypted", true)] {
        job_path_case(&mut group, name, encrypted);
    }
    group.finish();
}

fn job_path_case(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    encrypted: bool,
) {
    let setup = || -> Result<(tempfile::TempDir, Engine, String), BoxError> {
        let dir = tempfile::tempdir()?;
        let source = MemorySource::new();
        source.add(
            STUDY,
            DATASET,
            lb_schema(),
            lb_batches(ROWS, DEFAULT_BATCH_ROWS).collect(),
        )?;
        let mut builder = Engine::builder()
            .formats(default_formats())
            .source(Arc::new(source))
            .sink(Arc::new(LocalDirSink::new(dir.path().join("artifacts"))?))
            .workers(1);
        if encrypted {
            builder =
                builder.encryption(Arc::new(FileKeyProvider::create(dir.path().join("keys"))?));
        }
        let engine = builder.build()?;
        let key = engine.create_initial_admin_key("bench")?;
        Ok((dir, engine, format!("ApiKey {key}")))
    };
    let (dir, engine, credential) = match setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("job_path/{name}: skipped, setup failed: {e}");
            return;
        }
    };
    let artifacts = dir.path().join("artifacts");
    let bytes = match run_job(&engine, &credential) {
        Ok((id, b)) => {
            let _ = fs::remove_dir_all(artifacts.join(id));
            b
        }
        Err(e) => {
            eprintln!("job_path/{name}: skipped, the job failed: {e}");
            return;
        }
    };
    group.throughput(Throughput::ElementsAndBytes {
        elements: ROWS as u64,
        bytes,
    });
    group.bench_function(BenchmarkId::new(name, ROWS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let result = run_job(&engine, &credential);
                total += start.elapsed();
                match result {
                    // Deleted outside the timing, as the encoder runs' files are.
                    Ok((id, _)) => {
                        let _ = fs::remove_dir_all(artifacts.join(id));
                    }
                    Err(e) => eprintln!("job_path/{name}: failed: {e}"),
                }
            }
            total
        })
    });
}

criterion_group!(benches, encoders, job_path);
criterion_main!(benches);
