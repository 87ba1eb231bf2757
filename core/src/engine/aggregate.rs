//! The measures of reports, dashboards and summary tables: which column a measure reads, and its running
//! aggregate over the rows.

use crate::document::Measure;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::source::BatchStream;
use arrow::array::{Array, ArrayRef, Float64Array};
use arrow::datatypes::DataType;
use std::collections::HashSet;

/// The index of the column a measure reads, checked for type.
pub(super) fn measure_column(
    stream: &BatchStream,
    measure: Measure,
    column: Option<&str>,
) -> Result<Option<usize>> {
    if !measure.needs_column() {
        return Ok(None);
    }
    let name = column.ok_or_else(|| {
        Error::validation(Reason::MissingColumn, "this measure needs a column").with_field("column")
    })?;
    let idx = stream.schema().index_of(name).map_err(|_| {
        Error::validation(
            Reason::UnknownColumn,
            format!("no column '{name}' in the dataset"),
        )
        .with_field("column")
    })?;
    let ty = stream.schema().field(idx).data_type();
    if measure.numeric() && !ty.is_numeric() {
        return Err(Error::validation(
            Reason::NotNumeric,
            format!("column '{name}' is not numeric"),
        )
        .with_field("column"));
    }
    Ok(Some(idx))
}

/// Running aggregate of one measure.
#[derive(Default)]
pub(super) struct Agg {
    count: u64,
    n: u64,
    /// Sum of the values.
    sum: f64,
    /// Welford's running mean and sum of squared deviations, for the standard deviation.
    mean: f64,
    m2: f64,
    min: Option<f64>,
    max: Option<f64>,
    distinct: HashSet<String>,
}

impl Agg {
    /// Adds one row: its distinct-count key and numeric value, when the measure reads a column.
    pub(super) fn add(&mut self, key: Option<String>, value: Option<f64>) {
        self.count += 1;
        if let Some(k) = key {
            self.distinct.insert(k);
        }
        if let Some(v) = value {
            self.number(v);
        }
    }

    /// Counts `n` rows without adding their values or keys.
    pub(super) fn rows(&mut self, n: u64) {
        self.count += n;
    }

    /// Adds one distinct-count key (not a row).
    pub(super) fn key(&mut self, key: String) {
        self.distinct.insert(key);
    }

    /// Adds one numeric value (not a row).
    pub(super) fn number(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
        let delta = v - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (v - self.mean);
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    /// The measure's value over the rows added so far (`None` when it has none, e.g. the mean of no value).
    pub(super) fn value(&self, measure: Measure) -> Option<f64> {
        match measure {
            Measure::Count => Some(self.count as f64),
            Measure::DistinctCount => Some(self.distinct.len() as f64),
            Measure::Sum => Some(self.sum),
            Measure::Mean => (self.n > 0).then(|| self.sum / self.n as f64),
            Measure::Min => self.min,
            Measure::Max => self.max,
            Measure::Sd => (self.n > 1).then(|| (self.m2 / (self.n - 1) as f64).sqrt()),
        }
    }
}

/// The column as 64-bit floats (a measure over a numeric column).
pub(super) fn as_floats(col: &ArrayRef) -> Result<Float64Array> {
    let c = arrow::compute::cast(col, &DataType::Float64)?;
    c.as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .ok_or_else(|| Error::server(Reason::Internal, "cast to Float64 failed"))
}
