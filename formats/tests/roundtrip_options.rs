//! The bytes each text format writes for its options: nulls, quoting, neutralisation, labels, NaN, dates.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::DatasetMeta;
use trialport_formats::csv::CsvFormat;
use trialport_formats::json::JsonFormat;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, a)| a).collect()).unwrap()
}

fn write(
    format: &dyn Format,
    options: &[(&str, &str)],
    meta: &DatasetMeta,
    b: &RecordBatch,
) -> String {
    let mut opts = FormatOptions::new();
    for (k, v) in options {
        opts = opts.with(k, v);
    }
    let mut out: Vec<u8> = Vec::new();
    let mut enc = format.encoder(&b.schema(), meta, &opts, &mut out).unwrap();
    enc.write(b).unwrap();
    enc.finish().unwrap();
    String::from_utf8(out).unwrap()
}

fn csv(options: &[(&str, &str)], b: &RecordBatch) -> String {
    write(&CsvFormat::csv(), options, &DatasetMeta::default(), b)
}

fn text_column(values: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

#[test]
fn null_and_empty_string_are_distinct_in_csv() {
    let b = batch(vec![
        ("S", text_column(vec![None, Some(""), Some("x")])),
        (
            "N",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
        ),
    ]);
    assert_eq!(csv(&[], &b), "S,N\n,1\n\"\",\nx,3\n");
    assert_eq!(csv(&[("null", "NA")], &b), "S,N\nNA,1\n\"\",NA\nx,3\n");
    // A string equal to the null text is quoted so it stays a string.
    let na = batch(vec![("S", text_column(vec![Some("NA"), None]))]);
    assert_eq!(csv(&[("null", "NA")], &na), "S\n\"NA\"\nNA\n");
}

#[test]
fn csv_quotes_only_what_needs_it_and_doubles_quotes() {
    let b = batch(vec![(
        "S",
        text_column(vec![
            Some("a,b"),
            Some("say \"hi\""),
            Some("two\nlines"),
            Some("cr\rhere"),
            Some("tab\tin"),
            Some("plain"),
            Some("é"),
        ]),
    )]);
    assert_eq!(
        csv(&[], &b),
        "S\n\"a,b\"\n\"say \"\"hi\"\"\"\n\"two\nlines\"\n\"cr\rhere\"\ntab\tin\nplain\né\n"
    );
    // In TSV the tab is the delimiter, so that cell is quoted and the comma one is not.
    let tsv = write(&CsvFormat::tsv(), &[], &DatasetMeta::default(), &b);
    assert!(
        tsv.contains("\na,b\n") && tsv.contains("\n\"tab\tin\"\n"),
        "{tsv}"
    );
    assert_eq!(
        csv(
            &[("quote_all", "true"), ("line_terminator", "crlf")],
            &batch(vec![
                ("S", text_column(vec![Some("x"), None])),
                ("N", Arc::new(Int64Array::from(vec![Some(-5), Some(6)]))),
            ])
        ),
        "\"S\",\"N\"\r\n\"x\",\"-5\"\r\n,\"6\"\r\n"
    );
}

#[test]
fn formulas_are_neutralized_by_default_and_numbers_never() {
    let b = batch(vec![
        (
            "S",
            text_column(vec![
                Some("=HYPERLINK(\"x\")"),
                Some("+1"),
                Some("-2"),
                Some("@SUM(A1)"),
                Some("\tTAB"),
                Some("\rCR"),
                Some("a=b"),
            ]),
        ),
        (
            "N",
            Arc::new(Int64Array::from(vec![-1, -2, -3, -4, -5, -6, -7])),
        ),
        (
            "X",
            Arc::new(Float64Array::from(vec![
                -1.5, -2.0, 0.0, 1.0, -0.5, -1e-300, 2.0,
            ])),
        ),
    ]);
    let on = csv(&[], &b);
    assert_eq!(
        on,
        "S,N,X\n\"'=HYPERLINK(\"\"x\"\")\",-1,-1.5\n'+1,-2,-2.0\n'-2,-3,0.0\n'@SUM(A1),-4,1.0\n\
         '\tTAB,-5,-0.5\n\"'\rCR\",-6,-1e-300\na=b,-7,2.0\n"
    );
    let off = csv(&[("neutralize_formulas", "false")], &b);
    assert_eq!(
        off,
        "S,N,X\n\"=HYPERLINK(\"\"x\"\")\",-1,-1.5\n+1,-2,-2.0\n-2,-3,0.0\n@SUM(A1),-4,1.0\n\
         \tTAB,-5,-0.5\n\"\rCR\",-6,-1e-300\na=b,-7,2.0\n"
    );
}

#[test]
fn header_can_show_labels_or_be_left_out() {
    let b = batch(vec![
        ("USUBJID", text_column(vec![Some("S1")])),
        ("AGE", Arc::new(Int64Array::from(vec![30]))),
    ]);
    let meta = DatasetMeta::from_json(
        r#"{"columns":[{"name":"USUBJID","label":"Unique Subject Identifier, ID"}]}"#,
    )
    .unwrap();
    let labels = write(
        &CsvFormat::csv(),
        &[("labels_as_header", "true")],
        &meta,
        &b,
    );
    assert_eq!(labels, "\"Unique Subject Identifier, ID\",AGE\nS1,30\n");
    assert_eq!(csv(&[("header", "false")], &b), "S1,30\n");
    assert_eq!(csv(&[("delimiter", ";")], &b), "USUBJID;AGE\nS1;30\n");
}

#[test]
fn dates_and_timestamps_are_iso_or_patterned() {
    let b = batch(vec![
        (
            "D",
            Arc::new(Date32Array::from(vec![Some(0), Some(-1), None])),
        ),
        (
            "T",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_500),
                Some(-1),
                None,
            ])),
        ),
        (
            "TZ",
            Arc::new(
                TimestampMillisecondArray::from(vec![Some(0), Some(86_400_000), None])
                    .with_timezone("Europe/Paris"),
            ),
        ),
    ]);
    assert_eq!(
        csv(&[], &b),
        "D,T,TZ\n1970-01-01,1970-01-01T00:00:01.500,1970-01-01T00:00:00Z\n\
         1969-12-31,1969-12-31T23:59:59.999,1970-01-02T00:00:00Z\n,,\n"
    );
    assert_eq!(
        csv(
            &[("date_format", "%d/%m/%Y"), ("datetime_format", "%Y%m%d %H%M")],
            &b
        ),
        "D,T,TZ\n01/01/1970,19700101 0000,19700101 0000\n31/12/1969,19691231 2359,19700102 0000\n,,\n"
    );
    let json = write(&JsonFormat::ndjson(), &[], &DatasetMeta::default(), &b);
    assert_eq!(
        json,
        "{\"D\":\"1970-01-01\",\"T\":\"1970-01-01T00:00:01.500\",\"TZ\":\"1970-01-01T00:00:00Z\"}\n\
         {\"D\":\"1969-12-31\",\"T\":\"1969-12-31T23:59:59.999\",\"TZ\":\"1970-01-02T00:00:00Z\"}\n\
         {\"D\":null,\"T\":null,\"TZ\":null}\n"
    );
}

#[test]
fn json_numbers_are_exact_and_nulls_follow_the_option() {
    let b = batch(vec![
        (
            "I",
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some((1 << 53) + 1),
                None,
            ])),
        ),
        (
            "U",
            Arc::new(UInt64Array::from(vec![Some(u64::MAX), Some(0), Some(7)])),
        ),
        (
            "X",
            Arc::new(Float64Array::from(vec![Some(0.1), Some(5e-324), None])),
        ),
        ("S", text_column(vec![Some("q\"\n"), None, Some("")])),
    ]);
    let array = write(&JsonFormat::array(), &[], &DatasetMeta::default(), &b);
    assert_eq!(
        array,
        "[\n{\"I\":-9223372036854775808,\"U\":18446744073709551615,\"X\":0.1,\"S\":\"q\\\"\\n\"},\n\
         {\"I\":9007199254740993,\"U\":0,\"X\":5e-324,\"S\":null},\n\
         {\"I\":null,\"U\":7,\"X\":null,\"S\":\"\"}\n]\n"
    );
    let parsed: serde_json::Value = serde_json::from_str(&array).unwrap();
    assert_eq!(parsed[1]["I"].as_i64(), Some((1 << 53) + 1));
    let sparse = write(
        &JsonFormat::ndjson(),
        &[("explicit_nulls", "false")],
        &DatasetMeta::default(),
        &b,
    );
    assert_eq!(
        sparse,
        "{\"I\":-9223372036854775808,\"U\":18446744073709551615,\"X\":0.1,\"S\":\"q\\\"\\n\"}\n\
         {\"I\":9007199254740993,\"U\":0,\"X\":5e-324}\n{\"U\":7,\"S\":\"\"}\n"
    );
}

#[test]
fn json_rejects_nan_unless_asked_for_null() {
    let b = batch(vec![(
        "X",
        Arc::new(Float64Array::from(vec![1.0, f64::NAN, f64::INFINITY])),
    )]);
    let mut out: Vec<u8> = Vec::new();
    let mut enc = JsonFormat::ndjson()
        .encoder(
            &b.schema(),
            &DatasetMeta::default(),
            &FormatOptions::new(),
            &mut out,
        )
        .unwrap();
    let e = enc.write(&b).unwrap_err();
    assert_eq!(e.reason(), "unrepresentable_value");
    assert_eq!(e.field(), Some("X"));
    assert_eq!(e.details().get("row"), Some(&serde_json::json!(1)));
    drop(enc);
    let nulls = write(
        &JsonFormat::ndjson(),
        &[("nan", "null")],
        &DatasetMeta::default(),
        &b,
    );
    assert_eq!(nulls, "{\"X\":1.0}\n{\"X\":null}\n{\"X\":null}\n");
    // CSV writes them as text that reads back as the same floats.
    assert_eq!(csv(&[], &b), "X\n1.0\nNaN\ninf\n");
}

#[test]
fn csv_writes_many_types() {
    use arrow::array::{
        BooleanArray, Decimal128Array, DictionaryArray, Float32Array, Int8Array,
        Time64MicrosecondArray,
    };
    use arrow::datatypes::Int32Type;
    let dict: DictionaryArray<Int32Type> = vec![Some("a"), None, Some("a")].into_iter().collect();
    let b = batch(vec![
        (
            "I8",
            Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
        ),
        (
            "F32",
            Arc::new(Float32Array::from(vec![0.1f32, -1.0, 3.4e38])),
        ),
        (
            "DEC",
            Arc::new(
                Decimal128Array::from(vec![Some(-5), Some(12345), None])
                    .with_precision_and_scale(10, 3)
                    .unwrap(),
            ),
        ),
        ("DICT", Arc::new(dict)),
        (
            "TIME",
            Arc::new(Time64MicrosecondArray::from(vec![
                0,
                3_600_000_001,
                86_399_999_999,
            ])),
        ),
        (
            "B",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        ),
    ]);
    assert_eq!(
        csv(&[], &b),
        "I8,F32,DEC,DICT,TIME,B\n-128,0.1,-0.005,a,00:00:00,true\n,-1.0,12.345,,01:00:00.000001,false\n\
         127,3.4e38,,a,23:59:59.999999,\n"
    );
    let _ = TimeUnit::Second;
    let _ = DataType::Null;
}

#[test]
fn csv_bytes_do_not_depend_on_the_thread_count() {
    use trialport_formats::csv::{CsvOptions, CsvWriter};
    let n = 50_000;
    let b = batch(vec![
        (
            "S",
            Arc::new(StringArray::from_iter((0..n).map(|i| match i % 5 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(format!("-{i}, \"x\"")),
                _ => Some(format!("v{i}")),
            }))),
        ),
        (
            "X",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| Some(i as f64 / 7.0)),
            )),
        ),
    ]);
    let encode = |threads: usize| {
        let mut out = Vec::new();
        let mut w = CsvWriter::try_new(
            &mut out,
            &b.schema(),
            &DatasetMeta::default(),
            CsvOptions::csv(),
        )
        .unwrap()
        .with_threads(threads);
        w.write(&b).unwrap();
        w.write(&b.slice(3, 5000)).unwrap();
        assert_eq!(w.finish().unwrap().rows, (n + 5000) as u64);
        out
    };
    let one = encode(1);
    assert_eq!(one, encode(3));
    assert_eq!(one, encode(4));
    assert_eq!(
        one.iter().filter(|&&c| c == b'\n').count(),
        n as usize + 5001
    );
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_bytes_do_not_depend_on_the_thread_count() {
    use trialport_formats::parquet::{ParquetOptions, ParquetWriter};
    let n = 20_000;
    let b = batch(vec![
        (
            "S",
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 7 != 0).then(|| format!("v{}", i % 300))),
            )),
        ),
        (
            "N",
            Arc::new(Int64Array::from_iter((0..n).map(|i| Some(i * 3)))),
        ),
        (
            "X",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| Some(i as f64 / 7.0)),
            )),
        ),
    ]);
    let encode = |threads: usize| {
        let mut out = Vec::new();
        let options = ParquetOptions {
            row_group_size: 7_000,
            ..ParquetOptions::default()
        };
        let mut w = ParquetWriter::try_new(&mut out, &b.schema(), &DatasetMeta::default(), options)
            .unwrap()
            .with_threads(threads);
        w.write(&b).unwrap();
        w.write(&b.slice(10, 3000)).unwrap();
        assert_eq!(w.finish().unwrap().rows, (n + 3000) as u64);
        out
    };
    let one = encode(1);
    assert_eq!(one, encode(3));
}
