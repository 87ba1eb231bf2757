//! Crash safety of jobs, keys and the audit trail, through the built binary: a process killed at every
//! failpoint of an export, and by kill -9 at random instants under load, leaves a home whose trail verifies and
//! whose every change has its event, and every interrupted job is finished by the next process that waits for it
//! (issue 12; attack review H5, H6, M1, M2, M7).
#![allow(clippy::unwrap_used)]

mod common;

use common::lab::{export_args, killed, temp_files, Lab};
use common::{error_json, stdout_json, stdout_text, strace_available, under_strace};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use trialport_core::failpoint::FAILPOINTS;

#[test]
fn a_kill_at_every_failpoint_of_an_export_loses_nothing_and_the_job_is_finished_later() {
    let lab = Lab::new(20, 1, 100);
    let mut kills = 0;
    // Those of `init`, of a signer's credential and of a KEK rotation are met elsewhere (`strict_io.rs`,
    // `crash_signing.rs`): an unsigned export meets none of them.
    let export_points = FAILPOINTS.iter().filter(|n| {
        !["init.", "signing.", "kek."]
            .iter()
            .any(|p| n.starts_with(p))
    });
    for name in export_points {
        // Every hit of the failpoint in an export's life, until the export gets through without meeting it.
        let mut hit_at_least_once = false;
        for n in 1.. {
            let out = lab
                .command(&export_args("DM,AE", "csv", true))
                .env("TRIALPORT_FAILPOINT", format!("{name}@{n}"))
                .output()
                .unwrap();
            if !killed(&out) {
                stdout_text(&out);
                break;
            }
            hit_at_least_once = true;
            kills += 1;
            lab.check();
        }
        assert!(hit_at_least_once, "no export met failpoint {name}");
    }
    lab.finish_all();
    let jobs = lab.check();
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"));
    eprintln!("{kills} kills");
    assert!(
        temp_files(&lab.home).is_empty(),
        "{:?}",
        temp_files(&lab.home)
    );
}

/// A small deterministic generator (the test must be reproducible): xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn spawn(lab: &Lab, args: &[&str]) -> Child {
    lab.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn kill_9(child: &mut Child) {
    // SIGKILL: no handler runs, nothing is flushed.
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kill_9_at_random_instants_under_load_loses_nothing() {
    let lab = Lab::new(30_000, 1, 100);
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let formats = ["csv", "xlsx", "parquet", "xpt"];
    let mut acknowledged = Vec::new();
    for _round in 0..3 {
        let mut worker = spawn(&lab, &["worker", "--workers", "2"]);
        let mut children: Vec<Child> = (0..4)
            .map(|i| {
                spawn(
                    &lab,
                    &export_args("AE,LB", formats[(i + rng.next(4) as usize) % 4], true),
                )
            })
            .collect();
        // A queued job for the worker, besides.
        stdout_text(&lab.run(&export_args("LB", "csv", false)));
        std::thread::sleep(Duration::from_millis(100 + rng.next(900)));
        for child in children.iter_mut() {
            if rng.next(2) == 0 {
                kill_9(child);
            }
        }
        if rng.next(2) == 0 {
            kill_9(&mut worker);
        }
        for child in children {
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                let job: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(job["state"], "succeeded", "{job}");
                acknowledged.push(job["id"].as_str().unwrap().to_string());
            } else {
                assert!(killed(&out), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        kill_9(&mut worker);
        lab.check();
    }
    lab.finish_all();
    let jobs = lab.check();
    // Each round queued one job without waiting, and up to four more (a process killed before it submitted
    // leaves none).
    assert!((3..=15).contains(&jobs.len()), "{} jobs", jobs.len());
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"));
    for id in &acknowledged {
        assert!(
            jobs.iter().any(|j| j["id"] == id.as_str()),
            "acknowledged job {id} lost"
        );
    }
}

#[test]
fn h6_a_job_killed_after_finishing_an_artifact_is_rerun_to_success_and_its_remains_swept() {
    let lab = Lab::new(200_000, 1, 3);
    let mut child = spawn(&lab, &export_args("AE,LB", "xlsx", true));
    // Kill the process as soon as the first artifact is complete (the second is being written).
    let started = Instant::now();
    let artifacts = lab.home.join("artifacts");
    loop {
        let done = common::files_under(&artifacts)
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == "ae.xlsx"));
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no artifact appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill_9(&mut child);
    let jobs = lab.check();
    assert_eq!(jobs.len(), 1);
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    let done = lab.wait(&id);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 2);
    lab.check();
    assert!(
        temp_files(&lab.home).is_empty(),
        "{:?}",
        temp_files(&lab.home)
    );
    // The trail tells the story: running, requeued after the lease expired, running again, succeeded.
    let story: Vec<String> = lab
        .events()
        .iter()
        .filter(|e| e["target"] == format!("job:{id}").as_str())
        .filter_map(|e| {
            e["action"]
                .as_str()
                .filter(|a| a.starts_with("job."))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        story,
        [
            "job.running",
            "job.requeued",
            "job.running",
            "job.succeeded"
        ]
    );
}

#[test]
fn m1_a_key_or_a_revocation_killed_at_its_commit_is_whole_or_absent_with_its_event() {
    let lab = Lab::new(1, 1, 3);
    let count = |action: &str| lab.successes(action);
    // The rows themselves, read as any SQLite client would.
    let keys = |lab: &Lab| lab.count_rows("SELECT count(*) FROM api_keys");
    let create = [
        "keys",
        "create",
        "--name",
        "ghost",
        "--roles",
        "admin",
        "--studies",
        "*",
        "--json",
    ];
    let before = keys(&lab);
    // Killed just before the commit: no key, no event.
    let out = lab
        .command(&create)
        .env("TRIALPORT_FAILPOINT", "store.commit.before")
        .output()
        .unwrap();
    assert!(killed(&out), "the process was not killed at the failpoint");
    lab.check();
    assert_eq!((keys(&lab), count("create_api_key")), (before, 1));
    // Killed just after it, before anything was printed: the key and its event.
    let out = lab
        .command(&create)
        .env("TRIALPORT_FAILPOINT", "store.commit.after")
        .output()
        .unwrap();
    assert!(killed(&out));
    lab.check();
    assert_eq!((keys(&lab), count("create_api_key")), (before + 1, 2));
    // A revocation likewise.
    let v = stdout_json(&lab.run(&create));
    let key_id = v["key_id"].as_str().unwrap().to_string();
    let out = lab
        .command(&["keys", "revoke", &key_id])
        .env("TRIALPORT_FAILPOINT", "store.commit.after")
        .output()
        .unwrap();
    assert!(killed(&out));
    lab.check();
    assert_eq!(count("revoke_api_key"), 1);
    let revoked = format!("ApiKey {}", v["api_key"].as_str().unwrap());
    let err = error_json(
        &common::run(&common::home_args(&lab.home, &revoked, &["jobs", "list"])),
        "EXP003",
    );
    assert_eq!(err["details"]["reason"], "key_revoked");
}

/// M1 again, with no failpoint (so that it runs the same against a build without them): strace kills the process
/// at its first write to the audit log, before that write happens. Whatever each operation has committed by then
/// (an API key, a revocation, a job, a key-encryption key), after the next open every change has its event, and
/// no event stands for a change that is not there.
#[test]
fn m1_killed_at_its_first_audit_log_write_every_change_has_its_event() {
    if !strace_available() {
        return;
    }
    let lab = Lab::new(1, 1, 3);
    let successes = |action: &str| lab.successes(action);
    let count_rows = |sql: &str| lab.count_rows(sql);
    let keks = || std::fs::read_dir(lab.home.join("keys")).unwrap().count();
    let audit_log = lab.home.join("audit.log");
    let kill_at_first_log_write = |args: &[&str]| {
        let trace = lab.scratch.join("m1.trace");
        let out = under_strace(
            &lab.command(args),
            &trace,
            &[
                "-P",
                audit_log.to_str().unwrap(),
                "-e",
                "trace=write,writev,pwrite64,pwritev",
                "-e",
                "inject=write,writev,pwrite64,pwritev:error=EIO:signal=SIGKILL:when=1",
            ],
        )
        .output()
        .unwrap();
        let traced = std::fs::read_to_string(&trace).unwrap();
        assert!(
            killed(&out) && traced.contains("killed by SIGKILL"),
            "{args:?} was not killed at an audit log write: {traced}"
        );
    };
    let victim = stdout_json(&lab.run(&[
        "keys",
        "create",
        "--name",
        "victim",
        "--roles",
        "monitor",
        "--studies",
        "*",
        "--json",
    ]));
    let victim_id = victim["key_id"].as_str().unwrap();
    // Each operation, how to count the changes it makes (read without opening the home), and its event.
    type Changes<'a> = &'a dyn Fn() -> usize;
    let operations: [(&[&str], Changes, &str); 4] = [
        (
            &[
                "keys",
                "create",
                "--name",
                "ghost",
                "--roles",
                "admin",
                "--studies",
                "*",
            ],
            &|| count_rows("SELECT count(*) FROM api_keys"),
            "create_api_key",
        ),
        (
            &["keys", "revoke", victim_id],
            &|| {
                count_rows("SELECT count(*) FROM api_keys WHERE json_extract(body, '$.revoked_at') IS NOT NULL")
            },
            "revoke_api_key",
        ),
        (
            &[
                "export",
                "data",
                "--study",
                "S1",
                "--datasets",
                "AE",
                "--format",
                "csv",
            ],
            &|| count_rows("SELECT count(*) FROM jobs"),
            "export_data",
        ),
        (&["keys", "rotate-kek"], &keks, "rotate_encryption_key"),
    ];
    for (args, changes, action) in operations {
        let (changes_before, events_before) = (changes(), successes(action));
        kill_at_first_log_write(args);
        lab.check();
        let (made, recorded) = (
            changes() - changes_before,
            successes(action) - events_before,
        );
        assert!(made <= 1, "{args:?}: {made} changes");
        assert_eq!(
            made, recorded,
            "{args:?}: {made} changes, {recorded} events"
        );
    }
}

#[test]
fn m2_removed_or_forged_events_refuse_to_open_without_any_checkpoint() {
    let fresh = || {
        let lab = Lab::new(1, 1, 3);
        for _ in 0..3 {
            stdout_text(&lab.run(&export_args("AE", "csv", true)));
        }
        lab
    };
    let log_lines = |lab: &Lab| -> Vec<Vec<u8>> {
        let bytes = std::fs::read(lab.home.join("audit.log")).unwrap();
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let write = |lab: &Lab, lines: &[Vec<u8>]| {
        let mut out = lines.join(&b'\n');
        out.push(b'\n');
        std::fs::write(lab.home.join("audit.log"), out).unwrap();
    };
    let refused = |lab: &Lab| {
        let err = error_json(&lab.run(&["jobs", "list"]), "EXP005");
        assert_eq!(err["details"]["reason"], "integrity_violation", "{err}");
        err["details"]["check"].as_str().unwrap().to_string()
    };

    // (a) The last complete records overwritten with newline-terminated junk.
    let lab = fresh();
    let mut lines = log_lines(&lab);
    let n = lines.len();
    for l in &mut lines[n - 6..] {
        *l = vec![b'#'; l.len()];
    }
    write(&lab, &lines);
    refused(&lab);

    // (b) The last records cut at a record boundary.
    let lab = fresh();
    let lines = log_lines(&lab);
    write(&lab, &lines[..5]);
    assert_eq!(refused(&lab), "anchor");

    // (c) Middle events deleted and the rest re-chained, so the chain verifies on its own.
    let lab = fresh();
    let lines = log_lines(&lab);
    let mut events: Vec<trialport_core::audit::AuditEvent> = lines
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    events.drain(3..6);
    let mut prev = trialport_core::audit::GENESIS_HASH.to_string();
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
        e.prev_hash = prev.clone();
        e.hash = e.compute_hash();
        prev = e.hash.clone();
    }
    let rechained: Vec<Vec<u8>> = events.iter().map(|e| e.canonical().into_bytes()).collect();
    write(&lab, &rechained);
    assert_eq!(refused(&lab), "anchor");

    // (d) Forged events appended by a key that does not exist, correctly chained.
    let lab = fresh();
    let lines = log_lines(&lab);
    let mut events: Vec<trialport_core::audit::AuditEvent> = lines
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let mut forged = events.last().unwrap().clone();
    for _ in 0..200 {
        forged.seq += 1;
        forged.prev_hash = forged.hash.clone();
        forged.actor.subject = "apikey:000000000000".into();
        forged.hash = forged.compute_hash();
        events.push(forged.clone());
    }
    let lines: Vec<Vec<u8>> = events.iter().map(|e| e.canonical().into_bytes()).collect();
    write(&lab, &lines);
    assert_eq!(refused(&lab), "anchor");
}

#[test]
fn m7_a_waiting_export_runs_only_its_own_job() {
    let lab = Lab::new(50_000, 1, 3);
    let queued = stdout_json(&lab.run(&export_args("LB", "xlsx", false)));
    let queued_id = queued["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let job = stdout_json(&lab.run(&export_args("AE", "csv", true)));
        assert_eq!(job["state"], "succeeded");
    }
    let events = lab.events();
    let touched = events
        .iter()
        .filter(|e| e["target"] == format!("job:{queued_id}").as_str())
        .filter(|e| e["action"].as_str().unwrap().starts_with("job."))
        .count();
    assert_eq!(touched, 0, "a waiting export claimed the queued job");
    let job = stdout_json(&lab.run(&["jobs", "show", &queued_id, "--json"]));
    assert_eq!(job["state"], "queued");
    lab.check();
}
