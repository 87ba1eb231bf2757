//! The typed requests of the export operations, as the seed's REST API takes them in JSON.

use crate::document::{DashboardSpec, ReportSpec};
use crate::error::Reason;
use crate::format::FormatOptions;
use crate::job::JobKind;
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

/// An export request: what every export has (study, format, options, de-identification, signature, idempotency
/// key) and what its kind adds ([`ExportContent`]). One type for the four export operations, so that every rule
/// (authorization, privacy, validation, idempotency, audit) is written once, in the engine's submit pipeline.
///
/// Its JSON is the seed API's request body of its kind ([`ExportRequest::from_json`], [`ExportRequest::to_json`]):
///
/// | kind | JSON |
/// |---|---|
/// | data | `{"study", "datasets", "format", "options", "deidentify", "identifiable", "signature", "idempotency_key"}` |
/// | bulk | as data, plus `"package"` (`zip`, `ectd`), `"container"` (`zip`, `directory`), `"max_file_bytes"`; `datasets` may be empty (every dataset) |
/// | report | `{"report": {"study", "title", ...}, "format", "options", "deidentify", "identifiable", "signature", "idempotency_key"}` |
/// | dashboard | `{"dashboard": {"study", "title", ...}, ...}` as report |
///
/// ```
/// use trialport_core::job::JobKind;
/// use trialport_core::request::ExportRequest;
/// let r = ExportRequest::from_json(JobKind::Data, r#"{"study": "S1", "datasets": ["DM"], "format": "xpt"}"#)?;
/// assert_eq!(r, ExportRequest::data("S1", &["DM"], "xpt"));
/// assert_eq!(r.kind(), JobKind::Data);
/// # Ok::<(), trialport_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    /// Study id (for reports and dashboards, the spec's `study`).
    pub study: String,
    /// What to export: datasets, a package, a report or a dashboard.
    pub content: ExportContent,
    /// Format id (for a bulk export, of the files inside the package).
    pub format: String,
    /// Format options.
    pub options: FormatOptions,
    /// De-identification: profiles (`safe-harbor`, `pseudonymize`, `date-shift`, `drop-free-text`) and column
    /// lists, applied to every column the export reads (see [`crate::deid`]).
    pub deidentify: Option<crate::deid::Deidentify>,
    /// Allows identifying columns (classed in the dataset metadata) to leave the export unchanged; needs the
    /// `data:identifiable` permission and an e-signature. Without it such an export is refused with EXP002
    /// `identifiable_data`.
    pub identifiable: bool,
    /// An e-signature: its meaning and the signer's password (see [`crate::signature`]). Required for an eCTD
    /// package and for identifiable data; the password is never stored.
    pub signature: Option<crate::signature::SignatureRequest>,
    /// Idempotency key: the same key and request return the same job.
    pub idempotency_key: Option<String>,
}

/// What an [`ExportRequest`] exports.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportContent {
    /// Datasets, one artifact each (`export_data`).
    Data {
        /// Datasets (at least one, no name twice).
        datasets: Vec<DatasetSelection>,
    },
    /// Datasets in one package with a manifest (`bulk_export`).
    Bulk {
        /// Datasets (empty: every dataset of the study).
        datasets: Vec<DatasetSelection>,
        /// Packaging.
        package: PackageKind,
        /// Zip or directory (a directory only for eCTD packages).
        container: PackageContainer,
        /// eCTD only: the largest data file, in bytes (default 5,000,000,000, the FDA's 5 GB). A dataset whose file
        /// would be larger is split by rows into `split/<name>1.xpt`, `split/<name>2.xpt`, ... each at most this
        /// size.
        max_file_bytes: Option<u64>,
    },
    /// A report (`export_report`).
    Report(ReportSpec),
    /// A dashboard (`export_dashboard`).
    Dashboard(DashboardSpec),
}

impl ExportContent {
    /// The kind of job the content makes.
    pub fn kind(&self) -> JobKind {
        match self {
            ExportContent::Data { .. } => JobKind::Data,
            ExportContent::Bulk { .. } => JobKind::Bulk,
            ExportContent::Report(_) => JobKind::Report,
            ExportContent::Dashboard(_) => JobKind::Dashboard,
        }
    }
}

impl ExportRequest {
    /// A request with default options and nothing else set.
    fn with_content(study: &str, content: ExportContent, format: &str) -> Self {
        ExportRequest {
            study: study.to_string(),
            content,
            format: format.to_string(),
            options: FormatOptions::new(),
            deidentify: None,
            identifiable: false,
            signature: None,
            idempotency_key: None,
        }
    }

    /// `export_data` of whole datasets with default options; set fields afterwards for anything else.
    pub fn data(study: &str, datasets: &[&str], format: &str) -> Self {
        let datasets = datasets
            .iter()
            .map(|d| DatasetSelection::from(*d))
            .collect();
        Self::with_content(study, ExportContent::Data { datasets }, format)
    }

    /// `export_data` of dataset selections (columns, filters).
    pub fn data_selected(study: &str, datasets: Vec<DatasetSelection>, format: &str) -> Self {
        Self::with_content(study, ExportContent::Data { datasets }, format)
    }

    /// `bulk_export` of whole datasets (none: every dataset of the study) in a zip package with the default
    /// file-size limit; see [`ExportRequest::package`] for eCTD.
    ///
    /// ```
    /// use trialport_core::request::{ExportRequest, PackageKind};
    /// let r = ExportRequest::bulk("S1", &["DM", "AE"], "xpt").package(PackageKind::Ectd);
    /// assert_eq!(r.datasets().len(), 2);
    /// ```
    pub fn bulk(study: &str, datasets: &[&str], format: &str) -> Self {
        let datasets = datasets
            .iter()
            .map(|d| DatasetSelection::from(*d))
            .collect();
        Self::with_content(
            study,
            ExportContent::Bulk {
                datasets,
                package: PackageKind::Zip,
                container: PackageContainer::Zip,
                max_file_bytes: None,
            },
            format,
        )
    }

    /// `export_report` of `report` (its study is the request's).
    pub fn report(report: ReportSpec, format: &str) -> Self {
        let study = report.study.clone();
        Self::with_content(&study, ExportContent::Report(report), format)
    }

    /// `export_dashboard` of `dashboard` (its study is the request's).
    pub fn dashboard(dashboard: DashboardSpec, format: &str) -> Self {
        let study = dashboard.study.clone();
        Self::with_content(&study, ExportContent::Dashboard(dashboard), format)
    }

    /// The request with `package` (bulk exports; no change for other kinds).
    #[must_use]
    pub fn package(mut self, kind: PackageKind) -> Self {
        if let ExportContent::Bulk { package, .. } = &mut self.content {
            *package = kind;
        }
        self
    }

    /// The request with `container` (bulk exports; no change for other kinds).
    #[must_use]
    pub fn container(mut self, kind: PackageContainer) -> Self {
        if let ExportContent::Bulk { container, .. } = &mut self.content {
            *container = kind;
        }
        self
    }

    /// The request with the eCTD file-size limit (bulk exports; no change for other kinds).
    #[must_use]
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        if let ExportContent::Bulk { max_file_bytes, .. } = &mut self.content {
            *max_file_bytes = Some(bytes);
        }
        self
    }

    /// The request with format option `key` set to `value`.
    #[must_use]
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options = self.options.with(key, value);
        self
    }

    /// The kind of job the request makes.
    pub fn kind(&self) -> JobKind {
        self.content.kind()
    }

    /// The dataset selections of a data or bulk export (none for reports and dashboards).
    pub fn datasets(&self) -> &[DatasetSelection] {
        match &self.content {
            ExportContent::Data { datasets } | ExportContent::Bulk { datasets, .. } => datasets,
            ExportContent::Report(_) | ExportContent::Dashboard(_) => &[],
        }
    }

    /// The dataset selections of a data or bulk export, to change them (`None` for reports and dashboards).
    pub fn datasets_mut(&mut self) -> Option<&mut Vec<DatasetSelection>> {
        match &mut self.content {
            ExportContent::Data { datasets } | ExportContent::Bulk { datasets, .. } => {
                Some(datasets)
            }
            ExportContent::Report(_) | ExportContent::Dashboard(_) => None,
        }
    }

    /// The request of `kind` from its JSON text (the table above).
    ///
    /// # Errors
    /// EXP002 `invalid_request`, naming an unknown, missing or misplaced field, never a value (see
    /// [`from_json`]); `study_mismatch` (field `study`) when a report or dashboard request names a top-level study
    /// other than its spec's.
    pub fn from_json(kind: JobKind, text: &str) -> crate::Result<Self> {
        Self::from_wire(kind, from_json(text)?)
    }

    /// The request of `kind` from its JSON value (a stored job's `request`).
    ///
    /// # Errors
    /// As [`ExportRequest::from_json`].
    pub fn from_value(kind: JobKind, value: serde_json::Value) -> crate::Result<Self> {
        Self::from_wire(kind, from_value(value)?)
    }

    /// The request's JSON (the table above; the signature without its password).
    pub fn to_json(&self) -> serde_json::Value {
        let (datasets, package, container, max_file_bytes, report, dashboard, study) = match &self
            .content
        {
            ExportContent::Data { datasets } => (
                Some(datasets.clone()),
                None,
                None,
                None,
                None,
                None,
                Some(self.study.clone()),
            ),
            ExportContent::Bulk {
                datasets,
                package,
                container,
                max_file_bytes,
            } => (
                Some(datasets.clone()),
                Some(*package),
                (*container != PackageContainer::Zip).then_some(*container),
                *max_file_bytes,
                None,
                None,
                Some(self.study.clone()),
            ),
            ExportContent::Report(r) => (None, None, None, None, Some(r.clone()), None, None),
            ExportContent::Dashboard(d) => (None, None, None, None, None, Some(d.clone()), None),
        };
        let wire = Wire {
            study,
            datasets,
            report,
            dashboard,
            format: self.format.clone(),
            options: self.options.clone(),
            package,
            container,
            max_file_bytes,
            deidentify: self.deidentify.clone(),
            identifiable: self.identifiable,
            signature: self.signature.clone(),
            idempotency_key: self.idempotency_key.clone(),
        };
        serde_json::to_value(&wire).unwrap_or(serde_json::Value::Null)
    }

    fn from_wire(kind: JobKind, w: Wire) -> crate::Result<Self> {
        let misplaced = |field: &str| {
            crate::Error::validation(
                Reason::InvalidRequest,
                format!("field `{field}` is not part of a {} request", kind.as_str()),
            )
            .with_field(field)
        };
        let missing = |field: &str| {
            crate::Error::validation(Reason::InvalidRequest, format!("missing field `{field}`"))
                .with_field(field)
        };
        let no_package = |w: &Wire| -> crate::Result<()> {
            if w.package.is_some() {
                return Err(misplaced("package"));
            }
            if w.container.is_some() {
                return Err(misplaced("container"));
            }
            if w.max_file_bytes.is_some() {
                return Err(misplaced("max_file_bytes"));
            }
            Ok(())
        };
        let (study, content) = match kind {
            JobKind::Data | JobKind::Bulk => {
                if w.report.is_some() {
                    return Err(misplaced("report"));
                }
                if w.dashboard.is_some() {
                    return Err(misplaced("dashboard"));
                }
                let study = w.study.clone().ok_or_else(|| missing("study"))?;
                if kind == JobKind::Data {
                    no_package(&w)?;
                    let datasets = w.datasets.clone().ok_or_else(|| missing("datasets"))?;
                    (study, ExportContent::Data { datasets })
                } else {
                    (
                        study,
                        ExportContent::Bulk {
                            datasets: w.datasets.clone().unwrap_or_default(),
                            package: w.package.unwrap_or_default(),
                            container: w.container.unwrap_or_default(),
                            max_file_bytes: w.max_file_bytes,
                        },
                    )
                }
            }
            JobKind::Report | JobKind::Dashboard => {
                no_package(&w)?;
                if w.datasets.is_some() {
                    return Err(misplaced("datasets"));
                }
                let (spec_study, content) = if kind == JobKind::Report {
                    if w.dashboard.is_some() {
                        return Err(misplaced("dashboard"));
                    }
                    let r = w.report.clone().ok_or_else(|| missing("report"))?;
                    (r.study.clone(), ExportContent::Report(r))
                } else {
                    if w.report.is_some() {
                        return Err(misplaced("report"));
                    }
                    let d = w.dashboard.clone().ok_or_else(|| missing("dashboard"))?;
                    (d.study.clone(), ExportContent::Dashboard(d))
                };
                if w.study.as_ref().is_some_and(|s| *s != spec_study) {
                    return Err(crate::Error::validation(
                        Reason::StudyMismatch,
                        format!("the request names another study than its {}", kind.as_str()),
                    )
                    .with_field("study"));
                }
                (spec_study, content)
            }
        };
        Ok(ExportRequest {
            study,
            content,
            format: w.format,
            options: w.options,
            deidentify: w.deidentify,
            identifiable: w.identifiable,
            signature: w.signature,
            idempotency_key: w.idempotency_key,
        })
    }
}

/// The JSON shape of every export request; [`ExportRequest::from_wire`] checks which members a kind takes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    study: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datasets: Option<Vec<DatasetSelection>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report: Option<ReportSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dashboard: Option<DashboardSpec>,
    format: String,
    #[serde(default)]
    options: FormatOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    package: Option<PackageKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container: Option<PackageContainer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_file_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deidentify: Option<crate::deid::Deidentify>,
    #[serde(default, skip_serializing_if = "is_false")]
    identifiable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<crate::signature::SignatureRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
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
/// use trialport_core::request::{from_json, ListJobsRequest};
/// let r: ListJobsRequest = from_json(r#"{"page": 2, "limit": 50}"#)?;
/// assert_eq!((r.page, r.limit), (Some(2), Some(50)));
/// # Ok::<(), trialport_core::Error>(())
/// ```
///
/// # Errors
/// EXP002 `invalid_request`. The message names an unknown or missing field, or says that the text is not JSON or
/// that a value has the wrong type; it never quotes a value.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> crate::Result<T> {
    serde_json::from_str(text).map_err(invalid_request)
}

/// [`from_json`] of a JSON value (a stored request).
///
/// # Errors
/// As [`from_json`].
pub fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> crate::Result<T> {
    serde_json::from_value(value).map_err(invalid_request)
}

/// EXP002 `invalid_request` for a request serde could not read: names a field, never a value.
fn invalid_request(e: serde_json::Error) -> crate::Error {
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
    crate::Error::validation(Reason::InvalidRequest, message)
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
        let e = ExportRequest::from_json(JobKind::Data, r#"{"study": "S1"}"#).unwrap_err();
        assert!(e.message().starts_with("missing field"), "{e}");
        let e = from_json::<ListJobsRequest>(r#"{"status": 12345678}"#).unwrap_err();
        assert!(!e.message().contains("12345678"), "{e}");
        let e = from_json::<ListJobsRequest>("{\"status\": \"SECRETVALUE").unwrap_err();
        assert!(e.message().contains("not valid JSON"), "{e}");
        assert!(!e.message().contains("SECRETVALUE"), "{e}");
    }

    #[test]
    fn bulk_is_the_minimal_json_request() {
        let r = ExportRequest::from_json(
            JobKind::Bulk,
            r#"{"study": "S1", "datasets": ["DM", "AE"], "format": "xpt"}"#,
        )
        .unwrap();
        assert_eq!(r, ExportRequest::bulk("S1", &["DM", "AE"], "xpt"));
        let r =
            ExportRequest::from_json(JobKind::Bulk, r#"{"study": "S2", "format": "csv"}"#).unwrap();
        assert_eq!(r, ExportRequest::bulk("S2", &[], "csv"));
    }

    #[test]
    fn every_kind_reads_back_its_own_json() {
        use crate::document::{DashboardSpec, ReportSpec};
        let report: ReportSpec =
            from_json(r#"{"study": "S1", "title": "T", "sections": []}"#).unwrap();
        let dashboard: DashboardSpec = from_json(r#"{"study": "S1", "title": "T"}"#).unwrap();
        let mut data = ExportRequest::data("S1", &["DM"], "csv").option("delimiter", ";");
        data.identifiable = true;
        data.idempotency_key = Some("k1".into());
        let requests = [
            data,
            ExportRequest::bulk("S1", &["DM"], "xpt")
                .package(PackageKind::Ectd)
                .container(PackageContainer::Directory)
                .max_file_bytes(1000),
            ExportRequest::report(report, "html"),
            ExportRequest::dashboard(dashboard, "json"),
        ];
        for r in requests {
            let back = ExportRequest::from_value(r.kind(), r.to_json()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn members_of_another_kind_are_refused_by_name() {
        let cases = [
            (
                JobKind::Data,
                r#"{"study": "S1", "datasets": [], "format": "csv", "package": "zip"}"#,
                "package",
            ),
            (
                JobKind::Bulk,
                r#"{"study": "S1", "format": "csv", "report": {"study": "S1", "title": "t"}}"#,
                "report",
            ),
            (
                JobKind::Report,
                r#"{"report": {"study": "S1", "title": "t"}, "format": "html", "datasets": []}"#,
                "datasets",
            ),
            (JobKind::Dashboard, r#"{"format": "html"}"#, "dashboard"),
        ];
        for (kind, text, field) in cases {
            let e = ExportRequest::from_json(kind, text).unwrap_err();
            assert_eq!(
                (e.reason(), e.field()),
                ("invalid_request", Some(field)),
                "{text}"
            );
        }
        let e = ExportRequest::from_json(
            JobKind::Report,
            r#"{"study": "S2", "report": {"study": "S1", "title": "t"}, "format": "html"}"#,
        )
        .unwrap_err();
        assert_eq!((e.reason(), e.field()), ("study_mismatch", Some("study")));
        let ok = ExportRequest::from_json(
            JobKind::Report,
            r#"{"study": "S1", "report": {"study": "S1", "title": "t"}, "format": "html"}"#,
        )
        .unwrap();
        assert_eq!(ok.study, "S1");
    }

    #[test]
    fn job_ids() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(job_id(&format!(" {id}\n")).unwrap(), id);
        let e = job_id("nope").unwrap_err();
        assert_eq!((e.code().as_str(), e.field()), ("EXP001", Some("job_id")));
    }
}
