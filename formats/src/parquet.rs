//! Apache Parquet (placeholder: being implemented).
use trialport_core::format::{Capability, Format, FormatInfo};

/// Apache Parquet.
#[derive(Debug, Clone)]
pub struct ParquetFormat;

impl Format for ParquetFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "parquet",
            name: "Apache Parquet",
            extension: "parquet",
            media_type: "application/vnd.apache.parquet",
            capabilities: vec![Capability::Data],
            options: vec![],
        }
    }
}
