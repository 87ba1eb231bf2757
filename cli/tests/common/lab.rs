//! A home to crash and load: study data big enough for exports to take a while, short job leases, and the checks
//! that must hold after any kill: the trail verifies, every job has its submission event, each job's state is its
//! last state event, a finished job has exactly one end event, and a succeeded job's folder holds only the files
//! of the attempt that committed, which download and verify.

use super::{command, home_args, init_home, stdout_json, stdout_text, write_source};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Job events that end a job, and the state each leaves.
const END_EVENTS: [(&str, &str); 3] = [
    ("job.succeeded", "succeeded"),
    ("job.failed", "failed"),
    ("job.cancelled", "cancelled"),
];

/// Operations whose success event submits a job.
const SUBMISSIONS: [&str; 4] = [
    "export_data",
    "export_report",
    "export_dashboard",
    "bulk_export",
];

/// The arguments of `export data` of `datasets` of study `S1` as `format` with `--json`, and `--wait` when
/// `wait`: the export the crash and concurrency tests run, started with [`Lab::command`] or [`Lab::run`].
pub fn export_args<'a>(datasets: &'a str, format: &'a str, wait: bool) -> Vec<&'a str> {
    let mut args = vec![
        "export",
        "data",
        "--study",
        "S1",
        "--datasets",
        datasets,
        "--format",
        format,
        "--json",
    ];
    if wait {
        args.push("--wait");
    }
    args
}

/// A home with study `S1`: `DM` (3 rows), `AE` (3 rows) and `LB` (`lb_rows` rows).
pub struct Lab {
    _tmp: tempfile::TempDir,
    /// The home directory.
    pub home: PathBuf,
    /// The first admin's credential.
    pub cred: String,
    /// A scratch directory beside the home.
    pub scratch: PathBuf,
}

impl Lab {
    /// A new home whose job leases last `lease_secs` and whose jobs get `max_attempts` attempts.
    pub fn new(lb_rows: usize, lease_secs: u64, max_attempts: u32) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let mut lb = String::from("STUDYID,USUBJID,LBSEQ,LBTESTCD,LBORRES\n");
        for i in 0..lb_rows {
            lb.push_str(&format!(
                "S1,S1-{:04},{i},GLUC,{}.{}\n",
                i % 5000,
                70 + i % 50,
                i % 10
            ));
        }
        let source = write_source(
            tmp.path(),
            "S1",
            &[
                ("DM.csv", "STUDYID,USUBJID,AGE\nS1,S1-001,34\nS1,S1-002,51\nS1,S1-003,47\n"),
                ("AE.csv", "STUDYID,USUBJID,AESEQ,AETERM\nS1,S1-001,1,HEADACHE\nS1,S1-002,1,NAUSEA\nS1,S1-002,2,RASH\n"),
                ("LB.csv", &lb),
            ],
        );
        let home = tmp.path().join("home");
        let cred = init_home(&home, &source);
        // TRIALPORT_LAB_DEFAULT_JOBS leaves the home's job settings at their defaults: for running these tests
        // against a binary older than job leases (which refuses the settings), to see them fail there.
        if std::env::var_os("TRIALPORT_LAB_DEFAULT_JOBS").is_none() {
            let config = home.join("config.json");
            let mut c: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
            c["jobs"] = json!({"lease_secs": lease_secs, "max_attempts": max_attempts});
            fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        }
        let scratch = tmp.path().join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        Lab {
            _tmp: tmp,
            home,
            cred,
            scratch,
        }
    }

    /// `trialport --home HOME --credential CRED ARGS`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        command(&home_args(&self.home, &self.cred, args))
    }

    /// Runs `trialport ARGS` on the home to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The whole audit trail, as `audit export` gives it.
    pub fn events(&self) -> Vec<Value> {
        stdout_text(&self.run(&["audit", "export"]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// How many `action` events of the trail succeeded (through `audit export`, which opens the home).
    pub fn successes(&self, action: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == "success")
            .count()
    }

    /// The number `sql` (a `SELECT count(*) ...`) gives on the home's database, read as any SQLite client would,
    /// without opening the home.
    pub fn count_rows(&self, sql: &str) -> usize {
        let db = rusqlite::Connection::open_with_flags(
            self.home.join("trialport.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let n: i64 = db.query_row(sql, [], |r| r.get(0)).unwrap();
        usize::try_from(n).unwrap()
    }

    /// The audit log file as it is, read as an outside auditor would, without opening the home (opening it may
    /// change it: rescue an expired lease, copy committed events to the log).
    pub fn logged_events(&self) -> Vec<Value> {
        fs::read_to_string(self.home.join("audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every job row of the home's database as it is, read with SQLite without opening the home.
    pub fn jobs(&self) -> Vec<Value> {
        let db = rusqlite::Connection::open_with_flags(
            self.home.join("trialport.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = db
            .prepare("SELECT body FROM jobs ORDER BY created_at")
            .unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
            .collect();
        rows
    }

    /// The artifact folder of job `id`.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.home.join("artifacts").join(id)
    }

    /// Checks everything that must hold after any crash (see the module docs); returns the jobs. The home is
    /// opened once (`audit verify`, which also brings the log up to date with the committed events); then the
    /// job rows and the log are read as they are, with no engine running that could change them in between.
    pub fn check(&self) -> Vec<Value> {
        stdout_text(&self.run(&["audit", "verify"]));
        let jobs = self.jobs();
        let events = self.logged_events();
        let mut by_job: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for e in &events {
            if let Some(id) = e["target"].as_str().and_then(|t| t.strip_prefix("job:")) {
                by_job.entry(id.to_string()).or_default().push(e);
            }
        }
        for job in &jobs {
            let id = job["id"].as_str().unwrap();
            let state = job["state"].as_str().unwrap();
            let evs = by_job.get(id).cloned().unwrap_or_default();
            let submitted = evs
                .iter()
                .filter(|e| {
                    SUBMISSIONS.contains(&e["action"].as_str().unwrap())
                        && e["outcome"] == "success"
                        && e["details"]["idempotent_replay"] == false
                })
                .count();
            assert_eq!(submitted, 1, "job {id}: submission events");
            let ends: Vec<&str> = evs
                .iter()
                .filter_map(|e| {
                    END_EVENTS
                        .iter()
                        .find(|(a, _)| e["action"] == *a)
                        .map(|(_, s)| *s)
                })
                .collect();
            let last_state = evs
                .iter()
                .filter_map(|e| match e["action"].as_str().unwrap() {
                    "job.running" => Some("running"),
                    "job.requeued" => Some("queued"),
                    a => END_EVENTS.iter().find(|(x, _)| *x == a).map(|(_, s)| *s),
                })
                .next_back()
                .unwrap_or("queued");
            assert_eq!(state, last_state, "job {id}: state against the trail");
            match state {
                "succeeded" | "failed" | "cancelled" => {
                    assert_eq!(ends, [state], "job {id}: end events")
                }
                _ => assert!(ends.is_empty(), "job {id}: ended, yet {state}"),
            }
            if state == "succeeded" {
                self.check_artifacts(job);
            }
        }
        jobs
    }

    /// A succeeded job's folder holds its committed attempt's files and nothing else, and they download and
    /// verify.
    fn check_artifacts(&self, job: &Value) {
        let id = job["id"].as_str().unwrap();
        let attempt = job["attempt"].as_u64().unwrap();
        let folder = self.job_dir(id).join(attempt.to_string());
        let mut names: Vec<String> = job["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        let mut present: Vec<String> = super::files_under(&self.job_dir(id))
            .iter()
            .map(|p| {
                p.strip_prefix(&folder)
                    .unwrap_or_else(|_| {
                        panic!("job {id}: {} outside attempt {attempt}", p.display())
                    })
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        present.sort();
        assert_eq!(present, names, "job {id}: files of the committed attempt");
        let out = self.scratch.join(format!("dl-{id}"));
        stdout_text(&self.run(&["download", id, "--all", "-o", out.to_str().unwrap()]));
        fs::remove_dir_all(&out).unwrap();
    }

    /// Waits for job `id` with `jobs wait` (which runs it if it is queued or comes back to the queue); returns
    /// the job.
    pub fn wait(&self, id: &str) -> Value {
        stdout_json(&self.run(&["jobs", "wait", id, "--json", "--timeout", "120"]))
    }

    /// Every job not yet finished, waited for (run by this process when queued, or after its lease expired).
    pub fn finish_all(&self) {
        for job in self.jobs() {
            let state = job["state"].as_str().unwrap();
            if state == "queued" || state == "running" {
                let id = job["id"].as_str().unwrap();
                let done = self.wait(id);
                assert_eq!(done["state"], "succeeded", "{done}");
            }
        }
    }
}

/// Whether the run was killed by a signal (an abort at a failpoint, a kill -9) rather than exiting.
pub fn killed(out: &Output) -> bool {
    out.status.code().is_none()
}

/// Every file below `dir` whose name marks it as temporary (`.NAME.tmp-*`, `.NAME.part-*`).
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    super::files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with('.') && (n.contains(".tmp-") || n.contains(".part-"))
            })
        })
        .collect()
}
