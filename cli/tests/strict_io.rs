//! Strict inputs and outputs through the `trialport` binary, each a reproduction of a finding of the attack review
//! (H7, L1, M3, L3, M5's download part, the unclear items on duplicate CSV columns and unswept temp files) or of
//! the newcomer review (11).
#![cfg(unix)]
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `c` to the end, killing it and failing after `limit` (a reader that blocks or reads without end).
fn run_within(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("trialport did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reason(out: &Output, code: &str) -> String {
    error_json(out, code)["details"]["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0
}

/// The review's AE: 5 rows, as a CSV in `dir/src/S1` and converted to `dir/a.xpt`.
fn review_xpt(dir: &Path) -> PathBuf {
    let mut csv = String::from("STUDYID,AESEQ,AETERM\nS1,1,HEADACHE\n");
    for i in 2..=5 {
        csv.push_str(&format!("S1,{i},E{i}\n"));
    }
    let src = write_source(dir, "S1", &[("AE.csv", &csv)]);
    let a = dir.join("a.xpt");
    let out = run(&[
        "convert",
        s(&src.join("S1/AE.csv")),
        "-o",
        s(&a),
        "--dataset",
        "AE",
    ]);
    stdout_text(&out);
    a
}

#[test]
fn h7_a_truncated_or_nul_padded_xpt_is_refused_by_convert_and_fails_an_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = review_xpt(d);
    let bytes = fs::read(&a).unwrap();
    // Cut 100 bytes off: 3 of 5 rows and exit 0 before.
    fs::write(d.join("t.xpt"), &bytes[..bytes.len() - 100]).unwrap();
    let out = run(&["convert", s(&d.join("t.xpt")), "-o", s(&d.join("t.csv"))]);
    let e = error_json(&out, "EXP002");
    assert_eq!(e["details"]["reason"], "truncated_file");
    assert_eq!(e["details"]["offset"], bytes.len() - 100);
    assert!(!d.join("t.csv").exists());
    // 240 NULs appended: phantom rows before.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0u8; 240]);
    fs::write(d.join("p.xpt"), &padded).unwrap();
    let out = run(&["convert", s(&d.join("p.xpt")), "-o", s(&d.join("p.csv"))]);
    assert_eq!(reason(&out, "EXP002"), "invalid_padding");
    assert!(!d.join("p.csv").exists());

    // An export from a source holding the damaged file fails (it succeeded, counting the damaged rows).
    let src = d.join("source");
    fs::remove_file(src.join("S1/AE.csv")).unwrap();
    fs::write(src.join("S1/AE.xpt"), &padded).unwrap();
    fs::write(src.join("S1/DM.xpt"), &bytes[..bytes.len() - 100]).unwrap();
    let home = d.join("home");
    let cred = init_home(&home, &src);
    for (dataset, why) in [("AE", "invalid_padding"), ("DM", "truncated_file")] {
        let out = run(&home_args(
            &home,
            &cred,
            &[
                "export",
                "data",
                "--study",
                "S1",
                "--datasets",
                dataset,
                "--format",
                "csv",
                "--wait",
            ],
        ));
        assert_eq!(reason(&out, "EXP002"), why, "{dataset}");
    }
}

#[test]
fn l1_convert_refuses_a_link_to_dev_zero_and_a_fifo_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::os::unix::fs::symlink("/dev/zero", d.join("z.csv")).unwrap();
    mkfifo(&d.join("f.csv"));
    for (input, kind) in [("z.csv", "character_device"), ("f.csv", "fifo")] {
        let out = run_within(
            command(&["convert", s(&d.join(input)), "-o", s(&d.join("x.parquet"))]),
            Duration::from_secs(30),
        );
        let e = error_json(&out, "EXP002");
        assert_eq!(e["details"]["reason"], "not_a_regular_file");
        assert_eq!(e["details"]["kind"], kind);
        assert_eq!(e["field"], "path");
    }
    // A --meta FIFO is refused too, instead of blocking.
    fs::write(d.join("dm.csv"), "A\n1\n").unwrap();
    mkfifo(&d.join("meta.json"));
    let out = run_within(
        command(&[
            "convert",
            s(&d.join("dm.csv")),
            "-o",
            s(&d.join("dm.parquet")),
            "--meta",
            s(&d.join("meta.json")),
        ]),
        Duration::from_secs(30),
    );
    let e = error_json(&out, "EXP002");
    assert_eq!(
        (e["details"]["reason"].as_str(), e["field"].as_str()),
        (Some("not_a_regular_file"), Some("meta"))
    );
}

/// A CSV whose only field is `size` bytes.
fn single_field_csv(path: &Path, size: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    f.write_all(b"NOTE\n").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.write_all(b"\n").unwrap();
}

/// Runs `trialport ARGS` under `/usr/bin/time` when it is there: the output and the peak RSS in KiB.
fn run_measured(args: &[&str]) -> (Output, Option<u64>) {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("/usr/bin/time is missing: peak memory not measured");
        return (run(args), None);
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("rss");
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_trialport"))
        .args(args)
        .env_remove("TRIALPORT_HOME")
        .env_remove("TRIALPORT_CREDENTIAL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = fs::read_to_string(&report).unwrap();
    let kib = text
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .unwrap();
    (out, Some(kib))
}

#[test]
fn l1_a_300_mb_single_field_csv_is_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = d.join("big.csv");
    single_field_csv(&big, 300 << 20);
    // It took 1.2-1.8 GB of RSS before.
    let (out, rss) = run_measured(&["convert", s(&big), "-o", s(&d.join("big.parquet"))]);
    let e = error_json(&out, "EXP002");
    assert_eq!(e["details"]["reason"], "field_too_large");
    assert_eq!(e["details"]["limit"], "csv_max_field_bytes");
    assert_eq!(e["details"]["max_bytes"], 4 << 20);
    assert!(!d.join("big.parquet").exists());
    if let Some(kib) = rss {
        assert!(kib < 100 * 1024, "peak RSS {kib} KiB");
    }
    // An engine export from a directory source holding it fails the same way, as bounded.
    let src = d.join("source/S1");
    fs::create_dir_all(&src).unwrap();
    fs::rename(&big, src.join("NOTES.csv")).unwrap();
    let home = d.join("home");
    let cred = init_home(&home, &d.join("source"));
    let (out, rss) = run_measured(&home_args(
        &home,
        &cred,
        &[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "NOTES",
            "--format",
            "csv",
            "--wait",
        ],
    ));
    assert_eq!(reason(&out, "EXP002"), "field_too_large");
    if let Some(kib) = rss {
        assert!(kib < 100 * 1024, "peak RSS {kib} KiB");
    }
}

#[test]
fn duplicate_csv_column_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("dm.csv"), "USUBJID,AGE,AGE\nS1-001,40,41\n").unwrap();
    let out = run(&["convert", s(&d.join("dm.csv")), "-o", s(&d.join("dm.xpt"))]);
    let e = error_json(&out, "EXP002");
    assert_eq!(e["details"]["reason"], "duplicate_column");
    assert_eq!(e["details"]["column"], "AGE");
    assert!(!d.join("dm.xpt").exists());
}

/// A home with one finished CSV export of S1's AE; its credential and the job id.
fn home_with_job(d: &Path, rows: usize) -> (PathBuf, String, String) {
    let mut csv = String::from("STUDYID,AESEQ,AETERM\n");
    for i in 0..rows {
        csv.push_str(&format!("S1,{i},TERM NUMBER {i} OF THE ADVERSE EVENTS\n"));
    }
    let src = write_source(d, "S1", &[("AE.csv", &csv)]);
    let home = d.join("home");
    let cred = init_home(&home, &src);
    let job = stdout_json(&run(&home_args(
        &home,
        &cred,
        &[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "AE",
            "--format",
            "csv",
            "--wait",
            "--json",
        ],
    )));
    assert_eq!(job["state"], "succeeded", "{job}");
    (home, cred, job["id"].as_str().unwrap().to_string())
}

#[test]
fn m3_no_output_replaces_a_fifo_or_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (home, cred, job) = home_with_job(d, 3);
    let out_dir = d.join("out");
    fs::create_dir(&out_dir).unwrap();
    mkfifo(&out_dir.join("myfifo"));
    std::os::unix::fs::symlink("/dev/null", out_dir.join("mynull")).unwrap();
    let mut targets = vec![("myfifo", "fifo"), ("mynull", "character_device")];
    if is_root() {
        // The review's own device node (as root, `-o /dev/full` replaced the real one).
        assert!(Command::new("mknod")
            .args(["-m", "666"])
            .arg(out_dir.join("mydev"))
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success());
        targets.push(("mydev", "character_device"));
    }
    let input = d.join("source/S1/AE.csv");
    for (name, kind) in targets {
        let t = out_dir.join(name);
        let commands: Vec<Vec<&str>> = vec![
            home_args(
                &home,
                &cred,
                &["download", &job, "-o", s(&t), "--artifact", "ae.csv"],
            ),
            vec!["convert", s(&input), "-o", s(&t), "--to", "csv"],
            home_args(&home, &cred, &["audit", "export", "-o", s(&t)]),
            home_args(&home, &cred, &["audit", "checkpoint", "-o", s(&t)]),
            home_args(&home, &cred, &["signing", "public-key", "-o", s(&t)]),
        ];
        for args in commands {
            let out = run_within(command(&args), Duration::from_secs(60));
            let e = error_json(&out, "EXP002");
            assert_eq!(e["details"]["reason"], "not_a_regular_file", "{args:?}");
            assert_eq!(e["details"]["kind"], kind, "{args:?}");
            assert_eq!(e["field"], "output", "{args:?}");
        }
    }
    let kind_of = |n: &str| fs::symlink_metadata(out_dir.join(n)).unwrap().file_type();
    assert!(kind_of("myfifo").is_fifo());
    assert!(kind_of("mynull").is_symlink());
    assert_eq!(
        fs::read_link(out_dir.join("mynull")).unwrap(),
        Path::new("/dev/null")
    );
    if is_root() {
        assert!(kind_of("mydev").is_char_device());
    }
    // Nothing else appeared.
    let mut names: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = vec!["myfifo", "mynull"];
    if is_root() {
        expected.insert(0, "mydev");
    }
    assert_eq!(names, expected);
}

/// The hidden files of `dir`.
fn hidden(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect()
}

/// `trialport ARGS` with a file size limit of 512 KiB: it is killed (SIGXFSZ) by the first write past it.
fn run_killed_at_512_kib(args: &[&str]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -f 512 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_trialport"))
        .args(args)
        .env_remove("TRIALPORT_HOME")
        .env_remove("TRIALPORT_CREDENTIAL")
        .stdin(Stdio::null());
    c.output().unwrap()
}

#[test]
fn m5_a_download_killed_midway_leaves_an_owner_only_temp_file_that_the_next_run_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // About 2.4 MB of CSV.
    let (home, cred, job) = home_with_job(d, 50_000);
    let out_dir = d.join("out");
    fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("ae.csv");
    let args = home_args(
        &home,
        &cred,
        &["download", &job, "-o", s(&target), "--artifact", "ae.csv"],
    );
    let out = run_killed_at_512_kib(&args);
    assert_eq!(out.status.code(), None, "not killed: {out:?}");
    // What the killed run left: hidden, partial, decrypted; readable by its owner only.
    assert!(!target.exists());
    let left = hidden(&out_dir);
    assert_eq!(left.len(), 1, "{left:?}");
    let name = left[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with(".ae.csv.partial-"), "{name}");
    let meta = fs::metadata(&left[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    assert!(meta.len() > 0 && meta.len() <= 512 * 1024);
    // The next download of that target removes it, and puts the verified file in place, owner-only.
    let v = stdout_json(&run(&[&args[..], &["--json"]].concat()));
    assert_eq!(v["path"], s(&target));
    assert!(hidden(&out_dir).is_empty(), "{:?}", hidden(&out_dir));
    assert_eq!(
        fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_, sha) = trialport_core::hashing::sha256_of(fs::File::open(&target).unwrap()).unwrap();
    assert_eq!(v["sha256"], sha);

    // A convert killed the same way leaves its temp file; the next convert to that target sweeps it.
    let input = d.join("source/S1/AE.csv");
    let csv_out = out_dir.join("copy.csv");
    let out = run_killed_at_512_kib(&["convert", s(&input), "-o", s(&csv_out)]);
    assert_eq!(out.status.code(), None, "not killed: {out:?}");
    assert_eq!(hidden(&out_dir).len(), 1);
    stdout_text(&run(&["convert", s(&input), "-o", s(&csv_out)]));
    assert!(hidden(&out_dir).is_empty(), "{:?}", hidden(&out_dir));
}

/// The audit events of a home as JSON lines.
fn audit_events(home: &Path, cred: &str) -> Vec<Value> {
    let out = run(&home_args(home, cred, &["audit", "export"]));
    stdout_text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn l3_an_init_stopped_after_any_step_is_taken_up_by_the_next_init() {
    let dir = tempfile::tempdir().unwrap();
    for step in [
        "marker",
        "secret",
        "keys",
        "deid",
        "signing",
        "admin_key",
        "delivered",
    ] {
        let home = dir.path().join(step);
        let args = ["--home", s(&home), "init", "--org", "acme"];
        let crashed = command(&args)
            .env("TRIALPORT_FAILPOINT", format!("init.{step}.after"))
            .output()
            .unwrap();
        assert_eq!(crashed.status.code(), None, "{step}: init was not stopped");
        assert!(!home.join("config.json").exists(), "{step}");
        // Its remains are no home yet.
        let out = run(&home_args(&home, "ApiKey tp_x", &["jobs", "list"]));
        assert_eq!(reason(&out, "EXP001"), "not_a_home", "{step}");
        // A key the stopped init printed (only at its last step) is not a key of the new home.
        let printed: Option<String> = serde_json::from_slice::<Value>(&crashed.stdout)
            .ok()
            .map(|v| format!("ApiKey {}", v["api_key"].as_str().unwrap()));
        assert_eq!(printed.is_some(), step == "delivered", "{step}");
        let old_signing = fs::read(home.join("signing.key")).ok();

        let v = stdout_json(&run(&args));
        let cred = format!("ApiKey {}", v["api_key"].as_str().unwrap());
        assert!(home.join("config.json").exists());
        assert!(!home.join("init.incomplete").exists(), "{step}");
        stdout_json(&run(&home_args(&home, &cred, &["jobs", "list", "--json"])));
        let created: Vec<Value> = audit_events(&home, &cred)
            .into_iter()
            .filter(|e| e["action"] == "create_api_key")
            .collect();
        assert_eq!(created.len(), 1, "{step}: {created:?}");
        if let Some(old) = printed {
            let out = run(&home_args(&home, &old, &["jobs", "list"]));
            assert_eq!(error_object(&out)["code"], "EXP003", "{step}");
        }
        if let Some(old) = old_signing {
            assert_ne!(fs::read(home.join("signing.key")).unwrap(), old, "{step}");
        }
        // And it is a home now: a third init is refused.
        assert_eq!(reason(&run(&args), "EXP004"), "already_initialized");
    }
}

#[test]
fn l3_a_database_without_config_or_init_marker_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_source(dir.path(), "S1", &[("AE.csv", "A\n1\n")]);
    let home = dir.path().join("home");
    init_home(&home, &src);
    // A home that lost its configuration is not the remains of an init: its keys and data must stay.
    fs::remove_file(home.join("config.json")).unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = files_under(&home)
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "engine.lock")
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let out = run(&["--home", s(&home), "init", "--org", "acme"]);
    assert_eq!(reason(&out, "EXP004"), "incomplete_home");
    for (p, b) in before {
        assert_eq!(fs::read(&p).unwrap(), b, "{} changed", p.display());
    }
    assert!(!home.join("init.incomplete").exists());
}

#[test]
fn newcomer_11_convert_names_the_unsupported_format_and_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("dm.xlsx"), b"PK\x03\x04").unwrap();
    fs::write(d.join("dm.csv"), "USUBJID\nS1-001\n").unwrap();
    let out = run(&["convert", s(&d.join("dm.xlsx")), "-o", s(&d.join("dm.csv"))]);
    let e = error_json(&out, "EXP002");
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("'.xlsx' files cannot be read"), "{m}");
    assert!(!m.contains("name it"), "{m}");
    for readable in ["csv (.csv)", "parquet", "xpt (.xpt)", "dataset-json"] {
        assert!(m.contains(readable), "{m}");
    }
    assert_eq!(e["field"], "input");
    assert_eq!(e["details"]["extension"], "xlsx");

    let out = run(&["convert", s(&d.join("dm.csv")), "-o", s(&d.join("dm.pdf"))]);
    let e = error_json(&out, "EXP002");
    let m = e["message"].as_str().unwrap();
    // pdf renders reports, not datasets.
    assert!(
        m.starts_with("pdf writes reports and dashboards, not datasets"),
        "{m}"
    );
    for writable in [
        "csv (.csv)",
        "xlsx (.xlsx)",
        "xpt (.xpt)",
        "parquet (.parquet)",
    ] {
        assert!(m.contains(writable), "{m}");
    }
    assert_eq!(e["field"], "to");
    assert!(!d.join("dm.pdf").exists());
}
