//! Names that become file names: study, dataset and organisation names ([`validate_name`]) and artifact paths
//! ([`validate_path`]), both refusing what a file system would misread (`..`, device names Windows reserves, ...).

use crate::error::Reason;
use crate::error::{Error, Result};

/// Checks an artifact path: relative, `/`-separated, no empty, `.` or `..` segment, no backslash, no control
/// character, no segment that Windows reserves (`NUL`, `com1.csv`, ...) or that ends in `.` or a space, at most
/// 1,024 bytes.
///
/// # Errors
/// EXP002 `invalid_path`.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::validation(
            Reason::InvalidPath,
            format!("artifact path {why}"),
        ))
    };
    if path.is_empty() || path.len() > 1024 {
        return bad("must have 1 to 1024 bytes");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return bad("must be relative and use '/'");
    }
    if path.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("must not contain empty, '.' or '..' segments");
    }
    if path.split('/').any(is_reserved_segment) {
        return bad("must not use a name reserved by Windows (CON, NUL, COM1, ...) or end a segment in '.' or ' '");
    }
    Ok(())
}

/// Whether a path segment is a device name Windows reserves (whatever the extension: `nul.csv` is `NUL`), or ends
/// in a dot or a space (which Windows strips, so two names would meet).
fn is_reserved_segment(seg: &str) -> bool {
    if seg.ends_with('.') || seg.ends_with(' ') {
        return true;
    }
    let stem = seg.split('.').next().unwrap_or(seg).trim_end();
    let upper = stem.to_ascii_uppercase();
    matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit()
            && upper.as_bytes()[3] != b'0')
}

/// Checks a study or dataset name: 1 to 64 characters of `A-Z a-z 0-9 _ - .`, not starting with `.`, not ending in
/// `.`, and not a device name Windows reserves (`CON`, `NUL`, `COM1`, ...), since names become file names.
///
/// # Errors
/// EXP002 `invalid_name` with `field`.
pub fn validate_name(name: &str, field: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && !is_reserved_segment(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            Reason::InvalidName,
            format!("{field} names have 1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'"),
        )
        .with_field(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_validated() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a\\b",
            "a\nb",
            "./a",
            "c:x",
            "job/nul.csv",
            "CON",
            "job/com1.xpt",
            "LPT9/x",
            "job/a.",
            "job/a ",
        ] {
            assert_eq!(
                validate_path(bad).unwrap_err().reason(),
                "invalid_path",
                "{bad:?}"
            );
        }
        validate_path("job/dm.csv").unwrap();
        validate_path("job/com0.csv").unwrap();
        validate_path("job/console.csv").unwrap();
        validate_path("m5/datasets/s1/tabulations/sdtm/co.xpt").unwrap();
        for bad in ["NUL", "con", "Com3", "a."] {
            assert_eq!(
                validate_name(bad, "dataset").unwrap_err().reason(),
                "invalid_name",
                "{bad:?}"
            );
        }
        validate_name("CO", "dataset").unwrap();
    }
}
