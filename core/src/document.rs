//! Reports and dashboards: the specs users write and the computed [`Document`] that formats render.
//!
//! The engine turns a [`ReportSpec`] or [`DashboardSpec`] into a [`Document`] (tables drawn from study datasets,
//! KPI values computed, chart points aggregated); a format with [`crate::format::Capability::Report`] or
//! [`crate::format::Capability::Dashboard`] renders it. Computing lives here and in the engine, drawing in the
//! formats.

use crate::deid::{ColumnUse, UsedColumn};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::signature::Meaning;
use crate::source::{Filter, SortKey};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Rows a report or dashboard table shows unless its `limit` says otherwise.
pub const DEFAULT_TABLE_LIMIT: usize = 500;
/// The most rows a report or dashboard table may show.
pub const MAX_TABLE_LIMIT: usize = 100_000;

/// A report: a title, parameters and sections of text and tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// The study the report draws from.
    pub study: String,
    /// Title.
    pub title: String,
    /// The data cut-off (e.g. `2024-12-31`), shown on the title and in every page header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_cutoff: Option<String>,
    /// Parameters shown under the title (e.g. population, analysis set), in order of name.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Sections, in order.
    #[serde(default)]
    pub sections: Vec<SectionSpec>,
}

/// One section of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SectionSpec {
    /// A heading and paragraphs of text.
    Text {
        /// Heading.
        #[serde(default)]
        heading: Option<String>,
        /// Text; blank lines separate paragraphs.
        body: String,
    },
    /// A table drawn from a dataset.
    Table(TableSpec),
    /// A summary table: a dataset's rows grouped, with measures per group.
    Summary(SummarySpec),
    /// A bar or line chart.
    Chart(ChartSpec),
}

/// A table drawn from a study dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Heading.
    #[serde(default)]
    pub heading: Option<String>,
    /// Dataset name.
    pub dataset: String,
    /// Columns to show, in order (all when absent).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Row filters, all of which must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Sort keys, most significant first.
    #[serde(default)]
    pub sort: Vec<SortKey>,
    /// Rows shown at most (default [`DEFAULT_TABLE_LIMIT`], at most [`MAX_TABLE_LIMIT`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Footnotes printed under the table, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub footnotes: Vec<String>,
}

/// The most groups a summary table may have.
pub const MAX_SUMMARY_GROUPS: usize = 10_000;

/// A summary table: a dataset's rows grouped by one or more columns, with one or more measures per group (a
/// clinical summary table: counts of subjects by arm, events by system organ class and preferred term, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarySpec {
    /// Heading.
    #[serde(default)]
    pub heading: Option<String>,
    /// Dataset name.
    pub dataset: String,
    /// The columns whose values form the groups, most significant first (at least one). Groups are sorted by
    /// their values' text; a missing value forms the group `(missing)`.
    pub group_by: Vec<String>,
    /// The measures, one column each, in order (at least one).
    pub measures: Vec<SummaryMeasure>,
    /// Row filters, all of which must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Footnotes printed under the table, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub footnotes: Vec<String>,
}

/// One measure column of a summary table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryMeasure {
    /// Column header, e.g. `Subjects`.
    pub label: String,
    /// How the value is computed from the group's rows.
    pub measure: Measure,
    /// The column the measure reads (not for `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// Decimals the value is rounded to (default 0 for `count` and `distinct_count`, 2 for the others; at most
    /// 6).
    #[serde(default)]
    pub decimals: Option<u8>,
}

/// A dashboard: KPI tiles, tables and charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSpec {
    /// The study the dashboard draws from.
    pub study: String,
    /// Title.
    pub title: String,
    /// The data cut-off (e.g. `2024-12-31`), shown under the title and in every page header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_cutoff: Option<String>,
    /// KPI tiles, in order.
    #[serde(default)]
    pub tiles: Vec<TileSpec>,
    /// Tables, in order.
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// Charts, in order.
    #[serde(default)]
    pub charts: Vec<ChartSpec>,
}

/// How a value is computed from a dataset's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Number of rows.
    Count,
    /// Number of distinct non-null values of `column`.
    DistinctCount,
    /// Sum of the numeric `column`.
    Sum,
    /// Mean of the numeric `column` (nulls ignored).
    Mean,
    /// Smallest value of the numeric `column` (nulls ignored).
    Min,
    /// Largest value of the numeric `column` (nulls ignored).
    Max,
    /// Sample standard deviation of the numeric `column` (nulls ignored; needs two values).
    Sd,
}

impl Measure {
    /// Whether the measure needs a column.
    pub fn needs_column(self) -> bool {
        !matches!(self, Measure::Count)
    }

    /// Whether the measure reads numbers (its column must be numeric).
    pub fn numeric(self) -> bool {
        !matches!(self, Measure::Count | Measure::DistinctCount)
    }

    /// How a chart's value axis names the measure of `column`, e.g. `mean of AVAL`.
    pub fn describe(self, column: Option<&str>) -> String {
        let Some(col) = column.filter(|_| self.needs_column()) else {
            return "count".to_string();
        };
        match self {
            Measure::Count => "count".to_string(),
            Measure::DistinctCount => format!("distinct {col}"),
            Measure::Sum => format!("sum of {col}"),
            Measure::Mean => format!("mean of {col}"),
            Measure::Min => format!("minimum of {col}"),
            Measure::Max => format!("maximum of {col}"),
            Measure::Sd => format!("SD of {col}"),
        }
    }
}

/// A KPI tile: a label and one value computed from a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileSpec {
    /// Label, e.g. `Subjects enrolled`.
    pub label: String,
    /// Dataset name.
    pub dataset: String,
    /// How the value is computed.
    pub measure: Measure,
    /// The column the measure reads (not for `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// Row filters, all of which must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// Bar or line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// Bars, one per category.
    Bar,
    /// A line through the categories in order.
    Line,
}

/// A chart: a measure per value of a category column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// Title.
    pub title: String,
    /// Bar or line.
    pub kind: ChartKind,
    /// Dataset name.
    pub dataset: String,
    /// The category column (x axis); categories are sorted by their text.
    pub x: String,
    /// How each category's value is computed.
    pub measure: Measure,
    /// The column the measure reads (not for `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// Row filters, all of which must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

impl ReportSpec {
    /// Every use the report makes of a dataset column, for the privacy rule ([`crate::deid::PrivacyCheck`]):
    /// table columns (all of the dataset's when the table lists none), filters and sort keys; summary group-bys,
    /// measures and filters; chart categories, measures and filters.
    pub fn column_uses(&self) -> Vec<UsedColumn> {
        let mut uses = Vec::new();
        for s in &self.sections {
            match s {
                SectionSpec::Text { .. } => {}
                SectionSpec::Table(t) => uses.extend(t.column_uses()),
                SectionSpec::Summary(t) => uses.extend(t.column_uses()),
                SectionSpec::Chart(c) => uses.extend(c.column_uses()),
            }
        }
        uses
    }
}

impl DashboardSpec {
    /// Every use the dashboard makes of a dataset column, for the privacy rule
    /// ([`crate::deid::PrivacyCheck`]): KPI measures and filters, table columns, filters and sort keys, chart
    /// categories, measures and filters.
    pub fn column_uses(&self) -> Vec<UsedColumn> {
        let mut uses = Vec::new();
        for t in &self.tiles {
            uses.extend(measure_use(
                &t.dataset,
                t.measure,
                t.column.as_deref(),
                "column",
            ));
            uses.extend(filter_uses(&t.dataset, &t.filters));
        }
        for t in &self.tables {
            uses.extend(t.column_uses());
        }
        for c in &self.charts {
            uses.extend(c.column_uses());
        }
        uses
    }
}

impl TableSpec {
    /// The table's column uses: its columns (every column of the dataset when it lists none) shown, its filters
    /// and sort keys.
    pub fn column_uses(&self) -> Vec<UsedColumn> {
        let mut uses = match &self.columns {
            None => vec![UsedColumn {
                dataset: self.dataset.clone(),
                column: None,
                usage: ColumnUse::Output,
                field: "columns",
            }],
            Some(cols) => cols
                .iter()
                .map(|c| UsedColumn::new(&self.dataset, c, ColumnUse::Output, "columns"))
                .collect(),
        };
        uses.extend(filter_uses(&self.dataset, &self.filters));
        uses.extend(
            self.sort
                .iter()
                .map(|k| UsedColumn::new(&self.dataset, &k.column, ColumnUse::Sort, "sort")),
        );
        uses
    }
}

impl SummarySpec {
    /// The summary's column uses: group-bys (their values are shown), measures and filters.
    pub fn column_uses(&self) -> Vec<UsedColumn> {
        let mut uses: Vec<UsedColumn> = self
            .group_by
            .iter()
            .map(|c| UsedColumn::new(&self.dataset, c, ColumnUse::Group, "group_by"))
            .collect();
        for m in &self.measures {
            uses.extend(measure_use(
                &self.dataset,
                m.measure,
                m.column.as_deref(),
                "measures",
            ));
        }
        uses.extend(filter_uses(&self.dataset, &self.filters));
        uses
    }
}

impl ChartSpec {
    /// The chart's column uses: its category column (the categories are shown), its measure and filters.
    pub fn column_uses(&self) -> Vec<UsedColumn> {
        let mut uses = vec![UsedColumn::new(
            &self.dataset,
            &self.x,
            ColumnUse::Group,
            "x",
        )];
        uses.extend(measure_use(
            &self.dataset,
            self.measure,
            self.column.as_deref(),
            "column",
        ));
        uses.extend(filter_uses(&self.dataset, &self.filters));
        uses
    }
}

impl Measure {
    /// How the measure uses its column: the smallest or largest value is one person's value
    /// ([`ColumnUse::Output`]); counts, distinct counts, sums, means and SDs are aggregates.
    pub fn column_use(self) -> ColumnUse {
        match self {
            Measure::Min | Measure::Max => ColumnUse::Output,
            _ => ColumnUse::Aggregate,
        }
    }
}

fn measure_use(
    dataset: &str,
    measure: Measure,
    column: Option<&str>,
    field: &'static str,
) -> Option<UsedColumn> {
    let column = column.filter(|_| measure.needs_column())?;
    Some(UsedColumn::new(
        dataset,
        column,
        measure.column_use(),
        field,
    ))
}

fn filter_uses<'a>(
    dataset: &'a str,
    filters: &'a [Filter],
) -> impl Iterator<Item = UsedColumn> + 'a {
    filters
        .iter()
        .map(move |f| UsedColumn::new(dataset, &f.column, ColumnUse::Filter, "filters"))
}

/// Report or dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// A report.
    Report,
    /// A dashboard.
    Dashboard,
}

/// A computed report or dashboard, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Report or dashboard.
    pub kind: DocumentKind,
    /// Title.
    pub title: String,
    /// Study id.
    pub study: String,
    /// When it was computed (the engine's clock).
    pub generated_at: DateTime<Utc>,
    /// The data cut-off the spec states, if any.
    pub data_cutoff: Option<String>,
    /// Parameters, in order.
    pub parameters: Vec<(String, String)>,
    /// Blocks, in order.
    pub blocks: Vec<Block>,
    /// The e-signatures the job's manifest carries once the job succeeds (empty: the document is not signed).
    /// Renderers show each one (21 CFR 11.50(b)), and say so when there is none.
    pub signatures: Vec<DocumentSignature>,
}

/// What a rendered document shows of one e-signature of its job (21 CFR 11.50): the same printed name, meaning
/// and time as the [`crate::signature::SignatureRecord`] the manifest will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentSignature {
    /// The signer's printed name.
    pub printed_name: String,
    /// The signer's subject id.
    pub signer_id: String,
    /// The meaning of the signature.
    pub meaning: Meaning,
    /// When the signer signed (re-authenticated), UTC.
    pub signed_at: DateTime<Utc>,
}

/// One block of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text under an optional heading.
    Text {
        /// Heading.
        heading: Option<String>,
        /// Text; blank lines separate paragraphs.
        body: String,
    },
    /// A table of rows.
    Table {
        /// Heading.
        heading: Option<String>,
        /// Source dataset.
        dataset: String,
        /// The rows shown (one batch, at most the limit).
        rows: RecordBatch,
        /// Rows that matched before the limit.
        total_rows: u64,
        /// Footnotes printed under the table.
        footnotes: Vec<String>,
    },
    /// KPI tiles.
    Tiles(Vec<Kpi>),
    /// A chart.
    Chart(Chart),
}

/// A computed KPI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpi {
    /// Label.
    pub label: String,
    /// Value (`None` for the mean of no values).
    pub value: Option<f64>,
}

/// A computed chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// Bar or line.
    pub kind: ChartKind,
    /// Category column name.
    pub x_label: String,
    /// Measure description, e.g. `count` or `mean of AVAL`.
    pub y_label: String,
    /// (category, value) in category order.
    pub points: Vec<(String, f64)>,
}

/// Formats a KPI or chart value for people: integers without decimals, others with up to 2.
pub fn display_number(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => {
            let s = format!("{v:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

impl Document {
    /// The SHA-256 (lowercase hex) of the document's content: what a rendered page prints and the job's manifest
    /// records as `document.content_sha256`, so that a printed or rendered document can be tied to its signed
    /// manifest. It cannot be the hash of the rendered file, which the manifest lists and which holds this hash.
    ///
    /// The hash is over the canonical JSON (RFC 8785, [`crate::audit::canonical_json`]) of
    /// `{"kind", "title", "study", "generated_at", "data_cutoff", "parameters": [[name, value], ...], "blocks"}`,
    /// each block as `{"type": "text", "heading", "body"}`, `{"type": "table", "heading", "dataset", "columns",
    /// "rows", "total_rows", "footnotes"}` (cells as Arrow's display text, nulls `null`), `{"type": "tiles",
    /// "items": [{"label", "value"}]}` or `{"type": "chart", "title", "kind", "x_label", "y_label", "points":
    /// [[x, y], ...]}` (non-finite numbers `null`). The signatures are not part of it: they attest to it.
    ///
    /// # Errors
    /// EXP002 `unsupported_type` when a table column cannot be displayed as text.
    pub fn content_sha256(&self) -> Result<String> {
        use serde_json::{json, Value};
        let number = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            blocks.push(match b {
                Block::Text { heading, body } => {
                    json!({"type": "text", "heading": heading, "body": body})
                }
                Block::Table {
                    heading,
                    dataset,
                    rows,
                    total_rows,
                    footnotes,
                } => {
                    let columns: Vec<&str> = rows
                        .schema_ref()
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect();
                    json!({"type": "table", "heading": heading, "dataset": dataset, "columns": columns,
                           "rows": cell_texts(rows)?, "total_rows": total_rows, "footnotes": footnotes})
                }
                Block::Tiles(kpis) => {
                    let items: Vec<Value> = kpis
                        .iter()
                        .map(|k| json!({"label": k.label, "value": k.value.map_or(Value::Null, number)}))
                        .collect();
                    json!({"type": "tiles", "items": items})
                }
                Block::Chart(c) => {
                    let points: Vec<Value> = c
                        .points
                        .iter()
                        .map(|(x, y)| json!([x, number(*y)]))
                        .collect();
                    json!({"type": "chart", "title": c.title, "kind": c.kind, "x_label": c.x_label,
                           "y_label": c.y_label, "points": points})
                }
            });
        }
        let value = json!({
            "kind": self.kind,
            "title": self.title,
            "study": self.study,
            "generated_at": crate::clock::format_utc(self.generated_at),
            "data_cutoff": self.data_cutoff,
            "parameters": self.parameters.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "blocks": blocks,
        });
        let canonical = crate::audit::canonical_json(&value);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        Ok(crate::codec::hex(digest.as_ref()))
    }
}

/// A table's rows as display text, row by row (nulls `null`); zoned timestamps as their UTC instant.
fn cell_texts(rows: &RecordBatch) -> Result<Vec<serde_json::Value>> {
    use arrow::array::{make_array, Array};
    use arrow::datatypes::DataType;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let unsupported = |name: &str| {
        Error::validation(
            Reason::UnsupportedType,
            format!("column '{name}' cannot be displayed"),
        )
        .with_field(name.to_string())
    };
    let mut columns = Vec::with_capacity(rows.num_columns());
    for (array, field) in rows.columns().iter().zip(rows.schema_ref().fields()) {
        let array = match array.data_type() {
            DataType::Dictionary(_, values) => arrow::compute::cast(array, values)?,
            _ => array.clone(),
        };
        // The instants, not their wall-clock time in a named zone (which this build of Arrow cannot resolve).
        let array = match array.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                let data = array
                    .to_data()
                    .into_builder()
                    .data_type(DataType::Timestamp(*unit, None))
                    .build()
                    .map_err(|_| unsupported(field.name()))?;
                make_array(data)
            }
            _ => array,
        };
        columns.push(array);
    }
    let options = FormatOptions::default();
    let formatters = columns
        .iter()
        .zip(rows.schema_ref().fields())
        .map(|(a, f)| {
            ArrayFormatter::try_new(a.as_ref(), &options).map_err(|_| unsupported(f.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.num_rows());
    for r in 0..rows.num_rows() {
        let mut row = Vec::with_capacity(columns.len());
        for ((a, f), field) in columns
            .iter()
            .zip(&formatters)
            .zip(rows.schema_ref().fields())
        {
            row.push(if a.is_null(r) {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(
                    f.value(r)
                        .try_to_string()
                        .map_err(|_| unsupported(field.name()))?,
                )
            });
        }
        out.push(serde_json::Value::Array(row));
    }
    Ok(out)
}
