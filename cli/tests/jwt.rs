//! `trialport init` with JWT settings, then engine commands with `--credential "Bearer <jwt>"`: tokens minted
//! here by the `jsonwebtoken` crate, an implementation independent of trialport's verifier.

#![allow(clippy::unwrap_used)]

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

const SECRET: &[u8] = b"cli-jwt-test-secret-with-more-than-32-bytes";

// A test-only P-256 key pair, generated with `openssl genpkey` for this suite.
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDTcffZJT5UOXPWLJ
CFOxB9W/qTqpSp3RokujlygsSwKhRANCAARQF+ODGtgJrJkl0pblCcgf+f2HkwjF
ZVdTqlaKM/XzWMcXOqwPCCeS1YJYG2O1NEuaa2z5FUZ3EFHkujkbLlz6
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUBfjgxrYCayZJdKW5QnIH/n9h5MI
xWVXU6pWijP181jHFzqsDwgnktWCWBtjtTRLmmts+RVGdxBR5Lo5Gy5c+g==
-----END PUBLIC KEY-----
";

const DM_CSV: &str = "USUBJID,AGE,SEX\nS1-001,34,F\nS1-002,51,M\n";

mod common;
use common::{error_object, home_args, run, stdout_json, write_source};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(roles: &[&str], studies: &[&str]) -> Value {
    let now = unix_now();
    json!({
        "sub": "ada@example.org", "name": "Ada Example", "org": "acme", "roles": roles, "studies": studies,
        "iss": "https://idp.example", "aud": "trialport", "iat": now, "exp": now + 3600,
    })
}

fn hs256(secret: &[u8], c: &Value) -> String {
    let t = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        c,
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    format!("Bearer {t}")
}

struct Setup {
    tmp: tempfile::TempDir,
    home: PathBuf,
    source: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(tmp.path(), "S1", &[("DM.csv", DM_CSV)]);
        let home = tmp.path().join("home");
        Setup { tmp, home, source }
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::write(&p, content).unwrap();
        p
    }

    /// A secret file as a deployment must keep it: readable and writable by its owner only.
    fn secret_file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.file(name, content);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }

    fn init(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "--home",
            self.home.to_str().unwrap(),
            "init",
            "--org",
            "acme",
            "--source",
            self.source.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    fn run_as(&self, cred: &str, args: &[&str]) -> Output {
        run(&home_args(&self.home, cred, args))
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const EXPORT: [&str; 10] = [
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

#[test]
fn init_with_a_secret_file_accepts_bearer_tokens_and_denies_bad_ones() {
    let s = Setup::new();
    // `echo SECRET > file` style: the trailing line break is not part of the secret.
    let secret_file = s.secret_file("jwt.secret", &[SECRET, b"\n"].concat());
    let v = stdout_json(&s.init(&[
        "--jwt-hs256-secret-file",
        p(&secret_file),
        "--jwt-issuer",
        "https://idp.example",
        "--jwt-audience",
        "trialport",
    ]));
    assert_eq!(v["jwt_algorithms"], json!(["HS256"]));
    let admin = format!("ApiKey {}", v["api_key"].as_str().unwrap());
    let config = fs::read_to_string(s.home.join("config.json")).unwrap();
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["jwt"]["keys"][0]["alg"], "HS256");
    assert_eq!(config["jwt"]["audiences"], json!(["trialport"]));
    assert!(Path::new(config["jwt"]["keys"][0]["path"].as_str().unwrap()).is_absolute());
    assert!(
        !config.to_string().contains("cli-jwt-test-secret"),
        "the secret was copied"
    );

    let token = hs256(SECRET, &claims(&["statistician"], &["S1"]));
    let job = stdout_json(&s.run_as(&token, &EXPORT));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["requested_by"], "ada@example.org");
    let page = stdout_json(&s.run_as(&token, &["jobs", "list", "--json"]));
    assert_eq!(page["total"], 1);

    // Denied: another secret, an expired token, another audience, another study.
    let mut expired = claims(&["statistician"], &["S1"]);
    expired["exp"] = json!(unix_now() - 3600);
    let mut elsewhere = claims(&["statistician"], &["S1"]);
    elsewhere["aud"] = json!("another-service");
    for (cred, reason) in [
        (
            hs256(
                b"another-secret-another-secret-another",
                &claims(&["admin"], &["*"]),
            ),
            "invalid_signature",
        ),
        (hs256(SECRET, &expired), "token_expired"),
        (hs256(SECRET, &elsewhere), "invalid_audience"),
        ("Bearer not.a.token".to_string(), "invalid_base64"),
    ] {
        let e = error_object(&s.run_as(&cred, &EXPORT));
        assert_eq!(
            (e["code"].as_str(), e["details"]["reason"].as_str()),
            (Some("EXP003"), Some(reason))
        );
    }
    let other_study = hs256(SECRET, &claims(&["statistician"], &["S2"]));
    let e = error_object(&s.run_as(&other_study, &EXPORT));
    assert_eq!(e["details"]["reason"], "permission_denied");

    // The refusals are in the audit trail with their reasons, and no token is.
    let out = s.run_as(&admin, &["audit", "export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for reason in ["invalid_signature", "token_expired", "invalid_audience"] {
        assert!(text.contains(reason), "{reason} not audited: {text}");
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "a token reached the audit trail");
}

#[test]
fn init_with_a_public_key_file_pins_its_algorithm() {
    let s = Setup::new();
    let pem = s.file("idp.pem", EC_PUBLIC.as_bytes());
    let v = stdout_json(&s.init(&["--jwt-public-key-file", p(&pem), "--jwt-alg", "ES256"]));
    assert_eq!(v["jwt_algorithms"], json!(["ES256"]));
    let mut c = claims(&["data_manager"], &["*"]);
    c.as_object_mut().unwrap().remove("aud");
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let es = jsonwebtoken::encode(&Header::new(jsonwebtoken::Algorithm::ES256), &c, &key).unwrap();
    let job = stdout_json(&s.run_as(&format!("Bearer {es}"), &EXPORT));
    assert_eq!(job["state"], "succeeded", "{job}");
    // HS256 signed with the public key's PEM text as the secret: refused.
    let confused = hs256(EC_PUBLIC.as_bytes(), &c);
    let e = error_object(&s.run_as(&confused, &EXPORT));
    assert_eq!(e["details"]["reason"], "alg_not_allowed");
}

#[test]
fn init_refuses_unusable_jwt_settings_before_creating_anything() {
    let s = Setup::new();
    let short = s.file("short.secret", &SECRET[..31]);
    let pem = s.file("idp.pem", EC_PUBLIC.as_bytes());
    let private = s.file("private.pem", EC_PRIVATE.as_bytes());
    let missing = s.tmp.path().join("missing.pem");
    for (args, reason) in [
        (
            vec!["--jwt-hs256-secret-file", p(&short)],
            "weak_hmac_secret",
        ),
        (vec!["--jwt-hs256-secret-file", p(&pem)], "key_alg_mismatch"),
        (
            vec!["--jwt-public-key-file", p(&pem), "--jwt-alg", "HS256"],
            "unsupported_alg",
        ),
        (
            vec!["--jwt-public-key-file", p(&pem), "--jwt-alg", "none"],
            "unsupported_alg",
        ),
        (
            vec!["--jwt-public-key-file", p(&pem), "--jwt-alg", "RS256"],
            "key_alg_mismatch",
        ),
        (vec!["--jwt-public-key-file", p(&pem)], "missing_alg"),
        (
            vec!["--jwt-public-key-file", p(&private), "--jwt-alg", "ES256"],
            "private_key_in_config",
        ),
        (
            vec!["--jwt-public-key-file", p(&missing), "--jwt-alg", "ES256"],
            "invalid_key_file",
        ),
        (
            vec!["--jwt-issuer", "https://idp.example"],
            "missing_jwt_keys",
        ),
    ] {
        let e = error_object(&s.init(&args));
        assert_eq!(
            (e["code"].as_str(), e["details"]["reason"].as_str()),
            (Some("EXP002"), Some(reason)),
            "{args:?}"
        );
        assert!(
            !s.home.join("config.json").exists(),
            "{args:?} created a home"
        );
        assert!(!e.to_string().contains("cli-jwt-test-secret"), "{e}");
    }
    // --jwt-alg alone is a usage error.
    let out = s.init(&["--jwt-alg", "ES256"]);
    assert_eq!(out.status.code(), Some(2));
}
