//! `trialport init --retention-days N --retention KIND=DAYS` and `trialport purge`, run as a user would. The job
//! to expire is made in-process on the same home with a clock set days back (the CLI's own clock is the
//! system's), so that it is past its retention when the CLI purges.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;
use trialport_core::clock::FixedClock;
use trialport_core::job::JobState;
use trialport_core::request::ExportRequest;

fn run(home: &Path, cred: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trialport"));
    cmd.arg("--home")
        .arg(home)
        .args(args)
        .env_remove("TRIALPORT_HOME")
        .env_remove("TRIALPORT_CREDENTIAL");
    if let Some(c) = cred {
        cmd.env("TRIALPORT_CREDENTIAL", c);
    }
    cmd.output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `error` object of a run that failed (exit 1) with `code`.
fn error(out: &Output, code: &str) -> Value {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    v["error"].clone()
}

/// A temp dir with a study source (S1/DM.csv) and the path of a home to make in it.
fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    fs::create_dir_all(source.join("S1")).unwrap();
    fs::write(
        source.join("S1").join("DM.csv"),
        "USUBJID,AGE\nS1-001,34\nS1-002,51\n",
    )
    .unwrap();
    let home = tmp.path().join("home");
    (tmp, source, home)
}

#[test]
fn init_refuses_bad_retention_settings_before_making_anything() {
    let (_tmp, source, home) = dirs();
    let src = source.to_str().unwrap();
    for (args, field) in [
        (vec!["--retention-days", "0"], "retention_days"),
        (vec!["--retention", "data=0"], "retention.data_days"),
        (vec!["--retention", "audit=3"], "retention"),
        (vec!["--retention", "data"], "retention"),
        (vec!["--retention", "data=-2"], "retention"),
    ] {
        let mut all = vec!["init", "--source", src];
        all.extend(&args);
        let e = error(&run(&home, None, &all), "EXP002");
        assert_eq!(e["details"]["reason"], "invalid_retention", "{args:?}");
        assert_eq!(e["field"], field, "{args:?}");
        assert!(!home.join("config.json").exists(), "{args:?}");
    }
    // A negative --retention-days is not a number of days: a usage error.
    let out = run(&home, None, &["init", "--retention-days", "-1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn purge_expires_due_jobs_keeps_the_manifest_and_is_for_admins() {
    let (tmp, source, home) = dirs();
    let init = ok_json(&run(
        &home,
        None,
        &[
            "init",
            "--source",
            source.to_str().unwrap(),
            "--org",
            "acme",
            "--retention-days",
            "30",
            "--retention",
            "data=1",
        ],
    ));
    let admin = format!("ApiKey {}", init["api_key"].as_str().unwrap());
    let config: Value =
        serde_json::from_slice(&fs::read(home.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["retention_days"], 30);
    assert_eq!(config["retention"], serde_json::json!({"data_days": 1}));

    // Nothing is due yet.
    let none = ok_json(&run(&home, Some(&admin), &["purge"]));
    assert_eq!(
        none,
        serde_json::json!({"jobs_expired": 0, "artifacts_deleted": 0, "bytes_freed": 0})
    );

    // A data job that finished two days ago, made on the home by an engine whose clock says so.
    let job = {
        let clock = Arc::new(FixedClock::new(
            chrono::Utc::now() - chrono::Duration::days(2),
        ));
        let engine = trialport_formats::home::engine_builder(&home)
            .unwrap()
            .clock(clock)
            .workers(1)
            .build()
            .unwrap();
        let job = engine
            .export_data(&admin, ExportRequest::data("S1", &["DM"], "csv"))
            .unwrap();
        engine
            .wait(&admin, job.id, Some(Duration::from_secs(20)))
            .unwrap()
    };
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let id = job.id.to_string();
    let data = &job.artifacts[0];
    assert_eq!(data.name, "dm.csv");

    // An auditor may not purge; the refusal changes nothing.
    let key = ok_json(&run(
        &home,
        Some(&admin),
        &[
            "keys",
            "create",
            "--name",
            "aud",
            "--roles",
            "auditor",
            "--studies",
            "*",
            "--json",
        ],
    ));
    let auditor = format!("ApiKey {}", key["api_key"].as_str().unwrap());
    let e = error(&run(&home, Some(&auditor), &["purge"]), "EXP003");
    assert_eq!(e["details"]["permission"], "retention:purge");

    let summary = ok_json(&run(&home, Some(&admin), &["purge"]));
    assert_eq!(
        summary,
        serde_json::json!({"jobs_expired": 1, "artifacts_deleted": 1, "bytes_freed": data.bytes})
    );
    let shown = ok_json(&run(&home, Some(&admin), &["jobs", "show", &id, "--json"]));
    assert_eq!(shown["state"], "expired");
    assert_eq!(shown["artifacts"][0]["sha256"], data.sha256.as_str());

    let out = tmp.path().join("dm.csv");
    let e = error(
        &run(
            &home,
            Some(&admin),
            &["download", &id, "-o", out.to_str().unwrap()],
        ),
        "EXP004",
    );
    assert_eq!(e["details"]["reason"], "expired");
    assert!(!out.exists());
    let manifest = tmp.path().join("manifest.json");
    let got = ok_json(&run(
        &home,
        Some(&admin),
        &[
            "download",
            &id,
            "--artifact",
            "manifest.json",
            "-o",
            manifest.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(got["artifact"], "manifest.json");
    let m: Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(m["files"][0]["sha256"], data.sha256.as_str());

    // The trail holds one deletion, the state change and both purges, as the caller and the system.
    let trail = run(
        &home,
        Some(&admin),
        &["audit", "export", "--format", "jsonl"],
    );
    assert!(trail.status.success());
    let events: Vec<Value> = String::from_utf8(trail.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of =
        |action: &str| -> Vec<&Value> { events.iter().filter(|e| e["action"] == action).collect() };
    let deleted = of("artifact.deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["details"]["artifact"], "dm.csv");
    assert_eq!(deleted[0]["details"]["sha256"], data.sha256.as_str());
    assert_eq!(deleted[0]["details"]["bytes"], data.bytes);
    assert_eq!(of("job.expired").len(), 1);
    let purges: Vec<&str> = of("purge")
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(purges, ["success", "denied", "success"]);
    assert_eq!(
        deleted[0]["request_id"],
        of("purge")[2]["request_id"],
        "the deletion carries the purge's request id"
    );
}
