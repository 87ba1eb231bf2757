//! The newcomer review's steps, run as the new user ran them: each ends in success or in an error whose `hint`
//! names the flag, variable or command that fixes it (the review's numbers in each test's name).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use std::path::Path;

const DM: &str =
    "STUDYID,USUBJID,NAME,AGE,SEX\nS1,S1-001,Alice Smith,40,F\nS1,S1-002,Bob Jones,50,M\n";
const DM_META: &str = r#"{"columns":[{"name":"USUBJID","privacy":"subject_id"},
{"name":"NAME","privacy":"direct_identifier"},{"name":"AGE","privacy":"age"}]}"#;

fn home(dir: &Path) -> (std::path::PathBuf, String) {
    let source = write_source(dir, "S1", &[("DM.csv", DM), ("DM.meta.json", DM_META)]);
    let home = dir.join("home");
    let cred = init_home(&home, &source);
    (home, cred)
}

fn hint(e: &serde_json::Value) -> String {
    e["hint"]
        .as_str()
        .unwrap_or_else(|| panic!("no hint in {e}"))
        .to_string()
}

/// Runs the demo into `dir/demo` and returns its text summary.
fn demo(dir: &Path) -> String {
    let out = dir.join("demo");
    stdout_text(&run(&["demo", "--out", out.to_str().unwrap()]))
}

#[test]
fn n01_n05_n16_the_demo_says_where_things_are_and_its_next_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let text = demo(dir.path());
    // 5: the trail is audit.log, and the files/ the paths point into is explained.
    assert!(text.contains("audit.log (the audit trail)"), "{text}");
    assert!(text.contains("files/ "), "{text}");
    // The suggested commands, as a user copies them: the environment first, then each command.
    let explore: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Explore it with the CLI"))
        .skip(1)
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let home = explore
        .iter()
        .find_map(|l| l.strip_prefix("export TRIALPORT_HOME="))
        .unwrap();
    let key_file = explore
        .iter()
        .find_map(|l| l.strip_prefix("export TRIALPORT_CREDENTIAL=\"$(cat "))
        .and_then(|l| l.strip_suffix(")\""))
        .unwrap();
    let key = std::fs::read_to_string(key_file).unwrap();
    let commands: Vec<&str> = explore
        .iter()
        .copied()
        .filter(|l| !l.starts_with("export TRIALPORT_"))
        .collect();
    assert_eq!(commands.len(), 3, "{explore:?}");
    for line in commands {
        let mut words = line.split_whitespace();
        let program = words.next().unwrap();
        // 16: the program named is one that runs: this executable, by a path that exists, unless `trialport`
        // on the PATH is it.
        assert!(
            program == "trialport" || Path::new(program).is_file(),
            "{program}"
        );
        let args: Vec<&str> = words.collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trialport"))
            .args(&args)
            .env("TRIALPORT_HOME", home)
            .env("TRIALPORT_CREDENTIAL", key.trim())
            .env_remove(PASSWORD_ENV)
            .output()
            .unwrap();
        // 1: each succeeds as printed.
        stdout_text(&out);
    }
}

#[test]
fn n02_identifiable_data_names_the_cli_flags_that_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cred) = home(dir.path());
    let out = run(&home_args(
        &home,
        &cred,
        &[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--wait",
        ],
    ));
    let e = error_object(&out);
    assert_eq!(e["details"]["reason"], "identifiable_data", "{e}");
    let h = hint(&e);
    assert!(
        h.contains("--deidentify safe-harbor") && h.contains("--identifiable"),
        "{h}"
    );
    // Following the hint works.
    let out = run(&home_args(
        &home,
        &cred,
        &[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--deidentify",
            "safe-harbor",
            "--wait",
        ],
    ));
    stdout_text(&out);
}

#[test]
fn n04_init_says_what_to_do_next_and_a_missing_credential_names_its_flag_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_source(
        dir.path(),
        "S1",
        &[("DM.csv", DM), ("DM.meta.json", DM_META)],
    );
    let home = dir.path().join("home");
    let out = run(&[
        "--home",
        home.to_str().unwrap(),
        "init",
        "--source",
        source.to_str().unwrap(),
        "--org",
        "acme",
    ]);
    // stdout stays the machine-readable JSON; the next step is for people, on stderr.
    let v = stdout_json(&out);
    assert!(v["api_key"].as_str().unwrap().starts_with("tp_"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TRIALPORT_CREDENTIAL") && err.contains("TRIALPORT_HOME"),
        "{err}"
    );
    assert!(
        !err.contains(v["api_key"].as_str().unwrap()),
        "the key is printed once"
    );
    // With --json, nothing but JSON.
    let again = dir.path().join("home2");
    let out = run(&[
        "--json",
        "--home",
        again.to_str().unwrap(),
        "init",
        "--source",
        source.to_str().unwrap(),
        "--org",
        "acme",
    ]);
    stdout_json(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["--home", home.to_str().unwrap(), "jobs", "list"]);
    let e = error_json(&out, "EXP003");
    let h = hint(&e);
    assert!(
        h.contains("--credential") && h.contains("TRIALPORT_CREDENTIAL"),
        "{h}"
    );
    let out = run(&["jobs", "list"]);
    let h = hint(&error_json(&out, "EXP002"));
    assert!(h.contains("--home") && h.contains("TRIALPORT_HOME"), "{h}");
}

#[test]
fn n07_a_wrong_key_is_told_the_key_is_wrong_not_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cred) = home(dir.path());
    let key = cred.strip_prefix("ApiKey ").unwrap();
    // A digit of the secret changed: the checksum says the key was mistyped.
    let mut typo: Vec<char> = key.chars().collect();
    let i = "tp_".len() + 12 + 1 + 5;
    typo[i] = if typo[i] == '0' { '1' } else { '0' };
    let typo: String = typo.into_iter().collect();
    let e = error_json(&run(&home_args(&home, &typo, &["jobs", "list"])), "EXP003");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("mistyped"), "{e}");
    assert!(!message.contains("expected 'ApiKey"), "{e}");
    assert!(!message.contains(&typo), "the key is not echoed: {e}");
    // A key of another home: well-formed and unknown here.
    let other = tempfile::tempdir().unwrap();
    let (_, foreign) = self::home(other.path());
    let e = error_json(
        &run(&home_args(&home, &foreign, &["jobs", "list"])),
        "EXP003",
    );
    assert_eq!(e["details"]["reason"], "unknown_key", "{e}");
    assert!(hint(&e).contains("keys create"), "{e}");
}

#[test]
fn n08_usage_errors_are_the_standard_json_with_json_and_exit_2() {
    let out = run(&["--json", "jobs", "lst"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["error"]["code"], "EXP002", "{v}");
    assert_eq!(v["error"]["details"]["reason"], "usage", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("lst"),
        "{v}"
    );
    assert!(
        v["error"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_"),
        "{v}"
    );
    assert!(hint(&v["error"]).contains("--help"), "{v}");
    // Without --json, clap's text, still exit 2; --help is no error.
    let out = run(&["jobs", "lst"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stderr).is_err());
    assert_eq!(run(&["--json", "jobs", "--help"]).status.code(), Some(0));
}

#[test]
fn n12_keys_list_shows_the_keys_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cred) = home(dir.path());
    let made = stdout_json(&run(&home_args(
        &home,
        &cred,
        &[
            "--json",
            "keys",
            "create",
            "--name",
            "stats",
            "--roles",
            "statistician",
            "--studies",
            "S1",
        ],
    )));
    let secret = made["api_key"].as_str().unwrap().to_string();
    let out = run(&home_args(&home, &cred, &["--json", "keys", "list"]));
    let text = stdout_text(&out);
    assert!(
        !text.contains(&secret) && !text.contains("secret_hash"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    let stats = keys.iter().find(|k| k["name"] == "stats").unwrap();
    assert_eq!(stats["key_id"], made["key_id"]);
    assert_eq!(stats["roles"], serde_json::json!(["statistician"]));
    // Revoked keys stay listed, marked.
    stdout_text(&run(&home_args(
        &home,
        &cred,
        &["keys", "revoke", made["key_id"].as_str().unwrap()],
    )));
    let table = stdout_text(&run(&home_args(&home, &cred, &["keys", "list"])));
    let row = table.lines().find(|l| l.contains("stats")).unwrap();
    assert!(row.contains("revoked"), "{table}");
    // A statistician manages no keys.
    let e = error_json(
        &run(&home_args(
            &home,
            &format!("ApiKey {secret}"),
            &["keys", "list"],
        )),
        "EXP003",
    );
    assert_eq!(e["details"]["reason"], "key_revoked", "{e}");
}

#[test]
fn n14_every_error_has_a_request_id() {
    let out = run(&["jobs", "list"]);
    let e = error_object(&out);
    assert!(e["request_id"].as_str().unwrap().starts_with("req_"), "{e}");
}

#[test]
fn n09_define_xml_of_the_demo_study_measures_its_text_lengths() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let home = dir.path().join("demo/home");
    let key = std::fs::read_to_string(dir.path().join("demo/demo.key")).unwrap();
    let cred = key.trim().to_string();
    let job = stdout_json(&run(&home_args(
        &home,
        &cred,
        &[
            "--json",
            "export",
            "data",
            "--study",
            "DEMO01",
            "--datasets",
            "DM,AE",
            "--format",
            "define-xml",
            "--wait",
        ],
    )));
    let out = dir.path().join("define.xml");
    stdout_text(&run(&home_args(
        &home,
        &cred,
        &[
            "download",
            job["id"].as_str().unwrap(),
            "--artifact",
            "define.xml",
            "-o",
            out.to_str().unwrap(),
        ],
    )));
    let xml = std::fs::read_to_string(&out).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    // The length of AE.AETERM is its longest value in the source, in bytes.
    let csv = std::fs::read_to_string(dir.path().join("demo/source/DEMO01/AE.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let at = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "AETERM")
        .unwrap();
    let longest = reader
        .records()
        .map(|r| r.unwrap()[at].len())
        .max()
        .unwrap();
    let item = doc
        .descendants()
        .find(|n| n.has_tag_name("ItemDef") && n.attribute("Name") == Some("AETERM"))
        .unwrap();
    assert_eq!(item.attribute("Length"), Some(longest.to_string().as_str()));
}

/// The created stamp of an XPT file's first real header record (`ddMMMyy:hh:mm:ss`).
fn xpt_created(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    String::from_utf8(bytes[80 + 64..80 + 80].to_vec()).unwrap()
}

#[test]
fn n18_xpt_headers_state_when_they_were_made() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ae.csv");
    std::fs::write(&csv, "STUDYID,AESEQ,AETERM\nS1,1,HEADACHE\n").unwrap();
    // convert: SOURCE_DATE_EPOCH when set (reproducible builds), else now.
    let xpt = dir.path().join("ae.xpt");
    let out = command(&[
        "convert",
        csv.to_str().unwrap(),
        "-o",
        xpt.to_str().unwrap(),
    ])
    .env("SOURCE_DATE_EPOCH", "1700000000")
    .output()
    .unwrap();
    stdout_text(&out);
    assert_eq!(xpt_created(&xpt), "14NOV23:22:13:20");
    let first = std::fs::read(&xpt).unwrap();
    let out = command(&[
        "convert",
        csv.to_str().unwrap(),
        "-o",
        xpt.to_str().unwrap(),
    ])
    .env("SOURCE_DATE_EPOCH", "1700000000")
    .output()
    .unwrap();
    stdout_text(&out);
    assert_eq!(
        std::fs::read(&xpt).unwrap(),
        first,
        "same input and epoch, same bytes"
    );
    let now = command(&[
        "convert",
        csv.to_str().unwrap(),
        "-o",
        xpt.to_str().unwrap(),
    ])
    .env_remove("SOURCE_DATE_EPOCH")
    .output()
    .unwrap();
    stdout_text(&now);
    let year = chrono::Utc::now().format("%y").to_string();
    assert_eq!(&xpt_created(&xpt)[5..7], year, "{}", xpt_created(&xpt));
    // An export job: the job's creation time.
    let (home, cred) = home(dir.path());
    let job = stdout_json(&run(&home_args(
        &home,
        &cred,
        &[
            "--json",
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "xpt",
            "--deidentify",
            "safe-harbor",
            "--wait",
        ],
    )));
    let got = dir.path().join("dm.xpt");
    stdout_text(&run(&home_args(
        &home,
        &cred,
        &[
            "download",
            job["id"].as_str().unwrap(),
            "--artifact",
            "dm.xpt",
            "-o",
            got.to_str().unwrap(),
        ],
    )));
    let created =
        chrono::DateTime::parse_from_rfc3339(job["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        xpt_created(&got),
        created.format("%d%b%y:%H:%M:%S").to_string().to_uppercase()
    );
}

/// A home over S1 with DM and AE keyed by subject (`USUBJID` classed `subject_id`, nothing else classed).
fn subjects_home(dir: &Path) -> (std::path::PathBuf, String) {
    let meta = r#"{"columns":[{"name":"USUBJID","privacy":"subject_id"}]}"#;
    let source = write_source(
        dir,
        "S1",
        &[
            (
                "DM.csv",
                "STUDYID,USUBJID,AGE\nS1,S1-001,40\nS1,S1-002,50\n",
            ),
            ("DM.meta.json", meta),
            (
                "AE.csv",
                "STUDYID,USUBJID,AESEQ,AETERM\nS1,S1-002,1,HEADACHE\nS1,S1-001,1,NAUSEA\n",
            ),
            ("AE.meta.json", meta),
        ],
    );
    let home = dir.join("home");
    let cred = init_home(&home, &source);
    (home, cred)
}

#[test]
fn n06_a_queued_export_says_what_runs_it_and_a_worker_does() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cred) = subjects_home(dir.path());
    let out = run(&home_args(
        &home,
        &cred,
        &[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--deidentify",
            "safe-harbor",
        ],
    ));
    let text = stdout_text(&out);
    assert!(text.contains("trialport worker"), "{text}");
    assert!(text.contains("trialport jobs wait"), "{text}");
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id"))
        .unwrap()
        .trim()
        .to_string();
    // What it says works: a worker of the home picks the job up, and stops on SIGTERM.
    let mut worker = command(&home_args(&home, &cred, &["worker"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let state = loop {
        let v = stdout_json(&run(&home_args(
            &home,
            &cred,
            &["--json", "jobs", "show", &id],
        )));
        if v["state"] != "queued" && v["state"] != "running" {
            break v["state"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not run the job"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // The worker stops on SIGTERM, exit 0.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(worker.wait().unwrap().success());
    assert_eq!(state, "succeeded");
}

#[test]
fn n10_odm_xml_without_an_event_is_refused_before_a_job_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cred) = subjects_home(dir.path());
    let export = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "odm-xml",
            "--deidentify",
            "safe-harbor",
        ];
        args.extend_from_slice(extra);
        run(&home_args(&home, &cred, &args))
    };
    // Without --wait: refused at once, naming the option, and no job was queued.
    let e = error_json(&export(&[]), "EXP002");
    assert_eq!(e["field"], "options.event", "{e}");
    assert!(hint(&e).contains("--option"), "{e}");
    let jobs = stdout_json(&run(&home_args(&home, &cred, &["--json", "jobs", "list"])));
    assert_eq!(jobs["total"], 0, "{jobs}");
    // With an event for every row, it runs.
    let job = stdout_json(&export(&["--option", "event_oid=SE.SCREENING", "--wait"]));
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[test]
fn n11_convert_says_which_format_is_unsupported_and_what_would_work() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("dm.csv");
    std::fs::write(&csv, DM).unwrap();
    let xlsx = dir.path().join("dm.xlsx");
    std::fs::write(&xlsx, "not read").unwrap();
    let out = run(&[
        "--json",
        "convert",
        xlsx.to_str().unwrap(),
        "-o",
        dir.path().join("out.parquet").to_str().unwrap(),
    ]);
    let e = error_json(&out, "EXP002");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("'.xlsx' files cannot be read"), "{e}");
    assert!(message.contains("csv"), "{e}");
    let out = run(&[
        "--json",
        "convert",
        csv.to_str().unwrap(),
        "-o",
        dir.path().join("dm.pdf").to_str().unwrap(),
    ]);
    let e = error_json(&out, "EXP002");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("pdf writes reports and dashboards"), "{e}");
    assert!(message.contains("trialport export report"), "{e}");
}

/// The subject ids of a job's `dm.csv` and `ae.csv`, in row order.
fn subject_ids(home: &Path, cred: &str, profile: &str, dir: &Path) -> (Vec<String>, Vec<String>) {
    let job = stdout_json(&run(&home_args(
        home,
        cred,
        &[
            "--json",
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM,AE",
            "--format",
            "csv",
            "--deidentify",
            profile,
            "--wait",
        ],
    )));
    let id = job["id"].as_str().unwrap();
    let ids = |artifact: &str| {
        let target = dir.join(format!("{id}-{artifact}"));
        stdout_text(&run(&home_args(
            home,
            cred,
            &[
                "download",
                id,
                "--artifact",
                artifact,
                "-o",
                target.to_str().unwrap(),
            ],
        )));
        std::fs::read_to_string(target)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    (ids("dm.csv"), ids("ae.csv"))
}

#[test]
fn n13_safe_harbor_surrogates_join_within_a_job_and_pseudonyms_across_jobs_as_the_help_says() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cred) = subjects_home(dir.path());
    let help = stdout_text(&run(&["export", "data", "--help"]));
    assert!(help.contains("random per export"), "{help}");
    assert!(help.contains("use pseudonymize instead"), "{help}");
    // safe-harbor: DM and AE of one job join (AE lists S1-002 then S1-001); two jobs' do not.
    let (dm1, ae1) = subject_ids(&home, &cred, "safe-harbor", dir.path());
    assert_eq!(ae1, vec![dm1[1].clone(), dm1[0].clone()]);
    assert!(!dm1.contains(&"S1-001".to_string()));
    let (dm2, _) = subject_ids(&home, &cred, "safe-harbor", dir.path());
    assert!(dm1.iter().all(|s| !dm2.contains(s)), "{dm1:?} {dm2:?}");
    // pseudonymize: the same pseudonym in every job.
    let (dm3, ae3) = subject_ids(&home, &cred, "pseudonymize", dir.path());
    let (dm4, ae4) = subject_ids(&home, &cred, "pseudonymize", dir.path());
    assert_eq!(dm3, dm4);
    assert_eq!(ae3, ae4);
    assert_eq!(ae3, vec![dm3[1].clone(), dm3[0].clone()]);
    assert!(!dm3.contains(&"S1-001".to_string()));
}

#[test]
fn n15_the_progress_bar_never_draws_an_empty_0_of_0() {
    let dir = tempfile::tempdir().unwrap();
    let (home, cred) = subjects_home(dir.path());
    // On a terminal (util-linux `script` gives the run one), as the newcomer saw it.
    let line = format!(
        "{} --home {} --credential '{}' export data --study S1 --datasets DM,AE --format csv \
         --deidentify safe-harbor --wait",
        env!("CARGO_BIN_EXE_trialport"),
        home.display(),
        cred
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("TRIALPORT_HOME")
        .env_remove("TRIALPORT_CREDENTIAL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("succeeded"), "{text}");
    assert!(text.contains("/2 "), "the bar counts the datasets: {text}");
    assert!(!text.contains("0/0"), "{text}");
}

#[test]
fn n03_the_spec_flag_says_where_the_report_language_is_and_its_templates_run() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for kind in ["report", "dashboard"] {
        let help = stdout_text(&run(&["export", kind, "--help"]));
        for named in [
            "docs/reports.md",
            "docs/report.schema.json",
            "examples/reports/",
        ] {
            assert!(help.contains(named), "{kind}: {help}");
            assert!(repo.join(named).exists(), "{named}");
        }
    }
    // A template, as a newcomer runs it against the demo's home.
    let dir = tempfile::tempdir().unwrap();
    let text = demo(dir.path());
    let home = dir.path().join("demo").join("home");
    let key = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("export TRIALPORT_CREDENTIAL=\"$(cat ")
        })
        .and_then(|l| l.strip_suffix(")\""))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .unwrap();
    let admin = format!("ApiKey {}", key.trim());
    // The template lists subjects, so it is identifiable and signed: a reviewer's own key and signing password.
    let created = stdout_json(&run(&home_args(
        &home,
        &admin,
        &[
            "--json",
            "keys",
            "create",
            "--name",
            "Ada Reviewer",
            "--roles",
            "admin",
            "--studies",
            "*",
        ],
    )));
    let cred = format!("ApiKey {}", created["api_key"].as_str().unwrap());
    let password = "a long reviewer passphrase";
    let out = set_password(&home, &cred, password, None);
    assert!(out.status.success(), "{out:?}");
    let spec = repo.join("examples/reports/adverse-events-by-soc-pt.json");
    let out = command(&home_args(
        &home,
        &cred,
        &[
            "--json",
            "export",
            "report",
            "--spec",
            spec.to_str().unwrap(),
            "--format",
            "html",
            "--identifiable",
            "--sign",
            "review",
            "--wait",
        ],
    ))
    .env(PASSWORD_ENV, password)
    .output()
    .unwrap();
    let v = stdout_json(&out);
    assert_eq!(v["state"], "succeeded", "{v}");
}
