//! The engine with JWT credentials: every operation with a bearer token minted by an independent library
//! (`jsonwebtoken`), scopes from the token's claims, token times from the engine clock, and the audit of refused
//! tokens (one denied event with the precise reason, never the token).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use chrono::{DateTime, Utc};
use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::access::Role;
use trialport_core::audit::{Outcome, RecordingHook};
use trialport_core::auth::NewApiKey;
use trialport_core::clock::FixedClock;
use trialport_core::engine::Engine;
use trialport_core::home::Home;
use trialport_core::job::{JobKind, JobState};
use trialport_core::jwt::{Algorithm, JwtConfig, JwtKey, JwtKeyConfig, JwtOptions, JwtVerifier};
use trialport_core::request::{ExportRequest, ListJobsRequest};
use uuid::Uuid;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

/// 2025-01-21T10:00:00Z: the engine clock of these tests.
const T: i64 = 1_737_453_600;

const SECRET: &[u8; 40] = b"engine-jwt-test-secret-of-forty-bytes-xx";

// A test-only P-256 key pair, generated with `openssl genpkey` for this suite.
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwUnQGIA3x8U76MVT
Dar50mxt+KqGcdPzZ/SE5jHaz3ihRANCAATY+KWKXZ7MPpkHRBEdkGKfn6dYjy30
gYxgJ3kTShj290eUP3LqFf7clg02fxm1+E5vlA2w+YYpTMrZEODf2+Y0
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2Pilil2ezD6ZB0QRHZBin5+nWI8t
9IGMYCd5E0oY9vdHlD9y6hX+3JYNNn8ZtfhOb5QNsPmGKUzK2RDg39vmNA==
-----END PUBLIC KEY-----
";

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        DateTime::<Utc>::from_timestamp(T, 0).unwrap(),
    ))
}

fn verifier() -> JwtVerifier {
    JwtVerifier::new(
        vec![
            JwtKey::hmac(SECRET, Algorithm::Hs256, Some("hs")).unwrap(),
            JwtKey::from_pem(EC_PUBLIC.as_bytes(), Algorithm::Es256, Some("ec")).unwrap(),
        ],
        JwtOptions {
            issuers: vec!["https://idp.example".into()],
            audiences: vec!["trialport".into()],
            ..JwtOptions::default()
        },
    )
    .unwrap()
}

fn claims(sub: &str, org: &str, roles: &[&str], studies: &[&str]) -> Value {
    json!({
        "sub": sub, "name": format!("{sub} (printed)"), "org": org, "roles": roles, "studies": studies,
        "iss": "https://idp.example", "aud": ["trialport"], "exp": T + 3600, "iat": T, "auth_time": T - 60,
    })
}

/// `Bearer <jwt>` for `claims`, HS256 (kid `hs`).
fn bearer(c: &Value) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("hs".into());
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&h, c, &EncodingKey::from_secret(SECRET)).unwrap()
    )
}

/// `Bearer <jwt>` for `claims`, ES256 (kid `ec`).
fn bearer_es256(c: &Value) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("ec".into());
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    format!("Bearer {}", jsonwebtoken::encode(&h, c, &key).unwrap())
}

fn engine_with(workers: usize, clock: Arc<FixedClock>, hook: Option<RecordingHook>) -> Engine {
    let mut b = Engine::builder()
        .formats(registry())
        .source(source())
        .workers(workers)
        .clock(clock)
        .jwt(verifier());
    if let Some(h) = hook {
        b = b.audit_hook(Arc::new(h));
    }
    b.build().unwrap()
}

fn read_all(e: &Engine, cred: &str, job: Uuid, artifact: Option<&str>) -> Vec<u8> {
    let mut d = e.download(cred, job, artifact).unwrap();
    let mut buf = Vec::new();
    d.reader.read_to_end(&mut buf).unwrap();
    buf
}

fn request(kind: JobKind, v: Value) -> ExportRequest {
    ExportRequest::from_value(kind, v).unwrap()
}

#[test]
fn every_operation_works_with_a_jwt_credential() {
    let e = engine_with(1, clock(), None);
    let admin = bearer(&claims("ada", "acme", &["admin"], &["*"]));
    let stat = bearer_es256(&claims("sam", "acme", &["statistician"], &["S1"]));

    assert!(!e.formats(&admin).unwrap().is_empty());
    // export_data, wait, get_job, list_jobs, download: the statistician, with an ES256 token.
    let job = e
        .export_data(&stat, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    let done = e.wait(&stat, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(e.get_job(&stat, job.id).unwrap().progress.rows_written, 10);
    let page = e.list_jobs(&stat, ListJobsRequest::default()).unwrap();
    assert_eq!(page.items.len(), 1);
    let text = String::from_utf8(read_all(&e, &stat, job.id, None)).unwrap();
    assert!(text.starts_with("USUBJID|SEX|AGE|WEIGHT\n"), "{text}");
    let manifest: Value =
        serde_json::from_slice(&read_all(&e, &stat, job.id, Some("manifest.json"))).unwrap();
    assert_eq!(manifest["requested_by"]["name"], "sam (printed)");
    assert_eq!(job.requested_by, "sam");

    // Reports, dashboards and bulk packages with the admin's HS256 token.
    let report = e
        .export_report(
            &admin,
            request(
                JobKind::Report,
                json!({"format": "lines", "report": {"study": "S1", "title": "T",
                "sections": [{"type": "text", "body": "Hello"}]}}),
            ),
        )
        .unwrap();
    let dashboard = e
        .export_dashboard(
            &admin,
            request(
                JobKind::Dashboard,
                json!({"format": "lines", "dashboard": {"study": "S1", "title": "D",
                "tiles": [{"label": "Subjects", "dataset": "DM", "measure": "count"}]}}),
            ),
        )
        .unwrap();
    let bulk = e
        .bulk_export(
            &admin,
            request(JobKind::Bulk, json!({"study": "S1", "format": "lines"})),
        )
        .unwrap();
    for id in [report.id, dashboard.id, bulk.id] {
        let done = e.wait(&admin, id, WAIT).unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
        assert!(!read_all(&e, &admin, id, None).is_empty());
    }

    // API keys created by a token holder work; the audit trail reads and verifies with a token.
    let (key, _) = e
        .session(&admin)
        .create_api_key(NewApiKey {
            name: "robot".into(),
            org: Some("acme".into()),
            roles: vec![Role::Integration],
            studies: vec!["S1".into()],
            expires_at: None,
        })
        .unwrap();
    let robot = format!("ApiKey {key}");
    assert_eq!(
        e.list_jobs(&robot, ListJobsRequest::default())
            .unwrap()
            .total,
        4
    );
    let auditor = bearer(&claims("aud", "acme", &["auditor"], &["*"]));
    let n = e.session(&auditor).verify_audit().unwrap();
    assert!(n > 10, "{n}");
    let events = e.session(&auditor).audit_events(1, 1000).unwrap();
    assert!(events.iter().any(|ev| ev.actor.subject == "sam"
        && ev.actor.name == "sam (printed)"
        && ev.action == "export_data"));
}

#[test]
fn cancel_works_with_a_jwt_credential() {
    let e = engine_with(0, clock(), None);
    let stat = bearer(&claims("sam", "acme", &["statistician"], &["S1"]));
    let job = e
        .export_data(&stat, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    assert_eq!(e.cancel(&stat, job.id).unwrap().state, JobState::Cancelled);
}

#[test]
fn token_claims_scope_every_call() {
    let e = engine_with(0, clock(), None);
    let req = |s: &str| ExportRequest::data(s, &["DM"], "lines");
    let s1 = bearer(&claims("sam", "acme", &["statistician"], &["S1"]));
    let err = e.export_data(&s1, req("S2")).unwrap_err();
    assert_eq!(
        (err.reason(), err.details()["scope"].as_str()),
        ("permission_denied", Some("study"))
    );
    let monitor = bearer(&claims("mo", "acme", &["monitor"], &["*"]));
    let err = e.export_data(&monitor, req("S1")).unwrap_err();
    assert_eq!(err.details()["scope"], "role");
    let auditor = bearer(&claims("au", "acme", &["auditor"], &["*"]));
    assert_eq!(
        e.export_data(&auditor, req("S1")).unwrap_err().reason(),
        "permission_denied"
    );
    // A job of one organization is invisible to another's token.
    let job = e.export_data(&s1, req("S1")).unwrap();
    let other = bearer(&claims("eve", "globex", &["admin"], &["*"]));
    let code = e.get_job(&other, job.id).unwrap_err().code().as_str();
    assert!(code == "EXP001" || code == "EXP003", "{code}");
    assert_eq!(
        e.list_jobs(&other, ListJobsRequest::default())
            .unwrap()
            .total,
        0
    );
    // An unknown role fails closed at authentication.
    let odd = bearer(&claims("x", "acme", &["statistician", "root"], &["*"]));
    assert_eq!(
        e.export_data(&odd, req("S1")).unwrap_err().reason(),
        "unknown_role"
    );
}

#[test]
fn token_times_come_from_the_engine_clock() {
    let clock = clock();
    let e = engine_with(0, clock.clone(), None);
    let mut c = claims("sam", "acme", &["statistician"], &["S1"]);
    c["exp"] = json!(T + 100);
    c["nbf"] = json!(T - 10);
    let cred = bearer(&c);
    assert!(e.formats(&cred).is_ok());
    // The leeway is 60 s: valid until exp + 59, refused from exp + 60.
    clock.set(DateTime::from_timestamp(T + 159, 0).unwrap());
    assert!(e.formats(&cred).is_ok());
    clock.set(DateTime::from_timestamp(T + 160, 0).unwrap());
    let err = e.formats(&cred).unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.reason()),
        ("EXP003", "token_expired")
    );
    assert!(err.request_id().is_some());
    clock.set(DateTime::from_timestamp(T - 71, 0).unwrap());
    assert_eq!(
        e.formats(&cred).unwrap_err().reason(),
        "token_not_yet_valid"
    );
}

#[test]
fn a_refused_token_leaves_one_denied_event_with_its_reason_and_never_the_token() {
    let hook = RecordingHook::new();
    let e = engine_with(0, clock(), Some(hook.clone()));
    let good = claims("sam", "acme", &["statistician"], &["S1"]);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let token_of = |b: &str| b.trim_start_matches("Bearer ").to_string();
    let valid = token_of(&bearer(&good));
    let (h, rest) = valid.split_once('.').unwrap();
    let (p, _) = rest.split_once('.').unwrap();
    let none_header = "eyJhbGciOiJub25lIn0"; // {"alg":"none"}
    let cases: Vec<(String, &str)> = vec![
        (bearer(&with("exp", json!(T - 3600))), "token_expired"),
        (
            bearer(&with("exp", json!((T + 3600).to_string()))),
            "invalid_claim_type",
        ),
        (
            bearer(&with("iss", json!("https://evil.example"))),
            "invalid_issuer",
        ),
        (
            bearer(&with("aud", json!("someone-else"))),
            "invalid_audience",
        ),
        (format!("Bearer {none_header}.{p}."), "alg_not_allowed"),
        (format!("Bearer {h}.{p}.AAAA"), "invalid_signature"),
        (format!("Bearer {h}.{p}"), "malformed_token"),
        (
            format!("Bearer {h}.{p}.{}", "A".repeat(9000)),
            "credential_too_large",
        ),
    ];
    let mut before = hook.events().len();
    for (cred, reason) in &cases {
        let err = e
            .export_data(cred, ExportRequest::data("S1", &["DM"], "lines"))
            .unwrap_err();
        assert_eq!((err.code().as_str(), err.reason()), ("EXP003", *reason));
        let events = hook.events();
        assert_eq!(
            events.len(),
            before + 1,
            "{reason}: one event per refused call"
        );
        let ev = &events[before];
        assert_eq!(ev.action, "export_data");
        assert_eq!(ev.outcome, Outcome::Denied);
        assert_eq!(ev.details["reason"], *reason);
        assert_eq!(ev.actor.subject, "anonymous");
        assert_eq!(ev.target, "study:S1");
        before = events.len();
    }
    let audit = serde_json::to_string(&hook.events()).unwrap();
    for (cred, _) in &cases {
        for seg in token_of(cred).split('.').filter(|s| s.len() >= 8) {
            assert!(!audit.contains(seg), "a token reached the audit trail");
        }
    }
    assert!(
        !audit.contains("sam (printed)"),
        "claims of a refused token reached the audit trail"
    );
}

#[test]
fn an_engine_without_jwt_settings_refuses_bearer_tokens() {
    let e = Engine::builder()
        .formats(registry())
        .workers(0)
        .build()
        .unwrap();
    let err = e
        .formats(&bearer(&claims("sam", "acme", &["admin"], &["*"])))
        .unwrap_err();
    assert_eq!(err.reason(), "unsupported_credential");
}

#[test]
fn a_home_keeps_jwt_settings_in_its_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let home_dir = dir.path().join("home");
    let mut home = Home::init(&home_dir, "acme", None).unwrap();
    assert_eq!(home.jwt_verifier().unwrap().map(|_| ()), None);
    // An HMAC secret file is refused unless only its owner may read and write it (mode 0600).
    trialport_core::fsutil::create_secret_file(
        &dir.path().join("hs.secret"),
        SECRET,
        "test secret",
    )
    .unwrap();
    std::fs::write(dir.path().join("short.secret"), &SECRET[..31]).unwrap();
    // Unusable settings are refused and not written.
    let bad = JwtConfig::with_keys(vec![JwtKeyConfig::new(
        dir.path().join("short.secret"),
        Some(Algorithm::Hs256),
    )]);
    assert_eq!(
        home.set_jwt(Some(bad)).unwrap_err().reason(),
        "weak_hmac_secret"
    );
    assert_eq!(Home::open(&home_dir).unwrap().config().jwt, None);
    let mut key = JwtKeyConfig::new(dir.path().join("hs.secret"), Some(Algorithm::Hs256));
    key.kid = Some("hs".into());
    let config = JwtConfig {
        issuers: vec!["https://idp.example".into()],
        audiences: vec!["trialport".into()],
        ..JwtConfig::with_keys(vec![key])
    };
    home.set_jwt(Some(config.clone())).unwrap();
    let text = std::fs::read_to_string(home_dir.join("config.json")).unwrap();
    assert!(
        !text.contains("engine-jwt-test-secret"),
        "the secret was copied into the configuration"
    );
    let reopened = Home::open(&home_dir).unwrap();
    assert_eq!(reopened.config().jwt.as_ref(), Some(&config));
    let e = Engine::builder()
        .formats(registry())
        .workers(0)
        .clock(clock())
        .home(&home_dir)
        .unwrap()
        .jwt(reopened.jwt_verifier().unwrap().unwrap())
        .build()
        .unwrap();
    assert!(e
        .formats(&bearer(&claims("sam", "acme", &["monitor"], &["*"])))
        .is_ok());
}

#[test]
fn jwt_settings_parse_from_json_text_and_bad_text_is_a_validation_error() {
    let dir = tempfile::tempdir().unwrap();
    // An HMAC secret file is refused unless only its owner may read and write it (mode 0600).
    trialport_core::fsutil::create_secret_file(
        &dir.path().join("hs.secret"),
        SECRET,
        "test secret",
    )
    .unwrap();
    let text = r#"{"keys": [{"path": "hs.secret", "alg": "HS256", "kid": "hs"}],
                   "issuers": ["https://idp.example"], "audiences": ["trialport"], "leeway_secs": 30}"#;
    let config = JwtConfig::from_json(text).unwrap();
    let mut key = JwtKeyConfig::new("hs.secret", Some(Algorithm::Hs256));
    key.kid = Some("hs".into());
    assert_eq!(
        config,
        JwtConfig {
            issuers: vec!["https://idp.example".into()],
            audiences: vec!["trialport".into()],
            leeway_secs: Some(30),
            ..JwtConfig::with_keys(vec![key])
        }
    );
    // The parsed settings build a verifier (the key path relative to the base directory) that accepts tokens.
    let verifier = JwtVerifier::from_config(&config, dir.path()).unwrap();
    assert_eq!(verifier.leeway_secs(), 30);
    let token = bearer(&claims("sam", "acme", &["monitor"], &["*"]));
    let p = verifier
        .verify(
            token.trim_start_matches("Bearer "),
            DateTime::from_timestamp(T, 0).unwrap(),
        )
        .unwrap();
    assert_eq!(p.subject, "sam");

    for bad in [
        "",
        "not json",
        "[]",
        r#"{"issuers": []}"#,
        r#"{"keys": [{"path": "hs.secret", "alg": "none"}]}"#,
        r#"{"keys": [{"path": "hs.secret", "alg": "hs256"}]}"#,
        r#"{"keys": [{"path": "hs.secret", "secret": "s3cr3t-value"}]}"#,
        r#"{"keys": "hs.secret"}"#,
        r#"{"keys": [], "leeway_secs": "60"}"#,
        r#"{"keys": [], "extra": "s3cr3t-value"}"#,
    ] {
        let err = JwtConfig::from_json(bad).unwrap_err();
        assert_eq!(
            (err.code().as_str(), err.reason(), err.field()),
            ("EXP002", "invalid_config", Some("jwt")),
            "{bad}"
        );
        assert!(err.details()["line"].as_u64().is_some(), "{bad}");
        let rendered = err.render().to_string();
        assert!(!rendered.contains("s3cr3t"), "{rendered}");
    }
    // Well-formed settings that cannot be used fail when the verifier is built.
    std::fs::write(dir.path().join("short.secret"), &SECRET[..31]).unwrap();
    let weak =
        JwtConfig::from_json(r#"{"keys": [{"path": "short.secret", "alg": "HS256"}]}"#).unwrap();
    let err = JwtVerifier::from_config(&weak, dir.path()).unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.reason(), err.field()),
        ("EXP002", "weak_hmac_secret", Some("jwt"))
    );
    let none = JwtConfig::from_json(r#"{"keys": []}"#).unwrap();
    assert_eq!(
        JwtVerifier::from_config(&none, dir.path())
            .unwrap_err()
            .reason(),
        "missing_jwt_keys"
    );
}
