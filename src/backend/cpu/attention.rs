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
//! The block products use a small register-blocked kernel on local, contiguous, zero-padded
//! tiles (head dim padded to a multiple of 16). On x86-64 CPUs with AVX2 and FMA the whole
//! tile routine is compiled a second time with those features enabled and picked at run
//! time; elsewhere the portable build runs. `exp` is a branch-free polynomial (computed in
//! f64, accurate to a few f64 ulps) so the softmax loops vectorise.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::AttnShape;
use crate::error::check_len;
use crate::mask::{BitMask, TileClass, TileMap};
use crate::{Error, Result};

/// Block size (queries per q-tile = keys per k-tile). Must be 64: a k-tile's mask bits for one
/// row are then exactly one aligned pair of u32 words.
pub const TILE: usize = 64;
const _: () = assert!(TILE == 64);

/// Rows per register block of the block-product kernel.
const MR: usize = 4;
/// Local tiles pad the head dimension to a multiple of this (a multiple of every `NR`).
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

fn shape_str(s: &AttnShape) -> String {
    format!("B={} T={} H={} D={}", s.b, s.t, s.h, s.d)
}

/// `(B·T·C, B·H·T)`, or an error if the shape is unusable.
fn sizes(op: &'static str, s: &AttnShape) -> Result<(usize, usize)> {
    let act = s
        .b
        .checked_mul(s.t)
        .and_then(|x| x.checked_mul(s.h))
        .and_then(|x| x.checked_mul(s.d));
    let rows = s.b.checked_mul(s.h).and_then(|x| x.checked_mul(s.t));
    match (act, rows) {
        (Some(a), Some(r)) if s.d > 0 || r == 0 => Ok((a, r)),
        (Some(_), Some(_)) => Err(Error::Config(format!(
            "{op}: head dim D must be positive ({})",
            shape_str(s)
        ))),
        _ => Err(Error::Config(format!(
            "{op}: shape overflows usize ({})",
            shape_str(s)
        ))),
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
    let expected = s
        .b
        .checked_mul(heads)
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

/// Class of block `(qt, kt)` (`kt ≤ qt`) and the mask head used by attention head `h`.
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

/// `exp(x)` for the softmax: branch-free (vectorisable), evaluated in f64 (Cody–Waite range
/// reduction + Taylor polynomial; degree 13 for f64 results, ~2 ulp, degree 7 for f32
/// results, ~1e-8 relative). Returns exactly 0 for `x < −708` (including `−∞`), 1 for
/// `x = 0`, and NaN for NaN. Meant for `x ≲ 0` (valid up to 709).
#[inline(always)]
fn exp_f<F: Real, const FMA: bool>(x: F) -> F {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5·2^52: adding it rounds to an integer
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238_164_9e-1; // 21 trailing zero bits: n·LN2_HI exact
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
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
    let x = x.f64();
    let xc = if x < -708.0 {
        -708.0
    } else if x > 709.0 {
        709.0
    } else {
        x
    };
    let t = madd64::<FMA>(xc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = madd64::<FMA>(-n, LN2_HI, xc);
    let r = madd64::<FMA>(-n, LN2_LO, r);
    let deg = if std::mem::size_of::<F>() <= 4 { 7 } else { 13 };
    let mut p = INV_FACT[deg];
    for k in (0..deg).rev() {
        p = madd64::<FMA>(p, r, INV_FACT[k]);
    }
    // 2^n from the integer sitting in t's low mantissa bits; n ∈ [−1022, 1023] here.
    let two_n = f64::from_bits(
        t.to_bits()
            .wrapping_sub(MAGIC.to_bits())
            .wrapping_add(1023)
            << 52,
    );
    let y = p * two_n;
    F::c(if x < -708.0 { 0.0 } else { y })
}

/// Maximum of `row[j]` over the set bits `j` of `bits` (`−∞` if none); NaNs are ignored here
/// (they still reach the output through `exp`).
#[inline(always)]
fn masked_max<F: Real>(row: &[F], bits: u64) -> F {
    let mut lanes = [F::neg_infinity(); 8];
    for (ci, chunk) in row.chunks_exact(8).enumerate() {
        for (l, (&x, lane)) in chunk.iter().zip(lanes.iter_mut()).enumerate() {
            let v = if bits >> (ci * 8 + l) & 1 != 0 {
                x
            } else {
                F::neg_infinity()
            };
            if v > *lane {
                *lane = v;
            }
        }
    }
    lanes.iter().fold(F::neg_infinity(), |a, &b| if b > a { b } else { a })
}

/// Maximum of a row whose every entry is allowed.
#[inline(always)]
fn full_max<F: Real>(row: &[F]) -> F {
    let mut lanes = [F::neg_infinity(); 8];
    for chunk in row.chunks_exact(8) {
        for (&x, lane) in chunk.iter().zip(lanes.iter_mut()) {
            if x > *lane {
                *lane = x;
            }
        }
    }
    lanes.iter().fold(F::neg_infinity(), |a, &b| if b > a { b } else { a })
}

/// `row[j] ← bits_j ? exp(row[j]·mul − sub) : 0`; returns the row sum.
#[inline(always)]
fn exp_row<F: Real, const FMA: bool>(row: &mut [F], bits: u64, mul: F, sub: F) -> F {
    let mut acc = [F::zero(); 8];
    if bits == u64::MAX {
        for chunk in row.chunks_exact_mut(8) {
            for (x, a) in chunk.iter_mut().zip(acc.iter_mut()) {
                let p = exp_f::<F, FMA>(madd::<F, FMA>(*x, mul, -sub));
                *x = p;
                *a += p;
            }
        }
    } else {
        for (ci, chunk) in row.chunks_exact_mut(8).enumerate() {
            for (l, (x, a)) in chunk.iter_mut().zip(acc.iter_mut()).enumerate() {
                let e = exp_f::<F, FMA>(madd::<F, FMA>(*x, mul, -sub));
                let p = if bits >> (ci * 8 + l) & 1 != 0 {
                    e
                } else {
                    F::zero()
                };
                *x = p;
                *a += p;
            }
        }
    }
    acc.iter().fold(F::zero(), |s, &x| s + x)
}

/// `C[m×n] (+)= A[m×k]·B[k×n]`: A's element `(r, c)` is `a[r·rs + c·cs]`; B and C are
/// row-major with leading dimensions `ldb`, `ldc`. Needs `m % MR == 0`, `n % NR == 0`.
/// `ACC = false` overwrites C.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_nr<F: Real, const FMA: bool, const ACC: bool, const NR: usize>(
    c: &mut [F],
    ldc: usize,
    a: &[F],
    rs: usize,
    cs: usize,
    b: &[F],
    ldb: usize,
    m: usize,
    n: usize,
    k: usize,
) {
    debug_assert!(m % MR == 0 && n % NR == 0);
    for r0 in (0..m).step_by(MR) {
        for c0 in (0..n).step_by(NR) {
            let mut acc = [[F::zero(); NR]; MR];
            for kk in 0..k {
                let brow: &[F; NR] = b[kk * ldb + c0..kk * ldb + c0 + NR]
                    .try_into()
                    .expect("tile row");
                let av: [F; MR] = std::array::from_fn(|ri| a[(r0 + ri) * rs + kk * cs]);
                for (accr, &ar) in acc.iter_mut().zip(av.iter()) {
                    for (x, &bv) in accr.iter_mut().zip(brow.iter()) {
                        *x = madd::<F, FMA>(ar, bv, *x);
                    }
                }
            }
            for (ri, accr) in acc.iter().enumerate() {
                let crow = &mut c[(r0 + ri) * ldc + c0..][..NR];
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

/// [`gemm_nr`] with the register-block width picked for `F` (two 256-bit vectors per row).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm<F: Real, const FMA: bool, const ACC: bool>(
    c: &mut [F],
    ldc: usize,
    a: &[F],
    rs: usize,
    cs: usize,
    b: &[F],
    ldb: usize,
    m: usize,
    n: usize,
    k: usize,
) {
    if std::mem::size_of::<F>() <= 4 {
        gemm_nr::<F, FMA, ACC, 16>(c, ldc, a, rs, cs, b, ldb, m, n, k);
    } else {
        gemm_nr::<F, FMA, ACC, 8>(c, ldc, a, rs, cs, b, ldb, m, n, k);
    }
}

/// Copy `n` rows of `d` values (source row `r` at `src[off + r·stride ..]`) into `dst`
/// (row-major, leading dim `dp`, columns `d..dp` left untouched), multiplied by `mul`;
/// rows `n..TILE` of `dst` are zeroed.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn load_rows<F: Real>(
    dst: &mut [F],
    dp: usize,
    src: &[F],
    off: usize,
    stride: usize,
    n: usize,
    d: usize,
    mul: Option<F>,
) {
    for r in 0..n {
        let s = &src[off + r * stride..][..d];
        let t = &mut dst[r * dp..][..d];
        match mul {
            Some(m) => t.iter_mut().zip(s).for_each(|(x, &y)| *x = y * m),
            None => t.copy_from_slice(s),
        }
    }
    dst[n * dp..TILE * dp].fill(F::zero());
}

/// Transposed copy: `dst[c·TILE + r] = src[off + r·stride + c]` for `r < n`, `c < d`;
/// columns `n..TILE` of the first `d` rows are zeroed (rows `d..dp` left untouched).
#[inline(always)]
fn load_cols<F: Real>(dst: &mut [F], src: &[F], off: usize, stride: usize, n: usize, d: usize) {
    for r in 0..n {
        let s = &src[off + r * stride..][..d];
        for (cc, &y) in s.iter().enumerate() {
            dst[cc * TILE + r] = y;
        }
    }
    if n < TILE {
        for cc in 0..d {
            dst[cc * TILE + n..(cc + 1) * TILE].fill(F::zero());
        }
    }
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

// ---------------------------------------------------------------------------------------
// Forward.

struct FwdArgs<'a, F> {
    q: &'a [F],
    k: &'a [F],
    v: &'a [F],
    mask: Option<MaskCtx<'a>>,
    s: AttnShape,
    scale: F,
    dp: usize,
}

struct FwdScratch<F> {
    q: Vec<F>,  // TILE × dp, pre-scaled
    kt: Vec<F>, // dp × TILE (Kᵀ)
    v: Vec<F>,  // TILE × dp
    p: Vec<F>,  // TILE × TILE: scores, then probabilities
    o: Vec<F>,  // TILE × dp: unnormalised output
    m: [F; TILE],
    l: [F; TILE],
}

impl<F: Real> FwdScratch<F> {
    fn new(dp: usize) -> Self {
        FwdScratch {
            q: vec![F::zero(); TILE * dp],
            kt: vec![F::zero(); dp * TILE],
            v: vec![F::zero(); TILE * dp],
            p: vec![F::zero(); TILE * TILE],
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
    let (n_act, n_rows) = sizes(OP, &s)?;
    let shp = || format!("(B, T, H·D) with {}", shape_str(&s));
    check_len(OP, "q", q.len(), n_act, shp)?;
    check_len(OP, "k", k.len(), n_act, shp)?;
    check_len(OP, "v", v.len(), n_act, shp)?;
    check_len(OP, "out", out.len(), n_act, shp)?;
    check_len(OP, "lse", lse.len(), n_rows, || {
        format!("(B, H, T) with {}", shape_str(&s))
    })?;
    let mask = mask_ctx(OP, mask, &s)?;
    if n_rows == 0 {
        return Ok(());
    }
    let (t, c) = (s.t, s.c());
    let args = FwdArgs {
        q,
        k,
        v,
        mask,
        s,
        scale: F::one() / F::c(s.d as f64).sqrt(),
        dp: round_up(s.d, DPAD),
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
            || FwdScratch::new(args.dp),
            |scr, (b, qt, o)| {
                let nq = TILE.min(t - qt * TILE);
                let mut l = vec![F::zero(); s.h * nq];
                fwd_block(args, scr, b, qt, o, &mut l);
                (b, qt, l)
            },
        )
        .collect();
    for (b, qt, l) in parts {
        let nq = TILE.min(t - qt * TILE);
        for h in 0..s.h {
            lse[(b * s.h + h) * t + qt * TILE..][..nq].copy_from_slice(&l[h * nq..(h + 1) * nq]);
        }
    }
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
    if has_avx2_fma() {
        // SAFETY: `fwd_block_avx2` only requires the CPU to support AVX2 and FMA, which was
        // just checked at run time.
        unsafe { fwd_block_avx2(a, scr, b, qt, o, lse) };
        return;
    }
    fwd_block_impl::<F, false>(a, scr, b, qt, o, lse);
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
    fwd_block_impl::<F, true>(a, scr, b, qt, o, lse);
}

/// One q-tile of one sequence, all heads: `o` is rows `qt·TILE..` of `out[b]` (all `C`
/// columns), `lse` is `H × nq`.
#[inline(always)]
fn fwd_block_impl<F: Real, const FMA: bool>(
    a: &FwdArgs<F>,
    scr: &mut FwdScratch<F>,
    b: usize,
    qt: usize,
    o: &mut [F],
    lse: &mut [F],
) {
    let AttnShape { t, h: nh, d, .. } = a.s;
    let (c, dp) = (nh * d, a.dp);
    let q0 = qt * TILE;
    let nq = TILE.min(t - q0);
    let mrows = round_up(nq, MR);
    let mask = a.mask.as_ref();
    for h in 0..nh {
        let hm = match mask {
            Some(m) if m.heads > 1 => h,
            _ => 0,
        };
        load_rows(
            &mut scr.q,
            dp,
            a.q,
            (b * t + q0) * c + h * d,
            c,
            nq,
            d,
            Some(a.scale),
        );
        scr.o.fill(F::zero());
        scr.m = [F::neg_infinity(); TILE];
        scr.l = [F::zero(); TILE];
        for kt in 0..=qt {
            let class = class_of(mask, b, hm, qt, kt);
            if class == TileClass::Empty {
                continue;
            }
            let k0 = kt * TILE;
            let nk = TILE.min(t - k0);
            let off = (b * t + k0) * c + h * d;
            load_cols(&mut scr.kt, a.k, off, c, nk, d);
            load_rows(&mut scr.v, dp, a.v, off, c, nk, d, None);
            // S = (scale·Q)·Kᵀ
            gemm::<F, FMA, false>(&mut scr.p, TILE, &scr.q, dp, 1, &scr.kt, TILE, mrows, TILE, dp);
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
                    full_max(prow)
                } else {
                    masked_max(prow, bits)
                };
                let m_old = scr.m[r];
                let m_new = if mx > m_old { mx } else { m_old };
                let alpha = exp_f::<F, FMA>(m_old - m_new);
                let sum = exp_row::<F, FMA>(prow, bits, F::one(), m_new);
                scr.l[r] = scr.l[r] * alpha + sum;
                scr.m[r] = m_new;
                if alpha != F::one() {
                    scr.o[r * dp..(r + 1) * dp]
                        .iter_mut()
                        .for_each(|x| *x *= alpha);
                }
            }
            // O += P·V
            gemm::<F, FMA, true>(&mut scr.o, dp, &scr.p, TILE, 1, &scr.v, dp, mrows, dp, nk);
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
            } else {
                // No allowed key (or NaN inputs, which propagate through l).
                if l.is_nan() {
                    orow.fill(F::nan());
                    lse[h * nq + r] = F::nan();
                } else {
                    orow.fill(F::zero());
                    lse[h * nq + r] = F::infinity();
                }
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
}

struct BwdScratch<F> {
    ks: Vec<F>,  // TILE × dp (K)
    kt: Vec<F>,  // dp × TILE (Kᵀ)
    vt: Vec<F>,  // dp × TILE (Vᵀ)
    qs: Vec<F>,  // TILE × dp (Q)
    dos: Vec<F>, // TILE × dp (dO)
    p: Vec<F>,   // TILE × TILE: P
    ds: Vec<F>,  // TILE × TILE: dP, then scale·dS
    di: Vec<F>,  // T: rowsum(dO∘O)
}

impl<F: Real> BwdScratch<F> {
    fn new(dp: usize, t: usize) -> Self {
        BwdScratch {
            ks: vec![F::zero(); TILE * dp],
            kt: vec![F::zero(); dp * TILE],
            vt: vec![F::zero(); dp * TILE],
            qs: vec![F::zero(); TILE * dp],
            dos: vec![F::zero(); TILE * dp],
            p: vec![F::zero(); TILE * TILE],
            ds: vec![F::zero(); TILE * TILE],
            di: vec![F::zero(); t],
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
    let (n_act, n_rows) = sizes(OP, &s)?;
    let shp = || format!("(B, T, H·D) with {}", shape_str(&s));
    check_len(OP, "dq", dq.len(), n_act, shp)?;
    check_len(OP, "dk", dk.len(), n_act, shp)?;
    check_len(OP, "dv", dv.len(), n_act, shp)?;
    check_len(OP, "dout", dout.len(), n_act, shp)?;
    check_len(OP, "q", q.len(), n_act, shp)?;
    check_len(OP, "k", k.len(), n_act, shp)?;
    check_len(OP, "v", v.len(), n_act, shp)?;
    check_len(OP, "out", out.len(), n_act, shp)?;
    check_len(OP, "lse", lse.len(), n_rows, || {
        format!("(B, H, T) with {}", shape_str(&s))
    })?;
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
    };
    let args = &args;
    let dp = args.dp;
    let grads: Vec<HeadGrads<F>> = (0..s.b * nh)
        .into_par_iter()
        .map_init(
            || BwdScratch::new(dp, t),
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
    if has_avx2_fma() {
        // SAFETY: `bwd_head_avx2` only requires the CPU to support AVX2 and FMA, which was
        // just checked at run time.
        return unsafe { bwd_head_avx2(a, scr, b, h) };
    }
    bwd_head_impl::<F, false>(a, scr, b, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn bwd_head_avx2<F: Real>(
    a: &BwdArgs<F>,
    scr: &mut BwdScratch<F>,
    b: usize,
    h: usize,
) -> HeadGrads<F> {
    bwd_head_impl::<F, true>(a, scr, b, h)
}

#[inline(always)]
fn bwd_head_impl<F: Real, const FMA: bool>(
    a: &BwdArgs<F>,
    scr: &mut BwdScratch<F>,
    b: usize,
    h: usize,
) -> HeadGrads<F> {
    let AttnShape { t, h: nh, d, .. } = a.s;
    let (c, dp) = (nh * d, a.dp);
    let nt = t.div_ceil(TILE);
    let mask = a.mask.as_ref();
    let hm = match mask {
        Some(m) if m.heads > 1 => h,
        _ => 0,
    };
    let lse = &a.lse[(b * nh + h) * t..][..t];
    let base = b * t * c + h * d;
    for i in 0..t {
        let o = &a.out[base + i * c..][..d];
        let g = &a.dout[base + i * c..][..d];
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
        dq: vec![F::zero(); nt * TILE * dp],
        dk: vec![F::zero(); nt * TILE * dp],
        dv: vec![F::zero(); nt * TILE * dp],
    };
    for kt in 0..nt {
        let k0 = kt * TILE;
        let nk = TILE.min(t - k0);
        let kr = round_up(nk, MR);
        let off = base + k0 * c;
        load_rows(&mut scr.ks, dp, a.k, off, c, nk, d, None);
        load_cols(&mut scr.kt, a.k, off, c, nk, d);
        load_cols(&mut scr.vt, a.v, off, c, nk, d);
        for qt in kt..nt {
            let class = class_of(mask, b, hm, qt, kt);
            if class == TileClass::Empty {
                continue;
            }
            let q0 = qt * TILE;
            let nq = TILE.min(t - q0);
            let mrows = round_up(nq, MR);
            let qoff = base + q0 * c;
            load_rows(&mut scr.qs, dp, a.q, qoff, c, nq, d, None);
            load_rows(&mut scr.dos, dp, a.dout, qoff, c, nq, d, None);
            // S = Q·Kᵀ, then P = exp(scale·S − lse) on allowed pairs.
            gemm::<F, FMA, false>(&mut scr.p, TILE, &scr.qs, dp, 1, &scr.kt, TILE, mrows, TILE, dp);
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
                // lse = +∞ marks a fully masked row: P = 0. (NaN lse propagates.)
                if bits == 0 || l == F::infinity() {
                    prow.fill(F::zero());
                    continue;
                }
                any = true;
                exp_row::<F, FMA>(prow, bits, a.scale, l);
            }
            if !any {
                continue;
            }
            let (dqs, dks, dvs) = (
                &mut g.dq[q0 * dp..(q0 + TILE) * dp],
                &mut g.dk[k0 * dp..(k0 + TILE) * dp],
                &mut g.dv[k0 * dp..(k0 + TILE) * dp],
            );
            // dV += Pᵀ·dO
            gemm::<F, FMA, true>(dvs, dp, &scr.p, 1, TILE, &scr.dos, dp, kr, dp, mrows);
            // dP = dO·Vᵀ
            gemm::<F, FMA, false>(&mut scr.ds, TILE, &scr.dos, dp, 1, &scr.vt, TILE, mrows, TILE, dp);
            // dS = scale·P∘(dP − Di)
            for r in 0..mrows {
                let di = if r < nq { scr.di[q0 + r] } else { F::zero() };
                let prow = &scr.p[r * TILE..(r + 1) * TILE];
                let dsrow = &mut scr.ds[r * TILE..(r + 1) * TILE];
                for (x, &p) in dsrow.iter_mut().zip(prow) {
                    *x = p * (*x - di) * a.scale;
                }
            }
            // dQ += dS·K ; dK += dSᵀ·Q
            gemm::<F, FMA, true>(dqs, dp, &scr.ds, TILE, 1, &scr.ks, dp, mrows, dp, nk);
            gemm::<F, FMA, true>(dks, dp, &scr.ds, 1, TILE, &scr.qs, dp, kr, dp, mrows);
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
