//! Part 11 e-signatures through the engine: which exports need one, re-authentication, lockout, what the signature
//! binds (copied records and changed bytes fail verification), who can sign, and where the password never goes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use arrow::datatypes::SchemaRef;
use common::{key, registry, source, LinesFormat};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use trialport_core::access::{Principal, Role};
use trialport_core::audit::{AuditEvent, Outcome, RecordingHook};
use trialport_core::engine::Engine;
use trialport_core::format::{
    Capability, Described, Encoder, Format, FormatInfo, FormatOptions, FormatRegistry, Output,
    StudyInfo,
};
use trialport_core::home::{Home, HomeConfig};
use trialport_core::job::{Job, JobKind, JobState};
use trialport_core::manifest::{
    inspect_package, verify_package, verify_package_with, SignatureRequirement, SignatureStatus,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::request::{from_json, ExportRequest, PackageKind};
use trialport_core::signature::{
    Meaning, SignatureRecord, SignatureRequest, SignatureVerifier, SigningSettings,
};
use trialport_core::sink::LocalDirSink;
use trialport_core::store::SqliteStore;
use trialport_core::{Error, Result};

const WAIT: Option<Duration> = Some(Duration::from_secs(30));
const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "incorrect mule staple";

/// Fast hashing for tests; the production default is 600,000 iterations.
fn settings() -> SigningSettings {
    SigningSettings {
        pbkdf2_iterations: 1_000,
        max_failed_attempts: 5,
    }
}

/// The lines format under another id: stands in for `xpt` and `define-xml`, whose real encoders live in the
/// formats crate, so that the engine's eCTD rules run here.
struct Renamed {
    id: &'static str,
    describes: bool,
}

impl Format for Renamed {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: self.id,
            name: "renamed lines (test)",
            extension: if self.describes { "xml" } else { "xpt" },
            media_type: "text/plain",
            capabilities: if self.describes {
                vec![Capability::Describe, Capability::MetadataOnly]
            } else {
                vec![Capability::Data, Capability::Streaming]
            },
            options: vec![],
        }
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        _options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        LinesFormat.encoder(schema, meta, &FormatOptions::new(), out)
    }

    fn describe(
        &self,
        study: &StudyInfo<'_>,
        datasets: &[Described<'_>],
        _options: &FormatOptions,
        out: Output<'_>,
    ) -> Result<()> {
        writeln!(out, "study={}", study.study)?;
        for d in datasets {
            writeln!(out, "dataset={} rows={:?}", d.file, d.rows)?;
        }
        Ok(())
    }
}

fn formats() -> FormatRegistry {
    let mut r = registry();
    r.register(Arc::new(Renamed {
        id: "xpt",
        describes: false,
    }))
    .unwrap();
    r.register(Arc::new(Renamed {
        id: "define-xml",
        describes: true,
    }))
    .unwrap();
    r
}

struct Setup {
    engine: Engine,
    admin: String,
    hook: RecordingHook,
}

fn setup() -> Setup {
    let hook = RecordingHook::new();
    let engine = Engine::builder()
        .formats(formats())
        .source(source())
        .audit_hook(Arc::new(hook.clone()))
        .signing_settings(settings())
        .workers(1)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    Setup {
        engine,
        admin,
        hook,
    }
}

fn sign(meaning: Meaning, password: &str) -> Option<SignatureRequest> {
    Some(SignatureRequest::new(meaning, password))
}

fn data(signature: Option<SignatureRequest>) -> ExportRequest {
    ExportRequest {
        signature,
        ..ExportRequest::data("S1", &["DM", "AE"], "lines")
    }
}

fn bulk(package: PackageKind, signature: Option<SignatureRequest>) -> ExportRequest {
    let format = if package == PackageKind::Ectd {
        "xpt"
    } else {
        "lines"
    };
    ExportRequest {
        signature,
        ..ExportRequest::bulk("S1", &["DM", "AE"], format).package(package)
    }
}

fn finished(s: &Setup, cred: &str, job: &Job) -> Job {
    let done = s.engine.wait(cred, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    done
}

/// Downloads every artifact of a job into `dir` (at its name, which may hold folders).
fn save(s: &Setup, cred: &str, job: &Job, dir: &Path) {
    for a in &job.artifacts {
        let mut dl = s.engine.download(cred, job.id, Some(&a.name)).unwrap();
        let mut bytes = Vec::new();
        dl.reader.read_to_end(&mut bytes).unwrap();
        let path = dir.join(&a.name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn records(manifest: &Value) -> Vec<SignatureRecord> {
    serde_json::from_value(manifest["signatures"].clone()).unwrap()
}

fn reason(e: &Error) -> (&str, &str) {
    (e.code().as_str(), e.reason())
}

fn problem(e: &Error) -> String {
    assert_eq!(reason(e), ("EXP005", "integrity_violation"), "{e}");
    e.details()["problem"].as_str().unwrap_or("").to_string()
}

/// The events of `action`.
fn events(s: &Setup, action: &str) -> Vec<AuditEvent> {
    s.hook
        .events()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

fn no_jobs(s: &Setup) {
    let page = s.engine.list_jobs(&s.admin, Default::default()).unwrap();
    assert_eq!(page.total, 0, "a job was stored");
}

#[test]
fn an_ectd_package_needs_a_signature_and_carries_it() {
    let s = setup();
    let e = s
        .engine
        .bulk_export(&s.admin, bulk(PackageKind::Ectd, None))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    assert_eq!(e.field(), Some("signature"));
    assert_eq!(e.details()["required_for"], "ectd_package");
    no_jobs(&s);
    let denied = events(&s, "bulk_export");
    assert_eq!(denied.last().unwrap().outcome, Outcome::Denied);
    assert_eq!(
        denied.last().unwrap().details["reason"],
        "signature_required"
    );

    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let job = s
        .engine
        .bulk_export(
            &s.admin,
            bulk(PackageKind::Ectd, sign(Meaning::Approval, PASSWORD)),
        )
        .unwrap();
    assert_eq!(job.request["signature"], json!({"meaning": "approval"}));
    let job = finished(&s, &s.admin, &job);
    let dir = tempfile::tempdir().unwrap();
    save(&s, &s.admin, &job, dir.path());
    // The zip's own manifest and the job's manifest (which lists the zip) are both signed.
    let key = s.engine.signing_public_key();
    let zip = dir.path().join("s1_ectd.zip");
    let inner = verify_package_with(&zip, Some(&key)).unwrap();
    assert_eq!(
        inner.files_verified, 3,
        "two SDTM datasets and their define"
    );
    let outer = verify_package_with(dir.path(), Some(&key)).unwrap();
    for report in [&inner, &outer] {
        assert_eq!(report.signatures.len(), 1);
        let sig = &report.signatures[0];
        assert_eq!(sig.meaning, Meaning::Approval);
        assert_eq!(sig.printed_name, "initial admin");
        assert!(sig.key_trusted);
        assert_eq!(sig.signed_at, job.created_at);
    }
}

#[test]
fn identifiable_exports_need_a_signature() {
    let s = setup();
    let identifiable = ExportRequest {
        identifiable: true,
        ..data(None)
    };
    let e = s
        .engine
        .export_data(&s.admin, identifiable.clone())
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    assert_eq!(e.details()["required_for"], "identifiable_data");
    let e = s
        .engine
        .bulk_export(
            &s.admin,
            ExportRequest {
                identifiable: true,
                ..bulk(PackageKind::Zip, None)
            },
        )
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    // A signature without its password is no signature.
    let e = s
        .engine
        .export_data(
            &s.admin,
            ExportRequest {
                signature: from_json(r#"{"meaning": "approval"}"#).unwrap(),
                ..identifiable.clone()
            },
        )
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    assert_eq!(e.field(), Some("signature.password"));
    no_jobs(&s);

    // Exports that are not critical need none, and may still carry one.
    let plain = s.engine.export_data(&s.admin, data(None)).unwrap();
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let signed = s
        .engine
        .export_data(
            &s.admin,
            ExportRequest {
                signature: sign(Meaning::Responsibility, PASSWORD),
                ..identifiable
            },
        )
        .unwrap();
    for (job, n) in [(plain, 0), (signed, 1)] {
        let job = finished(&s, &s.admin, &job);
        let dir = tempfile::tempdir().unwrap();
        save(&s, &s.admin, &job, dir.path());
        assert_eq!(verify_package(dir.path()).unwrap().signatures.len(), n);
    }
    let ok = events(&s, "export_data");
    assert_eq!(
        ok.last().unwrap().details["signature"],
        json!({"meaning": "responsibility", "signer": ok.last().unwrap().actor.subject,
            "required_for": "identifiable_data"})
    );
}

#[test]
fn every_meaning_is_recorded_and_no_other_is_accepted() {
    let s = setup();
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let spec = json!({"study": "S1", "title": "T", "sections": [{"type": "text", "body": "x"}]});
    for meaning in Meaning::ALL {
        let jobs = [
            s.engine
                .export_data(&s.admin, data(sign(meaning, PASSWORD)))
                .unwrap(),
            s.engine
                .export_report(
                    &s.admin,
                    ExportRequest {
                        signature: sign(meaning, PASSWORD),
                        ..ExportRequest::from_json(
                            JobKind::Report,
                            &json!({"report": spec, "format": "lines"}).to_string(),
                        )
                        .unwrap()
                    },
                )
                .unwrap(),
            s.engine
                .export_dashboard(
                    &s.admin,
                    ExportRequest {
                        signature: sign(meaning, PASSWORD),
                        ..ExportRequest::from_json(
                            JobKind::Dashboard,
                            &json!({"dashboard": {"study": "S1", "title": "D"}, "format": "lines"})
                                .to_string(),
                        )
                        .unwrap()
                    },
                )
                .unwrap(),
        ];
        for job in jobs {
            let job = finished(&s, &s.admin, &job);
            let dir = tempfile::tempdir().unwrap();
            save(&s, &s.admin, &job, dir.path());
            let report = verify_package(dir.path()).unwrap();
            assert_eq!(report.signatures[0].meaning, meaning);
            assert_eq!(records(&manifest(dir.path()))[0].meaning, meaning);
        }
    }
    for bad in ["witness", "", "APPROVAL "] {
        let text = json!({"study": "S1", "datasets": ["DM"], "format": "lines",
            "signature": {"meaning": bad, "password": PASSWORD}})
        .to_string();
        let e = ExportRequest::from_json(JobKind::Data, &text).unwrap_err();
        assert_eq!(reason(&e), ("EXP002", "invalid_request"));
    }
}

#[test]
fn a_wrong_password_fails_is_audited_and_counted() {
    let s = setup();
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let e = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Review, WRONG)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    assert_eq!(e.details()["attempts_left"], 4);
    let last = s.hook.events().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome),
        ("export_data", Outcome::Denied)
    );
    assert_eq!(last.details["reason"], "signature_invalid");
    no_jobs(&s);
    let e = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Review, WRONG)))
        .unwrap_err();
    assert_eq!(e.details()["attempts_left"], 3);
    // A success clears the count.
    s.engine
        .export_data(&s.admin, data(sign(Meaning::Review, PASSWORD)))
        .unwrap();
    let e = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Review, WRONG)))
        .unwrap_err();
    assert_eq!(e.details()["attempts_left"], 4);
}

#[test]
fn a_signer_without_a_password_cannot_sign_and_passwords_follow_the_policy() {
    let s = setup();
    let e = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Review, PASSWORD)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signing_not_enrolled"));
    let e = s
        .engine
        .session(&s.admin)
        .set_signing_password("short", None)
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP002", "weak_password"));
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    // Changing needs the current password, checked like a signature.
    let e = s
        .engine
        .session(&s.admin)
        .set_signing_password("another password", None)
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "current_password_required"));
    let e = s
        .engine
        .session(&s.admin)
        .set_signing_password("another password", Some(WRONG))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    s.engine
        .session(&s.admin)
        .set_signing_password("another password", Some(PASSWORD))
        .unwrap();
    let e = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Review, PASSWORD)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    s.engine
        .export_data(&s.admin, data(sign(Meaning::Review, "another password")))
        .unwrap();
    let set = events(&s, "set_signing_password");
    let outcomes: Vec<Outcome> = set.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Failed,
            Outcome::Success,
            Outcome::Denied,
            Outcome::Denied,
            Outcome::Success
        ]
    );
    assert_eq!(
        set[4].details,
        json!({"changed": true, "after_reset": false})
    );
}

/// A home whose configuration hashes fast, with the test formats and source.
fn home_engine(dir: &Path, hook: &RecordingHook) -> Engine {
    let e = Engine::builder()
        .home(dir)
        .unwrap()
        .formats(formats())
        .source(source())
        .audit_hook(Arc::new(hook.clone()))
        .workers(1)
        .build()
        .unwrap();
    // The host's in-memory studies belong to the home's organization.
    e.bind_host_studies().unwrap();
    e
}

#[test]
fn five_failures_lock_signing_across_restarts_and_emit_a_security_event() {
    let dir = tempfile::tempdir().unwrap();
    let config = HomeConfig {
        signing: Some(settings()),
        ..HomeConfig::new("acme")
    };
    let (_, admin) = Home::init_with_admin_key(dir.path(), &config).unwrap();
    let admin = format!("ApiKey {admin}");
    let hook = RecordingHook::new();
    let engine = home_engine(dir.path(), &hook);
    let s = Setup {
        engine,
        admin: admin.clone(),
        hook: hook.clone(),
    };
    let user = key(&s.engine, &admin, &[Role::DataManager], &["S1"]);
    let other = key(&s.engine, &admin, &[Role::DataManager], &["S1"]);
    for cred in [&user, &other] {
        s.engine
            .session(cred)
            .set_signing_password(PASSWORD, None)
            .unwrap();
    }
    for attempt in 1..=5u32 {
        let e = s
            .engine
            .export_data(&user, data(sign(Meaning::Approval, WRONG)))
            .unwrap_err();
        if attempt < 5 {
            assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
            assert!(events(&s, "security.signing_locked").is_empty());
        } else {
            assert_eq!(reason(&e), ("EXP003", "signing_locked"));
        }
    }
    // The security event is written before the call returns, right before the call's own event.
    let all = hook.events();
    let n = all.len();
    assert_eq!(all[n - 2].action, "security.signing_locked");
    assert_eq!(all[n - 2].outcome, Outcome::Denied);
    assert_eq!(all[n - 2].details["failures"], 5);
    assert_eq!(all[n - 2].actor, all[n - 1].actor);
    assert_eq!(all[n - 1].details["reason"], "signing_locked");
    assert_eq!(events(&s, "security.signing_locked").len(), 1);
    // Locked: the right password no longer works, nor can the password be changed; others are not affected.
    let locked = |engine: &Engine| {
        let e = engine
            .export_data(&user, data(sign(Meaning::Approval, PASSWORD)))
            .unwrap_err();
        assert_eq!(reason(&e), ("EXP003", "signing_locked"));
        let e = engine
            .session(&user)
            .set_signing_password("a new password", Some(PASSWORD))
            .unwrap_err();
        assert_eq!(reason(&e), ("EXP003", "signing_locked"));
    };
    locked(&s.engine);
    s.engine
        .export_data(&other, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap();
    // A restart does not reset the lock.
    drop(s);
    let engine = home_engine(dir.path(), &hook);
    locked(&engine);
    // Only an administrator resets it; the signer then sets a new password and signs again.
    let subject = engine
        .session(&admin)
        .audit_events(1, 1000)
        .unwrap()
        .into_iter()
        .find(|e| e.action == "security.signing_locked")
        .unwrap()
        .actor
        .subject;
    let e = engine.session(&other).reset_signing(&subject).unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "permission_denied"));
    engine.session(&admin).reset_signing(&subject).unwrap();
    assert_eq!(
        reason(&engine.session(&admin).reset_signing(&subject).unwrap_err()),
        ("EXP001", "not_found")
    );
    engine
        .session(&user)
        .set_signing_password("a new password", None)
        .unwrap();
    engine
        .export_data(&user, data(sign(Meaning::Approval, "a new password")))
        .unwrap();
}

#[test]
fn a_signature_copied_onto_another_manifest_fails() {
    let s = setup();
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for dir in &dirs {
        let job = s
            .engine
            .export_data(&s.admin, data(sign(Meaning::Approval, PASSWORD)))
            .unwrap();
        let job = finished(&s, &s.admin, &job);
        save(&s, &s.admin, &job, dir.path());
        verify_package(dir.path()).unwrap();
    }
    let (a, b) = (manifest(dirs[0].path()), manifest(dirs[1].path()));
    // Same request, same data, same signer: only the job and its times differ, and that is enough.
    assert_eq!(a["files"], b["files"]);
    let mut forged = b.clone();
    forged["signatures"] = a["signatures"].clone();
    std::fs::write(
        dirs[1].path().join("manifest.json"),
        serde_json::to_vec_pretty(&forged).unwrap(),
    )
    .unwrap();
    let key = s.engine.signing_public_key();
    for trusted in [None, Some(&key)] {
        let e = verify_package_with(dirs[1].path(), trusted).unwrap_err();
        assert_eq!(problem(&e), "manifest_mismatch");
    }
    // Pointing the copied record at this manifest breaks its Ed25519 signature instead.
    let mut record = a["signatures"][0].clone();
    record["manifest_sha256"] = json!(trialport_core::signature::manifest_sha256(&b));
    record["job_id"] = b["job_id"].clone();
    forged["signatures"] = json!([record]);
    std::fs::write(
        dirs[1].path().join("manifest.json"),
        serde_json::to_vec_pretty(&forged).unwrap(),
    )
    .unwrap();
    assert_eq!(
        problem(&verify_package(dirs[1].path()).unwrap_err()),
        "bad_signature"
    );
}

#[test]
fn changing_any_byte_of_a_signed_package_fails_verification() {
    let s = setup();
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let job = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Authorship, PASSWORD)))
        .unwrap();
    let job = finished(&s, &s.admin, &job);
    let dir = tempfile::tempdir().unwrap();
    save(&s, &s.admin, &job, dir.path());
    verify_package(dir.path()).unwrap();
    let mut checked = 0;
    for a in &job.artifacts {
        let path = dir.path().join(&a.name);
        let original = std::fs::read(&path).unwrap();
        for i in 0..original.len() {
            let mut changed = original.clone();
            changed[i] ^= 0x01;
            std::fs::write(&path, &changed).unwrap();
            assert!(
                verify_package(dir.path()).is_err(),
                "byte {i} of {} changed unnoticed",
                a.name
            );
            checked += 1;
        }
        std::fs::write(&path, &original).unwrap();
    }
    assert!(checked > 1000, "{checked}");
    verify_package(dir.path()).unwrap();
    // A changed artifact with its manifest entry updated to match: the signature no longer matches the manifest.
    let dm = dir.path().join("dm.txt");
    let mut bytes = std::fs::read(&dm).unwrap();
    bytes.extend_from_slice(b"S1-999|F|99|99.5\n");
    std::fs::write(&dm, &bytes).unwrap();
    let (n, sha) = trialport_core::hashing::sha256_of(bytes.as_slice()).unwrap();
    let mut m = manifest(dir.path());
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == "dm.txt" {
            f["bytes"] = json!(n);
            f["sha256"] = json!(sha);
        }
    }
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    assert_eq!(
        problem(&verify_package(dir.path()).unwrap_err()),
        "manifest_mismatch"
    );
    // Cutting the signature out is noticed too: the signed request stays in the manifest.
    let mut m = manifest(dir.path());
    m["signatures"] = json!([]);
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    std::fs::write(&dm, &bytes).unwrap();
    assert_eq!(
        problem(&verify_package(dir.path()).unwrap_err()),
        "signature_missing"
    );
}

#[test]
fn no_role_can_sign_as_another_user() {
    let s = setup();
    let bob = key(&s.engine, &s.admin, &[Role::DataManager], &["S1"]);
    s.engine
        .session(&bob)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    // The admin knows Bob's password: it is checked against the admin's own credential, which has none.
    let e = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signing_not_enrolled"));
    // A request cannot name a signer.
    let text = json!({"study": "S1", "datasets": ["DM"], "format": "lines",
        "signature": {"meaning": "approval", "password": PASSWORD, "signer_id": "bob"}})
    .to_string();
    let e = ExportRequest::from_json(JobKind::Data, &text).unwrap_err();
    assert_eq!(reason(&e), ("EXP002", "invalid_request"));
    assert!(e.message().contains("signer_id"), "{e}");
    // Nor can the admin reset Bob's password and set one for him: setting is for the caller only.
    let bob_subject = s
        .engine
        .get_job(
            &bob,
            s.engine
                .export_data(&bob, data(sign(Meaning::Approval, PASSWORD)))
                .unwrap()
                .id,
        )
        .unwrap()
        .requested_by;
    s.engine
        .session(&s.admin)
        .reset_signing(&bob_subject)
        .unwrap();
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let e = s
        .engine
        .export_data(&bob, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap_err();
    // Bob's credential waits for Bob's own new password.
    assert_eq!(reason(&e), ("EXP003", "password_reset_required"));
    // What the admin signs names the admin.
    let job = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap();
    let job = finished(&s, &s.admin, &job);
    let dir = tempfile::tempdir().unwrap();
    save(&s, &s.admin, &job, dir.path());
    let sig = &verify_package(dir.path()).unwrap().signatures[0];
    assert_eq!(sig.signer_id, job.requested_by);
    assert_ne!(sig.signer_id, bob_subject);
}

#[test]
fn the_record_lands_in_the_manifest_and_the_audit_trail() {
    let s = setup();
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let job = s
        .engine
        .bulk_export(
            &s.admin,
            bulk(PackageKind::Zip, sign(Meaning::Review, PASSWORD)),
        )
        .unwrap();
    let job = finished(&s, &s.admin, &job);
    let dir = tempfile::tempdir().unwrap();
    save(&s, &s.admin, &job, dir.path());
    let outer = records(&manifest(dir.path()));
    let zip = zip::ZipArchive::new(std::fs::File::open(dir.path().join("s1_package.zip")).unwrap());
    let mut zip = zip.unwrap();
    let mut text = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let inner = records(&serde_json::from_str(&text).unwrap());
    let signed = events(&s, "job.signed");
    assert_eq!(signed.len(), 1);
    let event = &signed[0];
    assert_eq!(event.target, format!("job:{}", job.id));
    assert_eq!(event.actor.subject, job.requested_by);
    assert_eq!(event.actor.name, "initial admin");
    let audited: Vec<SignatureRecord> =
        serde_json::from_value(event.details["signatures"].clone()).unwrap();
    assert_eq!(audited, [inner[0].clone(), outer[0].clone()]);
    for r in &audited {
        assert_eq!(
            (
                r.signer_id.as_str(),
                r.printed_name.as_str(),
                r.org.as_str()
            ),
            (job.requested_by.as_str(), "initial admin", "acme")
        );
        assert_eq!(
            (r.meaning, r.signed_at, r.job_id),
            (Meaning::Review, job.created_at, job.id)
        );
        assert_eq!(r.key_id, s.engine.signing_public_key().id());
    }
    // The job succeeded before it was signed in the trail, and the chain holds.
    let actions: Vec<String> = s.hook.events().into_iter().map(|e| e.action).collect();
    let succeeded = actions.iter().position(|a| a == "job.succeeded").unwrap();
    assert_eq!(actions[succeeded + 1], "job.signed");
    s.engine.session(&s.admin).verify_audit().unwrap();
}

/// Every file below `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_password_appears_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trialport.db");
    let hook = RecordingHook::new();
    // Unencrypted artifacts, so that a search of the bytes means something.
    let engine = Engine::builder()
        .formats(formats())
        .source(source())
        .store(Arc::new(SqliteStore::open(&db).unwrap()))
        .sink(Arc::new(
            LocalDirSink::new(dir.path().join("artifacts")).unwrap(),
        ))
        .signing_settings(settings())
        .audit_hook(Arc::new(hook.clone()))
        .workers(1)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    let s = Setup {
        engine,
        admin,
        hook,
    };
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let mut jobs = vec![];
    let request = data(sign(Meaning::Approval, PASSWORD));
    assert!(!format!("{request:?}").contains(PASSWORD));
    jobs.push(s.engine.export_data(&s.admin, request).unwrap());
    jobs.push(
        s.engine
            .bulk_export(
                &s.admin,
                bulk(PackageKind::Ectd, sign(Meaning::Approval, PASSWORD)),
            )
            .unwrap(),
    );
    let _ = s
        .engine
        .export_data(&s.admin, data(sign(Meaning::Approval, WRONG)))
        .unwrap_err();
    let mut seen = Vec::new();
    for job in &jobs {
        let job = finished(&s, &s.admin, job);
        seen.extend(serde_json::to_vec(&job).unwrap());
        assert_eq!(job.request["signature"], json!({"meaning": "approval"}));
    }
    for e in s.engine.session(&s.admin).audit_events(1, 1000).unwrap() {
        seen.extend(serde_json::to_vec(&e).unwrap());
    }
    for e in s.hook.events() {
        seen.extend(serde_json::to_vec(&e).unwrap());
    }
    drop(s);
    let mut stored = 0;
    for path in files(dir.path()) {
        seen.extend(std::fs::read(&path).unwrap());
        stored += 1;
    }
    assert!(stored >= 5, "{stored} files");
    assert!(contains(&seen, "\"meaning\":\"approval\""));
    assert!(contains(&seen, "pbkdf2-sha256"), "the hash is stored");
    for secret in [PASSWORD, WRONG] {
        assert!(!contains(&seen, secret), "a password was stored");
    }
}

/// A host's verifier: the second component is checked elsewhere (here, one fixed phrase).
struct Phrase;

impl SignatureVerifier for Phrase {
    fn verify(&self, _signer: &Principal, secret: &str) -> Result<bool> {
        Ok(secret == "open sesame")
    }

    fn enrolled(&self, _signer: &Principal) -> Result<bool> {
        Ok(true)
    }
}

#[test]
fn a_host_verifier_decides_and_failures_still_lock() {
    let engine = Engine::builder()
        .formats(formats())
        .source(source())
        .signing_settings(SigningSettings {
            max_failed_attempts: 2,
            ..settings()
        })
        .signature_verifier(Arc::new(Phrase))
        .workers(0)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    engine
        .export_data(&admin, data(sign(Meaning::Review, "open sesame")))
        .unwrap();
    let e = engine
        .session(&admin)
        .set_signing_password(PASSWORD, Some("open sesame"))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP002", "unsupported"));
    let e = engine
        .export_data(&admin, data(sign(Meaning::Review, WRONG)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    let e = engine
        .export_data(&admin, data(sign(Meaning::Review, WRONG)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signing_locked"));
    let e = engine
        .export_data(&admin, data(sign(Meaning::Review, "open sesame")))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signing_locked"));
}

#[test]
fn the_engine_key_is_the_homes_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    Home::init(dir.path(), "acme", None).unwrap();
    let text = std::fs::read_to_string(dir.path().join("signing.key")).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    let first = Engine::builder()
        .home(dir.path())
        .unwrap()
        .workers(0)
        .build()
        .unwrap()
        .signing_public_key();
    let again = Engine::builder()
        .home(dir.path())
        .unwrap()
        .workers(0)
        .build()
        .unwrap()
        .signing_public_key();
    assert_eq!(first, again);
    let home = Home::open(dir.path()).unwrap();
    assert_eq!(*home.signing_key().unwrap().public_key(), first);
    // Homes differ.
    let other = tempfile::tempdir().unwrap();
    Home::init(other.path(), "acme", None).unwrap();
    assert_ne!(
        *Home::open(other.path())
            .unwrap()
            .signing_key()
            .unwrap()
            .public_key(),
        first
    );
}

// ---- credential controls (21 CFR 11.100, 11.300; attack review L2 and the password policy) -----------------

/// [`setup`] that also accepts the tokens of `common::mint` (org `acme`).
fn setup_with_jwt() -> Setup {
    let hook = RecordingHook::new();
    let engine = Engine::builder()
        .formats(formats())
        .source(source())
        .audit_hook(Arc::new(hook.clone()))
        .signing_settings(settings())
        .jwt(common::jwt_verifier())
        .workers(1)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    Setup {
        engine,
        admin,
        hook,
    }
}

/// A bearer token of org `acme` (EdDSA, from `common::mint`).
fn token(sub: &str, roles: &[Role], studies: &[&str]) -> String {
    common::mint(
        jsonwebtoken::Algorithm::EdDSA,
        sub,
        "Token User",
        roles,
        studies,
    )
}

/// Locks `cred`'s signing with five wrong passwords.
fn lock(s: &Setup, cred: &str) {
    for _ in 0..5 {
        s.engine
            .export_data(cred, data(sign(Meaning::Approval, WRONG)))
            .unwrap_err();
    }
    let e = s
        .engine
        .export_data(cred, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signing_locked"));
}

#[test]
fn nobody_resets_their_own_signing_credential_nor_through_a_key_they_made() {
    let s = setup_with_jwt();
    let me = common::subject_of(&s.admin);
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    lock(&s, &s.admin);
    // The review's case: an admin resets their own lockout, then sets a password, and an API key alone signs.
    let e = s.engine.session(&s.admin).reset_signing(&me).unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "self_reset"));
    assert_eq!(e.field(), Some("subject"));
    assert_eq!(
        events(&s, "reset_signing").last().unwrap().outcome,
        Outcome::Denied
    );
    // Nor through a key the locked admin mints, or a key that key mints.
    let helper = key(&s.engine, &s.admin, &[Role::Admin], &["*"]);
    let grandchild = key(&s.engine, &helper, &[Role::Admin], &["*"]);
    for cred in [&helper, &grandchild] {
        let e = s.engine.session(cred).reset_signing(&me).unwrap_err();
        assert_eq!(reason(&e), ("EXP003", "self_reset"));
    }
    let e = s
        .engine
        .session(&s.admin)
        .set_signing_password("a password of my choosing", None)
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signing_locked"));
    // Another person (an organization-wide admin of the identity provider) may.
    let other_admin = token("idp-second-admin", &[Role::Admin], &["*"]);
    s.engine.session(&other_admin).reset_signing(&me).unwrap();
    // And the token admin cannot reset their own either.
    s.engine
        .session(&other_admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let e = s
        .engine
        .session(&other_admin)
        .reset_signing("idp-second-admin")
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "self_reset"));
}

#[test]
fn a_reset_forces_a_new_password_before_the_next_signature() {
    let s = setup();
    let user = key(&s.engine, &s.admin, &[Role::DataManager], &["S1"]);
    let subject = common::subject_of(&user);
    s.engine
        .session(&user)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    s.engine
        .export_data(&user, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap();
    // Not locked: an administrator may still reset (a lost or compromised password, 11.300(c)).
    s.engine.session(&s.admin).reset_signing(&subject).unwrap();
    let ev = events(&s, "reset_signing").pop().unwrap();
    assert_eq!(
        (ev.outcome, ev.details["password_reset_required"].clone()),
        (Outcome::Success, json!(true))
    );
    // The old password no longer signs, with a reason that says what to do; no attempt is counted.
    for _ in 0..6 {
        let e = s
            .engine
            .export_data(&user, data(sign(Meaning::Approval, PASSWORD)))
            .unwrap_err();
        assert_eq!(reason(&e), ("EXP003", "password_reset_required"));
        assert!(e.message().contains("set a new password"), "{e}");
    }
    assert!(events(&s, "security.signing_locked").is_empty());
    // Only its owner lifts the mark, without the old password.
    s.engine
        .session(&user)
        .set_signing_password("the signer's own new one", None)
        .unwrap();
    let set = events(&s, "set_signing_password").pop().unwrap();
    assert_eq!(set.details["after_reset"], true);
    let e = s
        .engine
        .export_data(&user, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    s.engine
        .export_data(
            &user,
            data(sign(Meaning::Approval, "the signer's own new one")),
        )
        .unwrap();
    // Nothing left to reset now but the new password: a second reset is a new reset.
    s.engine.session(&s.admin).reset_signing(&subject).unwrap();
    assert_eq!(
        reason(
            &s.engine
                .session(&s.admin)
                .reset_signing(&subject)
                .unwrap_err()
        ),
        ("EXP001", "not_found")
    );
}

#[test]
fn resets_follow_the_scope_of_key_revocation() {
    let s = setup_with_jwt();
    let org_admin = common::subject_of(&s.admin);
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let s1_admin = key(&s.engine, &s.admin, &[Role::Admin], &["S1"]);
    // The review's case: a study-S1 admin resets the organization-wide admin's credential. It cannot revoke
    // that admin's key, and now cannot reset it either.
    let admin_key_id = org_admin.strip_prefix("apikey:").unwrap();
    let revoke = s
        .engine
        .session(&s1_admin)
        .revoke_api_key(admin_key_id)
        .unwrap_err();
    let reset = s
        .engine
        .session(&s1_admin)
        .reset_signing(&org_admin)
        .unwrap_err();
    for e in [&revoke, &reset] {
        assert_eq!(reason(e), ("EXP003", "permission_denied"));
        assert_eq!(e.details()["scope"], "study");
    }
    s.engine
        .export_data(&s.admin, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap();
    // Within its studies it may; a signer holding a study it lacks, it may not.
    let s1_user = key(&s.engine, &s.admin, &[Role::Monitor], &["S1"]);
    let s1_s2_user = key(&s.engine, &s.admin, &[Role::Monitor], &["S1", "S2"]);
    for cred in [&s1_user, &s1_s2_user] {
        s.engine
            .session(cred)
            .set_signing_password(PASSWORD, None)
            .unwrap();
    }
    s.engine
        .session(&s1_admin)
        .reset_signing(&common::subject_of(&s1_user))
        .unwrap();
    let e = s
        .engine
        .session(&s1_admin)
        .reset_signing(&common::subject_of(&s1_s2_user))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "permission_denied"));
    // A token's signer has no key record: the studies it held when it enrolled decide.
    let s2_token = token("idp-s2-user", &[Role::DataManager], &["S2"]);
    s.engine
        .session(&s2_token)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let e = s
        .engine
        .session(&s1_admin)
        .reset_signing("idp-s2-user")
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "permission_denied"));
    s.engine
        .session(&s.admin)
        .reset_signing("idp-s2-user")
        .unwrap();
    // A signer of another organization is as unknown as a signer that does not exist.
    let other_org = s.engine.create_initial_admin_key("globex").unwrap();
    let other_org = format!("ApiKey {other_org}");
    s.engine
        .session(&other_org)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let hidden = s
        .engine
        .session(&s.admin)
        .reset_signing(&common::subject_of(&other_org))
        .unwrap_err();
    let unknown = s
        .engine
        .session(&s.admin)
        .reset_signing("apikey:0123456789ab")
        .unwrap_err();
    assert_eq!(reason(&hidden), ("EXP001", "not_found"));
    assert_eq!(
        (hidden.message(), hidden.details()),
        (unknown.message(), unknown.details())
    );
}

#[test]
fn signing_passwords_follow_the_policy() {
    let s = setup();
    let grace = {
        let (text, _) = s
            .engine
            .session(&s.admin)
            .create_api_key(trialport_core::auth::NewApiKey {
                name: "Grace Hopper".into(),
                org: Some("acme".into()),
                roles: vec![Role::DataManager],
                studies: vec!["S1".into()],
                expires_at: None,
            })
            .unwrap();
        format!("ApiKey {text}")
    };
    let key_id = common::subject_of(&grace)
        .strip_prefix("apikey:")
        .unwrap()
        .to_string();
    for (password, rule) in [
        // The review's case: `password` was accepted (8 characters were the only rule).
        ("password", "too_short"),
        ("elevenchars", "too_short"),
        ("password1234", "common_password"),
        ("Administrator", "common_password"),
        ("grace hopper signs 2025", "contains_identity"),
        (&format!("key {key_id} pw"), "contains_identity"),
    ] {
        let e = s
            .engine
            .session(&grace)
            .set_signing_password(password, None)
            .unwrap_err();
        assert_eq!(reason(&e), ("EXP002", "weak_password"), "{password}");
        assert_eq!(e.details()["rule"], rule, "{password}");
        // ("password" itself is a word of the messages.)
        if password != "password" {
            assert!(!e.render().to_string().contains(password), "{password}");
        }
    }
    s.engine
        .session(&grace)
        .set_signing_password(PASSWORD, None)
        .unwrap();
}

// ---- strict verification (attack review H4 and M6) ----------------------------------------------------------

/// A signed eCTD package of the test formats, saved (zip and job manifest) into a new directory.
fn signed_ectd(s: &Setup) -> tempfile::TempDir {
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let job = s
        .engine
        .bulk_export(
            &s.admin,
            bulk(PackageKind::Ectd, sign(Meaning::Approval, PASSWORD)),
        )
        .unwrap();
    let job = finished(s, &s.admin, &job);
    let dir = tempfile::tempdir().unwrap();
    save(s, &s.admin, &job, dir.path());
    dir
}

/// Rewrites a zip package with `change` applied to its manifest and entries (name, bytes), re-hashing the
/// changed entries into the manifest as a forger would.
fn forge_zip(from: &Path, to: &Path, change: impl Fn(&mut Value, &str, &mut Vec<u8>)) {
    use std::io::Write;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut m: Value = {
        let mut text = Vec::new();
        zip.by_name("manifest.json")
            .unwrap()
            .read_to_end(&mut text)
            .unwrap();
        serde_json::from_slice(&text).unwrap()
    };
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        if name == "manifest.json" {
            continue;
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        change(&mut m, &name, &mut bytes);
        let (n, sha) = trialport_core::hashing::sha256_of(bytes.as_slice()).unwrap();
        for file in m["files"].as_array_mut().unwrap() {
            if file["path"] == name.as_str() {
                file["bytes"] = json!(n);
                file["sha256"] = json!(sha);
            }
        }
        entries.push((name, bytes));
    }
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in entries {
        out.start_file(name, opts).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.start_file("manifest.json", opts).unwrap();
    out.write_all(&serde_json::to_vec(&m).unwrap()).unwrap();
    out.finish().unwrap();
}

#[test]
fn a_stripped_ectd_package_is_unsigned_and_refused() {
    let s = setup();
    let dir = signed_ectd(&s);
    let zip = dir.path().join("s1_ectd.zip");
    let key = s.engine.signing_public_key();
    assert_eq!(
        verify_package(&zip).unwrap().signature_status,
        SignatureStatus::Untrusted
    );
    assert_eq!(
        verify_package_with(&zip, Some(&key))
            .unwrap()
            .signature_status,
        SignatureStatus::Signed
    );
    // The review's forgery: signatures and request.signature removed, a data file changed, the hashes updated.
    let forged = dir.path().join("forged.zip");
    forge_zip(&zip, &forged, |m, name, bytes| {
        m["signatures"] = json!([]);
        m["request"].as_object_mut().unwrap().remove("signature");
        if name.ends_with(".xpt") {
            bytes.extend_from_slice(b"S1-999|F|99|99.5\n");
        }
    });
    for trusted in [Some(&key), None] {
        let e = verify_package_with(&forged, trusted).unwrap_err();
        assert_eq!(reason(&e), ("EXP003", "signature_required"));
        assert_eq!(e.details()["signature_status"], "UNSIGNED");
        let want = if trusted.is_some() {
            "public_key"
        } else {
            "ectd_package"
        };
        assert_eq!(e.details()["required_for"], want);
        // The report shows it before the refusal.
        let report = inspect_package(&forged, trusted).unwrap();
        assert_eq!(report.signature_status, SignatureStatus::Unsigned);
        assert!(report.signatures.is_empty());
    }
    // Renaming the package kind does not make a submission unsigned: its m5/ tree still says what it is.
    let renamed = dir.path().join("renamed.zip");
    forge_zip(&zip, &renamed, |m, _, _| {
        m["signatures"] = json!([]);
        m["request"].as_object_mut().unwrap().remove("signature");
        m["request"]["package"] = json!("zip");
    });
    assert_eq!(
        reason(&verify_package(&renamed).unwrap_err()),
        ("EXP003", "signature_required")
    );
}

#[test]
fn a_trusted_key_requires_a_signature_of_any_package() {
    let s = setup();
    let job = s
        .engine
        .bulk_export(&s.admin, bulk(PackageKind::Zip, None))
        .unwrap();
    let job = finished(&s, &s.admin, &job);
    let dir = tempfile::tempdir().unwrap();
    save(&s, &s.admin, &job, dir.path());
    let zip = dir.path().join(
        &job.artifacts
            .iter()
            .find(|a| a.name.ends_with(".zip"))
            .unwrap()
            .name,
    );
    // Unsigned and not a submission: verified, and said to be unsigned.
    let report = verify_package(&zip).unwrap();
    assert_eq!(
        (report.signature_status, report.signature_required),
        (SignatureStatus::Unsigned, None)
    );
    let key = s.engine.signing_public_key();
    let e = verify_package_with(&zip, Some(&key)).unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_required"));
    assert_eq!(e.details()["required_for"], "public_key");
    assert_eq!(
        inspect_package(&zip, Some(&key))
            .unwrap()
            .signature_required,
        Some(SignatureRequirement::PublicKey)
    );
}

/// A signed eCTD package in a directory (the job's artifacts, as `download --all` writes them).
fn ectd_directory(s: &Setup) -> (tempfile::TempDir, PathBuf) {
    s.engine
        .session(&s.admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let request = bulk(PackageKind::Ectd, sign(Meaning::Approval, PASSWORD))
        .container(trialport_core::request::PackageContainer::Directory);
    let job = s.engine.bulk_export(&s.admin, request).unwrap();
    let job = finished(s, &s.admin, &job);
    let dir = tempfile::tempdir().unwrap();
    save(s, &s.admin, &job, dir.path());
    let xpt = job
        .artifacts
        .iter()
        .find(|a| a.name.ends_with(".xpt"))
        .unwrap()
        .name
        .clone();
    (dir, PathBuf::from(xpt))
}

#[test]
fn a_package_directory_holds_only_what_its_manifest_lists() {
    let s = setup();
    let (dir, xpt) = ectd_directory(&s);
    let root = dir.path();
    let key = s.engine.signing_public_key();
    assert_eq!(
        verify_package_with(root, Some(&key))
            .unwrap()
            .signature_status,
        SignatureStatus::Signed
    );
    let sdtm = root.join(xpt.parent().unwrap());
    let unlisted = |e: Error, path: &str| {
        assert_eq!(reason(&e), ("EXP005", "integrity_violation"), "{e}");
        assert_eq!(e.details()["path"], path);
    };
    // The review's case: an injected zz.xpt (and define-2.xml) beside the signed files.
    let rel = |name: &str| format!("{}/{name}", xpt.parent().unwrap().display());
    for name in ["zz.xpt", "define-2.xml"] {
        std::fs::copy(root.join(&xpt), sdtm.join(name)).unwrap();
        unlisted(
            verify_package_with(root, Some(&key)).unwrap_err(),
            &rel(name),
        );
        std::fs::remove_file(sdtm.join(name)).unwrap();
    }
    // A hidden file, a file at the top, an empty folder, a folder of unlisted files.
    std::fs::write(sdtm.join(".hidden"), b"x").unwrap();
    unlisted(verify_package(root).unwrap_err(), &rel(".hidden"));
    std::fs::remove_file(sdtm.join(".hidden")).unwrap();
    std::fs::write(root.join("notes.txt"), b"x").unwrap();
    unlisted(verify_package(root).unwrap_err(), "notes.txt");
    std::fs::remove_file(root.join("notes.txt")).unwrap();
    std::fs::create_dir(sdtm.join("extra")).unwrap();
    unlisted(verify_package(root).unwrap_err(), &rel("extra"));
    std::fs::remove_dir(sdtm.join("extra")).unwrap();
    verify_package_with(root, Some(&key)).unwrap();
}

#[cfg(unix)]
#[test]
fn a_package_directory_with_a_symbolic_link_or_special_file_is_refused() {
    let s = setup();
    let (dir, xpt) = ectd_directory(&s);
    let root = dir.path();
    let outside = tempfile::tempdir().unwrap();
    let unsafe_at = |path: &str| {
        let e = verify_package(root).unwrap_err();
        assert_eq!(reason(&e), ("EXP002", "unsafe_package"), "{e}");
        assert_eq!(e.details()["path"], path);
    };
    // A listed file replaced by a link to an identical copy elsewhere: the bytes match, the link is refused.
    let copy = outside.path().join("copy.xpt");
    std::fs::rename(root.join(&xpt), &copy).unwrap();
    std::os::unix::fs::symlink(&copy, root.join(&xpt)).unwrap();
    unsafe_at(xpt.to_str().unwrap());
    std::fs::remove_file(root.join(&xpt)).unwrap();
    std::fs::rename(&copy, root.join(&xpt)).unwrap();
    verify_package(root).unwrap();
    // A linked folder on the way to the listed files.
    let top = xpt.iter().next().unwrap().to_str().unwrap().to_string();
    let moved = outside.path().join("tree");
    std::fs::rename(root.join(&top), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, root.join(&top)).unwrap();
    unsafe_at(&top);
    std::fs::remove_file(root.join(&top)).unwrap();
    std::fs::rename(&moved, root.join(&top)).unwrap();
    // A linked manifest, and a dangling link nobody lists.
    std::os::unix::fs::symlink("/nonexistent", root.join("zz.xpt")).unwrap();
    unsafe_at("zz.xpt");
    std::fs::remove_file(root.join("zz.xpt")).unwrap();
    let manifest = outside.path().join("manifest.json");
    std::fs::rename(root.join("manifest.json"), &manifest).unwrap();
    std::os::unix::fs::symlink(&manifest, root.join("manifest.json")).unwrap();
    unsafe_at("manifest.json");
    std::fs::remove_file(root.join("manifest.json")).unwrap();
    std::fs::rename(&manifest, root.join("manifest.json")).unwrap();
    verify_package(root).unwrap();
    // A FIFO (reading it would block for ever), where `mkfifo` exists.
    let fifo = root.join("zz.fifo");
    if std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        unsafe_at("zz.fifo");
        std::fs::remove_file(&fifo).unwrap();
    }
    verify_package(root).unwrap();
}

/// PBKDF2-HMAC-SHA256 of [`PASSWORD`] with salt 00112233445566778899aabbccddeeff and 1,000 iterations, as Python's
/// `hashlib.pbkdf2_hmac` computes it (not trialport).
const PYTHON_HASH: &str = "7b45bab25588ef932d09a1d56ad6911d7d7c1759dedf18cb663cd6c3034bd67b";

#[test]
fn a_home_of_the_previous_version_keeps_its_signers_passwords_attempts_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let config = HomeConfig {
        signing: Some(settings()),
        ..HomeConfig::new("acme")
    };
    let (_, admin) = Home::init_with_admin_key(dir.path(), &config).unwrap();
    let admin = format!("ApiKey {admin}");
    let hook = RecordingHook::new();
    let new_key = |engine: &Engine| {
        let (text, rec) = engine
            .session(&admin)
            .create_api_key(trialport_core::auth::NewApiKey {
                name: "signer".into(),
                org: None,
                roles: vec![Role::DataManager],
                studies: vec!["S1".into()],
                expires_at: None,
            })
            .unwrap();
        (format!("ApiKey {text}"), format!("apikey:{}", rec.key_id))
    };
    let engine = home_engine(dir.path(), &hook);
    let (ada, ada_subject) = new_key(&engine);
    let (bob, bob_subject) = new_key(&engine);
    drop(engine);
    // What the previous version left: schema 3, and the password store's own table, one column per field.
    {
        let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
        conn.execute_batch(
            "DROP TABLE signing_credentials; PRAGMA user_version = 3;
             CREATE TABLE signing_credentials (org TEXT NOT NULL, subject TEXT NOT NULL, scheme TEXT,
                 iterations INTEGER, salt TEXT, hash TEXT, failures INTEGER NOT NULL DEFAULT 0, locked_at TEXT,
                 updated_at TEXT NOT NULL, reset_at TEXT, reset_by TEXT, studies TEXT,
                 PRIMARY KEY (org, subject));",
        )
        .unwrap();
        for (subject, failures, locked) in [
            (&ada_subject, 2, None),
            (&bob_subject, 5, Some("2025-01-21T10:00:00Z")),
        ] {
            conn.execute(
                "INSERT INTO signing_credentials (org, subject, scheme, iterations, salt, hash, failures, locked_at,
                     updated_at, studies)
                 VALUES ('acme', ?1, 'pbkdf2-sha256', 1000, '00112233445566778899aabbccddeeff', ?2, ?3, ?4,
                     '2025-01-21T10:00:00.000000000Z', '[\"S1\"]')",
                rusqlite::params![subject, PYTHON_HASH, failures, locked],
            )
            .unwrap();
        }
    }
    let engine = home_engine(dir.path(), &hook);
    // Ada's two failures are still counted; her password still signs.
    let e = engine
        .export_data(&ada, data(sign(Meaning::Approval, WRONG)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    assert_eq!(e.details()["attempts_left"], 2);
    engine
        .export_data(&ada, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap();
    // Bob stays locked, with his password.
    let e = engine
        .export_data(&bob, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signing_locked"));
    engine.session(&admin).reset_signing(&bob_subject).unwrap();
    let e = engine
        .export_data(&bob, data(sign(Meaning::Approval, PASSWORD)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "password_reset_required"));
}

/// A memory store where another writer changes one signer's credential right after the engine's first read of it:
/// the race of a password changed (by another process) while an attempt's password is being checked.
struct RacingStore {
    inner: trialport_core::store::MemoryStore,
    /// The credential written after the next read of its signer.
    next: std::sync::Mutex<Option<trialport_core::signer::SignerCredential>>,
}

impl trialport_core::store::Store for RacingStore {
    fn write(
        &self,
        work: &mut trialport_core::store::Work<'_>,
        witness: &trialport_core::store::Witness<'_>,
    ) -> Result<Vec<AuditEvent>> {
        self.inner.write(work, witness)
    }
}
impl trialport_core::job::JobReads for RacingStore {
    fn get_job(&self, id: uuid::Uuid) -> Result<Job> {
        self.inner.get_job(id)
    }
    fn list_jobs(&self, q: &trialport_core::job::JobQuery) -> Result<trialport_core::job::JobPage> {
        self.inner.list_jobs(q)
    }
    fn list_finished(&self, q: &trialport_core::job::FinishedQuery) -> Result<Vec<Job>> {
        self.inner.list_finished(q)
    }
}
impl trialport_core::auth::KeyReads for RacingStore {
    fn get_key(&self, id: &str) -> Result<Option<trialport_core::auth::ApiKeyRecord>> {
        self.inner.get_key(id)
    }
    fn list_keys(&self, org: &str) -> Result<Vec<trialport_core::auth::ApiKeyRecord>> {
        self.inner.list_keys(org)
    }
}
impl trialport_core::study::StudyReads for RacingStore {
    fn get_study(&self, study: &str) -> Result<Option<trialport_core::study::StudyRecord>> {
        self.inner.get_study(study)
    }
    fn list_studies(&self, org: Option<&str>) -> Result<Vec<trialport_core::study::StudyRecord>> {
        self.inner.list_studies(org)
    }
}
impl trialport_core::audit::AuditReads for RacingStore {
    fn audit_last(&self) -> Result<Option<(u64, String)>> {
        self.inner.audit_last()
    }
    fn audit_read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.inner.audit_read(from, limit)
    }
}
impl trialport_core::signer::SignerReads for RacingStore {
    fn get_signer(
        &self,
        org: &str,
        subject: &str,
    ) -> Result<Option<trialport_core::signer::SignerCredential>> {
        let seen = self.inner.get_signer(org, subject)?;
        let next = self.next.lock().unwrap().take();
        if let Some(next) = next {
            trialport_core::store::conformance::write(&self.inner, |tx| tx.put_signer(&next))?;
        }
        Ok(seen)
    }
}

#[test]
fn an_attempt_against_a_password_changed_meanwhile_is_checked_against_the_new_one() {
    use trialport_core::signer::{PasswordHash, SignerReads};
    let store = Arc::new(RacingStore {
        inner: trialport_core::store::MemoryStore::new(),
        next: std::sync::Mutex::new(None),
    });
    let engine = Engine::builder()
        .formats(formats())
        .source(source())
        .store(store.clone())
        .signing_settings(settings())
        .workers(0)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    engine
        .session(&admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let subject = engine.session(&admin).audit_events(1, 10).unwrap()[1]
        .actor
        .subject
        .clone();
    let changed_to = |password: &str| {
        let mut c = store.inner.get_signer("acme", &subject).unwrap().unwrap();
        c.password = Some(PasswordHash::derive(password, 1_000).unwrap());
        *store.next.lock().unwrap() = Some(c);
    };
    let failures = || {
        store
            .inner
            .get_signer("acme", &subject)
            .unwrap()
            .unwrap()
            .failures
    };
    // The new password, checked first against the old hash (wrong), then against the new one (right): no
    // failure is counted for a password that is gone, and the job is made.
    changed_to("the password of now");
    let job = engine
        .export_data(&admin, data(sign(Meaning::Approval, "the password of now")))
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(failures(), 0);
    // The old password, right against the snapshot but gone by the commit: refused, nothing counted, no job.
    changed_to(PASSWORD);
    let e = engine
        .export_data(&admin, data(sign(Meaning::Approval, "the password of now")))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP004", "signer_changed"));
    assert_eq!(failures(), 0);
    let page = engine
        .list_jobs(&admin, trialport_core::request::ListJobsRequest::default())
        .unwrap();
    assert_eq!(page.total, 1);
    // A wrong password against a changed one is counted once, against the new one.
    changed_to("yet another password");
    let e = engine
        .export_data(&admin, data(sign(Meaning::Approval, WRONG)))
        .unwrap_err();
    assert_eq!(reason(&e), ("EXP003", "signature_invalid"));
    assert_eq!(failures(), 1);
    engine
        .export_data(
            &admin,
            data(sign(Meaning::Approval, "yet another password")),
        )
        .unwrap();
    assert_eq!(failures(), 0);
}
