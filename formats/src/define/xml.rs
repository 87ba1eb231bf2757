//! The one XML escaping function and a small indenting element writer, shared by Define-XML and ODM.

use trialport_core::error::Reason;
use trialport_core::{Error, Result};

/// Appends `s` escaped for XML 1.0 text or attribute values: `& < > " '` as entities, tab, line feed and carriage
/// return as character references (so attribute normalisation keeps them).
///
/// # Errors
/// `Err(())` for a character XML 1.0 cannot carry (C0 controls other than tab, LF, CR; U+FFFE; U+FFFF): it has
/// no escape. What was appended before it stays; callers discard the output on error.
pub(crate) fn escape_into(buf: &mut Vec<u8>, s: &str) -> std::result::Result<(), ()> {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&apos;",
            b'\t' => b"&#9;",
            b'\n' => b"&#10;",
            b'\r' => b"&#13;",
            0x00..=0x1F => return Err(()),
            // U+FFFE and U+FFFF are EF BF BE / EF BF BF in UTF-8.
            0xEF if bytes.get(i + 1) == Some(&0xBF)
                && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) =>
            {
                return Err(())
            }
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(rep);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    Ok(())
}

/// The error for a value with a character XML cannot carry, naming where it is (never the value).
pub(crate) fn bad_character(field: &str) -> Error {
    Error::validation(
        Reason::InvalidXmlCharacter,
        "a value holds a control character that XML 1.0 cannot carry",
    )
    .with_field(field.to_string())
}

/// An attribute: name and value, skipped when the value is `None`.
pub(crate) type Attr<'a> = (&'static str, Option<&'a str>);

/// An element writer that indents by two spaces per level. Names are static; values are escaped.
#[derive(Debug, Default)]
pub(crate) struct Xml {
    /// The document so far.
    pub buf: Vec<u8>,
    open: Vec<&'static str>,
    /// Where errors say the bad value is, e.g. `DM.AGE`.
    pub context: String,
}

impl Xml {
    /// A writer with an empty buffer.
    pub(crate) fn new() -> Self {
        Xml::default()
    }

    fn indent(&mut self) {
        self.buf.push(b'\n');
        for _ in 0..self.open.len() {
            self.buf.extend_from_slice(b"  ");
        }
    }

    /// Appends escaped text, or the error naming [`Xml::context`].
    pub(crate) fn text(&mut self, s: &str) -> Result<()> {
        escape_into(&mut self.buf, s).map_err(|()| bad_character(&self.context))
    }

    fn tag(&mut self, name: &str, attrs: &[Attr<'_>]) -> Result<()> {
        self.buf.push(b'<');
        self.buf.extend_from_slice(name.as_bytes());
        for (k, v) in attrs {
            if let Some(v) = v {
                self.buf.push(b' ');
                self.buf.extend_from_slice(k.as_bytes());
                self.buf.extend_from_slice(b"=\"");
                self.text(v)?;
                self.buf.push(b'"');
            }
        }
        Ok(())
    }

    /// Opens `<name attrs>` on a new line; [`Xml::end`] closes it.
    pub(crate) fn start(&mut self, name: &'static str, attrs: &[Attr<'_>]) -> Result<()> {
        self.indent();
        self.tag(name, attrs)?;
        self.buf.push(b'>');
        self.open.push(name);
        Ok(())
    }

    /// Writes `<name attrs/>` on a new line.
    pub(crate) fn empty(&mut self, name: &'static str, attrs: &[Attr<'_>]) -> Result<()> {
        self.indent();
        self.tag(name, attrs)?;
        self.buf.extend_from_slice(b"/>");
        Ok(())
    }

    /// Writes `<name attrs>text</name>` on a new line.
    pub(crate) fn leaf(
        &mut self,
        name: &'static str,
        attrs: &[Attr<'_>],
        text: &str,
    ) -> Result<()> {
        self.indent();
        self.tag(name, attrs)?;
        self.buf.push(b'>');
        self.text(text)?;
        self.buf.extend_from_slice(b"</");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(b'>');
        Ok(())
    }

    /// Closes the innermost open element on a new line.
    pub(crate) fn end(&mut self) {
        if let Some(name) = self.open.pop() {
            self.indent();
            self.buf.extend_from_slice(b"</");
            self.buf.extend_from_slice(name.as_bytes());
            self.buf.push(b'>');
        }
    }

    /// How many elements are open.
    pub(crate) fn depth(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn esc(s: &str) -> std::result::Result<String, ()> {
        let mut b = Vec::new();
        escape_into(&mut b, s)?;
        Ok(String::from_utf8(b).unwrap())
    }

    #[test]
    fn escapes_markup_quotes_and_whitespace_controls() {
        assert_eq!(
            esc("a<b & \"c\" 'd'>").unwrap(),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(esc("x\ty\nz\r").unwrap(), "x&#9;y&#10;z&#13;");
        assert_eq!(esc("Grüße 日本").unwrap(), "Grüße 日本");
        assert_eq!(esc("").unwrap(), "");
    }

    #[test]
    fn refuses_characters_xml_cannot_carry() {
        for bad in ["a\u{0}b", "\u{1}", "x\u{1F}", "\u{FFFE}", "a\u{FFFF}"] {
            assert!(esc(bad).is_err(), "{bad:?}");
        }
        assert!(esc("\u{FFFD}\u{EFFF}\u{10000}").is_ok());
    }

    #[test]
    fn elements_nest_and_indent() {
        let mut x = Xml::new();
        x.start("A", &[("k", Some("v&")), ("skip", None)]).unwrap();
        x.leaf("B", &[], "t<").unwrap();
        x.empty("C", &[("n", Some("1"))]).unwrap();
        x.end();
        assert_eq!(
            String::from_utf8(x.buf).unwrap(),
            "\n<A k=\"v&amp;\">\n  <B>t&lt;</B>\n  <C n=\"1\"/>\n</A>"
        );
    }
}
