//! Arrow IPC (placeholder: being implemented).
use trialport_core::format::{Capability, Format, FormatInfo};

/// Arrow IPC.
#[derive(Debug, Clone)]
pub struct ArrowIpcFormat;

impl Format for ArrowIpcFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "arrow-ipc",
            name: "Arrow IPC",
            extension: "arrow",
            media_type: "application/vnd.apache.arrow.file",
            capabilities: vec![Capability::Data],
            options: vec![],
        }
    }
}
