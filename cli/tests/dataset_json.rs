//! `trialport convert` with CDISC Dataset-JSON: XPT to Dataset-JSON and back, the three forms, the published
//! compressed examples as input, `--meta`, and bad input as the standard error JSON.

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{command, error_json, run, stdout_json};

/// `trialport convert` with SOURCE_DATE_EPOCH set: an XPT header states when it was written, and the round trips
/// below compare bytes written at different instants.
fn convert(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "convert",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    command(&args)
        .env("SOURCE_DATE_EPOCH", "1733443200")
        .output()
        .unwrap()
}

const DM_CSV: &str = "USUBJID,AGE,SEX,RFSTDTC\n\
S1-001,34,F,2024-01-08\n\
S1-002,51,M,2024-02-14\n\
S1-003,,F,\n";

const DM_META: &str = r#"{"name": "DM", "label": "Demographics", "columns": [
    {"name": "USUBJID", "label": "Unique Subject Identifier", "length": 8, "keySequence": 1},
    {"name": "AGE", "label": "Age", "dataType": "integer"},
    {"name": "SEX", "label": "Sex", "length": 1},
    {"name": "RFSTDTC", "label": "Subject Reference Start Date/Time", "length": 10, "dataType": "date"}]}"#;

/// `dm.xpt` made from CSV with labels and lengths, in a new temporary directory.
fn dm_xpt() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("dm.csv");
    fs::write(&csv, DM_CSV).unwrap();
    let meta = tmp.path().join("dm-meta.json");
    fs::write(&meta, DM_META).unwrap();
    let xpt = tmp.path().join("dm.xpt");
    stdout_json(&convert(&csv, &xpt, &["--meta", meta.to_str().unwrap()]));
    (tmp, xpt)
}

#[test]
fn xpt_to_dataset_json_and_back_gives_the_same_xpt() {
    let (tmp, xpt) = dm_xpt();
    let json = tmp.path().join("dm.json");
    let v = stdout_json(&convert(&xpt, &json, &["--to", "dataset-json"]));
    assert_eq!(
        (v["format"].as_str(), v["rows"].as_u64()),
        (Some("dataset-json"), Some(3))
    );
    let doc: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["name"], "DM");
    assert_eq!(doc["label"], "Demographics");
    assert_eq!(doc["records"], 3);
    assert_eq!(doc["columns"][0]["label"], "Unique Subject Identifier");
    assert_eq!(doc["columns"][0]["length"], 8);
    // XPT numerics are doubles; the metadata's dataType travelled in no XPT field, so AGE is a double here.
    assert_eq!(doc["columns"][1]["dataType"], "double");
    // The CSV reader read RFSTDTC as dates, which XPT stores as SAS dates with DATE9.: ISO dates to convert
    // back to numbers (target integer), as ADaM's.
    let rfstdtc = &doc["columns"][3];
    assert_eq!(
        (
            &rfstdtc["dataType"],
            &rfstdtc["targetDataType"],
            &rfstdtc["displayFormat"]
        ),
        (
            &Value::from("date"),
            &Value::from("integer"),
            &Value::from("DATE9.")
        )
    );
    assert_eq!(
        doc["rows"][0],
        serde_json::json!(["S1-001", 34, "F", "2024-01-08"])
    );
    assert_eq!(
        doc["rows"][2],
        serde_json::json!(["S1-003", null, "F", null])
    );

    // `.json` holding Dataset-JSON is read as Dataset-JSON: back to XPT, the bytes are the first XPT's.
    let back = tmp.path().join("back.xpt");
    let v = stdout_json(&convert(&json, &back, &[]));
    assert_eq!(v["format"], "xpt");
    assert!(fs::read(&back).unwrap() == fs::read(&xpt).unwrap());

    // Without --to, `.json` is plain JSON records.
    let plain = tmp.path().join("plain.json");
    stdout_json(&convert(&xpt, &plain, &[]));
    let records: Value = serde_json::from_slice(&fs::read(&plain).unwrap()).unwrap();
    assert!(records.is_array());
}

#[test]
fn ndjson_and_dsjc_forms_convert_back_to_the_same_xpt() {
    let (tmp, xpt) = dm_xpt();
    // The form follows the file name: `.dsjc` alone says Dataset-JSON, compressed; `.ndjson` needs `--to`.
    let forms: [(&str, &str, &[&str]); 2] = [
        ("dm.ndjson", "ndjson", &["--to", "dataset-json"]),
        ("dm.dsjc", "dsjc", &[]),
    ];
    for (file, form, args) in forms {
        let out = tmp.path().join(file);
        let v = stdout_json(&convert(&xpt, &out, args));
        assert_eq!(v["format"], "dataset-json", "{file}");
        assert_eq!(v["rows"], 3, "{file}");
        let back = tmp.path().join(format!("back-{form}.xpt"));
        stdout_json(&convert(&out, &back, &[]));
        assert!(
            fs::read(&back).unwrap() == fs::read(&xpt).unwrap(),
            "{file}"
        );
    }
    let dsjc = fs::read(tmp.path().join("dm.dsjc")).unwrap();
    assert_eq!(dsjc[0], 0x78, "zlib");
}

#[test]
fn meta_gives_dataset_json_its_types_and_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("dm.csv");
    fs::write(&csv, DM_CSV).unwrap();
    let meta = tmp.path().join("dm-meta.json");
    fs::write(&meta, DM_META).unwrap();
    let out = tmp.path().join("dm.ndjson");
    stdout_json(&convert(
        &csv,
        &out,
        &[
            "--to",
            "dataset-json",
            "--option",
            "form=ndjson",
            "--option",
            "created=2025-01-02T03:04:05Z",
            "--option",
            "study_oid=S1",
            "--meta",
            meta.to_str().unwrap(),
        ],
    ));
    let text = fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let head: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(head["datasetJSONCreationDateTime"], "2025-01-02T03:04:05Z");
    assert_eq!(head["studyOID"], "S1");
    assert_eq!(head["itemGroupOID"], "IG.DM");
    let cols = head["columns"].as_array().unwrap();
    assert_eq!(cols[1]["dataType"], "integer");
    assert_eq!(cols[1]["itemOID"], "IT.DM.AGE");
    assert_eq!(cols[3]["dataType"], "date");
    assert_eq!(cols[3]["length"], 10);
    // The CSV reader reads YYYY-MM-DD as dates: numbers to the receiver.
    assert_eq!(cols[3]["targetDataType"], "integer");
    assert_eq!(lines.next().unwrap(), r#"["S1-001",34,"F","2024-01-08"]"#);
}

#[test]
fn bad_dataset_json_is_an_exp002_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("dm.json");
    fs::write(
        &bad,
        r#"{"datasetJSONCreationDateTime":"2024-11-11T15:09:15","datasetJSONVersion":"1.1.0",
            "itemGroupOID":"IG.DM","records":1,"name":"DM","label":"",
            "columns":[{"itemOID":"IT.DM.AGE","name":"AGE","label":"Age","dataType":"integer"}],
            "rows":[["34"]]}"#,
    )
    .unwrap();
    let out_path = tmp.path().join("dm.xpt");
    let e = error_json(&convert(&bad, &out_path, &[]), "EXP002");
    assert_eq!(e["details"]["reason"], "type_mismatch");
    assert_eq!(e["field"], "AGE");
    assert!(!out_path.exists());
    // An option the format does not have is refused before anything is read.
    let out = convert(
        &bad,
        &tmp.path().join("x.json"),
        &["--to", "dataset-json", "--option", "form=xml"],
    );
    assert_eq!(
        error_json(&out, "EXP002")["details"]["reason"],
        "invalid_option"
    );
}

#[test]
fn the_published_compressed_examples_convert_to_xpt() {
    let Some(examples) = common::conformance_dir().map(|d| d.join("datasetjson-examples")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (name, rows) in [("sdtm/dm", 18), ("sdtm/ae", 74), ("adam/adsl", 254)] {
        let file = name.split('/').nth(1).unwrap();
        let xpt = tmp.path().join(format!("{file}.xpt"));
        let v = stdout_json(&convert(&examples.join(format!("{name}.dsjc")), &xpt, &[]));
        assert_eq!(v["rows"], rows, "{name}");
        // Back to Dataset-JSON: the rows are CDISC's.
        let json = tmp.path().join(format!("{file}.json"));
        stdout_json(&convert(&xpt, &json, &["--to", "dataset-json"]));
        let ours: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
        let cdisc: Value =
            serde_json::from_slice(&fs::read(examples.join(format!("{name}.json"))).unwrap())
                .unwrap();
        assert_eq!(ours["label"], cdisc["label"], "{name}");
        assert_eq!(ours["rows"], cdisc["rows"], "{name}");
    }
    // The Japanese example is refused by XPT v5, and accepted with an explicit encoding.
    let ae = examples.join("i18n/ae.json");
    let out_path = tmp.path().join("ae-ja.xpt");
    let out = convert(&ae, &out_path, &[]);
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["error"]["details"]["reason"], "fda_check_failed");
    assert!(!out_path.exists());
    let v = stdout_json(&convert(&ae, &out_path, &["--option", "encoding=utf8"]));
    assert_eq!(v["rows"], 1191);
}

#[test]
fn formats_lists_dataset_json_with_its_forms() {
    let v = stdout_json(&run(&["formats", "--json"]));
    let f = v
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "dataset-json")
        .unwrap();
    assert!(f["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "read"));
    let form = f["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "form")
        .unwrap();
    assert_eq!(
        form["values"],
        serde_json::json!(["json", "ndjson", "dsjc"])
    );
}
