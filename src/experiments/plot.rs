//! Small self-contained SVG charts for the report: line charts (loss curves, overlap against
//! sparsity) and scatter plots (per-head points), with axes, ticks and a legend. Written by
//! hand so the report needs no font or system library.

use std::fmt::Write as _;

/// One named series of `(x, y)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Optional symmetric-or-not interval per point `(low, high)`, drawn as a vertical bar.
    pub intervals: Option<Vec<(f64, f64)>>,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            intervals: None,
        }
    }
}

/// How points are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Lines,
    Points,
}

/// A chart's labels and axis options.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub style: Style,
    /// Draw the x axis in log10 scale (positive x only).
    pub log_x: bool,
}

const W: f64 = 640.0;
const H: f64 = 400.0;
const L: f64 = 70.0;
const R: f64 = 180.0;
const T: f64 = 40.0;
const B: f64 = 55.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// "Nice" tick positions covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut v = Vec::new();
    let mut x = (lo / step).ceil() * step;
    while x <= hi + step * 1e-9 {
        v.push(if x.abs() < step * 1e-9 { 0.0 } else { x });
        x += step;
    }
    v
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-3 {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Render `series` as an SVG document. Non-finite points are skipped; an empty chart still
/// renders (with "no data").
pub fn svg(chart: &Chart<'_>, series: &[Series]) -> String {
    let tx = |x: f64| if chart.log_x { x.log10() } else { x };
    let pts = || {
        series
            .iter()
            .flat_map(|s| {
                let iv = s.intervals.iter().flatten().flat_map(|&(a, b)| [a, b]);
                s.points
                    .iter()
                    .map(|&(x, y)| (x, y))
                    .chain(s.points.iter().map(|&(x, _)| x).zip(iv))
                    .collect::<Vec<_>>()
            })
            .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!chart.log_x || x > 0.0))
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="{W}" height="{H}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        (L + W - R) / 2.0,
        esc(chart.title)
    );
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts() {
        let x = tx(x);
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return out;
    }
    if x1 - x0 < 1e-12 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    y0 -= pad;
    y1 += pad;
    let px = |x: f64| L + (tx(x) - x0) / (x1 - x0) * (W - L - R);
    let py = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    // axes and ticks
    let _ = write!(
        out,
        r##"<path d="M{L} {T} V{} H{}" stroke="#333" fill="none"/>"##,
        H - B,
        W - R
    );
    for t in ticks(x0, x1, 6) {
        let (v, x) = if chart.log_x {
            (10f64.powf(t), L + (t - x0) / (x1 - x0) * (W - L - R))
        } else {
            (t, px(t))
        };
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - B,
            H - B + 5.0,
            H - B + 18.0,
            fmt_tick(v)
        );
    }
    for t in ticks(y0, y1, 6) {
        let y = py(t);
        let _ = write!(
            out,
            r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            L,
            W - R,
            L - 6.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (L + W - R) / 2.0,
        H - 12.0,
        esc(chart.x_label),
        (T + H - B) / 2.0,
        esc(chart.y_label)
    );
    for (si, s) in series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let ok: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!chart.log_x || x > 0.0))
            .collect();
        match chart.style {
            Style::Lines if ok.len() > 1 => {
                let d: Vec<String> = ok
                    .iter()
                    .enumerate()
                    .map(|(i, &(x, y))| {
                        format!(
                            "{}{:.1} {:.1}",
                            if i == 0 { "M" } else { "L" },
                            px(x),
                            py(y)
                        )
                    })
                    .collect();
                let _ = write!(
                    out,
                    r#"<path d="{}" stroke="{color}" stroke-width="1.5" fill="none"/>"#,
                    d.join(" ")
                );
            }
            _ => {}
        }
        if chart.style == Style::Points || ok.len() == 1 {
            for &(x, y) in &ok {
                let _ = write!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}" fill-opacity="0.8"/>"#,
                    px(x),
                    py(y)
                );
            }
        }
        if let Some(iv) = &s.intervals {
            for (&(x, _), &(lo, hi)) in s.points.iter().zip(iv) {
                if x.is_finite() && lo.is_finite() && hi.is_finite() {
                    let _ = write!(
                        out,
                        r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{color}"/>"#,
                        px(x),
                        py(lo),
                        py(hi)
                    );
                }
            }
        }
        let ly = T + 10.0 + 18.0 * si as f64;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            W - R + 12.0,
            ly - 10.0,
            W - R + 30.0,
            ly,
            esc(&s.name)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_the_range_with_round_steps() {
        // Span 0.74 in at most 6 steps: 0.1 would need 7, so the step is 0.2.
        let t = ticks(0.13, 0.87, 6);
        assert_eq!(t.len(), 4, "{t:?}");
        assert!(
            (t[0] - 0.2).abs() < 1e-9 && (t[3] - 0.8).abs() < 1e-9,
            "{t:?}"
        );
        assert!(
            t.windows(2).all(|w| ((w[1] - w[0]) - 0.2).abs() < 1e-9),
            "{t:?}"
        );
        assert_eq!(ticks(0.0, 5.0, 5), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn chart_draws_every_series_and_skips_nan() {
        let s = vec![
            Series::new("a", vec![(1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0)]),
            Series::new("b<c", vec![(1.0, 0.5)]),
        ];
        let chart = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            style: Style::Lines,
            log_x: false,
        };
        let out = svg(&chart, &s);
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        assert!(out.contains("b&lt;c"), "legend escapes names");
        assert_eq!(out.matches("<path d=\"M").count(), 2, "axes + one line");
        assert!(!out.contains("NaN"));
        let empty = svg(&chart, &[]);
        assert!(empty.contains("no data"));
    }
}
