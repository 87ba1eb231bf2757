//! The FDA checks of the XPT writer: each rule broken on its own gives EXP002 `fda_check_failed` naming it, every
//! violation is listed, and nothing is written before the checks pass.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{ArrayRef, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_core::{Error, ErrorCode};
use trialport_formats::xpt::{XptFormat, KEY_NUMERIC_LENGTH};

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn num(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

fn meta(name: &str, columns: Vec<ColumnMeta>) -> DatasetMeta {
    DatasetMeta {
        name: name.into(),
        label: None,
        columns,
        ..Default::default()
    }
}

fn col(name: &str) -> ColumnMeta {
    ColumnMeta {
        name: name.into(),
        ..ColumnMeta::default()
    }
}

/// Creates an encoder and writes `batches`; returns the error and the bytes that reached the output.
fn run(
    fields: Vec<Field>,
    meta: &DatasetMeta,
    options: &FormatOptions,
    batches: &[Vec<ArrayRef>],
) -> (Option<Error>, Vec<u8>) {
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut out = Vec::new();
    let err = (|| {
        let mut enc = XptFormat.encoder(&schema, meta, options, &mut out)?;
        for cols in batches {
            enc.write(&RecordBatch::try_new(schema.clone(), cols.clone()).unwrap())?;
        }
        enc.finish().map(|_| ())
    })()
    .err();
    (err, out)
}

fn violations(err: &Error) -> Vec<Value> {
    assert_eq!(err.code(), ErrorCode::Validation, "{err}");
    assert_eq!(err.reason(), "fda_check_failed", "{err}");
    err.details()["violations"].as_array().unwrap().clone()
}

fn rules(err: &Error) -> Vec<String> {
    violations(err)
        .iter()
        .map(|v| v["rule"].as_str().unwrap().to_string())
        .collect()
}

/// Expects exactly `rule` (once) from a schema-level check.
fn expect_rule(fields: Vec<Field>, meta: &DatasetMeta, options: &FormatOptions, rule: &str) {
    let (err, out) = run(fields, meta, options, &[]);
    let err = err.unwrap_or_else(|| panic!("{rule}: no error"));
    assert_eq!(rules(&err), [rule], "{err}");
    assert!(out.is_empty(), "{rule}: bytes were written");
}

fn v5() -> FormatOptions {
    FormatOptions::new()
}

#[test]
fn dataset_and_variable_names_have_one_to_eight_characters() {
    expect_rule(
        vec![num("A")],
        &meta("DMEXTENDED", vec![]),
        &v5(),
        "name_length",
    );
    expect_rule(vec![num("A")], &meta("", vec![]), &v5(), "name_length");
    expect_rule(
        vec![num("AVALCATEG1")],
        &meta("ADSL", vec![]),
        &v5(),
        "name_length",
    );
    // The option overrides the metadata's name and is checked the same way.
    let o = FormatOptions::new().with("dataset", "ADSLLONGER");
    expect_rule(vec![num("A")], &meta("ADSL", vec![]), &o, "name_length");
    // v8 allows 32.
    let (err, _) = run(
        vec![num("AVALCATEG1")],
        &meta("ADSLLONGER", vec![]),
        &FormatOptions::new().with("version", "8"),
        &[],
    );
    assert!(err.is_none());
}

#[test]
fn names_are_uppercase_letters_digits_or_underscore_starting_with_a_letter() {
    expect_rule(
        vec![num("A")],
        &meta("dm", vec![]),
        &v5(),
        "name_characters",
    );
    expect_rule(
        vec![num("usubjid")],
        &meta("DM", vec![]),
        &v5(),
        "name_characters",
    );
    expect_rule(
        vec![num("1AGE")],
        &meta("DM", vec![]),
        &v5(),
        "name_characters",
    );
    expect_rule(
        vec![num("AGE-Y")],
        &meta("DM", vec![]),
        &v5(),
        "name_characters",
    );
    expect_rule(
        vec![num("ÄGE")],
        &meta("DM", vec![]),
        &v5(),
        "name_characters",
    );
    let (err, _) = run(vec![num("QS_1")], &meta("QS", vec![]), &v5(), &[]);
    assert!(err.is_none());
}

#[test]
fn reserved_and_duplicate_names_are_refused() {
    let o = FormatOptions::new().with("version", "8");
    expect_rule(vec![num("_N_")], &meta("DM", vec![]), &o, "name_reserved");
    expect_rule(
        vec![num("AGE"), num("age")],
        &meta("DM", vec![]),
        &o,
        "name_duplicate",
    );
}

#[test]
fn labels_have_at_most_forty_bytes_in_v5() {
    let long = "L".repeat(41);
    let mut c = col("AGE");
    c.label = Some(long.clone());
    expect_rule(
        vec![num("AGE")],
        &meta("DM", vec![c.clone()]),
        &v5(),
        "label_length",
    );
    let mut m = meta("DM", vec![]);
    m.label = Some(long);
    expect_rule(vec![num("AGE")], &m, &v5(), "label_length");
    // v8 takes 256-byte variable labels, but the dataset label is 40 in both.
    let o8 = FormatOptions::new().with("version", "8");
    let (err, _) = run(vec![num("AGE")], &meta("DM", vec![c]), &o8, &[]);
    assert!(err.is_none());
    expect_rule(vec![num("AGE")], &m, &o8, "label_length");
    let mut c = col("AGE");
    c.label = Some("L".repeat(257));
    expect_rule(vec![num("AGE")], &meta("DM", vec![c]), &o8, "label_length");
}

#[test]
fn labels_are_ascii_unless_an_encoding_is_chosen() {
    let mut c = col("AGE");
    c.label = Some("Âge".into());
    expect_rule(
        vec![num("AGE")],
        &meta("DM", vec![c.clone()]),
        &v5(),
        "label_ascii",
    );
    let latin1 = FormatOptions::new().with("encoding", "latin1");
    let (err, _) = run(vec![num("AGE")], &meta("DM", vec![c]), &latin1, &[]);
    assert!(err.is_none());
    let mut c = col("AGE");
    c.label = Some("年齢".into());
    expect_rule(
        vec![num("AGE")],
        &meta("DM", vec![c]),
        &latin1,
        "label_encoding",
    );
}

#[test]
fn character_lengths_are_one_to_two_hundred_in_v5() {
    let mut c = col("TERM");
    c.length = Some(201);
    expect_rule(
        vec![text("TERM")],
        &meta("AE", vec![c.clone()]),
        &v5(),
        "column_length",
    );
    c.length = Some(0);
    expect_rule(
        vec![text("TERM")],
        &meta("AE", vec![c]),
        &v5(),
        "column_length",
    );
}

#[test]
fn numeric_lengths_are_two_to_eight() {
    let f = num("AGE").with_metadata(HashMap::from([(
        KEY_NUMERIC_LENGTH.to_string(),
        "9".to_string(),
    )]));
    expect_rule(vec![f], &meta("DM", vec![]), &v5(), "numeric_length");
}

#[test]
fn display_formats_must_be_storable() {
    let mut c = col("AGE");
    c.display_format = Some("NOT A FORMAT".into());
    expect_rule(
        vec![num("AGE")],
        &meta("DM", vec![c]),
        &v5(),
        "display_format",
    );
    let mut c = col("AGE");
    c.display_format = Some("VERYLONGFMT12.".into());
    expect_rule(
        vec![num("AGE")],
        &meta("DM", vec![c]),
        &v5(),
        "display_format",
    );
}

#[test]
fn too_many_variables_for_v5() {
    let fields: Vec<Field> = (0..10_000).map(|i| num(&format!("V{i}"))).collect();
    expect_rule(fields, &meta("WIDE", vec![]), &v5(), "variable_count");
}

#[test]
fn character_values_longer_than_two_hundred_bytes_are_refused() {
    let values: ArrayRef = Arc::new(StringArray::from(vec!["ok".to_string(), "x".repeat(201)]));
    let (err, out) = run(
        vec![text("TERM")],
        &meta("AE", vec![]),
        &v5(),
        &[vec![values]],
    );
    let err = err.unwrap();
    let v = violations(&err);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["rule"], "value_length");
    assert_eq!(v[0]["column"], "TERM");
    assert_eq!(v[0]["dataset"], "AE");
    assert_eq!(v[0]["row"], 1);
    assert_eq!(v[0]["limit"], 200);
    assert!(out.is_empty());
    // A declared length is the limit: never a silent cut.
    let mut c = col("TERM");
    c.length = Some(5);
    let values: ArrayRef = Arc::new(StringArray::from(vec!["12345", "123456"]));
    let (err, _) = run(
        vec![text("TERM")],
        &meta("AE", vec![c]),
        &v5(),
        &[vec![values]],
    );
    let v = violations(&err.unwrap());
    assert_eq!(
        (v[0]["rule"].as_str(), v[0]["limit"].as_u64()),
        (Some("value_length"), Some(5))
    );
    // v8 takes longer values.
    let values: ArrayRef = Arc::new(StringArray::from(vec!["x".repeat(1000)]));
    let o8 = FormatOptions::new().with("version", "8");
    let (err, _) = run(
        vec![text("TERM")],
        &meta("AE", vec![]),
        &o8,
        &[vec![values]],
    );
    assert!(err.is_none());
}

#[test]
fn character_values_are_ascii_unless_an_encoding_is_chosen() {
    let values =
        || -> ArrayRef { Arc::new(StringArray::from(vec!["Headache", "頭痛", "Übelkeit"])) };
    let (err, out) = run(
        vec![text("AETERM")],
        &meta("AE", vec![]),
        &v5(),
        &[vec![values()]],
    );
    let v = violations(&err.unwrap());
    let rows: Vec<_> = v
        .iter()
        .map(|x| (x["rule"].clone(), x["row"].clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (Value::from("value_ascii"), Value::from(1)),
            (Value::from("value_ascii"), Value::from(2))
        ]
    );
    assert!(out.is_empty());
    let latin1 = FormatOptions::new().with("encoding", "latin1");
    let (err, _) = run(
        vec![text("AETERM")],
        &meta("AE", vec![]),
        &latin1,
        &[vec![values()]],
    );
    let v = violations(&err.unwrap());
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0]["rule"].as_str(), v[0]["row"].as_u64()),
        (Some("value_encoding"), Some(1))
    );
    let utf8 = FormatOptions::new().with("encoding", "utf8");
    let (err, out) = run(
        vec![text("AETERM")],
        &meta("AE", vec![]),
        &utf8,
        &[vec![values()]],
    );
    assert!(err.is_none());
    assert!(out.windows(6).any(|w| w == "頭痛".as_bytes()));
}

#[test]
fn every_violation_is_listed_at_once() {
    let mut c = col("lower");
    c.label = Some("é".repeat(30));
    let (err, _) = run(
        vec![num("lower"), num("TOOLONGNAME"), num("OK")],
        &meta("bad name!", vec![c]),
        &v5(),
        &[],
    );
    let err = err.unwrap();
    let mut got: Vec<(String, Value)> = violations(&err)
        .iter()
        .map(|v| (v["rule"].as_str().unwrap().to_string(), v["column"].clone()))
        .collect();
    got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(
        got,
        [
            ("label_ascii".to_string(), Value::from("lower")),
            ("name_characters".to_string(), Value::Null),
            ("name_characters".to_string(), Value::from("lower")),
            ("name_length".to_string(), Value::Null),
            ("name_length".to_string(), Value::from("TOOLONGNAME")),
        ]
    );
    // The message names the rules, never a value.
    assert!(err.message().contains("name_length"));
}

#[test]
fn a_bad_later_batch_fails_before_it_is_written() {
    let good: ArrayRef = Arc::new(StringArray::from(vec!["a"; 10]));
    let bad: ArrayRef = Arc::new(StringArray::from(vec!["b", "ü", "c"]));
    let mut c = col("X");
    c.length = Some(1);
    let (err, out) = run(
        vec![text("X")],
        &meta("T", vec![c]),
        &v5(),
        &[vec![good], vec![bad]],
    );
    let v = violations(&err.unwrap());
    // Row numbers count from the start of the stream.
    assert_eq!(v[0]["row"], 11);
    // The header and the first batch were written; nothing of the second.
    let data_start = out.len() - 10;
    assert_eq!(&out[data_start..], b"aaaaaaaaaa");
}

#[test]
fn numbers_that_cannot_be_stored_are_errors_not_silent() {
    let cases: Vec<(Field, ArrayRef)> = vec![
        (
            num("X"),
            Arc::new(Float64Array::from(vec![1.0, f64::INFINITY])),
        ),
        (
            Field::new("X", DataType::Int64, true),
            Arc::new(arrow::array::Int64Array::from(vec![1, (1 << 53) + 1])),
        ),
        (
            num("X").with_metadata(HashMap::from([(
                KEY_NUMERIC_LENGTH.to_string(),
                "3".to_string(),
            )])),
            Arc::new(Float64Array::from(vec![8192.0, 0.1])),
        ),
    ];
    for (field, values) in cases {
        let (err, out) = run(vec![field], &meta("T", vec![]), &v5(), &[vec![values]]);
        let err = err.unwrap();
        assert_eq!(err.reason(), "unrepresentable_value", "{err}");
        assert_eq!(err.field(), Some("X"));
        assert_eq!(err.details()["row"], 1);
        assert!(out.is_empty());
    }
}
