//! The embedded fonts and what the layout measures with them.
//!
//! Text is drawn in DejaVu Sans Condensed (regular and bold), compiled into the library from `formats/fonts/`
//! (with their licence): no system font is ever read, so the same document gives the same bytes on every machine.
//! Text is set one glyph per character with the fonts' advance widths, the same widths the layout measures, so a
//! line never comes out wider than it was measured. There is no kerning, ligature, complex-script shaping or
//! bidirectional reordering: scripts that need them are drawn character by character, left to right. A character
//! the fonts lack is drawn as the `.notdef` glyph, which PDF/A forbids: the writer's validation then fails the job
//! (see [`super::render_pdf`]).

use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::charmap::Charmap;
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::raw::TableProvider;
use skrifa::{FontRef, MetadataProvider};
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};

static REGULAR: &[u8] = include_bytes!("../../fonts/DejaVuSansCondensed.ttf");
static BOLD: &[u8] = include_bytes!("../../fonts/DejaVuSansCondensed-Bold.ttf");

/// One font: krilla's handle for drawing, skrifa's tables for measuring.
pub(crate) struct Face {
    pub(crate) font: Font,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    /// Units per em, to normalise advances.
    upem: f32,
}

impl Face {
    fn load(data: &'static [u8]) -> Result<Face> {
        let broken = || Error::server(Reason::FontUnavailable, "an embedded font cannot be read");
        let font_ref = FontRef::new(data).map_err(|_| broken())?;
        let upem = f32::from(font_ref.head().map_err(|_| broken())?.units_per_em());
        Ok(Face {
            font: Font::new(data.into(), 0).ok_or_else(broken)?,
            charmap: font_ref.charmap(),
            metrics: font_ref.glyph_metrics(Size::unscaled(), LocationRef::default()),
            upem,
        })
    }

    /// The glyph of `c` (0, `.notdef`, when the font lacks it) and its advance in ems.
    fn glyph(&self, c: char) -> (u32, f32) {
        let gid = self.charmap.map(c).map_or(0, |g| g.to_u32());
        let advance = self
            .metrics
            .advance_width(skrifa::GlyphId::new(gid))
            .unwrap_or(0.0);
        (gid, advance / self.upem)
    }

    /// The width of `text` at `size` points.
    pub(crate) fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.glyph(c).1).sum::<f32>() * size
    }

    /// The glyphs that draw `text`, one per character, each mapped back to its character (so that text can be
    /// extracted and searched).
    pub(crate) fn glyphs(&self, text: &str) -> Vec<KrillaGlyph> {
        text.char_indices()
            .map(|(i, c)| {
                let (gid, advance) = self.glyph(c);
                KrillaGlyph::new(
                    GlyphId::new(gid),
                    advance,
                    0.0,
                    0.0,
                    0.0,
                    i..i + c.len_utf8(),
                    None,
                )
            })
            .collect()
    }

    /// `text` shortened with `…` to fit `max` points at `size`.
    pub(crate) fn fit(&self, text: &str, size: f32, max: f32) -> String {
        if self.width(text, size) <= max {
            return text.to_string();
        }
        let ellipsis = self.width("…", size);
        let mut out = String::new();
        let mut w = 0.0;
        for c in text.chars() {
            let cw = self.glyph(c).1 * size;
            if w + cw + ellipsis > max {
                break;
            }
            w += cw;
            out.push(c);
        }
        out.push('…');
        out
    }

    /// `text` broken into lines of at most `max` points at `size`: at spaces where it can, inside a word that is
    /// longer than a line. Line breaks in the text are kept; an empty text is one empty line.
    pub(crate) fn wrap(&self, text: &str, size: f32, max: f32) -> Vec<String> {
        let space = self.width(" ", size);
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            let mut width = 0.0f32;
            for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
                let ww = self.width(word, size);
                let gap = if line.is_empty() { 0.0 } else { space };
                if width + gap + ww <= max {
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(word);
                    width += gap + ww;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    width = 0.0;
                }
                if ww <= max {
                    line.push_str(word);
                    width = ww;
                    continue;
                }
                // A word longer than the line: break it between characters.
                for c in word.chars() {
                    let cw = self.glyph(c).1 * size;
                    if width + cw > max && !line.is_empty() {
                        lines.push(std::mem::take(&mut line));
                        width = 0.0;
                    }
                    line.push(c);
                    width += cw;
                }
            }
            lines.push(line);
        }
        lines
    }
}

/// The two faces every document uses.
pub(crate) struct Fonts {
    /// Body text.
    pub(crate) regular: Face,
    /// Headings, table headers, KPI values.
    pub(crate) bold: Face,
}

impl Fonts {
    /// Loads the embedded fonts.
    ///
    /// # Errors
    /// EXP005 `font_unavailable` if an embedded font cannot be read (a broken build).
    pub(crate) fn load() -> Result<Fonts> {
        Ok(Fonts {
            regular: Face::load(REGULAR)?,
            bold: Face::load(BOLD)?,
        })
    }

    /// The regular or the bold face.
    pub(crate) fn face(&self, bold: bool) -> &Face {
        if bold {
            &self.bold
        } else {
            &self.regular
        }
    }
}

/// Text as it can be drawn: a tab becomes a space, a carriage return before a line feed is dropped (and a lone one
/// becomes a line break), and other control characters become U+FFFD, the replacement character.
pub(crate) fn clean(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            '\r' => '\n',
            '\n' => '\n',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_wraps_and_fits() -> Result<()> {
        let f = Fonts::load()?;
        let r = &f.regular;
        assert!(r.width("WWW", 10.0) > r.width("iii", 10.0));
        assert_eq!(r.width("", 10.0), 0.0);
        assert!((r.width("ab", 20.0) - 2.0 * r.width("ab", 10.0)).abs() < 1e-3);
        let lines = r.wrap(
            "one two three four five six",
            10.0,
            r.width("one two", 10.0) + 0.1,
        );
        assert_eq!(lines, vec!["one two", "three", "four", "five six"]);
        let long = "x".repeat(40);
        let lines = r.wrap(&long, 10.0, r.width("xxxxxxxxxx", 10.0) + 0.1);
        assert_eq!(lines.len(), 4);
        assert!(lines
            .iter()
            .all(|l| r.width(l, 10.0) <= r.width("xxxxxxxxxx", 10.0) + 0.1));
        assert_eq!(r.wrap("a\nb", 10.0, 100.0), vec!["a", "b"]);
        assert_eq!(r.wrap("", 10.0, 100.0), vec![""]);
        let fitted = r.fit("a fairly long heading", 10.0, r.width("a fairly", 10.0));
        assert!(fitted.ends_with('…') && r.width(&fitted, 10.0) <= r.width("a fairly", 10.0));
        assert_eq!(clean("a\tb\r\nc\u{7}"), "a b\nc\u{FFFD}");
        // Every glyph the renderer itself draws is in the fonts.
        for c in ['…', '\u{FFFD}', '·', 'é', 'Ü', '–'] {
            assert_ne!(r.glyph(c).0, 0, "{c}");
            assert_ne!(f.bold.glyph(c).0, 0, "{c}");
        }
        assert_eq!(r.glyph('\u{4E2D}').0, 0);
        Ok(())
    }
}
