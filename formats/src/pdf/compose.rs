//! A document laid out as pages: a report's title page (study, title, data cut-off, parameters, generation time,
//! engine version and its signatures), then its sections; a dashboard's heading, KPI tiles, tables and charts,
//! then its signatures.

use super::fonts::{clean, Fonts};
use super::layout::{colour, Geometry, Item, Layout, LEADING};
use super::table::{layout_table, TextTable};
use crate::document::cells::Displayable;
use crate::document::manifestation::Manifestation;
use crate::document::paragraphs;
use crate::document::svg::{HEIGHT as CHART_HEIGHT, WIDTH as CHART_WIDTH};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use trialport_core::clock::format_utc;
use trialport_core::document::{display_number, Block, Document, DocumentKind, Kpi};
use trialport_core::engine::ENGINE_VERSION;
use trialport_core::error::Result;

/// Body text size.
const BODY: f32 = 9.5;
/// Space between blocks.
const BLOCK_GAP: f32 = 14.0;

/// Lays out `doc` in pages of `geometry`.
///
/// # Errors
/// EXP002 when a table column cannot be displayed or a table is too wide for the page.
pub(crate) fn compose(
    doc: &Document,
    manifestation: &Manifestation,
    fonts: &Fonts,
    geometry: Geometry,
) -> Result<Vec<Vec<Item>>> {
    let mut l = Layout::new(fonts, geometry);
    match doc.kind {
        DocumentKind::Report => {
            title_page(&mut l, doc, manifestation)?;
            l.new_page();
        }
        DocumentKind::Dashboard => {
            l.heading(&doc.title, 16.0, 40.0);
            let mut meta = format!("Dashboard · Study {}", doc.study);
            if let Some(c) = &doc.data_cutoff {
                meta.push_str(&format!(" · Data cut-off {c}"));
            }
            meta.push_str(&format!(
                " · Generated {} by trialport {ENGINE_VERSION}",
                format_utc(doc.generated_at)
            ));
            l.paragraph(&meta, 8.5, false, colour::MUTED);
            l.gap(BLOCK_GAP);
        }
    }
    for block in &doc.blocks {
        match block {
            Block::Text { heading, body } => {
                if let Some(h) = heading {
                    l.heading(h, 12.0, 3.0 * BODY * LEADING);
                }
                for p in paragraphs(body) {
                    l.paragraph(&p, BODY, false, colour::FG);
                    l.gap(BODY * 0.5);
                }
            }
            Block::Table {
                heading,
                dataset,
                rows,
                total_rows,
                footnotes,
            } => {
                let title = heading.as_deref().unwrap_or(dataset);
                l.heading(title, 11.0, 40.0);
                layout_table(&mut l, &text_table(rows)?, title)?;
                let shown = rows.num_rows() as u64;
                let mut note = format!("Dataset {dataset}");
                if *total_rows > shown {
                    note.push_str(&format!(" · showing {shown} of {total_rows} rows"));
                } else if shown == 0 {
                    note.push_str(" · no rows");
                }
                l.paragraph(&note, 7.5, false, colour::MUTED);
                for f in footnotes {
                    l.paragraph(f, 7.5, false, colour::FG);
                }
            }
            Block::Tiles(kpis) => tiles(&mut l, kpis),
            Block::Chart(chart) => {
                let scale = (l.geometry.content_width() / CHART_WIDTH as f32).min(0.75);
                let h = CHART_HEIGHT as f32 * scale;
                l.heading(&chart.title, 11.0, h);
                let x = l.geometry.left;
                let y = l.y;
                l.push(Item::Chart {
                    x,
                    y,
                    scale,
                    chart: Box::new(chart.clone()),
                });
                l.gap(h);
            }
        }
        l.gap(BLOCK_GAP);
    }
    if doc.kind == DocumentKind::Dashboard {
        signatures(&mut l, manifestation)?;
    }
    Ok(l.pages)
}

/// A report's first page.
fn title_page(l: &mut Layout<'_>, doc: &Document, m: &Manifestation) -> Result<()> {
    l.gap(40.0);
    l.paragraph("REPORT", 9.0, true, colour::MUTED);
    l.gap(4.0);
    l.paragraph(&doc.title, 20.0, true, colour::FG);
    l.gap(18.0);
    let mut facts = vec![("Study".to_string(), doc.study.clone())];
    if let Some(c) = &doc.data_cutoff {
        facts.push(("Data cut-off".into(), c.clone()));
    }
    facts.push(("Generated".into(), format_utc(doc.generated_at)));
    facts.push(("Engine".into(), format!("trialport {ENGINE_VERSION}")));
    for (k, v) in &facts {
        fact(l, k, v);
    }
    if !doc.parameters.is_empty() {
        l.gap(BLOCK_GAP);
        l.heading("Parameters", 11.0, 30.0);
        let t = TextTable {
            header: vec!["Parameter".into(), "Value".into()],
            numeric: vec![false, false],
            rows: doc
                .parameters
                .iter()
                .map(|(k, v)| vec![clean(k), clean(v)])
                .collect(),
        };
        layout_table(l, &t, "Parameters")?;
    }
    l.gap(BLOCK_GAP);
    signatures(l, m)
}

/// A label and its value on one line (the value wrapped beside the label).
fn fact(l: &mut Layout<'_>, label: &str, value: &str) {
    let size = 10.0;
    let indent = 90.0;
    let g = l.geometry;
    let lines = l
        .fonts
        .regular
        .wrap(&clean(value), size, g.content_width() - indent);
    l.ensure(size * LEADING * lines.len() as f32);
    let y = l.y;
    l.line(label, size, true, colour::MUTED, g.left);
    l.y = y;
    for line in lines {
        l.line(&line, size, false, colour::FG, g.left + indent);
    }
}

/// The signature manifestation (21 CFR 11.50): each signature's printed name, meaning and UTC time, or that the
/// document is unsigned; then the content hash the signed manifest records.
fn signatures(l: &mut Layout<'_>, m: &Manifestation) -> Result<()> {
    l.heading("Electronic signatures", 11.0, 40.0);
    if m.lines.is_empty() {
        l.paragraph(m.unsigned_text(), BODY, false, colour::FG);
    } else {
        let t = TextTable {
            header: vec![
                "Signed by".into(),
                "Meaning".into(),
                "Date and time (UTC)".into(),
            ],
            numeric: vec![false, false, false],
            rows: m
                .lines
                .iter()
                .map(|s| {
                    vec![
                        clean(&s.printed_name),
                        s.meaning.clone(),
                        s.signed_at.clone(),
                    ]
                })
                .collect(),
        };
        layout_table(l, &t, "Electronic signatures")?;
    }
    l.gap(4.0);
    l.paragraph(m.content_label(), 8.0, false, colour::MUTED);
    l.paragraph(&m.content_sha256, 8.0, false, colour::FG);
    Ok(())
}

/// KPI tiles, up to four a row; a row of tiles never breaks across pages.
fn tiles(l: &mut Layout<'_>, kpis: &[Kpi]) {
    let per_row = 4usize;
    let gap = 10.0;
    let g = l.geometry;
    let w = (g.content_width() - gap * (per_row as f32 - 1.0)) / per_row as f32;
    let h = 54.0;
    for row in kpis.chunks(per_row) {
        l.ensure(h);
        let mut x = g.left;
        for kpi in row {
            let label = l.fonts.regular.fit(&clean(&kpi.label), 8.0, w - 16.0);
            let value = l.fonts.bold.fit(&display_number(kpi.value), 20.0, w - 16.0);
            let y = l.y;
            l.push(Item::Rect {
                x,
                y,
                w,
                h,
                fill: colour::TILE,
                stroke: Some(colour::LINE),
            });
            l.push(Item::Text {
                x: x + 8.0,
                y: y + 16.0,
                size: 8.0,
                bold: false,
                colour: colour::MUTED,
                text: label,
            });
            l.push(Item::Text {
                x: x + 8.0,
                y: y + 42.0,
                size: 20.0,
                bold: true,
                colour: colour::FG,
                text: value,
            });
            x += w + gap;
        }
        l.gap(h + gap);
    }
}

fn is_numeric(dt: &DataType) -> bool {
    match dt {
        DataType::Dictionary(_, v) => is_numeric(v),
        dt => dt.is_numeric(),
    }
}

/// A table block's rows as text, with Arrow's display formatter (nulls empty), as the HTML page shows them.
fn text_table(rows: &RecordBatch) -> Result<TextTable> {
    let schema = rows.schema();
    let columns = rows
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| Displayable::new(c, f.name()))
        .collect::<Result<Vec<_>>>()?;
    let formatters = columns
        .iter()
        .map(Displayable::formatter)
        .collect::<Result<Vec<_>>>()?;
    let mut out = TextTable {
        header: schema.fields().iter().map(|f| clean(f.name())).collect(),
        numeric: schema
            .fields()
            .iter()
            .map(|f| is_numeric(f.data_type()))
            .collect(),
        rows: Vec::with_capacity(rows.num_rows()),
    };
    for i in 0..rows.num_rows() {
        out.rows.push(
            formatters
                .iter()
                .map(|f| Ok(clean(&f.text(i)?.unwrap_or_default())))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    Ok(out)
}
