//! CDISC Dataset-JSON 1.1 (`dataset-json`): one format for the three forms of the standard, written and read.
//!
//! | option `form` | file | content |
//! |---|---|---|
//! | `json` (default) | `.json` | one object: the metadata attributes, then `rows`, an array of row arrays |
//! | `ndjson` | `.ndjson` | line 1 the metadata object (without `rows`), then one row array per line |
//! | `dsjc` | `.dsjc` | the NDJSON form compressed as one zlib stream (written at option `compression_level`) |
//!
//! The format's one [`FormatInfo::extension`] is `json`; a caller that names files (the engine, the CLI) takes the
//! extension of the chosen form from [`extension_for`] and the media type from [`media_type_for`], and
//! [`form_for_extension`] gives the form a file name asks for (`.ndjson`, `.dsjc`).
//!
//! # Writing
//!
//! The attributes are written in the order the standard recommends (formats.md §4.1, §4.2), compactly (no
//! whitespace, one row per line). `records` equals the rows written: it comes before `rows`, so the writer spools
//! the encoded rows until the count is known unless option `records` announces it ([`encode`]).
//!
//! | Arrow type | `dataType` (default) | also allowed by the metadata's `dataType` | cells |
//! |---|---|---|---|
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `string` | `URI`, `date`, `datetime`, `time`, `decimal` | strings as they are |
//! | `Int*`, `UInt*` | `integer` | `float`, `double`; `decimal` (as strings); `date`, `datetime`, `time` (SAS numbers) | integers |
//! | `Float64` (`Float32`, `Float16`) | `double` (`float`); `date`, `datetime` or `time` when the display format is a SAS date, datetime or time format (`DATE9.`, `E8601DT19.`, `TIME8.`, ...) | `float`, `double`; `integer` (whole numbers only); `decimal` (as strings); `date`, `datetime`, `time` (SAS numbers) | shortest round-trip numbers, a whole number without `.0` (`54`, as the CDISC examples); NaN is `null`; infinities are EXP002 `unrepresentable_value` |
//! | `Boolean` | `boolean` | | `true`/`false` |
//! | `Date32`, `Date64` | `date`, target `integer` | | `YYYY-MM-DD` |
//! | `Timestamp` | `datetime`, target `integer` | | `YYYY-MM-DDThh:mm:ss[.f]`, with `Z` when time-zone aware (the instant in UTC) |
//! | `Time32`, `Time64` | `time`, target `integer` | | `hh:mm:ss[.f]` |
//! | `Decimal*` | `decimal`, target `decimal` | | exact decimal strings |
//! | `Null` | `string` | any | `null` |
//! | dictionaries | as their values | | |
//!
//! SAS numbers are the values SAS stores for dates (days since 1960-01-01), datetimes (seconds since
//! 1960-01-01T00:00:00) and times (seconds since midnight); they become ISO 8601 text with target `integer`, as the
//! ADaM examples show (formats.md §4.8). Nulls are `null`; empty strings stay `""`. Other Arrow types are EXP002
//! `unsupported_type`; a metadata `dataType` that cannot describe the column's values is `incompatible_data_type`.
//!
//! Metadata ([`DatasetMeta`]): the dataset `name` (option `dataset` wins; required: EXP002 `missing_dataset_name`
//! without one), `label` (`""` when absent), `itemGroupOID` (default `IG.<name>`); per column `itemOID` (default
//! `IT.<dataset>.<column>`), `label` (`""` when absent), `dataType`, `targetDataType`, `length`, `displayFormat`,
//! `keySequence`. The top-level attributes that [`DatasetMeta`] lacks are options; a file read by this module
//! carries them in the schema metadata ([`KEY_STUDY_OID`], ...), and they are the options' defaults, so a converted
//! file keeps them. `dbLastModifiedDateTime` also defaults to the modification time of an XPT file the data was
//! read from (the CDISC examples carry exactly that). The creation time never comes from the clock (the engine's
//! clock is not the encoder's to read): it is option `created`, else `dbLastModifiedDateTime`, else
//! `1960-01-01T00:00:00` (the value the XPT writer also uses for "not given"), so output is reproducible.
//!
//! # Reading
//!
//! [`read_dataset_json`] reads all three forms from their content (gzip, as the published `.dsjc` examples are, or
//! zlib; then a JSON object with `rows` inside, or followed by row arrays), streaming the rows into batches of 8,192
//! ([`decode`]). Column types follow [`types::ColumnType::arrow_type`]; the schema carries the dataset's and the
//! columns' metadata as [`DatasetMeta`] and the other top-level attributes under the `trialport.dataset_json.*`
//! keys. Everything the standard requires is checked, with EXP002 and a stable reason: the JSON itself
//! (`malformed_dataset_json`), the compressed stream (`malformed_dsjc`), required attributes
//! (`missing_attribute`), the version (`unsupported_version`), `dataType` and `targetDataType`
//! (`unknown_data_type`, `invalid_target_data_type`), row lengths (`row_length`), cells against their column's type
//! (`type_mismatch`) and `records` against the rows (`records_mismatch`).

pub mod decode;
pub mod encode;
mod scan;
pub(crate) mod temporal;
pub mod types;

pub use decode::{is_dataset_json, read_dataset_json, read_dataset_json_from};
pub use encode::DatasetJsonWriter;

use arrow::datatypes::{Schema, SchemaRef};
use std::io::Write;
use trialport_core::error::Reason;
use trialport_core::format::{
    Capability, Encoder, Format, FormatInfo, FormatOptions, OptionInfo, Output,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

/// The `datasetJSONVersion` written.
pub const VERSION: &str = "1.1.0";

/// Schema metadata: `datasetJSONCreationDateTime` of a file read.
pub const KEY_CREATED: &str = "trialport.dataset_json.created";
/// Schema metadata: `datasetJSONVersion` of a file read.
pub const KEY_VERSION: &str = "trialport.dataset_json.version";
/// Schema metadata: `fileOID`.
pub const KEY_FILE_OID: &str = "trialport.dataset_json.file_oid";
/// Schema metadata: `dbLastModifiedDateTime`.
pub const KEY_DB_LAST_MODIFIED: &str = "trialport.dataset_json.db_last_modified";
/// Schema metadata: `originator`.
pub const KEY_ORIGINATOR: &str = "trialport.dataset_json.originator";
/// Schema metadata: `sourceSystem.name`.
pub const KEY_SOURCE_SYSTEM: &str = "trialport.dataset_json.source_system";
/// Schema metadata: `sourceSystem.version`.
pub const KEY_SOURCE_SYSTEM_VERSION: &str = "trialport.dataset_json.source_system_version";
/// Schema metadata: `studyOID`.
pub const KEY_STUDY_OID: &str = "trialport.dataset_json.study_oid";
/// Schema metadata: `metaDataVersionOID`.
pub const KEY_METADATA_VERSION_OID: &str = "trialport.dataset_json.metadata_version_oid";
/// Schema metadata: `metaDataRef`.
pub const KEY_METADATA_REF: &str = "trialport.dataset_json.metadata_ref";

/// The creation time written when neither option `created` nor a `dbLastModifiedDateTime` is known.
pub const DEFAULT_CREATED: &str = "1960-01-01T00:00:00";

/// The three forms of Dataset-JSON (option `form`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    /// One JSON object (`.json`).
    #[default]
    Json,
    /// Newline-delimited: the metadata object, then one row per line (`.ndjson`).
    Ndjson,
    /// The NDJSON form as one zlib stream (`.dsjc`).
    Dsjc,
}

impl Form {
    /// The option value, which is also the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Json => "json",
            Form::Ndjson => "ndjson",
            Form::Dsjc => "dsjc",
        }
    }

    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Form::Json => "application/json",
            Form::Ndjson => "application/x-ndjson",
            Form::Dsjc => "application/vnd.cdisc.dataset-json.compressed",
        }
    }
}

/// The file extension (without the dot) of the form `options` choose: `json`, `ndjson` or `dsjc`. An invalid
/// `form` gives `json` (option checking reports it).
pub fn extension_for(options: &FormatOptions) -> &'static str {
    form_of(options).as_str()
}

/// The media type of the form `options` choose.
pub fn media_type_for(options: &FormatOptions) -> &'static str {
    form_of(options).media_type()
}

/// The form a file extension asks for (`json`, `ndjson`/`jsonl`, `dsjc`; any case), so that a caller writing
/// `dm.dsjc` can set option `form`.
pub fn form_for_extension(ext: &str) -> Option<Form> {
    match ext.to_ascii_lowercase().as_str() {
        "json" => Some(Form::Json),
        "ndjson" | "jsonl" => Some(Form::Ndjson),
        "dsjc" => Some(Form::Dsjc),
        _ => None,
    }
}

fn form_of(options: &FormatOptions) -> Form {
    match options.get("form") {
        Some("ndjson") => Form::Ndjson,
        Some("dsjc") => Form::Dsjc,
        _ => Form::Json,
    }
}

fn option_infos() -> Vec<OptionInfo> {
    vec![
        OptionInfo::one_of(
            "form",
            "json",
            "json (one object, .json), ndjson (metadata line then one row per line, .ndjson) or dsjc (ndjson \
             compressed with zlib, .dsjc)",
            &["json", "ndjson", "dsjc"],
        ),
        OptionInfo::new(
            "created",
            "the dbLastModifiedDateTime, else 1960-01-01T00:00:00",
            "datasetJSONCreationDateTime: YYYY-MM-DDThh:mm:ss[.f][Z|+hh:mm], written as given",
        ),
        OptionInfo::new(
            "db_last_modified",
            "the source's (a Dataset-JSON file's, or an XPT file's modified time), else none",
            "dbLastModifiedDateTime, in the form of `created` and not after it; empty leaves it out",
        ),
        OptionInfo::new(
            "file_oid",
            "the source's, else none",
            "fileOID; empty leaves it out",
        ),
        OptionInfo::new(
            "originator",
            "the source's, else none",
            "originator: the organization that generated the file; empty leaves it out",
        ),
        OptionInfo::new(
            "source_system",
            "the source's, else none",
            "sourceSystem.name (needs source_system_version); empty leaves sourceSystem out",
        ),
        OptionInfo::new(
            "source_system_version",
            "the source's, else none",
            "sourceSystem.version (needs source_system)",
        ),
        OptionInfo::new(
            "study_oid",
            "the source's, else none",
            "studyOID (Define-XML Study/@OID); empty leaves it out",
        ),
        OptionInfo::new(
            "metadata_version_oid",
            "the source's, else none",
            "metaDataVersionOID (Define-XML MetaDataVersion/@OID); empty leaves it out",
        ),
        OptionInfo::new(
            "metadata_ref",
            "the source's, else none",
            "metaDataRef: URI of the define.xml, e.g. define.xml; empty leaves it out",
        ),
        OptionInfo::new(
            "dataset",
            "the dataset name of the metadata",
            "name of the dataset, e.g. DM",
        ),
        OptionInfo::new(
            "records",
            "none: rows are spooled until the count is known",
            "the number of rows that will be written: the header goes out first and rows stream straight to \
             the output; another count fails the export",
        ),
        OptionInfo::new(
            "compression_level",
            "9",
            "zlib level 0-9 of form dsjc (9, the standard's recommendation, is the smallest; 1 the fastest)",
        ),
    ]
}

/// The typed options of `dataset-json`. `None` for an attribute means "the source's, else left out"; `Some("")`
/// means "left out".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatasetJsonOptions {
    /// Form. Defaults to [`Form::Json`].
    pub form: Form,
    /// `datasetJSONCreationDateTime`. Defaults to `None`: the `dbLastModifiedDateTime`, else [`DEFAULT_CREATED`].
    pub created: Option<String>,
    /// `dbLastModifiedDateTime`.
    pub db_last_modified: Option<String>,
    /// `fileOID`.
    pub file_oid: Option<String>,
    /// `originator`.
    pub originator: Option<String>,
    /// `sourceSystem.name`.
    pub source_system: Option<String>,
    /// `sourceSystem.version`.
    pub source_system_version: Option<String>,
    /// `studyOID`.
    pub study_oid: Option<String>,
    /// `metaDataVersionOID`.
    pub metadata_version_oid: Option<String>,
    /// `metaDataRef`.
    pub metadata_ref: Option<String>,
    /// Dataset name. Defaults to `None`: the metadata's.
    pub dataset: Option<String>,
    /// The rows that will be written. Defaults to `None`: counted while spooling.
    pub records: Option<u64>,
    /// zlib level of form `dsjc`. Defaults to 9.
    pub compression_level: u32,
}

fn invalid_option(name: &str, message: &str) -> Error {
    Error::validation(Reason::InvalidOption, message).with_field(format!("options.{name}"))
}

impl DatasetJsonOptions {
    /// Parses the string options: the one place they are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn from_format_options(options: &FormatOptions) -> Result<Self> {
        options.check_known("dataset-json", &option_infos())?;
        let text = |name: &str| options.get(name).map(str::to_string);
        let datetime = |name: &str| -> Result<Option<String>> {
            match options.get(name) {
                Some(v) if !v.is_empty() && !temporal::is_attribute_datetime(v) => {
                    Err(invalid_option(
                        name,
                        &format!("option '{name}' must be YYYY-MM-DDThh:mm:ss[.f][Z|+hh:mm]"),
                    ))
                }
                v => Ok(v.map(str::to_string)),
            }
        };
        let created = match datetime("created")? {
            Some(v) if v.is_empty() => {
                return Err(invalid_option(
                    "created",
                    "option 'created' cannot be empty: datasetJSONCreationDateTime is required",
                ))
            }
            v => v,
        };
        let records = match options.get("records") {
            None => None,
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
                invalid_option("records", "option 'records' must be a whole number of rows")
            })?),
        };
        Ok(DatasetJsonOptions {
            form: form_of(options),
            created,
            db_last_modified: datetime("db_last_modified")?,
            file_oid: text("file_oid"),
            originator: text("originator"),
            source_system: text("source_system"),
            source_system_version: text("source_system_version"),
            study_oid: text("study_oid"),
            metadata_version_oid: text("metadata_version_oid"),
            metadata_ref: text("metadata_ref"),
            dataset: text("dataset").filter(|d| !d.is_empty()),
            records,
            compression_level: options.usize_in("compression_level", 9, 0..=9)? as u32,
        })
    }
}

/// The top-level attributes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopLevel {
    pub(crate) created: String,
    pub(crate) db_last_modified: Option<String>,
    pub(crate) file_oid: Option<String>,
    pub(crate) originator: Option<String>,
    pub(crate) source_system: Option<(String, String)>,
    pub(crate) study_oid: Option<String>,
    pub(crate) metadata_version_oid: Option<String>,
    pub(crate) metadata_ref: Option<String>,
    pub(crate) item_group_oid: String,
    pub(crate) name: String,
    pub(crate) label: String,
}

/// The modification time of an XPT file the data was read from, as an attribute datetime.
fn xpt_modified(schema: &Schema) -> Option<String> {
    schema
        .metadata()
        .get(crate::xpt::KEY_MODIFIED)
        .filter(|v| temporal::is_attribute_datetime(v))
        .cloned()
}

impl TopLevel {
    fn resolve(o: &DatasetJsonOptions, schema: &Schema, meta: &DatasetMeta) -> Result<Self> {
        let md = schema.metadata();
        // Option, else the source's; empty means "left out".
        let pick = |opt: &Option<String>, key: &str| -> Option<String> {
            opt.clone()
                .or_else(|| md.get(key).cloned())
                .filter(|v| !v.is_empty())
        };
        let db_last_modified = match &o.db_last_modified {
            Some(v) => Some(v.clone()).filter(|v| !v.is_empty()),
            None => md
                .get(KEY_DB_LAST_MODIFIED)
                .filter(|v| temporal::is_attribute_datetime(v))
                .cloned()
                .or_else(|| xpt_modified(schema)),
        };
        let created = o
            .created
            .clone()
            .or_else(|| db_last_modified.clone())
            .unwrap_or_else(|| DEFAULT_CREATED.to_string());
        if let Some(db) = &db_last_modified {
            let later = temporal::attribute_instant(db)
                .zip(temporal::attribute_instant(&created))
                .is_some_and(|(db, c)| db > c);
            if later {
                return Err(invalid_option(
                    "db_last_modified",
                    "dbLastModifiedDateTime (given or carried from the source) must not be after \
                     datasetJSONCreationDateTime (option 'created')",
                ));
            }
        }
        let source_system = match (
            pick(&o.source_system, KEY_SOURCE_SYSTEM),
            pick(&o.source_system_version, KEY_SOURCE_SYSTEM_VERSION),
        ) {
            (Some(n), Some(v)) => Some((n, v)),
            (None, None) => None,
            _ if o.source_system.as_deref() == Some("") => None,
            _ => {
                return Err(invalid_option(
                    "source_system",
                    "sourceSystem needs both a name (option 'source_system') and a version \
                     (option 'source_system_version')",
                ))
            }
        };
        let name = o.dataset.clone().unwrap_or_else(|| meta.name.clone());
        if name.is_empty() {
            return Err(Error::validation(
                Reason::MissingDatasetName,
                "Dataset-JSON needs a dataset name: give the metadata's name or option 'dataset'",
            )
            .with_field("dataset"));
        }
        let item_group_oid = meta
            .item_group_oid
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("IG.{name}"));
        Ok(TopLevel {
            created,
            db_last_modified,
            file_oid: pick(&o.file_oid, KEY_FILE_OID),
            originator: pick(&o.originator, KEY_ORIGINATOR),
            source_system,
            study_oid: pick(&o.study_oid, KEY_STUDY_OID),
            metadata_version_oid: pick(&o.metadata_version_oid, KEY_METADATA_VERSION_OID),
            metadata_ref: pick(&o.metadata_ref, KEY_METADATA_REF),
            item_group_oid,
            label: meta.label.clone().unwrap_or_default(),
            name,
        })
    }
}

/// The options that reproduce the top-level attributes of the Dataset-JSON file `schema` was read from, its
/// creation time included (which the writer otherwise does not carry over).
pub fn reproduce_options(schema: &Schema) -> FormatOptions {
    let md = schema.metadata();
    let mut o = FormatOptions::new();
    for (key, option) in [
        (KEY_CREATED, "created"),
        (KEY_DB_LAST_MODIFIED, "db_last_modified"),
        (KEY_FILE_OID, "file_oid"),
        (KEY_ORIGINATOR, "originator"),
        (KEY_SOURCE_SYSTEM, "source_system"),
        (KEY_SOURCE_SYSTEM_VERSION, "source_system_version"),
        (KEY_STUDY_OID, "study_oid"),
        (KEY_METADATA_VERSION_OID, "metadata_version_oid"),
        (KEY_METADATA_REF, "metadata_ref"),
    ] {
        if let Some(v) = md.get(key) {
            o = o.with(option, v);
        }
    }
    o
}

/// CDISC Dataset-JSON 1.1, id `dataset-json`: JSON, NDJSON and DSJC (option `form`), written and read.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatasetJsonFormat;

impl DatasetJsonFormat {
    /// Creates a writer of a dataset with `schema` and `meta` (layered over the schema's own metadata).
    ///
    /// # Errors
    /// EXP002 for bad options, a missing dataset name, duplicate column names, or a column that Dataset-JSON
    /// cannot carry or whose metadata does not fit ([`types`]).
    pub fn writer<W: Write>(
        out: W,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &DatasetJsonOptions,
    ) -> Result<DatasetJsonWriter<W>> {
        let merged = DatasetMeta::from_schema(schema).merged_with(meta);
        let top = TopLevel::resolve(options, schema, &merged)?;
        let mut seen = std::collections::HashSet::new();
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                if !seen.insert(f.name().as_str()) {
                    return Err(Error::validation(
                        Reason::DuplicateColumn,
                        format!("column '{}' appears twice", f.name()),
                    )
                    .with_field(f.name().clone()));
                }
                types::resolve(&top.name, f.name(), f.data_type(), merged.column(f.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DatasetJsonWriter::new(
            out,
            schema,
            columns,
            &top,
            options.form,
            options.records,
            options.compression_level,
        ))
    }
}

impl Format for DatasetJsonFormat {
    fn extension_for(&self, options: &FormatOptions) -> &'static str {
        extension_for(options)
    }

    fn media_type_for(&self, options: &FormatOptions) -> &'static str {
        media_type_for(options)
    }

    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "dataset-json",
            name: "CDISC Dataset-JSON 1.1 (JSON, NDJSON, compressed DSJC)",
            extension: "json",
            media_type: "application/json",
            capabilities: vec![Capability::Data, Capability::Streaming, Capability::Read],
            options: option_infos(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        DatasetJsonOptions::from_format_options(options).map(|_| ())
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let options = DatasetJsonOptions::from_format_options(options)?;
        Ok(Box::new(DatasetJsonFormat::writer(
            out, schema, meta, &options,
        )?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_with_documented_defaults() {
        let d = DatasetJsonOptions::from_format_options(&FormatOptions::new()).unwrap();
        assert_eq!(d.form, Form::Json);
        assert_eq!(d.compression_level, 9);
        assert_eq!(d.created, None);
        let o = DatasetJsonOptions::from_format_options(
            &FormatOptions::new()
                .with("form", "dsjc")
                .with("created", "2025-06-19T17:57:05.015Z")
                .with("records", "18")
                .with("compression_level", "1"),
        )
        .unwrap();
        assert_eq!(
            (o.form, o.records, o.compression_level),
            (Form::Dsjc, Some(18), 1)
        );
        for (k, v) in [
            ("form", "xml"),
            ("created", "2025-06-19"),
            ("created", ""),
            ("db_last_modified", "yesterday"),
            ("records", "-1"),
            ("compression_level", "10"),
            ("colour", "red"),
        ] {
            let e = DatasetJsonFormat
                .check_options(&FormatOptions::new().with(k, v))
                .unwrap_err();
            assert_eq!(e.code(), trialport_core::ErrorCode::Validation, "{k}={v}");
        }
    }

    #[test]
    fn forms_name_their_files() {
        let o = |f: &str| FormatOptions::new().with("form", f);
        assert_eq!(extension_for(&FormatOptions::new()), "json");
        assert_eq!(extension_for(&o("dsjc")), "dsjc");
        assert_eq!(media_type_for(&o("ndjson")), "application/x-ndjson");
        assert_eq!(form_for_extension("DSJC"), Some(Form::Dsjc));
        assert_eq!(form_for_extension("xpt"), None);
        assert_eq!(DatasetJsonFormat.info().extension, "json");
    }
}
