//! The CPU twin of the 2:4 GEMM: `Y = X·Wᵀ (+ bias)` with W in the canonical compressed form
//! ([`Sparse24`]), f32 accumulation from f32, bf16 or f16 operands.
//!
//! Work and bytes are both halved against the dense GEMM: per row of W only the K/2 kept
//! values (and K/16 metadata words) are read, and each drives one multiply-add per row of X.
//! Three regimes, by the number of rows of X (M):
//! - M ≤ [`GEMV_MAX_M`] (decode-like): each row of W is dotted with every row of X while it
//!   sits in L1. With f32 weights and AVX2 the dot takes 16 dense columns (one metadata word)
//!   per step: two 8-wide loads of X, two in-register permutes that pick the kept columns (the
//!   indices come from a 256-entry table per metadata byte), one FMA with 8 contiguous kept
//!   values — no gathers. Bound by reading W, where the halved bytes pay off.
//! - up to [`DENSE_FROM_M`]: rows of X in blocks of [`MB`], transposed to f32 so that a kept
//!   weight's update of the whole block is one contiguous, vectorised AXPY; K in blocks of
//!   [`KB`] so the transposed block (KB × MB f32, 256 KiB) stays in L2 at any K.
//!   Each kept value's metadata is decoded through a table (the four kept columns of a
//!   metadata byte), not nibble by nibble.
//! - from [`DENSE_FROM_M`] the GEMM is compute-bound and a gather-driven AXPY cannot match a
//!   packed dense micro-kernel, so W is decompressed in blocks of [`DENSE_BLOCK_ROWS`] rows
//!   (large, so the dense GEMM packs X few times) and each block goes through the dense GEMM
//!   (`gemm` crate): the multiply-adds are then not halved, but the speed stays near that of
//!   the dense GEMM.
//!
//! Rows of W are spread over threads in every regime. DESIGN.md §7 asks ≥ 1.5× the dense GEMM
//! where it is bandwidth-bound (few rows) and ≥ 0.8× where compute-bound.

use super::format24::Sparse24;
use super::topk::TopkWeight;
use crate::backend::cpu::fastmath::dispatch;
use crate::{Error, Result};
use rayon::prelude::*;

/// Rows of X per block (the AXPY length): two AVX registers of f32.
pub const MB: usize = 16;
/// Up to this many rows of X, the per-row dot products (the GEMV path) are used.
pub const GEMV_MAX_M: usize = 8;
/// Columns of K per block on the AXPY path (a multiple of 16).
pub const KB: usize = 4096;
/// From this many rows of X on, blocks of W are decompressed and multiplied densely.
pub const DENSE_FROM_M: usize = 128;
/// Rows of W decompressed at a time on the dense path: bounds the scratch (1024·K f32, 16 MiB
/// at K = 4096) while keeping the dense GEMM calls large.
pub const DENSE_BLOCK_ROWS: usize = 1024;

/// `y (m × n) = x (m × k) · Wᵀ + bias`, overwriting `y`.
pub fn gemm24<W: TopkWeight + Default>(
    y: &mut [f32],
    x: &[W],
    w: &Sparse24<W>,
    bias: Option<&[f32]>,
    m: usize,
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    let shape = || format!("gemm24: x {m} x {k}, W {n} x {k} (2:4), y {m} x {n}");
    if x.len() != m * k {
        return Err(Error::Config(format!(
            "{}: x has {} elements",
            shape(),
            x.len()
        )));
    }
    if y.len() != m * n {
        return Err(Error::Config(format!(
            "{}: y has {} elements",
            shape(),
            y.len()
        )));
    }
    if let Some(b) = bias {
        if b.len() != n {
            return Err(Error::Config(format!(
                "{}: bias has {} elements",
                shape(),
                b.len()
            )));
        }
    }
    if m >= DENSE_FROM_M {
        dense_blocks(y, x, w, bias, m);
    } else if m <= GEMV_MAX_M {
        gemv_rows(y, x, w, bias, m);
    } else {
        axpy_blocks(y, x, w, bias, m);
    }
    Ok(())
}

/// Rows of W per parallel task on the GEMV and AXPY paths.
const ROWS_PER_TASK: usize = 16;

/// The decode-like path: `y[i][r] = dot(W row r, x row i)` for every row r of W (in parallel)
/// and every row i of X (few). Shapes were validated by the caller.
fn gemv_rows<W: TopkWeight + Default>(
    y: &mut [f32],
    x: &[W],
    w: &Sparse24<W>,
    bias: Option<&[f32]>,
    m: usize,
) {
    let (n, k) = (w.n(), w.k());
    let xf: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let (vals, meta) = (w.values(), w.meta());
    let vals_f32 = W::as_f32_slice(vals);
    let mut yt = vec![0.0f32; n * m];
    yt.par_chunks_mut(m * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (ri, out) in chunk.chunks_exact_mut(m).enumerate() {
                let r = task * ROWS_PER_TASK + ri;
                let rm = &meta[r * k / 16..(r + 1) * k / 16];
                for (i, o) in out.iter_mut().enumerate() {
                    let xr = &xf[i * k..(i + 1) * k];
                    *o = match vals_f32 {
                        Some(v) => dot24_f32(&v[r * k / 2..(r + 1) * k / 2], rm, xr),
                        None => dot24_scalar(&vals[r * k / 2..(r + 1) * k / 2], rm, xr),
                    };
                }
            }
        });
    for i in 0..m {
        for (r, out) in y[i * n..(i + 1) * n].iter_mut().enumerate() {
            *out = yt[r * m + i] + bias.map_or(0.0, |b| b[r]);
        }
    }
}

/// `Σ_groups v0·x[4g + p0] + v1·x[4g + p1]` over one row of W (`vals`: K/2, `meta`: K/16).
fn dot24_scalar<W: TopkWeight>(vals: &[W], meta: &[u16], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (u, &word) in meta.iter().enumerate() {
        for q in 0..4 {
            let gi = 4 * u + q;
            let nib = word >> (4 * q);
            let (p0, p1) = ((nib & 3) as usize, ((nib >> 2) & 3) as usize);
            acc +=
                vals[2 * gi].to_f32() * x[4 * gi + p0] + vals[2 * gi + 1].to_f32() * x[4 * gi + p1];
        }
    }
    acc
}

/// [`dot24_scalar`] for f32 values, with AVX2+FMA when the CPU has them.
fn dot24_f32(vals: &[f32], meta: &[u16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::backend::cpu::isa::{active, Isa};
        if active() >= Isa::Avx2 {
            assert!(vals.len() == 8 * meta.len() && x.len() == 16 * meta.len());
            // SAFETY: the active level never exceeds what the CPU has, so it has AVX2 and
            // FMA; the lengths the function's loads rely on were asserted.
            return unsafe { dot24_avx2(vals, meta, x) };
        }
    }
    dot24_scalar(vals, meta, x)
}

/// # Safety
/// The CPU must support AVX2 and FMA; `vals.len() == 8·meta.len()`, `x.len() == 16·meta.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot24_avx2(vals: &[f32], meta: &[u16], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 2];
    for (u, &word) in meta.iter().enumerate() {
        // The permute indices are COLS's columns, widened to i32.
        let cols =
            |b: u16| _mm_cvtepu8_epi32(_mm_cvtsi32_si128(i32::from_le_bytes(COLS[b as usize])));
        let idx = _mm256_set_m128i(cols(word >> 8), cols(word & 0xFF));
        // SAFETY: u < meta.len(), so 16u + 16 ≤ x.len() and 8u + 8 ≤ vals.len() (the caller's
        // lengths); unaligned loads.
        unsafe {
            let xa = _mm256_loadu_ps(x.as_ptr().add(16 * u));
            let xb = _mm256_loadu_ps(x.as_ptr().add(16 * u + 8));
            // Lanes 0-3 pick from columns 0-7 (groups 0, 1), lanes 4-7 from 8-15 (groups 2, 3).
            let picked = _mm256_blend_ps(
                _mm256_permutevar8x32_ps(xa, idx),
                _mm256_permutevar8x32_ps(xb, idx),
                0xF0,
            );
            let v = _mm256_loadu_ps(vals.as_ptr().add(8 * u));
            acc[u & 1] = _mm256_fmadd_ps(v, picked, acc[u & 1]);
        }
    }
    let s = _mm256_add_ps(acc[0], acc[1]);
    let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    _mm_cvtss_f32(q)
}

/// Per metadata byte (two groups of 4 columns): the columns (within the byte's 8) of its
/// four kept values, in value order — `[p0, p1, 4 + q0, 4 + q1]`. The AXPY path indexes X
/// with them; the AVX2 GEMV uses them as permute indices.
static COLS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut b = 0;
    while b < 256 {
        let (lo, hi) = (b & 0xF, b >> 4);
        t[b] = [
            (lo & 3) as u8,
            (lo >> 2) as u8,
            4 + (hi & 3) as u8,
            4 + (hi >> 2) as u8,
        ];
        b += 1;
    }
    t
};

/// The middle path: blocks of [`MB`] rows of X, transposed, and blocks of [`KB`] columns.
fn axpy_blocks<W: TopkWeight + Default>(
    y: &mut [f32],
    x: &[W],
    w: &Sparse24<W>,
    bias: Option<&[f32]>,
    m: usize,
) {
    let (n, k) = (w.n(), w.k());
    let (vals, meta) = (w.values(), w.meta());
    let mut xt = vec![0.0f32; KB.min(k) * MB];
    let mut yt = vec![0.0f32; n * MB];
    for m0 in (0..m).step_by(MB) {
        let mb = MB.min(m - m0);
        yt.fill(0.0);
        for k0 in (0..k).step_by(KB) {
            let kb = KB.min(k - k0);
            // Transpose the block to kb × MB f32 (rows past m stay zero).
            xt.fill(0.0);
            for i in 0..mb {
                let row = &x[(m0 + i) * k + k0..(m0 + i) * k + k0 + kb];
                for (kk, &v) in row.iter().enumerate() {
                    xt[kk * MB + i] = v.to_f32();
                }
            }
            let xt = &xt;
            yt.par_chunks_mut(MB * ROWS_PER_TASK)
                .enumerate()
                .for_each(|(task, ychunk)| {
                    dispatch(
                        #[inline(always)]
                        || {
                            for (ri, acc) in ychunk.chunks_exact_mut(MB).enumerate() {
                                let r = task * ROWS_PER_TASK + ri;
                                let mut a = [0.0f32; MB];
                                a.copy_from_slice(acc);
                                let rv = &vals[(r * k + k0) / 2..(r * k + k0 + kb) / 2];
                                let rm = &meta[(r * k + k0) / 16..(r * k + k0 + kb) / 16];
                                for (u, &word) in rm.iter().enumerate() {
                                    // The 8 kept columns of this word's 16, from two table
                                    // lookups instead of 8 nibble decodes.
                                    let lo = COLS[(word & 0xFF) as usize];
                                    let hi = COLS[(word >> 8) as usize];
                                    let cols = [lo, hi];
                                    let v = &rv[8 * u..8 * u + 8];
                                    for (h, c) in cols.iter().enumerate() {
                                        for j in 0..4 {
                                            let col = 16 * u + 8 * h + c[j] as usize;
                                            let xc = &xt[col * MB..(col + 1) * MB];
                                            let vj = v[4 * h + j].to_f32();
                                            for i in 0..MB {
                                                a[i] += vj * xc[i];
                                            }
                                        }
                                    }
                                }
                                acc.copy_from_slice(&a);
                            }
                        },
                    )
                });
        }
        for i in 0..mb {
            let yrow = &mut y[(m0 + i) * n..(m0 + i + 1) * n];
            for (r, out) in yrow.iter_mut().enumerate() {
                *out = yt[r * MB + i] + bias.map_or(0.0, |b| b[r]);
            }
        }
    }
}

/// The compute-bound path: decompress `DENSE_BLOCK_ROWS` rows of W at a time (to f32) and
/// multiply densely into the matching columns of `y`. Shapes were validated by the caller.
fn dense_blocks<W: TopkWeight + Default>(
    y: &mut [f32],
    x: &[W],
    w: &Sparse24<W>,
    bias: Option<&[f32]>,
    m: usize,
) {
    let (n, k) = (w.n(), w.k());
    let xf: Vec<f32> = x.par_iter().map(|v| v.to_f32()).collect();
    let mut block = vec![0.0f32; DENSE_BLOCK_ROWS * k];
    for r0 in (0..n).step_by(DENSE_BLOCK_ROWS) {
        let rows = DENSE_BLOCK_ROWS.min(n - r0);
        block[..rows * k]
            .par_chunks_mut(k)
            .enumerate()
            .for_each(|(ri, row)| {
                row.fill(0.0);
                let r = r0 + ri;
                for gi in 0..k / 4 {
                    let (a, b) = w.positions(r, gi);
                    row[4 * gi + a] = w.values()[r * k / 2 + 2 * gi].to_f32();
                    row[4 * gi + b] = w.values()[r * k / 2 + 2 * gi + 1].to_f32();
                }
            });
        // y[:, r0..r0+rows] = x · blockᵀ: dst starts at column r0 with row stride n.
        // SAFETY: dst covers rows 0..m, columns r0..r0+rows of y (m × n, row stride n), all in
        // bounds since r0 + rows ≤ n and y.len() == m·n (checked by the caller); lhs is xf
        // (m × k, row stride k) and rhs is blockᵀ (k × rows: element (p, j) at j·k + p), both
        // in bounds; dst does not alias either (distinct allocations).
        unsafe {
            gemm::gemm(
                m,
                rows,
                k,
                y.as_mut_ptr().add(r0),
                1,
                n as isize,
                false,
                xf.as_ptr(),
                1,
                k as isize,
                block.as_ptr(),
                k as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
    }
    if let Some(b) = bias {
        y.par_chunks_mut(n).for_each(|row| {
            for (o, &bb) in row.iter_mut().zip(b) {
                *o += bb;
            }
        });
    }
}
