//! A document as one self-contained HTML5 page.
//!
//! The page has inline CSS and inline SVG only: no scripts, no external resources, and a Content-Security-Policy
//! that forbids loading any. It is also well-formed XML (every element closed, every attribute quoted, CSS without
//! `<` or `&`), so it can be checked with an XML parser. Every text from the document is escaped with
//! [`super::escape`]; table cells are formatted with Arrow's display formatter, nulls shown empty. The bytes
//! depend only on the document and the options.

use super::cells::Displayable;
use super::manifestation::Manifestation;
use super::svg::chart_svg;
use super::{escape, paragraphs, write_error, HtmlOptions, Theme};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use trialport_core::clock::format_utc;
use trialport_core::document::{display_number, Block, Document, DocumentKind, Kpi};
use trialport_core::error::Result;
use trialport_core::format::Output;

/// Buffered page text, handed to the output in chunks so a long table never sits whole in memory twice.
struct Page<'o, 'a> {
    buf: String,
    out: &'o mut Output<'a>,
}

const CHUNK: usize = 1 << 16;

impl Page<'_, '_> {
    fn push(&mut self, s: &str) -> Result<()> {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .write_all(self.buf.as_bytes())
            .map_err(write_error)?;
        self.buf.clear();
        Ok(())
    }
}

const BASE_CSS: &str = "\
body{margin:0;background:var(--bg);color:var(--fg);font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5}
header,main,footer{max-width:1120px;margin:0 auto;padding:0 24px}
header{padding-top:24px;border-bottom:1px solid var(--line)}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:28px 0 8px}
.meta{color:var(--muted);margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
thead th,.params th{background:var(--head)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.table-wrap{overflow-x:auto}
.note{color:var(--muted);font-size:13px;margin:4px 0}
.footnote{font-size:13px;margin:2px 0}
.signatures code{font-size:12px;word-break:break-all}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:20px 0}
.tile{background:var(--tile);border:1px solid var(--line);border-radius:6px;padding:12px 16px;min-width:160px}
.tile .label{color:var(--muted);font-size:13px}
.tile .value{font-size:28px;font-weight:600;font-variant-numeric:tabular-nums}
figure{margin:16px 0}
figcaption{font-weight:600;margin-bottom:4px}
svg.chart{max-width:100%;height:auto;font-size:12px}
svg .axis{stroke:var(--muted);stroke-width:1}
svg .grid{stroke:var(--line);stroke-width:1}
svg .bar{fill:var(--accent)}
svg .bar.neg{fill:var(--accent2)}
svg .line{fill:none;stroke:var(--accent);stroke-width:2}
svg .dot{fill:var(--accent)}
svg text{fill:var(--fg)}
svg .tick,svg .empty{fill:var(--muted)}
footer{color:var(--muted);font-size:12px;padding-top:24px;padding-bottom:24px}
@media print{.table-wrap{overflow:visible}body{font-size:12px}}
";

const LIGHT: &str =
    ":root{--bg:#ffffff;--fg:#1f2933;--muted:#52606d;--line:#d9e2ec;--head:#f0f4f8;\
--tile:#f7f9fb;--accent:#2f6fb3;--accent2:#c05621}\n";
const DARK: &str = ":root{--bg:#14181f;--fg:#e4e7eb;--muted:#9aa5b1;--line:#3e4c59;--head:#1f2933;\
--tile:#1b2129;--accent:#63a4ff;--accent2:#f0b429}\n";

/// Renders `doc` as an HTML page to `out`.
///
/// # Errors
/// EXP002 when a table column cannot be displayed; EXP005 for I/O.
pub fn render_html(doc: &Document, options: &HtmlOptions, mut out: Output<'_>) -> Result<()> {
    let manifestation = Manifestation::of(doc)?;
    let mut page = Page {
        buf: String::with_capacity(CHUNK + 4096),
        out: &mut out,
    };
    let kind = match doc.kind {
        DocumentKind::Report => "report",
        DocumentKind::Dashboard => "dashboard",
    };
    let title = escape(&doc.title);
    page.push(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <meta name=\"generator\" content=\"trialport\"/>\n<title>{title}</title>\n<style>\n{}{BASE_CSS}</style>\n\
         </head>\n<body class=\"{kind}\">\n<header>\n<h1>{title}</h1>\n\
         <p class=\"meta\">{} · Study <strong>{}</strong>{cutoff} · Generated <time datetime=\"{generated}\">{generated}</time></p>\n\
         </header>\n<main>\n",
        match options.theme {
            Theme::Light => LIGHT,
            Theme::Dark => DARK,
        },
        if doc.kind == DocumentKind::Report {
            "Report"
        } else {
            "Dashboard"
        },
        escape(&doc.study),
        cutoff = doc
            .data_cutoff
            .as_deref()
            .map(|c| format!(" · Data cut-off <strong>{}</strong>", escape(c)))
            .unwrap_or_default(),
        generated = escape(&format_utc(doc.generated_at)),
    ))?;

    if !doc.parameters.is_empty() {
        page.push("<section class=\"parameters\">\n<h2>Parameters</h2>\n<table class=\"params\">\n<tbody>\n")?;
        for (name, value) in &doc.parameters {
            page.push(&format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>\n",
                escape(name),
                escape(value)
            ))?;
        }
        page.push("</tbody>\n</table>\n</section>\n")?;
    }

    for (i, block) in doc.blocks.iter().enumerate() {
        match block {
            Block::Text { heading, body } => {
                page.push("<section class=\"text\">\n")?;
                if let Some(h) = heading {
                    page.push(&format!("<h2>{}</h2>\n", escape(h)))?;
                }
                for p in paragraphs(body) {
                    let lines: Vec<String> = p.lines().map(|l| escape(l).into_owned()).collect();
                    page.push(&format!("<p>{}</p>\n", lines.join("<br/>\n")))?;
                }
                page.push("</section>\n")?;
            }
            Block::Table {
                heading,
                dataset,
                rows,
                total_rows,
                footnotes,
            } => {
                page.push("<section class=\"table\">\n")?;
                page.push(&format!(
                    "<h2>{}</h2>\n",
                    escape(heading.as_deref().unwrap_or(dataset))
                ))?;
                table(&mut page, rows)?;
                let shown = rows.num_rows() as u64;
                let mut note = format!("Dataset {}", escape(dataset));
                if *total_rows > shown {
                    note.push_str(&format!(" · showing {shown} of {total_rows} rows"));
                } else if shown == 0 {
                    note.push_str(" · no rows");
                }
                page.push(&format!("<p class=\"note\">{note}</p>\n"))?;
                for f in footnotes {
                    page.push(&format!("<p class=\"footnote\">{}</p>\n", escape(f)))?;
                }
                page.push("</section>\n")?;
            }
            Block::Tiles(kpis) => tiles(&mut page, kpis)?,
            Block::Chart(chart) => {
                page.push(&format!(
                    "<section class=\"chart\">\n<figure>\n<figcaption>{}</figcaption>\n",
                    escape(&chart.title)
                ))?;
                page.push(&chart_svg(chart, &format!("chart-{}", i + 1)))?;
                page.push("\n</figure>\n</section>\n")?;
            }
        }
    }
    signatures(&mut page, &manifestation)?;
    page.push(&format!(
        "</main>\n<footer>Generated by trialport at {} from study {}.</footer>\n</body>\n</html>\n",
        escape(&format_utc(doc.generated_at)),
        escape(&doc.study)
    ))?;
    page.flush()?;
    page.out.flush().map_err(write_error)
}

/// The signature manifestation (21 CFR 11.50): each signature's printed name, meaning and UTC time, or that the
/// document is unsigned; and the content hash the signed manifest records.
fn signatures(page: &mut Page<'_, '_>, m: &Manifestation) -> Result<()> {
    page.push("<section class=\"signatures\">\n<h2>Electronic signatures</h2>\n")?;
    if m.lines.is_empty() {
        page.push(&format!("<p>{}</p>\n", escape(m.unsigned_text())))?;
    } else {
        page.push(
            "<table>\n<thead>\n<tr><th scope=\"col\">Signed by</th><th scope=\"col\">Meaning</th>\
             <th scope=\"col\">Date and time (UTC)</th></tr>\n</thead>\n<tbody>\n",
        )?;
        for l in &m.lines {
            page.push(&format!(
                "<tr><td>{}</td><td>{}</td><td><time datetime=\"{at}\">{at}</time></td></tr>\n",
                escape(&l.printed_name),
                escape(&l.meaning),
                at = escape(&l.signed_at),
            ))?;
        }
        page.push("</tbody>\n</table>\n")?;
    }
    page.push(&format!(
        "<p class=\"note\">{} <code>{}</code></p>\n</section>\n",
        escape(m.content_label()),
        escape(&m.content_sha256)
    ))
}

fn tiles(page: &mut Page<'_, '_>, kpis: &[Kpi]) -> Result<()> {
    page.push("<section class=\"tiles\">\n")?;
    for kpi in kpis {
        page.push(&format!(
            "<div class=\"tile\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>\n",
            escape(&kpi.label),
            escape(&display_number(kpi.value))
        ))?;
    }
    page.push("</section>\n")
}

fn is_numeric(dt: &DataType) -> bool {
    match dt {
        DataType::Dictionary(_, v) => is_numeric(v),
        dt => dt.is_numeric(),
    }
}

fn table(page: &mut Page<'_, '_>, rows: &RecordBatch) -> Result<()> {
    let schema = rows.schema();
    page.push("<div class=\"table-wrap\">\n<table>\n<thead>\n<tr>")?;
    for f in schema.fields() {
        page.push(&format!("<th scope=\"col\">{}</th>", escape(f.name())))?;
    }
    page.push("</tr>\n</thead>\n<tbody>\n")?;
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
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| is_numeric(f.data_type()))
        .collect();
    let mut row = String::new();
    for i in 0..rows.num_rows() {
        row.clear();
        row.push_str("<tr>");
        for (fmt, num) in formatters.iter().zip(&numeric) {
            let text = fmt.text(i)?.unwrap_or_default();
            row.push_str(if *num { "<td class=\"num\">" } else { "<td>" });
            row.push_str(&escape(&text));
            row.push_str("</td>");
        }
        row.push_str("</tr>\n");
        page.push(&row)?;
    }
    page.push("</tbody>\n</table>\n</div>\n")
}
