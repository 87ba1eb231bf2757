//! The streaming dataset encoder.

use super::cells::{check_fields, setup_columns, Prepared, Styles, TextPolicy};
use super::{properties, sheet_name, xlsx_error, XlsxOptions, MAX_COLUMNS, MAX_ROWS_PER_SHEET};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use rust_xlsxwriter::{ColNum, Workbook, Worksheet};
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};
use trialport_core::format::{EncodeSummary, Encoder, Output};
use trialport_core::meta::DatasetMeta;

/// Writes one dataset as an XLSX workbook, row by row in constant memory.
///
/// Created by [`super::XlsxFormat`] through [`trialport_core::format::Format::encoder`], or directly with typed
/// options. Rows past a sheet's capacity continue on a new sheet `<name>_2`, `<name>_3`, ... that repeats the header.
pub struct XlsxEncoder<'a> {
    out: Output<'a>,
    workbook: Workbook,
    options: XlsxOptions,
    schema: SchemaRef,
    header: Vec<String>,
    styles: Styles,
    /// Sheets created so far; the current one is the last.
    sheets: usize,
    /// Rows used on the current sheet, header included.
    rows_in_sheet: u32,
    rows: u64,
}

impl std::fmt::Debug for XlsxEncoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XlsxEncoder")
            .field("options", &self.options)
            .field("sheets", &self.sheets)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<'a> XlsxEncoder<'a> {
    /// An encoder for batches of `schema`, writing the workbook to `out` when finished.
    ///
    /// # Errors
    /// EXP002 `unsupported_type` for a column Excel cannot hold, `too_many_columns` past 16,384 columns,
    /// `invalid_option` for an invalid sheet name or row limit; EXP005 when a temporary file cannot be created.
    pub fn try_new(
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: XlsxOptions,
        out: Output<'a>,
    ) -> Result<Self> {
        check_fields(schema.fields().iter().map(|f| f.as_ref()))?;
        if schema.fields().len() > MAX_COLUMNS {
            return Err(Error::validation(
                Reason::TooManyColumns,
                format!("an Excel sheet holds at most {MAX_COLUMNS} columns"),
            )
            .with_field("columns")
            .with_detail("max", MAX_COLUMNS));
        }
        sheet_name::validate(&options.sheet_name).map_err(|why| {
            Error::validation(
                Reason::InvalidOption,
                format!("option 'sheet_name' is not a valid Excel sheet name: {why}"),
            )
            .with_field("options.sheet_name")
        })?;
        let min_rows = u32::from(options.header) + 1;
        if !(min_rows..=MAX_ROWS_PER_SHEET).contains(&options.max_rows_per_sheet) {
            return Err(Error::validation(
                Reason::InvalidOption,
                "rows per sheet must leave room for a data row and stay within Excel's limit",
            )
            .with_field("options.max_rows_per_sheet"));
        }
        let header = schema
            .fields()
            .iter()
            .map(|f| {
                let label = options
                    .labels_as_header
                    .then(|| meta.column(f.name()).and_then(|c| c.label.clone()))
                    .flatten();
                label.unwrap_or_else(|| f.name().clone())
            })
            .collect();
        let mut workbook = Workbook::new();
        if let Some(dir) = crate::spool::dir() {
            workbook.set_tempdir(dir).map_err(xlsx_error)?;
        }
        let created = options.created_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        workbook.set_properties(&properties(created)?);
        let mut encoder = XlsxEncoder {
            out,
            workbook,
            options,
            schema: schema.clone(),
            header,
            styles: Styles::new(),
            sheets: 0,
            rows_in_sheet: 0,
            rows: 0,
        };
        encoder.add_sheet()?;
        Ok(encoder)
    }

    fn text_policy(&self) -> TextPolicy {
        TextPolicy {
            neutralize: self.options.neutralize_formulas,
        }
    }

    /// Starts the next sheet, with its header row.
    fn add_sheet(&mut self) -> Result<()> {
        let name = if self.sheets == 0 {
            self.options.sheet_name.clone()
        } else {
            sheet_name::with_suffix(&self.options.sheet_name, self.sheets + 1)
        };
        let text = self.text_policy();
        let ws = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(xlsx_error)?;
        ws.set_name(name).map_err(xlsx_error)?;
        setup_columns(
            ws,
            self.schema.fields().iter().map(|f| f.as_ref()),
            &self.styles,
        )?;
        self.sheets += 1;
        self.rows_in_sheet = 0;
        if self.options.header {
            for (col, (title, field)) in self.header.iter().zip(self.schema.fields()).enumerate() {
                text.write(
                    ws,
                    0,
                    col_num(col)?,
                    title,
                    Some(&self.styles.bold),
                    field.name(),
                )?;
            }
            if self.options.freeze_header {
                ws.set_freeze_panes(1, 0).map_err(xlsx_error)?;
            }
            self.rows_in_sheet = 1;
        }
        Ok(())
    }

    fn current_sheet(&mut self) -> Result<&mut Worksheet> {
        self.workbook
            .worksheet_from_index(self.sheets - 1)
            .map_err(xlsx_error)
    }
}

fn col_num(col: usize) -> Result<ColNum> {
    ColNum::try_from(col).map_err(|_| Error::validation(Reason::TooManyColumns, "too many columns"))
}

impl Encoder for XlsxEncoder<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_columns() != self.schema.fields().len() {
            return Err(Error::validation(
                Reason::SchemaMismatch,
                "batch has a different number of columns than the schema",
            ));
        }
        let prepared = Prepared::new(batch.columns())?;
        let columns = prepared.columns()?;
        let schema = self.schema.clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let text = self.text_policy();
        let limit = self.options.max_rows_per_sheet;
        let mut index = 0;
        while index < batch.num_rows() {
            if self.rows_in_sheet >= limit {
                self.add_sheet()?;
            }
            let room = (limit - self.rows_in_sheet) as usize;
            let take = room.min(batch.num_rows() - index);
            let mut row = self.rows_in_sheet;
            let ws = self.current_sheet()?;
            for i in index..index + take {
                for (col, cells) in columns.iter().enumerate() {
                    // Columns were checked against MAX_COLUMNS, which fits a ColNum.
                    cells.write(ws, row, col as ColNum, i, text, names[col])?;
                }
                row += 1;
            }
            self.rows_in_sheet = row;
            index += take;
            self.rows += take as u64;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<EncodeSummary> {
        let this = &mut *self;
        this.workbook
            .save_to_writer(&mut *this.out)
            .map_err(xlsx_error)?;
        this.out
            .flush()
            .map_err(|e| Error::io("flushing the XLSX output", &e))?;
        Ok(EncodeSummary::rows(this.rows))
    }
}
