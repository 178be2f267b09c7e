//! Exact magnitude top-k pruning of a list of named tensors (DESIGN.md §3 "Top-k pruning").
//!
//! # Contract
//! Input: tensors in a fixed order, each with its weights and its current 0/1 `f32` mask
//! (0 = pruned, 1 = unpruned), and a fraction `f` in `[0, 1]`. For each *selection group* —
//! all tensors together ([`PruneScope::Global`]) or each tensor alone
//! ([`PruneScope::PerTensor`]) — with `remaining` unpruned weights in the group:
//! - exactly `n = ceil(f · remaining)` unpruned weights are pruned (their mask set to 0);
//!   `f · remaining` is evaluated in f64, as open_lth does with numpy, so `f = 0.2` of 10
//!   weights is 2, not 3;
//! - they are the ones with the smallest |w|; among equal |w|, the lower *global index* is
//!   pruned first (tensor order, then flat index within the tensor);
//! - already-pruned weights are never looked at (their values may be anything) and stay pruned.
//!
//! Magnitudes are compared as *keys*: the bits of |w| (sign cleared), whose unsigned order is
//! the numeric order of non-negative finite floats, so `-0.0` and `0.0` tie. f32 keys have 31
//! bits, bf16/f16 keys 15.
//!
//! Errors, checked before any mask is written (so on error every mask is unchanged):
//! `f` outside `[0, 1]` or NaN; a mask shorter or longer than its weights; a mask value other
//! than 0 or 1 ([`Error::Config`] naming tensor and index); NaN or ±Inf in an *unpruned*
//! weight ([`Error::NonFinite`] naming tensor and flat index). When several elements are bad,
//! the one with the lowest global index is reported (the CUDA path reports the same one).
//!
//! `f = 0` prunes nothing; `f = 1` prunes every unpruned weight; empty tensors and fully pruned
//! tensors contribute nothing and are reported with zero counts.
//!
//! # Algorithm (CPU; the CUDA path in `backend::cuda::topk` is the same radix select)
//! Radix select over the keys, most significant 11-bit digit first (31 bits: 11, 11, 9; 15
//! bits: 11, 4). Each pass is one threaded sweep over all tensors, in chunks of [`CHUNK`]
//! elements (never crossing a tensor), histogramming the current digit of the unpruned weights
//! whose key matches the prefix chosen so far; the chunk histograms are summed per group in
//! chunk order and [`RadixSelect`] picks the bucket holding the n-th smallest key. After the
//! last pass the threshold key `T` is known, with `below` = #keys < T and the number
//! `need = n − below` of ties (key == T) to prune. If a group prunes all of its ties (the usual
//! case with continuous weights) the mask pass prunes `key ≤ T`; if it prunes some but not all,
//! one more sweep over that group counts ties per chunk and an exclusive scan in global order
//! ([`tie_cut`]) tells each chunk how many of its ties to prune. The mask pass is one threaded,
//! branch-free sweep. So: P histogram passes (+1 counting sweep only with a partial tie run)
//! plus the mask pass, no sort; memory beyond the masks is O(chunks) plus 256 chunk
//! histograms at a time; the result does not depend on the thread count.

use std::ops::Range;

use rayon::prelude::*;

use crate::backend::cpu::fastmath::dispatch;
use crate::{Error, Result};

/// Bits per radix digit (`ASA_TOPK_DIGIT_BITS` in kernels/topk.cuh).
pub const DIGIT_BITS: u32 = 11;
/// Histogram bins per pass (`ASA_TOPK_BINS`).
pub const BINS: usize = 1 << DIGIT_BITS;
/// Elements per chunk of the CPU sweeps (a unit of parallel work; chunks never cross tensors).
pub const CHUNK: usize = 1 << 16;

/// Magnitude key of an f32: its bits with the sign cleared (`asa_topk_key_f32`).
pub fn key_f32(w: f32) -> u32 {
    w.to_bits() & 0x7FFF_FFFF
}

/// Magnitude key of a 16-bit float given as bits (`asa_topk_key_16`).
pub fn key_16(bits: u16) -> u32 {
    (bits & 0x7FFF) as u32
}

/// Radix passes for keys of `key_bits` bits (`asa_topk_passes`: 31 → 3, 15 → 2).
pub fn passes(key_bits: u32) -> u32 {
    key_bits.div_ceil(DIGIT_BITS)
}

/// Digit width of pass `pass` (`asa_topk_width`).
pub fn digit_width(key_bits: u32, pass: u32) -> u32 {
    (key_bits - DIGIT_BITS * pass).min(DIGIT_BITS)
}

/// Right shift that brings the digit of pass `pass` to bit 0 (`asa_topk_shift`).
pub fn digit_shift(key_bits: u32, pass: u32) -> u32 {
    key_bits.saturating_sub(DIGIT_BITS * (pass + 1))
}

/// Right shift that leaves the prefix chosen before pass `pass` (`asa_topk_prefix_shift`).
pub fn prefix_shift(key_bits: u32, pass: u32) -> u32 {
    if pass == 0 {
        key_bits
    } else {
        digit_shift(key_bits, pass - 1)
    }
}

/// Digit of pass `pass` of `key` (`asa_topk_digit`).
pub fn digit(key: u32, key_bits: u32, pass: u32) -> u32 {
    (key >> digit_shift(key_bits, pass)) & ((1 << digit_width(key_bits, pass)) - 1)
}

/// A weight type the top-k rule accepts: f32, and bf16/f16 (the `half` crate types).
pub trait TopkWeight: Copy + Send + Sync + 'static {
    /// Bits of the magnitude key (31 or 15).
    const KEY_BITS: u32;
    /// The smallest key that is not finite (the key of +Inf).
    const NONFINITE_KEY: u32;
    /// Name of the type in reports.
    const DTYPE: &'static str;
    /// The magnitude key (bits of |w|).
    fn key(self) -> u32;
    /// The value as f32 (exact for all three types).
    fn to_f32(self) -> f32;
    /// The magnitude a key stands for, as f32 (exact).
    fn key_to_f32(key: u32) -> f32;
    /// The slice itself when `Self` is f32 (lets f32-only SIMD paths skip conversion).
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]> {
        let _ = s;
        None
    }
}

impl TopkWeight for f32 {
    const KEY_BITS: u32 = 31;
    const NONFINITE_KEY: u32 = 0x7F80_0000;
    const DTYPE: &'static str = "f32";
    #[inline(always)]
    fn key(self) -> u32 {
        key_f32(self)
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn key_to_f32(key: u32) -> f32 {
        f32::from_bits(key)
    }
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
}

impl TopkWeight for half::bf16 {
    const KEY_BITS: u32 = 15;
    const NONFINITE_KEY: u32 = 0x7F80;
    const DTYPE: &'static str = "bf16";
    #[inline(always)]
    fn key(self) -> u32 {
        key_16(self.to_bits())
    }
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn key_to_f32(key: u32) -> f32 {
        half::bf16::from_bits(key as u16).to_f32()
    }
}

impl TopkWeight for half::f16 {
    const KEY_BITS: u32 = 15;
    const NONFINITE_KEY: u32 = 0x7C00;
    const DTYPE: &'static str = "f16";
    #[inline(always)]
    fn key(self) -> u32 {
        key_16(self.to_bits())
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn key_to_f32(key: u32) -> f32 {
        half::f16::from_bits(key as u16).to_f32()
    }
}

/// Whether the selection runs over all tensors together or over each tensor alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneScope {
    /// One selection over every tensor (LTH's global magnitude pruning).
    Global,
    /// One selection per tensor (layerwise pruning).
    PerTensor,
}

/// One tensor to prune: its name (for reports and errors), weights and current mask.
#[derive(Debug)]
pub struct PruneTensor<'a, W = f32> {
    pub name: &'a str,
    pub weights: &'a [W],
    /// 0/1 per weight (0 = pruned), updated in place.
    pub mask: &'a mut [f32],
}

impl<'a, W> PruneTensor<'a, W> {
    pub fn new(name: &'a str, weights: &'a [W], mask: &'a mut [f32]) -> Self {
        Self {
            name,
            weights,
            mask,
        }
    }
}

/// What happened to one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPruneReport {
    pub name: String,
    pub numel: usize,
    /// Unpruned weights before this call.
    pub remaining_before: u64,
    /// Weights this call pruned.
    pub pruned: u64,
    /// Unpruned weights after this call.
    pub remaining: u64,
}

/// One selection group: all tensors (global) or one tensor (per-tensor).
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionReport {
    /// The tensors (indices into the input list) this selection ran over.
    pub tensors: Range<usize>,
    /// Unpruned weights in the group before this call.
    pub remaining_before: u64,
    /// Weights pruned: `ceil(f · remaining_before)`.
    pub pruned: u64,
    /// |w| of the largest pruned weight: every pruned |w| ≤ threshold ≤ every kept unpruned
    /// |w|. `None` when nothing was pruned.
    pub threshold: Option<f32>,
    /// The magnitude key of `threshold`.
    pub threshold_key: Option<u32>,
    /// Pruned weights with |w| < threshold.
    pub below_threshold: u64,
    /// Unpruned weights (before this call) with |w| == threshold.
    pub ties_at_threshold: u64,
    /// Of those, how many were pruned (the lowest global indices).
    pub ties_pruned: u64,
}

impl SelectionReport {
    /// Ties at the threshold that stay unpruned.
    pub fn ties_kept(&self) -> u64 {
        self.ties_at_threshold - self.ties_pruned
    }
    /// How many weights the index rule had to decide between: all the ties at the threshold
    /// when some of them were pruned and some kept, else 0.
    pub fn ties_resolved_by_index(&self) -> u64 {
        if self.ties_pruned > 0 && self.ties_pruned < self.ties_at_threshold {
            self.ties_at_threshold
        } else {
            0
        }
    }
}

/// The result of one pruning call.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneReport {
    pub scope: PruneScope,
    pub fraction: f64,
    /// Weight type (`f32`, `bf16`, `f16`).
    pub dtype: &'static str,
    /// One per group: a single one for [`PruneScope::Global`], one per tensor otherwise.
    pub selections: Vec<SelectionReport>,
    /// One per input tensor, in input order.
    pub tensors: Vec<TensorPruneReport>,
}

impl PruneReport {
    /// Unpruned weights before the call, over all tensors.
    pub fn remaining_before(&self) -> u64 {
        self.tensors.iter().map(|t| t.remaining_before).sum()
    }
    /// Weights pruned by the call, over all tensors.
    pub fn pruned(&self) -> u64 {
        self.tensors.iter().map(|t| t.pruned).sum()
    }
    /// Unpruned weights after the call, over all tensors.
    pub fn remaining(&self) -> u64 {
        self.tensors.iter().map(|t| t.remaining).sum()
    }
    /// Ties decided by the index rule, over all selections.
    pub fn ties_resolved_by_index(&self) -> u64 {
        self.selections
            .iter()
            .map(SelectionReport::ties_resolved_by_index)
            .sum()
    }
}

/// `f` must be a number in `[0, 1]`.
pub fn check_fraction(f: f64) -> Result<()> {
    if (0.0..=1.0).contains(&f) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "prune fraction must be in [0, 1], got {f}"
        )))
    }
}

/// `n = ceil(f · remaining)` with the product in f64, at most `remaining`.
pub fn prune_count(f: f64, remaining: u64) -> u64 {
    let n = (f * remaining as f64).ceil();
    if n <= 0.0 {
        0
    } else {
        (n as u64).min(remaining)
    }
}

/// The radix select of one group, shared by the CPU and CUDA paths: fed the histogram of each
/// pass (pass 0 over every unpruned key of the group, pass p over the keys matching
/// [`prefix`](Self::prefix)), it finds the threshold key and the number of ties to prune.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadixSelect {
    key_bits: u32,
    /// Passes fed so far.
    fed: u32,
    remaining: u64,
    n: u64,
    /// 1-based rank of the n-th smallest key among the keys matching `prefix`.
    rank: u64,
    prefix: u32,
    below: u64,
    /// Size of the bucket picked by the latest pass.
    bucket: u64,
}

impl RadixSelect {
    /// Start from the pass-0 histogram (length [`BINS`]) of a group.
    pub fn new(key_bits: u32, fraction: f64, hist0: &[u64]) -> Result<Self> {
        let remaining: u64 = hist0.iter().sum();
        let n = prune_count(fraction, remaining);
        let mut s = RadixSelect {
            key_bits,
            fed: 0,
            remaining,
            n,
            rank: n,
            prefix: 0,
            below: 0,
            bucket: 0,
        };
        s.feed(hist0)?;
        Ok(s)
    }

    /// Whether this group prunes anything (later passes and the mask pass skip it if not).
    pub fn active(&self) -> bool {
        self.n > 0
    }

    /// Unpruned weights of the group.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Weights to prune.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The next pass to run (equals [`passes`] when done).
    pub fn next_pass(&self) -> u32 {
        self.fed
    }

    /// Whether every pass has been fed.
    pub fn done(&self) -> bool {
        self.fed >= passes(self.key_bits)
    }

    /// The prefix the next pass matches (`key >> prefix_shift(key_bits, next_pass) == prefix`).
    pub fn prefix(&self) -> u32 {
        self.prefix
    }

    /// Feed the histogram of the next pass.
    pub fn feed(&mut self, hist: &[u64]) -> Result<()> {
        if self.done() {
            return Err(Error::Config(
                "radix select: every pass was already fed".into(),
            ));
        }
        let pass = self.fed;
        self.fed += 1;
        if self.n == 0 {
            return Ok(());
        }
        let width = digit_width(self.key_bits, pass);
        let bins = 1usize << width;
        if hist.len() < bins {
            return Err(Error::Config(format!(
                "radix select: pass {pass} histogram has {} bins, expected {bins}",
                hist.len()
            )));
        }
        let mut cum = 0u64;
        for (d, &c) in hist[..bins].iter().enumerate() {
            if cum + c >= self.rank {
                self.below += cum;
                self.rank -= cum;
                self.prefix = (self.prefix << width) | d as u32;
                self.bucket = c;
                return Ok(());
            }
            cum += c;
        }
        // Only a histogram that disagrees with the earlier ones gets here (a device bug).
        Err(Error::Device(format!(
            "radix select: pass {pass} histogram holds {cum} candidates, fewer than rank {}",
            self.rank
        )))
    }

    /// The threshold key (the largest pruned key), once done and when active.
    pub fn threshold_key(&self) -> Option<u32> {
        (self.done() && self.active()).then_some(self.prefix)
    }

    /// Keys below the threshold (all pruned), once done.
    pub fn below(&self) -> u64 {
        self.below
    }

    /// Unpruned keys equal to the threshold, once done (0 when inactive).
    pub fn ties(&self) -> u64 {
        if self.active() {
            self.bucket
        } else {
            0
        }
    }

    /// Ties to prune (the lowest global indices among them), once done (0 when inactive).
    pub fn ties_to_prune(&self) -> u64 {
        if self.active() {
            self.rank
        } else {
            0
        }
    }

    /// The group's report line.
    pub fn report<W: TopkWeight>(&self, tensors: Range<usize>) -> SelectionReport {
        let key = self.threshold_key();
        SelectionReport {
            tensors,
            remaining_before: self.remaining,
            pruned: self.n,
            threshold: key.map(W::key_to_f32),
            threshold_key: key,
            below_threshold: if self.active() { self.below } else { 0 },
            ties_at_threshold: self.ties(),
            ties_pruned: self.ties_to_prune(),
        }
    }
}

/// Where the `need`-th tie falls, given the tie counts of consecutive pieces (chunks or tiles)
/// in global order: `(piece, rank)` such that every tie in earlier pieces and the first `rank`
/// ties (1 ≤ rank ≤ count) of `piece` are pruned. `None` when `need` is 0 or exceeds the total.
pub fn tie_cut(counts: impl IntoIterator<Item = u64>, need: u64) -> Option<(usize, u64)> {
    if need == 0 {
        return None;
    }
    let mut cum = 0u64;
    for (i, c) in counts.into_iter().enumerate() {
        if cum + c >= need {
            return Some((i, need - cum));
        }
        cum += c;
    }
    None
}

/// The error for a bad element: an invalid mask value, else a non-finite weight.
pub(crate) fn bad_element_error(tensor: &str, index: usize, mask: f32, weight: f32) -> Error {
    if mask != 0.0 && mask != 1.0 {
        Error::Config(format!(
            "prune mask of `{tensor}` has value {mask} at index {index}; expected 0 or 1"
        ))
    } else {
        Error::NonFinite {
            tensor: tensor.to_string(),
            index,
            value: weight,
        }
    }
}

/// Shape and group checks shared by both backends: every mask as long as its weights.
pub(crate) fn check_mask_len(name: &str, weights: usize, mask: usize) -> Result<()> {
    if weights == mask {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "prune: mask of `{name}` has {mask} elements, its weights {weights}"
        )))
    }
}

/// The selection group of each tensor and the number of groups.
pub(crate) fn groups(scope: PruneScope, nt: usize) -> (Vec<usize>, usize) {
    match scope {
        PruneScope::Global => (vec![0; nt], 1),
        PruneScope::PerTensor => ((0..nt).collect(), nt),
    }
}

/// The tensor range of group `g`.
pub(crate) fn group_tensors(scope: PruneScope, nt: usize, g: usize) -> Range<usize> {
    match scope {
        PruneScope::Global => 0..nt,
        PruneScope::PerTensor => g..g + 1,
    }
}

/// Prune all tensors together by fraction `f` (see the module docs for the exact rule).
pub fn prune_global<W: TopkWeight>(
    tensors: &mut [PruneTensor<'_, W>],
    fraction: f64,
) -> Result<PruneReport> {
    prune(tensors, fraction, PruneScope::Global)
}

/// Prune each tensor by fraction `f` on its own.
pub fn prune_per_tensor<W: TopkWeight>(
    tensors: &mut [PruneTensor<'_, W>],
    fraction: f64,
) -> Result<PruneReport> {
    prune(tensors, fraction, PruneScope::PerTensor)
}

/// One chunk of a tensor: the unit of parallel work.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    tensor: usize,
    group: usize,
    /// Range within the tensor.
    start: usize,
    end: usize,
}

type Hist = Box<[u32; BINS]>;

/// One chunk's share of the mask pass: tensor, threshold key, which ties to prune, weights,
/// mask.
type MaskWork<'a, W> = (usize, u32, TieCut, &'a [W], &'a mut [f32]);

/// Which of a chunk's ties (unpruned keys equal to the threshold) the mask pass prunes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TieCut {
    None,
    All,
    /// The first n, in index order.
    First(u64),
}

/// Chunks per parallel batch of a sweep: bounds the per-chunk histograms alive at once
/// (256 × 8 KiB) while giving every thread many chunks.
const BATCH: usize = 256;

/// Run `f` on every chunk (in parallel, a batch at a time) and hand the results to `each` in
/// chunk order.
fn sweep<T: Send>(
    chunks: &[Chunk],
    f: impl Fn(&Chunk) -> T + Sync,
    mut each: impl FnMut(&Chunk, T) -> Result<()>,
) -> Result<()> {
    for batch in chunks.chunks(BATCH) {
        let out: Vec<T> = batch.par_iter().map(&f).collect();
        for (c, o) in batch.iter().zip(out) {
            each(c, o)?;
        }
    }
    Ok(())
}

/// Sums chunk histograms of the current group; calls back with the total when the group
/// changes (chunks of a group are consecutive) and at the end.
struct GroupAcc {
    hist: Vec<u64>,
    group: Option<usize>,
}

impl GroupAcc {
    fn new() -> Self {
        GroupAcc {
            hist: vec![0; BINS],
            group: None,
        }
    }
    fn add(
        &mut self,
        group: usize,
        h: Option<&[u32; BINS]>,
        mut done: impl FnMut(usize, &[u64]) -> Result<()>,
    ) -> Result<()> {
        if self.group != Some(group) {
            if let Some(g) = self.group {
                done(g, &self.hist)?;
                self.hist.fill(0);
            }
            self.group = Some(group);
        }
        if let Some(h) = h {
            add_hist(&mut self.hist, h);
        }
        Ok(())
    }
    fn finish(self, mut done: impl FnMut(usize, &[u64]) -> Result<()>) -> Result<()> {
        match self.group {
            Some(g) => done(g, &self.hist),
            None => Ok(()),
        }
    }
}

fn new_hist() -> Hist {
    Box::new([0u32; BINS])
}

/// Pass 0 over one chunk: histogram of the top digit of every unpruned key, the unpruned
/// count, and the first bad element (invalid mask, or non-finite unpruned weight).
///
/// Sixteen elements at a time: first their bins and the bad-element flag, computed without
/// branches (the compiler vectorises this part; a pruned weight goes to a spare bin past the
/// last, so no multiply), then the sixteen increments, spread over eight histograms taken in
/// turn — magnitudes of trained weights crowd into a few top-digit bins, and one histogram
/// would serialise every increment on the previous one to the same bin through memory. The
/// unpruned count is the histograms' total. A bad element only sets a flag, and the chunk is
/// scanned again to find it.
// Inlined into `dispatch`'s closure, so it is compiled for the level that runs it.
#[inline(always)]
fn pass0_chunk<W: TopkWeight>(w: &[W], m: &[f32]) -> (Hist, u64, Option<usize>) {
    const COPIES: usize = 8;
    const G: usize = 16;
    const SPARE: usize = BINS;
    let shift = digit_shift(W::KEY_BITS, 0);
    // u16 counters keep the eight histograms (32 KiB) in L1 beside the streamed data: a copy
    // counts at most CHUNK / COPIES elements.
    const _: () = assert!(CHUNK / COPIES <= u16::MAX as usize);
    let mut h = [[0u16; BINS + 1]; COPIES];
    let mut bad = false;
    let mut bins = [0u32; G];
    let mut group = |wc: &[W], mc: &[f32], n: usize| {
        let mut b = false;
        for i in 0..n {
            let k = wc[i].key();
            let on = mc[i] == 1.0;
            b |= (mc[i] != 0.0) & (!on | (k >= W::NONFINITE_KEY));
            bins[i] = if on {
                (k >> shift) & (BINS as u32 - 1)
            } else {
                SPARE as u32
            };
        }
        bad |= b;
        for (i, &bin) in bins[..n].iter().enumerate() {
            h[i % COPIES][bin as usize] += 1;
        }
    };
    let (wg, mg) = (w.chunks_exact(G), m.chunks_exact(G));
    let (wr, mr) = (wg.remainder(), mg.remainder());
    for (wc, mc) in wg.zip(mg) {
        group(wc, mc, G);
    }
    group(wr, mr, wr.len());
    let mut hist = new_hist();
    for (b, d) in hist.iter_mut().enumerate() {
        *d = h.iter().map(|c| c[b] as u32).sum();
    }
    let count = hist.iter().map(|&c| c as u64).sum();
    (hist, count, if bad { first_bad(w, m) } else { None })
}

/// The first bad element of a chunk: a mask value other than 0 or 1, or a non-finite
/// unpruned weight (pass 0 only flags that one exists, then scans again for it).
fn first_bad<W: TopkWeight>(w: &[W], m: &[f32]) -> Option<usize> {
    w.iter().zip(m).position(|(&wi, &mi)| {
        (mi != 0.0 && mi != 1.0) || (mi == 1.0 && wi.key() >= W::NONFINITE_KEY)
    })
}

/// [`pass0_chunk`] for f32 weights with AVX-512 conflict detection, when the CPU has it and
/// the active level is AVX-512 (`None` otherwise, and the caller takes the portable form).
///
/// Sixteen keys' bins go to the histogram in one gather / add / scatter: `vpconflictd` gives
/// each lane the earlier lanes holding the same bin, so lane j adds 1 + their count, and the
/// scatter (which stores lanes in order, the last duplicate winning) leaves every bin advanced
/// by its full count. Two histograms taken in turn let one group's gather start before the
/// previous group's scatter has finished. Measured on a 2-core Xeon (Sapphire Rapids class)
/// at 10^7 trained-like weights: ~20% less time than the eight-copy scalar increments, which
/// the crowding of magnitudes into a few top-digit bins serialises.
#[cfg(target_arch = "x86_64")]
fn pass0_chunk_conflict<W: TopkWeight>(w: &[W], m: &[f32]) -> Option<(Hist, u64, Option<usize>)> {
    use crate::backend::cpu::isa::{active, has_avx512_conflict, Isa};
    let w = W::as_f32_slice(w)?;
    if active() != Isa::Avx512 || !has_avx512_conflict() || W::KEY_BITS != 31 {
        return None;
    }
    // SAFETY: the CPU has AVX-512 F/BW/DQ/VL, CD and VPOPCNTDQ (checked just above).
    Some(unsafe { pass0_conflict_avx512(w, m) })
}

/// The body of [`pass0_chunk_conflict`].
///
/// # Safety
/// The CPU must have AVX-512 F, BW, DQ, VL, CD and VPOPCNTDQ; `w` and `m` have equal lengths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx512vpopcntdq,avx2,fma")]
unsafe fn pass0_conflict_avx512(w: &[f32], m: &[f32]) -> (Hist, u64, Option<usize>) {
    use std::arch::x86_64::*;
    const COPIES: usize = 2;
    const STRIDE: usize = BINS + 1;
    let shift = digit_shift(31, 0);
    debug_assert_eq!(shift, 20);
    debug_assert_eq!(w.len(), m.len());
    // Bin BINS (the spare) takes pruned weights, so every lane scatters without a mask.
    let mut h = [0i32; STRIDE * COPIES];
    let n16 = w.len() / 16 * 16;
    let one = _mm512_set1_ps(1.0);
    let zero = _mm512_setzero_ps();
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let nonfinite = _mm512_set1_epi32(0x7F80_0000);
    let spare = _mm512_set1_epi32(BINS as i32);
    let ones = _mm512_set1_epi32(1);
    let mut bad: u16 = 0;
    let mut i = 0;
    let mut copy = 0;
    while i < n16 {
        // SAFETY: i + 16 <= n16 <= len of both slices.
        let (wv, mv) = unsafe {
            (
                _mm512_loadu_si512(w.as_ptr().add(i).cast()),
                _mm512_loadu_ps(m.as_ptr().add(i)),
            )
        };
        let k = _mm512_and_si512(wv, abs);
        let on = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(mv, one);
        let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(mv, zero);
        let big = _mm512_cmpge_epu32_mask(k, nonfinite);
        bad |= nonzero & (!on | big);
        // On a valid unpruned lane the key is < 2^31, so key >> 20 < BINS.
        let bin = _mm512_mask_mov_epi32(spare, on, _mm512_srli_epi32::<20>(k));
        let add = _mm512_add_epi32(_mm512_popcnt_epi32(_mm512_conflict_epi32(bin)), ones);
        let hp = h.as_mut_ptr().wrapping_add(copy * STRIDE);
        // SAFETY: every lane of `bin` is in 0..=BINS, inside this copy's STRIDE entries.
        unsafe {
            let old = _mm512_i32gather_epi32::<4>(bin, hp.cast_const());
            _mm512_i32scatter_epi32::<4>(hp, bin, _mm512_add_epi32(old, add));
        }
        copy ^= 1;
        i += 16;
    }
    let mut hist = new_hist();
    for (b, d) in hist.iter_mut().enumerate() {
        *d = (0..COPIES).map(|c| h[c * STRIDE + b] as u32).sum();
    }
    // The tail (< 16 elements, only at a tensor's end) the portable way.
    let mut tail_bad = None;
    if n16 < w.len() {
        let (th, _, b) = pass0_chunk(&w[n16..], &m[n16..]);
        add_hist32(&mut hist, &th);
        tail_bad = b;
    }
    let count = hist.iter().map(|&c| c as u64).sum();
    let bad = bad != 0 || tail_bad.is_some();
    (hist, count, if bad { first_bad(w, m) } else { None })
}

fn add_hist32(acc: &mut [u32; BINS], h: &[u32; BINS]) {
    for (a, &b) in acc.iter_mut().zip(h.iter()) {
        *a += b;
    }
}

/// Pass `pass` ≥ 1 over one chunk (masks already validated); branch-free (a key outside the
/// prefix adds 0 to the bin of its digit bits, which are spread out).
// Inlined into `dispatch`'s closure, so it is compiled for the level that runs it.
#[inline(always)]
fn pass_chunk<W: TopkWeight>(w: &[W], m: &[f32], pass: u32, prefix: u32) -> Hist {
    let mut hist = new_hist();
    let pshift = prefix_shift(W::KEY_BITS, pass);
    let shift = digit_shift(W::KEY_BITS, pass);
    let dmask = (1u32 << digit_width(W::KEY_BITS, pass)) - 1;
    let hit = |wi: W, mi: f32| (mi != 0.0) & (wi.key() >> pshift == prefix);
    // After pass 0 few keys match the prefix: test 16 at a time (one vector compare) and
    // histogram only the groups that hold a match.
    const G: usize = 16;
    let (wg, mg) = (w.chunks_exact(G), m.chunks_exact(G));
    let (wr, mr) = (wg.remainder(), mg.remainder());
    for (wc, mc) in wg.zip(mg) {
        let mut any = false;
        for i in 0..G {
            any |= hit(wc[i], mc[i]);
        }
        if any {
            for (&wi, &mi) in wc.iter().zip(mc) {
                hist[((wi.key() >> shift) & dmask) as usize] += hit(wi, mi) as u32;
            }
        }
    }
    for (&wi, &mi) in wr.iter().zip(mr) {
        hist[((wi.key() >> shift) & dmask) as usize] += hit(wi, mi) as u32;
    }
    hist
}

/// Unpruned keys equal to `t` in one chunk.
// Inlined into `dispatch`'s closure, so it is compiled for the level that runs it.
#[inline(always)]
fn count_ties<W: TopkWeight>(w: &[W], m: &[f32], t: u32) -> u64 {
    w.iter()
        .zip(m)
        .map(|(&wi, &mi)| ((mi != 0.0) & (wi.key() == t)) as u64)
        .sum()
}

/// The mask pass over one chunk: prune every unpruned key < `t`, and the ties (keys == `t`)
/// that `cut` says. Returns the number pruned.
// Inlined into `dispatch`'s closure, so it is compiled for the level that runs it.
#[inline(always)]
fn mask_chunk<W: TopkWeight>(w: &[W], m: &mut [f32], t: u32, cut: TieCut) -> u64 {
    let mut take = match cut {
        TieCut::None | TieCut::All => {
            // Prune key < limit, branch-free (vectorisable). Keys are < 2^31 and the limit is
            // at most 2^31, so the comparison is exact in i64.
            let limit = t as i64 + (cut == TieCut::All) as i64;
            let mut pruned = 0u32;
            for (&wi, mi) in w.iter().zip(m.iter_mut()) {
                let below = (wi.key() as i64) < limit;
                pruned += ((*mi != 0.0) & below) as u32;
                *mi = if below { 0.0 } else { *mi };
            }
            return pruned as u64;
        }
        TieCut::First(n) => n,
    };
    let mut pruned = 0u64;
    for (&wi, mi) in w.iter().zip(m.iter_mut()) {
        if *mi != 0.0 {
            let k = wi.key();
            if k < t || (k == t && take > 0) {
                if k == t {
                    take -= 1;
                }
                *mi = 0.0;
                pruned += 1;
            }
        }
    }
    pruned
}

fn add_hist(acc: &mut [u64], h: &[u32; BINS]) {
    for (a, &b) in acc.iter_mut().zip(h.iter()) {
        *a += b as u64;
    }
}

/// Prune by fraction `f` in the given scope on the CPU (rayon threads); see the module docs.
pub fn prune<W: TopkWeight>(
    tensors: &mut [PruneTensor<'_, W>],
    fraction: f64,
    scope: PruneScope,
) -> Result<PruneReport> {
    prune_impl(tensors, fraction, scope, None)
}

/// Wall seconds of each sweep of one [`prune_timed`] call, in order: `pass0`, `pass1`, …,
/// `ties` (only when a group cuts its ties), `mask`.
pub type PassTimes = Vec<(&'static str, f64)>;

/// [`prune`], also returning how long each sweep took (for the benchmarks' per-pass rows).
pub fn prune_timed<W: TopkWeight>(
    tensors: &mut [PruneTensor<'_, W>],
    fraction: f64,
    scope: PruneScope,
) -> Result<(PruneReport, PassTimes)> {
    let mut times = Vec::new();
    let r = prune_impl(tensors, fraction, scope, Some(&mut times))?;
    Ok((r, times))
}

/// Marks the end of each sweep into `times` (when asked for).
struct Laps<'a> {
    times: Option<&'a mut PassTimes>,
    t0: std::time::Instant,
}

impl Laps<'_> {
    fn mark(&mut self, what: &'static str) {
        if let Some(t) = self.times.as_deref_mut() {
            let now = std::time::Instant::now();
            t.push((what, (now - self.t0).as_secs_f64()));
            self.t0 = now;
        }
    }
}

fn prune_impl<W: TopkWeight>(
    tensors: &mut [PruneTensor<'_, W>],
    fraction: f64,
    scope: PruneScope,
    times: Option<&mut PassTimes>,
) -> Result<PruneReport> {
    check_fraction(fraction)?;
    for t in tensors.iter() {
        check_mask_len(t.name, t.weights.len(), t.mask.len())?;
    }
    let nt = tensors.len();
    let (group_of, ng) = groups(scope, nt);
    let npasses = passes(W::KEY_BITS);

    let mut chunks = Vec::new();
    for (ti, t) in tensors.iter().enumerate() {
        let len = t.weights.len();
        let mut start = 0;
        while start < len {
            let end = (start + CHUNK).min(len);
            chunks.push(Chunk {
                tensor: ti,
                group: group_of[ti],
                start,
                end,
            });
            start = end;
        }
    }
    let ts = &*tensors;
    let slices = |c: &Chunk| {
        let t = &ts[c.tensor];
        (&t.weights[c.start..c.end], &t.mask[c.start..c.end])
    };

    let mut laps = Laps {
        times,
        t0: std::time::Instant::now(),
    };
    // Pass 0: validate, count, histogram the top digit. Chunks arrive in global order, so the
    // first chunk with a bad element holds the lowest one.
    let zero = vec![0u64; BINS];
    let mut sel = (0..ng)
        .map(|_| RadixSelect::new(W::KEY_BITS, fraction, &zero))
        .collect::<Result<Vec<_>>>()?;
    let mut unpruned = vec![0u64; nt];
    let mut acc = GroupAcc::new();
    sweep(
        &chunks,
        |c| {
            let (w, m) = slices(c);
            #[cfg(target_arch = "x86_64")]
            if let Some(r) = pass0_chunk_conflict(w, m) {
                return r;
            }
            dispatch(
                #[inline(always)]
                || pass0_chunk(w, m),
            )
        },
        |c, (h, n, bad)| {
            if let Some(i) = bad {
                let (t, i) = (&ts[c.tensor], c.start + i);
                return Err(bad_element_error(
                    t.name,
                    i,
                    t.mask[i],
                    t.weights[i].to_f32(),
                ));
            }
            unpruned[c.tensor] += n;
            acc.add(c.group, Some(&h), |g, hist| {
                sel[g] = RadixSelect::new(W::KEY_BITS, fraction, hist)?;
                Ok(())
            })
        },
    )?;
    acc.finish(|g, hist| {
        sel[g] = RadixSelect::new(W::KEY_BITS, fraction, hist)?;
        Ok(())
    })?;
    laps.mark("pass0");

    // Passes 1 .. P-1 over the groups that prune something.
    for pass in 1..npasses {
        if !sel.iter().any(RadixSelect::active) {
            break;
        }
        let prefixes: Vec<Option<u32>> =
            sel.iter().map(|s| s.active().then(|| s.prefix())).collect();
        let mut acc = GroupAcc::new();
        sweep(
            &chunks,
            |c| {
                prefixes[c.group].map(|p| {
                    let (w, m) = slices(c);
                    dispatch(
                        #[inline(always)]
                        || pass_chunk(w, m, pass, p),
                    )
                })
            },
            |c, h| acc.add(c.group, h.as_deref(), |g, hist| sel[g].feed(hist)),
        )?;
        acc.finish(|g, hist| sel[g].feed(hist))?;
        laps.mark(["pass0", "pass1", "pass2"][pass.min(2) as usize]);
    }

    // Ties at the threshold: a group that prunes some but not all of them counts its ties per
    // chunk (one more sweep, over that group's chunks only) and cuts them in global order.
    let scan: Vec<bool> = sel
        .iter()
        .map(|s| s.active() && s.ties_to_prune() < s.ties())
        .collect();
    let mut cuts = vec![TieCut::All; chunks.len()];
    if scan.iter().any(|&b| b) {
        let counts: Vec<u64> = chunks
            .par_iter()
            .map(|c| match sel[c.group].threshold_key() {
                Some(t) if scan[c.group] => {
                    let (w, m) = slices(c);
                    dispatch(
                        #[inline(always)]
                        || count_ties(w, m, t),
                    )
                }
                _ => 0,
            })
            .collect();
        let mut seen = vec![0u64; ng];
        for ((c, &ties), cut) in chunks.iter().zip(&counts).zip(cuts.iter_mut()) {
            if !scan[c.group] {
                continue;
            }
            let before = seen[c.group];
            let take = sel[c.group]
                .ties_to_prune()
                .saturating_sub(before)
                .min(ties);
            *cut = if take == 0 {
                TieCut::None
            } else if take == ties {
                TieCut::All
            } else {
                TieCut::First(take)
            };
            seen[c.group] = before + ties;
        }
        for (g, s) in sel.iter().enumerate() {
            if scan[g] && seen[g] != s.ties() {
                return Err(Error::Config(format!(
                    "top-k: tie counts disagree ({} vs {}); internal error",
                    seen[g],
                    s.ties()
                )));
            }
        }
        laps.mark("ties");
    }

    // Mask pass.
    let keys: Vec<Option<u32>> = sel.iter().map(RadixSelect::threshold_key).collect();
    let mut work: Vec<MaskWork<'_, W>> = Vec::with_capacity(chunks.len());
    {
        let mut ci = 0;
        for (ti, t) in tensors.iter_mut().enumerate() {
            for (w, m) in t.weights.chunks(CHUNK).zip(t.mask.chunks_mut(CHUNK)) {
                let c = chunks[ci];
                debug_assert_eq!(c.tensor, ti);
                if let Some(k) = keys[c.group] {
                    work.push((ti, k, cuts[ci], w, m));
                }
                ci += 1;
            }
        }
    }
    let pruned_per_chunk: Vec<(usize, u64)> = work
        .into_par_iter()
        .map(|(ti, k, cut, w, m)| {
            let pruned = dispatch(
                #[inline(always)]
                || mask_chunk(w, m, k, cut),
            );
            (ti, pruned)
        })
        .collect();
    let mut pruned = vec![0u64; nt];
    for (ti, p) in pruned_per_chunk {
        pruned[ti] += p;
    }
    laps.mark("mask");

    Ok(assemble_report::<W>(
        scope,
        fraction,
        tensors.iter().map(|t| (t.name, t.weights.len())),
        &sel,
        &unpruned,
        &pruned,
    ))
}

/// The report from the finished selections and per-tensor counts (both backends).
pub(crate) fn assemble_report<'n, W: TopkWeight>(
    scope: PruneScope,
    fraction: f64,
    tensors: impl Iterator<Item = (&'n str, usize)>,
    sel: &[RadixSelect],
    unpruned: &[u64],
    pruned: &[u64],
) -> PruneReport {
    let tensors: Vec<TensorPruneReport> = tensors
        .enumerate()
        .map(|(i, (name, numel))| TensorPruneReport {
            name: name.to_string(),
            numel,
            remaining_before: unpruned[i],
            pruned: pruned[i],
            remaining: unpruned[i] - pruned[i],
        })
        .collect();
    let nt = tensors.len();
    let selections = sel
        .iter()
        .enumerate()
        .map(|(g, s)| s.report::<W>(group_tensors(scope, nt, g)))
        .collect();
    PruneReport {
        scope,
        fraction,
        dtype: W::DTYPE,
        selections,
        tensors,
    }
}
