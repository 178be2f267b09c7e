//! Tile classification of the effective attention mask (DESIGN.md §3).
//!
//! The `T×T` score matrix of one `(b, h)` is cut into square `tile × tile` blocks: q-tile
//! `qt` holds queries `qt·tile ..`, k-tile `kt` holds keys `kt·tile ..`; the last tile of each
//! axis may be cut short by `T`. Each block is classified on the **effective** mask
//! `E(i, j) = M(i, j) ∧ (j ≤ i)`, looking only at in-range pairs (`i < T`, `j < T`):
//!
//! - [`TileClass::Empty`]: no in-range pair is allowed; kernels skip the block.
//! - [`TileClass::Full`]: every in-range pair is allowed; kernels need no bit test (they
//!   still bound `i, j < T` on tail tiles).
//! - [`TileClass::Partial`]: anything else; kernels test bits (and causality) per pair.
//!
//! Consequences of that definition: every block strictly above the diagonal (`kt > qt`) is
//! Empty; a diagonal block (`kt == qt`) contains in-range pairs with `j > i` unless it holds a
//! single key (`T = kt·tile + 1`), so it is Partial (or Empty when the mask allows none of
//! its causal pairs); only blocks below the diagonal can be Full in general.
//!
//! Classification works on whole u32 words (with edge masks for tiles that do not start or
//! end on a word boundary), at about `T²/32` word operations per `(b, head)`.

use super::bits::BitMask;
use crate::{Error, Result};

/// The class of one `(q-tile, k-tile)` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TileClass {
    /// No allowed pair: skip.
    Empty = 0,
    /// Every in-range pair allowed: no bit test needed.
    Full = 1,
    /// Some allowed, some not: test bits.
    Partial = 2,
}

/// Dense tile classes of a mask: `(B, heads, nt, nt)` row-major over `(q-tile, k-tile)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileMap {
    b: usize,
    heads: usize,
    t: usize,
    tile: usize,
    nt: usize,
    classes: Vec<TileClass>,
}

/// Compressed per-group tile lists (CSR): group `g` owns entries `offsets[g]..offsets[g+1]`
/// of `tiles` (tile indices, ascending) and `classes` (never Empty).
///
/// For [`TileMap::forward_lists`] group `g = (b·heads + h)·nt + qt` lists the non-empty
/// k-tiles of q-tile `qt`; for [`TileMap::backward_lists`] group `(b·heads + h)·nt + kt`
/// lists the non-empty q-tiles of k-tile `kt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileLists {
    pub offsets: Vec<u32>,
    pub tiles: Vec<u32>,
    pub classes: Vec<TileClass>,
}

impl TileLists {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// The tiles and classes of group `g`.
    pub fn group(&self, g: usize) -> (&[u32], &[TileClass]) {
        let (a, z) = (self.offsets[g] as usize, self.offsets[g + 1] as usize);
        (&self.tiles[a..z], &self.classes[a..z])
    }
    /// Entries packed one u32 each as `tile << 1 | (class == Partial)` (a device-friendly form;
    /// Empty never appears).
    pub fn packed(&self) -> Vec<u32> {
        self.tiles
            .iter()
            .zip(&self.classes)
            .map(|(&t, &c)| t << 1 | u32::from(c == TileClass::Partial))
            .collect()
    }
}

/// Bits `lo..hi` (`lo < hi ≤ 32`) of a word.
#[inline]
fn bit_range(lo: usize, hi: usize) -> u32 {
    debug_assert!(lo < hi && hi <= 32);
    (u32::MAX >> (32 - (hi - lo))) << lo
}

/// Whether any bit of `row` in columns `lo..hi` is set (`lo < hi`).
#[inline]
fn range_any(row: &[u32], lo: usize, hi: usize) -> bool {
    let (w0, w1) = (lo / 32, (hi - 1) / 32);
    if w0 == w1 {
        return row[w0] & bit_range(lo % 32, (hi - 1) % 32 + 1) != 0;
    }
    row[w0] & bit_range(lo % 32, 32) != 0
        || row[w0 + 1..w1].iter().any(|&w| w != 0)
        || row[w1] & bit_range(0, (hi - 1) % 32 + 1) != 0
}

/// Whether every bit of `row` in columns `lo..hi` is set (`lo < hi`).
#[inline]
fn range_all(row: &[u32], lo: usize, hi: usize) -> bool {
    let (w0, w1) = (lo / 32, (hi - 1) / 32);
    if w0 == w1 {
        let m = bit_range(lo % 32, (hi - 1) % 32 + 1);
        return row[w0] & m == m;
    }
    let m0 = bit_range(lo % 32, 32);
    let m1 = bit_range(0, (hi - 1) % 32 + 1);
    row[w0] & m0 == m0 && row[w0 + 1..w1].iter().all(|&w| w == u32::MAX) && row[w1] & m1 == m1
}

impl TileMap {
    /// Classify a bit-packed mask given as raw words `(b, heads, t, ⌈t/32⌉)`.
    pub fn from_words(
        words: &[u32],
        b: usize,
        heads: usize,
        t: usize,
        tile: usize,
    ) -> Result<Self> {
        if tile == 0 {
            return Err(Error::Mask("tile size must be positive".into()));
        }
        let wpr = t.div_ceil(32);
        let expected = b
            .checked_mul(heads)
            .and_then(|x| x.checked_mul(t))
            .and_then(|x| x.checked_mul(wpr));
        if expected != Some(words.len()) {
            return Err(Error::Mask(format!(
                "expected {b}×{heads}×{t}×{wpr} = {} u32 words for T = {t}, got {}",
                expected.map_or_else(|| "(overflow)".to_string(), |e| e.to_string()),
                words.len()
            )));
        }
        let nt = t.div_ceil(tile);
        let mut classes = vec![TileClass::Empty; b * heads * nt * nt];
        // Per k-tile state while scanning the rows of one q-tile.
        let mut any = vec![false; nt];
        let mut all = vec![true; nt];
        for g in 0..b * heads {
            let rows = &words[g * t * wpr..(g + 1) * t * wpr];
            for qt in 0..nt {
                let q0 = qt * tile;
                let q1 = (q0 + tile).min(t);
                any[..=qt].fill(false);
                all[..=qt].fill(true);
                // Scan the rows; a (row, kt) test is skipped once its block is Partial.
                for i in q0..q1 {
                    let row = &rows[i * wpr..(i + 1) * wpr];
                    for kt in 0..=qt {
                        if any[kt] && !all[kt] {
                            continue; // already Partial
                        }
                        let k0 = kt * tile;
                        let k1 = (k0 + tile).min(t);
                        let kc = k1.min(i + 1); // causal end (exclusive); k0 ≤ q0 ≤ i
                        if !any[kt] && range_any(row, k0, kc) {
                            any[kt] = true;
                        }
                        if all[kt] && (kc < k1 || !range_all(row, k0, k1)) {
                            all[kt] = false;
                        }
                    }
                }
                let out = &mut classes[(g * nt + qt) * nt..][..nt];
                for kt in 0..=qt {
                    out[kt] = match (any[kt], all[kt]) {
                        (false, _) => TileClass::Empty,
                        (true, true) => TileClass::Full,
                        (true, false) => TileClass::Partial,
                    };
                }
            }
        }
        Ok(TileMap {
            b,
            heads,
            t,
            tile,
            nt,
            classes,
        })
    }

    /// Classify a [`BitMask`].
    pub fn from_mask(mask: &BitMask, tile: usize) -> Result<Self> {
        Self::from_words(mask.words(), mask.b(), mask.heads(), mask.t(), tile)
    }

    /// Classes of plain causal attention (no mask), one shared head.
    pub fn causal(b: usize, t: usize, tile: usize) -> Result<Self> {
        if tile == 0 {
            return Err(Error::Mask("tile size must be positive".into()));
        }
        let nt = t.div_ceil(tile);
        let mut classes = vec![TileClass::Empty; b * nt * nt];
        for g in 0..b {
            for qt in 0..nt {
                let out = &mut classes[(g * nt + qt) * nt..][..nt];
                out[..qt].fill(TileClass::Full);
                let nk = tile.min(t - qt * tile);
                out[qt] = if nk == 1 {
                    TileClass::Full
                } else {
                    TileClass::Partial
                };
            }
        }
        Ok(TileMap {
            b,
            heads: 1,
            t,
            tile,
            nt,
            classes,
        })
    }

    /// Number of sequences.
    pub fn b(&self) -> usize {
        self.b
    }
    /// Number of mask heads.
    pub fn heads(&self) -> usize {
        self.heads
    }
    /// Sequence length.
    pub fn t(&self) -> usize {
        self.t
    }
    /// Tile size.
    pub fn tile(&self) -> usize {
        self.tile
    }
    /// Tiles per axis, `⌈T/tile⌉`.
    pub fn nt(&self) -> usize {
        self.nt
    }
    /// All classes, `(B, heads, nt, nt)` row-major.
    pub fn classes(&self) -> &[TileClass] {
        &self.classes
    }

    /// The class of block `(qt, kt)` of `(b, h)`; `h` is a mask head (`< heads`).
    #[inline]
    pub fn class(&self, b: usize, h: usize, qt: usize, kt: usize) -> TileClass {
        self.classes[((b * self.heads + h) * self.nt + qt) * self.nt + kt]
    }

    /// How many blocks of each class `(empty, full, partial)` lie in the causal triangle
    /// (`kt ≤ qt`), summed over all `(b, head)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for g in 0..self.b * self.heads {
            for qt in 0..self.nt {
                for kt in 0..=qt {
                    match self.classes[(g * self.nt + qt) * self.nt + kt] {
                        TileClass::Empty => c.0 += 1,
                        TileClass::Full => c.1 += 1,
                        TileClass::Partial => c.2 += 1,
                    }
                }
            }
        }
        c
    }

    /// Per q-tile lists of non-empty k-tiles (ascending), for the forward pass.
    pub fn forward_lists(&self) -> TileLists {
        self.lists(|qt, kt| (qt, kt))
    }

    /// Per k-tile lists of non-empty q-tiles (ascending), for the backward pass.
    pub fn backward_lists(&self) -> TileLists {
        self.lists(|kt, qt| (qt, kt))
    }

    /// Lists grouped by the first index `x`, entries `y`; `qk(x, y)` gives `(qt, kt)`.
    fn lists(&self, qk: impl Fn(usize, usize) -> (usize, usize)) -> TileLists {
        let nt = self.nt;
        let mut offsets = Vec::with_capacity(self.b * self.heads * nt + 1);
        let mut tiles = Vec::new();
        let mut classes = Vec::new();
        offsets.push(0u32);
        for g in 0..self.b * self.heads {
            let cl = &self.classes[g * nt * nt..(g + 1) * nt * nt];
            for x in 0..nt {
                for y in 0..nt {
                    let (qt, kt) = qk(x, y);
                    let c = cl[qt * nt + kt];
                    if c != TileClass::Empty {
                        tiles.push(y as u32);
                        classes.push(c);
                    }
                }
                offsets.push(tiles.len() as u32);
            }
        }
        TileLists {
            offsets,
            tiles,
            classes,
        }
    }
}

/// Blocks a tile-skipping kernel must visit for one `(b, h)` of `mask` when queries and keys
/// are laid out in another order: position `i` moves to `rank[i]` (a permutation of `0..T`,
/// applied to both axes, which attention without position-dependent kernels allows). Counts
/// the `tile × tile` blocks of the reordered effective mask `E(i, j) = M(i, j) ∧ (j ≤ i)` that
/// hold at least one allowed pair. In the identity order this is the non-empty count of
/// [`TileMap`]; in a tag-grouped order ([`tag_grouped_ranks`]) causality no longer keeps the
/// upper triangle empty, so the count can rise as well as fall.
pub fn occupied_blocks(
    mask: &BitMask,
    b: usize,
    h: usize,
    rank: &[u32],
    tile: usize,
) -> Result<usize> {
    let t = mask.t();
    if tile == 0 || b >= mask.b() || h >= mask.heads() {
        return Err(Error::Mask(format!(
            "occupied_blocks: tile {tile}, sequence {b} of {}, head {h} of {}",
            mask.b(),
            mask.heads()
        )));
    }
    let mut seen = vec![false; t];
    for &r in rank {
        if (r as usize) >= t || std::mem::replace(&mut seen[r as usize], true) {
            return Err(Error::Mask(format!(
                "occupied_blocks: rank is not a permutation of 0..{t} (entry {r})"
            )));
        }
    }
    if rank.len() != t {
        return Err(Error::Mask(format!(
            "occupied_blocks: {} ranks for T = {t}",
            rank.len()
        )));
    }
    let nt = t.div_ceil(tile);
    let key_tile: Vec<usize> = rank.iter().map(|&r| r as usize / tile).collect();
    let mut occupied = vec![false; nt * nt];
    for (i, &ri) in rank.iter().enumerate() {
        let base = ri as usize / tile * nt;
        for (w, &word) in mask.row(b, h, i).iter().enumerate().take(i / 32 + 1) {
            let mut bits = word;
            while bits != 0 {
                let j = w * 32 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if j > i {
                    break;
                }
                occupied[base + key_tile[j]] = true;
            }
        }
    }
    Ok(occupied.iter().filter(|&&o| o).count())
}

/// The order that groups positions by tag: `rank[i]` of position `i` when positions are
/// sorted by `(tag, position)`.
pub fn tag_grouped_ranks(tags: &[u8]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..tags.len() as u32).collect();
    order.sort_by_key(|&i| (tags[i as usize], i));
    let mut rank = vec![0u32; tags.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    rank
}
