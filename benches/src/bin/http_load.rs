//! Load on the HTTP service, and the same calls through the in-process engine: the overhead of the HTTP layer.
//!
//! ```text
//! http_load [--clients N] [--seconds S] [--mode http|engine|both] [--sigterm-after S] [--trialport PATH]
//! ```
//!
//! Makes a home over a small study (`init` of the `trialport` binary), then N clients for S seconds, each calling
//! in turn: `list_jobs` (8 calls in 20), `get_job` (7), `formats` (4) and a small `export_data` (1; CSV of a
//! 60-row dataset). `http` runs `trialport serve` on a loopback port and the clients are reqwest (keep-alive); `engine`
//! calls `Session` methods on an engine of the same home in this process. Afterwards every job created must reach
//! `succeeded` (zero lost jobs), no call may have failed with a server error (5xx, EXP005), and `audit verify` must
//! pass. With `--sigterm-after`, the server (`--drain-seconds 10`) gets SIGTERM that long into the run: it must
//! exit 0 within its drain limit plus 10 s (the workers stop at their next batch), no job may be left `running` in
//! the store it leaves (each is finished or queued again), and an engine opened on the home afterwards must finish
//! every job the server accepted.
//!
//! Prints one JSON object per mode (calls, calls/s, p50 and p99 latency in ms, 5xx, lost jobs, the 1-minute load
//! average before and after) and, with both modes, the ratios of HTTP over engine; exits 1 when a check fails.
//! Every address is loopback; the run is bounded by `--seconds`.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use trialport_core::job::{JobKind, JobReads, JobState};
use trialport_core::request::ListJobsRequest;

struct Args {
    clients: usize,
    seconds: f64,
    mode: String,
    sigterm_after: Option<f64>,
    trialport: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        clients: 64,
        seconds: 60.0,
        mode: "both".into(),
        sigterm_after: None,
        trialport: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("trialport")))
            .unwrap_or_else(|| PathBuf::from("trialport")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => a.clients = value()?.parse().map_err(|_| "bad --clients")?,
            "--seconds" => a.seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--mode" => a.mode = value()?,
            "--sigterm-after" => {
                a.sigterm_after = Some(value()?.parse().map_err(|_| "bad --sigterm-after")?)
            }
            "--trialport" => a.trialport = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !["http", "engine", "both"].contains(&a.mode.as_str()) {
        return Err("--mode is http, engine or both".into());
    }
    Ok(a)
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    server_errors: u64,
    other_errors: u64,
    /// Calls that failed at the transport (connection refused or reset: only after SIGTERM).
    transport_errors: u64,
    jobs: Vec<String>,
}

/// The 1-minute load average (Linux; `None` elsewhere), recorded with the figures: the machine may be shared.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A home with study S1 (DM, 60 rows) made by `trialport init`; returns the admin credential.
fn make_home(trialport: &Path, dir: &Path) -> Result<(PathBuf, String), String> {
    let src = dir.join("source/S1");
    std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    let mut dm = String::from("STUDYID,USUBJID,SITEID,AGE\n");
    for i in 0..60 {
        dm.push_str(&format!("S1,S1-{i:03},{},{}\n", i % 4, 30 + i % 40));
    }
    std::fs::write(src.join("DM.csv"), dm).map_err(|e| e.to_string())?;
    let home = dir.join("home");
    let out = Command::new(trialport)
        .arg("--home")
        .arg(&home)
        .arg("init")
        .arg("--source")
        .arg(dir.join("source"))
        .args(["--org", "acme"])
        .env_remove("TRIALPORT_HOME")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", trialport.display()))?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| "init printed no JSON")?;
    let key = v["api_key"].as_str().ok_or("init printed no key")?;
    Ok((home, format!("ApiKey {key}")))
}

/// The drain limit `serve` is given.
const DRAIN_SECS: f64 = 10.0;

const EXPORT: &str = r#"{"study": "S1", "datasets": ["DM"], "format": "csv"}"#;

/// One client's loop until `stop`; `call(i)` makes call number i and tells its outcome.
fn client_loop(stop: &AtomicBool, tally: &Mutex<Tally>, mut call: impl FnMut(usize) -> Outcome) {
    let mut local = Tally::default();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let outcome = call(i);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Outcome::Ok(job) => {
                local.latencies_ms.push(ms);
                local.jobs.extend(job);
            }
            Outcome::ServerError => local.server_errors += 1,
            Outcome::OtherError => local.other_errors += 1,
            Outcome::Transport => {
                local.transport_errors += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        i += 1;
    }
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    t.latencies_ms.extend(local.latencies_ms);
    t.server_errors += local.server_errors;
    t.other_errors += local.other_errors;
    t.transport_errors += local.transport_errors;
    t.jobs.extend(local.jobs);
}

enum Outcome {
    /// Done; the id of a job it created.
    Ok(Option<String>),
    ServerError,
    OtherError,
    Transport,
}

fn run_engine(a: &Args, home: &Path, cred: &str) -> Result<Value, String> {
    let engine = trialport_formats::home::engine_builder(home)
        .and_then(|b| b.workers(2).build())
        .map_err(|e| e.to_string())?;
    let first = engine
        .session(cred)
        .export_json(JobKind::Data, EXPORT)
        .map_err(|e| e.to_string())?;
    let stop = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.clients {
            s.spawn(|| {
                client_loop(&stop, &tally, |i| {
                    let session = engine.session(cred);
                    let r = match i % 20 {
                        0 => session
                            .export_json(JobKind::Data, EXPORT)
                            .map(|j| Some(j.id.to_string())),
                        1..=4 => session.formats().map(|_| None),
                        5..=12 => session.list_jobs(ListJobsRequest::default()).map(|_| None),
                        _ => session.get_job(first.id).map(|_| None),
                    };
                    match r {
                        Ok(job) => Outcome::Ok(job),
                        Err(e) if e.code().as_str() == "EXP005" => Outcome::ServerError,
                        Err(_) => Outcome::OtherError,
                    }
                })
            });
        }
        std::thread::sleep(Duration::from_secs_f64(a.seconds));
        stop.store(true, Ordering::SeqCst);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut t = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    // Every job created finishes.
    let lost = count_unfinished(&engine, cred, &t.jobs);
    drop(engine);
    Ok(summary("engine", a, elapsed, &mut t, lost))
}

/// How many of `jobs` do not reach `succeeded` (waiting up to 120 s for each; the engine's workers run them).
fn count_unfinished(engine: &trialport_core::engine::Engine, cred: &str, jobs: &[String]) -> u64 {
    let session = engine.session(cred);
    jobs.iter()
        .filter(|id| {
            !trialport_core::request::job_id(id)
                .and_then(|id| session.wait(id, Some(Duration::from_secs(120))))
                .is_ok_and(|j| j.state == JobState::Succeeded)
        })
        .count() as u64
}

fn summary(mode: &str, a: &Args, elapsed: f64, t: &mut Tally, lost: u64) -> Value {
    t.latencies_ms.sort_by(f64::total_cmp);
    let calls = t.latencies_ms.len();
    json!({
        "mode": mode, "clients": a.clients, "seconds": (elapsed * 10.0).round() / 10.0, "calls": calls,
        "calls_per_s": (calls as f64 / elapsed).round(),
        "p50_ms": (percentile(&t.latencies_ms, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (percentile(&t.latencies_ms, 0.99) * 100.0).round() / 100.0,
        "server_errors": t.server_errors, "other_errors": t.other_errors,
        "transport_errors": t.transport_errors, "jobs_created": t.jobs.len(), "lost_jobs": lost,
    })
}

fn run_http(a: &Args, home: &Path, cred: &str) -> Result<Value, String> {
    let mut child = Command::new(&a.trialport)
        .arg("--home")
        .arg(home)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .args(["--workers", "2", "--drain-seconds", &DRAIN_SECS.to_string()])
        .env("TRIALPORT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start serve: {e}"))?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?),
        &mut line,
    )
    .map_err(|e| e.to_string())?;
    let ready: Value = serde_json::from_str(&line).map_err(|_| "serve printed no ready line")?;
    let base = format!("http://{}", ready["listen"].as_str().unwrap_or_default());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(a.clients)
        .build()
        .map_err(|e| e.to_string())?;
    let export = |c: &reqwest::blocking::Client| {
        c.post(format!("{base}/api/v1/exports/data"))
            .header("authorization", cred)
            .header("content-type", "application/json")
            .body(EXPORT)
            .send()
    };
    let first: Value = export(&client)
        .and_then(|r| r.json())
        .map_err(|e| e.to_string())?;
    let first_id = first["id"].as_str().unwrap_or_default().to_string();
    let stop = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    let pid = child.id();
    let mut terminated: Option<(Instant, Option<i32>, f64)> = None;
    std::thread::scope(|s| {
        for _ in 0..a.clients {
            s.spawn(|| {
                let c = client.clone();
                client_loop(&stop, &tally, |i| {
                    let r = match i % 20 {
                        0 => export(&c),
                        1..=4 => c
                            .get(format!("{base}/api/v1/exports/formats"))
                            .header("authorization", cred)
                            .send(),
                        5..=12 => c
                            .get(format!("{base}/api/v1/exports/jobs"))
                            .header("authorization", cred)
                            .send(),
                        _ => c
                            .get(format!("{base}/api/v1/exports/jobs/{first_id}"))
                            .header("authorization", cred)
                            .send(),
                    };
                    match r {
                        Ok(r) if r.status().is_server_error() => Outcome::ServerError,
                        Ok(r) if r.status().is_success() => {
                            let created = r.status() == reqwest::StatusCode::ACCEPTED;
                            match r.json::<Value>() {
                                Ok(v) if created => {
                                    Outcome::Ok(v["id"].as_str().map(str::to_string))
                                }
                                Ok(_) => Outcome::Ok(None),
                                Err(_) => Outcome::Transport,
                            }
                        }
                        Ok(_) => Outcome::OtherError,
                        Err(_) => Outcome::Transport,
                    }
                })
            });
        }
        if let Some(after) = a.sigterm_after {
            std::thread::sleep(Duration::from_secs_f64(after.min(a.seconds)));
            let sent = Instant::now();
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let status = loop {
                match child.try_wait() {
                    Ok(Some(st)) => break st.code(),
                    Ok(None) if sent.elapsed() < Duration::from_secs(60) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        break None;
                    }
                }
            };
            terminated = Some((sent, status, sent.elapsed().as_secs_f64()));
            std::thread::sleep(Duration::from_millis(200));
        } else {
            std::thread::sleep(Duration::from_secs_f64(a.seconds));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let elapsed = terminated
        .map(|(sent, _, _)| sent.duration_since(started).as_secs_f64())
        .unwrap_or_else(|| started.elapsed().as_secs_f64());
    let mut t = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut lost = 0u64;
    let mut result;
    if let Some((_, code, secs)) = terminated {
        // The server is gone: read the store as it is, before anything can rescue a lease. No job may be left
        // `running` under the dead process's lease.
        let store = trialport_core::store::SqliteStore::open(&home.join("trialport.db"))
            .map_err(|e| e.to_string())?;
        let mut running = 0u64;
        let mut queued = 0u64;
        for id in &t.jobs {
            let state = trialport_core::request::job_id(id)
                .and_then(|id| store.get_job(id))
                .map(|j| j.state);
            match state {
                Ok(JobState::Running) => running += 1,
                Ok(JobState::Queued) => queued += 1,
                _ => {}
            }
        }
        drop(store);
        // Then the jobs given back to the queue are taken up again by a new engine on the home: none is lost.
        let engine = trialport_formats::home::engine_builder(home)
            .and_then(|b| b.workers(2).build())
            .map_err(|e| e.to_string())?;
        lost = count_unfinished(&engine, cred, &t.jobs);
        drop(engine);
        result = summary("http", a, elapsed, &mut t, lost);
        result["sigterm"] = json!({"exit_code": code, "exit_seconds": (secs * 100.0).round() / 100.0,
            "jobs_left_running": running, "jobs_queued_at_exit": queued});
    } else {
        for id in &t.jobs {
            let deadline = Instant::now() + Duration::from_secs(120);
            let ok = loop {
                let state = client
                    .get(format!("{base}/api/v1/exports/jobs/{id}"))
                    .header("authorization", cred)
                    .send()
                    .and_then(|r| r.json::<Value>())
                    .map(|v| v["state"].as_str().unwrap_or_default().to_string());
                match state.as_deref() {
                    Ok("succeeded") => break true,
                    Ok("queued" | "running") if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => break false,
                }
            };
            lost += u64::from(!ok);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let code = child.wait().map(|s| s.code()).unwrap_or(None);
        result = summary("http", a, elapsed, &mut t, lost);
        result["exit_code"] = json!(code);
    }
    Ok(result)
}

fn audit_verify(trialport: &Path, home: &Path, cred: &str) -> bool {
    Command::new(trialport)
        .arg("--home")
        .arg(home)
        .args(["--credential", cred, "audit", "verify"])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot make a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    let mut ok = true;
    let mut results = Vec::new();
    for mode in ["engine", "http"] {
        if a.mode != "both" && a.mode != mode {
            continue;
        }
        let dir = tmp.path().join(mode);
        let load_before = load_average();
        let outcome = make_home(&a.trialport, &dir).and_then(|(home, cred)| {
            let r = if mode == "engine" {
                run_engine(&a, &home, &cred)
            } else {
                run_http(&a, &home, &cred)
            }?;
            Ok((r, audit_verify(&a.trialport, &home, &cred)))
        });
        match outcome {
            Ok((mut r, verified)) => {
                r["audit_verified"] = json!(verified);
                r["load_average"] = json!([load_before, load_average()]);
                let sigterm_ok = r.get("sigterm").is_none_or(|s| {
                    s["exit_code"] == 0
                        && s["jobs_left_running"] == 0
                        && s["exit_seconds"]
                            .as_f64()
                            .is_some_and(|t| t <= DRAIN_SECS + 10.0)
                });
                let exit_ok = r.get("exit_code").is_none_or(|c| *c == 0);
                let run_ok = r["server_errors"] == 0
                    && r["lost_jobs"] == 0
                    && verified
                    && sigterm_ok
                    && exit_ok
                    && (r.get("sigterm").is_some()
                        || (r["transport_errors"] == 0 && r["other_errors"] == 0));
                ok &= run_ok;
                println!("{r}");
                results.push(r);
            }
            Err(e) => {
                eprintln!("{mode}: {e}");
                ok = false;
            }
        }
    }
    if let [engine, http] = results.as_slice() {
        let ratio = |k: &str| {
            let (e, h) = (
                engine[k].as_f64().unwrap_or(0.0),
                http[k].as_f64().unwrap_or(0.0),
            );
            if e > 0.0 {
                (h / e * 100.0).round() / 100.0
            } else {
                0.0
            }
        };
        println!(
            "{}",
            json!({"http_over_engine": {"p50": ratio("p50_ms"), "p99": ratio("p99_ms"),
                "calls_per_s": ratio("calls_per_s")}})
        );
    }
    if !ok {
        eprintln!("http_load: a check failed (server errors, lost jobs, audit, or SIGTERM)");
        std::process::exit(1);
    }
}
