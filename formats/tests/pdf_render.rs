//! The `pdf` format: PDF/A-2b output that is deterministic, validated by the writer (a violation fails with EXP005
//! naming the rule, and nothing is written), tables too wide for the page refused, options checked.
//!
//! The structure, text, XMP identification and fonts of generated PDFs are checked by independent readers (pypdf
//! and pdftoppm) in `bindings-python/tests/test_pdf.py` and `scripts/check-reports.py`; with `TRIALPORT_PDF_OUT`
//! set, these tests also write their PDFs into that directory to look at.
#![cfg(feature = "pdf")]

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use trialport_core::document::{
    Block, Chart, ChartKind, Document, DocumentKind, DocumentSignature, Kpi,
};
use trialport_core::error::{Error, ErrorCode};
use trialport_core::format::{Capability, Format, FormatOptions};
use trialport_core::signature::Meaning;
use trialport_formats::pdf::PdfFormat;

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

fn rows(n: usize, term: &str) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AETERM", DataType::Utf8, true),
        Field::new("AESEQ", DataType::Int64, false),
        Field::new("LBSTRESN", DataType::Float64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("DEMO01-{i:04}")),
        )),
        Arc::new(StringArray::from_iter(
            (0..n).map(|i| (i % 7 != 3).then(|| format!("{term} {i}"))),
        )),
        Arc::new(Int64Array::from_iter_values((0..n).map(|i| i as i64))),
        Arc::new(Float64Array::from_iter(
            (0..n).map(|i| (i % 5 != 0).then_some(i as f64 * 1.25)),
        )),
    ];
    RecordBatch::try_new(schema, cols).expect("batch")
}

fn report(term: &str, signed: bool) -> Document {
    Document {
        kind: DocumentKind::Report,
        title: "Adverse events by system organ class <and> preferred term & more".into(),
        study: "DEMO01".into(),
        generated_at: at(),
        data_cutoff: Some("2024-12-31".into()),
        parameters: vec![
            ("Population".into(), "Safety: all randomized subjects".into()),
            ("Analysis set".into(), "SAF".into()),
        ],
        blocks: vec![
            Block::Text {
                heading: Some("About this report".into()),
                body: "A paragraph with <angle brackets>, & ampersands and \"quotes\".\n\nSecond \
                       paragraph, long enough to wrap across more than one line of the page at the body size \
                       that the renderer uses for text sections, so that wrapping is exercised."
                    .into(),
            },
            Block::Table {
                heading: Some("Listing of adverse events".into()),
                dataset: "AE".into(),
                rows: rows(180, term),
                total_rows: 1200,
                footnotes: vec!["Terms are verbatim, as reported.".into()],
            },
            Block::Chart(Chart {
                title: "Events by severity".into(),
                kind: ChartKind::Bar,
                x_label: "AESEV".into(),
                y_label: "count".into(),
                points: vec![
                    ("MILD".into(), 80.0),
                    ("MODERATE".into(), 52.0),
                    ("SEVERE".into(), 18.0),
                ],
            }),
        ],
        signatures: if signed {
            vec![DocumentSignature {
                printed_name: "Dr. Ada Reviewer".into(),
                signer_id: "key_123".into(),
                meaning: Meaning::Approval,
                signed_at: at(),
            }]
        } else {
            vec![]
        },
    }
}

fn dashboard() -> Document {
    Document {
        kind: DocumentKind::Dashboard,
        title: "DEMO01 dashboard".into(),
        study: "DEMO01".into(),
        generated_at: at(),
        data_cutoff: None,
        parameters: vec![],
        blocks: vec![
            Block::Tiles(vec![
                Kpi {
                    label: "Subjects".into(),
                    value: Some(60.0),
                },
                Kpi {
                    label: "Mean age".into(),
                    value: Some(51.23),
                },
                Kpi {
                    label: "No value".into(),
                    value: None,
                },
            ]),
            Block::Chart(Chart {
                title: "Mean ALT by visit".into(),
                kind: ChartKind::Line,
                x_label: "VISITNUM".into(),
                y_label: "mean of LBSTRESN".into(),
                points: (1..=14).map(|v| (v.to_string(), 20.0 + v as f64)).collect(),
            }),
            Block::Chart(Chart {
                title: "Nothing".into(),
                kind: ChartKind::Bar,
                x_label: "X".into(),
                y_label: "count".into(),
                points: vec![],
            }),
        ],
        signatures: vec![],
    }
}

fn render(doc: &Document, options: &FormatOptions) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    PdfFormat.render(doc, options, &mut out).map(|_| out)
}

fn keep(name: &str, bytes: &[u8]) {
    if let Ok(dir) = std::env::var("TRIALPORT_PDF_OUT") {
        std::fs::create_dir_all(&dir).expect("output directory");
        std::fs::write(std::path::Path::new(&dir).join(name), bytes).expect("written");
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn reports_and_dashboards_are_deterministic_pdfa() {
    for (name, doc) in [
        ("report.pdf", report("Headache", false)),
        ("signed.pdf", report("Headache", true)),
        ("dashboard.pdf", dashboard()),
    ] {
        let a = render(&doc, &FormatOptions::new()).expect("renders");
        let b = render(&doc, &FormatOptions::new()).expect("renders");
        assert_eq!(a, b, "{name}: the same document gives the same bytes");
        keep(name, &a);
        assert!(a.starts_with(b"%PDF-1.7"), "{name}");
        // The XMP metadata stream is not compressed: its PDF/A identification can be read in the bytes.
        assert!(contains(&a, "<pdfaid:part>2</pdfaid:part>"), "{name}");
        assert!(
            contains(&a, "<pdfaid:conformance>B</pdfaid:conformance>"),
            "{name}"
        );
        assert!(contains(&a, "/FontFile2"), "{name}: fonts are embedded");
        assert!(
            contains(&a, "2025-01-21T10:00:00"),
            "{name}: dated by the document"
        );
    }
    // The signature changes the bytes; the landscape option too.
    let unsigned = render(&report("Headache", false), &FormatOptions::new()).expect("renders");
    let signed = render(&report("Headache", true), &FormatOptions::new()).expect("renders");
    assert_ne!(unsigned, signed);
    let landscape = render(
        &report("Headache", false),
        &FormatOptions::new()
            .with("orientation", "landscape")
            .with("page_size", "letter"),
    )
    .expect("renders");
    keep("landscape.pdf", &landscape);
    assert_ne!(landscape, unsigned);
}

#[test]
fn a_pdfa_violation_fails_and_writes_nothing() {
    // DejaVu has no CJK glyphs: PDF/A forbids drawing the .notdef glyph instead.
    let mut out = Vec::new();
    let e = PdfFormat
        .render(
            &report("\u{5934}\u{75DB}", false),
            &FormatOptions::new(),
            &mut out,
        )
        .expect_err("refused");
    assert_eq!(e.code(), ErrorCode::Server);
    assert_eq!(e.reason(), "pdfa_violation");
    let details = e.to_object();
    let d = &details["details"];
    assert_eq!(d["rule"], "notdef_glyph", "{details}");
    assert_eq!(d["clause"], "ISO 19005-2 6.2.11.8");
    assert_eq!(d["standard"], "PDF/A-2b");
    assert!(!e.message().contains('\u{5934}'), "no data in the message");
    assert!(
        out.is_empty(),
        "nothing is written before validation passes"
    );
}

#[test]
fn tables_too_wide_are_refused_and_landscape_fits_more() {
    // Twelve columns of 9-character names: about 640 points, wider than a portrait A4 page's 499.
    let n = 12;
    let schema = Arc::new(Schema::new(
        (0..n)
            .map(|i| Field::new(format!("COLUMN_{i:02}"), DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let cols: Vec<ArrayRef> = (0..n)
        .map(|_| Arc::new(StringArray::from(vec!["value"])) as ArrayRef)
        .collect();
    let doc = Document {
        blocks: vec![Block::Table {
            heading: None,
            dataset: "WIDE".into(),
            rows: RecordBatch::try_new(schema, cols).expect("batch"),
            total_rows: 1,
            footnotes: vec![],
        }],
        ..report("x", false)
    };
    let e = render(&doc, &FormatOptions::new()).expect_err("too wide");
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::Validation, "table_too_wide")
    );
    assert_eq!(e.field(), Some("columns"));
    render(&doc, &FormatOptions::new().with("orientation", "landscape")).expect("fits");
}

#[test]
fn options_and_info() {
    let info = PdfFormat.info();
    assert_eq!(
        (info.id, info.extension, info.media_type),
        ("pdf", "pdf", "application/pdf")
    );
    assert!(info.can(Capability::Report) && info.can(Capability::Dashboard));
    assert!(!info.can(Capability::Data));
    let e = PdfFormat
        .check_options(&FormatOptions::new().with("theme", "dark"))
        .expect_err("unknown");
    assert_eq!(e.reason(), "unknown_option");
    let e = PdfFormat
        .check_options(&FormatOptions::new().with("page_size", "a3"))
        .expect_err("invalid");
    assert_eq!(e.field(), Some("options.page_size"));
    let registry = trialport_formats::default_formats();
    assert!(registry.get("pdf").is_ok());
}
