//! Density-matched null masks (DESIGN.md §2, "known flaws": the public ASA control had about
//! half the ASA mask's density).
//!
//! Both nulls work inside the **valid region** of each `(b, head)`: query rows `i` with
//! `valid[b·T + i]`, and keys `j < i` with `valid[b·T + j]` (padding is invalid). In every
//! valid row they keep the source's **diagonal bit** as it is and reproduce **exactly** the
//! number of allowed off-diagonal valid keys (the diagonal is therefore matched too, and can
//! be reported separately). Everything outside the valid region — invalid rows, keys after
//! the query, invalid keys — is copied from the source unchanged.
//!
//! - [`row_matched`]: each row's off-diagonal keys are a uniform random subset of its valid
//!   keys, of the source row's size.
//! - [`distance_matched`]: additionally the histogram of distances `i − j` of each
//!   `(b, head)` equals the source's exactly. It is sampled by "curveball" trades (Strona et
//!   al. 2014) on the row × distance incidence matrix: two rows pool the distances only one
//!   of them holds and that both could hold, shuffle them, and each takes back as many as it
//!   gave — every trade keeps both row counts and the distance histogram, and twenty trades per
//!   row randomise the assignment.
//!
//! - [`distance_causal`]: the training variant of the distance null. A model trained with a
//!   null mask must not see the future through it, and the exact histogram above is a
//!   property of the whole window: trading keys between rows makes row `i` depend on later
//!   rows' tags. So row `i` draws its keys (its exact count, without replacement) with
//!   probabilities proportional to the source's distance histogram over rows `0..=i` of its
//!   `(b, head)` (plus a small floor so every valid key stays possible): the histogram is
//!   matched in expectation, from the past only.
//!
//! All are deterministic functions of the source, the validity vector and the seed. Every
//! row draws from its own generator, seeded by `(seed, b, head, i)`, so [`row_matched`] and
//! [`distance_causal`] are causal: row `i` of the null depends only on rows `0..=i` of the
//! source and the validity of keys `0..=i`.

use super::bits::BitMask;
use crate::rng::Rng;
use crate::{Error, Result};

/// Trades per valid row in [`distance_matched`].
pub const TRADES_PER_ROW: usize = 20;

fn check(mask: &BitMask, valid: &[bool]) -> Result<()> {
    if valid.len() != mask.b() * mask.t() {
        return Err(Error::Mask(format!(
            "validity vector has {} entries for a B×T = {}×{} mask",
            valid.len(),
            mask.b(),
            mask.t()
        )));
    }
    Ok(())
}

/// Validity of each position from next-token targets: a position is valid when it is
/// scored (its target is not `IGNORE_INDEX`).
pub fn valid_from_targets(targets: &[u32]) -> Vec<bool> {
    targets
        .iter()
        .map(|&x| x != crate::backend::IGNORE_INDEX)
        .collect()
}

/// Per `(b, head, i)` (row-major), the number of allowed off-diagonal valid keys `j < i`
/// in valid rows (0 in invalid rows).
pub fn row_counts(mask: &BitMask, valid: &[bool]) -> Result<Vec<u32>> {
    check(mask, valid)?;
    let (b, hm, t) = (mask.b(), mask.heads(), mask.t());
    let mut out = Vec::with_capacity(b * hm * t);
    for bi in 0..b {
        let v = &valid[bi * t..(bi + 1) * t];
        for h in 0..hm {
            for i in 0..t {
                out.push(if v[i] {
                    (0..i).filter(|&j| v[j] && mask.get(bi, h, i, j)).count() as u32
                } else {
                    0
                });
            }
        }
    }
    Ok(out)
}

/// Histogram of distances `i − j` (`1..T`, index `d`; index 0 unused) over allowed
/// off-diagonal valid pairs, summed over the whole mask.
pub fn distance_histogram(mask: &BitMask, valid: &[bool]) -> Result<Vec<u64>> {
    check(mask, valid)?;
    let (b, hm, t) = (mask.b(), mask.heads(), mask.t());
    let mut hist = vec![0u64; t.max(1)];
    for bi in 0..b {
        let v = &valid[bi * t..(bi + 1) * t];
        for h in 0..hm {
            for i in (0..t).filter(|&i| v[i]) {
                for j in (0..i).filter(|&j| v[j] && mask.get(bi, h, i, j)) {
                    hist[i - j] += 1;
                }
            }
        }
    }
    Ok(hist)
}

/// Mark `k` distinct indices of `taken` (all false on entry) uniformly at random (Floyd's
/// algorithm: `k` draws, no rejection).
fn floyd(rng: &mut Rng, k: usize, taken: &mut [bool]) {
    let n = taken.len();
    debug_assert!(k <= n);
    for jx in n - k..n {
        let r = rng.below(jx + 1);
        if taken[r] {
            taken[jx] = true;
        } else {
            taken[r] = true;
        }
    }
}

/// The generator of row `(b, h, i)`: its own stream, so no row's draws depend on how many
/// numbers another row consumed.
fn row_rng(seed: u64, b: usize, h: usize, i: usize) -> Rng {
    let mut x = seed;
    for v in [b, h, i] {
        // splitmix64 finaliser over the running value and the index
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15 ^ v as u64);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    Rng::new(x)
}

/// The row-count-matched null of `mask` (see the module docs).
pub fn row_matched(mask: &BitMask, valid: &[bool], seed: u64) -> Result<BitMask> {
    row_matched_from(mask, valid, &vec![0; valid.len()], seed)
}

/// [`row_matched`] with the keys of row `i` drawn from `from[b·T + i]..i` only (the sentence
/// of a `--cross-sentence allow|block` mask); the bits of keys before it are kept as `mask`
/// has them.
pub fn row_matched_from(
    mask: &BitMask,
    valid: &[bool],
    from: &[usize],
    seed: u64,
) -> Result<BitMask> {
    check(mask, valid)?;
    check_from(valid, from)?;
    let (b, hm, t) = (mask.b(), mask.heads(), mask.t());
    let mut out = mask.clone();
    let mut keys: Vec<usize> = Vec::with_capacity(t);
    let mut taken: Vec<bool> = Vec::with_capacity(t);
    for bi in 0..b {
        let v = &valid[bi * t..(bi + 1) * t];
        for h in 0..hm {
            for i in (0..t).filter(|&i| v[i]) {
                let mut rng = row_rng(seed, bi, h, i);
                keys.clear();
                keys.extend((from[bi * t + i]..i).filter(|&j| v[j]));
                let mut c = 0;
                for &j in &keys {
                    c += usize::from(mask.get(bi, h, i, j));
                    out.set(bi, h, i, j, false);
                }
                taken.clear();
                taken.resize(keys.len(), false);
                floyd(&mut rng, c, &mut taken);
                for (&j, &on) in keys.iter().zip(&taken) {
                    if on {
                        out.set(bi, h, i, j, true);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `from` must give each position a first key no later than itself.
fn check_from(valid: &[bool], from: &[usize]) -> Result<()> {
    if from.len() != valid.len() {
        return Err(Error::Mask(format!(
            "null: {} key starts for {} positions",
            from.len(),
            valid.len()
        )));
    }
    Ok(())
}

/// A fixed-width bitset over distances `1..T` (bit `d − 1`).
#[derive(Clone)]
struct DistSet {
    w: Vec<u64>,
}

impl DistSet {
    fn new(t: usize) -> Self {
        DistSet {
            w: vec![0; t.div_ceil(64).max(1)],
        }
    }
    fn set(&mut self, d: usize) {
        self.w[(d - 1) / 64] |= 1 << ((d - 1) % 64);
    }
    fn get(&self, d: usize) -> bool {
        self.w[(d - 1) / 64] >> ((d - 1) % 64) & 1 != 0
    }
}

/// The distance-histogram-matched null of `mask` (see the module docs).
pub fn distance_matched(mask: &BitMask, valid: &[bool], seed: u64) -> Result<BitMask> {
    check(mask, valid)?;
    let (b, hm, t) = (mask.b(), mask.heads(), mask.t());
    let mut out = mask.clone();
    let mut rng = Rng::new(seed);
    let nw = t.div_ceil(64).max(1);
    let mut pool_bits: Vec<usize> = Vec::with_capacity(t);
    let mut taken: Vec<bool> = Vec::with_capacity(t);
    for bi in 0..b {
        let v = &valid[bi * t..(bi + 1) * t];
        let rows: Vec<usize> = (0..t).filter(|&i| v[i] && (0..i).any(|j| v[j])).collect();
        // Feasible distances per row (valid keys), the same for every head.
        let feas: Vec<DistSet> = rows
            .iter()
            .map(|&i| {
                let mut f = DistSet::new(t);
                for j in (0..i).filter(|&j| v[j]) {
                    f.set(i - j);
                }
                f
            })
            .collect();
        for h in 0..hm {
            let mut held: Vec<DistSet> = rows
                .iter()
                .map(|&i| {
                    let mut s = DistSet::new(t);
                    for j in (0..i).filter(|&j| v[j] && mask.get(bi, h, i, j)) {
                        s.set(i - j);
                    }
                    s
                })
                .collect();
            if rows.len() >= 2 {
                for _ in 0..TRADES_PER_ROW * rows.len() {
                    let r1 = rng.below(rows.len());
                    let mut r2 = rng.below(rows.len() - 1);
                    if r2 >= r1 {
                        r2 += 1;
                    }
                    // Distances only one row holds and both could hold.
                    let mut k1 = 0usize;
                    pool_bits.clear();
                    for wi in 0..nw {
                        let (d1, d2) = (held[r1].w[wi], held[r2].w[wi]);
                        let x1 = d1 & !d2 & feas[r2].w[wi];
                        let x2 = d2 & !d1 & feas[r1].w[wi];
                        k1 += x1.count_ones() as usize;
                        let mut p = x1 | x2;
                        while p != 0 {
                            pool_bits.push(wi * 64 + p.trailing_zeros() as usize);
                            p &= p - 1;
                        }
                    }
                    if k1 == 0 || k1 == pool_bits.len() {
                        continue; // nothing to trade
                    }
                    taken.clear();
                    taken.resize(pool_bits.len(), false);
                    floyd(&mut rng, k1, &mut taken);
                    for (&bit, &to_first) in pool_bits.iter().zip(&taken) {
                        let (wi, m) = (bit / 64, 1u64 << (bit % 64));
                        let (a, z) = if to_first { (r1, r2) } else { (r2, r1) };
                        held[a].w[wi] |= m;
                        held[z].w[wi] &= !m;
                    }
                }
            }
            for (r, &i) in rows.iter().enumerate() {
                for j in (0..i).filter(|&j| v[j]) {
                    out.set(bi, h, i, j, held[r].get(i - j));
                }
            }
        }
    }
    Ok(out)
}

/// Floor added to every distance's weight in [`distance_causal`], relative to one arc, so a
/// row whose count exceeds the keys at seen distances can still fill it.
const CAUSAL_FLOOR: f64 = 0.05;

/// The causal distance null of `mask` (see the module docs): every valid row keeps its
/// diagonal bit and its exact number of allowed off-diagonal valid keys, drawn without
/// replacement with weights from the source's distance histogram over rows `0..=i`.
pub fn distance_causal(mask: &BitMask, valid: &[bool], seed: u64) -> Result<BitMask> {
    distance_causal_from(mask, valid, &vec![0; valid.len()], seed)
}

/// [`distance_causal`] with the keys of row `i` drawn from `from[b·T + i]..i` only; the bits
/// of keys before it are kept as `mask` has them.
pub fn distance_causal_from(
    mask: &BitMask,
    valid: &[bool],
    from: &[usize],
    seed: u64,
) -> Result<BitMask> {
    check(mask, valid)?;
    check_from(valid, from)?;
    let (b, hm, t) = (mask.b(), mask.heads(), mask.t());
    let mut out = mask.clone();
    let mut hist = vec![0u64; t.max(1)];
    let mut cand: Vec<(f64, usize)> = Vec::with_capacity(t);
    for bi in 0..b {
        let v = &valid[bi * t..(bi + 1) * t];
        for h in 0..hm {
            hist.iter_mut().for_each(|x| *x = 0);
            for i in (0..t).filter(|&i| v[i]) {
                let lo = from[bi * t + i];
                let mut c = 0;
                for j in (lo..i).filter(|&j| v[j]) {
                    if mask.get(bi, h, i, j) {
                        hist[i - j] += 1;
                        c += 1;
                    }
                    out.set(bi, h, i, j, false);
                }
                if c == 0 {
                    continue;
                }
                // Efraimidis–Spirakis: the c smallest Exp(1)/w keys are a weighted sample
                // without replacement.
                let mut rng = row_rng(seed, bi, h, i);
                cand.clear();
                for j in (lo..i).filter(|&j| v[j]) {
                    let w = hist[i - j] as f64 + CAUSAL_FLOOR;
                    let e = -(1.0 - rng.uniform()).ln();
                    cand.push((e / w, j));
                }
                cand.select_nth_unstable_by(c - 1, |x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                for &(_, j) in &cand[..c] {
                    out.set(bi, h, i, j, true);
                }
            }
        }
    }
    Ok(out)
}
