//! Mask statistics: density inside the valid causal region (overall, off the diagonal, and
//! by row length), tile-class shares per tile size, and coverage of gold dependency arcs.
//!
//! Definitions (per `(b, head)`, valid = scored, i.e. not padding):
//! - a **valid row** is a valid query `i`; its **length** is its number of valid keys
//!   `j ≤ i` (itself included);
//! - **density** = allowed valid pairs / valid causal pairs (diagonal included);
//!   **off-diagonal density** excludes the diagonal from both, and the **diagonal** share is
//!   reported on its own (DESIGN.md §2: rows whose only key is the token itself inflate
//!   overlap figures);
//! - **short rows**: valid rows with fewer than two valid keys (row length 1);
//! - **tile shares**: [`TileMap`] classes over the causal triangle of blocks (`kt ≤ qt`),
//!   padding included, as the kernels see them;
//! - **arc coverage**: for each gold arc inside the window between dependent `d` and head
//!   `h` (both valid), the causal query is `max(d, h)` and the key `min(d, h)`; the arc is
//!   covered when the mask allows that pair. Arcs are split by direction: head before the
//!   dependent (the dependent queries its head) and head after it (the head queries its
//!   dependent). With per-head masks every head counts the arc once.

use super::bits::BitMask;
use super::tiles::TileMap;
use crate::{Error, Result};
use serde::Serialize;

/// Tile sizes reported by default.
pub const DEFAULT_TILES: [usize; 2] = [64, 128];

/// Density of rows whose length lies in `lo..=hi`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LenBucket {
    pub lo: usize,
    pub hi: usize,
    pub rows: u64,
    pub pairs: u64,
    pub allowed: u64,
}

/// Tile-class counts for one tile size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TileShare {
    pub tile: usize,
    pub blocks: u64,
    pub empty: u64,
    pub full: u64,
    pub partial: u64,
}

/// Gold-arc coverage.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ArcCoverage {
    pub arcs: u64,
    pub covered: u64,
    /// Head before the dependent (query = dependent).
    pub head_first: u64,
    pub head_first_covered: u64,
    /// Head after the dependent (query = head).
    pub head_later: u64,
    pub head_later_covered: u64,
}

/// Accumulated statistics of one or more masks.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MaskStats {
    /// Valid rows (summed over mask heads).
    pub rows: u64,
    /// Valid rows with fewer than two valid keys.
    pub short_rows: u64,
    /// Valid causal pairs, diagonal included.
    pub pairs: u64,
    /// Allowed valid causal pairs, diagonal included.
    pub allowed: u64,
    /// Allowed diagonal pairs.
    pub diagonal: u64,
    pub by_len: Vec<LenBucket>,
    pub tiles: Vec<TileShare>,
    /// Present when arcs were supplied.
    pub arcs: Option<ArcCoverage>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Bucket of a row length `n ≥ 1`: `{1}`, `{2}`, `3..=4`, `5..=8`, … (`⌈log2 n⌉`).
fn bucket(n: usize) -> usize {
    (usize::BITS - (n - 1).leading_zeros()) as usize
}

impl MaskStats {
    /// Empty statistics reporting the given tile sizes.
    pub fn new(tiles: &[usize]) -> Self {
        MaskStats {
            tiles: tiles
                .iter()
                .map(|&tile| TileShare {
                    tile,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Allowed share of valid causal pairs.
    pub fn density(&self) -> f64 {
        ratio(self.allowed, self.pairs)
    }
    /// Allowed share of valid causal pairs off the diagonal.
    pub fn offdiag_density(&self) -> f64 {
        ratio(self.allowed - self.diagonal, self.pairs - self.rows)
    }
    /// Allowed share of the diagonal.
    pub fn diagonal_share(&self) -> f64 {
        ratio(self.diagonal, self.rows)
    }
    /// Allowed share of the valid pairs of rows with at least two keys.
    pub fn density_long_rows(&self) -> f64 {
        let (p, a) = self
            .by_len
            .iter()
            .filter(|b| b.lo >= 2)
            .fold((0, 0), |(p, a), b| (p + b.pairs, a + b.allowed));
        ratio(a, p)
    }

    /// Add one mask. `valid`: `B×T` (scored positions); `heads`: `B×T` gold head position
    /// inside the window or −1 (as in [`Batch::heads`](crate::data::Batch)).
    pub fn add(&mut self, mask: &BitMask, valid: &[bool], heads: Option<&[i32]>) -> Result<()> {
        let (b, hm, t) = (mask.b(), mask.heads(), mask.t());
        if valid.len() != b * t || heads.is_some_and(|h| h.len() != b * t) {
            return Err(Error::Mask(format!(
                "stats: validity ({}) or heads ({}) do not match B×T = {b}×{t}",
                valid.len(),
                heads.map_or(0, <[i32]>::len)
            )));
        }
        let w = t.div_ceil(32);
        let mut vbits = vec![0u32; w];
        for bi in 0..b {
            let v = &valid[bi * t..(bi + 1) * t];
            vbits.fill(0);
            for (j, _) in v.iter().enumerate().filter(|(_, &x)| x) {
                vbits[j / 32] |= 1 << (j % 32);
            }
            for h in 0..hm {
                for i in (0..t).filter(|&i| v[i]) {
                    let row = mask.row(bi, h, i);
                    let last = i / 32;
                    let mut allowed = 0u64;
                    for wi in 0..=last {
                        let mut m = row[wi] & vbits[wi];
                        if wi == last {
                            m &= u32::MAX >> (31 - i % 32);
                        }
                        allowed += u64::from(m.count_ones());
                    }
                    let diag = mask.get(bi, h, i, i);
                    // Valid keys j ≤ i (i itself is valid).
                    let len = (0..=last)
                        .map(|wi| {
                            let mut m = vbits[wi];
                            if wi == last {
                                m &= u32::MAX >> (31 - i % 32);
                            }
                            m.count_ones() as usize
                        })
                        .sum::<usize>();
                    debug_assert!(len >= 1);
                    self.rows += 1;
                    self.short_rows += u64::from(len < 2);
                    self.pairs += len as u64;
                    self.allowed += allowed;
                    self.diagonal += u64::from(diag);
                    let k = bucket(len);
                    while self.by_len.len() <= k {
                        let n = self.by_len.len();
                        let (lo, hi) = if n == 0 {
                            (1, 1)
                        } else {
                            ((1usize << (n - 1)) + 1, 1usize << n)
                        };
                        self.by_len.push(LenBucket {
                            lo,
                            hi,
                            ..Default::default()
                        });
                    }
                    let bk = &mut self.by_len[k];
                    bk.rows += 1;
                    bk.pairs += len as u64;
                    bk.allowed += allowed;
                }
                if let Some(hs) = heads {
                    let arcs = self.arcs.get_or_insert_with(ArcCoverage::default);
                    let hs = &hs[bi * t..(bi + 1) * t];
                    for d in 0..t {
                        let hd = hs[d];
                        if hd < 0 || hd as usize >= t || !v[d] || !v[hd as usize] {
                            continue;
                        }
                        let hd = hd as usize;
                        let (q, k) = (d.max(hd), d.min(hd));
                        let ok = u64::from(mask.get(bi, h, q, k));
                        arcs.arcs += 1;
                        arcs.covered += ok;
                        if hd < d {
                            arcs.head_first += 1;
                            arcs.head_first_covered += ok;
                        } else {
                            arcs.head_later += 1;
                            arcs.head_later_covered += ok;
                        }
                    }
                }
            }
        }
        for ts in &mut self.tiles {
            let (e, f, p) = TileMap::from_mask(mask, ts.tile)?.counts();
            ts.empty += e as u64;
            ts.full += f as u64;
            ts.partial += p as u64;
            ts.blocks += (e + f + p) as u64;
        }
        Ok(())
    }
}

impl ArcCoverage {
    /// Covered share of all arcs.
    pub fn share(&self) -> f64 {
        ratio(self.covered, self.arcs)
    }
    /// Covered share of head-first arcs.
    pub fn head_first_share(&self) -> f64 {
        ratio(self.head_first_covered, self.head_first)
    }
    /// Covered share of head-later arcs.
    pub fn head_later_share(&self) -> f64 {
        ratio(self.head_later_covered, self.head_later)
    }
}

impl LenBucket {
    /// Allowed share of the bucket's pairs.
    pub fn density(&self) -> f64 {
        ratio(self.allowed, self.pairs)
    }
}

impl TileShare {
    /// `(empty, full, partial)` as shares of the causal-triangle blocks.
    pub fn shares(&self) -> (f64, f64, f64) {
        (
            ratio(self.empty, self.blocks),
            ratio(self.full, self.blocks),
            ratio(self.partial, self.blocks),
        )
    }
}
