//! A small streaming JSON scanner for Dataset-JSON: the top-level object is walked key by key, each value captured
//! as raw bytes (parsed by serde_json when it is metadata, by [`Cells`] when it is a row), so that `rows` is never
//! held whole. Numbers are kept as text and parsed by Rust's correctly rounded parser.

use std::borrow::Cow;
use std::io::Read;
use trialport_core::error::Reason;
use trialport_core::{Error, Result};

/// Bytes read from the input at a time.
const CHUNK: usize = 256 * 1024;

/// A syntax error at a byte offset.
pub(super) fn malformed(offset: u64, what: &str) -> Error {
    Error::validation(
        Reason::MalformedDatasetJson,
        format!("the Dataset-JSON text is not valid JSON: {what}"),
    )
    .with_detail("offset", offset)
}

/// A buffered reader that walks JSON text.
pub(super) struct Scanner {
    r: Box<dyn Read + Send>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Bytes before `buf[0]`.
    consumed: u64,
    /// Whether the input is a decompressed stream (its errors are malformed input, not I/O).
    compressed: bool,
    /// Bytes after which reading stops with an error (for sniffing).
    limit: u64,
}

impl Scanner {
    pub(super) fn new(r: Box<dyn Read + Send>, compressed: bool) -> Self {
        Scanner {
            r,
            buf: vec![0; CHUNK],
            pos: 0,
            end: 0,
            eof: false,
            consumed: 0,
            compressed,
            limit: u64::MAX,
        }
    }

    /// Stops reading (with an error) after `bytes`.
    pub(super) fn with_limit(mut self, bytes: u64) -> Self {
        self.limit = bytes;
        self
    }

    /// Whether the input is a decompressed stream.
    pub(super) fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// The offset of the next byte.
    pub(super) fn offset(&self) -> u64 {
        self.consumed + self.pos as u64
    }

    /// Makes a byte available; false at the end of the input.
    fn fill(&mut self) -> Result<bool> {
        if self.pos < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.consumed += self.end as u64;
        self.pos = 0;
        self.end = 0;
        if self.consumed >= self.limit {
            return Err(malformed(
                self.consumed,
                "the metadata is too long to sniff",
            ));
        }
        loop {
            match self.r.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(&e)),
            }
        }
    }

    fn read_error(&self, e: &std::io::Error) -> Error {
        use std::io::ErrorKind as K;
        if self.compressed
            && matches!(
                e.kind(),
                K::InvalidData | K::InvalidInput | K::UnexpectedEof
            )
        {
            Error::validation(
                Reason::MalformedDsjc,
                "the compressed Dataset-JSON stream is corrupt or truncated",
            )
            .with_detail("offset", self.consumed)
        } else {
            Error::io("reading Dataset-JSON", e)
        }
    }

    /// The next byte, not consumed.
    pub(super) fn peek(&mut self) -> Result<Option<u8>> {
        Ok(if self.fill()? {
            Some(self.buf[self.pos])
        } else {
            None
        })
    }

    /// Consumes one byte.
    pub(super) fn bump(&mut self) {
        self.pos += 1;
    }

    /// Skips a UTF-8 byte order mark at the start.
    pub(super) fn skip_bom(&mut self) -> Result<()> {
        if self.peek()? == Some(0xEF)
            && self.end - self.pos >= 3
            && self.buf[self.pos..self.pos + 3] == [0xEF, 0xBB, 0xBF]
        {
            self.pos += 3;
        }
        Ok(())
    }

    /// Skips whitespace and returns the next byte, not consumed.
    pub(super) fn skip_ws(&mut self) -> Result<Option<u8>> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.bump(),
                other => return Ok(other),
            }
        }
    }

    /// Consumes `b` after optional whitespace.
    pub(super) fn expect(&mut self, b: u8, what: &str) -> Result<()> {
        match self.skip_ws()? {
            Some(c) if c == b => {
                self.bump();
                Ok(())
            }
            Some(_) => Err(malformed(self.offset(), what)),
            None => Err(malformed(self.offset(), "unexpected end of the text")),
        }
    }

    /// Reads an object key (after optional whitespace) and the `:` after it.
    pub(super) fn key(&mut self, scratch: &mut Vec<u8>) -> Result<String> {
        scratch.clear();
        if self.skip_ws()? != Some(b'"') {
            return Err(malformed(self.offset(), "expected an attribute name"));
        }
        let at = self.offset();
        self.capture(scratch)?;
        let key: String =
            serde_json::from_slice(scratch).map_err(|_| malformed(at, "bad attribute name"))?;
        self.expect(b':', "expected ':' after an attribute name")?;
        Ok(key)
    }

    /// Appends the raw bytes of the next JSON value (after optional whitespace) to `out`. Strings and nesting are
    /// followed; the text inside is checked by whoever parses the capture.
    pub(super) fn capture(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let first = match self.skip_ws()? {
            Some(b) => b,
            None => return Err(malformed(self.offset(), "unexpected end of the text")),
        };
        if !matches!(first, b'"' | b'[' | b'{') {
            // A scalar: up to the next delimiter.
            loop {
                if !self.fill()? {
                    return Ok(());
                }
                let chunk = &self.buf[self.pos..self.end];
                match chunk
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    Some(i) => {
                        out.extend_from_slice(&chunk[..i]);
                        self.pos += i;
                        return Ok(());
                    }
                    None => {
                        out.extend_from_slice(chunk);
                        self.pos = self.end;
                    }
                }
            }
        }
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            if !self.fill()? {
                return Err(malformed(self.offset(), "unexpected end of the text"));
            }
            let chunk = &self.buf[self.pos..self.end];
            for (i, &c) in chunk.iter().enumerate() {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if c == b'\\' {
                        escaped = true;
                    } else if c == b'"' {
                        in_string = false;
                        if depth == 0 {
                            out.extend_from_slice(&chunk[..=i]);
                            self.pos += i + 1;
                            return Ok(());
                        }
                    }
                    continue;
                }
                match c {
                    b'"' => in_string = true,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            out.extend_from_slice(&chunk[..=i]);
                            self.pos += i + 1;
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
            out.extend_from_slice(chunk);
            self.pos = self.end;
        }
    }
}

/// One cell of a row.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell<'a> {
    Null,
    Bool(bool),
    Str(Cow<'a, str>),
    /// A number's text, and whether it is an integer (no fraction, no exponent).
    Num(&'a str, bool),
}

/// The cells of one row array, parsed from its raw bytes.
pub(super) struct Cells<'a> {
    b: &'a [u8],
    i: usize,
    first: bool,
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Cells<'a> {
    /// The cells of `b`, which must be one JSON array.
    pub(super) fn new(b: &'a [u8]) -> std::result::Result<Self, &'static str> {
        let mut i = 0;
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'[') {
            return Err("a row is not an array");
        }
        Ok(Cells {
            b,
            i: i + 1,
            first: true,
        })
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }

    /// The next cell, `None` after the closing `]`.
    pub(super) fn next_cell(&mut self) -> std::result::Result<Option<Cell<'a>>, &'static str> {
        self.ws();
        let c = *self.b.get(self.i).ok_or("a row is not closed")?;
        if c == b']' {
            self.i += 1;
            self.ws();
            return if self.i == self.b.len() {
                Ok(None)
            } else {
                Err("text after a row")
            };
        }
        if !self.first {
            if c != b',' {
                return Err("expected ',' between cells");
            }
            self.i += 1;
            self.ws();
        }
        self.first = false;
        let c = *self.b.get(self.i).ok_or("a row is not closed")?;
        let rest = &self.b[self.i..];
        let cell = match c {
            b'"' => {
                let (s, n) = string(rest)?;
                self.i += n;
                Cell::Str(s)
            }
            b'n' if rest.starts_with(b"null") => {
                self.i += 4;
                Cell::Null
            }
            b't' if rest.starts_with(b"true") => {
                self.i += 4;
                Cell::Bool(true)
            }
            b'f' if rest.starts_with(b"false") => {
                self.i += 5;
                Cell::Bool(false)
            }
            b'-' | b'0'..=b'9' => {
                let (n, integer) = number(rest).ok_or("bad number")?;
                self.i += n;
                // The bytes of a valid number are ASCII.
                let text = std::str::from_utf8(&rest[..n]).map_err(|_| "bad number")?;
                Cell::Num(text, integer)
            }
            b'[' | b'{' => return Err("a cell is an array or object"),
            _ => return Err("bad value"),
        };
        Ok(Some(cell))
    }
}

/// The length of the JSON number at the start of `b`, and whether it is an integer.
fn number(b: &[u8]) -> Option<(usize, bool)> {
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |b: &[u8], i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n = digits(b, i);
    if n == 0 || (n > 1 && b[i] == b'0') {
        return None;
    }
    i += n;
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        let n = digits(b, i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
        integer = false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(b, i);
        if n == 0 {
            return None;
        }
        i += n;
        integer = false;
    }
    Some((i, integer))
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// The JSON string at the start of `b` (which is `"`), unescaped, and the bytes it took.
fn string(b: &[u8]) -> std::result::Result<(Cow<'_, str>, usize), &'static str> {
    let body = &b[1..];
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let s = std::str::from_utf8(&body[..i]).map_err(|_| "a string is not UTF-8")?;
                return Ok((Cow::Borrowed(s), i + 2));
            }
            b'\\' => break,
            c if c < 0x20 => return Err("a control character in a string"),
            _ => i += 1,
        }
    }
    // Escapes: decode into an owned string.
    let mut out: Vec<u8> = body[..i].to_vec();
    loop {
        let c = *body.get(i).ok_or("a string is not closed")?;
        match c {
            b'"' => {
                let s = String::from_utf8(out).map_err(|_| "a string is not UTF-8")?;
                return Ok((Cow::Owned(s), i + 2));
            }
            b'\\' => {
                let e = *body.get(i + 1).ok_or("a string is not closed")?;
                i += 2;
                let simple = match e {
                    b'"' => Some(b'"'),
                    b'\\' => Some(b'\\'),
                    b'/' => Some(b'/'),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0c),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'u' => None,
                    _ => return Err("a bad escape in a string"),
                };
                if let Some(s) = simple {
                    out.push(s);
                    continue;
                }
                let hi = hex4(&body[i..]).ok_or("a bad \\u escape")?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if body.get(i..i + 2) != Some(b"\\u") {
                        return Err("a lone surrogate in a string");
                    }
                    let lo = hex4(&body[i + 2..]).ok_or("a bad \\u escape")?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err("a lone surrogate in a string");
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                let ch = char::from_u32(code).ok_or("a lone surrogate in a string")?;
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
            c if c < 0x20 => return Err("a control character in a string"),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cells(text: &str) -> std::result::Result<Vec<Cell<'_>>, &'static str> {
        let mut c = Cells::new(text.as_bytes())?;
        let mut out = Vec::new();
        while let Some(cell) = c.next_cell()? {
            out.push(cell);
        }
        Ok(out)
    }

    #[test]
    fn rows_parse_into_cells() {
        assert_eq!(
            cells(r#" [ "a\"b\u00e9\ud83d\ude00", null , true,false, -12, 1.5e3, 0 ] "#).unwrap(),
            vec![
                Cell::Str(Cow::Owned("a\"bé😀".into())),
                Cell::Null,
                Cell::Bool(true),
                Cell::Bool(false),
                Cell::Num("-12", true),
                Cell::Num("1.5e3", false),
                Cell::Num("0", true),
            ]
        );
        assert_eq!(cells("[]").unwrap(), vec![]);
        assert_eq!(
            cells(r#"["アプリ"]"#).unwrap(),
            vec![Cell::Str(Cow::Borrowed("アプリ"))]
        );
        for bad in [
            "[1,]",
            "[,1]",
            "[1 2]",
            "[01]",
            "[1.]",
            "[-]",
            "[nul]",
            "[[1]]",
            "[{}]",
            "{}",
            "[1",
            "[\"a]",
            "[\"\\x\"]",
            "[\"\\ud800\"]",
            "[1] 2",
            "[\"a\nb\"]",
        ] {
            assert!(cells(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_captured_across_chunks() {
        let text = format!(
            r#"{{"a": "x\"}}", "b" : [1, {{"c": "]"}}], "n": -1.5e2 , "rows": [[{}]]}}"#,
            "\"y\",".repeat(100_000) + "1"
        );
        let mut sc = Scanner::new(Box::new(std::io::Cursor::new(text.into_bytes())), false);
        sc.expect(b'{', "").unwrap();
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        loop {
            let key = sc.key(&mut scratch).unwrap();
            let mut v = Vec::new();
            sc.capture(&mut v).unwrap();
            got.push((key, v.len(), v.first().copied(), v.last().copied()));
            match sc.skip_ws().unwrap() {
                Some(b',') => sc.bump(),
                Some(b'}') => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got[0], ("a".into(), 6, Some(b'"'), Some(b'"')));
        assert_eq!(got[1].0, "b");
        assert_eq!(got[1].3, Some(b']'));
        assert_eq!(got[2], ("n".into(), 6, Some(b'-'), Some(b'2')));
        assert_eq!(got[3].1, 4 * 100_000 + 5);
    }
}
