//! Character encodings of XPORT text: the file carries no encoding marker (formats.md §1.1), so the writer is told
//! one ([`XptEncoding`]) and the reader is told or guesses ([`ReadEncoding`]).

use trialport_core::error::Reason;
use trialport_core::{Error, Result};

/// How the writer stores text (values and labels). Names are always ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XptEncoding {
    /// ASCII only, as FDA expects: any other character is an `fda_check_failed` violation. The default.
    #[default]
    Ascii,
    /// ISO 8859-1: U+0000-U+00FF, one byte each.
    Latin1,
    /// Windows-1252, the "Windows encoding" TS-140 names for SAS sessions in Western European locales.
    Windows1252,
    /// UTF-8 bytes as they are (lengths count bytes).
    Utf8,
}

impl XptEncoding {
    /// The option value: `ascii`, `latin1`, `windows-1252` or `utf8`.
    pub fn as_str(self) -> &'static str {
        match self {
            XptEncoding::Ascii => "ascii",
            XptEncoding::Latin1 => "latin1",
            XptEncoding::Windows1252 => "windows-1252",
            XptEncoding::Utf8 => "utf8",
        }
    }

    /// Parses an option value (see [`XptEncoding::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ascii" => XptEncoding::Ascii,
            "latin1" => XptEncoding::Latin1,
            "windows-1252" => XptEncoding::Windows1252,
            "utf8" => XptEncoding::Utf8,
            _ => return None,
        })
    }

    /// The encoded length of `s` in bytes, or why it cannot be encoded.
    #[inline]
    pub(crate) fn encoded_len(self, s: &str) -> std::result::Result<usize, TextIssue> {
        if s.is_ascii() {
            return Ok(s.len());
        }
        match self {
            XptEncoding::Ascii => Err(TextIssue::NonAscii),
            XptEncoding::Utf8 => Ok(s.len()),
            XptEncoding::Latin1 | XptEncoding::Windows1252 => {
                let mut n = 0;
                for c in s.chars() {
                    self.single_byte(c).ok_or(TextIssue::Unrepresentable)?;
                    n += 1;
                }
                Ok(n)
            }
        }
    }

    /// Appends the encoding of `s` to `out` (call [`XptEncoding::encoded_len`] first: unencodable characters are
    /// skipped here).
    #[inline]
    pub(crate) fn encode_into(self, s: &str, out: &mut Vec<u8>) {
        if s.is_ascii() || matches!(self, XptEncoding::Utf8 | XptEncoding::Ascii) {
            out.extend_from_slice(s.as_bytes());
            return;
        }
        out.extend(s.chars().filter_map(|c| self.single_byte(c)));
    }

    fn single_byte(self, c: char) -> Option<u8> {
        let u = u32::from(c);
        match self {
            XptEncoding::Latin1 => u8::try_from(u).ok(),
            XptEncoding::Windows1252 => {
                if u < 0x80 || (0xA0..=0xFF).contains(&u) {
                    return u8::try_from(u).ok();
                }
                CP1252_HIGH
                    .iter()
                    .position(|&h| h == c)
                    .map(|i| 0x80 + i as u8)
            }
            _ => u8::try_from(u).ok().filter(u8::is_ascii),
        }
    }
}

/// Why a text cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextIssue {
    /// Not ASCII, and no encoding was chosen.
    NonAscii,
    /// A character the chosen encoding lacks.
    Unrepresentable,
}

/// How the reader turns bytes into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadEncoding {
    /// Each value as UTF-8 when it is valid UTF-8, else as Windows-1252 (which decodes every byte). ASCII, the
    /// FDA norm, reads the same either way. The default.
    #[default]
    Auto,
    /// UTF-8; invalid bytes are EXP002 `invalid_encoding`.
    Utf8,
    /// ISO 8859-1.
    Latin1,
    /// Windows-1252 (the five unassigned bytes read as the C1 controls of the same number).
    Windows1252,
}

impl ReadEncoding {
    /// Decodes `bytes`, appending to `scratch` when a conversion is needed; returns the text.
    #[inline]
    pub(crate) fn decode<'a>(&self, bytes: &'a [u8], scratch: &'a mut String) -> Result<&'a str> {
        match self {
            ReadEncoding::Utf8 => std::str::from_utf8(bytes).map_err(|_| invalid_encoding()),
            ReadEncoding::Auto => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(s),
                Err(_) => Ok(decode_single(bytes, true, scratch)),
            },
            ReadEncoding::Latin1 | ReadEncoding::Windows1252 => match bytes.is_ascii() {
                // ASCII is valid UTF-8.
                true => std::str::from_utf8(bytes).map_err(|_| invalid_encoding()),
                false => Ok(decode_single(
                    bytes,
                    *self == ReadEncoding::Windows1252,
                    scratch,
                )),
            },
        }
    }
}

fn invalid_encoding() -> Error {
    Error::validation(
        Reason::InvalidEncoding,
        "the XPT file holds text that is not valid UTF-8",
    )
}

fn decode_single<'a>(bytes: &[u8], cp1252: bool, scratch: &'a mut String) -> &'a str {
    scratch.clear();
    for &b in bytes {
        let c = if cp1252 && (0x80..0xA0).contains(&b) {
            CP1252_HIGH[usize::from(b - 0x80)]
        } else {
            char::from(b)
        };
        scratch.push(c);
    }
    scratch
}

/// Windows-1252 bytes 0x80-0x9F; the five unassigned ones map to the C1 control of the same number.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_round_trips_every_byte() {
        let all: Vec<u8> = (0u8..=255).collect();
        let mut scratch = String::new();
        let text = ReadEncoding::Windows1252
            .decode(&all, &mut scratch)
            .unwrap()
            .to_string();
        assert_eq!(XptEncoding::Windows1252.encoded_len(&text), Ok(256));
        let mut out = Vec::new();
        XptEncoding::Windows1252.encode_into(&text, &mut out);
        assert_eq!(out, all);
        assert!(text.contains('\u{2019}'));
    }

    #[test]
    fn latin1_and_ascii_limits() {
        assert_eq!(XptEncoding::Latin1.encoded_len("Grüße"), Ok(5));
        assert_eq!(
            XptEncoding::Latin1.encoded_len("Alzheimer\u{2019}s"),
            Err(TextIssue::Unrepresentable)
        );
        assert_eq!(
            XptEncoding::Ascii.encoded_len("Grüße"),
            Err(TextIssue::NonAscii)
        );
        assert_eq!(XptEncoding::Utf8.encoded_len("Grüße"), Ok(7));
        let mut scratch = String::new();
        assert_eq!(
            ReadEncoding::Auto
                .decode("Grüße".as_bytes(), &mut scratch)
                .unwrap(),
            "Grüße"
        );
        assert_eq!(
            ReadEncoding::Auto
                .decode(b"Alzheimer\x92s", &mut scratch)
                .unwrap(),
            "Alzheimer\u{2019}s"
        );
        assert_eq!(
            ReadEncoding::Latin1
                .decode(b"Gr\xfc\xdfe", &mut scratch)
                .unwrap(),
            "Grüße"
        );
        assert!(ReadEncoding::Utf8.decode(b"\xff", &mut scratch).is_err());
    }
}
