//! Attention alignment with the ASA mask (E1, and E3 per pruning level): how much of a causal
//! model's attention falls inside the ASA mask, against density-matched nulls.
//!
//! Measured per layer, head and sentence on held-out text, avoiding the flaws of the public
//! measurement (DESIGN.md §2):
//! - **Within the query's sentence.** A tag pair says nothing about two words of different
//!   sentences, and in a window most earlier keys lie in earlier sentences (83% of pairs at
//!   T = 64 on the synthetic corpus). Row `i`'s keys are the valid `j < i` of its own sentence
//!   (a window that starts inside a sentence starts it at 0), its attention is renormalised
//!   over them and itself, and only rows with at least one such key count. The share of
//!   pairs and of attention that go to earlier sentences is reported apart
//!   ([`UnitSums::cross_keys`], [`UnitSums::cross_mass`]).
//! - **Nulls as exact expectations**, so they add no sampling noise: the *row-matched* null
//!   allows `m` of the row's `n` within-sentence keys uniformly at random (`m` = what the ASA
//!   mask allows), expected mass `(m/n)·Σ P'`; the *distance-matched* null allows a pair at
//!   distance `d` with probability `c_d / n_d`, the ASA mask's share of the sentence's pairs
//!   at that distance, so its distance histogram matches the ASA mask's in expectation.
//! - **The public code's frame beside ours**: whole-window attention inside the ASA mask
//!   (every earlier key, as the seed measured) against one random mask at the ASA mask's
//!   *global* density over the whole T×T square, not restricted to the causal region. Half of
//!   such a mask falls where causal attention is zero, so its expected mass is that density
//!   ([`UnitSums::window_mass`] vs [`UnitSums::global_null`]): the low baseline the seed
//!   compared against.
//! - **Three tag rules** ([`RULES`]): the run's causal tags (the mask a model could be trained
//!   with); the *target* variant, whose row `i` is keyed on the tag of token `i + 1`, the word
//!   row `i` predicts (allowed here because E1 never trains); and the *gold* tags as an
//!   oracle, when the text has them.
//! - The unit of resampling is the sentence (a sentence cut by a window boundary counts as
//!   two units); each seed measures its own random stretch of the held-out text (or all of
//!   it), so intervals across seeds include text sampling.
//!
//! Per scored row `i` with renormalised attention `P'_i·` over its within-sentence keys `W_i`
//! and itself:
//! - `mass` = `Σ_{j ∈ W_i ∩ M_i} P'_ij + P'_ii` (every mask here allows the diagonal);
//! - `offdiag` = `Σ_{j ∈ W_i ∩ M_i} P'_ij / Σ_{j ∈ W_i} P'_ij`;
//! - `topk` = the fraction of the row's `m` most-attended keys of `W_i` that lie in `M_i`
//!   (rows with `m = 0` or `m = n` say nothing and are skipped); the nulls' expected share.

use crate::backend::Ops;
use crate::data::batch::NO_TAG;
use crate::data::{EvalWindows, TokenStream};
use crate::mask::asa::{AsaMaskBuilder, Refiner};
use crate::mask::bits::BitMask;
use crate::mask::nulls;
use crate::model::{AttentionCapture, Gpt};
use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The masks compared, in the order of [`RuleSums`]' arrays.
pub const MASKS: [&str; 3] = ["asa", "null_rows", "null_dist"];

/// The tag rules measured, in the order of [`UnitSums::rules`].
pub const RULES: [&str; 3] = ["causal", "target", "gold"];

/// What to measure on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignOptions {
    /// Windows per forward pass.
    pub batch: usize,
    /// Window length.
    pub seq_len: usize,
    /// Stop after this many scored tokens: a stretch of the held-out text starting at a
    /// sentence chosen by `seed` (wrapping around its end), or all of it when it is shorter.
    pub max_tokens: usize,
    /// Seed of the stretch measured.
    pub seed: u64,
}

/// Sums of one tag rule over the scored rows of one sentence, for one (layer, head).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleSums {
    /// Rows with at least one valid earlier key in their sentence (and, for the target and
    /// gold rules, a tag to key the row on).
    pub rows: u32,
    /// Σ `mass` per mask ([`MASKS`] order).
    pub mass: [f64; 3],
    /// Σ `offdiag` per mask.
    pub offdiag: [f64; 3],
    /// Σ of the renormalised diagonal probability `P'_ii`.
    pub diag: f64,
    /// Σ of the ASA mask's within-sentence density (`m / n`).
    pub density: f64,
    /// Rows that entered the top-k agreement (`0 < m < n`).
    pub topk_rows: u32,
    /// Σ top-k agreement per mask.
    pub topk: [f64; 3],
}

impl RuleSums {
    /// Add another unit's sums.
    pub fn add(&mut self, o: &RuleSums) {
        self.rows += o.rows;
        self.topk_rows += o.topk_rows;
        self.diag += o.diag;
        self.density += o.density;
        for m in 0..3 {
            self.mass[m] += o.mass[m];
            self.offdiag[m] += o.offdiag[m];
            self.topk[m] += o.topk[m];
        }
    }

    /// Row-weighted mean of `mass` for mask `m` (NaN without rows).
    pub fn mean_mass(&self, m: usize) -> f64 {
        if self.rows == 0 {
            f64::NAN
        } else {
            self.mass[m] / self.rows as f64
        }
    }
}

/// Sums over one sentence, for one (layer, head).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitSums {
    /// Per tag rule ([`RULES`] order), within the sentence.
    pub rules: [RuleSums; 3],
    /// Rows with at least one valid earlier key anywhere in the window (the public frame).
    pub window_rows: u32,
    /// Σ over window rows of the attention on keys of earlier sentences.
    pub cross_mass: f64,
    /// Σ over window rows of the share of their valid earlier keys in earlier sentences.
    pub cross_keys: f64,
    /// Σ over window rows of the attention inside the ASA mask (causal tags) over every key
    /// of the window, diagonal included: the seed's metric.
    pub window_mass: f64,
    /// Σ over window rows of the ASA mask's density over the window's whole T×T square: the
    /// expected mass of the public code's random mask.
    pub global_null: f64,
}

impl UnitSums {
    /// The run's causal-tag rule (the mask a model could be trained with).
    pub fn causal(&self) -> &RuleSums {
        &self.rules[0]
    }

    /// Add another unit's sums (merging sentences or heads).
    pub fn add(&mut self, o: &UnitSums) {
        for (a, b) in self.rules.iter_mut().zip(&o.rules) {
            a.add(b);
        }
        self.window_rows += o.window_rows;
        self.cross_mass += o.cross_mass;
        self.cross_keys += o.cross_keys;
        self.window_mass += o.window_mass;
        self.global_null += o.global_null;
    }
}

/// One (layer, head): its per-sentence sums.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadAlignment {
    pub layer: usize,
    pub head: usize,
    pub units: Vec<UnitSums>,
}

impl HeadAlignment {
    /// Sums over every sentence.
    pub fn total(&self) -> UnitSums {
        let mut t = UnitSums::default();
        self.units.iter().for_each(|u| t.add(u));
        t
    }
}

/// The alignment of every (layer, head) of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alignment {
    pub options: AlignOptions,
    /// Scored tokens the measurement covered.
    pub tokens: usize,
    /// Token offset in the held-out text where the measured stretch starts.
    pub start: usize,
    /// Whether the text had gold tags (the gold rule's rows are empty otherwise).
    pub gold_tags: bool,
    pub heads: Vec<HeadAlignment>,
}

impl Alignment {
    /// Row-weighted mean of the causal rule's `mass` for mask `m` over every head.
    pub fn mean_mass(&self, m: usize) -> f64 {
        let mut t = UnitSums::default();
        self.heads.iter().for_each(|h| t.add(&h.total()));
        t.causal().mean_mass(m)
    }
}

/// `s` from token `start` to its end, then from its beginning (the measured stretch).
fn rotated(s: &TokenStream, start: usize) -> TokenStream {
    let rot = |v: &[u32]| [&v[start..], &v[..start]].concat();
    TokenStream {
        ids: rot(&s.ids),
        upos: [&s.upos[start..], &s.upos[..start]].concat(),
        heads: [&s.heads[start..], &s.heads[..start]].concat(),
        eos: s.eos,
    }
}

/// The first token of a sentence chosen by `seed` (0 when the whole text fits in
/// `max_tokens`).
fn stretch_start(s: &TokenStream, max_tokens: usize, seed: u64) -> usize {
    if s.len() <= max_tokens + 1 {
        return 0;
    }
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            (0..s.len() - 1)
                .filter(|&p| s.ids[p] == s.eos)
                .map(|p| p + 1),
        )
        .collect();
    starts[Rng::new(seed ^ 0x005E_EDE1).below(starts.len())]
}

/// Measure the alignment of `model` (which must attend causally, with no mask of its own) on
/// `stream` (held-out text with the run's leak-free tags), against the mask of `builder`
/// refined by `refiner` (the run's `--refine`, if any). `gold` is the same text with its gold
/// tags, for the oracle rule (`None`, or a stream without tags: the rule stays empty).
pub fn measure<O: Ops>(
    model: &mut Gpt<O>,
    builder: &AsaMaskBuilder,
    refiner: Option<&Refiner>,
    stream: &TokenStream,
    gold: Option<&TokenStream>,
    opts: &AlignOptions,
) -> Result<Alignment> {
    if opts.seq_len > model.cfg.ctx {
        return Err(Error::Config(format!(
            "alignment window {} exceeds the model context {}",
            opts.seq_len, model.cfg.ctx
        )));
    }
    let gold = gold.filter(|g| g.upos.iter().any(Option::is_some));
    if let Some(g) = gold {
        if g.ids != stream.ids {
            return Err(Error::Config(
                "alignment: the gold-tagged text differs from the measured text".into(),
            ));
        }
    }
    let start = stretch_start(stream, opts.max_tokens, opts.seed);
    let stream = rotated(stream, start);
    let gold = gold.map(|g| rotated(g, start));
    let (nl, nh) = (model.cfg.n_layer, model.cfg.n_head);
    let mut heads: Vec<HeadAlignment> = (0..nl * nh)
        .map(|i| HeadAlignment {
            layer: i / nh,
            head: i % nh,
            units: Vec::new(),
        })
        .collect();
    let mut gold_windows = match &gold {
        Some(g) => Some(EvalWindows::new(g, opts.batch, opts.seq_len)?),
        None => None,
    };
    let mut tokens = 0usize;
    for batch in EvalWindows::new(&stream, opts.batch, opts.seq_len)? {
        let (b, t) = (batch.b, batch.t);
        if batch
            .upos
            .iter()
            .zip(&batch.targets)
            .any(|(&u, &y)| u == NO_TAG && y != crate::backend::IGNORE_INDEX)
        {
            return Err(Error::Config(
                "alignment needs a UPOS tag on every token of the held-out text".into(),
            ));
        }
        let valid = nulls::valid_from_targets(&batch.targets);
        let mut asa = builder.build_for_batch(&batch)?;
        if let Some(r) = refiner {
            r.apply(&mut asa, &batch.tokens, &batch.upos)?;
        }
        if asa.per_head() {
            return Err(Error::Config(
                "alignment compares one mask for all heads; the builder made per-head masks".into(),
            ));
        }
        // Row i keyed on the tag of token i + 1 (none for a window's last row).
        let next_tags: Vec<u8> = (0..b * t)
            .map(|p| {
                if p % t + 1 < t {
                    batch.upos[p + 1]
                } else {
                    NO_TAG
                }
            })
            .collect();
        let target = builder.build_with_query_tags(&batch.upos, &next_tags, b, t)?;
        let gold_batch = gold_windows.as_mut().and_then(Iterator::next);
        let gold_mask = match &gold_batch {
            Some(g) => {
                let mut m = builder.build_for_batch(g)?;
                if let Some(r) = refiner {
                    r.apply(&mut m, &g.tokens, &g.upos)?;
                }
                Some(m)
            }
            None => None,
        };
        let rules: [Option<Rule<'_>>; 3] = [
            Some(Rule {
                mask: &asa,
                query_tags: &batch.upos,
            }),
            Some(Rule {
                mask: &target,
                query_tags: &next_tags,
            }),
            match (&gold_mask, &gold_batch) {
                (Some(mask), Some(g)) => Some(Rule {
                    mask,
                    query_tags: &g.upos,
                }),
                _ => None,
            },
        ];
        model.forward(&batch.tokens, &batch.targets, b, t, None)?;
        tokens += valid.iter().filter(|&&v| v).count();
        let global: Vec<f64> = (0..b).map(|bi| window_density(&asa, bi)).collect();
        for l in 0..nl {
            let cap = model.attention_capture(l)?;
            for h in 0..nh {
                for bi in 0..b {
                    let w = Window {
                        cap: &cap,
                        rules: &rules,
                        valid: &valid[bi * t..(bi + 1) * t],
                        tokens: &batch.tokens[bi * t..(bi + 1) * t],
                        eos: stream.eos,
                        b: bi,
                        h,
                        global: global[bi],
                    };
                    heads[l * nh + h].units.extend(w.units());
                }
            }
        }
        if tokens >= opts.max_tokens {
            break;
        }
    }
    Ok(Alignment {
        options: *opts,
        tokens,
        start,
        gold_tags: gold.is_some(),
        heads,
    })
}

/// The ASA mask's allowed pairs in window `b` over the whole `T × T` square.
fn window_density(mask: &BitMask, b: usize) -> f64 {
    let t = mask.t();
    let ones: u64 = (0..t)
        .map(|i| {
            mask.row(b, 0, i)
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum::<u64>()
        })
        .sum();
    ones as f64 / (t * t) as f64
}

/// One tag rule's mask and the tags its rows are keyed on (rows without one are not scored).
struct Rule<'a> {
    mask: &'a BitMask,
    query_tags: &'a [u8],
}

/// One window of one head, for [`Window::units`].
struct Window<'a> {
    cap: &'a AttentionCapture,
    rules: &'a [Option<Rule<'a>>; 3],
    valid: &'a [bool],
    tokens: &'a [u32],
    eos: u32,
    b: usize,
    h: usize,
    global: f64,
}

/// A scored row of a sentence: its position, its valid earlier keys in the sentence, and its
/// attention over the sentence up to itself (`probs[j - start]`, zero at invalid keys).
struct Row {
    i: usize,
    keys: Vec<usize>,
    probs: Vec<f64>,
}

impl Window<'_> {
    /// The per-sentence sums (a sentence ends after an `eos` token).
    fn units(&self) -> Vec<UnitSums> {
        let t = self.cap.t;
        let mut units = Vec::new();
        let mut s = 0;
        while s < t {
            let mut e = s;
            while e + 1 < t && self.tokens[e] != self.eos {
                e += 1;
            }
            let u = self.sentence(s, e);
            if u.window_rows > 0 {
                units.push(u);
            }
            s = e + 1;
        }
        units
    }

    /// Sums of the sentence at positions `s..=e`.
    fn sentence(&self, s: usize, e: usize) -> UnitSums {
        let (cap, b, h, v) = (self.cap, self.b, self.h, self.valid);
        let mut u = UnitSums::default();
        let mut rows = Vec::new();
        for i in s..=e {
            if !v[i] {
                continue;
            }
            let earlier: Vec<usize> = (0..i).filter(|&j| v[j]).collect();
            if earlier.is_empty() {
                continue; // only itself: any mask would score 100%
            }
            // Attention of row i on every position up to itself (zero at invalid keys).
            let pall: Vec<f64> = (0..=i)
                .map(|j| if v[j] { cap.prob(b, h, i, j) } else { 0.0 })
                .collect();
            let p = |j: usize| pall[j];
            // The public frame: every earlier key of the window.
            let cross: Vec<usize> = earlier.iter().copied().filter(|&j| j < s).collect();
            u.window_rows += 1;
            u.cross_keys += cross.len() as f64 / earlier.len() as f64;
            u.cross_mass += cross.iter().map(|&j| p(j)).sum::<f64>();
            if let Some(r) = &self.rules[0] {
                u.window_mass += earlier
                    .iter()
                    .chain(std::iter::once(&i))
                    .filter(|&&j| r.mask.get(b, 0, i, j))
                    .map(|&j| p(j))
                    .sum::<f64>();
            }
            u.global_null += self.global;
            if cross.len() < earlier.len() {
                rows.push(Row {
                    i,
                    keys: (s..i).filter(|&j| v[j]).collect(),
                    probs: pall[s..].to_vec(),
                });
            }
        }
        for (rule, sums) in self.rules.iter().zip(u.rules.iter_mut()) {
            if let Some(rule) = rule {
                let scored: Vec<&Row> = rows
                    .iter()
                    .filter(|r| rule.query_tags[b * cap.t + r.i] != NO_TAG)
                    .collect();
                self.rule_sums(rule, s, &scored, sums);
            }
        }
        u
    }

    /// One rule's sums over the scored rows of the sentence starting at `s`.
    fn rule_sums(&self, rule: &Rule<'_>, s: usize, rows: &[&Row], acc: &mut RuleSums) {
        let b = self.b;
        let allowed = |i: usize, j: usize| rule.mask.get(b, 0, i, j);
        // The mask's share of the sentence's pairs at each distance.
        let len = rows.last().map_or(0, |r| r.i - s + 1);
        let (mut c, mut n) = (vec![0f64; len], vec![0f64; len]);
        for r in rows {
            for &j in &r.keys {
                n[r.i - j] += 1.0;
                c[r.i - j] += allowed(r.i, j) as u8 as f64;
            }
        }
        let q = |d: usize| c[d] / n[d];
        let mut order: Vec<usize> = Vec::new();
        for r in rows {
            let (i, keys) = (r.i, &r.keys);
            let z: f64 = keys.iter().map(|&j| r.probs[j - s]).sum::<f64>() + r.probs[i - s];
            let pr = |j: usize| r.probs[j - s] / z;
            let off: f64 = keys.iter().map(|&j| pr(j)).sum();
            let m = keys.iter().filter(|&&j| allowed(i, j)).count();
            let nk = keys.len();
            let share = m as f64 / nk as f64;
            let inside = [
                keys.iter()
                    .filter(|&&j| allowed(i, j))
                    .map(|&j| pr(j))
                    .sum::<f64>(),
                share * off,
                keys.iter().map(|&j| pr(j) * q(i - j)).sum::<f64>(),
            ];
            let diag = pr(i);
            acc.rows += 1;
            acc.diag += diag;
            acc.density += share;
            for (k, &x) in inside.iter().enumerate() {
                acc.mass[k] += x + diag;
                acc.offdiag[k] += if off > 0.0 { x / off } else { 0.0 };
            }
            if m > 0 && m < nk {
                // Most-attended keys first; ties to the lower index (deterministic).
                order.clear();
                order.extend_from_slice(keys);
                order.sort_by(|&x, &y| pr(y).total_cmp(&pr(x)).then(x.cmp(&y)));
                let top = &order[..m];
                acc.topk_rows += 1;
                acc.topk[0] += top.iter().filter(|&&j| allowed(i, j)).count() as f64 / m as f64;
                acc.topk[1] += share;
                acc.topk[2] += top.iter().map(|&j| q(i - j)).sum::<f64>() / m as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-head capture with `q = 1` and `k_j = a_j` (d = 1), so `P_ij ∝ exp(a_j)` over
    /// `j ≤ i`.
    fn capture(a: &[f32]) -> AttentionCapture {
        let t = a.len();
        let lse = (0..t)
            .map(|i| a[..=i].iter().map(|&x| (x as f64).exp()).sum::<f64>().ln() as f32)
            .collect();
        AttentionCapture {
            b: 1,
            t,
            h: 1,
            d: 1,
            q: vec![1.0; t],
            k: a.to_vec(),
            lse,
            tags: vec![],
            tag_bias: vec![],
        }
    }

    #[test]
    fn a_constructed_pattern_gives_its_known_masses() {
        // Two sentences: positions 0..=2 (2 is <eos>), then 3..=5. Attention of row 5 on keys
        // 0..=5 ∝ exp(a) = (1, 1, 1, 2, 1, 1) · e^0 with a_3 = ln 2.
        const EOS: u32 = 99;
        let a = [0.0, 0.0, 0.0, std::f32::consts::LN_2, 0.0, 0.0];
        let cap = capture(&a);
        let tokens = [5, 6, EOS, 7, 8, 9];
        let valid = [true; 6];
        // The ASA mask: the diagonal, and (5, 3), (4, 3) and the cross-sentence (5, 0).
        let mask = BitMask::from_fn(1, 1, 6, |_, _, i, j| {
            i == j || (i, j) == (5, 3) || (i, j) == (4, 3) || (i, j) == (5, 0)
        });
        let tags = [0u8; 6];
        let rules = [
            Some(Rule {
                mask: &mask,
                query_tags: &tags,
            }),
            None,
            None,
        ];
        let w = Window {
            cap: &cap,
            rules: &rules,
            valid: &valid,
            tokens: &tokens,
            eos: EOS,
            b: 0,
            h: 0,
            global: window_density(&mask, 0),
        };
        let units = w.units();
        assert_eq!(units.len(), 2, "one unit per sentence");
        let (s1, s2) = (&units[0], &units[1]);
        // Sentence 1: rows 1 and 2 have earlier keys, all in their own sentence.
        assert_eq!((s1.window_rows, s1.causal().rows), (2, 2));
        assert_eq!((s1.cross_keys, s1.cross_mass), (0.0, 0.0));
        // Sentence 2: rows 3, 4, 5 have earlier keys; row 3 has none in its sentence.
        assert_eq!((s2.window_rows, s2.causal().rows), (3, 2));
        let close =
            |x: f64, y: f64, what: &str| assert!((x - y).abs() < 1e-6, "{what}: {x} vs {y}");
        // Cross-sentence keys: row 3: 3/3, row 4: 3/4, row 5: 3/5.
        close(s2.cross_keys, 1.0 + 0.75 + 0.6, "cross keys");
        // Cross-sentence attention: row 3: 3/5, row 4: 3/6, row 5: 3/7.
        close(s2.cross_mass, 0.6 + 0.5 + 3.0 / 7.0, "cross mass");
        // Public frame: row 3 has only its diagonal (2/5); row 4: keys 3 and 4 (3/6); row 5:
        // keys 0, 3, 5 (4/7).
        close(s2.window_mass, 0.4 + 0.5 + 4.0 / 7.0, "window mass");
        close(s2.global_null, 3.0 * 9.0 / 36.0, "global null");
        let c = s2.causal();
        // Within-sentence, renormalised. Row 4: keys {3}, weights (2, 1) → P' = (2/3, 1/3);
        // m = n = 1. Row 5: keys {3, 4}, weights (2, 1, 1) → P' = (1/2, 1/4, 1/4); m = 1,
        // n = 2.
        close(c.diag, 1.0 / 3.0 + 0.25, "diagonal");
        close(c.mass[0], 1.0 + 0.75, "ASA mass");
        close(c.density, 1.0 + 0.5, "density");
        // Row-matched null: row 4 = the ASA mask (m = n); row 5: (1/2)·(3/4) + 1/4.
        close(c.mass[1], 1.0 + 0.375 + 0.25, "row-matched null");
        // Distance-matched: pairs at distance 1: (4,3) allowed, (5,4) not → q1 = 1/2; at
        // distance 2: (5,3) allowed → q2 = 1. Row 4: (2/3)·q1 + 1/3; row 5: (1/4)·q1 +
        // (1/2)·q2 + 1/4.
        close(
            c.mass[2],
            (1.0 / 3.0 + 1.0 / 3.0) + (0.125 + 0.5 + 0.25),
            "distance null",
        );
        // Off-diagonal shares: row 4: 1, 1, 1/2; row 5: (1/2)/(3/4), 1/2, (5/8)/(3/4).
        close(c.offdiag[0], 1.0 + 2.0 / 3.0, "ASA off-diag");
        close(c.offdiag[1], 1.0 + 0.5, "null off-diag");
        close(c.offdiag[2], 0.5 + (0.625 / 0.75), "dist off-diag");
        // Top-k: only row 5 (0 < m < n): its most-attended key is 3, inside the mask.
        assert_eq!(c.topk_rows, 1);
        close(c.topk[0], 1.0, "ASA top-k");
        close(c.topk[1], 0.5, "null top-k");
        close(c.topk[2], 1.0, "dist top-k (q2 = 1)");
    }

    #[test]
    fn each_seed_measures_its_own_stretch() {
        let eos = 0;
        let ids: Vec<u32> = (0..1000)
            .map(|i| if i % 10 == 9 { eos } else { 1 + i % 7 })
            .collect();
        let s = TokenStream {
            upos: vec![None; ids.len()],
            heads: vec![None; ids.len()],
            ids,
            eos,
        };
        let starts: Vec<usize> = (0..8).map(|seed| stretch_start(&s, 200, seed)).collect();
        assert!(
            starts.iter().all(|&p| p == 0 || s.ids[p - 1] == eos),
            "{starts:?}"
        );
        let mut distinct = starts.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() >= 4,
            "seeds should pick different stretches: {starts:?}"
        );
        assert_eq!(stretch_start(&s, 5000, 7), 0, "the whole text when it fits");
        let r = rotated(&s, 30);
        assert_eq!(r.ids.len(), s.ids.len());
        assert_eq!(r.ids[0], s.ids[30]);
        assert_eq!(r.ids[970], s.ids[0]);
    }
}
