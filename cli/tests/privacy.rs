//! Regression tests of the attack review's privacy findings, through the `trialport` binary on a real home:
//! H1 (an identifiable export stays identifiable: its download and the view of its request need
//! `data:identifiable`), H2 (reports and dashboards follow the columns' privacy classes), H3 (filters, sorts and
//! column selections on classed columns need `data:identifiable`) and M4(c) (a download checks the artifact
//! against the job's `job.succeeded` audit event, not only against the job's row).

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::process::Output;

mod common;
use common::{
    command, error_json, home_args, init_home, set_password, set_signing_config, stdout_json,
    write_source, PASSWORD_ENV,
};

const PASSWORD: &str = "correct horse battery";

/// The attack review's study: `NAME` is a direct identifier, `USUBJID` a subject id, `AGE` an age.
const DM_CSV: &str = "STUDYID,USUBJID,NAME,AGE\nS1,S1-001,Alice Smith,40\nS1,S1-002,Bob Jones,50\n";
const DM_META: &str = r#"{"columns":[{"name":"USUBJID","privacy":"subject_id"},
  {"name":"NAME","privacy":"direct_identifier"},{"name":"AGE","privacy":"age"}]}"#;
const AE_CSV: &str = "STUDYID,AESEQ,AETERM\nS1,1,HEADACHE\n";

struct Home {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    admin: String,
}

impl Home {
    fn new(encrypted: bool) -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(
            tmp.path(),
            "S1",
            &[
                ("DM.csv", DM_CSV),
                ("DM.meta.json", DM_META),
                ("AE.csv", AE_CSV),
            ],
        );
        let dir = tmp.path().join("home");
        let admin = if encrypted {
            init_home(&dir, &source)
        } else {
            let v = stdout_json(&common::run(&[
                "--home",
                dir.to_str().unwrap(),
                "init",
                "--source",
                source.to_str().unwrap(),
                "--org",
                "acme",
                "--no-encryption",
            ]));
            format!("ApiKey {}", v["api_key"].as_str().unwrap())
        };
        set_signing_config(
            &dir,
            json!({"pbkdf2_iterations": 1000, "max_failed_attempts": 5}),
        );
        assert!(set_password(&dir, &admin, PASSWORD, None).status.success());
        Home { tmp, dir, admin }
    }

    fn run(&self, cred: &str, args: &[&str]) -> Output {
        command(&home_args(&self.dir, cred, args))
            .env(PASSWORD_ENV, PASSWORD)
            .output()
            .unwrap()
    }

    /// A new API key of the study with `role`.
    fn key(&self, role: &str) -> String {
        common::create_key(&self.dir, &self.admin, role, "S1")
    }

    /// `export data` of DM as csv, waited for, with `extra` arguments.
    fn export_dm(&self, cred: &str, extra: &[&str]) -> Output {
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

    /// `export report|dashboard --spec FILE --format FORMAT --wait` of the request or spec `spec`.
    fn export_document(&self, cred: &str, kind: &str, format: &str, spec: &Value) -> Output {
        let file = self.tmp.path().join(format!("{kind}-{format}.json"));
        fs::write(&file, spec.to_string()).unwrap();
        self.run(
            cred,
            &[
                "--json",
                "export",
                kind,
                "--spec",
                file.to_str().unwrap(),
                "--format",
                format,
                "--wait",
            ],
        )
    }

    /// `download JOB --artifact NAME -o FILE`: the run and the file it was to write.
    fn download(&self, cred: &str, job: &str, artifact: &str) -> (Output, PathBuf) {
        let target = self.tmp.path().join(format!("dl-{job}-{artifact}"));
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
        (out, target)
    }

    /// The audit trail, one JSON object per event.
    fn events(&self) -> Vec<Value> {
        let out = self.run(&self.admin, &["audit", "export"]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn id(job: &Value) -> String {
    assert_eq!(job["state"], "succeeded", "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// Asserts an EXP003 `identifiable_data` refusal naming `column` (name only, no value) in `field`.
fn refused(out: &Output, column: &str, field: &str) {
    let e = error_json(out, "EXP003");
    assert_eq!(e["details"]["reason"], "identifiable_data", "{e}");
    assert_eq!(e["details"]["column"], column, "{e}");
    assert_eq!(e["field"], field, "{e}");
    let text = String::from_utf8_lossy(&out.stderr);
    for value in ["Alice", "Bob", "S1-001"] {
        assert!(!text.contains(value), "a data value in the error: {text}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// H1

#[test]
fn h1_an_identifiable_job_needs_data_identifiable_to_download_and_to_show_its_request() {
    let h = Home::new(true);
    // The admin's signed identifiable export, filtered on a name: the request itself holds a name.
    let job = id(&stdout_json(&h.export_dm(
        &h.admin,
        &[
            "--identifiable",
            "--sign",
            "approval",
            "--filter",
            "NAME:eq:Alice Smith",
        ],
    )));
    for role in ["monitor", "statistician", "integration"] {
        let cred = h.key(role);
        let (out, target) = h.download(&cred, &job, "dm.csv");
        let e = error_json(&out, "EXP003");
        assert_eq!(e["details"]["reason"], "identifiable_data", "{role}: {e}");
        assert!(!target.exists(), "{role}: a file was written");
        // The job's state is visible, its request is not.
        let shown = h.run(&cred, &["--json", "jobs", "show", &job]);
        let shown_text = String::from_utf8(shown.stdout.clone()).unwrap();
        let v = stdout_json(&shown);
        assert_eq!(v["state"], "succeeded", "{role}");
        assert_eq!(
            v["request"],
            json!({"withheld": "identifiable_data"}),
            "{role}"
        );
        assert!(!shown_text.contains("Alice Smith"), "{role}: {shown_text}");
        let listed = h.run(&cred, &["--json", "jobs", "list"]);
        let listed_text = String::from_utf8(listed.stdout.clone()).unwrap();
        stdout_json(&listed);
        assert!(
            !listed_text.contains("Alice Smith"),
            "{role}: {listed_text}"
        );
    }
    // Each download refusal is audited as denied; each view records the request it withheld.
    let events = h.events();
    let denied = events
        .iter()
        .filter(|e| {
            e["action"] == "download"
                && e["outcome"] == "denied"
                && e["target"] == format!("job:{job}")
                && e["details"]["reason"] == "identifiable_data"
        })
        .count();
    assert_eq!(denied, 3);
    for action in ["get_job", "list_jobs"] {
        let withheld = events
            .iter()
            .filter(|e| {
                e["action"] == action
                    && e["details"]["requests_withheld"]
                        == json!({"reason": "identifiable_data", "jobs": 1})
            })
            .count();
        assert_eq!(withheld, 3, "{action}");
    }
    // The admin downloads it and sees the request.
    let (out, target) = h.download(&h.admin, &job, "dm.csv");
    stdout_json(&out);
    assert!(fs::read_to_string(target).unwrap().contains("Alice Smith"));
    let v = stdout_json(&h.run(&h.admin, &["--json", "jobs", "show", &job]));
    assert_eq!(v["identifiable"], true);
    assert_eq!(
        v["request"]["datasets"][0]["filters"][0]["value"],
        "Alice Smith"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// H2

fn dm_table_report() -> Value {
    json!({"study": "S1", "title": "t",
           "sections": [{"type": "table", "dataset": "DM", "columns": ["USUBJID", "NAME"]}]})
}

#[test]
fn h2_reports_and_dashboards_refuse_identifying_columns_to_a_monitor() {
    let h = Home::new(true);
    let monitor = h.key("monitor");
    for format in ["html", "xlsx", "json"] {
        let out = h.export_document(&monitor, "report", format, &dm_table_report());
        refused(&out, "USUBJID", "columns");
    }
    // A table without a column list shows every column, the classed ones too.
    let all =
        json!({"study": "S1", "title": "t", "sections": [{"type": "table", "dataset": "DM"}]});
    refused(
        &h.export_document(&monitor, "report", "html", &all),
        "USUBJID",
        "columns",
    );
    let dashboard = json!({"study": "S1", "title": "d",
        "tables": [{"dataset": "DM", "columns": ["STUDYID", "NAME"]}]});
    refused(
        &h.export_document(&monitor, "dashboard", "html", &dashboard),
        "NAME",
        "columns",
    );
    // Aggregates over classed columns are allowed, and show no value of them.
    let counts = json!({"study": "S1", "title": "t", "sections": [{"type": "summary", "dataset": "DM",
        "group_by": ["STUDYID"], "measures": [
            {"label": "Subjects", "measure": "distinct_count", "column": "USUBJID"},
            {"label": "Mean age", "measure": "mean", "column": "AGE"}]}]});
    let job = id(&stdout_json(
        &h.export_document(&monitor, "report", "html", &counts),
    ));
    let (out, target) = h.download(&monitor, &job, "report.html");
    stdout_json(&out);
    let html = fs::read_to_string(target).unwrap();
    assert!(html.contains("45"), "the mean age");
    for value in ["S1-001", "Alice Smith"] {
        assert!(!html.contains(value));
    }
    // Every refusal is audited as denied, naming no value.
    let events = h.events();
    let denied: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcome"] == "denied" && e["details"]["reason"] == "identifiable_data")
        .collect();
    assert_eq!(denied.len(), 5, "{denied:?}");
    assert!(!serde_json::to_string(&denied).unwrap().contains("Alice"));
}

// ---------------------------------------------------------------------------------------------------------------
// H3

#[test]
fn h3_a_statistician_cannot_filter_sort_or_select_by_classed_columns() {
    let h = Home::new(true);
    let stat = h.key("statistician");
    // The review's reproduction: safe-harbor output, rows selected by a name.
    refused(
        &h.export_dm(
            &stat,
            &[
                "--deidentify",
                "safe-harbor",
                "--filter",
                "NAME:eq:Alice Smith",
            ],
        ),
        "NAME",
        "filters",
    );
    // A filter on a classed column left out of the selection is still a filter on it.
    refused(
        &h.export_dm(
            &stat,
            &[
                "--deidentify",
                "safe-harbor",
                "--columns",
                "STUDYID",
                "--filter",
                "AGE:gt:45",
            ],
        ),
        "AGE",
        "filters",
    );
    // Column selection: classed columns selected raw.
    refused(
        &h.export_dm(&stat, &["--columns", "STUDYID,NAME"]),
        "NAME",
        "columns",
    );
    // Sorting a report table by a classed column (a table sorts by its own columns, so AGE is shown too: both
    // uses are refused).
    let sorted = json!({"study": "S1", "title": "t", "sections": [{"type": "table", "dataset": "DM",
        "columns": ["STUDYID", "AGE"], "sort": [{"column": "AGE", "descending": true}]}]});
    let out = h.export_document(&stat, "report", "html", &sorted);
    refused(&out, "AGE", "columns");
    let uses = &error_json(&out, "EXP003")["details"]["columns"];
    assert!(
        uses.as_array()
            .unwrap()
            .contains(&json!({"dataset": "DM", "column": "AGE", "privacy": "age", "use": "sort"})),
        "{uses}"
    );
    // What the statistician may do: de-identified output, filtered on an unclassed column.
    let job = id(&stdout_json(&h.export_dm(
        &stat,
        &["--deidentify", "safe-harbor", "--filter", "STUDYID:eq:S1"],
    )));
    let (out, target) = h.download(&stat, &job, "dm.csv");
    stdout_json(&out);
    let csv = fs::read_to_string(target).unwrap();
    assert!(!csv.contains("Alice") && !csv.contains("S1-001"), "{csv}");
    // An admin may filter on a name; the job is then identifiable, even though its output is de-identified.
    let job = id(&stdout_json(&h.export_dm(
        &h.admin,
        &[
            "--deidentify",
            "safe-harbor",
            "--filter",
            "NAME:eq:Alice Smith",
        ],
    )));
    let (out, _) = h.download(&stat, &job, "dm.csv");
    assert_eq!(
        error_json(&out, "EXP003")["details"]["reason"],
        "identifiable_data"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// M4(c)

#[test]
fn m4c_download_checks_the_artifact_against_the_succeeded_event() {
    let h = Home::new(false);
    let job = id(&stdout_json(&h.run(
        &h.admin,
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
            "--wait",
        ],
    )));
    // Someone who can write the home changes the artifact and its record in the job's row (through the store,
    // so the row's MAC is right).
    let artifact = common::files_under(&h.dir.join("artifacts"))
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "ae.csv"))
        .expect("the artifact on disk");
    let forged = "STUDYID,AESEQ,AETERM\nS1,1,NOTHING\n";
    fs::write(&artifact, forged).unwrap();
    let (_, digest) = trialport_core::hashing::sha256_of(forged.as_bytes()).unwrap();
    let home = trialport_core::home::Home::open(&h.dir).unwrap();
    let store = home.open_store().unwrap();
    let uuid: uuid::Uuid = job.parse().unwrap();
    use trialport_core::job::JobReads;
    let mut row = store.get_job(uuid).unwrap();
    for a in &mut row.artifacts {
        if a.name == "ae.csv" {
            a.sha256 = digest.clone();
            a.bytes = forged.len() as u64;
        }
    }
    trialport_core::store::Store::write(&store, &mut |tx| tx.update_job(&row).map(|_| ()), &|_| {
        Ok(())
    })
    .unwrap();
    drop(store);
    let (out, target) = h.download(&h.admin, &job, "ae.csv");
    let e = error_json(&out, "EXP005");
    assert_eq!(e["details"]["reason"], "integrity_violation", "{e}");
    assert_eq!(e["details"]["check"], "succeeded_event", "{e}");
    assert!(!target.exists(), "a file was written");
    // The manifest, untouched, still downloads.
    let (out, _) = h.download(&h.admin, &job, "manifest.json");
    stdout_json(&out);
}
