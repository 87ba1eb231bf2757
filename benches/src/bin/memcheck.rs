//! `memcheck`: peak memory of the whole export job path, one fresh process per format.
//!
//! ```text
//! memcheck [--quick] [--rows N] [--xlsx-rows N] [--formats csv,ndjson,...] [--limit-mb 300]
//! memcheck --format F --rows N        (the child the parent starts for each format)
//! ```
//!
//! For each format the binary re-invokes itself as a child, which streams `N` generated rows of the LB table
//! ([`trialport_benches::LbSource`]) through `Engine::export_data` + `wait` (default formats, one worker, a
//! `LocalDirSink` in a temporary directory, deleted afterwards) and reports its peak RSS (`VmHWM` of
//! `/proc/self/status`, read after the job) as one JSON line. The parent prints a markdown table and exits 1 when a
//! job did not succeed, wrote another row count, or peaked above the limit (300 MB = 300,000,000 bytes by
//! default), or an XLSX of more than one sheet's 1,048,575 data rows has a single worksheet. Defaults: 5,000,000
//! rows; XLSX 1,100,000 rows (so the sheet split is exercised). `--quick`: 200,000 rows for every format.
//!
//! A format name with `+aes` (the default list has `ndjson+aes`: about 1.9 GB at 5,000,000 rows) runs the same
//! export with the sink encrypted at rest (`EngineBuilder::encryption` with a `FileKeyProvider`, as a home does),
//! then downloads the artifact through `Engine::download` (decrypting and verifying its SHA-256) into nothing, so
//! the peak covers encrypting and decrypting the whole artifact.

use serde_json::{json, Value};
use std::error::Error;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;
use trialport_benches::{process, LbSource, DATASET, STUDY};
use trialport_core::crypto::FileKeyProvider;
use trialport_core::engine::Engine;
use trialport_core::request::ExportDataRequest;
use trialport_core::sink::LocalDirSink;
use trialport_formats::default_formats;

const FORMATS: &[&str] = &[
    "csv",
    "ndjson",
    "json",
    "parquet",
    "arrow-ipc",
    "xlsx",
    "dataset-json",
    "ndjson+aes",
];
/// The suffix of a format name that runs the export encrypted at rest.
const ENCRYPTED: &str = "+aes";
const FULL_ROWS: usize = 5_000_000;
const FULL_XLSX_ROWS: usize = 1_100_000;
const QUICK_ROWS: usize = 200_000;
const DEFAULT_LIMIT_MB: f64 = 300.0;
/// The row count from which an XLSX needs a second sheet (a sheet holds 1,048,576 rows, one of them the header).
const XLSX_SHEET_ROWS: usize = 1_048_576;

const USAGE: &str = "usage: memcheck [--quick] [--rows N] [--xlsx-rows N] [--formats a,b,...] \
                     [--limit-mb MB] | memcheck --format F --rows N";

type Res<T> = Result<T, Box<dyn Error>>;

fn parse_rows(v: &str) -> Res<usize> {
    v.replace(['_', ','], "")
        .parse()
        .map_err(|_| format!("not a row count: '{v}'").into())
}

/// The child: one export job (and, encrypted, its download), then one JSON line on stdout.
fn child(name: &str, rows: usize) -> Res<()> {
    let (format, encrypted) = match name.strip_suffix(ENCRYPTED) {
        Some(f) => (f, true),
        None => (name, false),
    };
    let dir = tempfile::Builder::new().prefix("tp-memcheck-").tempdir()?;
    let artifacts = dir.path().join("artifacts");
    let mut builder = Engine::builder()
        .formats(default_formats())
        .source(Arc::new(LbSource::new(rows)))
        .sink(Arc::new(LocalDirSink::new(&artifacts)?))
        .workers(1);
    if encrypted {
        builder = builder.encryption(Arc::new(FileKeyProvider::create(dir.path().join("keys"))?));
    }
    let engine = builder.build()?;
    let key = engine.create_initial_admin_key("bench")?;
    let credential = format!("ApiKey {key}");
    let baseline_kib = process::rss_kib();
    let start = Instant::now();
    let job = engine.export_data(
        &credential,
        ExportDataRequest::new(STUDY, &[DATASET], format),
    )?;
    let job = engine.wait(&credential, job.id, None)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut download_s = None;
    if encrypted && job.state == trialport_core::job::JobState::Succeeded {
        let start = Instant::now();
        let mut d = engine.download(&credential, job.id, None)?;
        std::io::copy(&mut d.reader, &mut std::io::sink())
            .map_err(|e| trialport_core::engine::download_error(&e))?;
        download_s = Some(start.elapsed().as_secs_f64());
    }
    let peak_kib = process::peak_rss_kib();
    let data = job
        .artifacts
        .iter()
        .find(|a| a.rows.is_some())
        .or(job.artifacts.first());
    let sheets = match data {
        Some(a) if a.name.ends_with(".xlsx") && !encrypted => Some(count_sheets(
            &artifacts.join(job.id.to_string()).join(&a.name),
        )?),
        _ => None,
    };
    let line = json!({
        "format": name,
        "encrypted": encrypted,
        "download_s": download_s,
        "rows": rows,
        "state": job.state.as_str(),
        "rows_written": data.and_then(|a| a.rows),
        "artifact": data.map(|a| a.name.clone()),
        "bytes": data.map(|a| a.bytes),
        "sheets": sheets,
        "seconds": seconds,
        "baseline_rss_kib": baseline_kib,
        "peak_rss_kib": peak_kib,
        "error": job.error,
    });
    println!("{line}");
    drop(engine);
    dir.close()?;
    Ok(())
}

/// Worksheets in an XLSX file (entries `xl/worksheets/sheet*.xml` of the zip).
fn count_sheets(path: &std::path::Path) -> Res<usize> {
    let archive = zip::ZipArchive::new(std::io::BufReader::new(std::fs::File::open(path)?))?;
    let mut sheets = 0;
    for name in archive.file_names() {
        let name = name?;
        if name.starts_with("xl/worksheets/sheet") && name.ends_with(".xml") {
            sheets += 1;
        }
    }
    Ok(sheets)
}

struct Options {
    rows: usize,
    xlsx_rows: usize,
    formats: Vec<String>,
    limit_mb: f64,
}

fn parse_parent(args: &[String]) -> Res<Options> {
    let mut o = Options {
        rows: FULL_ROWS,
        xlsx_rows: FULL_XLSX_ROWS,
        formats: FORMATS.iter().map(|s| s.to_string()).collect(),
        limit_mb: DEFAULT_LIMIT_MB,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => {
                o.rows = QUICK_ROWS;
                o.xlsx_rows = QUICK_ROWS;
            }
            "--rows" => o.rows = parse_rows(value()?)?,
            "--xlsx-rows" => o.xlsx_rows = parse_rows(value()?)?,
            "--formats" => o.formats = value()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--limit-mb" => {
                o.limit_mb = value()?
                    .parse()
                    .map_err(|_| format!("--limit-mb needs a number\n{USAGE}"))?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}").into()),
        }
    }
    Ok(o)
}

/// Runs one child; returns its JSON line, or an object with `error`.
fn run_child(format: &str, rows: usize) -> Value {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return json!({"format": format, "rows": rows, "error": e.to_string()}),
    };
    let started = Instant::now();
    let out = Command::new(exe)
        .args(["--format", format, "--rows", &rows.to_string()])
        .output();
    let wall = started.elapsed().as_secs_f64();
    match out {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let parsed = stdout
                .lines()
                .rev()
                .find(|l| l.starts_with('{'))
                .and_then(|l| serde_json::from_str::<Value>(l).ok());
            match parsed {
                Some(mut v) if out.status.success() => {
                    v["process_s"] = json!(wall);
                    v
                }
                _ => json!({"format": format, "rows": rows, "process_s": wall,
                    "error": format!("child exited {}: {}", out.status,
                        String::from_utf8_lossy(&out.stderr).trim())}),
            }
        }
        Err(e) => json!({"format": format, "rows": rows, "error": e.to_string()}),
    }
}

fn parent(o: &Options) -> Res<bool> {
    let total = Instant::now();
    let mut ok = true;
    let mut lines = vec![
        format!(
            "| format | rows | state | rows written | sheets | output MB | job s | baseline RSS MiB | peak RSS MiB | \
             peak RSS MB | limit {} MB |",
            o.limit_mb
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|".to_string(),
    ];
    for f in &o.formats {
        let rows = if f == "xlsx" { o.xlsx_rows } else { o.rows };
        eprintln!("memcheck: {f}, {rows} rows ...");
        let r = run_child(f, rows);
        eprintln!("memcheck: {r}");
        let kib = |k: &str| r[k].as_u64();
        let peak_mb = kib("peak_rss_kib").map(|k| k as f64 * 1024.0 / 1e6);
        let state = r["state"].as_str().unwrap_or("error");
        let written = r["rows_written"].as_u64();
        let mut verdict = Vec::new();
        if r.get("error").is_some_and(|e| !e.is_null()) {
            verdict.push(format!("FAIL: {}", r["error"]).replace('|', "/"));
        }
        if state != "succeeded" {
            verdict.push(format!("FAIL: job {state}"));
        }
        if written != Some(rows as u64) {
            verdict.push(format!("FAIL: {written:?} rows written"));
        }
        let sheets = r["sheets"].as_u64();
        if f == "xlsx" && rows >= XLSX_SHEET_ROWS && sheets.is_some_and(|s| s < 2) {
            verdict.push(format!("FAIL: {rows} rows on {sheets:?} sheet(s)"));
        }
        match peak_mb {
            Some(mb) if mb <= o.limit_mb => {}
            Some(_) => verdict.push("FAIL: over the limit".to_string()),
            None => verdict.push("FAIL: no peak RSS".to_string()),
        }
        if !verdict.is_empty() {
            ok = false;
        }
        let num = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
        lines.push(format!(
            "| {f} | {rows} | {state} | {} | {} | {} | {} | {} | {} | {} | {} |",
            written.map_or("-".to_string(), |w| w.to_string()),
            sheets.map_or("-".to_string(), |s| s.to_string()),
            num(r["bytes"].as_u64().map(|b| b as f64 / 1e6), 1),
            num(r["seconds"].as_f64(), 1),
            num(kib("baseline_rss_kib").map(|k| k as f64 / 1024.0), 0),
            num(kib("peak_rss_kib").map(|k| k as f64 / 1024.0), 0),
            num(peak_mb, 0),
            if verdict.is_empty() {
                "ok".to_string()
            } else {
                verdict.join("; ")
            }
        ));
    }
    for l in &lines {
        println!("{l}");
    }
    println!(
        "\ntotal {:.0} s; {}",
        total.elapsed().as_secs_f64(),
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--format") {
        match args.as_slice() {
            [_, format, flag, rows] if flag == "--rows" => {
                parse_rows(rows).and_then(|rows| child(format, rows).map(|()| true))
            }
            _ => Err(USAGE.into()),
        }
    } else {
        parse_parent(&args).and_then(|o| parent(&o))
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("memcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
