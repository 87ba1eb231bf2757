//! The attack review's finding M1 for signing credentials and key-encryption key rotations: a change committed
//! before its audit event, so that when the event cannot be written (the review killed the process at the append)
//! the change stays without any event and `audit verify` passes. Reproduced here in one process, on a home, with an
//! audit hook that refuses the events once armed: the event of the change then never commits, and the change must
//! not either. (Through the binary, with a kill at each step: `cli/tests/crash_signing.rs`.)
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{registry, source};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use trialport_core::audit::{AuditEvent, AuditHook};
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::home::{Home, HomeConfig};
use trialport_core::request::ExportRequest;
use trialport_core::signature::{Meaning, SignatureRequest, SigningSettings};
use trialport_core::{Error, Result};

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "incorrect mule staple";
const MAX_FAILED: u32 = 5;

/// Refuses every event while armed: the event of the change being made cannot be written.
#[derive(Default)]
struct Refusing(AtomicBool);

impl AuditHook for Refusing {
    fn record(&self, _event: &AuditEvent) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(Error::server(
                Reason::IoError,
                "the audit trail cannot be written",
            ));
        }
        Ok(())
    }
}

/// A home of `acme` (encrypted at rest, signing passwords hashed fast) and its first admin's credential.
fn home() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = HomeConfig {
        signing: Some(SigningSettings {
            pbkdf2_iterations: 1_000,
            max_failed_attempts: MAX_FAILED,
        }),
        ..HomeConfig::new("acme")
    };
    let (_, admin) = Home::init_with_admin_key(dir.path(), &config).unwrap();
    (dir, format!("ApiKey {admin}"))
}

fn engine(dir: &Path, hook: &Arc<Refusing>) -> Engine {
    let e = Engine::builder()
        .home(dir)
        .unwrap()
        .formats(registry())
        .source(source())
        .audit_hook(hook.clone())
        .workers(1)
        .build()
        .unwrap();
    // The host's in-memory studies belong to the home's organization.
    e.bind_host_studies().unwrap();
    e
}

fn signed(password: &str) -> ExportRequest {
    ExportRequest {
        signature: Some(SignatureRequest::new(Meaning::Approval, password)),
        ..ExportRequest::data("S1", &["DM"], "lines")
    }
}

/// The actions of the successful events of the home's trail.
fn succeeded(engine: &Engine, admin: &str) -> Vec<String> {
    engine
        .session(admin)
        .audit_events(1, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == trialport_core::audit::Outcome::Success)
        .map(|e| e.action)
        .collect()
}

#[test]
fn m1_a_signing_password_whose_event_cannot_be_written_is_not_set() {
    let (dir, admin) = home();
    let hook = Arc::new(Refusing::default());
    let e = engine(dir.path(), &hook);
    hook.0.store(true, Ordering::SeqCst);
    let err = e
        .session(&admin)
        .set_signing_password(PASSWORD, None)
        .unwrap_err();
    assert_eq!(err.reason(), "audit_failed");
    hook.0.store(false, Ordering::SeqCst);
    drop(e);
    let e = engine(dir.path(), &hook);
    assert!(!succeeded(&e, &admin).contains(&"set_signing_password".to_string()));
    // Before: the password was stored all the same, and signed.
    let err = e.export_data(&admin, signed(PASSWORD)).unwrap_err();
    assert_eq!(err.reason(), "signing_not_enrolled");
    e.session(&admin).verify_audit().unwrap();
}

#[test]
fn m1_a_failed_signature_whose_event_cannot_be_written_is_not_counted() {
    let (dir, admin) = home();
    let hook = Arc::new(Refusing::default());
    let e = engine(dir.path(), &hook);
    e.session(&admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    hook.0.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let err = e.export_data(&admin, signed(WRONG)).unwrap_err();
        assert_eq!(err.reason(), "audit_failed");
    }
    hook.0.store(false, Ordering::SeqCst);
    // Before: both failures were counted without their events (2 attempts left here, 4 now).
    let err = e.export_data(&admin, signed(WRONG)).unwrap_err();
    assert_eq!(err.reason(), "signature_invalid");
    assert_eq!(err.details()["attempts_left"], MAX_FAILED - 1);
    e.session(&admin).verify_audit().unwrap();
}

#[test]
fn m1_a_kek_rotation_whose_event_cannot_be_written_makes_no_key_current() {
    let (dir, admin) = home();
    let hook = Arc::new(Refusing::default());
    let e = engine(dir.path(), &hook);
    hook.0.store(true, Ordering::SeqCst);
    let err = e.session(&admin).rotate_encryption_key().unwrap_err();
    assert_eq!(err.reason(), "audit_failed");
    hook.0.store(false, Ordering::SeqCst);
    drop(e);
    let e = engine(dir.path(), &hook);
    // Before: kek-0002 was current, wrapping every new artifact, and no event named it.
    let mut keys: Vec<String> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["kek-0001.key"]);
    assert!(!succeeded(&e, &admin).contains(&"rotate_encryption_key".to_string()));
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    let job = e
        .wait(&admin, job.id, Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let stored = std::fs::read(
        dir.path()
            .join("artifacts")
            .join(job.id.to_string())
            .join("1")
            .join("dm.txt"),
    )
    .unwrap();
    // The key id in the artifact's header (the layout of `trialport_core::crypto`).
    let k = usize::from(stored[13]);
    assert_eq!(&stored[14..14 + k], b"kek-0001");
    e.session(&admin).verify_audit().unwrap();
}

/// Puts a directory where the new key-encryption key's file goes as the rotation's event is recorded: the event
/// commits, and the key cannot be made current after it.
struct Obstructing(PathBuf);

impl AuditHook for Obstructing {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        if let Some(id) = event.details["key_id"].as_str() {
            std::fs::create_dir_all(self.0.join(format!("{id}.key")))
                .map_err(|_| Error::server(Reason::IoError, "cannot obstruct the key file"))?;
        }
        Ok(())
    }
}

#[test]
fn a_rotation_whose_key_cannot_be_made_current_after_its_event_has_that_one_event_and_completes_at_the_next_open(
) {
    let (dir, admin) = home();
    let keys = dir.path().join("keys");
    let e = Engine::builder()
        .home(dir.path())
        .unwrap()
        .formats(registry())
        .source(source())
        .audit_hook(Arc::new(Obstructing(keys.clone())))
        .workers(1)
        .build()
        .unwrap();
    let err = e.session(&admin).rotate_encryption_key().unwrap_err();
    assert_eq!(err.code(), trialport_core::ErrorCode::Server, "{err}");
    // The rotation committed with its event; the error that followed is no second, contradicting, event (before:
    // a `failed` rotate_encryption_key after the `success` one, for a key that the next open makes current).
    let rotations: Vec<_> = e
        .session(&admin)
        .audit_events(1, 1000)
        .unwrap()
        .into_iter()
        .filter(|ev| ev.action == "rotate_encryption_key")
        .map(|ev| (ev.outcome, ev.details["key_id"].clone()))
        .collect();
    assert_eq!(
        rotations,
        [(
            trialport_core::audit::Outcome::Success,
            serde_json::json!("kek-0002")
        )]
    );
    drop(e);
    std::fs::remove_dir(keys.join("kek-0002.key")).unwrap();
    let hook = Arc::new(Refusing::default());
    let e = engine(dir.path(), &hook);
    let mut names: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["kek-0001.key", "kek-0002.key"]);
    e.session(&admin).verify_audit().unwrap();
}
