//! No data values at rest outside the encryption (issue 11 item 4; the attack review's H3 "filter values and
//! idempotency keys are stored in plain text in trialport.db" and M5 "XLSX and Dataset-JSON spool plaintext rows
//! to $TMPDIR"), through the `trialport` binary on a real, encrypted home:
//!
//! - `grep -a` of a distinctive filter value, idempotency key and data value finds none of them in any file of the
//!   home (database, WAL, audit log, artifacts, spool) or of `$TMPDIR`, while an XLSX and a Dataset-JSON export run
//!   and after they finish, although the download shows the data value and `jobs show` the literals to their
//!   requester;
//! - a role that could not have made the request (a monitor: no `export:data`) sees the job's state, not its
//!   literals, and the view's audit event says so.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{command, files_under, home_args, init_home, stdout_json, write_source};

/// A value of the data, in every row of AE (class `none`: any exporting role sees it).
const DATA_VALUE: &str = "ZEBRAFISH-TERM-4471";
/// A filter value that selects nothing away (`ne`), so the rows stay many.
const FILTER_VALUE: &str = "QUIXOTIC-LITERAL-9052";
/// An idempotency key.
const IDEMPOTENCY_KEY: &str = "OCELOT-IDEMPOTENCY-3318";

/// Where each needle occurs among the files below `dirs`, as `(needle, file)`.
fn occurrences(dirs: &[&Path]) -> Vec<(&'static str, PathBuf)> {
    let mut found = Vec::new();
    for dir in dirs {
        for file in files_under(dir) {
            // A file can vanish between the listing and the read (a spool, a temporary file): nothing to see.
            let Ok(bytes) = fs::read(&file) else { continue };
            for needle in [DATA_VALUE, FILTER_VALUE, IDEMPOTENCY_KEY] {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push((needle, file.clone()));
                }
            }
        }
    }
    found
}

/// An encrypted home over study S1 whose AE has `rows` rows, each with [`DATA_VALUE`]; a private `$TMPDIR`.
struct Home {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    tmpdir: PathBuf,
    admin: String,
}

impl Home {
    fn new(rows: usize) -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let mut ae = String::from("STUDYID,USUBJID,AESEQ,AETERM,AESEV\n");
        for i in 0..rows {
            ae.push_str(&format!("S1,S1-{:05},{},{DATA_VALUE},MILD\n", i % 500, i));
        }
        let source = write_source(tmp.path(), "S1", &[("AE.csv", ae.as_str())]);
        let dir = tmp.path().join("home");
        let admin = init_home(&dir, &source);
        let tmpdir = tmp.path().join("tmp");
        fs::create_dir_all(&tmpdir).unwrap();
        Home {
            _tmp: tmp,
            dir,
            tmpdir,
            admin,
        }
    }

    fn key(&self, role: &str) -> String {
        common::create_key(&self.dir, &self.admin, role, "S1")
    }

    fn run(&self, cred: &str, args: &[&str]) -> std::process::Output {
        command(&home_args(&self.dir, cred, args))
            .env("TMPDIR", &self.tmpdir)
            .output()
            .unwrap()
    }

    /// Runs an export of AE in `format` by `cred` (filtered, with an idempotency key), scanning the home and
    /// `$TMPDIR` for the needles until it exits; returns the job and how many scans ran meanwhile.
    fn export_scanning(&self, cred: &str, format: &str, key: &str) -> (Value, usize) {
        let filter = format!("AETERM:ne:{FILTER_VALUE}");
        let mut child = command(&home_args(
            &self.dir,
            cred,
            &[
                "--json",
                "export",
                "data",
                "--study",
                "S1",
                "--datasets",
                "AE",
                "--format",
                format,
                "--filter",
                &filter,
                "--idempotency-key",
                key,
                "--wait",
            ],
        ))
        .env("TMPDIR", &self.tmpdir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let mut scans = 0;
        let deadline = Instant::now() + Duration::from_secs(600);
        while child.try_wait().unwrap().is_none() {
            let found = occurrences(&[&self.dir, &self.tmpdir]);
            assert!(found.is_empty(), "during the {format} export: {found:?}");
            scans += 1;
            assert!(Instant::now() < deadline, "the export did not finish");
        }
        let out = child.wait_with_output().unwrap();
        (stdout_json(&out), scans)
    }
}

#[test]
fn h3_m5_no_filter_value_idempotency_key_or_data_value_at_rest_during_or_after_an_export() {
    let h = Home::new(40_000);
    let stat = h.key("statistician");
    for (format, artifact) in [("xlsx", "ae.xlsx"), ("dataset-json", "ae.json")] {
        let key = format!("{IDEMPOTENCY_KEY}-{format}");
        let (job, scans) = h.export_scanning(&stat, format, &key);
        assert_eq!(job["state"], "succeeded", "{job}");
        assert!(scans > 0, "the {format} export ended before one scan");
        eprintln!("{format}: {scans} scans of the home and TMPDIR while the export ran");
        let id = job["id"].as_str().unwrap();
        // What the requester was answered holds the request as given.
        assert_eq!(
            job["request"]["datasets"][0]["filters"][0]["value"], FILTER_VALUE,
            "{job}"
        );
        assert_eq!(job["idempotency_key"], key.as_str());
        let found = occurrences(&[&h.dir, &h.tmpdir]);
        assert!(found.is_empty(), "after the {format} export: {found:?}");
        // The needles are really there to be found: in the download's plaintext, and in the view of the job
        // its requester gets.
        let target = h.tmpdir.join(format!("out-{artifact}"));
        let out = h.run(
            &stat,
            &[
                "download",
                id,
                "--artifact",
                artifact,
                "-o",
                target.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let plain = fs::read(&target).unwrap();
        if format == "dataset-json" {
            assert!(String::from_utf8_lossy(&plain).contains(DATA_VALUE));
        } else {
            assert!(plain.starts_with(b"PK"), "an XLSX is a zip");
        }
        fs::remove_file(&target).unwrap();
        let shown = stdout_json(&h.run(&stat, &["--json", "jobs", "show", id]));
        assert_eq!(
            shown["request"]["datasets"][0]["filters"][0]["value"],
            FILTER_VALUE
        );
        assert_eq!(shown["idempotency_key"], key.as_str());
        // The same request under the same key is the same job; another request under it is a conflict.
        let (again, _) = h.export_scanning(&stat, format, &key);
        assert_eq!(again["id"], id);
    }
    // Nothing was left anywhere by the views and replays either.
    let found = occurrences(&[&h.dir, &h.tmpdir]);
    assert!(found.is_empty(), "at the end: {found:?}");
}

#[test]
fn h3_a_role_that_could_not_make_the_request_sees_no_literal_of_it() {
    let h = Home::new(3);
    let stat = h.key("statistician");
    let filter = format!("AETERM:ne:{FILTER_VALUE}");
    let job = stdout_json(&h.run(
        &stat,
        &[
            "--json",
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "AE",
            "--format",
            "csv",
            "--filter",
            &filter,
            "--idempotency-key",
            IDEMPOTENCY_KEY,
        ],
    ));
    let id = job["id"].as_str().unwrap();
    let monitor = h.key("monitor");
    for args in [
        vec!["--json", "jobs", "show", id],
        vec!["--json", "jobs", "list"],
    ] {
        let out = h.run(&monitor, &args);
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        let v = stdout_json(&out);
        assert!(!text.contains(FILTER_VALUE), "{args:?}: {text}");
        assert!(!text.contains(IDEMPOTENCY_KEY), "{args:?}: {text}");
        let shown = if args[2] == "show" {
            v.clone()
        } else {
            v["items"][0].clone()
        };
        assert_eq!(shown["id"], id, "{v}");
        assert_eq!(shown["state"], "queued");
        assert_eq!(
            shown["request"]["datasets"][0]["filters"][0],
            json!({"column": "AETERM", "op": "ne", "value": {"withheld": "request_literal"}})
        );
        assert!(shown["idempotency_key"].is_null(), "{shown}");
    }
    // Another statistician of the study could have made it: they see it.
    let other = h.key("statistician");
    let v = stdout_json(&h.run(&other, &["--json", "jobs", "show", id]));
    assert_eq!(
        v["request"]["datasets"][0]["filters"][0]["value"],
        FILTER_VALUE
    );
    // The monitor's views are audited with what they withheld.
    let out = h.run(&h.admin, &["audit", "export"]);
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for action in ["get_job", "list_jobs"] {
        let n = events
            .iter()
            .filter(|e| {
                e["action"] == action
                    && e["details"]["literals_withheld"]
                        == json!({"reason": "request_literal", "jobs": 1})
            })
            .count();
        assert_eq!(n, 1, "{action}");
    }
    // The job still runs with its literal.
    let done = stdout_json(&h.run(&stat, &["--json", "jobs", "wait", id]));
    assert_eq!(done["state"], "succeeded", "{done}");
}
