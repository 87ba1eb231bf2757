//! The `pdf` format: reports and dashboards as archival PDF (PDF/A-2b), the way a clinical table, listing or figure
//! (TLF) is printed.
//!
//! - A report opens with a title page: study, title, data cut-off, parameters, generation time, engine version
//!   and the signature manifestation. Its sections follow from the second page on; a dashboard starts with its
//!   heading and ends with the signature manifestation.
//! - Every page has a running header (study, title, data cut-off) and footer (generation time, engine, whether
//!   the document is signed, "Page x of y").
//! - Tables repeat their header row on every page they span and never break a row across pages (but for a row
//!   taller than a whole page, which continues line by line); text is wrapped inside its column; numbers are
//!   right-aligned; footnotes follow the table.
//! - KPI tiles; bar and line charts as vector graphics, drawn from the same marks as the HTML page's SVG
//!   ([`crate::document::svg::marks`]).
//! - The signature manifestation (21 CFR 11.50): each e-signature's printed name, meaning and UTC date and time,
//!   or "This document is not electronically signed.", and the SHA-256 of the computed content that the job's
//!   signed manifest records as `document.content_sha256`.
//!
//! Fonts are DejaVu Sans Condensed, embedded from the repository (`formats/fonts/`, with their licence), never
//! read from the system. The writer, krilla, validates the file against PDF/A-2b while writing it and refuses a
//! violation: the render then fails with EXP005 `pdfa_violation` naming the rule (`details.rule`, e.g.
//! `notdef_glyph` for a character the embedded fonts lack, and `details.clause` of ISO 19005-2), and no byte is
//! written. The whole file is built in memory before the first byte goes out.
//!
//! The bytes depend only on the document and the options: the creation date in the metadata is the document's
//! `generated_at`, and the file identifier is derived from its content hash.

mod compose;
mod draw;
mod fonts;
mod layout;
mod table;

use trialport_core::document::Document;
use trialport_core::error::{Error, Result};
use trialport_core::format::{Capability, Format, FormatInfo, FormatOptions, OptionInfo, Output};

/// The `pdf` format: reports and dashboards as PDF/A-2b documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct PdfFormat;

/// Paper size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageSize {
    /// ISO A4, 210 × 297 mm (the default).
    #[default]
    A4,
    /// US Letter, 8.5 × 11 in.
    Letter,
}

/// Page orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    /// Taller than wide (the default).
    #[default]
    Portrait,
    /// Wider than tall, for tables with many columns.
    Landscape,
}

/// The typed options of the `pdf` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PdfOptions {
    /// Paper size. Defaults to [`PageSize::A4`].
    pub page_size: PageSize,
    /// Orientation. Defaults to [`Orientation::Portrait`].
    pub orientation: Orientation,
}

const OPTIONS: &[OptionInfo] = &[
    OptionInfo::one_of("page_size", "a4", "paper size", &["a4", "letter"]),
    OptionInfo::one_of(
        "orientation",
        "portrait",
        "page orientation (landscape fits wider tables)",
        &["portrait", "landscape"],
    ),
];

impl PdfOptions {
    /// Parses the string map: the one place the `pdf` options are read.
    ///
    /// # Errors
    /// EXP002 `unknown_option` or `invalid_option`.
    pub fn parse(options: &FormatOptions) -> Result<Self> {
        options.check_known("pdf", OPTIONS)?;
        let page_size = match options.get("page_size") {
            Some("letter") => PageSize::Letter,
            _ => PageSize::A4,
        };
        let orientation = match options.get("orientation") {
            Some("landscape") => Orientation::Landscape,
            _ => Orientation::Portrait,
        };
        Ok(PdfOptions {
            page_size,
            orientation,
        })
    }

    /// Width and height of a page in points.
    fn page(&self) -> (f32, f32) {
        let (w, h) = match self.page_size {
            PageSize::A4 => (595.276, 841.89),
            PageSize::Letter => (612.0, 792.0),
        };
        match self.orientation {
            Orientation::Portrait => (w, h),
            Orientation::Landscape => (h, w),
        }
    }
}

impl Format for PdfFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "pdf",
            name: "PDF/A-2b document",
            extension: "pdf",
            media_type: "application/pdf",
            capabilities: vec![Capability::Report, Capability::Dashboard],
            options: OPTIONS.to_vec(),
        }
    }

    fn check_options(&self, options: &FormatOptions) -> Result<()> {
        PdfOptions::parse(options).map(|_| ())
    }

    fn render(&self, doc: &Document, options: &FormatOptions, out: Output<'_>) -> Result<()> {
        render_pdf(doc, &PdfOptions::parse(options)?, out)
    }
}

/// Renders `doc` as a PDF/A-2b file to `out`, validated by the writer before any byte is written.
///
/// # Errors
/// EXP002 when a table column cannot be displayed or a table has more columns than fit across the page
/// (`table_too_wide`); EXP005 `pdfa_violation` when the file would violate PDF/A-2b (`details.rule`,
/// `details.clause`); EXP005 for I/O.
pub fn render_pdf(doc: &Document, options: &PdfOptions, out: Output<'_>) -> Result<()> {
    let fonts = fonts::Fonts::load()?;
    let manifestation = crate::document::manifestation::Manifestation::of(doc)?;
    let (w, h) = options.page();
    let geometry = layout::Geometry::new(w, h);
    let pages = compose::compose(doc, &manifestation, &fonts, geometry)?;
    let bytes = draw::draw(doc, &pages, &fonts, geometry, &manifestation.content_sha256)?;
    out.write_all(&bytes)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("writing the PDF", &e))
}
