//! Define-XML 2.1 (`define-xml`): the document generated for the CDISC SDTM example datasets is well-formed,
//! namespaced, in the required order, agrees with CDISC's own define.xml for that study, and passes the
//! cross-checks; the cross-checks catch what they should; output is deterministic and escaped.
//!
//! The SAS files are read from `../shared/conformance` beside the repository. Where that folder is absent (a fresh
//! clone) those tests say so and pass, unless `TRIALPORT_REQUIRE_CONFORMANCE` is set or `CI=true`, when its
//! absence fails them. `xmllint` (Debian's libxml2-utils) is used when it is on the machine.
#![allow(clippy::unwrap_used, missing_docs)]

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{TimeZone, Utc};
use roxmltree::{Document, Node};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use trialport_core::format::{Described, Format, FormatOptions, StudyInfo};
use trialport_core::meta::{CodeListMeta, CodeListTerm, ColumnMeta, DatasetMeta};
use trialport_core::ErrorCode;
use trialport_formats::define::{self, DefineXmlFormat, NS_DEF, NS_ODM, NS_XLINK};
use trialport_formats::xpt;

mod common;
use common::conformance_dir;

/// One dataset as the tests hold it: schema (with metadata), metadata, file name, rows.
struct Owned {
    schema: SchemaRef,
    meta: DatasetMeta,
    file: String,
    rows: u64,
}

impl Owned {
    fn described(&self) -> Described<'_> {
        Described {
            schema: &self.schema,
            meta: &self.meta,
            file: &self.file,
            rows: Some(self.rows),
        }
    }
}

fn described(all: &[Owned]) -> Vec<Described<'_>> {
    all.iter().map(Owned::described).collect()
}

/// A SAS XPT file read with its own metadata (labels, lengths, formats), with the columns' `dataType`,
/// `keySequence` and OIDs of the CDISC Dataset-JSON file beside it layered over it, as `--meta` would.
fn sas_dataset(dir: &Path, sub: &str, stem: &str, with_json: bool) -> Owned {
    let stream =
        xpt::read_xpt(&dir.join(format!("datasetjson-examples/{sub}/{stem}.xpt"))).unwrap();
    let stream = if with_json {
        let text =
            std::fs::read_to_string(dir.join(format!("datasetjson-examples/{sub}/{stem}.json")))
                .unwrap();
        stream
            .with_meta(&DatasetMeta::from_json(&text).unwrap())
            .unwrap()
    } else {
        stream
    };
    let schema = stream.schema().clone();
    let meta = stream.meta();
    let rows = stream
        .collect()
        .unwrap()
        .iter()
        .map(|b| b.num_rows() as u64)
        .sum();
    Owned {
        schema,
        meta,
        file: format!("{stem}.xpt"),
        rows,
    }
}

fn sdtm(dir: &Path, with_json: bool) -> Vec<Owned> {
    ["dm", "ae", "ts", "suppdm"]
        .iter()
        .map(|s| sas_dataset(dir, "sdtm", s, with_json))
        .collect()
}

fn study() -> StudyInfo<'static> {
    StudyInfo {
        study: "CDISCPILOT01",
        created: Utc.with_ymd_and_hms(2025, 1, 21, 10, 0, 0).unwrap(),
    }
}

fn describe(datasets: &[Described<'_>], options: &FormatOptions) -> trialport_core::Result<String> {
    let mut out = Vec::new();
    DefineXmlFormat.describe(&study(), datasets, options, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn elements<'a, 'i>(n: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    n.children().filter(Node::is_element).collect()
}

/// `prefix:local` of an element, with `def:` for the Define namespace and no prefix for ODM.
fn qname(n: &Node<'_, '_>) -> String {
    match n.tag_name().namespace() {
        Some(NS_DEF) => format!("def:{}", n.tag_name().name()),
        Some(NS_ODM) => n.tag_name().name().to_string(),
        other => format!("{other:?}:{}", n.tag_name().name()),
    }
}

/// Asserts that the children of `n` follow `order` (each name may repeat; none outside the list).
fn assert_order(n: Node<'_, '_>, order: &[&str]) {
    let mut at = 0;
    for c in elements(n) {
        let q = qname(&c);
        let pos = order
            .iter()
            .position(|o| *o == q)
            .unwrap_or_else(|| panic!("unexpected {q} in {}", qname(&n)));
        assert!(pos >= at, "{q} after {} in {}", order[at], qname(&n));
        at = pos;
    }
}

const MDV_ORDER: &[&str] = &[
    "def:Standards",
    "def:AnnotatedCRF",
    "def:SupplementalDoc",
    "def:ValueListDef",
    "def:WhereClauseDef",
    "ItemGroupDef",
    "ItemDef",
    "CodeList",
    "MethodDef",
    "def:CommentDef",
    "def:leaf",
];

/// The structural checks every generated define must pass.
fn assert_structure(text: &str) {
    let doc = Document::parse(text).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().namespace(), Some(NS_ODM));
    assert_eq!(root.tag_name().name(), "ODM");
    assert_eq!(root.lookup_namespace_uri(Some("def")), Some(NS_DEF));
    assert_eq!(root.lookup_namespace_uri(Some("xlink")), Some(NS_XLINK));
    assert_eq!(root.attribute("ODMVersion"), Some("1.3.2"));
    assert_eq!(root.attribute("FileType"), Some("Snapshot"));
    assert!(root.attribute("FileOID").is_some());
    assert!(root.attribute("CreationDateTime").is_some());
    assert_eq!(root.attribute((NS_DEF, "Context")), Some("Submission"));
    let study = elements(root);
    assert_eq!(study.len(), 1);
    assert_order(study[0], &["GlobalVariables", "MetaDataVersion"]);
    let gv = elements(study[0])[0];
    let names: Vec<String> = elements(gv).iter().map(qname).collect();
    assert_eq!(names, ["StudyName", "StudyDescription", "ProtocolName"]);
    let mdv = elements(study[0])[1];
    assert_eq!(mdv.attribute((NS_DEF, "DefineVersion")), Some("2.1.0"));
    assert_order(mdv, MDV_ORDER);
    assert_eq!(qname(&elements(mdv)[0]), "def:Standards");
    for n in elements(mdv) {
        match qname(&n).as_str() {
            "ItemGroupDef" => {
                assert_order(
                    n,
                    &["Description", "ItemRef", "Alias", "def:Class", "def:leaf"],
                );
                for a in ["OID", "Name", "Repeating", "IsReferenceData", "Purpose"] {
                    assert!(n.attribute(a).is_some(), "ItemGroupDef without {a}");
                }
                assert!(n.attribute((NS_DEF, "Structure")).is_some());
                assert!(n.attribute((NS_DEF, "ArchiveLocationID")).is_some());
                let leaf = elements(n)
                    .into_iter()
                    .find(|c| qname(c) == "def:leaf")
                    .unwrap();
                assert_eq!(
                    leaf.attribute("ID"),
                    n.attribute((NS_DEF, "ArchiveLocationID"))
                );
                assert!(leaf.attribute((NS_XLINK, "href")).is_some());
                assert_eq!(
                    elements(leaf).iter().map(qname).collect::<Vec<_>>(),
                    ["def:title"]
                );
            }
            "ItemDef" => {
                assert_order(
                    n,
                    &[
                        "Description",
                        "CodeListRef",
                        "def:Origin",
                        "def:ValueListRef",
                        "Alias",
                    ],
                );
                let t = n.attribute("DataType").unwrap();
                if matches!(t, "text" | "integer" | "float") {
                    assert!(
                        n.attribute("Length").is_some(),
                        "{:?} has no Length",
                        n.attribute("OID")
                    );
                }
            }
            "CodeList" => assert_order(
                n,
                &[
                    "Description",
                    "CodeListItem",
                    "EnumeratedItem",
                    "ExternalCodeList",
                    "Alias",
                ],
            ),
            _ => {}
        }
    }
}

fn xmllint(text: &str) {
    let Ok(probe) = std::process::Command::new("xmllint")
        .arg("--version")
        .output()
    else {
        // CI installs it (scripts/test-all.sh): there its absence is a failure, not a skip.
        assert!(
            std::env::var_os("TRIALPORT_REQUIRE_CONFORMANCE").is_none(),
            "xmllint is missing (Debian package libxml2-utils)"
        );
        eprintln!("skipped xmllint: not on this machine (Debian package libxml2-utils)");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("define.xml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
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
fn the_sdtm_example_define_is_well_formed_namespaced_ordered_and_cross_checks() {
    let Some(dir) = conformance_dir() else { return };
    let data = sdtm(&dir, true);
    let text = describe(
        &described(&data),
        &FormatOptions::new().with("sdtmig_version", "3.3"),
    )
    .unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<?xml-stylesheet"));
    assert_structure(&text);
    xmllint(&text);
    define::cross_check(&text, &described(&data)).unwrap();

    let doc = Document::parse(&text).unwrap();
    let groups: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ODM, "ItemGroupDef")))
        .collect();
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g.attribute("Name").unwrap())
        .collect();
    assert_eq!(names, ["DM", "AE", "TS", "SUPPDM"]);
    let dm = groups[0];
    assert_eq!(dm.attribute("Purpose"), Some("Tabulation"));
    assert_eq!(dm.attribute("SASDatasetName"), Some("DM"));
    assert_eq!(dm.attribute((NS_DEF, "StandardOID")), Some("STD.SDTMIG"));
    let refs = dm
        .children()
        .filter(|n| n.has_tag_name((NS_ODM, "ItemRef")))
        .count();
    assert_eq!(refs, 26);
    let std = doc
        .descendants()
        .find(|n| n.has_tag_name((NS_DEF, "Standard")))
        .unwrap();
    assert_eq!(
        (std.attribute("Name"), std.attribute("Version")),
        (Some("SDTMIG"), Some("3.3"))
    );
}

#[test]
fn the_sdtm_example_define_agrees_with_the_cdisc_define() {
    let Some(dir) = conformance_dir() else { return };
    let data = sdtm(&dir, true);
    let ours = describe(&described(&data), &FormatOptions::new()).unwrap();
    let theirs = std::fs::read_to_string(dir.join("datasetjson-examples/sdtm/define.xml")).unwrap();
    let ours = Document::parse(&ours).unwrap();
    let theirs = Document::parse(&theirs).unwrap();
    let by_oid =
        |doc: &Document<'_>, tag: &str| -> HashMap<String, (String, Vec<(String, String)>)> {
            doc.descendants()
                .filter(|n| n.has_tag_name((NS_ODM, tag)))
                .map(|n| {
                    let attrs = n
                        .attributes()
                        .map(|a| (a.name().to_string(), a.value().to_string()))
                        .collect();
                    let desc = n
                        .descendants()
                        .find(|d| d.has_tag_name((NS_ODM, "TranslatedText")))
                        .and_then(|t| t.text())
                        .unwrap_or_default()
                        .to_string();
                    (n.attribute("OID").unwrap().to_string(), (desc, attrs))
                })
                .collect()
        };
    let attr =
        |a: &[(String, String)], k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());

    // Same ItemGroupDefs: names, labels, class, domain, repeating and reference flags, leaf and item order.
    let (og, tg) = (
        by_oid(&ours, "ItemGroupDef"),
        by_oid(&theirs, "ItemGroupDef"),
    );
    assert_eq!(og.len(), 4);
    for (oid, (label, attrs)) in &og {
        let (tlabel, tattrs) = tg.get(oid).unwrap_or_else(|| panic!("CDISC has no {oid}"));
        assert_eq!(label, tlabel, "{oid} label");
        for k in [
            "Name",
            "Domain",
            "Repeating",
            "IsReferenceData",
            "SASDatasetName",
            "Purpose",
        ] {
            assert_eq!(attr(attrs, k), attr(tattrs, k), "{oid} {k}");
        }
        let class = |doc: &Document<'_>| {
            let g = doc
                .descendants()
                .find(|n| n.attribute("OID") == Some(oid.as_str()))
                .unwrap();
            let c = g
                .children()
                .find(|c| c.has_tag_name((NS_DEF, "Class")))
                .unwrap();
            let leaf = g
                .children()
                .find(|c| c.has_tag_name((NS_DEF, "leaf")))
                .unwrap();
            let refs: Vec<(String, String, Option<String>)> = g
                .children()
                .filter(|c| c.has_tag_name((NS_ODM, "ItemRef")))
                .map(|r| {
                    (
                        r.attribute("ItemOID").unwrap().to_string(),
                        r.attribute("OrderNumber").unwrap().to_string(),
                        r.attribute("KeySequence").map(str::to_string),
                    )
                })
                .collect();
            (
                c.attribute("Name").unwrap().to_string(),
                leaf.attribute((NS_XLINK, "href")).unwrap().to_string(),
                refs,
            )
        };
        assert_eq!(
            class(&ours),
            class(&theirs),
            "{oid} class, leaf and ItemRefs"
        );
    }

    // Same ItemDefs (by OID) with the same Names, DataTypes, labels; the same Length for every text item.
    let (oi, ti) = (by_oid(&ours, "ItemDef"), by_oid(&theirs, "ItemDef"));
    assert_eq!(oi.len(), 26 + 37 + 11 + 10);
    let mut compared = 0;
    for (oid, (label, attrs)) in &oi {
        let (tlabel, tattrs) = ti.get(oid).unwrap_or_else(|| panic!("CDISC has no {oid}"));
        assert_eq!(label, tlabel, "{oid} label");
        for k in ["Name", "DataType", "SASFieldName"] {
            assert_eq!(attr(attrs, k), attr(tattrs, k), "{oid} {k}");
        }
        if attr(attrs, "DataType").as_deref() == Some("text") {
            assert_eq!(
                attr(attrs, "Length"),
                attr(tattrs, "Length"),
                "{oid} Length"
            );
            compared += 1;
        } else if attr(attrs, "DataType").as_deref() == Some("date") {
            assert_eq!(attr(attrs, "Length"), None);
            assert_eq!(attr(tattrs, "Length"), None);
        }
    }
    assert!(compared > 60, "only {compared} text lengths compared");
}

#[test]
fn sas_metadata_alone_gives_the_standard_structures_and_reports_the_rest_missing() {
    let Some(dir) = conformance_dir() else { return };
    // The XPT files carry labels, lengths and formats, but no keys, structure or class: for these standard
    // domains the SDTMIG gives class, structure and whether they repeat, which must be what CDISC wrote.
    let data = sdtm(&dir, false);
    let text = describe(&described(&data), &FormatOptions::new()).unwrap();
    assert_structure(&text);
    define::cross_check(&text, &described(&data)).unwrap();
    let theirs = std::fs::read_to_string(dir.join("datasetjson-examples/sdtm/define.xml")).unwrap();
    let (ours, theirs) = (
        Document::parse(&text).unwrap(),
        Document::parse(&theirs).unwrap(),
    );
    for oid in ["IG.DM", "IG.AE", "IG.TS", "IG.SUPPDM"] {
        let facts = |doc: &Document<'_>| {
            let g = doc
                .descendants()
                .find(|n| n.attribute("OID") == Some(oid))
                .unwrap();
            let class = g
                .children()
                .find(|c| c.has_tag_name((NS_DEF, "Class")))
                .unwrap();
            [
                g.attribute((NS_DEF, "Structure")).map(str::to_string),
                g.attribute("Repeating").map(str::to_string),
                g.attribute("IsReferenceData").map(str::to_string),
                g.attribute("Domain").map(str::to_string),
                class.attribute("Name").map(str::to_string),
            ]
        };
        assert_eq!(facts(&ours), facts(&theirs), "{oid}");
    }

    // ADTTE is no standard's named dataset: its class, structure and repetition are not made up.
    let adam = vec![
        sas_dataset(&dir, "adam", "adsl", false),
        sas_dataset(&dir, "adam", "adtte", false),
    ];
    let err = describe(&described(&adam), &FormatOptions::new()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Validation);
    assert_eq!(err.reason(), "invalid_metadata");
    let problems: Vec<(String, String, String)> = err.details()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["dataset"].as_str().unwrap().to_string(),
                p["attribute"].as_str().unwrap().to_string(),
                p["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = ["class", "repeating", "structure"]
        .iter()
        .map(|a| ("ADTTE".to_string(), (*a).to_string(), "missing".to_string()))
        .collect();
    assert_eq!(problems, want);
}

#[test]
fn the_adam_example_is_analysis_data_with_sas_dates_as_integers() {
    let Some(dir) = conformance_dir() else { return };
    let mut data = vec![
        sas_dataset(&dir, "adam", "adsl", true),
        sas_dataset(&dir, "adam", "adtte", true),
    ];
    data[1].meta.class = Some("BASIC DATA STRUCTURE".into());
    let text = describe(&described(&data), &FormatOptions::new()).unwrap();
    assert_structure(&text);
    xmllint(&text);
    define::cross_check(&text, &described(&data)).unwrap();
    let doc = Document::parse(&text).unwrap();
    let item = |oid: &str| {
        doc.descendants()
            .find(|n| n.attribute("OID") == Some(oid))
            .unwrap()
    };
    let adsl = item("IG.ADSL");
    assert_eq!(adsl.attribute("Purpose"), Some("Analysis"));
    assert_eq!(adsl.attribute("Domain"), None);
    assert_eq!(adsl.attribute("Repeating"), Some("No"));
    let class = adsl
        .children()
        .find(|c| c.has_tag_name((NS_DEF, "Class")))
        .unwrap();
    assert_eq!(
        class.attribute("Name"),
        Some("SUBJECT LEVEL ANALYSIS DATASET")
    );
    let trtsdt = item("IT.ADSL.TRTSDT");
    assert_eq!(trtsdt.attribute("DataType"), Some("integer"));
    assert_eq!(trtsdt.attribute("Length"), Some("8"));
    assert_eq!(trtsdt.attribute((NS_DEF, "DisplayFormat")), Some("DATE9."));
    let std = doc
        .descendants()
        .find(|n| n.has_tag_name((NS_DEF, "Standard")))
        .unwrap();
    assert_eq!(
        (std.attribute("Name"), std.attribute("Version")),
        (Some("ADaMIG"), Some("1.3"))
    );
}

// ---- Generated data: these run everywhere. ----

fn col(name: &str, label: &str) -> ColumnMeta {
    ColumnMeta {
        name: name.into(),
        label: Some(label.into()),
        ..ColumnMeta::default()
    }
}

/// A small AE-like dataset with every kind of metadata.
fn ae() -> Owned {
    let schema = Arc::new(Schema::new(vec![
        Field::new("STUDYID", DataType::Utf8, false),
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AESEQ", DataType::Int64, false),
        Field::new("AETERM", DataType::Utf8, true),
        Field::new("AESEV", DataType::Utf8, true),
        Field::new("AESTDTC", DataType::Utf8, true),
        Field::new("AEDOSE", DataType::Float64, true),
    ]));
    let meta = DatasetMeta {
        name: "AE".into(),
        label: Some("Adverse Events".into()),
        structure: Some("One record per adverse event per subject".into()),
        comment: Some("Coded with MedDRA".into()),
        columns: vec![
            ColumnMeta {
                length: Some(12),
                key_sequence: Some(1),
                origin: Some("Protocol".into()),
                ..col("STUDYID", "Study Identifier")
            },
            ColumnMeta {
                length: Some(20),
                key_sequence: Some(2),
                role: Some("Identifier".into()),
                ..col("USUBJID", "Unique Subject Identifier")
            },
            ColumnMeta {
                key_sequence: Some(3),
                method: Some("Sequential within subject".into()),
                origin: Some("Derived".into()),
                ..col("AESEQ", "Sequence Number")
            },
            ColumnMeta {
                length: Some(200),
                origin: Some("Collected/Investigator".into()),
                codelist: Some("CL.MEDDRA".into()),
                ..col("AETERM", "Reported Term for the Adverse Event")
            },
            ColumnMeta {
                length: Some(8),
                codelist: Some("CL.AESEV".into()),
                comment: Some("As judged".into()),
                ..col("AESEV", "Severity/Intensity")
            },
            ColumnMeta {
                data_type: Some("datetime".into()),
                ..col("AESTDTC", "Start Date/Time of Adverse Event")
            },
            ColumnMeta {
                display_format: Some("8.2".into()),
                length: Some(6),
                ..col("AEDOSE", "Dose")
            },
        ],
        codelists: vec![
            CodeListMeta {
                oid: "CL.AESEV".into(),
                name: "Severity".into(),
                data_type: Some("text".into()),
                terms: ["MILD", "MODERATE", "SEVERE"]
                    .iter()
                    .map(|v| CodeListTerm {
                        value: (*v).into(),
                        decode: Some(v.to_lowercase()),
                    })
                    .collect(),
                ..CodeListMeta::default()
            },
            CodeListMeta {
                oid: "CL.MEDDRA".into(),
                name: "MedDRA".into(),
                dictionary: Some("MedDRA".into()),
                version: Some("26.0".into()),
                ..CodeListMeta::default()
            },
        ],
        ..DatasetMeta::default()
    };
    let schema = meta.apply_to(&schema).unwrap();
    Owned {
        schema,
        meta,
        file: "ae.xpt".into(),
        rows: 3,
    }
}

fn ts() -> Owned {
    let schema = Arc::new(Schema::new(vec![
        Field::new("STUDYID", DataType::Utf8, false),
        Field::new("TSPARMCD", DataType::Utf8, false),
        Field::new("TSVAL", DataType::Utf8, true),
    ]));
    let meta = DatasetMeta {
        name: "TS".into(),
        label: Some("Trial Summary".into()),
        structure: Some("One record per trial summary parameter value".into()),
        columns: vec![
            ColumnMeta {
                length: Some(12),
                ..col("STUDYID", "Study Identifier")
            },
            ColumnMeta {
                length: Some(8),
                ..col("TSPARMCD", "Trial Summary Parameter Short Name")
            },
            ColumnMeta {
                length: Some(200),
                ..col("TSVAL", "Parameter Value")
            },
        ],
        ..DatasetMeta::default()
    };
    let schema = meta.apply_to(&schema).unwrap();
    Owned {
        schema,
        meta,
        file: "ts.xpt".into(),
        rows: 0,
    }
}

#[test]
fn every_kind_of_metadata_is_written_and_resolves() {
    let data = vec![ae(), ts()];
    let text = describe(
        &described(&data),
        &FormatOptions::new().with("ct_version", "2024-03-29"),
    )
    .unwrap();
    assert_structure(&text);
    xmllint(&text);
    define::cross_check(&text, &described(&data)).unwrap();
    let doc = Document::parse(&text).unwrap();
    let by = |oid: &str| {
        doc.descendants()
            .find(|n| n.attribute("OID") == Some(oid))
            .unwrap_or_else(|| panic!("{oid}"))
    };

    let ae = by("IG.AE");
    assert_eq!(
        (ae.attribute("Repeating"), ae.attribute("IsReferenceData")),
        (Some("Yes"), Some("No"))
    );
    assert_eq!(ae.attribute((NS_DEF, "CommentOID")), Some("COM.AE"));
    assert_eq!(ae.attribute("Domain"), Some("AE"));
    let ts = by("IG.TS");
    assert_eq!(
        (ts.attribute("Repeating"), ts.attribute("IsReferenceData")),
        (Some("No"), Some("Yes"))
    );
    assert_eq!(ts.attribute((NS_DEF, "HasNoData")), Some("Yes"));
    let class = ts
        .children()
        .find(|c| c.has_tag_name((NS_DEF, "Class")))
        .unwrap();
    assert_eq!(class.attribute("Name"), Some("TRIAL DESIGN"));

    let refs: Vec<Node<'_, '_>> = ae
        .children()
        .filter(|n| n.has_tag_name((NS_ODM, "ItemRef")))
        .collect();
    let seq = refs[2];
    assert_eq!(seq.attribute("MethodOID"), Some("MT.AE.AESEQ"));
    assert_eq!(
        (seq.attribute("Mandatory"), seq.attribute("KeySequence")),
        (Some("Yes"), Some("3"))
    );
    assert_eq!(refs[1].attribute("Role"), Some("Identifier"));
    assert_eq!(refs[3].attribute("Mandatory"), Some("No"));
    let method = by("MT.AE.AESEQ");
    assert_eq!(method.attribute("Type"), Some("Computation"));

    let aeseq = by("IT.AE.AESEQ");
    assert_eq!(
        (aeseq.attribute("DataType"), aeseq.attribute("Length")),
        (Some("integer"), Some("8"))
    );
    let origin = |n: Node<'_, '_>| {
        let o = n
            .children()
            .find(|c| c.has_tag_name((NS_DEF, "Origin")))
            .unwrap();
        (
            o.attribute("Type").unwrap().to_string(),
            o.attribute("Source").map(str::to_string),
        )
    };
    assert_eq!(origin(aeseq), ("Derived".into(), None));
    let aeterm = by("IT.AE.AETERM");
    assert_eq!(
        origin(aeterm),
        ("Collected".into(), Some("Investigator".into()))
    );
    let stdtc = by("IT.AE.AESTDTC");
    assert_eq!(
        (stdtc.attribute("DataType"), stdtc.attribute("Length")),
        (Some("datetime"), None)
    );
    let dose = by("IT.AE.AEDOSE");
    assert_eq!(
        (
            dose.attribute("DataType"),
            dose.attribute("Length"),
            dose.attribute("SignificantDigits")
        ),
        (Some("float"), Some("6"), Some("2"))
    );
    assert_eq!(
        by("IT.AE.AESEV").attribute((NS_DEF, "CommentOID")),
        Some("COM.AE.AESEV")
    );

    let sev = by("CL.AESEV");
    let items: Vec<(&str, &str)> = sev
        .children()
        .filter(|n| n.has_tag_name((NS_ODM, "CodeListItem")))
        .map(|n| {
            (
                n.attribute("CodedValue").unwrap(),
                n.descendants()
                    .find(|d| d.has_tag_name((NS_ODM, "TranslatedText")))
                    .unwrap()
                    .text()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("MILD", "mild"),
            ("MODERATE", "moderate"),
            ("SEVERE", "severe")
        ]
    );
    let meddra = by("CL.MEDDRA")
        .children()
        .find(|n| n.has_tag_name((NS_ODM, "ExternalCodeList")))
        .unwrap();
    assert_eq!(
        (meddra.attribute("Dictionary"), meddra.attribute("Version")),
        (Some("MedDRA"), Some("26.0"))
    );
    let ct: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_DEF, "Standard")))
        .map(|n| n.attribute("OID").unwrap())
        .collect();
    assert_eq!(ct, ["STD.SDTMIG", "STD.CT.SDTM"]);
}

#[test]
fn split_datasets_are_parts_of_their_domain() {
    let mut data = vec![ae(), ae()];
    for (i, d) in data.iter_mut().enumerate() {
        d.meta.name = format!("AE{}", i + 1);
        d.meta.structure = None;
        d.meta.comment = None;
        d.file = format!("split/ae{}.xpt", i + 1);
        for c in &mut d.meta.columns {
            c.item_oid = Some(format!("IT.AE.{}", c.name));
            c.method = None;
        }
    }
    let text = describe(&described(&data), &FormatOptions::new()).unwrap();
    assert_structure(&text);
    define::cross_check(&text, &described(&data)).unwrap();
    let doc = Document::parse(&text).unwrap();
    for name in ["AE1", "AE2"] {
        let g = doc
            .descendants()
            .find(|n| n.attribute("Name") == Some(name))
            .unwrap();
        assert_eq!(g.attribute("Domain"), Some("AE"));
        assert_eq!(
            g.attribute((NS_DEF, "Structure")),
            Some("One record per adverse event per subject")
        );
        let class = g
            .children()
            .find(|c| c.has_tag_name((NS_DEF, "Class")))
            .unwrap();
        assert_eq!(class.attribute("Name"), Some("EVENTS"));
    }
    // The parts share their item definitions.
    assert_eq!(text.matches("<ItemDef OID=\"IT.AE.AETERM\"").count(), 1);
}

#[test]
fn output_is_deterministic() {
    let data = vec![ae(), ts()];
    let a = describe(&described(&data), &FormatOptions::new()).unwrap();
    let b = describe(&described(&data), &FormatOptions::new()).unwrap();
    assert_eq!(a, b);
    assert!(a.contains("CreationDateTime=\"2025-01-21T10:00:00Z\""));
    let c = describe(
        &described(&data),
        &FormatOptions::new().with("created", "2025-02-01T00:00:00Z"),
    )
    .unwrap();
    assert_ne!(a, c);
}

#[test]
fn markup_in_labels_is_escaped_and_reads_back() {
    let mut data = vec![ts()];
    let nasty = "Parkinson's <score> & \"total\"";
    data[0].meta.label = Some(nasty.into());
    data[0].meta.columns[2].label = Some(nasty.into());
    data[0].meta.comment = Some("a\ttab\nand a line".into());
    let text = describe(
        &described(&data),
        &FormatOptions::new().with("study_description", "A & B <C>"),
    )
    .unwrap();
    assert!(text.contains("Parkinson&apos;s &lt;score&gt; &amp; &quot;total&quot;"));
    let doc = Document::parse(&text).unwrap();
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_ODM, "TranslatedText")))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(texts.iter().filter(|t| **t == nasty).count(), 2);
    assert!(texts.contains(&"a\ttab\nand a line"));
    let sd = doc
        .descendants()
        .find(|n| n.has_tag_name((NS_ODM, "StudyDescription")))
        .unwrap();
    assert_eq!(sd.text(), Some("A & B <C>"));
    xmllint(&text);
    define::cross_check(&text, &described(&data)).unwrap();

    data[0].meta.columns[1].label = Some("bell\u{7}".into());
    let err = describe(&described(&data), &FormatOptions::new()).unwrap_err();
    assert_eq!(err.reason(), "invalid_xml_character");
}

#[test]
fn bad_or_missing_metadata_is_listed_whole() {
    let mut data = vec![ae()];
    let m = &mut data[0].meta;
    m.columns[3].length = None; // AETERM: text without a length
    m.columns[0].origin = Some("Guessed".into());
    m.columns[4].codelist = Some("CL.NONE".into());
    m.columns[5].data_type = Some("money".into());
    m.name = "XX".into(); // a custom domain: no SDTM class to infer
    let err = describe(&described(&data), &FormatOptions::new()).unwrap_err();
    assert_eq!(err.reason(), "invalid_metadata");
    let problems: Vec<(String, String, String)> = err.details()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["column"].as_str().unwrap_or("").to_string(),
                p["attribute"].as_str().unwrap().to_string(),
                p["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("", "class", "missing"),
        ("STUDYID", "origin", "invalid"),
        ("AETERM", "length", "missing"),
        ("AESEV", "codelist", "missing"),
        ("AESTDTC", "dataType", "invalid"),
    ];
    for w in want {
        assert!(
            problems
                .iter()
                .any(|p| (p.0.as_str(), p.1.as_str(), p.2.as_str()) == w),
            "{w:?} not in {problems:?}"
        );
    }
    assert_eq!(problems.len(), want.len(), "{problems:?}");

    // Two datasets giving one item OID different definitions is a conflict.
    let mut two = vec![ae(), ts()];
    two[1].meta.columns[0].item_oid = Some("IT.AE.STUDYID".into());
    two[1].meta.columns[0].label = Some("Other".into());
    let err = describe(&described(&two), &FormatOptions::new()).unwrap_err();
    assert!(err.details()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["rule"] == "conflict"));
    // Identical definitions are shared.
    two[1].meta.columns[0].label = Some("Study Identifier".into());
    two[1].meta.columns[0].origin = Some("Protocol".into());
    for d in &mut two {
        d.meta.columns[0].comment = Some("Same for all".into());
    }
    two[1].schema = two[1].meta.apply_to(&two[1].schema).unwrap();
    let text = describe(&described(&two), &FormatOptions::new()).unwrap();
    assert_eq!(text.matches("<ItemDef OID=\"IT.AE.STUDYID\"").count(), 1);
    assert_eq!(
        text.matches("<def:CommentDef OID=\"COM.AE.STUDYID\"")
            .count(),
        1
    );
    assert_structure(&text);
    define::cross_check(&text, &described(&two)).unwrap();
}

fn rules(text: &str, data: &[Owned]) -> Vec<(String, Option<String>, &'static str)> {
    let err = define::cross_check(text, &described(data)).unwrap_err();
    assert_eq!(
        (err.code(), err.reason()),
        (ErrorCode::Validation, "define_mismatch")
    );
    define::findings(text, &described(data))
        .unwrap()
        .into_iter()
        .map(|f| (f.dataset, f.variable, f.rule))
        .collect()
}

#[test]
fn the_cross_check_catches_missing_groups_items_and_wrong_lengths_and_types() {
    let data = vec![ae(), ts()];
    let good = describe(&described(&data), &FormatOptions::new()).unwrap();
    define::cross_check(&good, &described(&data)).unwrap();
    let some = |s: &str| Some(s.to_string());

    // A missing ItemGroupDef: the file has none (and its leaf's ItemRefs go with it).
    let start = good.find("<ItemGroupDef OID=\"IG.TS\"").unwrap();
    let end = good[start..].find("</ItemGroupDef>").unwrap() + start + "</ItemGroupDef>".len();
    let no_ts = format!("{}{}", &good[..start], &good[end..]);
    assert_eq!(
        rules(&no_ts, &data),
        [("TS".to_string(), None, "missing_item_group")]
    );

    // A missing ItemDef: its ItemRef no longer resolves and the variable has no definition.
    let start = good.find("<ItemDef OID=\"IT.AE.AETERM\"").unwrap();
    let end = good[start..].find("</ItemDef>").unwrap() + start + "</ItemDef>".len();
    let no_item = format!("{}{}", &good[..start], &good[end..]);
    let found = rules(&no_item, &data);
    assert!(
        found.contains(&("AE".into(), some("AETERM"), "missing_item_def")),
        "{found:?}"
    );
    assert!(
        found.contains(&(String::new(), None, "unresolved_oid")),
        "{found:?}"
    );

    // A wrong length.
    let wrong_len = good.replacen(
        "<ItemDef OID=\"IT.AE.AESEV\" Name=\"AESEV\" DataType=\"text\" Length=\"8\"",
        "<ItemDef OID=\"IT.AE.AESEV\" Name=\"AESEV\" DataType=\"text\" Length=\"7\"",
        1,
    );
    assert_ne!(wrong_len, good);
    assert_eq!(
        rules(&wrong_len, &data),
        [("AE".to_string(), some("AESEV"), "length")]
    );
    let f = define::findings(&wrong_len, &described(&data)).unwrap();
    assert_eq!(
        (f[0].expected.as_deref(), f[0].found.as_deref()),
        (Some("8"), Some("7"))
    );

    // A wrong type: an integer column described as text, a text column as a float.
    let wrong_type = good
        .replacen(
            "Name=\"AESEQ\" DataType=\"integer\"",
            "Name=\"AESEQ\" DataType=\"text\"",
            1,
        )
        .replacen(
            "Name=\"TSVAL\" DataType=\"text\" Length=\"200\"",
            "Name=\"TSVAL\" DataType=\"float\" Length=\"200\"",
            1,
        );
    let found = rules(&wrong_type, &data);
    assert!(
        found.contains(&("AE".into(), some("AESEQ"), "data_type")),
        "{found:?}"
    );
    assert!(
        found.contains(&("TS".into(), some("TSVAL"), "data_type")),
        "{found:?}"
    );

    // A variable the file lacks, and a file the define lacks.
    let mut fewer = vec![ae(), ts()];
    let fields: Vec<Field> = fewer[1]
        .schema
        .fields()
        .iter()
        .take(2)
        .map(|f| f.as_ref().clone())
        .collect();
    fewer[1].schema = Arc::new(Schema::new_with_metadata(
        fields,
        fewer[1].schema.metadata().clone(),
    ));
    assert_eq!(
        rules(&good, &fewer),
        [("TS".to_string(), some("TSVAL"), "extra_item")]
    );
    let mut more = vec![ae(), ts(), ts()];
    more[2].file = "ts2.xpt".into();
    assert_eq!(
        rules(&good, &more),
        [("TS".to_string(), None, "missing_item_group")]
    );
    assert_eq!(
        rules(&good, &data[..1]),
        [("TS".to_string(), None, "extra_item_group")]
    );

    // Not Define-XML 2.1, and not XML.
    let v20 = good.replace(NS_DEF, "http://www.cdisc.org/ns/def/v2.0");
    assert_eq!(rules(&v20, &data), [(String::new(), None, "namespace")]);
    assert_eq!(
        define::cross_check("<ODM", &described(&data))
            .unwrap_err()
            .reason(),
        "invalid_define"
    );
}

fn batch(schema: &SchemaRef, cols: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

#[test]
fn convert_describes_one_dataset_measuring_text_from_its_rows() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("STUDYID", DataType::Utf8, false),
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AGE", DataType::Float64, true),
        Field::new("COUNTRY", DataType::Utf8, true),
    ]));
    let meta = DatasetMeta {
        name: "DM".into(),
        structure: Some("One record per subject".into()),
        columns: vec![ColumnMeta {
            length: Some(40),
            ..col("COUNTRY", "Country")
        }],
        ..DatasetMeta::default()
    };
    let schema = meta.apply_to(&schema).unwrap();
    let options = FormatOptions::new().with("created", "2025-01-21T10:00:00Z");
    let mut out = Vec::new();
    {
        let mut enc = DefineXmlFormat
            .encoder(&schema, &meta, &options, &mut out)
            .unwrap();
        for ids in [["S-01-001", "S-01-0002"], ["S-01-3", "S-01-44"]] {
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec!["PILOT1", "PILOT1"])),
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Float64Array::from(vec![Some(63.0), None])),
                Arc::new(StringArray::from(vec![Some("USA"), None])),
            ];
            enc.write(&batch(&schema, cols)).unwrap();
        }
        assert_eq!(enc.finish().unwrap().rows, 4);
    }
    let text = String::from_utf8(out).unwrap();
    assert_structure(&text);
    let doc = Document::parse(&text).unwrap();
    let by = |oid: &str| {
        doc.descendants()
            .find(|n| n.attribute("OID") == Some(oid))
            .unwrap()
    };
    assert_eq!(
        by("IT.DM.USUBJID").attribute("Length"),
        Some("9"),
        "longest value in bytes"
    );
    assert_eq!(by("IT.DM.STUDYID").attribute("Length"), Some("6"));
    assert_eq!(
        by("IT.DM.COUNTRY").attribute("Length"),
        Some("40"),
        "the metadata wins"
    );
    assert_eq!(
        by("IT.DM.USUBJID")
            .descendants()
            .find(|d| d.has_tag_name((NS_ODM, "TranslatedText")))
            .unwrap()
            .text(),
        Some("USUBJID")
    );
    assert_eq!(by("IG.DM").attribute("Repeating"), Some("No"));
    let study = doc
        .descendants()
        .find(|n| n.has_tag_name((NS_ODM, "Study")))
        .unwrap();
    assert_eq!(study.attribute("OID"), Some("PILOT1"));
    let leaf = doc
        .descendants()
        .find(|n| n.has_tag_name((NS_DEF, "leaf")))
        .unwrap();
    assert_eq!(leaf.attribute((NS_XLINK, "href")), Some("dm.xpt"));

    // No rows: no study id and no lengths to measure.
    let mut out = Vec::new();
    let enc = DefineXmlFormat
        .encoder(&schema, &meta, &FormatOptions::new(), &mut out)
        .unwrap();
    assert_eq!(enc.finish().unwrap_err().reason(), "missing_option");
    let mut out = Vec::new();
    let enc = DefineXmlFormat
        .encoder(
            &schema,
            &meta,
            &FormatOptions::new().with("study", "S"),
            &mut out,
        )
        .unwrap();
    let err = enc.finish().unwrap_err();
    assert_eq!(err.reason(), "invalid_metadata");
    assert_eq!(
        err.details()["problems"].as_array().unwrap().len(),
        2,
        "STUDYID and USUBJID lengths"
    );
    let _ = Int64Array::from(vec![1]);
}

#[test]
fn format_info_options_and_the_shared_xml_extension() {
    let info = DefineXmlFormat.info();
    assert_eq!(
        (info.id, info.extension, info.media_type),
        ("define-xml", "xml", "application/xml")
    );
    assert!(info.can(trialport_core::format::Capability::Describe));
    assert!(info.can(trialport_core::format::Capability::MetadataOnly));
    assert_eq!(
        DefineXmlFormat
            .check_options(&FormatOptions::new().with("bogus", "1"))
            .unwrap_err()
            .reason(),
        "unknown_option"
    );
    assert_eq!(
        DefineXmlFormat
            .check_options(&FormatOptions::new().with("context", "Draft"))
            .unwrap_err()
            .reason(),
        "invalid_option"
    );
    assert_eq!(
        DefineXmlFormat
            .check_options(&FormatOptions::new().with("created", "yesterday"))
            .unwrap_err()
            .reason(),
        "invalid_option"
    );
    let data = vec![ts()];
    let mut out = Vec::new();
    let err = DefineXmlFormat
        .describe(
            &study(),
            &described(&data),
            &FormatOptions::new().with("file", "x.xpt"),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(err.reason(), "invalid_option");
    let err = DefineXmlFormat
        .describe(&study(), &[], &FormatOptions::new(), &mut out)
        .unwrap_err();
    assert_eq!(err.reason(), "missing_datasets");

    // Two formats write .xml: the registry does not pick one silently.
    let registry = trialport_formats::default_formats();
    assert!(registry.by_extension("xml").is_none());
    assert!(registry.get("define-xml").is_ok() && registry.get("odm-xml").is_ok());
    assert_eq!(registry.by_extension("XPT").unwrap().info().id, "xpt");
}
