//! Dataset metadata that travels with the Arrow schema under `trialport.*` keys.
//!
//! The same metadata can be written as a JSON document in the Dataset-JSON `columns` shape plus `privacy`:
//!
//! ```json
//! {"name": "DM", "label": "Demographics",
//!  "columns": [{"name": "USUBJID", "label": "Unique Subject Identifier", "dataType": "string",
//!               "length": 20, "keySequence": 1, "privacy": "subject_id"}]}
//! ```

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
            Error::validation("invalid_metadata", "unknown privacy class").with_field("privacy")
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
    /// Columns with metadata (any subset of the schema's columns, by name).
    pub columns: Vec<ColumnMeta>,
}

impl DatasetMeta {
    /// Parses a metadata JSON document.
    ///
    /// # Errors
    /// EXP002 `invalid_metadata` when the document is not of the expected shape.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            Error::validation(
                "invalid_metadata",
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
            columns,
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
        take_dataset!(label, item_group_oid, class, structure, comment);
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
                        comment
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
                    "unknown_column",
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
        ] {
            if let Some(v) = value {
                md.insert(key.into(), v.clone());
            }
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
        privacy: md
            .get(KEY_PRIVACY)
            .and_then(|p| PrivacyClass::parse(p).ok())
            .unwrap_or_default(),
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
