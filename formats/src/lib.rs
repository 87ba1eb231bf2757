//! trialport-formats: the formats trialport writes and reads, registered explicitly with [`default_formats`].
//!
//! | id | module |
//! |---|---|
//! | `csv`, `tsv` | [`csv`] |
//! | `json`, `ndjson` | [`json`] |
//! | `parquet` | [`parquet`] (feature `parquet`) |
//! | `arrow-ipc` | [`ipc`] |
//! | `xlsx` | [`xlsx`] (feature `xlsx`) |
//! | `xpt` | [`xpt`] (SAS XPORT v5/v8, writer and reader) |
//! | `dataset-json` | [`dataset_json`] (CDISC Dataset-JSON 1.1: JSON, NDJSON, DSJC; writer and reader) |
//! | `define-xml` | [`define`] (CDISC Define-XML 2.1 from dataset metadata; [`define::cross_check`]) |
//! | `odm-xml` | [`odm`] (CDISC ODM 1.3.2 clinical data, streamed) |
//! | `html` | [`document`] (reports and dashboards) |
//! | `pdf` | [`pdf`] (reports and dashboards as PDF/A-2b; feature `pdf`) |
//! | reading csv, tsv, json, ndjson, parquet, arrow-ipc | [`read`] ([`read::open`], [`read::open_with_schema`]) |
//! | study files as a data source | [`source`] ([`source::DirectorySource`]) |

pub mod convert;
pub mod csv;
pub mod dataset_json;
pub mod define;
pub mod document;
pub mod home;
pub mod ipc;
pub mod json;
pub mod odm;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "pdf")]
pub mod pdf;
pub mod read;
pub mod source;
pub mod spool;
#[cfg(feature = "xlsx")]
pub mod xlsx;
pub mod xpt;

use std::sync::Arc;
use trialport_core::format::FormatRegistry;

/// Every format this build has, registered by id.
pub fn default_formats() -> FormatRegistry {
    let mut r = FormatRegistry::new();
    let all: Vec<Arc<dyn trialport_core::format::Format>> = vec![
        Arc::new(csv::CsvFormat::csv()),
        Arc::new(csv::CsvFormat::tsv()),
        Arc::new(json::JsonFormat::array()),
        Arc::new(json::JsonFormat::ndjson()),
        #[cfg(feature = "parquet")]
        Arc::new(parquet::ParquetFormat),
        Arc::new(ipc::ArrowIpcFormat),
        #[cfg(feature = "xlsx")]
        Arc::new(xlsx::XlsxFormat),
        Arc::new(document::HtmlFormat),
        #[cfg(feature = "pdf")]
        Arc::new(pdf::PdfFormat),
        Arc::new(xpt::XptFormat),
        Arc::new(dataset_json::DatasetJsonFormat),
        Arc::new(define::DefineXmlFormat),
        Arc::new(odm::OdmXmlFormat),
    ];
    for f in all {
        // Ids are distinct constants: a duplicate is a programming error caught by the tests below.
        let _ = r.register(f);
    }
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_format_registers_once() {
        let r = super::default_formats();
        let mut want = vec!["arrow-ipc", "csv", "html", "json", "ndjson", "tsv", "xpt"];
        if cfg!(feature = "parquet") {
            want.push("parquet");
        }
        if cfg!(feature = "xlsx") {
            want.push("xlsx");
        }
        if cfg!(feature = "pdf") {
            want.push("pdf");
        }
        want.push("dataset-json");
        want.extend(["define-xml", "odm-xml"]);
        want.sort();
        assert_eq!(r.ids(), want);
    }
}
