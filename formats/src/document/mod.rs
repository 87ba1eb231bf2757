//! HTML (placeholder: being implemented).
use trialport_core::format::{Capability, Format, FormatInfo};

/// HTML.
#[derive(Debug, Clone)]
pub struct HtmlFormat;

impl Format for HtmlFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "html",
            name: "HTML",
            extension: "html",
            media_type: "text/html",
            capabilities: vec![Capability::Data],
            options: vec![],
        }
    }
}
