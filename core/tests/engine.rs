//! The eight operations end to end, each with success and the error codes it can give.
//!
//! Every test runs twice, with API keys (`api_key::<test>`) and with JWT credentials (`jwt::<test>`): the test
//! bodies take a [`Cred`] and make every credential through it, and [`credential_kinds!`] generates one test per
//! kind. The assertions are the same for both kinds; only the audit actor's subject differs, and
//! [`subject_of`] predicts it for each (`apikey:<key id>`, or the token's `sub`).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::json;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::access::Role;
use trialport_core::audit::{AuditEvent, AuditHook, Outcome, RecordingHook};
use trialport_core::clock::FixedClock;
use trialport_core::document::{
    ChartKind, ChartSpec, DashboardSpec, Measure, ReportSpec, SectionSpec, TableSpec, TileSpec,
};
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::error::{Error, ErrorCode};
use trialport_core::job::JobState;
use trialport_core::request::{
    DatasetSelection, ExportRequest, ListJobsRequest, PackageContainer, PackageKind,
};
use trialport_core::sink::MemorySink;
use trialport_core::source::{Filter, FilterOp, SortKey};
use uuid::Uuid;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn code(e: &Error) -> &'static str {
    e.code().as_str()
}

fn read_all(engine: &Engine, cred: &str, job: Uuid, artifact: Option<&str>) -> Vec<u8> {
    let mut d = engine.download(cred, job, artifact).unwrap();
    let mut buf = Vec::new();
    d.reader.read_to_end(&mut buf).unwrap();
    buf
}

fn export_data_succeeds_with_artifacts_manifest_and_matching_checksums(cred: Cred) {
    let (e, admin) = cred.engine(2);
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(done.progress.rows_written, 10);
    assert_eq!(done.progress.datasets_done, 1);
    let names: Vec<_> = done.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["dm.txt", "manifest.json"]);
    let bytes = read_all(&e, &admin, job.id, None);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert_eq!(text.lines().count(), 11);
    assert!(text.starts_with("USUBJID|SEX|AGE|WEIGHT\nS1-000|F|20|50.5\n"));
    let (n, sha) = trialport_core::hashing::sha256_of(&bytes[..]).unwrap();
    assert_eq!(n, done.artifacts[0].bytes);
    assert_eq!(sha, done.artifacts[0].sha256);
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_all(&e, &admin, job.id, Some("manifest.json"))).unwrap();
    assert_eq!(manifest["files"][0]["rows"], 10);
    assert_eq!(manifest["files"][0]["source_rows"], 10);
    assert_eq!(manifest["files"][0]["sha256"], done.artifacts[0].sha256);
    assert_eq!(manifest["study"], "S1");
    assert_eq!(manifest["requested_by"]["name"], "initial admin");
    assert_eq!(done.requested_by, subject_of(&admin));
    assert_eq!(manifest["requested_by"]["subject"], subject_of(&admin));
}

fn export_data_applies_columns_filters_and_options(cred: Cred) {
    let (e, admin) = cred.engine(1);
    let mut req = ExportRequest::data("S1", &[], "lines");
    *req.datasets_mut().unwrap() = vec![DatasetSelection::Selected {
        name: "DM".into(),
        columns: Some(vec!["USUBJID".into(), "AGE".into()]),
        filters: vec![Filter::new("SEX", FilterOp::Eq, "F")],
    }];
    req.options = trialport_core::format::FormatOptions::new().with("sep", ";");
    let job = e.export_data(&admin, req).unwrap();
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let text = String::from_utf8(read_all(&e, &admin, job.id, Some("dm.txt"))).unwrap();
    assert_eq!(text.lines().next(), Some("USUBJID;AGE"));
    assert_eq!(text.lines().count(), 1 + 5);
}

fn export_data_errors(cred: Cred) {
    let (e, admin) = cred.engine(0);
    let statistician_s1 = cred.key(&e, &admin, &[Role::Statistician], &["S1"]);
    let monitor = cred.key(&e, &admin, &[Role::Monitor], &["*"]);
    let req = || ExportRequest::data("S1", &["DM"], "lines");
    // EXP003: no credential, malformed, unknown key, bearer without JWT config, other study, role lacking it.
    for bad in ["", "ApiKey nope", "Token x", "Bearer a.b.c"] {
        assert_eq!(
            code(&e.export_data(bad, req()).unwrap_err()),
            "EXP003",
            "{bad}"
        );
    }
    let err = e
        .export_data(
            &statistician_s1,
            ExportRequest::data("S2", &["DM"], "lines"),
        )
        .unwrap_err();
    assert_eq!((code(&err), err.reason()), ("EXP003", "permission_denied"));
    assert_eq!(err.details()["scope"], "study");
    let err = e.export_data(&monitor, req()).unwrap_err();
    assert_eq!(err.details()["scope"], "role");
    // EXP001: unknown format, study, dataset.
    let err = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "nope"))
        .unwrap_err();
    assert_eq!((code(&err), err.field()), ("EXP001", Some("format")));
    let err = e
        .export_data(&admin, ExportRequest::data("S9", &["DM"], "lines"))
        .unwrap_err();
    assert_eq!((code(&err), err.field()), ("EXP001", Some("study")));
    let err = e
        .export_data(&admin, ExportRequest::data("S1", &["LB"], "lines"))
        .unwrap_err();
    assert_eq!((code(&err), err.field()), ("EXP001", Some("datasets")));
    // EXP002: no datasets, duplicates, bad option, bad filter, unknown column, bad names.
    let cases: Vec<(ExportRequest, &str)> = vec![
        (ExportRequest::data("S1", &[], "lines"), "missing_datasets"),
        (
            ExportRequest::data("S1", &["DM", "dm"], "lines"),
            "duplicate_dataset",
        ),
        (
            {
                let mut r = req();
                r.options = r.options.with("delimiter", ",");
                r
            },
            "unknown_option",
        ),
        (
            {
                let mut r = req();
                *r.datasets_mut().unwrap() = vec![DatasetSelection::Selected {
                    name: "DM".into(),
                    columns: None,
                    filters: vec![Filter::new("AGE", FilterOp::Gt, "old")],
                }];
                r
            },
            "invalid_filter",
        ),
        (
            {
                let mut r = req();
                *r.datasets_mut().unwrap() = vec![DatasetSelection::Selected {
                    name: "DM".into(),
                    columns: Some(vec!["NOPE".into()]),
                    filters: vec![],
                }];
                r
            },
            "unknown_column",
        ),
        (
            ExportRequest::data("../S1", &["DM"], "lines"),
            "invalid_name",
        ),
    ];
    for (r, reason) in cases {
        let err = e.export_data(&admin, r).unwrap_err();
        assert_eq!((code(&err), err.reason()), ("EXP002", reason));
    }
    // EXP004: an idempotency key reused for another request; the same request returns the same job.
    let mut r = req();
    r.idempotency_key = Some("k1".into());
    let first = e.export_data(&admin, r.clone()).unwrap();
    let again = e.export_data(&admin, r.clone()).unwrap();
    assert_eq!(first.id, again.id);
    *r.datasets_mut().unwrap() = vec!["AE".into()];
    let err = e.export_data(&admin, r).unwrap_err();
    assert_eq!(
        (code(&err), err.reason()),
        ("EXP004", "idempotency_conflict")
    );
    // Errors carry the request id and render the standard shape.
    let v = err.render();
    assert_eq!(v["error"]["code"], "EXP004");
    assert!(v["error"]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
    assert!(v["error"]["timestamp"].as_str().unwrap().ends_with('Z'));
}

fn list_jobs_pages_and_validates(cred: Cred) {
    let (e, admin) = cred.engine(0);
    for _ in 0..25 {
        e.export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
            .unwrap();
    }
    for _ in 0..3 {
        e.export_data(&admin, ExportRequest::data("S2", &["DM"], "lines"))
            .unwrap();
    }
    let page = e.list_jobs(&admin, ListJobsRequest::default()).unwrap();
    assert_eq!(
        (page.items.len(), page.page, page.limit, page.total),
        (20, 1, 20, 28)
    );
    let page2 = e
        .list_jobs(
            &admin,
            ListJobsRequest {
                page: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page2.items.len(), 8);
    assert!(page.items[0].created_at >= page2.items[0].created_at);
    let s1_only = cred.key(&e, &admin, &[Role::Statistician], &["S1"]);
    let page = e.list_jobs(&s1_only, ListJobsRequest::default()).unwrap();
    assert_eq!(page.total, 25);
    let queued = e
        .list_jobs(
            &admin,
            ListJobsRequest {
                status: Some("succeeded".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(queued.total, 0);
    for limit in [0, 101, -1] {
        let err = e
            .list_jobs(
                &admin,
                ListJobsRequest {
                    limit: Some(limit),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!((code(&err), err.field()), ("EXP002", Some("limit")));
        assert_eq!(err.render()["error"]["details"]["max"], 100);
    }
    let err = e
        .list_jobs(
            &admin,
            ListJobsRequest {
                page: Some(0),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.field(), Some("page"));
    let err = e
        .list_jobs(
            &admin,
            ListJobsRequest {
                status: Some("done".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.field(), Some("status"));
    let err = e
        .list_jobs(
            &s1_only,
            ListJobsRequest {
                study: Some("S2".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code(&err), "EXP003");
    assert_eq!(
        code(&e.list_jobs("", ListJobsRequest::default()).unwrap_err()),
        "EXP003"
    );
}

fn get_job_and_its_errors(cred: Cred) {
    let (e, admin) = cred.engine(0);
    let job = e
        .export_data(&admin, ExportRequest::data("S2", &["DM"], "lines"))
        .unwrap();
    assert_eq!(e.get_job(&admin, job.id).unwrap().id, job.id);
    let err = e.get_job(&admin, Uuid::now_v7()).unwrap_err();
    assert_eq!(code(&err), "EXP001");
    let s1_only = cred.key(&e, &admin, &[Role::Auditor], &["S1"]);
    assert_eq!(code(&e.get_job(&s1_only, job.id).unwrap_err()), "EXP003");
    assert_eq!(code(&e.get_job("ApiKey x", job.id).unwrap_err()), "EXP003");
}

fn download_errors_and_recheck_of_permission(cred: Cred) {
    let (e, admin) = cred.engine(0);
    let queued = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    let err = e.download(&admin, queued.id, None).unwrap_err();
    assert_eq!((code(&err), err.reason()), ("EXP004", "job_not_succeeded"));
    assert_eq!(
        code(&e.download(&admin, Uuid::now_v7(), None).unwrap_err()),
        "EXP001"
    );
    drop(e);

    let (e, admin) = cred.engine(1);
    let two = e
        .export_data(&admin, ExportRequest::data("S1", &["DM", "AE"], "lines"))
        .unwrap();
    e.wait(&admin, two.id, WAIT).unwrap();
    let err = e.download(&admin, two.id, None).unwrap_err();
    assert_eq!((code(&err), err.reason()), ("EXP002", "artifact_required"));
    let err = e.download(&admin, two.id, Some("lb.txt")).unwrap_err();
    assert_eq!((code(&err), err.field()), ("EXP001", Some("artifact")));
    assert_eq!(read_all(&e, &admin, two.id, Some("ae.txt")).len() as u64, {
        e.get_job(&admin, two.id)
            .unwrap()
            .artifact("ae.txt")
            .unwrap()
            .bytes
    });
    // Permission is checked again at download: a monitor of S1 reads, and once its key is revoked it is refused.
    let reader = cred.key(&e, &admin, &[Role::Monitor], &["S1"]);
    read_all(&e, &reader, two.id, Some("ae.txt"));
    // Revocation is API keys only: a token has no key record to revoke (the identity provider's expiry ends
    // it, and engine_jwt.rs checks token times at every call).
    if cred == Cred::ApiKey {
        let subject = subject_of(&reader);
        e.session(&admin)
            .revoke_api_key(subject.strip_prefix("apikey:").unwrap())
            .unwrap();
        let err = e.download(&reader, two.id, Some("ae.txt")).unwrap_err();
        assert_eq!((code(&err), err.reason()), ("EXP003", "key_revoked"));
    }
    let auditor = cred.key(&e, &admin, &[Role::Auditor], &["S1"]);
    assert_eq!(
        e.download(&auditor, two.id, Some("ae.txt"))
            .unwrap_err()
            .reason(),
        "permission_denied"
    );
}

fn downloads_detect_tampered_artifacts(cred: Cred) {
    let sink = MemorySink::new();
    let e = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(source())
        .sink(Arc::new(sink.clone()))
        .workers(1)
        .build()
        .unwrap();
    let admin = cred.admin(&e);
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    e.wait(&admin, job.id, WAIT).unwrap();
    let path = format!("{}/1/dm.txt", job.id);
    let mut bytes = sink.get(&path).unwrap();
    bytes[0] ^= 1;
    use trialport_core::sink::Sink;
    sink.delete(&path).unwrap();
    let mut w = sink.create(&path).unwrap();
    std::io::Write::write_all(&mut w, &bytes).unwrap();
    w.complete().unwrap();
    let mut d = e.download(&admin, job.id, None).unwrap();
    let mut out = Vec::new();
    let err = d.reader.read_to_end(&mut out).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

fn expired_artifacts_are_deleted_and_refused(cred: Cred) {
    let clock = Arc::new(FixedClock::new(chrono::Utc::now()));
    let sink = MemorySink::new();
    let e = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(source())
        .sink(Arc::new(sink.clone()))
        .clock(clock.clone())
        .retention(chrono::Duration::days(30))
        .workers(1)
        .build()
        .unwrap();
    let admin = cred.admin(&e);
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    e.wait(&admin, job.id, WAIT).unwrap();
    read_all(&e, &admin, job.id, None);
    clock.advance(chrono::Duration::days(31));
    let err = e.download(&admin, job.id, None).unwrap_err();
    assert_eq!((code(&err), err.reason()), ("EXP004", "expired"));
    assert_eq!(
        sink.paths(),
        [format!("{}/1/manifest.json", job.id)],
        "expired bytes were kept (only the manifest stays)"
    );
    let job = e.get_job(&admin, job.id).unwrap();
    assert_eq!(job.state, JobState::Expired);
    assert_eq!(
        job.artifacts.len(),
        2,
        "the record keeps its artifacts' checksums"
    );
}

fn formats_lists_registered_formats(cred: Cred) {
    let (e, admin) = cred.engine(0);
    let infos = e.formats(&admin).unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].id, "lines");
    assert_eq!(infos[0].options[0].default, "|");
    assert_eq!(code(&e.formats("").unwrap_err()), "EXP003");
}

fn bulk_export_writes_a_zip_with_a_manifest(cred: Cred) {
    let (e, admin) = cred.engine(1);
    let job = e
        .bulk_export(&admin, ExportRequest::bulk("S1", &[], "lines"))
        .unwrap();
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(done.progress.datasets_total, 2);
    let bytes = read_all(&e, &admin, job.id, None);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["S1/ae.txt", "S1/dm.txt", "manifest.json"]);
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    for f in manifest["files"].as_array().unwrap() {
        let mut content = Vec::new();
        zip.by_name(f["path"].as_str().unwrap())
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        let (n, sha) = trialport_core::hashing::sha256_of(&content[..]).unwrap();
        assert_eq!(json!(n), f["bytes"]);
        assert_eq!(json!(sha), f["sha256"]);
    }
    let ae = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dataset"] == "AE")
        .unwrap();
    assert_eq!(ae["rows"], 4);

    let mut bad = ExportRequest::bulk("S1", &["XX"], "lines");
    assert_eq!(
        code(&e.bulk_export(&admin, bad.clone()).unwrap_err()),
        "EXP001"
    );
    *bad.datasets_mut().unwrap() = vec![];
    bad = bad.package(PackageKind::Ectd);
    // The test engine's "lines" format is not XPT v5, so an eCTD package is refused before a job exists.
    assert_eq!(
        e.bulk_export(&admin, bad.clone()).unwrap_err().reason(),
        "ectd_requires_xpt_v5"
    );
    bad = bad
        .package(PackageKind::Zip)
        .container(PackageContainer::Directory);
    assert_eq!(
        e.bulk_export(&admin, bad.clone()).unwrap_err().reason(),
        "unsupported_container"
    );
    bad = bad.container(PackageContainer::Zip);
    let stat = cred.key(&e, &admin, &[Role::Statistician], &["*"]);
    assert_eq!(code(&e.bulk_export(&stat, bad).unwrap_err()), "EXP003");
}

fn report_spec() -> ReportSpec {
    ReportSpec {
        study: "S1".into(),
        title: "Safety <summary>".into(),
        data_cutoff: None,
        parameters: [("cutoff".to_string(), "2025-01-01".to_string())].into(),
        sections: vec![
            SectionSpec::Text {
                heading: Some("Intro".into()),
                body: "Hello".into(),
            },
            SectionSpec::Table(TableSpec {
                heading: None,
                dataset: "DM".into(),
                columns: Some(vec!["USUBJID".into(), "AGE".into()]),
                filters: vec![Filter::new("SEX", FilterOp::Eq, "M")],
                sort: vec![SortKey {
                    column: "AGE".into(),
                    descending: true,
                }],
                limit: Some(3),
                footnotes: vec![],
            }),
        ],
    }
}

fn export_report_renders_tables_with_filters_sort_and_limit(cred: Cred) {
    let (e, admin) = cred.engine(1);
    let job = e
        .export_report(&admin, ExportRequest::report(report_spec(), "lines"))
        .unwrap();
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    let text = String::from_utf8(read_all(&e, &admin, job.id, None)).unwrap();
    assert_eq!(text, "title=Safety <summary>\ntext=Hello\ntable=3/5\n");

    let mut bad = report_spec();
    if let SectionSpec::Table(t) = &mut bad.sections[1] {
        t.sort[0].column = "WEIGHT".into();
    }
    let req = |r: ReportSpec| ExportRequest::report(r, "lines");
    let err = e.export_report(&admin, req(bad)).unwrap_err();
    assert_eq!((code(&err), err.field()), ("EXP002", Some("sort")));
    let mut bad = report_spec();
    if let SectionSpec::Table(t) = &mut bad.sections[1] {
        t.dataset = "LB".into();
    }
    assert_eq!(
        code(&e.export_report(&admin, req(bad)).unwrap_err()),
        "EXP001"
    );
    let auditor = cred.key(&e, &admin, &[Role::Auditor], &["*"]);
    assert_eq!(
        code(&e.export_report(&auditor, req(report_spec())).unwrap_err()),
        "EXP003"
    );
}

fn export_dashboard_computes_kpis_and_charts(cred: Cred) {
    let (e, admin) = cred.engine(1);
    let spec = DashboardSpec {
        study: "S1".into(),
        title: "Overview".into(),
        data_cutoff: None,
        tiles: vec![
            TileSpec {
                label: "Subjects".into(),
                dataset: "DM".into(),
                measure: Measure::Count,
                column: None,
                filters: vec![],
            },
            TileSpec {
                label: "Subjects with AEs".into(),
                dataset: "AE".into(),
                measure: Measure::DistinctCount,
                column: Some("USUBJID".into()),
                filters: vec![],
            },
            TileSpec {
                label: "Mean age".into(),
                dataset: "DM".into(),
                measure: Measure::Mean,
                column: Some("AGE".into()),
                filters: vec![],
            },
        ],
        tables: vec![],
        charts: vec![ChartSpec {
            title: "AEs by severity".into(),
            kind: ChartKind::Bar,
            dataset: "AE".into(),
            x: "AESEV".into(),
            measure: Measure::Count,
            column: None,
            filters: vec![],
        }],
    };
    let req = |d: DashboardSpec| ExportRequest::dashboard(d, "lines");
    let job = e.export_dashboard(&admin, req(spec.clone())).unwrap();
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    let text = String::from_utf8(read_all(&e, &admin, job.id, None)).unwrap();
    // Ages: 20..=25 (first batch of 6) and 20..=23 (second batch of 4): 221 / 10.
    assert_eq!(
        text,
        "title=Overview\nkpi=Subjects=Some(10.0)\nkpi=Subjects with AEs=Some(3.0)\nkpi=Mean age=Some(22.1)\n\
         chart=AEs by severity=[(\"(missing)\", 1.0), (\"MILD\", 2.0), (\"SEVERE\", 1.0)]\n"
    );
    let mut bad = spec.clone();
    bad.tiles[2].column = Some("SEX".into());
    let err = e.export_dashboard(&admin, req(bad)).unwrap_err();
    assert_eq!((code(&err), err.reason()), ("EXP002", "not_numeric"));
    let mut bad = spec;
    bad.charts[0].x = "NOPE".into();
    assert_eq!(
        code(&e.export_dashboard(&admin, req(bad)).unwrap_err()),
        "EXP002"
    );
}

fn cancel_queued_running_and_finished_jobs(cred: Cred) {
    let (e, admin) = cred.engine(0);
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    let c = e.cancel(&admin, job.id).unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    let err = e.cancel(&admin, job.id).unwrap_err();
    assert_eq!((code(&err), err.reason()), ("EXP004", "illegal_transition"));
    assert_eq!(
        code(&e.cancel(&admin, Uuid::now_v7()).unwrap_err()),
        "EXP001"
    );
    let monitor = cred.key(&e, &admin, &[Role::Monitor], &["*"]);
    assert_eq!(code(&e.cancel(&monitor, job.id).unwrap_err()), "EXP003");

    // A running job stops at its next batch and leaves no artifact.
    let sink = MemorySink::new();
    let e = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(Arc::new(SlowSource {
            batches: 1000,
            pause: Duration::from_millis(5),
        }))
        .sink(Arc::new(sink.clone()))
        .workers(1)
        .build()
        .unwrap();
    let admin = cred.admin(&e);
    let job = e
        .export_data(&admin, ExportRequest::data("SLOW", &["BIG"], "lines"))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.get_job(&admin, job.id).unwrap().progress.rows_written == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never made progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    e.cancel(&admin, job.id).unwrap();
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Cancelled);
    assert!(done.artifacts.is_empty());
    assert!(done.progress.rows_written < 100_000);
    assert!(
        sink.paths().is_empty(),
        "a cancelled job left {:?}",
        sink.paths()
    );
}

fn the_audit_trail_records_each_operation_in_order_and_verifies(cred: Cred) {
    let hook = RecordingHook::new();
    let e = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(source())
        .audit_hook(Arc::new(hook.clone()))
        .workers(1)
        .build()
        .unwrap();
    let admin = cred.admin(&e);
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    e.wait(&admin, job.id, WAIT).unwrap();
    let _ = e.export_data("ApiKey bad", ExportRequest::data("S1", &["DM"], "lines"));
    let _ = e.export_data(&admin, ExportRequest::data("S1", &["XX"], "lines"));
    let actions: Vec<(String, Outcome)> = hook.actions();
    let expect: Vec<(&str, Outcome)> = vec![
        ("create_api_key", Outcome::Success),
        ("export_data", Outcome::Success),
        ("job.running", Outcome::Success),
        ("job.succeeded", Outcome::Success),
        ("wait", Outcome::Success),
        ("export_data", Outcome::Denied),
        ("export_data", Outcome::Failed),
    ];
    let actions: Vec<(&str, Outcome)> = actions.iter().map(|(a, o)| (a.as_str(), *o)).collect();
    assert_eq!(actions, expect);
    let events = hook.events();
    assert_eq!(events[1].target, format!("job:{}", job.id));
    // The acting principal: the engine for the initial key, then the admin (`apikey:<id>` or the token's `sub`).
    assert_eq!(events[0].actor.subject, "system");
    for i in [1, 4, 6] {
        assert_eq!(events[i].actor.subject, subject_of(&admin), "event {i}");
        assert_eq!(events[i].actor.name, "initial admin", "event {i}");
        assert_eq!(events[i].actor.org, "acme", "event {i}");
    }
    assert_eq!(events[5].actor.subject, "anonymous");
    assert_eq!(events[5].details["reason"], "invalid_credential");
    assert_eq!(events[5].target, "study:S1");
    assert!(events
        .windows(2)
        .all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash));
    let serialized = serde_json::to_string(&events).unwrap();
    // The whole key, or each segment of the token.
    for secret in secret_of(&admin).split('.') {
        assert!(
            !serialized.contains(secret),
            "a secret reached the audit trail"
        );
    }
    assert_eq!(e.session(&admin).verify_audit().unwrap(), 7);
    let read = e.session(&admin).audit_events(1, 100).unwrap();
    assert_eq!(read.len(), 8, "the verify call itself is audited");
    let stat = cred.key(&e, &admin, &[Role::Statistician], &["*"]);
    assert_eq!(
        code(&e.session(&stat).audit_events(1, 10).unwrap_err()),
        "EXP003"
    );
}

struct FailingHook;
impl AuditHook for FailingHook {
    fn record(&self, _: &AuditEvent) -> trialport_core::Result<()> {
        Err(Error::server(Reason::HookRefused, "down"))
    }
}

fn a_failing_audit_hook_fails_the_operation(cred: Cred) {
    let store = Arc::new(trialport_core::store::MemoryStore::new());
    let ok = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(source())
        .store(store.clone())
        .pepper(&[1u8; 32])
        .workers(0)
        .build()
        .unwrap();
    let admin = cred.admin(&ok);
    drop(ok);
    let e = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(source())
        .store(store.clone())
        .pepper(&[1u8; 32])
        .audit_hook(Arc::new(FailingHook))
        .workers(0)
        .build()
        .unwrap();
    let err = e.formats(&admin).unwrap_err();
    assert_eq!(
        (err.code(), err.reason()),
        (ErrorCode::Server, "audit_failed")
    );
}

fn jobs_survive_a_restart_of_a_home(cred: Cred) {
    let dir = tempfile::tempdir().unwrap();
    trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
    let open = |workers: usize| {
        cred.setup(Engine::builder())
            .formats(registry())
            .source(source())
            .home(dir.path())
            .unwrap()
            .workers(workers)
            .build()
            .unwrap()
    };
    let e = open(0);
    let admin = cred.admin(&e);
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    drop(e);
    let e = open(1);
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert!(dir
        .path()
        .join("artifacts")
        .join(job.id.to_string())
        .join("1")
        .join("dm.txt")
        .is_file());
    assert!(e.session(&admin).verify_audit().unwrap() >= 5);
    let err = e.create_initial_admin_key("acme").unwrap_err();
    assert_eq!(err.reason(), "already_initialized");
}

fn a_job_left_running_by_a_dead_process_is_requeued_but_not_a_live_ones(cred: Cred) {
    let dir = tempfile::tempdir().unwrap();
    trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
    let lease = Duration::from_secs(1);
    let open = |workers: usize, slow: bool| {
        let b = cred
            .setup(Engine::builder())
            .formats(registry())
            .home(dir.path())
            .unwrap()
            .lease(lease);
        let b = if slow {
            b.source(Arc::new(SlowSource {
                batches: 400,
                pause: Duration::from_millis(10),
            }))
        } else {
            b.source(source())
        };
        let e = b.workers(workers).build().unwrap();
        // The host's in-memory studies belong to the home's organization.
        e.bind_host_studies().unwrap();
        e
    };
    let e = open(0, false);
    let admin = cred.admin(&e);
    let job = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    drop(e);
    // A process claims the job for its first attempt and dies without finishing it: its lease is never renewed.
    {
        let store = trialport_core::home::Home::open(dir.path())
            .unwrap()
            .open_store()
            .unwrap();
        trialport_core::store::conformance::write(&store, |tx| {
            let mut j = tx.job(job.id)?.unwrap();
            let now = chrono::Utc::now();
            j.transition(JobState::Running, now)?;
            j.attempt = 1;
            j.lease = Some(trialport_core::job::Lease {
                owner: "gone:1:00000000".into(),
                epoch: 1,
                expires_at: now + chrono::Duration::seconds(1),
            });
            tx.update_job(&j)
        })
        .unwrap();
    }
    let e = open(1, false);
    let done = e.wait(&admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(
        done.attempt, 2,
        "the lost attempt was rescued and a second one ran"
    );
    let trail = e.session(&admin).audit_events(1, 1000).unwrap();
    let requeued: Vec<_> = trail
        .iter()
        .filter(|ev| ev.action == "job.requeued")
        .collect();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].details["reason"], "lease_expired");
    drop(e);

    // While a live engine runs a job and renews its lease, another engine on the home leaves it alone, however
    // long it waits.
    let live = open(1, true);
    let slow = live
        .export_data(&admin, ExportRequest::data("SLOW", &["BIG"], "lines"))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while live.get_job(&admin, slow.id).unwrap().state != JobState::Running {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let other = open(0, true);
    std::thread::sleep(lease * 3);
    let seen = other.get_job(&admin, slow.id).unwrap();
    assert_eq!((seen.state, seen.attempt), (JobState::Running, 1));
    live.cancel(&admin, slow.id).unwrap();
    let done = live.wait(&admin, slow.id, WAIT).unwrap();
    assert_eq!((done.state, done.attempt), (JobState::Cancelled, 1));
}

fn calls_over_the_rate_limit_get_exp006_per_principal(cred: Cred) {
    let e = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(source())
        .rate_limit(0.5, 3)
        .unwrap()
        .workers(0)
        .build()
        .unwrap();
    let admin = cred.admin(&e);
    // Creating an API key is a call of the admin's while minting a token is not, so the principal run out of
    // calls is the new one, which has made none yet in both kinds: its burst of 3 passes, the 4th call fails.
    let other = cred.key(&e, &admin, &[Role::Auditor], &["*"]);
    for _ in 0..3 {
        e.formats(&other).unwrap();
    }
    let err = e.formats(&other).unwrap_err();
    assert_eq!((code(&err), err.reason()), ("EXP006", "rate_limited"));
    assert!(err.details()["retry_after_ms"].as_u64().unwrap() > 0);
    let err = e.list_jobs(&other, ListJobsRequest::default()).unwrap_err();
    assert_eq!(code(&err), "EXP006");
    // Buckets are per principal: the admin still has calls.
    e.formats(&admin).unwrap();
}

fn packages_verify_against_their_manifest_and_tampering_is_found(cred: Cred) {
    let dir = tempfile::tempdir().unwrap();
    trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
    let e = cred
        .setup(Engine::builder())
        .formats(registry())
        .source(source())
        .home(dir.path())
        .unwrap()
        .workers(1)
        .build()
        .unwrap();
    let admin = cred.admin(&e);
    let bulk = e
        .bulk_export(&admin, ExportRequest::bulk("S1", &[], "lines"))
        .unwrap();
    e.wait(&admin, bulk.id, WAIT).unwrap();
    let zip_path = dir.path().join("package.zip");
    std::fs::write(&zip_path, read_all(&e, &admin, bulk.id, None)).unwrap();
    let report = trialport_core::manifest::verify_package(&zip_path).unwrap();
    assert_eq!((report.job_id, report.files_verified), (bulk.id, 2));

    // A job's artifact directory verifies too; one changed byte is found.
    let data = e
        .export_data(&admin, ExportRequest::data("S1", &["DM", "AE"], "lines"))
        .unwrap();
    e.wait(&admin, data.id, WAIT).unwrap();
    // The home encrypts artifacts at rest: the directory to verify is the job's artifacts as downloaded.
    let job = e.get_job(&admin, data.id).unwrap();
    let job_dir = dir.path().join("downloaded");
    std::fs::create_dir_all(&job_dir).unwrap();
    for a in &job.artifacts {
        let bytes = read_all(&e, &admin, data.id, Some(&a.name));
        std::fs::write(job_dir.join(&a.name), bytes).unwrap();
    }
    assert_eq!(
        trialport_core::manifest::verify_package(&job_dir)
            .unwrap()
            .files_verified,
        2
    );
    let dm = job_dir.join("dm.txt");
    let mut bytes = std::fs::read(&dm).unwrap();
    bytes[5] ^= 0x20;
    std::fs::write(&dm, bytes).unwrap();
    let err = trialport_core::manifest::verify_package(&job_dir).unwrap_err();
    assert_eq!(
        (code(&err), err.reason()),
        ("EXP005", "integrity_violation")
    );
    assert_eq!(err.details()["path"], "dm.txt");
    assert_eq!(
        code(&trialport_core::manifest::verify_package(&dir.path().join("nope")).unwrap_err()),
        "EXP001"
    );
}

/// One `#[test]` per credential kind for each test body: `api_key::<name>` and `jwt::<name>`.
macro_rules! credential_kinds {
    ($($name:ident),* $(,)?) => {
        mod api_key {
            $(#[test]
            fn $name() {
                super::$name(super::Cred::ApiKey);
            })*
        }
        mod jwt {
            $(#[test]
            fn $name() {
                super::$name(super::Cred::Jwt);
            })*
        }
    };
}

credential_kinds!(
    export_data_succeeds_with_artifacts_manifest_and_matching_checksums,
    export_data_applies_columns_filters_and_options,
    export_data_errors,
    list_jobs_pages_and_validates,
    get_job_and_its_errors,
    download_errors_and_recheck_of_permission,
    downloads_detect_tampered_artifacts,
    expired_artifacts_are_deleted_and_refused,
    formats_lists_registered_formats,
    bulk_export_writes_a_zip_with_a_manifest,
    export_report_renders_tables_with_filters_sort_and_limit,
    export_dashboard_computes_kpis_and_charts,
    cancel_queued_running_and_finished_jobs,
    the_audit_trail_records_each_operation_in_order_and_verifies,
    a_failing_audit_hook_fails_the_operation,
    jobs_survive_a_restart_of_a_home,
    a_job_left_running_by_a_dead_process_is_requeued_but_not_a_live_ones,
    calls_over_the_rate_limit_get_exp006_per_principal,
    packages_verify_against_their_manifest_and_tampering_is_found,
);

#[test]
fn shutdown_through_a_shared_handle_gives_running_jobs_back_and_claims_no_more() {
    let dir = tempfile::tempdir().unwrap();
    trialport_core::home::Home::init(dir.path(), "acme", None).unwrap();
    let open = |workers: usize| {
        let e = Engine::builder()
            .formats(registry())
            .home(dir.path())
            .unwrap()
            .source(Arc::new(SlowSource {
                batches: 300,
                pause: Duration::from_millis(10),
            }))
            .workers(workers)
            .build()
            .unwrap();
        e.bind_host_studies().unwrap();
        Arc::new(e)
    };
    let e = open(1);
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    let job = e
        .export_data(&admin, ExportRequest::data("SLOW", &["BIG"], "lines"))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while e.get_job(&admin, job.id).unwrap().state != JobState::Running {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Another holder of the engine (a request still in flight) keeps it alive.
    let held = e.clone();
    assert_eq!(e.shutdown(Duration::from_secs(20)), 0);
    let back = held.get_job(&admin, job.id).unwrap();
    assert_eq!(back.state, JobState::Queued, "{back:?}");
    assert!(back.lease.is_none());
    // No more claims: a new job stays queued while the stopped engine lives.
    let next = held
        .export_data(&admin, ExportRequest::data("SLOW", &["BIG"], "lines"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        held.get_job(&admin, next.id).unwrap().state,
        JobState::Queued
    );
    drop(held);
    drop(e);
    // Another engine of the home runs both.
    let e = open(1);
    for id in [job.id, next.id] {
        let done = e.wait(&admin, id, Some(Duration::from_secs(120))).unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    }
}
