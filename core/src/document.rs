//! Reports and dashboards: the specs users write and the computed [`Document`] that formats render.
//!
//! The engine turns a [`ReportSpec`] or [`DashboardSpec`] into a [`Document`] (tables drawn from study datasets,
//! KPI values computed, chart points aggregated); a format with [`crate::format::Capability::Report`] or
//! [`crate::format::Capability::Dashboard`] renders it. Computing lives here and in the engine, drawing in the
//! formats.

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
    /// Parameters shown under the title (e.g. data cut-off date), in order of name.
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
}

/// A dashboard: KPI tiles, tables and charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSpec {
    /// The study the dashboard draws from.
    pub study: String,
    /// Title.
    pub title: String,
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
}

impl Measure {
    /// Whether the measure needs a column.
    pub fn needs_column(self) -> bool {
        !matches!(self, Measure::Count)
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
    /// Parameters, in order.
    pub parameters: Vec<(String, String)>,
    /// Blocks, in order.
    pub blocks: Vec<Block>,
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
