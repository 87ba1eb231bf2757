//! The handlers, one module per group of endpoints.

pub(crate) mod download;
pub(crate) mod exports;
pub(crate) mod health;
pub(crate) mod jobs;

use crate::context::RequestCtx;
use crate::error::ApiError;

/// A job id from the path; text that is not a UUID names no job (EXP001, field `job_id`, the core's rule).
pub(crate) fn job_id(text: &str, ctx: &RequestCtx) -> Result<uuid::Uuid, ApiError> {
    trialport_core::request::job_id(text).map_err(|e| ApiError::made(e, &ctx.request_id))
}
