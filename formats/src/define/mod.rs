//! CDISC Define-XML 2.1 (`define-xml`): the document that describes the datasets of a submission, generated from
//! their metadata, and [`cross_check`] of a define against the files it describes.
//!
//! [`DefineXmlFormat`] implements [`Format::describe`] (one document for several datasets: the engine and the eCTD
//! package use it) and, for `convert`, a metadata-only [`Format::encoder`] that describes one dataset and measures
//! its text columns from the rows it is given.
//!
//! # The document
//!
//! An ODM 1.3.2 root in the ODM namespace with the `def` (Define-XML 2.1) and `xlink` namespaces,
//! `FileType="Snapshot"`, `def:Context` (`Submission` by default), `CreationDateTime` from the engine clock
//! ([`StudyInfo::created`], in UTC), then `Study` / `GlobalVariables` / `MetaDataVersion`
//! (`def:DefineVersion="2.1.0"`) with its children in the order the schema requires: `def:Standards`,
//! `ItemGroupDef` per dataset, `ItemDef` per column, `CodeList`, `MethodDef`, `def:CommentDef` (the document
//! has no annotated CRF, supplemental documents or value-level metadata). Every value is escaped by one function;
//! a control character XML cannot carry is EXP002 `invalid_xml_character`. The same input gives the same bytes.
//!
//! Per dataset: `ItemGroupDef` with `OID` (`itemGroupOID`, else `IG.<NAME>`), `Name`, `Domain` (SDTM only),
//! `Repeating`, `IsReferenceData`, `SASDatasetName` (when a SAS V5 name), `def:Structure`, `Purpose`
//! (`Tabulation` for SDTM, `Analysis` for ADaM), `def:StandardOID`, `def:HasNoData` (when the file has no rows),
//! `def:CommentOID`, `def:ArchiveLocationID`; children `Description`, `ItemRef` per column (`OrderNumber` = the
//! column's position, `Mandatory`, `KeySequence`, `MethodOID`, `Role`), `def:Class` and `def:leaf` to the file.
//! Per column: `ItemDef` with `OID` (`itemOID`, else `IT.<NAME>.<COLUMN>`), `Name`, `DataType`, `Length`,
//! `SignificantDigits`, `SASFieldName`, `def:DisplayFormat`, `def:CommentOID`; children `Description`,
//! `CodeListRef`, `def:Origin`. An item OID shared by several datasets is written once when the definitions
//! agree (a conflict is reported).
//!
//! # Where each value comes from, and the fallbacks
//!
//! The metadata ([`DatasetMeta`]) is the source; nothing a reviewer would take as a fact about the study is made
//! up. Where the metadata is silent:
//!
//! | value | fallback |
//! |---|---|
//! | ADaM or SDTM | ADaM when the `class` is an ADaM class or, without a class, the name starts with `AD` |
//! | `Description` of a dataset or column | its name |
//! | standard dataset | the name, or for a split dataset (`AE1`, formats.md §3.1) the name without its digits when only that is a standard domain |
//! | `Domain` (SDTM) | `domain`, else the standard dataset without a `SUPP` prefix |
//! | `def:Class` | `class`, else the SDTMIG class of a standard domain (`SUPP--`, `REL---`: RELATIONSHIP), else `SUBJECT LEVEL ANALYSIS DATASET` for ADSL; otherwise **missing** |
//! | `IsReferenceData` | `isReferenceData`, else `Yes` exactly when the dataset has no `USUBJID` column |
//! | `Repeating` | `repeating`, else `No` for reference data or a structure of "One record per subject", else `No` when every key variable (`keySequence`) is STUDYID, USUBJID or SUBJID and `Yes` when another is, else what the SDTMIG/ADaMIG structure below implies; otherwise **missing** |
//! | `def:Structure` | `structure`, else the SDTMIG's structure of a standard dataset (DM, CO, SE, TA, TE, TI, TS, TV, AE, DS, MH, IE, LB, VS, RELREC, SUPP--) or ADSL's, else "One record per " and the key variables in key order; otherwise **missing** |
//! | `DataType` | see below |
//! | `Length` of `text` | `length`, else (encoder path only) the longest value in bytes in the rows; otherwise **missing** |
//! | `Length` of `integer`/`float` | `length` (digits), else the XPT storage length in bytes (`trialport.xpt.length`, default 8) |
//! | `Length` of dates, times and other ISO 8601 types | none (as the CDISC examples) |
//! | `SignificantDigits` (`float`) | the decimals of a `w.d` display format, when not 0; else none |
//! | `Mandatory` | `mandatory`, else `Yes` for key variables and `No` for the others |
//! | `def:Origin` | `origin` (`Collected`, `Derived`, `Assigned`, `Protocol`, `Predecessor`, `Not Available`, optionally `/Source`); else none |
//! | `MethodDef` | one per column with a `method` (`MT.<NAME>.<COLUMN>`, type Computation) |
//! | `def:CommentDef` | one per dataset or column with a `comment` (`COM.<NAME>[.<COLUMN>]`) |
//! | `CodeList` | the entry of the datasets' `codelists` named by a column's `codelist`; a reference to none is **missing** |
//! | standard versions | options `sdtmig_version` (default 3.4) and `adamig_version` (default 1.3): check them |
//!
//! `DataType`: a `targetDataType` (`integer`, `decimal`) is the stored type; a `dataType` of `date`, `datetime` or
//! `time` on a number (a SAS date in XPT) is `integer`, with its display format; other `dataType`s map
//! `string` to `text`, `decimal`/`double` to `float`, `boolean` to `integer`, and Define-XML names to themselves.
//! Without either: strings are `text`, integers `integer`, floats `float` (`integer` when the display format is a
//! SAS date, time or datetime format), Arrow dates, timestamps and times `date`, `datetime`, `time` (`integer` in
//! an XPT file, which stores them as SAS numbers).
//!
//! Anything **missing** or invalid stops the document: EXP002 `invalid_metadata` whose `details.problems` lists
//! every problem at once (`dataset`, `column`, `attribute`, `rule`: `missing`, `invalid` or `conflict`). The
//! metadata document (`--meta`, `<DATASET>.meta.json`) supplies what is missing.

mod check;
mod types;
mod write;
pub(crate) mod xml;

pub use check::{cross_check, findings, Finding};
pub use write::{DEFINE_VERSION, NS_DEF, NS_ODM, NS_XLINK};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::collections::HashMap;
use trialport_core::error::Reason;
use trialport_core::format::{
    Capability, Described, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, OptionInfo,
    Output, StudyInfo,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

pub(crate) use types::{sas_temporal, SasTemporal};

/// CDISC Define-XML 2.1, id `define-xml`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefineXmlFormat;

fn option_infos() -> Vec<OptionInfo> {
    vec![
        OptionInfo::one_of(
            "context",
            "Submission",
            "def:Context: Submission (for a regulator) or Other",
            &["Submission", "Other"],
        ),
        OptionInfo::new(
            "sdtmig_version",
            "3.4",
            "SDTMIG version of the SDTM datasets (def:Standard)",
        ),
        OptionInfo::new(
            "adamig_version",
            "1.3",
            "ADaMIG version of the ADaM datasets (def:Standard)",
        ),
        OptionInfo::new(
            "ct_version",
            "none",
            "CDISC Controlled Terminology version, e.g. 2024-03-29: adds CT def:Standard entries",
        ),
        OptionInfo::new(
            "study",
            "the study of the export",
            "study id (StudyName, OIDs)",
        ),
        OptionInfo::new(
            "created",
            "the engine clock; 1970-01-01T00:00:00Z in convert",
            "CreationDateTime: RFC 3339, or YYYY-MM-DDTHH:MM:SS taken as UTC",
        ),
        OptionInfo::new(
            "file",
            "<dataset>.xpt",
            "convert only: the file the dataset is in (def:leaf xlink:href)",
        ),
        OptionInfo::new("study_oid", "the study id", "Study OID"),
        OptionInfo::new("file_oid", "<study_oid>.Define-XML_2.1.0", "FileOID"),
        OptionInfo::new("study_name", "the study id", "GlobalVariables/StudyName"),
        OptionInfo::new(
            "study_description",
            "the study id",
            "GlobalVariables/StudyDescription",
        ),
        OptionInfo::new(
            "protocol_name",
            "the study id",
            "GlobalVariables/ProtocolName",
        ),
        OptionInfo::new("mdv_oid", "MDV.<study_oid>", "MetaDataVersion OID"),
        OptionInfo::new(
            "mdv_name",
            "Data definitions for <study>",
            "MetaDataVersion Name",
        ),
        OptionInfo::new("mdv_description", "none", "MetaDataVersion Description"),
        OptionInfo::new(
            "originator",
            "none",
            "ODM Originator (the sponsor or vendor)",
        ),
        OptionInfo::new("source_system", "trialport", "ODM SourceSystem"),
        OptionInfo::new(
            "source_system_version",
            "this trialport's version",
            "ODM SourceSystemVersion",
        ),
        OptionInfo::new(
            "stylesheet",
            "define2-1.xsl",
            "href of the xml-stylesheet processing instruction; empty for none",
        ),
        OptionInfo::new("language", "en", "xml:lang of descriptions"),
    ]
}

/// The typed options of `define-xml`.
#[derive(Debug, Clone, PartialEq)]
pub struct DefineOptions {
    /// `def:Context`. Defaults to `Submission`.
    pub context: String,
    /// SDTMIG version. Defaults to `3.4`.
    pub sdtmig_version: String,
    /// ADaMIG version. Defaults to `1.3`.
    pub adamig_version: String,
    /// Controlled Terminology version. Defaults to `None`: no CT standard is listed.
    pub ct_version: Option<String>,
    /// Study id over [`StudyInfo::study`]. Defaults to `None`.
    pub study: Option<String>,
    /// Creation time over [`StudyInfo::created`]. Defaults to `None`.
    pub created: Option<DateTime<Utc>>,
    /// The file of the dataset (encoder path). Defaults to `None`: `<dataset>.xpt`.
    pub file: Option<String>,
    /// Study OID. Defaults to `None`: the study id.
    pub study_oid: Option<String>,
    /// FileOID. Defaults to `None`: `<study_oid>.Define-XML_2.1.0`.
    pub file_oid: Option<String>,
    /// StudyName. Defaults to `None`: the study id.
    pub study_name: Option<String>,
    /// StudyDescription. Defaults to `None`: the study id.
    pub study_description: Option<String>,
    /// ProtocolName. Defaults to `None`: the study id.
    pub protocol_name: Option<String>,
    /// MetaDataVersion OID. Defaults to `None`: `MDV.<study_oid>`.
    pub mdv_oid: Option<String>,
    /// MetaDataVersion Name. Defaults to `None`: `Data definitions for <study>`.
    pub mdv_name: Option<String>,
    /// MetaDataVersion Description. Defaults to `None`: not written.
    pub mdv_description: Option<String>,
    /// Originator. Defaults to `None`: not written.
    pub originator: Option<String>,
    /// SourceSystem. Defaults to `trialport`.
    pub source_system: String,
    /// SourceSystemVersion. Defaults to this crate's version.
    pub source_system_version: String,
    /// Stylesheet href. Defaults to `define2-1.xsl`; empty writes no processing instruction.
    pub stylesheet: String,
    /// `xml:lang` of descriptions. Defaults to `en`.
    pub language: String,
}

impl Default for DefineOptions {
    fn default() -> Self {
        DefineOptions {
            context: "Submission".into(),
            sdtmig_version: "3.4".into(),
            adamig_version: "1.3".into(),
            ct_version: None,
            study: None,
            created: None,
            file: None,
            study_oid: None,
            file_oid: None,
            study_name: None,
            study_description: None,
            protocol_name: None,
            mdv_oid: None,
            mdv_name: None,
            mdv_description: None,
            originator: None,
            source_system: "trialport".into(),
            source_system_version: env!("CARGO_PKG_VERSION").into(),
            stylesheet: "define2-1.xsl".into(),
            language: "en".into(),
        }
    }
}

/// Parses `created`-style options: RFC 3339, or `YYYY-MM-DDTHH:MM:SS` taken as UTC.
pub(crate) fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(v.trim(), "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc())
        })
        .map_err(|_| {
            Error::validation(
                Reason::InvalidOption,
                format!("option '{name}' must be an RFC 3339 time or YYYY-MM-DDTHH:MM:SS"),
            )
            .with_field(format!("options.{name}"))
        })
}

impl DefineOptions {
    /// Parses the string options: the one place they are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn from_format_options(options: &FormatOptions) -> Result<Self> {
        options.check_known("define-xml", &option_infos())?;
        let d = DefineOptions::default();
        let text = |name: &str| options.get(name).map(str::to_string);
        let nonempty = |name: &str, default: String| -> Result<String> {
            match options.get(name) {
                None => Ok(default),
                Some(v) if !v.trim().is_empty() => Ok(v.to_string()),
                Some(_) => Err(Error::validation(
                    Reason::InvalidOption,
                    format!("option '{name}' must not be empty"),
                )
                .with_field(format!("options.{name}"))),
            }
        };
        Ok(DefineOptions {
            context: options.string("context", &d.context),
            sdtmig_version: nonempty("sdtmig_version", d.sdtmig_version)?,
            adamig_version: nonempty("adamig_version", d.adamig_version)?,
            ct_version: text("ct_version"),
            study: text("study"),
            created: options
                .get("created")
                .map(|v| parse_time("created", v))
                .transpose()?,
            file: text("file"),
            study_oid: text("study_oid"),
            file_oid: text("file_oid"),
            study_name: text("study_name"),
            study_description: text("study_description"),
            protocol_name: text("protocol_name"),
            mdv_oid: text("mdv_oid"),
            mdv_name: text("mdv_name"),
            mdv_description: text("mdv_description"),
            originator: text("originator"),
            source_system: options.string("source_system", &d.source_system),
            source_system_version: options
                .string("source_system_version", &d.source_system_version),
            stylesheet: options.string("stylesheet", &d.stylesheet),
            language: nonempty("language", d.language)?,
        })
    }
}

/// Writes the Define-XML 2.1 document describing `datasets` to `out` with typed options.
///
/// # Errors
/// As [`Format::describe`] of [`DefineXmlFormat`]; EXP005 for I/O.
pub fn write_define(
    study: &StudyInfo<'_>,
    datasets: &[Described<'_>],
    options: &DefineOptions,
    out: Output<'_>,
) -> Result<()> {
    let doc = write::document(study, datasets, options, &[])?;
    out.write_all(&doc)?;
    out.flush()?;
    Ok(())
}

impl Format for DefineXmlFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "define-xml",
            name: "CDISC Define-XML 2.1",
            extension: "xml",
            media_type: "application/xml",
            capabilities: vec![Capability::Describe, Capability::MetadataOnly],
            options: option_infos(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        DefineOptions::from_format_options(options).map(|_| ())
    }

    fn describe(
        &self,
        study: &StudyInfo<'_>,
        datasets: &[Described<'_>],
        options: &FormatOptions,
        out: Output<'_>,
    ) -> Result<()> {
        let opts = DefineOptions::from_format_options(options)?;
        if opts.file.is_some() {
            return Err(Error::validation(
                Reason::InvalidOption,
                "option 'file' applies to one dataset in convert; a description names each dataset's file",
            )
            .with_field("options.file"));
        }
        write_define(study, datasets, &opts, out)
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let opts = DefineOptions::from_format_options(options)?;
        if meta.name.is_empty() {
            return Err(
                Error::validation(Reason::MissingDatasetName, "the dataset has no name")
                    .with_field("dataset"),
            );
        }
        Ok(Box::new(DefineEncoder {
            schema: schema.clone(),
            meta: meta.clone(),
            opts,
            out,
            rows: 0,
            longest: HashMap::new(),
            studyid: None,
        }))
    }
}

/// The metadata-only encoder of `convert`: reads the rows for the longest text values, the row count and the
/// study id (`STUDYID`), then writes the define of this one dataset.
struct DefineEncoder<'a> {
    schema: SchemaRef,
    meta: DatasetMeta,
    opts: DefineOptions,
    out: Output<'a>,
    rows: u64,
    longest: HashMap<String, u32>,
    studyid: Option<String>,
}

impl Encoder for DefineEncoder<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        for (f, col) in self.schema.fields().iter().zip(batch.columns()) {
            let col = match f.data_type() {
                DataType::Utf8 => col.clone(),
                DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
                    match arrow::compute::cast(col, &DataType::Utf8) {
                        Ok(c) => c,
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            let Some(s) = col.as_string_opt::<i32>() else {
                continue;
            };
            let longest = s.iter().flatten().map(str::len).max().unwrap_or(0);
            let e = self.longest.entry(f.name().clone()).or_insert(0);
            *e = (*e).max(u32::try_from(longest).unwrap_or(u32::MAX));
            if self.studyid.is_none() && f.name() == "STUDYID" {
                self.studyid = s
                    .iter()
                    .flatten()
                    .find(|v| !v.is_empty())
                    .map(str::to_string);
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        let this = *self;
        let study = match this.opts.study.clone().or(this.studyid) {
            Some(s) => s,
            None => {
                return Err(Error::validation(
                    Reason::MissingOption,
                    "the dataset has no STUDYID value: give the study id as option study=",
                )
                .with_field("options.study"))
            }
        };
        let file = this
            .opts
            .file
            .clone()
            .unwrap_or_else(|| format!("{}.xpt", this.meta.name.to_ascii_lowercase()));
        // Measured lengths are at least 1, as XPT stores them.
        let measured: HashMap<String, u32> = this
            .longest
            .into_iter()
            .map(|(k, v)| (k, v.max(1)))
            .collect();
        let info = StudyInfo {
            study: &study,
            created: this.opts.created.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        };
        let described = [Described {
            schema: &this.schema,
            meta: &this.meta,
            file: &file,
            rows: Some(this.rows),
        }];
        let doc = write::document(&info, &described, &this.opts, &[measured])?;
        this.out.write_all(&doc)?;
        this.out.flush()?;
        Ok(EncodeSummary::rows(this.rows))
    }
}
