//! Laid-out pages drawn with krilla as a PDF/A-2b file: the running header (study, title, data cut-off) and
//! footer (generation time, engine, "Page x of y") on every page, then each page's items; charts drawn from the
//! same marks as the HTML page's SVG.

use super::fonts::{clean, Fonts};
use super::layout::{colour, Geometry, Item, Rgb};
use crate::document::svg::{marks, Anchor, Mark, Rotation, TextRole, FONT_SIZE};
use chrono::{Datelike, Timelike};
use krilla::color::rgb;
use krilla::configure::{Archival, ConfigurationBuilder, ValidationError};
use krilla::geom::{PathBuilder, Point, Rect, Transform};
use krilla::metadata::{DateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::{Document as PdfDocument, SerializeSettings};
use trialport_core::clock::format_utc;
use trialport_core::document::{Chart, Document};
use trialport_core::engine::ENGINE_VERSION;
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};

/// The standard the writer validates against, as named in errors and documentation.
pub(crate) const STANDARD: &str = "PDF/A-2b";

/// Draws `pages` as the PDF of `doc`, validated as PDF/A-2b.
///
/// # Errors
/// EXP005 `pdfa_violation` (with `details.rule`, `details.clause` and `details.standard`) when the writer finds a
/// violation of PDF/A-2b; EXP005 `pdf_failed` for another failure of the writer.
pub(crate) fn draw(
    doc: &Document,
    pages: &[Vec<Item>],
    fonts: &Fonts,
    geometry: Geometry,
    document_id: &str,
) -> Result<Vec<u8>> {
    let configuration = ConfigurationBuilder::new()
        .with_archival_validator(Archival::A2_B)
        .finish()
        .map_err(|_| Error::server(Reason::PdfFailed, "the PDF/A configuration is invalid"))?;
    let settings = SerializeSettings {
        configuration,
        enable_tagging: false,
        ..SerializeSettings::default()
    };
    let mut pdf = PdfDocument::new_with(settings);
    let at = doc.generated_at;
    let date = DateTime::new(u16::try_from(at.year()).unwrap_or(1970))
        .month(at.month() as u8)
        .day(at.day() as u8)
        .hour(at.hour() as u8)
        .minute(at.minute() as u8)
        .second(at.second() as u8)
        .utc_offset_hour(0)
        .utc_offset_minute(0);
    pdf.set_metadata(
        Metadata::new()
            .title(clean(&doc.title))
            .description(format!("{} of study {}", kind(doc), clean(&doc.study)))
            .creator(format!("trialport {ENGINE_VERSION}"))
            .producer(format!("trialport {ENGINE_VERSION} (krilla)"))
            .language("en".into())
            .creation_date(date)
            .document_id(document_id.to_string()),
    );
    let total = pages.len();
    let size = PageSettings::from_wh(geometry.width, geometry.height)
        .ok_or_else(|| Error::server(Reason::PdfFailed, "the page size is invalid"))?;
    for (i, items) in pages.iter().enumerate() {
        let mut page = pdf.start_page_with(size.clone());
        let mut surface = page.surface();
        furniture(&mut surface, doc, fonts, geometry, i + 1, total);
        for item in items {
            draw_item(&mut surface, fonts, item);
        }
        surface.finish();
        page.finish();
    }
    pdf.finish().map_err(krilla_error)
}

fn kind(doc: &Document) -> &'static str {
    match doc.kind {
        trialport_core::document::DocumentKind::Report => "Report",
        trialport_core::document::DocumentKind::Dashboard => "Dashboard",
    }
}

/// The running header and footer of page `n` of `total`.
fn furniture(
    s: &mut Surface<'_>,
    doc: &Document,
    fonts: &Fonts,
    g: Geometry,
    n: usize,
    total: usize,
) {
    let size = 7.5;
    let f = &fonts.regular;
    let right_text = doc
        .data_cutoff
        .as_deref()
        .map(|c| format!("Data cut-off: {}", clean(c)))
        .unwrap_or_default();
    let right_w = f.width(&right_text, size);
    let left = f.fit(
        &format!("Study {} · {}", clean(&doc.study), clean(&doc.title)),
        size,
        g.content_width() - right_w - 24.0,
    );
    let header_y = g.top - 26.0;
    text(
        s,
        fonts,
        g.left,
        header_y,
        size,
        false,
        colour::MUTED,
        &left,
    );
    text(
        s,
        fonts,
        g.right - right_w,
        header_y,
        size,
        false,
        colour::MUTED,
        &right_text,
    );
    line(
        s,
        g.left,
        header_y + 5.0,
        g.right,
        header_y + 5.0,
        0.5,
        colour::LINE,
    );

    let footer_y = g.bottom + 30.0;
    line(
        s,
        g.left,
        footer_y - 11.0,
        g.right,
        footer_y - 11.0,
        0.5,
        colour::LINE,
    );
    let left = format!(
        "{} generated {} by trialport {ENGINE_VERSION} · {}",
        kind(doc),
        format_utc(doc.generated_at),
        if doc.signatures.is_empty() {
            "not signed"
        } else {
            "electronically signed"
        }
    );
    text(
        s,
        fonts,
        g.left,
        footer_y,
        size,
        false,
        colour::MUTED,
        &left,
    );
    let page = format!("Page {n} of {total}");
    let w = f.width(&page, size);
    text(
        s,
        fonts,
        g.right - w,
        footer_y,
        size,
        false,
        colour::MUTED,
        &page,
    );
}

fn paint(c: Rgb) -> krilla::paint::Paint {
    rgb::Color::new(c.0, c.1, c.2).into()
}

fn fill(c: Rgb) -> Fill {
    Fill {
        paint: paint(c),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

fn stroke(c: Rgb, width: f32) -> Stroke {
    Stroke {
        paint: paint(c),
        width,
        ..Stroke::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn text(
    s: &mut Surface<'_>,
    fonts: &Fonts,
    x: f32,
    y: f32,
    size: f32,
    bold: bool,
    c: Rgb,
    t: &str,
) {
    if t.is_empty() {
        return;
    }
    let face = fonts.face(bold);
    s.set_fill(Some(fill(c)));
    s.set_stroke(None);
    s.draw_glyphs(
        Point::from_xy(x, y),
        &face.glyphs(t),
        face.font.clone(),
        t,
        size,
        false,
    );
}

fn line(s: &mut Surface<'_>, x1: f32, y1: f32, x2: f32, y2: f32, width: f32, c: Rgb) {
    let mut pb = PathBuilder::new();
    pb.move_to(x1, y1);
    pb.line_to(x2, y2);
    if let Some(path) = pb.finish() {
        s.set_fill(None);
        s.set_stroke(Some(stroke(c, width)));
        s.draw_path(&path);
        s.set_stroke(None);
    }
}

fn rect(s: &mut Surface<'_>, x: f32, y: f32, w: f32, h: f32, f: Rgb, outline: Option<(Rgb, f32)>) {
    let Some(r) = Rect::from_xywh(x, y, w.max(0.01), h.max(0.01)) else {
        return;
    };
    let mut pb = PathBuilder::new();
    pb.push_rect(r);
    if let Some(path) = pb.finish() {
        s.set_fill(Some(fill(f)));
        s.set_stroke(outline.map(|(c, w)| stroke(c, w)));
        s.draw_path(&path);
        s.set_stroke(None);
    }
}

fn draw_item(s: &mut Surface<'_>, fonts: &Fonts, item: &Item) {
    match item {
        Item::Text {
            x,
            y,
            size,
            bold,
            colour,
            text: t,
        } => text(s, fonts, *x, *y, *size, *bold, *colour, t),
        Item::Rect {
            x,
            y,
            w,
            h,
            fill: f,
            stroke: st,
        } => rect(s, *x, *y, *w, *h, *f, st.map(|c| (c, 0.6))),
        Item::Line {
            x1,
            y1,
            x2,
            y2,
            width,
            colour,
        } => line(s, *x1, *y1, *x2, *y2, *width, *colour),
        Item::Chart { x, y, scale, chart } => {
            s.push_transform(&Transform::from_row(*scale, 0.0, 0.0, *scale, *x, *y));
            draw_chart(s, fonts, chart);
            s.pop();
        }
    }
}

/// A chart from its marks, in chart units (the surface is scaled to the page).
fn draw_chart(s: &mut Surface<'_>, fonts: &Fonts, chart: &Chart) {
    for mark in marks(chart) {
        match mark {
            Mark::Grid { x1, x2, y } => line(
                s,
                x1 as f32,
                y as f32,
                x2 as f32,
                y as f32,
                1.0,
                colour::LINE,
            ),
            Mark::Axis { x1, y1, x2, y2 } => line(
                s,
                x1 as f32,
                y1 as f32,
                x2 as f32,
                y2 as f32,
                1.0,
                colour::MUTED,
            ),
            Mark::Bar {
                x,
                y,
                width,
                height,
                negative,
            } => rect(
                s,
                x as f32,
                y as f32,
                width as f32,
                height as f32,
                if negative {
                    colour::ACCENT2
                } else {
                    colour::ACCENT
                },
                None,
            ),
            Mark::Line(points) => {
                let mut pb = PathBuilder::new();
                for (i, (x, y)) in points.iter().enumerate() {
                    if i == 0 {
                        pb.move_to(*x as f32, *y as f32);
                    } else {
                        pb.line_to(*x as f32, *y as f32);
                    }
                }
                if let Some(path) = pb.finish() {
                    s.set_fill(None);
                    s.set_stroke(Some(stroke(colour::ACCENT, 2.0)));
                    s.draw_path(&path);
                    s.set_stroke(None);
                }
            }
            Mark::Dot { x, y, r } => {
                let (x, y, r) = (x as f32, y as f32, r as f32);
                // A circle of four cubic arcs.
                let k = 0.552_284_8 * r;
                let mut pb = PathBuilder::new();
                pb.move_to(x + r, y);
                pb.cubic_to(x + r, y + k, x + k, y + r, x, y + r);
                pb.cubic_to(x - k, y + r, x - r, y + k, x - r, y);
                pb.cubic_to(x - r, y - k, x - k, y - r, x, y - r);
                pb.cubic_to(x + k, y - r, x + r, y - k, x + r, y);
                pb.close();
                if let Some(path) = pb.finish() {
                    s.set_fill(Some(fill(colour::ACCENT)));
                    s.set_stroke(None);
                    s.draw_path(&path);
                }
            }
            Mark::Text {
                role,
                x,
                y,
                anchor,
                rotation,
                size,
                text: t,
            } => {
                let t = clean(&t);
                let size = size.map_or(FONT_SIZE as f32, f32::from);
                let c = match role {
                    TextRole::Tick | TextRole::Empty => colour::MUTED,
                    TextRole::AxisTitle | TextRole::Value | TextRole::Category => colour::FG,
                };
                let w = fonts.regular.width(&t, size);
                let (x, y) = (x as f32, y as f32);
                let left = match anchor {
                    Anchor::Middle => x - w / 2.0,
                    Anchor::End => x - w,
                };
                match rotation {
                    Rotation::None => text(s, fonts, left, y, size, false, c, &t),
                    Rotation::Vertical => {
                        s.push_transform(&Transform::from_rotate(-90.0));
                        text(s, fonts, left, y, size, false, c, &t);
                        s.pop();
                    }
                    Rotation::Slanted => {
                        s.push_transform(&Transform::from_rotate_at(-45.0, x, y));
                        text(s, fonts, left, y, size, false, c, &t);
                        s.pop();
                    }
                }
            }
        }
    }
}

/// A krilla failure as the engine's error: a PDF/A violation names its rule.
fn krilla_error(e: krilla::error::KrillaError) -> Error {
    use krilla::error::KrillaError as K;
    match e {
        K::Validation(errors) => {
            let (rule, clause, what) = errors.first().map(|(v, _)| rule_of(v)).unwrap_or((
                "unknown",
                "",
                "an unknown rule",
            ));
            let mut err = Error::server(
                Reason::PdfaViolation,
                format!("the PDF would violate {STANDARD} ({what}), so it was not written"),
            )
            .with_detail("rule", rule)
            .with_detail("standard", STANDARD)
            .with_detail("violations", errors.len());
            if !clause.is_empty() {
                err = err.with_detail("clause", format!("ISO 19005-2 {clause}"));
            }
            err
        }
        K::Font(..) => Error::server(Reason::PdfFailed, "an embedded font could not be written"),
        _ => Error::server(Reason::PdfFailed, "the PDF writer failed"),
    }
}

/// The rule a violation breaks: a stable name, the ISO 19005-2 clause, and words for the message.
fn rule_of(v: &ValidationError) -> (&'static str, &'static str, &'static str) {
    use ValidationError as V;
    match v {
        V::ContainsNotDefGlyph(..) => (
            "notdef_glyph",
            "6.2.11.8",
            "a character has no glyph in the embedded fonts",
        ),
        V::TooLongString => (
            "string_too_long",
            "6.1.13",
            "a text string is longer than 32,767 bytes",
        ),
        V::TooLongName => ("name_too_long", "6.1.13", "a name is longer than 127 bytes"),
        V::TooManyIndirectObjects => (
            "too_many_objects",
            "6.1.13",
            "the file has more than 8,388,607 objects",
        ),
        V::TooHighQNestingLevel => (
            "nesting_too_deep",
            "6.1.13",
            "graphics states nest too deep",
        ),
        V::ContainsPostScript(_) => ("postscript", "6.2.9", "the file would contain PostScript"),
        V::RestrictedLicense(_) => (
            "font_not_embeddable",
            "6.2.11.4.1",
            "a font's licence forbids embedding",
        ),
        V::MissingDocumentDate => ("missing_date", "6.6.5", "the document has no date"),
        V::EmbeddedFile(..) => ("embedded_file", "6.8", "the file would embed another file"),
        V::MissingCMYKProfile => ("device_colour", "6.2.4.3", "a colour is device-dependent"),
        _ => ("other", "", "a rule of the standard"),
    }
}
