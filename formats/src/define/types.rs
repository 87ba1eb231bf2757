//! What a column is in Define-XML terms: its storage, its `DataType`, and the SAS display formats that mark a
//! number as a date, time or datetime; and the SDTM class of a standard domain.

use crate::xpt::SasFormat;
use arrow::datatypes::{DataType, Field};
use trialport_core::meta::ColumnMeta;

/// How a column's values are stored in Arrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Strings.
    Text,
    /// Integers (and booleans, which XPT stores as 1/0).
    Integer,
    /// Floats and decimals.
    Float,
    /// Arrow dates.
    Date,
    /// Arrow timestamps.
    Datetime,
    /// Arrow times of day.
    Time,
    /// Anything else (lists, binary): Define-XML has no type for it.
    Other,
}

impl Storage {
    /// The storage of an Arrow type.
    pub(crate) fn of(dt: &DataType) -> Storage {
        use DataType as D;
        match dt {
            D::Utf8 | D::LargeUtf8 | D::Utf8View => Storage::Text,
            D::Boolean
            | D::Int8
            | D::Int16
            | D::Int32
            | D::Int64
            | D::UInt8
            | D::UInt16
            | D::UInt32
            | D::UInt64
            | D::Null => Storage::Integer,
            D::Float16
            | D::Float32
            | D::Float64
            | D::Decimal32(..)
            | D::Decimal64(..)
            | D::Decimal128(..)
            | D::Decimal256(..) => Storage::Float,
            D::Date32 | D::Date64 => Storage::Date,
            D::Timestamp(..) => Storage::Datetime,
            D::Time32(_) | D::Time64(_) => Storage::Time,
            D::Dictionary(_, v) => Storage::of(v),
            _ => Storage::Other,
        }
    }

    /// Whether the values are numbers (in XPT: numeric variables).
    pub(crate) fn is_numeric(self) -> bool {
        !matches!(self, Storage::Text | Storage::Other)
    }
}

/// The Define-XML 2.1 `ItemDef/@DataType` values.
pub(crate) const DEFINE_TYPES: &[&str] = &[
    "text",
    "integer",
    "float",
    "date",
    "datetime",
    "time",
    "partialDate",
    "partialTime",
    "partialDatetime",
    "incompleteDatetime",
    "durationDatetime",
    "intervalDatetime",
    "URI",
];

/// Define-XML types whose values are ISO 8601 or other text: a character variable in XPT.
pub(crate) const TEXTUAL_TYPES: &[&str] = &[
    "text",
    "date",
    "datetime",
    "time",
    "partialDate",
    "partialTime",
    "partialDatetime",
    "incompleteDatetime",
    "durationDatetime",
    "intervalDatetime",
    "URI",
];

/// What a SAS display format says a number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SasTemporal {
    /// Days since 1960-01-01.
    Date,
    /// Seconds since 1960-01-01T00:00:00.
    Datetime,
    /// Seconds since midnight.
    Time,
}

const SAS_DATE_FORMATS: &[&str] = &[
    "DATE", "DAY", "DDMMYY", "DDMMYYB", "DDMMYYC", "DDMMYYD", "DDMMYYN", "DDMMYYP", "DDMMYYS",
    "DOWNAME", "E8601DA", "B8601DA", "JULDAY", "JULIAN", "MMDDYY", "MMDDYYB", "MMDDYYC", "MMDDYYD",
    "MMDDYYN", "MMDDYYP", "MMDDYYS", "MMYY", "MONNAME", "MONTH", "MONYY", "QTR", "WEEKDATE",
    "WEEKDATX", "WEEKDAY", "WORDDATE", "WORDDATX", "YEAR", "YYMM", "YYMMDD", "YYMMDDB", "YYMMDDC",
    "YYMMDDD", "YYMMDDN", "YYMMDDP", "YYMMDDS", "YYMON", "YYQ", "IS8601DA", "NLDATE",
];
const SAS_DATETIME_FORMATS: &[&str] = &[
    "DATETIME", "DATEAMPM", "DTDATE", "DTMONYY", "DTWKDATX", "DTYEAR", "DTYYQC", "E8601DT",
    "B8601DT", "E8601DN", "B8601DN", "MDYAMPM", "IS8601DT", "IS8601DN", "NLDATM",
];
const SAS_TIME_FORMATS: &[&str] = &[
    "TIME", "TIMEAMPM", "HHMM", "HOUR", "MMSS", "TOD", "E8601TM", "B8601TM", "IS8601TM",
];

/// What a SAS display format such as `DATE9.` or `E8601DT19.` says the number is, if temporal.
pub(crate) fn sas_temporal(display_format: Option<&str>) -> Option<SasTemporal> {
    let f = SasFormat::parse(display_format?)?;
    let name = f.name.to_ascii_uppercase();
    if SAS_DATE_FORMATS.contains(&name.as_str()) {
        Some(SasTemporal::Date)
    } else if SAS_DATETIME_FORMATS.contains(&name.as_str()) {
        Some(SasTemporal::Datetime)
    } else if SAS_TIME_FORMATS.contains(&name.as_str()) {
        Some(SasTemporal::Time)
    } else {
        None
    }
}

/// The Define-XML type of a metadata `dataType` or `targetDataType` (Dataset-JSON names or Define-XML names).
fn from_meta(t: &str) -> Option<&'static str> {
    Some(match t {
        "string" | "text" => "text",
        "integer" | "boolean" => "integer",
        "float" | "double" | "decimal" => "float",
        "URI" | "uri" => "URI",
        other => DEFINE_TYPES.iter().find(|d| **d == other)?,
    })
}

/// What is known of a column's Define-XML `DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeFact {
    /// Stated by the metadata or forced by the storage.
    Known(&'static str),
    /// The metadata names no type this module knows.
    Invalid,
    /// The storage allows several; the first is what a document without metadata says.
    OneOf(&'static [&'static str]),
}

/// The Define-XML `DataType` of a column stored as `field` with metadata `meta`, in a file that is XPT when
/// `xpt` (where dates, datetimes and times are SAS numbers).
///
/// Rules, in order: a `targetDataType` (`integer`/`decimal`) is the stored type; a column stored as numbers whose
/// `dataType` is `date`, `datetime` or `time` is an `integer` (a SAS date number, described by its display
/// format, as ADaM defines do); otherwise the `dataType`. Without either: strings are `text` (or any textual
/// type: a define may call them `date`), integers and booleans `integer`, floats `float` (or `integer`),
/// Arrow dates, timestamps and times `date`, `datetime`, `time` (in XPT: `integer`).
pub(crate) fn type_fact(field: &Field, meta: &ColumnMeta, xpt: bool) -> TypeFact {
    let storage = Storage::of(field.data_type());
    if let Some(t) = meta.target_data_type.as_deref() {
        return match from_meta(t) {
            Some(d @ ("integer" | "float")) => TypeFact::Known(d),
            _ => TypeFact::Invalid,
        };
    }
    if let Some(t) = meta.data_type.as_deref() {
        return match from_meta(t) {
            None => TypeFact::Invalid,
            Some("date" | "datetime" | "time")
                if storage.is_numeric()
                    && (xpt
                        || !matches!(
                            storage,
                            Storage::Date | Storage::Datetime | Storage::Time
                        )) =>
            {
                TypeFact::Known("integer")
            }
            Some(d) => TypeFact::Known(d),
        };
    }
    match storage {
        Storage::Text => TypeFact::OneOf(TEXTUAL_TYPES),
        Storage::Integer => TypeFact::Known("integer"),
        Storage::Float if sas_temporal(meta.display_format.as_deref()).is_some() => {
            TypeFact::Known("integer")
        }
        Storage::Float => TypeFact::OneOf(&["float", "integer"]),
        Storage::Date | Storage::Datetime | Storage::Time if xpt => TypeFact::Known("integer"),
        Storage::Date => TypeFact::Known("date"),
        Storage::Datetime => TypeFact::Known("datetime"),
        Storage::Time => TypeFact::Known("time"),
        Storage::Other => TypeFact::Invalid,
    }
}

/// Whether the data set is ADaM: its class is an ADaM class or its name starts with `AD`.
pub(crate) fn is_adam(name: &str, class: Option<&str>) -> bool {
    match class.map(str::to_ascii_uppercase) {
        Some(c) if ADAM_CLASSES.contains(&c.as_str()) => true,
        Some(c) if SDTM_CLASSES.contains(&c.as_str()) => false,
        _ => name.to_ascii_uppercase().starts_with("AD"),
    }
}

const ADAM_CLASSES: &[&str] = &[
    "SUBJECT LEVEL ANALYSIS DATASET",
    "BASIC DATA STRUCTURE",
    "OCCURRENCE DATA STRUCTURE",
    "ADAM OTHER",
    "INTEGRATED SUBJECT LEVEL",
    "INTEGRATED BASIC DATA STRUCTURE",
    "INTEGRATED OCCURRENCE DATA STRUCTURE",
    "MEDICAL DEVICE BASIC DATA STRUCTURE",
    "MEDICAL DEVICE OCCURRENCE DATA STRUCTURE",
    "DEVICE LEVEL ANALYSIS DATASET",
];

const SDTM_CLASSES: &[&str] = &[
    "SPECIAL PURPOSE",
    "TRIAL DESIGN",
    "RELATIONSHIP",
    "STUDY REFERENCE",
    "EVENTS",
    "INTERVENTIONS",
    "FINDINGS",
    "FINDINGS ABOUT",
];

/// The SDTMIG (3.3/3.4) class of a standard SDTM domain; `SUPP--` and `REL---` datasets are RELATIONSHIP.
/// `None` for a domain the SDTMIG does not define (a custom domain needs its `class` in the metadata).
pub(crate) fn sdtm_class(domain: &str) -> Option<&'static str> {
    let d = domain.to_ascii_uppercase();
    if d.starts_with("SUPP") || d.starts_with("REL") {
        return Some("RELATIONSHIP");
    }
    let table: &[(&str, &[&str])] = &[
        ("SPECIAL PURPOSE", &["DM", "CO", "SE", "SM", "SV"]),
        ("TRIAL DESIGN", &["TA", "TD", "TE", "TI", "TM", "TS", "TV"]),
        ("STUDY REFERENCE", &["DI", "OI"]),
        ("EVENTS", &["AE", "BE", "CE", "DS", "DV", "HO", "MH"]),
        ("INTERVENTIONS", &["AG", "CM", "EC", "EX", "ML", "PR", "SU"]),
        (
            "FINDINGS",
            &[
                "BS", "CP", "CV", "DA", "DD", "EG", "FT", "GF", "IE", "IS", "LB", "MB", "MI", "MK",
                "MS", "NV", "OE", "PC", "PE", "PP", "QS", "RE", "RP", "RS", "SC", "SS", "TR", "TU",
                "UR", "VS",
            ],
        ),
        ("FINDINGS ABOUT", &["FA", "SR"]),
    ];
    table
        .iter()
        .find(|(_, domains)| domains.contains(&d.as_str()))
        .map(|(class, _)| *class)
}

/// The dataset a name stands for in the standards' tables: the name itself, or without the digits of a split
/// dataset (`AE1` is part of `AE`, formats.md §3.1) when only that is a standard domain.
pub(crate) fn standard_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    let base = upper.trim_end_matches(|c: char| c.is_ascii_digit());
    if standard_structure(&upper).is_none()
        && sdtm_class(&upper).is_none()
        && base.len() < upper.len()
        && (sdtm_class(base).is_some() || standard_structure(base).is_some())
    {
        base.to_string()
    } else {
        upper
    }
}

/// The structure the SDTMIG (3.3 and 3.4 word it alike) or the ADaMIG gives a standard dataset, and whether it
/// repeats per subject. `None` for other datasets, whose structure the metadata must give.
pub(crate) fn standard_structure(name: &str) -> Option<(&'static str, bool)> {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("SUPP") && upper.len() > 4 {
        return Some((
            "One record per IDVAR, IDVARVAL, and QNAM value per subject",
            true,
        ));
    }
    let table: &[(&str, &str, bool)] = &[
        ("DM", "One record per subject", false),
        ("ADSL", "One record per subject", false),
        ("CO", "One record per comment", true),
        ("SE", "One record per actual Element per subject", true),
        ("TA", "One record per planned Element per Arm", false),
        ("TE", "One record per planned Element", false),
        ("TI", "One record per I/E criterion", false),
        ("TS", "One record per trial summary parameter value", false),
        ("TV", "One record per planned Visit per Arm", false),
        ("AE", "One record per adverse event per subject", true),
        (
            "DS",
            "One record per disposition status or protocol milestone per subject",
            true,
        ),
        (
            "MH",
            "One record per medical history event per subject",
            true,
        ),
        (
            "IE",
            "One record per inclusion/exclusion criterion not met per subject",
            true,
        ),
        (
            "LB",
            "One record per lab test per time point per visit per subject",
            true,
        ),
        (
            "VS",
            "One record per vital sign measurement per time point per visit per subject",
            true,
        ),
        (
            "RELREC",
            "One record per related record, group of records or dataset",
            true,
        ),
    ];
    table
        .iter()
        .find(|(n, _, _)| *n == upper)
        .map(|(_, s, r)| (*s, *r))
}

/// Whether `name` is a SAS V5 name (1-8 letters, digits or `_`, starting with a letter or `_`).
pub(crate) fn is_sas_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=8).contains(&b.len())
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(
        dt: DataType,
        data_type: Option<&str>,
        target: Option<&str>,
        fmt: Option<&str>,
        xpt: bool,
    ) -> TypeFact {
        let meta = ColumnMeta {
            data_type: data_type.map(String::from),
            target_data_type: target.map(String::from),
            display_format: fmt.map(String::from),
            ..ColumnMeta::default()
        };
        type_fact(&Field::new("X", dt, true), &meta, xpt)
    }

    #[test]
    fn data_types_follow_metadata_then_storage() {
        use TypeFact::Known;
        assert_eq!(
            fact(DataType::Utf8, Some("date"), None, None, true),
            Known("date")
        );
        assert_eq!(
            fact(DataType::Utf8, Some("string"), None, None, true),
            Known("text")
        );
        assert_eq!(
            fact(
                DataType::Float64,
                Some("date"),
                Some("integer"),
                Some("DATE9."),
                true
            ),
            Known("integer")
        );
        assert_eq!(
            fact(DataType::Float64, Some("date"), None, None, true),
            Known("integer")
        );
        assert_eq!(
            fact(DataType::Float64, Some("integer"), None, None, true),
            Known("integer")
        );
        assert_eq!(
            fact(DataType::Float64, Some("decimal"), None, None, true),
            Known("float")
        );
        assert_eq!(
            fact(DataType::Float64, None, None, Some("DATE9."), true),
            Known("integer")
        );
        assert_eq!(
            fact(DataType::Float64, None, None, None, true),
            TypeFact::OneOf(&["float", "integer"])
        );
        assert_eq!(
            fact(DataType::Int32, None, None, None, true),
            Known("integer")
        );
        assert_eq!(
            fact(DataType::Date32, None, None, None, true),
            Known("integer")
        );
        assert_eq!(
            fact(DataType::Date32, None, None, None, false),
            Known("date")
        );
        assert_eq!(
            fact(DataType::Date32, Some("date"), None, None, false),
            Known("date")
        );
        assert_eq!(
            fact(DataType::Utf8, Some("money"), None, None, true),
            TypeFact::Invalid
        );
        assert_eq!(
            fact(DataType::Utf8, None, None, None, true),
            TypeFact::OneOf(TEXTUAL_TYPES)
        );
    }

    #[test]
    fn sas_formats_and_classes() {
        assert_eq!(sas_temporal(Some("DATE9.")), Some(SasTemporal::Date));
        assert_eq!(
            sas_temporal(Some("e8601dt19.")),
            Some(SasTemporal::Datetime)
        );
        assert_eq!(sas_temporal(Some("TIME8.")), Some(SasTemporal::Time));
        assert_eq!(sas_temporal(Some("8.2")), None);
        assert_eq!(sas_temporal(Some("$20.")), None);
        assert_eq!(sdtm_class("DM"), Some("SPECIAL PURPOSE"));
        assert_eq!(sdtm_class("suppdm"), Some("RELATIONSHIP"));
        assert_eq!(sdtm_class("LB"), Some("FINDINGS"));
        assert_eq!(sdtm_class("XX"), None);
        assert!(is_adam("ADSL", None));
        assert!(!is_adam("ADX", Some("FINDINGS")));
        assert!(is_adam("XYZ", Some("Basic Data Structure")));
        assert_eq!(standard_name("ae3"), "AE");
        assert_eq!(standard_name("AE"), "AE");
        assert_eq!(standard_name("XY1"), "XY1");
        assert_eq!(standard_name("ADSL"), "ADSL");
        assert_eq!(standard_structure("suppae").map(|s| s.1), Some(true));
        assert_eq!(
            standard_structure("DM"),
            Some(("One record per subject", false))
        );
        assert_eq!(standard_structure("ADTTE"), None);
        assert!(is_sas_name("AESTDTC") && !is_sas_name("TOOLONGNAME") && !is_sas_name("1A"));
    }
}
