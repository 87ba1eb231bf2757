//! Behaviour of the `trialport` binary, run as a user would: exit codes, stdout JSON, stderr error JSON, files.

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{
    command, error_json, files_under, home_args, init_home, run, stdout_json, write_source,
};

const DM_CSV: &str = "USUBJID,AGE,SEX,WEIGHT,RFSTDTC\n\
S1-001,34,F,61.5,2024-01-08\n\
S1-002,51,M,82.25,2024-02-14\n\
S1-003,47,F,70.5,2024-03-01\n";

/// A home with a source directory holding study S1 (DM), and its admin credential.
struct Home {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cred: String,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(tmp.path(), "S1", &[("DM.csv", DM_CSV)]);
        let dir = tmp.path().join("home");
        let cred = init_home(&dir, &source);
        Home {
            _tmp: tmp,
            dir,
            cred,
        }
    }

    fn run_as(&self, cred: &str, args: &[&str]) -> Output {
        run(&home_args(&self.dir, cred, args))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.cred, args)
    }

    fn tmp(&self) -> &Path {
        self._tmp.path()
    }
}

#[test]
fn formats_json_lists_csv() {
    let v = stdout_json(&run(&["formats", "--json"]));
    let list = v.as_array().unwrap();
    let csv = list.iter().find(|f| f["id"] == "csv").unwrap();
    assert_eq!(csv["extension"], "csv");
    assert_eq!(csv["media_type"], "text/csv");
    assert!(csv["capabilities"]
        .as_array()
        .unwrap()
        .contains(&Value::from("data")));
    let delim = csv["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "delimiter")
        .unwrap();
    assert_eq!(delim["default"], ",");
    // And a table for people.
    let out = run(&["formats"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("csv") && text.contains("text/csv"), "{text}");
}

#[test]
fn convert_csv_to_parquet_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("dm.csv");
    fs::write(&input, DM_CSV).unwrap();
    let pq = tmp.path().join("dm.parquet");
    let v = stdout_json(&run(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        pq.to_str().unwrap(),
        "--dataset",
        "DM",
        "--label",
        "Demographics",
        "--json",
    ]));
    assert_eq!(v["format"], "parquet");
    assert_eq!(v["rows"], 3);
    assert_eq!(v["bytes"], fs::metadata(&pq).unwrap().len());
    let (_, sha) = trialport_core::hashing::sha256_of(fs::File::open(&pq).unwrap()).unwrap();
    assert_eq!(v["sha256"], sha);

    let back = tmp.path().join("back.csv");
    let v = stdout_json(&run(&[
        "convert",
        pq.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["format"], "csv");
    assert_eq!(v["rows"], 3);
    assert_eq!(fs::read_to_string(&back).unwrap(), DM_CSV);
    // Nothing but the three files: no temp file left behind.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 3);
}

#[test]
fn convert_applies_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("dm.csv");
    fs::write(&input, DM_CSV).unwrap();
    let meta = tmp.path().join("dm-meta.json");
    fs::write(
        &meta,
        r#"{"columns": [{"name": "USUBJID", "label": "Unique Subject Identifier"},
                        {"name": "AGE", "label": "Age, years"}]}"#,
    )
    .unwrap();
    let arrow = tmp.path().join("dm.arrow");
    stdout_json(&run(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        arrow.to_str().unwrap(),
        "--meta",
        meta.to_str().unwrap(),
        "--json",
    ]));
    // The labels travel inside the Arrow file and come back out as a CSV header.
    let labelled = tmp.path().join("labelled.csv");
    stdout_json(&run(&[
        "convert",
        arrow.to_str().unwrap(),
        "-o",
        labelled.to_str().unwrap(),
        "--option",
        "labels_as_header=true",
        "--json",
    ]));
    let text = fs::read_to_string(&labelled).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "Unique Subject Identifier,\"Age, years\",SEX,WEIGHT,RFSTDTC"
    );
    // Metadata naming a column the data lacks is refused, and nothing is written.
    fs::write(&meta, r#"{"columns": [{"name": "NOPE", "label": "x"}]}"#).unwrap();
    let out_path = tmp.path().join("never.csv");
    let out = run(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        "--meta",
        meta.to_str().unwrap(),
    ]);
    error_json(&out, "EXP002");
    assert!(!out_path.exists());
    // A missing input is not found.
    let out = run(&[
        "convert",
        tmp.path().join("missing.csv").to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    error_json(&out, "EXP001");
    assert!(!out_path.exists());
}

#[test]
fn convert_with_a_bad_option_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("dm.csv");
    fs::write(&input, DM_CSV).unwrap();
    let output = tmp.path().join("out.tsv");
    for opt in ["no_such_option=1", "header=maybe"] {
        let out = run(&[
            "convert",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--option",
            opt,
        ]);
        let e = error_json(&out, "EXP002");
        assert!(e["field"].as_str().unwrap().starts_with("options."), "{e}");
        assert!(!output.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
    // An unknown output extension is a validation error too.
    let out = run(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        tmp.path().join("out.unknown").to_str().unwrap(),
    ]);
    let e = error_json(&out, "EXP002");
    assert_eq!(e["field"], "to");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn init_prints_a_key_once_and_refuses_twice() {
    let home = Home::new();
    assert!(home.cred.starts_with("ApiKey tp_"));
    // The pepper of API key hashes, and every other key of the home, only its owner can read.
    #[cfg(unix)]
    for name in ["secret.key", "deid.key", "signing.key", "keys/kek-0001.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(home.dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let out = run(&["--home", home.dir.to_str().unwrap(), "init"]);
    let e = error_json(&out, "EXP004");
    assert_eq!(e["details"]["reason"], "already_initialized");
}

#[test]
fn engine_commands_need_a_home_and_a_credential() {
    let out = run(&["jobs", "list"]);
    let e = error_json(&out, "EXP002");
    assert_eq!(e["field"], "home");
    let home = Home::new();
    let out = run(&["--home", home.dir.to_str().unwrap(), "jobs", "list"]);
    error_json(&out, "EXP003");
    let out = home.run_as("ApiKey tp_000000000000_nope", &["jobs", "list"]);
    error_json(&out, "EXP003");
    // A bare key works, and so does the environment.
    let bare = home.cred.trim_start_matches("ApiKey ");
    let out = home.run_as(bare, &["jobs", "list", "--json"]);
    assert_eq!(stdout_json(&out)["total"], 0);
    let out = command(&["jobs", "list", "--json"])
        .env("TRIALPORT_HOME", &home.dir)
        .env("TRIALPORT_CREDENTIAL", &home.cred)
        .output()
        .unwrap();
    assert_eq!(stdout_json(&out)["total"], 0);
}

#[test]
fn export_wait_list_show_download_and_cancel() {
    let home = Home::new();
    let job = stdout_json(&home.run(&[
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
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let artifact = job["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "dm.csv")
        .unwrap()
        .clone();
    assert_eq!(artifact["rows"], 3);

    let page = stdout_json(&home.run(&["jobs", "list", "--json"]));
    assert_eq!(page["total"], 1);
    assert_eq!(page["limit"], 20);
    assert_eq!(page["items"][0]["id"], id.as_str());
    let out = home.run(&["jobs", "list"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains(&id) && table.contains("succeeded"),
        "{table}"
    );

    let shown = stdout_json(&home.run(&["jobs", "show", &id, "--json"]));
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["state"], "succeeded");

    let target = home.tmp().join("dm-downloaded.csv");
    let d = stdout_json(&home.run(&[
        "download",
        &id,
        "-o",
        target.to_str().unwrap(),
        "--artifact",
        "dm.csv",
        "--json",
    ]));
    let (bytes, sha) =
        trialport_core::hashing::sha256_of(fs::File::open(&target).unwrap()).unwrap();
    assert_eq!(sha, artifact["sha256"].as_str().unwrap());
    assert_eq!(bytes, artifact["bytes"].as_u64().unwrap());
    assert_eq!(d["sha256"], sha);
    // Only the downloaded file appeared: no temp file is left beside it.
    let names: Vec<String> = fs::read_dir(home.tmp())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");

    // A finished job cannot be cancelled.
    let e = error_json(&home.run(&["jobs", "cancel", &id]), "EXP004");
    assert_eq!(e["details"]["reason"], "illegal_transition");

    // The audit trail holds all of this and verifies.
    let v = stdout_json(&home.run(&["audit", "verify", "--json"]));
    assert_eq!(v["verified"], true);
    let out = home.run(&["audit", "export", "--limit", "5"]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["seq"], 1);
}

#[test]
fn export_without_wait_leaves_the_job_queued_for_the_next_waiter() {
    let home = Home::new();
    let job = stdout_json(&home.run(&[
        "export",
        "data",
        "--study",
        "S1",
        "--datasets",
        "DM",
        "--format",
        "csv",
        "--json",
        "--filter",
        "SEX:eq:F",
        "--columns",
        "USUBJID,AGE",
    ]));
    assert_eq!(job["state"], "queued");
    let id = job["id"].as_str().unwrap();
    let done = stdout_json(&home.run(&["jobs", "wait", id, "--timeout", "60", "--json"]));
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["artifacts"][0]["rows"], 2);
}

#[test]
fn a_key_scoped_to_one_study_is_denied_another() {
    let home = Home::new();
    let v = stdout_json(&home.run(&[
        "keys",
        "create",
        "--name",
        "analyst",
        "--roles",
        "statistician",
        "--studies",
        "S1",
        "--json",
    ]));
    let key = v["api_key"].as_str().unwrap();
    assert!(key.starts_with("tp_"));
    assert_eq!(v["studies"], serde_json::json!(["S1"]));
    let cred = format!("ApiKey {key}");
    let e = error_json(
        &home.run_as(
            &cred,
            &[
                "export",
                "data",
                "--study",
                "S2",
                "--datasets",
                "DM",
                "--format",
                "csv",
            ],
        ),
        "EXP003",
    );
    assert_eq!(e["details"]["reason"], "permission_denied");
    // The same key may export S1, and may not read the audit trail.
    let job = stdout_json(&home.run_as(
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
            "--json",
        ],
    ));
    assert_eq!(job["state"], "queued");
    error_json(&home.run_as(&cred, &["audit", "verify"]), "EXP003");
    // An unknown role is a validation error.
    let e = error_json(
        &home.run(&[
            "keys",
            "create",
            "--name",
            "x",
            "--roles",
            "wizard",
            "--studies",
            "S1",
        ]),
        "EXP002",
    );
    assert_eq!(e["field"], "roles");
}

#[test]
fn list_limits_and_unknown_jobs() {
    let home = Home::new();
    for limit in ["0", "101", "-1"] {
        let e = error_json(&home.run(&["jobs", "list", "--limit", limit]), "EXP002");
        assert_eq!(e["field"], "limit");
        assert_eq!(e["details"]["max"], 100);
    }
    let e = error_json(&home.run(&["jobs", "list", "--status", "done"]), "EXP002");
    assert_eq!(e["field"], "status");
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    for args in [
        vec!["jobs", "show", unknown],
        vec!["jobs", "cancel", unknown],
        vec!["download", unknown, "-o", "x.csv"],
        vec!["jobs", "show", "not-a-job-id"],
    ] {
        error_json(&home.run(&args), "EXP001");
    }
    // A usage error is clap's (exit 2).
    let out = home.run(&["jobs", "explode"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn export_errors_are_the_engines() {
    let home = Home::new();
    let e = error_json(
        &home.run(&[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "NOPE",
            "--format",
            "csv",
        ]),
        "EXP001",
    );
    assert_eq!(e["field"], "datasets");
    let e = error_json(
        &home.run(&[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--option",
            "x=1",
        ]),
        "EXP002",
    );
    assert_eq!(e["field"], "options.x");
    let e = error_json(
        &home.run(&[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--filter",
            "AGE",
        ]),
        "EXP002",
    );
    assert_eq!(e["field"], "filters");
    let spec = home.tmp().join("bad.json");
    fs::write(&spec, r#"{"study": "S1"}"#).unwrap();
    let e = error_json(
        &home.run(&["export", "report", "--spec", spec.to_str().unwrap()]),
        "EXP002",
    );
    assert_eq!(e["field"], "spec");
}

#[test]
fn demo_runs_to_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("tour");
    let out = run(&["demo", "--out", out_dir.to_str().unwrap(), "--json"]);
    let v = stdout_json(&out);
    assert_eq!(v["failed"], 0, "{v}");
    for f in ["DM.csv", "AE.csv", "LB.csv", "VS.csv"] {
        assert!(out_dir.join("source/DEMO01").join(f).is_file(), "{f}");
    }
    let jobs = v["jobs"].as_array().unwrap();
    let kinds: Vec<&str> = jobs.iter().map(|j| j["kind"].as_str().unwrap()).collect();
    for k in ["data", "report", "dashboard", "bulk"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    for j in jobs {
        assert_eq!(j["state"], "succeeded", "{j}");
        for a in j["artifacts"].as_array().unwrap() {
            let p = PathBuf::from(a["path"].as_str().unwrap());
            assert!(p.starts_with(out_dir.canonicalize().unwrap().join("files")));
            assert_eq!(
                fs::metadata(&p).unwrap().len(),
                a["bytes"].as_u64().unwrap()
            );
        }
    }
    // The three report templates, as HTML, PDF and XLSX (identifiable, so signed); the specs it rendered are on disk.
    for t in [
        "demographics-by-arm",
        "adverse-events-by-soc-pt",
        "lab-out-of-range-by-visit",
    ] {
        assert!(
            out_dir.join("specs").join(format!("{t}.json")).is_file(),
            "{t}"
        );
        for f in ["html", "pdf", "xlsx"] {
            let job = jobs
                .iter()
                .find(|j| {
                    j["step"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("template {t} ({f}"))
                })
                .unwrap_or_else(|| panic!("{t} as {f}"));
            let name = format!("report.{f}");
            let artifact = job["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == name.as_str());
            let bytes = fs::read(artifact.unwrap()["path"].as_str().unwrap()).unwrap();
            let magic: &[u8] = match f {
                "pdf" => b"%PDF-",
                "xlsx" => b"PK",
                _ => b"<!DOCTYPE html>",
            };
            assert!(bytes.starts_with(magic), "{t} as {f}");
        }
    }
    let downloaded = PathBuf::from(v["download"]["path"].as_str().unwrap());
    assert!(downloaded.starts_with(out_dir.canonicalize().unwrap().join("downloads")));
    assert!(downloaded.is_file());
    assert!(v["audit_events"].as_u64().unwrap() > 10);
    // The key file serves the CLI.
    let key = fs::read_to_string(out_dir.join("demo.key")).unwrap();
    let out = command(&["jobs", "list", "--json", "--limit", "100"])
        .env("TRIALPORT_HOME", out_dir.join("home"))
        .env("TRIALPORT_CREDENTIAL", key.trim())
        .output()
        .unwrap();
    assert_eq!(
        stdout_json(&out)["total"].as_u64().unwrap(),
        jobs.len() as u64
    );
    // A second run into the same directory is refused.
    let e = error_json(
        &run(&["demo", "--out", out_dir.to_str().unwrap()]),
        "EXP004",
    );
    assert_eq!(e["field"], "out");
}

#[test]
fn verify_checks_a_bulk_package_and_finds_tampering() {
    let home = Home::new();
    let job = stdout_json(&home.run(&[
        "export", "bulk", "--study", "S1", "--format", "csv", "--wait", "--json",
    ]));
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap();
    let zip = home.tmp().join("package.zip");
    stdout_json(&home.run(&["download", id, "-o", zip.to_str().unwrap(), "--json"]));
    let v = stdout_json(&run(&["verify", zip.to_str().unwrap(), "--json"]));
    assert_eq!(
        (v["verified"].clone(), v["files"].clone()),
        (Value::Bool(true), 1.into())
    );
    // Artifacts are encrypted at rest in the home: a job's directory to verify is its download.
    let job_dir = home.tmp().join("job");
    let v = stdout_json(&home.run(&[
        "download",
        id,
        "-o",
        job_dir.to_str().unwrap(),
        "--all",
        "--json",
    ]));
    assert_eq!(v["files"].as_array().unwrap().len(), 2, "{v}");
    let v = stdout_json(&run(&["verify", job_dir.to_str().unwrap(), "--json"]));
    assert_eq!(v["files"], 1);
    // Flip one byte of the package: verification names the damaged file.
    let zip_in_dir = job_dir.join("s1_package.zip");
    let mut bytes = fs::read(&zip_in_dir).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&zip_in_dir, bytes).unwrap();
    let e = error_json(&run(&["verify", job_dir.to_str().unwrap()]), "EXP005");
    assert_eq!(e["details"]["reason"], "integrity_violation");
    assert_eq!(e["details"]["path"], "s1_package.zip");
}

#[test]
fn init_encrypts_artifacts_unless_told_not_to() {
    let tmp = tempfile::tempdir().unwrap();
    let source = write_source(tmp.path(), "S1", &[("DM.csv", DM_CSV)]);
    let stored = |flags: &[&str]| -> (Value, Vec<u8>) {
        let dir = tmp.path().join(format!("home{}", flags.len()));
        let mut args = vec!["--home", dir.to_str().unwrap(), "init", "--source"];
        args.push(source.to_str().unwrap());
        args.extend_from_slice(flags);
        let init = stdout_json(&run(&args));
        let cred = format!("ApiKey {}", init["api_key"].as_str().unwrap());
        let export = [
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
        let job = stdout_json(&run(&home_args(&dir, &cred, &export)));
        assert_eq!(job["state"], "succeeded", "{job}");
        let csv = files_under(&dir.join("artifacts"))
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "csv"))
            .expect("the stored CSV artifact");
        let config: Value =
            serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["encryption"], init["encryption"]);
        (init, fs::read(csv).unwrap())
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);

    let (init, bytes) = stored(&[]);
    assert_eq!(init["encryption"], true);
    assert!(!contains(&bytes, b"S1-002"), "encrypted at rest by default");
    let (init, bytes) = stored(&["--no-encryption"]);
    assert_eq!(init["encryption"], false);
    assert!(contains(&bytes, b"S1-002,51,M"), "stored as written");
}
