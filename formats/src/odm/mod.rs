//! CDISC ODM 1.3.2 clinical data (`odm-xml`): a dataset with subject, event and form columns written as
//! `ClinicalData` / `SubjectData` / `StudyEventData` / `FormData` / `ItemGroupData` / `ItemData`, streamed.
//!
//! # Mapping
//!
//! | ODM | from |
//! |---|---|
//! | `ClinicalData/@StudyOID` | option `study_oid`, else the first `STUDYID` value |
//! | `ClinicalData/@MetaDataVersionOID` | option `metadata_version_oid`, else `MDV.<StudyOID>` (what `define-xml` names its MetaDataVersion) |
//! | `SubjectData/@SubjectKey` | column `subject` (default: the first of `USUBJID`, `SUBJID`, `SUBJECT` present) |
//! | `StudyEventData/@StudyEventOID` | `event_prefix` (default `SE.`) and column `event` (default: `VISIT`, else `VISITNUM`), or the constant `event_oid` |
//! | `StudyEventData/@StudyEventRepeatKey` | column `event_repeat` (default: none) |
//! | `FormData/@FormOID` | `form_prefix` (default `F.`) and column `form` (default: `FORM` or `FORMOID` when present), else `form_oid` (default `F.<DATASET>`) |
//! | `FormData/@FormRepeatKey` | column `form_repeat` (default: none) |
//! | `ItemGroupData/@ItemGroupOID` | the dataset's `itemGroupOID`, else `IG.<DATASET>` |
//! | `ItemGroupData/@ItemGroupRepeatKey` | column `item_group_repeat` (default: `<DATASET>SEQ` when present, e.g. `AESEQ`) |
//! | `ItemData` | every other column, in schema order: `ItemOID` = its `itemOID`, else `IT.<DATASET>.<COLUMN>` |
//!
//! Columns used as keys (and `STUDYID` when it gives the StudyOID) are not repeated as `ItemData`. Each row is
//! one `ItemGroupData`. When `STUDYID` gives the StudyOID, every row must hold that value (else EXP002
//! `mixed_study`: one `ClinicalData` is one study).
//!
//! Values: null cells, NaN and empty strings (a blank in SAS) are omitted (no `ItemData`); text as is; integers
//! and decimals exactly; floats as the shortest plain decimal that reads back to the same double (no exponent);
//! booleans `true`/`false`; Arrow dates, timestamps and times ISO 8601 (`Z` for time-zone aware timestamps); a
//! number whose display format is a SAS date, datetime or time format (`DATE9.`, `E8601DT.`, `TIME8.`, ...) is
//! converted from SAS days or seconds to ISO 8601. Infinity, or a SAS date that is not a whole day, is EXP002
//! `unrepresentable_value`. A null key is EXP002 `missing_key`.
//!
//! # Streaming and grouping
//!
//! Rows are written as they arrive; elements are closed and opened when the subject, event or form changes, and
//! the output is handed on in chunks of about 1 MiB. So the rows of one subject must be consecutive, and within a
//! subject those of one event, and within an event those of one form: ODM allows a subject once per
//! `ClinicalData` (and an event or form once per parent). Input that is not grouped so is EXP002 `not_grouped`
//! naming the row (1-based) and the key column; sort the extract by subject, event and form first. Memory holds
//! the subject keys seen (to detect this), never the document.
//!
//! The header's `CreationDateTime` comes from option `created` (default `1970-01-01T00:00:00Z`, meaning "not
//! given"), so the output is reproducible.

use crate::csv::cell::{self, ColumnView, Kind, Temporal};
use crate::define::xml::Xml;
use crate::define::{parse_time, sas_temporal, SasTemporal};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashSet;
use trialport_core::error::Reason;
use trialport_core::format::{
    Capability, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, OptionInfo, Output,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

/// The ODM 1.3 namespace.
pub const NS_ODM: &str = "http://www.cdisc.org/ns/odm/v1.3";

/// Bytes buffered before they are handed to the output.
const FLUSH_AT: usize = 1 << 20;

/// CDISC ODM 1.3.2 ClinicalData, id `odm-xml`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OdmXmlFormat;

fn option_infos() -> Vec<OptionInfo> {
    vec![
        OptionInfo::new(
            "subject",
            "USUBJID, SUBJID or SUBJECT",
            "column of the SubjectKey",
        ),
        OptionInfo::new("event", "VISIT or VISITNUM", "column of the StudyEventOID"),
        OptionInfo::new(
            "event_oid",
            "none",
            "StudyEventOID of every row, when no event column",
        ),
        OptionInfo::new("event_repeat", "none", "column of the StudyEventRepeatKey"),
        OptionInfo::new("form", "FORM or FORMOID", "column of the FormOID"),
        OptionInfo::new(
            "form_oid",
            "F.<DATASET>",
            "FormOID of every row, when no form column",
        ),
        OptionInfo::new("form_repeat", "none", "column of the FormRepeatKey"),
        OptionInfo::new(
            "item_group_repeat",
            "<DATASET>SEQ when present",
            "column of the ItemGroupRepeatKey; empty for none",
        ),
        OptionInfo::new(
            "event_prefix",
            "SE.",
            "prefix of StudyEventOIDs made from event values",
        ),
        OptionInfo::new(
            "form_prefix",
            "F.",
            "prefix of FormOIDs made from form values",
        ),
        OptionInfo::new(
            "study_oid",
            "the first STUDYID value",
            "ClinicalData StudyOID",
        ),
        OptionInfo::new(
            "metadata_version_oid",
            "MDV.<study_oid>",
            "ClinicalData MetaDataVersionOID",
        ),
        OptionInfo::new("file_oid", "<study_oid>.ODM.<DATASET>", "ODM FileOID"),
        OptionInfo::new(
            "created",
            "1970-01-01T00:00:00Z",
            "CreationDateTime: RFC 3339, or YYYY-MM-DDTHH:MM:SS taken as UTC",
        ),
        OptionInfo::new("originator", "none", "ODM Originator"),
        OptionInfo::new("source_system", "trialport", "ODM SourceSystem"),
        OptionInfo::new(
            "source_system_version",
            "this trialport's version",
            "ODM SourceSystemVersion",
        ),
    ]
}

/// The typed options of `odm-xml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OdmOptions {
    /// Subject column. Defaults to `None`: `USUBJID`, `SUBJID` or `SUBJECT`.
    pub subject: Option<String>,
    /// Event column. Defaults to `None`: `VISIT` or `VISITNUM`.
    pub event: Option<String>,
    /// Constant StudyEventOID. Defaults to `None`.
    pub event_oid: Option<String>,
    /// Event repeat key column. Defaults to `None`.
    pub event_repeat: Option<String>,
    /// Form column. Defaults to `None`: `FORM` or `FORMOID` when present.
    pub form: Option<String>,
    /// Constant FormOID. Defaults to `None`: `F.<DATASET>`.
    pub form_oid: Option<String>,
    /// Form repeat key column. Defaults to `None`.
    pub form_repeat: Option<String>,
    /// Item group repeat key column. Defaults to `None`: `<DATASET>SEQ` when present; `Some("")` for none.
    pub item_group_repeat: Option<String>,
    /// Prefix of event OIDs. Defaults to `None`: `SE.`.
    pub event_prefix: Option<String>,
    /// Prefix of form OIDs. Defaults to `None`: `F.`.
    pub form_prefix: Option<String>,
    /// StudyOID. Defaults to `None`: the first `STUDYID` value.
    pub study_oid: Option<String>,
    /// MetaDataVersionOID. Defaults to `None`: `MDV.<study_oid>`.
    pub metadata_version_oid: Option<String>,
    /// FileOID. Defaults to `None`: `<study_oid>.ODM.<DATASET>`.
    pub file_oid: Option<String>,
    /// CreationDateTime. Defaults to `None`: 1970-01-01T00:00:00Z.
    pub created: Option<DateTime<Utc>>,
    /// Originator. Defaults to `None`: not written.
    pub originator: Option<String>,
    /// SourceSystem. Defaults to `None`: `trialport`.
    pub source_system: Option<String>,
    /// SourceSystemVersion. Defaults to `None`: this crate's version.
    pub source_system_version: Option<String>,
}

impl OdmOptions {
    /// Parses the string options: the one place they are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn from_format_options(options: &FormatOptions) -> Result<Self> {
        options.check_known("odm-xml", &option_infos())?;
        let t = |name: &str| options.get(name).map(str::to_string);
        Ok(OdmOptions {
            subject: t("subject"),
            event: t("event"),
            event_oid: t("event_oid"),
            event_repeat: t("event_repeat"),
            form: t("form"),
            form_oid: t("form_oid"),
            form_repeat: t("form_repeat"),
            item_group_repeat: t("item_group_repeat"),
            event_prefix: t("event_prefix"),
            form_prefix: t("form_prefix"),
            study_oid: t("study_oid"),
            metadata_version_oid: t("metadata_version_oid"),
            file_oid: t("file_oid"),
            created: options
                .get("created")
                .map(|v| parse_time("created", v))
                .transpose()?,
            originator: t("originator"),
            source_system: t("source_system"),
            source_system_version: t("source_system_version"),
        })
    }
}

impl Format for OdmXmlFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "odm-xml",
            name: "CDISC ODM 1.3.2 clinical data",
            extension: "xml",
            media_type: "application/xml",
            capabilities: vec![Capability::Data, Capability::Streaming],
            options: option_infos(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        OdmOptions::from_format_options(options).map(|_| ())
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let opts = OdmOptions::from_format_options(options)?;
        Ok(Box::new(OdmWriter::try_new(out, schema, meta, opts)?))
    }
}

/// Where a key comes from: a column (by index) or a constant.
#[derive(Debug, Clone)]
enum Key {
    Column { index: usize, name: String },
    Constant(String),
    None,
}

/// The open subject, event and form, with what was already closed under the current parent.
#[derive(Default)]
struct Open {
    subject: Option<String>,
    event: Option<(String, String)>,
    form: Option<(String, String)>,
    subjects_seen: HashSet<String>,
    events_seen: HashSet<(String, String)>,
    forms_seen: HashSet<(String, String)>,
}

/// The streaming ODM writer.
pub struct OdmWriter<'a> {
    out: Output<'a>,
    schema: SchemaRef,
    dataset: String,
    opts: OdmOptions,
    xml: Xml,
    header_written: bool,
    study_from: Option<usize>,
    /// The StudyOID taken from `STUDYID`, which every row must then repeat.
    study: Option<String>,
    subject: Key,
    event: Key,
    event_repeat: Key,
    form: Key,
    form_repeat: Key,
    group_repeat: Key,
    item_group_oid: String,
    /// (column index, ItemOID, SAS temporal display format).
    items: Vec<(usize, String, Option<SasTemporal>)>,
    temporal: Vec<Option<SasTemporal>>,
    open: Open,
    rows: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for OdmWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdmWriter")
            .field("dataset", &self.dataset)
            .field("rows", &self.rows)
            .finish()
    }
}

fn missing_column(option: &str, what: &str) -> Error {
    Error::validation(
        Reason::MissingColumn,
        format!("the dataset has no {what} column: give option {option}="),
    )
    .with_field(format!("options.{option}"))
}

impl<'a> OdmWriter<'a> {
    /// A writer of `schema`'s rows with metadata `meta` to `out`. Nothing is written before the first row (or
    /// `finish`).
    ///
    /// # Errors
    /// EXP002 `unsupported_type` for a column type ODM text cannot hold; `missing_column` when a key column
    /// named by an option (or any default) is absent.
    pub fn try_new(
        out: Output<'a>,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        opts: OdmOptions,
    ) -> Result<Self> {
        cell::check_schema(schema, "odm-xml")?;
        let dataset = if meta.name.is_empty() {
            "DATASET".to_string()
        } else {
            meta.name.to_ascii_uppercase()
        };
        let index = |name: &str| schema.index_of(name).ok();
        let column =
            |option: &str, given: &Option<String>, defaults: &[&str]| -> Result<Option<Key>> {
                match given.as_deref() {
                    Some("") => Ok(Some(Key::None)),
                    Some(name) => match index(name) {
                        Some(i) => Ok(Some(Key::Column {
                            index: i,
                            name: name.to_string(),
                        })),
                        None => Err(Error::validation(
                            Reason::UnknownColumn,
                            format!("option '{option}' names a column the dataset does not have"),
                        )
                        .with_field(format!("options.{option}"))),
                    },
                    None => Ok(defaults.iter().find_map(|d| {
                        index(d).map(|i| Key::Column {
                            index: i,
                            name: (*d).to_string(),
                        })
                    })),
                }
            };
        let subject = column("subject", &opts.subject, &["USUBJID", "SUBJID", "SUBJECT"])?
            .ok_or_else(|| missing_column("subject", "subject"))?;
        let event = match (
            column("event", &opts.event, &["VISIT", "VISITNUM"])?,
            &opts.event_oid,
        ) {
            (_, Some(oid)) if opts.event.is_none() => Key::Constant(oid.clone()),
            (Some(Key::None) | None, Some(oid)) => Key::Constant(oid.clone()),
            (Some(k @ Key::Column { .. }), _) => k,
            _ => return Err(missing_column("event", "event (visit)")),
        };
        let form = match column("form", &opts.form, &["FORM", "FORMOID"])? {
            Some(k @ Key::Column { .. }) if opts.form_oid.is_none() || opts.form.is_some() => k,
            _ => Key::Constant(
                opts.form_oid
                    .clone()
                    .unwrap_or_else(|| format!("F.{dataset}")),
            ),
        };
        let none = |k: Option<Key>| k.unwrap_or(Key::None);
        let event_repeat = none(column("event_repeat", &opts.event_repeat, &[])?);
        let form_repeat = none(column("form_repeat", &opts.form_repeat, &[])?);
        let seq = format!("{dataset}SEQ");
        let group_repeat = none(column(
            "item_group_repeat",
            &opts.item_group_repeat,
            &[seq.as_str()],
        )?);
        let study_from = if opts.study_oid.is_none() {
            index("STUDYID")
        } else {
            None
        };

        let mut keys: Vec<usize> = [
            &subject,
            &event,
            &event_repeat,
            &form,
            &form_repeat,
            &group_repeat,
        ]
        .iter()
        .filter_map(|k| match k {
            Key::Column { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
        keys.extend(study_from);
        let temporal: Vec<Option<SasTemporal>> = schema
            .fields()
            .iter()
            .map(|f| {
                sas_temporal(
                    meta.column(f.name())
                        .and_then(|c| c.display_format.as_deref()),
                )
            })
            .collect();
        let items = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !keys.contains(i))
            .map(|(i, f)| {
                let oid = meta
                    .column(f.name())
                    .and_then(|c| c.item_oid.clone())
                    .unwrap_or_else(|| format!("IT.{dataset}.{}", f.name()));
                (i, oid, temporal[i])
            })
            .collect();
        Ok(OdmWriter {
            out,
            schema: schema.clone(),
            item_group_oid: meta
                .item_group_oid
                .clone()
                .unwrap_or_else(|| format!("IG.{dataset}")),
            dataset,
            opts,
            xml: Xml::new(),
            header_written: false,
            study_from,
            study: None,
            subject,
            event,
            event_repeat,
            form,
            form_repeat,
            group_repeat,
            items,
            temporal,
            open: Open::default(),
            rows: 0,
            scratch: Vec::new(),
        })
    }

    fn header(&mut self, study_oid: &str) -> Result<()> {
        let o = &self.opts;
        let created = o
            .created
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let file_oid = o
            .file_oid
            .clone()
            .unwrap_or_else(|| format!("{study_oid}.ODM.{}", self.dataset));
        let mdv = o
            .metadata_version_oid
            .clone()
            .unwrap_or_else(|| format!("MDV.{study_oid}"));
        let version = o
            .source_system_version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        let x = &mut self.xml;
        x.buf
            .extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        x.context = "options".into();
        x.start(
            "ODM",
            &[
                ("xmlns", Some(NS_ODM)),
                ("ODMVersion", Some("1.3.2")),
                ("FileType", Some("Snapshot")),
                ("FileOID", Some(&file_oid)),
                ("CreationDateTime", Some(&created)),
                ("Originator", o.originator.as_deref()),
                (
                    "SourceSystem",
                    Some(o.source_system.as_deref().unwrap_or("trialport")),
                ),
                ("SourceSystemVersion", Some(&version)),
            ],
        )?;
        x.start(
            "ClinicalData",
            &[
                ("StudyOID", Some(study_oid)),
                ("MetaDataVersionOID", Some(&mdv)),
            ],
        )?;
        self.header_written = true;
        Ok(())
    }

    /// The text of cell `row` of column `ci` in `self.scratch`; `false` when it is missing (null, NaN, empty).
    fn cell(&mut self, views: &[ColumnView], ci: usize, row: usize) -> Result<bool> {
        self.scratch.clear();
        cell_text(&views[ci], self.temporal[ci], row, &mut self.scratch).map_err(|e| {
            e.with_field(self.schema.field(ci).name().clone())
                .with_detail("row", self.rows + row as u64 + 1)
        })
    }

    /// The key's value at `row` (`None` for [`Key::None`]).
    fn key(&mut self, views: &[ColumnView], key: &Key, row: usize) -> Result<Option<String>> {
        match key {
            Key::None => Ok(None),
            Key::Constant(v) => Ok(Some(v.clone())),
            Key::Column { index, name } => {
                if !self.cell(views, *index, row)? {
                    return Err(Error::validation(
                        Reason::MissingKey,
                        format!(
                            "key column '{name}' is empty at row {}",
                            self.rows + row as u64 + 1
                        ),
                    )
                    .with_field(name.clone())
                    .with_detail("row", self.rows + row as u64 + 1));
                }
                Ok(Some(String::from_utf8_lossy(&self.scratch).into_owned()))
            }
        }
    }

    fn not_grouped(&self, key: &Key, row: usize) -> Error {
        let name = match key {
            Key::Column { name, .. } => name.clone(),
            _ => String::new(),
        };
        let n = self.rows + row as u64 + 1;
        Error::validation(
            Reason::NotGrouped,
            format!(
                "row {n} returns to a {} seen before: ODM needs the rows of each subject, event and form together \
                 (sort by subject, event and form)",
                if name.is_empty() { "key".to_string() } else { format!("'{name}' value") }
            ),
        )
        .with_field(name)
        .with_detail("row", n)
    }

    fn close_form(&mut self) {
        if self.open.form.take().is_some() {
            self.xml.end();
        }
    }

    fn close_event(&mut self) {
        self.close_form();
        if self.open.event.take().is_some() {
            self.xml.end();
            self.open.forms_seen.clear();
        }
    }

    fn close_subject(&mut self) {
        self.close_event();
        if self.open.subject.take().is_some() {
            self.xml.end();
            self.open.events_seen.clear();
        }
    }

    fn write_row(&mut self, views: &[ColumnView], row: usize) -> Result<()> {
        if let (Some(ci), Some(study)) = (self.study_from, self.study.take()) {
            let same = self.cell(views, ci, row)? && self.scratch == study.as_bytes();
            self.study = Some(study);
            if !same {
                let n = self.rows + row as u64 + 1;
                return Err(Error::validation(
                    Reason::MixedStudy,
                    format!(
                        "row {n} has another STUDYID than the first row: one ClinicalData holds one study \
                         (give study_oid= to keep STUDYID as an item)"
                    ),
                )
                .with_field("STUDYID")
                .with_detail("row", n));
            }
        }
        let subject = self
            .key(views, &self.subject.clone(), row)?
            .unwrap_or_default();
        let event = self
            .key(views, &self.event.clone(), row)?
            .unwrap_or_default();
        let event_repeat = self.key(views, &self.event_repeat.clone(), row)?;
        let form = self
            .key(views, &self.form.clone(), row)?
            .unwrap_or_default();
        let form_repeat = self.key(views, &self.form_repeat.clone(), row)?;
        let group_repeat = self.key(views, &self.group_repeat.clone(), row)?;
        let event_key = (event, event_repeat.clone().unwrap_or_default());
        let form_key = (form, form_repeat.clone().unwrap_or_default());

        if self.open.subject.as_deref() != Some(subject.as_str()) {
            self.close_subject();
            if !self.open.subjects_seen.insert(subject.clone()) {
                return Err(self.not_grouped(&self.subject, row));
            }
            self.xml.context = "SubjectKey".into();
            self.xml
                .start("SubjectData", &[("SubjectKey", Some(&subject))])?;
            self.open.subject = Some(subject);
        }
        if self.open.event.as_ref() != Some(&event_key) {
            self.close_event();
            if !self.open.events_seen.insert(event_key.clone()) {
                return Err(self.not_grouped(&self.event, row));
            }
            let oid = match &self.event {
                Key::Column { .. } => {
                    format!(
                        "{}{}",
                        self.opts.event_prefix.as_deref().unwrap_or("SE."),
                        event_key.0
                    )
                }
                _ => event_key.0.clone(),
            };
            self.xml.context = "StudyEventOID".into();
            self.xml.start(
                "StudyEventData",
                &[
                    ("StudyEventOID", Some(&oid)),
                    ("StudyEventRepeatKey", event_repeat.as_deref()),
                ],
            )?;
            self.open.event = Some(event_key);
        }
        if self.open.form.as_ref() != Some(&form_key) {
            self.close_form();
            if !self.open.forms_seen.insert(form_key.clone()) {
                return Err(self.not_grouped(&self.form, row));
            }
            let oid = match &self.form {
                Key::Column { .. } => format!(
                    "{}{}",
                    self.opts.form_prefix.as_deref().unwrap_or("F."),
                    form_key.0
                ),
                _ => form_key.0.clone(),
            };
            self.xml.context = "FormOID".into();
            self.xml.start(
                "FormData",
                &[
                    ("FormOID", Some(&oid)),
                    ("FormRepeatKey", form_repeat.as_deref()),
                ],
            )?;
            self.open.form = Some(form_key);
        }
        self.xml.context = "ItemGroupRepeatKey".into();
        self.xml.start(
            "ItemGroupData",
            &[
                ("ItemGroupOID", Some(&self.item_group_oid.clone())),
                ("ItemGroupRepeatKey", group_repeat.as_deref()),
            ],
        )?;
        for k in 0..self.items.len() {
            let ci = self.items[k].0;
            if !self.cell(views, ci, row)? {
                continue;
            }
            let value = std::mem::take(&mut self.scratch);
            let (_, oid, _) = &self.items[k];
            self.xml.context = self.schema.field(ci).name().clone();
            let text = std::str::from_utf8(&value).map_err(|_| {
                Error::server(Reason::InvalidText, "a value is not UTF-8")
                    .with_field(self.xml.context.clone())
            })?;
            self.xml
                .empty("ItemData", &[("ItemOID", Some(oid)), ("Value", Some(text))])?;
            self.scratch = value;
        }
        self.xml.end();
        Ok(())
    }

    fn flush(&mut self, force: bool) -> Result<()> {
        if force || self.xml.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.xml.buf)?;
            self.xml.buf.clear();
        }
        Ok(())
    }

    /// Writes the rows of one batch.
    ///
    /// # Errors
    /// EXP002 `not_grouped`, `missing_key`, `unrepresentable_value`, `invalid_xml_character`,
    /// `schema_mismatch`; EXP005 for I/O.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        cell::check_batch(&self.schema, batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let views = batch
            .columns()
            .iter()
            .map(ColumnView::new)
            .collect::<Result<Vec<_>>>()?;
        if !self.header_written {
            let study = match (self.opts.study_oid.clone(), self.study_from) {
                (Some(s), _) => s,
                (None, Some(ci)) if self.cell(&views, ci, 0)? => {
                    String::from_utf8_lossy(&self.scratch).into_owned()
                }
                _ => return Err(missing_study()),
            };
            self.header(&study)?;
            if self.study_from.is_some() {
                self.study = Some(study);
            }
        }
        for row in 0..batch.num_rows() {
            self.write_row(&views, row)?;
            if self.xml.buf.len() >= FLUSH_AT {
                self.flush(false)?;
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes every element, flushes, and reports the rows written.
    ///
    /// # Errors
    /// EXP002 `missing_option` when no row gave a study OID and none was given; EXP005 for I/O.
    pub fn finish(mut self) -> Result<EncodeSummary> {
        if !self.header_written {
            let study = self.opts.study_oid.clone().ok_or_else(missing_study)?;
            self.header(&study)?;
        }
        self.close_subject();
        while self.xml.depth() > 0 {
            self.xml.end();
        }
        self.xml.buf.push(b'\n');
        self.flush(true)?;
        self.out.flush()?;
        Ok(EncodeSummary::rows(self.rows))
    }
}

fn missing_study() -> Error {
    Error::validation(
        Reason::MissingOption,
        "no STUDYID value gives the StudyOID: give option study_oid=",
    )
    .with_field("options.study_oid")
}

impl Encoder for OdmWriter<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        OdmWriter::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        OdmWriter::finish(*self)
    }
}

fn unrepresentable(what: &str) -> Error {
    Error::validation(
        Reason::UnrepresentableValue,
        format!("a value cannot be written in ODM: {what}"),
    )
}

/// Appends the ODM text of a cell; `false` (nothing appended) when the cell is missing.
fn cell_text(
    view: &ColumnView,
    temporal: Option<SasTemporal>,
    row: usize,
    buf: &mut Vec<u8>,
) -> Result<bool> {
    if view.is_null(row) {
        return Ok(false);
    }
    match view.kind() {
        Kind::Null => Ok(false),
        Kind::Text => {
            let t = view.text(row);
            buf.extend_from_slice(t.as_bytes());
            Ok(!t.is_empty())
        }
        Kind::Number if temporal.is_some() || view.is_non_finite(row) => {
            let start = buf.len();
            if !view.write_raw(row, buf, &Temporal::default())? {
                return match view.non_finite_text(row) {
                    "NaN" => Ok(false),
                    _ => Err(unrepresentable("an infinity")),
                };
            }
            let text = std::str::from_utf8(&buf[start..])
                .unwrap_or_default()
                .to_string();
            buf.truncate(start);
            let v: f64 = text
                .parse()
                .map_err(|_| unrepresentable("a number out of range"))?;
            match temporal {
                Some(t) => sas_iso(v, t, buf)?,
                None => push_plain(buf, v),
            }
            Ok(true)
        }
        Kind::Number => {
            let start = buf.len();
            view.write_raw(row, buf, &Temporal::default())?;
            // Floats: plain decimals, never an exponent.
            if buf[start..].iter().any(|b| *b == b'e' || *b == b'E') {
                let v: f64 = std::str::from_utf8(&buf[start..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| unrepresentable("a number out of range"))?;
                buf.truncate(start);
                push_plain(buf, v);
            } else if buf[start..].ends_with(b".0") {
                buf.truncate(buf.len() - 2);
            }
            Ok(true)
        }
        Kind::Bool | Kind::Temporal => {
            view.write_raw(row, buf, &Temporal::default())?;
            Ok(true)
        }
    }
}

/// The shortest round-trip digits of `v` as a plain decimal (`{}` of f64 never uses an exponent).
fn push_plain(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(format!("{v}").as_bytes());
}

/// A SAS date (days since 1960-01-01), datetime (seconds since then) or time (seconds since midnight) as ISO 8601.
fn sas_iso(v: f64, t: SasTemporal, buf: &mut Vec<u8>) -> Result<()> {
    let epoch = NaiveDate::from_ymd_opt(1960, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| unrepresentable("the SAS epoch"))?;
    let text = match t {
        SasTemporal::Date => {
            if v.fract() != 0.0 || v.abs() > 1e8 {
                return Err(unrepresentable("a SAS date that is not a whole day"));
            }
            let d = epoch.date() + chrono::Duration::days(v as i64);
            d.format("%Y-%m-%d").to_string()
        }
        SasTemporal::Datetime | SasTemporal::Time => {
            if v.abs() > 1e13 || (t == SasTemporal::Time && !(0.0..86_400.0).contains(&v)) {
                return Err(unrepresentable("a SAS datetime or time out of range"));
            }
            let millis = (v * 1000.0).round() as i64;
            let dt = epoch + chrono::Duration::milliseconds(millis);
            let fmt = match (t, millis % 1000 != 0) {
                (SasTemporal::Time, false) => "%H:%M:%S",
                (SasTemporal::Time, true) => "%H:%M:%S%.3f",
                (_, false) => "%Y-%m-%dT%H:%M:%S",
                (_, true) => "%Y-%m-%dT%H:%M:%S%.3f",
            };
            dt.format(fmt).to_string()
        }
    };
    buf.extend_from_slice(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn iso(v: f64, t: SasTemporal) -> String {
        let mut b = Vec::new();
        sas_iso(v, t, &mut b).unwrap();
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn sas_numbers_become_iso_8601() {
        assert_eq!(iso(0.0, SasTemporal::Date), "1960-01-01");
        assert_eq!(iso(-1.0, SasTemporal::Date), "1959-12-31");
        assert_eq!(iso(19_000.0, SasTemporal::Date), "2012-01-08");
        assert_eq!(
            iso(86_400.5, SasTemporal::Datetime),
            "1960-01-02T00:00:00.500"
        );
        assert_eq!(iso(3_661.0, SasTemporal::Time), "01:01:01");
        let mut b = Vec::new();
        assert!(sas_iso(1.5, SasTemporal::Date, &mut b).is_err());
        assert!(sas_iso(90_000.0, SasTemporal::Time, &mut b).is_err());
    }
}
