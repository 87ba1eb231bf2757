//! The typed requests of the export operations, as the seed's REST API takes them in JSON.

use crate::document::{DashboardSpec, ReportSpec};
use crate::format::FormatOptions;
use crate::source::Filter;
use serde::{Deserialize, Serialize};

/// A dataset to export: a name, or a name with a column selection and filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DatasetSelection {
    /// The whole dataset.
    Name(String),
    /// Selected columns and rows.
    Selected {
        /// Dataset name.
        name: String,
        /// Columns, in order (all when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        columns: Option<Vec<String>>,
        /// Row filters, all of which must hold.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        filters: Vec<Filter>,
    },
}

impl DatasetSelection {
    /// The dataset name.
    pub fn name(&self) -> &str {
        match self {
            DatasetSelection::Name(n) | DatasetSelection::Selected { name: n, .. } => n,
        }
    }

    /// The selected columns, if any.
    pub fn columns(&self) -> Option<&[String]> {
        match self {
            DatasetSelection::Selected {
                columns: Some(c), ..
            } => Some(c),
            _ => None,
        }
    }

    /// The filters.
    pub fn filters(&self) -> &[Filter] {
        match self {
            DatasetSelection::Selected { filters, .. } => filters,
            DatasetSelection::Name(_) => &[],
        }
    }
}

impl From<&str> for DatasetSelection {
    fn from(s: &str) -> Self {
        DatasetSelection::Name(s.to_string())
    }
}

/// `export_data`: datasets of a study in one format, one artifact per dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportDataRequest {
    /// Study id.
    pub study: String,
    /// Datasets (at least one, no name twice).
    pub datasets: Vec<DatasetSelection>,
    /// Format id.
    pub format: String,
    /// Format options.
    #[serde(default)]
    pub options: FormatOptions,
    /// Idempotency key: the same key and request return the same job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl ExportDataRequest {
    /// A request for whole datasets with default options.
    pub fn new(study: &str, datasets: &[&str], format: &str) -> Self {
        ExportDataRequest {
            study: study.to_string(),
            datasets: datasets
                .iter()
                .map(|d| DatasetSelection::from(*d))
                .collect(),
            format: format.to_string(),
            options: FormatOptions::new(),
            idempotency_key: None,
        }
    }
}

/// How a bulk export is packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PackageKind {
    /// One zip file with `manifest.json`.
    #[default]
    Zip,
    /// An eCTD module 5 folder tree (arrives with the regulatory formats).
    Ectd,
}

/// `bulk_export`: several datasets of a study in one package with a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkExportRequest {
    /// Study id.
    pub study: String,
    /// Datasets (empty: every dataset of the study).
    #[serde(default)]
    pub datasets: Vec<DatasetSelection>,
    /// Format id of the files inside.
    pub format: String,
    /// Format options.
    #[serde(default)]
    pub options: FormatOptions,
    /// Packaging.
    #[serde(default)]
    pub package: PackageKind,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `export_report`: a report rendered in one format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The report.
    pub report: ReportSpec,
    /// Format id (`html`, `json`, `xlsx`).
    pub format: String,
    /// Format options.
    #[serde(default)]
    pub options: FormatOptions,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `export_dashboard`: a dashboard rendered in one format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardRequest {
    /// The dashboard.
    pub dashboard: DashboardSpec,
    /// Format id (`html`, `json`, `xlsx`).
    pub format: String,
    /// Format options.
    #[serde(default)]
    pub options: FormatOptions,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `list_jobs`: which page of which jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListJobsRequest {
    /// 1-based page (default 1).
    #[serde(default)]
    pub page: Option<i64>,
    /// Jobs per page, 1..=100 (default 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only jobs in this state.
    #[serde(default)]
    pub status: Option<String>,
    /// Only jobs of this study.
    #[serde(default)]
    pub study: Option<String>,
}
