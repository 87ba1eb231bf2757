//! E-signatures from the command line: `signing set-password`, `export ... --sign MEANING` with the password from
//! TRIALPORT_SIGN_PASSWORD, `verify PACKAGE --public-key FILE`, lockout across processes and `signing reset`.
//! OpenSSL, where installed, is the independent oracle: it derives the public key from the home's `signing.key`
//! and checks the Ed25519 signature and the manifest hash of a record the CLI wrote.

#![allow(clippy::unwrap_used)]

use serde_json::{Map, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "incorrect mule staple";

const DM_CSV: &str = "USUBJID,AGE,SEX\nS1-001,34,F\nS1-002,51,M\nS1-003,47,F\n";
const DM_META: &str = r#"{"name": "DM", "label": "Demographics", "columns": [
  {"name": "USUBJID", "label": "Unique Subject Identifier", "length": 20},
  {"name": "AGE", "label": "Age"},
  {"name": "SEX", "label": "Sex", "length": 1}]}"#;
const AE_CSV: &str = "USUBJID,AETERM\nS1-001,HEADACHE\nS1-003,NAUSEA\n";
const AE_META: &str = r#"{"name": "AE", "label": "Adverse Events", "columns": [
  {"name": "USUBJID", "label": "Unique Subject Identifier", "length": 20},
  {"name": "AETERM", "label": "Reported Term", "length": 40}]}"#;

mod common;
use common::{
    error_object, files_under, home_args, init_home, set_signing_config, stdout_json, write_source,
    PASSWORD_ENV,
};

/// `trialport ARGS`, with `password` as the signing password when given.
fn command(args: &[&str], password: Option<&str>) -> Command {
    let mut c = common::command(args);
    if let Some(p) = password {
        c.env(PASSWORD_ENV, p);
    }
    c
}

fn reason(e: &Value) -> (&str, &str) {
    (
        e["code"].as_str().unwrap(),
        e["details"]["reason"].as_str().unwrap(),
    )
}

/// A home on a source directory with S1 (DM, AE as CSV with metadata), hashing signing passwords fast.
struct Home {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    admin: String,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(
            tmp.path(),
            "S1",
            &[
                ("DM.csv", DM_CSV),
                ("DM.meta.json", DM_META),
                ("AE.csv", AE_CSV),
                ("AE.meta.json", AE_META),
            ],
        );
        let dir = tmp.path().join("home");
        let admin = init_home(&dir, &source);
        // The production default is 600,000 PBKDF2 iterations; the configuration may lower it (for tests).
        set_signing_config(
            &dir,
            serde_json::json!({"pbkdf2_iterations": 1000, "max_failed_attempts": 5}),
        );
        Home { tmp, dir, admin }
    }

    fn run_as(&self, cred: &str, args: &[&str], password: Option<&str>) -> Output {
        command(&home_args(&self.dir, cred, args), password)
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str], password: Option<&str>) -> Output {
        self.run_as(&self.admin, args, password)
    }

    /// `signing set-password` with `new` on standard input (and the current password in the environment).
    fn set_password(&self, cred: &str, new: &str, current: Option<&str>) -> Output {
        common::set_password(&self.dir, cred, new, current)
    }

    fn new_key(&self, roles: &str) -> String {
        let v = stdout_json(&self.run(
            &[
                "keys",
                "create",
                "--name",
                "Dr. Grace Hopper",
                "--roles",
                roles,
                "--studies",
                "S1",
                "--json",
            ],
            None,
        ));
        format!("ApiKey {}", v["api_key"].as_str().unwrap())
    }

    /// Downloads every artifact of a finished job into a new directory.
    fn download_all(&self, job: &Value) -> PathBuf {
        let out = self
            .tmp
            .path()
            .join(format!("job-{}", job["id"].as_str().unwrap()));
        fs::create_dir_all(&out).unwrap();
        for a in job["artifacts"].as_array().unwrap() {
            let name = a["name"].as_str().unwrap();
            let id = job["id"].as_str().unwrap();
            let target = out.join(name);
            stdout_json(&self.run(
                &[
                    "download",
                    id,
                    "--artifact",
                    name,
                    "-o",
                    target.to_str().unwrap(),
                    "--json",
                ],
                None,
            ));
        }
        out
    }

    fn audit(&self) -> Vec<Value> {
        let out = self.run(&["audit", "export"], None);
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn ectd_args() -> Vec<&'static str> {
    vec![
        "export",
        "bulk",
        "--study",
        "S1",
        "--format",
        "xpt",
        "--package",
        "ectd",
        "--wait",
        "--json",
    ]
}

/// JSON with object keys sorted at every level and no white space (what the engine hashes and signs).
fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).unwrap()
}

fn openssl(args: &[&str]) -> Option<Output> {
    Command::new("openssl").args(args).output().ok()
}

#[test]
fn an_ectd_package_is_signed_and_verified_by_the_cli_and_by_openssl() {
    let home = Home::new();
    let e = error_object(&home.run(&ectd_args(), None));
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    assert_eq!(e["details"]["required_for"], "ectd_package");
    let out = home.set_password(&home.admin, PASSWORD, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut args = ectd_args();
    args.extend_from_slice(&["--sign", "approval"]);
    let job = stdout_json(&home.run(&args, Some(PASSWORD)));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["request"]["signature"],
        serde_json::json!({"meaning": "approval"})
    );
    let dir = home.download_all(&job);
    let public = home.tmp.path().join("engine.pub");
    stdout_json(&home.run(
        &[
            "signing",
            "public-key",
            "-o",
            public.to_str().unwrap(),
            "--json",
        ],
        None,
    ));
    let zip = dir.join("s1_ectd.zip");
    for package in [&zip, &dir] {
        let v = stdout_json(
            &command(
                &[
                    "verify",
                    package.to_str().unwrap(),
                    "--public-key",
                    public.to_str().unwrap(),
                    "--json",
                ],
                None,
            )
            .output()
            .unwrap(),
        );
        let sig = &v["signatures"][0];
        assert_eq!(v["signatures"].as_array().unwrap().len(), 1);
        assert_eq!(sig["meaning"], "approval");
        assert_eq!(sig["printed_name"], "initial admin");
        assert_eq!(sig["key_trusted"], true);
        assert_eq!(sig["signer_id"], job["requested_by"]);
    }
    // The readable output shows the manifestation: printed name, time and meaning.
    let out = command(&["verify", dir.to_str().unwrap()], None)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("signed by initial admin") && text.contains("meaning approval"),
        "{text}"
    );

    // Another engine's key is not trusted.
    let other = Home::new();
    let other_key = other.tmp.path().join("other.pub");
    stdout_json(&other.run(
        &[
            "signing",
            "public-key",
            "-o",
            other_key.to_str().unwrap(),
            "--json",
        ],
        None,
    ));
    let e = error_object(
        &command(
            &[
                "verify",
                zip.to_str().unwrap(),
                "--public-key",
                other_key.to_str().unwrap(),
            ],
            None,
        )
        .output()
        .unwrap(),
    );
    assert_eq!(reason(&e), ("EXP005", "integrity_violation"));
    assert_eq!(e["details"]["problem"], "untrusted_key");

    // OpenSSL: the public key of signing.key is the one the CLI prints; the manifest hash and the Ed25519
    // signature check out.
    let Some(pem) = openssl(&[
        "pkey",
        "-in",
        home.dir.join("signing.key").to_str().unwrap(),
        "-pubout",
    ]) else {
        eprintln!("skipped the OpenSSL checks: openssl is not installed");
        return;
    };
    assert!(
        pem.status.success(),
        "{}",
        String::from_utf8_lossy(&pem.stderr)
    );
    assert_eq!(
        String::from_utf8(pem.stdout).unwrap(),
        fs::read_to_string(&public).unwrap()
    );
    let manifest: Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let record = manifest["signatures"][0].clone();
    let mut unsigned = manifest.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let unsigned_path = home.tmp.path().join("unsigned.json");
    fs::write(&unsigned_path, canonical(&unsigned)).unwrap();
    let digest = openssl(&["dgst", "-sha256", "-r", unsigned_path.to_str().unwrap()]).unwrap();
    let digest = String::from_utf8(digest.stdout).unwrap();
    assert_eq!(
        digest.split_whitespace().next().unwrap(),
        record["manifest_sha256"]
    );
    let mut payload_record = record.clone();
    payload_record.as_object_mut().unwrap().remove("signature");
    let payload = home.tmp.path().join("payload.bin");
    fs::write(
        &payload,
        format!("trialport.esignature.v1\n{}", canonical(&payload_record)),
    )
    .unwrap();
    let signature = home.tmp.path().join("signature.bin");
    let b64 = home.tmp.path().join("signature.b64");
    fs::write(&b64, format!("{}\n", record["signature"].as_str().unwrap())).unwrap();
    let decoded = openssl(&[
        "base64",
        "-d",
        "-A",
        "-in",
        b64.to_str().unwrap(),
        "-out",
        signature.to_str().unwrap(),
    ])
    .unwrap();
    assert!(decoded.status.success());
    let verify = |payload: &Path| {
        openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            public.to_str().unwrap(),
            "-rawin",
            "-in",
            payload.to_str().unwrap(),
            "-sigfile",
            signature.to_str().unwrap(),
        ])
        .unwrap()
    };
    let ok = verify(&payload);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // The same check fails for a record naming another meaning.
    let mut forged = payload_record.clone();
    forged["meaning"] = Value::String("review".into());
    let forged_path = home.tmp.path().join("forged.bin");
    fs::write(
        &forged_path,
        format!("trialport.esignature.v1\n{}", canonical(&forged)),
    )
    .unwrap();
    assert!(!verify(&forged_path).status.success());
}

#[test]
fn identifiable_exports_need_sign_and_a_changed_byte_fails_verify() {
    let home = Home::new();
    let data = [
        "export",
        "data",
        "--study",
        "S1",
        "--datasets",
        "DM",
        "--format",
        "csv",
        "--identifiable",
        "--wait",
        "--json",
    ];
    let e = error_object(&home.run(&data, None));
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    assert_eq!(e["details"]["required_for"], "identifiable_data");
    let mut signed = data.to_vec();
    signed.extend_from_slice(&["--sign", "witness"]);
    let e = error_object(&home.run(&signed, Some(PASSWORD)));
    assert_eq!(reason(&e), ("EXP002", "invalid_meaning"));
    assert_eq!(e["field"], "sign");
    let mut signed = data.to_vec();
    signed.extend_from_slice(&["--sign", "responsibility"]);
    let e = error_object(&home.run(&signed, Some(PASSWORD)));
    assert_eq!(reason(&e), ("EXP003", "signing_not_enrolled"));
    assert!(home
        .set_password(&home.admin, PASSWORD, None)
        .status
        .success());
    let job = stdout_json(&home.run(&signed, Some(PASSWORD)));
    assert_eq!(job["state"], "succeeded", "{job}");
    let dir = home.download_all(&job);
    let v = stdout_json(
        &command(&["verify", dir.to_str().unwrap(), "--json"], None)
            .output()
            .unwrap(),
    );
    assert_eq!(v["signatures"][0]["meaning"], "responsibility");
    let csv = dir.join("dm.csv");
    let mut bytes = fs::read(&csv).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    fs::write(&csv, &bytes).unwrap();
    let e = error_object(
        &command(&["verify", dir.to_str().unwrap()], None)
            .output()
            .unwrap(),
    );
    assert_eq!(reason(&e), ("EXP005", "integrity_violation"));
    assert_eq!(e["details"]["path"], "dm.csv");
    // The password is nowhere in the home.
    for path in files_under(&home.dir) {
        let bytes = fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{}",
            path.display()
        );
    }
}

#[test]
fn five_wrong_passwords_lock_signing_until_an_admin_resets_it() {
    let home = Home::new();
    let user = home.new_key("data_manager");
    assert!(home.set_password(&user, PASSWORD, None).status.success());
    let mut args = ectd_args();
    args.extend_from_slice(&["--sign", "approval"]);
    for attempt in 1..=5 {
        let e = error_object(&home.run_as(&user, &args, Some(WRONG)));
        let want = if attempt < 5 {
            "signature_invalid"
        } else {
            "signing_locked"
        };
        assert_eq!(reason(&e), ("EXP003", want), "attempt {attempt}");
    }
    // Every command is a new process: the lock is in the home.
    let e = error_object(&home.run_as(&user, &args, Some(PASSWORD)));
    assert_eq!(reason(&e), ("EXP003", "signing_locked"));
    let events = home.audit();
    let locked: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "security.signing_locked")
        .collect();
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0]["actor"]["name"], "Dr. Grace Hopper");
    let subject = locked[0]["actor"]["subject"].as_str().unwrap().to_string();
    let denied = events
        .iter()
        .filter(|e| e["action"] == "bulk_export" && e["outcome"] == "denied")
        .count();
    assert_eq!(denied, 6);
    // Only an admin resets; the user then sets a new password and signs.
    let e = error_object(&home.run_as(&user, &["signing", "reset", &subject], None));
    assert_eq!(reason(&e), ("EXP003", "permission_denied"));
    stdout_json(&home.run(&["signing", "reset", &subject, "--json"], None));
    assert!(home
        .set_password(&user, "a new password", None)
        .status
        .success());
    let job = stdout_json(&home.run_as(&user, &args, Some("a new password")));
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[test]
fn set_password_reads_standard_input_and_a_change_needs_the_current_one() {
    let home = Home::new();
    let out = home.set_password(&home.admin, "short", None);
    assert_eq!(reason(&error_object(&out)), ("EXP002", "weak_password"));
    assert!(home
        .set_password(&home.admin, PASSWORD, None)
        .status
        .success());
    // Standard input is not a terminal here and the environment has no current password.
    let e = error_object(&home.set_password(&home.admin, "another password", None));
    assert_eq!(reason(&e), ("EXP003", "current_password_required"));
    let e = error_object(&home.set_password(&home.admin, "another password", Some(WRONG)));
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    assert!(home
        .set_password(&home.admin, "another password", Some(PASSWORD))
        .status
        .success());
    let mut args = ectd_args();
    args.extend_from_slice(&["--sign", "review"]);
    assert_eq!(
        reason(&error_object(&home.run(&args, Some(PASSWORD)))),
        ("EXP003", "signature_invalid")
    );
    let job = stdout_json(&home.run(&args, Some("another password")));
    assert_eq!(job["state"], "succeeded", "{job}");
    // Without the variable and without a terminal there is no password to sign with.
    if fs::File::open("/dev/tty").is_err() {
        let e = error_object(&home.run(&args, None));
        assert_eq!(reason(&e), ("EXP003", "signature_required"));
        assert_eq!(e["field"], "signature.password");
    }
}
