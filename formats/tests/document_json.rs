//! `render_json`: the documented shape, typed cells, order and determinism.

use arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use trialport_core::document::{Block, Chart, ChartKind, Document, DocumentKind, Kpi};
use trialport_core::format::FormatOptions;
use trialport_formats::document::render_json;

fn doc() -> Document {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Int64, true),
        Field::new("WEIGHT", DataType::Float64, true),
        Field::new("SAFFL", DataType::Boolean, true),
        Field::new("RFSTDTC", DataType::Date32, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["S-1", "S-2"])),
        Arc::new(Int64Array::from(vec![Some(34), None])),
        Arc::new(Float64Array::from(vec![Some(70.5), Some(f64::NAN)])),
        Arc::new(BooleanArray::from(vec![Some(true), None])),
        Arc::new(Date32Array::from(vec![Some(19_737), None])),
    ];
    Document {
        kind: DocumentKind::Report,
        data_cutoff: None,
        signatures: vec![],
        title: "Report <1>".into(),
        study: "STUDY-1".into(),
        generated_at: DateTime::parse_from_rfc3339("2025-01-21T10:00:00.250Z")
            .expect("time")
            .with_timezone(&Utc),
        parameters: vec![("zeta".into(), "1".into()), ("alpha".into(), "2".into())],
        blocks: vec![
            Block::Text {
                heading: None,
                body: "Text".into(),
            },
            Block::Table {
                heading: Some("Subjects".into()),
                dataset: "DM".into(),
                rows: RecordBatch::try_new(schema, cols).expect("batch"),
                total_rows: 10,
                footnotes: vec![],
            },
            Block::Tiles(vec![
                Kpi {
                    label: "N".into(),
                    value: Some(10.0),
                },
                Kpi {
                    label: "Mean".into(),
                    value: None,
                },
            ]),
            Block::Chart(Chart {
                title: "By arm".into(),
                kind: ChartKind::Line,
                x_label: "ARM".into(),
                y_label: "count".into(),
                points: vec![("A".into(), 1.5), ("B".into(), f64::INFINITY)],
            }),
        ],
    }
}

fn render(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    render_json(doc, &FormatOptions::new(), &mut out).expect("renders");
    out
}

#[test]
fn json_has_the_documented_shape() {
    let bytes = render(&doc());
    assert!(bytes.ends_with(b"}\n"));
    let v: Value = serde_json::from_slice(&bytes).expect("valid JSON");
    assert_eq!(
        v,
        json!({
            "kind": "report",
            "title": "Report <1>",
            "study": "STUDY-1",
            "generated_at": "2025-01-21T10:00:00.250Z",
            "data_cutoff": null,
            "parameters": {"zeta": "1", "alpha": "2"},
            "blocks": [
                {"type": "text", "heading": null, "body": "Text"},
                {"type": "table", "heading": "Subjects", "dataset": "DM",
                 "columns": ["USUBJID", "AGE", "WEIGHT", "SAFFL", "RFSTDTC"],
                 "rows": [["S-1", 34, 70.5, true, "2024-01-15"], ["S-2", null, "NaN", null, null]],
                 "total_rows": 10, "footnotes": []},
                {"type": "tiles", "items": [{"label": "N", "value": 10.0}, {"label": "Mean", "value": null}]},
                {"type": "chart", "title": "By arm", "kind": "line", "x_label": "ARM", "y_label": "count",
                 "points": [{"x": "A", "y": 1.5}, {"x": "B", "y": null}]}
            ],
            "signatures": [],
            "content_sha256": doc().content_sha256().expect("hash"),
        })
    );
    // Parameters keep their order in the bytes too.
    let text = String::from_utf8(bytes).expect("UTF-8");
    assert!(text.find("\"zeta\"").expect("zeta") < text.find("\"alpha\"").expect("alpha"));
}

#[test]
fn json_is_deterministic() {
    assert_eq!(render(&doc()), render(&doc()));
}
