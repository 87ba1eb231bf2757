//! The header records of an XPORT file: literals, timestamps, SAS format names and the 140-byte NAMESTR
//! (formats.md §1.2-1.5 for version 5, §2 for version 8).

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// One record: every XPORT file is a sequence of 80-byte records.
pub const RECORD: usize = 80;
/// Bytes of a NAMESTR as written (VAX/VMS files have 136, which the reader accepts).
pub const NAMESTR_LEN: usize = 140;
/// The first 20 bytes of every header record.
pub(crate) const HEADER_TAG: &[u8; 20] = b"HEADER RECORD*******";

/// The version of the transport format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XptVersion {
    /// SAS Version 5/6 transport, the only one FDA accepts: names up to 8, labels up to 40, values up to 200
    /// bytes. The default.
    #[default]
    V5,
    /// SAS Version 8/9 transport: names up to 32, labels up to 256, values up to 32,767 bytes.
    V8,
}

impl XptVersion {
    /// `5` or `8`.
    pub fn number(self) -> u8 {
        match self {
            XptVersion::V5 => 5,
            XptVersion::V8 => 8,
        }
    }

    /// The longest name (dataset or variable) in bytes.
    pub fn max_name(self) -> usize {
        match self {
            XptVersion::V5 => 8,
            XptVersion::V8 => 32,
        }
    }

    /// The longest variable label in bytes (the dataset label is 40 in both).
    pub fn max_label(self) -> usize {
        match self {
            XptVersion::V5 => 40,
            XptVersion::V8 => 256,
        }
    }

    /// The longest character value in bytes.
    pub fn max_char(self) -> usize {
        match self {
            XptVersion::V5 => 200,
            XptVersion::V8 => 32_767,
        }
    }

    /// The most variables a member can have (v5: a 4-digit count; v8: a 16-bit variable number).
    pub fn max_variables(self) -> usize {
        match self {
            XptVersion::V5 => 9_999,
            XptVersion::V8 => 32_767,
        }
    }

    /// The 8-character record names, in file order: library, member, descriptor, namestr, obs.
    pub(crate) fn names(self) -> [&'static [u8; 8]; 5] {
        match self {
            XptVersion::V5 => [
                b"LIBRARY ",
                b"MEMBER  ",
                b"DSCRPTR ",
                b"NAMESTR ",
                b"OBS     ",
            ],
            XptVersion::V8 => [
                b"LIBV8   ",
                b"MEMBV8  ",
                b"DSCPTV8 ",
                b"NAMSTV8 ",
                b"OBSV8   ",
            ],
        }
    }
}

/// A header record: the tag, the 8-byte name, the second tag and 30 digits (or other text), then blanks.
pub(crate) fn header_record(name: &[u8; 8], tail: &[u8]) -> [u8; RECORD] {
    let mut r = [b' '; RECORD];
    r[..20].copy_from_slice(HEADER_TAG);
    r[20..28].copy_from_slice(name);
    r[28..48].copy_from_slice(b"HEADER RECORD!!!!!!!");
    let n = tail.len().min(32);
    r[48..48 + n].copy_from_slice(&tail[..n]);
    r
}

/// Whether `record` is the header record named `name` (the first 48 bytes).
pub(crate) fn is_header(record: &[u8], name: &[u8; 8]) -> bool {
    record.len() >= 48
        && &record[..20] == HEADER_TAG
        && &record[20..28] == name
        && &record[28..48] == b"HEADER RECORD!!!!!!!"
}

/// The 30 digits after a header's name for the library, descriptor and obs records.
pub(crate) const ZEROS30: &[u8; 30] = b"000000000000000000000000000000";
/// The 30 digits of a member header: `160` (undocumented, written verbatim) and the NAMESTR length 140.
pub(crate) const MEMBER30: &[u8; 30] = b"000000000000000001600000000140";

/// The 30 digits of a NAMESTR header for `count` variables: the count right-aligned ending at offset 57, as four
/// digits in v5 and six in v8 (identical bytes below 10,000 variables).
pub(crate) fn namestr_digits(count: usize) -> [u8; 30] {
    let mut d = *ZEROS30;
    let text = format!("{count:06}");
    let t = text.as_bytes();
    let start = 10 - t.len().min(10);
    d[start..10].copy_from_slice(&t[t.len() - (10 - start)..]);
    d
}

const MONTHS: [&[u8; 3]; 12] = [
    b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC",
];

/// The first year of the two-digit-year window: `yy` < 60 reads as 20yy, else 19yy (ReadStat's pivot), so the
/// writer accepts 1960-2059.
pub const YEAR_PIVOT: i32 = 1960;

/// Formats a header timestamp as `ddMMMyy:hh:mm:ss` (16 bytes).
pub fn format_timestamp(t: NaiveDateTime) -> [u8; 16] {
    let text = format!(
        "{:02}{}{:02}:{:02}:{:02}:{:02}",
        t.day(),
        std::str::from_utf8(MONTHS[t.month0() as usize]).unwrap_or("JAN"),
        t.year().rem_euclid(100),
        t.hour(),
        t.minute(),
        t.second()
    );
    let mut out = [b' '; 16];
    let n = text.len().min(16);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// Parses a header timestamp `ddMMMyy:hh:mm:ss` (years through [`YEAR_PIVOT`]); `None` when malformed.
pub fn parse_timestamp(field: &[u8]) -> Option<NaiveDateTime> {
    if field.len() < 16 || field[7] != b':' || field[10] != b':' || field[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = std::str::from_utf8(&field[r]).ok()?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let day = num(0..2)?;
    let mut mon = [0u8; 3];
    mon.copy_from_slice(&field[2..5]);
    mon.make_ascii_uppercase();
    let month = MONTHS.iter().position(|m| **m == mon)? as u32 + 1;
    let yy = num(5..7)? as i32;
    let year = if yy + 1900 < YEAR_PIVOT {
        2000 + yy
    } else {
        1900 + yy
    };
    NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(num(8..10)?, num(11..13)?, num(14..16)?)
}

/// A SAS format or informat as NAMESTR stores it: a name of up to 8 bytes (v5), a width and decimals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SasFormat {
    /// The name without width, e.g. `DATE`, `$`, `E8601DA`, or empty (`8.2` has no name).
    pub name: String,
    /// The width, e.g. 9 for `DATE9.`, or 0.
    pub width: u16,
    /// The decimals, e.g. 2 for `8.2`, or 0.
    pub decimals: u16,
}

impl SasFormat {
    /// Parses `DATE9.`, `$CHAR20.`, `8.2`, `BEST12.`, `E8601DA.` (the trailing dot may be left out); `None` when
    /// it is not of that shape.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || !text.is_ascii() {
            return None;
        }
        let (head, decimals) = match text.rfind('.') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, ""),
        };
        let digits_at = head
            .bytes()
            .rposition(|b| !b.is_ascii_digit())
            .map_or(0, |i| i + 1);
        let (name, width) = head.split_at(digits_at);
        let number = |s: &str| -> Option<u16> {
            if s.is_empty() {
                Some(0)
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok().filter(|n| *n <= i16::MAX as u16)
            } else {
                None
            }
        };
        let valid_name = name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphabetic()
                || b == b'_'
                || (i > 0 && b.is_ascii_digit())
                || (i == 0 && b == b'$')
        });
        if !valid_name || (name.is_empty() && width.is_empty()) {
            return None;
        }
        Some(SasFormat {
            name: name.to_string(),
            width: number(width)?,
            decimals: number(decimals)?,
        })
    }

    /// Reads the name, width and decimals fields of a NAMESTR; `None` when all are empty.
    pub(crate) fn from_fields(name: &str, width: i16, decimals: i16) -> Option<Self> {
        if name.is_empty() && width == 0 && decimals == 0 {
            return None;
        }
        Some(SasFormat {
            name: name.to_string(),
            width: width.max(0) as u16,
            decimals: decimals.max(0) as u16,
        })
    }

    /// The text form, e.g. `DATE9.` or `8.2`.
    pub fn text(&self) -> String {
        let mut s = self.name.clone();
        if self.width > 0 {
            s.push_str(&self.width.to_string());
        }
        s.push('.');
        if self.decimals > 0 {
            s.push_str(&self.decimals.to_string());
        }
        s
    }
}

/// Everything a NAMESTR says about one variable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Namestr {
    /// 1 numeric, 2 character.
    pub ntype: i16,
    /// Bytes in the observation.
    pub length: u16,
    /// Variable number as stored (1-based in files SAS writes).
    pub number: i16,
    /// The name (v8: the long name when present).
    pub name: Vec<u8>,
    /// The label bytes (v8: completed from the label section when longer than 40).
    pub label: Vec<u8>,
    /// The display format.
    pub format: Option<SasFormat>,
    /// The informat.
    pub informat: Option<SasFormat>,
    /// Justification: 0 left, 1 right.
    pub justify: i16,
    /// Offset of the value in the observation.
    pub position: u32,
}

/// Copies `src` into `dst`, padding with blanks (the caller has checked the length; longer text is cut).
pub(crate) fn put_text(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    dst[n..].fill(b' ');
}

/// The text of a field without trailing blanks and NULs.
pub(crate) fn trim_field(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(0, |i| i + 1);
    &b[..end]
}

fn be16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

impl Namestr {
    /// The 140 bytes of this NAMESTR. `label` is cut at 40 bytes (v8 keeps the full one in the label section);
    /// in v8 the long name and the label length fill the `rest` area.
    pub fn encode(&self, version: XptVersion) -> [u8; NAMESTR_LEN] {
        let mut b = [0u8; NAMESTR_LEN];
        b[0..2].copy_from_slice(&self.ntype.to_be_bytes());
        b[4..6].copy_from_slice(&(self.length as i16).to_be_bytes());
        b[6..8].copy_from_slice(&self.number.to_be_bytes());
        put_text(&mut b[8..16], &self.name);
        put_text(&mut b[16..56], cut(&self.label, 40));
        let (fname, fw, fd) = fields(self.format.as_ref());
        put_text(&mut b[56..64], fname);
        b[64..66].copy_from_slice(&fw.to_be_bytes());
        b[66..68].copy_from_slice(&fd.to_be_bytes());
        b[68..70].copy_from_slice(&self.justify.to_be_bytes());
        let (iname, iw, id) = fields(self.informat.as_ref());
        put_text(&mut b[72..80], iname);
        b[80..82].copy_from_slice(&iw.to_be_bytes());
        b[82..84].copy_from_slice(&id.to_be_bytes());
        b[84..88].copy_from_slice(&self.position.to_be_bytes());
        if version == XptVersion::V8 {
            put_text(&mut b[88..120], &self.name);
            b[120..122].copy_from_slice(&(self.label.len() as i16).to_be_bytes());
        }
        b
    }

    /// Reads a NAMESTR of 140 (or 136) bytes (v8: the long name from the `rest` area when present).
    pub fn decode(b: &[u8], version: XptVersion) -> Self {
        let text = |r: std::ops::Range<usize>| trim_field(&b[r]).to_vec();
        let fmt = |name: std::ops::Range<usize>, w: usize| {
            let n = String::from_utf8_lossy(trim_field(&b[name])).into_owned();
            SasFormat::from_fields(&n, be16(&b[w..]), be16(&b[w + 2..]))
        };
        let mut name = text(8..16);
        if version == XptVersion::V8 && b.len() >= 120 {
            let long = text(88..120);
            if !long.is_empty() {
                name = long;
            }
        }
        Namestr {
            ntype: be16(&b[0..]),
            length: be16(&b[4..]).max(0) as u16,
            number: be16(&b[6..]),
            name,
            label: text(16..56),
            format: fmt(56..64, 64),
            informat: fmt(72..80, 80),
            justify: be16(&b[68..]),
            position: u32::from_be_bytes([b[84], b[85], b[86], b[87]]),
        }
    }
}

/// At most `n` bytes of `b`.
pub(crate) fn cut(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

fn fields(f: Option<&SasFormat>) -> (&[u8], i16, i16) {
    match f {
        Some(f) => (cut(f.name.as_bytes(), 8), f.width as i16, f.decimals as i16),
        None => (b"", 0, 0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_literals_are_exact() {
        let lib = header_record(XptVersion::V5.names()[0], ZEROS30);
        assert_eq!(
            &lib[..],
            &b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!000000000000000000000000000000  "[..]
        );
        let member = header_record(XptVersion::V5.names()[1], MEMBER30);
        assert_eq!(
            &member[..],
            &b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140  "[..]
        );
        let ns = header_record(XptVersion::V5.names()[3], &namestr_digits(26));
        assert_eq!(
            &ns[..],
            &b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000002600000000000000000000  "[..]
        );
        let ns8 = header_record(XptVersion::V8.names()[3], &namestr_digits(2));
        assert_eq!(
            &ns8[..],
            &b"HEADER RECORD*******NAMSTV8 HEADER RECORD!!!!!!!000000000200000000000000000000  "[..]
        );
        assert_eq!(&namestr_digits(123_456)[4..10], b"123456");
    }

    #[test]
    fn timestamps_round_trip_within_the_window() {
        let t = parse_timestamp(b"21AUG20:09:14:29").unwrap();
        assert_eq!(t.to_string(), "2020-08-21 09:14:29");
        assert_eq!(&format_timestamp(t), b"21AUG20:09:14:29");
        assert_eq!(parse_timestamp(b"15OCT12:22:56:22").unwrap().year(), 2012);
        assert_eq!(parse_timestamp(b"01JAN60:00:00:00").unwrap().year(), 1960);
        assert_eq!(parse_timestamp(b"31DEC59:23:59:59").unwrap().year(), 2059);
        assert!(parse_timestamp(b"32JAN20:00:00:00").is_none());
        assert!(parse_timestamp(b"                ").is_none());
    }

    #[test]
    fn formats_parse_and_print() {
        for (text, name, w, d) in [
            ("DATE9.", "DATE", 9, 0),
            ("$CHAR20.", "$CHAR", 20, 0),
            ("$32.", "$", 32, 0),
            ("8.2", "", 8, 2),
            ("3.", "", 3, 0),
            ("E8601DA.", "E8601DA", 0, 0),
            ("E8601DA10.", "E8601DA", 10, 0),
            ("BEST12", "BEST", 12, 0),
            ("DATETIME20.", "DATETIME", 20, 0),
        ] {
            let f = SasFormat::parse(text).unwrap();
            assert_eq!(
                (f.name.as_str(), f.width, f.decimals),
                (name, w, d),
                "{text}"
            );
        }
        assert_eq!(SasFormat::parse("DATE9.").unwrap().text(), "DATE9.");
        assert_eq!(SasFormat::parse("8.2").unwrap().text(), "8.2");
        assert_eq!(SasFormat::parse("E8601DA.").unwrap().text(), "E8601DA.");
        for bad in ["", ".", "DA TE9.", "DATE9.x", "9A.", "Ü9."] {
            assert!(SasFormat::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn namestr_layout_matches_sas() {
        // formats.md §1.4: STUDYID, character, length 12, first variable of DM.
        let ns = Namestr {
            ntype: 2,
            length: 12,
            number: 1,
            name: b"STUDYID".to_vec(),
            label: b"Study Identifier".to_vec(),
            ..Namestr::default()
        };
        let b = ns.encode(XptVersion::V5);
        assert_eq!(&b[..8], &[0, 2, 0, 0, 0, 12, 0, 1]);
        assert_eq!(&b[8..16], b"STUDYID ");
        assert_eq!(&b[16..56], b"Study Identifier                        ");
        assert_eq!(&b[56..64], b"        ");
        assert_eq!(&b[64..72], &[0; 8]);
        assert_eq!(&b[72..80], b"        ");
        assert_eq!(&b[80..140], &[0; 60][..]);
        let back = Namestr::decode(&b, XptVersion::V5);
        assert_eq!(back, ns);
    }
}
