//! Tables as a clinical table (TLF) shows them: a shaded header row repeated at the top of every page the table
//! spans (under a "(continued)" title), rows that never break across pages, text wrapped inside its column,
//! numbers right-aligned, a rule under the header and at the end.
//!
//! Column widths are measured: each column gets its natural width (its widest cell or header) when the table fits
//! the page; otherwise every column keeps at least its narrowest useful width (its longest word, at most
//! [`MAX_MIN_WIDTH`]) and the remaining width is shared in proportion to what each column would need beyond it.
//! A table whose narrowest widths exceed the page is refused (EXP002 `table_too_wide`). The one row that can break
//! is a row taller than a whole page: it continues on the next page, line by line.

use super::fonts::Face;
use super::layout::{colour, Item, Layout, ASCENT, LEADING};
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};

/// Font size of cells and headers.
pub(crate) const SIZE: f32 = 8.0;
/// Horizontal padding inside a cell.
const PAD_X: f32 = 4.0;
/// Vertical padding inside a cell.
const PAD_Y: f32 = 2.5;
/// The narrowest column.
const MIN_WIDTH: f32 = 22.0;
/// A column's narrowest useful width is at most this (longer words break).
pub(crate) const MAX_MIN_WIDTH: f32 = 80.0;

/// A table of text: a header, which columns hold numbers, and rows of cells (a missing value is empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TextTable {
    pub(crate) header: Vec<String>,
    pub(crate) numeric: Vec<bool>,
    pub(crate) rows: Vec<Vec<String>>,
}

fn line_height() -> f32 {
    SIZE * LEADING
}

/// The widest line of `text`.
fn text_width(face: &Face, text: &str) -> f32 {
    text.split('\n')
        .map(|l| face.width(l, SIZE))
        .fold(0.0, f32::max)
}

/// The widest word of `text`.
fn word_width(face: &Face, text: &str) -> f32 {
    text.split(['\n', ' '])
        .map(|w| face.width(w, SIZE))
        .fold(0.0, f32::max)
}

/// The column widths of `t` in `available` points.
///
/// # Errors
/// EXP002 `table_too_wide` when the columns cannot fit even at their narrowest.
pub(crate) fn column_widths(l: &Layout<'_>, t: &TextTable, available: f32) -> Result<Vec<f32>> {
    let (regular, bold) = (&l.fonts.regular, &l.fonts.bold);
    let n = t.header.len();
    let mut natural: Vec<f32> = t
        .header
        .iter()
        .map(|h| text_width(bold, h) + 2.0 * PAD_X)
        .collect();
    let mut narrow: Vec<f32> = t
        .header
        .iter()
        .map(|h| word_width(bold, h).min(MAX_MIN_WIDTH) + 2.0 * PAD_X)
        .collect();
    for row in &t.rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            natural[i] = natural[i].max(text_width(regular, cell) + 2.0 * PAD_X);
            narrow[i] = narrow[i].max(word_width(regular, cell).min(MAX_MIN_WIDTH) + 2.0 * PAD_X);
        }
    }
    for i in 0..n {
        narrow[i] = narrow[i].max(MIN_WIDTH);
        natural[i] = natural[i].max(narrow[i]);
    }
    let total: f32 = natural.iter().sum();
    if total <= available {
        return Ok(natural);
    }
    let least: f32 = narrow.iter().sum();
    if least > available + 0.01 {
        return Err(Error::validation(
            Reason::TableTooWide,
            format!(
                "a table's {n} columns do not fit across the page: show fewer columns, or use the option \
                 orientation=landscape"
            ),
        )
        .with_field("columns"));
    }
    let extra = available - least;
    let demand: f32 = natural.iter().zip(&narrow).map(|(a, b)| a - b).sum();
    Ok(natural
        .iter()
        .zip(&narrow)
        .map(|(nat, min)| {
            if demand > 0.0 {
                min + extra * (nat - min) / demand
            } else {
                *min
            }
        })
        .collect())
}

/// The lines of each cell of `cells` in columns of `widths`.
fn cell_lines(face: &Face, cells: &[String], widths: &[f32]) -> Vec<Vec<String>> {
    cells
        .iter()
        .zip(widths)
        .map(|(c, w)| face.wrap(c, SIZE, w - 2.0 * PAD_X))
        .collect()
}

/// Lays out `t` at the cursor; `title` is repeated with "(continued)" above the header on every later page.
///
/// # Errors
/// EXP002 `table_too_wide`.
pub(crate) fn layout_table(l: &mut Layout<'_>, t: &TextTable, title: &str) -> Result<()> {
    let g = l.geometry;
    let widths = column_widths(l, t, g.content_width())?;
    let width: f32 = widths.iter().sum();
    let header = cell_lines(&l.fonts.bold, &t.header, &widths);
    let header_h = rows_height(&header);
    let continued_h = SIZE * 1.1 * LEADING + 2.0;
    let first_h = t
        .rows
        .first()
        .map(|r| rows_height(&cell_lines(&l.fonts.regular, r, &widths)))
        .unwrap_or(0.0);
    l.ensure(header_h + first_h.min(g.content_height() - header_h - continued_h));
    draw_header(l, &header, &widths, t, width);
    for row in &t.rows {
        let mut lines = cell_lines(&l.fonts.regular, row, &widths);
        loop {
            let h = rows_height(&lines);
            if h <= l.room() + 0.01 {
                draw_row(l, &lines, &widths, t);
                break;
            }
            let fresh = g.content_height() - continued_h - header_h;
            if h <= fresh || !lines.iter().any(|c| c.len() > 1) {
                // The row fits on a fresh page: it moves there whole.
                continue_on_new_page(l, &header, &widths, t, width, title);
                draw_row(l, &lines, &widths, t);
                break;
            }
            // Taller than a page: as many lines as fit here, the rest on the next page.
            if l.room() < 2.0 * PAD_Y + line_height() {
                continue_on_new_page(l, &header, &widths, t, width, title);
            }
            let fit = (((l.room() - 2.0 * PAD_Y) / line_height()).floor() as usize).max(1);
            let rest: Vec<Vec<String>> = lines
                .iter_mut()
                .map(|c| c.split_off(fit.min(c.len())))
                .collect();
            draw_row(l, &lines, &widths, t);
            lines = rest;
            continue_on_new_page(l, &header, &widths, t, width, title);
        }
    }
    // The closing rule.
    l.push(Item::Line {
        x1: g.left,
        y1: l.y,
        x2: g.left + width,
        y2: l.y,
        width: 0.8,
        colour: colour::FG,
    });
    l.gap(4.0);
    Ok(())
}

fn rows_height(lines: &[Vec<String>]) -> f32 {
    lines.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * line_height() + 2.0 * PAD_Y
}

fn continue_on_new_page(
    l: &mut Layout<'_>,
    header: &[Vec<String>],
    widths: &[f32],
    t: &TextTable,
    width: f32,
    title: &str,
) {
    let g = l.geometry;
    l.push(Item::Line {
        x1: g.left,
        y1: l.y,
        x2: g.left + width,
        y2: l.y,
        width: 0.8,
        colour: colour::FG,
    });
    l.new_page();
    let text = l.fonts.bold.fit(
        &format!("{title} (continued)"),
        SIZE * 1.1,
        g.content_width(),
    );
    l.line(&text, SIZE * 1.1, true, colour::MUTED, g.left);
    l.gap(2.0);
    draw_header(l, header, widths, t, width);
}

fn draw_header(
    l: &mut Layout<'_>,
    header: &[Vec<String>],
    widths: &[f32],
    t: &TextTable,
    width: f32,
) {
    let g = l.geometry;
    let h = rows_height(header);
    l.push(Item::Rect {
        x: g.left,
        y: l.y,
        w: width,
        h,
        fill: colour::HEAD,
        stroke: None,
    });
    l.push(Item::Line {
        x1: g.left,
        y1: l.y,
        x2: g.left + width,
        y2: l.y,
        width: 0.8,
        colour: colour::FG,
    });
    cells(l, header, widths, &t.numeric, true);
    l.y += h;
    l.push(Item::Line {
        x1: g.left,
        y1: l.y,
        x2: g.left + width,
        y2: l.y,
        width: 0.6,
        colour: colour::FG,
    });
}

fn draw_row(l: &mut Layout<'_>, lines: &[Vec<String>], widths: &[f32], t: &TextTable) {
    let g = l.geometry;
    let h = rows_height(lines);
    cells(l, lines, widths, &t.numeric, false);
    l.y += h;
    let width: f32 = widths.iter().sum();
    l.push(Item::Line {
        x1: g.left,
        y1: l.y,
        x2: g.left + width,
        y2: l.y,
        width: 0.4,
        colour: colour::LINE,
    });
}

/// The text items of one row whose top is at the cursor.
fn cells(l: &mut Layout<'_>, lines: &[Vec<String>], widths: &[f32], numeric: &[bool], bold: bool) {
    let mut x = l.geometry.left;
    let face = l.fonts.face(bold);
    let mut items = Vec::new();
    for ((cell, w), num) in lines.iter().zip(widths).zip(numeric) {
        for (k, text) in cell.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
            let tx = if *num {
                x + w - PAD_X - face.width(text, SIZE)
            } else {
                x + PAD_X
            };
            items.push(Item::Text {
                x: tx,
                y: l.y + PAD_Y + k as f32 * line_height() + SIZE * ASCENT,
                size: SIZE,
                bold,
                colour: colour::FG,
                text: text.clone(),
            });
        }
        x += w;
    }
    for i in items {
        l.push(i);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fonts::Fonts;
    use super::super::layout::Geometry;
    use super::*;

    fn table(rows: usize, cell: &str) -> TextTable {
        TextTable {
            header: vec!["USUBJID".into(), "AETERM".into(), "AESEQ".into()],
            numeric: vec![false, false, true],
            rows: (0..rows)
                .map(|i| vec![format!("S-{i:04}"), cell.to_string(), i.to_string()])
                .collect(),
        }
    }

    /// The texts of each page, in order.
    fn texts(l: &Layout<'_>) -> Vec<Vec<String>> {
        l.pages
            .iter()
            .map(|p| {
                p.iter()
                    .filter_map(|i| match i {
                        Item::Text { text, .. } => Some(text.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn headers_repeat_and_rows_stay_whole() -> Result<()> {
        let fonts = Fonts::load()?;
        let mut l = Layout::new(&fonts, Geometry::new(595.0, 842.0));
        let t = table(
            300,
            "Headache, tension-type and a verbatim term long enough to wrap in its column \
                            when the page is narrow enough, which it is not",
        );
        layout_table(&mut l, &t, "Adverse events")?;
        let pages = texts(&l);
        assert!(pages.len() > 3, "{} pages", pages.len());
        for (i, p) in pages.iter().enumerate() {
            assert!(
                p.contains(&"USUBJID".to_string()),
                "page {i} repeats the header"
            );
            if i > 0 {
                assert_eq!(p[0], "Adverse events (continued)");
            }
        }
        // Every row's first cell appears exactly once, with its number on the same page.
        for r in 0..300 {
            let id = format!("S-{r:04}");
            let on: Vec<usize> = (0..pages.len())
                .filter(|&i| pages[i].contains(&id))
                .collect();
            assert_eq!(on.len(), 1, "{id}");
            assert!(
                pages[on[0]].contains(&r.to_string()),
                "{id}'s cells share a page"
            );
        }
        // Nothing below the content area.
        for p in &l.pages {
            for i in p {
                if let Item::Text { y, .. } = i {
                    assert!(*y <= l.geometry.bottom);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_row_taller_than_a_page_continues() -> Result<()> {
        let fonts = Fonts::load()?;
        let mut l = Layout::new(&fonts, Geometry::new(595.0, 842.0));
        let tall = vec!["line"; 150].join("\n");
        layout_table(&mut l, &table(2, &tall), "T")?;
        let pages = texts(&l);
        assert!(pages.len() >= 2);
        let lines: usize = pages.iter().flatten().filter(|t| *t == "line").count();
        assert_eq!(lines, 300);
        Ok(())
    }

    #[test]
    fn widths_fit_or_refuse() -> Result<()> {
        let fonts = Fonts::load()?;
        let l = Layout::new(&fonts, Geometry::new(595.0, 842.0));
        let t = table(3, &"word ".repeat(200));
        let w = column_widths(&l, &t, 499.0)?;
        assert!((w.iter().sum::<f32>() - 499.0).abs() < 0.1);
        let wide = TextTable {
            header: (0..40).map(|i| format!("COLUMN{i}")).collect(),
            numeric: vec![false; 40],
            rows: vec![],
        };
        let e = column_widths(&l, &wide, 499.0)
            .err()
            .map(|e| e.reason().to_string());
        assert_eq!(e.as_deref(), Some("table_too_wide"));
        Ok(())
    }
}
