//! The Dataset-JSON reader: JSON, NDJSON and DSJC (zlib or gzip), told apart by their content, rows streamed into
//! batches of [`crate::read::BATCH_SIZE`].
//!
//! The top-level object is read attribute by attribute, each value captured as raw bytes. When `rows` comes after the metadata it
//! needs (every required attribute but `records`, as the standard's attribute order has it), the rows are decoded
//! as they are read: memory holds one batch. A file with `rows` before that metadata is legal JSON but defeats
//! streaming: its rows text is held in memory until the metadata has been read. In the NDJSON form (and DSJC) the
//! metadata object is followed by one row array per line. Attributes after `rows` may only be optional ones or
//! `records`, which is checked against the rows read when they end.

use super::scan::{malformed, Cell, Cells, Scanner};
use super::temporal;
use super::types::{ColumnType, DataType as DsType, Target};
use super::{
    KEY_CREATED, KEY_DB_LAST_MODIFIED, KEY_FILE_OID, KEY_METADATA_REF, KEY_METADATA_VERSION_OID,
    KEY_ORIGINATOR, KEY_SOURCE_SYSTEM, KEY_SOURCE_SYSTEM_VERSION, KEY_STUDY_OID, KEY_VERSION,
};
use crate::read::BATCH_SIZE;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use trialport_core::error::Reason;
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_core::source::BatchStream;
use trialport_core::{Error, Result};

/// The top-level attributes of Dataset-JSON 1.1, in the standard's order.
const ATTRIBUTES: &[&str] = &[
    "datasetJSONCreationDateTime",
    "datasetJSONVersion",
    "fileOID",
    "dbLastModifiedDateTime",
    "originator",
    "sourceSystem",
    "studyOID",
    "metaDataVersionOID",
    "metaDataRef",
    "itemGroupOID",
    "records",
    "name",
    "label",
    "columns",
    "rows",
];

/// The required attributes that must precede `rows` for the rows to be streamed.
const NEEDED_BEFORE_ROWS: &[&str] = &[
    "datasetJSONCreationDateTime",
    "datasetJSONVersion",
    "itemGroupOID",
    "name",
    "label",
    "columns",
];

const COLUMN_ATTRIBUTES: &[&str] = &[
    "itemOID",
    "name",
    "label",
    "dataType",
    "targetDataType",
    "length",
    "displayFormat",
    "keySequence",
];

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found("input file not found").with_field("path"),
        _ => Error::io("opening input file", &e),
    })
}

/// Reads the Dataset-JSON file at `path` (any form).
///
/// # Errors
/// EXP001 (field `path`) when the file does not exist; EXP002 with the reasons listed in [`super`] for content
/// that is not valid Dataset-JSON 1.1; EXP005 for I/O. A batch of the stream may fail likewise (a bad row, or
/// `records_mismatch` at the end).
pub fn read_dataset_json(path: &Path) -> Result<BatchStream> {
    read_dataset_json_from(open(path)?)
}

/// What the first bytes say the input is.
enum Wrapping {
    Gzip,
    Zlib,
    Plain,
}

fn wrapping(head: &[u8]) -> Wrapping {
    match head {
        [0x1f, 0x8b, ..] => Wrapping::Gzip,
        // zlib: compression method 8 (deflate), window at most 32 KiB, header checksum.
        [cmf, flg, ..]
            if cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0 =>
        {
            Wrapping::Zlib
        }
        _ => Wrapping::Plain,
    }
}

/// The decompressed (when compressed) input as a scanner.
fn scanner<R: Read + Send + 'static>(reader: R) -> Result<Scanner> {
    let mut r = BufReader::with_capacity(1 << 16, reader);
    let head = r
        .fill_buf()
        .map_err(|e| Error::io("reading Dataset-JSON", &e))?
        .to_vec();
    Ok(match wrapping(&head) {
        Wrapping::Gzip => Scanner::new(Box::new(flate2::bufread::MultiGzDecoder::new(r)), true),
        Wrapping::Zlib => Scanner::new(Box::new(flate2::bufread::ZlibDecoder::new(r)), true),
        Wrapping::Plain => Scanner::new(Box::new(r), false),
    })
}

/// Whether the file at `path` is Dataset-JSON rather than plain JSON or NDJSON records: compressed, or a JSON
/// object whose first object (up to 16 MiB of it) has Dataset-JSON's `datasetJSONVersion`,
/// `datasetJSONCreationDateTime` or `itemGroupOID` among its attributes.
///
/// # Errors
/// EXP001 when the file does not exist; EXP005 when it cannot be read.
pub fn is_dataset_json(path: &Path) -> Result<bool> {
    let file = open(path)?;
    let sc = scanner(file)?;
    if sc.is_compressed() {
        return Ok(true);
    }
    let mut sc = sc.with_limit(16 << 20);
    let sniff = |sc: &mut Scanner| -> Result<bool> {
        sc.skip_bom()?;
        if sc.skip_ws()? != Some(b'{') {
            return Ok(false);
        }
        sc.bump();
        if sc.skip_ws()? == Some(b'}') {
            return Ok(false);
        }
        let mut scratch = Vec::new();
        let mut value = Vec::new();
        loop {
            let key = sc.key(&mut scratch)?;
            if matches!(
                key.as_str(),
                "datasetJSONVersion" | "datasetJSONCreationDateTime" | "itemGroupOID"
            ) {
                return Ok(true);
            }
            value.clear();
            sc.capture(&mut value)?;
            match sc.skip_ws()? {
                Some(b',') => sc.bump(),
                _ => return Ok(false),
            }
        }
    };
    match sniff(&mut sc) {
        Ok(v) => Ok(v),
        Err(e) if e.code() == trialport_core::ErrorCode::Server => Err(e),
        Err(_) => Ok(false),
    }
}

/// Reads Dataset-JSON (any form) from `reader`, front to back, once.
///
/// # Errors
/// As [`read_dataset_json`].
pub fn read_dataset_json_from<R: Read + Send + 'static>(reader: R) -> Result<BatchStream> {
    let mut sc = scanner(reader)?;
    sc.skip_bom()?;
    sc.expect(b'{', "a Dataset-JSON file starts with an object")?;
    let mut map = Map::new();
    let mut scratch = Vec::new();
    let mut value = Vec::new();
    let mut rows_text: Option<Vec<u8>> = None;
    let mut streaming = false;
    if sc.skip_ws()? == Some(b'}') {
        sc.bump();
    } else {
        loop {
            let at = sc.offset();
            let key = sc.key(&mut scratch)?;
            if map.contains_key(&key) || (key == "rows" && rows_text.is_some()) {
                return Err(malformed(at, "an attribute appears twice").with_field(key));
            }
            if key == "rows" {
                if NEEDED_BEFORE_ROWS.iter().all(|k| map.contains_key(*k)) {
                    streaming = true;
                    break;
                }
                let mut text = Vec::new();
                sc.capture(&mut text)?;
                rows_text = Some(text);
            } else {
                value.clear();
                let at = sc.offset();
                sc.capture(&mut value)?;
                let v: Value = serde_json::from_slice(&value)
                    .map_err(|_| malformed(at, "a bad attribute value"))?;
                map.insert(key, v);
            }
            match sc.skip_ws()? {
                Some(b',') => sc.bump(),
                Some(b'}') => {
                    sc.bump();
                    break;
                }
                _ => {
                    return Err(malformed(
                        sc.offset(),
                        "expected ',' or '}' after an attribute",
                    ))
                }
            }
        }
    }
    let header = Header::from_map(&map)?;
    let source = if streaming {
        // `"rows":` was read: the array follows.
        sc.expect(b'[', "rows must be an array")?;
        RowSource::Array {
            sc,
            first: true,
            rest_of_object: true,
        }
    } else if let Some(text) = rows_text {
        let mut inner = Scanner::new(Box::new(std::io::Cursor::new(text)), false);
        inner.expect(b'[', "rows must be an array")?;
        RowSource::Array {
            sc: inner,
            first: true,
            rest_of_object: false,
        }
    } else {
        match sc.skip_ws()? {
            None => RowSource::None,
            Some(b'[') => RowSource::Lines { sc },
            Some(_) => {
                return Err(malformed(
                    sc.offset(),
                    "expected a row array after the metadata",
                ))
            }
        }
    };
    let schema = header.schema()?;
    let builders = header.columns.iter().map(|c| Builder::new(c.ty)).collect();
    let batches = Batches {
        source,
        header,
        builders,
        row: Vec::new(),
        rows: 0,
        done: false,
        schema: schema.clone(),
    };
    Ok(BatchStream::new(schema, batches))
}

/// One column as the file describes it.
#[derive(Debug, Clone)]
struct ColumnDef {
    name: String,
    item_oid: String,
    label: String,
    ty: ColumnType,
    length: Option<u32>,
    display_format: Option<String>,
    key_sequence: Option<u32>,
}

/// The metadata of a file.
#[derive(Debug, Clone)]
struct Header {
    attributes: Vec<(&'static str, String)>,
    item_group_oid: String,
    records: Option<u64>,
    name: String,
    label: String,
    columns: Vec<ColumnDef>,
}

fn invalid(attribute: &str, message: &str) -> Error {
    Error::validation(Reason::InvalidAttribute, message.to_string())
        .with_field(attribute.to_string())
}

fn missing(attribute: &str) -> Error {
    Error::validation(
        Reason::MissingAttribute,
        format!("the required attribute '{attribute}' is missing"),
    )
    .with_field(attribute.to_string())
}

fn string_attr<'m>(
    map: &'m Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<&'m str>> {
    match map.get(key) {
        None if required => Err(missing(key)),
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(key, &format!("'{key}' must be a string"))),
    }
}

fn count_attr(map: &Map<String, Value>, key: &str, min: u64) -> Result<Option<u64>> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            })
            .filter(|n| *n >= min)
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    key,
                    &format!("'{key}' must be a whole number of at least {min}"),
                )
            }),
    }
}

fn records_attr(map: &Map<String, Value>) -> Result<Option<u64>> {
    count_attr(map, "records", 0)
}

impl Header {
    fn from_map(map: &Map<String, Value>) -> Result<Self> {
        if let Some(k) = map.keys().find(|k| !ATTRIBUTES.contains(&k.as_str())) {
            return Err(Error::validation(
                Reason::UnknownAttribute,
                format!("'{k}' is not a Dataset-JSON 1.1 attribute"),
            )
            .with_field(k.clone()));
        }
        let created = string_attr(map, "datasetJSONCreationDateTime", true)?.unwrap_or_default();
        if !temporal::is_attribute_datetime(created) {
            return Err(invalid(
                "datasetJSONCreationDateTime",
                "datasetJSONCreationDateTime must be YYYY-MM-DDThh:mm:ss[.f][Z|+hh:mm]",
            ));
        }
        let version = string_attr(map, "datasetJSONVersion", true)?.unwrap_or_default();
        if !is_version_1_1(version) {
            return Err(Error::validation(
                Reason::UnsupportedVersion,
                "only Dataset-JSON 1.1 is read (datasetJSONVersion 1.1 or 1.1.n)",
            )
            .with_field("datasetJSONVersion"));
        }
        let mut attributes = vec![
            (KEY_CREATED, created.to_string()),
            (KEY_VERSION, version.to_string()),
        ];
        if let Some(db) = string_attr(map, "dbLastModifiedDateTime", false)? {
            let ordered = temporal::attribute_instant(db)
                .zip(temporal::attribute_instant(created))
                .is_some_and(|(d, c)| d <= c);
            if !temporal::is_attribute_datetime(db) || !ordered {
                return Err(invalid(
                    "dbLastModifiedDateTime",
                    "dbLastModifiedDateTime must be a datetime not after datasetJSONCreationDateTime",
                ));
            }
            attributes.push((KEY_DB_LAST_MODIFIED, db.to_string()));
        }
        for (attr, key, non_empty) in [
            ("fileOID", KEY_FILE_OID, true),
            ("originator", KEY_ORIGINATOR, false),
            ("studyOID", KEY_STUDY_OID, true),
            ("metaDataVersionOID", KEY_METADATA_VERSION_OID, true),
            ("metaDataRef", KEY_METADATA_REF, false),
        ] {
            if let Some(v) = string_attr(map, attr, false)? {
                if non_empty && v.is_empty() {
                    return Err(invalid(attr, &format!("'{attr}' must not be empty")));
                }
                attributes.push((key, v.to_string()));
            }
        }
        match map.get("sourceSystem") {
            None => {}
            Some(Value::Object(o))
                if o.len() == 2
                    && o.get("name").is_some_and(Value::is_string)
                    && o.get("version").is_some_and(Value::is_string) =>
            {
                attributes.push((
                    KEY_SOURCE_SYSTEM,
                    o["name"].as_str().unwrap_or_default().to_string(),
                ));
                attributes.push((
                    KEY_SOURCE_SYSTEM_VERSION,
                    o["version"].as_str().unwrap_or_default().to_string(),
                ));
            }
            Some(_) => return Err(invalid(
                "sourceSystem",
                "sourceSystem must be an object with exactly a name and a version, both strings",
            )),
        }
        let item_group_oid = string_attr(map, "itemGroupOID", true)?.unwrap_or_default();
        if item_group_oid.is_empty() {
            return Err(invalid("itemGroupOID", "'itemGroupOID' must not be empty"));
        }
        let name = string_attr(map, "name", true)?.unwrap_or_default();
        if name.is_empty() {
            return Err(invalid("name", "'name' must not be empty"));
        }
        let label = string_attr(map, "label", true)?.unwrap_or_default();
        let columns = match map.get("columns") {
            None => return Err(missing("columns")),
            Some(Value::Array(cols)) => cols
                .iter()
                .enumerate()
                .map(|(i, c)| column_def(i, c))
                .collect::<Result<Vec<_>>>()?,
            Some(_) => return Err(invalid("columns", "'columns' must be an array")),
        };
        let mut seen = std::collections::HashSet::new();
        if let Some(c) = columns.iter().find(|c| !seen.insert(c.name.as_str())) {
            return Err(Error::validation(
                Reason::DuplicateColumn,
                format!("column '{}' appears twice", c.name),
            )
            .with_field("columns"));
        }
        Ok(Header {
            attributes,
            item_group_oid: item_group_oid.to_string(),
            records: records_attr(map)?,
            name: name.to_string(),
            label: label.to_string(),
            columns,
        })
    }

    fn schema(&self) -> Result<SchemaRef> {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name.clone(), c.ty.arrow_type(), true))
            .collect();
        let md: HashMap<String, String> = self
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let plain = Schema::new_with_metadata(fields, md);
        let meta = DatasetMeta {
            name: self.name.clone(),
            label: Some(self.label.clone()).filter(|l| !l.is_empty()),
            item_group_oid: Some(self.item_group_oid.clone()),
            columns: self
                .columns
                .iter()
                .map(|c| ColumnMeta {
                    name: c.name.clone(),
                    label: Some(c.label.clone()).filter(|l| !l.is_empty()),
                    length: c.length,
                    display_format: c.display_format.clone(),
                    data_type: Some(c.ty.data_type.as_str().to_string()),
                    key_sequence: c.key_sequence,
                    item_oid: Some(c.item_oid.clone()),
                    target_data_type: c.ty.target.map(|t| t.as_str().to_string()),
                    ..ColumnMeta::default()
                })
                .collect(),
            ..DatasetMeta::default()
        };
        meta.apply_to(&plain)
    }
}

fn is_version_1_1(v: &str) -> bool {
    match v.strip_prefix("1.1") {
        Some("") => true,
        Some(rest) => rest.strip_prefix('.').is_some_and(|n| {
            !n.is_empty()
                && n.bytes().all(|c| c.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'))
        }),
        None => false,
    }
}

fn column_def(i: usize, c: &Value) -> Result<ColumnDef> {
    let field = |attr: &str| format!("columns[{i}].{attr}");
    let Value::Object(o) = c else {
        return Err(invalid(
            &format!("columns[{i}]"),
            "a column must be an object",
        ));
    };
    if let Some(k) = o.keys().find(|k| !COLUMN_ATTRIBUTES.contains(&k.as_str())) {
        return Err(Error::validation(
            Reason::UnknownAttribute,
            format!("'{k}' is not a Dataset-JSON 1.1 column attribute"),
        )
        .with_field(field(k)));
    }
    let text = |attr: &str, required: bool, non_empty: bool| -> Result<Option<String>> {
        match o.get(attr) {
            None if required => Err(missing(&field(attr))),
            None => Ok(None),
            Some(Value::String(s)) if non_empty && s.is_empty() => Err(invalid(
                &field(attr),
                &format!("'{attr}' must not be empty"),
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(&field(attr), &format!("'{attr}' must be a string"))),
        }
    };
    let name = text("name", true, true)?.unwrap_or_default();
    let item_oid = text("itemOID", true, true)?.unwrap_or_default();
    let label = text("label", true, false)?.unwrap_or_default();
    let dt = text("dataType", true, false)?.unwrap_or_default();
    let data_type = DsType::parse(&dt).ok_or_else(|| {
        Error::validation(
            Reason::UnknownDataType,
            format!(
                "column '{name}' has a dataType that Dataset-JSON does not define; allowed: {}",
                DsType::ALL.map(DsType::as_str).join(", ")
            ),
        )
        .with_field(field("dataType"))
    })?;
    let target = match text("targetDataType", false, false)? {
        None => None,
        Some(t) => Some(Target::parse(&t).ok_or_else(|| {
            Error::validation(
                Reason::InvalidTargetDataType,
                format!("column '{name}' has a targetDataType other than integer or decimal"),
            )
            .with_field(field("targetDataType"))
        })?),
    };
    let ty = ColumnType::new(data_type, target).ok_or_else(|| {
        Error::validation(
            Reason::InvalidTargetDataType,
            format!("column '{name}': this targetDataType is not allowed with dataType '{dt}'"),
        )
        .with_field(field("targetDataType"))
    })?;
    let number = |attr: &str| -> Result<Option<u32>> {
        count_attr(o, attr, 1)
            .map_err(|e| e.with_field(field(attr)))?
            .map(|n| u32::try_from(n).map_err(|_| invalid(&field(attr), "too large")))
            .transpose()
    };
    Ok(ColumnDef {
        ty,
        length: number("length")?,
        key_sequence: number("keySequence")?,
        display_format: text("displayFormat", false, false)?,
        name,
        item_oid,
        label,
    })
}

/// Where rows come from.
enum RowSource {
    /// No `rows` (a metadata-only file).
    None,
    /// Inside a `rows` array; when `rest_of_object`, the top-level object continues after it.
    Array {
        sc: Scanner,
        first: bool,
        rest_of_object: bool,
    },
    /// NDJSON: one row array after another.
    Lines { sc: Scanner },
}

impl RowSource {
    /// Reads the next row's raw bytes into `row`; `Ok(None)` at the end, with any attributes after `rows`.
    fn next_row(&mut self, row: &mut Vec<u8>) -> Result<Option<()>> {
        row.clear();
        match self {
            RowSource::None => Ok(None),
            RowSource::Lines { sc } => match sc.skip_ws()? {
                None => Ok(None),
                Some(b'[') => {
                    sc.capture(row)?;
                    Ok(Some(()))
                }
                Some(_) => Err(malformed(sc.offset(), "a row is not an array")),
            },
            RowSource::Array { sc, first, .. } => {
                let c = sc.skip_ws()?;
                match c {
                    Some(b']') => {
                        sc.bump();
                        return Ok(None);
                    }
                    Some(b',') if !*first => sc.bump(),
                    Some(b'[') if *first => {}
                    Some(_) => return Err(malformed(sc.offset(), "expected a row array")),
                    None => return Err(malformed(sc.offset(), "unexpected end of the text")),
                }
                *first = false;
                if sc.skip_ws()? != Some(b'[') {
                    return Err(malformed(sc.offset(), "a row is not an array"));
                }
                sc.capture(row)?;
                Ok(Some(()))
            }
        }
    }

    /// After the rows: the attributes that follow them (JSON form), then nothing but whitespace.
    fn finish(&mut self) -> Result<Map<String, Value>> {
        let mut late = Map::new();
        match self {
            RowSource::None | RowSource::Lines { .. } => {}
            RowSource::Array {
                sc, rest_of_object, ..
            } => {
                if *rest_of_object {
                    let mut scratch = Vec::new();
                    let mut value = Vec::new();
                    loop {
                        match sc.skip_ws()? {
                            Some(b',') => sc.bump(),
                            Some(b'}') => {
                                sc.bump();
                                break;
                            }
                            _ => {
                                return Err(malformed(
                                    sc.offset(),
                                    "expected ',' or '}' after rows",
                                ))
                            }
                        }
                        let at = sc.offset();
                        let key = sc.key(&mut scratch)?;
                        value.clear();
                        sc.capture(&mut value)?;
                        let v: Value = serde_json::from_slice(&value)
                            .map_err(|_| malformed(at, "a bad attribute value"))?;
                        if late.insert(key.clone(), v).is_some() {
                            return Err(malformed(at, "an attribute appears twice").with_field(key));
                        }
                    }
                }
                if sc.skip_ws()?.is_some() {
                    return Err(malformed(sc.offset(), "text after the Dataset-JSON object"));
                }
            }
        }
        Ok(late)
    }
}

/// A column being decoded.
enum Builder {
    Text(StringBuilder, bool),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        let cap = BATCH_SIZE;
        match (ty.data_type, ty.target) {
            (DsType::Integer, _) => Builder::Int(Int64Builder::with_capacity(cap)),
            (DsType::Float | DsType::Double, _) => {
                Builder::Float(Float64Builder::with_capacity(cap))
            }
            (DsType::Boolean, _) => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            (DsType::Date, Some(Target::Integer)) => {
                Builder::Date(Date32Builder::with_capacity(cap))
            }
            (DsType::Datetime, Some(Target::Integer)) => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap))
            }
            (DsType::Time, Some(Target::Integer)) => {
                Builder::Time(Time64MicrosecondBuilder::with_capacity(cap))
            }
            (dt, _) => Builder::Text(
                StringBuilder::with_capacity(cap, cap * 16),
                dt == DsType::Decimal,
            ),
        }
    }

    /// Appends a cell; false when it does not fit the column's type.
    fn append(&mut self, cell: Cell<'_>) -> bool {
        match (self, cell) {
            (Builder::Text(b, _), Cell::Null) => b.append_null(),
            (Builder::Int(b), Cell::Null) => b.append_null(),
            (Builder::Float(b), Cell::Null) => b.append_null(),
            (Builder::Bool(b), Cell::Null) => b.append_null(),
            (Builder::Date(b), Cell::Null) => b.append_null(),
            (Builder::Timestamp(b), Cell::Null) => b.append_null(),
            (Builder::Time(b), Cell::Null) => b.append_null(),
            (Builder::Text(b, _), Cell::Str(s)) => b.append_value(s),
            // Decimals are strings; a writer that wrote numbers is read as their text.
            (Builder::Text(b, true), Cell::Num(n, _)) => b.append_value(n),
            (Builder::Int(b), Cell::Num(n, true)) => match n.parse::<i64>() {
                Ok(v) => b.append_value(v),
                Err(_) => return false,
            },
            (Builder::Int(b), Cell::Num(n, false)) => match n.parse::<f64>() {
                Ok(v) if v.fract() == 0.0 && v.abs() < 9.2e18 => b.append_value(v as i64),
                _ => return false,
            },
            (Builder::Float(b), Cell::Num(n, _)) => match n.parse::<f64>() {
                Ok(v) if v.is_finite() => b.append_value(v),
                _ => return false,
            },
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Date(b), Cell::Str(s)) => match temporal::parse_date(s.as_bytes()) {
                Some(d) => b.append_value(d),
                None => return false,
            },
            (Builder::Timestamp(b), Cell::Str(s)) => match temporal::parse_datetime(s.as_bytes()) {
                Some(t) => b.append_value(t),
                None => return false,
            },
            (Builder::Time(b), Cell::Str(s)) => match temporal::parse_time(s.as_bytes()) {
                Some(t) => b.append_value(t),
                None => return false,
            },
            _ => return false,
        }
        true
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b, _) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
        }
    }
}

/// The batches of a file.
struct Batches {
    source: RowSource,
    header: Header,
    builders: Vec<Builder>,
    row: Vec<u8>,
    rows: u64,
    done: bool,
    schema: SchemaRef,
}

impl Batches {
    fn row_error(&self, reason: Reason, message: String) -> Error {
        Error::validation(reason, message).with_detail("row", self.rows + 1)
    }

    fn decode_row(&mut self) -> Result<()> {
        let mut cells = Cells::new(&self.row).map_err(|what| {
            self.row_error(
                Reason::MalformedDatasetJson,
                format!("the text is not valid JSON: {what}"),
            )
        })?;
        let n = self.builders.len();
        let mut j = 0;
        loop {
            let cell = match cells.next_cell() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(what) => {
                    return Err(self.row_error(
                        Reason::MalformedDatasetJson,
                        format!("the text is not valid JSON: {what}"),
                    ))
                }
            };
            if j >= n {
                return Err(self.row_length(n));
            }
            if !self.builders[j].append(cell) {
                let c = &self.header.columns[j];
                return Err(self
                    .row_error(
                        Reason::TypeMismatch,
                        format!(
                            "a value of column '{}' does not fit its dataType '{}'{}",
                            c.name,
                            c.ty.data_type.as_str(),
                            c.ty.target
                                .map(|t| format!(" (targetDataType '{}')", t.as_str()))
                                .unwrap_or_default()
                        ),
                    )
                    .with_field(c.name.clone()));
            }
            j += 1;
        }
        if j != n {
            return Err(self.row_length(n));
        }
        Ok(())
    }

    fn row_length(&self, n: usize) -> Error {
        self.row_error(
            Reason::RowLength,
            format!("a row does not have one cell for each of the {n} columns"),
        )
        .with_field("rows")
    }

    /// Checks `records` (from the header or after the rows) against the rows read.
    fn check_end(&mut self) -> Result<()> {
        let late = self.source.finish()?;
        if let Some(k) = late.keys().find(|k| {
            !ATTRIBUTES.contains(&k.as_str())
                || NEEDED_BEFORE_ROWS.contains(&k.as_str())
                || (self.header.records.is_some() && *k == "records")
        }) {
            return Err(Error::validation(
                Reason::UnknownAttribute,
                format!(
                    "'{k}' after rows is not a Dataset-JSON 1.1 attribute that may follow them"
                ),
            )
            .with_field(k.clone()));
        }
        let records = match self.header.records {
            Some(r) => r,
            None => records_attr(&late)?.ok_or_else(|| missing("records"))?,
        };
        let had_rows = !matches!(self.source, RowSource::None);
        if had_rows && records != self.rows {
            return Err(Error::validation(
                Reason::RecordsMismatch,
                "the file's 'records' differs from the number of rows it holds",
            )
            .with_field("records")
            .with_detail("records", records)
            .with_detail("rows", self.rows));
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut n = 0;
        while n < BATCH_SIZE {
            let mut row = std::mem::take(&mut self.row);
            let got = self.source.next_row(&mut row);
            self.row = row;
            if got?.is_none() {
                self.check_end()?;
                self.done = true;
                break;
            }
            self.decode_row()?;
            self.rows += 1;
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let columns = self.builders.iter_mut().map(Builder::finish).collect();
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_wrappings() {
        for ok in ["1.1", "1.1.0", "1.1.12"] {
            assert!(is_version_1_1(ok), "{ok}");
        }
        for bad in ["1.0", "1.10", "1.1.", "1.1.01", "1.2.0", "1x1"] {
            assert!(!is_version_1_1(bad), "{bad}");
        }
        assert!(matches!(wrapping(&[0x1f, 0x8b, 8]), Wrapping::Gzip));
        assert!(matches!(wrapping(&[0x78, 0xda]), Wrapping::Zlib));
        assert!(matches!(wrapping(&[0x78, 0x9c]), Wrapping::Zlib));
        assert!(matches!(wrapping(b"{\"a"), Wrapping::Plain));
        assert!(matches!(wrapping(b"  "), Wrapping::Plain));
    }
}
