//! Dataset-JSON input that breaks the standard: each case is EXP002 with a stable reason (and the field, the row
//! where there is one), never a panic, never a silently short table. Lenient where the standard is: attribute
//! order, `records` after `rows`, metadata-only files, gzip as well as zlib.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::path::Path;
use trialport_core::ErrorCode;
use trialport_formats::dataset_json;

const HEAD: &str = r#""datasetJSONCreationDateTime":"2024-11-11T15:09:15","datasetJSONVersion":"1.1.0","itemGroupOID":"IG.DM","name":"DM","label":"Demographics""#;
const COLUMNS: &str = r#""columns":[{"itemOID":"IT.DM.USUBJID","name":"USUBJID","label":"Subject","dataType":"string"},{"itemOID":"IT.DM.AGE","name":"AGE","label":"Age","dataType":"integer"},{"itemOID":"IT.DM.BRTHDT","name":"BRTHDT","label":"Birth","dataType":"date","targetDataType":"integer"}]"#;

/// Reads `text` fully: the rows read, or the first error (at opening or in a batch).
fn read(bytes: Vec<u8>) -> trialport_core::Result<usize> {
    let stream = dataset_json::read_dataset_json_from(std::io::Cursor::new(bytes))?;
    let batches = stream.collect()?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

fn json(records: &str, rows: &str) -> Vec<u8> {
    format!("{{{HEAD},\"records\":{records},{COLUMNS},\"rows\":[{rows}]}}").into_bytes()
}

fn fails(bytes: Vec<u8>, reason: &str) -> trialport_core::Error {
    let e = read(bytes).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Validation, "{e:?}");
    assert_eq!(e.reason(), reason, "{e:?}");
    e
}

const GOOD_ROWS: &str = r#"["S-1",34,"1990-05-01"],["S-2",null,null]"#;

#[test]
fn a_good_file_reads() {
    assert_eq!(read(json("2", GOOD_ROWS)).unwrap(), 2);
}

#[test]
fn cells_of_the_wrong_type_name_the_column_and_row() {
    for (rows, column, row) in [
        (r#"["S-1",34,"1990-05-01"],["S-2","34",null]"#, "AGE", 2),
        (r#"["S-1",34.5,null],["S-2",1,null]"#, "AGE", 1),
        (
            r#"["S-1",99999999999999999999,null],["S-2",1,null]"#,
            "AGE",
            1,
        ),
        (r#"[1,34,null],["S-2",1,null]"#, "USUBJID", 1),
        (r#"["S-1",true,null],["S-2",1,null]"#, "AGE", 1),
        (r#"["S-1",1,"1990-05"],["S-2",1,null]"#, "BRTHDT", 1),
        (r#"["S-1",1,"1990-02-30"],["S-2",1,null]"#, "BRTHDT", 1),
        (r#"["S-1",1,19000],["S-2",1,null]"#, "BRTHDT", 1),
    ] {
        let e = fails(json("2", rows), "type_mismatch");
        assert_eq!(e.field(), Some(column), "{rows}");
        assert_eq!(e.details()["row"].as_u64(), Some(row), "{rows}");
        assert!(
            !e.message().contains("S-"),
            "the message quotes data: {}",
            e.message()
        );
    }
    // A whole number written as 34.0 is an integer.
    assert_eq!(read(json("1", r#"["S-1",34.0,null]"#)).unwrap(), 1);
}

#[test]
fn records_must_equal_the_rows() {
    let e = fails(json("3", GOOD_ROWS), "records_mismatch");
    assert_eq!(
        (
            e.details()["records"].as_u64(),
            e.details()["rows"].as_u64()
        ),
        (Some(3), Some(2))
    );
    fails(json("1", GOOD_ROWS), "records_mismatch");
    let nd = format!("{{{HEAD},\"records\":5,{COLUMNS}}}\n[\"S-1\",34,null]\n");
    fails(nd.into_bytes(), "records_mismatch");
    // Without rows, records may be anything: a metadata-only file.
    let meta_only = format!("{{{HEAD},\"records\":5,{COLUMNS}}}");
    assert_eq!(read(meta_only.into_bytes()).unwrap(), 0);
}

#[test]
fn rows_must_have_one_cell_per_column() {
    let e = fails(json("2", r#"["S-1",34],["S-2",1,null]"#), "row_length");
    assert_eq!(e.details()["row"].as_u64(), Some(1));
    fails(json("1", r#"["S-1",34,null,null]"#), "row_length");
}

#[test]
fn column_types_must_be_the_standards() {
    let with_column = |col: &str| {
        format!("{{{HEAD},\"records\":0,\"columns\":[{col}],\"rows\":[]}}").into_bytes()
    };
    let e = fails(
        with_column(r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"number"}"#),
        "unknown_data_type",
    );
    assert_eq!(e.field(), Some("columns[0].dataType"));
    for col in [
        r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"string","targetDataType":"integer"}"#,
        r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"date","targetDataType":"decimal"}"#,
        r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"date","targetDataType":"float"}"#,
    ] {
        fails(with_column(col), "invalid_target_data_type");
    }
    fails(
        with_column(r#"{"itemOID":"IT.A","name":"A","dataType":"string"}"#),
        "missing_attribute",
    );
    fails(
        with_column(r#"{"itemOID":"","name":"A","label":"","dataType":"string"}"#),
        "invalid_attribute",
    );
    fails(
        with_column(r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"string","length":0}"#),
        "invalid_attribute",
    );
    let e = fails(
        with_column(
            r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"string","format":"$8."}"#,
        ),
        "unknown_attribute",
    );
    assert_eq!(e.field(), Some("columns[0].format"));
    fails(
        with_column(
            r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"string"},{"itemOID":"IT.B","name":"A","label":"","dataType":"string"}"#,
        ),
        "duplicate_column",
    );
    // Decimals are strings; numbers written for them are read as their text.
    let dec = with_column(
        r#"{"itemOID":"IT.A","name":"A","label":"","dataType":"decimal","targetDataType":"decimal"}"#,
    );
    assert_eq!(read(dec).unwrap(), 0);
}

#[test]
fn top_level_attributes_are_checked() {
    for (text, reason, field) in [
        (
            format!("{{\"datasetJSONVersion\":\"1.1.0\",\"itemGroupOID\":\"IG.DM\",\"name\":\"DM\",\"label\":\"\",\"records\":0,{COLUMNS}}}"),
            "missing_attribute",
            "datasetJSONCreationDateTime",
        ),
        (
            format!("{{{HEAD},{COLUMNS},\"rows\":[]}}"),
            "missing_attribute",
            "records",
        ),
        (
            format!("{{{HEAD},\"records\":0,\"rows\":[]}}"),
            "missing_attribute",
            "columns",
        ),
        (
            format!("{{{},\"records\":0,{COLUMNS}}}", HEAD.replace("1.1.0", "1.0")),
            "unsupported_version",
            "datasetJSONVersion",
        ),
        (
            format!("{{{},\"records\":0,{COLUMNS}}}", HEAD.replace("2024-11-11T15:09:15", "2024-11-11")),
            "invalid_attribute",
            "datasetJSONCreationDateTime",
        ),
        (
            format!("{{{HEAD},\"records\":-1,{COLUMNS}}}"),
            "invalid_attribute",
            "records",
        ),
        (
            format!("{{{HEAD},\"records\":0,\"dbLastModifiedDateTime\":\"2025-01-01T00:00:00\",{COLUMNS}}}"),
            "invalid_attribute",
            "dbLastModifiedDateTime",
        ),
        (
            format!("{{{HEAD},\"records\":0,\"sourceSystem\":{{\"name\":\"x\"}},{COLUMNS}}}"),
            "invalid_attribute",
            "sourceSystem",
        ),
        (
            format!("{{{HEAD},\"records\":0,\"dataset\":\"DM\",{COLUMNS}}}"),
            "unknown_attribute",
            "dataset",
        ),
    ] {
        let e = fails(text.into_bytes(), reason);
        assert_eq!(e.field(), Some(field), "{reason}");
    }
}

#[test]
fn broken_json_is_malformed_with_an_offset() {
    for text in [
        String::new(),
        "[]".to_string(),
        format!("{{{HEAD},\"records\":1,{COLUMNS},\"rows\":[[\"S-1\",1,null]"),
        format!("{{{HEAD},\"records\":1,{COLUMNS},\"rows\":[[\"S-1\",1,null]]}} trailing"),
        format!("{{{HEAD},\"records\":1,{COLUMNS},\"rows\":[[\"S-1\",1,null],]}}"),
        format!("{{{HEAD},\"records\":1,{COLUMNS},\"rows\":[[\"S-1\",{{}},null]]}}"),
        format!("{{{HEAD},\"records\":1,{COLUMNS},\"rows\":[[\"S-1\" 1 null]]}}"),
        format!("{{{HEAD},\"records\":1,{COLUMNS},\"rows\":[{{\"USUBJID\":\"S-1\"}}]}}"),
        format!("{{{HEAD},{HEAD},\"records\":0,{COLUMNS}}}"),
        format!("{{{HEAD},\"records\":1,{COLUMNS}}}\n{{\"USUBJID\":\"S-1\"}}\n"),
        format!("{{{HEAD},\"records\":1,{COLUMNS},\"rows\":[[\"S-1\",1,null]]}}")
            .replace("S-1", "S-\u{1}"),
    ] {
        let e = read(text.clone().into_bytes()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Validation, "{text}: {e:?}");
        assert_eq!(e.reason(), "malformed_dataset_json", "{text}: {e:?}");
    }
    let e = fails(json("1", r#"["S-1",1,null"#), "malformed_dataset_json");
    assert!(e.details()["offset"].is_u64());
}

#[test]
fn the_standard_allows_other_attribute_orders_and_ndjson_spacing() {
    // rows before the metadata it needs (held in memory), records after rows, CRLF NDJSON with spaces, a BOM.
    let rows_first = format!("{{\"rows\":[{GOOD_ROWS}],{HEAD},{COLUMNS},\"records\":2}}");
    assert_eq!(read(rows_first.into_bytes()).unwrap(), 2);
    let records_last = format!("{{{HEAD},{COLUMNS},\"rows\":[{GOOD_ROWS}],\"records\":2}}");
    assert_eq!(read(records_last.into_bytes()).unwrap(), 2);
    let records_last_wrong = format!("{{{HEAD},{COLUMNS},\"rows\":[{GOOD_ROWS}],\"records\":1}}");
    fails(records_last_wrong.into_bytes(), "records_mismatch");
    let name_after_rows = format!("{{\"datasetJSONCreationDateTime\":\"2024-11-11T15:09:15\",\"datasetJSONVersion\":\"1.1\",\"itemGroupOID\":\"IG.DM\",\"label\":\"\",\"records\":2,{COLUMNS},\"rows\":[{GOOD_ROWS}],\"name\":\"DM\"}}");
    assert_eq!(read(name_after_rows.into_bytes()).unwrap(), 2);
    let nd = format!(
        "\u{feff}{{{HEAD}, \"records\": 2, {COLUMNS}}}\r\n[\"S-1\", 34, \"1990-05-01\"]\r\n\r\n[\"S-2\", null, null]\r\n"
    );
    assert_eq!(read(nd.into_bytes()).unwrap(), 2);
}

fn compressed(gzip: bool, bytes: &[u8]) -> Vec<u8> {
    if gzip {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(bytes).unwrap();
        z.finish().unwrap()
    } else {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(bytes).unwrap();
        z.finish().unwrap()
    }
}

#[test]
fn compressed_input_is_gzip_or_zlib_and_damage_is_reported() {
    let nd = format!(
        "{{{HEAD},\"records\":2,{COLUMNS}}}\n[\"S-1\",34,\"1990-05-01\"]\n[\"S-2\",null,null]\n"
    );
    for gzip in [true, false] {
        let z = compressed(gzip, nd.as_bytes());
        assert_eq!(read(z.clone()).unwrap(), 2);
        // Truncated: in the middle, and just before the checksum trailer.
        for cut in [z.len() / 2, z.len() - 3] {
            let e = read(z[..cut].to_vec()).unwrap_err();
            assert_eq!(
                (e.code(), e.reason()),
                (ErrorCode::Validation, "malformed_dsjc"),
                "gzip {gzip} cut {cut}"
            );
        }
        // Corrupted: a flipped byte in the deflate data or in the checksum.
        for at in [z.len() / 2, z.len() - 2] {
            let mut bad = z.clone();
            bad[at] ^= 0x55;
            let e = read(bad).unwrap_err();
            assert_eq!(
                e.code(),
                ErrorCode::Validation,
                "gzip {gzip} at {at}: {e:?}"
            );
        }
    }
}

#[test]
fn the_published_dsjc_truncated_is_reported() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/datasetjson-examples/sdtm/dm.dsjc");
    if !path.is_file() {
        let required = std::env::var_os("TRIALPORT_REQUIRE_CONFORMANCE").is_some()
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!required, "the conformance corpus is missing");
        eprintln!("skipped: the conformance corpus is not beside the repository");
        return;
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    assert_eq!(read(bytes.clone()).unwrap(), 18);
    let e = read(bytes[..bytes.len() - 100].to_vec()).unwrap_err();
    assert_eq!(e.reason(), "malformed_dsjc");
}
