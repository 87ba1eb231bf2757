//! Writing and reading XPT: Arrow types, measured lengths, v8 long names and labels, determinism, special missing
//! values, several members, trailing padding, and the reader's errors.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, DictionaryArray, Float32Array,
    Float64Array, Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
    Time64MicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int8Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_core::ErrorCode;
use trialport_formats::xpt::{
    self, ibm, read_xpt_from, XptDates, XptFormat, XptReadOptions, XptVersion, KEY_INFORMAT,
};

fn encode(
    schema: &SchemaRef,
    meta: &DatasetMeta,
    options: &FormatOptions,
    batches: &[RecordBatch],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = XptFormat.encoder(schema, meta, options, &mut out).unwrap();
    for b in batches {
        enc.write(b).unwrap();
    }
    enc.finish().unwrap();
    out
}

fn decode_with(bytes: &[u8], options: &XptReadOptions) -> (SchemaRef, RecordBatch) {
    let stream = read_xpt_from(Cursor::new(bytes.to_vec()), options).unwrap();
    let schema = stream.schema().clone();
    let batches = stream.collect().unwrap();
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    (schema, all)
}

fn decode(bytes: &[u8]) -> (SchemaRef, RecordBatch) {
    decode_with(bytes, &XptReadOptions::default())
}

fn named(name: &str) -> DatasetMeta {
    DatasetMeta {
        name: name.into(),
        ..DatasetMeta::default()
    }
}

fn f64s(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    b.column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn strs(b: &RecordBatch, name: &str) -> Vec<String> {
    let c = b.column_by_name(name).unwrap().as_string::<i32>();
    c.iter().map(|s| s.unwrap().to_string()).collect()
}

#[test]
fn arrow_types_become_sas_numbers_and_text() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("I32", DataType::Int32, true),
        Field::new("I64", DataType::Int64, true),
        Field::new("F32", DataType::Float32, true),
        Field::new("F64", DataType::Float64, true),
        Field::new("FLAG", DataType::Boolean, true),
        Field::new("DT", DataType::Date32, true),
        Field::new(
            "DTM",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("TM", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("S", DataType::Utf8, true),
        Field::new("L", DataType::LargeUtf8, true),
        Field::new("V", DataType::Utf8View, true),
        Field::new(
            "D",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    let dict: DictionaryArray<Int8Type> = vec![Some("PLACEBO"), None, Some("DRUG")]
        .into_iter()
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![Some(-7), None, Some(i32::MAX)])),
        Arc::new(Int64Array::from(vec![
            Some(1 << 53),
            Some(-(1 << 53)),
            None,
        ])),
        Arc::new(Float32Array::from(vec![Some(0.5), Some(-1.25), None])),
        Arc::new(Float64Array::from(vec![Some(25.1), Some(f64::NAN), None])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        Arc::new(Date32Array::from(vec![Some(16_072), Some(0), None])),
        Arc::new(
            TimestampMillisecondArray::from(vec![Some(1_388_651_400_000), Some(-1), None])
                .with_timezone("UTC"),
        ),
        Arc::new(Time64MicrosecondArray::from(vec![
            Some(30_600_000_000),
            Some(1_500_000),
            None,
        ])),
        Arc::new(StringArray::from(vec![Some("a"), Some(""), None])),
        Arc::new(LargeStringArray::from(vec![Some("large"), None, Some("x")])),
        Arc::new(StringViewArray::from(vec![Some("view"), Some("v"), None])),
        Arc::new(dict),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let bytes = encode(&schema, &named("TYPES"), &FormatOptions::new(), &[batch]);
    assert_eq!(bytes.len() % 80, 0);
    // The SAS numbers as stored (read back as Arrow temporal types by default: tests/xpt_dates.rs).
    let numbers = XptReadOptions {
        dates: XptDates::Number,
        ..XptReadOptions::default()
    };
    let (rs, b) = decode_with(&bytes, &numbers);
    assert_eq!(b.num_rows(), 3);
    assert_eq!(
        f64s(&b, "I32"),
        [Some(-7.0), None, Some(f64::from(i32::MAX))]
    );
    assert_eq!(
        f64s(&b, "I64"),
        [Some(2f64.powi(53)), Some(-(2f64.powi(53))), None]
    );
    assert_eq!(f64s(&b, "F32"), [Some(0.5), Some(-1.25), None]);
    assert_eq!(f64s(&b, "F64"), [Some(25.1), None, None]);
    assert_eq!(f64s(&b, "FLAG"), [Some(1.0), Some(0.0), None]);
    // 2014-01-02 is SAS date 19725; 1970-01-01 is 3653.
    assert_eq!(f64s(&b, "DT"), [Some(19_725.0), Some(3_653.0), None]);
    assert_eq!(
        f64s(&b, "DTM"),
        [Some(1_704_270_600.0), Some(315_619_199.999), None]
    );
    assert_eq!(f64s(&b, "TM"), [Some(30_600.0), Some(1.5), None]);
    assert_eq!(strs(&b, "S"), ["a", "", ""]);
    assert_eq!(strs(&b, "L"), ["large", "", "x"]);
    assert_eq!(strs(&b, "V"), ["view", "v", ""]);
    assert_eq!(strs(&b, "D"), ["PLACEBO", "", "DRUG"]);
    // Temporal columns get SAS display formats; measured text lengths are the longest value (at least 1).
    let meta = DatasetMeta::from_schema(&rs);
    let fmt = |c: &str| meta.column(c).unwrap().display_format.clone();
    assert_eq!(fmt("DT").as_deref(), Some("DATE9."));
    assert_eq!(fmt("DTM").as_deref(), Some("DATETIME20."));
    assert_eq!(fmt("TM").as_deref(), Some("TIME8."));
    assert_eq!(fmt("F64"), None);
    let len = |c: &str| meta.column(c).unwrap().length;
    assert_eq!(
        (len("S"), len("L"), len("V"), len("D"), len("I32")),
        (Some(1), Some(5), Some(4), Some(7), None)
    );
}

#[test]
fn unsupported_types_and_mismatched_batches_are_refused() {
    let schema = Arc::new(Schema::new(vec![Field::new("B", DataType::Binary, true)]));
    let mut out = Vec::new();
    let err = XptFormat
        .encoder(&schema, &named("T"), &FormatOptions::new(), &mut out)
        .err()
        .unwrap();
    assert_eq!((err.reason(), err.field()), ("unsupported_type", Some("B")));
    let schema = Arc::new(Schema::new(vec![Field::new("A", DataType::Float64, true)]));
    let other = Arc::new(Schema::new(vec![Field::new("A", DataType::Int32, true)]));
    let mut enc = XptFormat
        .encoder(&schema, &named("T"), &FormatOptions::new(), &mut out)
        .unwrap();
    let b = RecordBatch::try_new(other, vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
    assert_eq!(enc.write(&b).unwrap_err().reason(), "schema_mismatch");
}

fn dm() -> (SchemaRef, DatasetMeta, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, true),
        Field::new("AGE", DataType::Float64, true),
        Field::new("RFSTDT", DataType::Float64, true).with_metadata(HashMap::from([(
            KEY_INFORMAT.to_string(),
            "DATE9.".to_string(),
        )])),
    ]));
    let meta = DatasetMeta {
        name: "DM".into(),
        label: Some("Demographics".into()),
        columns: vec![
            ColumnMeta {
                name: "USUBJID".into(),
                label: Some("Unique Subject Identifier".into()),
                length: Some(20),
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "AGE".into(),
                label: Some("Age".into()),
                display_format: Some("8.".into()),
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "RFSTDT".into(),
                display_format: Some("DATE9.".into()),
                ..ColumnMeta::default()
            },
        ],
        ..Default::default()
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                "01-701-1015",
                "01-701-1023",
                "01-701-1028",
            ])),
            Arc::new(Float64Array::from(vec![Some(63.0), None, Some(71.5)])),
            Arc::new(Float64Array::from(vec![19_725.0, 19_726.0, 19_727.0])),
        ],
    )
    .unwrap();
    (schema, meta, batch)
}

#[test]
fn the_header_is_what_sas_writes_with_deterministic_defaults() {
    let (schema, meta, batch) = dm();
    let bytes = encode(
        &schema,
        &meta,
        &FormatOptions::new(),
        std::slice::from_ref(&batch),
    );
    let rec = |i: usize| &bytes[i * 80..(i + 1) * 80];
    assert_eq!(
        rec(1),
        &b"SAS     SAS     SASLIB  9.4     TRIALPRT                        01JAN60:00:00:00"[..]
    );
    assert_eq!(
        rec(2),
        format!("01JAN60:00:00:00{}", " ".repeat(64)).as_bytes()
    );
    assert_eq!(
        rec(5),
        &b"SAS     DM      SASDATA 9.4     TRIALPRT                        01JAN60:00:00:00"[..]
    );
    assert_eq!(
        rec(6),
        format!(
            "01JAN60:00:00:00{}Demographics{}",
            " ".repeat(16),
            " ".repeat(36)
        )
        .as_bytes()
    );
    assert_eq!(
        rec(7),
        &b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000000300000000000000000000  "[..]
    );
    // Three NAMESTRs (420 bytes) fill 5.25 records, 6 with the blanks after them.
    assert!(bytes[8 * 80 + 420..14 * 80].iter().all(|&b| b == b' '));
    assert_eq!(
        rec(14),
        &b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!000000000000000000000000000000  "[..]
    );
    // Observations: 20 + 8 + 8 bytes, back to back, then blanks to a whole record.
    let data = &bytes[15 * 80..];
    assert_eq!(&data[..20], b"01-701-1015         ");
    assert_eq!(&data[20..28], &ibm::to_ibm(63.0).unwrap());
    assert_eq!(&data[36 + 20..36 + 28], &ibm::MISSING);
    assert_eq!(data.len(), 160);
    assert!(data[108..].iter().all(|&b| b == b' '));

    // Explicit header options.
    let o = FormatOptions::new()
        .with("created", "2020-08-21T09:14:29")
        .with("modified", "2021-01-02T03:04:05Z")
        .with("sas_version", "9.4")
        .with("os", "X64_10PR");
    let bytes = encode(&schema, &meta, &o, &[batch]);
    assert_eq!(&bytes[80 + 32..80 + 40], b"X64_10PR");
    assert_eq!(&bytes[80 + 64..160], b"21AUG20:09:14:29");
    assert_eq!(&bytes[160..176], b"02JAN21:03:04:05");
}

#[test]
fn output_is_deterministic_whatever_the_batching() {
    let (schema, meta, batch) = dm();
    let whole = encode(
        &schema,
        &meta,
        &FormatOptions::new(),
        std::slice::from_ref(&batch),
    );
    let again = encode(
        &schema,
        &meta,
        &FormatOptions::new(),
        std::slice::from_ref(&batch),
    );
    assert_eq!(whole, again);
    let split = encode(
        &schema,
        &meta,
        &FormatOptions::new(),
        &[batch.slice(0, 1), batch.slice(1, 0), batch.slice(1, 2)],
    );
    assert_eq!(whole, split);
}

#[test]
fn read_then_write_reproduces_our_own_file() {
    let (schema, meta, batch) = dm();
    let o = FormatOptions::new().with("created", "2024-05-06T07:08:09");
    let bytes = encode(&schema, &meta, &o, &[batch]);
    let (rs, b) = decode(&bytes);
    let m = DatasetMeta::from_schema(&rs);
    assert_eq!(m.name, "DM");
    assert_eq!(m.label.as_deref(), Some("Demographics"));
    assert_eq!(m.column("USUBJID").unwrap().length, Some(20));
    assert_eq!(
        m.column("AGE").unwrap().display_format.as_deref(),
        Some("8.")
    );
    assert_eq!(
        rs.field_with_name("RFSTDT").unwrap().metadata()[KEY_INFORMAT],
        "DATE9."
    );
    assert_eq!(rs.metadata()[xpt::KEY_CREATED], "2024-05-06T07:08:09");
    let again = encode(&rs, &m, &xpt::reproduce_options(&rs), &[b]);
    assert_eq!(again, bytes);
}

#[test]
fn version_8_keeps_long_names_labels_and_formats() {
    let long_label = "A label that is much longer than forty bytes, as v8 allows";
    let schema = Arc::new(Schema::new(vec![
        Field::new("SUBJECT_IDENTIFIER", DataType::Utf8, true),
        Field::new("x", DataType::Float64, true),
        Field::new("LONGTEXT", DataType::Utf8, true),
    ]));
    let meta = DatasetMeta {
        name: "LONG_DATASET_NAME_FOR_V8".into(),
        label: Some("Long v8 member".into()),
        columns: vec![
            ColumnMeta {
                name: "SUBJECT_IDENTIFIER".into(),
                label: Some(long_label.into()),
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "x".into(),
                label: Some("short".into()),
                display_format: Some("LONGFORMATNAME12.3".into()),
                ..ColumnMeta::default()
            },
        ],
        ..Default::default()
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["S-1", "S-2"])),
            Arc::new(Float64Array::from(vec![1.5, 2.5])),
            Arc::new(StringArray::from(vec!["y".repeat(300), "z".into()])),
        ],
    )
    .unwrap();
    let o = FormatOptions::new().with("version", "8");
    let bytes = encode(&schema, &meta, &o, &[batch]);
    assert!(bytes.starts_with(b"HEADER RECORD*******LIBV8   HEADER RECORD!!!!!!!"));
    assert!(bytes
        .windows(48)
        .any(|w| w == b"HEADER RECORD*******LABELV9 HEADER RECORD!!!!!!!"));
    let members = xpt::decode::read_xpt_members_from(Cursor::new(bytes.clone())).unwrap();
    assert_eq!(members[0].name, "LONG_DATASET_NAME_FOR_V8");
    assert_eq!(members[0].version, XptVersion::V8);
    let (rs, b) = decode(&bytes);
    let m = DatasetMeta::from_schema(&rs);
    assert_eq!(m.name, "LONG_DATASET_NAME_FOR_V8");
    let names: Vec<_> = rs.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["SUBJECT_IDENTIFIER", "x", "LONGTEXT"]);
    assert_eq!(
        m.column("SUBJECT_IDENTIFIER").unwrap().label.as_deref(),
        Some(long_label)
    );
    assert_eq!(
        m.column("x").unwrap().display_format.as_deref(),
        Some("LONGFORMATNAME12.3")
    );
    assert_eq!(m.column("LONGTEXT").unwrap().length, Some(300));
    assert_eq!(strs(&b, "LONGTEXT")[0].len(), 300);
    assert_eq!(rs.metadata()[xpt::KEY_VERSION], "8");
    let again = encode(&rs, &m, &xpt::reproduce_options(&rs), &[b]);
    assert_eq!(again, bytes);
}

#[test]
fn special_missing_values_survive_when_asked_for() {
    let schema = Arc::new(Schema::new(vec![Field::new("X", DataType::Float64, true)]));
    let values = vec![
        Some(1.0),
        ibm::special_missing(b'A'),
        ibm::special_missing(b'_'),
        Some(f64::NAN),
        None,
    ];
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(values))]).unwrap();
    let bytes = encode(&schema, &named("T"), &FormatOptions::new(), &[batch]);
    let data = &bytes[bytes.len() - 80..];
    assert_eq!(&data[8..16], &[b'A', 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&data[16..24], &[b'_', 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&data[24..32], &ibm::MISSING);
    assert_eq!(&data[32..40], &ibm::MISSING);
    // By default every missing value is a null.
    let (_, b) = decode(&bytes);
    assert_eq!(f64s(&b, "X"), [Some(1.0), None, None, None, None]);
    // With `special_missing`, the tagged ones are tagged NaNs, and writing them back keeps the bytes.
    let opts = XptReadOptions {
        special_missing: true,
        ..XptReadOptions::default()
    };
    let (rs, b) = decode_with(&bytes, &opts);
    let col = b.column(0).as_primitive::<Float64Type>();
    assert_eq!(ibm::missing_tag(col.value(1)), Some(b'A'));
    assert_eq!(ibm::missing_tag(col.value(2)), Some(b'_'));
    assert!(col.is_null(3) && col.is_null(4));
    let again = encode(
        &rs,
        &DatasetMeta::from_schema(&rs),
        &xpt::reproduce_options(&rs),
        &[b],
    );
    assert_eq!(again, bytes);
}

fn one_text_column(name: &str, values: &[&str], length: u32) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![Field::new("C", DataType::Utf8, true)]));
    let meta = DatasetMeta {
        name: name.into(),
        label: None,
        columns: vec![ColumnMeta {
            name: "C".into(),
            length: Some(length),
            ..ColumnMeta::default()
        }],
        ..Default::default()
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(values.to_vec()))],
    )
    .unwrap();
    encode(&schema, &meta, &FormatOptions::new(), &[batch])
}

#[test]
fn several_members_are_listed_and_chosen_by_name() {
    let a = one_text_column("AA", &["x", "y"], 3);
    let b = one_text_column("BB", &["p", "q", "r"], 90);
    // A two-member library: the second file without its library header.
    let mut both = a.clone();
    both.extend_from_slice(&b[240..]);
    let members = xpt::decode::read_xpt_members_from(Cursor::new(both.clone())).unwrap();
    let got: Vec<_> = members
        .iter()
        .map(|m| (m.name.as_str(), m.observations))
        .collect();
    assert_eq!(got, [("AA", 2), ("BB", 3)]);
    let (_, first) = decode(&both);
    assert_eq!(strs(&first, "C"), ["x", "y"]);
    let opts = XptReadOptions {
        member: Some("bb".into()),
        ..XptReadOptions::default()
    };
    let (s, second) = decode_with(&both, &opts);
    assert_eq!(DatasetMeta::from_schema(&s).name, "BB");
    assert_eq!(strs(&second, "C"), ["p", "q", "r"]);
    let opts = XptReadOptions {
        member: Some("CC".into()),
        ..XptReadOptions::default()
    };
    let err = read_xpt_from(Cursor::new(both), &opts).unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (ErrorCode::NotFound, Some("member"))
    );
}

#[test]
fn trailing_padding_is_not_read_as_observations() {
    // Observations of 3 bytes: 2 rows are 6 bytes, and the 74 blanks of padding could be 24 blank rows.
    let bytes = one_text_column("T", &["x", "y"], 3);
    let (_, b) = decode(&bytes);
    assert_eq!(strs(&b, "C"), ["x", "y"]);
    // A blank row followed by a value is a real row.
    let bytes = one_text_column("T", &["x", "", "y"], 3);
    assert_eq!(strs(&decode(&bytes).1, "C"), ["x", "", "y"]);
    // Known limit: a blank last row of a short observation cannot be told from padding (formats.md §1.6).
    let bytes = one_text_column("T", &["x", ""], 3);
    assert_eq!(strs(&decode(&bytes).1, "C"), ["x"]);
    // With observations of 80 bytes or more, padding never looks like a row: a blank last row is kept.
    let bytes = one_text_column("T", &["x", ""], 90);
    assert_eq!(strs(&decode(&bytes).1, "C"), ["x", ""]);
    // NUL padding (reported of some SAS 9.4 files) is refused unless allowed; then it reads as blank padding.
    let bytes = one_text_column("T", &["x", "y", "z"], 3);
    let mut nul = bytes.clone();
    let n = nul.len();
    nul[n - 71..].fill(0);
    let err = read_xpt_from(Cursor::new(nul.clone()), &XptReadOptions::default())
        .and_then(|s| s.collect())
        .unwrap_err();
    assert_eq!(
        (err.code(), err.reason()),
        (ErrorCode::Validation, "invalid_padding")
    );
    let lenient = XptReadOptions {
        allow_nul_padding: true,
        ..XptReadOptions::default()
    };
    assert_eq!(strs(&decode_with(&nul, &lenient).1, "C"), ["x", "y", "z"]);
    // A file that ends without padding is not whole 80-byte records: truncated.
    let err = read_xpt_from(Cursor::new(bytes[..n - 71].to_vec()), &lenient)
        .and_then(|s| s.collect())
        .unwrap_err();
    assert_eq!(err.reason(), "truncated_file");
    assert_eq!(err.details()["offset"], (n - 71) as u64);
}

#[test]
fn short_numerics_round_trip() {
    let field = Field::new("N", DataType::Float64, true).with_metadata(HashMap::from([(
        xpt::KEY_NUMERIC_LENGTH.to_string(),
        "3".to_string(),
    )]));
    let schema = Arc::new(Schema::new(vec![field]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Float64Array::from(vec![
            Some(8192.0),
            None,
            Some(-0.5),
        ]))],
    )
    .unwrap();
    let bytes = encode(&schema, &named("T"), &FormatOptions::new(), &[batch]);
    let (rs, b) = decode(&bytes);
    assert_eq!(f64s(&b, "N"), [Some(8192.0), None, Some(-0.5)]);
    assert_eq!(rs.field(0).metadata()[xpt::KEY_NUMERIC_LENGTH], "3");
    let again = encode(
        &rs,
        &DatasetMeta::from_schema(&rs),
        &xpt::reproduce_options(&rs),
        &[b],
    );
    assert_eq!(again, bytes);
}

#[test]
fn zero_rows_write_a_header_only() {
    let (schema, meta, _) = dm();
    let bytes = encode(&schema, &meta, &FormatOptions::new(), &[]);
    assert_eq!(bytes.len(), 15 * 80);
    let (rs, b) = decode(&bytes);
    assert_eq!(b.num_rows(), 0);
    assert_eq!(rs.fields().len(), 3);
    // Measured lengths with no rows are 1.
    let schema = Arc::new(Schema::new(vec![Field::new("C", DataType::Utf8, true)]));
    let bytes = encode(&schema, &named("T"), &FormatOptions::new(), &[]);
    assert_eq!(
        DatasetMeta::from_schema(&decode(&bytes).0).columns[0].length,
        Some(1)
    );
}

#[test]
fn what_is_not_an_xpt_file_is_refused() {
    for junk in [&b""[..], b"PK\x03\x04 not a transport file", &[b' '; 400]] {
        let err =
            read_xpt_from(Cursor::new(junk.to_vec()), &XptReadOptions::default()).unwrap_err();
        assert_eq!(
            (err.code(), err.reason()),
            (ErrorCode::Validation, "invalid_xpt")
        );
    }
    let (schema, meta, batch) = dm();
    let bytes = encode(&schema, &meta, &FormatOptions::new(), &[batch]);
    // Cut inside the NAMESTRs.
    let err = read_xpt_from(
        Cursor::new(bytes[..700].to_vec()),
        &XptReadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "invalid_xpt");
    let err = xpt::read_xpt(std::path::Path::new("/nonexistent/dm.xpt")).unwrap_err();
    assert_eq!(
        (err.code(), err.field()),
        (ErrorCode::NotFound, Some("path"))
    );
}

#[test]
fn files_are_read_from_disk_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("ID", DataType::Int64, false),
        Field::new("TXT", DataType::Utf8, false),
    ]));
    let rows = 20_000i64;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("row {i}")),
            )),
        ],
    )
    .unwrap();
    let bytes = encode(&schema, &named("BIG"), &FormatOptions::new(), &[batch]);
    let path = dir.path().join("big.xpt");
    std::fs::write(&path, &bytes).unwrap();
    let stream = xpt::read_xpt(&path).unwrap();
    let batches = stream.collect().unwrap();
    let sizes: Vec<_> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [8192, 8192, 3616]);
    let last = batches[2].column(0).as_primitive::<Float64Type>();
    assert_eq!(last.value(3615), (rows - 1) as f64);
    assert_eq!(
        xpt::read_xpt_members(&path).unwrap()[0].observations,
        rows as u64
    );
}
