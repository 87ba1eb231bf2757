//! SIGTERM during a load run: `trialport serve` under eight HTTP clients (exports, lists, gets and formats) gets
//! SIGTERM while its workers run jobs. It must exit 0 within its drain limit, leave no job `running` under its
//! dead lease (each job is finished or back in the queue), have answered no request with a 5xx, and lose no job:
//! every export it accepted is in the store, and once the home runs again every one of them succeeds, with the
//! trail and the job rows agreeing (the crash checks of `common::lab`).

#![allow(clippy::unwrap_used)]

mod common;

use common::lab::Lab;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The drain limit given to `serve`.
const DRAIN_SECS: u64 = 5;
/// What exit may take beyond the drain limit: the workers stop at their next batch and give their jobs back, and
/// the audit trail is flushed.
const EXIT_GRACE_SECS: u64 = 10;

#[test]
fn sigterm_under_load_exits_0_and_every_job_is_finished_or_queued_again() {
    // LB big enough that an export runs for a while (tens of batches), a lease that cannot expire during the test
    // (a job left `running` would stay so), and three attempts.
    let lab = Lab::new(150_000, 60, 3);
    let drain = DRAIN_SECS.to_string();
    let mut child = lab
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--workers",
            "2",
            "--drain-seconds",
            &drain,
        ])
        .env("TRIALPORT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    let base = format!("http://{}", ready["listen"].as_str().unwrap());
    let client = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let cred = lab.cred.as_str();

    let stop = AtomicBool::new(false);
    let server_errors = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let accepted: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (status, exit_after) = std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let r = match i % 4 {
                        0 => client
                            .post(format!("{base}/api/v1/exports/data"))
                            .header("authorization", cred)
                            .header("content-type", "application/json")
                            .body(r#"{"study": "S1", "datasets": ["LB"], "format": "csv"}"#)
                            .send(),
                        1 => client
                            .get(format!("{base}/api/v1/exports/jobs"))
                            .header("authorization", cred)
                            .send(),
                        2 => client
                            .get(format!("{base}/api/v1/exports/formats"))
                            .header("authorization", cred)
                            .send(),
                        _ => {
                            let last = accepted.lock().unwrap().last().cloned();
                            let id = last.unwrap_or_else(|| "none".into());
                            client
                                .get(format!("{base}/api/v1/exports/jobs/{id}"))
                                .header("authorization", cred)
                                .send()
                        }
                    };
                    i += 1;
                    match r {
                        Ok(r) => {
                            calls.fetch_add(1, Ordering::SeqCst);
                            if r.status().is_server_error() {
                                server_errors.fetch_add(1, Ordering::SeqCst);
                            } else if r.status() == StatusCode::ACCEPTED {
                                let v: Value = r.json().unwrap();
                                accepted
                                    .lock()
                                    .unwrap()
                                    .push(v["id"].as_str().unwrap().to_string());
                            }
                        }
                        // Refused or reset: the server is shutting down.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
        // SIGTERM once the workers hold jobs (seen through the API) and some are waiting behind them.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let running: Value = client
                .get(format!("{base}/api/v1/exports/jobs?status=running"))
                .header("authorization", cred)
                .send()
                .unwrap()
                .json()
                .unwrap();
            let n = running["items"].as_array().map_or(0, Vec::len);
            if n > 0 && accepted.lock().unwrap().len() >= 4 {
                break;
            }
            assert!(Instant::now() < deadline, "no job ran within 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = Instant::now();
        let killed = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let limit = Duration::from_secs(DRAIN_SECS + EXIT_GRACE_SECS);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if sent.elapsed() > limit {
                let _ = child.kill();
                stop.store(true, Ordering::SeqCst);
                panic!("serve did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let exit_after = sent.elapsed();
        stop.store(true, Ordering::SeqCst);
        (status, exit_after)
    });
    eprintln!(
        "serve exited {:?} {exit_after:?} after SIGTERM; {} calls",
        status.code(),
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert_eq!(server_errors.load(Ordering::SeqCst), 0, "5xx answers");

    // The rows as the dead server left them, read without opening the home (which could rescue a lease).
    let jobs = lab.jobs();
    let accepted = accepted.into_inner().unwrap();
    for id in &accepted {
        assert!(
            jobs.iter().any(|j| j["id"] == id.as_str()),
            "accepted job {id} is not in the store"
        );
    }
    let count = |state: &str| jobs.iter().filter(|j| j["state"] == state).count();
    eprintln!(
        "at exit: {} jobs, {} succeeded, {} queued, {} running",
        jobs.len(),
        count("succeeded"),
        count("queued"),
        count("running")
    );
    let running: Vec<&Value> = jobs
        .iter()
        .filter(|j| j["state"] == "running")
        .map(|j| &j["id"])
        .collect();
    assert!(running.is_empty(), "jobs left running: {running:?}");
    for job in &jobs {
        let state = job["state"].as_str().unwrap();
        assert!(
            ["queued", "succeeded"].contains(&state),
            "job {} is {state}",
            job["id"]
        );
    }

    // The home runs again: every job succeeds, and trail, rows and artifacts agree (`audit verify` included).
    lab.finish_all();
    let jobs = lab.check();
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"));
    assert_eq!(jobs.len(), accepted.len());
}
