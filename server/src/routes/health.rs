//! `/healthz`, `/readyz`, `/api/v1/openapi.json` and the answer to unknown paths: no credential, no data.

use crate::context::RequestCtx;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::atomic::Ordering;
use trialport_core::error::Reason;
use trialport_core::Error;

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 when the store and artifacts are reachable and the service is not shutting down, else 503
/// with the standard error JSON (EXP005, reason `shutting_down` or the check's).
pub(crate) async fn readyz(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
) -> Response {
    let reason = if state.options.shutting_down.load(Ordering::SeqCst) {
        Some(Reason::ShuttingDown)
    } else if let Some(check) = &state.options.readiness {
        check.check().await.err()
    } else {
        None
    };
    match reason {
        None => Json(serde_json::json!({"status": "ready"})).into_response(),
        Some(reason) => ApiError::made(
            Error::server(reason, "the service is not ready"),
            &ctx.request_id,
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .into_response(),
    }
}

/// `GET /api/v1/openapi.json`: the OpenAPI 3.1 document (the same as the committed `docs/openapi.json`).
pub(crate) async fn openapi() -> Response {
    let mut r = crate::openapi::json().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Any other path: 404 with the standard error JSON.
pub(crate) async fn not_found(Extension(ctx): Extension<RequestCtx>) -> Response {
    ApiError::made(
        Error::not_found("no such path: the API is under /api/v1/exports").with_field("path"),
        &ctx.request_id,
    )
    .into_response()
}
