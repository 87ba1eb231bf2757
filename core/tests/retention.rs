//! Retention with an injected clock: per-kind retention times, expiry at exactly the boundary, bytes deleted on
//! disk while the record, the manifest and the audit trail stay, `purge` (summary, permission, audit) and the
//! background sweep.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{dm_batch, dm_schema, registry, source};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trialport_core::access::Role;
use trialport_core::audit::{AuditEvent, Outcome, RecordingHook};
use trialport_core::auth::NewApiKey;
use trialport_core::clock::FixedClock;
use trialport_core::document::{ReportSpec, SectionSpec};
use trialport_core::engine::{Engine, EngineBuilder, PurgeSummary};
use trialport_core::error::Error;
use trialport_core::error::Reason;
use trialport_core::home::{Home, HomeConfig, RetentionSettings};
use trialport_core::job::{Job, JobKind, JobState};
use trialport_core::request::ExportRequest;
use trialport_core::sink::LocalDirSink;
use trialport_core::source::{BatchStream, DataSource, DatasetInfo};
use uuid::Uuid;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

fn code_reason(e: &Error) -> (&'static str, String) {
    (e.code().as_str(), e.reason().to_string())
}

/// An engine writing artifacts (unencrypted) under `dir`, on a fixed clock, recording every audit event.
struct Setup {
    engine: Engine,
    admin: String,
    clock: Arc<FixedClock>,
    hook: RecordingHook,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

fn builder(dir: &Path, clock: &Arc<FixedClock>, hook: &RecordingHook) -> EngineBuilder {
    Engine::builder()
        .formats(registry())
        .source(source())
        .source(Arc::new(FailingSource))
        .sink(Arc::new(LocalDirSink::new(dir).unwrap()))
        .clock(clock.clone())
        .audit_hook(Arc::new(hook.clone()))
        .workers(1)
}

/// `configure` adds the retention settings; the sweep is off unless it sets one.
fn setup(configure: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("artifacts");
    let clock = Arc::new(FixedClock::new(
        chrono::DateTime::parse_from_rfc3339("2025-03-01T09:00:00Z")
            .unwrap()
            .into(),
    ));
    let hook = RecordingHook::new();
    let engine = configure(builder(&dir, &clock, &hook).sweep_interval(None))
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    Setup {
        engine,
        admin,
        clock,
        hook,
        dir,
        _tmp: tmp,
    }
}

impl Setup {
    fn run(&self, job: Job) -> Job {
        let done = self.engine.wait(&self.admin, job.id, WAIT).unwrap();
        assert!(done.state.is_finished(), "{:?}", done.state);
        done
    }

    fn data(&self, datasets: &[&str]) -> Job {
        let job = self
            .engine
            .export_data(&self.admin, ExportRequest::data("S1", datasets, "lines"))
            .unwrap();
        let done = self.run(job);
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
        done
    }

    fn report(&self) -> Job {
        let job = self
            .engine
            .export_report(
                &self.admin,
                ExportRequest::report(
                    ReportSpec {
                        study: "S1".into(),
                        title: "Retention".into(),
                        data_cutoff: None,
                        parameters: Default::default(),
                        sections: vec![SectionSpec::Text {
                            heading: None,
                            body: "kept for a while".into(),
                        }],
                    },
                    "lines",
                ),
            )
            .unwrap();
        let done = self.run(job);
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
        done
    }

    fn bulk(&self) -> Job {
        let job = self
            .engine
            .bulk_export(&self.admin, ExportRequest::bulk("S1", &["DM"], "lines"))
            .unwrap();
        let done = self.run(job);
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
        done
    }

    fn state(&self, id: Uuid) -> JobState {
        self.engine.get_job(&self.admin, id).unwrap().state
    }

    /// The files of a job on disk (in the folder of its attempt): name → bytes.
    fn files(&self, id: Uuid) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let job = self.engine.get_job(&self.admin, id).unwrap();
        let dir = self.dir.join(job.attempt_folder(job.attempt));
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                out.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    fs::read(entry.path()).unwrap(),
                );
            }
        }
        out
    }

    fn key(&self, roles: &[Role]) -> String {
        let (text, _) = self
            .engine
            .session(&self.admin)
            .create_api_key(NewApiKey {
                name: "retention test".into(),
                org: Some("acme".into()),
                roles: roles.to_vec(),
                studies: vec!["*".into()],
                expires_at: None,
            })
            .unwrap();
        format!("ApiKey {text}")
    }

    fn events(&self, action: &str) -> Vec<AuditEvent> {
        self.hook
            .events()
            .into_iter()
            .filter(|e| e.action == action)
            .collect()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    trialport_core::hashing::sha256_of(bytes).unwrap().1
}

fn read(engine: &Engine, cred: &str, job: Uuid, artifact: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut d = engine.download(cred, job, artifact)?;
    let mut buf = Vec::new();
    d.reader.read_to_end(&mut buf).unwrap();
    Ok(buf)
}

/// A study whose dataset fails while it is read, to make a failed job.
struct FailingSource;

impl DataSource for FailingSource {
    fn datasets(&self, study: &str) -> trialport_core::Result<Vec<DatasetInfo>> {
        if study != "BAD" {
            return Err(trialport_core::source::unknown_study(study));
        }
        Ok(vec![DatasetInfo {
            name: "DM".into(),
            label: None,
        }])
    }

    fn scan(&self, study: &str, dataset: &str) -> trialport_core::Result<BatchStream> {
        if study != "BAD" || dataset != "DM" {
            return Err(trialport_core::source::unknown_dataset(study, dataset));
        }
        let batches: Vec<trialport_core::Result<_>> = vec![
            Ok(dm_batch(2)),
            Err(Error::server(Reason::SourceFailed, "the test source fails")),
        ];
        Ok(BatchStream::new(dm_schema(), batches.into_iter()))
    }
}

#[test]
fn each_kind_of_job_keeps_its_own_retention() {
    let s = setup(|b| {
        b.retention_for(JobKind::Data, days(10))
            .retention_for(JobKind::Report, days(20))
    });
    let data = s.data(&["DM"]);
    let report = s.report();
    let bulk = s.bulk();
    s.clock.advance(days(10));
    let first = s.engine.session(&s.admin).purge().unwrap();
    assert_eq!(first.jobs_expired, 1);
    assert_eq!(s.state(data.id), JobState::Expired);
    assert_eq!(s.state(report.id), JobState::Succeeded);
    s.clock.advance(days(10));
    assert_eq!(s.engine.session(&s.admin).purge().unwrap().jobs_expired, 1);
    assert_eq!(s.state(report.id), JobState::Expired);
    // No retention for bulk packages and no default: they are kept for ever.
    s.clock.advance(days(3650));
    assert_eq!(
        s.engine.session(&s.admin).purge().unwrap(),
        PurgeSummary::default()
    );
    assert_eq!(s.state(bulk.id), JobState::Succeeded);
    let package = &bulk.artifacts[0];
    assert_ne!(package.name, "manifest.json");
    let bytes = read(&s.engine, &s.admin, bulk.id, Some(&package.name)).unwrap();
    assert_eq!(sha256_hex(&bytes), package.sha256);
}

#[test]
fn a_default_retention_applies_to_kinds_without_their_own() {
    let s = setup(|b| {
        b.retention(days(5))
            .retention_for(JobKind::Report, days(50))
    });
    let data = s.data(&["DM"]);
    let report = s.report();
    let bulk = s.bulk();
    s.clock.advance(days(5));
    let summary = s.engine.session(&s.admin).purge().unwrap();
    assert_eq!(summary.jobs_expired, 2);
    assert_eq!(s.state(data.id), JobState::Expired);
    assert_eq!(s.state(bulk.id), JobState::Expired);
    assert_eq!(s.state(report.id), JobState::Succeeded);
}

#[test]
fn a_job_expires_at_exactly_its_retention_time_and_not_a_second_before() {
    let s = setup(|b| b.retention(days(30)));
    let job = s.data(&["DM"]);
    let finished = job.finished_at.unwrap();
    s.clock
        .set(finished + days(30) - chrono::Duration::seconds(1));
    assert_eq!(
        s.engine.session(&s.admin).purge().unwrap(),
        PurgeSummary::default()
    );
    assert_eq!(s.state(job.id), JobState::Succeeded);
    assert!(read(&s.engine, &s.admin, job.id, None).is_ok());
    s.clock.set(finished + days(30));
    assert_eq!(s.engine.session(&s.admin).purge().unwrap().jobs_expired, 1);
    assert_eq!(s.state(job.id), JobState::Expired);
}

#[test]
fn expiry_deletes_the_bytes_and_keeps_the_record_the_manifest_and_the_checksums() {
    let s = setup(|b| b.retention(days(30)));
    let job = s.data(&["DM", "AE"]);
    let before = s.files(job.id);
    let names: Vec<&str> = before.keys().map(String::as_str).collect();
    assert_eq!(names, ["ae.txt", "dm.txt", "manifest.json"]);
    let manifest_bytes = before["manifest.json"].clone();
    s.clock.advance(days(30));
    let summary = s.engine.session(&s.admin).purge().unwrap();
    // The oracle: the files as they were on disk (unencrypted, so their sizes are the recorded sizes).
    assert_eq!(
        summary,
        PurgeSummary {
            jobs_expired: 1,
            artifacts_deleted: 2,
            bytes_freed: (before["ae.txt"].len() + before["dm.txt"].len()) as u64,
        }
    );
    let after = s.files(job.id);
    assert_eq!(
        after.keys().map(String::as_str).collect::<Vec<_>>(),
        ["manifest.json"],
        "only the manifest stays on disk"
    );
    assert_eq!(after["manifest.json"], manifest_bytes);

    let record = s.engine.get_job(&s.admin, job.id).unwrap();
    assert_eq!(record.state, JobState::Expired);
    assert_eq!(
        record.artifacts, job.artifacts,
        "the record keeps its artifacts' names, sizes and checksums"
    );
    assert_eq!(record.finished_at, job.finished_at);
    let listed = s
        .engine
        .list_jobs(
            &s.admin,
            trialport_core::request::ListJobsRequest {
                status: Some("expired".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(listed.total, 1);

    // The manifest is still downloadable and verified; it names the deleted files with their checksums.
    let manifest = read(&s.engine, &s.admin, job.id, Some("manifest.json")).unwrap();
    assert_eq!(manifest, manifest_bytes);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        m["files"][0]["sha256"],
        sha256_hex(&before[m["files"][0]["path"].as_str().unwrap()])
    );

    // Any other artifact, named or not, is EXP004 `expired`.
    for artifact in [Some("dm.txt"), Some("ae.txt"), None] {
        let err = read(&s.engine, &s.admin, job.id, artifact).unwrap_err();
        assert_eq!(
            code_reason(&err),
            ("EXP004", "expired".into()),
            "{artifact:?}"
        );
    }
    // Expiring again finds nothing.
    assert_eq!(
        s.engine.session(&s.admin).purge().unwrap(),
        PurgeSummary::default()
    );
}

#[test]
fn each_deletion_is_audited_with_the_artifact_its_size_and_checksum() {
    let s = setup(|b| b.retention(days(1)));
    let job = s.data(&["DM", "AE"]);
    let before = s.files(job.id);
    s.clock.advance(days(1));
    s.engine.session(&s.admin).purge().unwrap();

    let purge = s.events("purge");
    assert_eq!(purge.len(), 1);
    let purge = &purge[0];
    assert_eq!(purge.outcome, Outcome::Success);
    assert_eq!(
        purge.actor.subject,
        s.engine.get_job(&s.admin, job.id).unwrap().requested_by
    );
    assert_eq!(purge.details["jobs_expired"], 1);
    assert_eq!(purge.details["artifacts_deleted"], 2);

    let deleted = s.events("artifact.deleted");
    assert_eq!(deleted.len(), 2, "one event per deleted artifact");
    let mut seen = Vec::new();
    for e in &deleted {
        let name = e.details["artifact"].as_str().unwrap().to_string();
        let bytes = &before[&name];
        assert_eq!(e.details["bytes"], bytes.len() as u64, "{name}");
        assert_eq!(e.details["sha256"], sha256_hex(bytes), "{name}");
        assert_eq!(e.details["reason"], "retention");
        assert_eq!(e.target, format!("job:{}", job.id));
        assert_eq!(e.actor.subject, "system");
        assert_eq!(e.outcome, Outcome::Success);
        assert_eq!((e.org.as_str(), e.study.as_deref()), ("acme", Some("S1")));
        assert_eq!(
            e.request_id, purge.request_id,
            "correlated with the purge call"
        );
        assert!(e.seq < purge.seq);
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["ae.txt", "dm.txt"]);

    let expired = s.events("job.expired");
    assert_eq!(expired.len(), 1);
    let e = &expired[0];
    assert_eq!(e.details["state"], "expired");
    assert_eq!(e.details["from"], "succeeded");
    assert_eq!(e.details["artifacts_deleted"], 2);
    assert_eq!(e.details["kept"], serde_json::json!(["manifest.json"]));
    assert!(deleted.iter().all(|d| d.seq < e.seq) && e.seq < purge.seq);
    let recorded = s.hook.events().len() as u64;
    assert_eq!(s.engine.session(&s.admin).verify_audit().unwrap(), recorded);
}

#[test]
fn purge_is_for_admins_only_and_refusals_are_audited() {
    let s = setup(|b| b.retention(days(1)));
    let job = s.data(&["DM"]);
    s.clock.advance(days(2));
    for role in [
        Role::DataManager,
        Role::Statistician,
        Role::Monitor,
        Role::Auditor,
        Role::Integration,
    ] {
        let cred = s.key(&[role]);
        let err = s.engine.session(&cred).purge().unwrap_err();
        assert_eq!(
            code_reason(&err),
            ("EXP003", "permission_denied".into()),
            "{role:?}"
        );
        assert_eq!(err.details()["permission"], "retention:purge");
        let last = s.events("purge").pop().unwrap();
        assert_eq!(last.outcome, Outcome::Denied, "{role:?}");
        assert_eq!(last.details["reason"], "permission_denied");
    }
    let err = s.engine.session("ApiKey tp_nope").purge().unwrap_err();
    assert_eq!(err.code().as_str(), "EXP003");
    assert_eq!(s.events("purge").pop().unwrap().outcome, Outcome::Denied);
    assert_eq!(
        s.state(job.id),
        JobState::Succeeded,
        "refused purges expire nothing"
    );
    assert!(s.events("artifact.deleted").is_empty());
    assert_eq!(s.engine.session(&s.admin).purge().unwrap().jobs_expired, 1);
}

#[test]
fn failed_cancelled_and_not_yet_due_jobs_are_left_alone() {
    let s = setup(|b| b.retention(days(7)));
    let failed = s
        .engine
        .export_data(&s.admin, ExportRequest::data("BAD", &["DM"], "lines"))
        .unwrap();
    let failed = s.run(failed);
    assert_eq!(failed.state, JobState::Failed);
    let old = s.data(&["DM"]);
    s.clock.advance(days(5));
    let young = s.data(&["AE"]);
    s.clock.advance(days(2));
    let summary = s.engine.session(&s.admin).purge().unwrap();
    assert_eq!(summary.jobs_expired, 1);
    assert_eq!(s.state(old.id), JobState::Expired);
    assert_eq!(s.state(young.id), JobState::Succeeded);
    assert!(read(&s.engine, &s.admin, young.id, None).is_ok());
    assert_eq!(s.state(failed.id), JobState::Failed);

    // A cancelled job: queued on an engine without workers, then cancelled.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(chrono::Utc::now()));
    let hook = RecordingHook::new();
    let e = builder(tmp.path(), &clock, &hook)
        .workers(0)
        .retention(days(1))
        .sweep_interval(None)
        .build()
        .unwrap();
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    assert_eq!(e.cancel(&admin, job.id).unwrap().state, JobState::Cancelled);
    clock.advance(days(30));
    assert_eq!(e.session(&admin).purge().unwrap(), PurgeSummary::default());
    assert_eq!(
        e.get_job(&admin, job.id).unwrap().state,
        JobState::Cancelled
    );
    assert!(hook.events().iter().all(|ev| ev.action != "job.expired"));
}

#[test]
fn a_download_expires_a_due_job_before_reading() {
    let s = setup(|b| b.retention(days(1)));
    let job = s.data(&["DM"]);
    s.clock.advance(days(1));
    let err = read(&s.engine, &s.admin, job.id, Some("dm.txt")).unwrap_err();
    assert_eq!(code_reason(&err), ("EXP004", "expired".into()));
    assert_eq!(err.field(), Some("artifact"));
    assert_eq!(
        s.files(job.id).keys().collect::<Vec<_>>(),
        ["manifest.json"]
    );
    let download = s.events("download").pop().unwrap();
    assert_eq!(download.outcome, Outcome::Failed);
    let expired = s.events("job.expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].request_id, download.request_id);
    assert_eq!(s.events("artifact.deleted").len(), 1);
}

#[test]
fn the_background_sweep_expires_due_jobs_without_any_call() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("artifacts");
    let clock = Arc::new(FixedClock::new(chrono::Utc::now()));
    let hook = RecordingHook::new();
    let e = builder(&dir, &clock, &hook)
        .retention(days(3))
        .sweep_interval(Some(Duration::from_millis(20)))
        .build()
        .unwrap();
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    let job = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    // Several sweeps pass while nothing is due.
    std::thread::sleep(Duration::from_millis(200));
    assert!(hook
        .events()
        .iter()
        .all(|ev| ev.action != "artifact.deleted"));
    assert!(dir.join(job.artifact_path("dm.txt")).exists());

    clock.advance(days(3));
    let deadline = Instant::now() + Duration::from_secs(20);
    let expired = loop {
        // Only the hook is read: no engine call can expire the job.
        if let Some(ev) = hook
            .events()
            .into_iter()
            .find(|ev| ev.action == "job.expired")
        {
            break ev;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep did not expire the job"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(expired.actor.subject, "system");
    assert_eq!(expired.request_id, format!("job_{}", job.id.simple()));
    // The bytes go once the expiry is recorded (the hook sees the events before they commit).
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.join(job.artifact_path("dm.txt")).exists() {
        assert!(Instant::now() < deadline, "the expired bytes stayed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(dir.join(job.artifact_path("manifest.json")).exists());
    let deleted: Vec<AuditEvent> = hook
        .events()
        .into_iter()
        .filter(|ev| ev.action == "artifact.deleted")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].details["artifact"], "dm.txt");
    assert_eq!(e.get_job(&admin, job.id).unwrap().state, JobState::Expired);

    // Dropping the engine stops the sweep at once, well before its next pass of a long interval.
    let slow = builder(&tmp.path().join("other"), &clock, &hook)
        .retention(days(3))
        .sweep_interval(Some(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let start = Instant::now();
    drop(slow);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn retention_times_must_be_positive() {
    let build = |b: EngineBuilder| b.build().map(|_| ()).unwrap_err();
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(chrono::Utc::now()));
    let hook = RecordingHook::new();
    let b = || builder(tmp.path(), &clock, &hook).workers(0);
    for err in [
        build(b().retention(chrono::Duration::zero())),
        build(b().retention(days(-1))),
        build(
            b().retention(days(1))
                .retention_for(JobKind::Bulk, chrono::Duration::seconds(-5)),
        ),
    ] {
        assert_eq!(code_reason(&err), ("EXP002", "invalid_retention".into()));
        assert_eq!(err.field(), Some("retention"));
    }
    let err = build(b().retention(days(1)).sweep_interval(Some(Duration::ZERO)));
    assert_eq!(
        code_reason(&err),
        ("EXP002", "invalid_sweep_interval".into())
    );
}

#[test]
fn a_homes_retention_settings_are_checked_and_applied_per_kind() {
    // Refused before anything is created: zero days, both defaults, a negative number, an unknown kind.
    let refused = [
        (r#"{"retention_days": 0}"#, "retention_days"),
        (r#"{"retention": {"data_days": 0}}"#, "retention.data_days"),
        (
            r#"{"retention_days": 3, "retention": {"default_days": 4}}"#,
            "retention.default_days",
        ),
    ];
    for (text, field) in refused {
        let tmp = tempfile::tempdir().unwrap();
        let config = HomeConfig::from_settings_json(text).unwrap();
        let err = Home::init_with(tmp.path(), &config).unwrap_err();
        assert_eq!(
            code_reason(&err),
            ("EXP002", "invalid_retention".into()),
            "{text}"
        );
        assert_eq!(err.field(), Some(field), "{text}");
        assert!(!tmp.path().join("config.json").exists(), "{text}");
    }
    for text in [
        r#"{"retention_days": -1}"#,
        r#"{"retention": {"data_days": 1.5}}"#,
        r#"{"retention": {"audit_days": 1}}"#,
    ] {
        let err = HomeConfig::from_settings_json(text).unwrap_err();
        assert_eq!(err.code().as_str(), "EXP002", "{text}");
    }

    // Data 2 days, everything else the default of 9 days.
    let tmp = tempfile::tempdir().unwrap();
    let config = HomeConfig {
        retention: Some(RetentionSettings {
            default_days: Some(9),
            data_days: Some(2),
            ..Default::default()
        }),
        ..HomeConfig::new("acme")
    };
    let (_, key) = Home::init_with_admin_key(tmp.path(), &config).unwrap();
    let admin = format!("ApiKey {key}");
    let text = fs::read_to_string(tmp.path().join("config.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored["retention"],
        serde_json::json!({"default_days": 9, "data_days": 2})
    );
    let clock = Arc::new(FixedClock::new(chrono::Utc::now()));
    let hook = RecordingHook::new();
    let e = Engine::builder()
        .formats(registry())
        .source(source())
        .home(tmp.path())
        .unwrap()
        .clock(clock.clone())
        .audit_hook(Arc::new(hook.clone()))
        .sweep_interval(None)
        .workers(1)
        .build()
        .unwrap();
    // The host's in-memory studies belong to the home's organization.
    e.bind_host_studies().unwrap();
    let data = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    let data = e.wait(&admin, data.id, WAIT).unwrap();
    let bulk = e
        .bulk_export(&admin, ExportRequest::bulk("S1", &["DM"], "lines"))
        .unwrap();
    let bulk = e.wait(&admin, bulk.id, WAIT).unwrap();
    assert_eq!(
        (data.state, bulk.state),
        (JobState::Succeeded, JobState::Succeeded)
    );
    clock.advance(days(2));
    let summary = e.session(&admin).purge().unwrap();
    assert_eq!(summary.jobs_expired, 1);
    assert_eq!(e.get_job(&admin, data.id).unwrap().state, JobState::Expired);
    assert_eq!(
        e.get_job(&admin, bulk.id).unwrap().state,
        JobState::Succeeded
    );
    // The home encrypts at rest: the manifest still decrypts and verifies after expiry.
    let manifest = read(&e, &admin, data.id, Some("manifest.json")).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&manifest).is_ok());
    clock.advance(days(7));
    assert_eq!(e.session(&admin).purge().unwrap().jobs_expired, 1);
    assert_eq!(e.get_job(&admin, bulk.id).unwrap().state, JobState::Expired);
}

// ------------------------------------------------------------------------------------------------------------
// The sweep's reach: every organization in the store, every due job, past jobs kept longer.

/// Waits (up to 20 s) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A succeeded job of `org` and `kind` finished at `finished`, with a data artifact and the manifest, as a worker
/// leaves it; written straight into a store (no engine call), its data file on disk under `dir` when `on_disk`.
fn finished_job(
    org: &str,
    kind: JobKind,
    finished: chrono::DateTime<chrono::Utc>,
    dir: &Path,
    on_disk: bool,
) -> Job {
    let mut job = trialport_core::store::conformance::sample_job(
        org,
        "S1",
        "apikey:000000000000",
        finished - chrono::Duration::seconds(5),
    );
    job.kind = kind;
    job.state = JobState::Succeeded;
    job.started_at = Some(finished - chrono::Duration::seconds(4));
    job.finished_at = Some(finished);
    let artifact = |name: &str, bytes: &[u8]| trialport_core::job::Artifact {
        name: name.into(),
        media_type: "text/plain".into(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        rows: None,
    };
    job.artifacts = vec![
        artifact("dm.txt", b"rows\n"),
        artifact("manifest.json", b"{}"),
    ];
    if on_disk {
        let jd = dir.join(job.id.to_string());
        fs::create_dir_all(&jd).unwrap();
        fs::write(jd.join("dm.txt"), b"rows\n").unwrap();
        fs::write(jd.join("manifest.json"), b"{}").unwrap();
    }
    job
}

/// Records when (wall time) each `job.expired` event arrives.
#[derive(Clone, Default)]
struct ExpiryTimes(Arc<std::sync::Mutex<Vec<Instant>>>);

impl trialport_core::audit::AuditHook for ExpiryTimes {
    fn record(&self, event: &AuditEvent) -> trialport_core::Result<()> {
        if event.action == "job.expired" {
            self.0.lock().unwrap().push(Instant::now());
        }
        Ok(())
    }
}

/// An engine with no workers on `store`, artifacts under `dir`, sweeping every `every`.
fn sweeping(
    store: Arc<trialport_core::store::MemoryStore>,
    dir: &Path,
    clock: &Arc<FixedClock>,
    hook: &RecordingHook,
    every: Duration,
    configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> Engine {
    configure(
        builder(dir, clock, hook)
            .store(store)
            .workers(0)
            .sweep_interval(Some(every)),
    )
    .build()
    .unwrap()
}

#[test]
fn the_sweep_expires_jobs_of_an_organization_that_never_called_this_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("artifacts");
    let db = tmp.path().join("trialport.db");
    let start: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::parse_from_rfc3339("2025-03-01T09:00:00Z")
            .unwrap()
            .into();
    // First engine: organization "beta" exports, then the engine goes away.
    let job = {
        let clock = Arc::new(FixedClock::new(start));
        let hook = RecordingHook::new();
        let store = Arc::new(trialport_core::store::SqliteStore::open(&db).unwrap());
        let e = builder(&dir, &clock, &hook)
            .store(store)
            .retention(days(3))
            .sweep_interval(None)
            .build()
            .unwrap();
        let admin = format!("ApiKey {}", e.create_initial_admin_key("beta").unwrap());
        let job = e
            .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
            .unwrap();
        let job = e.wait(&admin, job.id, WAIT).unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
        job
    };
    let data = dir.join(job.artifact_path("dm.txt"));
    assert!(data.exists());

    // Second engine on the same database, days later, sweeping; nobody of "beta" (nobody at all) calls it.
    let clock = Arc::new(FixedClock::new(start + days(3)));
    let hook = RecordingHook::new();
    let store = Arc::new(trialport_core::store::SqliteStore::open(&db).unwrap());
    let e = builder(&dir, &clock, &hook)
        .store(store.clone())
        .workers(0)
        .retention(days(3))
        .sweep_interval(Some(Duration::from_millis(20)))
        .build()
        .unwrap();
    eventually("the sweep expires beta's job", || {
        hook.events().iter().any(|ev| ev.action == "job.expired")
    });
    drop(e);
    let expired = trialport_core::job::JobReads::get_job(&*store, job.id).unwrap();
    assert_eq!(expired.state, JobState::Expired);
    assert_eq!(
        expired.artifacts, job.artifacts,
        "the record keeps every artifact"
    );
    assert!(!data.exists(), "the data file is deleted");
    assert!(dir.join(job.artifact_path("manifest.json")).exists());
    let events = hook.events();
    let ev = events.iter().find(|ev| ev.action == "job.expired").unwrap();
    assert_eq!(
        (
            ev.org.as_str(),
            ev.actor.subject.as_str(),
            ev.target.clone()
        ),
        ("beta", "system", format!("job:{}", job.id))
    );
    assert_eq!(ev.request_id, format!("job_{}", job.id.simple()));
    assert_eq!(
        events
            .iter()
            .filter(|ev| ev.action == "artifact.deleted")
            .count(),
        1
    );
}

#[test]
fn the_sweep_expires_every_due_job_over_many_pages_and_organizations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("artifacts");
    let now: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
            .unwrap()
            .into();
    let store = Arc::new(trialport_core::store::MemoryStore::new());
    // 1,100 due jobs (more than two of the sweep's pages) in 7 organizations, finished times repeating, plus 30
    // finished too recently.
    let mut due = Vec::new();
    for i in 0..1100i64 {
        let org = format!("org-{}", i % 7);
        let finished = now - days(2) - chrono::Duration::minutes(i / 3);
        let job = finished_job(&org, JobKind::Data, finished, &dir, i % 100 == 0);
        trialport_core::store::conformance::write(&*store, |tx| tx.insert_job(&job)).unwrap();
        due.push(job);
    }
    let mut young = Vec::new();
    for i in 0..30i64 {
        let job = finished_job(
            "org-1",
            JobKind::Data,
            now - chrono::Duration::hours(i),
            &dir,
            false,
        );
        trialport_core::store::conformance::write(&*store, |tx| tx.insert_job(&job)).unwrap();
        young.push(job);
    }
    let clock = Arc::new(FixedClock::new(now));
    let hook = RecordingHook::new();
    // One pass expires them all: passes are a second apart, expiries within a pass are not.
    let times = ExpiryTimes::default();
    let every = Duration::from_secs(1);
    let e = sweeping(store.clone(), &dir, &clock, &hook, every, |b| {
        b.retention(days(2)).audit_hook(Arc::new(times.clone()))
    });
    let state = |id| {
        trialport_core::job::JobReads::get_job(&*store, id)
            .unwrap()
            .state
    };
    eventually("every due job expires", || {
        due.iter().all(|j| state(j.id) == JobState::Expired)
    });
    // Another pass: nothing else changes, nothing expires twice.
    std::thread::sleep(every + Duration::from_millis(200));
    drop(e);
    let times = times.0.lock().unwrap().clone();
    assert_eq!(times.len(), 1100);
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap < every,
        "the due jobs took more than one pass (a gap of {gap:?})"
    );
    assert!(young.iter().all(|j| state(j.id) == JobState::Succeeded));
    let expired: Vec<AuditEvent> = hook
        .events()
        .into_iter()
        .filter(|ev| ev.action == "job.expired")
        .collect();
    assert_eq!(expired.len(), 1100, "each due job expired once");
    let orgs: std::collections::BTreeSet<&str> = expired.iter().map(|ev| ev.org.as_str()).collect();
    assert_eq!(orgs.len(), 7);
    for job in due.iter().step_by(100) {
        let jd = dir.join(job.id.to_string());
        assert!(!jd.join("dm.txt").exists());
        assert!(jd.join("manifest.json").exists());
    }
}

#[test]
fn jobs_kept_longer_do_not_hold_up_later_due_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("artifacts");
    let now: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
            .unwrap()
            .into();
    let store = Arc::new(trialport_core::store::MemoryStore::new());
    let insert = |job: &Job| {
        trialport_core::store::conformance::write(&*store, |tx| tx.insert_job(job)).unwrap();
    };
    // The oldest: 700 bulk jobs (kept 30 days) finished 10 days ago, more than a page of the sweep; then 40 data
    // jobs (kept 1 day) finished 2 days ago, and one bulk job finished 31 days ago, due.
    let kept: Vec<Job> = (0..700i64)
        .map(|i| {
            let at = now - days(10) - chrono::Duration::seconds(i);
            finished_job(&format!("org-{}", i % 3), JobKind::Bulk, at, &dir, i < 3)
        })
        .collect();
    let due: Vec<Job> = (0..40i64)
        .map(|i| {
            let at = now - days(2) + chrono::Duration::seconds(i);
            finished_job(&format!("org-{}", i % 5), JobKind::Data, at, &dir, i < 3)
        })
        .collect();
    let old_bulk = finished_job("org-9", JobKind::Bulk, now - days(31), &dir, true);
    kept.iter().chain(&due).chain([&old_bulk]).for_each(insert);
    let clock = Arc::new(FixedClock::new(now));
    let hook = RecordingHook::new();
    let e = sweeping(
        store.clone(),
        &dir,
        &clock,
        &hook,
        Duration::from_millis(20),
        |b| b.retention(days(1)).retention_for(JobKind::Bulk, days(30)),
    );
    let state = |id| {
        trialport_core::job::JobReads::get_job(&*store, id)
            .unwrap()
            .state
    };
    eventually("the due data jobs and the old bulk job expire", || {
        due.iter()
            .chain([&old_bulk])
            .all(|j| state(j.id) == JobState::Expired)
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(e);
    assert!(
        kept.iter().all(|j| state(j.id) == JobState::Succeeded),
        "bulk jobs within their 30 days stay"
    );
    for job in &kept[..3] {
        assert!(dir.join(job.id.to_string()).join("dm.txt").exists());
    }
    for job in due[..3].iter().chain([&old_bulk]) {
        assert!(!dir.join(job.id.to_string()).join("dm.txt").exists());
    }
    let expired = hook
        .events()
        .into_iter()
        .filter(|ev| ev.action == "job.expired")
        .count();
    assert_eq!(expired, 41);
}

#[test]
fn the_operator_and_the_home_admin_purge_the_home_other_admins_their_organization() {
    let s = setup(|b| b.retention(days(1)).home_org("acme"));
    let new_key = |cred: &str, org: &str, roles: &[Role]| {
        let (text, _) = s
            .engine
            .session(cred)
            .create_api_key(NewApiKey {
                name: "purge scope".into(),
                org: Some(org.into()),
                roles: roles.to_vec(),
                studies: vec!["*".into()],
                expires_at: None,
            })
            .unwrap();
        format!("ApiKey {text}")
    };
    // The home's unscoped admin makes an operator, which gives organization globex an admin.
    let operator = new_key(&s.admin, "acme", &[Role::Operator]);
    let globex = new_key(&operator, "globex", &[Role::Admin]);
    let export = |cred: &str| {
        let job = s
            .engine
            .export_data(cred, ExportRequest::data("S1", &["DM"], "lines"))
            .unwrap();
        let done = s.engine.wait(cred, job.id, WAIT).unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
        done.id
    };
    let last_purge = || s.events("purge").pop().unwrap();

    // Another organization's admin purges its own organization's due jobs, and nothing of the home's.
    let (acme_job, globex_job) = (export(&s.admin), export(&globex));
    s.clock.advance(days(2));
    assert_eq!(s.engine.session(&globex).purge().unwrap().jobs_expired, 1);
    assert_eq!(last_purge().target, "org:globex");
    assert_eq!(last_purge().details["scope"], "organization");
    assert_eq!(
        s.engine.get_job(&globex, globex_job).unwrap().state,
        JobState::Expired
    );
    assert_eq!(s.state(acme_job), JobState::Succeeded);
    // The operator purges the home: the other organization's due job too.
    let globex_job = export(&globex);
    s.clock.advance(days(2));
    let summary = s.engine.session(&operator).purge().unwrap();
    assert_eq!(summary.jobs_expired, 2);
    assert_eq!(last_purge().target, "home");
    assert_eq!(last_purge().details["scope"], "home");
    assert_eq!(s.state(acme_job), JobState::Expired);
    assert_eq!(
        s.engine.get_job(&globex, globex_job).unwrap().state,
        JobState::Expired
    );
    // So does the unscoped admin of the home's organization; each expiry is recorded with the purge's request.
    let (acme_job, globex_job) = (export(&s.admin), export(&globex));
    s.clock.advance(days(2));
    assert_eq!(s.engine.session(&s.admin).purge().unwrap().jobs_expired, 2);
    assert_eq!(last_purge().target, "home");
    assert_eq!(s.state(acme_job), JobState::Expired);
    assert_eq!(
        s.engine.get_job(&globex, globex_job).unwrap().state,
        JobState::Expired
    );
    let request = last_purge().request_id.clone();
    let expired: Vec<_> = s
        .events("job.expired")
        .into_iter()
        .filter(|e| e.request_id == request)
        .collect();
    assert_eq!(expired.len(), 2);
}
