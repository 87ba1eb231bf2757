//! The one structured error of trialport, mapped mechanically to the EXP codes of the contract.
//!
//! Every failure that reaches a user is an [`Error`]: a stable [`ErrorCode`] (EXP001-EXP006), a message that never
//! contains data values or secrets, an optional field, a stable snake_case `reason` and further details. It renders
//! as the seed's standard error response with [`Error::to_json`].

use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::fmt;

mod reason;

pub use reason::Reason;

/// The stable error codes of the contract (DESIGN.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// EXP001: resource not found (job, dataset, study, format, artifact).
    #[serde(rename = "EXP001")]
    NotFound,
    /// EXP002: validation error (bad request, option, metadata; a value the format cannot represent).
    #[serde(rename = "EXP002")]
    Validation,
    /// EXP003: unauthorized (missing, invalid or expired credential; permission denied).
    #[serde(rename = "EXP003")]
    Unauthorized,
    /// EXP004: conflict (illegal state transition, idempotency key reuse, version mismatch, artifact expired).
    #[serde(rename = "EXP004")]
    Conflict,
    /// EXP005: server error (I/O, sink, audit hook failure, integrity failure).
    #[serde(rename = "EXP005")]
    Server,
    /// EXP006: rate limit exceeded.
    #[serde(rename = "EXP006")]
    RateLimited,
}

impl ErrorCode {
    /// The code as it appears in the error JSON, e.g. `"EXP002"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "EXP001",
            ErrorCode::Validation => "EXP002",
            ErrorCode::Unauthorized => "EXP003",
            ErrorCode::Conflict => "EXP004",
            ErrorCode::Server => "EXP005",
            ErrorCode::RateLimited => "EXP006",
        }
    }

    /// The HTTP status an HTTP adapter answers with (403 for a denied permission is chosen by
    /// [`Error::http_status`], which also sees the reason).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::Validation => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Conflict => 409,
            ErrorCode::Server => 500,
            ErrorCode::RateLimited => 429,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trialport error: code, message, optional field, stable reason and details.
///
/// Construct with the helpers ([`Error::validation`], [`Error::not_found`], ...) and refine with
/// [`Error::with_field`] and [`Error::with_detail`]. The message is for people; programs match on
/// [`Error::code`] and [`Error::reason`].
#[derive(Debug, Clone, PartialEq)]
pub struct Error(Box<Inner>);

/// The fields of an error, boxed so that `Result<T, Error>` stays one pointer wide.
#[derive(Debug, Clone, PartialEq)]
struct Inner {
    code: ErrorCode,
    /// A catalogue name ([`Reason::as_str`]), or the name an error read back by [`Error::from_object`] carried.
    reason: Cow<'static, str>,
    message: String,
    field: Option<String>,
    details: Map<String, Value>,
    request_id: Option<String>,
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

/// The result type of trialport.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error with a code, a reason of the catalogue and a human message.
    pub fn new(code: ErrorCode, reason: Reason, message: impl Into<String>) -> Self {
        debug_assert!(
            reason.codes().contains(&code),
            "reason {} is not catalogued with {code}",
            reason.as_str()
        );
        Error(Box::new(Inner {
            code,
            reason: Cow::Borrowed(reason.as_str()),
            message: message.into(),
            field: None,
            details: Map::new(),
            request_id: None,
            timestamp: None,
        }))
    }

    /// EXP001 with reason `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::NotFound, Reason::NotFound, message)
    }

    /// EXP002 with the given reason.
    pub fn validation(reason: Reason, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Validation, reason, message)
    }

    /// EXP003 with the given reason.
    pub fn unauthorized(reason: Reason, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Unauthorized, reason, message)
    }

    /// EXP004 with the given reason.
    pub fn conflict(reason: Reason, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Conflict, reason, message)
    }

    /// EXP005 with the given reason.
    pub fn server(reason: Reason, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Server, reason, message)
    }

    /// EXP005 for an I/O failure; the OS error kind is kept, the path is not (it may name data).
    pub fn io(context: &str, err: &std::io::Error) -> Self {
        Error::server(Reason::IoError, format!("{context}: {}", err.kind()))
    }

    /// Sets the request field the error is about, e.g. `"limit"`.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    /// Adds one detail (never a data value or a secret).
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.details.insert(key.to_string(), value.into());
        self
    }

    /// Stamps the request id and time of the operation that failed (done once, by the engine).
    pub fn with_request(mut self, request_id: &str, at: chrono::DateTime<chrono::Utc>) -> Self {
        if self.0.request_id.is_none() {
            self.0.request_id = Some(request_id.to_string());
            self.0.timestamp = Some(at);
        }
        self
    }

    /// The request id of the operation that failed, when stamped.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// The stable snake_case reason, e.g. `permission_denied`.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The request field the error is about.
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// Further details (`reason` is included when rendered).
    pub fn details(&self) -> &Map<String, Value> {
        &self.0.details
    }

    /// The HTTP status for this error: 403 for a denied permission, else the code's status.
    pub fn http_status(&self) -> u16 {
        if self.0.code == ErrorCode::Unauthorized
            && self.0.reason == Reason::PermissionDenied.as_str()
        {
            403
        } else {
            self.0.code.http_status()
        }
    }

    /// Renders the standard error response with the stamped request id and time (now and `""` when unstamped).
    pub fn render(&self) -> Value {
        self.to_json(
            self.0.timestamp.unwrap_or_else(chrono::Utc::now),
            self.0.request_id.as_deref().unwrap_or(""),
        )
    }

    /// The error object without timestamp and request id, as stored in a failed job's record.
    pub fn to_object(&self) -> Value {
        let mut v = self.to_json(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH, "");
        if let Some(o) = v.get_mut("error").and_then(Value::as_object_mut) {
            o.remove("timestamp");
            o.remove("request_id");
        }
        v["error"].take()
    }

    /// Rebuilds an error from [`Error::to_object`] output (`None` when it is not of that shape).
    pub fn from_object(v: &Value) -> Option<Self> {
        let code = serde_json::from_value::<ErrorCode>(v.get("code")?.clone()).ok()?;
        let mut details = v.get("details")?.as_object()?.clone();
        let reason = details.remove("reason")?.as_str()?.to_string();
        Some(Error(Box::new(Inner {
            code,
            reason: Cow::Owned(reason),
            message: v.get("message")?.as_str()?.to_string(),
            field: v.get("field").and_then(Value::as_str).map(str::to_string),
            details,
            request_id: None,
            timestamp: None,
        })))
    }

    /// Renders the seed's standard error response:
    /// `{"error": {"code", "message", "field", "details": {"reason", ...}, "timestamp", "request_id"}}`.
    pub fn to_json(&self, timestamp: chrono::DateTime<chrono::Utc>, request_id: &str) -> Value {
        let mut details = Map::new();
        details.insert("reason".into(), Value::String(self.0.reason.to_string()));
        for (k, v) in &self.0.details {
            details.insert(k.clone(), v.clone());
        }
        json!({"error": {
            "code": self.0.code.as_str(),
            "message": self.0.message,
            "field": self.0.field,
            "details": details,
            "timestamp": crate::clock::format_utc(timestamp),
            "request_id": request_id,
        }})
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.0.code, self.0.reason, self.0.message)?;
        if let Some(field) = &self.0.field {
            write!(f, " [field {field}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        match e {
            arrow::error::ArrowError::IoError(_, io) => Error::io("arrow", &io),
            other => Error::validation(Reason::InvalidData, arrow_message(&other)),
        }
    }
}

/// A message for an Arrow error that keeps its kind but not the values it may quote.
fn arrow_message(e: &arrow::error::ArrowError) -> String {
    use arrow::error::ArrowError as A;
    let kind = match e {
        A::CastError(_) => "value cannot be cast to the column type",
        A::ParseError(_) => "value cannot be parsed as the column type",
        A::SchemaError(_) => "schema mismatch",
        A::InvalidArgumentError(_) => "invalid argument",
        A::CsvError(_) => "malformed CSV",
        A::JsonError(_) => "malformed JSON",
        A::IpcError(_) => "malformed Arrow IPC",
        A::ComputeError(_) => "computation failed",
        A::ParquetError(_) => "malformed Parquet",
        A::NotYetImplemented(_) => "unsupported data type",
        _ => "invalid data",
    };
    format!("data error: {kind}")
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io("I/O error", &e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_seed_shape() {
        let e = Error::validation(Reason::OutOfRange, "limit must be between 1 and 100")
            .with_field("limit")
            .with_detail("max", 100);
        let ts = chrono::DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let v = e.to_json(ts, "req_123456");
        assert_eq!(
            v,
            json!({"error": {"code": "EXP002", "message": "limit must be between 1 and 100", "field": "limit",
                "details": {"reason": "out_of_range", "max": 100}, "timestamp": "2025-01-21T10:00:00Z",
                "request_id": "req_123456"}})
        );
    }

    #[test]
    fn permission_denied_is_403() {
        assert_eq!(
            Error::unauthorized(Reason::PermissionDenied, "x").http_status(),
            403
        );
        assert_eq!(
            Error::unauthorized(Reason::InvalidCredential, "x").http_status(),
            401
        );
    }
}
