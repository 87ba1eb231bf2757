//! Write then read back, for every data format: what comes back equals what went in.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::path::Path;
use std::sync::Arc;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::DatasetMeta;
use trialport_core::ErrorCode;
use trialport_formats::read;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const TRICKY: &[&str] = &[
    "",
    "plain",
    "with, comma",
    "with \"quotes\"",
    "\"",
    "line\nbreak",
    "carriage\rreturn",
    "crlf\r\nend",
    "tab\tinside",
    "  spaces  ",
    "Zürich – 東京 – 😀",
    "naïve café",
    "back\\slash",
    "semi;colon",
    "NULL",
    "null",
    "NA",
    "'quoted'",
    "1,5",
    "007",
    "trailing\n",
    "a\u{1}control",
];

const INTS: &[i64] = &[
    0,
    1,
    -1,
    42,
    (1 << 53) - 1,
    1 << 53,
    (1 << 53) + 1,
    -(1 << 53) - 1,
    i64::MIN,
    i64::MAX,
    i64::MIN + 1,
    1_000_000_007,
];

const FLOATS: &[f64] = &[
    0.0,
    1.0,
    -1.5,
    0.1,
    -0.3,
    1e-300,
    -2.5e-310,
    5e-324,
    1.7976931348623157e308,
    -123456.789,
    std::f64::consts::PI,
    1e16,
    9007199254740993.0,
    2.2250738585072014e-308,
    80.25,
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("TEXT", DataType::Utf8, true),
        Field::new("N", DataType::Int64, true),
        Field::new("X", DataType::Float64, true),
        Field::new("DT", DataType::Date32, true),
        Field::new("TS", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "TSZ",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("FLAG", DataType::Boolean, true),
    ]))
}

fn batch(rng: &mut Rng, first: usize, rows: usize, with_formulas: bool) -> RecordBatch {
    let null = |rng: &mut Rng| rng.below(7) == 0;
    let ids: Vec<String> = (first..first + rows).map(|i| format!("S-{i:05}")).collect();
    let text: Vec<Option<String>> = (0..rows)
        .map(|_| {
            if null(rng) {
                None
            } else if with_formulas && rng.below(5) == 0 {
                Some(
                    rng.pick(&["=1+1", "-3", "+x", "@SUM(A1)", "\tlead"])
                        .to_string(),
                )
            } else {
                Some(rng.pick(TRICKY).to_string())
            }
        })
        .collect();
    let ints: Vec<Option<i64>> = (0..rows)
        .map(|_| {
            if null(rng) {
                None
            } else if rng.below(2) == 0 {
                Some(*rng.pick(INTS))
            } else {
                Some(rng.next() as i64)
            }
        })
        .collect();
    let floats: Vec<Option<f64>> = (0..rows)
        .map(|_| {
            if null(rng) {
                None
            } else if rng.below(2) == 0 {
                Some(*rng.pick(FLOATS))
            } else {
                let v = f64::from_bits(rng.next());
                Some(if v.is_finite() { v } else { 0.5 })
            }
        })
        .collect();
    let dates: Vec<Option<i32>> = (0..rows)
        .map(|_| (!null(rng)).then(|| rng.below(80_000) as i32 - 40_000))
        .collect();
    let micros = |rng: &mut Rng| -> i64 {
        let v = rng.below(8_000_000_000_000_000) as i64 - 4_000_000_000_000_000;
        match rng.below(3) {
            0 => v - v.rem_euclid(1_000_000),
            _ => v,
        }
    };
    let ts: Vec<Option<i64>> = (0..rows)
        .map(|_| (!null(rng)).then(|| micros(rng)))
        .collect();
    let tsz: Vec<Option<i64>> = (0..rows)
        .map(|_| (!null(rng)).then(|| micros(rng)))
        .collect();
    let flags: Vec<Option<bool>> = (0..rows)
        .map(|_| (!null(rng)).then(|| rng.below(2) == 0))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(text)),
        Arc::new(Int64Array::from(ints)),
        Arc::new(Float64Array::from(floats)),
        Arc::new(Date32Array::from(dates)),
        Arc::new(TimestampMicrosecondArray::from(ts)),
        Arc::new(TimestampMicrosecondArray::from(tsz).with_timezone("UTC")),
        Arc::new(BooleanArray::from(flags)),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// Batches of uneven sizes (an empty one included) so readers and writers cross batch boundaries.
fn dataset(seed: u64, with_formulas: bool) -> Vec<RecordBatch> {
    let mut rng = Rng(seed);
    let mut first = 0;
    [0usize, 1, 17, 500, 9000, 3]
        .iter()
        .map(|&n| {
            let b = batch(&mut rng, first, n, with_formulas);
            first += n;
            b
        })
        .collect()
}

fn encode(format: &dyn Format, options: &FormatOptions, batches: &[RecordBatch]) -> Vec<u8> {
    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(schema);
    let meta = DatasetMeta {
        name: "DM".into(),
        label: Some("Demographics".into()),
        columns: vec![],
        ..Default::default()
    };
    let mut out: Vec<u8> = Vec::new();
    let mut enc = format.encoder(&schema, &meta, options, &mut out).unwrap();
    let mut rows = 0;
    for b in batches {
        enc.write(b).unwrap();
        rows += b.num_rows() as u64;
    }
    assert_eq!(enc.finish().unwrap().rows, rows);
    out
}

fn all(batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(&schema(), batches).unwrap()
}

fn assert_same(got: &[RecordBatch], want: &[RecordBatch]) {
    let want = all(want);
    let got: Vec<RecordBatch> = got
        .iter()
        .map(|b| RecordBatch::try_new(schema(), b.columns().to_vec()).unwrap())
        .collect();
    let got = all(&got);
    assert_eq!(got.num_rows(), want.num_rows());
    for (i, f) in schema().fields().iter().enumerate() {
        let (g, w) = (got.column(i), want.column(i));
        if g != w {
            for r in 0..w.len() {
                let gs = arrow::util::display::array_value_to_string(g, r).unwrap();
                let ws = arrow::util::display::array_value_to_string(w, r).unwrap();
                assert_eq!(
                    (g.is_null(r), gs),
                    (w.is_null(r), ws),
                    "column {} row {r}",
                    f.name()
                );
            }
            panic!("column {} differs", f.name());
        }
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The data formats of this build.
fn data_ids() -> Vec<&'static str> {
    let mut ids = vec!["csv", "tsv", "json", "ndjson", "arrow-ipc"];
    if cfg!(feature = "parquet") {
        ids.push("parquet");
    }
    ids
}

fn formats() -> trialport_core::format::FormatRegistry {
    trialport_formats::default_formats()
}

fn round_trip(id: &str, file: &str, options: FormatOptions, with_schema: bool) {
    let data = dataset(0x5eed_0000 + id.len() as u64, false);
    let reg = formats();
    let f = reg.get(id).unwrap();
    let bytes = encode(f.as_ref(), &options, &data);
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), file, &bytes);
    let stream = if with_schema {
        read::open_with_schema(&path, None, schema()).unwrap()
    } else {
        read::open(&path, None).unwrap()
    };
    assert_eq!(stream.meta().name, "DM");
    let got = stream.collect().unwrap();
    assert!(got.iter().all(|b| b.num_rows() <= read::BATCH_SIZE));
    assert_same(&got, &data);
}

#[test]
fn csv_round_trips_with_a_known_schema() {
    round_trip(
        "csv",
        "dm.csv",
        FormatOptions::new().with("neutralize_formulas", "false"),
        true,
    );
}

#[test]
fn csv_round_trips_quoting_everything_with_crlf() {
    round_trip(
        "csv",
        "dm.csv",
        FormatOptions::new()
            .with("quote_all", "true")
            .with("line_terminator", "crlf"),
        true,
    );
}

#[test]
fn tsv_round_trips_with_a_known_schema() {
    round_trip("tsv", "dm.tsv", FormatOptions::new(), true);
}

#[test]
fn ndjson_round_trips_with_a_known_schema() {
    round_trip("ndjson", "dm.ndjson", FormatOptions::new(), true);
}

#[test]
fn json_round_trips_with_a_known_schema() {
    round_trip("json", "dm.json", FormatOptions::new(), true);
}

#[test]
fn json_round_trips_without_explicit_nulls() {
    round_trip(
        "json",
        "dm.json",
        FormatOptions::new().with("explicit_nulls", "false"),
        true,
    );
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_round_trips_types_and_metadata() {
    for compression in ["zstd", "snappy", "none"] {
        round_trip(
            "parquet",
            "dm.parquet",
            FormatOptions::new()
                .with("compression", compression)
                .with("row_group_size", "1000"),
            false,
        );
    }
}

#[test]
fn arrow_ipc_round_trips_types_and_metadata() {
    round_trip("arrow-ipc", "dm.arrow", FormatOptions::new(), false);
}

#[test]
fn binary_formats_keep_field_metadata() {
    let meta = DatasetMeta::from_json(
        r#"{"name":"DM","label":"Demographics","columns":[{"name":"USUBJID","label":"Unique Subject Identifier",
            "length":20,"privacy":"subject_id"},{"name":"N","dataType":"integer"}]}"#,
    )
    .unwrap();
    let schema = meta.apply_to(&schema()).unwrap();
    let data: Vec<RecordBatch> = dataset(1, false)
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (id, file) in [("parquet", "x.parquet"), ("arrow-ipc", "x.arrow")] {
        if formats().get(id).is_err() {
            continue;
        }
        let bytes = encode(
            formats().get(id).unwrap().as_ref(),
            &FormatOptions::new(),
            &data,
        );
        let path = write_file(dir.path(), file, &bytes);
        let back = read::open(&path, None).unwrap().meta();
        assert_eq!(back.name, "DM", "{id}");
        assert_eq!(back.label.as_deref(), Some("Demographics"), "{id}");
        assert_eq!(back.column("USUBJID").unwrap(), &meta.columns[0], "{id}");
        assert_eq!(
            back.column("N").unwrap().data_type.as_deref(),
            Some("integer")
        );
    }
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_key_value_metadata_has_name_and_label() {
    use parquet::file::reader::FileReader;
    let bytes = encode(
        formats().get("parquet").unwrap().as_ref(),
        &FormatOptions::new(),
        &dataset(2, false),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "kv.parquet", &bytes);
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("trialport.dataset").as_deref(), Some("DM"));
    assert_eq!(get("trialport.label").as_deref(), Some("Demographics"));
    assert!(get("ARROW:schema").is_some());
}

#[test]
fn empty_datasets_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for (id, file, with_schema) in [
        ("csv", "e.csv", true),
        ("tsv", "e.tsv", true),
        ("json", "e.json", true),
        ("ndjson", "e.ndjson", true),
        ("parquet", "e.parquet", false),
        ("arrow-ipc", "e.arrow", false),
    ] {
        if formats().get(id).is_err() {
            continue;
        }
        let bytes = encode(
            formats().get(id).unwrap().as_ref(),
            &FormatOptions::new(),
            &[],
        );
        let path = write_file(dir.path(), file, &bytes);
        let stream = if with_schema {
            read::open_with_schema(&path, None, schema()).unwrap()
        } else {
            read::open(&path, None).unwrap()
        };
        assert_eq!(stream.schema().fields(), schema().fields(), "{id}");
        let rows: usize = stream.collect().unwrap().iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 0, "{id}");
    }
    let csv = encode(
        formats().get("csv").unwrap().as_ref(),
        &FormatOptions::new(),
        &[],
    );
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "USUBJID,TEXT,N,X,DT,TS,TSZ,FLAG\n"
    );
    let json = encode(
        formats().get("json").unwrap().as_ref(),
        &FormatOptions::new(),
        &[],
    );
    assert_eq!(json, b"[]\n");
}

#[test]
fn output_is_deterministic() {
    for id in data_ids() {
        let meta = DatasetMeta::from_json(
            r#"{"name":"DM","label":"Demographics","columns":[{"name":"USUBJID","label":"Subject",
                "length":20,"keySequence":1,"privacy":"subject_id","origin":"Collected"}]}"#,
        )
        .unwrap();
        let schema = meta.apply_to(&schema()).unwrap();
        let data: Vec<RecordBatch> = dataset(3, true)
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
            .collect();
        let a = encode(
            formats().get(id).unwrap().as_ref(),
            &FormatOptions::new(),
            &data,
        );
        let b = encode(
            formats().get(id).unwrap().as_ref(),
            &FormatOptions::new(),
            &data,
        );
        assert!(a == b, "{id} output differs between two runs");
    }
}

#[test]
fn unknown_options_and_bad_values_are_rejected_by_check_and_encoder() {
    for id in data_ids() {
        let f = formats().get(id).unwrap().clone();
        let bad = FormatOptions::new().with("colour", "blue");
        let e = f.check_options(&bad).unwrap_err();
        assert_eq!(
            (e.code(), e.reason()),
            (ErrorCode::Validation, "unknown_option")
        );
        assert_eq!(e.field(), Some("options.colour"));
        let mut out = Vec::new();
        let e = f
            .encoder(&schema(), &DatasetMeta::default(), &bad, &mut out)
            .err()
            .unwrap();
        assert_eq!(e.reason(), "unknown_option");
        assert!(out.is_empty());
        // Every documented option with its default is accepted.
        let mut defaults = FormatOptions::new();
        for o in f.info().options {
            defaults = defaults.with(o.name, o.default);
        }
        f.check_options(&defaults).unwrap();
        f.encoder(&schema(), &DatasetMeta::default(), &defaults, &mut out)
            .unwrap();
    }
    let csv = formats().get("csv").unwrap().clone();
    for (k, v) in [
        ("delimiter", "ab"),
        ("delimiter", "\""),
        ("delimiter", "1"),
        ("header", "maybe"),
        ("line_terminator", "cr"),
        ("null", "a,b"),
        ("date_format", "%Q"),
    ] {
        let e = csv
            .check_options(&FormatOptions::new().with(k, v))
            .unwrap_err();
        assert_eq!(e.reason(), "invalid_option", "{k}={v}");
        assert_eq!(e.field(), Some(format!("options.{k}").as_str()));
    }
    if let Ok(pq) = formats().get("parquet") {
        for (k, v) in [("compression", "gzip"), ("row_group_size", "0")] {
            let e = pq
                .check_options(&FormatOptions::new().with(k, v))
                .unwrap_err();
            assert_eq!(e.reason(), "invalid_option", "{k}={v}");
        }
    }
}

#[test]
fn infos_list_capabilities_and_options() {
    use trialport_core::format::Capability;
    for id in data_ids() {
        let info = formats().get(id).unwrap().info();
        for c in [Capability::Data, Capability::Streaming, Capability::Read] {
            assert!(info.can(c), "{id} lacks {c:?}");
        }
    }
    let csv = formats().get("csv").unwrap().info();
    let names: Vec<&str> = csv.options.iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        [
            "delimiter",
            "header",
            "null",
            "quote_all",
            "date_format",
            "datetime_format",
            "labels_as_header",
            "neutralize_formulas",
            "line_terminator"
        ]
    );
    assert_eq!(
        formats().get("tsv").unwrap().info().options[0].default,
        "tab"
    );
}

#[test]
fn unsupported_types_are_rejected_before_a_byte() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("A", DataType::Int64, true),
        Field::new(
            "NESTED",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
    ]));
    for id in ["csv", "tsv", "json", "ndjson"] {
        let mut out = Vec::new();
        let e = formats()
            .get(id)
            .unwrap()
            .encoder(
                &schema,
                &DatasetMeta::default(),
                &FormatOptions::new(),
                &mut out,
            )
            .err()
            .unwrap();
        assert_eq!(
            (e.code(), e.reason()),
            (ErrorCode::Validation, "unsupported_type")
        );
        assert_eq!(e.field(), Some("NESTED"));
        assert!(out.is_empty());
    }
    let schema = Arc::new(Schema::new(vec![Field::new(
        "D",
        DataType::Duration(TimeUnit::Second),
        true,
    )]));
    let mut out = Vec::new();
    let e = formats()
        .get("csv")
        .unwrap()
        .encoder(
            &schema,
            &DatasetMeta::default(),
            &FormatOptions::new(),
            &mut out,
        )
        .err()
        .unwrap();
    assert_eq!(e.field(), Some("D"));
}
