//! The `xlsx` dataset encoder: round trips read back with calamine, sheet splits, options, errors, determinism.
#![cfg(feature = "xlsx")]

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int32Array, Int64Array,
    StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use calamine::{Data, Reader, Xlsx};
use std::io::Cursor;
use std::sync::Arc;
use trialport_core::error::ErrorCode;
use trialport_core::format::{Capability, Format, FormatOptions};
use trialport_core::meta::DatasetMeta;
use trialport_formats::xlsx::{XlsxEncoder, XlsxFormat, XlsxOptions};

fn encode(
    schema: &SchemaRef,
    meta: &DatasetMeta,
    options: &FormatOptions,
    batches: &[RecordBatch],
) -> trialport_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = XlsxFormat.encoder(schema, meta, options, &mut out)?;
    for b in batches {
        enc.write(b)?;
    }
    let summary = enc.finish()?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(summary.rows, rows as u64);
    Ok(out)
}

fn open(bytes: &[u8]) -> Xlsx<Cursor<Vec<u8>>> {
    Xlsx::new(Cursor::new(bytes.to_vec())).expect("a readable workbook")
}

fn sheet(bytes: &[u8], name: &str) -> Vec<Vec<Data>> {
    let range = open(bytes).worksheet_range(name).expect("sheet exists");
    let (h, w) = range.get_size();
    (0..h as u32)
        .map(|r| {
            (0..w as u32)
                .map(|c| range.get_value((r, c)).cloned().unwrap_or(Data::Empty))
                .collect()
        })
        .collect()
}

fn num(d: &Data) -> f64 {
    match d {
        Data::Float(v) => *v,
        Data::Int(v) => *v as f64,
        other => panic!("expected a number, got {other:?}"),
    }
}

fn ymd_hms(d: &Data) -> (u16, u8, u8, u8, u8, u8) {
    match d {
        Data::DateTime(dt) => {
            let (y, m, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            (y, m, d, h, mi, s)
        }
        other => panic!("expected a date, got {other:?}"),
    }
}

fn days(y: i32, m: u32, d: u32) -> i32 {
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

fn mixed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("TEXT", DataType::Utf8, true),
        Field::new("INT", DataType::Int64, true),
        Field::new("FLOAT", DataType::Float64, true),
        Field::new("FLAG", DataType::Boolean, true),
        Field::new("DATE", DataType::Date32, true),
        Field::new("TS", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

fn mixed_batch(schema: &SchemaRef, k: i64) -> RecordBatch {
    let ts = |h: i64| 1_700_000_000_000 + h * 3_600_000 + k * 86_400_000;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![
            Some(format!("plain {k}")),
            Some("Zürich — 東京 🚀 \"quoted\" <tag> & more".to_string()),
            Some("=HYPERLINK(\"http://x\")".to_string()),
            None,
            Some("-5".to_string()),
            Some("@SUM(A1)".to_string()),
        ])),
        Arc::new(Int64Array::from(vec![
            Some(k),
            Some(-42),
            Some(1 << 53),
            None,
            Some((1 << 53) + 1),
            Some(-(1 << 53) - 1),
        ])),
        Arc::new(Float64Array::from(vec![
            Some(1.5),
            Some(-0.25),
            None,
            Some(1e-7),
            Some(123_456.789),
            Some(0.1),
        ])),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            Some(false),
            Some(true),
        ])),
        Arc::new(Date32Array::from(vec![
            Some(days(2024, 1, 15)),
            Some(days(1999, 12, 31)),
            None,
            Some(days(1900, 1, 15)),
            Some(days(1800, 6, 1)),
            Some(days(2024, 2, 29)),
        ])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(ts(0)),
            Some(ts(1)),
            Some(ts(2)),
            None,
            Some(ts(3)),
            Some(ts(4)),
        ])),
    ];
    RecordBatch::try_new(schema.clone(), cols).expect("valid batch")
}

#[test]
fn typed_values_round_trip_over_many_batches() {
    let schema = mixed_schema();
    let batches: Vec<RecordBatch> = (0..7).map(|k| mixed_batch(&schema, k)).collect();
    let meta = DatasetMeta {
        name: "LB".into(),
        ..Default::default()
    };
    let bytes = encode(&schema, &meta, &FormatOptions::new(), &batches).expect("encodes");
    assert_eq!(open(&bytes).sheet_names(), vec!["LB".to_string()]);
    let rows = sheet(&bytes, "LB");
    assert_eq!(rows.len(), 1 + 7 * 6);
    let header: Vec<String> = rows[0].iter().map(|d| d.to_string()).collect();
    assert_eq!(header, ["TEXT", "INT", "FLOAT", "FLAG", "DATE", "TS"]);

    for k in 0..7i64 {
        let r = &rows[1 + k as usize * 6..1 + (k as usize + 1) * 6];
        // Strings: non-ASCII kept, formula-looking text neutralised with a leading quote, null empty.
        assert_eq!(r[0][0], Data::String(format!("plain {k}")));
        assert_eq!(
            r[1][0],
            Data::String("Zürich — 東京 🚀 \"quoted\" <tag> & more".into())
        );
        assert_eq!(r[2][0], Data::String("'=HYPERLINK(\"http://x\")".into()));
        assert_eq!(r[3][0], Data::Empty);
        assert_eq!(r[4][0], Data::String("'-5".into()));
        assert_eq!(r[5][0], Data::String("'@SUM(A1)".into()));
        // Integers: numbers up to 2^53, exact text beyond, negative numbers untouched.
        assert_eq!(num(&r[0][1]), k as f64);
        assert_eq!(num(&r[1][1]), -42.0);
        assert_eq!(num(&r[2][1]), 9_007_199_254_740_992.0);
        assert_eq!(r[3][1], Data::Empty);
        assert_eq!(r[4][1], Data::String("9007199254740993".into()));
        assert_eq!(r[5][1], Data::String("-9007199254740993".into()));
        // Floats.
        assert_eq!(num(&r[0][2]), 1.5);
        assert_eq!(num(&r[1][2]), -0.25);
        assert_eq!(r[2][2], Data::Empty);
        assert_eq!(num(&r[3][2]), 1e-7);
        assert_eq!(num(&r[4][2]), 123_456.789);
        assert_eq!(num(&r[5][2]), 0.1);
        // Booleans.
        assert_eq!(r[0][3], Data::Bool(true));
        assert_eq!(r[1][3], Data::Bool(false));
        assert_eq!(r[2][3], Data::Empty);
        // Dates, including one before Excel's 1900-03-01 leap-year quirk; one before 1900 as ISO text.
        assert_eq!(ymd_hms(&r[0][4]), (2024, 1, 15, 0, 0, 0));
        assert_eq!(ymd_hms(&r[1][4]), (1999, 12, 31, 0, 0, 0));
        assert_eq!(r[2][4], Data::Empty);
        assert_eq!(ymd_hms(&r[3][4]), (1900, 1, 15, 0, 0, 0));
        assert_eq!(r[4][4], Data::String("1800-06-01".into()));
        assert_eq!(ymd_hms(&r[5][4]), (2024, 2, 29, 0, 0, 0));
        // Timestamps (1_700_000_000_000 ms is 2023-11-14 22:13:20 UTC).
        let day = 14 + k as u8;
        assert_eq!(ymd_hms(&r[0][5]), (2023, 11, day, 22, 13, 20));
        assert_eq!(ymd_hms(&r[1][5]), (2023, 11, day, 23, 13, 20));
        assert_eq!(r[3][5], Data::Empty);
    }
}

#[test]
fn numbers_are_never_neutralised_and_neutralising_can_be_turned_off() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("S", DataType::Utf8, false),
        Field::new("N", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["=1+1", "\tx", "\rx", "+1"])),
            Arc::new(Float64Array::from(vec![-1.0, -2.5, 3.0, -0.0])),
        ],
    )
    .expect("batch");
    let meta = DatasetMeta::default();
    let on = encode(
        &schema,
        &meta,
        &FormatOptions::new(),
        std::slice::from_ref(&batch),
    )
    .expect("encodes");
    let rows = sheet(&on, "Sheet1");
    let texts: Vec<String> = rows[1..].iter().map(|r| r[0].to_string()).collect();
    assert_eq!(texts, ["'=1+1", "'\tx", "'\rx", "'+1"]);
    let nums: Vec<f64> = rows[1..].iter().map(|r| num(&r[1])).collect();
    assert_eq!(nums, [-1.0, -2.5, 3.0, 0.0]);

    let off = FormatOptions::new().with("neutralize_formulas", "false");
    let raw = encode(&schema, &meta, &off, &[batch]).expect("encodes");
    let rows = sheet(&raw, "Sheet1");
    let texts: Vec<String> = rows[1..].iter().map(|r| r[0].to_string()).collect();
    assert_eq!(texts, ["=1+1", "\tx", "\rx", "+1"]);
}

fn counting_batch(schema: &SchemaRef, from: i64, n: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from_iter_values(from..from + n))],
    )
    .expect("batch")
}

fn encode_with(
    schema: &SchemaRef,
    meta: &DatasetMeta,
    options: XlsxOptions,
    batches: &[RecordBatch],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc: Box<dyn trialport_core::format::Encoder + '_> =
        Box::new(XlsxEncoder::try_new(schema, meta, options, &mut out).expect("encoder"));
    for b in batches {
        enc.write(b).expect("writes");
    }
    enc.finish().expect("finishes");
    out
}

#[test]
fn rows_continue_on_new_sheets_at_the_row_limit() {
    let schema = Arc::new(Schema::new(vec![Field::new("N", DataType::Int64, false)]));
    let meta = DatasetMeta {
        name: "AE".into(),
        ..Default::default()
    };
    let mut options = XlsxOptions::parse(&FormatOptions::new(), &meta).expect("options");
    // Five rows per sheet, the header included: four data rows each.
    options.max_rows_per_sheet = 5;
    let batches = [
        counting_batch(&schema, 0, 3),
        counting_batch(&schema, 3, 7),
        counting_batch(&schema, 10, 3),
    ];
    let bytes = encode_with(&schema, &meta, options, &batches);
    assert_eq!(open(&bytes).sheet_names(), ["AE", "AE_2", "AE_3", "AE_4"]);
    let mut seen = Vec::new();
    for name in ["AE", "AE_2", "AE_3", "AE_4"] {
        let rows = sheet(&bytes, name);
        assert_eq!(rows[0][0], Data::String("N".into()), "header on {name}");
        assert!(rows.len() <= 5);
        seen.extend(rows[1..].iter().map(|r| num(&r[0]) as i64));
    }
    assert_eq!(seen, (0..13).collect::<Vec<_>>());

    // Exactly full: no empty trailing sheet; and without a header every row is data.
    let mut options =
        XlsxOptions::parse(&FormatOptions::new().with("header", "false"), &meta).expect("options");
    options.max_rows_per_sheet = 4;
    let bytes = encode_with(&schema, &meta, options, &[counting_batch(&schema, 0, 8)]);
    assert_eq!(open(&bytes).sheet_names(), ["AE", "AE_2"]);
    assert_eq!(sheet(&bytes, "AE_2").len(), 4);
}

#[test]
fn split_sheet_names_stay_within_31_characters() {
    let schema = Arc::new(Schema::new(vec![Field::new("N", DataType::Int64, false)]));
    let meta = DatasetMeta::default();
    let long = "A".repeat(31);
    let mut options =
        XlsxOptions::parse(&FormatOptions::new().with("sheet_name", &long), &meta).expect("ok");
    options.max_rows_per_sheet = 2;
    let bytes = encode_with(&schema, &meta, options, &[counting_batch(&schema, 0, 3)]);
    let names = open(&bytes).sheet_names();
    assert_eq!(names.len(), 3);
    assert_eq!(names[1], format!("{}_2", "A".repeat(29)));
    assert!(names.iter().all(|n| n.chars().count() <= 31));
}

#[test]
fn options_are_checked() {
    let schema = mixed_schema();
    let meta = DatasetMeta::default();
    let bad = |opts: FormatOptions| {
        let e = encode(&schema, &meta, &opts, &[]).expect_err("rejected");
        assert_eq!(e.code(), ErrorCode::Validation);
        assert_eq!(
            XlsxFormat
                .check_options(&opts)
                .expect_err("rejected")
                .reason(),
            e.reason()
        );
        e
    };
    let e = bad(FormatOptions::new().with("delimiter", ";"));
    assert_eq!(e.reason(), "unknown_option");
    assert_eq!(e.field(), Some("options.delimiter"));
    for name in ["", "a/b", "x[1]", "'quoted'", "History", &"n".repeat(32)] {
        let e = bad(FormatOptions::new().with("sheet_name", name));
        assert_eq!(e.reason(), "invalid_option", "{name:?}");
        assert_eq!(e.field(), Some("options.sheet_name"));
    }
    let e = bad(FormatOptions::new().with("header", "maybe"));
    assert_eq!(e.reason(), "invalid_option");
    let e = bad(FormatOptions::new().with("created_at", "yesterday"));
    assert_eq!(e.field(), Some("options.created_at"));

    let good = FormatOptions::new()
        .with("sheet_name", "Lab results")
        .with("header", "true")
        .with("labels_as_header", "no")
        .with("neutralize_formulas", "1")
        .with("freeze_header", "off")
        .with("created_at", "2025-01-21T10:00:00Z");
    XlsxFormat.check_options(&good).expect("accepted");
    let names: Vec<&str> = XlsxFormat.info().options.iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        [
            "sheet_name",
            "header",
            "labels_as_header",
            "neutralize_formulas",
            "freeze_header",
            "created_at"
        ]
    );
}

#[test]
fn info_lists_capabilities() {
    let info = XlsxFormat.info();
    assert_eq!(info.id, "xlsx");
    assert_eq!(info.extension, "xlsx");
    for c in [
        Capability::Data,
        Capability::Streaming,
        Capability::Report,
        Capability::Dashboard,
    ] {
        assert!(info.can(c), "{c:?}");
    }
}

#[test]
fn output_is_deterministic() {
    let schema = mixed_schema();
    let batches: Vec<RecordBatch> = (0..3).map(|k| mixed_batch(&schema, k)).collect();
    let meta = DatasetMeta::default();
    let a = encode(&schema, &meta, &FormatOptions::new(), &batches).expect("encodes");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = encode(&schema, &meta, &FormatOptions::new(), &batches).expect("encodes");
    assert!(a == b, "same input, same bytes");
    let at = FormatOptions::new().with("created_at", "2025-01-21T10:00:00Z");
    let c = encode(&schema, &meta, &at, &batches).expect("encodes");
    let d = encode(&schema, &meta, &at, &batches).expect("encodes");
    assert!(c == d);
    assert!(a != c, "the creation time is recorded");
}

#[test]
fn over_long_text_is_rejected_not_truncated() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "COMMENT",
        DataType::Utf8,
        false,
    )]));
    let secret = "S".repeat(32_768);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["fine", secret.as_str()]))],
    )
    .expect("batch");
    let e = encode(
        &schema,
        &DatasetMeta::default(),
        &FormatOptions::new(),
        &[batch],
    )
    .expect_err("too long");
    assert_eq!(e.code(), ErrorCode::Validation);
    assert_eq!(e.reason(), "unrepresentable_value");
    assert_eq!(e.field(), Some("COMMENT"));
    assert!(!e.message().contains("SSSS"));

    // Exactly at the limit fits, but not once the neutralising quote is added.
    let at_limit = "x".repeat(32_767);
    let formula = format!("={}", "x".repeat(32_766));
    for (text, ok) in [(&at_limit, true), (&formula, false)] {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![text.as_str()]))],
        )
        .expect("batch");
        let r = encode(
            &schema,
            &DatasetMeta::default(),
            &FormatOptions::new(),
            &[batch],
        );
        assert_eq!(r.is_ok(), ok);
    }
}

#[test]
fn unsupported_types_are_refused_before_writing() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "L",
        DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
        true,
    )]));
    let mut out = Vec::new();
    let e = XlsxFormat
        .encoder(
            &schema,
            &DatasetMeta::default(),
            &FormatOptions::new(),
            &mut out,
        )
        .err()
        .expect("refused");
    assert_eq!(e.reason(), "unsupported_type");
    assert_eq!(e.field(), Some("L"));
    assert!(out.is_empty());
}

#[test]
fn headers_labels_and_default_names() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Int32, true),
        Field::new(
            "ARM",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
        Field::new("ID", DataType::UInt64, true),
    ]));
    let arm: DictionaryArray<Int32Type> = vec![Some("Placebo"), None].into_iter().collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["S-1", "S-2"])),
            Arc::new(Int32Array::from(vec![Some(34), None])),
            Arc::new(arm),
            Arc::new(UInt64Array::from(vec![7, u64::MAX])),
        ],
    )
    .expect("batch");
    let meta = DatasetMeta::from_json(
        r#"{"name":"Demographics/DM","columns":[{"name":"USUBJID","label":"Unique Subject Identifier"},
            {"name":"AGE","label":"Age"}]}"#,
    )
    .expect("meta");
    let opts = FormatOptions::new().with("labels_as_header", "true");
    let bytes = encode(&schema, &meta, &opts, std::slice::from_ref(&batch)).expect("encodes");
    // The dataset name is made a valid sheet name.
    assert_eq!(open(&bytes).sheet_names(), ["Demographics_DM"]);
    let rows = sheet(&bytes, "Demographics_DM");
    let header: Vec<String> = rows[0].iter().map(|d| d.to_string()).collect();
    assert_eq!(header, ["Unique Subject Identifier", "Age", "ARM", "ID"]);
    assert_eq!(num(&rows[1][1]), 34.0);
    assert_eq!(rows[1][2], Data::String("Placebo".into()));
    assert_eq!(rows[2][2], Data::Empty);
    assert_eq!(num(&rows[1][3]), 7.0);
    assert_eq!(rows[2][3], Data::String(u64::MAX.to_string()));

    let bytes = encode(
        &schema,
        &DatasetMeta::default(),
        &FormatOptions::new(),
        &[batch],
    )
    .expect("encodes");
    assert_eq!(open(&bytes).sheet_names(), ["Sheet1"]);
    assert_eq!(
        sheet(&bytes, "Sheet1")[0][0],
        Data::String("USUBJID".into())
    );
}

#[test]
fn zero_batches_give_a_header_only_sheet() {
    let schema = mixed_schema();
    let bytes =
        encode(&schema, &DatasetMeta::default(), &FormatOptions::new(), &[]).expect("encodes");
    let rows = sheet(&bytes, "Sheet1");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].len(), 6);
}

#[test]
fn zoned_timestamps_times_and_decimals() {
    use arrow::array::{Decimal128Array, Time64MicrosecondArray};
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "TS",
            DataType::Timestamp(TimeUnit::Millisecond, Some("Europe/Paris".into())),
            true,
        ),
        Field::new("TM", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("DEC", DataType::Decimal128(38, 2), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(
                TimestampMillisecondArray::from(vec![Some(1_700_000_000_000), None])
                    .with_timezone("Europe/Paris"),
            ),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(45_296_000_000),
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(12_345), Some(123_456_789_012_345_678)])
                    .with_precision_and_scale(38, 2)
                    .expect("decimal"),
            ),
        ],
    )
    .expect("batch");
    let bytes = encode(
        &schema,
        &DatasetMeta::default(),
        &FormatOptions::new(),
        &[batch],
    )
    .expect("encodes");
    let rows = sheet(&bytes, "Sheet1");
    // Instants in UTC.
    assert_eq!(ymd_hms(&rows[1][0]), (2023, 11, 14, 22, 13, 20));
    // 12:34:56 as a time of day.
    match &rows[1][1] {
        Data::DateTime(t) => assert!((t.as_f64() - 45_296.0 / 86_400.0).abs() < 1e-12),
        other => panic!("expected a time, got {other:?}"),
    }
    // A decimal Excel can hold is a number; one with more than 15 digits keeps its exact text.
    assert_eq!(num(&rows[1][2]), 123.45);
    assert_eq!(rows[2][2], Data::String("1234567890123456.78".into()));
}
