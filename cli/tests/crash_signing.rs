//! Write-ahead audit of signing credentials and key-encryption key rotations (issue 12, items 4 and 8; the
//! attack review's finding M1 for these changes), through the built `trialport` binary: a process is killed at a
//! named failpoint (`TRIALPORT_FAILPOINT`, compiled into debug builds: an abort, as `kill -9`), then the home is
//! opened again and checked. `audit verify` passes; every change that happened has its event, and no event names a
//! change that did not happen.
//!
//! The failpoints are the ones of these changes (`signing.commit.*`, `kek.*`), hit on the calling thread only. The
//! store's own `store.commit.*` are not used here: they stop any change with audit events, which a rescue on the
//! lease keeper's thread can also be.
#![cfg(unix)]
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "incorrect mule staple";
const NEW_PASSWORD: &str = "a brand new passphrase";
/// Failed attempts that lock a signer in these homes.
const MAX_FAILED: u64 = 3;

/// A home of org `acme` with study S1 (DM), encrypted at rest (the default), hashing signing passwords fast and
/// locking after [`MAX_FAILED`] failures.
struct Home {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    admin: String,
}

impl Home {
    fn new() -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(
            tmp.path(),
            "S1",
            &[("DM.csv", "USUBJID,AGE\nS1-001,34\nS1-002,51\n")],
        );
        let dir = tmp.path().join("home");
        let admin = init_home(&dir, &source);
        set_signing_config(
            &dir,
            json!({"pbkdf2_iterations": 1000, "max_failed_attempts": MAX_FAILED}),
        );
        Home {
            _tmp: tmp,
            dir,
            admin,
        }
    }

    /// `trialport ARGS` as `cred`, with the signing password `password` and, when given, the failpoint `fp` armed.
    fn run_at(
        &self,
        fp: Option<&str>,
        cred: &str,
        args: &[&str],
        password: Option<&str>,
    ) -> Output {
        let mut c = command(&home_args(&self.dir, cred, args));
        if let Some(p) = password {
            c.env(PASSWORD_ENV, p);
        }
        if let Some(fp) = fp {
            c.env("TRIALPORT_FAILPOINT", fp);
        }
        c.output().unwrap()
    }

    fn run(&self, cred: &str, args: &[&str], password: Option<&str>) -> Output {
        self.run_at(None, cred, args, password)
    }

    /// `signing set-password` as `cred` (the new password on standard input), with `fp` armed when given.
    fn set_password_at(
        &self,
        fp: Option<&str>,
        cred: &str,
        new: &str,
        current: Option<&str>,
    ) -> Output {
        let mut c = command(&home_args(&self.dir, cred, &["signing", "set-password"]));
        if let Some(p) = current {
            c.env(PASSWORD_ENV, p);
        }
        if let Some(fp) = fp {
            c.env("TRIALPORT_FAILPOINT", fp);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{new}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// A new API key of `roles` on S1 created by the admin: its credential and subject.
    fn key(&self, roles: &str) -> (String, String) {
        let v = stdout_json(&self.run(
            &self.admin,
            &[
                "keys",
                "create",
                "--name",
                "signer",
                "--roles",
                roles,
                "--studies",
                "S1",
                "--json",
            ],
            None,
        ));
        (
            format!("ApiKey {}", v["api_key"].as_str().unwrap()),
            format!("apikey:{}", v["key_id"].as_str().unwrap()),
        )
    }

    /// A data export of S1's DM as `cred`, signed (`approval`) with `password` when given, run to its end.
    fn export(&self, fp: Option<&str>, cred: &str, password: Option<&str>) -> Output {
        let mut args = vec![
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--wait",
            "--json",
        ];
        if password.is_some() {
            args.extend_from_slice(&["--sign", "approval"]);
        }
        self.run_at(fp, cred, &args, password)
    }

    /// Every audit event of the home (read by the admin).
    fn events(&self) -> Vec<Value> {
        stdout_text(&self.run(&self.admin, &["audit", "export"], None))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The events of `action` with `outcome`.
    fn events_of(&self, action: &str, outcome: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .collect()
    }

    /// `audit verify` passes (the hash chain and the archive against the database's anchor).
    fn verify(&self) {
        let v = stdout_json(&self.run(&self.admin, &["audit", "verify", "--json"], None));
        assert_eq!(v["verified"], true, "{v}");
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// The names in `keys/`, sorted.
    fn key_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.keys_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The key ids in the headers of the stored files of job `id` (its artifacts and manifest), each once (the
    /// format of `trialport_core::crypto`: `TPCRYPT`, version, suite, segment size, then the key id's length at
    /// byte 13 and the key id).
    fn artifact_key_ids(&self, id: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for path in files_under(&self.dir.join("artifacts").join(id)) {
            let bytes = fs::read(&path).unwrap();
            assert!(
                bytes.starts_with(b"TPCRYPT"),
                "{} is not encrypted",
                path.display()
            );
            let k = usize::from(bytes[13]);
            ids.push(String::from_utf8(bytes[14..14 + k].to_vec()).unwrap());
        }
        assert!(!ids.is_empty(), "job {id} stored nothing");
        ids.sort();
        ids.dedup();
        ids
    }

    /// An unsigned export as the admin: succeeded; the key ids its artifacts are wrapped under.
    fn export_key_ids(&self) -> Vec<String> {
        let job = stdout_json(&self.export(None, &self.admin, None));
        assert_eq!(job["state"], "succeeded", "{job}");
        self.artifact_key_ids(job["id"].as_str().unwrap())
    }
}

/// The process was stopped at its failpoint (killed by a signal: no exit code).
#[track_caller]
fn killed(out: &Output, fp: &str) {
    assert_eq!(
        out.status.code(),
        None,
        "{fp}: the process was not stopped\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn reason(out: &Output) -> (String, String) {
    let e = error_object(out);
    (
        e["code"].as_str().unwrap().to_string(),
        e["details"]["reason"].as_str().unwrap().to_string(),
    )
}

/// The attempts left after one wrong signature now (that attempt counted too).
fn attempts_left_after_a_wrong_signature(home: &Home, cred: &str) -> u64 {
    let e = error_object(&home.export(None, cred, Some(WRONG)));
    assert_eq!(e["details"]["reason"], "signature_invalid", "{e}");
    e["details"]["attempts_left"].as_u64().unwrap()
}

/// Whether `cred` can sign with `password` (a signed export succeeds), else the refusal's reason.
fn signs_with(home: &Home, cred: &str, password: &str) -> Result<(), String> {
    let out = home.export(None, cred, Some(password));
    if out.status.success() {
        let job: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(job["state"], "succeeded", "{job}");
        return Ok(());
    }
    Err(reason(&out).1)
}

// ---- signing credentials ---------------------------------------------------------------------------------------

#[test]
fn a_password_set_by_a_killed_process_is_absent_without_event_or_present_with_it() {
    for (fp, present) in [
        ("signing.commit.before", false),
        ("signing.commit.after", true),
    ] {
        let home = Home::new();
        let out = home.set_password_at(Some(fp), &home.admin, PASSWORD, None);
        killed(&out, fp);
        home.verify();
        let recorded = home.events_of("set_signing_password", "success").len();
        let signs = signs_with(&home, &home.admin, PASSWORD);
        assert_eq!(
            (recorded, signs.is_ok()),
            (usize::from(present), present),
            "{fp}: {signs:?}"
        );
        if !present {
            assert_eq!(signs, Err("signing_not_enrolled".into()), "{fp}");
            // The signer enrolls as if nothing had happened (no current password asked).
            stdout_text(&home.set_password_at(None, &home.admin, PASSWORD, None));
            assert_eq!(home.events_of("set_signing_password", "success").len(), 1);
            assert_eq!(signs_with(&home, &home.admin, PASSWORD), Ok(()));
        }
    }
}

#[test]
fn a_password_change_killed_before_its_row_keeps_the_old_password() {
    let home = Home::new();
    stdout_text(&home.set_password_at(None, &home.admin, PASSWORD, None));
    let out = home.set_password_at(
        Some("signing.commit.before"),
        &home.admin,
        NEW_PASSWORD,
        Some(PASSWORD),
    );
    killed(&out, "signing.commit.before");
    home.verify();
    assert_eq!(home.events_of("set_signing_password", "success").len(), 1);
    assert_eq!(
        signs_with(&home, &home.admin, NEW_PASSWORD),
        Err("signature_invalid".into())
    );
    assert_eq!(signs_with(&home, &home.admin, PASSWORD), Ok(()));
}

#[test]
fn a_failed_attempt_killed_before_its_row_counts_nothing_and_the_lock_comes_with_its_events() {
    let home = Home::new();
    stdout_text(&home.set_password_at(None, &home.admin, PASSWORD, None));
    // A failure, then one killed as its count was about to be written: not counted, not recorded.
    assert_eq!(
        attempts_left_after_a_wrong_signature(&home, &home.admin),
        MAX_FAILED - 1
    );
    let out = home.export(Some("signing.commit.before"), &home.admin, Some(WRONG));
    killed(&out, "signing.commit.before");
    home.verify();
    assert_eq!(home.events_of("export_data", "denied").len(), 1);
    assert_eq!(
        attempts_left_after_a_wrong_signature(&home, &home.admin),
        MAX_FAILED - 2
    );
    // One killed once its count committed: counted, with its event.
    assert_eq!(signs_with(&home, &home.admin, PASSWORD), Ok(()));
    let out = home.export(Some("signing.commit.after"), &home.admin, Some(WRONG));
    killed(&out, "signing.commit.after");
    home.verify();
    assert_eq!(home.events_of("export_data", "denied").len(), 3);
    assert_eq!(
        attempts_left_after_a_wrong_signature(&home, &home.admin),
        MAX_FAILED - 2
    );
    // The locking attempt, killed: neither the lock nor its events.
    let out = home.export(Some("signing.commit.before"), &home.admin, Some(WRONG));
    killed(&out, "signing.commit.before");
    home.verify();
    assert!(home
        .events_of("security.signing_locked", "denied")
        .is_empty());
    assert_eq!(signs_with(&home, &home.admin, PASSWORD), Ok(()));
    // Three failures in a row lock, with the security event and the refusal, in that order.
    for _ in 1..MAX_FAILED {
        home.export(None, &home.admin, Some(WRONG));
    }
    let e = error_object(&home.export(None, &home.admin, Some(WRONG)));
    assert_eq!(e["details"]["reason"], "signing_locked");
    let events = home.events();
    let locked = events
        .iter()
        .position(|e| e["action"] == "security.signing_locked")
        .unwrap();
    assert_eq!(events[locked]["details"]["failures"], MAX_FAILED);
    assert_eq!(events[locked + 1]["action"], "export_data");
    assert_eq!(events[locked + 1]["details"]["reason"], "signing_locked");
    assert_eq!(
        signs_with(&home, &home.admin, PASSWORD),
        Err("signing_locked".into())
    );
    home.verify();
}

#[test]
fn a_signed_export_killed_before_its_commit_leaves_no_job_and_the_failures_counted() {
    let home = Home::new();
    stdout_text(&home.set_password_at(None, &home.admin, PASSWORD, None));
    assert_eq!(
        attempts_left_after_a_wrong_signature(&home, &home.admin),
        MAX_FAILED - 1
    );
    // Verified, but killed as its credential (failures back to 0) was about to be written with the job.
    let out = home.export(Some("signing.commit.before"), &home.admin, Some(PASSWORD));
    killed(&out, "signing.commit.before");
    home.verify();
    let jobs = stdout_json(&home.run(&home.admin, &["jobs", "list", "--json"], None));
    assert_eq!(jobs["total"], 0, "{jobs}");
    assert!(home.events_of("export_data", "success").is_empty());
    assert_eq!(
        attempts_left_after_a_wrong_signature(&home, &home.admin),
        MAX_FAILED - 2
    );
    // A verified export clears them, with its job.
    assert_eq!(signs_with(&home, &home.admin, PASSWORD), Ok(()));
    assert_eq!(home.events_of("export_data", "success").len(), 1);
    assert_eq!(
        attempts_left_after_a_wrong_signature(&home, &home.admin),
        MAX_FAILED - 1
    );
}

#[test]
fn a_reset_killed_before_its_row_did_not_happen() {
    let home = Home::new();
    let (user, subject) = home.key("data_manager");
    stdout_text(&home.set_password_at(None, &user, PASSWORD, None));
    let out = home.run_at(
        Some("signing.commit.before"),
        &home.admin,
        &["signing", "reset", &subject],
        None,
    );
    killed(&out, "signing.commit.before");
    home.verify();
    assert!(home.events_of("reset_signing", "success").is_empty());
    assert_eq!(signs_with(&home, &user, PASSWORD), Ok(()));
    // Done whole, it is recorded and the signer must set a new password.
    stdout_text(&home.run(&home.admin, &["signing", "reset", &subject], None));
    let resets = home.events_of("reset_signing", "success");
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0]["target"], format!("signer:{subject}"));
    assert_eq!(
        signs_with(&home, &user, PASSWORD),
        Err("password_reset_required".into())
    );
}

// ---- KEK rotation ----------------------------------------------------------------------------------------------

#[test]
fn a_rotation_killed_with_its_key_pending_leaves_no_key_and_no_event() {
    let home = Home::new();
    let out = home.run_at(
        Some("kek.pending.after"),
        &home.admin,
        &["keys", "rotate-kek", "--json"],
        None,
    );
    killed(&out, "kek.pending.after");
    assert_eq!(home.key_files(), ["kek-0001.key", "kek-0002.pending"]);
    // The next call removes it: its rotation has no event.
    stdout_json(&home.run(&home.admin, &["jobs", "list", "--json"], None));
    assert_eq!(home.key_files(), ["kek-0001.key"]);
    home.verify();
    assert!(home
        .events()
        .iter()
        .all(|e| e["action"] != "rotate_encryption_key" && e["target"] != "kek:kek-0002"));
    assert_eq!(home.export_key_ids(), ["kek-0001"]);
    // A rotation now is whole, under the number the stopped one had prepared.
    let v = stdout_json(&home.run(&home.admin, &["keys", "rotate-kek", "--json"], None));
    assert_eq!(v["key_id"], "kek-0002");
    assert_eq!(home.key_files(), ["kek-0001.key", "kek-0002.key"]);
    let rotations = home.events_of("rotate_encryption_key", "success");
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["details"]["key_id"], "kek-0002");
    assert_eq!(home.export_key_ids(), ["kek-0002"]);
    home.verify();
}

#[test]
fn a_rotation_killed_after_its_event_is_made_current_by_the_next_call() {
    for fp in ["kek.event.after", "kek.current.after"] {
        let home = Home::new();
        let out = home.run_at(
            Some(fp),
            &home.admin,
            &["keys", "rotate-kek", "--json"],
            None,
        );
        killed(&out, fp);
        let pending = fs::read_to_string(home.keys_dir().join("kek-0002.pending")).unwrap();
        let line = |name: &str| {
            pending
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        // The next call (an export) makes it current first, and wraps under it.
        assert_eq!(home.export_key_ids(), ["kek-0002"], "{fp}");
        assert_eq!(home.key_files(), ["kek-0001.key", "kek-0002.key"], "{fp}");
        assert_eq!(
            fs::read_to_string(home.keys_dir().join("kek-0002.key")).unwrap(),
            format!("{}\n", line("key ")),
            "{fp}: the key made current is the one prepared"
        );
        home.verify();
        let rotations = home.events_of("rotate_encryption_key", "success");
        assert_eq!(rotations.len(), 1, "{fp}");
        assert_eq!(
            (
                &rotations[0]["details"]["key_id"],
                &rotations[0]["details"]["previous_key_id"],
                &rotations[0]["details"]["rotation_id"]
            ),
            (
                &json!("kek-0002"),
                &json!("kek-0001"),
                &json!(line("rotation_id "))
            ),
            "{fp}"
        );
        // The next rotation follows.
        let v = stdout_json(&home.run(&home.admin, &["keys", "rotate-kek", "--json"], None));
        assert_eq!(v["key_id"], "kek-0003", "{fp}");
    }
}

#[test]
fn every_new_failpoint_is_listed() {
    // The failpoints these tests arm are the engine's declared ones.
    for fp in [
        "signing.commit.before",
        "signing.commit.after",
        "kek.pending.after",
        "kek.event.after",
        "kek.current.after",
    ] {
        assert!(trialport_core::failpoint::FAILPOINTS.contains(&fp), "{fp}");
    }
}
