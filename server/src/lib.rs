//! trialport-server: the Exports API over HTTP, a thin layer over the engine's [`Session`].
//!
//! [`router`] answers the endpoints of the contract (DESIGN §12) under `/api/v1/exports`, the OpenAPI document
//! at `/api/v1/openapi.json`, and `/healthz` and `/readyz`; a Rust service mounts it (under its own prefix and
//! middleware if it likes). [`serve()`] runs it as `trialport serve` does: TLS, Prometheus metrics on their own
//! listener, JSON logs and graceful shutdown.
//!
//! The service decides nothing the engine decides: each request becomes one [`Session`] call (credential = the
//! `Authorization` header verbatim, request id = `X-Request-Id`) run on the blocking pool, and the engine's
//! [`trialport_core::Error`] becomes a status and the standard error JSON in one place ([`error`]).
//!
//! ```no_run
//! # fn main() -> trialport_core::Result<()> {
//! use std::sync::Arc;
//! let engine = Arc::new(trialport_core::engine::Engine::builder().build()?);
//! let app: axum::Router = axum::Router::new().nest("/exports-service", trialport_server::router(engine));
//! # drop(app);
//! # Ok(())
//! # }
//! ```
//!
//! [`Session`]: trialport_core::engine::Session

mod context;
pub mod error;
pub mod home;
mod http_util;
pub mod metrics;
pub mod openapi;
mod routes;
pub mod serve;

use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trialport_core::engine::Engine;
use trialport_core::error::Reason;

pub use serve::{serve, ServeOptions};

/// The largest request body by default (1 MiB): export requests are small JSON documents.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Whether the service can take traffic: the store and the artifacts are reachable.
///
/// # Contract
/// `check` answers within a few seconds, reads no study data and never panics; `Err` carries a stable snake_case
/// reason (it appears in the `/readyz` answer, so never a path or a secret).
#[async_trait::async_trait]
pub trait Readiness: Send + Sync {
    /// `Ok` when ready.
    ///
    /// # Errors
    /// The reason it is not ready (e.g. [`Reason::StoreUnreachable`]).
    async fn check(&self) -> Result<(), Reason>;
}

/// Counts of jobs by state, for the `trialport_jobs` gauge (read when the metrics are scraped).
pub trait JobCounts: Send + Sync {
    /// The number of jobs in each state (snake_case state name, count).
    ///
    /// # Errors
    /// The reason when the store cannot be read.
    fn counts(&self) -> Result<Vec<(&'static str, u64)>, Reason>;
}

/// How [`router_with`] serves.
#[derive(Clone)]
pub struct ServiceOptions {
    /// The largest request body; larger ones get 413 (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// The readiness check of `/readyz` (default: ready while not shutting down).
    pub readiness: Option<Arc<dyn Readiness>>,
    /// Set when the service is shutting down: `/readyz` then answers 503 so that balancers stop sending traffic.
    pub shutting_down: Arc<AtomicBool>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            readiness: None,
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("readiness", &self.readiness.is_some())
            .finish_non_exhaustive()
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) options: Arc<ServiceOptions>,
}

/// The Exports API with default [`ServiceOptions`]: every endpoint of DESIGN §12 at its contract path.
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, ServiceOptions::default())
}

/// The Exports API (see the crate docs) with `options`.
pub fn router_with(engine: Arc<Engine>, options: ServiceOptions) -> Router {
    use routes::{download, exports, health, jobs};
    let state = AppState {
        engine,
        options: Arc::new(options),
    };
    let api = Router::new()
        .route("/api/v1/exports/data", post(exports::export_data))
        .route("/api/v1/exports/dashboard", post(exports::export_dashboard))
        .route("/api/v1/exports/report", post(exports::export_report))
        .route("/api/v1/exports/bulk", post(exports::bulk_export))
        .route("/api/v1/exports/jobs", get(jobs::list_jobs))
        .route("/api/v1/exports/jobs/{job_id}", get(jobs::get_job))
        .route("/api/v1/exports/jobs/{job_id}/cancel", post(jobs::cancel))
        .route(
            "/api/v1/exports/jobs/{job_id}/download",
            get(download::download),
        )
        .route("/api/v1/exports/formats", get(jobs::formats))
        .route("/api/v1/openapi.json", get(health::openapi))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(health::not_found);
    api.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        context::request_context,
    ))
    .with_state(state)
}
