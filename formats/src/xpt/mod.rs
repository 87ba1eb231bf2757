//! SAS XPORT transport files (`xpt`): version 5 (the FDA format, the default) and version 8, written and read.
//!
//! The byte layout follows SAS's TS-140 as pinned down in `specs/formats.md` §1-2: 80-byte records padded with
//! blanks, header literals, 140-byte NAMESTRs, observations streamed across records, numerics as IBM doubles
//! ([`ibm`]). Reading a file SAS wrote and writing it back with the same metadata and header options
//! ([`reproduce_options`]) gives the same bytes; the conformance tests check this on 13 SAS files.
//!
//! # Writing
//!
//! | Arrow type | XPT variable |
//! |---|---|
//! | `Utf8`, `LargeUtf8`, `Utf8View`, dictionaries of those | character, blank-padded; null and `""` are both blank |
//! | `Float64`, `Float32`, `Float16`, `Int8`-`Int32`, `UInt8`-`UInt32` | numeric (exact) |
//! | `Int64`, `UInt64` | numeric; a magnitude above 2^53 is EXP002 `unrepresentable_value` (it would lose digits) |
//! | `Boolean` | numeric 1/0 |
//! | `Date32`, `Date64` (whole days) | numeric SAS date (days since 1960-01-01), display format `DATE9.` by default |
//! | `Timestamp` | numeric SAS datetime (seconds since 1960-01-01T00:00:00; time-zone aware columns in UTC), `DATETIME20.` |
//! | `Time32`, `Time64` | numeric SAS time (seconds since midnight), `TIME8.` |
//! | `Null` | numeric, all missing |
//!
//! Other types (decimals, binary, lists, structs) are EXP002 `unsupported_type`. Null and NaN are the missing value
//! `.`; a NaN made by [`ibm::special_missing`] is `.A`-`.Z` or `._`; ±infinity and magnitudes of 2^252 or more are
//! EXP002 `unrepresentable_value`; magnitudes below 16^-65 are written as 0 (as SAS does).
//!
//! Metadata used ([`DatasetMeta`] and the `trialport.xpt.*` keys below): the dataset name (option `dataset` wins)
//! and label; per column the label, the character `length`, the `display_format` (e.g. `DATE9.`, `$20.`, `8.2`),
//! and from the keys [`KEY_INFORMAT`], [`KEY_NUMERIC_LENGTH`], [`KEY_JUSTIFY`], [`KEY_DATASET_TYPE`]. A column's
//! `length` is the character length only: for numerics, Define-XML's `Length` counts digits, not bytes, so a
//! numeric length comes from [`KEY_NUMERIC_LENGTH`] alone (default 8); a shorter numeric must hold each value
//! exactly (trailing bytes zero) or the value is EXP002 `unrepresentable_value`.
//!
//! **Character lengths and streaming.** The header, written before the rows, holds every character length. A
//! column whose metadata gives a `length` is written straight through. When some character column has none, the
//! writer measures: it keeps the batches (in memory up to 64 MiB, beyond that in an unnamed Arrow IPC spool file
//! in the spool folder, see [`crate::spool`]), tracks each column's longest value, and writes header and rows
//! in `finish` with the longest value's length (at least 1). Memory stays bounded either way.
//!
//! **Checks before a byte is written** ([`checks`]): names, labels, lengths and formats when the encoder is
//! created; every character value of a batch (length, ASCII or the chosen encoding) before that batch is encoded.
//! All violations found are reported together as EXP002 `fda_check_failed` with `details.violations`.
//!
//! **Header fields.** SAS writes the current local time and its own version and host; for reproducible files the
//! writer takes them as options, with fixed defaults: `created` = `1960-01-01T00:00:00` (the SAS epoch, meaning
//! "not given"), `modified` = `created`, `sas_version` = `9.4`, `os` = `TRIALPRT`.
//!
//! Known limit of the format: when observations are shorter than 80 bytes, trailing observations that are entirely
//! blank (possible only with character variables) are indistinguishable from the record padding, and readers drop
//! them (formats.md §1.6).
//!
//! # Reading
//!
//! [`read_xpt`] and [`read_xpt_from`] read v5 and v8 files ([`decode`]): numerics become `Float64`, except those
//! whose display format is a SAS date, datetime or time format (`DATE9.`, `YYMMDD10.`, `E8601DA.`, `DATETIME20.`,
//! `E8601DT19.`, `TIME8.`, ...), which become `Date32`, `Timestamp(Microsecond, None)` and `Time64(Microsecond)`
//! (the inverse of the writer's mapping above; [`XptDates::Number`], the read option `xpt_dates=number`, keeps the
//! SAS numbers); the display format stays in the metadata, so that writing them back is byte-exact. Character
//! variables are `Utf8` with trailing blanks removed. A damaged file is refused, never read short or with invented
//! rows: a length that is not whole 80-byte records, an observation cut short, NUL padding (EXP002
//! `truncated_file`, `invalid_padding`; see [`decode`]).

pub mod checks;
pub mod decode;
pub mod encode;
pub mod header;
pub mod ibm;
pub mod text;

pub use decode::{
    read_xpt, read_xpt_from, read_xpt_members, XptDates, XptMemberInfo, XptReadOptions,
};
pub use encode::XptWriter;
pub use header::{SasFormat, XptVersion};
pub use text::{ReadEncoding, XptEncoding};

use arrow::datatypes::{Schema, SchemaRef};
use chrono::{NaiveDate, NaiveDateTime};
use trialport_core::error::Reason;
use trialport_core::format::{
    Capability, Encoder, Format, FormatInfo, FormatOptions, OptionInfo, Output,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};

/// Schema metadata: the transport version a file was read from (`5` or `8`).
pub const KEY_VERSION: &str = "trialport.xpt.version";
/// Schema metadata: the member's created timestamp as read (`YYYY-MM-DDTHH:MM:SS`, local time without zone).
pub const KEY_CREATED: &str = "trialport.xpt.created";
/// Schema metadata: the member's modified timestamp as read.
pub const KEY_MODIFIED: &str = "trialport.xpt.modified";
/// Schema metadata: the SAS version field of the header, e.g. `9.4`.
pub const KEY_SAS_VERSION: &str = "trialport.xpt.sas_version";
/// Schema metadata: the operating system field of the header, trailing blanks removed and NULs kept (SAS on Linux
/// writes `Linux` padded with NULs).
pub const KEY_OS: &str = "trialport.xpt.os";
/// Schema metadata: the dataset type field (SAS writes blanks; absent then). Used by the writer.
pub const KEY_DATASET_TYPE: &str = "trialport.xpt.dataset_type";
/// Field metadata: the informat, e.g. `DATE9.` (absent when blank). Used by the writer.
pub const KEY_INFORMAT: &str = "trialport.xpt.informat";
/// Field metadata: the byte length of a numeric variable, 2-8 (absent for 8). Used by the writer.
pub const KEY_NUMERIC_LENGTH: &str = "trialport.xpt.length";
/// Field metadata: the NAMESTR justification, `1` for right (absent for 0, what SAS writes). Used by the writer.
pub const KEY_JUSTIFY: &str = "trialport.xpt.justify";

/// The SAS XPORT format, id `xpt`: writes v5 (default) or v8, reads both.
#[derive(Debug, Clone, Copy, Default)]
pub struct XptFormat;

fn option_infos() -> Vec<OptionInfo> {
    vec![
        OptionInfo::one_of(
            "version",
            "5",
            "transport version: 5 (SAS V5, required by FDA and PMDA) or 8 (long names and labels; not FDA)",
            &["5", "8"],
        ),
        OptionInfo::new(
            "created",
            "1960-01-01T00:00:00",
            "header created timestamp: YYYY-MM-DDTHH:MM:SS (as given), RFC 3339 with an offset (converted to \
             UTC) or SAS ddMMMyy:hh:mm:ss; years 1960-2059; seconds precision",
        ),
        OptionInfo::new(
            "modified",
            "the created value",
            "header modified timestamp, in the forms of `created`",
        ),
        OptionInfo::one_of(
            "encoding",
            "ascii",
            "text encoding: ascii (FDA: any other character is a violation), latin1, windows-1252 or utf8",
            &["ascii", "latin1", "windows-1252", "utf8"],
        ),
        OptionInfo::new(
            "dataset",
            "the dataset name of the metadata",
            "member name, e.g. DM (v5: 1-8 uppercase letters, digits or _, starting with a letter)",
        ),
        OptionInfo::new(
            "sas_version",
            "9.4",
            "SAS version field of the header (up to 8 ASCII characters)",
        ),
        OptionInfo::new(
            "os",
            "TRIALPRT",
            "operating system field of the header (up to 8 ASCII characters)",
        ),
    ]
}

/// The typed options of `xpt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XptOptions {
    /// Transport version. Defaults to [`XptVersion::V5`].
    pub version: XptVersion,
    /// Header created timestamp. Defaults to 1960-01-01T00:00:00.
    pub created: NaiveDateTime,
    /// Header modified timestamp. Defaults to `None`: the created timestamp.
    pub modified: Option<NaiveDateTime>,
    /// Text encoding. Defaults to [`XptEncoding::Ascii`].
    pub encoding: XptEncoding,
    /// Member name. Defaults to `None`: the dataset name of the metadata.
    pub dataset: Option<String>,
    /// SAS version field. Defaults to `9.4`.
    pub sas_version: String,
    /// Operating system field. Defaults to `TRIALPRT`.
    pub os: String,
}

impl Default for XptOptions {
    fn default() -> Self {
        XptOptions {
            version: XptVersion::V5,
            created: sas_epoch(),
            modified: None,
            encoding: XptEncoding::Ascii,
            dataset: None,
            sas_version: "9.4".into(),
            os: "TRIALPRT".into(),
        }
    }
}

fn sas_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1960, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn invalid_option(name: &str, message: &str) -> Error {
    Error::validation(Reason::InvalidOption, message).with_field(format!("options.{name}"))
}

impl XptOptions {
    /// Parses the string options: the one place they are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option` with field `options.<name>`.
    pub fn from_format_options(options: &FormatOptions) -> Result<Self> {
        options.check_known("xpt", &option_infos())?;
        let d = XptOptions::default();
        let version = match options.get("version") {
            Some("8") => XptVersion::V8,
            _ => XptVersion::V5,
        };
        let created = match options.get("created") {
            Some(v) => parse_option_time("created", v)?,
            None => d.created,
        };
        let modified = options
            .get("modified")
            .map(|v| parse_option_time("modified", v))
            .transpose()?;
        let encoding = options
            .get("encoding")
            .and_then(XptEncoding::parse)
            .unwrap_or_default();
        let field = |name: &str, default: &str| -> Result<String> {
            let v = options.string(name, default);
            if v.len() > 8 || !v.is_ascii() {
                return Err(invalid_option(
                    name,
                    &format!("option '{name}' must be at most 8 ASCII characters"),
                ));
            }
            Ok(v)
        };
        Ok(XptOptions {
            version,
            created,
            modified,
            encoding,
            dataset: options.get("dataset").map(str::to_string),
            sas_version: field("sas_version", &d.sas_version)?,
            os: field("os", &d.os)?,
        })
    }
}

/// Parses a timestamp option: `YYYY-MM-DDTHH:MM:SS[.f]` (taken as is), RFC 3339 with `Z` or an offset (converted
/// to UTC), or SAS `ddMMMyy:hh:mm:ss`; fractions of a second are dropped; the year must be 1960-2059.
fn parse_option_time(name: &str, v: &str) -> Result<NaiveDateTime> {
    let v = v.trim();
    let t = chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.naive_utc())
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .or_else(|| NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").ok())
        .or_else(|| header::parse_timestamp(v.as_bytes()))
        .ok_or_else(|| {
            invalid_option(
                name,
                &format!(
                    "option '{name}' must be YYYY-MM-DDTHH:MM:SS, RFC 3339 or ddMMMyy:hh:mm:ss"
                ),
            )
        })?;
    use chrono::{Datelike, Timelike};
    if !(header::YEAR_PIVOT..header::YEAR_PIVOT + 100).contains(&t.year()) {
        return Err(invalid_option(
            name,
            &format!(
                "option '{name}' must be in the years 1960-2059 (the header has a two-digit year)"
            ),
        ));
    }
    Ok(t.with_nanosecond(0).unwrap_or(t))
}

/// The options that reproduce the header of the XPT file `schema` was read from ([`read_xpt`] stores it under
/// the `trialport.xpt.*` keys): `version`, `created`, `modified`, `sas_version` and `os`. Text encoding is not
/// recorded in a file; add `encoding` when its text is not ASCII.
pub fn reproduce_options(schema: &Schema) -> FormatOptions {
    let md = schema.metadata();
    let mut o = FormatOptions::new();
    for (key, option) in [
        (KEY_VERSION, "version"),
        (KEY_CREATED, "created"),
        (KEY_MODIFIED, "modified"),
        (KEY_SAS_VERSION, "sas_version"),
        (KEY_OS, "os"),
    ] {
        if let Some(v) = md.get(key) {
            o = o.with(option, v);
        }
    }
    o
}

impl Format for XptFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "xpt",
            name: "SAS XPORT transport file (v5, FDA; v8)",
            extension: "xpt",
            media_type: "application/x-sas-xport",
            capabilities: vec![Capability::Data, Capability::Streaming, Capability::Read],
            options: option_infos(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        XptOptions::from_format_options(options).map(|_| ())
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        let options = XptOptions::from_format_options(options)?;
        Ok(Box::new(XptWriter::try_new(out, schema, meta, options)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_with_documented_defaults() {
        let d = XptOptions::from_format_options(&FormatOptions::new()).unwrap();
        assert_eq!(d, XptOptions::default());
        assert_eq!(d.created.to_string(), "1960-01-01 00:00:00");
        let o = XptOptions::from_format_options(
            &FormatOptions::new()
                .with("version", "8")
                .with("created", "2020-08-21T11:14:29+02:00")
                .with("modified", "21AUG20:09:14:30")
                .with("encoding", "windows-1252")
                .with("dataset", "DM")
                .with("os", "Linux\0\0\0"),
        )
        .unwrap();
        assert_eq!(o.version, XptVersion::V8);
        assert_eq!(o.created.to_string(), "2020-08-21 09:14:29");
        assert_eq!(o.modified.unwrap().to_string(), "2020-08-21 09:14:30");
        assert_eq!(o.encoding, XptEncoding::Windows1252);
        assert_eq!(o.os, "Linux\0\0\0");
        for (k, v) in [
            ("version", "6"),
            ("created", "yesterday"),
            ("created", "1959-12-31T23:59:59"),
            ("encoding", "ebcdic"),
            ("os", "MUCH TOO LONG"),
            ("colour", "red"),
        ] {
            let e = XptFormat
                .check_options(&FormatOptions::new().with(k, v))
                .unwrap_err();
            assert_eq!(e.code(), trialport_core::ErrorCode::Validation, "{k}");
        }
    }

    #[test]
    fn info_lists_every_option() {
        let info = XptFormat.info();
        assert_eq!(info.id, "xpt");
        assert_eq!(info.extension, "xpt");
        let names: Vec<_> = info.options.iter().map(|o| o.name).collect();
        assert_eq!(
            names,
            [
                "version",
                "created",
                "modified",
                "encoding",
                "dataset",
                "sas_version",
                "os"
            ]
        );
    }
}
