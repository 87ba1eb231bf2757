//! Reading files: format detection, CSV type inference, NULL versus empty, JSON arrays, metadata documents and
//! the errors of missing or malformed input.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trialport_core::ErrorCode;
use trialport_formats::read;

fn file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn read_all(path: &Path) -> RecordBatch {
    let stream = read::open(path, None).unwrap();
    let schema = stream.schema().clone();
    arrow::compute::concat_batches(&schema, &stream.collect().unwrap()).unwrap()
}

fn types(b: &RecordBatch) -> Vec<DataType> {
    b.schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

#[test]
fn csv_types_are_inferred() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(
        dir.path(),
        "lb.csv",
        b"ID,SITE,N,X,D,T,TZ,F,S,EMPTY\n\
          1,001,9007199254740993,1,2024-01-31,2024-01-31T10:00:00,2024-01-31T10:00:00Z,true,a,\n\
          2,002,-9223372036854775808,2.5,1969-12-31,2024-01-31T10:00:00.123456,2024-01-31T12:00:00+02:00,FALSE,,\n\
          3,,,,,,,,\"\",\n",
    );
    let b = read_all(&p);
    assert_eq!(
        types(&b),
        [
            DataType::Int64,
            DataType::Utf8,
            DataType::Int64,
            DataType::Float64,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Boolean,
            DataType::Utf8,
            DataType::Utf8,
        ]
    );
    assert_eq!(b.column(1).as_string::<i32>().value(0), "001");
    let n = b.column(2).as_primitive::<Int64Type>();
    assert_eq!(n.value(0), 9_007_199_254_740_993);
    assert_eq!(n.value(1), i64::MIN);
    assert!(n.is_null(2));
    assert_eq!(b.column(3).as_primitive::<Float64Type>().value(1), 2.5);
    assert_eq!(b.column(4).as_primitive::<Date32Type>().value(1), -1);
    let tz = b.column(6).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(tz.value(0), tz.value(1), "offsets are converted to UTC");
    // Unquoted empty is null, "" is the empty string.
    let s = b.column(8).as_string::<i32>();
    assert!(s.is_valid(0) && s.is_null(1) && s.is_valid(2));
    assert_eq!(s.value(2), "");
    assert_eq!(b.column(9).null_count(), 3);
    assert_eq!(read::open(&p, None).unwrap().meta().name, "LB");
}

#[test]
fn our_csv_reads_back_with_inferred_types() {
    use trialport_core::format::{Format, FormatOptions};
    let schema = Arc::new(Schema::new(vec![
        Field::new("N", DataType::Int64, true),
        Field::new("X", DataType::Float64, true),
        Field::new("D", DataType::Date32, true),
        Field::new("T", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "Z",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("B", DataType::Boolean, true),
        Field::new("S", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::Int64Array::from(vec![Some(i64::MAX), None])),
            Arc::new(arrow::array::Float64Array::from(vec![
                Some(3.0),
                Some(-1e-310),
            ])),
            Arc::new(arrow::array::Date32Array::from(vec![Some(19_000), None])),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![
                Some(1),
                Some(-1),
            ])),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![
                    None,
                    Some(1_700_000_000_000_000),
                ])
                .with_timezone("UTC"),
            ),
            Arc::new(arrow::array::BooleanArray::from(vec![Some(true), None])),
            Arc::new(arrow::array::StringArray::from(vec![Some(""), None])),
        ],
    )
    .unwrap();
    let mut out: Vec<u8> = Vec::new();
    let mut enc = trialport_formats::csv::CsvFormat::csv()
        .encoder(
            &schema,
            &Default::default(),
            &FormatOptions::new(),
            &mut out,
        )
        .unwrap();
    enc.write(&b).unwrap();
    enc.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let back = read_all(&file(dir.path(), "x.csv", &out));
    assert_eq!(back.schema().fields(), schema.fields());
    assert_eq!(back.columns(), b.columns());
}

#[test]
fn inference_samples_then_reports_a_late_mismatch() {
    let mut text = String::from("N\n");
    for i in 0..read::INFER_SAMPLE_ROWS {
        text.push_str(&format!("{i}\n"));
    }
    text.push_str("secret-value\n");
    let dir = tempfile::tempdir().unwrap();
    let p = file(dir.path(), "big.csv", text.as_bytes());
    let e = read::open(&p, None).unwrap().collect().unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::Validation, "type_mismatch")
    );
    assert_eq!(e.field(), Some("N"));
    assert!(!e.message().contains("secret"));
    let ok = read::open_with_schema(
        &p,
        None,
        Arc::new(Schema::new(vec![Field::new("N", DataType::Utf8, true)])),
    )
    .unwrap()
    .collect()
    .unwrap();
    assert_eq!(
        ok.iter().map(|b| b.num_rows()).sum::<usize>(),
        read::INFER_SAMPLE_ROWS + 1
    );
    assert!(ok.iter().all(|b| b.num_rows() <= read::BATCH_SIZE));
}

#[test]
fn single_column_nulls_are_blank_lines_and_bom_crlf_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(dir.path(), "one.csv", b"\xEF\xBB\xBFA\r\nx\r\n\r\n\"\"\r\n");
    let b = read_all(&p);
    assert_eq!(b.schema().field(0).name(), "A");
    let a = b.column(0).as_string::<i32>();
    assert_eq!(a.len(), 3);
    assert!(a.is_valid(0) && a.is_null(1) && a.value(2).is_empty());
}

#[test]
fn tsv_is_read_by_extension_and_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(dir.path(), "ae.tsv", b"A\tB\n1\tx,y\n");
    let b = read_all(&p);
    assert_eq!(b.column(1).as_string::<i32>().value(0), "x,y");
    let q = file(dir.path(), "ae.txt", b"A\tB\n1\tx,y\n");
    assert_eq!(read::open(&q, None).unwrap_err().reason(), "unknown_format");
    let b = read::open(&q, Some("tsv")).unwrap().collect().unwrap();
    assert_eq!(b[0].num_columns(), 2);
    assert_eq!(
        read::open(&q, Some("xpt-ish")).unwrap_err().reason(),
        "unsupported_format"
    );
}

#[test]
fn malformed_and_missing_input_are_reported_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let missing = read::open(&dir.path().join("nope.csv"), None).unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound);
    assert_eq!(missing.field(), Some("path"));
    for (name, content, reason) in [
        ("a.csv", &b"A,B\n\"secret,1\n"[..], "malformed_csv"),
        ("b.csv", b"A,B\nsecret\n", "malformed_csv"),
        ("c.csv", b"A,B\n\"secret\"x,1\n", "malformed_csv"),
        ("d.csv", b"A\nsecret\xff\n", "invalid_utf8"),
        ("e.csv", b"", "malformed_csv"),
        ("f.json", b"{\"A\": \"secret\"}", "malformed_json"),
        ("g.ndjson", b"{\"A\": \"secret\"\n", "malformed_json"),
        ("h.json", b"[{\"A\": \"secret\"},,]", "malformed_json"),
        ("i.parquet", b"secret, not parquet", "malformed_parquet"),
        ("j.arrow", b"ARROW1 secret", "malformed_ipc"),
    ] {
        if name.ends_with(".parquet") && !cfg!(feature = "parquet") {
            continue;
        }
        let p = file(dir.path(), name, content);
        let e = match read::open(&p, None) {
            Err(e) => e,
            Ok(s) => s.collect().unwrap_err(),
        };
        assert_eq!(
            (e.code(), e.reason()),
            (ErrorCode::Validation, reason),
            "{name}: {e}"
        );
        assert!(!e.to_string().contains("secret"), "{name}: {e}");
    }
}

#[test]
fn known_schema_must_match_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(dir.path(), "dm.csv", b"B,A\n1,x\n");
    let schema = Arc::new(Schema::new(vec![
        Field::new("A", DataType::Utf8, true),
        Field::new("B", DataType::Int32, true),
    ]));
    let b = read::open_with_schema(&p, None, schema.clone())
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(
        b[0].column(1).data_type(),
        &DataType::Int32,
        "columns are matched by name"
    );
    let wrong = Arc::new(Schema::new(vec![Field::new("C", DataType::Utf8, true)]));
    let e = read::open_with_schema(&p, None, wrong).unwrap_err();
    assert_eq!(
        (e.reason(), e.field()),
        ("schema_mismatch", Some("columns"))
    );
    let q = file(dir.path(), "dm2.csv", b"A,B\nx,9999999999\n");
    let e = read::open_with_schema(&q, None, schema)
        .unwrap()
        .collect()
        .unwrap_err();
    assert_eq!((e.reason(), e.field()), ("type_mismatch", Some("B")));
}

#[test]
fn json_arrays_stream_and_infer() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(
        dir.path(),
        "vs.json",
        br#"[
  {
    "USUBJID": "S1",
    "VSSTRESN": 120.5,
    "VSSEQ": 1,
    "TEXT": "a,] \"b\""
  },
  {"USUBJID": "S2", "VSSTRESN": null, "VSSEQ": 2, "TEXT": null}
]
"#,
    );
    let b = read_all(&p);
    assert_eq!(
        types(&b),
        [
            DataType::Utf8,
            DataType::Float64,
            DataType::Int64,
            DataType::Utf8
        ]
    );
    assert_eq!(b.num_rows(), 2);
    assert_eq!(b.column(3).as_string::<i32>().value(0), "a,] \"b\"");
    assert!(b.column(1).is_null(1));
    let q = file(
        dir.path(),
        "vs.ndjson",
        b"{\"A\":1}\n\n{\"A\":2,\"B\":\"x\"}\n",
    );
    let b = read_all(&q);
    assert_eq!(types(&b), [DataType::Int64, DataType::Utf8]);
    assert_eq!(b.num_rows(), 2);
}

#[test]
fn metadata_document_beside_the_file_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let p = file(dir.path(), "dm.csv", b"USUBJID,AGE\nS1,30\n");
    file(
        dir.path(),
        "dm.meta.json",
        br#"{"name":"DM","label":"Demographics","columns":[{"name":"USUBJID","label":"Subject","privacy":"subject_id"}]}"#,
    );
    let s = read::open(&p, None).unwrap();
    let meta = s.meta();
    assert_eq!(meta.name, "DM");
    assert_eq!(meta.label.as_deref(), Some("Demographics"));
    assert_eq!(
        meta.column("USUBJID").unwrap().privacy,
        trialport_core::meta::PrivacyClass::SubjectId
    );
    file(
        dir.path(),
        "dm.meta.json",
        br#"{"columns":[{"name":"NOPE"}]}"#,
    );
    assert_eq!(read::open(&p, None).unwrap_err().reason(), "unknown_column");
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const ALPHABET: &[u8] = b",\"\n\r\t a1-:T.e9Z+[]{}\\\xff\xc3\xa9";
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new(
            "b",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("c", DataType::Date32, true),
        Field::new("d", DataType::Decimal128(10, 2), true),
    ]));
    let dir = tempfile::tempdir().unwrap();
    for i in 0..400 {
        let len = (next() % 60) as usize;
        let mut body: Vec<u8> = match i % 3 {
            0 => b"a,b,c,d\n".to_vec(),
            1 => b"[".to_vec(),
            _ => Vec::new(),
        };
        body.extend((0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]));
        for ext in ["csv", "tsv", "json", "ndjson", "arrow"] {
            let p = file(dir.path(), &format!("f{i}.{ext}"), &body);
            if let Ok(s) = read::open(&p, None) {
                let _ = s.collect();
            }
            if let Ok(s) = read::open_with_schema(&p, None, schema.clone()) {
                let _ = s.collect();
            }
        }
    }
}

#[test]
fn damaged_binary_files_are_errors_not_panics() {
    use trialport_core::format::{Format, FormatOptions};
    let schema = Arc::new(Schema::new(vec![
        Field::new("N", DataType::Int64, true),
        Field::new("S", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::Int64Array::from_iter((0..300).map(Some))),
            Arc::new(arrow::array::StringArray::from_iter_values(
                (0..300).map(|i| format!("value {i}")),
            )),
        ],
    )
    .unwrap();
    let formats: Vec<(&str, Box<dyn Format>)> = vec![
        ("arrow", Box::new(trialport_formats::ipc::ArrowIpcFormat)),
        #[cfg(feature = "parquet")]
        (
            "parquet",
            Box::new(trialport_formats::parquet::ParquetFormat),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (ext, f) in formats {
        let mut good: Vec<u8> = Vec::new();
        let mut enc = f
            .encoder(
                &schema,
                &Default::default(),
                &FormatOptions::new(),
                &mut good,
            )
            .unwrap();
        enc.write(&b).unwrap();
        enc.write(&b).unwrap();
        enc.finish().unwrap();
        for i in 0..300 {
            let mut bad = good.clone();
            match i % 3 {
                0 => bad.truncate((next() % good.len() as u64) as usize),
                1 => {
                    for _ in 0..4 {
                        let at = (next() % bad.len() as u64) as usize;
                        bad[at] = next() as u8;
                    }
                }
                _ => {
                    let at = (next() % (bad.len() as u64 - 4)) as usize;
                    bad[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
                }
            }
            let p = file(dir.path(), &format!("d{i}.{ext}"), &bad);
            if let Ok(s) = read::open(&p, None) {
                let _ = s.collect();
            }
        }
    }
}
