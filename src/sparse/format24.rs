//! The canonical 2:4 compressed format (DESIGN.md §3 "2:4 format") and the reorders the
//! tensor-core kernels need.
//!
//! W is N×K row-major (out_features × in_features) and `Y = X·Wᵀ`. Along K, each aligned group
//! of 4 keeps exactly 2 entries: the 2 largest |w|, ties to the lower index (the rule of
//! [`two_four_keep`]). The compressed form is
//! - `values`: N × K/2, same dtype, the two kept entries of each group in index order;
//! - `meta`: N × K/16 u16; group j of a row sits in bits `4(j%4) .. 4(j%4)+4` of u16 `j/4`,
//!   the lower kept index in the low 2 bits, the higher in the next 2 (so first < second, the
//!   `mma.sp::ordered_metadata` nibble order, PTX-FACTS.md).
//!
//! K must be a multiple of 16 (32 for the tensor-core path, checked where that path is
//! prepared): any other shape is an error, never a silent pad.

use super::topk::TopkWeight;
use super::two_four::two_four_keep;
use crate::{Error, Result};
use rayon::prelude::*;

/// A 2:4-sparse matrix in the canonical compressed form.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparse24<W> {
    n: usize,
    k: usize,
    values: Vec<W>,
    meta: Vec<u16>,
}

/// The (first, second) kept positions within a group, from its metadata nibble.
#[inline(always)]
pub fn nibble_positions(nibble: u16) -> (usize, usize) {
    ((nibble & 3) as usize, ((nibble >> 2) & 3) as usize)
}

fn check_k(what: &str, k: usize, multiple: usize) -> Result<()> {
    if k == 0 || !k.is_multiple_of(multiple) {
        return Err(Error::Config(format!(
            "{what}: K = {k} must be a positive multiple of {multiple} for the 2:4 format \
             (W is N x K = out_features x in_features; no padding is applied)"
        )));
    }
    Ok(())
}

impl<W: TopkWeight + Default> Sparse24<W> {
    /// Prune `w` (n × k, row-major) to 2:4 by magnitude and compress it. NaN/Inf is an error
    /// naming `name` and the flat index.
    pub fn compress(name: &str, w: &[W], n: usize, k: usize) -> Result<Self> {
        check_k(name, k, 16)?;
        if n.checked_mul(k) != Some(w.len()) {
            return Err(Error::Config(format!(
                "{name}: {} weights, expected N x K = {n} x {k}",
                w.len()
            )));
        }
        if let Some(i) = w.iter().position(|x| !x.to_f32().is_finite()) {
            return Err(Error::NonFinite {
                tensor: name.to_string(),
                index: i,
                value: w[i].to_f32(),
            });
        }
        let mut values = vec![W::default(); n * k / 2];
        let mut meta = vec![0u16; n * k / 16];
        values
            .par_chunks_mut(k / 2)
            .zip(meta.par_chunks_mut(k / 16))
            .zip(w.par_chunks(k))
            .for_each(|((vals, meta), row)| {
                for (gi, g) in row.chunks_exact(4).enumerate() {
                    let keep = two_four_keep([g[0].key(), g[1].key(), g[2].key(), g[3].key()]);
                    let first = keep.trailing_zeros() as usize;
                    let second = 31 - keep.leading_zeros() as usize;
                    vals[2 * gi] = g[first];
                    vals[2 * gi + 1] = g[second];
                    meta[gi / 4] |= ((first | (second << 2)) as u16) << (4 * (gi % 4));
                }
            });
        Ok(Sparse24 { n, k, values, meta })
    }

    /// Assemble from parts, validating shapes and that every nibble names two distinct
    /// positions in increasing order.
    pub fn from_parts(n: usize, k: usize, values: Vec<W>, meta: Vec<u16>) -> Result<Self> {
        check_k("2:4 matrix", k, 16)?;
        if values.len() != n * k / 2 || meta.len() != n * k / 16 {
            return Err(Error::Config(format!(
                "2:4 matrix {n} x {k}: expected {} values and {} metadata words, got {} and {}",
                n * k / 2,
                n * k / 16,
                values.len(),
                meta.len()
            )));
        }
        for (i, &m) in meta.iter().enumerate() {
            for q in 0..4 {
                let (a, b) = nibble_positions(m >> (4 * q));
                if a >= b {
                    return Err(Error::Config(format!(
                        "2:4 metadata word {i} (row {}, group {}): positions {a}, {b} are not \
                         increasing",
                        i / (k / 16),
                        (i % (k / 16)) * 4 + q
                    )));
                }
            }
        }
        Ok(Sparse24 { n, k, values, meta })
    }

    /// The dense N×K matrix (pruned entries are zero).
    pub fn decompress(&self) -> Vec<W> {
        let (n, k) = (self.n, self.k);
        let mut w = vec![W::default(); n * k];
        w.par_chunks_mut(k).enumerate().for_each(|(r, row)| {
            for (gi, g) in row.chunks_exact_mut(4).enumerate() {
                let (a, b) = self.positions(r, gi);
                g[a] = self.values[r * k / 2 + 2 * gi];
                g[b] = self.values[r * k / 2 + 2 * gi + 1];
            }
        });
        w
    }
}

impl<W> Sparse24<W> {
    /// Rows (out_features).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Dense columns (in_features).
    pub fn k(&self) -> usize {
        self.k
    }
    /// The kept values, N × K/2.
    pub fn values(&self) -> &[W] {
        &self.values
    }
    /// The canonical metadata, N × K/16 u16.
    pub fn meta(&self) -> &[u16] {
        &self.meta
    }
    /// The kept positions (within the group) of group `g` of row `r`.
    #[inline(always)]
    pub fn positions(&self, r: usize, g: usize) -> (usize, usize) {
        nibble_positions(self.meta[r * self.k / 16 + g / 4] >> (4 * (g % 4)))
    }

    /// The metadata reordered for `mma.sp` m16n8k32 with the selector alternating between
    /// consecutive k32 steps (PTX-FACTS.md "Metadata register"): for every 16-row tile and
    /// every pair of k32 steps, 32 u32 words, one per lane `4g + t`: with `s = t / 2`,
    /// `p = t % 2` and step `2·pair + s`, the word is `meta[g][2·step + p]` in its low half and
    /// `meta[g + 8][2·step + p]` in its high half (rows and u16 indices relative to the tile).
    /// A missing second step (K/32 odd) gives zero words; they are never read.
    /// Layout: `[n/16][⌈K/64⌉][32]`. Needs N % 16 == 0 and K % 32 == 0.
    pub fn mma_sp_metadata(&self) -> Result<Vec<u32>> {
        check_k("mma.sp metadata", self.k, 32)?;
        if !self.n.is_multiple_of(16) {
            return Err(Error::Config(format!(
                "mma.sp metadata: N = {} must be a multiple of 16",
                self.n
            )));
        }
        let per_row = self.k / 16;
        let steps = self.k / 32;
        let pairs = steps.div_ceil(2);
        let mut out = vec![0u32; self.n / 16 * pairs * 32];
        for (i, word) in out.iter_mut().enumerate() {
            let lane = i % 32;
            let pair = (i / 32) % pairs;
            let tile = i / 32 / pairs;
            let (g, t) = (lane / 4, lane % 4);
            let step = 2 * pair + t / 2;
            if step >= steps {
                continue;
            }
            let u = 2 * step + t % 2;
            let lo = self.meta[(tile * 16 + g) * per_row + u] as u32;
            let hi = self.meta[(tile * 16 + g + 8) * per_row + u] as u32;
            *word = lo | (hi << 16);
        }
        Ok(out)
    }
}
