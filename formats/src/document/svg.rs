//! Bar and line charts as inline SVG: computed scales, axes, grid, category and value labels.
//!
//! The drawing is deterministic (fixed size, coordinates with one decimal) and copes with no points (axes and a
//! "No data" note), one point, negative values, all-zero values and non-finite values (drawn as missing, labelled
//! `-`). Colours come from the page's CSS classes, so the chart follows the page's theme.

use super::escape;
use trialport_core::document::{display_number, Chart, ChartKind};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
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

/// Renders `chart` as an `<svg>` element; `id` makes its element ids unique in the page.
pub fn chart_svg(chart: &Chart, id: &str) -> String {
    let mut s = String::with_capacity(4096);
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-labelledby=\"{title_id} {desc_id}\">\n"
    ));
    s.push_str(&format!(
        "<title id=\"{title_id}\">{}</title>\n<desc id=\"{desc_id}\">{} by {}</desc>\n",
        escape(&chart.title),
        escape(&chart.y_label),
        escape(&chart.x_label)
    ));
    let (top, bottom, left, right) = (TOP, HEIGHT - BOTTOM, LEFT, WIDTH - RIGHT);
    let scale = Scale::new(chart.points.iter().map(|(_, v)| *v));
    let y = |v: f64| scale.y(v, top, bottom);

    // Grid and value axis.
    for t in scale.ticks() {
        let ty = y(t);
        s.push_str(&format!(
            "<line class=\"grid\" x1=\"{left:.1}\" y1=\"{ty:.1}\" x2=\"{right:.1}\" y2=\"{ty:.1}\"/>\n\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            ty + 4.0,
            escape(&scale.label(t))
        ));
    }
    let zero = y(0.0);
    s.push_str(&format!(
        "<line class=\"axis\" x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{bottom:.1}\"/>\n\
         <line class=\"axis\" x1=\"{left:.1}\" y1=\"{zero:.1}\" x2=\"{right:.1}\" y2=\"{zero:.1}\"/>\n"
    ));
    // Axis titles.
    s.push_str(&format!(
        "<text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text class=\"axis-title\" transform=\"rotate(-90)\" x=\"{:.1}\" y=\"16\" text-anchor=\"middle\">{}</text>\n",
        (left + right) / 2.0,
        HEIGHT - 8.0,
        escape(&chart.x_label),
        -(top + bottom) / 2.0,
        escape(&chart.y_label)
    ));

    let n = chart.points.len();
    if n == 0 {
        s.push_str(&format!(
            "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">No data</text>\n</svg>",
            (left + right) / 2.0,
            (top + bottom) / 2.0
        ));
        return s;
    }
    let band = (right - left) / n as f64;
    let center = |i: usize| left + band * (i as f64 + 0.5);
    // Narrow bands get smaller value labels so neighbours overlap less.
    let size = if band < 24.0 {
        " font-size=\"8\""
    } else if band < 40.0 {
        " font-size=\"10\""
    } else {
        ""
    };

    match chart.kind {
        ChartKind::Bar => {
            let bar = band * 0.7;
            for (i, (_, v)) in chart.points.iter().enumerate() {
                let cx = center(i);
                if !v.is_finite() {
                    push_value_label(&mut s, cx, zero - 4.0, None, size);
                    continue;
                }
                let vy = y(*v);
                let (ry, h) = if *v >= 0.0 {
                    (vy, zero - vy)
                } else {
                    (zero, vy - zero)
                };
                let class = if *v < 0.0 { "bar neg" } else { "bar" };
                s.push_str(&format!(
                    "<rect class=\"{class}\" x=\"{:.1}\" y=\"{ry:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"/>\n",
                    cx - bar / 2.0
                ));
                let ly = if *v >= 0.0 { vy - 4.0 } else { vy + 14.0 };
                push_value_label(&mut s, cx, ly, Some(*v), size);
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
                let path: Vec<String> = finite
                    .iter()
                    .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                    .collect();
                s.push_str(&format!(
                    "<polyline class=\"line\" points=\"{}\"/>\n",
                    path.join(" ")
                ));
            }
            for (x, py, v) in &finite {
                s.push_str(&format!(
                    "<circle class=\"dot\" cx=\"{x:.1}\" cy=\"{py:.1}\" r=\"3.5\"/>\n"
                ));
                push_value_label(&mut s, *x, py - 8.0, Some(*v), size);
            }
            for (i, (_, v)) in chart.points.iter().enumerate() {
                if !v.is_finite() {
                    push_value_label(&mut s, center(i), zero - 4.0, None, size);
                }
            }
        }
    }

    // Category labels.
    let slant = n > SLANT_AFTER;
    for (i, (category, _)) in chart.points.iter().enumerate() {
        let cx = center(i);
        let cy = bottom + 16.0;
        if slant {
            s.push_str(&format!(
                "<text class=\"category\" x=\"{cx:.1}\" y=\"{cy:.1}\" text-anchor=\"end\" \
                 transform=\"rotate(-45 {cx:.1} {cy:.1})\">{}</text>\n",
                escape(category)
            ));
        } else {
            s.push_str(&format!(
                "<text class=\"category\" x=\"{cx:.1}\" y=\"{cy:.1}\" text-anchor=\"middle\">{}</text>\n",
                escape(category)
            ));
        }
    }
    s.push_str("</svg>");
    s
}

fn push_value_label(s: &mut String, x: f64, y: f64, v: Option<f64>, size: &str) {
    s.push_str(&format!(
        "<text class=\"value\" x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\"{size}>{}</text>\n",
        escape(&display_number(v))
    ));
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
