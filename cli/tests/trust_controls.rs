//! The attack review's findings on signatures and credentials, reproduced through the `trialport` binary as the
//! review met them, each now refused: H4 (a stripped eCTD package passed `verify --public-key`), M6 (`verify` of
//! a directory ignored injected and linked files), L2 (signing resets and KEK rotation beyond the caller's scope,
//! resetting one's own lockout), and the unclear items (a key born expired, tokens valid for a century, `password`
//! as a signing password, a world-readable HS256 secret). Tokens are minted by the `jsonwebtoken` crate, zips
//! forged with the `zip` crate: implementations independent of trialport's.

#![allow(clippy::unwrap_used)]

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{
    command, error_json, error_object, home_args, init_home, run, set_password, set_signing_config,
    stdout_json, write_source, PASSWORD_ENV,
};

const PASSWORD: &str = "correct horse battery";
const DM_CSV: &str = "USUBJID,AGE,SEX\nS1-001,34,F\nS1-002,51,M\n";
const DM_META: &str = r#"{"name": "DM", "label": "Demographics", "columns": [
  {"name": "USUBJID", "label": "Unique Subject Identifier", "length": 20},
  {"name": "AGE", "label": "Age"}, {"name": "SEX", "label": "Sex", "length": 1}]}"#;
const AE_CSV: &str = "STUDYID,AESEQ,AETERM\nS1,1,HEADACHE\n";
const AE_META: &str = r#"{"name": "AE", "label": "Adverse Events", "columns": [
  {"name": "STUDYID", "label": "Study Identifier", "length": 8},
  {"name": "AESEQ", "label": "Sequence Number"},
  {"name": "AETERM", "label": "Reported Term", "length": 40}]}"#;
const JWT_SECRET: &[u8] = b"trust-controls-test-secret-of-40-bytes!!";

struct Home {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    admin: String,
}

impl Home {
    /// A home of org `acme` on study S1 (DM, AE), hashing signing passwords fast; `init` gets `extra`.
    fn new(extra: &[&str]) -> Home {
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
        let admin = if extra.is_empty() {
            init_home(&dir, &source)
        } else {
            let mut args = vec![
                "--home",
                dir.to_str().unwrap(),
                "init",
                "--org",
                "acme",
                "--source",
                source.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            let v = stdout_json(&run(&args));
            format!("ApiKey {}", v["api_key"].as_str().unwrap())
        };
        set_signing_config(
            &dir,
            json!({"pbkdf2_iterations": 1000, "max_failed_attempts": 5}),
        );
        Home { tmp, dir, admin }
    }

    fn run_as(&self, cred: &str, args: &[&str], password: Option<&str>) -> Output {
        let mut c = command(&home_args(&self.dir, cred, args));
        if let Some(p) = password {
            c.env(PASSWORD_ENV, p);
        }
        c.output().unwrap()
    }

    fn key(&self, name: &str, roles: &str, studies: &str) -> String {
        let v = stdout_json(&self.run_as(
            &self.admin,
            &[
                "keys",
                "create",
                "--name",
                name,
                "--roles",
                roles,
                "--studies",
                studies,
                "--json",
            ],
            None,
        ));
        format!("ApiKey {}", v["api_key"].as_str().unwrap())
    }

    fn set_password(&self, cred: &str, new: &str) -> Output {
        set_password(&self.dir, cred, new, None)
    }

    /// A signed eCTD package (`container` zip or directory) of S1's AE: the finished job's JSON.
    fn signed_ectd(&self, container: &str) -> Value {
        assert!(self.set_password(&self.admin, PASSWORD).status.success());
        let job = stdout_json(&self.run_as(
            &self.admin,
            &[
                "export",
                "bulk",
                "--study",
                "S1",
                "--datasets",
                "AE",
                "--format",
                "xpt",
                "--package",
                "ectd",
                "--container",
                container,
                "--sign",
                "approval",
                "--wait",
                "--json",
            ],
            Some(PASSWORD),
        ));
        assert_eq!(job["state"], "succeeded", "{job}");
        job
    }

    fn public_key(&self) -> PathBuf {
        let path = self.tmp.path().join("pub.pem");
        stdout_json(&self.run_as(
            &self.admin,
            &[
                "signing",
                "public-key",
                "-o",
                path.to_str().unwrap(),
                "--json",
            ],
            None,
        ));
        path
    }
}

/// The `apikey:<key id>` subject of an `ApiKey tp_<id>_...` credential.
fn subject(cred: &str) -> String {
    let id = cred
        .strip_prefix("ApiKey tp_")
        .unwrap()
        .split('_')
        .next()
        .unwrap();
    format!("apikey:{id}")
}

fn reason(e: &Value) -> (&str, &str) {
    (
        e["code"].as_str().unwrap(),
        e["details"]["reason"].as_str().unwrap(),
    )
}

fn verify(args: &[&str]) -> Output {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    run(&all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `Bearer <jwt>` signed with HS256 by [`JWT_SECRET`], claims over defaults of org `acme`.
fn bearer(changes: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"sub": "idp-user", "name": "Token User", "org": "acme", "roles": ["admin"],
        "studies": ["*"], "iat": now, "exp": now + 600});
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    let token = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap();
    format!("Bearer {token}")
}

/// An HS256 secret file of `mode` in `dir`.
fn secret_file(dir: &Path, mode: u32) -> PathBuf {
    let path = dir.join(format!("jwt-{mode:o}.secret"));
    fs::write(&path, JWT_SECRET).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    path
}

// ---- H4: stripping the signature of an eCTD package --------------------------------------------------------

/// The review's forgery of a zip package: `signatures` emptied, `request.signature` removed, `HEADACHE` changed
/// to `NOTHING!` in the XPT, the manifest's sizes and hashes updated.
fn strip_and_change(from: &Path, to: &Path) {
    let mut zip = zip::ZipArchive::new(fs::File::open(from).unwrap()).unwrap();
    let mut m: Value = {
        let mut text = String::new();
        zip.by_name("manifest.json")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    m["signatures"] = json!([]);
    m["request"]
        .as_object_mut()
        .unwrap()
        .remove("signature")
        .unwrap();
    let mut out = zip::ZipWriter::new(fs::File::create(to).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let mut changed = false;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        if name == "manifest.json" {
            continue;
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        if name.ends_with(".xpt") {
            let at = bytes.windows(8).position(|w| w == b"HEADACHE").unwrap();
            bytes[at..at + 8].copy_from_slice(b"NOTHING!");
            changed = true;
        }
        let sha = sha256_hex(&bytes);
        for e in m["files"].as_array_mut().unwrap() {
            if e["path"] == name.as_str() {
                e["sha256"] = json!(sha);
                e["bytes"] = json!(bytes.len());
            }
        }
        out.start_file(name, opts).unwrap();
        out.write_all(&bytes).unwrap();
    }
    assert!(changed, "no XPT in the package");
    out.start_file("manifest.json", opts).unwrap();
    out.write_all(&serde_json::to_vec(&m).unwrap()).unwrap();
    out.finish().unwrap();
}

/// SHA-256 (hex) of the forged bytes, for the forger's manifest: the forgery must match its manifest so that
/// only the missing signature can give it away (the hash is the forger's tool here, not an oracle).
fn sha256_hex(bytes: &[u8]) -> String {
    trialport_core::hashing::sha256_of(bytes).unwrap().1
}

#[test]
fn h4_a_stripped_ectd_zip_is_unsigned_and_verify_fails_with_or_without_the_key() {
    let home = Home::new(&[]);
    let job = home.signed_ectd("zip");
    let zip = home.tmp.path().join("e.zip");
    let id = job["id"].as_str().unwrap();
    stdout_json(&home.run_as(
        &home.admin,
        &[
            "download",
            id,
            "-o",
            p(&zip),
            "--artifact",
            "s1_ectd.zip",
            "--json",
        ],
        None,
    ));
    let key = home.public_key();
    let forged = home.tmp.path().join("forged.zip");
    strip_and_change(&zip, &forged);
    // The review: "package verified", exit 0. Now: UNSIGNED, EXP003 signature_required, exit 1.
    let out = verify(&[p(&forged), "--public-key", p(&key)]);
    let e = error_json(&out, "EXP003");
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    assert_eq!(e["details"]["required_for"], "public_key");
    assert_eq!(e["details"]["signature_status"], "UNSIGNED");
    assert!(
        stdout(&out).contains("UNSIGNED: the package carries no e-signature"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("package NOT verified"));
    assert!(!stdout(&out).contains("package verified"));
    // Without the key an eCTD package still needs a signature.
    let e = error_json(&verify(&[p(&forged)]), "EXP003");
    assert_eq!(e["details"]["required_for"], "ectd_package");
    let out = verify(&[p(&forged), "--json"]);
    error_json(&out, "EXP003");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["verified"], &v["signature_status"], &v["signatures"]),
        (&json!(false), &json!("UNSIGNED"), &json!([]))
    );

    // The genuine package: SIGNED with the key, UNTRUSTED without it; both verified.
    let out = verify(&[p(&zip), "--public-key", p(&key)]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("SIGNED: every signature verified with the trusted public key"));
    let out = verify(&[p(&zip)]);
    assert!(out.status.success());
    assert!(stdout(&out)
        .contains("UNTRUSTED: signed, but verified only with the key the package carries"));
    let v = stdout_json(&verify(&[p(&zip), "--json"]));
    assert_eq!(
        (
            &v["verified"],
            &v["signature_status"],
            &v["signature_required"]
        ),
        (&json!(true), &json!("UNTRUSTED"), &json!("ectd_package"))
    );
}

// ---- M6: a package directory with files its manifest does not list ------------------------------------------

#[test]
fn m6_an_ectd_directory_refuses_injected_files_folders_and_links() {
    let home = Home::new(&[]);
    let job = home.signed_ectd("directory");
    let sub = home.tmp.path().join("sub");
    stdout_json(&home.run_as(
        &home.admin,
        &[
            "download",
            job["id"].as_str().unwrap(),
            "-o",
            p(&sub),
            "--all",
            "--json",
        ],
        None,
    ));
    let key = home.public_key();
    let out = verify(&[p(&sub), "--public-key", p(&key)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = sub.join("m5/datasets/s1/tabulations/sdtm");
    assert!(d.join("ae.xpt").is_file());
    // The review's injection: a copy of the XPT, and a second define, beside the signed files.
    for name in ["zz.xpt", "define-2.xml"] {
        fs::copy(d.join("ae.xpt"), d.join(name)).unwrap();
        let e = error_json(&verify(&[p(&sub), "--public-key", p(&key)]), "EXP005");
        assert_eq!(reason(&e), ("EXP005", "integrity_violation"));
        assert_eq!(
            e["details"]["path"],
            format!("m5/datasets/s1/tabulations/sdtm/{name}")
        );
        fs::remove_file(d.join(name)).unwrap();
    }
    fs::create_dir(sub.join("m5/extra")).unwrap();
    let e = error_json(&verify(&[p(&sub)]), "EXP005");
    assert_eq!(e["details"]["path"], "m5/extra");
    fs::remove_dir(sub.join("m5/extra")).unwrap();
    // A listed file that is a symbolic link (to an identical copy) is refused: links are never followed.
    #[cfg(unix)]
    {
        let copy = home.tmp.path().join("ae-copy.xpt");
        fs::rename(d.join("ae.xpt"), &copy).unwrap();
        std::os::unix::fs::symlink(&copy, d.join("ae.xpt")).unwrap();
        let e = error_json(&verify(&[p(&sub), "--public-key", p(&key)]), "EXP002");
        assert_eq!(reason(&e), ("EXP002", "unsafe_package"));
        assert_eq!(
            e["details"]["path"],
            "m5/datasets/s1/tabulations/sdtm/ae.xpt"
        );
        fs::remove_file(d.join("ae.xpt")).unwrap();
        fs::rename(&copy, d.join("ae.xpt")).unwrap();
    }
    assert!(verify(&[p(&sub), "--public-key", p(&key)]).status.success());
}

// ---- L2: signing resets and KEK rotation ---------------------------------------------------------------------

#[test]
fn l2_a_study_admin_cannot_reset_the_org_admin_and_nobody_resets_their_own() {
    let home = Home::new(&[]);
    assert!(home.set_password(&home.admin, PASSWORD).status.success());
    let org_admin = subject(&home.admin);
    // The review's case: a study-S1 admin reset the org-wide admin's credential. It can revoke no such key, and
    // now reset none either.
    let s1_admin = home.key("S1 admin", "admin", "S1");
    let key_id = org_admin.strip_prefix("apikey:").unwrap();
    let e = error_object(&home.run_as(&s1_admin, &["keys", "revoke", key_id], None));
    assert_eq!(reason(&e), ("EXP003", "permission_denied"));
    let e = error_object(&home.run_as(&s1_admin, &["signing", "reset", &org_admin], None));
    assert_eq!(reason(&e), ("EXP003", "permission_denied"));
    assert_eq!(e["details"]["scope"], "study");
    // The review's case: an admin resets their own lockout, sets a new password, and an API key alone signs.
    let e = error_object(&home.run_as(&home.admin, &["signing", "reset", &org_admin], None));
    assert_eq!(reason(&e), ("EXP003", "self_reset"));
    // Nor through a key it mints for the purpose.
    let helper = home.key("helper", "admin", "*");
    let e = error_object(&home.run_as(&helper, &["signing", "reset", &org_admin], None));
    assert_eq!(reason(&e), ("EXP003", "self_reset"));
    // The password the admin had still signs: nothing was reset.
    let args = [
        "export",
        "data",
        "--study",
        "S1",
        "--datasets",
        "DM",
        "--format",
        "csv",
        "--sign",
        "review",
        "--wait",
        "--json",
    ];
    let job = stdout_json(&home.run_as(&home.admin, &args, Some(PASSWORD)));
    assert_eq!(job["state"], "succeeded", "{job}");

    // Within its scope a study admin resets, and the signer must set a new password before signing again.
    let user = home.key("Dr. Grace Hopper", "data_manager", "S1");
    assert!(home.set_password(&user, PASSWORD).status.success());
    let v = stdout_json(&home.run_as(
        &s1_admin,
        &["signing", "reset", &subject(&user), "--json"],
        None,
    ));
    assert_eq!(v["reset"], true);
    let e = error_object(&home.run_as(&user, &args, Some(PASSWORD)));
    assert_eq!(reason(&e), ("EXP003", "password_reset_required"));
    let e = error_object(&home.run_as(&user, &args, Some("anything at all, really")));
    assert_eq!(reason(&e), ("EXP003", "password_reset_required"));
    assert!(home
        .set_password(&user, "grace's own new passphrase")
        .status
        .success());
    let job = stdout_json(&home.run_as(&user, &args, Some("grace's own new passphrase")));
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[test]
fn l2_only_an_admin_of_every_study_of_the_homes_org_rotates_the_kek() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path(), 0o600);
    let home = Home::new(&["--jwt-hs256-secret-file", p(&secret)]);
    let rotate = |cred: &str| home.run_as(cred, &["keys", "rotate-kek", "--json"], None);
    // The review's case: a JWT admin of another organization rotated the home-wide KEK.
    let evil = bearer(json!({"sub": "mallory", "org": "evilcorp"}));
    let e = error_object(&rotate(&evil));
    assert_eq!(reason(&e), ("EXP003", "permission_denied"));
    assert_eq!(e["details"]["scope"], "organization");
    assert_eq!(e["details"]["requires"], "home_admin");
    // An admin of some studies of the home's organization, by key or by token, may not either.
    for cred in [
        home.key("S1 admin", "admin", "S1"),
        bearer(json!({"sub": "s1-admin", "studies": ["S1"]})),
    ] {
        let e = error_object(&rotate(&cred));
        assert_eq!(
            (reason(&e), &e["details"]["scope"]),
            (("EXP003", "permission_denied"), &json!("study"))
        );
    }
    // An admin of every study of acme, by token or by key, may.
    let v = stdout_json(&rotate(&bearer(json!({"sub": "acme-admin"}))));
    assert_eq!(v["key_id"], "kek-0002");
    let v = stdout_json(&rotate(&home.admin));
    assert_eq!(v["key_id"], "kek-0003");
    assert!(home.dir.join("keys/kek-0003.key").is_file());
    assert!(!home.dir.join("keys/kek-0004.key").exists());
}

// ---- the unclear items -----------------------------------------------------------------------------------

#[test]
fn unclear_keys_create_refuses_an_expiry_in_the_past() {
    let home = Home::new(&[]);
    let create = |at: &str| {
        home.run_as(
            &home.admin,
            &[
                "keys",
                "create",
                "--name",
                "k",
                "--roles",
                "monitor",
                "--studies",
                "S1",
                "--expires-at",
                at,
                "--json",
            ],
            None,
        )
    };
    let now = chrono::Utc::now().to_rfc3339();
    for at in ["2000-01-01T00:00:00Z", now.as_str()] {
        let e = error_json(&create(at), "EXP002");
        assert_eq!(reason(&e), ("EXP002", "invalid_expiry"));
        assert_eq!(e["field"], "expires_at");
    }
    let v = stdout_json(&create("2999-01-01T00:00:00Z"));
    assert_eq!(v["expires_at"], "2999-01-01T00:00:00Z");
}

#[test]
fn unclear_tokens_valid_for_longer_than_the_maximum_lifetime_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path(), 0o600);
    let home = Home::new(&[
        "--jwt-hs256-secret-file",
        p(&secret),
        "--jwt-max-lifetime",
        "3600",
    ]);
    let config: Value =
        serde_json::from_slice(&fs::read(home.dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["jwt"]["max_lifetime_secs"], 3600);
    let list = |cred: &str| home.run_as(cred, &["jobs", "list", "--json"], None);
    let now = chrono::Utc::now().timestamp();
    let century = now + 100 * 365 * 24 * 3600;
    // The review's tokens: exp of 1e300, of u64::MAX, and 100 years away, with and without iat.
    for exp in [json!(1e300), json!(u64::MAX), json!(century)] {
        for iat in [json!(now), Value::Null] {
            let e = error_json(&list(&bearer(json!({"exp": exp, "iat": iat}))), "EXP003");
            assert_eq!(
                reason(&e),
                ("EXP003", "token_lifetime_too_long"),
                "exp {exp}, iat {iat}"
            );
            assert_eq!(e["details"]["max_lifetime_secs"], 3600);
        }
    }
    // Within the maximum: accepted.
    stdout_json(&list(&bearer(json!({"exp": now + 3000}))));
    // Without the setting (the default), a century-long token is still accepted: the limit is the home's choice.
    let open = Home::new(&["--jwt-hs256-secret-file", p(&secret)]);
    let out = open.run_as(
        &bearer(json!({"exp": century})),
        &["jobs", "list", "--json"],
        None,
    );
    stdout_json(&out);
    // The flag needs a JWT key.
    let e = error_json(
        &run(&[
            "--home",
            p(&tmp.path().join("h3")),
            "init",
            "--jwt-max-lifetime",
            "60",
        ]),
        "EXP002",
    );
    assert_eq!(reason(&e), ("EXP002", "missing_jwt_keys"));
}

#[test]
fn unclear_password_and_other_weak_signing_passwords_are_refused() {
    let home = Home::new(&[]);
    let grace = home.key("Grace Hopper", "data_manager", "S1");
    for (password, rule) in [
        ("password", "too_short"),
        ("password1234", "common_password"),
        ("grace hopper 1906", "contains_identity"),
    ] {
        let out = home.set_password(&grace, password);
        let e = error_json(&out, "EXP002");
        assert_eq!(reason(&e), ("EXP002", "weak_password"), "{password}");
        assert_eq!(e["details"]["rule"], rule, "{password}");
    }
    assert!(home.set_password(&grace, PASSWORD).status.success());
}

#[cfg(unix)]
#[test]
fn unclear_an_hs256_secret_others_may_read_is_refused_at_init_and_at_load() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let source = write_source(tmp.path(), "S1", &[("DM.csv", DM_CSV)]);
    let init = |home: &Path, secret: &Path| {
        run(&[
            "--home",
            p(home),
            "init",
            "--org",
            "acme",
            "--source",
            p(&source),
            "--jwt-hs256-secret-file",
            p(secret),
        ])
    };
    // The review's case: a 0644 secret was accepted.
    for mode in [0o644, 0o640, 0o604] {
        let home = tmp.path().join(format!("home-{mode:o}"));
        let out = init(&home, &secret_file(tmp.path(), mode));
        let e = error_json(&out, "EXP002");
        assert_eq!(reason(&e), ("EXP002", "insecure_key_file"));
        assert_eq!(e["details"]["mode"], format!("{mode:04o}"));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !text.contains(std::str::from_utf8(JWT_SECRET).unwrap()),
            "{text}"
        );
        assert!(!home.join("config.json").exists(), "a home was created");
    }
    // 0600 is accepted; a secret opened up later is refused when the home next opens.
    let secret = secret_file(tmp.path(), 0o600);
    let home = tmp.path().join("home");
    stdout_json(&init(&home, &secret));
    let cred = bearer(json!({}));
    stdout_json(&run(&home_args(&home, &cred, &["jobs", "list", "--json"])));
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let e = error_json(
        &run(&home_args(&home, &cred, &["jobs", "list", "--json"])),
        "EXP002",
    );
    assert_eq!(reason(&e), ("EXP002", "insecure_key_file"));
    assert_eq!(e["details"]["mode"], "0644");
}

#[test]
fn the_help_says_the_rules() {
    let help = |args: &[&str]| stdout(&run(args));
    let verify = help(&["verify", "--help"]);
    for word in ["SIGNED", "UNTRUSTED", "UNSIGNED", "eCTD", "symbolic link"] {
        assert!(verify.contains(word), "verify --help lacks {word}");
    }
    let reset = help(&["signing", "reset", "--help"]);
    assert!(reset.contains("Nobody resets their own credential") && reset.contains("every study"));
    let rotate = help(&["keys", "rotate-kek", "--help"]);
    assert!(rotate.contains("home's own organization"));
    let init = help(&["init", "--help"]);
    assert!(init.contains("--jwt-max-lifetime") && init.contains("chmod 600"));
}

#[test]
fn a_zip_package_with_bytes_outside_its_entries_is_refused() {
    let home = Home::new(&[]);
    let job = home.signed_ectd("zip");
    let zip = home.tmp.path().join("package.zip");
    stdout_json(&home.run_as(
        &home.admin,
        &[
            "download",
            job["id"].as_str().unwrap(),
            "--artifact",
            "s1_ectd.zip",
            "-o",
            p(&zip),
            "--json",
        ],
        None,
    ));
    let key = home.public_key();
    let out = verify(&[p(&zip), "--public-key", p(&key)]);
    assert!(out.status.success(), "{}", stdout(&out));
    let original = fs::read(&zip).unwrap();
    // Every entry still verifies in each of these, and no hash of the manifest covers the added bytes.
    let mut appended = original.clone();
    appended.extend_from_slice(b"smuggled");
    let mut prepended = b"MZ-smuggled".to_vec();
    prepended.extend_from_slice(&original);
    // An archive comment: the end record's comment length, then the comment.
    let mut commented = original.clone();
    let n = commented.len();
    commented[n - 2..].copy_from_slice(&8u16.to_le_bytes());
    commented.extend_from_slice(b"smuggled");
    for (what, bytes, message) in [
        ("appended", appended, "bytes after its zip archive"),
        ("prepended", prepended, "bytes before its zip archive"),
        ("comment", commented, "has a comment"),
    ] {
        let path = home.tmp.path().join(format!("{what}.zip"));
        fs::write(&path, bytes).unwrap();
        for args in [vec![p(&path)], vec![p(&path), "--public-key", p(&key)]] {
            let e = error_json(&verify(&args), "EXP002");
            assert_eq!(reason(&e), ("EXP002", "unsafe_package"), "{what}: {e}");
            assert!(
                e["message"].as_str().unwrap().contains(message),
                "{what}: {e}"
            );
            assert!(
                e["hint"]
                    .as_str()
                    .unwrap()
                    .contains("download the job again"),
                "{e}"
            );
        }
    }
}
