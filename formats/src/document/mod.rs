//! Reports and dashboards: the `html` format, and the renderers other formats call.
//!
//! - [`HtmlFormat`] renders a [`Document`] as one self-contained HTML5 page ([`html`]): inline CSS, charts as inline
//!   SVG ([`svg`]), no scripts and no external resources. The page is also well-formed XML, so XML tools can check
//!   it.
//! - [`render_json`] writes the document as JSON; the `json` format calls it.
//! - `render_xlsx` (feature `xlsx`) writes it as a workbook; the `xlsx` format calls it.
//!
//! Every text that comes from a document goes through [`escape`], the one escape function of this module.
//!
//! # Example
//!
//! ```
//! use trialport_core::document::{Block, Document, DocumentKind, Kpi};
//! use trialport_core::format::{Format, FormatOptions};
//! use trialport_formats::document::HtmlFormat;
//!
//! let doc = Document {
//!     kind: DocumentKind::Dashboard,
//!     title: "Enrolment".into(),
//!     study: "STUDY-1".into(),
//!     generated_at: chrono::DateTime::UNIX_EPOCH,
//!     data_cutoff: None,
//!     parameters: vec![],
//!     blocks: vec![Block::Tiles(vec![Kpi { label: "Subjects".into(), value: Some(120.0) }])],
//!     signatures: vec![],
//! };
//! let mut page = Vec::new();
//! HtmlFormat.render(&doc, &FormatOptions::new().with("theme", "dark"), &mut page)?;
//! assert!(String::from_utf8(page)?.contains("<div class=\"value\">120</div>"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod cells;
pub mod html;
mod json;
pub(crate) mod manifestation;
pub mod svg;

#[cfg(feature = "xlsx")]
pub use crate::xlsx::render_xlsx;
pub use json::render_json;

use std::borrow::Cow;
use trialport_core::document::Document;
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};
use trialport_core::format::{Capability, Format, FormatInfo, FormatOptions, OptionInfo, Output};

/// The `html` format: reports and dashboards as one self-contained HTML5 page.
#[derive(Debug, Clone, Copy, Default)]
pub struct HtmlFormat;

/// Colour scheme of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    /// Dark text on white (the default).
    #[default]
    Light,
    /// Light text on a dark background.
    Dark,
}

/// The typed options of the `html` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HtmlOptions {
    /// Colour scheme. Defaults to [`Theme::Light`].
    pub theme: Theme,
}

const OPTIONS: &[OptionInfo] = &[OptionInfo::one_of(
    "theme",
    "light",
    "colour scheme of the page",
    &["light", "dark"],
)];

impl HtmlOptions {
    /// Parses the string map: the one place the `html` options are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option`.
    pub fn parse(options: &FormatOptions) -> Result<Self> {
        options.check_known("html", OPTIONS)?;
        let theme = match options.get("theme") {
            None | Some("light") => Theme::Light,
            Some("dark") => Theme::Dark,
            Some(_) => {
                return Err(Error::validation(
                    Reason::InvalidOption,
                    "option 'theme' must be light or dark",
                )
                .with_field("options.theme"))
            }
        };
        Ok(HtmlOptions { theme })
    }
}

impl Format for HtmlFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "html",
            name: "HTML page",
            extension: "html",
            media_type: "text/html",
            capabilities: vec![Capability::Report, Capability::Dashboard],
            options: OPTIONS.to_vec(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        HtmlOptions::parse(options).map(|_| ())
    }

    fn render(&self, doc: &Document, options: &FormatOptions, out: Output<'_>) -> Result<()> {
        let options = HtmlOptions::parse(options)?;
        html::render_html(doc, &options, out)
    }
}

/// Escapes text for HTML and XML, in element content and in quoted attributes alike: `& < > " '` become entities,
/// and control characters that neither HTML nor XML allows become U+FFFD.
pub fn escape(text: &str) -> Cow<'_, str> {
    let needs = |c: char| {
        matches!(c, '&' | '<' | '>' | '"' | '\'')
            || (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    };
    if !text.contains(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Paragraphs of a text body: runs of lines separated by blank lines, empty ones dropped.
pub fn paragraphs(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in body.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line.trim_end());
        }
    }
    if !current.is_empty() {
        out.push(current.join("\n"));
    }
    out
}

/// Maps an output error while rendering.
fn write_error(e: std::io::Error) -> Error {
    Error::io("writing the document", &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
        assert_eq!(escape("a\u{1}b\tc"), "a\u{FFFD}b\tc");
    }

    #[test]
    fn paragraphs_split_on_blank_lines() {
        assert_eq!(
            paragraphs("one\ntwo\n\n  \nthree\n"),
            vec!["one\ntwo".to_string(), "three".to_string()]
        );
        assert!(paragraphs("\n\n").is_empty());
    }
}
