//! The privacy rule as a matrix, through the `trialport` binary on a real home: every role × column class ×
//! output kind. The expectations come from the rules (DESIGN.md §6 and `docs/permissions.md`), written here as
//! tables, not from what the engine does:
//!
//! - the permissions of each role ([`ROLE_PERMISSIONS`]);
//! - the permission each output kind needs, and what it does with a classed column ([`Output`]): a column whose
//!   class is not `none` leaves transformed by the request's de-identification profile, or raw with
//!   `data:identifiable` and the request's `identifiable` flag (signed); aggregates of it are allowed; filtering
//!   or sorting by it needs `data:identifiable`; an identifiable job's download and request need
//!   `data:identifiable`.
//!
//! Each cell is allowed (and then a classed column's raw value is absent from the bytes when de-identified, and
//! present only where the rule lets it out) or refused with EXP003.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::process::Output as Run;

mod common;
use common::{
    command, error_json, home_args, init_home, set_password, set_signing_config, stdout_json,
    write_source, PASSWORD_ENV,
};

const PASSWORD: &str = "correct horse battery";

/// Ages of 90 and over, so that Safe Harbor changes them (`90+`).
const DM_CSV: &str = "STUDYID,USUBJID,NAME,AGE,ARM\n\
S1,S1-001,Alice Smith,91,PLACEBO\n\
S1,S1-002,Bob Jones,97,DRUG\n";
const DM_META: &str = r#"{"columns":[{"name":"USUBJID","privacy":"subject_id"},
  {"name":"NAME","privacy":"direct_identifier"},{"name":"AGE","privacy":"age"}]}"#;

/// The column classes of the matrix: (class, column of that class, one of its raw values).
const CLASSES: [(&str, &str, &str); 4] = [
    ("none", "ARM", "PLACEBO"),
    ("subject_id", "USUBJID", "S1-001"),
    ("direct_identifier", "NAME", "Alice Smith"),
    ("age", "AGE", "91"),
];

/// DESIGN.md §6 / docs/permissions.md: what each role may do (the permissions this matrix needs).
const ROLE_PERMISSIONS: [(&str, &[&str]); 7] = [
    (
        "admin",
        &[
            "export:data",
            "export:report",
            "export:dashboard",
            "jobs:read",
            "jobs:download",
            "data:identifiable",
        ],
    ),
    (
        "data_manager",
        &[
            "export:data",
            "export:report",
            "export:dashboard",
            "jobs:read",
            "jobs:download",
        ],
    ),
    (
        "statistician",
        &[
            "export:data",
            "export:report",
            "export:dashboard",
            "jobs:read",
            "jobs:download",
        ],
    ),
    (
        "monitor",
        &[
            "export:report",
            "export:dashboard",
            "jobs:read",
            "jobs:download",
        ],
    ),
    ("auditor", &["jobs:read"]),
    (
        "integration",
        &["export:data", "jobs:read", "jobs:download"],
    ),
    // The platform's operator manages studies and keys of every organization and reads no study data.
    ("operator", &[]),
];

/// The output kinds of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// `export data` of the column, de-identified with `safe-harbor`.
    DataExport,
    /// A report table showing the column.
    ReportTable,
    /// A dashboard table showing the column.
    DashboardTable,
    /// A dashboard KPI: the distinct count of the column.
    Kpi,
    /// A chart with the column as its categories.
    Chart,
    /// `export data` (safe-harbor, the column left out) filtered on the column.
    Filter,
    /// A report table sorted by the column (a table sorts by its own columns: it shows it too).
    Sort,
    /// Downloading an admin's identifiable export of the column.
    DownloadIdentifiable,
    /// `jobs show` of an admin's identifiable export of the column.
    ShowIdentifiable,
}

/// How the rule treats a classed column in each output kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Its values leave transformed by the profile: allowed, raw value absent.
    Transformed,
    /// Its raw values are shown: `data:identifiable` with the signed `identifiable` flag.
    Raw,
    /// Only an aggregate is shown: allowed, raw value absent.
    Aggregate,
    /// Rows are selected by it: `data:identifiable`.
    Selects,
    /// The job is identifiable whatever the class: `data:identifiable`.
    IdentifiableJob,
    /// The job's state is shown to every reader; its request (and the literals in it) only with
    /// `data:identifiable`.
    IdentifiableRequest,
}

/// (output, the permission it needs, the rule for a classed column).
const OUTPUTS: [(Output, &str, Rule); 9] = [
    (Output::DataExport, "export:data", Rule::Transformed),
    (Output::ReportTable, "export:report", Rule::Raw),
    (Output::DashboardTable, "export:dashboard", Rule::Raw),
    (Output::Kpi, "export:dashboard", Rule::Aggregate),
    (Output::Chart, "export:dashboard", Rule::Raw),
    (Output::Filter, "export:data", Rule::Selects),
    (Output::Sort, "export:report", Rule::Raw),
    (
        Output::DownloadIdentifiable,
        "jobs:download",
        Rule::IdentifiableJob,
    ),
    (
        Output::ShowIdentifiable,
        "jobs:read",
        Rule::IdentifiableRequest,
    ),
];

struct Home {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    admin: String,
}

impl Home {
    fn new() -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(
            tmp.path(),
            "S1",
            &[("DM.csv", DM_CSV), ("DM.meta.json", DM_META)],
        );
        let dir = tmp.path().join("home");
        let admin = init_home(&dir, &source);
        set_signing_config(
            &dir,
            json!({"pbkdf2_iterations": 1000, "max_failed_attempts": 5}),
        );
        assert!(set_password(&dir, &admin, PASSWORD, None).status.success());
        Home { tmp, dir, admin }
    }

    fn run(&self, cred: &str, args: &[&str]) -> Run {
        command(&home_args(&self.dir, cred, args))
            .env(PASSWORD_ENV, PASSWORD)
            .output()
            .unwrap()
    }

    fn key(&self, role: &str) -> String {
        // An operator acts on every organization's studies, not on some.
        let studies = if role == "operator" { "*" } else { "S1" };
        common::create_key(&self.dir, &self.admin, role, studies)
    }

    fn export_data(&self, cred: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "--json",
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--wait",
        ];
        args.extend_from_slice(extra);
        self.run(cred, &args)
    }

    /// `export KIND --spec FILE --format html --wait`, the request marked identifiable and signed when
    /// `identifiable`.
    fn export_document(&self, cred: &str, kind: &str, spec: Value, identifiable: bool) -> Run {
        let n = fs::read_dir(self.tmp.path()).unwrap().count();
        let file = self.tmp.path().join(format!("spec-{n}.json"));
        let request = json!({kind: spec, "format": "html", "identifiable": identifiable});
        fs::write(&file, request.to_string()).unwrap();
        let mut args = vec![
            "--json",
            "export",
            kind,
            "--spec",
            file.to_str().unwrap(),
            "--wait",
        ];
        if identifiable {
            args.extend(["--sign", "approval"]);
        }
        self.run(cred, &args)
    }

    /// The bytes of `artifact` of `job`, downloaded by `cred`, or the failed run.
    fn download(&self, cred: &str, job: &str, artifact: &str) -> Result<String, Run> {
        let n = fs::read_dir(self.tmp.path()).unwrap().count();
        let target = self.tmp.path().join(format!("dl-{n}"));
        let out = self.run(
            cred,
            &[
                "--json",
                "download",
                job,
                "-o",
                target.to_str().unwrap(),
                "--artifact",
                artifact,
            ],
        );
        if !out.status.success() {
            assert!(!target.exists(), "a refused download wrote a file");
            return Err(out);
        }
        Ok(fs::read_to_string(target).unwrap())
    }
}

/// Whether `text` shows `value` as a whole token (not inside a longer run of letters and digits, such as a hash).
fn shows(text: &str, value: &str) -> bool {
    text.match_indices(value).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + value.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

fn has(role: &str, permission: &str) -> bool {
    ROLE_PERMISSIONS
        .iter()
        .find(|(r, _)| *r == role)
        .unwrap()
        .1
        .contains(&permission)
}

/// The expectation of a cell from the tables: allowed, and whether the raw value may appear.
fn expected(role: &str, class: &str, output: Output) -> Option<bool> {
    let (_, permission, rule) = OUTPUTS.iter().find(|(o, _, _)| *o == output).unwrap();
    if !has(role, permission) {
        return None;
    }
    let identifiable = has(role, "data:identifiable");
    match rule {
        Rule::IdentifiableJob => identifiable.then_some(true),
        Rule::IdentifiableRequest => Some(identifiable),
        // Only a count is shown.
        Rule::Aggregate => Some(false),
        // Rows are selected by the column; it is not written.
        Rule::Selects if class == "none" => Some(false),
        Rule::Selects => identifiable.then_some(false),
        _ if class == "none" => Some(true),
        Rule::Transformed => Some(false),
        Rule::Raw => identifiable.then_some(true),
    }
}

/// An admin's identifiable (signed) export of the column, with a subject id literal in its request.
fn identifiable_job(h: &Home, column: &str) -> String {
    let columns = format!("STUDYID,{column}");
    let job = stdout_json(&h.export_data(
        &h.admin,
        &[
            "--columns",
            &columns,
            "--filter",
            "USUBJID:in:S1-001,S1-002",
            "--identifiable",
            "--sign",
            "approval",
        ],
    ));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["identifiable"], true, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// Runs one cell: `Ok(bytes shown)` when allowed, `Err(run)` when refused.
fn cell(
    h: &Home,
    cred: &str,
    role: &str,
    column: &str,
    output: Output,
    job: &str,
) -> Result<String, Run> {
    // The permitted way to show raw values: the flag and a signature, asked only by who holds the permission.
    let flag = has(role, "data:identifiable") && column != "ARM";
    let finished = |out: Run, artifact: &str| -> Result<String, Run> {
        if !out.status.success() {
            return Err(out);
        }
        let v = stdout_json(&out);
        assert_eq!(v["state"], "succeeded", "{v}");
        Ok(h.download(cred, v["id"].as_str().unwrap(), artifact)
            .unwrap_or_else(|e| panic!("own download: {}", String::from_utf8_lossy(&e.stderr))))
    };
    let table = json!({"dataset": "DM", "columns": ["STUDYID", column]});
    match output {
        Output::DataExport => finished(
            h.export_data(
                cred,
                &["--columns", &format!("STUDYID,{column}"), "--deidentify", "safe-harbor"],
            ),
            "dm.csv",
        ),
        Output::Filter => finished(
            h.export_data(
                cred,
                &[
                    "--columns",
                    "STUDYID",
                    "--deidentify",
                    "safe-harbor",
                    "--filter",
                    &format!("{column}:is_not_null"),
                ],
            ),
            "dm.csv",
        ),
        Output::ReportTable => finished(
            h.export_document(
                cred,
                "report",
                json!({"study": "S1", "title": "t", "sections": [
                    {"type": "table", "dataset": "DM", "columns": ["STUDYID", column]}]}),
                flag,
            ),
            "report.html",
        ),
        Output::Sort => finished(
            h.export_document(
                cred,
                "report",
                json!({"study": "S1", "title": "t", "sections": [
                    {"type": "table", "dataset": "DM", "columns": ["STUDYID", column],
                     "sort": [{"column": column, "descending": true}]}]}),
                flag,
            ),
            "report.html",
        ),
        Output::DashboardTable => finished(
            h.export_document(
                cred,
                "dashboard",
                json!({"study": "S1", "title": "d", "tables": [table]}),
                flag,
            ),
            "dashboard.html",
        ),
        Output::Kpi => finished(
            h.export_document(
                cred,
                "dashboard",
                json!({"study": "S1", "title": "d", "tiles": [
                    {"label": "distinct", "dataset": "DM", "measure": "distinct_count", "column": column}]}),
                false,
            ),
            "dashboard.html",
        ),
        Output::Chart => finished(
            h.export_document(
                cred,
                "dashboard",
                json!({"study": "S1", "title": "d", "charts": [
                    {"title": "c", "kind": "bar", "dataset": "DM", "x": column, "measure": "count"}]}),
                flag,
            ),
            "dashboard.html",
        ),
        Output::DownloadIdentifiable => h.download(cred, job, "dm.csv"),
        Output::ShowIdentifiable => {
            let out = h.run(cred, &["--json", "jobs", "show", job]);
            if !out.status.success() {
                return Err(out);
            }
            let v = stdout_json(&out);
            assert_eq!(v["state"], "succeeded", "{role}: the state is always shown");
            Ok(v["request"].to_string())
        }
    }
}

#[test]
fn role_by_class_by_output() {
    let h = Home::new();
    let jobs: Vec<String> = CLASSES
        .iter()
        .map(|(_, column, _)| identifiable_job(&h, column))
        .collect();
    let mut failures = Vec::new();
    let mut cells = 0;
    for (role, _) in ROLE_PERMISSIONS {
        let cred = if role == "admin" {
            h.admin.clone()
        } else {
            h.key(role)
        };
        for ((class, column, raw), job) in CLASSES.iter().zip(&jobs) {
            for (output, _, _) in OUTPUTS {
                cells += 1;
                let name = format!("{role} × {class} × {output:?}");
                let want = expected(role, class, output);
                // The identifiable job's request holds a subject id: that is the literal to look for.
                let raw = if output == Output::ShowIdentifiable {
                    "S1-001"
                } else {
                    raw
                };
                match (cell(&h, &cred, role, column, output, job), want) {
                    (Ok(bytes), Some(shown)) => {
                        if shows(&bytes, raw) != shown {
                            failures.push(format!(
                                "{name}: raw value {} but expected {}",
                                if shows(&bytes, raw) {
                                    "present"
                                } else {
                                    "absent"
                                },
                                if shown { "present" } else { "absent" }
                            ));
                        }
                    }
                    (Ok(_), None) => failures.push(format!("{name}: allowed, expected EXP003")),
                    (Err(out), Some(_)) => failures.push(format!(
                        "{name}: refused, expected allowed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )),
                    (Err(out), None) => {
                        let e = error_json(&out, "EXP003");
                        let text = String::from_utf8_lossy(&out.stderr);
                        if shows(&text, raw) && *class != "none" {
                            failures.push(format!("{name}: the refusal shows a value: {text}"));
                        }
                        assert!(e["details"]["reason"].is_string());
                    }
                }
            }
        }
    }
    assert_eq!(cells, 7 * 4 * 9);
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
