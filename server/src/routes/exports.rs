//! `POST /api/v1/exports/{data,dashboard,report,bulk}`: the body is the engine's request JSON of the kind; the
//! answer is 202 with the queued job and `Location: /api/v1/exports/jobs/{id}` (the FHIR Bulk Data kick-off
//! pattern), or the existing job for a repeated `Idempotency-Key`.

use crate::context::{credential, RequestCtx};
use crate::error::ApiError;
use crate::http_util::{json_body, mount_prefix};
use crate::AppState;
use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use trialport_core::error::Reason;
use trialport_core::job::JobKind;
use trialport_core::Error;

/// The `Idempotency-Key` header.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /api/v1/exports/data`.
pub(crate) async fn export_data(
    state: State<AppState>,
    ctx: Extension<RequestCtx>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(JobKind::Data, state, ctx, original, uri, headers, body).await
}

/// `POST /api/v1/exports/dashboard`.
pub(crate) async fn export_dashboard(
    state: State<AppState>,
    ctx: Extension<RequestCtx>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(JobKind::Dashboard, state, ctx, original, uri, headers, body).await
}

/// `POST /api/v1/exports/report`.
pub(crate) async fn export_report(
    state: State<AppState>,
    ctx: Extension<RequestCtx>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(JobKind::Report, state, ctx, original, uri, headers, body).await
}

/// `POST /api/v1/exports/bulk`.
pub(crate) async fn bulk_export(
    state: State<AppState>,
    ctx: Extension<RequestCtx>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(JobKind::Bulk, state, ctx, original, uri, headers, body).await
}

async fn export(
    kind: JobKind,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let text = json_body(
            &headers,
            body,
            state.options.max_body_bytes,
            &ctx.request_id,
        )
        .await?;
        let text = with_idempotency_key(text, &headers, &ctx)?;
        let job = ctx
            .call(&state, credential(&headers), move |s| {
                s.export_json(kind, &text)
            })
            .await?;
        let location = format!(
            "{}/api/v1/exports/jobs/{}",
            mount_prefix(&original, &uri),
            job.id
        );
        let mut response = (StatusCode::ACCEPTED, Json(job)).into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Ok::<_, ApiError>(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The body with the `Idempotency-Key` header's value as its `idempotency_key` member. A body that is not a JSON
/// object is left as it is (the engine refuses it, audited).
///
/// # Errors
/// 400 EXP002 `invalid_request` (field `Idempotency-Key`) for a header that is not text, or one that differs from
/// the body's own `idempotency_key`.
fn with_idempotency_key(
    text: String,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Result<String, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(text);
    };
    let bad = |message: &str| {
        ApiError::made(
            Error::validation(Reason::InvalidRequest, message).with_field("Idempotency-Key"),
            &ctx.request_id,
        )
    };
    let key = value
        .to_str()
        .map_err(|_| bad("the Idempotency-Key header must be visible ASCII text"))?
        .trim()
        .to_string();
    let Ok(serde_json::Value::Object(mut body)) = serde_json::from_str::<serde_json::Value>(&text)
    else {
        return Ok(text);
    };
    match body.get("idempotency_key") {
        Some(serde_json::Value::String(k)) if *k == key => {}
        Some(serde_json::Value::Null) | None => {
            body.insert("idempotency_key".into(), serde_json::Value::String(key));
        }
        Some(_) => {
            return Err(bad(
                "the Idempotency-Key header and the body's idempotency_key differ",
            ))
        }
    }
    Ok(serde_json::Value::Object(body).to_string())
}
