//! `trialport audit verify [--checkpoint FILE] | checkpoint [-o FILE] | export --format jsonl|csv [-o FILE]`, run
//! as a user would, on a home whose `audit.log` the tests also damage by hand.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use trialport_core::audit::export::TABLE_COLUMNS;
use trialport_core::audit::{AuditEvent, GENESIS_HASH};

mod common;
use common::{error_json, home_args, init_home, run, stdout_json, stdout_text, write_source};

struct Home {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    cred: String,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(
            tmp.path(),
            "S1",
            &[("DM.csv", "USUBJID,AGE\nS1-001,34\nS1-002,51\n")],
        );
        let dir = tmp.path().join("home");
        let cred = init_home(&dir, &source);
        Home { tmp, dir, cred }
    }

    fn run_as(&self, cred: &str, args: &[&str]) -> Output {
        run(&home_args(&self.dir, cred, args))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.cred, args)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// A key with `roles` named `name`; returns its credential.
    fn key(&self, name: &str, roles: &str) -> String {
        let v = stdout_json(&self.run(&[
            "keys",
            "create",
            "--name",
            name,
            "--roles",
            roles,
            "--studies",
            "*",
            "--json",
        ]));
        format!("ApiKey {}", v["api_key"].as_str().unwrap())
    }

    /// Some audited work: an export run to the end, a job listing, a refused call.
    fn work(&self) {
        stdout_text(&self.run(&[
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
        ]));
        stdout_text(&self.run(&["jobs", "list", "--json"]));
        let bad = self.run_as("ApiKey tp_000000000000_wrong", &["jobs", "list"]);
        error_json(&bad, "EXP003");
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, format!("{}\n", lines.join("\n"))).unwrap();
}

/// Checks a JSON Lines export as an outside auditor would: each line canonical, chained, hashed.
fn check_chain(text: &str) -> Vec<AuditEvent> {
    let mut prev = GENESIS_HASH.to_string();
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let e: AuditEvent = serde_json::from_str(line).unwrap();
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.prev_hash, prev, "seq {}", e.seq);
        assert_eq!(e.compute_hash(), e.hash, "seq {}", e.seq);
        assert_eq!(e.canonical(), line, "seq {}: a canonical line", e.seq);
        prev = e.hash.clone();
        events.push(e);
    }
    events
}

#[test]
fn checkpoint_then_verify_and_export_jsonl_to_a_file() {
    let home = Home::new();
    home.work();
    let cp_path = home.path("checkpoint.json");
    let v = stdout_json(&home.run(&[
        "audit",
        "checkpoint",
        "-o",
        cp_path.to_str().unwrap(),
        "--json",
    ]));
    let cp: Value = serde_json::from_str(&fs::read_to_string(&cp_path).unwrap()).unwrap();
    assert_eq!(v["seq"], cp["seq"]);
    assert_eq!(v["hash"], cp["hash"]);
    let seq = cp["seq"].as_u64().unwrap();
    assert!(seq >= 7, "{cp}");

    let v = stdout_json(&home.run(&[
        "audit",
        "verify",
        "--checkpoint",
        cp_path.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["verified"], true);
    assert_eq!(v["checkpoint"]["seq"], seq);
    assert!(v["events"].as_u64().unwrap() > seq);
    let text = stdout_text(&home.run(&["audit", "verify"]));
    assert!(
        text.starts_with("audit trail verified: ") && text.contains("hash chain intact"),
        "{text}"
    );

    let out = home.path("trail.jsonl");
    let v = stdout_json(&home.run(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]));
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(v["events"], text.lines().count());
    assert_eq!(v["bytes"], text.len());
    let events = check_chain(&text);
    // The export is the log, line for line.
    let log = lines(&home.log());
    assert_eq!(log[..events.len()], text.lines().collect::<Vec<_>>()[..]);
    // Every kind of outcome, the checkpoint and the verifications are on the record, with their scope.
    let find = |action: &str| events.iter().find(|e| e.action == action).unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "list_jobs" && e.outcome.as_str() == "denied"));
    assert_eq!(find("audit_checkpoint").details["seq"], seq);
    assert_eq!(find("export_data").study.as_deref(), Some("S1"));
    assert_eq!(find("job.succeeded").org, "acme");
    assert!(events.iter().any(|e| e.action == "verify_audit"
        && e.details["checkpoint_seq"] == seq
        && e.outcome.as_str() == "success"));

    // Standard output by default; --from and --limit page through it.
    let all = stdout_text(&home.run(&["audit", "export"]));
    check_chain(&all);
    let two = stdout_text(&home.run(&["audit", "export", "--from", "3", "--limit", "2"]));
    let seqs: Vec<u64> = two
        .lines()
        .map(|l| serde_json::from_str::<AuditEvent>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, [3, 4]);
    let e = error_json(&home.run(&["audit", "export", "--limit", "0"]), "EXP002");
    assert_eq!(e["field"], "limit");
}

/// A minimal RFC 4180 reader: enough to read back what the export wrote, independently of the writer.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(cell.is_empty() && row.is_empty(), "the last row ends");
    rows
}

#[test]
fn csv_export_has_fixed_columns_and_neutralises_formulas() {
    let home = Home::new();
    home.work();
    // A printed name a spreadsheet would run as a formula.
    let evil = home.key("=HYPERLINK(\"http://x\",\"y\")", "monitor");
    stdout_text(&home.run_as(&evil, &["jobs", "list", "--json"]));
    let text = stdout_text(&home.run(&["audit", "export", "--format", "csv"]));
    let rows = parse_csv(&text);
    assert_eq!(rows[0], TABLE_COLUMNS);
    let jsonl = stdout_text(&home.run(&["audit", "export"]));
    let events = check_chain(&jsonl);
    assert!(rows.len() - 1 <= events.len());
    let col = |name: &str| TABLE_COLUMNS.iter().position(|c| *c == name).unwrap();
    for (row, e) in rows[1..].iter().zip(&events) {
        assert_eq!(row.len(), TABLE_COLUMNS.len());
        assert_eq!(row[col("seq")], e.seq.to_string());
        assert_eq!(row[col("hash")], e.hash);
        assert_eq!(row[col("prev_hash")], e.prev_hash);
        assert_eq!(row[col("action")], e.action);
        assert_eq!(row[col("outcome")], e.outcome.as_str());
        assert_eq!(row[col("study")], e.study.clone().unwrap_or_default());
        let details: Value = serde_json::from_str(&row[col("details")]).unwrap();
        assert_eq!(details, e.details, "details as JSON text");
        let ts = serde_json::to_value(e.timestamp).unwrap();
        assert_eq!(row[col("timestamp")], ts.as_str().unwrap());
    }
    let named: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[col("actor_name")].contains("HYPERLINK"))
        .collect();
    assert!(!named.is_empty());
    for r in named {
        assert_eq!(r[col("actor_name")], "'=HYPERLINK(\"http://x\",\"y\")");
    }

    // To a file: the same bytes as on standard output (up to the events the later reads added).
    let out = home.path("trail.csv");
    stdout_text(&home.run(&[
        "audit",
        "export",
        "--format",
        "csv",
        "-o",
        out.to_str().unwrap(),
    ]));
    let file = fs::read_to_string(&out).unwrap();
    assert!(file.starts_with(&text[..text.find('\n').unwrap()]));
    assert!(parse_csv(&file).len() > rows.len());
}

/// Copies a home directory as a backup tool would (files with their permissions).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Home {
    /// A copy of this home's directory, taken now.
    fn backup(&self, name: &str) -> PathBuf {
        let to = self.path(name);
        copy_dir(&self.dir, &to);
        to
    }

    /// Puts the home back as it was in `backup` (which stays as it is).
    fn restore(&self, backup: &Path) {
        fs::remove_dir_all(&self.dir).unwrap();
        copy_dir(backup, &self.dir);
    }
}

#[test]
fn tampering_is_named_and_a_checkpoint_finds_a_rolled_back_home() {
    let home = Home::new();
    home.work();
    let before_more_work = home.backup("older");
    home.work();
    let cp_path = home.path("cp.json");
    stdout_text(&home.run(&["audit", "checkpoint", "-o", cp_path.to_str().unwrap()]));
    let intact = home.backup("intact");
    let original = lines(&home.log());

    // A modified event.
    let mut l = original.clone();
    let mut e: AuditEvent = serde_json::from_str(&l[3]).unwrap();
    e.outcome = trialport_core::audit::Outcome::Denied;
    l[3] = e.canonical();
    write_lines(&home.log(), &l);
    let err = error_json(&home.run(&["audit", "verify"]), "EXP005");
    assert_eq!(err["details"]["reason"], "integrity_violation");
    assert_eq!(err["details"]["seq"], 4);
    assert_eq!(err["details"]["check"], "hash");

    // A deleted event in the middle.
    home.restore(&intact);
    let mut l = original.clone();
    l.remove(2);
    write_lines(&home.log(), &l);
    let err = error_json(&home.run(&["audit", "verify"]), "EXP005");
    assert_eq!(
        (&err["details"]["seq"], &err["details"]["check"]),
        (&Value::from(3), &Value::from("sequence"))
    );

    // A damaged record in the middle: opening reads only the log's end, so the full check finds it.
    home.restore(&intact);
    let mut l = original.clone();
    l[1].truncate(10);
    write_lines(&home.log(), &l);
    let err = error_json(&home.run(&["audit", "verify"]), "EXP005");
    assert_eq!(err["details"]["reason"], "integrity_violation");
    assert_eq!(err["details"]["seq"], 2);
    assert_eq!(err["details"]["check"], "record");

    // The newest events cut off the log: the database's anchor names the last committed event, so the home
    // refuses to open, checkpoint or not.
    home.restore(&intact);
    write_lines(&home.log(), &original[..original.len() - 3]);
    let err = error_json(&home.run(&["jobs", "list"]), "EXP005");
    assert_eq!(err["details"]["reason"], "integrity_violation");
    assert_eq!(err["details"]["check"], "anchor");
    let err = error_json(&home.run(&["audit", "verify"]), "EXP005");
    assert_eq!(err["details"]["check"], "anchor");

    // The whole home rolled back to an older copy (log and database together): a valid chain on its own, short
    // of the checkpoint kept outside.
    home.restore(&before_more_work);
    stdout_text(&home.run(&["audit", "verify"]));
    let err = error_json(
        &home.run(&["audit", "verify", "--checkpoint", cp_path.to_str().unwrap()]),
        "EXP005",
    );
    assert_eq!(err["details"]["check"], "checkpoint");

    // Checkpoint files that are not checkpoints.
    home.restore(&intact);
    let missing = home.path("missing.json");
    let err = error_json(
        &home.run(&["audit", "verify", "--checkpoint", missing.to_str().unwrap()]),
        "EXP001",
    );
    assert_eq!(err["field"], "checkpoint");
    let junk = home.path("junk.json");
    fs::write(&junk, "{\"seq\": 1}").unwrap();
    let err = error_json(
        &home.run(&["audit", "verify", "--checkpoint", junk.to_str().unwrap()]),
        "EXP002",
    );
    assert_eq!(err["details"]["reason"], "invalid_checkpoint");
    stdout_text(&home.run(&["audit", "verify", "--checkpoint", cp_path.to_str().unwrap()]));
}

#[test]
fn a_torn_last_record_is_cut_and_no_committed_event_is_lost() {
    let home = Home::new();
    home.work();
    let before = fs::read(home.log()).unwrap();
    let committed = before.iter().filter(|b| **b == b'\n').count();
    // A crash in the middle of appending a line leaves bytes without a newline.
    let mut torn = before.clone();
    torn.extend_from_slice(b"{\"action\":\"jobs_li");
    fs::write(home.log(), &torn).unwrap();
    stdout_text(&home.run(&["audit", "verify"]));
    let after = fs::read(home.log()).unwrap();
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the intact records stay"
    );
    let events = check_chain(&stdout_text(&home.run(&["audit", "export"])));
    assert!(events.len() > committed);
    for line in String::from_utf8(after).unwrap().lines() {
        serde_json::from_str::<AuditEvent>(line).unwrap();
    }
}

#[test]
fn reading_the_trail_needs_audit_read_and_is_audited() {
    let home = Home::new();
    let stat = home.key("analyst", "statistician");
    for args in [
        &["audit", "verify"][..],
        &["audit", "checkpoint"],
        &["audit", "export"],
        &["audit", "export", "--format", "csv"],
    ] {
        let err = error_json(&home.run_as(&stat, args), "EXP003");
        assert_eq!(err["details"]["reason"], "permission_denied");
    }
    let auditor = home.key("auditor", "auditor");
    let out = home.path("x.jsonl");
    stdout_text(&home.run_as(&auditor, &["audit", "export", "-o", out.to_str().unwrap()]));
    let events = check_chain(&stdout_text(&home.run(&["audit", "export"])));
    let denied: Vec<&str> = events
        .iter()
        .filter(|e| e.outcome.as_str() == "denied")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        denied,
        [
            "verify_audit",
            "audit_checkpoint",
            "audit_events",
            "audit_events"
        ]
    );
    assert!(events
        .iter()
        .any(|e| e.action == "audit_events" && e.actor.name == "auditor"));
    // A refused export leaves no file.
    let nothing = home.path("nothing.jsonl");
    error_json(
        &home.run_as(&stat, &["audit", "export", "-o", nothing.to_str().unwrap()]),
        "EXP003",
    );
    assert!(!nothing.exists());
}

#[test]
fn a_checkpoint_file_is_signed_and_an_edited_one_is_refused() {
    let home = Home::new();
    home.work();
    let cp_path = home.path("cp.json");
    stdout_text(&home.run(&["audit", "checkpoint", "-o", cp_path.to_str().unwrap()]));
    let mut cp: Value = serde_json::from_slice(&fs::read(&cp_path).unwrap()).unwrap();
    assert_eq!(cp["signed"]["algorithm"], "ed25519");
    let v = stdout_json(&home.run(&[
        "audit",
        "verify",
        "--checkpoint",
        cp_path.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["checkpoint"]["signed"], true);
    // Moved back to an earlier event of the trail, with that event's real hash: the signature refuses it.
    let events = check_chain(&stdout_text(&home.run(&["audit", "export"])));
    cp["seq"] = Value::from(events[1].seq);
    cp["hash"] = Value::from(events[1].hash.clone());
    fs::write(&cp_path, serde_json::to_vec(&cp).unwrap()).unwrap();
    let err = error_json(
        &home.run(&["audit", "verify", "--checkpoint", cp_path.to_str().unwrap()]),
        "EXP005",
    );
    assert_eq!(err["details"]["check"], "checkpoint_signature");
}
