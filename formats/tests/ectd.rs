//! The eCTD Module 5 package: `bulk_export` with `package = "ectd"` over SAS-written SDTM and ADaM datasets of the
//! conformance corpus, as a zip and as a directory; the FDA checks over every dataset before a byte is written.
//!
//! The datasets are read from `../shared/conformance` beside the repository; where it is absent the tests say so
//! and pass, unless `TRIALPORT_REQUIRE_CONFORMANCE` is set or `CI=true`.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use trialport_core::clock::FixedClock;
use trialport_core::engine::Engine;
use trialport_core::format::{Described, Format, FormatOptions};
use trialport_core::hashing::sha256_of;
use trialport_core::job::{Job, JobState};
use trialport_core::meta::DatasetMeta;
use trialport_core::request::{ExportRequest, PackageContainer, PackageKind};
use trialport_core::signature::{Meaning, SignatureRequest, SigningSettings};
use trialport_core::sink::LocalDirSink;
use trialport_core::source::{DataSource, MemorySource};
use trialport_formats::xpt::{self, XptFormat};

mod common;
use common::conformance_dir;

/// The CDISC Dataset-JSON example study: SDTM DM, AE, TS and ADaM ADSL, ADTTE (SAS 9.4 XPT files).
const DATASETS: [(&str, &str); 5] = [
    ("DM", "datasetjson-examples/sdtm/dm.xpt"),
    ("AE", "datasetjson-examples/sdtm/ae.xpt"),
    ("TS", "datasetjson-examples/sdtm/ts.xpt"),
    ("ADSL", "datasetjson-examples/adam/adsl.xpt"),
    ("ADTTE", "datasetjson-examples/adam/adtte.xpt"),
];

/// An eCTD package needs an e-signature: the admin's signing password.
const PASSWORD: &str = "correct horse battery";

struct Setup {
    engine: Engine,
    clock: Arc<FixedClock>,
    admin: String,
    artifacts: tempfile::TempDir,
    source: Arc<MemorySource>,
}

fn setup(dir: &Path) -> Setup {
    setup_with_retention(dir, None)
}

/// [`setup`], the artifacts kept for `retention` when given.
fn setup_with_retention(dir: &Path, retention: Option<chrono::Duration>) -> Setup {
    let source = Arc::new(MemorySource::new());
    for (name, path) in DATASETS {
        let stream = xpt::read_xpt(&dir.join(path)).unwrap();
        let mut schema = stream.schema().clone();
        let batches: Vec<RecordBatch> = stream.collect().unwrap();
        if name == "ADTTE" {
            // An XPT carries no class or structure; what a define needs and no file says comes from metadata,
            // as a `<DATASET>.meta.json` would give it.
            let meta = DatasetMeta::from_json(
                r#"{"class": "BASIC DATA STRUCTURE", "repeating": true,
                    "structure": "One record per subject per parameter"}"#,
            )
            .unwrap();
            schema = meta.apply_to(&schema).unwrap();
        }
        let batches = batches
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
            .collect();
        source.add("CDISCPILOT01", name, schema, batches).unwrap();
    }
    let artifacts = tempfile::tempdir().unwrap();
    // One fixed clock: the two jobs of a test are compared byte for byte, define.xml's CreationDateTime included.
    let clock = chrono::DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z").unwrap();
    let clock = Arc::new(FixedClock::new(clock.with_timezone(&chrono::Utc)));
    let mut builder = Engine::builder()
        .clock(clock.clone())
        .formats(trialport_formats::default_formats())
        .source(source.clone())
        .sink(Arc::new(LocalDirSink::new(artifacts.path()).unwrap()))
        .signing_settings(SigningSettings {
            pbkdf2_iterations: 1_000,
            ..Default::default()
        });
    if let Some(after) = retention {
        builder = builder.retention(after);
    }
    let engine = builder.build().unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    engine
        .session(&admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    Setup {
        engine,
        clock,
        admin,
        artifacts,
        source,
    }
}

fn request(container: PackageContainer) -> ExportRequest {
    ExportRequest {
        signature: Some(SignatureRequest::new(Meaning::Approval, PASSWORD)),
        ..ExportRequest::bulk("CDISCPILOT01", &DATASETS.map(|(n, _)| n), "xpt")
            .package(PackageKind::Ectd)
            .container(container)
    }
}

fn run(s: &Setup, req: ExportRequest) -> Job {
    let job = s.engine.bulk_export(&s.admin, req).unwrap();
    s.engine
        .wait(&s.admin, job.id, Some(Duration::from_secs(120)))
        .unwrap()
}

/// The XPT bytes the xpt format writes for a dataset of the source on its own.
fn direct_xpt(s: &Setup, name: &str) -> Vec<u8> {
    let stream = s
        .source
        .scan_selected("CDISCPILOT01", name, None, &[])
        .unwrap();
    let schema = stream.schema().clone();
    let meta = stream.meta();
    let mut out = Vec::new();
    {
        // The package's XPT headers state the job's creation time: the fixed clock's, as the jobs never wait.
        let created = trialport_core::clock::Clock::now(s.clock.as_ref())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let options = FormatOptions::new().with("created", &created);
        let mut enc = XptFormat
            .encoder(&schema, &meta, &options, &mut out)
            .unwrap();
        for b in stream {
            enc.write(&b.unwrap()).unwrap();
        }
        enc.finish().unwrap();
    }
    out
}

fn zip_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.insert(f.name().unwrap().to_string(), bytes);
    }
    out
}

const SDTM: &str = "m5/datasets/cdiscpilot01/tabulations/sdtm";
const ADAM: &str = "m5/datasets/cdiscpilot01/analysis/adam/datasets";

fn expected_paths() -> Vec<String> {
    let mut paths = vec![
        format!("{SDTM}/dm.xpt"),
        format!("{SDTM}/ae.xpt"),
        format!("{SDTM}/ts.xpt"),
        format!("{SDTM}/define.xml"),
        format!("{ADAM}/adsl.xpt"),
        format!("{ADAM}/adtte.xpt"),
        format!("{ADAM}/define.xml"),
        "manifest.json".to_string(),
    ];
    paths.sort();
    paths
}

/// Checks the tree's files against the manifest, the XPTs against the xpt format, and each define against its
/// datasets with the Define-XML cross-checks.
fn check_tree(s: &Setup, files: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), expected_paths());
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len() - 1);
    for entry in listed {
        let path = entry["path"].as_str().unwrap();
        let bytes = &files[path];
        let (n, sha) = sha256_of(&bytes[..]).unwrap();
        assert_eq!(entry["bytes"], n, "{path}");
        assert_eq!(entry["sha256"], sha, "{path}");
    }
    for (name, _) in DATASETS {
        let dir = if name.starts_with("AD") { ADAM } else { SDTM };
        let path = format!("{dir}/{}.xpt", name.to_ascii_lowercase());
        assert!(files[&path] == direct_xpt(s, name), "{path} differs");
        let entry = listed.iter().find(|e| e["path"] == path).unwrap();
        assert_eq!(entry["dataset"], name);
        assert_eq!(entry["rows"], entry["source_rows"]);
    }
    for (dir, names) in [
        (SDTM, &["DM", "AE", "TS"][..]),
        (ADAM, &["ADSL", "ADTTE"][..]),
    ] {
        let define = std::str::from_utf8(&files[&format!("{dir}/define.xml")]).unwrap();
        let doc = roxmltree::Document::parse(define).unwrap();
        let groups: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("ItemGroupDef"))
            .filter_map(|n| n.attribute("Name"))
            .collect();
        assert_eq!(groups, names, "{dir}/define.xml");
        let leaves: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "leaf")
            .filter_map(|n| n.attribute(("http://www.w3.org/1999/xlink", "href")))
            .collect();
        let expected: Vec<String> = names
            .iter()
            .map(|n| format!("{}.xpt", n.to_ascii_lowercase()))
            .collect();
        assert_eq!(leaves, expected, "{dir}/define.xml leaves");
        // The define passes the Define-XML cross-checks against the XPT files as written.
        let read: Vec<(arrow::datatypes::SchemaRef, DatasetMeta, String)> = expected
            .iter()
            .map(|file| {
                let bytes = files[&format!("{dir}/{file}")].clone();
                let stream =
                    xpt::read_xpt_from(std::io::Cursor::new(bytes), &Default::default()).unwrap();
                let schema = stream.schema().clone();
                (
                    schema.clone(),
                    DatasetMeta::from_schema(&schema),
                    file.clone(),
                )
            })
            .collect();
        let described: Vec<Described<'_>> = read
            .iter()
            .map(|(schema, meta, file)| Described {
                schema,
                meta,
                file,
                rows: None,
            })
            .collect();
        trialport_formats::define::cross_check(define, &described)
            .unwrap_or_else(|e| panic!("{dir}/define.xml: {}", e.render()));
    }
}

#[test]
fn an_ectd_zip_holds_the_module_5_tree_with_defines_and_a_matching_manifest() {
    let Some(dir) = conformance_dir() else { return };
    let s = setup(&dir);
    let job = run(&s, request(PackageContainer::Zip));
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let names: Vec<&str> = job.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["cdiscpilot01_ectd.zip", "manifest.json"]);
    let zip_path = s
        .artifacts
        .path()
        .join(job.artifact_path("cdiscpilot01_ectd.zip"));
    check_tree(&s, &zip_entries(&zip_path));
    // The package verifies as a whole, as `trialport verify` does.
    let report = trialport_core::manifest::verify_package(&zip_path).unwrap();
    assert_eq!(report.files_verified, 7);
}

#[test]
fn an_ectd_directory_is_the_same_tree_as_job_artifacts() {
    let Some(dir) = conformance_dir() else { return };
    let s = setup(&dir);
    let job = run(&s, request(PackageContainer::Directory));
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let root = s.artifacts.path().join(job.attempt_folder(job.attempt));
    let mut files = BTreeMap::new();
    for a in &job.artifacts {
        files.insert(a.name.clone(), std::fs::read(root.join(&a.name)).unwrap());
    }
    check_tree(&s, &files);
    trialport_core::manifest::verify_package(&root).unwrap();
    // The zip and the directory hold the same bytes.
    let zipped = run(&s, request(PackageContainer::Zip));
    let entries = zip_entries(
        &s.artifacts
            .path()
            .join(zipped.artifact_path("cdiscpilot01_ectd.zip")),
    );
    for (path, bytes) in &files {
        if path != "manifest.json" {
            assert!(entries[path] == *bytes, "{path}");
        }
    }
}

#[test]
fn an_expired_ectd_directory_keeps_its_manifest_and_no_empty_folders() {
    let Some(dir) = conformance_dir() else { return };
    let s = setup_with_retention(&dir, Some(chrono::Duration::days(30)));
    let job = run(&s, request(PackageContainer::Directory));
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let root = s.artifacts.path().join(job.attempt_folder(job.attempt));
    assert!(root.join("m5").is_dir());
    s.clock.advance(chrono::Duration::days(30));
    let summary = s.engine.session(&s.admin).purge().unwrap();
    assert_eq!(summary.jobs_expired, 1);
    assert_eq!(summary.artifacts_deleted as usize, job.artifacts.len() - 1);
    // What is left of the job's folder: its manifest, and no emptied m5/... folders.
    let left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["manifest.json"]);
}

#[test]
fn every_fda_violation_of_every_dataset_is_listed_and_nothing_is_written() {
    let Some(dir) = conformance_dir() else { return };
    let s = setup(&dir);
    // A dataset whose column name is too long and whose value is over 200 bytes, beside the valid ones.
    let long = "x".repeat(201);
    let schema = Arc::new(Schema::new(vec![
        Field::new("STUDYID", DataType::Utf8, true),
        Field::new("TOOLONGNAME", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["S1", "S1"])),
        Arc::new(StringArray::from(vec!["ok", long.as_str()])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let meta = DatasetMeta {
        name: "XX".into(),
        ..Default::default()
    };
    let schema = meta.apply_to(&schema).unwrap();
    let batch = batch.with_schema(schema.clone()).unwrap();
    s.source
        .add("CDISCPILOT01", "XX", schema.clone(), vec![batch.clone()])
        .unwrap();
    // A second bad dataset: a non-ASCII value.
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["S1", "S1"])),
        Arc::new(StringArray::from(vec!["ok", "caf\u{e9}"])),
    ];
    let yy = RecordBatch::try_new(schema.clone(), cols).unwrap();
    s.source
        .add("CDISCPILOT01", "YY", schema.clone(), vec![yy])
        .unwrap();
    let mut req = request(PackageContainer::Directory);
    req.datasets_mut().unwrap().push("XX".into());
    req.datasets_mut().unwrap().push("YY".into());
    let job = run(&s, req);
    assert_eq!(job.state, JobState::Failed);
    let err = job.error.clone().unwrap();
    assert_eq!(err["code"], "EXP002");
    assert_eq!(err["details"]["reason"], "fda_check_failed");
    let violations = err["details"]["violations"].as_array().unwrap();
    let rules: Vec<(String, String)> = violations
        .iter()
        .map(|v| {
            (
                v["dataset"].as_str().unwrap().to_string(),
                v["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(rules.iter().any(|(d, _)| d == "XX"), "{rules:?}");
    assert!(rules.iter().any(|(d, _)| d == "YY"), "{rules:?}");
    assert_eq!(err["details"]["datasets"], serde_json::json!(["XX", "YY"]));
    // Nothing at all was written for the job.
    let root = s.artifacts.path().join(job.attempt_folder(job.attempt));
    let left: Vec<_> = walk(&root);
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn an_ectd_package_needs_xpt_version_5() {
    let Some(dir) = conformance_dir() else { return };
    let s = setup(&dir);
    let mut req = request(PackageContainer::Zip);
    req.format = "csv".into();
    let err = s.engine.bulk_export(&s.admin, req).unwrap_err();
    assert_eq!(err.reason(), "ectd_requires_xpt_v5");
    let mut req = request(PackageContainer::Zip);
    req.options = FormatOptions::new().with("version", "8");
    let err = s.engine.bulk_export(&s.admin, req).unwrap_err();
    assert_eq!(err.reason(), "ectd_requires_xpt_v5");
}

#[test]
fn a_dataset_over_the_file_limit_is_split_by_rows_into_the_split_folder() {
    let Some(dir) = conformance_dir() else { return };
    let s = setup(&dir);
    let mut req = request(PackageContainer::Directory);
    *req.datasets_mut().unwrap() = vec!["DM".into(), "AE".into()];
    let limit = 15_000u64;
    req = req.max_file_bytes(limit);
    let job = run(&s, req);
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let root = s.artifacts.path().join(job.attempt_folder(job.attempt));
    let names: Vec<&str> = job.artifacts.iter().map(|a| a.name.as_str()).collect();
    // DM fits; AE (74 rows of 434 bytes) does not.
    assert!(
        names.contains(&format!("{SDTM}/dm.xpt").as_str()),
        "{names:?}"
    );
    assert!(
        !names.contains(&format!("{SDTM}/ae.xpt").as_str()),
        "{names:?}"
    );
    let parts: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with(&format!("{SDTM}/split/ae")))
        .collect();
    assert!(parts.len() >= 2, "{names:?}");
    // Each part is at most the limit, is a valid XPT whose member is named as its file, and the parts hold the
    // dataset's rows in order.
    let original = xpt::read_xpt(&dir.join("datasetjson-examples/sdtm/ae.xpt")).unwrap();
    let original: Vec<RecordBatch> = original.collect().unwrap();
    let original = arrow::compute::concat_batches(&original[0].schema(), &original).unwrap();
    let mut offset = 0usize;
    for (i, part) in parts.iter().enumerate() {
        let expected_name = format!("{SDTM}/split/ae{}.xpt", i + 1);
        assert_eq!(*part, expected_name);
        let path = root.join(part);
        assert!(std::fs::metadata(&path).unwrap().len() <= limit);
        let members = xpt::read_xpt_members(&path).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, format!("AE{}", i + 1));
        let batches: Vec<RecordBatch> = xpt::read_xpt(&path).unwrap().collect().unwrap();
        for b in batches {
            for c in 0..b.num_columns() {
                assert_eq!(
                    b.column(c).as_ref(),
                    original.column(c).slice(offset, b.num_rows()).as_ref(),
                    "{part} column {c}"
                );
            }
            offset += b.num_rows();
        }
    }
    assert_eq!(offset, original.num_rows());
    // The define describes each part with its leaf.
    let define = std::fs::read_to_string(root.join(format!("{SDTM}/define.xml"))).unwrap();
    let doc = roxmltree::Document::parse(&define).unwrap();
    let leaves: Vec<&str> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "leaf")
        .filter_map(|n| n.attribute(("http://www.w3.org/1999/xlink", "href")))
        .collect();
    assert_eq!(leaves[0], "dm.xpt");
    assert_eq!(leaves.len(), 1 + parts.len());
    assert!(leaves[1..].iter().all(|l| l.starts_with("split/ae")));
    trialport_core::manifest::verify_package(&root).unwrap();
}
