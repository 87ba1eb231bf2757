//! `enc_ratio`: the cost of encryption at rest on the whole job path, measured by interleaving.
//!
//! ```text
//! enc_ratio [--rows N] [--reps R] [--format F]     defaults: 1,000,000 rows, 9 repetitions, csv
//! ```
//!
//! Two engines in one process over the same in-memory LB table (generated once, untimed): one writes artifacts to
//! a plain `LocalDirSink`, the other to the same kind of sink encrypted at rest (`EngineBuilder::encryption` with
//! a `FileKeyProvider`, as a home does). Each repetition runs one `export_data` + `wait` on each engine, in
//! alternating order (plain first on even repetitions, encrypted first on odd ones), after one untimed warm-up
//! run of each; the artifacts are deleted between runs, outside the timing. Both jobs record the SHA-256 of the
//! same plaintext, which is checked. Prints wall and process-CPU medians per engine and their ratios, as JSON and
//! a markdown row. On a shared machine, only interleaved ratios like these mean much.

use serde_json::json;
use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use trialport_benches::{lb_batches, lb_schema, process, DATASET, DEFAULT_BATCH_ROWS, STUDY};
use trialport_core::crypto::FileKeyProvider;
use trialport_core::engine::Engine;
use trialport_core::job::JobState;
use trialport_core::request::ExportRequest;
use trialport_core::sink::LocalDirSink;
use trialport_core::source::MemorySource;
use trialport_formats::default_formats;

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage: enc_ratio [--rows N] [--reps R] [--format F]";

fn engine(source: Arc<MemorySource>, dir: &Path, encrypted: bool) -> Res<(Engine, String)> {
    let mut b = Engine::builder()
        .formats(default_formats())
        .source(source)
        .sink(Arc::new(LocalDirSink::new(dir.join("artifacts"))?))
        .workers(1);
    if encrypted {
        b = b.encryption(Arc::new(FileKeyProvider::create(dir.join("keys"))?));
    }
    let e = b.build()?;
    let key = e.create_initial_admin_key("bench")?;
    Ok((e, format!("ApiKey {key}")))
}

/// One job: (wall s, CPU s, SHA-256 of the data artifact).
fn run(e: &Engine, cred: &str, dir: &Path, format: &str) -> Res<(f64, f64, String)> {
    let cpu = process::cpu_seconds();
    let start = Instant::now();
    let job = e.export_data(cred, ExportRequest::data(STUDY, &[DATASET], format))?;
    let job = e.wait(cred, job.id, None)?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = process::cpu_seconds() - cpu;
    if job.state != JobState::Succeeded {
        return Err(format!("job ended {:?}: {:?}", job.state, job.error).into());
    }
    std::fs::remove_dir_all(dir.join("artifacts").join(job.id.to_string()))?;
    let sha = job
        .artifacts
        .first()
        .map(|a| a.sha256.clone())
        .unwrap_or_default();
    Ok((wall, cpu, sha))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Res<()> {
    let mut rows = 1_000_000usize;
    let mut reps = 9usize;
    let mut format = "csv".to_string();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--rows" => rows = value()?.replace(['_', ','], "").parse()?,
            "--reps" => reps = value()?.parse()?,
            "--format" => format = value()?.clone(),
            _ => return Err(format!("unknown argument '{a}'\n{USAGE}").into()),
        }
    }
    let source = MemorySource::new();
    source.add(
        STUDY,
        DATASET,
        lb_schema(),
        lb_batches(rows, DEFAULT_BATCH_ROWS).collect(),
    )?;
    let source = Arc::new(source);
    let (pdir, edir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (plain, pcred) = engine(source.clone(), pdir.path(), false)?;
    let (enc, ecred) = engine(source, edir.path(), true)?;
    let (_, _, psha) = run(&plain, &pcred, pdir.path(), &format)?;
    let (_, _, esha) = run(&enc, &ecred, edir.path(), &format)?;
    if psha != esha {
        return Err("the encrypted job recorded another SHA-256 than the plain one".into());
    }
    let (mut pw, mut pc, mut ew, mut ec) = (vec![], vec![], vec![], vec![]);
    for r in 0..reps {
        for encrypted in [r % 2 == 1, r % 2 == 0] {
            if encrypted {
                let (w, c, _) = run(&enc, &ecred, edir.path(), &format)?;
                ew.push(w);
                ec.push(c);
            } else {
                let (w, c, _) = run(&plain, &pcred, pdir.path(), &format)?;
                pw.push(w);
                pc.push(c);
            }
        }
        eprintln!(
            "rep {r}: plain {:.3} s, encrypted {:.3} s",
            pw[pw.len() - 1],
            ew[ew.len() - 1]
        );
    }
    let (mpw, mew, mpc, mec) = (
        median(pw.clone()),
        median(ew.clone()),
        median(pc),
        median(ec),
    );
    let ratios: Vec<f64> = pw.iter().zip(&ew).map(|(p, e)| e / p).collect();
    let out = json!({
        "format": format, "rows": rows, "reps": reps,
        "plain_wall_median_s": mpw, "encrypted_wall_median_s": mew, "wall_ratio": mew / mpw,
        "median_of_paired_ratios": median(ratios),
        "plain_cpu_median_s": mpc, "encrypted_cpu_median_s": mec, "cpu_ratio": mec / mpc,
        "plain_wall_s": pw, "encrypted_wall_s": ew,
    });
    println!("{out}");
    println!(
        "| {format} | {rows} | {reps} | {mpw:.3} | {mew:.3} | {:.3}x | {mpc:.3} | {mec:.3} | {:.3}x |",
        mew / mpw,
        mec / mpc
    );
    Ok(())
}
