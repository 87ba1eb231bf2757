//! The audit trail end to end: one event per operation with the right outcome and scope, committed with the
//! change it reports; the archive log's tamper evidence (modify, delete, insert, reorder, cut, a whole rewritten
//! chain: against the database's anchor, without a checkpoint), copies cut at every byte, a failing store, several
//! engines on one home, the move of an earlier version's trail to the log, and a golden log whose hashes were
//! computed by Python's hashlib from the documented encoding.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use trialport_core::access::Role;
use trialport_core::audit::AuditReads;
use trialport_core::audit::{
    Actor, AuditEvent, AuditHook, AuditRecord, AuditScope, Auditor, Checkpoint, Outcome,
    RecordingHook, GENESIS_HASH,
};
use trialport_core::auth::KeyReads;
use trialport_core::auth::NewApiKey;
use trialport_core::clock::FixedClock;
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::error::{Error, ErrorCode};
use trialport_core::job::JobReads;
use trialport_core::job::{JobKind, JobState};
use trialport_core::request::{ExportRequest, ListJobsRequest};
use trialport_core::store::conformance::sample_event;
use trialport_core::store::{MemoryStore, SqliteOptions, SqliteStore, Store, Witness, Work};
use trialport_core::Result;
use uuid::Uuid;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

// ---------------------------------------------------------------------------------------------------------------
// One event per operation

/// Every operation (a public method of `Session`, and so of every surface), with the action it is audited as. The
/// test below calls each; `the_operation_list_is_complete` fails when a method is added to `Session` without being
/// listed here.
const OPERATIONS: &[(&str, &str)] = &[
    ("export", "export_data"),
    ("export_json", "export_data"),
    ("export_data", "export_data"),
    ("export_report", "export_report"),
    ("export_dashboard", "export_dashboard"),
    ("bulk_export", "bulk_export"),
    ("list_jobs", "list_jobs"),
    ("get_job", "get_job"),
    ("wait", "wait"),
    ("wait_with_progress", "wait"),
    ("download", "download"),
    ("cancel", "cancel"),
    ("formats", "formats"),
    ("create_api_key", "create_api_key"),
    ("revoke_api_key", "revoke_api_key"),
    ("list_api_keys", "list_api_keys"),
    ("audit_events", "audit_events"),
    ("verify_audit", "verify_audit"),
    ("verify_audit_against", "verify_audit"),
    ("audit_checkpoint", "audit_checkpoint"),
    ("set_signing_password", "set_signing_password"),
    ("reset_signing", "reset_signing"),
    ("rotate_encryption_key", "rotate_encryption_key"),
    ("purge", "purge"),
    ("list_studies", "list_studies"),
    ("add_study", "add_study"),
    ("remove_study", "remove_study"),
];

/// The names of the public methods of `Session` (in its `impl` blocks across the engine's source files), and of
/// `Engine`'s methods that take a credential first (the seed's operations), read from the source. `session` makes a
/// session and `with_request_id` configures one: neither is an operation.
fn engine_operations() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let mut in_session = false;
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line.starts_with("impl") {
                in_session = line.contains("Session<");
            }
            let Some(rest) = line.trim_start().strip_prefix("pub fn ") else {
                continue;
            };
            let name = rest.split(['(', '<']).next().unwrap().trim().to_string();
            // The signature, up to the body.
            let mut signature = line.to_string();
            while !signature.contains('{') {
                match lines.next() {
                    Some(l) => signature.push_str(l),
                    None => break,
                }
            }
            let operation = in_session || signature.contains("credential: &str");
            // Not operations: the session's builder and its getter of what the last call learned.
            if operation && !["with_request_id", "session", "last_call"].contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_operation_list_is_complete() {
    let mut listed: Vec<String> = OPERATIONS.iter().map(|(m, _)| m.to_string()).collect();
    listed.sort();
    assert_eq!(
        engine_operations(),
        listed,
        "every engine operation must be in OPERATIONS and exercised below"
    );
}

struct Harness {
    engine: Engine,
    hook: RecordingHook,
    admin: String,
    /// Operations checked, by method name.
    done: std::cell::RefCell<Vec<&'static str>>,
}

impl Harness {
    fn new() -> Harness {
        let hook = RecordingHook::new();
        let engine = Engine::builder()
            .formats(registry())
            .source(source())
            .source(Arc::new(SlowSource {
                batches: 400,
                pause: Duration::from_millis(5),
            }))
            .audit_hook(Arc::new(hook.clone()))
            .workers(1)
            // acme's unscoped admin may then grant the operator role.
            .home_org("acme")
            .build()
            .unwrap();
        let admin = format!(
            "ApiKey {}",
            engine.create_initial_admin_key("acme").unwrap()
        );
        Harness {
            engine,
            hook,
            admin,
            done: Default::default(),
        }
    }

    /// Events of operation calls (request ids `req_...`), as opposed to job state changes.
    fn call_events(&self) -> Vec<AuditEvent> {
        self.hook
            .events()
            .into_iter()
            .filter(|e| e.request_id.starts_with("req_"))
            .collect()
    }

    /// Runs `f`, which calls operation `method` once, and checks that exactly one call event appeared, with the
    /// method's action and `outcome`, and, for an error, the error's request id. Returns the event.
    fn once<T>(
        &self,
        method: &'static str,
        outcome: Outcome,
        f: impl FnOnce() -> Result<T>,
    ) -> AuditEvent {
        let action = OPERATIONS
            .iter()
            .find(|(m, _)| *m == method)
            .unwrap_or_else(|| panic!("{method} is not in OPERATIONS"))
            .1;
        let before = self.call_events().len();
        let result = f();
        let events = self.call_events();
        assert_eq!(
            events.len(),
            before + 1,
            "{method}: exactly one event per call, got {:?}",
            &events[before..]
        );
        let e = events.last().unwrap().clone();
        assert_eq!(e.action, action, "{method}");
        assert_eq!(e.outcome, outcome, "{method}: {:?}", result.as_ref().err());
        match result {
            Ok(_) => assert_eq!(outcome, Outcome::Success, "{method}"),
            Err(err) => {
                assert_ne!(outcome, Outcome::Success, "{method}: {err}");
                assert_eq!(err.request_id(), Some(e.request_id.as_str()), "{method}");
            }
        }
        self.done.borrow_mut().push(method);
        e
    }
}

fn from_json(kind: JobKind, v: Value) -> ExportRequest {
    ExportRequest::from_value(kind, v).unwrap()
}

#[test]
fn every_operation_leaves_exactly_one_event_with_its_outcome() {
    use Outcome::{Denied, Failed, Success};
    let h = Harness::new();
    let e = &h.engine;
    let admin = h.admin.as_str();
    let bad = "ApiKey tp_000000000000_notakey";
    let stat = key(e, admin, &[Role::Statistician], &["*"]);
    let s2_only = key(e, admin, &[Role::DataManager], &["S2"]);

    // Exports.
    let dm = || ExportRequest::data("S1", &["DM"], "lines");
    let ev = h.once("export_data", Success, || e.export_data(admin, dm()));
    let job = e.get_job(admin, ev.target[4..].parse().unwrap()).unwrap();
    assert_eq!((ev.org.as_str(), ev.study.as_deref()), ("acme", Some("S1")));
    let ev = h.once("export_data", Denied, || e.export_data(bad, dm()));
    assert_eq!(ev.actor.subject, "anonymous");
    assert_eq!((ev.org.as_str(), ev.study.as_deref()), ("", Some("S1")));
    h.once("export_data", Denied, || e.export_data(&s2_only, dm()));
    h.once("export_data", Failed, || {
        e.export_data(admin, ExportRequest::data("S1", &["XX"], "lines"))
    });
    // A request of another kind through the data operation is refused, and audited as that operation.
    let ev = h.once("export_data", Failed, || {
        e.export_data(admin, ExportRequest::bulk("S1", &["DM"], "lines"))
    });
    assert_eq!(ev.details["reason"], "wrong_kind");
    // The one pipeline, as every surface calls it: a typed request, or its JSON text (parsed inside the call,
    // so a request that cannot be read is on the record too).
    h.once("export", Success, || e.session(admin).export(dm()));
    h.once("export", Denied, || e.session(bad).export(dm()));
    h.once("export_json", Success, || {
        e.session(admin).export_json(
            JobKind::Data,
            r#"{"study": "S1", "datasets": ["DM"], "format": "lines"}"#,
        )
    });
    let ev = h.once("export_json", Failed, || {
        e.session(admin)
            .export_json(JobKind::Data, r#"{"study": "S1", "format": "lines"}"#)
    });
    assert_eq!(ev.details["reason"], "invalid_request");
    h.once("export_json", Denied, || {
        e.session(bad).export_json(JobKind::Data, "not json")
    });
    let report = || {
        from_json(
            JobKind::Report,
            json!({"report": {"study": "S1", "title": "T",
            "sections": [{"type": "text", "body": "hello"}]}, "format": "lines"}),
        )
    };
    h.once("export_report", Success, || {
        e.export_report(admin, report())
    });
    h.once("export_report", Denied, || e.export_report(bad, report()));
    let dashboard = || {
        from_json(
            JobKind::Dashboard,
            json!({"dashboard": {"study": "S1", "title": "T",
            "tiles": [{"label": "n", "dataset": "DM", "measure": "count"}]}, "format": "lines"}),
        )
    };
    h.once("export_dashboard", Success, || {
        e.export_dashboard(admin, dashboard())
    });
    h.once("export_dashboard", Denied, || {
        e.export_dashboard(bad, dashboard())
    });
    let bulk = || from_json(JobKind::Bulk, json!({"study": "S1", "format": "lines"}));
    h.once("bulk_export", Success, || e.bulk_export(admin, bulk()));
    h.once("bulk_export", Denied, || e.bulk_export(bad, bulk()));
    h.once("bulk_export", Failed, || {
        e.bulk_export(
            admin,
            from_json(JobKind::Bulk, json!({"study": "S1", "format": "nope"})),
        )
    });

    // Jobs.
    let done = h.once("wait", Success, || e.wait(admin, job.id, WAIT));
    assert_eq!(done.study.as_deref(), Some("S1"));
    h.once("wait", Denied, || e.wait(bad, job.id, WAIT));
    h.once("wait", Failed, || e.wait(admin, Uuid::now_v7(), WAIT));
    h.once("wait_with_progress", Success, || {
        e.session(admin).wait_with_progress(job.id, WAIT, |_| {})
    });
    h.once("list_jobs", Success, || {
        e.list_jobs(admin, ListJobsRequest::default())
    });
    h.once("list_jobs", Denied, || {
        e.list_jobs(bad, ListJobsRequest::default())
    });
    h.once("list_jobs", Failed, || {
        e.list_jobs(
            admin,
            ListJobsRequest {
                limit: Some(0),
                ..Default::default()
            },
        )
    });
    let ev = h.once("get_job", Success, || e.get_job(admin, job.id));
    assert_eq!(
        (ev.org.as_str(), ev.study.as_deref()),
        ("acme", Some("S1")),
        "the job's scope"
    );
    let ev = h.once("get_job", Denied, || e.get_job(&s2_only, job.id));
    assert_eq!(
        ev.study.as_deref(),
        Some("S1"),
        "a refusal names the job's study"
    );
    h.once("get_job", Failed, || e.get_job(admin, Uuid::now_v7()));
    h.once("download", Success, || {
        let mut d = e.download(admin, job.id, None)?;
        let mut buf = Vec::new();
        d.reader.read_to_end(&mut buf).unwrap();
        Ok(buf)
    });
    h.once("download", Denied, || {
        e.download(bad, job.id, None).map(|_| ())
    });
    h.once("download", Failed, || {
        e.download(admin, Uuid::now_v7(), None).map(|_| ())
    });
    h.once("cancel", Failed, || e.cancel(admin, job.id));
    h.once("cancel", Denied, || e.cancel(bad, job.id));
    let slow = e
        .export_data(admin, ExportRequest::data("SLOW", &["BIG"], "lines"))
        .unwrap();
    h.once("cancel", Success, || e.cancel(admin, slow.id));
    e.wait(admin, slow.id, WAIT).unwrap();

    // Formats and keys.
    let ev = h.once("formats", Success, || e.formats(admin));
    assert_eq!((ev.org.as_str(), ev.study), ("acme", None));
    h.once("formats", Denied, || e.formats(bad));
    let new_key = || NewApiKey {
        name: "k".into(),
        org: Some("acme".into()),
        roles: vec![Role::Monitor],
        studies: vec!["S1".into()],
        expires_at: None,
    };
    let ev = h.once("create_api_key", Success, || {
        e.session(admin).create_api_key(new_key())
    });
    let key_id = ev.target.trim_start_matches("apikey:").to_string();
    h.once("create_api_key", Denied, || {
        e.session(&stat).create_api_key(new_key())
    });
    h.once("list_api_keys", Success, || {
        e.session(admin).list_api_keys(None)
    });
    h.once("list_api_keys", Denied, || {
        e.session(&stat).list_api_keys(None)
    });
    h.once("revoke_api_key", Success, || {
        e.session(admin).revoke_api_key(&key_id)
    });
    h.once("revoke_api_key", Denied, || {
        e.session(bad).revoke_api_key(&key_id)
    });
    h.once("revoke_api_key", Failed, || {
        e.session(admin).revoke_api_key("000000000000")
    });

    // The trail itself: reading is an operation like any other.
    h.once("audit_events", Success, || {
        e.session(admin).audit_events(1, 10)
    });
    h.once("audit_events", Denied, || {
        e.session(&stat).audit_events(1, 10)
    });
    h.once("audit_events", Failed, || {
        e.session(admin).audit_events(1, 0)
    });
    h.once("verify_audit", Success, || e.session(admin).verify_audit());
    h.once("verify_audit", Denied, || e.session(&stat).verify_audit());
    let mut cp = None;
    h.once("audit_checkpoint", Success, || {
        cp = Some(e.session(admin).audit_checkpoint()?);
        Ok(())
    });
    h.once("audit_checkpoint", Denied, || {
        e.session(bad).audit_checkpoint()
    });
    let cp = cp.unwrap();
    h.once("verify_audit_against", Success, || {
        e.session(admin).verify_audit_against(&cp)
    });
    h.once("verify_audit_against", Denied, || {
        e.session(bad).verify_audit_against(&cp)
    });
    let forged = Checkpoint {
        hash: "f".repeat(64),
        ..cp.clone()
    };
    h.once("verify_audit_against", Failed, || {
        e.session(admin).verify_audit_against(&forged)
    });

    // Operations of other parts of the engine: refused credentials are audited like every other call.
    h.once("set_signing_password", Denied, || {
        e.session(bad)
            .set_signing_password("a long enough password", None)
    });
    h.once("reset_signing", Denied, || {
        e.session(bad).reset_signing("apikey:x")
    });
    h.once("rotate_encryption_key", Denied, || {
        e.session(bad).rotate_encryption_key()
    });
    h.once("rotate_encryption_key", Failed, || {
        e.session(admin).rotate_encryption_key()
    });
    h.once("purge", Success, || e.session(admin).purge());
    h.once("purge", Denied, || e.session(&stat).purge());
    h.once("purge", Denied, || e.session(bad).purge());
    // The study registry: only the operator binds studies.
    let op = key(e, admin, &[Role::Operator], &["*"]);
    h.once("list_studies", Success, || e.session(admin).list_studies());
    h.once("list_studies", Denied, || e.session(bad).list_studies());
    let ev = h.once("add_study", Success, || {
        e.session(&op).add_study("S9", "globex")
    });
    assert_eq!(
        (ev.org.as_str(), ev.study.as_deref()),
        ("globex", Some("S9"))
    );
    h.once("add_study", Denied, || {
        e.session(admin).add_study("S8", "acme")
    });
    h.once("add_study", Failed, || {
        e.session(&op).add_study("S9", "acme")
    });
    h.once("remove_study", Success, || {
        e.session(&op).remove_study("S9")
    });
    h.once("remove_study", Failed, || e.session(&op).remove_study("S9"));
    h.once("remove_study", Denied, || {
        e.session(admin).remove_study("S1")
    });

    let mut checked: Vec<&str> = h.done.borrow().clone();
    checked.sort();
    checked.dedup();
    let mut all: Vec<&str> = OPERATIONS.iter().map(|(m, _)| *m).collect();
    all.sort();
    assert_eq!(checked, all, "every operation was called");

    // Job state changes carry the job's scope; the whole trail verifies.
    let running = h
        .hook
        .events()
        .into_iter()
        .find(|ev| ev.action == "job.running")
        .unwrap();
    assert_eq!(
        (running.org.as_str(), running.study.as_deref()),
        ("acme", Some("S1"))
    );
    let n = e.session(admin).verify_audit().unwrap();
    assert!(n as usize >= h.call_events().len() - 1);
}

#[test]
fn readers_see_the_events_of_their_organization_and_studies() {
    let h = Harness::new();
    let e = &h.engine;
    let other = format!("ApiKey {}", e.create_initial_admin_key("other").unwrap());
    e.export_data(&h.admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    e.export_data(&h.admin, ExportRequest::data("S2", &["DM"], "lines"))
        .unwrap();
    let _ = e.formats("ApiKey tp_000000000000_bad");
    e.formats(&other).unwrap();
    let s2_auditor = key(e, &h.admin, &[Role::Auditor], &["S2"]);

    let mine = e.session(&h.admin).audit_events(1, 1000).unwrap();
    assert!(mine.iter().all(|ev| ev.org.is_empty() || ev.org == "acme"));
    assert!(mine.iter().any(|ev| ev.study.as_deref() == Some("S1")));
    assert!(mine
        .iter()
        .any(|ev| ev.actor.subject == "anonymous" && ev.org.is_empty()));
    let theirs = e.session(&other).audit_events(1, 1000).unwrap();
    assert!(!theirs.is_empty());
    assert!(theirs
        .iter()
        .all(|ev| ev.org.is_empty() || ev.org == "other"));
    let s2 = e.session(&s2_auditor).audit_events(1, 1000).unwrap();
    assert!(s2.iter().any(|ev| ev.study.as_deref() == Some("S2")));
    assert!(s2.iter().all(|ev| ev.study.as_deref() != Some("S1")));
    // Pages: a full page, then the rest, from the last sequence number seen.
    let first = e.session(&h.admin).audit_events(1, 3).unwrap();
    assert_eq!(first.len(), 3);
    let rest = e
        .session(&h.admin)
        .audit_events(first[2].seq + 1, 1000)
        .unwrap();
    let paged: Vec<u64> = first.iter().chain(&rest).map(|ev| ev.seq).collect();
    let whole: Vec<u64> = mine.iter().map(|ev| ev.seq).collect();
    assert_eq!(paged[..whole.len()], whole[..]);
}

// ---------------------------------------------------------------------------------------------------------------
// Failures: a store that fails, hooks that refuse

/// A store whose transactions fail with EXP005 while `failing` is set (nothing committed).
struct FlakyStore {
    inner: MemoryStore,
    failing: AtomicBool,
}

impl Store for FlakyStore {
    fn write(&self, work: &mut Work<'_>, witness: &Witness<'_>) -> Result<Vec<AuditEvent>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::server(Reason::IoError, "fsync failed: EIO"));
        }
        self.inner.write(work, witness)
    }
}
impl JobReads for FlakyStore {
    fn get_job(&self, id: Uuid) -> Result<trialport_core::job::Job> {
        self.inner.get_job(id)
    }
    fn list_jobs(&self, q: &trialport_core::job::JobQuery) -> Result<trialport_core::job::JobPage> {
        self.inner.list_jobs(q)
    }
    fn list_finished(
        &self,
        q: &trialport_core::job::FinishedQuery,
    ) -> Result<Vec<trialport_core::job::Job>> {
        self.inner.list_finished(q)
    }
}
impl KeyReads for FlakyStore {
    fn get_key(&self, id: &str) -> Result<Option<trialport_core::auth::ApiKeyRecord>> {
        self.inner.get_key(id)
    }
    fn list_keys(&self, org: &str) -> Result<Vec<trialport_core::auth::ApiKeyRecord>> {
        self.inner.list_keys(org)
    }
}
impl trialport_core::study::StudyReads for FlakyStore {
    fn get_study(&self, s: &str) -> Result<Option<trialport_core::study::StudyRecord>> {
        self.inner.get_study(s)
    }
    fn list_studies(&self, org: Option<&str>) -> Result<Vec<trialport_core::study::StudyRecord>> {
        self.inner.list_studies(org)
    }
}
impl trialport_core::signer::SignerReads for FlakyStore {
    fn get_signer(
        &self,
        org: &str,
        subject: &str,
    ) -> Result<Option<trialport_core::signer::SignerCredential>> {
        trialport_core::signer::SignerReads::get_signer(&self.inner, org, subject)
    }
}
impl AuditReads for FlakyStore {
    fn audit_last(&self) -> Result<Option<(u64, String)>> {
        self.inner.audit_last()
    }
    fn audit_read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.inner.audit_read(from, limit)
    }
}

#[test]
fn a_failing_store_fails_the_operation_and_commits_nothing() {
    let flaky = Arc::new(FlakyStore {
        inner: MemoryStore::new(),
        failing: AtomicBool::new(false),
    });
    let e = Engine::builder()
        .formats(registry())
        .source(source())
        .store(flaky.clone())
        .pepper(&[7u8; 32])
        .workers(0)
        .build()
        .unwrap();
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    e.formats(&admin).unwrap();
    flaky.failing.store(true, Ordering::SeqCst);
    let err = e.formats(&admin).unwrap_err();
    assert_eq!((err.code(), err.reason()), (ErrorCode::Server, "io_error"));
    let err = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap_err();
    assert_eq!((err.code(), err.reason()), (ErrorCode::Server, "io_error"));
    assert_eq!(
        flaky.inner.audit_last().unwrap().unwrap().0,
        2,
        "nothing recorded"
    );
    assert_eq!(
        flaky
            .inner
            .list_jobs(&trialport_core::job::JobQuery {
                org: "acme".into(),
                studies: None,
                state: None,
                page: 1,
                limit: 10
            })
            .unwrap()
            .total,
        0,
        "no job without its event"
    );
    // The storage is well again: the engine goes on from the stored trail.
    flaky.failing.store(false, Ordering::SeqCst);
    e.formats(&admin).unwrap();
    assert_eq!(e.session(&admin).verify_audit().unwrap(), 3);
}

/// A hook that refuses the events of one action (and records every event it is given).
struct RefuseAction {
    action: &'static str,
    seen: RecordingHook,
}

impl AuditHook for RefuseAction {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        self.seen.record(event)?;
        if event.action == self.action {
            return Err(Error::server(
                Reason::HookRefused,
                "the host refused the event",
            ));
        }
        Ok(())
    }
}

#[test]
fn a_job_whose_success_cannot_be_audited_fails_and_keeps_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let seen = RecordingHook::new();
    let engine = Engine::builder()
        .formats(registry())
        .source(source())
        .sink(Arc::new(
            trialport_core::sink::LocalDirSink::new(dir.path()).unwrap(),
        ))
        .audit_hook(Arc::new(RefuseAction {
            action: "job.succeeded",
            seen: seen.clone(),
        }))
        .workers(1)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    let job = engine
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    let done = engine.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(
        done.state,
        JobState::Failed,
        "fail-closed: never succeeded unaudited"
    );
    let error = Error::from_object(&done.error.expect("the job's error")).unwrap();
    assert_eq!(
        (error.code(), error.reason()),
        (ErrorCode::Server, "audit_failed")
    );
    assert!(done.artifacts.is_empty());
    let left: Vec<_> = walk(dir.path());
    assert!(left.is_empty(), "no artifact bytes stay: {left:?}");
    // The hook saw the refused `job.succeeded` (which then never committed) and the `job.failed` that did.
    let ends: Vec<(String, Option<String>)> = seen
        .events()
        .iter()
        .filter(|e| e.target == format!("job:{}", job.id) && e.action.starts_with("job."))
        .map(|e| {
            (
                e.action.clone(),
                e.details["reason"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        ends,
        [
            ("job.running".to_string(), None),
            ("job.succeeded".to_string(), None),
            ("job.failed".to_string(), Some("audit_failed".to_string())),
        ]
    );
    let stored: Vec<String> = engine
        .session(&admin)
        .audit_events(1, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.target == format!("job:{}", job.id) && e.action.starts_with("job."))
        .map(|e| e.action)
        .collect();
    assert_eq!(
        stored,
        ["job.running", "job.failed"],
        "the refused end is not on the record"
    );
    let err = engine.download(&admin, job.id, None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
}

/// Files under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_refused_record_fails_the_operation_and_the_trail_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let t = Trail::open(dir.path()).unwrap();
    let mut huge = record("formats");
    huge.details = json!({"text": "x".repeat(17 << 20)});
    let err = t.emit(huge).unwrap_err();
    assert_eq!(err.reason(), "audit_record_too_large");
    t.emit(record("formats")).unwrap();
    assert_eq!(t.verify().unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// The archive log: tamper evidence

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn record(action: &str) -> AuditRecord {
    AuditRecord {
        actor: Actor {
            subject: "apikey:0123456789ab".into(),
            name: "Alice Example".into(),
            org: "acme".into(),
        },
        action: action.into(),
        target: "study:S1".into(),
        outcome: Outcome::Success,
        details: json!({"datasets": ["DM"]}),
        request_id: format!("req_{}", Uuid::now_v7().simple()),
    }
}

/// The trail of a home-like store in a directory (`trialport.db` with row MACs, `audit.log`), and an auditor.
struct Trail {
    store: SqliteStore,
    auditor: Auditor,
}

const ROW_KEY: [u8; 32] = [9; 32];

impl Trail {
    fn open(dir: &Path) -> Result<Trail> {
        Ok(Trail {
            store: SqliteStore::open_with(
                &dir.join("trialport.db"),
                SqliteOptions {
                    archive: Some(&dir.join("audit.log")),
                    row_key: Some(&ROW_KEY),
                },
            )?,
            auditor: Auditor::new(vec![], Arc::new(FixedClock::new(t0()))),
        })
    }

    fn emit(&self, r: AuditRecord) -> Result<AuditEvent> {
        let scope = AuditScope::implied(&r);
        let mut out = None;
        self.store.write(
            &mut |tx| {
                out = Some(self.auditor.record(tx, &r, &scope)?);
                Ok(())
            },
            &|_| Ok(()),
        )?;
        Ok(out.unwrap())
    }

    fn verify(&self) -> Result<u64> {
        self.store.check_trail()?;
        self.auditor.verify(&self.store)
    }
}

/// A trail of `n` events in `dir`; returns them.
fn write_log(dir: &Path, n: usize) -> Vec<AuditEvent> {
    let t = Trail::open(dir).unwrap();
    (0..n)
        .map(|i| t.emit(record(&format!("action_{i}"))).unwrap())
        .collect()
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

/// `(seq, check)` of an integrity violation (`seq` 0 when the error names none, as the anchor check).
fn violation(err: &Error) -> (u64, String) {
    assert_eq!(
        (err.code(), err.reason()),
        (ErrorCode::Server, "integrity_violation"),
        "{err}"
    );
    (
        err.details()
            .get("seq")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        err.details()["check"].as_str().unwrap().to_string(),
    )
}

/// Applies `tamper` to the lines of a fresh 10-event trail and returns what opening or else verifying it says.
fn tampered(tamper: impl FnOnce(&mut Vec<String>)) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(dir.path(), 10);
    assert_eq!(Trail::open(dir.path()).unwrap().verify().unwrap(), 10);
    let mut l = lines(&path);
    tamper(&mut l);
    write_lines(&path, &l);
    match Trail::open(dir.path()) {
        Err(e) => violation(&e),
        Ok(t) => violation(&t.verify().unwrap_err()),
    }
}

fn edit(line: &str, f: impl FnOnce(&mut AuditEvent)) -> AuditEvent {
    let mut e: AuditEvent = serde_json::from_str(line).unwrap();
    f(&mut e);
    e
}

#[test]
fn a_modified_event_is_named() {
    let got = tampered(|l| {
        l[4] = edit(&l[4], |e| e.outcome = Outcome::Denied).canonical();
    });
    assert_eq!(got, (5, "hash".into()));
    // Rehashing the modified event itself breaks the link from the next one.
    let got = tampered(|l| {
        l[4] = edit(&l[4], |e| {
            e.details = json!({"datasets": ["AE"]});
            e.hash = e.compute_hash();
        })
        .canonical();
    });
    assert_eq!(got, (6, "prev_hash".into()));
    // So does a changed hash.
    let got = tampered(|l| l[6] = l[6].replace("\"hash\":\"", "\"hash\":\"0"));
    assert_eq!(got.0, 7);
    // The last event changed and rehashed no longer matches the anchor in the database.
    let got = tampered(|l| {
        l[9] = edit(&l[9], |e| {
            e.outcome = Outcome::Denied;
            e.hash = e.compute_hash();
        })
        .canonical();
    });
    assert_eq!(got, (0, "anchor".into()));
}

#[test]
fn a_deleted_event_is_named() {
    assert_eq!(
        tampered(|l| {
            l.remove(4);
        }),
        (5, "sequence".into())
    );
    // Deleting and renumbering the rest leaves a log that ends before the anchor.
    let got = tampered(|l| {
        l.remove(4);
        for line in l.iter_mut().skip(4) {
            *line = edit(line, |e| e.seq -= 1).canonical();
        }
    });
    assert_eq!(got, (0, "anchor".into()));
}

#[test]
fn an_inserted_event_is_named() {
    // A copy of an earlier event.
    assert_eq!(
        tampered(|l| {
            let copy = l[2].clone();
            l.insert(5, copy);
        }),
        (6, "sequence".into())
    );
    // A well-formed event chained to its predecessor: the break shows at the event it pushed aside.
    let got = tampered(|l| {
        let forged = edit(&l[4], |e| {
            e.seq = 6;
            e.prev_hash = e.hash.clone();
            e.action = "forged".into();
            e.hash = e.compute_hash();
        });
        l.insert(5, forged.canonical());
    });
    assert_eq!(got, (7, "sequence".into()));
}

#[test]
fn reordered_events_are_named() {
    assert_eq!(tampered(|l| l.swap(3, 4)), (4, "sequence".into()));
    assert_eq!(tampered(|l| l.swap(0, 9)), (0, "anchor".into()));
}

#[test]
fn a_cut_or_rewritten_trail_is_found_without_a_checkpoint_and_checkpoints_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(dir.path(), 10);
    let t = Trail::open(dir.path()).unwrap();
    let cp = t.auditor.checkpoint(&t.store).unwrap();
    drop(t);
    assert_eq!(cp.seq, 10);
    let text = serde_json::to_string(&cp).unwrap();
    assert_eq!(Checkpoint::from_json(&text).unwrap(), cp);
    let original = lines(&path);

    // The last three events cut off: the database's anchor says ten.
    write_lines(&path, &original[..7]);
    assert_eq!(
        violation(&Trail::open(dir.path()).err().unwrap()),
        (0, "anchor".into())
    );

    // The whole history replaced by a fresh, internally consistent chain of the same length.
    let other = tempfile::tempdir().unwrap();
    let forged = Trail::open(other.path()).unwrap();
    for i in 0..10 {
        let mut r = record(&format!("action_{i}"));
        r.outcome = if i == 3 {
            Outcome::Denied
        } else {
            Outcome::Success
        };
        forged.emit(r).unwrap();
    }
    drop(forged);
    fs::copy(other.path().join("audit.log"), &path).unwrap();
    assert_eq!(
        violation(&Trail::open(dir.path()).err().unwrap()),
        (0, "anchor".into()),
        "the anchor tells"
    );

    // The real trail, grown since, still matches the checkpoint.
    write_lines(&path, &original);
    let t = Trail::open(dir.path()).unwrap();
    t.emit(record("later")).unwrap();
    assert_eq!(t.auditor.verify_with(&t.store, Some(&cp)).unwrap(), 11);
    let empty = Checkpoint {
        seq: 0,
        hash: GENESIS_HASH.into(),
        timestamp: None,
        signed: None,
    };
    assert_eq!(t.auditor.verify_with(&t.store, Some(&empty)).unwrap(), 11);
}

#[test]
fn a_damaged_record_in_the_middle_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(dir.path(), 10);
    let original = lines(&path);
    let mut l = original.clone();
    l[4] = l[4].replacen('{', "[", 1);
    write_lines(&path, &l);
    // Opening reads only the ends of the log; a full read (verify) names the record.
    let t = Trail::open(dir.path()).unwrap();
    let err = t.verify().unwrap_err();
    assert_eq!(violation(&err), (5, "record".into()));
    let offset: usize = l[..4].iter().map(|s| s.len() + 1).sum();
    assert_eq!(err.details()["offset"], offset as u64);
    // An unknown member is damage too: no verifier may disagree on what an event holds.
    let mut l = original.clone();
    l[2] = l[2].replacen('{', "{\"note\":1,", 1);
    write_lines(&path, &l);
    let t = Trail::open(dir.path()).unwrap();
    assert_eq!(violation(&t.verify().unwrap_err()), (3, "record".into()));
    // So is a line that reads as the same event but is not its canonical text (an upper-case UUID).
    let mut l = original.clone();
    let id = edit(&l[6], |_| {}).event_id.to_string();
    l[6] = l[6].replace(&id, &id.to_uppercase());
    assert_ne!(l[6], original[6]);
    write_lines(&path, &l);
    let t = Trail::open(dir.path()).unwrap();
    assert_eq!(violation(&t.verify().unwrap_err()), (7, "record".into()));
}

/// Every single-byte change anywhere in the log is found: the trail refuses to open, or `verify` names an event.
/// Nothing passes silently.
#[test]
fn every_flipped_byte_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(dir.path(), 3);
    let db = fs::read(dir.path().join("trialport.db")).unwrap();
    let original = fs::read(&path).unwrap();
    let mut cases = 0;
    for pos in 0..original.len() {
        // The low bit changes every character into another; 0x20 changes the case of letters (and would pass
        // unnoticed if a hex digit or UUID were compared case-insensitively).
        for mask in [0x01u8, 0x20] {
            let mut bytes = original.clone();
            bytes[pos] ^= mask;
            fs::write(&path, &bytes).unwrap();
            // A cut torn tail changes the database only by copying back what it holds: restore both each time.
            fs::write(dir.path().join("trialport.db"), &db).unwrap();
            let found = match Trail::open(dir.path()) {
                Err(e) => e.reason() == "integrity_violation",
                Ok(t) => t.verify().is_err(),
            };
            assert!(found, "byte {pos} ^ {mask:#04x} went unnoticed");
            cases += 1;
        }
    }
    assert_eq!(cases, original.len() * 2);
}

// ---------------------------------------------------------------------------------------------------------------
// The archive log: crashes

/// A crash after a commit and during its copy to the log leaves any prefix of the line; reopening cuts the torn
/// bytes and copies the event again from the database: no committed event is lost, and the trail goes on.
#[test]
fn a_copy_cut_at_every_byte_of_the_last_record_loses_no_committed_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let db_path = dir.path().join("trialport.db");
    let events = write_log(dir.path(), 6);
    let whole = fs::read(&path).unwrap();
    let last = format!("{}\n", events[5].canonical());
    let intact = whole[..whole.len() - last.len()].to_vec();
    for cut in 0..=last.len() {
        // The sixth event committed in the database, and its copy cut after `cut` bytes.
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO audit_events (seq, event_id, timestamp, actor_subject, action, target, \
             outcome, request_id, prev_hash, hash, body) VALUES (6, '', '', '', '', '', '', '', ?1, ?2, ?3)",
            rusqlite::params![events[5].prev_hash, events[5].hash, events[5].canonical()],
        )
        .unwrap();
        drop(conn);
        let mut bytes = intact.clone();
        bytes.extend_from_slice(&last.as_bytes()[..cut]);
        fs::write(&path, &bytes).unwrap();
        let t = Trail::open(dir.path()).unwrap();
        assert_eq!(t.store.audit_read(1, 100).unwrap(), events, "cut at {cut}");
        assert_eq!(
            fs::read(&path).unwrap(),
            whole,
            "cut at {cut}: the log is whole again"
        );
        assert_eq!(t.verify().unwrap(), 6);
    }
    let t = Trail::open(dir.path()).unwrap();
    t.emit(record("after")).unwrap();
    assert_eq!(t.verify().unwrap(), 7);
}

#[test]
fn bytes_without_a_line_feed_after_the_last_record_are_cut_and_lines_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let events = write_log(dir.path(), 3);
    let intact = fs::read(&path).unwrap();
    // Zeros as a file system leaves them when the size reached the disk and the data did not: a torn tail.
    let mut bytes = intact.clone();
    bytes.extend_from_slice(&[0u8; 700]);
    fs::write(&path, &bytes).unwrap();
    let t = Trail::open(dir.path()).unwrap();
    assert_eq!(t.store.audit_read(1, 10).unwrap(), events);
    assert_eq!(fs::read(&path).unwrap(), intact);
    drop(t);
    // Complete lines are never taken for a torn tail: the trail refuses to open and cuts nothing.
    for tail in [b"\0\0{\"seq\":\n\0\0\n".to_vec(), b"\n".to_vec()] {
        let mut bytes = intact.clone();
        bytes.extend_from_slice(&tail);
        fs::write(&path, &bytes).unwrap();
        let e = Trail::open(dir.path()).err().unwrap();
        assert_eq!(violation(&e).1, "record");
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn two_engines_on_one_home_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
    let open = || {
        Engine::builder()
            .formats(registry())
            .source(source())
            .home(dir.path())
            .unwrap()
            .workers(0)
            .build()
            .unwrap()
    };
    let a = open();
    let b = open();
    let admin = format!("ApiKey {}", a.create_initial_admin_key("acme").unwrap());
    std::thread::scope(|s| {
        for e in [&a, &b] {
            let admin = admin.clone();
            s.spawn(move || {
                for _ in 0..20 {
                    e.formats(&admin).unwrap();
                }
            });
        }
    });
    // The key, the two studies of the source bound with it (S1, S2), 40 calls; then each verify's own event.
    assert_eq!(a.session(&admin).verify_audit().unwrap(), 43);
    assert_eq!(b.session(&admin).verify_audit().unwrap(), 44);
    let log = lines(&dir.path().join("audit.log"));
    assert_eq!(log.len(), 45, "every event reached the log once");
}

#[test]
fn a_home_of_an_earlier_version_moves_its_trail_to_the_log_and_anchors_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
    // A home of an earlier version: its trail in SQLite (schema 2, no anchor), no log.
    let mut prev = GENESIS_HASH.to_string();
    let mut old = Vec::new();
    {
        let conn = rusqlite::Connection::open(home.database_path()).unwrap();
        conn.execute_batch(
            "CREATE TABLE audit_events (seq INTEGER PRIMARY KEY NOT NULL, event_id TEXT NOT NULL, \
             timestamp TEXT NOT NULL, actor_subject TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, \
             outcome TEXT NOT NULL, request_id TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, \
             body TEXT NOT NULL); PRAGMA user_version = 2;",
        )
        .unwrap();
        for seq in 1..=3 {
            let mut e = sample_event(seq, &prev);
            // Events of that version had no org or study.
            e.org = String::new();
            e.study = None;
            e.hash = e.compute_hash();
            prev = e.hash.clone();
            conn.execute(
                "INSERT INTO audit_events VALUES (?1, '', '', '', '', '', '', '', ?2, ?3, ?4)",
                rusqlite::params![seq as i64, e.prev_hash, e.hash, e.canonical()],
            )
            .unwrap();
            old.push(e);
        }
    }
    assert!(!home.audit_log_path().exists());
    let open = || {
        Engine::builder()
            .formats(registry())
            .source(source())
            .home(dir.path())
            .unwrap()
            .workers(0)
            .build()
            .unwrap()
    };
    let e = open();
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    e.formats(&admin).unwrap();
    drop(e);
    let e = open();
    // 3 moved events, the source's studies bound at the upgrade, the key, the formats call.
    let studies = trialport_core::source::DataSource::studies(&*source())
        .unwrap()
        .len() as u64;
    assert_eq!(e.session(&admin).verify_audit().unwrap(), 3 + studies + 2);
    let events = e.session(&admin).audit_events(1, 100).unwrap();
    assert_eq!(events[..3], old[..], "moved verbatim");
    let l = lines(&home.audit_log_path());
    // ... and the verify and audit_events calls.
    assert_eq!(l.len() as u64, 3 + studies + 4);
    for (line, event) in l.iter().zip(&events) {
        assert_eq!(line, &event.canonical(), "the log holds canonical lines");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(home.audit_log_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The encoding, against hashes computed outside trialport

/// Two events as the log stores them; their hashes were computed with Python's `json.dumps(sort_keys=True,
/// separators=(",", ":"), ensure_ascii=False)` and `hashlib.sha256(prev_hash + text)`, from the module docs'
/// recipe, not by this code.
const GOLDEN: [&str; 2] = [
    r#"{"action":"export_data","actor":{"name":"Zoë O'Neil","org":"acme","subject":"apikey:0123456789ab"},"details":{"a":[true,null,1.5],"b":2,"note":"tab\there"},"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","hash":"938de42c33ea1b7012cd30980795b0c61c8f0b724097b47014ff167e1cd902f6","org":"acme","outcome":"success","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","request_id":"req_1","seq":1,"study":"S1","target":"study:S1","timestamp":"2025-01-21T10:00:00.123Z"}"#,
    r#"{"action":"export_data","actor":{"name":"Zoë O'Neil","org":"acme","subject":"apikey:0123456789ab"},"details":{"reason":"permission_denied"},"event_id":"01890a5d-ac96-774b-bcce-b302099a8058","hash":"4ba47422a7b9f6977055d931706055c3b11d4ccccaae672df7ee0546f9ae3d91","org":"acme","outcome":"denied","prev_hash":"938de42c33ea1b7012cd30980795b0c61c8f0b724097b47014ff167e1cd902f6","request_id":"req_1","seq":2,"target":"study:S1","timestamp":"2025-01-21T10:00:00.123Z"}"#,
];

#[test]
fn a_golden_log_verifies_and_reencodes_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_lines(&path, &GOLDEN.map(str::to_string));
    // A log without a database is adopted as an earlier version's (no anchor yet).
    {
        let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
        conn.execute_batch("PRAGMA user_version = 2;").unwrap();
    }
    let t = Trail::open(dir.path()).unwrap();
    let events = t.store.audit_read(1, 10).unwrap();
    for (e, line) in events.iter().zip(GOLDEN) {
        assert_eq!(e.compute_hash(), e.hash);
        assert_eq!(e.canonical(), line);
    }
    assert_eq!(t.verify().unwrap(), 2);
    // Appending goes on from the golden chain.
    let next = t.emit(record("formats")).unwrap();
    assert_eq!(next.prev_hash, events[1].hash);
    assert_eq!(t.verify().unwrap(), 3);
}

#[test]
fn checkpoints_are_signed_by_the_engine_and_an_edited_or_foreign_one_is_refused() {
    let homes: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let engines: Vec<(Engine, String)> = homes
        .iter()
        .map(|dir| {
            trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
            let e = Engine::builder()
                .formats(registry())
                .source(source())
                .home(dir.path())
                .unwrap()
                .workers(0)
                .build()
                .unwrap();
            let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
            (e, admin)
        })
        .collect();
    let (e, admin) = &engines[0];
    let s = e.session(admin);
    let cp = s.audit_checkpoint().unwrap();
    let signed = cp.signed.clone().unwrap();
    assert_eq!(signed.algorithm, "ed25519");
    assert_eq!(signed.key_id, e.signing_public_key().id());
    // The signature is an Ed25519 signature of the documented payload, checked with the public key alone.
    let sig = trialport_core::codec::hex_decode(&signed.signature).unwrap();
    assert!(e.signing_public_key().verify(&cp.signed_payload(), &sig));
    let payload = String::from_utf8(cp.signed_payload()).unwrap();
    assert!(
        payload.starts_with("trialport audit checkpoint v1\n{\"hash\":\""),
        "{payload}"
    );
    // The file form reads back as it was written.
    let text = serde_json::to_string(&cp).unwrap();
    assert_eq!(Checkpoint::from_json(&text).unwrap(), cp);
    s.formats().unwrap();
    assert!(s.verify_audit_against(&cp).unwrap() > cp.seq);

    let refused = |cp: &Checkpoint| {
        let err = s.verify_audit_against(cp).unwrap_err();
        assert_eq!(err.reason(), "integrity_violation", "{err:?}");
        err.to_object()["details"]["check"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Edited to match a trail cut back to an earlier event, or re-dated: the signature no longer verifies.
    let events = s.audit_events(1, 1).unwrap();
    let cut = Checkpoint {
        seq: events[0].seq,
        hash: events[0].hash.clone(),
        ..cp.clone()
    };
    assert_eq!(refused(&cut), "checkpoint_signature");
    let redated = Checkpoint {
        timestamp: Some(t0()),
        ..cp.clone()
    };
    assert_eq!(refused(&redated), "checkpoint_signature");
    // Signed by another engine's key.
    let (other, other_admin) = &engines[1];
    let foreign = other.session(other_admin).audit_checkpoint().unwrap();
    assert_eq!(refused(&foreign), "checkpoint_signature");
    // An unsigned checkpoint (as earlier versions wrote) is still checked for its hash.
    let unsigned = Checkpoint {
        signed: None,
        ..cp.clone()
    };
    s.verify_audit_against(&unsigned).unwrap();
    let wrong = Checkpoint {
        hash: "f".repeat(64),
        ..unsigned
    };
    assert_eq!(refused(&wrong), "checkpoint");
}

/// A home of a version before the study registry has its sources' studies bound by the next engine even when
/// another opener upgraded the file first (another process's store, or a failed engine build): the
/// adoption is recorded in the store and ends in the transaction of its bindings, each audited (reason `upgrade`).
#[test]
fn an_upgraded_homes_studies_are_adopted_whoever_opened_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let home = trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
    let open = || {
        Engine::builder()
            .formats(registry())
            .source(source())
            .home(dir.path())
            .unwrap()
            .workers(0)
            .build()
            .unwrap()
    };
    let e = open();
    // The first key binds the source's studies (reason `init`).
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    drop(e);
    // What a version before the registry left (schema 4), then another open of the home's store (as a second
    // process's), which upgrades it.
    {
        let conn = rusqlite::Connection::open(home.database_path()).unwrap();
        conn.execute_batch(
            "DROP TABLE studies; DROP TABLE studies_adoption; PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    drop(home.open_store().unwrap());
    let e = open();
    let bound = |e: &Engine| {
        e.session(&admin)
            .audit_events(1, 1000)
            .unwrap()
            .into_iter()
            .filter(|ev| ev.action == "bind_study" && ev.details["reason"] == "upgrade")
            .map(|ev| (ev.target, ev.details["org"].clone()))
            .collect::<Vec<_>>()
    };
    let studies = trialport_core::source::DataSource::studies(&*source()).unwrap();
    assert!(!studies.is_empty());
    let expected: Vec<(String, Value)> = studies
        .iter()
        .map(|s| (format!("study:{s}"), json!("acme")))
        .collect();
    assert_eq!(bound(&e), expected);
    let listed = e.session(&admin).list_studies().unwrap();
    assert_eq!(
        listed.iter().map(|r| r.study.clone()).collect::<Vec<_>>(),
        studies
    );
    assert!(listed.iter().all(|r| r.org == "acme"));
    drop(e);
    // Adopted once: the next engine binds nothing.
    let e = open();
    assert_eq!(bound(&e), expected);
}
