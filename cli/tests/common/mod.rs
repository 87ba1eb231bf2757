//! What the CLI's integration tests share: running `trialport` in a clean environment, reading the JSON it
//! prints on success and the standard error JSON it prints on failure, and making a home to run it in.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

pub mod lab;

use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The variable the CLI reads the signing password from.
pub const PASSWORD_ENV: &str = "TRIALPORT_SIGN_PASSWORD";

/// `trialport ARGS` without the variables a developer's shell may set (home, credential, signing password), and
/// with nothing on standard input.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trialport"));
    c.args(args)
        .env_remove("TRIALPORT_HOME")
        .env_remove("TRIALPORT_CREDENTIAL")
        .env_remove(PASSWORD_ENV)
        .stdin(Stdio::null());
    c
}

/// Runs [`command`] to the end.
pub fn run(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// `--home HOME --credential CRED ARGS`.
pub fn home_args<'a>(home: &'a Path, cred: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--home", home.to_str().unwrap(), "--credential", cred];
    all.extend_from_slice(args);
    all
}

/// The standard output of a run that must have succeeded (else a panic showing both streams).
pub fn stdout_text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The JSON on the standard output of a run that must have succeeded.
pub fn stdout_json(out: &Output) -> Value {
    let text = stdout_text(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

/// The `error` object of a run that must have failed with exit status 1, checked to have the standard shape:
/// a code, a message, `details.reason`, a timestamp and a request id.
pub fn error_object(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stderr).unwrap_or_else(|e| {
        panic!(
            "stderr is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let e = v["error"].clone();
    for k in ["code", "message", "details", "timestamp", "request_id"] {
        assert!(e.get(k).is_some(), "no {k} in {v}");
    }
    assert!(e["details"]["reason"].is_string(), "{v}");
    e
}

/// [`error_object`], which must have the code `code` (`EXP001` ...).
pub fn error_json(out: &Output, code: &str) -> Value {
    let e = error_object(out);
    assert_eq!(e["code"], code, "{e}");
    e
}

/// Writes the text `files` (name, content) into `root/source/STUDY`; returns `root/source`.
pub fn write_source(root: &Path, study: &str, files: &[(&str, &str)]) -> PathBuf {
    let source = root.join("source");
    let dir = source.join(study);
    fs::create_dir_all(&dir).unwrap();
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
    source
}

/// `trialport --home HOME init --source SOURCE --org acme`: the first admin's credential, `ApiKey tp_...`.
pub fn init_home(home: &Path, source: &Path) -> String {
    let v = stdout_json(&run(&[
        "--home",
        home.to_str().unwrap(),
        "init",
        "--source",
        source.to_str().unwrap(),
        "--org",
        "acme",
    ]));
    let key = v["api_key"].as_str().unwrap();
    assert!(key.starts_with("tp_"), "{v}");
    format!("ApiKey {key}")
}

/// Sets the home's `signing` settings in its configuration file (tests take fewer PBKDF2 iterations than the
/// production default, to stay quick).
pub fn set_signing_config(home: &Path, signing: Value) {
    let config = home.join("config.json");
    let mut c: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    c["signing"] = signing;
    fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

/// `signing set-password` as `cred`, with `new` on standard input and the `current` password, if any, in the
/// environment.
pub fn set_password(home: &Path, cred: &str, new: &str, current: Option<&str>) -> Output {
    let mut c = command(&home_args(home, cred, &["signing", "set-password"]));
    if let Some(p) = current {
        c.env(PASSWORD_ENV, p);
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

/// Every file below `dir`, at any depth; none when `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `../shared/conformance` beside the repository (real SAS- and CDISC-written files), or `None` when it is absent
/// and not required; with `TRIALPORT_REQUIRE_CONFORMANCE` set, or in CI, its absence fails the test.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var_os("TRIALPORT_REQUIRE_CONFORMANCE").is_some()
        || std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !required,
        "the conformance corpus is missing at {}",
        dir.display()
    );
    eprintln!(
        "skipped: the conformance corpus is not at {}",
        dir.display()
    );
    None
}

/// `keys create --name ROLE --roles ROLE --studies STUDIES` by `admin` on `home`: the new key's credential,
/// `ApiKey tp_...`.
pub fn create_key(home: &Path, admin: &str, role: &str, studies: &str) -> String {
    let v = stdout_json(&run(&home_args(
        home,
        admin,
        &[
            "keys",
            "create",
            "--name",
            role,
            "--roles",
            role,
            "--studies",
            studies,
            "--json",
        ],
    )));
    format!("ApiKey {}", v["api_key"].as_str().unwrap())
}

/// Whether `strace` can run here. Absent, the tests that need it are skipped, except in CI (`CI=true`), where the
/// test command installs it and its absence fails them.
pub fn strace_available() -> bool {
    if Command::new("strace").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "strace is required in CI (the test command installs it)"
    );
    eprintln!("skipped: strace is not installed");
    false
}

/// `command` (with its arguments and environment) run under `strace -f -qq -o TRACE OPTIONS...`: strace follows
/// every thread, writes what it traced to `trace`, and acts as `options` say (which syscalls to trace, and what to
/// inject into them: a signal that stops or kills the process at a chosen call).
pub fn under_strace(command: &Command, trace: &Path, options: &[&str]) -> Command {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o"]).arg(trace).args(options);
    c.arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (k, v) in command.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c
}
