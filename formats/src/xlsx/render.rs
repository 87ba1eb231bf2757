//! Reports and dashboards as workbooks: an overview sheet, then one sheet per table and per chart.

use super::cells::{check_fields, setup_columns, Prepared, Styles, TextPolicy};
use super::sheet_name::SheetNames;
use super::{properties, xlsx_error, XlsxOptions, MAX_COLUMNS, MAX_ROWS_PER_SHEET};
use crate::document::manifestation::Manifestation;
use crate::document::paragraphs;
use rust_xlsxwriter::{Chart, ChartType, ColNum, RowNum, Workbook, Worksheet};
use trialport_core::clock::format_utc;
use trialport_core::document::{display_number, Block, ChartKind, Document, DocumentKind};
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};
use trialport_core::format::{FormatOptions, Output};
use trialport_core::meta::DatasetMeta;

/// Renders a report or dashboard as an XLSX workbook.
///
/// The first sheet is the overview: `Report` for a report, `KPIs` for a dashboard. It holds the title, study,
/// generation time, data cut-off, parameters, text sections (one paragraph per row), KPI label/value rows, for each
/// table or chart a pointer to its own sheet (and a table's footnotes), and last the signature manifestation: each
/// e-signature's printed name, meaning and UTC time, or that the document is not signed, and the content hash the
/// job's manifest records. Each table then gets a sheet (header row, typed cells as for datasets), and each
/// chart a sheet with its category/value data and a native Excel chart over it. Sheet names come from headings,
/// dataset names and chart titles, made valid and unique. Options are those of the `xlsx` format; `sheet_name` is
/// not used, `created_at` defaults to the document's `generated_at`.
///
/// # Errors
/// EXP002 for a bad option, a table column Excel cannot hold or a text longer than a cell holds; EXP005 for I/O.
pub fn render_xlsx(doc: &Document, options: &FormatOptions, out: Output<'_>) -> Result<()> {
    let options = XlsxOptions::parse(options, &DatasetMeta::default())?;
    let manifestation = Manifestation::of(doc)?;
    let mut workbook = Workbook::new();
    if let Some(dir) = crate::spool::dir() {
        workbook.set_tempdir(dir).map_err(xlsx_error)?;
    }
    workbook.set_properties(&properties(options.created_at.unwrap_or(doc.generated_at))?);
    let r = Renderer {
        styles: Styles::new(),
        text: TextPolicy {
            neutralize: options.neutralize_formulas,
        },
        options,
    };

    // Names first: the overview points at the sheets that follow it.
    let mut names = SheetNames::default();
    let overview = names.unique(match doc.kind {
        DocumentKind::Report => "Report",
        DocumentKind::Dashboard => "KPIs",
    });
    let block_sheets: Vec<Option<String>> = doc
        .blocks
        .iter()
        .map(|b| match b {
            Block::Table {
                heading, dataset, ..
            } => Some(names.unique(heading.as_deref().unwrap_or(dataset))),
            Block::Chart(c) => Some(names.unique(&c.title)),
            Block::Text { .. } | Block::Tiles(_) => None,
        })
        .collect();

    let ws = add_sheet(&mut workbook, &overview)?;
    r.overview(ws, doc, &block_sheets, &manifestation)?;
    for (block, sheet) in doc.blocks.iter().zip(&block_sheets) {
        let Some(sheet) = sheet else { continue };
        let ws = add_sheet(&mut workbook, sheet)?;
        match block {
            Block::Table { rows, .. } => r.table(ws, rows)?,
            Block::Chart(chart) => r.chart(ws, sheet, chart)?,
            Block::Text { .. } | Block::Tiles(_) => {}
        }
    }
    workbook.save_to_writer(&mut *out).map_err(xlsx_error)?;
    out.flush()
        .map_err(|e| Error::io("flushing the XLSX output", &e))
}

fn add_sheet<'w>(workbook: &'w mut Workbook, name: &str) -> Result<&'w mut Worksheet> {
    let ws = workbook
        .add_worksheet_with_constant_memory()
        .map_err(xlsx_error)?;
    ws.set_name(name).map_err(xlsx_error)?;
    Ok(ws)
}

struct Renderer {
    styles: Styles,
    text: TextPolicy,
    options: XlsxOptions,
}

/// Writes generated (not user) text, which needs no neutralising.
fn label(ws: &mut Worksheet, row: RowNum, col: ColNum, text: &str) -> Result<()> {
    ws.write_string(row, col, text)
        .map(|_| ())
        .map_err(xlsx_error)
}

impl Renderer {
    fn overview(
        &self,
        ws: &mut Worksheet,
        doc: &Document,
        block_sheets: &[Option<String>],
        manifestation: &Manifestation,
    ) -> Result<()> {
        let s = &self.styles;
        ws.set_column_width(0, 32).map_err(xlsx_error)?;
        ws.set_column_width(1, 60).map_err(xlsx_error)?;
        ws.set_column_width(2, 24).map_err(xlsx_error)?;
        self.text
            .write(ws, 0, 0, &doc.title, Some(&s.title), "title")?;
        label(ws, 1, 0, "Study")?;
        self.text.write(ws, 1, 1, &doc.study, None, "study")?;
        label(ws, 2, 0, "Generated at")?;
        label(ws, 2, 1, &format_utc(doc.generated_at))?;
        let mut row: RowNum = 3;
        if let Some(cutoff) = &doc.data_cutoff {
            label(ws, row, 0, "Data cut-off")?;
            self.text.write(ws, row, 1, cutoff, None, "data_cutoff")?;
            row += 1;
        }
        row += 1;
        if !doc.parameters.is_empty() {
            ws.write_string_with_format(row, 0, "Parameters", &s.bold)
                .map_err(xlsx_error)?;
            row += 1;
            for (name, value) in &doc.parameters {
                self.text.write(ws, row, 0, name, None, "parameters")?;
                self.text.write(ws, row, 1, value, None, "parameters")?;
                row += 1;
            }
            row += 1;
        }
        for (block, sheet) in doc.blocks.iter().zip(block_sheets) {
            match block {
                Block::Text { heading, body } => {
                    if let Some(h) = heading {
                        self.text.write(ws, row, 0, h, Some(&s.bold), "heading")?;
                        row += 1;
                    }
                    for paragraph in paragraphs(body) {
                        self.text.write(ws, row, 0, &paragraph, None, "body")?;
                        row += 1;
                    }
                }
                Block::Tiles(kpis) => {
                    ws.write_string_with_format(row, 0, "KPI", &s.bold)
                        .map_err(xlsx_error)?;
                    ws.write_string_with_format(row, 1, "Value", &s.bold)
                        .map_err(xlsx_error)?;
                    row += 1;
                    for kpi in kpis {
                        self.text.write(ws, row, 0, &kpi.label, None, "label")?;
                        match kpi.value {
                            Some(v) if v.is_finite() => {
                                ws.write_number(row, 1, v).map_err(xlsx_error)?;
                            }
                            other => label(ws, row, 1, &display_number(other))?,
                        }
                        row += 1;
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
                    self.text
                        .write(ws, row, 0, title, Some(&s.bold), "heading")?;
                    let shown = rows.num_rows() as u64;
                    let mut note = format!("see sheet {}", sheet.as_deref().unwrap_or_default());
                    if *total_rows > shown {
                        note.push_str(&format!(" (showing {shown} of {total_rows} rows)"));
                    }
                    label(ws, row, 1, &note)?;
                    row += 1;
                    for f in footnotes {
                        self.text.write(ws, row, 1, f, None, "footnotes")?;
                        row += 1;
                    }
                }
                Block::Chart(chart) => {
                    self.text
                        .write(ws, row, 0, &chart.title, Some(&s.bold), "title")?;
                    let note = format!("see sheet {}", sheet.as_deref().unwrap_or_default());
                    label(ws, row, 1, &note)?;
                    row += 1;
                }
            }
            row += 1;
        }
        ws.write_string_with_format(row, 0, "Electronic signatures", &s.bold)
            .map_err(xlsx_error)?;
        row += 1;
        if manifestation.lines.is_empty() {
            label(ws, row, 0, manifestation.unsigned_text())?;
            row += 1;
        } else {
            for (col, title) in ["Signed by", "Meaning", "Date and time (UTC)"]
                .into_iter()
                .enumerate()
            {
                ws.write_string_with_format(row, col as ColNum, title, &s.bold)
                    .map_err(xlsx_error)?;
            }
            row += 1;
            for l in &manifestation.lines {
                self.text
                    .write(ws, row, 0, &l.printed_name, None, "printed_name")?;
                label(ws, row, 1, &l.meaning)?;
                label(ws, row, 2, &l.signed_at)?;
                row += 1;
            }
        }
        label(ws, row, 0, manifestation.content_label())?;
        label(ws, row, 1, &manifestation.content_sha256)?;
        Ok(())
    }

    fn table(&self, ws: &mut Worksheet, rows: &arrow::record_batch::RecordBatch) -> Result<()> {
        let schema = rows.schema();
        check_fields(schema.fields().iter().map(|f| f.as_ref()))?;
        if schema.fields().len() > MAX_COLUMNS {
            return Err(Error::validation(
                Reason::TooManyColumns,
                format!("an Excel sheet holds at most {MAX_COLUMNS} columns"),
            )
            .with_field("columns"));
        }
        // Tables are at most MAX_TABLE_LIMIT rows, far below a sheet's capacity.
        if rows.num_rows() as u64 >= u64::from(MAX_ROWS_PER_SHEET) {
            return Err(Error::validation(
                Reason::TooManyRows,
                "a table has more rows than an Excel sheet holds",
            ));
        }
        let meta = DatasetMeta::from_schema(&schema);
        setup_columns(ws, schema.fields().iter().map(|f| f.as_ref()), &self.styles)?;
        let mut row: RowNum = 0;
        if self.options.header {
            for (col, f) in schema.fields().iter().enumerate() {
                let title = if self.options.labels_as_header {
                    meta.column(f.name()).and_then(|c| c.label.as_deref())
                } else {
                    None
                };
                let title = title.unwrap_or(f.name());
                self.text.write(
                    ws,
                    0,
                    col as ColNum,
                    title,
                    Some(&self.styles.bold),
                    f.name(),
                )?;
            }
            if self.options.freeze_header {
                ws.set_freeze_panes(1, 0).map_err(xlsx_error)?;
            }
            row = 1;
        }
        let prepared = Prepared::new(rows.columns())?;
        let columns = prepared.columns()?;
        for i in 0..rows.num_rows() {
            for (col, (cells, f)) in columns.iter().zip(schema.fields()).enumerate() {
                cells.write(ws, row, col as ColNum, i, self.text, f.name())?;
            }
            row += 1;
        }
        Ok(())
    }

    fn chart(
        &self,
        ws: &mut Worksheet,
        sheet: &str,
        chart: &trialport_core::document::Chart,
    ) -> Result<()> {
        let b = &self.styles.bold;
        ws.set_column_width(0, 24).map_err(xlsx_error)?;
        ws.set_column_width(1, 14).map_err(xlsx_error)?;
        self.text
            .write(ws, 0, 0, &chart.x_label, Some(b), "x_label")?;
        self.text
            .write(ws, 0, 1, &chart.y_label, Some(b), "y_label")?;
        let mut row: RowNum = 1;
        for (x, y) in &chart.points {
            self.text.write(ws, row, 0, x, None, "x")?;
            if y.is_finite() {
                ws.write_number(row, 1, *y).map_err(xlsx_error)?;
            }
            row += 1;
        }
        if chart.points.is_empty() {
            return Ok(());
        }
        let last = row - 1;
        let mut native = Chart::new(match chart.kind {
            ChartKind::Bar => ChartType::Column,
            ChartKind::Line => ChartType::Line,
        });
        // Names come from cells, never from the text itself: chart text starting with `=` would be a formula.
        native
            .add_series()
            .set_name((sheet, 0, 1))
            .set_categories((sheet, 1, 0, last, 0))
            .set_values((sheet, 1, 1, last, 1));
        native.x_axis().set_name((sheet, 0, 0));
        native.y_axis().set_name((sheet, 0, 1));
        native.legend().set_hidden();
        ws.insert_chart(1, 3, &native).map_err(xlsx_error)?;
        Ok(())
    }
}
