//! The `html` format: escaping, well-formed XHTML-compatible output with inline SVG charts, KPIs, notes, options.

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use trialport_core::document::{Block, Chart, ChartKind, Document, DocumentKind, Kpi};
use trialport_core::error::ErrorCode;
use trialport_core::format::{Capability, Format, FormatOptions};
use trialport_formats::document::HtmlFormat;

const SCRIPT: &str = "<script>alert('x')</script>";

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

fn table() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Int64, true),
        Field::new("WEIGHT", DataType::Float64, true),
        Field::new("RFSTDTC", DataType::Date32, true),
        Field::new(format!("NOTE{SCRIPT}"), DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["S-001", "S-002", "S-003"])),
        Arc::new(Int64Array::from(vec![Some(34), None, Some(71)])),
        Arc::new(Float64Array::from(vec![Some(70.5), Some(82.25), None])),
        Arc::new(Date32Array::from(vec![Some(19_737), None, Some(19_738)])),
        Arc::new(StringArray::from(vec![Some(SCRIPT), Some("a & b"), None])),
    ];
    RecordBatch::try_new(schema, cols).expect("batch")
}

fn chart(kind: ChartKind, points: &[(&str, f64)]) -> Block {
    Block::Chart(Chart {
        title: format!("Chart {SCRIPT}"),
        kind,
        x_label: "ARM".into(),
        y_label: "count".into(),
        points: points.iter().map(|(x, y)| (x.to_string(), *y)).collect(),
    })
}

fn dashboard() -> Document {
    Document {
        kind: DocumentKind::Dashboard,
        data_cutoff: None,
        signatures: vec![],
        title: format!("Safety {SCRIPT}"),
        study: "STUDY-1".into(),
        generated_at: at(),
        parameters: vec![
            ("cutoff".into(), "2025-01-01".into()),
            ("site".into(), SCRIPT.into()),
        ],
        blocks: vec![
            Block::Tiles(vec![
                Kpi {
                    label: "Subjects enrolled".into(),
                    value: Some(120.0),
                },
                Kpi {
                    label: "Mean age".into(),
                    value: Some(54.256),
                },
                Kpi {
                    label: SCRIPT.into(),
                    value: None,
                },
            ]),
            Block::Text {
                heading: Some("Notes".into()),
                body: format!("First paragraph\nsecond line.\n\nSecond {SCRIPT} paragraph."),
            },
            Block::Table {
                heading: Some("Subjects".into()),
                dataset: "DM".into(),
                rows: table(),
                total_rows: 250,
                footnotes: vec![],
            },
            chart(
                ChartKind::Bar,
                &[("Placebo", 40.0), (SCRIPT, 60.0), ("High", 20.0)],
            ),
            chart(ChartKind::Line, &[("W1", 1.5), ("W2", -2.0), ("W3", 0.25)]),
            chart(ChartKind::Bar, &[]),
            chart(ChartKind::Line, &[]),
            chart(ChartKind::Bar, &[("Only", 7.0)]),
            chart(ChartKind::Line, &[("Only", 7.0)]),
            chart(ChartKind::Bar, &[("A", 0.0), ("B", 0.0)]),
            chart(ChartKind::Bar, &[("A", -5.0), ("B", -1.0)]),
            chart(ChartKind::Line, &[("A", f64::NAN), ("B", 3.0)]),
            chart(
                ChartKind::Bar,
                &(0..30)
                    .map(|i| (["c0", "c1", "c2"][i % 3], i as f64 * 0.01))
                    .collect::<Vec<_>>(),
            ),
        ],
    }
}

fn render(doc: &Document, options: &FormatOptions) -> String {
    let mut out = Vec::new();
    HtmlFormat.render(doc, options, &mut out).expect("renders");
    String::from_utf8(out).expect("UTF-8")
}

fn parse(html: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, opts).expect("well-formed XML")
}

#[test]
fn every_text_is_escaped() {
    let html = render(&dashboard(), &FormatOptions::new());
    assert!(!html.contains("<script"), "no raw <script> anywhere");
    assert!(!html.to_ascii_lowercase().contains("<script"));
    let doc = parse(&html);
    // The text survives escaping: the title, a parameter, a cell, a column name, a chart label and a KPI label.
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    let count = texts.iter().filter(|t| t.contains(SCRIPT)).count();
    assert!(count >= 6, "escaped text found {count} times");
    let title = doc
        .descendants()
        .find(|n| n.has_tag_name("title"))
        .and_then(|n| n.text())
        .expect("title");
    assert_eq!(title, format!("Safety {SCRIPT}"));
    // No script elements, no event handlers, no external references.
    assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
    for n in doc.descendants().filter(|n| n.is_element()) {
        for a in n.attributes() {
            assert!(!a.name().starts_with("on"), "event handler {}", a.name());
            assert!(
                a.name() != "src" && a.name() != "href",
                "external reference"
            );
        }
    }
}

#[test]
fn page_is_well_formed_with_svg_charts() {
    let html = render(&dashboard(), &FormatOptions::new());
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    let doc = parse(&html);
    let svg_ns = "http://www.w3.org/2000/svg";
    let svgs: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "svg" && n.tag_name().namespace() == Some(svg_ns))
        .collect();
    assert_eq!(svgs.len(), 10);
    for svg in &svgs {
        // Each chart is also a standalone well-formed SVG document.
        let text = &html[svg.range()];
        roxmltree::Document::parse(text).expect("standalone SVG parses");
        // Axes are drawn, and numbers in coordinates are finite.
        assert!(svg.descendants().filter(|n| n.has_tag_name("line")).count() >= 2);
        for n in svg.descendants().filter(|n| n.is_element()) {
            for a in n.attributes() {
                if [
                    "x", "y", "width", "height", "x1", "x2", "y1", "y2", "cx", "cy",
                ]
                .contains(&a.name())
                {
                    let v: f64 = a.value().parse().expect("number");
                    assert!(v.is_finite());
                    if a.name() == "height" || a.name() == "width" {
                        assert!(v >= 0.0);
                    }
                }
            }
        }
    }
    // Bars: three in the first chart, with value labels.
    let bars = svgs[0]
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .count();
    assert_eq!(bars, 3);
    let values: Vec<&str> = svgs[0]
        .descendants()
        .filter(|n| n.attribute("class") == Some("value"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(values, ["40", "60", "20"]);
    // Line: a polyline through three points.
    assert_eq!(
        svgs[1]
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count(),
        1
    );
    // No points: a note, no marks.
    for empty in &svgs[2..4] {
        assert!(empty.descendants().any(|n| n.text() == Some("No data")));
        assert_eq!(
            empty
                .descendants()
                .filter(|n| n.has_tag_name("rect"))
                .count(),
            0
        );
    }
    // One point: one bar, one dot.
    assert_eq!(
        svgs[4]
            .descendants()
            .filter(|n| n.has_tag_name("rect"))
            .count(),
        1
    );
    assert_eq!(
        svgs[5]
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count(),
        1
    );
    // Negative bars are drawn below the zero line.
    assert_eq!(
        svgs[7]
            .descendants()
            .filter(|n| n.attribute("class") == Some("bar neg"))
            .count(),
        2
    );
    // A non-finite value is shown as missing.
    assert!(svgs[8]
        .descendants()
        .any(|n| n.attribute("class") == Some("value") && n.text() == Some("-")));
}

#[test]
fn kpis_tables_and_notes_are_shown() {
    let html = render(&dashboard(), &FormatOptions::new());
    let doc = parse(&html);
    let value_of = |label: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("tile"))
            .find(|t| t.descendants().any(|n| n.text() == Some(label)))
            .and_then(|t| {
                t.descendants()
                    .find(|n| n.attribute("class") == Some("value"))
                    .and_then(|n| n.text())
            })
    };
    assert_eq!(value_of("Subjects enrolled"), Some("120"));
    assert_eq!(value_of("Mean age"), Some("54.26"));
    assert_eq!(value_of(SCRIPT), Some("-"));

    assert!(html.contains("showing 3 of 250 rows"));
    let table = doc
        .descendants()
        .find(|n| n.has_tag_name("table") && n.attribute("class").is_none())
        .expect("data table");
    let headers: Vec<&str> = table
        .descendants()
        .filter(|n| n.has_tag_name("th"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(headers[..4], ["USUBJID", "AGE", "WEIGHT", "RFSTDTC"]);
    let rows: Vec<Vec<String>> = table
        .descendants()
        .filter(|n| n.has_tag_name("tr"))
        .skip(1)
        .map(|tr| {
            tr.children()
                .filter(|n| n.has_tag_name("td"))
                .map(|td| td.text().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows[0], ["S-001", "34", "70.5", "2024-01-15", SCRIPT]);
    // Nulls are empty cells.
    assert_eq!(rows[1], ["S-002", "", "82.25", "", "a & b"]);
    assert_eq!(rows[2][4], "");
    // Paragraphs split on blank lines; parameters in order.
    let paragraphs = doc.descendants().filter(|n| n.has_tag_name("p")).count();
    assert!(paragraphs >= 3);
    assert!(html.find("cutoff").expect("param") < html.find("site").expect("param"));
    assert!(html.contains("2025-01-21T10:00:00Z"));
}

#[test]
fn rendering_is_deterministic_and_themed() {
    let doc = dashboard();
    let a = render(&doc, &FormatOptions::new());
    let b = render(&doc, &FormatOptions::new());
    assert_eq!(a, b);
    let dark = render(&doc, &FormatOptions::new().with("theme", "dark"));
    assert_ne!(a, dark);
    parse(&dark);
    assert_eq!(
        render(&doc, &FormatOptions::new().with("theme", "light")),
        a
    );
}

#[test]
fn options_and_info() {
    let info = HtmlFormat.info();
    assert_eq!(
        (info.id, info.extension, info.media_type),
        ("html", "html", "text/html")
    );
    assert!(info.can(Capability::Report) && info.can(Capability::Dashboard));
    assert!(!info.can(Capability::Data));
    for bad in [
        FormatOptions::new().with("theme", "neon"),
        FormatOptions::new().with("colour", "red"),
    ] {
        let e = HtmlFormat.check_options(&bad).expect_err("rejected");
        assert_eq!(e.code(), ErrorCode::Validation);
        let mut out = Vec::new();
        let e = HtmlFormat
            .render(&dashboard(), &bad, &mut out)
            .expect_err("rejected");
        assert_eq!(e.code(), ErrorCode::Validation);
        assert!(out.is_empty());
    }
}

#[test]
fn a_report_with_no_blocks_renders() {
    let doc = Document {
        kind: DocumentKind::Report,
        data_cutoff: None,
        signatures: vec![],
        title: "Empty".into(),
        study: "S".into(),
        generated_at: at(),
        parameters: vec![],
        blocks: vec![Block::Table {
            heading: None,
            dataset: "AE".into(),
            rows: RecordBatch::new_empty(table().schema()),
            total_rows: 0,
            footnotes: vec![],
        }],
    };
    let html = render(&doc, &FormatOptions::new());
    parse(&html);
    assert!(html.contains("<body class=\"report\">"));
    assert!(html.contains("no rows"));
}

#[test]
fn signatures_footnotes_and_the_cutoff_are_shown_escaped() {
    let mut doc = dashboard();
    doc.data_cutoff = Some(format!("2025-01-01 {SCRIPT}"));
    if let Some(Block::Table { footnotes, .. }) = doc
        .blocks
        .iter_mut()
        .find(|b| matches!(b, Block::Table { .. }))
    {
        footnotes.push(format!("Footnote {SCRIPT}"));
    }
    let unsigned = render(&doc, &FormatOptions::new());
    parse(&unsigned);
    assert!(unsigned.contains("This document is not electronically signed."));
    assert!(unsigned.contains(&doc.content_sha256().expect("hash")));
    assert!(unsigned.contains("Footnote &lt;script&gt;"));
    assert!(unsigned.contains("Data cut-off <strong>2025-01-01 &lt;script&gt;"));
    doc.signatures
        .push(trialport_core::document::DocumentSignature {
            printed_name: format!("Dr. {SCRIPT}"),
            signer_id: "s1".into(),
            meaning: trialport_core::signature::Meaning::Responsibility,
            signed_at: at(),
        });
    let signed = render(&doc, &FormatOptions::new());
    let dom = parse(&signed);
    assert!(!signed.contains("not electronically signed"));
    let row: Vec<String> = dom
        .descendants()
        .filter(|n| n.has_tag_name("section") && n.attribute("class") == Some("signatures"))
        .flat_map(|s| s.descendants().filter(|n| n.has_tag_name("td")))
        .map(|td| {
            td.descendants()
                .filter(|n| n.is_text())
                .filter_map(|n| n.text())
                .collect::<String>()
        })
        .collect();
    assert_eq!(
        row,
        vec![
            format!("Dr. {SCRIPT}"),
            "responsibility".to_string(),
            "2025-01-21T10:00:00Z".to_string()
        ]
    );
    assert_eq!(
        dom.descendants()
            .filter(|n| n.has_tag_name("script"))
            .count(),
        0
    );
}
