//! CSV and TSV (placeholder: being implemented).
use trialport_core::format::{Capability, Format, FormatInfo};

/// CSV and TSV.
#[derive(Debug, Clone)]
pub struct CsvFormat {
    id: &'static str,
}
impl CsvFormat {
    /// CSV.
    pub fn csv() -> Self {
        CsvFormat { id: "csv" }
    }
    /// TSV.
    pub fn tsv() -> Self {
        CsvFormat { id: "tsv" }
    }
}
impl Format for CsvFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: self.id,
            name: "CSV and TSV",
            extension: "csv",
            media_type: "text/csv",
            capabilities: vec![Capability::Data],
            options: vec![],
        }
    }
}
