//! The restricted three-digit ZIP prefixes of Safe Harbor, kept as versioned data.
//!
//! The built-in list is `restricted_zip3.txt` beside this file: version `hhs-2000-census`, the 17 prefixes that the
//! HHS Office for Civil Rights lists from the 2000 Census (036, 059, 063, 102, 203, 556, 692, 790, 821, 823, 830,
//! 831, 878, 879, 884, 890, 893) in its *Guidance Regarding Methods for De-identification of Protected Health
//! Information* (2012), section 3.4. The version is recorded in every de-identified export's manifest, so a new
//! list is a new file with a new version, never an edit of the old one.

use crate::error::Reason;
use crate::error::{Error, Result};
use std::collections::BTreeSet;

/// The text of the built-in list.
const BUILTIN: &str = include_str!("restricted_zip3.txt");

/// A list of restricted three-digit ZIP prefixes with its version and source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zip3List {
    version: String,
    census: Option<u16>,
    source: String,
    prefixes: BTreeSet<[u8; 3]>,
}

impl Zip3List {
    /// The built-in list (version `hhs-2000-census`).
    ///
    /// # Errors
    /// EXP005 `invalid_zip3_list` if the built-in file were malformed (a test guards against it).
    pub fn builtin() -> Result<Self> {
        Zip3List::parse(BUILTIN).map_err(|_| {
            Error::server(
                Reason::InvalidZip3List,
                "the built-in restricted ZIP list is malformed",
            )
        })
    }

    /// Parses a list: `version:`, optional `census:` and `source:` header lines, then one three-digit prefix per
    /// line; blank lines and text after `#` are ignored.
    ///
    /// # Errors
    /// EXP002 `invalid_zip3_list` for a line that is neither, a missing version or source, or no prefix.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |m: &str| Error::validation(Reason::InvalidZip3List, m.to_string());
        let mut version = None;
        let mut census = None;
        let mut source = None;
        let mut prefixes = BTreeSet::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if let Some(v) = line.strip_prefix("version:") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("census:") {
                census = Some(
                    v.trim()
                        .parse::<u16>()
                        .map_err(|_| bad("the census year is not a number"))?,
                );
            } else if let Some(v) = line.strip_prefix("source:") {
                source = Some(v.trim().to_string());
            } else {
                let b = line.as_bytes();
                if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
                    return Err(bad("a line is not a three-digit ZIP prefix"));
                }
                prefixes.insert([b[0], b[1], b[2]]);
            }
        }
        let version = version
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad("the list has no version"))?;
        let source = source
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("the list has no source"))?;
        if prefixes.is_empty() {
            return Err(bad("the list has no prefix"));
        }
        Ok(Zip3List {
            version,
            census,
            source,
            prefixes,
        })
    }

    /// The version, e.g. `hhs-2000-census`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The census year the list is based on, when given.
    pub fn census(&self) -> Option<u16> {
        self.census
    }

    /// Where the list comes from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether the list has no prefix (never true for a parsed list).
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The prefixes, ascending, as text.
    pub fn prefixes(&self) -> Vec<String> {
        self.prefixes
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    /// Whether `prefix` (three ASCII digits) is restricted.
    pub fn is_restricted(&self, prefix: [u8; 3]) -> bool {
        self.prefixes.contains(&prefix)
    }

    /// The Safe Harbor form of a five-digit ZIP code or ZIP+4 (`12345`, `12345-6789`, `123456789`; white space
    /// around it ignored): its first three digits, or `000` for a restricted prefix. Anything else (fewer digits,
    /// letters, a foreign postal code) is `None`: it is redacted, never passed through.
    pub fn generalize(&self, zip: &str) -> Option<String> {
        let b = zip.trim().as_bytes();
        let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
        let valid = match b.len() {
            5 | 9 => digits(b),
            10 => digits(&b[..5]) && b[5] == b'-' && digits(&b[6..]),
            _ => false,
        };
        if !valid {
            return None;
        }
        let prefix = [b[0], b[1], b[2]];
        Some(if self.is_restricted(prefix) {
            "000".to_string()
        } else {
            String::from_utf8_lossy(&prefix).into_owned()
        })
    }

    /// [`Zip3List::generalize`] for a ZIP stored as a number (leading zeros lost): up to 99,999 is a five-digit
    /// code, up to 999,999,999 a ZIP+4; negative or larger numbers are `None`.
    pub fn generalize_number(&self, zip: i128) -> Option<String> {
        match zip {
            0..=99_999 => self.generalize(&format!("{zip:05}")),
            100_000..=999_999_999 => self.generalize(&format!("{zip:09}")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The 17 prefixes as the HHS guidance prints them, typed in independently of the data file.
    const HHS_2000: [&str; 17] = [
        "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
        "879", "884", "890", "893",
    ];

    #[test]
    fn the_builtin_list_is_the_hhs_2000_census_list() {
        let l = Zip3List::builtin().unwrap();
        assert_eq!(l.version(), "hhs-2000-census");
        assert_eq!(l.census(), Some(2000));
        assert!(l.source().contains("hhs.gov"));
        assert_eq!(l.len(), 17);
        assert_eq!(l.prefixes(), HHS_2000.to_vec());
    }

    #[test]
    fn each_restricted_prefix_becomes_000_and_its_neighbours_do_not() {
        let l = Zip3List::builtin().unwrap();
        for p in HHS_2000 {
            assert_eq!(
                l.generalize(&format!("{p}45")).as_deref(),
                Some("000"),
                "{p}"
            );
            assert_eq!(l.generalize(&format!("{p}45-1234")).as_deref(), Some("000"));
            let n: u32 = p.parse().unwrap();
            for m in [n.wrapping_sub(1), n + 1] {
                let q = format!("{m:03}");
                if HHS_2000.contains(&q.as_str()) || m > 999 {
                    continue;
                }
                assert_eq!(l.generalize(&format!("{q}99")).as_deref(), Some(q.as_str()));
            }
        }
    }

    #[test]
    fn zip_forms() {
        let l = Zip3List::builtin().unwrap();
        assert_eq!(l.generalize("02134").as_deref(), Some("021"));
        assert_eq!(l.generalize(" 02134 ").as_deref(), Some("021"));
        assert_eq!(l.generalize("021341234").as_deref(), Some("021"));
        assert_eq!(l.generalize("02134-1234").as_deref(), Some("021"));
        for bad in [
            "",
            "02",
            "021",
            "0213",
            "02134-12",
            "2134A",
            "SW1A 1AA",
            "02134 1234",
            "٠٢١٣٤",
        ] {
            assert_eq!(l.generalize(bad), None, "{bad}");
        }
        assert_eq!(l.generalize_number(2134).as_deref(), Some("021"));
        assert_eq!(l.generalize_number(3601).as_deref(), Some("000"));
        assert_eq!(l.generalize_number(21_341_234).as_deref(), Some("021"));
        assert_eq!(l.generalize_number(-5), None);
        assert_eq!(l.generalize_number(1_000_000_000), None);
    }

    #[test]
    fn malformed_lists_are_refused() {
        for text in [
            "",
            "version: x\n036\n",
            "source: y\n036\n",
            "version: x\nsource: y\n",
            "version: x\nsource: y\n36\n",
            "version: x\nsource: y\ncensus: soon\n036\n",
        ] {
            assert_eq!(
                Zip3List::parse(text).unwrap_err().reason(),
                "invalid_zip3_list"
            );
        }
        let l = Zip3List::parse("version: v2 # new\nsource: s\n123\n").unwrap();
        assert!(l.is_restricted(*b"123"));
        assert_eq!(l.census(), None);
    }
}
