//! Metrics with the names of DESIGN §12 (OpenTelemetry HTTP semantic conventions in Prometheus form), recorded
//! through the `metrics` facade: a Rust service that mounts the router sees them in whatever recorder it installs;
//! `trialport serve` installs a Prometheus recorder and serves `/metrics` on its own listener ([`MetricsHook`],
//! [`render`]).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | histogram | `http_route` (the route template, never the raw path), `http_request_method`, `http_response_status_code` |
//! | `trialport_jobs` | gauge | `state` (read from the store at each scrape) |
//! | `trialport_job_duration_seconds` | histogram | `kind`, `format` |
//! | `trialport_export_bytes_total` | counter | `format` |
//! | `trialport_audit_events_total` | counter | `outcome` |
//! | `trialport_jobs_rescued_total` | counter | |
//! | `trialport_http_download_aborted_total` | counter | `reason` |

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use trialport_core::audit::{AuditEvent, AuditHook, Outcome};

/// The request duration histogram.
pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
/// The jobs gauge.
pub const JOBS: &str = "trialport_jobs";
/// The job duration histogram.
pub const JOB_DURATION: &str = "trialport_job_duration_seconds";
/// Bytes of succeeded exports.
pub const EXPORT_BYTES: &str = "trialport_export_bytes_total";
/// Audit events.
pub const AUDIT_EVENTS: &str = "trialport_audit_events_total";
/// Jobs a dead process left running, queued again.
pub const JOBS_RESCUED: &str = "trialport_jobs_rescued_total";
/// Downloads aborted mid-stream (integrity or I/O failures).
pub const DOWNLOADS_ABORTED: &str = "trialport_http_download_aborted_total";

/// The buckets of `http_server_request_duration_seconds` (OpenTelemetry's advice).
const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// The buckets of `trialport_job_duration_seconds`.
const JOB_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// The HTTP method as OpenTelemetry names it (`_OTHER` for unknown methods).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "PATCH" => "PATCH",
        _ => "_OTHER",
    }
}

/// Records one request.
pub(crate) fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        HTTP_DURATION,
        "http_route" => route.to_string(),
        "http_request_method" => method_label(method),
        "http_response_status_code" => status.to_string()
    )
    .record(elapsed.as_secs_f64());
}

/// Records a download aborted mid-stream.
pub(crate) fn download_aborted(reason: &str) {
    metrics::counter!(DOWNLOADS_ABORTED, "reason" => reason.to_string()).increment(1);
}

/// Installs the Prometheus recorder for this process (once; later calls return the same handle).
///
/// # Errors
/// A message when another recorder is installed already.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    static HANDLE: std::sync::OnceLock<Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &HTTP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(JOB_DURATION.into()), &JOB_BUCKETS)
                })
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))
        })
        .clone()
}

/// The Prometheus text of every metric, with `trialport_jobs` read from `counts` first.
pub fn render(handle: &PrometheusHandle, counts: Option<&dyn crate::JobCounts>) -> String {
    if let Some(counts) = counts {
        if let Ok(list) = counts.counts() {
            for (state, n) in list {
                metrics::gauge!(JOBS, "state" => state).set(n as f64);
            }
        }
    }
    handle.run_upkeep();
    handle.render()
}

/// What the hook remembers of a job this process saw submitted or started.
#[derive(Debug, Clone, Default)]
struct SeenJob {
    kind: Option<String>,
    format: Option<String>,
    started: Option<DateTime<Utc>>,
}

/// An audit hook that turns the engine's events into the job metrics: every event counts in
/// `trialport_audit_events_total`; a job's end records its duration (from its `job.running` event seen by this
/// process) by kind and format (from its export event, `unknown` when another process submitted it); a succeeded
/// job's bytes count in `trialport_export_bytes_total`; `job.requeued` of a dead worker counts as rescued.
#[derive(Debug, Default)]
pub struct MetricsHook {
    jobs: Mutex<HashMap<String, SeenJob>>,
}

/// Jobs remembered at most (the oldest started are dropped first past this).
const SEEN_JOBS: usize = 100_000;

impl MetricsHook {
    /// A hook with nothing seen.
    pub fn new() -> Self {
        Self::default()
    }
}

impl AuditHook for MetricsHook {
    fn record(&self, e: &AuditEvent) -> trialport_core::Result<()> {
        let outcome = match e.outcome {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        };
        metrics::counter!(AUDIT_EVENTS, "outcome" => outcome).increment(1);
        let Some(job) = e.target.strip_prefix("job:") else {
            return Ok(());
        };
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() > SEEN_JOBS {
            jobs.clear();
        }
        let text = |k: &str| {
            e.details
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        match e.action.as_str() {
            "export_data" | "export_report" | "export_dashboard" | "bulk_export"
                if e.outcome == Outcome::Success =>
            {
                let seen = jobs.entry(job.to_string()).or_default();
                seen.kind = text("kind");
                seen.format = text("format");
            }
            "job.running" => {
                jobs.entry(job.to_string()).or_default().started = Some(e.timestamp);
            }
            "job.succeeded" | "job.failed" | "job.cancelled" => {
                let seen = jobs.remove(job).unwrap_or_default();
                let kind = seen.kind.unwrap_or_else(|| "unknown".into());
                let format = seen.format.unwrap_or_else(|| "unknown".into());
                if let Some(started) = seen.started {
                    let secs = (e.timestamp - started).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::histogram!(JOB_DURATION, "kind" => kind, "format" => format.clone())
                        .record(secs);
                }
                if e.action == "job.succeeded" {
                    if let Some(bytes) = e.details.get("bytes").and_then(|v| v.as_u64()) {
                        metrics::counter!(EXPORT_BYTES, "format" => format).increment(bytes);
                    }
                }
            }
            "job.requeued" => {
                if text("reason").as_deref() == Some("worker_lost") {
                    metrics::counter!(JOBS_RESCUED).increment(1);
                }
                jobs.remove(job);
            }
            _ => {}
        }
        Ok(())
    }
}
