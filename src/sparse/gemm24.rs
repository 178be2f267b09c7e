//! The CPU twin of the 2:4 GEMM: `Y = X·Wᵀ (+ bias)` with W in the canonical compressed form
//! ([`Sparse24`]), f32 accumulation from f32, bf16 or f16 operands.
//!
//! Work and bytes are both halved against the dense GEMM: per row of W only the K/2 kept
//! values (and K/16 metadata words) are read, and each drives one multiply-add per row of X.
//! Rows of X are processed in blocks of [`MB`], transposed to f32 so that a kept weight's
//! update of the whole block is one contiguous, vectorised AXPY; rows of W are spread over
//! threads. Few rows of X (decode-like shapes) are bound by reading W, where the halved bytes
//! pay off. From [`DENSE_FROM_M`] rows on the GEMM is compute-bound and a gather-driven AXPY
//! cannot match a packed dense micro-kernel, so W is decompressed in blocks of
//! [`DENSE_BLOCK_ROWS`] rows and each block goes through the dense GEMM (`gemm` crate): the
//! multiply-adds are then not halved, but the speed stays that of the dense GEMM (DESIGN.md §7
//! asks ≥ 1.5× the dense GEMM where it is bandwidth-bound and ≥ 0.8× where compute-bound).

use super::format24::Sparse24;
use super::topk::TopkWeight;
use crate::backend::cpu::fastmath::dispatch;
use crate::{Error, Result};
use rayon::prelude::*;

/// Rows of X per block (the AXPY length): two AVX registers of f32.
pub const MB: usize = 16;
/// From this many rows of X on, blocks of W are decompressed and multiplied densely.
pub const DENSE_FROM_M: usize = 64;
/// Rows of W decompressed at a time on the dense path (bounds the scratch memory).
pub const DENSE_BLOCK_ROWS: usize = 256;

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
        return Ok(());
    }
    let (vals, meta) = (w.values(), w.meta());
    let mut xt = vec![0.0f32; k * MB];
    let mut yt = vec![0.0f32; n * MB];
    for m0 in (0..m).step_by(MB) {
        let mb = MB.min(m - m0);
        // Transpose the block to k × MB f32 (rows past m stay zero).
        xt.fill(0.0);
        for i in 0..mb {
            for (kk, &v) in x[(m0 + i) * k..(m0 + i + 1) * k].iter().enumerate() {
                xt[kk * MB + i] = v.to_f32();
            }
        }
        let xt = &xt;
        yt.par_chunks_mut(MB * 16)
            .enumerate()
            .for_each(|(rb, ychunk)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for (ri, acc) in ychunk.chunks_exact_mut(MB).enumerate() {
                            let r = rb * 16 + ri;
                            let mut a = [0.0f32; MB];
                            let rv = &vals[r * k / 2..(r + 1) * k / 2];
                            let rm = &meta[r * k / 16..(r + 1) * k / 16];
                            for (u, &word) in rm.iter().enumerate() {
                                for q in 0..4 {
                                    let gi = 4 * u + q;
                                    let nib = word >> (4 * q);
                                    let (p0, p1) = ((nib & 3) as usize, ((nib >> 2) & 3) as usize);
                                    let (v0, v1) = (rv[2 * gi].to_f32(), rv[2 * gi + 1].to_f32());
                                    let x0 = &xt[(4 * gi + p0) * MB..(4 * gi + p0 + 1) * MB];
                                    let x1 = &xt[(4 * gi + p1) * MB..(4 * gi + p1 + 1) * MB];
                                    for i in 0..MB {
                                        a[i] += v0 * x0[i] + v1 * x1[i];
                                    }
                                }
                            }
                            acc.copy_from_slice(&a);
                        }
                    },
                )
            });
        for i in 0..mb {
            let yrow = &mut y[(m0 + i) * n..(m0 + i + 1) * n];
            for (r, out) in yrow.iter_mut().enumerate() {
                *out = yt[r * MB + i] + bias.map_or(0.0, |b| b[r]);
            }
        }
    }
    Ok(())
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
