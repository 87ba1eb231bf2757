//! Reports as the engine computes them: summary tables (groups, measures, decimals, validation), chart sections,
//! and what a rendered document learns of its job's e-signatures and the content hash its manifest records.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use common::source;
use serde_json::{json, Value};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::document::{Block, Document, ReportSpec};
use trialport_core::engine::Engine;
use trialport_core::format::{
    Capability, Format, FormatInfo, FormatOptions, FormatRegistry, Output,
};
use trialport_core::job::{Job, JobKind, JobState};
use trialport_core::request::{from_json, ExportRequest};
use trialport_core::signature::{Meaning, SignatureRequest, SigningSettings};
use trialport_core::Result;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));
const PASSWORD: &str = "correct horse battery";

/// Renders what a document carries beyond its blocks as JSON: tables as their text cells, the signatures, and the
/// content hash, so the test sees exactly what a renderer is given.
struct Probe;

impl Format for Probe {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "probe",
            name: "document probe (test)",
            extension: "json",
            media_type: "application/json",
            capabilities: vec![Capability::Report, Capability::Dashboard],
            options: vec![],
        }
    }

    fn render(&self, doc: &Document, _options: &FormatOptions, out: Output<'_>) -> Result<()> {
        let blocks: Vec<Value> = doc
            .blocks
            .iter()
            .map(|b| match b {
                Block::Table {
                    rows,
                    total_rows,
                    footnotes,
                    ..
                } => {
                    let fmt = arrow::util::display::FormatOptions::default();
                    let cols: Vec<_> = rows
                        .columns()
                        .iter()
                        .map(|c| {
                            arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &fmt).unwrap()
                        })
                        .collect();
                    let cells: Vec<Vec<String>> = (0..rows.num_rows())
                        .map(|r| cols.iter().map(|c| c.value(r).to_string()).collect())
                        .collect();
                    let names: Vec<String> = rows
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    let types: Vec<String> = rows
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.data_type().to_string())
                        .collect();
                    json!({"table": cells, "columns": names, "types": types,
                           "total_rows": total_rows, "footnotes": footnotes})
                }
                Block::Chart(c) => json!({"chart": c.points, "y_label": c.y_label}),
                Block::Text { body, .. } => json!({"text": body}),
                Block::Tiles(t) => json!({"tiles": t}),
            })
            .collect();
        let v = json!({
            "blocks": blocks,
            "data_cutoff": doc.data_cutoff,
            "signatures": doc.signatures,
            "content_sha256": doc.content_sha256()?,
        });
        out.write_all(v.to_string().as_bytes())?;
        Ok(())
    }
}

/// The test source, with LB: visits 1, 2, 9 and 10 (10 sorts before 2 as text).
fn lb_source() -> Arc<trialport_core::source::MemorySource> {
    let s = source();
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("VISITNUM", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                "S1-000", "S1-000", "S1-001", "S1-002", "S1-001", "S1-003",
            ])),
            Arc::new(Int64Array::from(vec![10, 2, 2, 9, 1, 10])),
        ],
    )
    .unwrap();
    s.add("S1", "LB", schema, vec![batch]).unwrap();
    s
}

fn engine() -> (Engine, String) {
    let mut formats = FormatRegistry::new();
    formats.register(Arc::new(Probe)).unwrap();
    let engine = Engine::builder()
        .formats(formats)
        .source(lb_source())
        .signing_settings(SigningSettings {
            pbkdf2_iterations: 1_000,
            max_failed_attempts: 5,
        })
        .workers(1)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    (engine, admin)
}

fn request(spec: Value) -> ExportRequest {
    ExportRequest::from_json(
        JobKind::Report,
        &json!({"report": spec, "format": "probe"}).to_string(),
    )
    .unwrap()
}

fn download(e: &Engine, cred: &str, job: &Job, name: &str) -> Value {
    let mut d = e.download(cred, job.id, Some(name)).unwrap();
    let mut text = String::new();
    d.reader.read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn run(e: &Engine, cred: &str, req: ExportRequest) -> (Value, Value) {
    let job = e.export_report(cred, req).unwrap();
    let job = e.wait(cred, job.id, WAIT).unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    (
        download(e, cred, &job, "report.json"),
        download(e, cred, &job, "manifest.json"),
    )
}

#[test]
fn summary_tables_group_measure_and_round() {
    let (e, admin) = engine();
    let (doc, manifest) = run(
        &e,
        &admin,
        request(json!({
            "study": "S1", "title": "Summary", "data_cutoff": "2025-01-01",
            "sections": [
                {"type": "summary", "heading": "Age by sex", "dataset": "DM", "group_by": ["SEX"],
                 "measures": [
                    {"label": "n", "measure": "count"},
                    {"label": "Mean", "measure": "mean", "column": "AGE", "decimals": 1},
                    {"label": "SD", "measure": "sd", "column": "AGE"},
                    {"label": "Min", "measure": "min", "column": "WEIGHT", "decimals": 0},
                    {"label": "Max", "measure": "max", "column": "AGE", "decimals": 0}],
                 "footnotes": ["n: subjects."]},
                {"type": "summary", "dataset": "LB", "group_by": ["VISITNUM"],
                 "measures": [{"label": "Subjects", "measure": "distinct_count", "column": "USUBJID"}]},
                {"type": "summary", "dataset": "AE", "group_by": ["AESEV"],
                 "measures": [{"label": "Subjects", "measure": "distinct_count", "column": "USUBJID"},
                              {"label": "Events", "measure": "count"}]},
                {"type": "chart", "title": "By sex", "kind": "bar", "dataset": "DM", "x": "SEX",
                 "measure": "sd", "column": "AGE"}
            ]
        })),
    );
    assert_eq!(doc["data_cutoff"], "2025-01-01");
    // DM of S1 is two batches, dm_batch(6) and dm_batch(4): ages 20..25 and 20..23, F at even positions.
    // F: 20, 22, 24, 20, 22 (mean 21.6, SD 1.67332); M: 21, 23, 25, 21, 23 (mean 22.6). Weights are age + 30.5.
    let t = &doc["blocks"][0];
    assert_eq!(
        t["columns"],
        json!(["SEX", "n", "Mean", "SD", "Min", "Max"])
    );
    assert_eq!(
        t["types"],
        json!([
            "Utf8",
            "Int64",
            "Decimal128(38, 1)",
            "Decimal128(38, 2)",
            "Decimal128(38, 0)",
            "Decimal128(38, 0)"
        ])
    );
    assert_eq!(
        t["table"],
        json!([
            ["F", "5", "21.6", "1.67", "51", "24"],
            ["M", "5", "22.6", "1.67", "52", "25"]
        ])
    );
    assert_eq!(t["total_rows"], 2);
    assert_eq!(t["footnotes"], json!(["n: subjects."]));
    // Numeric groups sort as numbers, not as text (2 before 10).
    assert_eq!(
        doc["blocks"][1]["table"],
        json!([["1", "1"], ["2", "2"], ["9", "1"], ["10", "2"]])
    );
    // A missing group value is its own group, last.
    assert_eq!(
        doc["blocks"][2]["table"],
        json!([
            ["MILD", "2", "2"],
            ["SEVERE", "1", "1"],
            ["(missing)", "1", "1"]
        ])
    );
    // Charts are report sections too, with the new measures.
    assert_eq!(doc["blocks"][3]["y_label"], "SD of AGE");
    // The manifest records the document and the hash the renderer was given.
    assert_eq!(manifest["document"]["artifact"], "report.json");
    assert_eq!(
        manifest["document"]["content_sha256"],
        doc["content_sha256"]
    );
    assert_eq!(doc["signatures"], json!([]));
    assert_eq!(manifest["signatures"], json!([]));
}

#[test]
fn a_signed_report_shows_what_its_manifest_signs() {
    let (e, admin) = engine();
    e.session(&admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    let mut req = request(json!({"study": "S1", "title": "Signed", "sections": [
        {"type": "table", "dataset": "DM", "columns": ["USUBJID", "AGE"], "limit": 3}]}));
    req.signature = Some(SignatureRequest::new(Meaning::Approval, PASSWORD));
    let (doc, manifest) = run(&e, &admin, req);
    let shown = doc["signatures"].as_array().unwrap();
    let signed = manifest["signatures"].as_array().unwrap();
    assert_eq!((shown.len(), signed.len()), (1, 1));
    for field in ["printed_name", "signer_id", "meaning", "signed_at"] {
        assert_eq!(shown[0][field], signed[0][field], "{field}");
    }
    assert_eq!(shown[0]["meaning"], "approval");
    // The page's hash is the manifest's, and the manifest's signature covers it.
    assert_eq!(
        doc["content_sha256"],
        manifest["document"]["content_sha256"]
    );
    let verified = trialport_core::signature::verify_signatures(&manifest, None).unwrap();
    assert_eq!(verified.len(), 1);
    let mut forged = manifest.clone();
    forged["document"]["content_sha256"] = json!("0".repeat(64));
    assert!(trialport_core::signature::verify_signatures(&forged, None).is_err());
}

#[test]
fn summary_specs_are_checked_before_a_job_exists() {
    let (e, admin) = engine();
    let check = |summary: Value, reason: &str, field: &str| {
        let spec = json!({"study": "S1", "title": "t", "sections": [
            {"type": "summary", "dataset": "DM", "group_by": ["SEX"],
             "measures": [{"label": "n", "measure": "count"}]}]});
        let mut spec = spec;
        for (k, v) in summary.as_object().unwrap() {
            spec["sections"][0][k] = v.clone();
        }
        let err = e.export_report(&admin, request(spec)).unwrap_err();
        assert_eq!(
            (err.code().as_str(), err.reason(), err.field()),
            ("EXP002", reason, Some(field)),
            "{err}"
        );
    };
    check(json!({"group_by": []}), "missing_group_by", "group_by");
    check(json!({"measures": []}), "missing_measures", "measures");
    check(json!({"group_by": ["NOPE"]}), "unknown_column", "group_by");
    check(
        json!({"measures": [{"label": "m", "measure": "mean", "column": "SEX"}]}),
        "not_numeric",
        "column",
    );
    check(
        json!({"measures": [{"label": "m", "measure": "mean"}]}),
        "missing_column",
        "column",
    );
    check(
        json!({"measures": [{"label": "SEX", "measure": "count"}]}),
        "duplicate_column",
        "measures.label",
    );
    check(
        json!({"measures": [{"label": "m", "measure": "mean", "column": "AGE", "decimals": 7}]}),
        "out_of_range",
        "measures.decimals",
    );
    // Unknown fields are refused, as everywhere in the report language.
    let err = from_json::<ReportSpec>(
        &json!({"study": "S1", "title": "t", "sections": [{"type": "summary", "dataset": "DM",
            "group_by": ["SEX"], "measures": [{"label": "n", "measure": "count"}], "colour": "red"}]})
        .to_string(),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "invalid_request");
}

#[test]
fn the_content_hash_covers_the_content_not_the_signatures() {
    let (e, admin) = engine();
    let spec = |age: i64| {
        request(json!({"study": "S1", "title": "Hash", "sections": [
            {"type": "table", "dataset": "DM", "columns": ["USUBJID", "AGE"],
             "filters": [{"column": "AGE", "op": "eq", "value": age}]}]}))
    };
    let (a, _) = run(&e, &admin, spec(20));
    let (b, _) = run(&e, &admin, spec(21));
    assert_ne!(a["content_sha256"], b["content_sha256"]);
    assert_eq!(a["content_sha256"].as_str().unwrap().len(), 64);
    // Computed on the document itself: signatures are not part of it.
    let mut doc = Document {
        kind: trialport_core::document::DocumentKind::Report,
        title: "T".into(),
        study: "S1".into(),
        generated_at: chrono::DateTime::UNIX_EPOCH,
        data_cutoff: None,
        parameters: vec![],
        blocks: vec![],
        signatures: vec![],
    };
    let unsigned = doc.content_sha256().unwrap();
    doc.signatures
        .push(trialport_core::document::DocumentSignature {
            printed_name: "A".into(),
            signer_id: "a".into(),
            meaning: Meaning::Review,
            signed_at: chrono::DateTime::UNIX_EPOCH,
        });
    assert_eq!(doc.content_sha256().unwrap(), unsigned);
    doc.data_cutoff = Some("2025-01-01".into());
    assert_ne!(doc.content_sha256().unwrap(), unsigned);
}
