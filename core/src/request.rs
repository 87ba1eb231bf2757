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
    /// De-identification: profiles (`safe-harbor`, `pseudonymize`, `date-shift`, `drop-free-text`) and column
    /// lists, applied while exporting (see [`crate::deid`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deidentify: Option<crate::deid::Deidentify>,
    /// Allows identifying columns (classed in the dataset metadata) to leave the export unchanged; without it such
    /// an export is refused with EXP002 `identifiable_data`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub identifiable: bool,
    /// An e-signature: its meaning and the signer's password (see [`crate::signature`]). Required for an eCTD
    /// package and for identifiable data; the password is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::SignatureRequest>,
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
            deidentify: None,
            identifiable: false,
            signature: None,
            idempotency_key: None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a bulk export is packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PackageKind {
    /// One zip file with `manifest.json`.
    #[default]
    Zip,
    /// The eCTD Module 5 tree (`m5/datasets/<study>/tabulations/sdtm/`, `.../analysis/adam/datasets/`) of XPT v5
    /// files with a `define.xml` per standard.
    Ectd,
}

/// Where a package's files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PackageContainer {
    /// One zip artifact holding the files and their `manifest.json`.
    #[default]
    Zip,
    /// The files as the job's artifacts, at their paths in the tree, with the job's `manifest.json` at the root
    /// (eCTD only).
    Directory,
}

fn is_default_container(c: &PackageContainer) -> bool {
    *c == PackageContainer::Zip
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
    /// Zip or directory (a directory only for eCTD packages).
    #[serde(default, skip_serializing_if = "is_default_container")]
    pub container: PackageContainer,
    /// eCTD only: the largest data file, in bytes (default 5,000,000,000, the FDA's 5 GB). A dataset whose file
    /// would be larger is split by rows into `split/<name>1.xpt`, `split/<name>2.xpt`, ... each at most this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<u64>,
    /// De-identification: profiles (`safe-harbor`, `pseudonymize`, `date-shift`, `drop-free-text`) and column
    /// lists, applied while exporting (see [`crate::deid`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deidentify: Option<crate::deid::Deidentify>,
    /// Allows identifying columns (classed in the dataset metadata) to leave the export unchanged; without it such
    /// an export is refused with EXP002 `identifiable_data`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub identifiable: bool,
    /// An e-signature: its meaning and the signer's password (see [`crate::signature`]). Required for an eCTD
    /// package and for identifiable data; the password is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::SignatureRequest>,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl BulkExportRequest {
    /// A zip package of whole datasets with default options: no de-identification, no signature, no idempotency
    /// key, and the default file-size limit. Set fields afterwards for anything else.
    ///
    /// ```
    /// use trialport_core::request::{BulkExportRequest, PackageKind};
    /// let r = BulkExportRequest {
    ///     package: PackageKind::Ectd,
    ///     ..BulkExportRequest::new("S1", &["DM", "AE"], "xpt")
    /// };
    /// assert_eq!(r.datasets.len(), 2);
    /// ```
    pub fn new(study: &str, datasets: &[&str], format: &str) -> Self {
        BulkExportRequest {
            study: study.to_string(),
            datasets: datasets
                .iter()
                .map(|d| DatasetSelection::from(*d))
                .collect(),
            format: format.to_string(),
            options: FormatOptions::new(),
            package: PackageKind::Zip,
            container: PackageContainer::Zip,
            max_file_bytes: None,
            deidentify: None,
            identifiable: false,
            signature: None,
            idempotency_key: None,
        }
    }
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
    /// An e-signature: its meaning and the signer's password (see [`crate::signature`]). The password is never
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::SignatureRequest>,
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
    /// An e-signature: its meaning and the signer's password (see [`crate::signature`]). The password is never
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::SignatureRequest>,
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

/// Parses a request (or any other of the core's serde types: options, list queries, settings) from its JSON text,
/// as the bindings receive it: the one place where request text becomes a typed value.
///
/// ```
/// use trialport_core::request::{from_json, ExportDataRequest};
/// let r: ExportDataRequest = from_json(r#"{"study": "S1", "datasets": ["DM"], "format": "xpt"}"#)?;
/// assert_eq!(r, ExportDataRequest::new("S1", &["DM"], "xpt"));
/// # Ok::<(), trialport_core::Error>(())
/// ```
///
/// # Errors
/// EXP002 `invalid_request`. The message names an unknown or missing field, or says that the text is not JSON or
/// that a value has the wrong type; it never quotes a value.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> crate::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        let said = e.to_string();
        // serde names fields in these messages; its other messages may quote the offending value.
        let message = if said.starts_with("unknown field") || said.starts_with("missing field") {
            said.split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string()
        } else if matches!(
            e.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        ) {
            format!(
                "the request is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )
        } else {
            "the request is not of the expected shape".to_string()
        };
        crate::Error::validation("invalid_request", message)
    })
}

/// Parses a job id as every surface takes it (surrounding white space allowed); text that is not a UUID names no
/// job.
///
/// # Errors
/// EXP001 `not_found` with field `job_id`.
pub fn job_id(text: &str) -> crate::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(text.trim())
        .map_err(|_| crate::Error::not_found("no job with this id").with_field("job_id"))
}

#[cfg(test)]
mod json_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn from_json_names_fields_but_never_values() {
        let r: ListJobsRequest = from_json(r#"{"limit": 20, "page": 1}"#).unwrap();
        assert_eq!((r.limit, r.page), (Some(20), Some(1)));
        let e = from_json::<ListJobsRequest>(r#"{"limt": 20}"#).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.reason()),
            ("EXP002", "invalid_request")
        );
        assert!(e.message().starts_with("unknown field `limt`"), "{e}");
        let e = from_json::<ExportDataRequest>(r#"{"study": "S1"}"#).unwrap_err();
        assert!(e.message().starts_with("missing field"), "{e}");
        let e = from_json::<ListJobsRequest>(r#"{"status": 12345678}"#).unwrap_err();
        assert!(!e.message().contains("12345678"), "{e}");
        let e = from_json::<ListJobsRequest>("{\"status\": \"SECRETVALUE").unwrap_err();
        assert!(e.message().contains("not valid JSON"), "{e}");
        assert!(!e.message().contains("SECRETVALUE"), "{e}");
    }

    #[test]
    fn bulk_new_is_the_minimal_json_request() {
        let r: BulkExportRequest =
            from_json(r#"{"study": "S1", "datasets": ["DM", "AE"], "format": "xpt"}"#).unwrap();
        assert_eq!(r, BulkExportRequest::new("S1", &["DM", "AE"], "xpt"));
        let r: BulkExportRequest =
            from_json(r#"{"study": "S2", "datasets": [], "format": "csv"}"#).unwrap();
        assert_eq!(r, BulkExportRequest::new("S2", &[], "csv"));
    }

    #[test]
    fn job_ids() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(job_id(&format!(" {id}\n")).unwrap(), id);
        let e = job_id("nope").unwrap_err();
        assert_eq!((e.code().as_str(), e.field()), ("EXP001", Some("job_id")));
    }
}
