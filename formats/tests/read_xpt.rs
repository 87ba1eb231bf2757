//! XPT as an input: `read::open` and the directory source dispatch `.xpt` files to the XPT reader.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use trialport_core::source::DataSource;
use trialport_formats::read;
use trialport_formats::source::DirectorySource;

fn sas_dm() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/datasetjson-examples/sdtm/dm.xpt")
}

#[test]
fn open_reads_xpt_by_extension_with_its_metadata() {
    let path = sas_dm();
    if !path.exists() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: the conformance corpus is not beside the repository");
        return;
    }
    let stream = read::open(&path, None).unwrap();
    let meta = stream.meta();
    assert_eq!(meta.name, "DM");
    assert_eq!(
        meta.column("USUBJID").unwrap().label.as_deref(),
        Some("Unique Subject Identifier")
    );
    let rows: usize = stream.collect().unwrap().iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 18);
    assert!(read::READABLE.contains(&"xpt"));
}

#[test]
fn a_directory_source_serves_xpt_files() {
    let path = sas_dm();
    if !path.exists() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: the conformance corpus is not beside the repository");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("CDISCPILOT01")).unwrap();
    std::fs::copy(&path, dir.path().join("CDISCPILOT01").join("dm.xpt")).unwrap();
    let src = DirectorySource::new(dir.path());
    let names: Vec<String> = src
        .datasets("CDISCPILOT01")
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["DM"]);
    let rows: usize = src
        .scan("CDISCPILOT01", "DM")
        .unwrap()
        .collect()
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 18);
}
