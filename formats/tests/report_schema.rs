//! The documented report language: `docs/report.schema.json` (JSON Schema 2020-12) accepts the report templates
//! of `examples/reports/` and every spec example of `docs/reports.md`, which the engine's own types parse too; and
//! what the engine's types refuse, the schema refuses.

use serde_json::{json, Value};
use std::path::PathBuf;
use trialport_core::document::{DashboardSpec, ReportSpec};
use trialport_core::job::JobKind;
use trialport_core::request::{from_json, ExportRequest};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/report.schema.json")).expect("schema");
    let schema: Value = serde_json::from_str(&text).expect("schema JSON");
    jsonschema::draft202012::new(&schema).expect("a valid JSON Schema 2020-12")
}

/// Whether the engine's types take `v` as one of the four documents the schema describes.
fn serde_accepts(v: &Value) -> bool {
    let text = v.to_string();
    from_json::<ReportSpec>(&text).is_ok()
        || from_json::<DashboardSpec>(&text).is_ok()
        || ExportRequest::from_json(JobKind::Report, &text).is_ok()
        || ExportRequest::from_json(JobKind::Dashboard, &text).is_ok()
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| e.to_string()).collect()
}

#[test]
fn the_templates_are_valid_reports() {
    let v = validator();
    let dir = repo().join("examples/reports");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/reports") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("template");
        let spec: Value = serde_json::from_str(&text).expect("JSON");
        assert!(
            v.is_valid(&spec),
            "{}: {:?}",
            path.display(),
            errors(&v, &spec)
        );
        let parsed: ReportSpec = from_json(&text).expect("a report spec");
        // What serde writes back is valid too.
        let back = serde_json::to_value(&parsed).expect("serialized");
        assert!(
            v.is_valid(&back),
            "{}: {:?}",
            path.display(),
            errors(&v, &back)
        );
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn every_spec_example_of_the_guide_is_valid() {
    let v = validator();
    let guide = std::fs::read_to_string(repo().join("docs/reports.md")).expect("docs/reports.md");
    let mut n = 0;
    let mut rest = guide.as_str();
    while let Some(start) = rest.find("```json spec\n") {
        let body = &rest[start + "```json spec\n".len()..];
        let end = body.find("```").expect("closed block");
        let example: Value = serde_json::from_str(&body[..end]).expect("an example is JSON");
        assert!(
            v.is_valid(&example),
            "{:?}\n{example}",
            errors(&v, &example)
        );
        assert!(serde_accepts(&example), "the engine refuses {example}");
        n += 1;
        rest = &body[end..];
    }
    assert!(n >= 5, "{n} examples");
}

#[test]
fn the_schema_refuses_what_the_engine_refuses() {
    let v = validator();
    let base = json!({"study": "S1", "title": "T", "sections": [
        {"type": "summary", "dataset": "DM", "group_by": ["ARM"],
         "measures": [{"label": "n", "measure": "count"}], "footnotes": ["f"]}]});
    assert!(v.is_valid(&base) && serde_accepts(&base));
    let mut bad = Vec::new();
    let mut b = base.clone();
    b["colour"] = json!("red");
    bad.push(b);
    let mut b = base.clone();
    b["sections"][0]["colour"] = json!("red");
    bad.push(b);
    let mut b = base.clone();
    b["sections"][0]["measures"][0]["colour"] = json!("red");
    bad.push(b);
    let mut b = base.clone();
    b["sections"][0]["type"] = json!("pivot");
    bad.push(b);
    let mut b = base.clone();
    b["sections"][0]["measures"][0]["measure"] = json!("median");
    bad.push(b);
    let mut b = base.clone();
    b["sections"][0]["filters"] = json!([{"column": "ARM", "op": "like", "value": "P%"}]);
    bad.push(b);
    let mut b = base.clone();
    b["sections"][0]["footnotes"] = json!("one");
    bad.push(b);
    let mut b = base.clone();
    b.as_object_mut().map(|o| o.remove("title"));
    bad.push(b);
    bad.push(json!({"study": "S1", "title": "T", "tiles": [{"label": "n", "dataset": "DM", "measure": "count",
                    "extra": 1}]}));
    bad.push(json!({"report": base.clone(), "format": "pdf", "signature": {"meaning": "witness"}}));
    for b in bad {
        assert!(!serde_accepts(&b), "the engine takes {b}");
        assert!(!v.is_valid(&b), "the schema takes {b}");
    }
}
