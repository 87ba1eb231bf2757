//! JSON and NDJSON (placeholder: being implemented).
use trialport_core::format::{Capability, Format, FormatInfo};

/// JSON and NDJSON.
#[derive(Debug, Clone)]
pub struct JsonFormat {
    id: &'static str,
}
impl JsonFormat {
    /// JSON array.
    pub fn array() -> Self {
        JsonFormat { id: "json" }
    }
    /// NDJSON.
    pub fn ndjson() -> Self {
        JsonFormat { id: "ndjson" }
    }
}
impl Format for JsonFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: self.id,
            name: "JSON and NDJSON",
            extension: "json",
            media_type: "application/json",
            capabilities: vec![Capability::Data],
            options: vec![],
        }
    }
}
