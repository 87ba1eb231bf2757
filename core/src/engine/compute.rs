//! Computing reports and dashboards: tables drawn from datasets, KPI values and chart points.

use super::aggregate::{as_floats, measure_column, Agg};
use super::Inner;
use crate::document::{
    Block, Chart, ChartSpec, DashboardSpec, Document, DocumentKind, Kpi, Measure, ReportSpec,
    SectionSpec, TableSpec, TileSpec, DEFAULT_TABLE_LIMIT, MAX_TABLE_LIMIT,
};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::source::Filter;
use arrow::array::Array;
use arrow::compute::{
    concat_batches, lexsort_to_indices, take_record_batch, SortColumn, SortOptions,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Validates a report spec against the study's data before a job is created.
pub(crate) fn check_report(inner: &Inner, spec: &ReportSpec) -> Result<()> {
    check_text(&spec.title, "report.title")?;
    for s in &spec.sections {
        match s {
            SectionSpec::Table(t) => check_table(inner, &spec.study, t)?,
            SectionSpec::Summary(t) => super::summary::check(inner, &spec.study, t)?,
            SectionSpec::Chart(c) => check_chart(inner, &spec.study, c)?,
            SectionSpec::Text { .. } => {}
        }
    }
    Ok(())
}

/// Validates a dashboard spec against the study's data before a job is created.
pub(crate) fn check_dashboard(inner: &Inner, spec: &DashboardSpec) -> Result<()> {
    check_text(&spec.title, "dashboard.title")?;
    for t in &spec.tables {
        check_table(inner, &spec.study, t)?;
    }
    for t in &spec.tiles {
        check_measure(
            inner,
            &spec.study,
            &t.dataset,
            t.measure,
            t.column.as_deref(),
            &t.filters,
        )?;
    }
    for c in &spec.charts {
        check_chart(inner, &spec.study, c)?;
    }
    Ok(())
}

fn check_chart(inner: &Inner, study: &str, c: &ChartSpec) -> Result<()> {
    check_measure(
        inner,
        study,
        &c.dataset,
        c.measure,
        c.column.as_deref(),
        &c.filters,
    )?;
    let s = inner.scan(study, &c.dataset, None, &[])?;
    if s.schema().index_of(&c.x).is_err() {
        return Err(Error::validation(
            Reason::UnknownColumn,
            format!("chart '{}' groups by a column the dataset lacks", c.title),
        )
        .with_field("charts.x"));
    }
    Ok(())
}

fn check_text(text: &str, field: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(
            Error::validation(Reason::MissingTitle, "a title is required").with_field(field),
        );
    }
    Ok(())
}

fn table_limit(t: &TableSpec) -> Result<usize> {
    let limit = t.limit.unwrap_or(DEFAULT_TABLE_LIMIT);
    if !(1..=MAX_TABLE_LIMIT).contains(&limit) {
        return Err(Error::validation(
            Reason::OutOfRange,
            format!("a table shows 1 to {MAX_TABLE_LIMIT} rows"),
        )
        .with_field("limit"));
    }
    Ok(limit)
}

fn check_table(inner: &Inner, study: &str, t: &TableSpec) -> Result<()> {
    table_limit(t)?;
    let stream = inner.scan(study, &t.dataset, t.columns.as_deref(), &t.filters)?;
    for k in &t.sort {
        if stream.schema().index_of(&k.column).is_err() {
            return Err(Error::validation(
                Reason::UnknownColumn,
                format!(
                    "sort column '{}' is not among the table's columns",
                    k.column
                ),
            )
            .with_field("sort"));
        }
    }
    Ok(())
}

fn check_measure(
    inner: &Inner,
    study: &str,
    dataset: &str,
    measure: Measure,
    column: Option<&str>,
    filters: &[Filter],
) -> Result<()> {
    let stream = inner.scan(study, dataset, None, filters)?;
    measure_column(&stream, measure, column).map(|_| ())
}

/// Computes a report.
pub(crate) fn report(inner: &Inner, spec: &ReportSpec, now: DateTime<Utc>) -> Result<Document> {
    let mut blocks = Vec::new();
    for s in &spec.sections {
        blocks.push(match s {
            SectionSpec::Text { heading, body } => Block::Text {
                heading: heading.clone(),
                body: body.clone(),
            },
            SectionSpec::Table(t) => table(inner, &spec.study, t)?,
            SectionSpec::Summary(t) => super::summary::table(inner, &spec.study, t)?,
            SectionSpec::Chart(c) => Block::Chart(chart(inner, &spec.study, c)?),
        });
    }
    Ok(Document {
        kind: DocumentKind::Report,
        title: spec.title.clone(),
        study: spec.study.clone(),
        generated_at: now,
        data_cutoff: spec.data_cutoff.clone(),
        parameters: spec
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        blocks,
        signatures: vec![],
    })
}

/// Computes a dashboard: tiles first, then tables, then charts.
pub(crate) fn dashboard(
    inner: &Inner,
    spec: &DashboardSpec,
    now: DateTime<Utc>,
) -> Result<Document> {
    let mut blocks = Vec::new();
    if !spec.tiles.is_empty() {
        let tiles = spec
            .tiles
            .iter()
            .map(|t| tile(inner, &spec.study, t))
            .collect::<Result<Vec<_>>>()?;
        blocks.push(Block::Tiles(tiles));
    }
    for t in &spec.tables {
        blocks.push(table(inner, &spec.study, t)?);
    }
    for c in &spec.charts {
        blocks.push(Block::Chart(chart(inner, &spec.study, c)?));
    }
    Ok(Document {
        kind: DocumentKind::Dashboard,
        title: spec.title.clone(),
        study: spec.study.clone(),
        generated_at: now,
        data_cutoff: spec.data_cutoff.clone(),
        parameters: vec![],
        blocks,
        signatures: vec![],
    })
}

/// A table block: without sort keys, the first `limit` matching rows (streaming, counting the rest); with sort
/// keys, the whole selection is sorted (held in memory: report tables are for people, not for bulk data).
fn table(inner: &Inner, study: &str, t: &TableSpec) -> Result<Block> {
    let limit = table_limit(t)?;
    let stream = inner.scan(study, &t.dataset, t.columns.as_deref(), &t.filters)?;
    let schema = stream.schema().clone();
    let mut kept: Vec<RecordBatch> = Vec::new();
    let mut kept_rows = 0usize;
    let mut total = 0u64;
    let sorting = !t.sort.is_empty();
    for b in stream {
        let b = b?;
        total += b.num_rows() as u64;
        if sorting {
            kept.push(b);
        } else if kept_rows < limit {
            let n = (limit - kept_rows).min(b.num_rows());
            kept.push(b.slice(0, n));
            kept_rows += n;
        }
    }
    let mut rows = concat_batches(&schema, &kept)?;
    if sorting {
        let columns = t
            .sort
            .iter()
            .map(|k| {
                let idx = schema.index_of(&k.column).map_err(|_| {
                    Error::validation(
                        Reason::UnknownColumn,
                        "sort column is not among the table's columns",
                    )
                    .with_field("sort")
                })?;
                Ok(SortColumn {
                    values: rows.column(idx).clone(),
                    options: Some(SortOptions {
                        descending: k.descending,
                        nulls_first: false,
                    }),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let indices = lexsort_to_indices(&columns, Some(limit))?;
        rows = take_record_batch(&rows, &indices)?;
    }
    Ok(Block::Table {
        heading: t.heading.clone(),
        dataset: t.dataset.clone(),
        rows,
        total_rows: total,
        footnotes: t.footnotes.clone(),
    })
}

fn tile(inner: &Inner, study: &str, t: &TileSpec) -> Result<Kpi> {
    let stream = inner.scan(study, &t.dataset, None, &t.filters)?;
    let idx = measure_column(&stream, t.measure, t.column.as_deref())?;
    let mut agg = Agg::default();
    for b in stream {
        let b = b?;
        match (t.measure, idx) {
            (Measure::Count, _) | (_, None) => agg.rows(b.num_rows() as u64),
            (m, Some(i)) if m.numeric() => {
                let f = as_floats(b.column(i))?;
                agg.rows(b.num_rows() as u64);
                for v in f.iter().flatten() {
                    agg.number(v);
                }
            }
            (_, Some(i)) => {
                let col = b.column(i);
                let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
                for r in 0..b.num_rows() {
                    agg.rows(1);
                    if col.is_valid(r) {
                        agg.key(f.value(r).to_string());
                    }
                }
            }
        }
    }
    Ok(Kpi {
        label: t.label.clone(),
        value: agg.value(t.measure),
    })
}

fn chart(inner: &Inner, study: &str, c: &ChartSpec) -> Result<Chart> {
    let stream = inner.scan(study, &c.dataset, None, &c.filters)?;
    let idx = measure_column(&stream, c.measure, c.column.as_deref())?;
    let x = stream.schema().index_of(&c.x).map_err(|_| {
        Error::validation(
            Reason::UnknownColumn,
            "the chart's x column is not in the dataset",
        )
        .with_field("charts.x")
    })?;
    let mut groups: BTreeMap<String, Agg> = BTreeMap::new();
    for b in stream {
        let b = b?;
        let xs = b.column(x);
        let xf = ArrayFormatter::try_new(xs.as_ref(), &FormatOptions::default())?;
        let col = idx.map(|i| b.column(i));
        let floats = match (c.measure, col) {
            (m, Some(col)) if m.numeric() => Some(as_floats(col)?),
            _ => None,
        };
        let keys = match (c.measure, col) {
            (Measure::DistinctCount, Some(col)) => Some((
                col,
                ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?,
            )),
            _ => None,
        };
        for r in 0..b.num_rows() {
            let key = if xs.is_valid(r) {
                xf.value(r).to_string()
            } else {
                "(missing)".to_string()
            };
            let distinct = keys
                .as_ref()
                .filter(|(col, _)| col.is_valid(r))
                .map(|(_, f)| f.value(r).to_string());
            let value = floats
                .as_ref()
                .filter(|f| f.is_valid(r))
                .map(|f| f.value(r));
            groups.entry(key).or_default().add(distinct, value);
        }
    }
    let y_label = c.measure.describe(c.column.as_deref());
    Ok(Chart {
        title: c.title.clone(),
        kind: c.kind,
        x_label: c.x.clone(),
        y_label,
        points: groups
            .into_iter()
            .map(|(k, a)| (k, a.value(c.measure).unwrap_or(0.0)))
            .collect(),
    })
}
