//! Dataset metadata that travels with the Arrow schema under `trialport.*` keys.
//!
//! The same metadata can be written as a JSON document in the Dataset-JSON `columns` shape plus `privacy`:
//!
//! ```json
//! {"name": "DM", "label": "Demographics",
//!  "columns": [{"name": "USUBJID", "label": "Unique Subject Identifier", "dataType": "string",
//!               "length": 20, "keySequence": 1, "privacy": "subject_id"}]}
//! ```
//!
//! Define-XML also reads `class`, `structure`, `domain`, `repeating`, `isReferenceData` and `comment` of the
//! dataset, `mandatory`, `role`, `origin`, `method`, `comment` and `codelist` (an OID) of each column, and the
//! `codelists` those OIDs name, given with the dataset:
//!
//! ```json
//! {"name": "DM", "columns": [{"name": "SEX", "codelist": "CL.SEX"}],
//!  "codelists": [{"oid": "CL.SEX", "name": "Sex", "dataType": "text",
//!                 "terms": [{"value": "F", "decode": "Female"}, {"value": "M", "decode": "Male"}]}]}
//! ```

use crate::error::Reason;
use crate::error::{Error, Result};
use arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Schema metadata key of the dataset name.
pub const KEY_DATASET: &str = "trialport.dataset";
/// Schema and field metadata key of the label.
pub const KEY_LABEL: &str = "trialport.label";
const KEY_LENGTH: &str = "trialport.length";
const KEY_DISPLAY_FORMAT: &str = "trialport.display_format";
const KEY_DATA_TYPE: &str = "trialport.data_type";
const KEY_KEY_SEQUENCE: &str = "trialport.key_sequence";
const KEY_CODELIST: &str = "trialport.codelist";
const KEY_ORIGIN: &str = "trialport.origin";
const KEY_PRIVACY: &str = "trialport.privacy";
const KEY_ITEM_OID: &str = "trialport.item_oid";
const KEY_TARGET_DATA_TYPE: &str = "trialport.target_data_type";
const KEY_METHOD: &str = "trialport.method";
const KEY_COMMENT: &str = "trialport.comment";
const KEY_ITEM_GROUP_OID: &str = "trialport.item_group_oid";
const KEY_CLASS: &str = "trialport.class";
const KEY_STRUCTURE: &str = "trialport.structure";
const KEY_MANDATORY: &str = "trialport.mandatory";
const KEY_ROLE: &str = "trialport.role";
const KEY_DOMAIN: &str = "trialport.domain";
const KEY_REPEATING: &str = "trialport.repeating";
const KEY_IS_REFERENCE_DATA: &str = "trialport.is_reference_data";
/// Schema metadata key of the codelists, stored as a JSON array of [`CodeListMeta`].
pub const KEY_CODELISTS: &str = "trialport.codelists";

/// How a column identifies a person, which decides what de-identification does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyClass {
    /// Names, addresses, phone numbers and other direct identifiers.
    DirectIdentifier,
    /// The subject identifier.
    SubjectId,
    /// A date about a person.
    Date,
    /// An age.
    Age,
    /// A ZIP or postal code.
    Zip,
    /// Free text that may hold anything.
    FreeText,
    /// Not identifying.
    #[default]
    None,
}

impl PrivacyClass {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyClass::DirectIdentifier => "direct_identifier",
            PrivacyClass::SubjectId => "subject_id",
            PrivacyClass::Date => "date",
            PrivacyClass::Age => "age",
            PrivacyClass::Zip => "zip",
            PrivacyClass::FreeText => "free_text",
            PrivacyClass::None => "none",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            Error::validation(Reason::InvalidMetadata, "unknown privacy class")
                .with_field("privacy")
        })
    }
}

/// Metadata of one column.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ColumnMeta {
    /// Column name (must match the Arrow field).
    pub name: String,
    /// Label, e.g. `Unique Subject Identifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// SAS length in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    /// Display format, e.g. `DATE9.`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_format: Option<String>,
    /// CDISC data type (`string`, `integer`, `float`, `date`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// Position in the dataset's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_sequence: Option<u32>,
    /// Codelist reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codelist: Option<String>,
    /// Origin (`Collected`, `Derived`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Dataset-JSON/Define-XML item OID, e.g. `IT.DM.USUBJID`.
    #[serde(rename = "itemOID", skip_serializing_if = "Option::is_none")]
    pub item_oid: Option<String>,
    /// Dataset-JSON target data type (`integer` or `decimal`) for values carried as another type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_data_type: Option<String>,
    /// Derivation method (Define-XML MethodDef description) for derived columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Comment (Define-XML CommentDef description).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether the column must hold a value in every row (Define-XML `ItemRef/@Mandatory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandatory: Option<bool>,
    /// Role in the dataset, e.g. `Identifier`, `Topic`, `Timing` (Define-XML `ItemRef/@Role`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Privacy class.
    #[serde(skip_serializing_if = "is_none_class")]
    pub privacy: PrivacyClass,
}

fn is_none_class(p: &PrivacyClass) -> bool {
    *p == PrivacyClass::None
}

/// Metadata of a dataset: its name, label and columns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DatasetMeta {
    /// Dataset name, e.g. `DM`.
    pub name: String,
    /// Dataset label, e.g. `Demographics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Dataset-JSON/Define-XML item group OID, e.g. `IG.DM`.
    #[serde(rename = "itemGroupOID", skip_serializing_if = "Option::is_none")]
    pub item_group_oid: Option<String>,
    /// Define-XML dataset class, e.g. `SPECIAL PURPOSE` or `SUBJECT LEVEL ANALYSIS DATASET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Define-XML structure, e.g. `One record per subject`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structure: Option<String>,
    /// Comment on the dataset (Define-XML CommentDef).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// SDTM domain the dataset belongs to, e.g. `DM` for `SUPPDM` or `QS` for a split `QSPH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Whether a subject can have several records (Define-XML `ItemGroupDef/@Repeating`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeating: Option<bool>,
    /// Whether the dataset is reference data, not about subjects (Define-XML `ItemGroupDef/@IsReferenceData`).
    #[serde(rename = "isReferenceData", skip_serializing_if = "Option::is_none")]
    pub is_reference_data: Option<bool>,
    /// Columns with metadata (any subset of the schema's columns, by name).
    pub columns: Vec<ColumnMeta>,
    /// The codelists that columns' `codelist` references name (Define-XML CodeList).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codelists: Vec<CodeListMeta>,
}

/// A codelist: the terms a column's values are drawn from, or an external dictionary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CodeListMeta {
    /// OID that columns name in `codelist`, e.g. `CL.SEX`.
    pub oid: String,
    /// Name, e.g. `Sex`.
    pub name: String,
    /// Data type of the coded values: `text` (when absent), `integer` or `float`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// The terms, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<CodeListTerm>,
    /// External dictionary instead of terms, e.g. `MedDRA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dictionary: Option<String>,
    /// Version of the external dictionary, e.g. `26.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One term of a codelist.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CodeListTerm {
    /// The coded value as it appears in the data, e.g. `F`.
    pub value: String,
    /// Its decode, e.g. `Female`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode: Option<String>,
}

impl DatasetMeta {
    /// Parses a metadata JSON document.
    ///
    /// # Errors
    /// EXP002 `invalid_metadata` when the document is not of the expected shape.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            Error::validation(
                Reason::InvalidMetadata,
                format!(
                    "metadata document is invalid at line {} column {}",
                    e.line(),
                    e.column()
                ),
            )
        })
    }

    /// Reads the metadata stored in a schema (missing keys stay empty).
    pub fn from_schema(schema: &Schema) -> Self {
        let md = schema.metadata();
        let columns = schema
            .fields()
            .iter()
            .map(|f| column_from_field(f))
            .collect();
        DatasetMeta {
            name: md.get(KEY_DATASET).cloned().unwrap_or_default(),
            label: md.get(KEY_LABEL).cloned(),
            item_group_oid: md.get(KEY_ITEM_GROUP_OID).cloned(),
            class: md.get(KEY_CLASS).cloned(),
            structure: md.get(KEY_STRUCTURE).cloned(),
            comment: md.get(KEY_COMMENT).cloned(),
            domain: md.get(KEY_DOMAIN).cloned(),
            repeating: md.get(KEY_REPEATING).and_then(|v| parse_bool(v)),
            is_reference_data: md.get(KEY_IS_REFERENCE_DATA).and_then(|v| parse_bool(v)),
            columns,
            codelists: md
                .get(KEY_CODELISTS)
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or_default(),
        }
    }

    /// The metadata of column `name`, if any.
    pub fn column(&self, name: &str) -> Option<&ColumnMeta> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Layers `other` over `self`: its non-empty values win, column by column.
    pub fn merged_with(mut self, other: &DatasetMeta) -> Self {
        if !other.name.is_empty() {
            self.name = other.name.clone();
        }
        macro_rules! take_dataset {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take_dataset!(
            label,
            item_group_oid,
            class,
            structure,
            comment,
            domain,
            repeating,
            is_reference_data
        );
        for cl in &other.codelists {
            match self.codelists.iter_mut().find(|c| c.oid == cl.oid) {
                Some(c) => *c = cl.clone(),
                None => self.codelists.push(cl.clone()),
            }
        }
        for oc in &other.columns {
            match self.columns.iter_mut().find(|c| c.name == oc.name) {
                Some(c) => {
                    macro_rules! take {
                        ($($f:ident),*) => { $( if oc.$f.is_some() { c.$f = oc.$f.clone(); } )* };
                    }
                    take!(
                        label,
                        length,
                        display_format,
                        data_type,
                        key_sequence,
                        codelist,
                        origin,
                        item_oid,
                        target_data_type,
                        method,
                        comment,
                        mandatory,
                        role
                    );
                    if oc.privacy != PrivacyClass::None {
                        c.privacy = oc.privacy;
                    }
                }
                None => self.columns.push(oc.clone()),
            }
        }
        self
    }

    /// Returns `schema` with this metadata stored in it.
    ///
    /// # Errors
    /// EXP002 `unknown_column` when the metadata names a column the schema lacks.
    pub fn apply_to(&self, schema: &Schema) -> Result<SchemaRef> {
        for c in &self.columns {
            if schema.field_with_name(&c.name).is_err() {
                return Err(Error::validation(
                    Reason::UnknownColumn,
                    format!(
                        "metadata names column '{}' that the data does not have",
                        c.name
                    ),
                )
                .with_field("columns"));
            }
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match self.column(f.name()) {
                Some(c) => {
                    let mut md = f.metadata().clone();
                    write_column(&mut md, c);
                    f.as_ref().clone().with_metadata(md)
                }
                None => f.as_ref().clone(),
            })
            .collect();
        let mut md = schema.metadata().clone();
        if !self.name.is_empty() {
            md.insert(KEY_DATASET.into(), self.name.clone());
        }
        for (key, value) in [
            (KEY_LABEL, &self.label),
            (KEY_ITEM_GROUP_OID, &self.item_group_oid),
            (KEY_CLASS, &self.class),
            (KEY_STRUCTURE, &self.structure),
            (KEY_COMMENT, &self.comment),
            (KEY_DOMAIN, &self.domain),
            (KEY_REPEATING, &self.repeating.map(bool_text)),
            (
                KEY_IS_REFERENCE_DATA,
                &self.is_reference_data.map(bool_text),
            ),
        ] {
            if let Some(v) = value {
                md.insert(key.into(), v.clone());
            }
        }
        if !self.codelists.is_empty() {
            let text = serde_json::to_string(&self.codelists).map_err(|_| {
                Error::validation(Reason::InvalidMetadata, "the codelists cannot be stored")
                    .with_field("codelists")
            })?;
            md.insert(KEY_CODELISTS.into(), text);
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, md)))
    }
}

fn column_from_field(f: &Field) -> ColumnMeta {
    let md = f.metadata();
    let num = |k: &str| md.get(k).and_then(|v| v.parse::<u32>().ok());
    ColumnMeta {
        name: f.name().clone(),
        label: md.get(KEY_LABEL).cloned(),
        length: num(KEY_LENGTH),
        display_format: md.get(KEY_DISPLAY_FORMAT).cloned(),
        data_type: md.get(KEY_DATA_TYPE).cloned(),
        key_sequence: num(KEY_KEY_SEQUENCE),
        codelist: md.get(KEY_CODELIST).cloned(),
        origin: md.get(KEY_ORIGIN).cloned(),
        item_oid: md.get(KEY_ITEM_OID).cloned(),
        target_data_type: md.get(KEY_TARGET_DATA_TYPE).cloned(),
        method: md.get(KEY_METHOD).cloned(),
        comment: md.get(KEY_COMMENT).cloned(),
        mandatory: md.get(KEY_MANDATORY).and_then(|v| parse_bool(v)),
        role: md.get(KEY_ROLE).cloned(),
        privacy: md
            .get(KEY_PRIVACY)
            .and_then(|p| PrivacyClass::parse(p).ok())
            .unwrap_or_default(),
    }
}

fn bool_text(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn write_column(md: &mut HashMap<String, String>, c: &ColumnMeta) {
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            md.insert(k.to_string(), v);
        }
    };
    put(KEY_LABEL, c.label.clone());
    put(KEY_LENGTH, c.length.map(|v| v.to_string()));
    put(KEY_DISPLAY_FORMAT, c.display_format.clone());
    put(KEY_DATA_TYPE, c.data_type.clone());
    put(KEY_KEY_SEQUENCE, c.key_sequence.map(|v| v.to_string()));
    put(KEY_CODELIST, c.codelist.clone());
    put(KEY_ORIGIN, c.origin.clone());
    put(KEY_ITEM_OID, c.item_oid.clone());
    put(KEY_TARGET_DATA_TYPE, c.target_data_type.clone());
    put(KEY_METHOD, c.method.clone());
    put(KEY_COMMENT, c.comment.clone());
    put(KEY_MANDATORY, c.mandatory.map(bool_text));
    put(KEY_ROLE, c.role.clone());
    if c.privacy != PrivacyClass::None {
        put(KEY_PRIVACY, Some(c.privacy.as_str().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    #[test]
    fn metadata_round_trips_through_the_schema() {
        let meta = DatasetMeta::from_json(
            r#"{"name":"DM","label":"Demographics","itemGroupOID":"IG.DM","class":"SPECIAL PURPOSE","columns":[
                {"name":"USUBJID","label":"Unique Subject Identifier","length":20,"keySequence":1,
                 "itemOID":"IT.DM.USUBJID","comment":"Study and subject","privacy":"subject_id"},{"name":"AGE","dataType":"integer","privacy":"age"}]}"#,
        )
        .unwrap();
        let schema = Schema::new(vec![
            Field::new("USUBJID", DataType::Utf8, false),
            Field::new("AGE", DataType::Int64, true),
            Field::new("SEX", DataType::Utf8, true),
        ]);
        let applied = meta.apply_to(&schema).unwrap();
        let back = DatasetMeta::from_schema(&applied);
        assert_eq!(back.name, "DM");
        assert_eq!(back.label.as_deref(), Some("Demographics"));
        assert_eq!(back.item_group_oid.as_deref(), Some("IG.DM"));
        assert_eq!(back.class.as_deref(), Some("SPECIAL PURPOSE"));
        assert_eq!(back.column("USUBJID").unwrap(), &meta.columns[0]);
        assert_eq!(back.column("AGE").unwrap().privacy, PrivacyClass::Age);
        assert_eq!(back.column("SEX").unwrap().label, None);
    }

    #[test]
    fn define_metadata_and_codelists_round_trip_and_merge() {
        let meta = DatasetMeta::from_json(
            r#"{"name":"SUPPDM","domain":"DM","repeating":true,"isReferenceData":false,
                "columns":[{"name":"QNAM","mandatory":true,"role":"Topic","codelist":"CL.QNAM"}],
                "codelists":[{"oid":"CL.QNAM","name":"QNAM values","terms":[{"value":"RACE1","decode":"Race 1"}]},
                             {"oid":"CL.MEDDRA","name":"MedDRA","dictionary":"MedDRA","version":"26.0"}]}"#,
        )
        .unwrap();
        assert_eq!(meta.codelists[0].terms[0].decode.as_deref(), Some("Race 1"));
        let schema = Schema::new(vec![Field::new("QNAM", DataType::Utf8, true)]);
        let back = DatasetMeta::from_schema(&meta.apply_to(&schema).unwrap());
        assert_eq!(back, meta);
        assert_eq!(back.column("QNAM").unwrap().mandatory, Some(true));
        assert_eq!(back.is_reference_data, Some(false));

        // Absent keys stay absent; a later document replaces a codelist by OID and adds new ones.
        let plain = DatasetMeta::from_schema(&schema);
        assert_eq!((plain.repeating, plain.codelists.len()), (None, 0));
        let over = DatasetMeta::from_json(
            r#"{"repeating":false,"codelists":[{"oid":"CL.QNAM","name":"Renamed"},{"oid":"CL.X","name":"X"}]}"#,
        )
        .unwrap();
        let merged = meta.merged_with(&over);
        assert_eq!(merged.repeating, Some(false));
        assert_eq!(merged.domain.as_deref(), Some("DM"));
        let names: Vec<&str> = merged.codelists.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Renamed", "MedDRA", "X"]);
    }

    #[test]
    fn unknown_columns_and_classes_are_rejected() {
        let schema = Schema::new(vec![Field::new("A", DataType::Utf8, true)]);
        let meta = DatasetMeta::from_json(r#"{"columns":[{"name":"B"}]}"#).unwrap();
        assert_eq!(
            meta.apply_to(&schema).unwrap_err().reason(),
            "unknown_column"
        );
        let bad = DatasetMeta::from_json(r#"{"columns":[{"name":"A","privacy":"secret"}]}"#);
        assert_eq!(bad.unwrap_err().reason(), "invalid_metadata");
    }
}
