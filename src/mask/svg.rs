//! One sequence's mask as a hand-written SVG heatmap (and as text): rows are queries, columns
//! keys, each axis labelled `word/TAG`; allowed pairs dark, forbidden causal pairs light, the
//! non-causal upper triangle blank, gold dependency arcs ringed.

use super::bits::BitMask;
use crate::ling::Upos;

/// What to draw.
pub struct Heatmap<'a> {
    pub words: &'a [String],
    pub tags: &'a [Option<Upos>],
    /// Gold head position per token (−1 / out of range: none).
    pub heads: Option<&'a [i32]>,
    pub title: &'a str,
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn label(h: &Heatmap<'_>, i: usize) -> String {
    let tag = h.tags.get(i).copied().flatten().map_or("?", Upos::name);
    format!("{}/{}", h.words.get(i).map_or("", String::as_str), tag)
}

/// Arc cells `(query, key)` of the gold heads.
fn arc_cells(h: &Heatmap<'_>, n: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    if let Some(hs) = h.heads {
        for (d, &hd) in hs.iter().enumerate().take(n) {
            if hd >= 0 && (hd as usize) < n {
                let hd = hd as usize;
                v.push((d.max(hd), d.min(hd)));
            }
        }
    }
    v
}

/// SVG of sequence `b`, mask head `head`, first `n = words.len()` positions.
pub fn svg(mask: &BitMask, b: usize, head: usize, h: &Heatmap<'_>) -> String {
    let n = h.words.len().min(mask.t());
    let cell = 18usize;
    let lab_w = (0..n)
        .map(|i| label(h, i).chars().count())
        .max()
        .unwrap_or(1)
        * 7
        + 12;
    let top = lab_w * 7 / 10 + 30; // rotated labels need less height than width
    let left = lab_w;
    // Rotated column labels reach about 0.7 of their length to the right of their column;
    // the title and the legend need their own width.
    let legend_w = 470;
    let width = (left + n * cell + lab_w * 7 / 10 + 20)
        .max(h.title.chars().count() * 8 + 10)
        .max(legend_w);
    let height = top + n * cell + 60;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"4\" y=\"14\" font-size=\"13\">{}</text>\n",
        esc(h.title)
    );
    for i in 0..n {
        let y = top + i * cell + cell * 3 / 4;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{}</text>\n",
            left - 4,
            esc(&label(h, i))
        ));
        let x = left + i * cell + cell / 2 + 4;
        s.push_str(&format!(
            "<text transform=\"translate({x},{}) rotate(-45)\">{}</text>\n",
            top - 4,
            esc(&label(h, i))
        ));
    }
    for i in 0..n {
        for j in 0..n {
            let (x, y) = (left + j * cell, top + i * cell);
            let fill = if j > i {
                "#ffffff"
            } else if mask.get(b, head, i, j) {
                if i == j {
                    "#1a365d"
                } else {
                    "#2b6cb0"
                }
            } else {
                "#e2e8f0"
            };
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" \
                 stroke=\"#cbd5e0\" stroke-width=\"0.5\"/>\n"
            ));
        }
    }
    for (q, k) in arc_cells(h, n) {
        s.push_str(&format!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"none\" stroke=\"#e53e3e\" \
             stroke-width=\"2\"/>\n",
            left + k * cell + cell / 2,
            top + q * cell + cell / 2,
            cell / 2 - 2
        ));
    }
    let ly = top + n * cell + 22;
    let legend = [
        ("#2b6cb0", "allowed"),
        ("#1a365d", "self"),
        ("#e2e8f0", "masked (causal)"),
        ("#ffffff", "future (j > i)"),
    ];
    let mut x = 4;
    for (c, t) in legend {
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\" stroke=\"#a0aec0\"/>\
             <text x=\"{}\" y=\"{ly}\">{t}</text>\n",
            ly - 10,
            x + 16
        ));
        x += 16 + t.len() * 7 + 14;
    }
    if h.heads.is_some() {
        s.push_str(&format!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"6\" fill=\"none\" stroke=\"#e53e3e\" stroke-width=\"2\"/>\
             <text x=\"{}\" y=\"{ly}\">gold arc</text>\n",
            x + 6,
            ly - 4,
            x + 16
        ));
    }
    s.push_str(&format!(
        "<text x=\"4\" y=\"{}\">rows: queries i; columns: keys j</text>\n</svg>\n",
        ly + 20
    ));
    s
}

/// The same picture as text: `#` allowed, `.` masked, blank future, `@`/`o` a gold arc
/// allowed/masked.
pub fn text(mask: &BitMask, b: usize, head: usize, h: &Heatmap<'_>) -> String {
    let n = h.words.len().min(mask.t());
    let arcs = arc_cells(h, n);
    let w = (0..n)
        .map(|i| label(h, i).chars().count())
        .max()
        .unwrap_or(1);
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("{i:>3} {:<w$} ", label(h, i)));
        for j in 0..=i {
            let on = mask.get(b, head, i, j);
            let arc = arcs.contains(&(i, j));
            s.push(match (on, arc) {
                (true, true) => '@',
                (false, true) => 'o',
                (true, false) => '#',
                (false, false) => '.',
            });
        }
        s.push('\n');
    }
    s
}
