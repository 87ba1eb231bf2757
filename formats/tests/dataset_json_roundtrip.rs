//! Dataset-JSON written from generated tables and read back: every Arrow type the writer maps, awkward values
//! (nulls, negative zero, the smallest and largest doubles, escapes, 200-byte strings, the calendar's ends), the
//! three forms, the spool, option `records`, the attribute order, determinism, what the writer refuses, and the
//! readers that find Dataset-JSON by content (`read::open`, the directory source).
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, ListArray, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use std::io::Read;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_core::source::DataSource;
use trialport_core::ErrorCode;
use trialport_formats::dataset_json::{self, DatasetJsonFormat};

fn write(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    meta: &DatasetMeta,
    options: &FormatOptions,
) -> trialport_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = DatasetJsonFormat.encoder(schema, meta, options, &mut out)?;
        for b in batches {
            enc.write(b)?;
        }
        let summary = enc.finish()?;
        assert_eq!(
            summary.rows,
            batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
        );
    }
    Ok(out)
}

fn read(bytes: Vec<u8>) -> (SchemaRef, RecordBatch) {
    let stream = dataset_json::read_dataset_json_from(std::io::Cursor::new(bytes)).unwrap();
    let schema = stream.schema().clone();
    let batches = stream.collect().unwrap();
    assert!(batches.iter().all(|b| b.num_rows() <= 8192));
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    (schema, all)
}

fn named(name: &str) -> DatasetMeta {
    DatasetMeta {
        name: name.into(),
        ..DatasetMeta::default()
    }
}

const ROWS: usize = 20_000;

/// A table with every mapped type and the awkward values, in three batches of unequal size.
fn generated() -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("TEXT", DataType::Utf8, true),
        Field::new("INT", DataType::Int64, true),
        Field::new("SMALL", DataType::Int32, true),
        Field::new("NUM", DataType::Float64, true),
        Field::new("FLAG", DataType::Boolean, true),
        Field::new("DAY", DataType::Date32, true),
        Field::new(
            "STAMP",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("CLOCK", DataType::Time64(TimeUnit::Microsecond), true),
    ]));
    let special_text = [
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "line\nbreak\ttab\r\u{1}\u{1f}",
        "アプリケーションサイトの紅斑 é 😀",
        &"X".repeat(200),
    ];
    let special_num = [
        0.0,
        -0.0,
        5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        -f64::MAX,
        0.1,
        1.0 / 3.0,
        25.1,
        1e-7,
        123_456_789.123_456_78,
        9_007_199_254_740_993.0,
    ];
    let text: StringArray = (0..ROWS)
        .map(|i| (i % 7 != 3).then(|| format!("{}{}", special_text[i % 6], i % 11)))
        .collect();
    let int: Int64Array = (0..ROWS)
        .map(|i| match i % 5 {
            0 => None,
            1 => Some(i64::MIN),
            2 => Some(i64::MAX),
            _ => Some(i as i64 - 10_000),
        })
        .collect();
    let small: Int32Array = (0..ROWS).map(|i| Some(i as i32 * -3)).collect();
    let num: Float64Array = (0..ROWS)
        .map(|i| {
            (i % 13 != 0)
                .then(|| special_num[i % special_num.len()] * if i % 2 == 0 { 1.0 } else { -1.0 })
        })
        .collect();
    let flag: BooleanArray = (0..ROWS)
        .map(|i| (i % 3 != 0).then_some(i % 2 == 0))
        .collect();
    // 0000-01-01 is day -719528, 9999-12-31 is day 2932896.
    let day: Date32Array = (0..ROWS)
        .map(|i| match i % 4 {
            0 => Some(-719_528),
            1 => Some(2_932_896),
            2 => None,
            _ => Some(i as i32 * 3 - 20_000),
        })
        .collect();
    let stamp: TimestampMicrosecondArray = (0..ROWS)
        .map(|i| match i % 3 {
            0 => Some(-1),
            1 => Some(1_700_000_000_123_456 + i as i64),
            _ => Some((i as i64) * 86_400_000_000),
        })
        .collect();
    let clock: Time64MicrosecondArray = (0..ROWS)
        .map(|i| (i % 9 != 0).then(|| (i as i64 * 4_321_987) % 86_400_000_000))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(text),
        Arc::new(int),
        Arc::new(small),
        Arc::new(num),
        Arc::new(flag),
        Arc::new(day),
        Arc::new(stamp),
        Arc::new(clock),
    ];
    let all = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let batches = vec![
        all.slice(0, 1),
        all.slice(1, 12_000),
        all.slice(12_001, ROWS - 12_001),
    ];
    (schema, batches)
}

#[test]
fn a_generated_table_reads_back_exactly_in_every_form() {
    let (schema, batches) = generated();
    let original = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let mut outputs = Vec::new();
    for form in ["json", "ndjson", "dsjc"] {
        let bytes = write(
            &schema,
            &batches,
            &named("GEN"),
            &FormatOptions::new().with("form", form),
        )
        .unwrap();
        let (back_schema, back) = read(bytes);
        assert_eq!(back.num_rows(), ROWS, "{form}");
        assert_eq!(DatasetMeta::from_schema(&back_schema).name, "GEN");
        for (j, field) in schema.fields().iter().enumerate() {
            let (a, b) = (original.column(j), back.column(j));
            // Int32 is read back as Int64, the integer type of Dataset-JSON.
            let a = match field.data_type() {
                DataType::Int32 => arrow::compute::cast(a, &DataType::Int64).unwrap(),
                _ => a.clone(),
            };
            assert_eq!(b.data_type(), a.data_type(), "{form} {}", field.name());
            if field.name() == "NUM" {
                // Bit for bit: negative zero and the extremes survive.
                let (x, y) = (
                    a.as_primitive::<Float64Type>(),
                    b.as_primitive::<Float64Type>(),
                );
                for i in 0..ROWS {
                    assert_eq!(x.is_null(i), y.is_null(i), "{form} NUM row {i}");
                    assert_eq!(
                        x.value(i).to_bits(),
                        y.value(i).to_bits(),
                        "{form} NUM row {i}"
                    );
                }
            } else {
                assert_eq!(&a, b, "{form} {}", field.name());
            }
        }
        outputs.push(back);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn the_spool_and_option_records_give_the_same_bytes() {
    // About 12 MB of rows: past the 8 MiB the spool keeps in memory, so it goes through its temporary file.
    let schema = Arc::new(Schema::new(vec![
        Field::new("ID", DataType::Int64, false),
        Field::new("NOTE", DataType::Utf8, false),
    ]));
    let batches: Vec<RecordBatch> = (0..6)
        .map(|k| {
            let ids: Int64Array = (0..10_000).map(|i| Some(k * 10_000 + i)).collect();
            let notes: StringArray = (0..10_000)
                .map(|i| Some(format!("{:0>200}", k * 10_000 + i)))
                .collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(notes)]).unwrap()
        })
        .collect();
    for form in ["json", "ndjson", "dsjc"] {
        // Level 1 keeps the debug-build test quick; the level does not change what is spooled.
        let o = FormatOptions::new()
            .with("form", form)
            .with("compression_level", "1");
        let spooled = write(&schema, &batches, &named("BIG"), &o).unwrap();
        let direct = write(
            &schema,
            &batches,
            &named("BIG"),
            &o.clone().with("records", "60000"),
        )
        .unwrap();
        assert!(spooled == direct, "{form}");
        let (_, back) = read(spooled);
        assert_eq!(back.num_rows(), 60_000);
    }
    // A wrong count fails: too few rows at finish, too many at the batch that passes it.
    let e = write(
        &schema,
        &batches,
        &named("BIG"),
        &FormatOptions::new().with("records", "60001"),
    )
    .unwrap_err();
    assert_eq!(
        (e.reason(), e.details()["rows"].as_u64()),
        ("records_mismatch", Some(60_000))
    );
    let e = write(
        &schema,
        &batches,
        &named("BIG"),
        &FormatOptions::new().with("records", "15000"),
    )
    .unwrap_err();
    assert_eq!(e.reason(), "records_mismatch");
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn attributes_follow_the_standard_order_and_output_is_reproducible() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Float64, true),
        Field::new("TRTSDT", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["S-1", "S-2"])),
            Arc::new(Float64Array::from(vec![Some(54.0), None])),
            Arc::new(Float64Array::from(vec![Some(19_725.0), Some(f64::NAN)])),
        ],
    )
    .unwrap();
    let meta = DatasetMeta::from_json(
        r#"{"name":"ADSL","label":"Subject-Level Analysis","columns":[
            {"name":"USUBJID","label":"Unique Subject Identifier","length":11,"keySequence":1},
            {"name":"AGE","label":"Age","dataType":"integer"},
            {"name":"TRTSDT","label":"Date of First Exposure to Treatment","displayFormat":"DATE9."}]}"#,
    )
    .unwrap();
    let options = FormatOptions::new()
        .with("created", "2024-11-11T15:09:13")
        .with("db_last_modified", "2022-04-16T20:09:03")
        .with("file_oid", "www.example.org/adsl")
        .with("originator", "trialport tests")
        .with("source_system", "trialport")
        .with("source_system_version", "0.1.0")
        .with("study_oid", "CDISCPILOT01")
        .with("metadata_version_oid", "MDV.1")
        .with("metadata_ref", "define.xml");
    let bytes = write(&schema, std::slice::from_ref(&batch), &meta, &options).unwrap();
    let again = write(&schema, std::slice::from_ref(&batch), &meta, &options).unwrap();
    assert!(bytes == again);
    let text = text_of(&bytes);
    // The whole file, as the standard lays it out: compact, one row per line.
    assert_eq!(
        text,
        concat!(
            r#"{"datasetJSONCreationDateTime":"2024-11-11T15:09:13","datasetJSONVersion":"1.1.0","#,
            r#""fileOID":"www.example.org/adsl","dbLastModifiedDateTime":"2022-04-16T20:09:03","#,
            r#""originator":"trialport tests","sourceSystem":{"name":"trialport","version":"0.1.0"},"#,
            r#""studyOID":"CDISCPILOT01","metaDataVersionOID":"MDV.1","metaDataRef":"define.xml","#,
            r#""itemGroupOID":"IG.ADSL","records":2,"name":"ADSL","label":"Subject-Level Analysis","#,
            r#""columns":[{"itemOID":"IT.ADSL.USUBJID","name":"USUBJID","label":"Unique Subject Identifier","#,
            r#""dataType":"string","length":11,"keySequence":1},"#,
            r#"{"itemOID":"IT.ADSL.AGE","name":"AGE","label":"Age","dataType":"integer"},"#,
            r#"{"itemOID":"IT.ADSL.TRTSDT","name":"TRTSDT","label":"Date of First Exposure to Treatment","#,
            r#""dataType":"date","targetDataType":"integer","displayFormat":"DATE9."}],"rows":["#,
            "\n",
            r#"["S-1",54,"2014-01-02"],"#,
            "\n",
            r#"["S-2",null,null]"#,
            "\n]}\n"
        )
    );
    // Defaults: the creation time is never the clock's.
    let plain = write(&schema, &[batch], &meta, &FormatOptions::new()).unwrap();
    let v: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(v["datasetJSONCreationDateTime"], "1960-01-01T00:00:00");
    assert!(v.get("dbLastModifiedDateTime").is_none());
    assert!(v.get("sourceSystem").is_none());
}

#[test]
fn sas_numbers_and_arrow_types_become_iso_text() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("D", DataType::Float64, true),
        Field::new("DT", DataType::Float64, true),
        Field::new("T", DataType::Float64, true),
        Field::new("I", DataType::Int64, true),
        Field::new(
            "MS",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("DEC", DataType::Decimal128(10, 3), true),
        Field::new(
            "DICT",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    let dict: arrow::array::DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(vec![
                Some(0.0),
                Some(19_725.0),
                Some(-3653.0),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(0.0),
                Some(1_704_196_800.5),
                None,
            ])),
            Arc::new(Float64Array::from(vec![
                Some(30_600.0),
                Some(0.25),
                Some(86_399.0),
            ])),
            Arc::new(Int64Array::from(vec![Some(0), Some(19_725), None])),
            Arc::new(
                TimestampMillisecondArray::from(vec![Some(0), Some(1_500), Some(-1)])
                    .with_timezone("UTC"),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(12_345), Some(-5), None])
                    .with_precision_and_scale(10, 3)
                    .unwrap(),
            ),
            Arc::new(dict),
        ],
    )
    .unwrap();
    let meta = DatasetMeta {
        name: "X".into(),
        columns: vec![
            ColumnMeta {
                name: "D".into(),
                display_format: Some("DATE9.".into()),
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "DT".into(),
                display_format: Some("E8601DT19.".into()),
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "T".into(),
                display_format: Some("TIME8.".into()),
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "I".into(),
                data_type: Some("date".into()),
                ..ColumnMeta::default()
            },
        ],
        ..DatasetMeta::default()
    };
    let bytes = write(
        &schema,
        &[batch],
        &meta,
        &FormatOptions::new().with("form", "ndjson"),
    )
    .unwrap();
    let text = text_of(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let head: Value = serde_json::from_str(lines[0]).unwrap();
    let types: Vec<(String, Option<String>)> = head["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["dataType"].as_str().unwrap().to_string(),
                c["targetDataType"].as_str().map(str::to_string),
            )
        })
        .collect();
    let t = |d: &str, t: Option<&str>| (d.to_string(), t.map(str::to_string));
    assert_eq!(
        types,
        vec![
            t("date", Some("integer")),
            t("datetime", Some("integer")),
            t("time", Some("integer")),
            t("date", Some("integer")),
            t("datetime", Some("integer")),
            t("decimal", Some("decimal")),
            t("string", None),
        ]
    );
    assert_eq!(
        &lines[1..],
        &[
            r#"["1960-01-01","1960-01-01T00:00:00","08:30:00","1960-01-01","1970-01-01T00:00:00Z","12.345","a"]"#,
            r#"["2014-01-02","2014-01-01T12:00:00.5","00:00:00.25","2014-01-02","1970-01-01T00:00:01.5Z","-0.005","b"]"#,
            r#"["1949-12-31",null,"23:59:59",null,"1969-12-31T23:59:59.999Z",null,"a"]"#,
        ]
    );
    // Read back, the ISO values with target integer are Arrow dates, timestamps and times again.
    let (back_schema, back) = read(bytes);
    assert_eq!(back_schema.field(0).data_type(), &DataType::Date32);
    assert_eq!(
        back_schema.field(4).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        back_schema.field(2).data_type(),
        &DataType::Time64(TimeUnit::Microsecond)
    );
    assert_eq!(back_schema.field(5).data_type(), &DataType::Utf8);
    let d = back
        .column(0)
        .as_any()
        .downcast_ref::<Date32Array>()
        .unwrap();
    assert_eq!(d.value(1), 19_725 - 3_653);
    let ts = back
        .column(4)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(ts.value(2), -1_000);
}

fn fails(
    schema: &SchemaRef,
    batch: RecordBatch,
    meta: DatasetMeta,
    options: FormatOptions,
) -> trialport_core::Error {
    let e = write(schema, &[batch], &meta, &options).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Validation, "{e:?}");
    e
}

#[test]
fn the_writer_refuses_what_it_cannot_represent() {
    let f = |t: DataType| Arc::new(Schema::new(vec![Field::new("A", t, true)]));
    let floats = f(DataType::Float64);
    let batch = |v: Vec<Option<f64>>| {
        RecordBatch::try_new(floats.clone(), vec![Arc::new(Float64Array::from(v))]).unwrap()
    };
    let col = |data_type: &str| DatasetMeta {
        name: "X".into(),
        columns: vec![ColumnMeta {
            name: "A".into(),
            data_type: Some(data_type.into()),
            ..ColumnMeta::default()
        }],
        ..DatasetMeta::default()
    };
    let e = fails(
        &floats,
        batch(vec![Some(1.0), Some(f64::INFINITY)]),
        named("X"),
        FormatOptions::new(),
    );
    assert_eq!(
        (e.reason(), e.field(), e.details()["row"].as_u64()),
        ("unrepresentable_value", Some("A"), Some(1))
    );
    let e = fails(
        &floats,
        batch(vec![Some(1.5)]),
        col("integer"),
        FormatOptions::new(),
    );
    assert_eq!(
        (e.reason(), e.field()),
        ("unrepresentable_value", Some("A"))
    );
    let e = fails(
        &floats,
        batch(vec![Some(1.5)]),
        col("date"),
        FormatOptions::new(),
    );
    assert_eq!(e.reason(), "unrepresentable_value");
    let e = fails(
        &floats,
        batch(vec![Some(1e12)]),
        col("date"),
        FormatOptions::new(),
    );
    assert_eq!(e.reason(), "unrepresentable_value");
    let e = fails(
        &floats,
        batch(vec![Some(1.0)]),
        col("string"),
        FormatOptions::new(),
    );
    assert_eq!(
        (e.reason(), e.field()),
        ("incompatible_data_type", Some("A"))
    );
    let e = fails(
        &floats,
        batch(vec![Some(1.0)]),
        col("number"),
        FormatOptions::new(),
    );
    assert_eq!(e.reason(), "unknown_data_type");
    let e = fails(
        &floats,
        batch(vec![Some(1.0)]),
        DatasetMeta::default(),
        FormatOptions::new(),
    );
    assert_eq!(e.reason(), "missing_dataset_name");
    let e = fails(
        &floats,
        batch(vec![Some(1.0)]),
        named("X"),
        FormatOptions::new()
            .with("created", "2020-01-01T00:00:00")
            .with("db_last_modified", "2021-01-01T00:00:00"),
    );
    assert_eq!(
        (e.reason(), e.field()),
        ("invalid_option", Some("options.db_last_modified"))
    );
    let e = fails(
        &floats,
        batch(vec![Some(1.0)]),
        named("X"),
        FormatOptions::new().with("source_system", "x"),
    );
    assert_eq!(e.reason(), "invalid_option");
    // Option `dataset` names a dataset whose metadata has no name.
    assert!(write(
        &floats,
        &[batch(vec![Some(1.0)])],
        &DatasetMeta::default(),
        &FormatOptions::new().with("dataset", "X")
    )
    .is_ok());

    let lists = f(DataType::List(Arc::new(Field::new(
        "item",
        DataType::Int32,
        true,
    ))));
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
    let e = fails(
        &lists,
        RecordBatch::try_new(lists.clone(), vec![Arc::new(list)]).unwrap(),
        named("X"),
        FormatOptions::new(),
    );
    assert_eq!((e.reason(), e.field()), ("unsupported_type", Some("A")));

    let twice = Arc::new(Schema::new(vec![
        Field::new("A", DataType::Int64, true),
        Field::new("A", DataType::Int64, true),
    ]));
    let b = RecordBatch::try_new(
        twice.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![1])),
        ],
    )
    .unwrap();
    assert_eq!(
        fails(&twice, b, named("X"), FormatOptions::new()).reason(),
        "duplicate_column"
    );

    // NaN is the missing value, as in XPT.
    let bytes = write(
        &floats,
        &[batch(vec![Some(f64::NAN)])],
        &named("X"),
        &FormatOptions::new().with("form", "ndjson"),
    )
    .unwrap();
    assert!(text_of(&bytes).ends_with("\n[null]\n"));
}

#[test]
fn read_open_and_the_directory_source_find_dataset_json_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("S1");
    std::fs::create_dir_all(&study).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["S-1", "S-2"])),
            Arc::new(Int64Array::from(vec![Some(34), None])),
        ],
    )
    .unwrap();
    let meta = |name: &str| {
        DatasetMeta::from_json(&format!(
            r#"{{"name":"{name}","label":"{name} label","columns":[{{"name":"AGE","label":"Age","length":3}}]}}"#
        ))
        .unwrap()
    };
    for (file, form) in [
        ("DM.json", "json"),
        ("AE.ndjson", "ndjson"),
        ("VS.dsjc", "dsjc"),
    ] {
        let name = file.split('.').next().unwrap();
        let bytes = write(
            &schema,
            std::slice::from_ref(&batch),
            &meta(name),
            &FormatOptions::new().with("form", form),
        )
        .unwrap();
        std::fs::write(study.join(file), bytes).unwrap();
    }
    // Plain JSON and NDJSON records beside them are still plain.
    std::fs::write(study.join("LB.json"), r#"[{"A":1},{"A":2}]"#).unwrap();
    std::fs::write(study.join("EX.ndjson"), "{\"A\":1}\n{\"A\":2}\n").unwrap();
    // A sidecar over Dataset-JSON wins.
    std::fs::write(study.join("AE.meta.json"), r#"{"label":"Adverse Events"}"#).unwrap();

    for (file, expect) in [
        ("DM.json", true),
        ("AE.ndjson", true),
        ("VS.dsjc", true),
        ("LB.json", false),
        ("EX.ndjson", false),
    ] {
        assert_eq!(
            dataset_json::is_dataset_json(&study.join(file)).unwrap(),
            expect,
            "{file}"
        );
    }
    let stream = trialport_formats::read::open(&study.join("LB.json"), None).unwrap();
    assert_eq!(stream.collect().unwrap()[0].num_rows(), 2);

    let source = trialport_formats::source::DirectorySource::new(dir.path());
    let infos = source.datasets("S1").unwrap();
    let labels: Vec<(String, Option<String>)> = infos
        .iter()
        .map(|d| (d.name.clone(), d.label.clone()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("AE".into(), Some("Adverse Events".into())),
            ("DM".into(), Some("DM label".into())),
            ("EX".into(), None),
            ("LB".into(), None),
            ("VS".into(), Some("VS label".into())),
        ]
    );
    for name in ["DM", "AE", "VS"] {
        let stream = source.scan("S1", name).unwrap();
        let m = stream.meta();
        let age = m.column("AGE").unwrap();
        assert_eq!(
            (age.label.as_deref(), age.length, age.data_type.as_deref()),
            (Some("Age"), Some(3), Some("integer"))
        );
        assert_eq!(
            age.item_oid.as_deref(),
            Some(format!("IT.{name}.AGE").as_str())
        );
        let batches = stream.collect().unwrap();
        assert_eq!(batches[0].column(1), batch.column(1));
    }
    // `open` with the format named reads a `.json` as Dataset-JSON too.
    let s = trialport_formats::read::open(&study.join("VS.dsjc"), Some("dataset-json")).unwrap();
    assert_eq!(s.meta().label.as_deref(), Some("VS label"));
}

#[test]
fn dsjc_is_zlib_of_compact_ndjson_at_the_chosen_level() {
    let schema = Arc::new(Schema::new(vec![Field::new("A", DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["x"; 1000]))],
    )
    .unwrap();
    let nd = write(
        &schema,
        std::slice::from_ref(&batch),
        &named("X"),
        &FormatOptions::new().with("form", "ndjson"),
    )
    .unwrap();
    for level in ["1", "9"] {
        let z = write(
            &schema,
            std::slice::from_ref(&batch),
            &named("X"),
            &FormatOptions::new()
                .with("form", "dsjc")
                .with("compression_level", level),
        )
        .unwrap();
        assert_eq!(z[0], 0x78);
        assert!(z.len() < nd.len() / 10);
        let mut back = Vec::new();
        flate2::read::ZlibDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == nd);
    }
    assert!(!text_of(&nd).contains(": ") && !text_of(&nd).contains(", "));
}

/// The engine names each artifact after the form the options choose: `dm.dsjc` is compressed, `dm.ndjson` is
/// NDJSON, and both read back to the same rows.
#[test]
fn engine_artifacts_take_the_extension_of_their_form() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::StringArray::from(vec!["S1-001", "S1-002"])),
            Arc::new(arrow::array::Float64Array::from(vec![Some(34.0), None])),
        ],
    )
    .unwrap();
    let source = Arc::new(trialport_core::source::MemorySource::new());
    source.add("S1", "DM", schema, vec![batch]).unwrap();
    let sink = Arc::new(trialport_core::sink::MemorySink::new());
    let engine = trialport_core::engine::Engine::builder()
        .formats(trialport_formats::default_formats())
        .source(source)
        .sink(sink.clone())
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    let mut rows = Vec::new();
    for (form, name, media) in [
        (
            "dsjc",
            "dm.dsjc",
            "application/vnd.cdisc.dataset-json.compressed",
        ),
        ("ndjson", "dm.ndjson", "application/x-ndjson"),
        ("json", "dm.json", "application/json"),
    ] {
        let mut req = trialport_core::request::ExportRequest::data("S1", &["DM"], "dataset-json");
        req.options = FormatOptions::new().with("form", form);
        let job = engine.export_data(&admin, req).unwrap();
        let job = engine
            .wait(&admin, job.id, Some(std::time::Duration::from_secs(30)))
            .unwrap();
        assert_eq!(job.artifacts[0].name, name, "{:?}", job.error);
        assert_eq!(job.artifacts[0].media_type, media);
        let bytes = sink.get(&job.artifact_path(name)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let stream = trialport_formats::read::open(&path, None).unwrap();
        let batches: Vec<RecordBatch> = stream.collect().unwrap();
        rows.push(arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap());
    }
    for r in &rows[1..] {
        assert_eq!(r.columns(), rows[0].columns());
    }
}
