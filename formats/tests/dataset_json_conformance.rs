//! Dataset-JSON against the CDISC examples of `shared/conformance/datasetjson-examples` (formats.md §4.8, §8):
//! each example XPT converted to Dataset-JSON gives the columns and rows of the CDISC `.json` beside it, cell for
//! cell; our output validates against the CDISC JSON Schema; the published `.json`, `.ndjson` and `.dsjc` read
//! alike; our three forms read back to the same rows; the Japanese example reads and is refused by XPT v5.
//!
//! The files are read from `../shared/conformance` beside the repository. Where that folder is absent (a fresh
//! clone) the tests say so and pass, unless `TRIALPORT_REQUIRE_CONFORMANCE` is set or `CI=true`, when its absence
//! fails them.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_formats::dataset_json::{self, DatasetJsonFormat};
use trialport_formats::xpt::{self, XptFormat};

mod common;
use common::conformance_dir;

/// The CDISC pairs: an XPT written by SAS and the Dataset-JSON file CDISC made from it.
const PAIRS: &[&str] = &[
    "sdtm/dm",
    "sdtm/ae",
    "sdtm/ts",
    "sdtm/suppdm",
    "adam/adsl",
    "adam/adtte",
];

fn examples(dir: &Path) -> PathBuf {
    dir.join("datasetjson-examples")
}

fn collect(stream: trialport_core::source::BatchStream) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = stream.schema().clone();
    (schema, stream.collect().unwrap())
}

fn read_json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// What the XPT cannot carry, taken from the CDISC file the way a define.xml would give it: item OIDs, data
/// types, target data types, key sequences, the item group OID and the dataset label (the ADTTE XPT has none, and
/// the ADSL XPT says "Subject-Level Analysis Dataset" where the define says "Subject-Level Analysis"). Column names,
/// labels, lengths and display formats come from the XPT.
fn define_meta(cdisc: &Value) -> DatasetMeta {
    let s = |v: &Value| v.as_str().map(str::to_string);
    DatasetMeta {
        item_group_oid: s(&cdisc["itemGroupOID"]),
        label: s(&cdisc["label"]),
        columns: cdisc["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| ColumnMeta {
                name: c["name"].as_str().unwrap().to_string(),
                item_oid: s(&c["itemOID"]),
                data_type: s(&c["dataType"]),
                target_data_type: s(&c["targetDataType"]),
                key_sequence: c["keySequence"].as_u64().map(|k| k as u32),
                ..ColumnMeta::default()
            })
            .collect(),
        ..DatasetMeta::default()
    }
}

fn write(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    meta: &DatasetMeta,
    options: &FormatOptions,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = DatasetJsonFormat
        .encoder(schema, meta, options, &mut out)
        .unwrap();
    for b in batches {
        enc.write(b).unwrap();
    }
    let summary = enc.finish().unwrap();
    assert_eq!(
        summary.rows,
        batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    );
    out
}

/// Converts the example XPT `name` (e.g. `sdtm/dm`) to Dataset-JSON in `form`.
fn convert(dir: &Path, name: &str, form: &str) -> (Vec<u8>, Value) {
    let ex = examples(dir);
    let cdisc = read_json_file(&ex.join(format!("{name}.json")));
    let (schema, batches) = collect(xpt::read_xpt(&ex.join(format!("{name}.xpt"))).unwrap());
    let bytes = write(
        &schema,
        &batches,
        &define_meta(&cdisc),
        &FormatOptions::new().with("form", form),
    );
    (bytes, cdisc)
}

/// Converts the example XPT `name` to Dataset-JSON with nothing from the define but the data types, so that
/// everything else is the XPT's.
fn convert_xpt_only(dir: &Path, name: &str) -> Vec<u8> {
    let ex = examples(dir);
    let cdisc = read_json_file(&ex.join(format!("{name}.json")));
    let (schema, batches) = collect(xpt::read_xpt(&ex.join(format!("{name}.xpt"))).unwrap());
    let mut meta = define_meta(&cdisc);
    meta.label = None;
    meta.item_group_oid = None;
    write(&schema, &batches, &meta, &FormatOptions::new())
}

/// Where an example XPT and the define behind CDISC's JSON disagree (found by this test): file, column, attribute,
/// the XPT's value, the define's value.
const KNOWN_DIFFERENCES: &[(&str, &str, &str, &str, &str)] = &[
    ("adam/adtte", "PARAM", "length", "32", "100"),
    ("adam/adtte", "PARAMCD", "length", "4", "8"),
    (
        "adam/adtte",
        "STARTDT",
        "label",
        "Time-to-Event Origin Date for Subject",
        "Time to Event Origin Date for Subject",
    ),
    (
        "adam/adtte",
        "SRCDOM",
        "label",
        "Source Data",
        "Source Domain",
    ),
];

/// Cells are equal when both are numbers of equal value (`54` and `54.0`), or equal JSON otherwise.
fn same_cell(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[test]
fn each_example_xpt_converts_to_the_cdisc_json_cell_for_cell() {
    let Some(dir) = conformance_dir() else { return };
    let mut differences_seen = 0;
    for name in PAIRS {
        let (bytes, cdisc) = convert(&dir, name, "json");
        let ours: Value = serde_json::from_slice(&bytes).unwrap();
        let xpt_meta = DatasetMeta::from_schema(
            xpt::read_xpt(&examples(&dir).join(format!("{name}.xpt")))
                .unwrap()
                .schema(),
        );
        for attr in ["name", "itemGroupOID", "records", "datasetJSONVersion"] {
            assert_eq!(ours[attr], cdisc[attr], "{name}: {attr}");
        }
        assert_eq!(ours["label"], cdisc["label"], "{name}: label");
        // The XPT's modification time is what CDISC gives as dbLastModifiedDateTime.
        assert_eq!(
            ours["dbLastModifiedDateTime"], cdisc["dbLastModifiedDateTime"],
            "{name}"
        );
        let (oc, cc) = (
            ours["columns"].as_array().unwrap(),
            cdisc["columns"].as_array().unwrap(),
        );
        assert_eq!(oc.len(), cc.len(), "{name}: columns");
        for (o, c) in oc.iter().zip(cc) {
            let col = c["name"].as_str().unwrap();
            for attr in [
                "itemOID",
                "name",
                "dataType",
                "targetDataType",
                "keySequence",
            ] {
                assert_eq!(o.get(attr), c.get(attr), "{name}.{col}: {attr}");
            }
            let xc = xpt_meta.column(col).unwrap();
            // Where the ADTTE XPT and its define disagree, ours is the XPT's (the source of the data).
            let known = KNOWN_DIFFERENCES
                .iter()
                .find(|d| d.0 == *name && d.1 == col);
            differences_seen += usize::from(known.is_some());
            match known {
                Some((_, _, "label", xpt_value, define_value)) => {
                    assert_eq!(c["label"], *define_value, "{name}.{col}");
                    assert_eq!(o["label"], *xpt_value, "{name}.{col}");
                }
                _ => assert_eq!(o.get("label"), c.get("label"), "{name}.{col}: label"),
            }
            // Lengths and display formats come from the XPT: equal to CDISC's where its define gives them.
            // Where it does not (character dates such as SDTM --DTC have no define length; the define has no
            // display format but for numeric dates), ours are exactly the XPT's.
            match c.get("length") {
                Some(l) if !matches!(known, Some((_, _, "length", _, _))) => {
                    assert_eq!(o.get("length"), Some(l), "{name}.{col}: length")
                }
                Some(l) => {
                    let (_, _, _, xpt_value, define_value) = known.unwrap();
                    assert_eq!(l.to_string(), *define_value, "{name}.{col}");
                    assert_eq!(o["length"].to_string(), *xpt_value, "{name}.{col}");
                }
                None => assert_eq!(
                    o.get("length").and_then(Value::as_u64),
                    xc.length.map(u64::from),
                    "{name}.{col}: length"
                ),
            }
            match c.get("displayFormat") {
                Some(f) => assert_eq!(o.get("displayFormat"), Some(f), "{name}.{col}"),
                None => assert_eq!(
                    o.get("displayFormat").and_then(Value::as_str),
                    xc.display_format.as_deref(),
                    "{name}.{col}: displayFormat"
                ),
            }
            // Nothing else.
            for k in o.as_object().unwrap().keys() {
                assert!(
                    c.get(k).is_some() || k == "length" || k == "displayFormat",
                    "{name}.{col}: {k}"
                );
            }
        }
        let (or, cr) = (
            ours["rows"].as_array().unwrap(),
            cdisc["rows"].as_array().unwrap(),
        );
        assert_eq!(or.len(), cr.len(), "{name}: rows");
        let mut cells = 0;
        for (i, (o, c)) in or.iter().zip(cr).enumerate() {
            let (o, c) = (o.as_array().unwrap(), c.as_array().unwrap());
            assert_eq!(o.len(), c.len(), "{name} row {i}");
            for (j, (a, b)) in o.iter().zip(c).enumerate() {
                assert!(
                    same_cell(a, b),
                    "{name} row {i} column {}: {a} vs {b}",
                    cc[j]["name"]
                );
                cells += 1;
            }
        }
        assert!(cells > 0, "{name}");
    }
    assert_eq!(differences_seen, KNOWN_DIFFERENCES.len());
}

#[test]
fn our_json_validates_against_the_cdisc_schema() {
    let Some(dir) = conformance_dir() else { return };
    let schema = read_json_file(&dir.join("schema/dataset.schema.json"));
    let validator = jsonschema::draft201909::new(&schema).unwrap();
    // The schema accepts the published examples (a check of the validator itself).
    let example = read_json_file(&examples(&dir).join("adam/adsl.json"));
    assert!(validator.is_valid(&example));
    for name in PAIRS {
        let (bytes, _) = convert(&dir, name, "json");
        let ours: Value = serde_json::from_slice(&bytes).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&ours)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        // NDJSON's first line is the metadata; with `rows` optional, the same schema applies to it.
        let (nd, _) = convert(&dir, name, "ndjson");
        let text = String::from_utf8(nd).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert!(validator.is_valid(&first), "{name}: ndjson metadata");
        let ncols = first["columns"].as_array().unwrap().len();
        let rows: Vec<Value> = text
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len() as u64, first["records"].as_u64().unwrap());
        assert!(rows.iter().all(|r| r.as_array().unwrap().len() == ncols));
    }
    // A wrong document fails: the validator is not vacuous.
    let mut bad: Value = serde_json::from_slice(&convert(&dir, "sdtm/dm", "json").0).unwrap();
    bad["columns"][0]["dataType"] = Value::from("text");
    assert!(!validator.is_valid(&bad));
}

#[test]
fn published_json_ndjson_and_dsjc_read_alike() {
    let Some(dir) = conformance_dir() else { return };
    for name in ["sdtm/dm", "sdtm/ae", "adam/adsl"] {
        let ex = examples(&dir);
        let (json_schema, json) =
            collect(dataset_json::read_dataset_json(&ex.join(format!("{name}.json"))).unwrap());
        let cdisc = read_json_file(&ex.join(format!("{name}.json")));
        assert_eq!(
            json.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
            cdisc["records"].as_u64().unwrap()
        );
        for ext in ["ndjson", "dsjc"] {
            let path = ex.join(format!("{name}.{ext}"));
            // The directory-source path: by extension, with Dataset-JSON sniffed in `.ndjson`.
            let (schema, batches) = collect(trialport_formats::read::open(&path, None).unwrap());
            assert_eq!(schema.fields(), json_schema.fields(), "{name}.{ext}");
            let (a, b) = (
                DatasetMeta::from_schema(&schema),
                DatasetMeta::from_schema(&json_schema),
            );
            assert_eq!(a.columns, b.columns, "{name}.{ext}");
            assert_eq!(
                (a.name, a.label, a.item_group_oid),
                (b.name, b.label, b.item_group_oid)
            );
            let columns =
                |b: &[RecordBatch]| -> Vec<_> { b.iter().map(|b| b.columns().to_vec()).collect() };
            assert_eq!(columns(&batches), columns(&json), "{name}.{ext}");
        }
    }
}

#[test]
fn the_example_types_and_values_read_as_the_standard_says() {
    let Some(dir) = conformance_dir() else { return };
    let path = examples(&dir).join("adam/adsl.json");
    let (schema, batches) = collect(trialport_formats::read::open(&path, None).unwrap());
    let meta = DatasetMeta::from_schema(&schema);
    assert_eq!(meta.name, "ADSL");
    assert_eq!(meta.label.as_deref(), Some("Subject-Level Analysis"));
    assert_eq!(
        schema
            .metadata()
            .get(dataset_json::KEY_STUDY_OID)
            .map(String::as_str),
        Some("TDF_ADaM.ADaMIG.1.1")
    );
    use arrow::datatypes::DataType;
    let ty = |c: &str| schema.field_with_name(c).unwrap().data_type().clone();
    assert_eq!(ty("TRTSDT"), DataType::Date32);
    assert_eq!(ty("AGE"), DataType::Int64);
    assert_eq!(ty("BMIBL"), DataType::Float64);
    assert_eq!(ty("RFSTDTC"), DataType::Utf8);
    let col = meta.column("TRTSDT").unwrap();
    assert_eq!(col.display_format.as_deref(), Some("DATE9."));
    assert_eq!(col.target_data_type.as_deref(), Some("integer"));
    // First row: TRTSDT 2014-01-02, BMIBL 25.1.
    let b = &batches[0];
    let d = b
        .column_by_name("TRTSDT")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Date32Array>()
        .unwrap();
    assert_eq!(d.value_as_date(0).unwrap().to_string(), "2014-01-02");
    let f = b
        .column_by_name("BMIBL")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap();
    assert_eq!(f.value(0), 25.1);
}

#[test]
fn our_json_ndjson_and_dsjc_round_trip_to_the_same_rows() {
    let Some(dir) = conformance_dir() else { return };
    for name in PAIRS {
        let (json, _) = convert(&dir, name, "json");
        let (ndjson, _) = convert(&dir, name, "ndjson");
        let (dsjc, _) = convert(&dir, name, "dsjc");
        // DSJC is a zlib stream (the standard; the published examples are gzip) of exactly our compact NDJSON.
        assert_eq!(dsjc[0], 0x78, "{name}");
        let mut inflated = Vec::new();
        flate2::read::ZlibDecoder::new(&dsjc[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, ndjson, "{name}");
        let read = |bytes: Vec<u8>| {
            collect(dataset_json::read_dataset_json_from(std::io::Cursor::new(bytes)).unwrap())
        };
        let (s1, b1) = read(json);
        let (s2, b2) = read(ndjson);
        let (s3, b3) = read(dsjc);
        assert_eq!(s1, s2, "{name}");
        assert_eq!(s1, s3, "{name}");
        assert_eq!(b1, b2, "{name}");
        assert_eq!(b1, b3, "{name}");
        // And the rows are the CDISC file's rows, read by the same reader.
        let (cs, cb) = collect(
            dataset_json::read_dataset_json(&examples(&dir).join(format!("{name}.json"))).unwrap(),
        );
        let plain = |s: &SchemaRef| -> Vec<_> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        assert_eq!(plain(&s1), plain(&cs), "{name}");
        assert_eq!(
            arrow::compute::concat_batches(&s1, &b1).unwrap().columns(),
            arrow::compute::concat_batches(&cs, &cb).unwrap().columns(),
            "{name}"
        );
    }
}

#[test]
fn xpt_to_dataset_json_and_back_keeps_labels_lengths_and_values() {
    let Some(dir) = conformance_dir() else { return };
    for name in PAIRS {
        let ex = examples(&dir);
        let xpt_path = ex.join(format!("{name}.xpt"));
        let original = std::fs::read(&xpt_path).unwrap();
        let (schema, _) = collect(xpt::read_xpt(&xpt_path).unwrap());
        let json = convert_xpt_only(&dir, name);
        let (back_schema, back) =
            collect(dataset_json::read_dataset_json_from(std::io::Cursor::new(json)).unwrap());
        let (a, b) = (
            DatasetMeta::from_schema(&schema),
            DatasetMeta::from_schema(&back_schema),
        );
        assert_eq!((&a.name, &a.label), (&b.name, &b.label), "{name}");
        for (x, y) in a.columns.iter().zip(&b.columns) {
            assert_eq!(
                (&x.name, &x.label, &x.length, &x.display_format),
                (&y.name, &y.label, &y.length, &y.display_format),
                "{name}"
            );
        }
        // Written as XPT again with the original header fields, the bytes are SAS's: dates came back as Arrow
        // dates, integers as integers, and both are the same SAS numbers.
        let options = xpt::reproduce_options(&schema);
        let mut out = Vec::new();
        {
            let mut enc = XptFormat
                .encoder(&back_schema, &b, &options, &mut out)
                .unwrap();
            for batch in &back {
                enc.write(batch).unwrap();
            }
            enc.finish().unwrap();
        }
        assert!(
            out == original,
            "{name}: the XPT differs after the round trip"
        );
    }
}

#[test]
fn the_japanese_example_reads_and_xpt_v5_refuses_it_without_an_encoding() {
    let Some(dir) = conformance_dir() else { return };
    let path = examples(&dir).join("i18n/ae.json");
    let (schema, batches) = collect(trialport_formats::read::open(&path, None).unwrap());
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1191);
    let term = batches[0]
        .column_by_name("AETERM")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap()
        .value(0)
        .to_string();
    assert_eq!(term, "アプリケーションサイトの紅斑");
    let meta = DatasetMeta::from_schema(&schema);
    let xpt_out = |options: FormatOptions| -> trialport_core::Result<u64> {
        let mut out = Vec::new();
        let mut enc = XptFormat.encoder(&schema, &meta, &options, &mut out)?;
        for b in &batches {
            enc.write(b)?;
        }
        Ok(enc.finish()?.rows)
    };
    let e = xpt_out(FormatOptions::new()).unwrap_err();
    assert_eq!(e.code(), trialport_core::ErrorCode::Validation);
    assert_eq!(e.reason(), "fda_check_failed");
    assert!(
        Value::Object(e.details().clone())
            .to_string()
            .contains("AETERM"),
        "{:?}",
        e.details()
    );
    assert_eq!(
        xpt_out(FormatOptions::new().with("encoding", "utf8")).unwrap(),
        1191
    );
    // And back to Dataset-JSON, the text is unchanged.
    let json = write(&schema, &batches, &meta, &FormatOptions::new());
    let v: Value = serde_json::from_slice(&json).unwrap();
    let cdisc = read_json_file(&path);
    assert_eq!(v["rows"], cdisc["rows"]);
}
