//! One request's context: its request id, what its engine call learned (principal, rate-limit quota), and the
//! middleware that stamps every response (`X-Request-Id`, `RateLimit`, `RateLimit-Policy`, `Cache-Control`), turns
//! axum's bare 405 into the standard error JSON, records the metrics and writes the one log line.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use trialport_core::engine::{LastCall, Session, MAX_REQUEST_ID};
use trialport_core::error::Reason;
use trialport_core::limit::RateLimitStatus;
use trialport_core::Error;

/// The request id header.
pub(crate) const X_REQUEST_ID: &str = "x-request-id";

/// What a request's engine call learned, shared between the handler and the middleware.
#[derive(Clone)]
pub(crate) struct RequestCtx {
    pub(crate) request_id: Arc<str>,
    learned: Arc<Mutex<LastCall>>,
}

impl RequestCtx {
    fn new(request_id: String) -> Self {
        RequestCtx {
            request_id: request_id.into(),
            learned: Arc::default(),
        }
    }

    fn record(&self, last: &LastCall) {
        *self.learned.lock().unwrap_or_else(|p| p.into_inner()) = last.clone();
    }

    fn learned(&self) -> LastCall {
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `op` in a session of `credential` with this request's id, on the blocking pool, and records what it
    /// learned of the caller.
    ///
    /// # Errors
    /// The engine's error as an [`ApiError`] (401 or 403 for EXP003 depending on whether the credential was
    /// accepted); EXP005 `internal` when the blocking task died.
    pub(crate) async fn call<T, F>(
        &self,
        state: &AppState,
        credential: String,
        op: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Session<'_>) -> trialport_core::Result<T> + Send + 'static,
    {
        let engine = state.engine.clone();
        let request_id = self.request_id.clone();
        let (result, last) = tokio::task::spawn_blocking(move || {
            let session = engine.session(&credential).with_request_id(&request_id);
            let result = op(&session);
            (result, session.last_call())
        })
        .await
        .map_err(|_| {
            ApiError::made(
                Error::server(Reason::Internal, "the request could not be completed"),
                &self.request_id,
            )
        })?;
        self.record(&last);
        result.map_err(|e| ApiError::engine(e, last.subject.is_some()))
    }
}

/// The credential: the `Authorization` header verbatim (`"ApiKey <key>"` or `"Bearer <jwt>"`), empty when absent.
/// Nothing else is read. Bytes that are not text are passed on as replacement characters, which no credential
/// contains, so the engine refuses them.
pub(crate) fn credential(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Whether the engine accepts `id` as a request id (1 to 128 printable ASCII characters, no space): the same rule
/// as `Session::with_request_id`, so the id echoed is the one in the audit trail.
fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh request id: `req_` and 32 hex digits (a UUIDv7), as the engine makes them.
fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

/// The middleware around every route (see the module docs).
pub(crate) async fn request_context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let request_id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map_or_else(new_request_id, str::to_string);
    let ctx = RequestCtx::new(request_id);
    req.extensions_mut().insert(ctx.clone());
    let mut response = next.run(req).await;

    // axum answers a known path with another method by a bare 405 that lists the methods in `Allow`.
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = ApiError::made(
            Error::validation(
                Reason::MethodNotAllowed,
                "this method is not allowed on this path: see the Allow header",
            ),
            &ctx.request_id,
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }

    let learned = ctx.learned();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if let Some(policy) = state.engine.rate_limit_policy() {
        let text = format!(
            "\"default\";q={};w={}",
            policy.requests,
            policy.window_seconds()
        );
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.insert("ratelimit-policy", v);
        }
    }
    if let Some(status) = learned.rate_limit {
        insert_rate_limit(headers, &status);
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let route_label = route.as_deref().unwrap_or("unmatched");
    crate::metrics::record_request(route_label, method.as_str(), status, elapsed);
    tracing::info!(
        target: "trialport::http",
        method = method.as_str(),
        route = route_label,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = &*ctx.request_id,
        principal = learned.subject.as_deref().unwrap_or(""),
        "request"
    );
    response
}

/// `RateLimit: "default";r=R;t=T` (draft-ietf-httpapi-ratelimit-headers-09) for the caller's quota after the call.
fn insert_rate_limit(headers: &mut HeaderMap, status: &RateLimitStatus) {
    let text = format!(
        "\"default\";r={};t={}",
        status.remaining,
        status.reset_seconds()
    );
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.insert("ratelimit", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_follow_the_engine_rule() {
        assert!(valid_request_id("req_1"));
        assert!(valid_request_id(&"a".repeat(128)));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id("é"));
        let id = new_request_id();
        assert!(id.starts_with("req_") && id.len() == 36 && valid_request_id(&id));
    }
}
