//! XLSX (placeholder: being implemented).
use trialport_core::format::{Capability, Format, FormatInfo};

/// XLSX.
#[derive(Debug, Clone)]
pub struct XlsxFormat;

impl Format for XlsxFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "xlsx",
            name: "XLSX",
            extension: "xlsx",
            media_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            capabilities: vec![Capability::Data],
            options: vec![],
        }
    }
}
