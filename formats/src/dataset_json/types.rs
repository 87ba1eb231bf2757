//! Dataset-JSON column types (`dataType`, `targetDataType`) and how each Arrow column maps to them (formats.md
//! §4.3), for the writer; the reader's mapping back to Arrow is [`ColumnType::arrow_type`].

use arrow::datatypes::{DataType as Arrow, TimeUnit};
use trialport_core::error::Reason;
use trialport_core::meta::ColumnMeta;
use trialport_core::{Error, Result};

/// A column's logical `dataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `string`: JSON string.
    String,
    /// `integer`: JSON integer.
    Integer,
    /// `decimal`: exact decimal carried as a JSON string (`targetDataType` `decimal`).
    Decimal,
    /// `float`: JSON number.
    Float,
    /// `double`: JSON number.
    Double,
    /// `boolean`: JSON `true`/`false`.
    Boolean,
    /// `datetime`: ISO 8601 date and time as a JSON string.
    Datetime,
    /// `date`: ISO 8601 date as a JSON string.
    Date,
    /// `time`: ISO 8601 time as a JSON string.
    Time,
    /// `URI`: JSON string.
    Uri,
}

impl DataType {
    /// Every value, in the order of the standard's enumeration.
    pub const ALL: [DataType; 10] = [
        DataType::String,
        DataType::Integer,
        DataType::Decimal,
        DataType::Float,
        DataType::Double,
        DataType::Boolean,
        DataType::Datetime,
        DataType::Date,
        DataType::Time,
        DataType::Uri,
    ];

    /// The value as the standard spells it, e.g. `URI`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Integer => "integer",
            DataType::Decimal => "decimal",
            DataType::Float => "float",
            DataType::Double => "double",
            DataType::Boolean => "boolean",
            DataType::Datetime => "datetime",
            DataType::Date => "date",
            DataType::Time => "time",
            DataType::Uri => "URI",
        }
    }

    /// Parses a value as the standard spells it (exact case).
    pub fn parse(s: &str) -> Option<Self> {
        DataType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether this is `date`, `datetime` or `time`.
    pub fn is_temporal(self) -> bool {
        matches!(self, DataType::Date | DataType::Datetime | DataType::Time)
    }
}

/// A column's `targetDataType`: what the receiver converts the values to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `integer`: ISO dates, datetimes and times that become numeric (SAS) values.
    Integer,
    /// `decimal`: decimal strings that become exact decimals.
    Decimal,
}

impl Target {
    /// The value as the standard spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Integer => "integer",
            Target::Decimal => "decimal",
        }
    }

    /// Parses a value as the standard spells it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "integer" => Some(Target::Integer),
            "decimal" => Some(Target::Decimal),
            _ => None,
        }
    }
}

/// A column's `dataType` with its `targetDataType`: one of the combinations of formats.md §4.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColumnType {
    /// `dataType`.
    pub data_type: DataType,
    /// `targetDataType`.
    pub target: Option<Target>,
}

impl ColumnType {
    /// The combination, if the standard allows it: `integer` only with `date`, `datetime` or `time`, `decimal` only
    /// with `decimal` (where it may also be left out).
    pub fn new(data_type: DataType, target: Option<Target>) -> Option<Self> {
        let ok = match target {
            None => true,
            Some(Target::Integer) => data_type.is_temporal(),
            Some(Target::Decimal) => data_type == DataType::Decimal,
        };
        ok.then_some(ColumnType { data_type, target })
    }

    /// The Arrow type the reader gives a column of this type: `Utf8` for strings, URIs, decimals and ISO values
    /// without a target (SDTM `--DTC` may be partial), `Int64`, `Float64`, `Boolean`, and for ISO values with target
    /// `integer` `Date32`, `Timestamp(Microsecond)` (no time zone: values with an offset are converted to UTC) or
    /// `Time64(Microsecond)`.
    pub fn arrow_type(self) -> Arrow {
        match (self.data_type, self.target) {
            (DataType::Integer, _) => Arrow::Int64,
            (DataType::Float | DataType::Double, _) => Arrow::Float64,
            (DataType::Boolean, _) => Arrow::Boolean,
            (DataType::Date, Some(Target::Integer)) => Arrow::Date32,
            (DataType::Datetime, Some(Target::Integer)) => {
                Arrow::Timestamp(TimeUnit::Microsecond, None)
            }
            (DataType::Time, Some(Target::Integer)) => Arrow::Time64(TimeUnit::Microsecond),
            _ => Arrow::Utf8,
        }
    }
}

/// How the writer turns a column's cells into JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every cell is null (Arrow `Null`).
    Null,
    /// Text as a JSON string.
    Text,
    /// Integers as JSON integers.
    Int,
    /// Integers as decimal strings.
    IntAsDecimal,
    /// Floats as JSON numbers (NaN is null; a whole number has no `.0`).
    Float,
    /// Floats that must be whole numbers, as JSON integers.
    FloatAsInt,
    /// Floats as decimal strings (plain notation, shortest round trip).
    FloatAsDecimal,
    /// SAS numbers (integers or floats): days since 1960-01-01, as ISO dates.
    SasDate,
    /// SAS numbers: seconds since 1960-01-01T00:00:00, as ISO datetimes.
    SasDatetime,
    /// SAS numbers: seconds since midnight, as ISO times.
    SasTime,
    /// Booleans.
    Bool,
    /// Arrow dates as ISO dates.
    Date,
    /// Arrow timestamps as ISO datetimes (`Z` when time-zone aware).
    Timestamp,
    /// Arrow times as ISO times.
    Time,
    /// Arrow decimals as decimal strings.
    Decimal,
}

/// The broad kind of an Arrow type, for the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Null,
    Text,
    Int,
    Float,
    Bool,
    Date,
    Timestamp,
    Time,
    Decimal,
}

fn family(t: &Arrow) -> Option<Family> {
    use Arrow as A;
    Some(match t {
        A::Null => Family::Null,
        A::Utf8 | A::LargeUtf8 | A::Utf8View => Family::Text,
        A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64 => {
            Family::Int
        }
        A::Float16 | A::Float32 | A::Float64 => Family::Float,
        A::Boolean => Family::Bool,
        A::Date32 | A::Date64 => Family::Date,
        A::Timestamp(_, _) => Family::Timestamp,
        A::Time32(TimeUnit::Second | TimeUnit::Millisecond)
        | A::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond) => Family::Time,
        A::Decimal32(_, _) | A::Decimal64(_, _) | A::Decimal128(_, _) | A::Decimal256(_, _) => {
            Family::Decimal
        }
        A::Dictionary(_, value) if !matches!(value.as_ref(), A::Dictionary(_, _)) => family(value)?,
        _ => return None,
    })
}

/// The SAS temporal kind a display format names (`DATE9.` a date, `DATETIME20.` a datetime, `TIME8.` a time).
pub fn sas_temporal(display_format: &str) -> Option<DataType> {
    let f = display_format.trim().to_ascii_uppercase();
    let head = f.split('.').next().unwrap_or_default();
    let name = head.trim_end_matches(|c: char| c.is_ascii_digit());
    const DATES: &[&str] = &[
        "DATE", "DAY", "E8601DA", "B8601DA", "IS8601DA", "WORDDATE", "WORDDATX", "WEEKDATE",
        "WEEKDATX", "MONYY", "YYMON", "YYQ", "JULIAN", "NLDATE",
    ];
    const DATE_PREFIXES: &[&str] = &["DDMMYY", "MMDDYY", "YYMMDD"];
    const DATETIMES: &[&str] = &[
        "DATETIME", "DATEAMPM", "E8601DT", "B8601DT", "IS8601DT", "MDYAMPM", "NLDATM",
    ];
    const TIMES: &[&str] = &[
        "TIME", "TIMEAMPM", "TOD", "HHMM", "E8601TM", "B8601TM", "IS8601TM",
    ];
    if DATETIMES.contains(&name) {
        Some(DataType::Datetime)
    } else if DATES.contains(&name) || DATE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        Some(DataType::Date)
    } else if TIMES.contains(&name) {
        Some(DataType::Time)
    } else {
        None
    }
}

/// A column as the writer writes it: its metadata attributes and how its cells are written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnSpec {
    pub(crate) name: String,
    pub(crate) item_oid: String,
    pub(crate) label: String,
    pub(crate) ty: ColumnType,
    pub(crate) length: Option<u32>,
    pub(crate) display_format: Option<String>,
    pub(crate) key_sequence: Option<u32>,
    pub(crate) mode: Mode,
}

fn column_error(reason: Reason, column: &str, message: String) -> Error {
    Error::validation(reason, message).with_field(column.to_string())
}

/// Resolves one column: its type from the metadata's `dataType`/`targetDataType` where given and compatible with
/// the Arrow type, else the default of the Arrow type.
///
/// # Errors
/// EXP002 (field = the column) `unsupported_type` for an Arrow type Dataset-JSON cannot carry, `unknown_data_type`
/// or `invalid_target_data_type` for values outside the standard, `incompatible_data_type` when the metadata's
/// `dataType` cannot describe the Arrow type's values, `invalid_metadata` for a `length` or `keySequence` of 0.
pub(crate) fn resolve(
    dataset: &str,
    name: &str,
    arrow: &Arrow,
    meta: Option<&ColumnMeta>,
) -> Result<ColumnSpec> {
    let fam = family(arrow).ok_or_else(|| {
        column_error(
            Reason::UnsupportedType,
            name,
            format!("format 'dataset-json' cannot write column '{name}' of type {arrow}"),
        )
    })?;
    let given = match meta.and_then(|m| m.data_type.as_deref()) {
        None => None,
        Some(s) => Some(DataType::parse(s).ok_or_else(|| {
            column_error(
                Reason::UnknownDataType,
                name,
                format!(
                    "column '{name}' has a dataType that Dataset-JSON does not define; allowed: {}",
                    DataType::ALL.map(DataType::as_str).join(", ")
                ),
            )
        })?),
    };
    let target = match meta.and_then(|m| m.target_data_type.as_deref()) {
        None => None,
        Some(s) => Some(Target::parse(s).ok_or_else(|| {
            column_error(
                Reason::InvalidTargetDataType,
                name,
                format!("column '{name}' has a targetDataType other than integer or decimal"),
            )
        })?),
    };
    let display_format = meta
        .and_then(|m| m.display_format.clone())
        .filter(|f| !f.trim().is_empty());
    let is_f64 = matches!(arrow, Arrow::Float64)
        || matches!(arrow, Arrow::Dictionary(_, v) if v.as_ref() == &Arrow::Float64);
    let default = match fam {
        Family::Null | Family::Text => DataType::String,
        Family::Int => DataType::Integer,
        Family::Float => display_format
            .as_deref()
            .and_then(sas_temporal)
            .unwrap_or(if is_f64 {
                DataType::Double
            } else {
                DataType::Float
            }),
        Family::Bool => DataType::Boolean,
        Family::Date => DataType::Date,
        Family::Timestamp => DataType::Datetime,
        Family::Time => DataType::Time,
        Family::Decimal => DataType::Decimal,
    };
    let data_type = given.unwrap_or(default);
    use DataType as D;
    let mode = match (fam, data_type) {
        (Family::Null, _) => Some(Mode::Null),
        (Family::Text, D::String | D::Uri | D::Date | D::Datetime | D::Time | D::Decimal) => {
            Some(Mode::Text)
        }
        (Family::Int, D::Integer | D::Float | D::Double) => Some(Mode::Int),
        (Family::Int, D::Decimal) => Some(Mode::IntAsDecimal),
        (Family::Float, D::Float | D::Double) => Some(Mode::Float),
        (Family::Float, D::Integer) => Some(Mode::FloatAsInt),
        (Family::Float, D::Decimal) => Some(Mode::FloatAsDecimal),
        (Family::Int | Family::Float, D::Date) => Some(Mode::SasDate),
        (Family::Int | Family::Float, D::Datetime) => Some(Mode::SasDatetime),
        (Family::Int | Family::Float, D::Time) => Some(Mode::SasTime),
        (Family::Bool, D::Boolean) => Some(Mode::Bool),
        (Family::Date, D::Date) => Some(Mode::Date),
        (Family::Timestamp, D::Datetime) => Some(Mode::Timestamp),
        (Family::Time, D::Time) => Some(Mode::Time),
        (Family::Decimal, D::Decimal) => Some(Mode::Decimal),
        _ => None,
    }
    .ok_or_else(|| {
        column_error(
            Reason::IncompatibleDataType,
            name,
            format!(
                "column '{name}' of type {arrow} cannot be written as dataType '{}'",
                data_type.as_str()
            ),
        )
    })?;
    // ISO values that stand for numbers (SAS numerics, Arrow dates and times) tell the receiver to convert them
    // back; ISO text stays text unless the metadata says otherwise; decimals are always converted.
    let default_target = match (data_type, mode) {
        (D::Decimal, _) => Some(Target::Decimal),
        (D::Date | D::Datetime | D::Time, Mode::Text | Mode::Null) => None,
        (D::Date | D::Datetime | D::Time, _) => Some(Target::Integer),
        _ => None,
    };
    let ty = ColumnType::new(data_type, target.or(default_target)).ok_or_else(|| {
        column_error(
            Reason::InvalidTargetDataType,
            name,
            format!(
                "column '{name}': targetDataType '{}' is not allowed with dataType '{}'",
                target.map(Target::as_str).unwrap_or_default(),
                data_type.as_str()
            ),
        )
    })?;
    let positive = |v: Option<u32>, attr: &str| -> Result<Option<u32>> {
        match v {
            Some(0) => Err(column_error(
                Reason::InvalidMetadata,
                name,
                format!("column '{name}': {attr} must be at least 1"),
            )),
            v => Ok(v),
        }
    };
    let item_oid = meta
        .and_then(|m| m.item_oid.clone())
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| format!("IT.{dataset}.{name}"));
    Ok(ColumnSpec {
        name: name.to_string(),
        item_oid,
        label: meta.and_then(|m| m.label.clone()).unwrap_or_default(),
        ty,
        length: positive(meta.and_then(|m| m.length), "length")?,
        display_format,
        key_sequence: positive(meta.and_then(|m| m.key_sequence), "keySequence")?,
        mode,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta(data_type: Option<&str>, target: Option<&str>, format: Option<&str>) -> ColumnMeta {
        ColumnMeta {
            name: "X".into(),
            data_type: data_type.map(str::to_string),
            target_data_type: target.map(str::to_string),
            display_format: format.map(str::to_string),
            ..ColumnMeta::default()
        }
    }

    fn spec(arrow: Arrow, m: Option<ColumnMeta>) -> Result<ColumnSpec> {
        resolve("DM", "X", &arrow, m.as_ref())
    }

    #[test]
    fn defaults_follow_the_arrow_type() {
        let t = |a: Arrow| {
            let s = spec(a, None).unwrap();
            (s.ty.data_type, s.ty.target, s.mode)
        };
        assert_eq!(t(Arrow::Utf8), (DataType::String, None, Mode::Text));
        assert_eq!(t(Arrow::Int32), (DataType::Integer, None, Mode::Int));
        assert_eq!(t(Arrow::Float64), (DataType::Double, None, Mode::Float));
        assert_eq!(t(Arrow::Float32), (DataType::Float, None, Mode::Float));
        assert_eq!(t(Arrow::Boolean), (DataType::Boolean, None, Mode::Bool));
        assert_eq!(
            t(Arrow::Date32),
            (DataType::Date, Some(Target::Integer), Mode::Date)
        );
        assert_eq!(
            t(Arrow::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))),
            (DataType::Datetime, Some(Target::Integer), Mode::Timestamp)
        );
        assert_eq!(
            t(Arrow::Decimal128(10, 2)),
            (DataType::Decimal, Some(Target::Decimal), Mode::Decimal)
        );
        let s = spec(Arrow::Utf8, None).unwrap();
        assert_eq!(s.item_oid, "IT.DM.X");
        assert_eq!(s.label, "");
    }

    #[test]
    fn sas_formats_make_numeric_dates() {
        let s = spec(Arrow::Float64, Some(meta(None, None, Some("DATE9.")))).unwrap();
        assert_eq!(
            (s.ty.data_type, s.ty.target, s.mode),
            (DataType::Date, Some(Target::Integer), Mode::SasDate)
        );
        assert_eq!(sas_temporal("E8601DT19."), Some(DataType::Datetime));
        assert_eq!(sas_temporal("yymmddn8."), Some(DataType::Date));
        assert_eq!(sas_temporal("TIME8."), Some(DataType::Time));
        assert_eq!(sas_temporal("8.2"), None);
        assert_eq!(sas_temporal("BEST12."), None);
    }

    #[test]
    fn metadata_types_are_checked_against_the_data() {
        let s = spec(Arrow::Float64, Some(meta(Some("integer"), None, None))).unwrap();
        assert_eq!(s.mode, Mode::FloatAsInt);
        let s = spec(Arrow::Utf8, Some(meta(Some("date"), None, None))).unwrap();
        assert_eq!((s.ty.target, s.mode), (None, Mode::Text));
        let s = spec(Arrow::Utf8, Some(meta(Some("decimal"), None, None))).unwrap();
        assert_eq!(s.ty.target, Some(Target::Decimal));
        for (a, m, reason) in [
            (
                Arrow::Utf8,
                meta(Some("integer"), None, None),
                "incompatible_data_type",
            ),
            (
                Arrow::Date32,
                meta(Some("datetime"), None, None),
                "incompatible_data_type",
            ),
            (
                Arrow::Int64,
                meta(Some("text"), None, None),
                "unknown_data_type",
            ),
            (
                Arrow::Utf8,
                meta(Some("string"), Some("integer"), None),
                "invalid_target_data_type",
            ),
            (
                Arrow::Utf8,
                meta(Some("date"), Some("decimal"), None),
                "invalid_target_data_type",
            ),
            (
                Arrow::Utf8,
                meta(None, Some("float"), None),
                "invalid_target_data_type",
            ),
        ] {
            assert_eq!(spec(a, Some(m)).unwrap_err().reason(), reason);
        }
        let bad = ColumnMeta {
            name: "X".into(),
            length: Some(0),
            ..ColumnMeta::default()
        };
        assert_eq!(
            spec(Arrow::Utf8, Some(bad)).unwrap_err().reason(),
            "invalid_metadata"
        );
        let e = spec(Arrow::Binary, None).unwrap_err();
        assert_eq!((e.reason(), e.field()), ("unsupported_type", Some("X")));
    }

    #[test]
    fn combinations_follow_the_standard() {
        assert!(ColumnType::new(DataType::Date, Some(Target::Integer)).is_some());
        assert!(ColumnType::new(DataType::Integer, Some(Target::Integer)).is_none());
        assert!(ColumnType::new(DataType::Decimal, None).is_some());
        assert_eq!(DataType::parse("URI"), Some(DataType::Uri));
        assert_eq!(DataType::parse("uri"), None);
    }
}
