//! RBAC (issue 4): the permission matrix kept as data and shown in the docs, every role × operation × own/other
//! organization × own/other study against a real engine, and downloads refused once a permission is revoked.
//!
//! The expected outcomes live in `tests/data/rbac_expectations.json`. They were written by hand from DESIGN.md §6,
//! the issue and `docs/permissions.md` (the role→permission table and the scope rules stated in the file's
//! `derivation`), not by running the engine: a disagreement is a finding, not something to re-record. The engine
//! runs on a real home (SQLite jobs and keys, the append-only audit log) in a temporary directory, with a fixed
//! clock; each organization's admin makes one succeeded fixture job per study before the matrix runs.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use chrono::{DateTime, Utc};
use common::{registry, source};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::access::{Permission, Role};
use trialport_core::audit::{AuditEvent, Outcome, RecordingHook};
use trialport_core::auth::NewApiKey;
use trialport_core::clock::FixedClock;
use trialport_core::document::{DashboardSpec, Measure, ReportSpec, SectionSpec, TileSpec};
use trialport_core::engine::Engine;
use trialport_core::home::{Home, HomeConfig};
use trialport_core::job::{Job, JobState};
use trialport_core::jwt::{Algorithm, JwtKey, JwtOptions, JwtVerifier};
use trialport_core::request::{ExportRequest, ListJobsRequest};
use trialport_core::signature::{Meaning, SignatureRequest, SigningSettings};
use trialport_core::Error;
use uuid::Uuid;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));
const PASSWORD: &str = "correct horse battery";
/// 2025-01-21T10:00:00Z.
const T: i64 = 1_737_453_600;
const ACME: &str = "acme";
const GLOBEX: &str = "globex";
const OWN_STUDY: &str = "S1";
const OTHER_STUDY: &str = "S2";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        DateTime::<Utc>::from_timestamp(T, 0).unwrap(),
    ))
}

/// A home with fast password hashing for signatures (the production default is 600,000 iterations).
fn home(dir: &Path) {
    let config = HomeConfig {
        signing: Some(SigningSettings {
            pbkdf2_iterations: 1_000,
            max_failed_attempts: 5,
        }),
        ..HomeConfig::new(ACME)
    };
    Home::init_with(dir, &config).unwrap();
}

// -------------------------------------------------------------------------------------------------------------
// The matrix as data, and the docs

#[test]
fn the_permission_data_file_is_what_the_engine_uses() {
    // An independent reading of the file (plain JSON), compared with what `Role::permissions` serves.
    let text = std::fs::read_to_string(manifest_dir().join("src/permissions.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let listed: Vec<&str> = doc["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let all: BTreeSet<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), all);
    assert_eq!(listed.len(), all.len(), "a permission is listed twice");
    let roles = doc["roles"].as_object().unwrap();
    assert_eq!(
        roles.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        Role::ALL
            .iter()
            .map(|r| r.as_str())
            .collect::<BTreeSet<_>>()
    );
    for role in Role::ALL {
        let want: BTreeSet<&str> = roles[role.as_str()]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let got: BTreeSet<&str> = role.permissions().iter().map(|p| p.as_str()).collect();
        assert_eq!(got, want, "{}", role.as_str());
    }
    assert_eq!(text, trialport_core::access::PERMISSIONS_JSON);
}

#[test]
fn the_docs_table_matches_the_data() {
    let docs = std::fs::read_to_string(manifest_dir().join("../docs/permissions.md")).unwrap();
    let rows: Vec<Vec<String>> = docs
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let (header, body) = rows.split_first().expect("no table in docs/permissions.md");
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(header[..2], ["permission", "operations"]);
    assert_eq!(header[2..], roles[..], "the docs table's role columns");
    let doc: Value = serde_json::from_str(trialport_core::access::PERMISSIONS_JSON).unwrap();
    let order: Vec<&str> = doc["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let names: Vec<&str> = body.iter().map(|r| r[0].trim_matches('`')).collect();
    assert_eq!(names, order, "the docs table's rows (in the data's order)");
    for row in body {
        let p = Permission::parse(row[0].trim_matches('`')).unwrap();
        assert_eq!(row.len(), 2 + roles.len(), "{row:?}");
        for (role, cell) in Role::ALL.iter().zip(&row[2..]) {
            let want = if role.permissions().contains(&p) {
                "yes"
            } else {
                "no"
            };
            assert_eq!(cell, want, "docs: {} for {}", p.as_str(), role.as_str());
        }
    }
}

// -------------------------------------------------------------------------------------------------------------
// The matrix against the engine

const COLUMNS: [(bool, bool); 4] = [(true, true), (true, false), (false, true), (false, false)];

/// The operations of the matrix, each with the audit action its call records.
const OPERATIONS: [(&str, &str); 21] = [
    ("export_data", "export_data"),
    ("export_data_identifiable", "export_data"),
    ("export_report", "export_report"),
    ("export_dashboard", "export_dashboard"),
    ("bulk_export", "bulk_export"),
    ("bulk_export_identifiable", "bulk_export"),
    ("list_jobs", "list_jobs"),
    ("list_jobs_of_study", "list_jobs"),
    ("get_job", "get_job"),
    ("wait", "wait"),
    ("cancel", "cancel"),
    ("download", "download"),
    ("formats", "formats"),
    ("create_api_key", "create_api_key"),
    ("revoke_api_key", "revoke_api_key"),
    ("reset_signing", "reset_signing"),
    ("rotate_encryption_key", "rotate_encryption_key"),
    ("purge", "purge"),
    ("audit_events", "audit_events"),
    ("audit_checkpoint", "audit_checkpoint"),
    ("verify_audit", "verify_audit"),
];

/// What a cell's call did.
#[derive(Debug)]
enum Observed {
    Ok,
    /// The call listed jobs or events: whether the target was among them.
    Listed(bool),
    Err(Error),
}

/// The target a cell's call is aimed at, prepared before the call so that only the call's own event is counted.
enum Target {
    Study(&'static str),
    Job(Box<Job>),
    Key(String),
    NewKey(NewApiKey),
    Signer(String),
    None,
}

struct World {
    engine: Engine,
    hook: RecordingHook,
    admins: BTreeMap<&'static str, String>,
    /// The caller of each role: organization acme, study S1.
    callers: Vec<(Role, String, String)>,
    /// The succeeded fixture job of each (organization, study).
    fixtures: BTreeMap<(&'static str, &'static str), Job>,
    /// Every job that exists, with its organization and study: the independent oracle of `list_jobs`.
    ledger: Vec<(Uuid, String, String)>,
    _dir: tempfile::TempDir,
}

fn org_of(own: bool) -> &'static str {
    if own {
        ACME
    } else {
        GLOBEX
    }
}

fn study_of(own: bool) -> &'static str {
    if own {
        OWN_STUDY
    } else {
        OTHER_STUDY
    }
}

fn signature() -> Option<SignatureRequest> {
    Some(SignatureRequest::new(Meaning::Approval, PASSWORD))
}

fn report(study: &str) -> ExportRequest {
    ExportRequest::report(
        ReportSpec {
            study: study.into(),
            title: "Safety".into(),
            data_cutoff: None,
            parameters: Default::default(),
            sections: vec![SectionSpec::Text {
                heading: None,
                body: "text".into(),
            }],
        },
        "lines",
    )
}

fn dashboard(study: &str) -> ExportRequest {
    ExportRequest::dashboard(
        DashboardSpec {
            study: study.into(),
            title: "Overview".into(),
            data_cutoff: None,
            tiles: vec![TileSpec {
                label: "Subjects".into(),
                dataset: "DM".into(),
                measure: Measure::Count,
                column: None,
                filters: vec![],
            }],
            tables: vec![],
            charts: vec![],
        },
        "lines",
    )
}

fn bulk(study: &str, identifiable: bool) -> ExportRequest {
    let r = ExportRequest::bulk(study, &["DM"], "lines");
    if identifiable {
        ExportRequest {
            identifiable: true,
            signature: signature(),
            ..r
        }
    } else {
        r
    }
}

fn subject_of(
    engine: &Engine,
    admin: &str,
    org: &str,
    study: &str,
    name: &str,
) -> (String, String) {
    let (text, rec) = engine
        .session(admin)
        .create_api_key(NewApiKey {
            name: name.into(),
            org: Some(org.into()),
            roles: vec![Role::Monitor],
            studies: vec![study.into()],
            expires_at: None,
        })
        .unwrap();
    (format!("ApiKey {text}"), format!("apikey:{}", rec.key_id))
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        home(dir.path());
        let clock = clock();
        // First engine: workers run the fixture jobs to success.
        let mut admins = BTreeMap::new();
        let mut fixtures = BTreeMap::new();
        let mut ledger = Vec::new();
        let mut callers = Vec::new();
        {
            let e = Engine::builder()
                .home(dir.path())
                .unwrap()
                // Both organizations use the study names S1 and S2 here: the matrix runs without the study
                // registry (studies bound to organizations: cli/tests/tenancy.rs).
                .study_registry(false)
                .formats(registry())
                .source(source())
                .clock(clock.clone())
                .workers(1)
                .build()
                .unwrap();
            for org in [ACME, GLOBEX] {
                let admin = format!("ApiKey {}", e.create_initial_admin_key(org).unwrap());
                for study in [OWN_STUDY, OTHER_STUDY] {
                    let job = e
                        .export_data(&admin, ExportRequest::data(study, &["DM"], "lines"))
                        .unwrap();
                    let done = e.wait(&admin, job.id, WAIT).unwrap();
                    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
                    ledger.push((done.id, org.to_string(), study.to_string()));
                    fixtures.insert((org, study), done);
                }
                admins.insert(org, admin);
            }
            for role in Role::ALL {
                let (text, rec) = e
                    .session(&admins[ACME])
                    .create_api_key(NewApiKey {
                        name: role.as_str().into(),
                        org: Some(ACME.into()),
                        roles: vec![role],
                        studies: vec![OWN_STUDY.into()],
                        expires_at: None,
                    })
                    .unwrap();
                let cred = format!("ApiKey {text}");
                // Every caller can sign: a missing permission check would let their identifiable export through.
                e.session(&cred)
                    .set_signing_password(PASSWORD, None)
                    .unwrap();
                callers.push((role, cred, format!("apikey:{}", rec.key_id)));
            }
        }
        // The matrix engine: no workers, so exports stay queued and cancel has queued jobs to cancel.
        let hook = RecordingHook::new();
        let engine = Engine::builder()
            .home(dir.path())
            .unwrap()
            .study_registry(false)
            .formats(registry())
            .source(source())
            .clock(clock)
            .workers(0)
            .audit_hook(Arc::new(hook.clone()))
            .build()
            .unwrap();
        World {
            engine,
            hook,
            admins,
            callers,
            fixtures,
            ledger,
            _dir: dir,
        }
    }

    /// Prepares the target of `op` at (`org`, `study`).
    fn prepare(&mut self, op: &str, org: &'static str, study: &'static str) -> Target {
        let e = &self.engine;
        match op {
            "get_job" | "wait" | "download" | "list_jobs" | "audit_events" => {
                Target::Job(Box::new(self.fixtures[&(org, study)].clone()))
            }
            "list_jobs_of_study" => Target::Job(Box::new(self.fixtures[&(org, study)].clone())),
            "cancel" => {
                let job = e
                    .export_data(
                        &self.admins[org],
                        ExportRequest::data(study, &["DM"], "lines"),
                    )
                    .unwrap();
                assert_eq!(job.state, JobState::Queued);
                self.ledger
                    .push((job.id, org.to_string(), study.to_string()));
                Target::Job(Box::new(job))
            }
            "revoke_api_key" => {
                let (_, rec) = e
                    .session(&self.admins[org])
                    .create_api_key(NewApiKey {
                        name: "target".into(),
                        org: Some(org.into()),
                        roles: vec![Role::Monitor],
                        studies: vec![study.into()],
                        expires_at: None,
                    })
                    .unwrap();
                Target::Key(rec.key_id)
            }
            "create_api_key" => Target::NewKey(NewApiKey {
                name: "new".into(),
                org: Some(org.into()),
                roles: vec![Role::Monitor],
                studies: vec![study.into()],
                expires_at: None,
            }),
            "reset_signing" => {
                let (cred, subject) = subject_of(e, &self.admins[org], org, study, "signer");
                e.session(&cred)
                    .set_signing_password(PASSWORD, None)
                    .unwrap();
                Target::Signer(subject)
            }
            "formats" | "rotate_encryption_key" | "purge" | "audit_checkpoint" | "verify_audit" => {
                Target::None
            }
            _ => Target::Study(study),
        }
    }

    /// Runs `op` as `cred` on `target`.
    fn call(&mut self, op: &str, cred: &str, target: &Target) -> Observed {
        let e = &self.engine;
        let job = || match target {
            Target::Job(j) => (**j).clone(),
            _ => unreachable!("{op} needs a job"),
        };
        let study = || match target {
            Target::Study(s) => *s,
            _ => unreachable!("{op} needs a study"),
        };
        let exported = |r: Result<Job, Error>, ledger: &mut Vec<(Uuid, String, String)>| match r {
            Ok(j) => {
                // An export can only make a job of the caller's organization, on the study asked for.
                assert_eq!((j.org.as_str(), j.state), (ACME, JobState::Queued));
                ledger.push((j.id, j.org.clone(), j.study.clone()));
                Observed::Ok
            }
            Err(err) => Observed::Err(err),
        };
        let result: Result<Observed, Error> = match op {
            "export_data" => Ok(exported(
                e.export_data(cred, ExportRequest::data(study(), &["DM"], "lines")),
                &mut self.ledger,
            )),
            "export_data_identifiable" => Ok(exported(
                e.export_data(
                    cred,
                    ExportRequest {
                        identifiable: true,
                        signature: signature(),
                        ..ExportRequest::data(study(), &["DM"], "lines")
                    },
                ),
                &mut self.ledger,
            )),
            "export_report" => Ok(exported(
                e.export_report(cred, report(study())),
                &mut self.ledger,
            )),
            "export_dashboard" => Ok(exported(
                e.export_dashboard(cred, dashboard(study())),
                &mut self.ledger,
            )),
            "bulk_export" => Ok(exported(
                e.bulk_export(cred, bulk(study(), false)),
                &mut self.ledger,
            )),
            "bulk_export_identifiable" => Ok(exported(
                e.bulk_export(cred, bulk(study(), true)),
                &mut self.ledger,
            )),
            "list_jobs" | "list_jobs_of_study" => {
                let target = job();
                let filter = (op == "list_jobs_of_study").then(|| target.study.clone());
                e.list_jobs(
                    cred,
                    ListJobsRequest {
                        limit: Some(100),
                        study: filter.clone(),
                        ..ListJobsRequest::default()
                    },
                )
                .map(|page| {
                    // The visible set is exactly the caller's organization and study, and `total` counts
                    // nothing else.
                    let want: BTreeSet<Uuid> = self
                        .ledger
                        .iter()
                        .filter(|(_, o, s)| o == ACME && s == OWN_STUDY)
                        .map(|(id, _, _)| *id)
                        .collect();
                    let got: BTreeSet<Uuid> = page.items.iter().map(|j| j.id).collect();
                    assert_eq!(got, want, "{op}: visible jobs");
                    assert_eq!(page.total, want.len() as u64, "{op}: total");
                    Observed::Listed(got.contains(&target.id))
                })
            }
            "get_job" => e.get_job(cred, job().id).map(|j| {
                assert_eq!(j.id, job().id);
                Observed::Ok
            }),
            "wait" => e
                .wait(cred, job().id, Some(Duration::from_millis(1)))
                .map(|_| Observed::Ok),
            "cancel" => e.cancel(cred, job().id).map(|j| {
                assert_eq!(j.state, JobState::Cancelled);
                Observed::Ok
            }),
            "download" => e.download(cred, job().id, Some("dm.txt")).map(|mut d| {
                let mut bytes = Vec::new();
                d.reader.read_to_end(&mut bytes).unwrap();
                assert_eq!(bytes.len() as u64, job().artifacts[0].bytes);
                Observed::Ok
            }),
            "formats" => e.formats(cred).map(|_| Observed::Ok),
            "create_api_key" => match target {
                Target::NewKey(k) => e
                    .session(cred)
                    .create_api_key(k.clone())
                    .map(|_| Observed::Ok),
                _ => unreachable!(),
            },
            "revoke_api_key" => match target {
                Target::Key(key_id) => e.session(cred).revoke_api_key(key_id).map(|_| Observed::Ok),
                _ => unreachable!(),
            },
            "reset_signing" => match target {
                Target::Signer(s) => e.session(cred).reset_signing(s).map(|_| Observed::Ok),
                _ => unreachable!(),
            },
            "rotate_encryption_key" => e
                .session(cred)
                .rotate_encryption_key()
                .map(|_| Observed::Ok),
            "purge" => e.session(cred).purge().map(|_| Observed::Ok),
            "audit_events" => e.session(cred).audit_events(1, 1000).map(|events| {
                // Nothing of another organization or study, whatever the cell.
                for ev in &events {
                    assert!(ev.org.is_empty() || ev.org == ACME, "{ev:?}");
                    assert!(ev.study.as_deref().is_none_or(|s| s == OWN_STUDY), "{ev:?}");
                }
                let target = format!("job:{}", job().id);
                Observed::Listed(
                    events
                        .iter()
                        .any(|ev| ev.action == "export_data" && ev.target == target),
                )
            }),
            "audit_checkpoint" => e.session(cred).audit_checkpoint().map(|_| Observed::Ok),
            "verify_audit" => e.session(cred).verify_audit().map(|_| Observed::Ok),
            other => panic!("no such operation in the matrix: {other}"),
        };
        result.unwrap_or_else(Observed::Err)
    }

    /// The error the same caller gets for an id that does not exist, for the not-found cells.
    fn unknown(&self, op: &str, cred: &str) -> Error {
        let e = &self.engine;
        let id = Uuid::now_v7();
        match op {
            "get_job" => e.get_job(cred, id).unwrap_err(),
            "wait" => e.wait(cred, id, None).unwrap_err(),
            "cancel" => e.cancel(cred, id).unwrap_err(),
            "download" => e.download(cred, id, Some("dm.txt")).err().unwrap(),
            "revoke_api_key" => e.session(cred).revoke_api_key("0123456789ab").unwrap_err(),
            "reset_signing" => e
                .session(cred)
                .reset_signing("apikey:0123456789ab")
                .unwrap_err(),
            other => panic!("{other} has no not-found cell"),
        }
    }
}

fn expectations() -> Value {
    let path = manifest_dir().join("tests/data/rbac_expectations.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_expectations_file_covers_every_cell() {
    let doc = expectations();
    let ops = doc["operations"].as_object().unwrap();
    assert_eq!(
        ops.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        OPERATIONS.iter().map(|(o, _)| *o).collect::<BTreeSet<_>>()
    );
    let outcomes: BTreeSet<&str> = doc["outcomes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for (op, roles) in ops {
        let roles = roles.as_object().unwrap();
        assert_eq!(
            roles.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            Role::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<BTreeSet<_>>(),
            "{op}"
        );
        for (role, cells) in roles {
            let cells = cells.as_array().unwrap();
            assert_eq!(cells.len(), COLUMNS.len(), "{op}/{role}");
            for c in cells {
                assert!(outcomes.contains(c.as_str().unwrap()), "{op}/{role}: {c}");
            }
        }
    }
}

#[test]
fn every_role_operation_organization_and_study() {
    let doc = expectations();
    let mut w = World::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (op, action) in OPERATIONS {
        for (role, cred, subject) in w.callers.clone() {
            let cells = doc["operations"][op][role.as_str()].as_array().unwrap();
            for (&(own_org, own_study), want) in COLUMNS.iter().zip(cells) {
                let want = want.as_str().unwrap();
                if want == "n/a" {
                    continue;
                }
                let (org, study) = (org_of(own_org), study_of(own_study));
                let cell = format!("{op} / {} / {org} / {study}", role.as_str());
                let target = w.prepare(op, org, study);
                let before = w.hook.events().len();
                let got = w.call(op, &cred, &target);
                ran += 1;
                // Exactly one event of the call, by the caller, with the outcome the cell expects.
                let new: Vec<AuditEvent> = w.hook.events()[before..]
                    .iter()
                    .filter(|ev| ev.actor.subject != "system")
                    .cloned()
                    .collect();
                let problem = check(want, &got, &new, action, &subject);
                if let Some(p) = problem {
                    failures.push(format!("{cell}: expected {want}: {p}"));
                    continue;
                }
                if want == "not_found" {
                    // Indistinguishable from an id that does not exist: same error, same event.
                    let Observed::Err(hidden) = &got else {
                        unreachable!()
                    };
                    let before = w.hook.events().len();
                    let unknown = w.unknown(op, &cred);
                    let unknown_event = w.hook.events()[before..]
                        .iter()
                        .find(|ev| ev.action == action)
                        .cloned()
                        .unwrap();
                    let shape = |e: &Error| {
                        (
                            e.code(),
                            e.reason().to_string(),
                            e.message().to_string(),
                            e.field().map(String::from),
                            e.details().clone(),
                        )
                    };
                    if shape(hidden) != shape(&unknown) {
                        failures.push(format!(
                            "{cell}: differs from an unknown id: {hidden:?} vs {unknown:?}"
                        ));
                    }
                    let ev = &new[0];
                    if (&ev.org, &ev.study, &ev.outcome, &ev.details)
                        != (
                            &unknown_event.org,
                            &unknown_event.study,
                            &unknown_event.outcome,
                            &unknown_event.details,
                        )
                    {
                        failures.push(format!(
                            "{cell}: audited unlike an unknown id: {ev:?} vs {unknown_event:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every role × operation × organization × study that has the dimension ran.
    assert!(ran > 250, "only {ran} cells ran");
    // The chain still verifies after all of it.
    w.engine.session(&w.admins[ACME]).verify_audit().unwrap();
}

/// `None` when `got` and the call's events `new` are what `want` says.
fn check(
    want: &str,
    got: &Observed,
    new: &[AuditEvent],
    action: &str,
    subject: &str,
) -> Option<String> {
    let outcome = match (want, got) {
        ("allowed", Observed::Ok) => Outcome::Success,
        ("listed", Observed::Listed(true)) | ("hidden", Observed::Listed(false)) => {
            Outcome::Success
        }
        ("denied", Observed::Err(e))
            if e.code().as_str() == "EXP003" && e.reason() == "permission_denied" =>
        {
            Outcome::Denied
        }
        ("not_found", Observed::Err(e))
            if e.code().as_str() == "EXP001" && e.reason() == "not_found" =>
        {
            Outcome::Failed
        }
        (_, got) => return Some(format!("got {got:?}")),
    };
    match new {
        [ev] if ev.action == action && ev.actor.subject == subject && ev.outcome == outcome => {
            if want == "not_found" && (ev.org != ACME || ev.study.is_some()) {
                return Some(format!(
                    "the event is filed under another organization or study: {ev:?}"
                ));
            }
            None
        }
        _ => Some(format!(
            "expected one '{action}' event '{}' by the caller, got {:?}",
            outcome.as_str(),
            new.iter()
                .map(|e| (&e.action, e.outcome, &e.actor.subject))
                .collect::<Vec<_>>()
        )),
    }
}

// -------------------------------------------------------------------------------------------------------------
// A permission revoked after the export denies the download

const SECRET: &[u8; 40] = b"rbac-matrix-test-secret-of-forty-bytes-x";

fn bearer(sub: &str, org: &str, roles: &[&str], studies: &[&str]) -> String {
    let claims = json!({
        "sub": sub, "name": format!("{sub} (printed)"), "org": org, "roles": roles, "studies": studies,
        "exp": T + 3600, "iat": T,
    });
    let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("hs".into());
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    )
}

struct Revocation {
    engine: Engine,
    hook: RecordingHook,
    admin: String,
    dir: tempfile::TempDir,
}

fn revocation_engine() -> Revocation {
    let dir = tempfile::tempdir().unwrap();
    home(dir.path());
    let hook = RecordingHook::new();
    let verifier = JwtVerifier::new(
        vec![JwtKey::hmac(SECRET, Algorithm::Hs256, Some("hs")).unwrap()],
        JwtOptions::default(),
    )
    .unwrap();
    let engine = Engine::builder()
        .home(dir.path())
        .unwrap()
        .formats(registry())
        .source(source())
        .clock(clock())
        .jwt(verifier)
        .workers(1)
        .audit_hook(Arc::new(hook.clone()))
        .build()
        .unwrap();
    let admin = format!("ApiKey {}", engine.create_initial_admin_key(ACME).unwrap());
    Revocation {
        engine,
        hook,
        admin,
        dir,
    }
}

impl Revocation {
    fn export(&self, cred: &str) -> Job {
        let job = self
            .engine
            .export_data(cred, ExportRequest::data(OWN_STUDY, &["DM"], "lines"))
            .unwrap();
        let done = self.engine.wait(cred, job.id, WAIT).unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
        done
    }

    /// Downloads as the CLI does (the verified file is put at `name` only at the end); returns the error and the
    /// call's one audit event.
    fn refused(&self, cred: &str, job: &Job, name: &str) -> (Error, AuditEvent) {
        let dest = self.dir.path().join(name);
        let before = self.hook.events().len();
        let err = self
            .engine
            .download(cred, job.id, None)
            .and_then(|d| d.save_to(&dest))
            .unwrap_err();
        assert!(!dest.exists(), "{name}: something was written");
        let events: Vec<AuditEvent> = self.hook.events()[before..].to_vec();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].action, "download");
        (err, events[0].clone())
    }

    fn allowed(&self, cred: &str, job: &Job, name: &str) {
        let dest = self.dir.path().join(name);
        let saved = self
            .engine
            .download(cred, job.id, None)
            .unwrap()
            .save_to(&dest)
            .unwrap();
        assert_eq!(
            std::fs::metadata(&dest).unwrap().len(),
            job.artifacts[0].bytes
        );
        drop(saved);
    }
}

#[test]
fn a_revoked_api_key_cannot_download_what_it_exported() {
    let r = revocation_engine();
    let (text, rec) = r
        .engine
        .session(&r.admin)
        .create_api_key(NewApiKey {
            name: "analyst".into(),
            org: Some(ACME.into()),
            roles: vec![Role::Statistician],
            studies: vec![OWN_STUDY.into()],
            expires_at: None,
        })
        .unwrap();
    let cred = format!("ApiKey {text}");
    let job = r.export(&cred);
    r.allowed(&cred, &job, "before.txt");
    r.engine
        .session(&r.admin)
        .revoke_api_key(&rec.key_id)
        .unwrap();
    let (err, ev) = r.refused(&cred, &job, "after.txt");
    assert_eq!(
        (err.code().as_str(), err.reason()),
        ("EXP003", "key_revoked")
    );
    assert_eq!(ev.outcome, Outcome::Denied);
    assert_eq!(ev.details["reason"], "key_revoked");
    // The job and its artifact are still there for those who may read them.
    r.allowed(&r.admin, &job, "admin.txt");
}

#[test]
fn a_token_that_lost_the_study_or_the_role_cannot_download_what_it_exported() {
    let r = revocation_engine();
    let job = r.export(&bearer("sam", ACME, &["statistician"], &[OWN_STUDY]));
    r.allowed(
        &bearer("sam", ACME, &["statistician"], &[OWN_STUDY]),
        &job,
        "before.txt",
    );
    // The same subject, a fresh token without the study.
    let (err, ev) = r.refused(
        &bearer("sam", ACME, &["statistician"], &[OTHER_STUDY]),
        &job,
        "no-study.txt",
    );
    assert_eq!(
        (err.code().as_str(), err.reason()),
        ("EXP003", "permission_denied")
    );
    assert_eq!(
        (
            err.details()["permission"].as_str(),
            err.details()["scope"].as_str()
        ),
        (Some("jobs:download"), Some("study"))
    );
    assert_eq!(
        (ev.outcome, ev.actor.subject.as_str()),
        (Outcome::Denied, "sam")
    );
    assert_eq!(ev.details["reason"], "permission_denied");
    assert_eq!(ev.target, format!("job:{}", job.id));
    // The same subject, a fresh token whose roles no longer grant downloads.
    let (err, ev) = r.refused(
        &bearer("sam", ACME, &["auditor"], &[OWN_STUDY]),
        &job,
        "no-role.txt",
    );
    assert_eq!(
        (err.reason(), err.details()["scope"].as_str()),
        ("permission_denied", Some("role"))
    );
    assert_eq!(ev.outcome, Outcome::Denied);
    // Moved to another organization: the job no longer exists for the subject.
    let (err, ev) = r.refused(
        &bearer("sam", GLOBEX, &["statistician"], &["*"]),
        &job,
        "other-org.txt",
    );
    assert_eq!((err.code().as_str(), err.reason()), ("EXP001", "not_found"));
    assert_eq!((ev.outcome, ev.org.as_str()), (Outcome::Failed, GLOBEX));
    // With the grant back, the download works again: nothing was consumed by the refusals.
    r.allowed(
        &bearer("sam", ACME, &["statistician"], &[OWN_STUDY]),
        &job,
        "again.txt",
    );
}
