//! Attention alignment with the ASA mask (E1, and E3 per pruning level): how much of a causal
//! model's attention falls inside the ASA mask, against the two density-matched nulls.
//!
//! Measured per layer, head and sentence on held-out text, avoiding the flaws of the public
//! measurement (DESIGN.md §2):
//! - the nulls match the ASA mask's density **per query row inside the valid region**
//!   ([`nulls::row_matched`]) and also its distance histogram ([`nulls::distance_matched`]);
//! - only rows with at least two valid keys count (row 0 of a sentence window, whose only key
//!   is itself, would score 100% for any mask), and the diagonal is reported separately;
//! - the unit of resampling is the sentence, so intervals come from a bootstrap over
//!   sentences (a sentence cut by a window boundary counts as two units).
//!
//! Per row `i` with attention `P_i·` over its valid keys `j ≤ i`:
//! - `mass` = `Σ_{j ∈ M_i} P_ij` (the seed's metric, diagonal included where `M` allows it);
//! - `offdiag` = `Σ_{j<i, j ∈ M_i} P_ij / Σ_{j<i} P_ij` (the share of attention that leaves
//!   the token itself and lands inside the mask);
//! - `topk` = the fraction of the row's `m` most-attended off-diagonal keys that lie in `M_i`,
//!   `m` = the number of off-diagonal keys `M_i` allows (rows with `m = 0` or `m` = all keys
//!   say nothing and are skipped); a null has the same `m`, so chance agreement is matched.

use crate::backend::Ops;
use crate::data::{EvalWindows, TokenStream};
use crate::mask::asa::{AsaMaskBuilder, Refiner};
use crate::mask::bits::BitMask;
use crate::mask::nulls;
use crate::model::{AttentionCapture, Gpt};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The masks compared, in the order of [`UnitSums`]' arrays.
pub const MASKS: [&str; 3] = ["asa", "null_rows", "null_dist"];

/// What to measure on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignOptions {
    /// Windows per forward pass.
    pub batch: usize,
    /// Window length.
    pub seq_len: usize,
    /// Stop after this many scored tokens (the held-out text is read from its start).
    pub max_tokens: usize,
    /// Seed of the null masks.
    pub seed: u64,
}

/// Sums over the valid rows of one sentence, for one (layer, head).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitSums {
    /// Rows with at least two valid keys.
    pub rows: u32,
    /// Σ `mass` per mask ([`MASKS`] order).
    pub mass: [f64; 3],
    /// Σ `offdiag` per mask.
    pub offdiag: [f64; 3],
    /// Σ of the diagonal probability `P_ii`.
    pub diag: f64,
    /// Σ of the ASA mask's off-diagonal density (allowed / valid off-diagonal keys).
    pub density: f64,
    /// Rows that entered the top-k agreement (same for every mask: the nulls match `m`).
    pub topk_rows: u32,
    /// Σ top-k agreement per mask.
    pub topk: [f64; 3],
}

impl UnitSums {
    /// Add another unit's sums (merging sentences or heads).
    pub fn add(&mut self, o: &UnitSums) {
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
    pub heads: Vec<HeadAlignment>,
}

impl Alignment {
    /// Row-weighted mean of `mass` for mask `m` (index into [`MASKS`]) over every head.
    pub fn mean_mass(&self, m: usize) -> f64 {
        let mut t = UnitSums::default();
        self.heads.iter().for_each(|h| t.add(&h.total()));
        if t.rows == 0 {
            f64::NAN
        } else {
            t.mass[m] / t.rows as f64
        }
    }
}

/// Measure the alignment of `model` (which must attend causally, with no mask of its own) on
/// `stream` (held-out text with gold or leak-free UPOS tags), against the mask of `builder`
/// refined by `refiner` (the run's `--refine`, if any).
pub fn measure<O: Ops>(
    model: &mut Gpt<O>,
    builder: &AsaMaskBuilder,
    refiner: Option<&Refiner>,
    stream: &TokenStream,
    opts: &AlignOptions,
) -> Result<Alignment> {
    if opts.seq_len > model.cfg.ctx {
        return Err(Error::Config(format!(
            "alignment window {} exceeds the model context {}",
            opts.seq_len, model.cfg.ctx
        )));
    }
    let (nl, nh) = (model.cfg.n_layer, model.cfg.n_head);
    let mut heads: Vec<HeadAlignment> = (0..nl * nh)
        .map(|i| HeadAlignment {
            layer: i / nh,
            head: i % nh,
            units: Vec::new(),
        })
        .collect();
    let mut tokens = 0usize;
    for (wi, batch) in EvalWindows::new(stream, opts.batch, opts.seq_len)?.enumerate() {
        if batch
            .upos
            .iter()
            .zip(&batch.targets)
            .any(|(&u, &y)| u == crate::data::batch::NO_TAG && y != crate::backend::IGNORE_INDEX)
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
        let seed = opts.seed ^ (wi as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let rows = nulls::row_matched(&asa, &valid, seed)?;
        let dist = nulls::distance_matched(&asa, &valid, seed ^ 0xD15)?;
        let masks = [&asa, &rows, &dist];
        model.forward(&batch.tokens, &batch.targets, batch.b, batch.t, None)?;
        tokens += valid.iter().filter(|&&v| v).count();
        for l in 0..nl {
            let cap = model.attention_capture(l)?;
            for h in 0..nh {
                for b in 0..batch.b {
                    let units = window_units(&cap, &masks, &valid, &batch.tokens, stream.eos, b, h);
                    heads[l * nh + h].units.extend(units);
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
        heads,
    })
}

/// The per-sentence sums of window `b`, head `h`. A sentence ends after an `eos` token.
#[allow(clippy::too_many_arguments)]
fn window_units(
    cap: &AttentionCapture,
    masks: &[&BitMask; 3],
    valid: &[bool],
    tokens: &[u32],
    eos: u32,
    b: usize,
    h: usize,
) -> Vec<UnitSums> {
    let t = cap.t;
    let v = &valid[b * t..(b + 1) * t];
    let mut units = Vec::new();
    let mut cur = UnitSums::default();
    let mut probs = vec![0f64; t];
    let mut order: Vec<usize> = Vec::with_capacity(t);
    for i in 0..t {
        if v[i] {
            row_sums(cap, masks, v, b, h, i, &mut probs, &mut order, &mut cur);
        }
        if tokens[b * t + i] == eos && cur.rows > 0 {
            units.push(std::mem::take(&mut cur));
        }
    }
    if cur.rows > 0 {
        units.push(cur);
    }
    units
}

#[allow(clippy::too_many_arguments)]
fn row_sums(
    cap: &AttentionCapture,
    masks: &[&BitMask; 3],
    v: &[bool],
    b: usize,
    h: usize,
    i: usize,
    probs: &mut [f64],
    order: &mut Vec<usize>,
    acc: &mut UnitSums,
) {
    let keys: Vec<usize> = (0..i).filter(|&j| v[j]).collect();
    if keys.is_empty() {
        return; // only itself: any mask would score 100%
    }
    for &j in keys.iter().chain(std::iter::once(&i)) {
        probs[j] = cap.prob(b, h, i, j);
    }
    let off_total: f64 = keys.iter().map(|&j| probs[j]).sum();
    acc.rows += 1;
    acc.diag += probs[i];
    // Most-attended off-diagonal keys first; ties to the lower index (deterministic).
    order.clear();
    order.extend_from_slice(&keys);
    order.sort_by(|&x, &y| probs[y].total_cmp(&probs[x]).then(x.cmp(&y)));
    let m_asa = keys.iter().filter(|&&j| masks[0].get(b, 0, i, j)).count();
    acc.density += m_asa as f64 / keys.len() as f64;
    let topk_row = m_asa > 0 && m_asa < keys.len();
    if topk_row {
        acc.topk_rows += 1;
    }
    for (mi, mask) in masks.iter().enumerate() {
        let inside: f64 = keys
            .iter()
            .filter(|&&j| mask.get(b, 0, i, j))
            .map(|&j| probs[j])
            .sum();
        let diag = if mask.get(b, 0, i, i) { probs[i] } else { 0.0 };
        acc.mass[mi] += inside + diag;
        acc.offdiag[mi] += if off_total > 0.0 {
            inside / off_total
        } else {
            0.0
        };
        if topk_row {
            let hits = order[..m_asa]
                .iter()
                .filter(|&&j| mask.get(b, 0, i, j))
                .count();
            acc.topk[mi] += hits as f64 / m_asa as f64;
        }
    }
}
