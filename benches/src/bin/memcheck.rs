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
//!
//! **Disk.** The artifacts are real files (NDJSON at 5,000,000 rows is about 1.9 GB, and an XLSX's worksheets are
//! spooled uncompressed to the temporary directory while it is written). Before each format the parent reads the
//! free space of the temporary directory. When it holds less than [`GENEROUS_BYTES_PER_ROW`] per row plus
//! [`DISK_RESERVE`], a [`PROBE_ROWS`]-row run of the format measures the bytes it puts on disk per row, and the
//! row count is lowered to what fits; the limit is then lowered in proportion (not below [`MIN_LIMIT_MB`]), so a
//! smaller run is held to the same bytes per row. The table marks such a run. Fewer than [`MIN_ROWS`] rows fitting
//! is a failure that names the free space, not a silent pass.

use serde_json::{json, Value};
use std::error::Error;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;
use trialport_benches::{process, LbSource, DATASET, STUDY};
use trialport_core::crypto::FileKeyProvider;
use trialport_core::engine::Engine;
use trialport_core::request::ExportRequest;
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
/// Disk kept free beside the artifacts when choosing a row count.
const DISK_RESERVE: u64 = 512 * 1024 * 1024;
/// Bytes on disk per row that no default format exceeds (NDJSON writes about 390; an XLSX about 100 zipped plus
/// its uncompressed worksheet spool): with this much free, no probe is run.
const GENEROUS_BYTES_PER_ROW: u64 = 2048;
/// Rows of the probe run that measures a format's bytes on disk per row.
const PROBE_ROWS: usize = 100_000;
/// The fewest rows a run lowered for disk space may have (below this, the check fails).
const MIN_ROWS: usize = 1_000_000;
/// The lowest limit a run lowered for disk space is held to (fixed costs: threads, buffers, one Parquet row group).
const MIN_LIMIT_MB: f64 = 64.0;
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
    let job = engine.export_data(&credential, ExportRequest::data(STUDY, &[DATASET], format))?;
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
    let (sheets, spooled) = match data {
        Some(a) if a.name.ends_with(".xlsx") && !encrypted => {
            // A job's files are in the folder of its committed attempt.
            let folder = artifacts.join(job.attempt_folder(job.attempt));
            let (sheets, spooled) = worksheets(&folder.join(&a.name))?;
            (Some(sheets), spooled)
        }
        _ => (None, 0),
    };
    let disk_bytes: u64 = job.artifacts.iter().map(|a| a.bytes).sum::<u64>() + spooled;
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
        "disk_bytes": disk_bytes,
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

/// Worksheets in an XLSX file (entries `xl/worksheets/sheet*.xml` of the zip), and their uncompressed bytes (what
/// the writer spooled to the temporary directory).
fn worksheets(path: &std::path::Path) -> Res<(usize, u64)> {
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(std::fs::File::open(path)?))?;
    let (mut sheets, mut bytes) = (0, 0);
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i)?;
        let name = entry.name()?;
        if name.starts_with("xl/worksheets/sheet") && name.ends_with(".xml") {
            sheets += 1;
            bytes += entry.size();
        }
    }
    Ok((sheets, bytes))
}

/// Bytes free to an unprivileged writer in the filesystem of `dir`.
fn free_bytes(dir: &std::path::Path) -> Res<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The rows (at most `wanted`) of format `f` that fit in the temporary directory's free space, and why fewer when
/// fewer: runs a probe when the space is not plainly enough.
fn rows_that_fit(f: &str, wanted: usize) -> Res<(usize, Option<String>)> {
    let tmp = std::env::temp_dir();
    let free = free_bytes(&tmp)?;
    let room = free.saturating_sub(DISK_RESERVE);
    if (wanted as u64).saturating_mul(GENEROUS_BYTES_PER_ROW) <= room || wanted <= PROBE_ROWS {
        return Ok((wanted, None));
    }
    let probe = run_child(f, PROBE_ROWS);
    let Some(bytes) = probe["disk_bytes"]
        .as_u64()
        .filter(|_| probe["state"] == "succeeded")
    else {
        return Err(format!("{f}: the {PROBE_ROWS}-row probe failed: {probe}").into());
    };
    // 10% over the probe's bytes per row: later rows of the generated table are a little wider (longer ids).
    let per_row = (bytes as f64 / PROBE_ROWS as f64 * 1.1).max(1.0);
    let fit = (room as f64 / per_row) as usize;
    if fit >= wanted {
        return Ok((wanted, None));
    }
    let mb = |b: f64| b / 1e6;
    let why = format!(
        "{:.0} MB free in {}: {:.0} B/row on disk, {wanted} rows need {:.0} MB",
        mb(free as f64),
        tmp.display(),
        per_row,
        mb(per_row * wanted as f64)
    );
    if fit < MIN_ROWS {
        return Err(format!("{f}: not enough disk for {MIN_ROWS} rows ({why})").into());
    }
    // A round number of rows, so reruns on a similar disk compare.
    let rows = fit / 100_000 * 100_000;
    Ok((rows, Some(why)))
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
    let mut notes = Vec::new();
    for f in &o.formats {
        let wanted = if f == "xlsx" { o.xlsx_rows } else { o.rows };
        let (rows, lowered) = match rows_that_fit(f, wanted) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("memcheck: {e}");
                ok = false;
                lines.push(format!(
                    "| {f} | {wanted} | not run | - | - | - | - | - | - | - | FAIL: {} |",
                    e.to_string().replace('|', "/")
                ));
                continue;
            }
        };
        let limit_mb = match &lowered {
            Some(why) => {
                eprintln!("memcheck: {f}: {rows} rows instead of {wanted} ({why})");
                notes.push(format!(
                    "{f}: {rows} rows instead of {wanted}, limit lowered in proportion ({why})"
                ));
                (o.limit_mb * rows as f64 / wanted as f64).max(MIN_LIMIT_MB)
            }
            None => o.limit_mb,
        };
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
            Some(mb) if mb <= limit_mb => {}
            Some(_) => verdict.push(format!("FAIL: over the limit ({limit_mb:.0} MB)")),
            None => verdict.push("FAIL: no peak RSS".to_string()),
        }
        if !verdict.is_empty() {
            ok = false;
        }
        let num = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
        lines.push(format!(
            "| {f}{} | {rows} | {state} | {} | {} | {} | {} | {} | {} | {} | {} |",
            if lowered.is_some() {
                " (fewer rows: disk)"
            } else {
                ""
            },
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
    for n in &notes {
        println!("\n{n}");
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
