//! Excel's rules for sheet names: checking a given name, making a valid one from any text, and keeping names unique.

use super::MAX_SHEET_NAME_CHARS;
use std::collections::BTreeSet;

const FORBIDDEN: [char; 7] = ['[', ']', ':', '*', '?', '/', '\\'];

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Checks `name` against Excel's rules; the error says which rule it breaks (never quoting the name).
pub(crate) fn validate(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if utf16_len(name) > MAX_SHEET_NAME_CHARS {
        return Err("it is longer than 31 characters");
    }
    if name.contains(FORBIDDEN) {
        return Err("it contains one of [ ] : * ? / \\");
    }
    if name.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if name.starts_with('\'') || name.ends_with('\'') {
        return Err("it begins or ends with an apostrophe");
    }
    if name.eq_ignore_ascii_case("history") {
        return Err("Excel reserves the name History");
    }
    Ok(())
}

/// A valid sheet name made from any text: forbidden characters become `_`, it is cut to 31 characters, and an
/// empty or reserved result is made usable.
pub(crate) fn sanitize(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if FORBIDDEN.contains(&c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim().trim_matches('\'').trim();
    let mut name = truncate(trimmed, MAX_SHEET_NAME_CHARS);
    if name.is_empty() {
        name = super::DEFAULT_SHEET_NAME.to_string();
    }
    if name.eq_ignore_ascii_case("history") {
        name.push('_');
    }
    // Cutting may leave a trailing apostrophe or space.
    let name = name.trim_end_matches('\'').trim_end().to_string();
    if name.is_empty() {
        super::DEFAULT_SHEET_NAME.to_string()
    } else {
        name
    }
}

/// The longest prefix of `s` of at most `max` UTF-16 code units.
fn truncate(s: &str, max: usize) -> String {
    let mut units = 0;
    let mut out = String::new();
    for c in s.chars() {
        units += c.len_utf16();
        if units > max {
            break;
        }
        out.push(c);
    }
    out
}

/// `base` followed by `_<n>`, with `base` cut so the whole fits in 31 characters.
pub(crate) fn with_suffix(base: &str, n: usize) -> String {
    let suffix = format!("_{n}");
    let head = truncate(base, MAX_SHEET_NAME_CHARS - suffix.len());
    let head = head.trim_end_matches('\'');
    format!("{head}{suffix}")
}

/// Hands out sheet names that are valid and unique in a workbook (Excel compares them case-insensitively).
#[derive(Debug, Default)]
pub(crate) struct SheetNames {
    used: BTreeSet<String>,
}

impl SheetNames {
    /// A valid name made from `wanted`, suffixed `_2`, `_3`, ... when already taken.
    pub(crate) fn unique(&mut self, wanted: &str) -> String {
        let base = sanitize(wanted);
        let mut name = base.clone();
        let mut n = 1;
        while self.used.contains(&name.to_lowercase()) {
            n += 1;
            name = with_suffix(&base, n);
        }
        self.used.insert(name.to_lowercase());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(validate("DM").is_ok());
        assert!(validate("Adverse events (AE)").is_ok());
        assert!(validate("").is_err());
        assert!(validate(&"x".repeat(32)).is_err());
        assert!(validate(&"x".repeat(31)).is_ok());
        assert!(validate("a/b").is_err());
        assert!(validate("'a").is_err());
        assert!(validate("HISTORY").is_err());
    }

    #[test]
    fn sanitized_and_suffixed_names_are_valid() {
        for raw in ["a/b:c", "", "'quoted'", "history", &"é".repeat(40), "[]"] {
            let s = sanitize(raw);
            assert!(validate(&s).is_ok(), "{raw:?} -> {s:?}");
        }
        let long = "x".repeat(31);
        assert_eq!(with_suffix(&long, 2).len(), 31);
        assert!(with_suffix(&long, 12).ends_with("_12"));
        let mut names = SheetNames::default();
        assert_eq!(names.unique("Report"), "Report");
        assert_eq!(names.unique("report"), "report_2");
        assert_eq!(names.unique("Report"), "Report_3");
    }
}
