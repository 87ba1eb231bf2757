//! Where study data comes from: the [`DataSource`] trait, typed filters, and the in-memory registry.
//!
//! Filters are typed expressions (column, operator, value), never SQL strings. A source scans a dataset into a
//! [`BatchStream`]; [`DataSource::scan_selected`] applies projection and filters on top of any source.

use crate::error::Reason;
use crate::error::{Error, Result};
use crate::meta::DatasetMeta;
use arrow::array::{Array, ArrayRef, BooleanArray, Scalar, StringArray};
use arrow::compute::kernels::cmp;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// A stream of record batches of one schema.
pub struct BatchStream {
    schema: SchemaRef,
    batches: Box<dyn Iterator<Item = Result<RecordBatch>> + Send>,
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl BatchStream {
    /// A stream over an iterator of batches of `schema`.
    pub fn new(
        schema: SchemaRef,
        batches: impl Iterator<Item = Result<RecordBatch>> + Send + 'static,
    ) -> Self {
        BatchStream {
            schema,
            batches: Box::new(batches),
        }
    }

    /// A stream over batches already in memory.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        BatchStream::new(schema, batches.into_iter().map(Ok))
    }

    /// The schema, with `trialport.*` metadata.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The dataset metadata carried by the schema.
    pub fn meta(&self) -> DatasetMeta {
        DatasetMeta::from_schema(&self.schema)
    }

    /// Applies `meta` over the schema's metadata (for `--meta` and `columns=`).
    ///
    /// # Errors
    /// EXP002 when `meta` names a column the data lacks.
    pub fn with_meta(self, meta: &DatasetMeta) -> Result<Self> {
        let merged = DatasetMeta::from_schema(&self.schema).merged_with(meta);
        let schema = merged.apply_to(&self.schema)?;
        let target = schema.clone();
        let batches = self.batches.map(move |b| {
            b.and_then(|b| {
                RecordBatch::try_new(target.clone(), b.columns().to_vec()).map_err(Error::from)
            })
        });
        Ok(BatchStream::new(schema, batches))
    }

    /// Keeps only `columns`, in that order.
    ///
    /// # Errors
    /// EXP002 `unknown_column` for a column the dataset lacks.
    pub fn project(self, columns: &[String]) -> Result<Self> {
        let indices = columns
            .iter()
            .map(|c| {
                self.schema.index_of(c).map_err(|_| {
                    Error::validation(
                        Reason::UnknownColumn,
                        format!("no column '{c}' in the dataset"),
                    )
                    .with_field("columns")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let schema = Arc::new(self.schema.project(&indices)?);
        let batches = self
            .batches
            .map(move |b| b.and_then(|b| b.project(&indices).map_err(Error::from)));
        Ok(BatchStream::new(schema, batches))
    }

    /// Keeps only rows where every filter holds.
    ///
    /// # Errors
    /// EXP002 `invalid_filter` for a filter on an unknown column or with a value of the wrong type.
    pub fn filter(self, filters: &[Filter]) -> Result<Self> {
        if filters.is_empty() {
            return Ok(self);
        }
        let compiled = filters
            .iter()
            .map(|f| CompiledFilter::new(f, &self.schema))
            .collect::<Result<Vec<_>>>()?;
        let batches = self.batches.map(move |b| {
            let b = b?;
            let mut mask: Option<BooleanArray> = None;
            for f in &compiled {
                let m = f.evaluate(&b)?;
                mask = Some(match mask {
                    None => m,
                    Some(prev) => arrow::compute::and(&prev, &m)?,
                });
            }
            match mask {
                Some(m) => Ok(arrow::compute::filter_record_batch(&b, &m)?),
                None => Ok(b),
            }
        });
        Ok(BatchStream::new(self.schema, batches))
    }

    /// Reads every batch into memory.
    ///
    /// # Errors
    /// The first error of the stream.
    pub fn collect(self) -> Result<Vec<RecordBatch>> {
        self.batches.collect()
    }
}

impl Iterator for BatchStream {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next()
    }
}

/// A comparison operator of a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Equal to one of a list.
    In,
    /// Null.
    IsNull,
    /// Not null.
    IsNotNull,
}

/// A typed row filter: `column op value`. Rows where the column is null never match a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Column name.
    pub column: String,
    /// Operator.
    pub op: FilterOp,
    /// Value (a list for `in`; absent for `is_null`/`is_not_null`). Converted to the column's type.
    #[serde(default)]
    pub value: serde_json::Value,
}

impl Filter {
    /// `column op value`.
    pub fn new(column: &str, op: FilterOp, value: impl Into<serde_json::Value>) -> Self {
        Filter {
            column: column.to_string(),
            op,
            value: value.into(),
        }
    }
}

/// Ascending or descending sort on a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    /// Column name.
    pub column: String,
    /// Descending when true.
    #[serde(default)]
    pub descending: bool,
}

struct CompiledFilter {
    index: usize,
    op: FilterOp,
    values: Vec<ArrayRef>,
}

fn filter_error(column: &str, what: &str) -> Error {
    Error::validation(
        Reason::InvalidFilter,
        format!("filter on '{column}': {what}"),
    )
    .with_field("filters")
}

impl CompiledFilter {
    fn new(f: &Filter, schema: &Schema) -> Result<Self> {
        let index = schema
            .index_of(&f.column)
            .map_err(|_| filter_error(&f.column, "no such column"))?;
        let ty = schema.field(index).data_type();
        let raw: Vec<&serde_json::Value> = match (f.op, &f.value) {
            (FilterOp::IsNull | FilterOp::IsNotNull, _) => vec![],
            (FilterOp::In, serde_json::Value::Array(items)) => items.iter().collect(),
            (FilterOp::In, _) => return Err(filter_error(&f.column, "'in' takes a list")),
            (_, serde_json::Value::Null) => {
                return Err(filter_error(&f.column, "a comparison needs a value"))
            }
            (_, v) => vec![v],
        };
        let values = raw
            .into_iter()
            .map(|v| {
                scalar_of(v, ty)
                    .ok_or_else(|| filter_error(&f.column, "value does not fit the column type"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CompiledFilter {
            index,
            op: f.op,
            values,
        })
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let col = batch.column(self.index);
        let mask = match self.op {
            FilterOp::IsNull => arrow::compute::is_null(col)?,
            FilterOp::IsNotNull => arrow::compute::is_not_null(col)?,
            FilterOp::In => {
                let mut acc = BooleanArray::from(vec![false; col.len()]);
                for v in &self.values {
                    let m = cmp::eq(col, &Scalar::new(v.clone()))?;
                    acc = arrow::compute::or_kleene(&acc, &m)?;
                }
                acc
            }
            op => {
                let s = Scalar::new(self.values[0].clone());
                match op {
                    FilterOp::Eq => cmp::eq(col, &s)?,
                    FilterOp::Ne => cmp::neq(col, &s)?,
                    FilterOp::Lt => cmp::lt(col, &s)?,
                    FilterOp::Le => cmp::lt_eq(col, &s)?,
                    FilterOp::Gt => cmp::gt(col, &s)?,
                    _ => cmp::gt_eq(col, &s)?,
                }
            }
        };
        // A null comparison result means "unknown": the row does not match.
        Ok(match mask.nulls() {
            Some(_) => arrow::compute::prep_null_mask_filter(&mask),
            None => mask,
        })
    }
}

/// The one-element array of type `ty` holding `v`, or `None` when `v` does not convert.
fn scalar_of(v: &serde_json::Value, ty: &DataType) -> Option<ArrayRef> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    let arr: ArrayRef = Arc::new(StringArray::from(vec![text]));
    let target = match ty {
        DataType::Dictionary(_, value) => value.as_ref(),
        other => other,
    };
    let opts = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(&arr, target, &opts).ok()
}

/// A dataset a source offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetInfo {
    /// Dataset name, e.g. `DM`.
    pub name: String,
    /// Label, if known.
    pub label: Option<String>,
}

/// Where the engine reads study data from.
///
/// # Contract
/// `datasets` and `scan` answer EXP001 (field `study` or `datasets`) for a study or dataset the source does not
/// have. `scan` returns the dataset's batches with its metadata in the schema (`trialport.dataset` set to the
/// dataset name). Scanning the same dataset twice yields the same rows in the same order.
pub trait DataSource: Send + Sync {
    /// The studies the source holds, sorted (for binding them to an organization, see [`crate::study`]). The
    /// default: none listed.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn studies(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The study's datasets, sorted by name.
    ///
    /// # Errors
    /// EXP001 for an unknown study.
    fn datasets(&self, study: &str) -> Result<Vec<DatasetInfo>>;

    /// Scans a whole dataset.
    ///
    /// # Errors
    /// EXP001 for an unknown study or dataset; EXP005 for I/O; EXP002 for unreadable data.
    fn scan(&self, study: &str, dataset: &str) -> Result<BatchStream>;

    /// Scans a dataset keeping only rows matching every filter, then only `columns` (all when `None`).
    ///
    /// # Errors
    /// As [`DataSource::scan`], and EXP002 for an unknown column or a bad filter.
    fn scan_selected(
        &self,
        study: &str,
        dataset: &str,
        columns: Option<&[String]>,
        filters: &[Filter],
    ) -> Result<BatchStream> {
        let stream = self.scan(study, dataset)?.filter(filters)?;
        match columns {
            Some(c) => stream.project(c),
            None => Ok(stream),
        }
    }
}

/// The error for a study no source has.
pub fn unknown_study(study: &str) -> Error {
    Error::not_found(format!("no study '{study}'")).with_field("study")
}

/// The error for a dataset a study does not have.
pub fn unknown_dataset(study: &str, dataset: &str) -> Error {
    Error::not_found(format!("study '{study}' has no dataset '{dataset}'")).with_field("datasets")
}

#[derive(Clone)]
struct StoredDataset {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// Datasets registered in memory (what Python and C hand to the engine).
#[derive(Default)]
pub struct MemorySource {
    studies: RwLock<BTreeMap<String, BTreeMap<String, StoredDataset>>>,
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource").finish_non_exhaustive()
    }
}

impl MemorySource {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) dataset `name` of `study`; the schema gets `trialport.dataset = name`.
    ///
    /// # Errors
    /// EXP002 for an invalid name or batches whose schema differs from `schema`.
    pub fn add(
        &self,
        study: &str,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        crate::name::validate_name(study, "study")?;
        crate::name::validate_name(name, "dataset")?;
        let mut meta = DatasetMeta::from_schema(&schema);
        meta.name = name.to_string();
        let schema = DatasetMeta {
            name: name.to_string(),
            label: meta.label.clone(),
            ..Default::default()
        }
        .apply_to(&schema)?;
        let batches = batches
            .into_iter()
            .map(|b| {
                if b.schema().fields() != schema.fields() {
                    return Err(Error::validation(
                        Reason::SchemaMismatch,
                        "a batch's columns differ from the dataset's schema",
                    ));
                }
                Ok(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut studies = self.studies.write().unwrap_or_else(|p| p.into_inner());
        studies
            .entry(study.to_string())
            .or_default()
            .insert(name.to_string(), StoredDataset { schema, batches });
        Ok(())
    }
}

impl DataSource for MemorySource {
    fn studies(&self) -> Result<Vec<String>> {
        let studies = self.studies.read().unwrap_or_else(|p| p.into_inner());
        Ok(studies.keys().cloned().collect())
    }

    fn datasets(&self, study: &str) -> Result<Vec<DatasetInfo>> {
        let studies = self.studies.read().unwrap_or_else(|p| p.into_inner());
        let ds = studies.get(study).ok_or_else(|| unknown_study(study))?;
        Ok(ds
            .iter()
            .map(|(name, d)| DatasetInfo {
                name: name.clone(),
                label: DatasetMeta::from_schema(&d.schema).label,
            })
            .collect())
    }

    fn scan(&self, study: &str, dataset: &str) -> Result<BatchStream> {
        let studies = self.studies.read().unwrap_or_else(|p| p.into_inner());
        let ds = studies.get(study).ok_or_else(|| unknown_study(study))?;
        let d = ds
            .get(dataset)
            .ok_or_else(|| unknown_dataset(study, dataset))?
            .clone();
        Ok(BatchStream::from_batches(d.schema, d.batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::Field;

    fn source() -> MemorySource {
        let schema = Arc::new(Schema::new(vec![
            Field::new("SEX", DataType::Utf8, true),
            Field::new("AGE", DataType::Int64, true),
            Field::new("WT", DataType::Float64, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("F"),
                    Some("M"),
                    None,
                    Some("F"),
                ])),
                Arc::new(Int64Array::from(vec![Some(30), Some(70), Some(50), None])),
                Arc::new(Float64Array::from(vec![60.5, 80.0, 70.0, 55.0])),
            ],
        )
        .unwrap();
        let s = MemorySource::new();
        s.add("S1", "DM", schema, vec![b]).unwrap();
        s
    }

    fn rows(stream: BatchStream) -> usize {
        stream.collect().unwrap().iter().map(|b| b.num_rows()).sum()
    }

    #[test]
    fn filters_are_typed_and_nulls_never_match() {
        let s = source();
        let f = |filters: Vec<Filter>| rows(s.scan_selected("S1", "DM", None, &filters).unwrap());
        assert_eq!(f(vec![Filter::new("SEX", FilterOp::Eq, "F")]), 2);
        assert_eq!(f(vec![Filter::new("SEX", FilterOp::Ne, "F")]), 1);
        assert_eq!(f(vec![Filter::new("AGE", FilterOp::Ge, 50)]), 2);
        assert_eq!(f(vec![Filter::new("AGE", FilterOp::Lt, "50")]), 1);
        assert_eq!(f(vec![Filter::new("WT", FilterOp::Gt, 60)]), 3);
        assert_eq!(
            f(vec![Filter::new(
                "AGE",
                FilterOp::IsNull,
                serde_json::Value::Null
            )]),
            1
        );
        assert_eq!(
            f(vec![Filter::new(
                "AGE",
                FilterOp::In,
                serde_json::json!([30, 70])
            )]),
            2
        );
        assert_eq!(
            f(vec![
                Filter::new("SEX", FilterOp::Eq, "F"),
                Filter::new("AGE", FilterOp::IsNotNull, serde_json::Value::Null)
            ]),
            1
        );
    }

    #[test]
    fn bad_filters_and_columns_are_validation_errors() {
        let s = source();
        let e = s
            .scan_selected("S1", "DM", None, &[Filter::new("AGE", FilterOp::Eq, "old")])
            .unwrap_err();
        assert_eq!(e.reason(), "invalid_filter");
        let e = s
            .scan_selected("S1", "DM", None, &[Filter::new("NOPE", FilterOp::Eq, 1)])
            .unwrap_err();
        assert_eq!(e.reason(), "invalid_filter");
        let e = s
            .scan_selected("S1", "DM", Some(&["NOPE".to_string()]), &[])
            .unwrap_err();
        assert_eq!(e.reason(), "unknown_column");
        assert_eq!(s.scan("S2", "DM").unwrap_err().field(), Some("study"));
        assert_eq!(s.scan("S1", "AE").unwrap_err().field(), Some("datasets"));
    }

    #[test]
    fn projection_keeps_order_and_dataset_name() {
        let s = source();
        let st = s
            .scan_selected("S1", "DM", Some(&["WT".into(), "SEX".into()]), &[])
            .unwrap();
        assert_eq!(st.meta().name, "DM");
        let names: Vec<_> = st
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["WT", "SEX"]);
    }
}
