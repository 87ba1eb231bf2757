//! The format traits and the explicit registry the engine is wired with.
//!
//! A [`Format`] is a factory keyed by a stable lowercase id (`"csv"`, `"xpt"`, ...). For a dataset it creates an
//! [`Encoder`] with the arrow-rs writer lifecycle: construct over a `Write`, [`Encoder::write`] any number of batches,
//! [`Encoder::finish`] once. A format that renders reports and dashboards implements [`Format::render`].
//! Options arrive as a string map ([`FormatOptions`]) from every surface and are parsed by the format into its typed
//! options struct, so every surface offers the same options with the same names.

use crate::document::Document;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::meta::DatasetMeta;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

/// What a format can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Encodes datasets (`export_data`, `bulk_export`, `convert`).
    Data,
    /// Renders reports.
    Report,
    /// Renders dashboards.
    Dashboard,
    /// Streams with bounded memory whatever the row count.
    Streaming,
    /// Has a reader (usable as `convert` input and in a directory source).
    Read,
    /// Writes metadata only and accepts zero batches.
    MetadataOnly,
    /// Describes several datasets in one document ([`Format::describe`], e.g. Define-XML).
    Describe,
}

/// One option a format accepts, with its documented default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionInfo {
    /// Option name, e.g. `delimiter`.
    pub name: &'static str,
    /// Default value as text, e.g. `","`.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The allowed values, when they are a closed set.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub values: &'static [&'static str],
}

impl OptionInfo {
    /// An option with free-form values.
    pub const fn new(name: &'static str, default: &'static str, description: &'static str) -> Self {
        OptionInfo {
            name,
            default,
            description,
            values: &[],
        }
    }

    /// An option whose values form a closed set.
    pub const fn one_of(
        name: &'static str,
        default: &'static str,
        description: &'static str,
        values: &'static [&'static str],
    ) -> Self {
        OptionInfo {
            name,
            default,
            description,
            values,
        }
    }
}

/// What `formats` reports of a format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormatInfo {
    /// Stable lowercase id (**contract**), e.g. `arrow-ipc`.
    pub id: &'static str,
    /// Human name, e.g. `Apache Arrow IPC file`.
    pub name: &'static str,
    /// File extension without the dot, e.g. `arrow`.
    pub extension: &'static str,
    /// Media type of the output.
    pub media_type: &'static str,
    /// What it can do.
    pub capabilities: Vec<Capability>,
    /// The options it accepts, with their defaults.
    pub options: Vec<OptionInfo>,
}

impl FormatInfo {
    /// Whether the format has capability `c`.
    pub fn can(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }
}

/// Options as a string map, the one form every surface (Rust, Python, C, CLI) can give.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct FormatOptions(pub BTreeMap<String, String>);

impl FormatOptions {
    /// No options: every default applies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an option (builder style).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_string(), value.to_string());
        self
    }

    /// These options with `created` set to `at` (RFC 3339, UTC, whole seconds) when the format declares a
    /// `created` option (the creation time a document states of itself, e.g. an XPT header) and it is not set.
    pub fn created_by_default(&self, info: &FormatInfo, at: chrono::DateTime<chrono::Utc>) -> Self {
        let mut o = self.clone();
        if o.get("created").is_none() && info.options.iter().any(|x| x.name == "created") {
            o.0.insert(
                "created".into(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
        o
    }

    /// Parses `k=v` pairs as given on a command line.
    ///
    /// # Errors
    /// EXP002 `invalid_option` for a pair without `=`.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for p in pairs {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                Error::validation(Reason::InvalidOption, "options are given as name=value")
                    .with_field("options")
            })?;
            map.insert(k.trim().to_string(), v.to_string());
        }
        Ok(FormatOptions(map))
    }

    /// The raw value of option `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Rejects any option not in `known`, and values outside a closed set.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn check_known(&self, format_id: &str, known: &[OptionInfo]) -> Result<()> {
        for (k, v) in &self.0 {
            let Some(info) = known.iter().find(|o| o.name == k) else {
                let names: Vec<&str> = known.iter().map(|o| o.name).collect();
                return Err(Error::validation(
                    Reason::UnknownOption,
                    format!("format '{format_id}' has no option '{k}'"),
                )
                .with_field(format!("options.{k}"))
                .with_detail("allowed", names));
            };
            if !info.values.is_empty() && !info.values.contains(&v.as_str()) {
                return Err(Error::validation(
                    Reason::InvalidOption,
                    format!("option '{k}' must be one of: {}", info.values.join(", ")),
                )
                .with_field(format!("options.{k}")));
            }
        }
        Ok(())
    }

    /// Option `name` as a string, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    /// Option `name` as a boolean (`true`/`false`, `yes`/`no`, `1`/`0`), or `default`.
    ///
    /// # Errors
    /// EXP002 `invalid_option` for another value.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Ok(true),
                "false" | "no" | "0" | "off" => Ok(false),
                _ => Err(invalid(name, "must be true or false")),
            },
        }
    }

    /// Option `name` as an unsigned integer in `range`, or `default`.
    ///
    /// # Errors
    /// EXP002 `invalid_option` when it is not a number in range.
    pub fn usize_in(
        &self,
        name: &str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    invalid(
                        name,
                        &format!(
                            "must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }

    /// Option `name` as one ASCII byte (`\t` and `tab` mean a tab), or `default`.
    ///
    /// # Errors
    /// EXP002 `invalid_option` when it is not exactly one ASCII character.
    pub fn byte(&self, name: &str, default: u8) -> Result<u8> {
        match self.get(name) {
            None => Ok(default),
            Some("\\t") | Some("tab") => Ok(b'\t'),
            Some(v) if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
            Some(_) => Err(invalid(name, "must be a single ASCII character")),
        }
    }
}

fn invalid(name: &str, what: &str) -> Error {
    Error::validation(Reason::InvalidOption, format!("option '{name}' {what}"))
        .with_field(format!("options.{name}"))
}

/// What an encoder reports when it finishes.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EncodeSummary {
    /// Rows written.
    pub rows: u64,
    /// Metadata the file carries beyond what the encoder was given, layered over the dataset's by the caller:
    /// e.g. the character lengths an XPT writer measured from the data, so that a Define-XML describing the
    /// file states the lengths it really has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<DatasetMeta>,
}

impl EncodeSummary {
    /// A summary of `rows` rows and nothing more.
    pub fn rows(rows: u64) -> Self {
        EncodeSummary {
            rows,
            written: None,
        }
    }
}

/// A streaming writer of one dataset in one format.
///
/// # Contract
/// `write` may be called any number of times (zero for metadata-only formats) with batches of the schema the
/// encoder was created for; memory stays bounded by the batch size, not the row count. `finish` writes any trailer
/// and flushes. After an error the output is incomplete and must be discarded by the caller (sinks abort).
pub trait Encoder: Send {
    /// Encodes one batch.
    ///
    /// # Errors
    /// EXP002 for a value the format cannot represent, EXP005 for I/O.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Writes the trailer, flushes, and reports the rows written.
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn finish(self: Box<Self>) -> Result<EncodeSummary>;
}

/// One dataset as a metadata document ([`Format::describe`]) describes it.
#[derive(Debug, Clone)]
pub struct Described<'a> {
    /// The dataset's schema, with its metadata stored in it.
    pub schema: &'a SchemaRef,
    /// The dataset's metadata.
    pub meta: &'a DatasetMeta,
    /// The file holding the dataset, relative to the document, e.g. `dm.xpt` (Define-XML `def:leaf`).
    pub file: &'a str,
    /// The rows in that file, when known.
    pub rows: Option<u64>,
}

/// What a metadata document says of the study and of itself.
#[derive(Debug, Clone)]
pub struct StudyInfo<'a> {
    /// Study id, e.g. `CDISCPILOT01`.
    pub study: &'a str,
    /// Creation time of the document (the engine clock), so output is reproducible.
    pub created: chrono::DateTime<chrono::Utc>,
}

/// The output an encoder writes to.
pub type Output<'a> = &'a mut (dyn Write + Send);

/// A format: a factory of encoders (and, for document formats, a renderer) keyed by a stable id.
///
/// # Contract
/// `info().id` is stable and unique in a registry. `check_options` accepts exactly the options `encoder` and `render`
/// accept. `encoder` validates the schema, metadata and options before writing a byte, and reports what the format
/// cannot represent as EXP002 (never silent truncation).
pub trait Format: Send + Sync {
    /// The id, name, extension, media type, capabilities and options.
    fn info(&self) -> FormatInfo;

    /// Validates options without writing anything.
    ///
    /// # Errors
    /// EXP002 for an unknown option or a bad value.
    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        options.check_known(self.info().id, &self.info().options)
    }

    /// Creates an encoder for a dataset with `schema` and `meta`, writing to `out`.
    ///
    /// # Errors
    /// EXP002 when the format cannot represent the schema or an option is bad; by default, that the format does
    /// not encode datasets.
    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let _ = (schema, meta, options, out);
        Err(unsupported(self.info().id, "datasets"))
    }

    /// Renders a report or dashboard document to `out`.
    ///
    /// # Errors
    /// EXP002 for a bad option; by default, that the format does not render documents.
    fn render(&self, doc: &Document, options: &FormatOptions, out: Output<'_>) -> Result<()> {
        let _ = (doc, options, out);
        Err(unsupported(self.info().id, "reports or dashboards"))
    }

    /// The extension (without the dot) of the files this format writes with `options`; by default
    /// `info().extension`. A format whose options choose among file forms (Dataset-JSON's `json`, `ndjson`,
    /// `dsjc`) overrides it, so that the engine names artifacts after what they hold.
    fn extension_for(&self, options: &FormatOptions) -> &'static str {
        let _ = options;
        self.info().extension
    }

    /// The media type of the files this format writes with `options`; by default `info().media_type`.
    fn media_type_for(&self, options: &FormatOptions) -> &'static str {
        let _ = options;
        self.info().media_type
    }

    /// Writes one document describing `datasets` (formats with [`Capability::Describe`], e.g. Define-XML).
    ///
    /// # Errors
    /// EXP002 for a bad option or metadata the document cannot carry; by default, that the format does not
    /// describe datasets.
    fn describe(
        &self,
        study: &StudyInfo<'_>,
        datasets: &[Described<'_>],
        options: &FormatOptions,
        out: Output<'_>,
    ) -> Result<()> {
        let _ = (study, datasets, options, out);
        Err(unsupported(self.info().id, "dataset descriptions"))
    }
}

fn unsupported(id: &str, what: &str) -> Error {
    Error::validation(
        Reason::UnsupportedByFormat,
        format!("format '{id}' does not write {what}"),
    )
    .with_field("format")
}

/// The formats an engine knows, by id. Explicit: nothing registers itself.
#[derive(Clone, Default)]
pub struct FormatRegistry {
    formats: BTreeMap<&'static str, Arc<dyn Format>>,
}

impl std::fmt::Debug for FormatRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.formats.keys()).finish()
    }
}

impl FormatRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a format.
    ///
    /// # Errors
    /// EXP004 `duplicate_format` when the id is taken.
    pub fn register(&mut self, format: Arc<dyn Format>) -> Result<()> {
        let id = format.info().id;
        if self.formats.contains_key(id) {
            return Err(Error::conflict(
                Reason::DuplicateFormat,
                format!("format '{id}' is registered twice"),
            ));
        }
        self.formats.insert(id, format);
        Ok(())
    }

    /// The format with `id`.
    ///
    /// # Errors
    /// EXP001 with field `format` when there is none.
    pub fn get(&self, id: &str) -> Result<&Arc<dyn Format>> {
        self.formats.get(id).ok_or_else(|| {
            Error::not_found(format!("no format '{id}'"))
                .with_field("format")
                .with_detail("available", self.ids())
        })
    }

    /// The format whose extension is `ext` (without the dot, any case): the one whose id is the extension when
    /// several share it (`.json` is `json`, not `dataset-json`), else the only one with it. `None` when several
    /// share it and none is named after it (`.xml` is `define-xml` or `odm-xml`): the caller must ask for the id.
    pub fn by_extension(&self, ext: &str) -> Option<&Arc<dyn Format>> {
        let ext = ext.to_ascii_lowercase();
        if let Some(f) = self
            .formats
            .get(ext.as_str())
            .filter(|f| f.info().extension == ext)
        {
            return Some(f);
        }
        let mut with_ext = self.formats.values().filter(|f| f.info().extension == ext);
        match (with_ext.next(), with_ext.next()) {
            (Some(f), None) => Some(f),
            _ => None,
        }
    }

    /// The registered ids, sorted.
    pub fn ids(&self) -> Vec<&'static str> {
        self.formats.keys().copied().collect()
    }

    /// Every format's info, sorted by id.
    pub fn infos(&self) -> Vec<FormatInfo> {
        self.formats.values().map(|f| f.info()).collect()
    }
}
