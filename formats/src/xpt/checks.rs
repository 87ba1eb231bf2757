//! The FDA checks of the XPORT writer (formats.md §1.5, §1.12 and §3): every violation is collected and reported
//! at once as EXP002 `fda_check_failed`, never truncated away.
//!
//! | rule | what it checks |
//! |---|---|
//! | `name_length` | dataset and variable names have 1-8 bytes (v5) or 1-32 (v8) |
//! | `name_characters` | v5: uppercase letters, digits and `_`, starting with a letter; v8: letters of either case |
//! | `name_reserved` | a variable is not named `_N_`, `_ERROR_`, `_NUMERIC_`, `_CHARACTER_` or `_ALL_` |
//! | `name_duplicate` | variable names are unique, ignoring case |
//! | `variable_count` | at most 9,999 variables (v5) or 32,767 (v8) |
//! | `label_length` | variable labels up to 40 bytes (v5) or 256 (v8); the dataset label up to 40 |
//! | `label_ascii` | labels are ASCII unless an encoding is chosen |
//! | `label_encoding` | labels fit the chosen encoding |
//! | `column_length` | a character length from the metadata is 1-200 (v5) or 1-32,767 (v8) |
//! | `numeric_length` | a numeric length (`trialport.xpt.length`) is 2-8 |
//! | `display_format` | display formats and informats parse as `NAMEw.d` with a name of up to 8 bytes (v8: 32) |
//! | `value_length` | a character value fits its column's length (at most 200 bytes in v5) |
//! | `value_ascii` | character values are ASCII unless an encoding is chosen |
//! | `value_encoding` | character values fit the chosen encoding |
//!
//! Each violation is `{"rule", "dataset", "column", "row"?, "limit"?}` (`column` is null for the dataset itself;
//! `row` is the 0-based row number in the stream). No data value is ever quoted.

use super::header::XptVersion;
use super::text::{TextIssue, XptEncoding};
use serde_json::{json, Value};
use trialport_core::error::Reason;
use trialport_core::Error;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule's stable name, e.g. `name_length`.
    pub rule: &'static str,
    /// The column, or `None` for the dataset itself.
    pub column: Option<String>,
    /// The 0-based row number, for value rules.
    pub row: Option<u64>,
    /// The limit that was exceeded, for length rules.
    pub limit: Option<usize>,
}

impl Violation {
    /// A violation of `rule` by `column` (`None`: the dataset).
    pub fn new(rule: &'static str, column: Option<&str>) -> Self {
        Violation {
            rule,
            column: column.map(str::to_string),
            row: None,
            limit: None,
        }
    }

    /// With the limit that was exceeded.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// With the row it happened in.
    pub fn row(mut self, row: u64) -> Self {
        self.row = Some(row);
        self
    }

    fn to_json(&self, dataset: &str) -> Value {
        let mut v = json!({"rule": self.rule, "dataset": dataset, "column": self.column});
        if let Some(r) = self.row {
            v["row"] = json!(r);
        }
        if let Some(l) = self.limit {
            v["limit"] = json!(l);
        }
        v
    }
}

/// The EXP002 `fda_check_failed` error listing `violations`.
pub fn failed(dataset: &str, version: XptVersion, violations: &[Violation]) -> Error {
    let mut rules: Vec<&str> = violations.iter().map(|v| v.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    Error::validation(
        Reason::FdaCheckFailed,
        format!(
            "{} violation(s) of the SAS XPORT v{} rules: {}",
            violations.len(),
            version.number(),
            rules.join(", ")
        ),
    )
    .with_detail(
        "violations",
        Value::Array(violations.iter().map(|v| v.to_json(dataset)).collect()),
    )
}

const RESERVED: [&str; 5] = ["_N_", "_ERROR_", "_NUMERIC_", "_CHARACTER_", "_ALL_"];

/// Checks a dataset (`column` = `None`) or variable name.
pub fn check_name(name: &str, column: Option<&str>, version: XptVersion, out: &mut Vec<Violation>) {
    let len = name.len();
    if len == 0 || len > version.max_name() {
        out.push(Violation::new("name_length", column).limit(version.max_name()));
    }
    let ok =
        match version {
            XptVersion::V5 => name.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_uppercase() || (i > 0 && (b.is_ascii_digit() || b == b'_'))
            }),
            XptVersion::V8 => name.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit())
            }),
        };
    if len > 0 && !ok {
        out.push(Violation::new("name_characters", column));
    }
    if column.is_some() && RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        out.push(Violation::new("name_reserved", column));
    }
}

/// Checks a label of at most `limit` bytes in `encoding`; returns its encoded bytes.
pub fn check_label(
    label: &str,
    column: Option<&str>,
    limit: usize,
    encoding: XptEncoding,
    out: &mut Vec<Violation>,
) -> Vec<u8> {
    match encoding.encoded_len(label) {
        Ok(n) => {
            if n > limit {
                out.push(Violation::new("label_length", column).limit(limit));
            }
        }
        Err(TextIssue::NonAscii) => out.push(Violation::new("label_ascii", column)),
        Err(TextIssue::Unrepresentable) => out.push(Violation::new("label_encoding", column)),
    }
    let mut bytes = Vec::with_capacity(label.len());
    encoding.encode_into(label, &mut bytes);
    bytes
}

/// The violation for a character value that cannot be encoded.
pub(crate) fn text_issue(issue: TextIssue, column: &str, row: u64) -> Violation {
    let rule = match issue {
        TextIssue::NonAscii => "value_ascii",
        TextIssue::Unrepresentable => "value_encoding",
    };
    Violation::new(rule, Some(column)).row(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(name: &str, column: Option<&str>, v: XptVersion) -> Vec<&'static str> {
        let mut out = Vec::new();
        check_name(name, column, v, &mut out);
        out.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn names_follow_the_version() {
        let v5 = XptVersion::V5;
        assert!(rules("USUBJID", Some("USUBJID"), v5).is_empty());
        assert!(rules("QS_1", Some("QS_1"), v5).is_empty());
        assert_eq!(rules("USUBJIDXX", None, v5), ["name_length"]);
        assert_eq!(rules("", None, v5), ["name_length"]);
        assert_eq!(rules("usubjid", None, v5), ["name_characters"]);
        assert_eq!(rules("1ABC", None, v5), ["name_characters"]);
        assert_eq!(rules("_ABC", None, v5), ["name_characters"]);
        assert_eq!(
            rules("_N_", Some("_N_"), v5),
            ["name_characters", "name_reserved"]
        );
        let v8 = XptVersion::V8;
        assert!(rules("subject_identifier_long", None, v8).is_empty());
        assert_eq!(rules(&"A".repeat(33), None, v8), ["name_length"]);
        assert_eq!(rules("_ERROR_", Some("x"), v8), ["name_reserved"]);
    }

    #[test]
    fn labels_count_encoded_bytes() {
        let mut out = Vec::new();
        check_label(&"x".repeat(40), None, 40, XptEncoding::Ascii, &mut out);
        assert!(out.is_empty());
        check_label(&"x".repeat(41), None, 40, XptEncoding::Ascii, &mut out);
        check_label("Größe", Some("A"), 40, XptEncoding::Ascii, &mut out);
        check_label("Größe", Some("A"), 40, XptEncoding::Latin1, &mut out);
        check_label("\u{65e5}", Some("A"), 40, XptEncoding::Latin1, &mut out);
        let r: Vec<_> = out.iter().map(|v| v.rule).collect();
        assert_eq!(r, ["label_length", "label_ascii", "label_encoding"]);
    }
}
