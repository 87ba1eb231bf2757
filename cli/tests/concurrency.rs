//! Many processes exporting with `--wait` on one home at once, alone and with a `trialport worker` beside them:
//! every export succeeds exactly once, no job is lost to another process (`worker_lost`), and no job has two end
//! events (issue 12; attack review H5).
//!
//! The size is bounded for the test suite; `scripts/stress-jobs.sh` runs the full size (16 processes × 20
//! exports, 10 rounds) through the variables `TRIALPORT_STRESS_PROCESSES`, `TRIALPORT_STRESS_EXPORTS` and
//! `TRIALPORT_STRESS_ROUNDS`.
#![allow(clippy::unwrap_used)]

mod common;

use common::lab::Lab;
use serde_json::Value;
use std::process::{Child, Stdio};

/// Rows of LB, which every export of these tests writes.
const LB_ROWS: usize = 20_000;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `processes` shells at once, each running `exports` waiting exports one after another; returns every
/// job the exports printed.
fn round(lab: &Lab, processes: usize, exports: usize) -> Vec<Value> {
    let tp = env!("CARGO_BIN_EXE_trialport");
    // LB: long enough that each export is still running when the other processes start and open the home.
    let script = format!(
        "for i in $(seq {exports}); do \"$TP\" --home \"$HOME_DIR\" --json export data --study S1 --datasets LB \
         --format csv --wait || exit 1; done"
    );
    let children: Vec<Child> = (0..processes)
        .map(|_| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env("TP", tp)
                .env("HOME_DIR", &lab.home)
                .env("TRIALPORT_CREDENTIAL", &lab.cred)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut jobs = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "an export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Each export prints one JSON document; split the concatenation.
        let text = String::from_utf8(out.stdout).unwrap();
        for job in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            jobs.push(job.unwrap());
        }
    }
    jobs
}

fn check_all_once(lab: &Lab, printed: &[Value], expected: usize) {
    assert_eq!(printed.len(), expected);
    assert!(printed.iter().all(|j| j["state"] == "succeeded"));
    let mut ids: Vec<&str> = printed.iter().map(|j| j["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected, "two exports printed the same job");
    let jobs = lab.check();
    let events = lab.logged_events();
    assert!(
        !events
            .iter()
            .any(|e| e["details"]["reason"] == "worker_lost"),
        "a live job was taken for lost"
    );
    // Every job ran once: one claim each.
    for job in &jobs {
        let id = format!("job:{}", job["id"].as_str().unwrap());
        let claims = events
            .iter()
            .filter(|e| e["target"] == id.as_str() && e["action"] == "job.running")
            .count();
        assert_eq!(claims, 1, "{id} was claimed {claims} times");
    }
}

#[test]
fn parallel_waiting_exports_each_run_exactly_once() {
    let processes = setting("TRIALPORT_STRESS_PROCESSES", 8);
    let exports = setting("TRIALPORT_STRESS_EXPORTS", 3);
    let rounds = setting("TRIALPORT_STRESS_ROUNDS", 2);
    // The default lease: a claim must never be taken for lost while its process lives.
    let lab = Lab::new(LB_ROWS, 30, 3);
    let mut printed = Vec::new();
    for _ in 0..rounds {
        printed.extend(round(&lab, processes, exports));
    }
    check_all_once(&lab, &printed, processes * exports * rounds);
}

#[test]
fn parallel_waiting_exports_with_a_worker_beside_them_each_run_exactly_once() {
    let processes = setting("TRIALPORT_STRESS_PROCESSES", 8);
    let exports = setting("TRIALPORT_STRESS_EXPORTS", 3);
    let rounds = setting("TRIALPORT_STRESS_ROUNDS", 2);
    let lab = Lab::new(LB_ROWS, 30, 3);
    let mut worker = lab
        .command(&["worker", "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = Vec::new();
    for _ in 0..rounds {
        printed.extend(round(&lab, processes, exports));
    }
    // SIGTERM: the worker stops cleanly and exits 0.
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(worker.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = worker.wait().unwrap();
    assert_eq!(out.code(), Some(0));
    check_all_once(&lab, &printed, processes * exports * rounds);
}
