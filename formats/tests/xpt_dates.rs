//! SAS dates, datetimes and times read from XPT as Arrow `Date32`, `Timestamp(Microsecond)` and
//! `Time64(Microsecond)` (newcomer finding 17), or as the SAS numbers with `xpt_dates=number`.
//!
//! Oracles: the CDISC Dataset-JSON examples, which hold the same ADaM rows as their XPT files with the dates as ISO
//! text (`../shared/conformance/datasetjson-examples/adam`); chrono's calendar for the dates of files written here;
//! the original bytes of the SAS-written files for the round trip.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, RecordBatch, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Schema, SchemaRef, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType,
};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_core::ErrorCode;
use trialport_formats::read::{self, ReadOptions};
use trialport_formats::xpt::{self, ibm, read_xpt_from, XptDates, XptFormat, XptReadOptions};

mod common;
use common::conformance_dir;

fn numbers() -> XptReadOptions {
    XptReadOptions {
        dates: XptDates::Number,
        ..XptReadOptions::default()
    }
}

fn read_all(path: &Path, options: &XptReadOptions) -> (SchemaRef, RecordBatch) {
    let stream = xpt::decode::read_xpt_with(path, options).unwrap();
    let schema = stream.schema().clone();
    let batches = stream.collect().unwrap();
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    (schema, all)
}

fn decode_with(bytes: &[u8], options: &XptReadOptions) -> trialport_core::Result<RecordBatch> {
    let stream = read_xpt_from(Cursor::new(bytes.to_vec()), options)?;
    let schema = stream.schema().clone();
    let batches = stream.collect()?;
    Ok(arrow::compute::concat_batches(&schema, &batches).unwrap())
}

fn encode(schema: &SchemaRef, meta: &DatasetMeta, batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = XptFormat
            .encoder(schema, meta, &FormatOptions::new(), &mut out)
            .unwrap();
        for b in batches {
            enc.write(b).unwrap();
        }
        enc.finish().unwrap();
    }
    out
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Days since 1970-01-01 of a calendar date, by chrono.
fn days(d: NaiveDate) -> i32 {
    (d - date(1970, 1, 1)).num_days() as i32
}

/// Microseconds since 1970-01-01T00:00:00 of a datetime, by chrono.
fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// Microseconds since midnight, by chrono.
fn tod(h: u32, m: u32, s: u32, us: u32) -> i64 {
    let t = NaiveTime::from_hms_micro_opt(h, m, s, us).unwrap();
    (t - NaiveTime::MIN).num_microseconds().unwrap()
}

/// A column of SAS numbers: name, display format, values.
type SasColumn<'a> = (&'a str, Option<&'a str>, Vec<Option<f64>>);

/// A dataset of Float64 columns, each with its display format, written as XPT.
fn sas_file(columns: &[SasColumn<'_>]) -> Vec<u8> {
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, _, _)| Field::new(*n, DataType::Float64, true))
            .collect::<Vec<_>>(),
    ));
    let meta = DatasetMeta {
        name: "DATES".into(),
        columns: columns
            .iter()
            .map(|(n, f, _)| ColumnMeta {
                name: (*n).into(),
                display_format: f.map(str::to_string),
                ..ColumnMeta::default()
            })
            .collect(),
        ..DatasetMeta::default()
    };
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|(_, _, v)| Arc::new(Float64Array::from(v.clone())) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    encode(&schema, &meta, &[batch])
}

#[test]
fn cdisc_adam_dates_read_as_the_dates_of_their_dataset_json() {
    let Some(dir) = conformance_dir() else { return };
    let adam = dir.join("datasetjson-examples/adam");
    let mut compared = 0;
    for stem in ["adsl", "adtte"] {
        let (schema, batch) = read_all(&adam.join(format!("{stem}.xpt")), &Default::default());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(adam.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), batch.num_rows(), "{stem}");
        let meta = DatasetMeta::from_schema(&schema);
        for (j, c) in json["columns"].as_array().unwrap().iter().enumerate() {
            if c["dataType"] != "date" || c["targetDataType"] != "integer" {
                continue;
            }
            let name = c["name"].as_str().unwrap();
            let i = schema.index_of(name).unwrap();
            assert_eq!(
                schema.field(i).data_type(),
                &DataType::Date32,
                "{stem}.{name}"
            );
            // The display format stays in the metadata, as the JSON has it.
            assert_eq!(
                meta.column(name).unwrap().display_format.as_deref(),
                c["displayFormat"].as_str(),
                "{stem}.{name}"
            );
            let col = batch.column(i).as_primitive::<Date32Type>();
            for (r, row) in rows.iter().enumerate() {
                let want = row[j]
                    .as_str()
                    .map(|s| days(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()));
                let got = col.is_valid(r).then(|| col.value(r));
                assert_eq!(got, want, "{stem}.{name} row {r}");
                compared += 1;
            }
        }
    }
    // adsl: TRTSDT, TRTEDT, DISONSDT, VISIT1DT, RFENDT; adtte: TRTSDT, TRTEDT, STARTDT, ADT; 254 rows each.
    assert_eq!(compared, 9 * 254);
}

#[test]
fn sas_written_adam_files_have_typed_dates_and_no_float_left_with_a_date_format() {
    let Some(dir) = conformance_dir() else { return };
    let mut typed = 0;
    for path in [
        "phuse-cdiscpilot01/adam/adsl.xpt",
        "phuse-cdiscpilot01/adam/adtte.xpt",
        "datasetjson-examples/adam/adsl.xpt",
        "datasetjson-examples/adam/adtte.xpt",
    ] {
        let (schema, batch) = read_all(&dir.join(path), &Default::default());
        let (raw_schema, raw) = read_all(&dir.join(path), &numbers());
        let meta = DatasetMeta::from_schema(&schema);
        for (i, f) in schema.fields().iter().enumerate() {
            let fmt = meta
                .column(f.name())
                .and_then(|c| c.display_format.clone())
                .unwrap_or_default();
            let is_date = fmt.starts_with("DATE") && !fmt.starts_with("DATETIME");
            assert_eq!(
                f.data_type() == &DataType::Date32,
                is_date,
                "{path} {} {fmt}",
                f.name()
            );
            if !is_date {
                assert_eq!(f.data_type(), raw_schema.field(i).data_type());
                continue;
            }
            typed += 1;
            // The same dates as the SAS numbers: days since 1960-01-01 (1960-01-01 is 3,653 days before 1970).
            assert_eq!(raw_schema.field(i).data_type(), &DataType::Float64);
            let d = batch.column(i).as_primitive::<Date32Type>();
            let n = raw.column(i).as_primitive::<Float64Type>();
            assert_eq!(d.null_count(), n.null_count(), "{path} {}", f.name());
            for (a, b) in d.iter().zip(n.iter()) {
                assert_eq!(a.map(i64::from), b.map(|x| x as i64 - 3_653));
            }
        }
    }
    assert!(typed >= 9 + 9, "{typed} date columns");
}

/// Every SAS date, datetime and time format named in finding 17 (and more), with widths, and formats that are not.
const FORMATS: &[(&str, Option<&str>, &str)] = &[
    ("D1", Some("DATE9."), "date"),
    ("D2", Some("DATE11."), "date"),
    ("D3", Some("YYMMDD10."), "date"),
    ("D4", Some("MMDDYY10."), "date"),
    ("D5", Some("DDMMYY8."), "date"),
    ("D6", Some("E8601DA10."), "date"),
    ("D7", Some("IS8601DA."), "date"),
    ("D8", Some("B8601DA8."), "date"),
    ("D9", Some("WEEKDATE29."), "date"),
    ("D10", Some("WORDDATE18."), "date"),
    ("D11", Some("MONYY7."), "date"),
    ("D12", Some("YEAR4."), "date"),
    ("D13", Some("YYMMDDN8."), "date"),
    ("D14", Some("DDMMYYS10."), "date"),
    ("T1", Some("DATETIME20."), "datetime"),
    ("T2", Some("DATETIME26.6"), "datetime"),
    ("T3", Some("E8601DT19."), "datetime"),
    ("T4", Some("IS8601DT."), "datetime"),
    ("T5", Some("B8601DT15."), "datetime"),
    ("T6", Some("DATEAMPM22."), "datetime"),
    ("T7", Some("DTDATE9."), "datetime"),
    ("H1", Some("TIME8."), "time"),
    ("H2", Some("TIME12.3"), "time"),
    ("H3", Some("TOD8."), "time"),
    ("H4", Some("HHMM5."), "time"),
    ("H5", Some("E8601TM8."), "time"),
    ("N1", Some("8.2"), "number"),
    ("N2", Some("BEST12."), "number"),
    ("N3", Some("COMMA10.2"), "number"),
    ("N4", None, "number"),
];

#[test]
fn every_date_datetime_and_time_format_gives_its_arrow_type() {
    let cols: Vec<_> = FORMATS
        .iter()
        .map(|(n, f, _)| (*n, *f, vec![Some(19_725.0), None]))
        .collect();
    let bytes = sas_file(&cols);
    let typed = decode_with(&bytes, &XptReadOptions::default()).unwrap();
    let raw = decode_with(&bytes, &numbers()).unwrap();
    for (i, (name, fmt, kind)) in FORMATS.iter().enumerate() {
        let want = match *kind {
            "date" => DataType::Date32,
            "datetime" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "time" => DataType::Time64(TimeUnit::Microsecond),
            _ => DataType::Float64,
        };
        let f = typed.schema().field(i).clone();
        assert_eq!(f.name(), name);
        assert_eq!(f.data_type(), &want, "{fmt:?}");
        assert_eq!(typed.column(i).null_count(), 1, "{fmt:?}");
        // The format stays in the metadata whatever the type.
        let meta = DatasetMeta::from_schema(typed.schema_ref());
        assert_eq!(
            meta.column(name).unwrap().display_format.as_deref(),
            *fmt,
            "{name}"
        );
        // With xpt_dates=number, every column is the SAS number.
        assert_eq!(raw.schema().field(i).data_type(), &DataType::Float64);
        assert_eq!(
            raw.column(i).as_primitive::<Float64Type>().value(0),
            19_725.0
        );
    }
    // 19725 is 2014-01-02 as a date, 1960-01-01T05:28:45 as a datetime; as a time it is 05:28:45.
    let d = typed.column(0).as_primitive::<Date32Type>().value(0);
    assert_eq!(d, days(date(2014, 1, 2)));
    let t = typed
        .column(14)
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    assert_eq!(t, micros(date(1960, 1, 1).and_hms_opt(5, 28, 45).unwrap()));
    let h = typed
        .column(21)
        .as_primitive::<Time64MicrosecondType>()
        .value(0);
    assert_eq!(h, tod(5, 28, 45, 0));
}

#[test]
fn values_missings_fractions_and_limits() {
    let a = ibm::special_missing(b'A');
    let z = ibm::special_missing(b'_');
    let bytes = sas_file(&[
        (
            "DT",
            Some("DATE9."),
            vec![
                Some(19_725.0),
                Some(0.0),
                Some(-137_774.0),  // 1582-10-15, the first Gregorian day
                Some(6_589_340.0), // 20000-12-31, the last SAS date
                Some(19_725.75),   // a fraction of a day: that day
                Some(-0.25),       // ... rounding down
                None,              // .
                a,                 // .A
                z,                 // ._
            ],
        ),
        (
            "DTM",
            Some("E8601DT26.6"),
            vec![
                Some(1_704_270_600.0),
                Some(0.0),
                Some(1_704_270_600.123_456),
                Some(-0.000_000_4), // nearest microsecond: 0
                Some(-1.5),
                Some(569_319_062_399.0), // 20000-12-31T23:59:59
                None,
                a,
                z,
            ],
        ),
        (
            "TM",
            Some("TIME8."),
            vec![
                Some(30_600.0),
                Some(0.0),
                Some(86_399.999_999),
                Some(1.5),
                Some(0.000_000_4),
                Some(45_296.0),
                None,
                a,
                z,
            ],
        ),
    ]);
    let b = decode_with(&bytes, &XptReadOptions::default()).unwrap();
    let d: Vec<_> = b.column(0).as_primitive::<Date32Type>().iter().collect();
    assert_eq!(
        d,
        [
            Some(days(date(2014, 1, 2))),
            Some(days(date(1960, 1, 1))),
            Some(days(date(1582, 10, 15))),
            Some(days(date(20000, 12, 31))),
            Some(days(date(2014, 1, 2))),
            Some(days(date(1959, 12, 31))),
            None,
            None,
            None
        ]
    );
    let dt = |y, mo, d, h, mi, s, us| {
        Some(micros(
            date(y, mo, d).and_hms_micro_opt(h, mi, s, us).unwrap(),
        ))
    };
    let t: Vec<_> = b
        .column(1)
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .collect();
    assert_eq!(
        t,
        [
            dt(2014, 1, 2, 8, 30, 0, 0),
            dt(1960, 1, 1, 0, 0, 0, 0),
            dt(2014, 1, 2, 8, 30, 0, 123_456),
            dt(1960, 1, 1, 0, 0, 0, 0),
            dt(1959, 12, 31, 23, 59, 58, 500_000),
            dt(20000, 12, 31, 23, 59, 59, 0),
            None,
            None,
            None
        ]
    );
    let h: Vec<_> = b
        .column(2)
        .as_primitive::<Time64MicrosecondType>()
        .iter()
        .collect();
    assert_eq!(
        h,
        [
            Some(tod(8, 30, 0, 0)),
            Some(0),
            Some(tod(23, 59, 59, 999_999)),
            Some(tod(0, 0, 1, 500_000)),
            Some(0),
            Some(tod(12, 34, 56, 0)),
            None,
            None,
            None
        ]
    );
    // With xpt_dates=number and special_missing, the numbers and the tags are kept.
    let raw = decode_with(
        &bytes,
        &XptReadOptions {
            special_missing: true,
            ..numbers()
        },
    )
    .unwrap();
    let n = raw.column(0).as_primitive::<Float64Type>();
    assert_eq!(n.value(4), 19_725.75);
    assert_eq!(ibm::missing_tag(n.value(7)), Some(b'A'));
    assert_eq!(ibm::missing_tag(n.value(8)), Some(b'_'));
    // Special missings are null when the column is typed, with special_missing too.
    let typed = decode_with(
        &bytes,
        &XptReadOptions {
            special_missing: true,
            ..XptReadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(typed.column(0).null_count(), 3);
}

#[test]
fn values_arrow_cannot_hold_are_errors_naming_column_and_observation() {
    for (format, value, kind) in [
        ("DATE9.", 1e9, "date"),  // year ~2.7 million: beyond chrono's calendar
        ("DATE9.", 1e12, "date"), // beyond Date32
        ("DATE9.", -1e12, "date"),
        ("DATETIME20.", 1e17, "datetime"), // beyond chrono
        ("DATETIME20.", 1e60, "datetime"), // beyond i64 microseconds
        ("TIME8.", 86_400.0, "time"),      // 24:00:00
        ("TIME8.", 90_000.0, "time"),      // a duration of 25 hours
        ("TIME8.", -1.0, "time"),
    ] {
        let mut v = vec![Some(1.0); 7];
        v[4] = Some(value);
        let bytes = sas_file(&[("OK", None, vec![Some(1.0); 7]), ("X", Some(format), v)]);
        let options = XptReadOptions {
            batch_rows: 2,
            ..XptReadOptions::default()
        };
        let e = decode_with(&bytes, &options).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Validation, "{format} {value}");
        assert_eq!(e.reason(), "date_out_of_range", "{format} {value}");
        assert_eq!(e.field(), Some("X"));
        assert_eq!(e.details()["observation"], 5, "{format} {value}");
        assert_eq!(e.details()["kind"], kind);
        assert!(!e.to_string().contains(&value.to_string()), "{e}");
        assert!(e.to_string().contains("xpt_dates=number"), "{e}");
        // The numbers are readable with xpt_dates=number.
        let raw = decode_with(&bytes, &numbers()).unwrap();
        assert_eq!(raw.column(1).as_primitive::<Float64Type>().value(4), value);
    }
}

#[test]
fn arrow_dates_timestamps_and_times_written_and_read_back_are_the_same() {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("D", DataType::Date32, true),
        Field::new(
            "DTM",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("TM", DataType::Time64(TimeUnit::Microsecond), true),
    ]));
    let d = Date32Array::from(vec![
        Some(days(date(2014, 1, 2))),
        Some(-3_653),
        Some(days(date(1582, 10, 15))),
        Some(days(date(9999, 12, 31))),
        None,
    ]);
    let t = TimestampMicrosecondArray::from(vec![
        Some(micros(
            date(2014, 1, 2)
                .and_hms_micro_opt(8, 30, 0, 250_000)
                .unwrap(),
        )),
        Some(-315_619_200_000_000),
        Some(micros(date(1582, 10, 15).and_hms_opt(0, 0, 1).unwrap())),
        Some(micros(
            date(9999, 12, 31)
                .and_hms_micro_opt(23, 59, 59, 500_000)
                .unwrap(),
        )),
        None,
    ]);
    let h = Time64MicrosecondArray::from(vec![
        Some(tod(8, 30, 0, 0)),
        Some(0),
        Some(tod(23, 59, 59, 0)),
        Some(tod(0, 0, 0, 125_000)),
        None,
    ]);
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(d), Arc::new(t), Arc::new(h)]).unwrap();
    let meta = DatasetMeta {
        name: "RT".into(),
        ..DatasetMeta::default()
    };
    let bytes = encode(&schema, &meta, std::slice::from_ref(&batch));
    let back = decode_with(&bytes, &XptReadOptions::default()).unwrap();
    for i in 0..3 {
        assert_eq!(
            back.schema().field(i).data_type(),
            schema.field(i).data_type()
        );
        assert_eq!(
            back.column(i).as_ref(),
            batch.column(i).as_ref(),
            "column {i}"
        );
    }
    // The default formats the writer gave are read back, and written again to the same bytes.
    let rs = back.schema();
    let rmeta = DatasetMeta::from_schema(&rs);
    let fmts: Vec<_> = ["D", "DTM", "TM"]
        .iter()
        .map(|c| rmeta.column(c).unwrap().display_format.clone().unwrap())
        .collect();
    assert_eq!(fmts, ["DATE9.", "DATETIME20.", "TIME8."]);
    let mut again = Vec::new();
    {
        let mut enc = XptFormat
            .encoder(&rs, &rmeta, &xpt::reproduce_options(&rs), &mut again)
            .unwrap();
        enc.write(&back).unwrap();
        enc.finish().unwrap();
    }
    assert_eq!(again, bytes);
}

#[test]
fn read_options_choose_numbers_by_name_and_refuse_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dates.xpt");
    std::fs::write(
        &path,
        sas_file(&[("ADT", Some("DATE9."), vec![Some(19_725.0)])]),
    )
    .unwrap();
    let typed = read::open(&path, None).unwrap();
    assert_eq!(typed.schema().field(0).data_type(), &DataType::Date32);
    let o = ReadOptions::from_pairs(["xpt_dates=number"]).unwrap();
    assert_eq!(o.xpt_dates, XptDates::Number);
    let raw = read::open_with_options(&path, None, &o).unwrap();
    assert_eq!(raw.schema().field(0).data_type(), &DataType::Float64);
    // As JSON (ConvertOptions' `read`, the bindings).
    let j: ReadOptions = serde_json::from_str(r#"{"xpt_dates": "number"}"#).unwrap();
    assert_eq!(j, o);
    assert_eq!(
        serde_json::to_value(ReadOptions::default()).unwrap()["xpt_dates"],
        "typed"
    );
    assert!(serde_json::from_str::<ReadOptions>(r#"{"xpt_dates": "raw"}"#).is_err());
    for (pair, reason, field) in [
        ("xpt_dates=raw", "invalid_option", "xpt_dates"),
        ("dates=number", "unknown_option", "dates"),
        ("xpt_dates", "invalid_option", "read_option"),
        (
            "csv_max_field_bytes=0",
            "invalid_option",
            "csv_max_field_bytes",
        ),
    ] {
        let e = ReadOptions::from_pairs([pair]).unwrap_err();
        assert_eq!(e.reason(), reason, "{pair}");
        assert_eq!(e.field(), Some(field), "{pair}");
    }
    assert_eq!(
        ReadOptions::from_pairs(["xpt_dates=typed", "xpt_allow_nul_padding=true"]).unwrap(),
        ReadOptions {
            xpt_allow_nul_padding: true,
            ..ReadOptions::default()
        }
    );
}
