//! Bar and line charts: computed scales, axes, grid, category and value labels as [`Mark`]s, written as inline SVG
//! here and drawn as PDF vectors by the `pdf` format.
//!
//! The drawing is deterministic (fixed size, coordinates with one decimal) and copes with no points (axes and a
//! "No data" note), one point, negative values, all-zero values and non-finite values (drawn as missing, labelled
//! `-`). Colours come from the page's CSS classes, so the chart follows the page's theme.

use super::escape;
use trialport_core::document::{display_number, Chart, ChartKind};

const CHART_WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 360.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 84.0;
/// Above this many categories the labels are slanted so they do not overlap.
const SLANT_AFTER: usize = 10;

/// A linear value axis with "nice" tick steps (1, 2 or 5 times a power of ten) that always includes zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// Lowest value on the axis.
    pub lo: f64,
    /// Highest value on the axis.
    pub hi: f64,
    /// Distance between ticks.
    pub step: f64,
    /// Decimals the tick labels need.
    pub decimals: usize,
}

fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let f = raw / magnitude;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

impl Scale {
    /// The scale for `values` (finite ones), with about five ticks.
    pub fn new(values: impl IntoIterator<Item = f64>) -> Scale {
        let (mut min, mut max) = (0.0f64, 0.0f64);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if max - min <= 0.0 || !(max - min).is_finite() {
            // All zero (or no values): a unit axis; an unusable span: the values as they are.
            let hi = if max > min { max } else { min + 1.0 };
            return Scale {
                lo: min,
                hi,
                step: hi - min,
                decimals: 0,
            };
        }
        let step = nice_step((max - min) / 5.0);
        let mut lo = (min / step).floor() * step;
        let hi = (max / step).ceil() * step;
        // Room under the lowest negative bar for its value label.
        if min < 0.0 && min - lo < step * 0.3 {
            lo -= step;
        }
        let decimals = if step >= 1.0 {
            0
        } else {
            (-step.log10().floor()).clamp(0.0, 12.0) as usize
        };
        Scale {
            lo,
            hi,
            step,
            decimals,
        }
    }

    /// The tick values from `lo` to `hi`.
    pub fn ticks(&self) -> Vec<f64> {
        let count = ((self.hi - self.lo) / self.step).round();
        if !count.is_finite() || count < 1.0 {
            return vec![self.lo, self.hi];
        }
        let count = (count as usize).min(50);
        (0..=count)
            .map(|i| {
                let t = self.lo + i as f64 * self.step;
                // Avoid a "-0" label from rounding noise.
                if t.abs() < self.step / 2.0 {
                    0.0
                } else {
                    t
                }
            })
            .collect()
    }

    /// The label of tick `t`.
    pub fn label(&self, t: f64) -> String {
        format!("{:.*}", self.decimals, t)
    }

    /// The vertical position of `v` in a plot from `top` to `bottom`.
    fn y(&self, v: f64, top: f64, bottom: f64) -> f64 {
        top + (self.hi - v) / (self.hi - self.lo) * (bottom - top)
    }
}

/// Where a chart text is anchored horizontally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Centred on `x`.
    Middle,
    /// Ending at `x`.
    End,
}

/// How a chart text is rotated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rotation {
    /// Upright.
    None,
    /// A quarter turn counter-clockwise about the chart's origin: `x` and `y` are in the turned frame (the value
    /// axis title).
    Vertical,
    /// 45 degrees counter-clockwise about the text's own anchor (crowded category labels).
    Slanted,
}

/// What a chart text says, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRole {
    /// A value axis tick label (muted).
    Tick,
    /// An axis title.
    AxisTitle,
    /// The "No data" note (muted).
    Empty,
    /// A bar's or point's value.
    Value,
    /// A category label.
    Category,
}

impl TextRole {
    fn class(self) -> &'static str {
        match self {
            TextRole::Tick => "tick",
            TextRole::AxisTitle => "axis-title",
            TextRole::Empty => "empty",
            TextRole::Value => "value",
            TextRole::Category => "category",
        }
    }
}

/// One mark of a chart, in the chart's own space: [`WIDTH`] by [`HEIGHT`] units, origin top left, y down. The SVG
/// of the HTML page and the vector drawing of the PDF are both drawn from these marks, so the two show the same
/// chart.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// A horizontal grid line at a tick.
    Grid {
        /// Left end.
        x1: f64,
        /// Right end.
        x2: f64,
        /// Height.
        y: f64,
    },
    /// An axis line.
    Axis {
        /// Start x.
        x1: f64,
        /// Start y.
        y1: f64,
        /// End x.
        x2: f64,
        /// End y.
        y2: f64,
    },
    /// A bar.
    Bar {
        /// Left edge.
        x: f64,
        /// Top edge.
        y: f64,
        /// Width.
        width: f64,
        /// Height.
        height: f64,
        /// Whether it stands for a negative value.
        negative: bool,
    },
    /// The line of a line chart through its finite points.
    Line(Vec<(f64, f64)>),
    /// A point of a line chart.
    Dot {
        /// Centre x.
        x: f64,
        /// Centre y.
        y: f64,
        /// Radius.
        r: f64,
    },
    /// A text; `y` is its baseline.
    Text {
        /// What it is.
        role: TextRole,
        /// Anchor x.
        x: f64,
        /// Baseline y.
        y: f64,
        /// Horizontal anchor.
        anchor: Anchor,
        /// Rotation.
        rotation: Rotation,
        /// Font size in chart units when smaller than the chart's 12.
        size: Option<u8>,
        /// The text (not escaped).
        text: String,
    },
}

/// The width of the chart space.
pub const WIDTH: f64 = CHART_WIDTH;
/// The height of the chart space.
pub const HEIGHT: f64 = CHART_HEIGHT;
/// The font size of chart texts, in chart units, unless a mark says otherwise.
pub const FONT_SIZE: f64 = 12.0;

fn text(role: TextRole, x: f64, y: f64, anchor: Anchor, text: String) -> Mark {
    Mark::Text {
        role,
        x,
        y,
        anchor,
        rotation: Rotation::None,
        size: None,
        text,
    }
}

/// The marks of `chart`, in drawing order.
pub fn marks(chart: &Chart) -> Vec<Mark> {
    let mut m = Vec::new();
    let (top, bottom, left, right) = (TOP, CHART_HEIGHT - BOTTOM, LEFT, CHART_WIDTH - RIGHT);
    let scale = Scale::new(chart.points.iter().map(|(_, v)| *v));
    let y = |v: f64| scale.y(v, top, bottom);

    // Grid and value axis.
    for t in scale.ticks() {
        let ty = y(t);
        m.push(Mark::Grid {
            x1: left,
            x2: right,
            y: ty,
        });
        m.push(text(
            TextRole::Tick,
            left - 6.0,
            ty + 4.0,
            Anchor::End,
            scale.label(t),
        ));
    }
    let zero = y(0.0);
    m.push(Mark::Axis {
        x1: left,
        y1: top,
        x2: left,
        y2: bottom,
    });
    m.push(Mark::Axis {
        x1: left,
        y1: zero,
        x2: right,
        y2: zero,
    });
    // Axis titles.
    m.push(text(
        TextRole::AxisTitle,
        (left + right) / 2.0,
        CHART_HEIGHT - 8.0,
        Anchor::Middle,
        chart.x_label.clone(),
    ));
    m.push(Mark::Text {
        role: TextRole::AxisTitle,
        x: -(top + bottom) / 2.0,
        y: 16.0,
        anchor: Anchor::Middle,
        rotation: Rotation::Vertical,
        size: None,
        text: chart.y_label.clone(),
    });

    let n = chart.points.len();
    if n == 0 {
        m.push(text(
            TextRole::Empty,
            (left + right) / 2.0,
            (top + bottom) / 2.0,
            Anchor::Middle,
            "No data".into(),
        ));
        return m;
    }
    let band = (right - left) / n as f64;
    let center = |i: usize| left + band * (i as f64 + 0.5);
    // Narrow bands get smaller value labels so neighbours overlap less.
    let size = if band < 24.0 {
        Some(8)
    } else if band < 40.0 {
        Some(10)
    } else {
        None
    };
    let value = |x: f64, y: f64, v: Option<f64>| Mark::Text {
        role: TextRole::Value,
        x,
        y,
        anchor: Anchor::Middle,
        rotation: Rotation::None,
        size,
        text: display_number(v),
    };

    match chart.kind {
        ChartKind::Bar => {
            let bar = band * 0.7;
            for (i, (_, v)) in chart.points.iter().enumerate() {
                let cx = center(i);
                if !v.is_finite() {
                    m.push(value(cx, zero - 4.0, None));
                    continue;
                }
                let vy = y(*v);
                let (ry, h) = if *v >= 0.0 {
                    (vy, zero - vy)
                } else {
                    (zero, vy - zero)
                };
                m.push(Mark::Bar {
                    x: cx - bar / 2.0,
                    y: ry,
                    width: bar,
                    height: h,
                    negative: *v < 0.0,
                });
                let ly = if *v >= 0.0 { vy - 4.0 } else { vy + 14.0 };
                m.push(value(cx, ly, Some(*v)));
            }
        }
        ChartKind::Line => {
            let finite: Vec<(f64, f64, f64)> = chart
                .points
                .iter()
                .enumerate()
                .filter(|(_, (_, v))| v.is_finite())
                .map(|(i, (_, v))| (center(i), y(*v), *v))
                .collect();
            if finite.len() >= 2 {
                m.push(Mark::Line(
                    finite.iter().map(|(x, y, _)| (*x, *y)).collect(),
                ));
            }
            for (x, py, v) in &finite {
                m.push(Mark::Dot {
                    x: *x,
                    y: *py,
                    r: 3.5,
                });
                m.push(value(*x, py - 8.0, Some(*v)));
            }
            for (i, (_, v)) in chart.points.iter().enumerate() {
                if !v.is_finite() {
                    m.push(value(center(i), zero - 4.0, None));
                }
            }
        }
    }

    // Category labels.
    let slant = n > SLANT_AFTER;
    for (i, (category, _)) in chart.points.iter().enumerate() {
        m.push(Mark::Text {
            role: TextRole::Category,
            x: center(i),
            y: bottom + 16.0,
            anchor: if slant { Anchor::End } else { Anchor::Middle },
            rotation: if slant {
                Rotation::Slanted
            } else {
                Rotation::None
            },
            size: None,
            text: category.clone(),
        });
    }
    m
}

/// Renders `chart` as an `<svg>` element; `id` makes its element ids unique in the page.
pub fn chart_svg(chart: &Chart, id: &str) -> String {
    let mut s = String::with_capacity(4096);
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" \
         width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" role=\"img\" aria-labelledby=\"{title_id} {desc_id}\">\n"
    ));
    s.push_str(&format!(
        "<title id=\"{title_id}\">{}</title>\n<desc id=\"{desc_id}\">{} by {}</desc>\n",
        escape(&chart.title),
        escape(&chart.y_label),
        escape(&chart.x_label)
    ));
    for mark in marks(chart) {
        match mark {
            Mark::Grid { x1, x2, y } => s.push_str(&format!(
                "<line class=\"grid\" x1=\"{x1:.1}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\"/>\n"
            )),
            Mark::Axis { x1, y1, x2, y2 } => s.push_str(&format!(
                "<line class=\"axis\" x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\"/>\n"
            )),
            Mark::Bar {
                x,
                y,
                width,
                height,
                negative,
            } => s.push_str(&format!(
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{height:.1}\"/>\n",
                if negative { "bar neg" } else { "bar" }
            )),
            Mark::Line(points) => {
                let path: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                s.push_str(&format!(
                    "<polyline class=\"line\" points=\"{}\"/>\n",
                    path.join(" ")
                ));
            }
            Mark::Dot { x, y, r } => s.push_str(&format!(
                "<circle class=\"dot\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\"/>\n"
            )),
            Mark::Text {
                role,
                x,
                y,
                anchor,
                rotation,
                size,
                text,
            } => {
                let anchor = match anchor {
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let size = size
                    .map(|n| format!(" font-size=\"{n}\""))
                    .unwrap_or_default();
                let (before, after) = match rotation {
                    Rotation::None => (String::new(), String::new()),
                    Rotation::Vertical => (" transform=\"rotate(-90)\"".to_string(), String::new()),
                    Rotation::Slanted => (
                        String::new(),
                        format!(" transform=\"rotate(-45 {x:.1} {y:.1})\""),
                    ),
                };
                s.push_str(&format!(
                    "<text class=\"{}\"{before} x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\"{after}{size}>{}</text>\n",
                    role.class(),
                    escape(&text)
                ));
            }
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_nice_and_include_zero() {
        let s = Scale::new([3.0, 47.0]);
        assert_eq!((s.lo, s.hi, s.step), (0.0, 50.0, 10.0));
        assert_eq!(s.ticks().len(), 6);
        let s = Scale::new([-12.0, 8.0]);
        assert!(s.lo < -12.0 && s.hi >= 8.0);
        assert!(s.ticks().contains(&0.0));
        let s = Scale::new([0.0, 0.0]);
        assert_eq!((s.lo, s.hi), (0.0, 1.0));
        let s = Scale::new([]);
        assert_eq!((s.lo, s.hi), (0.0, 1.0));
        let s = Scale::new([0.03, 0.07]);
        assert_eq!(s.decimals, 2);
        assert_eq!(s.label(0.02), "0.02");
        let s = Scale::new([f64::NAN, 5.0, f64::INFINITY]);
        assert_eq!((s.lo, s.hi), (0.0, 5.0));
    }
}
