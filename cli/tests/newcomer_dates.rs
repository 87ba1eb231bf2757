//! Newcomer finding 17: SAS dates in XPT files come out of `convert` and of exports from a directory of XPT files
//! as dates (ISO 8601 in CSV, `date32` in Parquet), and `--read-option xpt_dates=number` keeps the SAS numbers.
//!
//! Oracle: the CDISC Dataset-JSON example `adsl.json`, which holds the rows of `adsl.xpt` with the dates as ISO
//! text. Both are read from `../shared/conformance` beside the repository (copied into a temporary source
//! directory for the export); where it is absent the tests say so and pass, unless `TRIALPORT_REQUIRE_CONFORMANCE`
//! is set or `CI=true`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Date32Type};
use chrono::NaiveDate;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

/// The date columns of CDISC's `adsl.json` (dataType `date`, stored as SAS numbers): name -> ISO dates by row.
fn expected_dates(conformance: &Path) -> Vec<(String, Vec<Option<String>>)> {
    let json: Value = serde_json::from_slice(
        &fs::read(conformance.join("datasetjson-examples/adam/adsl.json")).unwrap(),
    )
    .unwrap();
    let rows = json["rows"].as_array().unwrap();
    json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, c)| c["dataType"] == "date" && c["targetDataType"] == "integer")
        .map(|(j, c)| {
            let values = rows
                .iter()
                .map(|r| r[j].as_str().map(str::to_string))
                .collect();
            (c["name"].as_str().unwrap().to_string(), values)
        })
        .collect()
}

/// The CSV file at `path` as its header and rows.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// Checks that the CSV at `path` holds the dates of `expected` as ISO text (or the SAS numbers when `numbers`).
fn check_csv_dates(path: &Path, expected: &[(String, Vec<Option<String>>)], numbers: bool) {
    let (header, rows) = read_csv(path);
    let sas_epoch = NaiveDate::from_ymd_opt(1960, 1, 1).unwrap();
    for (name, values) in expected {
        let i = header.iter().position(|h| h == name).unwrap();
        assert_eq!(rows.len(), values.len());
        for (r, want) in rows.iter().zip(values) {
            match (want, numbers) {
                (None, _) => assert_eq!(r[i], "", "{name}"),
                (Some(iso), false) => assert_eq!(&r[i], iso, "{name}"),
                // A SAS date: days since 1960-01-01 (written as a double, `19725.0`).
                (Some(iso), true) => {
                    let d = NaiveDate::parse_from_str(iso, "%Y-%m-%d").unwrap();
                    let days = (d - sas_epoch).num_days() as f64;
                    assert_eq!(r[i].parse::<f64>().unwrap(), days, "{name}");
                }
            }
        }
    }
}

#[test]
fn n17_convert_of_an_adam_xpt_gives_iso_dates_and_xpt_dates_number_keeps_sas_numbers() {
    let Some(conformance) = conformance_dir() else {
        return;
    };
    let expected = expected_dates(&conformance);
    // TRTSDT, TRTEDT, DISONSDT, VISIT1DT, RFENDT.
    assert_eq!(expected.len(), 5);
    let adsl = conformance.join("datasetjson-examples/adam/adsl.xpt");
    let dir = tempfile::tempdir().unwrap();
    let csv_out = dir.path().join("adsl.csv");
    let v = stdout_json(&run(&[
        "convert",
        adsl.to_str().unwrap(),
        "-o",
        csv_out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["rows"], 254);
    check_csv_dates(&csv_out, &expected, false);

    // The SAS numbers, by the read option.
    let raw_out = dir.path().join("adsl-raw.csv");
    stdout_json(&run(&[
        "convert",
        adsl.to_str().unwrap(),
        "-o",
        raw_out.to_str().unwrap(),
        "--read-option",
        "xpt_dates=number",
        "--json",
    ]));
    check_csv_dates(&raw_out, &expected, true);

    // Parquet keeps the type: date32.
    let pq = dir.path().join("adsl.parquet");
    stdout_json(&run(&[
        "convert",
        adsl.to_str().unwrap(),
        "-o",
        pq.to_str().unwrap(),
        "--json",
    ]));
    let stream = trialport_formats::read::open(&pq, None).unwrap();
    let schema = stream.schema().clone();
    let batches = stream.collect().unwrap();
    let i = schema.index_of("TRTSDT").unwrap();
    assert_eq!(schema.field(i).data_type(), &DataType::Date32);
    let first = batches[0].column(i).as_primitive::<Date32Type>();
    assert!(first.is_valid(0));
    assert_eq!(
        first.value_as_date(0).unwrap().to_string(),
        expected[0].1[0].clone().unwrap()
    );

    // A bad read option is the standard error, naming the option.
    let e = error_json(
        &run(&[
            "convert",
            adsl.to_str().unwrap(),
            "-o",
            dir.path().join("x.csv").to_str().unwrap(),
            "--read-option",
            "xpt_dates=raw",
            "--json",
        ]),
        "EXP002",
    );
    assert_eq!(e["details"]["reason"], "invalid_option", "{e}");
    assert_eq!(e["field"], "xpt_dates", "{e}");
    assert!(!dir.path().join("x.csv").exists());
}

#[test]
fn n17_an_export_from_a_directory_of_xpt_files_writes_dates_as_dates() {
    let Some(conformance) = conformance_dir() else {
        return;
    };
    let expected = expected_dates(&conformance);
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("source").join("CDISCPILOT01");
    fs::create_dir_all(&study).unwrap();
    fs::copy(
        conformance.join("datasetjson-examples/adam/adsl.xpt"),
        study.join("adsl.xpt"),
    )
    .unwrap();
    let home = dir.path().join("home");
    let cred = init_home(&home, &dir.path().join("source"));
    let job = stdout_json(&run(&home_args(
        &home,
        &cred,
        &[
            "--json",
            "export",
            "data",
            "--study",
            "CDISCPILOT01",
            "--datasets",
            "ADSL",
            "--format",
            "csv",
            "--wait",
        ],
    )));
    assert_eq!(job["state"], "succeeded", "{job}");
    let got = dir.path().join("adsl.csv");
    stdout_text(&run(&home_args(
        &home,
        &cred,
        &[
            "download",
            job["id"].as_str().unwrap(),
            "--artifact",
            "adsl.csv",
            "-o",
            got.to_str().unwrap(),
        ],
    )));
    check_csv_dates(&got, &expected, false);
}

#[test]
fn n17_formats_lists_the_xpt_read_options() {
    let v = stdout_json(&run(&["formats", "--json"]));
    let xpt = v
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "xpt")
        .unwrap();
    let dates = xpt["read_options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "xpt_dates")
        .unwrap();
    assert_eq!(dates["default"], "typed");
    assert_eq!(dates["values"], serde_json::json!(["typed", "number"]));
    // The write options are not mixed with them.
    let write: Vec<&str> = xpt["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(!write.contains(&"xpt_dates"), "{write:?}");
    let text = stdout_text(&run(&["formats"]));
    assert!(
        text.contains("xpt read options (convert --read-option K=V):"),
        "{text}"
    );
    assert!(text.contains("xpt_dates"), "{text}");
}
