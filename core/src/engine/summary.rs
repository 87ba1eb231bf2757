//! Summary tables: a dataset's rows grouped by one or more columns, with measures per group (counts of subjects
//! by arm, events by system organ class and preferred term, ...). The result is an ordinary table block, so every
//! renderer shows it as it shows a table drawn from a dataset.

use super::aggregate::{as_floats, measure_column, Agg};
use super::Inner;
use crate::document::{Block, Measure, SummarySpec, MAX_SUMMARY_GROUPS};
use crate::error::Reason;
use crate::error::{Error, Result};
use arrow::array::{Array, ArrayRef, Decimal128Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The text of a missing group value.
const MISSING: &str = "(missing)";

/// The most decimals a measure is rounded to.
const MAX_DECIMALS: u8 = 6;

/// The precision of the decimal columns of measures (Arrow's largest for 128 bits).
const DECIMAL_PRECISION: u8 = 38;

/// Validates a summary spec against the study's data before a job is created.
pub(super) fn check(inner: &Inner, study: &str, spec: &SummarySpec) -> Result<()> {
    if spec.group_by.is_empty() {
        return Err(Error::validation(
            Reason::MissingGroupBy,
            "a summary table groups by at least one column",
        )
        .with_field("group_by"));
    }
    if spec.measures.is_empty() {
        return Err(Error::validation(
            Reason::MissingMeasures,
            "a summary table has at least one measure",
        )
        .with_field("measures"));
    }
    let mut names: HashSet<&str> = HashSet::new();
    for name in spec
        .group_by
        .iter()
        .map(String::as_str)
        .chain(spec.measures.iter().map(|m| m.label.as_str()))
    {
        if name.trim().is_empty() || !names.insert(name) {
            return Err(Error::validation(
                Reason::DuplicateColumn,
                "a summary table's group columns and measure labels must be distinct and not blank",
            )
            .with_field("measures.label"));
        }
    }
    if spec
        .measures
        .iter()
        .any(|m| m.decimals.is_some_and(|d| d > MAX_DECIMALS))
    {
        return Err(Error::validation(
            Reason::OutOfRange,
            format!("a measure is rounded to at most {MAX_DECIMALS} decimals"),
        )
        .with_field("measures.decimals"));
    }
    let stream = inner.scan(study, &spec.dataset, None, &spec.filters)?;
    for c in &spec.group_by {
        if stream.schema().index_of(c).is_err() {
            return Err(Error::validation(
                Reason::UnknownColumn,
                format!("no column '{c}' in the dataset"),
            )
            .with_field("group_by"));
        }
    }
    for m in &spec.measures {
        measure_column(&stream, m.measure, m.column.as_deref())?;
    }
    Ok(())
}

/// One value of a group key: numbers order as numbers (visit 2 before visit 10), text as text, missing last.
#[derive(Debug, Clone)]
enum KeyPart {
    Number(f64, String),
    Text(String),
    Missing,
}

impl KeyPart {
    fn text(&self) -> &str {
        match self {
            KeyPart::Number(_, t) | KeyPart::Text(t) => t,
            KeyPart::Missing => MISSING,
        }
    }
}

impl Ord for KeyPart {
    fn cmp(&self, other: &Self) -> Ordering {
        use KeyPart::*;
        match (self, other) {
            (Number(a, ta), Number(b, tb)) => a.total_cmp(b).then_with(|| ta.cmp(tb)),
            (Text(a), Text(b)) => a.cmp(b),
            (Missing, Missing) => Ordering::Equal,
            (Missing, _) => Ordering::Greater,
            (_, Missing) => Ordering::Less,
            (Number(..), Text(_)) => Ordering::Less,
            (Text(_), Number(..)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for KeyPart {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for KeyPart {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyPart {}

/// Computes a summary table.
pub(super) fn table(inner: &Inner, study: &str, spec: &SummarySpec) -> Result<Block> {
    let stream = inner.scan(study, &spec.dataset, None, &spec.filters)?;
    let schema = stream.schema().clone();
    let keys: Vec<usize> = spec
        .group_by
        .iter()
        .map(|c| {
            schema.index_of(c).map_err(|_| {
                Error::validation(
                    Reason::UnknownColumn,
                    format!("no column '{c}' in the dataset"),
                )
                .with_field("group_by")
            })
        })
        .collect::<Result<_>>()?;
    let columns: Vec<Option<usize>> = spec
        .measures
        .iter()
        .map(|m| measure_column(&stream, m.measure, m.column.as_deref()))
        .collect::<Result<_>>()?;
    let numeric_keys: Vec<bool> = keys
        .iter()
        .map(|&i| schema.field(i).data_type().is_numeric())
        .collect();
    let display = FormatOptions::default();
    let mut groups: BTreeMap<Vec<KeyPart>, Vec<Agg>> = BTreeMap::new();
    for batch in stream {
        let batch = batch?;
        let key_arrays: Vec<&ArrayRef> = keys.iter().map(|&i| batch.column(i)).collect();
        let key_text = key_arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &display))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let key_numbers = key_arrays
            .iter()
            .zip(&numeric_keys)
            .map(|(a, n)| n.then(|| as_floats(a)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut floats = Vec::with_capacity(columns.len());
        let mut distinct = Vec::with_capacity(columns.len());
        for (m, c) in spec.measures.iter().zip(&columns) {
            let col = c.map(|i| batch.column(i));
            floats.push(match col {
                Some(col) if m.measure.numeric() => Some(as_floats(col)?),
                _ => None,
            });
            distinct.push(match col {
                Some(col) if m.measure == Measure::DistinctCount => {
                    Some((col, ArrayFormatter::try_new(col.as_ref(), &display)?))
                }
                _ => None,
            });
        }
        for r in 0..batch.num_rows() {
            let key = key_arrays
                .iter()
                .zip(&key_text)
                .zip(&key_numbers)
                .map(|((a, t), n)| {
                    if a.is_null(r) {
                        KeyPart::Missing
                    } else {
                        let text = t.value(r).to_string();
                        match n {
                            Some(n) if n.is_valid(r) => KeyPart::Number(n.value(r), text),
                            _ => KeyPart::Text(text),
                        }
                    }
                })
                .collect::<Vec<_>>();
            if !groups.contains_key(&key) && groups.len() >= MAX_SUMMARY_GROUPS {
                return Err(Error::validation(
                    Reason::TooManyGroups,
                    format!("a summary table has at most {MAX_SUMMARY_GROUPS} groups"),
                )
                .with_field("group_by"));
            }
            let aggs = groups
                .entry(key)
                .or_insert_with(|| spec.measures.iter().map(|_| Agg::default()).collect());
            for (j, agg) in aggs.iter_mut().enumerate() {
                let key = distinct[j]
                    .as_ref()
                    .filter(|(col, _)| col.is_valid(r))
                    .map(|(_, f)| f.value(r).to_string());
                let value = floats[j]
                    .as_ref()
                    .filter(|f| f.is_valid(r))
                    .map(|f| f.value(r));
                agg.add(key, value);
            }
        }
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (k, name) in spec.group_by.iter().enumerate() {
        fields.push(Field::new(name, DataType::Utf8, false));
        arrays.push(Arc::new(StringArray::from_iter_values(
            groups.keys().map(|key| key[k].text()),
        )));
    }
    for (j, m) in spec.measures.iter().enumerate() {
        let values = groups.values().map(|aggs| aggs[j].value(m.measure));
        if matches!(m.measure, Measure::Count | Measure::DistinctCount) {
            fields.push(Field::new(&m.label, DataType::Int64, false));
            arrays.push(Arc::new(Int64Array::from_iter_values(
                values.map(|v| v.unwrap_or(0.0) as i64),
            )));
        } else {
            // Decimals, so that every renderer shows exactly the decimals asked for (`20.10`, not `20.1`).
            let decimals = m.decimals.unwrap_or(2);
            let scale = 10f64.powi(i32::from(decimals));
            let ty = DataType::Decimal128(DECIMAL_PRECISION, decimals as i8);
            fields.push(Field::new(&m.label, ty.clone(), true));
            let scaled = values.map(|v| {
                v.map(|v| (v * scale).round())
                    .filter(|v| v.is_finite() && v.abs() < 1e36)
                    .map(|v| v as i128)
            });
            arrays.push(Arc::new(
                Decimal128Array::from_iter(scaled).with_data_type(ty),
            ));
        }
    }
    let rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    Ok(Block::Table {
        heading: spec.heading.clone(),
        dataset: spec.dataset.clone(),
        total_rows: rows.num_rows() as u64,
        rows,
        footnotes: spec.footnotes.clone(),
    })
}
