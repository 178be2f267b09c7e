//! Masked causal attention on the CPU, flash-attention style (DESIGN.md §3).
//!
//! Layout: `q, k, v, out` (and their gradients) are `(B, T, C)` row-major with `C = H·D`, head
//! `h` at columns `h·D .. (h+1)·D`; `lse` is `(B, H, T)`; the optional mask is bit-packed
//! `(B, Hm, T, ⌈T/32⌉)` u32 words, `Hm = H` when per-head, else 1. Scores are scaled by
//! `1/√D`; the effective mask is `mask ∧ (j ≤ i)` (causal only without a mask).
//!
//! Algorithm: the `T×T` score matrix is never materialised. Each `(b, h)` is cut into
//! [`TILE`]`×`[`TILE`] blocks classified with [`TileMap`] (empty blocks are skipped, full ones
//! need no bit test, partial ones test the mask word pair of the row).
//!
//! - Forward: one task per `(b, q-tile)` (all heads), online softmax with a running max `m`
//!   and sum `l` per row; `out = O/l`, `lse = m + ln l`. A row with no allowed key gets
//!   `out = 0` and `lse = +∞`.
//! - Backward (FA2 recomputation): one task per `(b, h)`, outer loop over k-tiles, inner
//!   over q-tiles: `P = exp(S − lse)` (exactly 0 where masked or where `lse = +∞`),
//!   `Di = rowsum(dO∘O)`, `dV += Pᵀ dO`, `dP = dO Vᵀ`, `dS = P∘(dP − Di)`,
//!   `dQ += scale·dS K`, `dK += scale·dSᵀ Q`; results are accumulated (`+=`) into the
//!   caller's gradient buffers.
//!
//! The block products use a small register-blocked kernel (`MR×NR` accumulators in
//! registers, A packed in `MR`-row panels, B streamed) on contiguous, zero-padded tiles
//! (head dim padded to a multiple of 16). The forward packs Kᵀ and V of every head once per
//! call (into a buffer kept per calling thread, so repeated calls do not reallocate); the
//! backward packs Q, dO, K, Kᵀ and Vᵀ of its head locally. The per-task routines are compiled
//! once per instruction-set level ([`super::isa`], read once per call) and picked at run
//! time: portable code as built; AVX2+FMA with 256-bit vectors (`4 × 16` f32 blocks); and
//! AVX-512 with 512-bit vectors (`8 × 32` f32 blocks in intrinsics, 16-wide softmax loops).
//! The AVX-512 kernels sum every product in the same order as the AVX2 ones (each GEMM entry
//! is one FMA chain over `k`; the row sums keep 8 partial sums), so the two levels give
//! bitwise-equal results; the portable build (no FMA) rounds differently. The softmax `exp`
//! is a branch-free polynomial so its loops vectorise: [`Real::exp_fast`] for f32, an f64 one
//! accurate to a few ulps for f64 (so f64 results can be held to ~1e-12 in tests).

use rayon::prelude::*;

use super::isa::Isa;
use super::real::{as_f32, as_f32_mut, Real};
use crate::backend::{shapes, AttnShape};
use crate::mask::{BitMask, TileClass, TileMap};
use crate::{Error, Result};

/// Block size (queries per q-tile = keys per k-tile). Must be 64: a k-tile's mask bits for one
/// row are then exactly one aligned pair of u32 words.
pub const TILE: usize = 64;
const _: () = assert!(TILE == 64);

/// Rows of the block-product register block below AVX-512: with 16 vector registers,
/// `4 × 2` accumulator vectors leave room for the B row and the broadcast.
const MR_NARROW: usize = 4;
/// Rows of the register block at AVX-512: 32 vector registers hold `8 × 2` accumulators.
const MR_WIDE: usize = 8;
/// Local tiles pad the head dimension to a multiple of this (a multiple of every `NR`
/// except the 32-wide f32 block, which hands a 16-column tail to a 16-wide one).
const DPAD: usize = 16;

/// A borrowed bit-packed mask: `(B, Hm, T, ⌈T/32⌉)` u32 words, `Hm = H` if `per_head` else 1.
#[derive(Clone, Copy, Debug)]
pub struct MaskView<'a> {
    pub bits: &'a [u32],
    pub per_head: bool,
}

impl<'a> From<&'a BitMask> for MaskView<'a> {
    fn from(m: &'a BitMask) -> Self {
        MaskView {
            bits: m.words(),
            per_head: m.per_head(),
        }
    }
}

/// Validated mask: its classification and word geometry.
struct MaskCtx<'a> {
    bits: &'a [u32],
    heads: usize,
    wpr: usize,
    t: usize,
    map: TileMap,
}

impl MaskCtx<'_> {
    /// Mask bits of keys `kt·64 .. kt·64+64` for query `i` of `(b, mask head hm)`.
    #[inline(always)]
    fn bits64(&self, b: usize, hm: usize, i: usize, kt: usize) -> u64 {
        let row = &self.bits[((b * self.heads + hm) * self.t + i) * self.wpr..][..self.wpr];
        let lo = u64::from(row[2 * kt]);
        let hi = row.get(2 * kt + 1).map_or(0, |&w| u64::from(w));
        lo | hi << 32
    }
}

fn mask_ctx<'a>(
    op: &'static str,
    mask: Option<MaskView<'a>>,
    s: &AttnShape,
) -> Result<Option<MaskCtx<'a>>> {
    let Some(m) = mask else { return Ok(None) };
    let heads = if m.per_head { s.h } else { 1 };
    let wpr = s.mask_words();
    let expected =
        s.b.checked_mul(heads)
            .and_then(|x| x.checked_mul(s.t))
            .and_then(|x| x.checked_mul(wpr));
    if expected != Some(m.bits.len()) {
        return Err(Error::Mask(format!(
            "{op}: for T = {t} ({wpr} u32 words per row), B = {b} and {heads} mask head(s) \
             ({kind}) expected {b}×{heads}×{t}×{wpr} = {exp} words, got {got}",
            t = s.t,
            b = s.b,
            kind = if m.per_head { "per-head" } else { "shared" },
            exp = expected.map_or_else(|| "(overflow)".to_string(), |e| e.to_string()),
            got = m.bits.len(),
        )));
    }
    let map = TileMap::from_words(m.bits, s.b, heads, s.t, TILE)?;
    Ok(Some(MaskCtx {
        bits: m.bits,
        heads,
        wpr,
        t: s.t,
        map,
    }))
}

/// Class of block `(qt, kt)` (`kt ≤ qt`) of `(b, mask head hm)`; without a mask, plain
/// causal classes.
#[inline(always)]
fn class_of(mask: Option<&MaskCtx>, b: usize, hm: usize, qt: usize, kt: usize) -> TileClass {
    match mask {
        Some(m) => m.map.class(b, hm, qt, kt),
        None if kt < qt => TileClass::Full,
        None => TileClass::Partial,
    }
}

/// Allowed keys (bit `j` = key `k0 + j`) of query `i` in block `(qt, kt)`: mask ∧ causal.
/// Bits of keys `≥ T` are never set since `j ≤ i < T`.
#[inline(always)]
fn allowed_bits(
    mask: Option<&MaskCtx>,
    class: TileClass,
    b: usize,
    hm: usize,
    i: usize,
    kt: usize,
) -> u64 {
    let k0 = kt * TILE;
    // i ≥ k0 because kt ≤ qt.
    let rel = i - k0;
    let causal = if rel >= TILE - 1 {
        u64::MAX
    } else {
        (1u64 << (rel + 1)) - 1
    };
    let m = match (mask, class) {
        (Some(m), TileClass::Partial) => m.bits64(b, hm, i, kt),
        _ => u64::MAX,
    };
    m & causal
}

// ---------------------------------------------------------------------------------------
// Scalar building blocks (always inlined so they pick up the caller's target features).

#[inline(always)]
fn madd<F: Real, const FMA: bool>(a: F, b: F, c: F) -> F {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn madd64<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `exp` of `N` lanes at once for the softmax: branch-free and written stage by stage so it
/// vectorises; evaluated in f64 (Cody–Waite range reduction, Taylor polynomial of degree 13
/// when `hi` — a few f64 ulps — else degree 7, ~1e-8 relative, plenty for f32 results).
/// Gives exactly 0 for `x < −708` (including `−∞`), 1 for `x = 0`, NaN for NaN. Meant for
/// `x ≲ 0` (valid up to 709).
#[inline(always)]
fn exp_lanes<const FMA: bool, const N: usize>(x: [f64; N], hi: bool) -> [f64; N] {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5·2^52: adding it rounds to an integer
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // 21 trailing zero bits: n·LN2_HI exact
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const INV_FACT: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    // NaN stays NaN.
    let xc: [f64; N] = std::array::from_fn(|l| x[l].clamp(-708.0, 709.0));
    let t: [f64; N] = std::array::from_fn(|l| madd64::<FMA>(xc[l], LOG2E, MAGIC));
    let mut r: [f64; N] = std::array::from_fn(|l| madd64::<FMA>(MAGIC - t[l], LN2_HI, xc[l]));
    for l in 0..N {
        r[l] = madd64::<FMA>(MAGIC - t[l], LN2_LO, r[l]);
    }
    let deg = if hi { 13 } else { 7 };
    let mut p = [INV_FACT[deg]; N];
    for k in (0..deg).rev() {
        for l in 0..N {
            p[l] = madd64::<FMA>(p[l], r[l], INV_FACT[k]);
        }
    }
    // 2^n from the integer sitting in t's low mantissa bits; n ∈ [−1022, 1023] here.
    std::array::from_fn(|l| {
        let two_n = f64::from_bits(
            t[l].to_bits()
                .wrapping_sub(MAGIC.to_bits())
                .wrapping_add(1023)
                << 52,
        );
        if x[l] < -708.0 {
            0.0
        } else {
            p[l] * two_n
        }
    })
}

/// Whether `F` needs the high-precision `exp` (anything wider than f32).
#[inline(always)]
fn hi_prec<F>() -> bool {
    std::mem::size_of::<F>() > 4
}

/// Scalar [`exp_lanes`].
#[inline(always)]
fn exp_f<F: Real, const FMA: bool>(x: F) -> F {
    F::c(exp_lanes::<FMA, 1>([x.f64()], hi_prec::<F>())[0])
}

/// Maximum of `row[j]` over the set bits `j` of `bits` (`−∞` if none), `L` lanes at a time;
/// NaNs are ignored here (they still reach the output through `exp`). The maximum is exact,
/// so `L` changes no result.
#[inline(always)]
fn masked_max<F: Real, const L: usize>(row: &[F], bits: u64) -> F {
    let mut lanes = [F::neg_infinity(); L];
    for (ci, chunk) in row.chunks_exact(L).enumerate() {
        let word = (bits >> (ci * L)) as u32;
        for (l, (&x, lane)) in chunk.iter().zip(lanes.iter_mut()).enumerate() {
            let v = if word & (1 << l) != 0 {
                x
            } else {
                F::neg_infinity()
            };
            if v > *lane {
                *lane = v;
            }
        }
    }
    lanes
        .iter()
        .fold(F::neg_infinity(), |a, &b| if b > a { b } else { a })
}

/// Maximum of a row whose every entry is allowed, `L` lanes at a time.
#[inline(always)]
fn full_max<F: Real, const L: usize>(row: &[F]) -> F {
    let mut lanes = [F::neg_infinity(); L];
    for chunk in row.chunks_exact(L) {
        for (&x, lane) in chunk.iter().zip(lanes.iter_mut()) {
            if x > *lane {
                *lane = x;
            }
        }
    }
    lanes
        .iter()
        .fold(F::neg_infinity(), |a, &b| if b > a { b } else { a })
}

/// `row[j] ← bits_j ? exp(row[j]·mul − sub) : 0` for a tile row; returns the row sum. The
/// exponentials go to a separate array first — for f32 ([`Real::exp_fast`]) in one loop,
/// which the loop vectoriser runs at the full vector width (`L`-lane arrays of 16 were split
/// into 128-bit pieces); wider types use the f64 [`exp_lanes`], `L` lanes at a time. The
/// mask then selects `L` entries at a time; selecting from the separate array keeps that a
/// blend (a value selected from the row itself became a data-dependent branch). The sum
/// keeps 8 partial sums whatever `L` (lane `l` adds the entries `j ≡ l mod 8` in order), so
/// the AVX2 and AVX-512 kernels round it identically.
#[inline(always)]
fn exp_row<F: Real, const FMA: bool, const L: usize>(
    row: &mut [F],
    bits: u64,
    mul: F,
    sub: F,
) -> F {
    let row: &mut [F; TILE] = row.try_into().expect("a tile row");
    let mut e = [F::zero(); TILE];
    if hi_prec::<F>() {
        let (mul, sub) = (mul.f64(), sub.f64());
        for (ec, chunk) in e.chunks_exact_mut(L).zip(row.chunks_exact(L)) {
            let xs: [f64; L] = std::array::from_fn(|l| madd64::<FMA>(chunk[l].f64(), mul, -sub));
            for (y, x) in ec.iter_mut().zip(exp_lanes::<FMA, L>(xs, true)) {
                *y = F::c(x);
            }
        }
    } else {
        for (y, &x) in e.iter_mut().zip(row.iter()) {
            *y = madd::<F, FMA>(x, mul, -sub).exp_fast();
        }
    }
    let mut acc = [F::zero(); 8];
    for (ci, (chunk, ec)) in row.chunks_exact_mut(L).zip(e.chunks_exact(L)).enumerate() {
        let word = (bits >> (ci * L)) as u32;
        for (l, (x, &y)) in chunk.iter_mut().zip(ec).enumerate() {
            let p = if word & (1 << l) != 0 { y } else { F::zero() };
            *x = p;
            acc[l % 8] += p;
        }
    }
    acc.iter().fold(F::zero(), |s, &x| s + x)
}

/// Pack `A` (`m × k`, row-major with leading dimension `lda`) into `MR`-row panels:
/// `dst[(r/MR)·k·MR + kk·MR + r%MR] = A[r][kk]`. Needs `m % MR == 0`.
#[inline(always)]
fn pack_a<F: Real, const MR: usize>(dst: &mut [F], a: &[F], lda: usize, m: usize, k: usize) {
    for (rb, panel) in dst[..m * k].chunks_exact_mut(k * MR).enumerate() {
        let rows: [&[F]; MR] = std::array::from_fn(|ri| &a[(rb * MR + ri) * lda..][..k]);
        for (kk, out) in panel.chunks_exact_mut(MR).enumerate() {
            for (x, row) in out.iter_mut().zip(rows.iter()) {
                *x = row[kk];
            }
        }
    }
}

/// [`pack_a`] for `A` given transposed: `at` is `k × m` row-major with leading dimension
/// `lda`, `A[r][kk] = at[kk·lda + r]`.
#[inline(always)]
fn pack_at<F: Real, const MR: usize>(dst: &mut [F], at: &[F], lda: usize, m: usize, k: usize) {
    for (rb, panel) in dst[..m * k].chunks_exact_mut(k * MR).enumerate() {
        for (kk, out) in panel.chunks_exact_mut(MR).enumerate() {
            out.copy_from_slice(&at[kk * lda + rb * MR..][..MR]);
        }
    }
}

/// `C[m×n] (+)= A[m×k]·B[k×n]` with `A` pre-packed by [`pack_a`]/[`pack_at`]; B and C are
/// row-major with leading dimensions `ldb`, `ldc`. Needs `m % MR == 0`, `n % NR == 0`,
/// `k ≥ 1`. `ACC = false` overwrites C. Register-blocked `MR × NR`: the accumulators stay
/// in registers while A is broadcast and B streamed. Every entry of C is summed over `k` in
/// order, one multiply-add at a time, so `MR` and `NR` change no result.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_nr<F: Real, const FMA: bool, const ACC: bool, const MR: usize, const NR: usize>(
    c: &mut [F],
    ldc: usize,
    ap: &[F],
    b: &[F],
    ldb: usize,
    m: usize,
    n: usize,
    k: usize,
) {
    debug_assert!(
        m.is_multiple_of(MR) && n.is_multiple_of(NR) && k >= 1 && b.len() >= (k - 1) * ldb + n
    );
    for (rb, panel) in ap[..m * k].chunks_exact(k * MR).enumerate() {
        for c0 in (0..n).step_by(NR) {
            let mut acc = [[F::zero(); NR]; MR];
            for (av, brow) in panel.chunks_exact(MR).zip(b.chunks(ldb)) {
                let brow: &[F; NR] = brow[c0..c0 + NR].try_into().expect("B row");
                let av: &[F; MR] = av.try_into().expect("A panel");
                for (accr, &ar) in acc.iter_mut().zip(av.iter()) {
                    for (x, &bv) in accr.iter_mut().zip(brow.iter()) {
                        *x = madd::<F, FMA>(ar, bv, *x);
                    }
                }
            }
            for (ri, accr) in acc.iter().enumerate() {
                let crow = &mut c[(rb * MR + ri) * ldc + c0..][..NR];
                for (x, &v) in crow.iter_mut().zip(accr.iter()) {
                    if ACC {
                        *x += v;
                    } else {
                        *x = v;
                    }
                }
            }
        }
    }
}

/// [`gemm_nr`] with the register-block width picked for `F` and the vector width `L` (f32
/// lanes: 8 for 256-bit, 16 for 512-bit vectors). f32 at `L = 16` goes to [`gemm_avx512`]
/// (32-wide blocks, a 16-wide one for a tail: `n` is a multiple of [`DPAD`] = 16); otherwise
/// each block row is two 256-bit vectors (16 f32 or 8 f64 columns). f64 only serves the
/// gradient checks, so it keeps the narrow block at every level.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm<F: Real, const FMA: bool, const ACC: bool, const MR: usize, const L: usize>(
    c: &mut [F],
    ldc: usize,
    ap: &[F],
    b: &[F],
    ldb: usize,
    m: usize,
    n: usize,
    k: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if L == 16 {
        if let (Some(c), Some(ap), Some(b)) = (as_f32_mut(c), as_f32(ap), as_f32(b)) {
            let main = n / 32 * 32;
            // SAFETY: `L = 16` only in `fwd_block_avx512` / `bwd_head_avx512`, which run
            // only at the AVX-512 level, so the CPU has the kernel's features.
            unsafe {
                gemm_avx512::<ACC, MR, 2>(c, ldc, ap, b, ldb, m, main, k);
                if main < n {
                    gemm_avx512::<ACC, MR, 1>(
                        &mut c[main..],
                        ldc,
                        ap,
                        &b[main..],
                        ldb,
                        m,
                        n - main,
                        k,
                    );
                }
            }
            return;
        }
    }
    if std::mem::size_of::<F>() <= 4 {
        gemm_nr::<F, FMA, ACC, MR, 16>(c, ldc, ap, b, ldb, m, n, k);
    } else {
        gemm_nr::<F, FMA, ACC, MR, 8>(c, ldc, ap, b, ldb, m, n, k);
    }
}

/// [`gemm_nr`] for f32 in AVX-512 intrinsics, `MR × 16·NV` blocks (LLVM does not keep a
/// generic block this wide in registers: it spills it). Each entry of C is the same chain of
/// fused multiply-adds over `k` as in [`gemm_nr`] with FMA, so the results are bitwise those
/// of the AVX2 kernel. Does nothing when `n = 0`.
///
/// # Safety
/// The CPU has AVX-512F, AVX2 and FMA. (The slice bounds are checked.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx512<const ACC: bool, const MR: usize, const NV: usize>(
    c: &mut [f32],
    ldc: usize,
    ap: &[f32],
    b: &[f32],
    ldb: usize,
    m: usize,
    n: usize,
    k: usize,
) {
    use std::arch::x86_64::*;
    if n == 0 || m == 0 {
        return;
    }
    let nr = 16 * NV;
    assert!(
        m.is_multiple_of(MR)
            && n.is_multiple_of(nr)
            && k >= 1
            && ap.len() >= m * k
            && b.len() >= (k - 1) * ldb + n
            && c.len() >= (m - 1) * ldc + n,
        "gemm_avx512: operand sizes"
    );
    for rb in 0..m / MR {
        let a0 = ap[rb * k * MR..].as_ptr();
        for c0 in (0..n).step_by(nr) {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let mut bp = b[c0..].as_ptr();
            for kk in 0..k {
                let mut bv = [_mm512_setzero_ps(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    // SAFETY: row kk of B at columns c0 + 16v .. + 16 lies inside `b`
                    // (asserted: (k − 1)·ldb + n ≤ b.len(), c0 + nr ≤ n).
                    *x = unsafe { _mm512_loadu_ps(bp.add(16 * v)) };
                }
                for (r, accr) in acc.iter_mut().enumerate() {
                    // SAFETY: the panel holds k·MR values from a0 (asserted m·k ≤ ap.len()).
                    let ar = _mm512_set1_ps(unsafe { *a0.add(kk * MR + r) });
                    for (x, &bw) in accr.iter_mut().zip(bv.iter()) {
                        *x = _mm512_fmadd_ps(ar, bw, *x);
                    }
                }
                if kk + 1 < k {
                    // SAFETY: still inside `b` (row kk + 1 < k).
                    bp = unsafe { bp.add(ldb) };
                }
            }
            for (r, accr) in acc.iter().enumerate() {
                let row = &mut c[(rb * MR + r) * ldc + c0..][..nr];
                for (v, &x) in accr.iter().enumerate() {
                    let cp = row[16 * v..].as_mut_ptr();
                    // SAFETY: `row` holds nr = 16·NV floats, so 16v .. 16v + 16 is inside.
                    unsafe {
                        let y = if ACC {
                            _mm512_add_ps(_mm512_loadu_ps(cp), x)
                        } else {
                            x
                        };
                        _mm512_storeu_ps(cp, y);
                    }
                }
            }
        }
    }
}

/// Load a `TILE × dp` tile: rows `r < n` get `mul ·` the `d` values at
/// `src[off + r·stride ..]`; padding (columns `d..dp`, rows `n..TILE`) is zeroed.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn load_tile_scaled<F: Real>(
    dst: &mut [F],
    dp: usize,
    src: &[F],
    off: usize,
    stride: usize,
    n: usize,
    d: usize,
    mul: F,
) {
    for (r, out) in dst[..TILE * dp].chunks_exact_mut(dp).enumerate() {
        if r < n {
            let row = &src[off + r * stride..][..d];
            out[..d]
                .iter_mut()
                .zip(row)
                .for_each(|(x, &y)| *x = y * mul);
            out[d..].fill(F::zero());
        } else {
            out.fill(F::zero());
        }
    }
}

/// Pack rows `0..t` of one head (row `i` at `src[base + i·stride ..][..d]`) transposed per
/// k-tile: block `kt` of `dst` (`dp × TILE`, at `kt·dp·TILE`) gets
/// `dst[c·TILE + r] = src[base + (kt·TILE + r)·stride + c]`; every padding cell (`c ≥ d`,
/// or key `≥ t`) is written with zero. `dst.len()` must be `nt·dp·TILE`. Keys go `L` at a
/// time (one vector store per column; `L` divides [`TILE`]).
#[inline(always)]
fn pack_cols<F: Real, const L: usize>(
    dst: &mut [F],
    dp: usize,
    src: &[F],
    base: usize,
    stride: usize,
    t: usize,
    d: usize,
) {
    for (kt, blk) in dst.chunks_exact_mut(dp * TILE).enumerate() {
        let k0 = kt * TILE;
        let nk = TILE.min(t - k0);
        for r0 in (0..nk).step_by(L) {
            let rn = L.min(nk - r0);
            if rn == L {
                let rows: [&[F]; L] =
                    std::array::from_fn(|r| &src[base + (k0 + r0 + r) * stride..][..d]);
                for (cc, out) in blk.chunks_exact_mut(TILE).take(d).enumerate() {
                    let out: &mut [F; L] = (&mut out[r0..r0 + L]).try_into().expect("L keys");
                    for (x, row) in out.iter_mut().zip(rows.iter()) {
                        *x = row[cc];
                    }
                }
            } else {
                for r in r0..nk {
                    let row = &src[base + (k0 + r) * stride..][..d];
                    for (out, &y) in blk.chunks_exact_mut(TILE).zip(row) {
                        out[r] = y;
                    }
                }
            }
        }
        for (cc, out) in blk.chunks_exact_mut(TILE).enumerate() {
            if cc < d {
                out[nk..].fill(F::zero());
            } else {
                out.fill(F::zero());
            }
        }
    }
}

/// Pack rows `0..t` of one head row-major into `dst` (`dst.len() / dp` rows of `dp`),
/// zero-filling columns `d..dp` and rows `t..`.
#[inline(always)]
fn pack_rows<F: Real>(
    dst: &mut [F],
    dp: usize,
    src: &[F],
    base: usize,
    stride: usize,
    t: usize,
    d: usize,
) {
    for (i, out) in dst.chunks_exact_mut(dp).enumerate() {
        if i < t {
            out[..d].copy_from_slice(&src[base + i * stride..][..d]);
            out[d..].fill(F::zero());
        } else {
            out.fill(F::zero());
        }
    }
}

/// The forward pass's packed Kᵀ/V buffers, kept per calling thread between calls so that
/// repeated calls do not pay for fresh allocations (and their page faults).
struct PackCache<F> {
    kt: Vec<F>,
    v: Vec<F>,
}

thread_local! {
    static FWD_PACK: std::cell::RefCell<Option<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(None) };
}

/// Two buffers of at least `n` elements (contents unspecified).
fn take_pack<F: Real>(n: usize) -> PackCache<F> {
    let cached = FWD_PACK
        .with(|c| c.borrow_mut().take())
        .and_then(|b| b.downcast::<PackCache<F>>().ok());
    let mut p = cached.map_or_else(
        || PackCache {
            kt: Vec::new(),
            v: Vec::new(),
        },
        |b| *b,
    );
    if p.kt.len() < n {
        p.kt = vec![F::zero(); n];
        p.v = vec![F::zero(); n];
    }
    p
}

fn put_pack<F: Real>(p: PackCache<F>) {
    FWD_PACK.with(|c| *c.borrow_mut() = Some(Box::new(p)));
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

// ---------------------------------------------------------------------------------------
// Forward.

struct FwdArgs<'a, F> {
    q: &'a [F],
    /// Kᵀ per `(b, h, kt)`: `dp × TILE` blocks.
    kt: &'a [F],
    /// V per `(b, h, kt)`: `TILE × dp` blocks.
    v: &'a [F],
    mask: Option<MaskCtx<'a>>,
    s: AttnShape,
    scale: F,
    dp: usize,
    nt: usize,
    /// Instruction-set level of every task of the call (read once, so one call never mixes
    /// levels when another thread changes it).
    level: Isa,
}

struct FwdScratch<F> {
    q: Vec<F>,  // TILE × dp, pre-scaled
    qp: Vec<F>, // the same, packed as A
    p: Vec<F>,  // TILE × TILE: scores, then probabilities
    pp: Vec<F>, // P packed as A
    o: Vec<F>,  // TILE × dp: unnormalised output
    m: [F; TILE],
    l: [F; TILE],
}

impl<F: Real> FwdScratch<F> {
    fn new(dp: usize) -> Self {
        FwdScratch {
            q: vec![F::zero(); TILE * dp],
            qp: vec![F::zero(); TILE * dp],
            p: vec![F::zero(); TILE * TILE],
            pp: vec![F::zero(); TILE * TILE],
            o: vec![F::zero(); TILE * dp],
            m: [F::zero(); TILE],
            l: [F::zero(); TILE],
        }
    }
}

/// Causal, optionally masked attention forward. Overwrites `out` (`B×T×C`) and `lse`
/// (`B×H×T`); see the module docs for layouts and conventions.
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd<F: Real>(
    out: &mut [F],
    lse: &mut [F],
    q: &[F],
    k: &[F],
    v: &[F],
    mask: Option<MaskView<'_>>,
    s: AttnShape,
) -> Result<()> {
    const OP: &str = "attention_fwd";
    let acts = [
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
    ];
    let (_, n_rows) = shapes::attention_lens(OP, &s, &acts, lse.len())?;
    let mask = mask_ctx(OP, mask, &s)?;
    if n_rows == 0 {
        return Ok(());
    }
    let AttnShape { t, h: nh, d, .. } = s;
    let c = s.c();
    let dp = round_up(d, DPAD);
    let nt = t.div_ceil(TILE);
    // Pack Kᵀ and V once per head into zero-padded tiles shared by all q-tiles.
    let per_head = nt * TILE * dp;
    let n_pack = s.b * nh * per_head;
    let mut pack = take_pack::<F>(n_pack);
    pack.kt[..n_pack]
        .par_chunks_mut(per_head)
        .zip(pack.v[..n_pack].par_chunks_mut(per_head))
        .enumerate()
        .for_each(|(g, (kd, vd))| {
            let base = (g / nh) * t * c + (g % nh) * d;
            pack_cols::<F, 8>(kd, dp, k, base, c, t, d);
            pack_rows(vd, dp, v, base, c, t, d);
        });
    let args = FwdArgs {
        q,
        kt: &pack.kt[..n_pack],
        v: &pack.v[..n_pack],
        mask,
        s,
        scale: F::one() / F::c(d as f64).sqrt(),
        dp,
        nt,
        level: super::isa::active(),
    };
    let args = &args;
    let parts: Vec<(usize, usize, Vec<F>)> = out
        .par_chunks_mut(t * c)
        .enumerate()
        .flat_map(|(b, ob)| {
            ob.par_chunks_mut(TILE * c)
                .enumerate()
                .map(move |(qt, o)| (b, qt, o))
        })
        .map_init(
            || FwdScratch::new(dp),
            |scr, (b, qt, o)| {
                let nq = TILE.min(t - qt * TILE);
                let mut l = vec![F::zero(); nh * nq];
                fwd_block(args, scr, b, qt, o, &mut l);
                (b, qt, l)
            },
        )
        .collect();
    for (b, qt, l) in parts {
        let nq = TILE.min(t - qt * TILE);
        for h in 0..nh {
            lse[(b * nh + h) * t + qt * TILE..][..nq].copy_from_slice(&l[h * nq..(h + 1) * nq]);
        }
    }
    put_pack(pack);
    Ok(())
}

fn fwd_block<F: Real>(
    a: &FwdArgs<F>,
    scr: &mut FwdScratch<F>,
    b: usize,
    qt: usize,
    o: &mut [F],
    lse: &mut [F],
) {
    #[cfg(target_arch = "x86_64")]
    match a.level {
        // SAFETY: `a.level` is `isa::active()`, which never exceeds the detected level, so
        // the CPU has AVX-512 F/BW/DQ/VL, AVX2 and FMA.
        Isa::Avx512 => return unsafe { fwd_block_avx512(a, scr, b, qt, o, lse) },
        // SAFETY: as above, the AVX2 level guarantees AVX2 and FMA.
        Isa::Avx2 => return unsafe { fwd_block_avx2(a, scr, b, qt, o, lse) },
        Isa::Portable => {}
    }
    fwd_block_impl::<F, false, MR_NARROW, 8>(a, scr, b, qt, o, lse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fwd_block_avx2<F: Real>(
    a: &FwdArgs<F>,
    scr: &mut FwdScratch<F>,
    b: usize,
    qt: usize,
    o: &mut [F],
    lse: &mut [F],
) {
    fwd_block_impl::<F, true, MR_NARROW, 8>(a, scr, b, qt, o, lse);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn fwd_block_avx512<F: Real>(
    a: &FwdArgs<F>,
    scr: &mut FwdScratch<F>,
    b: usize,
    qt: usize,
    o: &mut [F],
    lse: &mut [F],
) {
    fwd_block_impl::<F, true, MR_WIDE, 16>(a, scr, b, qt, o, lse);
}

/// One q-tile of one sequence, all heads: `o` is rows `qt·TILE..` of `out[b]` (all `C`
/// columns), `lse` is `H × nq`.
/// `MR`: rows of the block-product register block; `L`: f32 lanes per vector (8 or 16).
#[inline(always)]
fn fwd_block_impl<F: Real, const FMA: bool, const MR: usize, const L: usize>(
    a: &FwdArgs<F>,
    scr: &mut FwdScratch<F>,
    b: usize,
    qt: usize,
    o: &mut [F],
    lse: &mut [F],
) {
    let AttnShape { t, h: nh, d, .. } = a.s;
    let (c, dp, nt) = (nh * d, a.dp, a.nt);
    let blk = dp * TILE;
    let q0 = qt * TILE;
    let nq = TILE.min(t - q0);
    let mrows = round_up(nq, MR);
    let mask = a.mask.as_ref();
    for h in 0..nh {
        let hm = match mask {
            Some(m) if m.heads > 1 => h,
            _ => 0,
        };
        let qoff = (b * t + q0) * c + h * d;
        load_tile_scaled(&mut scr.q, dp, a.q, qoff, c, nq, d, a.scale);
        pack_a::<F, MR>(&mut scr.qp, &scr.q, dp, mrows, dp);
        scr.o.fill(F::zero());
        scr.m = [F::neg_infinity(); TILE];
        scr.l = [F::zero(); TILE];
        let head_tiles = (b * nh + h) * nt;
        for kt in 0..=qt {
            let class = class_of(mask, b, hm, qt, kt);
            if class == TileClass::Empty {
                continue;
            }
            let nk = TILE.min(t - kt * TILE);
            let ktile = &a.kt[(head_tiles + kt) * blk..][..blk];
            let vtile = &a.v[(head_tiles + kt) * blk..][..blk];
            // S = (scale·Q)·Kᵀ
            gemm::<F, FMA, false, MR, L>(&mut scr.p, TILE, &scr.qp, ktile, TILE, mrows, TILE, dp);
            for r in 0..mrows {
                let prow = &mut scr.p[r * TILE..(r + 1) * TILE];
                if r >= nq {
                    prow.fill(F::zero());
                    continue;
                }
                let bits = allowed_bits(mask, class, b, hm, q0 + r, kt);
                if bits == 0 {
                    prow.fill(F::zero());
                    continue;
                }
                let mx = if bits == u64::MAX {
                    full_max::<F, L>(prow)
                } else {
                    masked_max::<F, L>(prow, bits)
                };
                let m_old = scr.m[r];
                let m_new = if mx > m_old { mx } else { m_old };
                let alpha = exp_f::<F, FMA>(m_old - m_new);
                let sum = exp_row::<F, FMA, L>(prow, bits, F::one(), m_new);
                scr.l[r] = scr.l[r] * alpha + sum;
                scr.m[r] = m_new;
                if alpha != F::one() {
                    scr.o[r * dp..(r + 1) * dp]
                        .iter_mut()
                        .for_each(|x| *x *= alpha);
                }
            }
            // O += P·V
            pack_a::<F, MR>(&mut scr.pp, &scr.p, TILE, mrows, nk);
            gemm::<F, FMA, true, MR, L>(&mut scr.o, dp, &scr.pp, vtile, dp, mrows, dp, nk);
        }
        for r in 0..nq {
            let orow = &mut o[r * c + h * d..][..d];
            let l = scr.l[r];
            if l > F::zero() {
                let inv = F::one() / l;
                for (x, &y) in orow.iter_mut().zip(&scr.o[r * dp..r * dp + d]) {
                    *x = y * inv;
                }
                lse[h * nq + r] = scr.m[r] + l.ln();
            } else if l.is_nan() {
                // NaN inputs propagate.
                orow.fill(F::nan());
                lse[h * nq + r] = F::nan();
            } else {
                // No allowed key.
                orow.fill(F::zero());
                lse[h * nq + r] = F::infinity();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Backward.

struct BwdArgs<'a, F> {
    dout: &'a [F],
    q: &'a [F],
    k: &'a [F],
    v: &'a [F],
    out: &'a [F],
    lse: &'a [F],
    mask: Option<MaskCtx<'a>>,
    s: AttnShape,
    scale: F,
    dp: usize,
    /// As [`FwdArgs::level`].
    level: Isa,
}

/// One head's packed operands, all zero-padded to `nt·TILE` rows and `dp` columns.
struct BwdScratch<F> {
    qs: Vec<F>,  // nt·TILE × dp: Q
    dos: Vec<F>, // nt·TILE × dp: dO
    ks: Vec<F>,  // nt·TILE × dp: K
    kt: Vec<F>,  // nt blocks of dp × TILE: Kᵀ
    vt: Vec<F>,  // nt blocks of dp × TILE: Vᵀ
    qp: Vec<F>,  // Q packed as A (panels of the whole head)
    dop: Vec<F>, // dO packed as A
    p: Vec<F>,   // TILE × TILE: P
    ds: Vec<F>,  // TILE × TILE: dP, then scale·dS
    ap: Vec<F>,  // TILE × TILE: Pᵀ, dS or dSᵀ packed as A
    di: Vec<F>,  // nt·TILE: rowsum(dO∘O)
}

impl<F: Real> BwdScratch<F> {
    fn new(dp: usize, nt: usize) -> Self {
        let n = nt * TILE * dp;
        BwdScratch {
            qs: vec![F::zero(); n],
            dos: vec![F::zero(); n],
            ks: vec![F::zero(); n],
            kt: vec![F::zero(); n],
            vt: vec![F::zero(); n],
            qp: vec![F::zero(); n],
            dop: vec![F::zero(); n],
            p: vec![F::zero(); TILE * TILE],
            ds: vec![F::zero(); TILE * TILE],
            ap: vec![F::zero(); TILE * TILE],
            di: vec![F::zero(); nt * TILE],
        }
    }
}

/// Per-`(b, h)` gradient stripes, `nt·TILE × dp` each.
struct HeadGrads<F> {
    dq: Vec<F>,
    dk: Vec<F>,
    dv: Vec<F>,
}

/// Backward of [`attention_fwd`] by recomputation from `lse`; **accumulates** into `dq`,
/// `dk`, `dv` (all `B×T×C`).
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd<F: Real>(
    dq: &mut [F],
    dk: &mut [F],
    dv: &mut [F],
    dout: &[F],
    q: &[F],
    k: &[F],
    v: &[F],
    out: &[F],
    lse: &[F],
    mask: Option<MaskView<'_>>,
    s: AttnShape,
) -> Result<()> {
    const OP: &str = "attention_bwd";
    let acts = [
        ("dq", dq.len()),
        ("dk", dk.len()),
        ("dv", dv.len()),
        ("dout", dout.len()),
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
    ];
    let (_, n_rows) = shapes::attention_lens(OP, &s, &acts, lse.len())?;
    let mask = mask_ctx(OP, mask, &s)?;
    if n_rows == 0 {
        return Ok(());
    }
    let AttnShape { t, h: nh, d, .. } = s;
    let c = s.c();
    let args = BwdArgs {
        dout,
        q,
        k,
        v,
        out,
        lse,
        mask,
        s,
        scale: F::one() / F::c(d as f64).sqrt(),
        dp: round_up(d, DPAD),
        level: super::isa::active(),
    };
    let args = &args;
    let dp = args.dp;
    let nt = t.div_ceil(TILE);
    let grads: Vec<HeadGrads<F>> = (0..s.b * nh)
        .into_par_iter()
        .map_init(
            || BwdScratch::new(dp, nt),
            |scr, g| bwd_head(args, scr, g / nh, g % nh),
        )
        .collect();
    dq.par_chunks_mut(t * c)
        .zip(dk.par_chunks_mut(t * c))
        .zip(dv.par_chunks_mut(t * c))
        .enumerate()
        .for_each(|(b, ((dqb, dkb), dvb))| {
            for h in 0..nh {
                let g = &grads[b * nh + h];
                for (dst, src) in [(&mut *dqb, &g.dq), (&mut *dkb, &g.dk), (&mut *dvb, &g.dv)] {
                    for i in 0..t {
                        let drow = &mut dst[i * c + h * d..][..d];
                        for (x, &y) in drow.iter_mut().zip(&src[i * dp..i * dp + d]) {
                            *x += y;
                        }
                    }
                }
            }
        });
    Ok(())
}

fn bwd_head<F: Real>(a: &BwdArgs<F>, scr: &mut BwdScratch<F>, b: usize, h: usize) -> HeadGrads<F> {
    #[cfg(target_arch = "x86_64")]
    match a.level {
        // SAFETY: `a.level` is `isa::active()`, which never exceeds the detected level, so
        // the CPU has AVX-512 F/BW/DQ/VL, AVX2 and FMA.
        Isa::Avx512 => return unsafe { bwd_head_avx512(a, scr, b, h) },
        // SAFETY: as above, the AVX2 level guarantees AVX2 and FMA.
        Isa::Avx2 => return unsafe { bwd_head_avx2(a, scr, b, h) },
        Isa::Portable => {}
    }
    bwd_head_impl::<F, false, MR_NARROW, 8>(a, scr, b, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn bwd_head_avx2<F: Real>(
    a: &BwdArgs<F>,
    scr: &mut BwdScratch<F>,
    b: usize,
    h: usize,
) -> HeadGrads<F> {
    bwd_head_impl::<F, true, MR_NARROW, 8>(a, scr, b, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn bwd_head_avx512<F: Real>(
    a: &BwdArgs<F>,
    scr: &mut BwdScratch<F>,
    b: usize,
    h: usize,
) -> HeadGrads<F> {
    bwd_head_impl::<F, true, MR_WIDE, 16>(a, scr, b, h)
}

/// `MR`, `L`: as for [`fwd_block_impl`].
#[inline(always)]
fn bwd_head_impl<F: Real, const FMA: bool, const MR: usize, const L: usize>(
    a: &BwdArgs<F>,
    scr: &mut BwdScratch<F>,
    b: usize,
    h: usize,
) -> HeadGrads<F> {
    let AttnShape { t, h: nh, d, .. } = a.s;
    let (c, dp) = (nh * d, a.dp);
    let nt = t.div_ceil(TILE);
    let blk = dp * TILE;
    let mask = a.mask.as_ref();
    let hm = match mask {
        Some(m) if m.heads > 1 => h,
        _ => 0,
    };
    let lse = &a.lse[(b * nh + h) * t..][..t];
    let base = b * t * c + h * d;
    // Pack this head (zero-padded to nt·TILE rows and dp columns).
    let rows = nt * TILE;
    pack_rows(&mut scr.qs, dp, a.q, base, c, t, d);
    pack_rows(&mut scr.dos, dp, a.dout, base, c, t, d);
    pack_rows(&mut scr.ks, dp, a.k, base, c, t, d);
    pack_cols::<F, L>(&mut scr.kt, dp, a.k, base, c, t, d);
    pack_cols::<F, L>(&mut scr.vt, dp, a.v, base, c, t, d);
    pack_a::<F, MR>(&mut scr.qp, &scr.qs, dp, rows, dp);
    pack_a::<F, MR>(&mut scr.dop, &scr.dos, dp, rows, dp);
    for i in 0..t {
        let o = &a.out[base + i * c..][..d];
        let g = &scr.dos[i * dp..][..d];
        let mut acc = [F::zero(); 8];
        let mut oc = o.chunks_exact(8);
        let mut gc = g.chunks_exact(8);
        for (x, y) in (&mut oc).zip(&mut gc) {
            for l in 0..8 {
                acc[l] = madd::<F, FMA>(x[l], y[l], acc[l]);
            }
        }
        let tail: F = oc
            .remainder()
            .iter()
            .zip(gc.remainder())
            .map(|(&x, &y)| x * y)
            .sum();
        scr.di[i] = acc.iter().fold(tail, |s, &x| s + x);
    }
    let mut g = HeadGrads {
        dq: vec![F::zero(); rows * dp],
        dk: vec![F::zero(); rows * dp],
        dv: vec![F::zero(); rows * dp],
    };
    for kt in 0..nt {
        let k0 = kt * TILE;
        let nk = TILE.min(t - k0);
        let kr = round_up(nk, MR);
        let ks = &scr.ks[k0 * dp..][..blk];
        let ktile = &scr.kt[kt * blk..][..blk];
        let vtile = &scr.vt[kt * blk..][..blk];
        for qt in kt..nt {
            let class = class_of(mask, b, hm, qt, kt);
            if class == TileClass::Empty {
                continue;
            }
            let q0 = qt * TILE;
            let nq = TILE.min(t - q0);
            let mrows = round_up(nq, MR);
            let qs = &scr.qs[q0 * dp..][..blk];
            let dos = &scr.dos[q0 * dp..][..blk];
            let qp = &scr.qp[q0 * dp..][..blk];
            let dop = &scr.dop[q0 * dp..][..blk];
            // S = Q·Kᵀ, then P = exp(scale·S − lse) on allowed pairs.
            gemm::<F, FMA, false, MR, L>(&mut scr.p, TILE, qp, ktile, TILE, mrows, TILE, dp);
            let mut any = false;
            for r in 0..mrows {
                let prow = &mut scr.p[r * TILE..(r + 1) * TILE];
                if r >= nq {
                    prow.fill(F::zero());
                    continue;
                }
                let i = q0 + r;
                let bits = allowed_bits(mask, class, b, hm, i, kt);
                let l = lse[i];
                // lse = +∞ marks a fully masked row: P = 0. (A NaN lse propagates.)
                if bits == 0 || l == F::infinity() {
                    prow.fill(F::zero());
                    continue;
                }
                any = true;
                exp_row::<F, FMA, L>(prow, bits, a.scale, l);
            }
            if !any {
                continue;
            }
            let (dqs, dks, dvs) = (
                &mut g.dq[q0 * dp..][..blk],
                &mut g.dk[k0 * dp..][..blk],
                &mut g.dv[k0 * dp..][..blk],
            );
            // dV += Pᵀ·dO
            pack_at::<F, MR>(&mut scr.ap, &scr.p, TILE, kr, mrows);
            gemm::<F, FMA, true, MR, L>(dvs, dp, &scr.ap, dos, dp, kr, dp, mrows);
            // dP = dO·Vᵀ
            gemm::<F, FMA, false, MR, L>(&mut scr.ds, TILE, dop, vtile, TILE, mrows, TILE, dp);
            // dS = scale·P∘(dP − Di)
            for r in 0..mrows {
                let di = scr.di[q0 + r];
                let prow = &scr.p[r * TILE..(r + 1) * TILE];
                let dsrow = &mut scr.ds[r * TILE..(r + 1) * TILE];
                for (x, &p) in dsrow.iter_mut().zip(prow) {
                    *x = p * (*x - di) * a.scale;
                }
            }
            // dQ += dS·K ; dK += dSᵀ·Q
            pack_a::<F, MR>(&mut scr.ap, &scr.ds, TILE, mrows, nk);
            gemm::<F, FMA, true, MR, L>(dqs, dp, &scr.ap, ks, dp, mrows, dp, nk);
            pack_at::<F, MR>(&mut scr.ap, &scr.ds, TILE, kr, mrows);
            gemm::<F, FMA, true, MR, L>(dks, dp, &scr.ap, qs, dp, kr, dp, mrows);
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst64 = 0f64;
        let mut worst32 = 0f64;
        let mut x = -750.0f64;
        while x <= 5.0 {
            let want = x.exp();
            for fma in [false, true] {
                let got = if fma {
                    exp_f::<f64, true>(x)
                } else {
                    exp_f::<f64, false>(x)
                };
                if x < -708.0 {
                    assert_eq!(got, 0.0);
                } else {
                    worst64 = worst64.max(((got - want) / want).abs());
                }
                let got32 = exp_f::<f32, false>(x as f32) as f64;
                let want32 = (x as f32 as f64).exp();
                if x > -80.0 {
                    worst32 = worst32.max(((got32 - want32) / want32).abs());
                }
            }
            x += 0.0137;
        }
        assert!(worst64 < 1e-15, "f64 exp rel err {worst64}");
        assert!(worst32 < 2e-7, "f32 exp rel err {worst32}");
        assert_eq!(exp_f::<f64, false>(0.0), 1.0);
        assert_eq!(exp_f::<f32, false>(f32::NEG_INFINITY), 0.0);
        assert!(exp_f::<f64, false>(f64::NAN).is_nan());
    }
}
