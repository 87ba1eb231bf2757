//! The OpenAPI 3.1 document of the service, generated from the schema types and operation descriptions below
//! (utoipa), with the links that chain an export to its job, download and cancel (for clients and for stateful
//! conformance testing). It is served at `/api/v1/openapi.json` and committed as `docs/openapi.json`; a test
//! keeps the two equal.
//!
//! The schema types mirror the JSON of the engine's types (`trialport_core::job::Job`, the export requests, ...)
//! field for field: the core stays free of OpenAPI derives, and the tests check the mirrors against real
//! responses.

#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Study and dataset names as the engine takes them: 1 to 64 of `A-Z a-z 0-9 _ - .`, not starting or ending with
/// `.` (the engine also refuses the reserved device names `CON`, `NUL`, `COM1`, ..., which the pattern leaves to it).
const NAME_PATTERN: &str = "^[A-Za-z0-9_-]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_-])?$";
/// Idempotency keys: 1 to 200 characters, no control characters (the engine counts the 200 in UTF-8 bytes).
const IDEMPOTENCY_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,200}$";

// ---------------------------------------------------------------------------------------------------------------
// Errors

/// The standard error response (DESIGN §8).
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "EXP002", "message": "limit must be between 1 and 100",
    "field": "limit", "details": {"reason": "out_of_range", "min": 1, "max": 100},
    "timestamp": "2025-01-21T10:00:00Z", "request_id": "req_0190f3a1c2d34e5f8a9b0c1d2e3f4a5b"}}))]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorObject,
}

/// The stable error codes.
#[derive(Serialize, Deserialize, ToSchema)]
pub enum ErrorCode {
    /// Not found (404).
    #[serde(rename = "EXP001")]
    Exp001,
    /// Validation (400; 405, 413, 415 and 416 from the service).
    #[serde(rename = "EXP002")]
    Exp002,
    /// Unauthorized (401 credential refused, 403 not permitted).
    #[serde(rename = "EXP003")]
    Exp003,
    /// Conflict (409).
    #[serde(rename = "EXP004")]
    Exp004,
    /// Server or integrity error (500; 503 from `/readyz`).
    #[serde(rename = "EXP005")]
    Exp005,
    /// Rate limit exceeded (429).
    #[serde(rename = "EXP006")]
    Exp006,
}

/// One error.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorObject {
    /// Stable code.
    pub code: ErrorCode,
    /// For people; never data values or secrets.
    pub message: String,
    /// The request field (or header) the error is about.
    pub field: Option<String>,
    /// `reason` (stable, snake_case) and further details (e.g. `retry_after_ms` for EXP006).
    pub details: ErrorDetails,
    /// UTC time of the error.
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The request id: equal to the `X-Request-Id` header and to the audit event's.
    pub request_id: String,
}

/// Error details: a stable reason and more members depending on it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorDetails {
    /// Stable snake_case reason, e.g. `permission_denied`, `token_expired`, `integrity_violation`.
    pub reason: String,
    /// Further members.
    #[serde(flatten)]
    pub more: BTreeMap<String, Value>,
}

/// The error of a failed job, as stored in its record (no time or request id).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// Stable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// The request field the error is about.
    pub field: Option<String>,
    /// `reason` and further details.
    pub details: ErrorDetails,
}

// ---------------------------------------------------------------------------------------------------------------
// Jobs

/// What a job exports.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `export_data`.
    Data,
    /// `export_dashboard`.
    Dashboard,
    /// `export_report`.
    Report,
    /// `bulk_export`.
    Bulk,
}

/// The state of a job.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker is exporting.
    Running,
    /// Done; artifacts available.
    Succeeded,
    /// Stopped by an error.
    Failed,
    /// Stopped by a user.
    Cancelled,
    /// Succeeded, then its artifacts passed their retention time.
    Expired,
}

/// How far a job has come.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Rows written so far.
    pub rows_written: u64,
    /// Bytes written so far.
    pub bytes_written: u64,
    /// Datasets (or documents) finished.
    pub datasets_done: u32,
    /// Datasets (or documents) in the job.
    pub datasets_total: u32,
}

/// One file a job produced.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    /// Name within the job (the `artifact` of a download), e.g. `dm.csv` or `manifest.json`.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex (the download's `ETag`).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// Rows, for dataset artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// A job: the record of one export.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "0190f3a1-c2d3-7e5f-8a9b-0c1d2e3f4a5b", "kind": "data", "study": "DEMO01",
    "org": "acme", "requested_by": "apikey:3f2a9c1b7d4e", "requested_by_name": "initial admin",
    "request": {"study": "DEMO01", "datasets": ["DM"], "format": "csv", "options": {},
        "deidentify": {"profiles": ["safe-harbor"]}},
    "format": "csv", "state": "queued",
    "progress": {"rows_written": 0, "bytes_written": 0, "datasets_done": 0, "datasets_total": 1},
    "created_at": "2025-01-21T10:00:00Z", "started_at": null, "finished_at": null, "artifacts": [],
    "error": null, "idempotency_key": null, "request_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "cancel_requested": false, "version": 1}))]
pub struct Job {
    /// Job id (UUIDv7).
    #[schema(format = "uuid")]
    pub id: String,
    /// What it exports.
    pub kind: JobKind,
    /// Study id.
    pub study: String,
    /// Organization.
    pub org: String,
    /// Subject of the principal who asked.
    pub requested_by: String,
    /// Printed name of the principal who asked.
    pub requested_by_name: String,
    /// The request, as given (the signature without its password).
    pub request: BTreeMap<String, Value>,
    /// Output format id.
    pub format: String,
    /// State.
    pub state: JobState,
    /// Progress.
    pub progress: Progress,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When a worker started it.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// When it finished.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Artifacts, once succeeded (data files first, `manifest.json` last).
    pub artifacts: Vec<Artifact>,
    /// The error, when failed.
    pub error: Option<JobError>,
    /// The idempotency key given.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical request.
    pub request_hash: String,
    /// Whether a user asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// Version (optimistic locking).
    pub version: u64,
}

/// One page of jobs, newest first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs on this page.
    pub items: Vec<Job>,
    /// 1-based page number.
    pub page: u32,
    /// Jobs per page.
    pub limit: u32,
    /// Jobs matching the query in all pages.
    pub total: u64,
}

// ---------------------------------------------------------------------------------------------------------------
// Formats

/// What a format can do.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Encodes datasets.
    Data,
    /// Renders reports.
    Report,
    /// Renders dashboards.
    Dashboard,
    /// Streams with bounded memory.
    Streaming,
    /// Has a reader.
    Read,
    /// Writes metadata only.
    MetadataOnly,
    /// Describes several datasets in one document.
    Describe,
}

/// One option of a format.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FormatOption {
    /// Option name.
    pub name: String,
    /// Default value as text.
    pub default: String,
    /// What it does.
    pub description: String,
    /// The allowed values, when they are a closed set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A registered format.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "csv", "name": "Comma-separated values", "extension": "csv",
    "media_type": "text/csv", "capabilities": ["data", "streaming", "read"],
    "options": [{"name": "delimiter", "default": ",", "description": "field delimiter"}]}))]
pub struct FormatInfo {
    /// Stable lowercase id, e.g. `xpt`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// File extension without the dot.
    pub extension: String,
    /// Media type of the output.
    pub media_type: String,
    /// What it can do.
    pub capabilities: Vec<Capability>,
    /// The options it accepts, with their defaults.
    pub options: Vec<FormatOption>,
}

// ---------------------------------------------------------------------------------------------------------------
// Requests (the engine's request JSON)

/// A row filter: `column op value`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Column name.
    pub column: String,
    /// Operator.
    pub op: FilterOp,
    /// Value (a list for `in`; absent for `is_null`/`is_not_null`), converted to the column's type.
    #[serde(default)]
    pub value: Value,
}

/// A filter operator.
#[derive(Serialize, Deserialize, ToSchema)]
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
    /// One of a list.
    In,
    /// Null.
    IsNull,
    /// Not null.
    IsNotNull,
}

/// A dataset to export: its name, or a name with a column selection and filters.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DatasetSelection {
    /// The whole dataset, e.g. `"DM"`.
    Name(String),
    /// Selected columns and rows.
    Selected {
        /// Dataset name.
        name: String,
        /// Columns, in order (all when absent).
        #[serde(default)]
        columns: Option<Vec<String>>,
        /// Row filters, all of which must hold.
        #[serde(default)]
        filters: Vec<Filter>,
    },
}

/// De-identification: a comma list of profiles, a list of profiles, or an object.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Deidentify {
    /// Profiles as a comma list, e.g. `"safe-harbor,date-shift"`.
    List(String),
    /// Profiles (`safe-harbor`, `pseudonymize`, `date-shift`, `drop-free-text`).
    Profiles(Vec<String>),
    /// Profiles and column lists.
    Object(DeidentifyObject),
}

/// De-identification as an object.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeidentifyObject {
    /// Profiles.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Columns to leave out.
    #[serde(default)]
    pub drop: Vec<String>,
    /// The only columns to write (all when empty).
    #[serde(default)]
    pub keep: Vec<String>,
}

/// The meaning of an e-signature.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// Reviewed.
    Review,
    /// Approved.
    Approval,
    /// Responsibility taken.
    Responsibility,
    /// Authored.
    Authorship,
}

/// An e-signature (21 CFR 11): its meaning and the signer's password (re-authentication, never stored).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureRequest {
    /// What the signature means.
    pub meaning: Meaning,
    /// The signer's signing password.
    #[serde(default)]
    pub password: String,
}

/// `POST /api/v1/exports/data`: datasets of a study, one artifact each.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"study": "DEMO01", "datasets": ["DM", {"name": "AE", "columns": ["USUBJID", "AETERM"],
    "filters": [{"column": "AESER", "op": "eq", "value": "Y"}]}], "format": "csv",
    "deidentify": "safe-harbor"}))]
pub struct ExportDataRequest {
    /// Study id.
    pub study: String,
    /// Datasets (at least one, no name twice).
    #[schema(min_items = 1)]
    pub datasets: Vec<DatasetSelection>,
    /// Format id (`GET /api/v1/exports/formats`).
    pub format: String,
    /// Format options (name to value).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// De-identification.
    #[serde(default)]
    pub deidentify: Option<Deidentify>,
    /// Export identifying columns unchanged (needs `data:identifiable` and a signature).
    #[serde(default)]
    pub identifiable: bool,
    /// An e-signature.
    #[serde(default)]
    pub signature: Option<SignatureRequest>,
    /// Idempotency key (the `Idempotency-Key` header sets it too).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// How a bulk export is packaged.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackageKind {
    /// One zip file with `manifest.json`.
    Zip,
    /// The eCTD Module 5 tree of XPT v5 files with define.xml (needs a signature).
    Ectd,
}

/// Where a package's files go.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackageContainer {
    /// One zip artifact.
    Zip,
    /// The files as the job's artifacts (eCTD only).
    Directory,
}

/// `POST /api/v1/exports/bulk`: several datasets in one package with a manifest.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"study": "DEMO01", "datasets": ["DM", "AE"], "format": "csv", "package": "zip",
    "deidentify": "safe-harbor"}))]
pub struct BulkExportRequest {
    /// Study id.
    pub study: String,
    /// Datasets (absent or empty: every dataset of the study).
    #[serde(default)]
    pub datasets: Option<Vec<DatasetSelection>>,
    /// Format id of the files inside the package.
    pub format: String,
    /// Format options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Packaging (default `zip`).
    #[serde(default)]
    pub package: Option<PackageKind>,
    /// Zip or directory (default `zip`).
    #[serde(default)]
    pub container: Option<PackageContainer>,
    /// eCTD: the largest data file in bytes (default 5,000,000,000).
    #[serde(default)]
    pub max_file_bytes: Option<u64>,
    /// De-identification.
    #[serde(default)]
    pub deidentify: Option<Deidentify>,
    /// Export identifying columns unchanged.
    #[serde(default)]
    pub identifiable: bool,
    /// An e-signature (required for eCTD).
    #[serde(default)]
    pub signature: Option<SignatureRequest>,
    /// Idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Sort key of a table.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    /// Column name.
    pub column: String,
    /// Descending when true.
    #[serde(default)]
    pub descending: bool,
}

/// A table drawn from a study dataset.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Heading.
    #[serde(default)]
    pub heading: Option<String>,
    /// Dataset name.
    pub dataset: String,
    /// Columns (all when absent).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Row filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Sort keys.
    #[serde(default)]
    pub sort: Vec<SortKey>,
    /// The most rows shown.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// A report section: text, or a table.
#[derive(Serialize, Deserialize, ToSchema)]
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
    /// A table (the members of a table spec).
    Table {
        /// Heading.
        #[serde(default)]
        heading: Option<String>,
        /// Dataset name.
        dataset: String,
        /// Columns (all when absent).
        #[serde(default)]
        columns: Option<Vec<String>>,
        /// Row filters.
        #[serde(default)]
        filters: Vec<Filter>,
        /// Sort keys.
        #[serde(default)]
        sort: Vec<SortKey>,
        /// The most rows shown.
        #[serde(default)]
        limit: Option<u64>,
    },
}

/// A report: title, parameters and sections.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Study id.
    pub study: String,
    /// Title.
    pub title: String,
    /// Parameters shown under the title.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Sections, in order.
    #[serde(default)]
    pub sections: Vec<SectionSpec>,
}

/// `POST /api/v1/exports/report`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"report": {"study": "DEMO01", "title": "Enrollment", "sections": [
    {"type": "text", "heading": "Summary", "body": "Subjects by site."},
    {"type": "table", "dataset": "DM", "columns": ["SITEID", "ARM"]}]}, "format": "html"}))]
pub struct ReportExportRequest {
    /// The report.
    pub report: ReportSpec,
    /// The study (optional; must equal the report's).
    #[serde(default)]
    pub study: Option<String>,
    /// Format id (`html`, `json`, `xlsx`, ...).
    pub format: String,
    /// Format options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// De-identification.
    #[serde(default)]
    pub deidentify: Option<Deidentify>,
    /// Show identifying columns unchanged.
    #[serde(default)]
    pub identifiable: bool,
    /// An e-signature.
    #[serde(default)]
    pub signature: Option<SignatureRequest>,
    /// Idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// A measure of a tile or chart.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Number of rows.
    Count,
    /// Distinct non-null values of `column`.
    DistinctCount,
    /// Sum of the numeric `column`.
    Sum,
    /// Mean of the numeric `column`.
    Mean,
}

/// A KPI tile.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TileSpec {
    /// Label.
    pub label: String,
    /// Dataset name.
    pub dataset: String,
    /// Measure.
    pub measure: Measure,
    /// Column of the measure (all but `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// Row filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// A chart kind.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// Bars.
    Bar,
    /// A line.
    Line,
}

/// A chart: a measure per value of a category column.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// Title.
    pub title: String,
    /// Kind.
    pub kind: ChartKind,
    /// Dataset name.
    pub dataset: String,
    /// Category column.
    pub x: String,
    /// Measure.
    pub measure: Measure,
    /// Column of the measure.
    #[serde(default)]
    pub column: Option<String>,
    /// Row filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// A dashboard: tiles, tables and charts.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardSpec {
    /// Study id.
    pub study: String,
    /// Title.
    pub title: String,
    /// KPI tiles.
    #[serde(default)]
    pub tiles: Vec<TileSpec>,
    /// Tables.
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// Charts.
    #[serde(default)]
    pub charts: Vec<ChartSpec>,
}

/// `POST /api/v1/exports/dashboard`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dashboard": {"study": "DEMO01", "title": "Safety", "tiles": [
    {"label": "Subjects", "dataset": "DM", "measure": "count"}], "charts": [
    {"title": "AEs by severity", "kind": "bar", "dataset": "AE", "x": "AESEV", "measure": "count"}]},
    "format": "html"}))]
pub struct DashboardExportRequest {
    /// The dashboard.
    pub dashboard: DashboardSpec,
    /// The study (optional; must equal the dashboard's).
    #[serde(default)]
    pub study: Option<String>,
    /// Format id.
    pub format: String,
    /// Format options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// De-identification.
    #[serde(default)]
    pub deidentify: Option<Deidentify>,
    /// Show identifying columns unchanged.
    #[serde(default)]
    pub identifiable: bool,
    /// An e-signature.
    #[serde(default)]
    pub signature: Option<SignatureRequest>,
    /// Idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `/healthz` and `/readyz` when well.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

// ---------------------------------------------------------------------------------------------------------------
// Operations (documentation of the handlers in `crate::routes`)

/// Export datasets of a study.
///
/// Validates the request (credential, permission, study, datasets, columns, format and options, privacy) and
/// queues a job, answered at once with 202 and its `Location`; poll it with `GET /jobs/{job_id}`.
#[utoipa::path(post, path = "/api/v1/exports/data", operation_id = "export_data", tag = "exports",
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeating a request with the same key returns the same job; another request with it is 409")),
    request_body(content = ExportDataRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued (or the existing job of a repeated idempotency key)", body = Job,
            headers(("Location" = String, description = "/api/v1/exports/jobs/{job_id}"),
                ("X-Request-Id" = String, description = "The request id (also in the audit trail)"))),
        (status = 400, description = "Invalid request (EXP002)", body = ErrorResponse),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted, or e-signature refused (EXP003)", body = ErrorResponse),
        (status = 404, description = "Unknown study, dataset or format (EXP001)", body = ErrorResponse),
        (status = 409, description = "Idempotency key reused with another request (EXP004)", body = ErrorResponse),
        (status = 413, description = "Body too large (EXP002)", body = ErrorResponse),
        (status = 415, description = "Body not JSON (EXP002)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn export_data() {}

/// Render a dashboard (KPI tiles, tables, charts) as a job.
#[utoipa::path(post, path = "/api/v1/exports/dashboard", operation_id = "export_dashboard", tag = "exports",
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeating a request with the same key returns the same job")),
    request_body(content = DashboardExportRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = Job,
            headers(("Location" = String, description = "/api/v1/exports/jobs/{job_id}"), ("X-Request-Id" = String))),
        (status = 400, description = "Invalid request (EXP002)", body = ErrorResponse),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted (EXP003)", body = ErrorResponse),
        (status = 404, description = "Unknown study, dataset or format (EXP001)", body = ErrorResponse),
        (status = 409, description = "Conflict (EXP004)", body = ErrorResponse),
        (status = 413, description = "Body too large (EXP002)", body = ErrorResponse),
        (status = 415, description = "Body not JSON (EXP002)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn export_dashboard() {}

/// Render a report (title, parameters, text and table sections) as a job.
#[utoipa::path(post, path = "/api/v1/exports/report", operation_id = "export_report", tag = "exports",
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeating a request with the same key returns the same job")),
    request_body(content = ReportExportRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = Job,
            headers(("Location" = String, description = "/api/v1/exports/jobs/{job_id}"), ("X-Request-Id" = String))),
        (status = 400, description = "Invalid request (EXP002)", body = ErrorResponse),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted (EXP003)", body = ErrorResponse),
        (status = 404, description = "Unknown study, dataset or format (EXP001)", body = ErrorResponse),
        (status = 409, description = "Conflict (EXP004)", body = ErrorResponse),
        (status = 413, description = "Body too large (EXP002)", body = ErrorResponse),
        (status = 415, description = "Body not JSON (EXP002)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn export_report() {}

/// Export many datasets in one package (zip, or eCTD Module 5) with a manifest.
#[utoipa::path(post, path = "/api/v1/exports/bulk", operation_id = "bulk_export", tag = "exports",
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeating a request with the same key returns the same job")),
    request_body(content = BulkExportRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued", body = Job,
            headers(("Location" = String, description = "/api/v1/exports/jobs/{job_id}"), ("X-Request-Id" = String))),
        (status = 400, description = "Invalid request (EXP002)", body = ErrorResponse),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted, or e-signature required or refused (EXP003)", body = ErrorResponse),
        (status = 404, description = "Unknown study, dataset or format (EXP001)", body = ErrorResponse),
        (status = 409, description = "Conflict (EXP004)", body = ErrorResponse),
        (status = 413, description = "Body too large (EXP002)", body = ErrorResponse),
        (status = 415, description = "Body not JSON (EXP002)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn bulk_export() {}

/// The jobs the caller may see, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/exports/jobs", operation_id = "list_jobs", tag = "jobs",
    params(
        ("page" = Option<i64>, Query, description = "Page, from 1 (default 1)"),
        ("limit" = Option<i64>, Query, description = "Jobs per page, 1 to 100 (default 20)"),
        ("status" = Option<JobState>, Query, description = "Only jobs in this state"),
        ("study" = Option<String>, Query, description = "Only jobs of this study")),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage,
            headers(("Link" = String, description = "RFC 8288 links: first, prev, next, last"), ("X-Request-Id" = String))),
        (status = 400, description = "Bad page, limit or status (EXP002)", body = ErrorResponse),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted (EXP003)", body = ErrorResponse),
        (status = 404, description = "Unknown study, or a study of another organization (EXP001)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn list_jobs() {}

/// One job: state, progress, artifacts with checksums, error.
#[utoipa::path(get, path = "/api/v1/exports/jobs/{job_id}", operation_id = "get_job", tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job, headers(("X-Request-Id" = String))),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted (EXP003)", body = ErrorResponse),
        (status = 404, description = "No such job (EXP001)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn get_job() {}

/// Cancel a queued or running job (a running job stops at its next batch and leaves no artifact).
#[utoipa::path(post, path = "/api/v1/exports/jobs/{job_id}/cancel", operation_id = "cancel_job", tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, cancelled (or with cancel_requested while it stops)", body = Job,
            headers(("X-Request-Id" = String))),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted (EXP003)", body = ErrorResponse),
        (status = 404, description = "No such job (EXP001)", body = ErrorResponse),
        (status = 409, description = "The job has finished (EXP004)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn cancel_job() {}

/// Download an artifact of a succeeded job: decrypted and verified while streamed; `Range` gives 206.
///
/// A failed verification while streaming aborts the connection: a response is complete only if the artifact's
/// size and SHA-256 matched.
#[utoipa::path(get, path = "/api/v1/exports/jobs/{job_id}/download", operation_id = "download", tag = "jobs",
    params(
        ("job_id" = String, Path, description = "Job id"),
        ("artifact" = Option<String>, Query, description = "Artifact name (needed when the job has several, e.g. dm.csv or manifest.json)"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag held: 304 when unchanged"),
        ("If-Range" = Option<String>, Header, description = "The ETag held: the range applies only while it matches")),
    responses(
        (status = 200, description = "The bytes", content_type = "*/*", body = String,
            headers(("ETag" = String, description = "The SHA-256 in quotes"),
                ("Repr-Digest" = String, description = "sha-256=:<base64>: (RFC 9530)"),
                ("Content-Disposition" = String), ("Accept-Ranges" = String), ("X-Request-Id" = String))),
        (status = 206, description = "The bytes of the range", content_type = "*/*", body = String,
            headers(("Content-Range" = String), ("ETag" = String), ("Repr-Digest" = String), ("X-Request-Id" = String))),
        (status = 304, description = "Not modified (If-None-Match matched)", headers(("ETag" = String))),
        (status = 400, description = "Artifact name required (EXP002)", body = ErrorResponse),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted (EXP003)", body = ErrorResponse),
        (status = 404, description = "No such job or artifact (EXP001)", body = ErrorResponse),
        (status = 409, description = "Job not succeeded, or its artifacts expired (EXP004)", body = ErrorResponse),
        (status = 416, description = "Range past the end (EXP002)", body = ErrorResponse,
            headers(("Content-Range" = String, description = "bytes */<size>"))),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server or integrity error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn download() {}

/// The registered formats with their capabilities and options.
#[utoipa::path(get, path = "/api/v1/exports/formats", operation_id = "formats", tag = "formats",
    responses(
        (status = 200, description = "The formats", body = Vec<FormatInfo>, headers(("X-Request-Id" = String))),
        (status = 401, description = "Credential missing or refused (EXP003)", body = ErrorResponse,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "Not permitted (EXP003)", body = ErrorResponse),
        (status = 429, description = "Rate limit (EXP006)", body = ErrorResponse, headers(("Retry-After" = u64))),
        (status = 500, description = "Server error (EXP005)", body = ErrorResponse)),
    security(("apiKey" = []), ("bearer" = [])))]
fn formats() {}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
fn openapi() {}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "service",
    responses((status = 200, description = "Alive", body = Health)))]
fn healthz() {}

/// Readiness: the store and artifacts are reachable and the service is not shutting down.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready (EXP005)", body = ErrorResponse)))]
fn readyz() {}

/// The document's header, components and operations.
#[derive(OpenApi)]
#[openapi(
    info(title = "trialport Exports API", version = "1",
        description = "Clinical-trial data exports as audited jobs: POST an export (202 + Location), poll the job, \
download its verified artifacts. Every response carries X-Request-Id (equal to the audit event's request id); with \
a rate limit, RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-09).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")),
    paths(export_data, export_dashboard, export_report, bulk_export, list_jobs, get_job, cancel_job, download,
        formats, openapi, healthz, readyz),
    modifiers(&Security),
    tags((name = "exports", description = "Start export jobs"), (name = "jobs", description = "Jobs and downloads"),
        (name = "formats", description = "Formats"), (name = "service", description = "Documents and probes")))]
struct ApiDoc;

/// The two credential schemes: `Authorization: ApiKey <key>` and `Authorization: Bearer <jwt>`.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "An API key as `Authorization: ApiKey tp_...` (made by `trialport init` or `keys create`)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A JWT as `Authorization: Bearer <jwt>`"))
                    .build(),
            ),
        );
    }
}

/// Completes the generated document: the links from a created job to the operations on it (clients and stateful
/// tests follow them from `export_*` to `get_job`, `download` and `cancel_job`, and from `get_job` to the last
/// two), the engine's constraints on names, idempotency keys and pages, and the download's binary body.
fn finish(doc: &mut Value) {
    let link =
        |op: &str| json!({"operationId": op, "parameters": {"job_id": "$response.body#/id"}});
    let from_job = json!({"GetJob": link("get_job"), "DownloadJob": link("download"),
        "CancelJob": link("cancel_job")});
    for path in ["data", "dashboard", "report", "bulk"] {
        if let Some(r) = doc.pointer_mut(&format!(
            "/paths/~1api~1v1~1exports~1{path}/post/responses/202"
        )) {
            r["links"] = from_job.clone();
        }
    }
    if let Some(r) = doc.pointer_mut("/paths/~1api~1v1~1exports~1jobs~1{job_id}/get/responses/200")
    {
        r["links"] = json!({"DownloadJob": link("download"), "CancelJob": link("cancel_job")});
    }
    // Constraints of the engine that the derive does not state.
    let schemas = "/components/schemas";
    for (schema, field) in [
        ("ExportDataRequest", "study"),
        ("BulkExportRequest", "study"),
        ("ReportExportRequest", "study"),
        ("DashboardExportRequest", "study"),
        ("ReportSpec", "study"),
        ("DashboardSpec", "study"),
    ] {
        if let Some(p) = doc.pointer_mut(&format!("{schemas}/{schema}/properties/{field}")) {
            p["pattern"] = json!(NAME_PATTERN);
        }
    }
    for pointer in ["oneOf/0", "oneOf/1/properties/name"] {
        if let Some(p) = doc.pointer_mut(&format!("{schemas}/DatasetSelection/{pointer}")) {
            p["pattern"] = json!(NAME_PATTERN);
        }
    }
    for schema in [
        "ExportDataRequest",
        "BulkExportRequest",
        "ReportExportRequest",
        "DashboardExportRequest",
    ] {
        if let Some(p) = doc.pointer_mut(&format!("{schemas}/{schema}/properties/idempotency_key"))
        {
            p["pattern"] = json!(IDEMPOTENCY_PATTERN);
        }
    }
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for item in paths.values_mut() {
            let Some(Value::Array(params)) = item.pointer_mut("/post/parameters") else {
                continue;
            };
            for param in params.iter_mut().filter(|p| p["name"] == "Idempotency-Key") {
                // Visible ASCII (a header value), 1 to 200 characters.
                param["schema"]["pattern"] = json!("^[\\x20-\\x7e]{1,200}$");
            }
        }
    }
    if let Some(Value::Array(params)) =
        doc.pointer_mut("/paths/~1api~1v1~1exports~1jobs/get/parameters")
    {
        for param in params.iter_mut() {
            let (min, max) = match param["name"].as_str() {
                Some("page") => (1, u64::from(u32::MAX)),
                Some("limit") => (1, 100),
                _ => continue,
            };
            param["schema"]["minimum"] = json!(min);
            param["schema"]["maximum"] = json!(max);
        }
    }
    // The artifact bytes: any media type (the artifact's), binary.
    for status in ["200", "206"] {
        let pointer = format!(
            "/paths/~1api~1v1~1exports~1jobs~1{{job_id}}~1download/get/responses/{status}/content"
        );
        if let Some(c) = doc.pointer_mut(&pointer) {
            *c = json!({"*/*": {"schema": {"type": "string", "format": "binary"}}});
        }
    }
}

/// The document as a JSON value.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    finish(&mut doc);
    doc
}

/// The document as pretty JSON text with a final newline (as committed in `docs/openapi.json`).
pub fn json() -> String {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
        text.push('\n');
        text
    })
    .clone()
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A short name for a schema: its `$ref` name, its type, or `one of ...`.
fn type_name(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{name}\">{name}</a>");
    }
    if let Some(all) = schema["oneOf"].as_array() {
        return all.iter().map(type_name).collect::<Vec<_>>().join(" | ");
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_string(),
    };
    if ty.starts_with("array") {
        return format!("array of {}", type_name(&schema["items"]));
    }
    if let Some(values) = schema["enum"].as_array() {
        let v: Vec<String> = values.iter().map(|v| esc(&v.to_string())).collect();
        return format!("{ty}: {}", v.join(", "));
    }
    match schema["format"].as_str() {
        Some(f) => format!("{ty} ({f})"),
        None => ty,
    }
}

/// The document as a static HTML reference page (committed as `docs/api.html`; no script, no external resource).
pub fn html() -> String {
    let doc = document();
    let mut h = String::new();
    let title = esc(doc["info"]["title"].as_str().unwrap_or("API"));
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<style>\n\
body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#1d232a}}\n\
code,.m{{font-family:ui-monospace,monospace}} table{{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}}\n\
td,th{{border:1px solid #ccd3da;padding:.25rem .5rem;text-align:left;vertical-align:top}} th{{background:#eef2f5}}\n\
.m{{display:inline-block;min-width:3.5rem;font-weight:bold}} h3{{margin-top:2rem;border-top:1px solid #ccd3da;padding-top:1rem}}\n\
</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>{}</p>\n\
<p>Generated from the service's OpenAPI 3.1 document (<a href=\"openapi.json\">openapi.json</a>, also served at \
<code>/api/v1/openapi.json</code>). Credentials: <code>Authorization: ApiKey tp_...</code> or \
<code>Authorization: Bearer &lt;jwt&gt;</code>. Errors are <a href=\"#schema-ErrorResponse\">ErrorResponse</a>.</p>\n",
        esc(doc["info"]["description"].as_str().unwrap_or(""))
    ));
    h.push_str("<h2>Operations</h2>\n<table>\n<tr><th>method and path</th><th>operation</th><th>summary</th></tr>\n");
    let mut ops = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "delete"] {
                if let Some(op) = item.get(method) {
                    ops.push((path.clone(), method, op.clone()));
                }
            }
        }
    }
    for (path, method, op) in &ops {
        let id = op["operationId"].as_str().unwrap_or("");
        h.push_str(&format!(
            "<tr><td><span class=\"m\">{}</span> <code>{}</code></td><td><a href=\"#op-{id}\">{id}</a></td><td>{}</td></tr>\n",
            method.to_uppercase(),
            esc(path),
            esc(op["summary"].as_str().unwrap_or(""))
        ));
    }
    h.push_str("</table>\n");
    for (path, method, op) in &ops {
        let id = op["operationId"].as_str().unwrap_or("");
        h.push_str(&format!(
            "<h3 id=\"op-{id}\"><span class=\"m\">{}</span> <code>{}</code></h3>\n<p>{}</p>\n",
            method.to_uppercase(),
            esc(path),
            esc(op["description"]
                .as_str()
                .or(op["summary"].as_str())
                .unwrap_or(""))
        ));
        if op["security"].is_array() {
            h.push_str("<p>Needs a credential (API key or JWT).</p>\n");
        }
        if let Some(params) = op["parameters"].as_array() {
            h.push_str("<table>\n<tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>\n");
            for p in params {
                h.push_str(&format!(
                    "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    esc(p["name"].as_str().unwrap_or("")),
                    if p["required"] == true {
                        " (required)"
                    } else {
                        ""
                    },
                    esc(p["in"].as_str().unwrap_or("")),
                    type_name(&p["schema"]),
                    esc(p["description"].as_str().unwrap_or(""))
                ));
            }
            h.push_str("</table>\n");
        }
        if let Some(body) = op["requestBody"]["content"].as_object() {
            for (media, c) in body {
                h.push_str(&format!(
                    "<p>Body (<code>{}</code>): {}</p>\n",
                    esc(media),
                    type_name(&c["schema"])
                ));
            }
        }
        h.push_str(
            "<table>\n<tr><th>status</th><th>description</th><th>body</th><th>headers</th></tr>\n",
        );
        if let Some(responses) = op["responses"].as_object() {
            for (status, r) in responses {
                let body = r["content"]
                    .as_object()
                    .map(|c| {
                        c.iter()
                            .map(|(m, v)| {
                                format!("<code>{}</code> {}", esc(m), type_name(&v["schema"]))
                            })
                            .collect::<Vec<_>>()
                            .join("<br>")
                    })
                    .unwrap_or_default();
                let headers = r["headers"]
                    .as_object()
                    .map(|hs| {
                        hs.keys()
                            .map(|k| format!("<code>{}</code>", esc(k)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{body}</td><td>{headers}</td></tr>\n",
                    esc(status),
                    esc(r["description"].as_str().unwrap_or(""))
                ));
            }
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Schemas</h2>\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, s) in schemas {
            h.push_str(&format!(
                "<h3 id=\"schema-{name}\">{name}</h3>\n<p>{}</p>\n",
                esc(s["description"].as_str().unwrap_or(""))
            ));
            if let Some(props) = s["properties"].as_object() {
                let required: Vec<&str> = s["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                h.push_str("<table>\n<tr><th>member</th><th>type</th><th>description</th></tr>\n");
                for (p, v) in props {
                    h.push_str(&format!(
                        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>\n",
                        esc(p),
                        if required.contains(&p.as_str()) {
                            " (required)"
                        } else {
                            ""
                        },
                        type_name(v),
                        esc(v["description"].as_str().unwrap_or(""))
                    ));
                }
                h.push_str("</table>\n");
            } else {
                h.push_str(&format!("<p>Type: {}</p>\n", type_name(s)));
            }
            if let Some(example) = s.get("example") {
                h.push_str(&format!(
                    "<p>Example:</p>\n<pre><code>{}</code></pre>\n",
                    esc(&serde_json::to_string_pretty(example).unwrap_or_default())
                ));
            }
        }
    }
    h.push_str("</body>\n</html>\n");
    h
}
