//! `DirectorySource` over a temporary directory tree.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use std::path::Path;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::DatasetMeta;
use trialport_core::source::{DataSource, Filter, FilterOp};
use trialport_core::ErrorCode;
use trialport_formats::source::DirectorySource;

fn put(dir: &Path, name: &str, content: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), content).unwrap();
}

fn ipc_bytes(label: &str) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![Field::new("N", DataType::Int64, true)]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
    )
    .unwrap();
    let meta = DatasetMeta {
        name: "WHATEVER".into(),
        label: Some(label.into()),
        columns: vec![],
        ..Default::default()
    };
    let mut out: Vec<u8> = Vec::new();
    let mut enc = trialport_formats::ipc::ArrowIpcFormat
        .encoder(&schema, &meta, &FormatOptions::new(), &mut out)
        .unwrap();
    enc.write(&b).unwrap();
    enc.finish().unwrap();
    out
}

fn tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let s1 = root.path().join("S1");
    put(
        &s1,
        "dm.csv",
        b"USUBJID,AGE\nS1-001,30\nS1-002,70\nS1-003,\n",
    );
    put(
        &s1,
        "dm.meta.json",
        br#"{"label":"Demographics","columns":[{"name":"AGE","label":"Age"}]}"#,
    );
    put(
        &s1,
        "AE.ndjson",
        b"{\"USUBJID\":\"S1-001\",\"AETERM\":\"Headache\"}\n",
    );
    put(&s1, "LB.arrow", &ipc_bytes("Laboratory"));
    put(&s1, "VS.tsv", b"USUBJID\tVSSTRESN\nS1-001\t120.5\n");
    put(&s1, "notes.txt", b"not a dataset");
    put(&s1, ".hidden.csv", b"A\n1\n");
    std::fs::create_dir_all(s1.join("sub.csv")).unwrap();
    root
}

#[test]
fn lists_datasets_sorted_with_labels() {
    let root = tree();
    let src = DirectorySource::new(root.path());
    let ds = src.datasets("S1").unwrap();
    let names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["AE", "DM", "LB", "VS"]);
    assert_eq!(ds[1].label.as_deref(), Some("Demographics"));
    assert_eq!(ds[2].label.as_deref(), Some("Laboratory"));
    assert_eq!(ds[0].label, None);
}

#[test]
fn scans_with_metadata_filters_and_projection() {
    let root = tree();
    let src = DirectorySource::new(root.path());
    let s = src.scan("S1", "DM").unwrap();
    let meta = s.meta();
    assert_eq!(meta.name, "DM");
    assert_eq!(meta.column("AGE").unwrap().label.as_deref(), Some("Age"));
    let rows: usize = s.collect().unwrap().iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    let s = src
        .scan_selected(
            "S1",
            "DM",
            Some(&["AGE".to_string()]),
            &[Filter::new("AGE", FilterOp::Ge, 50)],
        )
        .unwrap();
    let b = s.collect().unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().values(), &[70]);
    let lb = src.scan("S1", "LB").unwrap();
    assert_eq!(lb.meta().name, "LB", "the directory names the dataset");
    assert_eq!(lb.meta().label.as_deref(), Some("Laboratory"));
    // Same rows twice.
    let a = src.scan("S1", "VS").unwrap().collect().unwrap();
    let b = src.scan("S1", "VS").unwrap().collect().unwrap();
    assert_eq!(a, b);
}

#[test]
fn unknown_and_invalid_names_are_errors() {
    let root = tree();
    let src = DirectorySource::new(root.path());
    let e = src.datasets("S2").unwrap_err();
    assert_eq!((e.code(), e.field()), (ErrorCode::NotFound, Some("study")));
    let e = src.scan("S1", "XX").unwrap_err();
    assert_eq!(
        (e.code(), e.field()),
        (ErrorCode::NotFound, Some("datasets"))
    );
    let e = src.scan("S1", "notes").unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    for (study, dataset) in [
        ("..", "DM"),
        ("S1/../S1", "DM"),
        ("S1", "../S1/DM"),
        ("/etc", "DM"),
    ] {
        let e = src.scan(study, dataset).unwrap_err();
        assert_eq!(
            (e.code(), e.reason()),
            (ErrorCode::Validation, "invalid_name"),
            "{study} {dataset}"
        );
    }
}

#[test]
fn two_files_for_one_dataset_are_ambiguous() {
    let root = tree();
    put(&root.path().join("S1"), "DM.parquet", b"whatever");
    let src = DirectorySource::new(root.path());
    let e = src.datasets("S1").unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::Validation, "ambiguous_dataset")
    );
    assert_eq!(e.field(), Some("datasets"));
    assert_eq!(
        src.scan("S1", "DM").unwrap_err().reason(),
        "ambiguous_dataset"
    );
    assert!(src.scan("S1", "AE").is_ok());
}
