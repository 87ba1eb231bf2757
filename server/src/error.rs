//! Errors as HTTP responses: the one place where an EXP code and reason become a status and headers.
//!
//! | error | status |
//! |---|---|
//! | EXP001 | 404 |
//! | EXP002 | 400 (413 body too large, 415 not JSON, 405 method, 416 range: made by the service) |
//! | EXP003, credential refused (missing, malformed, unknown, expired, revoked) | 401 + `WWW-Authenticate` |
//! | EXP003, credential accepted (permission, e-signature) | 403 |
//! | EXP004 | 409 |
//! | EXP005 | 500 |
//! | EXP006 | 429 + `Retry-After` (seconds) |
//!
//! The body is always the standard error JSON (DESIGN §8) with the request's id; messages come from the engine or
//! are fixed texts here, so no data value, secret or stack trace ever reaches a response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use trialport_core::{Error, ErrorCode};

/// The challenge of a 401: both schemes the service accepts.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"trialport\", ApiKey realm=\"trialport\"";

/// An error response: status, the standard error JSON and the headers its status needs.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error of an engine call; `authenticated` tells whether the credential was accepted (then EXP003 is 403).
    pub fn engine(e: Error, authenticated: bool) -> Self {
        let status = match e.code() {
            ErrorCode::Unauthorized if authenticated => StatusCode::FORBIDDEN,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            code => StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        let retry_after = (e.code() == ErrorCode::RateLimited).then(|| {
            e.details()
                .get("retry_after_ms")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1000)
                .div_ceil(1000)
                .max(1)
        });
        ApiError {
            status,
            body: e.render(),
            retry_after,
        }
    }

    /// An error the service makes itself (no engine call: unknown path, body too large, not JSON, ...), stamped
    /// with the request's id and the current time, with the status of its code.
    pub fn made(e: Error, request_id: &str) -> Self {
        let status = StatusCode::from_u16(e.code().http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            body: e.to_json(chrono::Utc::now(), request_id),
            retry_after: None,
        }
    }

    /// The same error with another status (405, 413, 415, 416, 503).
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body was not read: the connection cannot carry another request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trialport_core::error::Reason;

    #[test]
    fn statuses_follow_the_contract() {
        let s = |e: Error, auth: bool| ApiError::engine(e, auth).status().as_u16();
        assert_eq!(s(Error::not_found("x"), true), 404);
        assert_eq!(s(Error::validation(Reason::InvalidOption, "x"), true), 400);
        assert_eq!(
            s(Error::unauthorized(Reason::InvalidCredential, "x"), false),
            401
        );
        assert_eq!(
            s(Error::unauthorized(Reason::PermissionDenied, "x"), true),
            403
        );
        assert_eq!(
            s(Error::unauthorized(Reason::SignatureRequired, "x"), true),
            403
        );
        assert_eq!(
            s(Error::conflict(Reason::IllegalTransition, "x"), true),
            409
        );
        assert_eq!(s(Error::server(Reason::Internal, "x"), true), 500);
        let limited = Error::new(ErrorCode::RateLimited, Reason::RateLimited, "x")
            .with_detail("retry_after_ms", 1500);
        let r = ApiError::engine(limited, true);
        assert_eq!((r.status().as_u16(), r.retry_after), (429, Some(2)));
        let r = ApiError::engine(Error::unauthorized(Reason::MissingCredential, "x"), false)
            .into_response();
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
