//! The host form of the bit-packed attention mask (DESIGN.md §3).
//!
//! A mask covers `B` sequences and `heads` heads (1 = shared by every head, or `H` = one per
//! head). Row `i` of `(b, h)` says which keys `j` query `i` may attend to; it is stored as
//! `⌈T/32⌉` u32 words, key `j` at bit `j % 32` of word `j / 32`. The whole buffer is
//! row-major `(B, heads, T, ⌈T/32⌉)`, exactly the layout the attention kernels read.
//!
//! Invariant: bits for `j ≥ T` in the last word of every row are zero (constructors clear
//! them), so word-level popcounts and tests never see stray keys.
//!
//! Causality is *not* stored here: the kernels apply `j ≤ i` on top of this mask.

use crate::backend::AttnShape;
use crate::{Error, Result};

/// A bit-packed `(B, heads, T, ⌈T/32⌉)` attention mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitMask {
    b: usize,
    heads: usize,
    t: usize,
    words: usize,
    bits: Vec<u32>,
}

/// The mask of valid bits in the last word of a row of `t` keys (all ones when `t % 32 == 0`).
#[inline]
pub(crate) fn tail_mask(t: usize) -> u32 {
    match t % 32 {
        0 => u32::MAX,
        r => (1u32 << r) - 1,
    }
}

impl BitMask {
    /// Build a mask from a predicate `f(b, h, i, j)` (true = key `j` allowed for query `i`).
    pub fn from_fn(
        b: usize,
        heads: usize,
        t: usize,
        mut f: impl FnMut(usize, usize, usize, usize) -> bool,
    ) -> Self {
        let words = t.div_ceil(32);
        let mut bits = vec![0u32; b * heads * t * words];
        for bi in 0..b {
            for h in 0..heads {
                for i in 0..t {
                    let row = &mut bits[((bi * heads + h) * t + i) * words..][..words];
                    for j in 0..t {
                        if f(bi, h, i, j) {
                            row[j / 32] |= 1 << (j % 32);
                        }
                    }
                }
            }
        }
        BitMask {
            b,
            heads,
            t,
            words,
            bits,
        }
    }

    /// A shared (one-head) mask allowing every key: attention is then plain causal.
    pub fn all_ones(b: usize, t: usize) -> Self {
        let words = t.div_ceil(32);
        let mut bits = vec![u32::MAX; b * t * words];
        let tail = tail_mask(t);
        for row in bits.chunks_exact_mut(words.max(1)) {
            if let Some(last) = row.last_mut() {
                *last &= tail;
            }
        }
        BitMask {
            b,
            heads: 1,
            t,
            words,
            bits,
        }
    }

    /// Wrap existing words (e.g. read back from a device). The length must be
    /// `b·heads·t·⌈t/32⌉`; bits beyond `t` in each row's last word are cleared.
    pub fn from_words(b: usize, heads: usize, t: usize, mut bits: Vec<u32>) -> Result<Self> {
        let words = t.div_ceil(32);
        let expected = b
            .checked_mul(heads)
            .and_then(|x| x.checked_mul(t))
            .and_then(|x| x.checked_mul(words));
        if expected != Some(bits.len()) {
            return Err(Error::Mask(format!(
                "expected B×heads×T×⌈T/32⌉ = {b}×{heads}×{t}×{words} = {} u32 words for T = {t}, \
                 got {}",
                expected.map_or_else(|| "(overflow)".to_string(), |e| e.to_string()),
                bits.len()
            )));
        }
        let tail = tail_mask(t);
        if words > 0 {
            for row in bits.chunks_exact_mut(words) {
                row[words - 1] &= tail;
            }
        }
        Ok(BitMask {
            b,
            heads,
            t,
            words,
            bits,
        })
    }

    /// Number of sequences `B`.
    pub fn b(&self) -> usize {
        self.b
    }
    /// Number of mask heads (1 = shared by all heads).
    pub fn heads(&self) -> usize {
        self.heads
    }
    /// Sequence length `T`.
    pub fn t(&self) -> usize {
        self.t
    }
    /// u32 words per row, `⌈T/32⌉`.
    pub fn words_per_row(&self) -> usize {
        self.words
    }
    /// True when the mask has one head per attention head (rather than one shared head).
    pub fn per_head(&self) -> bool {
        self.heads != 1
    }
    /// All words, row-major `(B, heads, T, ⌈T/32⌉)`: what gets uploaded to a device.
    pub fn words(&self) -> &[u32] {
        &self.bits
    }
    /// Consume the mask, returning its words.
    pub fn into_words(self) -> Vec<u32> {
        self.bits
    }

    fn row_offset(&self, b: usize, h: usize, i: usize) -> usize {
        assert!(
            b < self.b && h < self.heads && i < self.t,
            "mask index (b={b}, h={h}, i={i}) out of range for B={}, heads={}, T={}",
            self.b,
            self.heads,
            self.t
        );
        ((b * self.heads + h) * self.t + i) * self.words
    }

    /// The words of row `i` of `(b, h)`. Panics if an index is out of range.
    pub fn row(&self, b: usize, h: usize, i: usize) -> &[u32] {
        let o = self.row_offset(b, h, i);
        &self.bits[o..o + self.words]
    }

    /// The words of row `i` of `(b, h)`, to change. Panics if an index is out of range.
    pub fn row_mut(&mut self, b: usize, h: usize, i: usize) -> &mut [u32] {
        let o = self.row_offset(b, h, i);
        &mut self.bits[o..o + self.words]
    }

    /// Whether key `j` is allowed for query `i` of `(b, h)` (causality not applied).
    /// Panics if an index is out of range.
    pub fn get(&self, b: usize, h: usize, i: usize, j: usize) -> bool {
        assert!(j < self.t, "mask key {j} out of range for T={}", self.t);
        self.row(b, h, i)[j / 32] >> (j % 32) & 1 != 0
    }

    /// Allow (`true`) or forbid key `j` for query `i` of `(b, h)`. Panics if out of range.
    pub fn set(&mut self, b: usize, h: usize, i: usize, j: usize, allowed: bool) {
        assert!(j < self.t, "mask key {j} out of range for T={}", self.t);
        let o = self.row_offset(b, h, i) + j / 32;
        let bit = 1u32 << (j % 32);
        if allowed {
            self.bits[o] |= bit;
        } else {
            self.bits[o] &= !bit;
        }
    }

    /// Number of allowed pairs inside the causal region (`j ≤ i`), summed over all rows.
    pub fn causal_count(&self) -> u64 {
        let mut n = 0u64;
        if self.words == 0 {
            return 0;
        }
        for (r, row) in self.bits.chunks_exact(self.words).enumerate() {
            let i = r % self.t;
            let full = (i + 1) / 32;
            n += row[..full]
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum::<u64>();
            let rem = (i + 1) % 32;
            if rem != 0 {
                n += u64::from((row[full] & ((1u32 << rem) - 1)).count_ones());
            }
        }
        n
    }

    /// Check that this mask fits attention of shape `s`: same `B` and `T`, and `heads` is 1
    /// or `H`.
    pub fn validate_for(&self, s: &AttnShape) -> Result<()> {
        if self.b != s.b {
            return Err(Error::Mask(format!(
                "mask has batch {} but the attention batch is {}",
                self.b, s.b
            )));
        }
        if self.t != s.t {
            return Err(Error::Mask(format!(
                "mask has sequence length T = {} but the attention has T = {}",
                self.t, s.t
            )));
        }
        if self.heads != 1 && self.heads != s.h {
            return Err(Error::Mask(format!(
                "mask has {} heads; expected 1 (shared) or H = {}",
                self.heads, s.h
            )));
        }
        Ok(())
    }
}
