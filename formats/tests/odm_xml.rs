//! ODM 1.3.2 clinical data (`odm-xml`): structure and values checked with roxmltree, escaping, grouped and
//! ungrouped input, a large input streamed in bounded chunks, and the CDISC AE example against its Dataset-JSON.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampSecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use roxmltree::{Document, Node};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_formats::odm::{OdmXmlFormat, NS_ODM};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("STUDYID", DataType::Utf8, false),
        Field::new("USUBJID", DataType::Utf8, true),
        Field::new("VISIT", DataType::Utf8, false),
        Field::new("VSSEQ", DataType::Int64, false),
        Field::new("VSTESTCD", DataType::Utf8, true),
        Field::new("VSSTRESN", DataType::Float64, true),
        Field::new("VSDT", DataType::Float64, true),
        Field::new("VSDAT", DataType::Date32, true),
        Field::new("VSDTM", DataType::Timestamp(TimeUnit::Second, None), true),
    ]))
}

fn meta() -> DatasetMeta {
    DatasetMeta {
        name: "VS".into(),
        columns: vec![
            ColumnMeta {
                name: "VSDT".into(),
                display_format: Some("DATE9.".into()),
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "VSTESTCD".into(),
                item_oid: Some("IT.TESTCD".into()),
                ..ColumnMeta::default()
            },
        ],
        ..DatasetMeta::default()
    }
}

struct Row<'a> {
    subject: Option<&'a str>,
    visit: &'a str,
    seq: i64,
    test: Option<&'a str>,
    value: Option<f64>,
}

fn batch(rows: &[Row<'_>]) -> RecordBatch {
    let n = rows.len();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["S1"; n])),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.subject).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.visit).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.test).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(vec![Some(19_000.0); n])),
        Arc::new(Date32Array::from(vec![Some(0); n])),
        Arc::new(TimestampSecondArray::from(vec![Some(86_461); n])),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

fn r<'a>(
    subject: &'a str,
    visit: &'a str,
    seq: i64,
    test: Option<&'a str>,
    value: Option<f64>,
) -> Row<'a> {
    Row {
        subject: Some(subject),
        visit,
        seq,
        test,
        value,
    }
}

fn encode(batches: &[RecordBatch], options: &FormatOptions) -> trialport_core::Result<String> {
    let mut out = Vec::new();
    {
        let mut enc = OdmXmlFormat.encoder(&schema(), &meta(), options, &mut out)?;
        for b in batches {
            enc.write(b)?;
        }
        enc.finish()?;
    }
    Ok(String::from_utf8(out).unwrap())
}

fn kids<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Vec<Node<'a, 'i>> {
    n.children()
        .filter(|c| c.has_tag_name((NS_ODM, name)))
        .collect()
}

fn xmllint(text: &str) {
    if std::process::Command::new("xmllint")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped xmllint: not on this machine (Debian package libxml2-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odm.xml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--stream"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn grouped_rows_nest_subject_event_form_and_item_group() {
    let rows = [
        r("001", "SCREENING", 1, Some("SYSBP"), Some(120.5)),
        r("001", "SCREENING", 2, Some("DIABP"), None),
        r("001", "WEEK 2", 3, Some("SYSBP"), Some(1e-7)),
        r("002", "SCREENING", 1, Some("SYSBP"), Some(-0.0)),
    ];
    // Split across batches: a group continues over a batch boundary.
    let text = encode(
        &[batch(&rows[..1]), batch(&rows[1..3]), batch(&rows[3..])],
        &FormatOptions::new().with("created", "2025-01-21T10:00:00Z"),
    )
    .unwrap();
    xmllint(&text);
    let doc = Document::parse(&text).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name((NS_ODM, "ODM")));
    assert_eq!(root.attribute("ODMVersion"), Some("1.3.2"));
    assert_eq!(root.attribute("FileType"), Some("Snapshot"));
    assert_eq!(
        root.attribute("CreationDateTime"),
        Some("2025-01-21T10:00:00Z")
    );
    assert_eq!(root.attribute("FileOID"), Some("S1.ODM.VS"));
    let cd = kids(root, "ClinicalData");
    assert_eq!(cd.len(), 1);
    assert_eq!(
        (
            cd[0].attribute("StudyOID"),
            cd[0].attribute("MetaDataVersionOID")
        ),
        (Some("S1"), Some("MDV.S1"))
    );
    let subjects = kids(cd[0], "SubjectData");
    let keys: Vec<&str> = subjects
        .iter()
        .map(|s| s.attribute("SubjectKey").unwrap())
        .collect();
    assert_eq!(keys, ["001", "002"]);
    let events = kids(subjects[0], "StudyEventData");
    let oids: Vec<&str> = events
        .iter()
        .map(|e| e.attribute("StudyEventOID").unwrap())
        .collect();
    assert_eq!(oids, ["SE.SCREENING", "SE.WEEK 2"]);
    let forms = kids(events[0], "FormData");
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0].attribute("FormOID"), Some("F.VS"));
    let groups = kids(forms[0], "ItemGroupData");
    assert_eq!(groups.len(), 2);
    assert_eq!(
        (
            groups[0].attribute("ItemGroupOID"),
            groups[0].attribute("ItemGroupRepeatKey")
        ),
        (Some("IG.VS"), Some("1"))
    );
    let items = |g: Node<'_, '_>| -> Vec<(String, String)> {
        kids(g, "ItemData")
            .iter()
            .map(|i| {
                (
                    i.attribute("ItemOID").unwrap().to_string(),
                    i.attribute("Value").unwrap().to_string(),
                )
            })
            .collect()
    };
    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
            .collect()
    };
    // Keys (STUDYID, USUBJID, VISIT, VSSEQ) are not items; the SAS date is ISO; the meta itemOID is used.
    assert_eq!(
        items(groups[0]),
        want(&[
            ("IT.TESTCD", "SYSBP"),
            ("IT.VS.VSSTRESN", "120.5"),
            ("IT.VS.VSDT", "2012-01-08"),
            ("IT.VS.VSDAT", "1970-01-01"),
            ("IT.VS.VSDTM", "1970-01-02T00:01:01"),
        ])
    );
    // A null is omitted.
    assert!(items(groups[1])
        .iter()
        .all(|(oid, _)| oid != "IT.VS.VSSTRESN"));
    // Floats are plain decimals that read back exactly.
    let tiny = &items(kids(kids(events[1], "FormData")[0], "ItemGroupData")[0])[1];
    assert_eq!(tiny.1, "0.0000001");
    assert_eq!(tiny.1.parse::<f64>().unwrap(), 1e-7);
    let g2 = kids(
        kids(kids(subjects[1], "StudyEventData")[0], "FormData")[0],
        "ItemGroupData",
    )[0];
    assert_eq!(items(g2)[1].1, "-0");
}

#[test]
fn options_name_keys_and_constants() {
    let rows = [
        r("001", "SCREENING", 1, Some("A"), Some(1.0)),
        r("001", "SCREENING", 2, Some("B"), Some(2.0)),
    ];
    let opts = FormatOptions::new()
        .with("event", "")
        .with("event_oid", "SE.BASELINE")
        .with("form_oid", "F.VITALS")
        .with("item_group_repeat", "")
        .with("study_oid", "STUDY-X")
        .with("metadata_version_oid", "MDV.1")
        .with("originator", "Sponsor & Co");
    let text = encode(&[batch(&rows)], &opts).unwrap();
    let doc = Document::parse(&text).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("Originator"), Some("Sponsor & Co"));
    let cd = kids(root, "ClinicalData")[0];
    assert_eq!(
        (cd.attribute("StudyOID"), cd.attribute("MetaDataVersionOID")),
        (Some("STUDY-X"), Some("MDV.1"))
    );
    let ev = kids(kids(cd, "SubjectData")[0], "StudyEventData")[0];
    assert_eq!(ev.attribute("StudyEventOID"), Some("SE.BASELINE"));
    let form = kids(ev, "FormData")[0];
    assert_eq!(form.attribute("FormOID"), Some("F.VITALS"));
    let groups = kids(form, "ItemGroupData");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].attribute("ItemGroupRepeatKey"), None);
    // With the StudyOID from an option, STUDYID and VISIT and VSSEQ are ordinary items.
    let oids: Vec<&str> = kids(groups[0], "ItemData")
        .iter()
        .map(|i| i.attribute("ItemOID").unwrap())
        .collect();
    assert_eq!(&oids[..3], ["IT.VS.STUDYID", "IT.VS.VISIT", "IT.VS.VSSEQ"]);

    // Repeat keys from columns.
    let text = encode(
        &[batch(&rows)],
        &FormatOptions::new().with("event_repeat", "VSSEQ"),
    )
    .unwrap();
    let doc = Document::parse(&text).unwrap();
    let events: Vec<Option<&str>> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ODM, "StudyEventData")))
        .map(|n| n.attribute("StudyEventRepeatKey"))
        .collect();
    assert_eq!(events, [Some("1"), Some("2")]);
}

#[test]
fn ungrouped_input_is_refused_naming_the_row() {
    // Subject 001 comes back after 002 (row 3, in the second batch).
    let first = [r("001", "V1", 1, None, None), r("002", "V1", 1, None, None)];
    let second = [r("001", "V2", 2, None, None)];
    let err = encode(&[batch(&first), batch(&second)], &FormatOptions::new()).unwrap_err();
    assert_eq!(err.reason(), "not_grouped");
    assert_eq!(err.field(), Some("USUBJID"));
    assert_eq!(err.details()["row"], 3);
    assert!(!err.message().contains("001"), "the message names no value");

    // A visit comes back within a subject.
    let rows = [
        r("001", "V1", 1, None, None),
        r("001", "V2", 2, None, None),
        r("001", "V1", 3, None, None),
    ];
    let err = encode(&[batch(&rows)], &FormatOptions::new()).unwrap_err();
    assert_eq!((err.reason(), err.field()), ("not_grouped", Some("VISIT")));
    assert_eq!(err.details()["row"], 3);

    // The same visit under another subject is fine.
    let rows = [r("001", "V1", 1, None, None), r("002", "V1", 1, None, None)];
    encode(&[batch(&rows)], &FormatOptions::new()).unwrap();
}

#[test]
fn bad_input_is_a_validation_error() {
    let null_subject = Row {
        subject: None,
        visit: "V1",
        seq: 1,
        test: None,
        value: None,
    };
    let err = encode(&[batch(&[null_subject])], &FormatOptions::new()).unwrap_err();
    assert_eq!(
        (err.reason(), err.field()),
        ("missing_key", Some("USUBJID"))
    );

    let err = encode(
        &[batch(&[r("001", "V1", 1, None, Some(f64::INFINITY))])],
        &FormatOptions::new(),
    )
    .unwrap_err();
    assert_eq!(
        (err.reason(), err.field()),
        ("unrepresentable_value", Some("VSSTRESN"))
    );
    // NaN is missing, as in SAS.
    let text = encode(
        &[batch(&[r("001", "V1", 1, None, Some(f64::NAN))])],
        &FormatOptions::new(),
    )
    .unwrap();
    assert!(!text.contains("VSSTRESN"));

    // A second study in a file whose StudyOID comes from STUDYID.
    let mut cols = batch(&[r("001", "V1", 1, None, None), r("002", "V1", 1, None, None)])
        .columns()
        .to_vec();
    cols[0] = Arc::new(StringArray::from(vec!["S1", "S2"]));
    let two_studies = RecordBatch::try_new(schema(), cols).unwrap();
    let err = encode(std::slice::from_ref(&two_studies), &FormatOptions::new()).unwrap_err();
    assert_eq!(
        (err.reason(), err.field()),
        ("mixed_study", Some("STUDYID"))
    );
    assert_eq!(err.details()["row"], 2);
    let text = encode(&[two_studies], &FormatOptions::new().with("study_oid", "S")).unwrap();
    assert!(text.contains("Value=\"S2\""));

    let err = encode(
        &[batch(&[r("001", "V1", 1, Some("a\u{1}b"), None)])],
        &FormatOptions::new(),
    )
    .unwrap_err();
    assert_eq!(
        (err.reason(), err.field()),
        ("invalid_xml_character", Some("VSTESTCD"))
    );

    let text = encode(
        &[batch(&[r("0<1>&\"'", "V1", 1, Some("x < y & z"), None)])],
        &FormatOptions::new(),
    )
    .unwrap();
    let doc = Document::parse(&text).unwrap();
    let s = doc
        .descendants()
        .find(|n| n.has_tag_name((NS_ODM, "SubjectData")))
        .unwrap();
    assert_eq!(s.attribute("SubjectKey"), Some("0<1>&\"'"));
    assert!(doc
        .descendants()
        .any(|n| n.attribute("Value") == Some("x < y & z")));

    let mut out = Vec::new();
    let no_subject = Arc::new(Schema::new(vec![Field::new("X", DataType::Utf8, true)]));
    let err = OdmXmlFormat
        .encoder(
            &no_subject,
            &DatasetMeta::default(),
            &FormatOptions::new(),
            &mut out,
        )
        .err()
        .unwrap();
    assert_eq!(
        (err.reason(), err.field()),
        ("missing_column", Some("options.subject"))
    );
    let no_event = Arc::new(Schema::new(vec![Field::new(
        "USUBJID",
        DataType::Utf8,
        true,
    )]));
    let err = OdmXmlFormat
        .encoder(
            &no_event,
            &DatasetMeta::default(),
            &FormatOptions::new(),
            &mut out,
        )
        .err()
        .unwrap();
    assert_eq!(
        (err.reason(), err.field()),
        ("missing_column", Some("options.event"))
    );
    let err = OdmXmlFormat
        .encoder(
            &no_event,
            &DatasetMeta::default(),
            &FormatOptions::new().with("subject", "SUBJ"),
            &mut out,
        )
        .err()
        .unwrap();
    assert_eq!(err.reason(), "unknown_column");
    // No STUDYID column and no study_oid option.
    let enc = OdmXmlFormat
        .encoder(
            &no_event,
            &DatasetMeta::default(),
            &FormatOptions::new().with("event_oid", "SE.1"),
            &mut out,
        )
        .unwrap();
    assert_eq!(enc.finish().unwrap_err().reason(), "missing_option");
    assert_eq!(
        OdmXmlFormat
            .check_options(&FormatOptions::new().with("nope", "1"))
            .unwrap_err()
            .reason(),
        "unknown_option"
    );
}

/// A sink that records how much it was given and the largest single write, shared with the test.
#[derive(Clone, Default)]
struct Probe(Arc<Mutex<(u64, usize, u64)>>);

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock().unwrap();
        s.0 += buf.len() as u64;
        s.1 = s.1.max(buf.len());
        s.2 += buf.iter().filter(|b| **b == b'<').count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_large_input_streams_in_bounded_chunks() {
    let probe = Probe::default();
    let mut sink = probe.clone();
    let subjects = 2_000;
    let per_subject = 100; // 200,000 rows, 10 visits of 10 tests each per subject
    let mut enc = OdmXmlFormat
        .encoder(&schema(), &meta(), &FormatOptions::new(), &mut sink)
        .unwrap();
    let mut handed_over_before_finish = 0;
    let mut rows = Vec::new();
    for s in 0..subjects {
        for k in 0..per_subject {
            rows.push((format!("{s:05}"), format!("V{:02}", k / 10), k as i64));
        }
        if rows.len() >= 8192 || s == subjects - 1 {
            let n = rows.len();
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec!["S1"; n])),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(vec![Some("SYSBP"); n])),
                Arc::new(Float64Array::from(
                    rows.iter()
                        .map(|r| Some(r.2 as f64 + 0.25))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(vec![None; n])),
                Arc::new(Date32Array::from(vec![None; n])),
                Arc::new(TimestampSecondArray::from(vec![None; n])),
            ];
            enc.write(&RecordBatch::try_new(schema(), cols).unwrap())
                .unwrap();
            rows.clear();
            handed_over_before_finish = probe.0.lock().unwrap().0;
        }
    }
    assert_eq!(enc.finish().unwrap().rows, (subjects * per_subject) as u64);
    let (total, largest, tags) = *probe.0.lock().unwrap();
    // The output left in chunks of about 1 MiB while rows arrived: nothing holds the document.
    assert!(
        handed_over_before_finish > total * 9 / 10,
        "{handed_over_before_finish} of {total}"
    );
    assert!(largest < 2 << 20, "largest write {largest}");
    assert!(total > 30 << 20, "{total}");
    // ODM + ClinicalData + per subject 1 + 10 events + 10 forms + per row 1 group + 2 items; each opened and
    // closed (empty ItemData elements count once).
    let rows = (subjects * per_subject) as u64;
    let subj = subjects as u64;
    let expected = 1 + 2 * (2 + subj * (1 + 10 + 10) + rows) + 2 * rows;
    assert_eq!(tags, expected);
}

#[test]
fn the_cdisc_ae_example_matches_its_dataset_json_rows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/datasetjson-examples/sdtm");
    if !dir.is_dir() {
        let required = std::env::var_os("TRIALPORT_REQUIRE_CONFORMANCE").is_some()
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!required, "the conformance corpus is missing");
        eprintln!("skipped: the conformance corpus is not beside the repository");
        return;
    }
    let stream = trialport_formats::xpt::read_xpt(&dir.join("ae.xpt")).unwrap();
    let schema = stream.schema().clone();
    let meta = stream.meta();
    let mut out = Vec::new();
    {
        let opts = FormatOptions::new().with("event_oid", "SE.AE");
        let mut enc = OdmXmlFormat
            .encoder(&schema, &meta, &opts, &mut out)
            .unwrap();
        for b in stream {
            enc.write(&b.unwrap()).unwrap();
        }
        assert_eq!(enc.finish().unwrap().rows, 74);
    }
    let text = String::from_utf8(out).unwrap();
    xmllint(&text);
    let doc = Document::parse(&text).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ae.json")).unwrap()).unwrap();
    let names: Vec<&str> = json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let rows = json["rows"].as_array().unwrap();
    let groups: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ODM, "ItemGroupData")))
        .collect();
    assert_eq!(groups.len(), rows.len());
    let mut subjects: Vec<&str> = rows.iter().map(|r| r[2].as_str().unwrap()).collect();
    subjects.dedup();
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name((NS_ODM, "SubjectData")))
            .count(),
        subjects.len()
    );
    let mut cells = 0;
    for (g, row) in groups.iter().zip(rows) {
        let subject = g
            .ancestors()
            .find(|a| a.has_tag_name((NS_ODM, "SubjectData")))
            .unwrap();
        assert_eq!(subject.attribute("SubjectKey"), row[2].as_str());
        assert_eq!(
            g.attribute("ItemGroupRepeatKey").unwrap(),
            row[3].to_string(),
            "AESEQ"
        );
        for (i, name) in names.iter().enumerate() {
            if ["STUDYID", "USUBJID", "AESEQ"].contains(name) {
                continue;
            }
            let want = match &row[i] {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) if s.is_empty() => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            let oid = format!("IT.AE.{name}");
            let got = g
                .children()
                .find(|c| c.attribute("ItemOID") == Some(oid.as_str()))
                .and_then(|c| c.attribute("Value"));
            assert_eq!(got, want.as_deref(), "{oid}");
            cells += usize::from(want.is_some());
        }
    }
    assert!(cells > 1000, "{cells}");
}
