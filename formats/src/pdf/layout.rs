//! The page model: pages of positioned items, laid out top to bottom before anything is drawn, so that every
//! page's footer can say "page x of y".
//!
//! Coordinates are PDF points (1/72 inch) from the page's top-left corner, y down; a text's `y` is its baseline.

use super::fonts::Fonts;
use trialport_core::document::Chart;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rgb(pub(crate) u8, pub(crate) u8, pub(crate) u8);

/// The colours of the light HTML theme, so a PDF looks like its HTML page.
pub(crate) mod colour {
    use super::Rgb;
    /// Text.
    pub(crate) const FG: Rgb = Rgb(0x1f, 0x29, 0x33);
    /// Secondary text: notes, header, footer, chart ticks.
    pub(crate) const MUTED: Rgb = Rgb(0x52, 0x60, 0x6d);
    /// Rules and grid lines.
    pub(crate) const LINE: Rgb = Rgb(0xd9, 0xe2, 0xec);
    /// Table header background.
    pub(crate) const HEAD: Rgb = Rgb(0xf0, 0xf4, 0xf8);
    /// KPI tile background.
    pub(crate) const TILE: Rgb = Rgb(0xf7, 0xf9, 0xfb);
    /// Bars, lines and points.
    pub(crate) const ACCENT: Rgb = Rgb(0x2f, 0x6f, 0xb3);
    /// Negative bars.
    pub(crate) const ACCENT2: Rgb = Rgb(0xc0, 0x56, 0x21);
}

/// One thing drawn on a page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// One line of text.
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        colour: Rgb,
        text: String,
    },
    /// A filled rectangle, optionally outlined.
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Rgb,
        stroke: Option<Rgb>,
    },
    /// A straight line.
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        colour: Rgb,
    },
    /// A chart, drawn from its marks, its chart space scaled by `scale` with its origin at (`x`, `y`).
    Chart {
        x: f32,
        y: f32,
        scale: f32,
        chart: Box<Chart>,
    },
}

/// The sizes of a page and of its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Geometry {
    pub(crate) width: f32,
    pub(crate) height: f32,
    /// Left edge of the content.
    pub(crate) left: f32,
    /// Right edge of the content.
    pub(crate) right: f32,
    /// Top of the content (below the running header).
    pub(crate) top: f32,
    /// Bottom of the content (above the running footer).
    pub(crate) bottom: f32,
}

impl Geometry {
    /// A page of `width` by `height` points with the standard margins.
    pub(crate) fn new(width: f32, height: f32) -> Geometry {
        Geometry {
            width,
            height,
            left: 48.0,
            right: width - 48.0,
            top: 72.0,
            bottom: height - 60.0,
        }
    }

    /// The width of the content.
    pub(crate) fn content_width(&self) -> f32 {
        self.right - self.left
    }

    /// The height of the content.
    pub(crate) fn content_height(&self) -> f32 {
        self.bottom - self.top
    }
}

/// Pages being laid out, with a cursor moving down the current one.
pub(crate) struct Layout<'f> {
    pub(crate) fonts: &'f Fonts,
    pub(crate) geometry: Geometry,
    pub(crate) pages: Vec<Vec<Item>>,
    /// Where the next item goes on the last page.
    pub(crate) y: f32,
}

impl<'f> Layout<'f> {
    /// One empty page.
    pub(crate) fn new(fonts: &'f Fonts, geometry: Geometry) -> Self {
        Layout {
            fonts,
            geometry,
            pages: vec![Vec::new()],
            y: geometry.top,
        }
    }

    /// Starts a new page.
    pub(crate) fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = self.geometry.top;
    }

    /// Whether the current page has nothing on it yet.
    pub(crate) fn page_is_empty(&self) -> bool {
        self.pages.last().is_none_or(Vec::is_empty)
    }

    /// The room left on the current page.
    pub(crate) fn room(&self) -> f32 {
        self.geometry.bottom - self.y
    }

    /// Starts a new page unless `height` fits on this one (or this one is empty: nothing would fit better).
    pub(crate) fn ensure(&mut self, height: f32) {
        if height > self.room() + 0.01 && !self.page_is_empty() {
            self.new_page();
        }
    }

    /// Adds an item to the current page.
    pub(crate) fn push(&mut self, item: Item) {
        if let Some(page) = self.pages.last_mut() {
            page.push(item);
        }
    }

    /// Adds one line of text whose top is at the cursor, and moves the cursor below it.
    pub(crate) fn line(&mut self, text: &str, size: f32, bold: bool, colour: Rgb, x: f32) {
        let leading = size * LEADING;
        self.push(Item::Text {
            x,
            y: self.y + size * ASCENT,
            size,
            bold,
            colour,
            text: text.to_string(),
        });
        self.y += leading;
    }

    /// Adds `text` wrapped to the content width, breaking pages between lines.
    pub(crate) fn paragraph(&mut self, text: &str, size: f32, bold: bool, colour: Rgb) {
        let lines = self.fonts.face(bold).wrap(
            &super::fonts::clean(text),
            size,
            self.geometry.content_width(),
        );
        for l in lines {
            self.ensure(size * LEADING);
            let x = self.geometry.left;
            self.line(&l, size, bold, colour, x);
        }
    }

    /// Moves the cursor down by `dy` (not past the bottom: a gap never starts a page).
    pub(crate) fn gap(&mut self, dy: f32) {
        self.y = (self.y + dy).min(self.geometry.bottom);
    }

    /// A heading kept with at least `keep` points of what follows.
    pub(crate) fn heading(&mut self, text: &str, size: f32, keep: f32) {
        let lines = self.fonts.bold.wrap(
            &super::fonts::clean(text),
            size,
            self.geometry.content_width(),
        );
        self.ensure(lines.len() as f32 * size * LEADING + keep);
        for l in lines {
            let x = self.geometry.left;
            self.line(&l, size, true, colour::FG, x);
        }
        self.gap(size * 0.3);
    }
}

/// Line height as a multiple of the font size.
pub(crate) const LEADING: f32 = 1.35;
/// Where the baseline sits below the top of a line, as a multiple of the font size.
pub(crate) const ASCENT: f32 = 0.95;
