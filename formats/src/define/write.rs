//! Building the Define-XML 2.1 document: datasets and columns to ItemGroupDefs, ItemDefs, CodeLists, MethodDefs
//! and CommentDefs, with every fallback in one place, then writing them in the order the schema requires.

use super::types::{
    is_adam, is_sas_name, sdtm_class, standard_name, standard_structure, type_fact, TypeFact,
};
use super::xml::{Attr, Xml};
use super::DefineOptions;
use crate::xpt::KEY_NUMERIC_LENGTH;
use serde::Serialize;
use std::collections::HashMap;
use trialport_core::error::Reason;
use trialport_core::format::{Described, StudyInfo};
use trialport_core::meta::{CodeListMeta, ColumnMeta};
use trialport_core::{Error, Result};

/// The Define-XML 2.1 namespace.
pub const NS_DEF: &str = "http://www.cdisc.org/ns/def/v2.1";
/// The ODM 1.3 namespace (Define-XML 2.1 extends ODM 1.3.2).
pub const NS_ODM: &str = "http://www.cdisc.org/ns/odm/v1.3";
/// The XLink namespace (`def:leaf/@xlink:href`).
pub const NS_XLINK: &str = "http://www.w3.org/1999/xlink";
/// The `def:DefineVersion` written.
pub const DEFINE_VERSION: &str = "2.1.0";

/// One thing the metadata lacks or gets wrong, as listed in `details.problems`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Problem {
    dataset: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<String>,
    attribute: &'static str,
    /// `missing`, `invalid` or `conflict`.
    rule: &'static str,
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(
        &mut self,
        dataset: &str,
        column: Option<&str>,
        attribute: &'static str,
        rule: &'static str,
    ) {
        self.0.push(Problem {
            dataset: dataset.to_string(),
            column: column.map(str::to_string),
            attribute,
            rule,
        });
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Group {
    oid: String,
    name: String,
    domain: Option<String>,
    repeating: bool,
    reference: bool,
    sas_name: Option<String>,
    structure: String,
    adam: bool,
    has_no_data: bool,
    comment_oid: Option<String>,
    leaf_id: String,
    file: String,
    label: String,
    class: String,
    refs: Vec<Ref>,
}

#[derive(Debug, Clone, PartialEq)]
struct Ref {
    item_oid: String,
    order: usize,
    mandatory: bool,
    key_sequence: Option<u32>,
    method_oid: Option<String>,
    role: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Item {
    oid: String,
    name: String,
    data_type: &'static str,
    length: Option<u32>,
    significant_digits: Option<u16>,
    sas_name: Option<String>,
    display_format: Option<String>,
    comment_oid: Option<String>,
    label: String,
    codelist: Option<String>,
    origin: Option<(&'static str, Option<&'static str>)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Described2 {
    oid: String,
    name: String,
    text: String,
}

/// Everything the document holds, in document order.
#[derive(Default)]
struct Model {
    groups: Vec<Group>,
    items: Vec<Item>,
    codelists: Vec<CodeListMeta>,
    methods: Vec<Described2>,
    comments: Vec<Described2>,
    sdtm: bool,
    adam: bool,
}

const ORIGIN_TYPES: &[&str] = &[
    "Collected",
    "Derived",
    "Assigned",
    "Protocol",
    "Predecessor",
    "Not Available",
];
const ORIGIN_SOURCES: &[&str] = &["Subject", "Investigator", "Vendor", "Sponsor"];

/// Parses an origin: a Define-XML 2.1 type (`Collected`, `Derived`, `Assigned`, `Protocol`, `Predecessor`,
/// `Not Available`), optionally with a source after `/` or in parentheses (`Collected/Investigator`,
/// `Collected (Vendor)`), or a Define-XML 2.0 origin (`CRF` is `Collected`, `eDT` is `Collected` from `Vendor`).
/// Case does not matter.
fn parse_origin(s: &str) -> Option<(&'static str, Option<&'static str>)> {
    let s = s.trim();
    let (t, src) = match s.split_once('/') {
        Some((t, src)) => (t.trim(), Some(src.trim())),
        None => match s.split_once('(') {
            Some((t, rest)) => (t.trim(), Some(rest.trim().strip_suffix(')')?.trim())),
            None => (s, None),
        },
    };
    let find =
        |list: &[&'static str], v: &str| list.iter().copied().find(|x| x.eq_ignore_ascii_case(v));
    let (ty, implied) = if t.eq_ignore_ascii_case("crf") {
        ("Collected", None)
    } else if t.eq_ignore_ascii_case("edt") {
        ("Collected", Some("Vendor"))
    } else {
        (find(ORIGIN_TYPES, t)?, None)
    };
    let source = match src {
        Some(v) => Some(find(ORIGIN_SOURCES, v)?),
        None => implied,
    };
    Some((ty, source))
}

/// The columns that identify a subject: a dataset with none of them is reference data.
const SUBJECT_COLUMNS: &[&str] = &["USUBJID"];
/// Key variables that identify only the study or subject: a key made of these alone is one record per subject.
const SUBJECT_KEYS: &[&str] = &["STUDYID", "USUBJID", "SUBJID"];

fn build(
    datasets: &[Described<'_>],
    opts: &DefineOptions,
    measured: &[HashMap<String, u32>],
) -> (Model, Problems) {
    let mut m = Model::default();
    let mut p = Problems::default();
    let mut item_at: HashMap<String, usize> = HashMap::new();
    let mut known_codelists: Vec<&CodeListMeta> = Vec::new();
    for d in datasets {
        for cl in &d.meta.codelists {
            match known_codelists.iter().find(|c| c.oid == cl.oid) {
                Some(c) if *c != cl => p.add(&d.meta.name, None, "codelists", "conflict"),
                Some(_) => {}
                None => known_codelists.push(cl),
            }
        }
    }
    let mut group_oids = Vec::new();
    for (di, d) in datasets.iter().enumerate() {
        let name = d.meta.name.clone();
        if name.is_empty() {
            p.add("", None, "name", "missing");
            continue;
        }
        let upper = name.to_ascii_uppercase();
        let meta = d.meta;
        let adam = is_adam(&name, meta.class.as_deref());
        m.adam |= adam;
        m.sdtm |= !adam;
        // The standard dataset this one is (a split `AE1` is `AE`), for the standards' tables.
        let std_name = standard_name(&upper);
        let domain = if adam {
            None
        } else {
            Some(meta.domain.clone().unwrap_or_else(|| {
                std_name
                    .strip_prefix("SUPP")
                    .filter(|s| !s.is_empty())
                    .unwrap_or(&std_name)
                    .to_string()
            }))
        };
        let standard = standard_structure(&std_name);
        let class = meta.class.clone().or_else(|| {
            if adam {
                (std_name == "ADSL").then(|| "SUBJECT LEVEL ANALYSIS DATASET".to_string())
            } else {
                sdtm_class(&std_name)
                    .or_else(|| domain.as_deref().and_then(sdtm_class))
                    .map(str::to_string)
            }
        });
        if class.is_none() {
            p.add(&name, None, "class", "missing");
        }
        let columns: Vec<(&arrow::datatypes::Field, ColumnMeta)> = d
            .schema
            .fields()
            .iter()
            .map(|f| {
                let cm = meta
                    .column(f.name())
                    .cloned()
                    .unwrap_or_else(|| ColumnMeta {
                        name: f.name().clone(),
                        ..ColumnMeta::default()
                    });
                (f.as_ref(), cm)
            })
            .collect();
        let has_subject = columns
            .iter()
            .any(|(f, _)| SUBJECT_COLUMNS.contains(&f.name().as_str()));
        let reference = meta.is_reference_data.unwrap_or(!has_subject);
        let mut keys: Vec<(u32, &str)> = columns
            .iter()
            .filter_map(|(f, c)| c.key_sequence.map(|k| (k, f.name().as_str())))
            .collect();
        keys.sort();
        let per_subject = meta
            .structure
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("one record per subject"));
        let repeating = match meta.repeating {
            Some(r) => Some(r),
            None if reference || per_subject => Some(false),
            None if !keys.is_empty() => Some(!keys.iter().all(|(_, k)| SUBJECT_KEYS.contains(k))),
            None => standard.map(|(_, r)| r),
        };
        if repeating.is_none() {
            p.add(&name, None, "repeating", "missing");
        }
        let structure = meta.structure.clone().or_else(|| {
            if let Some((s, _)) = standard {
                return Some(s.to_string());
            }
            (!keys.is_empty()).then(|| {
                let names: Vec<&str> = keys.iter().map(|(_, k)| *k).collect();
                format!("One record per {}", names.join(", "))
            })
        });
        if structure.is_none() {
            p.add(&name, None, "structure", "missing");
        }
        let oid = meta
            .item_group_oid
            .clone()
            .unwrap_or_else(|| format!("IG.{name}"));
        if group_oids.contains(&oid) {
            p.add(&name, None, "itemGroupOID", "conflict");
        }
        group_oids.push(oid.clone());
        let comment_oid = meta.comment.as_ref().map(|text| {
            let oid = format!("COM.{name}");
            m.comments.push(Described2 {
                oid: oid.clone(),
                name: String::new(),
                text: text.clone(),
            });
            oid
        });
        let xpt = d.file.to_ascii_lowercase().ends_with(".xpt");
        let mut refs = Vec::new();
        for (i, (f, c)) in columns.iter().enumerate() {
            let col = f.name().as_str();
            let fact = type_fact(f, c, xpt);
            let data_type = match fact {
                TypeFact::Known(t) => t,
                TypeFact::OneOf(list) => list[0],
                TypeFact::Invalid => {
                    p.add(&name, Some(col), "dataType", "invalid");
                    "text"
                }
            };
            let length = match data_type {
                "text" => {
                    let l = c
                        .length
                        .or_else(|| measured.get(di).and_then(|m| m.get(col).copied()));
                    if l.is_none() && fact != TypeFact::Invalid {
                        p.add(&name, Some(col), "length", "missing");
                    }
                    l
                }
                "integer" | "float" => c.length.or_else(|| {
                    Some(
                        f.metadata()
                            .get(KEY_NUMERIC_LENGTH)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(8),
                    )
                }),
                _ => None,
            };
            let significant_digits = (data_type == "float")
                .then(|| {
                    c.display_format
                        .as_deref()
                        .and_then(crate::xpt::SasFormat::parse)
                })
                .flatten()
                .map(|f| f.decimals)
                .filter(|d| *d > 0);
            let origin = match c.origin.as_deref() {
                None => None,
                Some(o) => {
                    let parsed = parse_origin(o);
                    if parsed.is_none() {
                        p.add(&name, Some(col), "origin", "invalid");
                    }
                    parsed
                }
            };
            if let Some(cl) = &c.codelist {
                if !known_codelists.iter().any(|k| &k.oid == cl) {
                    p.add(&name, Some(col), "codelist", "missing");
                } else if !m.codelists.iter().any(|k| &k.oid == cl) {
                    if let Some(k) = known_codelists.iter().find(|k| &k.oid == cl) {
                        check_codelist(k, &name, &mut p);
                        m.codelists.push((*k).clone());
                    }
                }
            }
            let item_oid = c
                .item_oid
                .clone()
                .unwrap_or_else(|| format!("IT.{name}.{col}"));
            // Named after the item, so that an item shared by several datasets has one comment.
            let comment_oid = c
                .comment
                .as_ref()
                .map(|_| format!("COM.{}", item_oid.strip_prefix("IT.").unwrap_or(&item_oid)));
            let method_oid = c.method.as_ref().map(|text| {
                let oid = format!("MT.{name}.{col}");
                m.methods.push(Described2 {
                    oid: oid.clone(),
                    name: format!("Algorithm to derive {name}.{col}"),
                    text: text.clone(),
                });
                oid
            });
            let item = Item {
                oid: item_oid,
                name: col.to_string(),
                data_type,
                length,
                significant_digits,
                sas_name: is_sas_name(col).then(|| col.to_string()),
                display_format: c.display_format.clone(),
                comment_oid,
                label: c.label.clone().unwrap_or_else(|| col.to_string()),
                codelist: c.codelist.clone(),
                origin,
            };
            refs.push(Ref {
                item_oid: item.oid.clone(),
                order: i + 1,
                mandatory: c.mandatory.unwrap_or(c.key_sequence.is_some()),
                key_sequence: c.key_sequence,
                method_oid,
                role: c.role.clone(),
            });
            match item_at.get(&item.oid) {
                Some(&at) if m.items[at] != item => p.add(&name, Some(col), "itemOID", "conflict"),
                Some(_) => {}
                None => {
                    if let (Some(oid), Some(text)) = (&item.comment_oid, &c.comment) {
                        m.comments.push(Described2 {
                            oid: oid.clone(),
                            name: String::new(),
                            text: text.clone(),
                        });
                    }
                    item_at.insert(item.oid.clone(), m.items.len());
                    m.items.push(item);
                }
            }
        }
        m.groups.push(Group {
            oid,
            name: name.clone(),
            domain,
            repeating: repeating.unwrap_or(true),
            reference,
            sas_name: is_sas_name(&name).then(|| name.clone()),
            structure: structure.unwrap_or_default(),
            adam,
            has_no_data: d.rows == Some(0),
            comment_oid,
            leaf_id: format!("LF.{name}"),
            file: d.file.to_string(),
            label: meta.label.clone().unwrap_or_else(|| name.clone()),
            class: class.unwrap_or_default(),
            refs,
        });
    }
    let mut files: Vec<&str> = m.groups.iter().map(|g| g.file.as_str()).collect();
    files.sort_unstable();
    if files.windows(2).any(|w| w[0] == w[1]) {
        p.add("", None, "file", "conflict");
    }
    if opts.sdtmig_version.is_empty() && m.sdtm {
        p.add("", None, "sdtmig_version", "missing");
    }
    if opts.adamig_version.is_empty() && m.adam {
        p.add("", None, "adamig_version", "missing");
    }
    (m, p)
}

fn check_codelist(cl: &CodeListMeta, dataset: &str, p: &mut Problems) {
    let decoded = cl.terms.iter().filter(|t| t.decode.is_some()).count();
    let bad_terms = decoded != 0 && decoded != cl.terms.len();
    let neither = cl.terms.is_empty() && cl.dictionary.is_none();
    let both = !cl.terms.is_empty() && cl.dictionary.is_some();
    let bad_type = !matches!(
        cl.data_type.as_deref(),
        None | Some("text" | "integer" | "float")
    );
    if bad_terms || neither || both || bad_type || cl.oid.is_empty() || cl.name.is_empty() {
        p.add(dataset, None, "codelists", "invalid");
    }
}

fn yes_no(b: bool) -> Option<&'static str> {
    Some(if b { "Yes" } else { "No" })
}

fn description(x: &mut Xml, lang: &str, text: &str) -> Result<()> {
    x.start("Description", &[])?;
    x.leaf("TranslatedText", &[("xml:lang", Some(lang))], text)?;
    x.end();
    Ok(())
}

/// Writes the Define-XML document for `datasets` into a buffer.
///
/// `measured` holds, per dataset, the longest value in bytes of text columns whose rows were seen (the encoder
/// path); it is empty for [`trialport_core::format::Format::describe`].
///
/// # Errors
/// EXP002 `invalid_metadata` listing every problem (`details.problems`: dataset, column, attribute, rule
/// `missing`/`invalid`/`conflict`); EXP002 `invalid_xml_character` for a control character in a value.
pub(crate) fn document(
    study: &StudyInfo<'_>,
    datasets: &[Described<'_>],
    opts: &DefineOptions,
    measured: &[HashMap<String, u32>],
) -> Result<Vec<u8>> {
    if datasets.is_empty() {
        return Err(Error::validation(
            Reason::MissingDatasets,
            "a Define-XML document describes at least one dataset",
        )
        .with_field("datasets"));
    }
    let (m, problems) = build(datasets, opts, measured);
    if !problems.0.is_empty() {
        let n = problems.0.len();
        return Err(Error::validation(
            Reason::InvalidMetadata,
            format!(
                "the metadata cannot make a Define-XML document: {n} problem{} (see details.problems; the metadata \
                 document supplies what is missing)",
                if n == 1 { "" } else { "s" }
            ),
        )
        .with_detail("problems", serde_json::to_value(&problems.0).unwrap_or_default()));
    }
    let study_id = opts.study.as_deref().unwrap_or(study.study);
    let created = opts
        .created
        .unwrap_or(study.created)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let study_oid = opts
        .study_oid
        .clone()
        .unwrap_or_else(|| study_id.to_string());
    let file_oid = opts
        .file_oid
        .clone()
        .unwrap_or_else(|| format!("{study_oid}.Define-XML_{DEFINE_VERSION}"));
    let mdv_oid = opts
        .mdv_oid
        .clone()
        .unwrap_or_else(|| format!("MDV.{study_oid}"));
    let mdv_name = opts
        .mdv_name
        .clone()
        .unwrap_or_else(|| format!("Data definitions for {study_id}"));
    let lang = opts.language.as_str();

    let mut x = Xml::new();
    x.buf
        .extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    if !opts.stylesheet.is_empty() {
        x.buf
            .extend_from_slice(b"\n<?xml-stylesheet type=\"text/xsl\" href=\"");
        x.context = "options.stylesheet".into();
        x.text(&opts.stylesheet)?;
        x.buf.extend_from_slice(b"\"?>");
    }
    x.context = "options".into();
    x.start(
        "ODM",
        &[
            ("xmlns", Some(NS_ODM)),
            ("xmlns:xlink", Some(NS_XLINK)),
            ("xmlns:def", Some(NS_DEF)),
            ("ODMVersion", Some("1.3.2")),
            ("FileOID", Some(&file_oid)),
            ("FileType", Some("Snapshot")),
            ("CreationDateTime", Some(&created)),
            ("Originator", opts.originator.as_deref()),
            ("SourceSystem", Some(&opts.source_system)),
            ("SourceSystemVersion", Some(&opts.source_system_version)),
            ("def:Context", Some(&opts.context)),
        ],
    )?;
    x.start("Study", &[("OID", Some(&study_oid))])?;
    x.start("GlobalVariables", &[])?;
    x.leaf(
        "StudyName",
        &[],
        opts.study_name.as_deref().unwrap_or(study_id),
    )?;
    x.leaf(
        "StudyDescription",
        &[],
        opts.study_description.as_deref().unwrap_or(study_id),
    )?;
    x.leaf(
        "ProtocolName",
        &[],
        opts.protocol_name.as_deref().unwrap_or(study_id),
    )?;
    x.end();
    x.start(
        "MetaDataVersion",
        &[
            ("OID", Some(&mdv_oid)),
            ("Name", Some(&mdv_name)),
            ("Description", opts.mdv_description.as_deref()),
            ("def:DefineVersion", Some(DEFINE_VERSION)),
        ],
    )?;

    // 1. def:Standards
    x.start("def:Standards", &[])?;
    let ct = opts.ct_version.as_deref();
    if m.sdtm {
        standard(
            &mut x,
            "STD.SDTMIG",
            "SDTMIG",
            "IG",
            None,
            Some(&opts.sdtmig_version),
        )?;
    }
    if m.adam {
        standard(
            &mut x,
            "STD.ADAMIG",
            "ADaMIG",
            "IG",
            None,
            Some(&opts.adamig_version),
        )?;
    }
    if m.sdtm && ct.is_some() {
        standard(&mut x, "STD.CT.SDTM", "CDISC/NCI", "CT", Some("SDTM"), ct)?;
    }
    if m.adam && ct.is_some() {
        standard(&mut x, "STD.CT.ADAM", "CDISC/NCI", "CT", Some("ADaM"), ct)?;
    }
    x.end();

    // 6. ItemGroupDef+
    for g in &m.groups {
        x.context = g.name.clone();
        x.start(
            "ItemGroupDef",
            &[
                ("OID", Some(&g.oid)),
                ("Name", Some(&g.name)),
                ("Domain", g.domain.as_deref()),
                ("Repeating", yes_no(g.repeating)),
                ("IsReferenceData", yes_no(g.reference)),
                ("SASDatasetName", g.sas_name.as_deref()),
                ("def:Structure", Some(&g.structure)),
                (
                    "Purpose",
                    Some(if g.adam { "Analysis" } else { "Tabulation" }),
                ),
                (
                    "def:StandardOID",
                    Some(if g.adam { "STD.ADAMIG" } else { "STD.SDTMIG" }),
                ),
                ("def:HasNoData", g.has_no_data.then_some("Yes")),
                ("def:CommentOID", g.comment_oid.as_deref()),
                ("def:ArchiveLocationID", Some(&g.leaf_id)),
            ],
        )?;
        description(&mut x, lang, &g.label)?;
        for r in &g.refs {
            let order = r.order.to_string();
            let key = r.key_sequence.map(|k| k.to_string());
            x.empty(
                "ItemRef",
                &[
                    ("ItemOID", Some(&r.item_oid)),
                    ("OrderNumber", Some(&order)),
                    ("Mandatory", yes_no(r.mandatory)),
                    ("KeySequence", key.as_deref()),
                    ("MethodOID", r.method_oid.as_deref()),
                    ("Role", r.role.as_deref()),
                ],
            )?;
        }
        x.empty("def:Class", &[("Name", Some(&g.class))])?;
        x.start(
            "def:leaf",
            &[("ID", Some(&g.leaf_id)), ("xlink:href", Some(&g.file))],
        )?;
        x.leaf("def:title", &[], &g.file)?;
        x.end();
        x.end();
    }

    // 7. ItemDef+
    for it in &m.items {
        x.context = it.oid.clone();
        let length = it.length.map(|l| l.to_string());
        let digits = it.significant_digits.map(|d| d.to_string());
        x.start(
            "ItemDef",
            &[
                ("OID", Some(&it.oid)),
                ("Name", Some(&it.name)),
                ("DataType", Some(it.data_type)),
                ("Length", length.as_deref()),
                ("SignificantDigits", digits.as_deref()),
                ("SASFieldName", it.sas_name.as_deref()),
                ("def:DisplayFormat", it.display_format.as_deref()),
                ("def:CommentOID", it.comment_oid.as_deref()),
            ],
        )?;
        description(&mut x, lang, &it.label)?;
        if let Some(cl) = &it.codelist {
            x.empty("CodeListRef", &[("CodeListOID", Some(cl))])?;
        }
        if let Some((ty, source)) = it.origin {
            x.empty("def:Origin", &[("Type", Some(ty)), ("Source", source)])?;
        }
        x.end();
    }

    // 8. CodeList*
    for cl in &m.codelists {
        x.context = cl.oid.clone();
        x.start(
            "CodeList",
            &[
                ("OID", Some(&cl.oid)),
                ("Name", Some(&cl.name)),
                ("DataType", Some(cl.data_type.as_deref().unwrap_or("text"))),
            ],
        )?;
        let decoded = cl.terms.iter().any(|t| t.decode.is_some());
        for (i, t) in cl.terms.iter().enumerate() {
            let order = (i + 1).to_string();
            let attrs: [Attr<'_>; 2] = [
                ("CodedValue", Some(&t.value)),
                ("OrderNumber", Some(&order)),
            ];
            match (&t.decode, decoded) {
                (Some(decode), true) => {
                    x.start("CodeListItem", &attrs)?;
                    x.start("Decode", &[])?;
                    x.leaf("TranslatedText", &[("xml:lang", Some(lang))], decode)?;
                    x.end();
                    x.end();
                }
                _ => x.empty("EnumeratedItem", &attrs)?,
            }
        }
        if let Some(dict) = &cl.dictionary {
            x.empty(
                "ExternalCodeList",
                &[
                    ("Dictionary", Some(dict)),
                    ("Version", cl.version.as_deref()),
                ],
            )?;
        }
        x.end();
    }

    // 9. MethodDef*
    for md in &m.methods {
        x.context = md.oid.clone();
        x.start(
            "MethodDef",
            &[
                ("OID", Some(&md.oid)),
                ("Name", Some(&md.name)),
                ("Type", Some("Computation")),
            ],
        )?;
        description(&mut x, lang, &md.text)?;
        x.end();
    }

    // 10. def:CommentDef*
    for c in &m.comments {
        x.context = c.oid.clone();
        x.start("def:CommentDef", &[("OID", Some(&c.oid))])?;
        description(&mut x, lang, &c.text)?;
        x.end();
    }

    while x.depth() > 0 {
        x.end();
    }
    x.buf.push(b'\n');
    Ok(x.buf)
}

fn standard(
    x: &mut Xml,
    oid: &str,
    name: &str,
    ty: &str,
    publishing_set: Option<&str>,
    version: Option<&str>,
) -> Result<()> {
    x.empty(
        "def:Standard",
        &[
            ("OID", Some(oid)),
            ("Name", Some(name)),
            ("Type", Some(ty)),
            ("PublishingSet", publishing_set),
            ("Version", version),
            ("Status", Some("Final")),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_define_2_1_types_with_optional_sources() {
        assert_eq!(parse_origin("Collected"), Some(("Collected", None)));
        assert_eq!(
            parse_origin("collected/investigator"),
            Some(("Collected", Some("Investigator")))
        );
        assert_eq!(
            parse_origin("Derived (Sponsor)"),
            Some(("Derived", Some("Sponsor")))
        );
        assert_eq!(parse_origin("not available"), Some(("Not Available", None)));
        assert_eq!(parse_origin("CRF"), Some(("Collected", None)));
        assert_eq!(parse_origin("eDT"), Some(("Collected", Some("Vendor"))));
        assert_eq!(parse_origin("Guessed"), None);
        assert_eq!(parse_origin("Collected/Robot"), None);
    }
}
