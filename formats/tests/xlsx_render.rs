//! The `xlsx` format rendering reports and dashboards: expected sheets and contents, read back with calamine.
#![cfg(feature = "xlsx")]

use arrow::array::{ArrayRef, Date32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, Utc};
use std::io::Cursor;
use std::sync::Arc;
use trialport_core::document::{Block, Chart, ChartKind, Document, DocumentKind, Kpi};
use trialport_core::format::{Format, FormatOptions};
use trialport_formats::xlsx::XlsxFormat;

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

fn rows() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Int64, true),
        Field::new("RFSTDTC", DataType::Date32, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["S-001", "=cmd|' /C calc'!A0"])),
        Arc::new(Int64Array::from(vec![Some(34), None])),
        Arc::new(Date32Array::from(vec![Some(19_737), None])),
    ];
    RecordBatch::try_new(schema, cols).expect("batch")
}

fn render(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    XlsxFormat
        .render(doc, &FormatOptions::new(), &mut out)
        .expect("renders");
    out
}

fn cells(bytes: &[u8], sheet: &str) -> Vec<Vec<String>> {
    let mut wb = Xlsx::new(Cursor::new(bytes.to_vec())).expect("workbook");
    let range = wb.worksheet_range(sheet).expect("sheet");
    let (h, w) = range.get_size();
    (0..h as u32)
        .map(|r| {
            (0..w as u32)
                .map(|c| match range.get_value((r, c)) {
                    None | Some(Data::Empty) => String::new(),
                    Some(d) => d.to_string(),
                })
                .collect()
        })
        .collect()
}

fn sheet_names(bytes: &[u8]) -> Vec<String> {
    Xlsx::new(Cursor::new(bytes.to_vec()))
        .expect("workbook")
        .sheet_names()
}

#[test]
fn a_report_has_an_overview_and_a_sheet_per_table() {
    let doc = Document {
        kind: DocumentKind::Report,
        data_cutoff: None,
        signatures: vec![],
        title: "Interim safety report".into(),
        study: "STUDY-1".into(),
        generated_at: at(),
        parameters: vec![("cutoff".into(), "2025-01-01".into())],
        blocks: vec![
            Block::Text {
                heading: Some("Summary".into()),
                body: "First paragraph.\n\n=Second paragraph.".into(),
            },
            Block::Table {
                heading: Some("Demographics".into()),
                dataset: "DM".into(),
                rows: rows(),
                total_rows: 120,
                footnotes: vec![],
            },
            Block::Table {
                heading: None,
                dataset: "DM".into(),
                rows: rows(),
                total_rows: 2,
                footnotes: vec![],
            },
            Block::Table {
                heading: Some("Report".into()),
                dataset: "AE".into(),
                rows: rows(),
                total_rows: 2,
                footnotes: vec![],
            },
        ],
    };
    let bytes = render(&doc);
    assert_eq!(
        sheet_names(&bytes),
        ["Report", "Demographics", "DM", "Report_2"]
    );
    let overview = cells(&bytes, "Report");
    assert_eq!(overview[0][0], "Interim safety report");
    assert_eq!(overview[1][..2], ["Study", "STUDY-1"]);
    assert_eq!(overview[2][..2], ["Generated at", "2025-01-21T10:00:00Z"]);
    let flat: Vec<String> = overview.iter().flatten().cloned().collect();
    for want in [
        "Parameters",
        "cutoff",
        "2025-01-01",
        "Summary",
        "First paragraph.",
        "'=Second paragraph.",
        "see sheet Demographics (showing 2 of 120 rows)",
        "see sheet DM",
        "see sheet Report_2",
        "Electronic signatures",
        "This document is not electronically signed.",
    ] {
        assert!(
            flat.iter().any(|c| c == want),
            "missing {want:?} in {flat:?}"
        );
    }
    let hash = doc.content_sha256().expect("hash");
    assert!(flat.contains(&hash), "the content hash in {flat:?}");
    // Signed: each signature's printed name, meaning and UTC time, on one row.
    let mut signed = doc.clone();
    signed
        .signatures
        .push(trialport_core::document::DocumentSignature {
            printed_name: "=Dr. Ada".into(),
            signer_id: "s1".into(),
            meaning: trialport_core::signature::Meaning::Review,
            signed_at: at(),
        });
    let overview = cells(&render(&signed), "Report");
    assert!(overview
        .iter()
        .any(|r| r[..3] == ["'=Dr. Ada", "review", "2025-01-21T10:00:00Z"]));
    assert!(!overview
        .iter()
        .flatten()
        .any(|c| c.contains("not electronically")));
    let table = cells(&bytes, "Demographics");
    assert_eq!(table[0], ["USUBJID", "AGE", "RFSTDTC"]);
    assert_eq!(table[1][..2], ["S-001", "34"]);
    assert_eq!(table[2], ["'=cmd|' /C calc'!A0", "", ""]);
}

#[test]
fn a_dashboard_has_kpis_tables_and_charts() {
    let doc = Document {
        kind: DocumentKind::Dashboard,
        data_cutoff: None,
        signatures: vec![],
        title: "Enrolment".into(),
        study: "STUDY-1".into(),
        generated_at: at(),
        parameters: vec![],
        blocks: vec![
            Block::Tiles(vec![
                Kpi {
                    label: "Subjects".into(),
                    value: Some(120.0),
                },
                Kpi {
                    label: "Mean age".into(),
                    value: None,
                },
            ]),
            Block::Table {
                heading: Some("Recent subjects".into()),
                dataset: "DM".into(),
                rows: rows(),
                total_rows: 2,
                footnotes: vec![],
            },
            Block::Chart(Chart {
                title: "Subjects by arm: [all sites]".into(),
                kind: ChartKind::Bar,
                x_label: "ARM".into(),
                y_label: "count".into(),
                points: vec![("Placebo".into(), 60.0), ("Active".into(), 60.0)],
            }),
            Block::Chart(Chart {
                title: "Empty".into(),
                kind: ChartKind::Line,
                x_label: "VISIT".into(),
                y_label: "mean of AVAL".into(),
                points: vec![],
            }),
        ],
    };
    let bytes = render(&doc);
    assert_eq!(
        sheet_names(&bytes),
        [
            "KPIs",
            "Recent subjects",
            "Subjects by arm_ _all sites_",
            "Empty"
        ]
    );
    let kpis = cells(&bytes, "KPIs");
    let pairs: Vec<(String, String)> = kpis
        .iter()
        .skip_while(|r| r[0] != "KPI")
        .skip(1)
        .take(2)
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("Subjects".to_string(), "120".to_string()),
            ("Mean age".to_string(), "-".to_string())
        ]
    );
    let chart = cells(&bytes, "Subjects by arm_ _all sites_");
    assert_eq!(chart[0][..2], ["ARM", "count"]);
    assert_eq!(chart[1][..2], ["Placebo", "60"]);
    assert_eq!(chart[2][..2], ["Active", "60"]);
    // A native chart is embedded over the data.
    let zip_text = String::from_utf8_lossy(&bytes);
    assert!(zip_text.contains("xl/charts/chart1.xml"));
    assert_eq!(cells(&bytes, "Empty")[0], ["VISIT", "mean of AVAL"]);

    // Same document, same bytes.
    assert!(render(&doc) == bytes);
}
