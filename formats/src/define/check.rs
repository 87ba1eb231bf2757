//! Cross-checks between a Define-XML document and the files it describes (formats.md §5.4).

use super::types::{type_fact, TypeFact, TEXTUAL_TYPES};
use super::write::{NS_DEF, NS_ODM, NS_XLINK};
use roxmltree::{Document, Node};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use trialport_core::error::Reason;
use trialport_core::format::Described;
use trialport_core::meta::ColumnMeta;
use trialport_core::{Error, Result};

/// One disagreement between a define and the files.
///
/// Rules: `namespace` (not a Define-XML 2.1 document), `unresolved_oid` (a reference to an OID the document does
/// not define), `duplicate_oid`, `missing_item_group` (a file without an ItemGroupDef whose `def:leaf` points at
/// it), `extra_item_group` (an ItemGroupDef for no given file), `dataset_name` (`Name`/`SASDatasetName` differ
/// from the dataset), `missing_item_def` (a column without an ItemRef/ItemDef in its ItemGroupDef), `extra_item`
/// (an ItemRef to a variable the file lacks), `order` (`OrderNumber` differs from the column position),
/// `data_type` (the `DataType` cannot describe the column's values or differs from its metadata), `length`
/// (`Length` missing for text or different from the metadata's), `label` (`Description` differs from the
/// label), `key_sequence` (`KeySequence` differs from the metadata's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The dataset name (or the file when no dataset applies).
    pub dataset: String,
    /// The variable, where one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// The rule broken (see the type's documentation).
    pub rule: &'static str,
    /// What the files' metadata says, where it says something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What the define says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, dataset: &str, variable: Option<&str>, rule: &'static str) -> &mut Finding {
        self.0.push(Finding {
            dataset: dataset.to_string(),
            variable: variable.map(str::to_string),
            rule,
            expected: None,
            found: None,
        });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    fn differ(
        &mut self,
        dataset: &str,
        variable: Option<&str>,
        rule: &'static str,
        expected: impl Into<String>,
        found: Option<&str>,
    ) {
        let f = self.add(dataset, variable, rule);
        f.expected = Some(expected.into());
        f.found = found.map(str::to_string);
    }
}

fn is(n: &Node<'_, '_>, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
}

fn children<'a, 'i>(
    n: Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is(c, ns, name))
}

fn description<'a>(n: Node<'a, '_>) -> Option<&'a str> {
    children(n, NS_ODM, "Description")
        .next()
        .and_then(|d| children(d, NS_ODM, "TranslatedText").next())
        .and_then(|t| t.text())
}

/// Every disagreement between `define_xml` and `files` (each with its schema, metadata and file name).
///
/// # Errors
/// EXP002 `invalid_define` when the text is not well-formed XML.
pub fn findings(define_xml: &str, files: &[Described<'_>]) -> Result<Vec<Finding>> {
    let doc = Document::parse(define_xml).map_err(|e| {
        Error::validation(
            Reason::InvalidDefine,
            format!("the define is not well-formed XML (line {})", e.pos().row),
        )
    })?;
    let mut out = Findings(Vec::new());
    let root = doc.root_element();
    let def_ns = root.lookup_namespace_uri(Some("def"));
    if !is(&root, NS_ODM, "ODM") || def_ns != Some(NS_DEF) {
        out.add("", None, "namespace");
        return Ok(out.0);
    }
    let Some(mdv) = children(root, NS_ODM, "Study")
        .next()
        .and_then(|s| children(s, NS_ODM, "MetaDataVersion").next())
    else {
        out.add("", None, "namespace");
        return Ok(out.0);
    };

    // Every OID defined, by kind, and every reference resolved.
    let mut defined: HashMap<(&str, &str), Node<'_, '_>> = HashMap::new();
    let kinds: [(&str, &str, &str); 7] = [
        (NS_ODM, "ItemGroupDef", "OID"),
        (NS_ODM, "ItemDef", "OID"),
        (NS_ODM, "CodeList", "OID"),
        (NS_ODM, "MethodDef", "OID"),
        (NS_DEF, "CommentDef", "OID"),
        (NS_DEF, "leaf", "ID"),
        (NS_DEF, "Standard", "OID"),
    ];
    for n in mdv.descendants() {
        for (ns, name, attr) in kinds {
            if is(&n, ns, name) {
                if let Some(oid) = n.attribute(attr) {
                    if defined.insert((name, oid), n).is_some() {
                        out.differ("", None, "duplicate_oid", name, Some(oid));
                    }
                }
            }
        }
    }
    let refs: [(&str, (&str, &str), &str); 7] = [
        ("ItemOID", (NS_ODM, ""), "ItemDef"),
        ("CodeListOID", (NS_ODM, ""), "CodeList"),
        ("MethodOID", (NS_ODM, ""), "MethodDef"),
        ("CommentOID", (NS_DEF, "def"), "CommentDef"),
        ("ArchiveLocationID", (NS_DEF, "def"), "leaf"),
        ("StandardOID", (NS_DEF, "def"), "Standard"),
        ("leafID", (NS_ODM, ""), "leaf"),
    ];
    for n in mdv.descendants().filter(Node::is_element) {
        for (attr, (ns, _), kind) in refs {
            let value = if ns == NS_DEF {
                n.attribute((NS_DEF, attr))
            } else {
                n.attribute(attr)
            };
            if let Some(v) = value {
                if !defined.contains_key(&(kind, v)) {
                    out.differ("", None, "unresolved_oid", kind, Some(v));
                }
            }
        }
    }

    // The ItemGroupDef of each file: the one whose def:leaf (by def:ArchiveLocationID) points at it.
    let groups: Vec<Node<'_, '_>> = children(mdv, NS_ODM, "ItemGroupDef").collect();
    let href_of = |g: &Node<'_, '_>| -> Option<String> {
        let id = g.attribute((NS_DEF, "ArchiveLocationID"))?;
        let leaf = defined.get(&("leaf", id))?;
        leaf.attribute((NS_XLINK, "href")).map(str::to_string)
    };
    let mut matched: HashSet<usize> = HashSet::new();
    for d in files {
        let ds = d.meta.name.as_str();
        let Some((gi, g)) = groups
            .iter()
            .enumerate()
            .find(|(_, g)| href_of(g).as_deref() == Some(d.file))
        else {
            out.differ(ds, None, "missing_item_group", d.file, None);
            continue;
        };
        matched.insert(gi);
        for attr in ["Name", "SASDatasetName"] {
            if let Some(v) = g.attribute(attr) {
                if !v.eq_ignore_ascii_case(ds) {
                    out.differ(ds, None, "dataset_name", ds, Some(v));
                }
            }
        }
        if let (Some(label), Some(found)) = (d.meta.label.as_deref(), description(*g)) {
            if label != found {
                out.differ(ds, None, "label", label, Some(found));
            }
        }
        check_group(ds, *g, d, &defined, &mut out);
    }
    for (gi, g) in groups.iter().enumerate() {
        if !matched.contains(&gi) {
            let name = g.attribute("Name").unwrap_or_default();
            out.differ(
                name,
                None,
                "extra_item_group",
                href_of(g).unwrap_or_default(),
                None,
            );
        }
    }
    Ok(out.0)
}

fn check_group(
    ds: &str,
    g: Node<'_, '_>,
    d: &Described<'_>,
    defined: &HashMap<(&str, &str), Node<'_, '_>>,
    out: &mut Findings,
) {
    // Variable name -> (ItemRef, ItemDef).
    let mut by_name: HashMap<&str, (Node<'_, '_>, Node<'_, '_>)> = HashMap::new();
    for r in children(g, NS_ODM, "ItemRef") {
        let Some(def) = r
            .attribute("ItemOID")
            .and_then(|oid| defined.get(&("ItemDef", oid)))
        else {
            continue; // reported as unresolved_oid
        };
        if let Some(name) = def.attribute("Name") {
            by_name.insert(name, (r, *def));
        }
    }
    let xpt = d.file.to_ascii_lowercase().ends_with(".xpt");
    let mut seen = HashSet::new();
    for (i, f) in d.schema.fields().iter().enumerate() {
        let col = f.name().as_str();
        seen.insert(col);
        let Some((r, def)) = by_name.get(col) else {
            out.add(ds, Some(col), "missing_item_def");
            continue;
        };
        let cm = d.meta.column(col).cloned().unwrap_or_else(|| ColumnMeta {
            name: col.to_string(),
            ..ColumnMeta::default()
        });
        let order = (i + 1).to_string();
        if let Some(o) = r.attribute("OrderNumber") {
            if o != order {
                out.differ(ds, Some(col), "order", order, Some(o));
            }
        }
        let dtype = def.attribute("DataType");
        let type_ok = match (type_fact(f, &cm, xpt), dtype) {
            (TypeFact::Known(t), Some(found)) => t == found,
            (TypeFact::OneOf(list), Some(found)) => list.contains(&found),
            (TypeFact::Invalid, _) | (_, None) => false,
        };
        if !type_ok {
            let expected = match type_fact(f, &cm, xpt) {
                TypeFact::Known(t) => t.to_string(),
                TypeFact::OneOf(list) => list.join("|"),
                TypeFact::Invalid => "a type the metadata cannot give".to_string(),
            };
            out.differ(ds, Some(col), "data_type", expected, dtype);
        }
        let length = def.attribute("Length");
        match dtype {
            Some("text") => match (cm.length, length) {
                (_, None) => out.differ(
                    ds,
                    Some(col),
                    "length",
                    cm.length.map_or("a length".into(), |l| l.to_string()),
                    None,
                ),
                (Some(l), Some(found)) if found != l.to_string() => {
                    out.differ(ds, Some(col), "length", l.to_string(), Some(found))
                }
                _ => {}
            },
            Some("integer" | "float") => {
                if let (Some(l), Some(found)) = (cm.length, length) {
                    if found != l.to_string() {
                        out.differ(ds, Some(col), "length", l.to_string(), Some(found));
                    }
                }
            }
            Some(t) if TEXTUAL_TYPES.contains(&t) => {
                if let (Some(l), Some(found)) = (cm.length, length) {
                    if found != l.to_string() {
                        out.differ(ds, Some(col), "length", l.to_string(), Some(found));
                    }
                }
            }
            _ => {}
        }
        if let (Some(label), Some(found)) = (cm.label.as_deref(), description(*def)) {
            if label != found {
                out.differ(ds, Some(col), "label", label, Some(found));
            }
        }
        let key = r.attribute("KeySequence");
        if let Some(k) = cm.key_sequence {
            if key != Some(k.to_string().as_str()) {
                out.differ(ds, Some(col), "key_sequence", k.to_string(), key);
            }
        }
    }
    for name in by_name.keys() {
        if !seen.contains(name) {
            out.add(ds, Some(name), "extra_item");
        }
    }
}

/// Checks `define_xml` against `files`: every file has its ItemGroupDef (by `def:leaf`), every variable its
/// ItemDef with a type that can hold its values and the length and label its metadata gives, every OID
/// reference resolves, and nothing is extra.
///
/// # Errors
/// EXP002 `define_mismatch` with `details.findings` listing every [`Finding`] (dataset, variable, rule, and the
/// expected and found metadata values); EXP002 `invalid_define` for text that is not XML.
pub fn cross_check(define_xml: &str, files: &[Described<'_>]) -> Result<()> {
    let mut found = findings(define_xml, files)?;
    if found.is_empty() {
        return Ok(());
    }
    found.sort_by(|a, b| (&a.dataset, &a.variable, a.rule).cmp(&(&b.dataset, &b.variable, b.rule)));
    let n = found.len();
    Err(Error::validation(
        Reason::DefineMismatch,
        format!(
            "the define does not match the files: {n} finding{} (see details.findings)",
            if n == 1 { "" } else { "s" }
        ),
    )
    .with_detail("findings", serde_json::to_value(&found).unwrap_or_default()))
}
