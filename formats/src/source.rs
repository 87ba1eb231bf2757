//! [`DirectorySource`]: study data as files, `ROOT/<study>/<DATASET>.<ext>`.
//!
//! Readable extensions: `csv`, `tsv`, `parquet`, `arrow`, `ndjson`, `json`, `xpt`, `dsjc` (read by [`crate::read`];
//! `.json` and `.ndjson` files holding Dataset-JSON are read as such, with their metadata). A
//! `<DATASET>.meta.json` beside a file is its metadata, not a dataset; folders are not datasets. Dataset names are the file stems
//! uppercased (`dm.csv` is `DM`); two files for one name (`DM.csv` and `DM.parquet`) are ambiguous, an EXP002.
//! Study and dataset names are validated like every other name (no path traversal).
//!
//! Every dataset file is read through [`crate::read::open`], so the readers' checks hold here as in `convert`: a
//! dataset whose file is not a regular file once symlinks are followed (a FIFO, a device such as a link to
//! `/dev/zero`, a socket, a directory) is listed under its name but refused when scanned, with EXP002
//! `not_a_regular_file`, instead of hanging or reading without end; damaged XPT files and CSV fields over the
//! limits are EXP002 too.

use crate::read;
use std::path::{Path, PathBuf};
use trialport_core::error::Reason;
use trialport_core::meta::DatasetMeta;
use trialport_core::name::validate_name;
use trialport_core::source::{
    unknown_dataset, unknown_study, BatchStream, DataSource, DatasetInfo,
};
use trialport_core::{Error, Result};

/// The extensions a directory source reads, lowercase.
pub const SOURCE_EXTENSIONS: &[&str] = &[
    "csv", "tsv", "parquet", "arrow", "ndjson", "json", "xpt", "dsjc",
];

/// Study data in a directory tree: `ROOT/<study>/<DATASET>.<ext>`.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    root: PathBuf,
}

/// One dataset file found in a study directory.
#[derive(Debug)]
struct Entry {
    name: String,
    path: PathBuf,
}

impl DirectorySource {
    /// A source over `root` (read when asked, so files may come and go).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirectorySource { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn study_dir(&self, study: &str) -> Result<PathBuf> {
        validate_name(study, "study")?;
        let dir = self.root.join(study);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(unknown_study(study))
        }
    }

    /// The dataset files of a study, sorted by name, duplicates kept (they are reported by the callers).
    fn entries(&self, study: &str) -> Result<Vec<Entry>> {
        let dir = self.study_dir(study)?;
        let listing = std::fs::read_dir(&dir).map_err(|e| Error::io("listing a study", &e))?;
        let mut entries = Vec::new();
        for item in listing {
            let item = item.map_err(|e| Error::io("listing a study", &e))?;
            let path = item.path();
            // A folder is no dataset (a study may keep anything in subfolders). Any other kind of file is listed:
            // one that is not a regular file is refused when scanned, by the reader, rather than skipped here as if
            // the dataset did not exist.
            if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let ext = ext.to_ascii_lowercase();
            if !SOURCE_EXTENSIONS.contains(&ext.as_str())
                || (ext == "json" && stem.to_ascii_lowercase().ends_with(".meta"))
                || validate_name(stem, "dataset").is_err()
            {
                continue;
            }
            entries.push(Entry {
                name: stem.to_ascii_uppercase(),
                path,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.path.cmp(&b.path)));
        Ok(entries)
    }

    /// The one file of `dataset`.
    fn find(&self, study: &str, dataset: &str) -> Result<PathBuf> {
        validate_name(dataset, "datasets")?;
        let mut found = self
            .entries(study)?
            .into_iter()
            .filter(|e| e.name == dataset);
        let first = found
            .next()
            .ok_or_else(|| unknown_dataset(study, dataset))?;
        if found.next().is_some() {
            return Err(ambiguous(dataset));
        }
        Ok(first.path)
    }
}

fn ambiguous(dataset: &str) -> Error {
    Error::validation(
        Reason::AmbiguousDataset,
        format!("dataset '{dataset}' has more than one file; keep one"),
    )
    .with_field("datasets")
}

/// The label of a dataset file without reading its rows: the metadata document's, else the file's own
/// (Parquet and Arrow IPC carry it in their schema).
fn label_of(path: &Path) -> Result<Option<String>> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        // Not read: scanning it is refused (`not_a_regular_file`).
        return Ok(None);
    }
    if let Some(meta) = read::sidecar_meta(path)? {
        if meta.label.is_some() {
            return Ok(meta.label);
        }
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("parquet" | "arrow")) {
        // Opening reads only the footer and schema, not the rows.
        return Ok(read::open(path, None)?.meta().label);
    }
    let dataset_json = match ext.as_deref() {
        Some("dsjc") => true,
        Some("json" | "ndjson") => crate::dataset_json::is_dataset_json(path)?,
        _ => false,
    };
    if dataset_json {
        // Opening reads the metadata before the rows, not the rows.
        return Ok(read::open(path, None)?.meta().label);
    }
    Ok(None)
}

impl DataSource for DirectorySource {
    fn studies(&self) -> Result<Vec<String>> {
        let listing =
            std::fs::read_dir(&self.root).map_err(|e| Error::io("listing the source", &e))?;
        let mut out = Vec::new();
        for item in listing {
            let item = item.map_err(|e| Error::io("listing the source", &e))?;
            let is_dir = std::fs::metadata(item.path()).is_ok_and(|m| m.is_dir());
            if let (true, Some(name)) = (is_dir, item.file_name().to_str()) {
                if trialport_core::name::validate_name(name, "study").is_ok() {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn datasets(&self, study: &str) -> Result<Vec<DatasetInfo>> {
        let entries = self.entries(study)?;
        if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(ambiguous(&w[0].name));
        }
        entries
            .into_iter()
            .map(|e| {
                Ok(DatasetInfo {
                    label: label_of(&e.path)?,
                    name: e.name,
                })
            })
            .collect()
    }

    fn scan(&self, study: &str, dataset: &str) -> Result<BatchStream> {
        let path = self.find(study, dataset)?;
        let stream = read::open(&path, None)?;
        let meta = DatasetMeta {
            name: dataset.to_string(),
            ..DatasetMeta::default()
        };
        stream.with_meta(&meta)
    }
}
