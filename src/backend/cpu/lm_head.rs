//! The tied LM head fused with cross-entropy, on the CPU. Contract:
//! [`crate::backend::Ops::lm_head_xent`]. The logits are walked in blocks of vocabulary
//! entries ([`crate::backend::lm_head_blocks`]) small enough to stay in the caches: a first
//! pass keeps each row's running max and sum of exponentials (an online log-sum-exp); with
//! gradients, a second pass forms each block again, turns it into the logit gradient in
//! place and adds its share to `dx` and writes its rows of `dweight` (with the whole
//! vocabulary in one block, pass 1's logits are reused instead). The `n × V` logits never
//! exist (beyond one block), and `dweight` is written once.

use super::fastmath::dispatch;
use super::matmul::gemm_acc;
use super::real::Real;
use super::xent::{check_targets, max_sum_exp};
use crate::backend::{lm_head_blocks, shapes, IGNORE_INDEX};
use crate::Result;
use rayon::prelude::*;

/// Rows per rayon task in the elementwise passes.
const ROWS: usize = 16;

/// [`crate::backend::Ops::lm_head_xent`]'s checks on host buffers (lengths, targets, a
/// vocabulary), shared with the emulated CUDA kernels.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_host<F>(
    losses: &[F],
    lse: &[F],
    grads: Option<(&[F], &[F])>,
    x: &[F],
    weight: &[F],
    targets: &[u32],
    n: usize,
    c: usize,
    v: usize,
) -> Result<()> {
    shapes::lm_head_xent(
        losses.len(),
        lse.len(),
        grads.map(|(dx, dw)| (dx.len(), dw.len())),
        x.len(),
        weight.len(),
        targets.len(),
        n,
        c,
        v,
    )?;
    check_targets(targets, v)?;
    shapes::xent_vocab(v)
}

/// See [`crate::backend::Ops::lm_head_xent`]; `grads = (dx, dweight)`.
#[allow(clippy::too_many_arguments)]
pub fn lm_head_xent<F: Real>(
    losses: &mut [F],
    lse: &mut [F],
    grads: Option<(&mut [F], &mut [F])>,
    x: &[F],
    weight: &[F],
    targets: &[u32],
    dloss: F,
    n: usize,
    c: usize,
    v: usize,
) -> Result<()> {
    check_host(
        losses,
        lse,
        grads.as_ref().map(|(dx, dw)| (&**dx, &**dw)),
        x,
        weight,
        targets,
        n,
        c,
        v,
    )?;
    let mut grads = grads;
    if let Some((_, dw)) = grads.as_mut() {
        if n == 0 {
            dw.fill(F::zero());
        }
    }
    let (rows, cols) = lm_head_blocks(n, v);
    let mut z = vec![F::zero(); rows.min(n) * cols];
    let ci = c as isize;
    for (chunk, r0) in (0..n).step_by(rows).enumerate() {
        let r = rows.min(n - r0);
        let xc = &x[r0 * c..(r0 + r) * c];
        let tc = &targets[r0..r0 + r];
        // Pass 1: running (max, Σ e^{z−max}) per row, and the target's logit.
        let mut run = vec![(F::neg_infinity(), F::zero()); r];
        let mut picked = vec![F::zero(); r];
        for j0 in (0..v).step_by(cols) {
            let vb = cols.min(v - j0);
            let z = &mut z[..r * vb];
            // z = x_c · W[j0..j0+vb]ᵀ  (r × vb).
            gemm_acc(
                r,
                vb,
                c,
                z,
                false,
                xc,
                ci,
                1,
                &weight[j0 * c..],
                1,
                ci,
                None,
            );
            z.par_chunks(ROWS * vb)
                .zip(run.par_chunks_mut(ROWS))
                .zip(picked.par_chunks_mut(ROWS).zip(tc.par_chunks(ROWS)))
                .for_each(|((zr, run), (pk, t))| {
                    dispatch(
                        #[inline(always)]
                        || {
                            for (i, row) in zr.chunks_exact(vb).enumerate() {
                                // 16 lanes: one AVX-512 vector per chain.
                                let (bm, bs) = max_sum_exp::<F, 16>(row);
                                let (m, s) = run[i];
                                let nm = if bm > m { bm } else { m };
                                run[i] = (nm, s * (m - nm).exp_fast() + bs * (bm - nm).exp_fast());
                                let ti = t[i] as usize;
                                if t[i] != IGNORE_INDEX && (j0..j0 + vb).contains(&ti) {
                                    pk[i] = row[ti - j0];
                                }
                            }
                        },
                    )
                });
        }
        for i in 0..r {
            let (m, s) = run[i];
            let l = m + s.ln();
            lse[r0 + i] = l;
            losses[r0 + i] = if tc[i] == IGNORE_INDEX {
                F::zero()
            } else {
                l - picked[i]
            };
        }
        let Some((dx, dw)) = grads.as_mut() else {
            continue;
        };
        // Pass 2: the block's logit gradient, then its share of dx and its rows of dW.
        let lc = &lse[r0..r0 + r];
        let dxc = &mut dx[r0 * c..(r0 + r) * c];
        let one_block = v <= cols;
        for (bi, j0) in (0..v).step_by(cols).enumerate() {
            let vb = cols.min(v - j0);
            let z = &mut z[..r * vb];
            let wb = &weight[j0 * c..(j0 + vb) * c];
            // With the whole vocabulary in one block, pass 1 left its logits in `z`.
            if !one_block {
                gemm_acc(r, vb, c, z, false, xc, ci, 1, wb, 1, ci, None);
            }
            z.par_chunks_mut(ROWS * vb)
                .zip(lc.par_chunks(ROWS).zip(tc.par_chunks(ROWS)))
                .for_each(|(zr, (l, t))| {
                    dispatch(
                        #[inline(always)]
                        || {
                            for (i, row) in zr.chunks_exact_mut(vb).enumerate() {
                                if t[i] == IGNORE_INDEX {
                                    row.fill(F::zero());
                                    continue;
                                }
                                for zj in row.iter_mut() {
                                    *zj = dloss * (*zj - l[i]).exp_fast();
                                }
                                let ti = t[i] as usize;
                                if (j0..j0 + vb).contains(&ti) {
                                    row[ti - j0] -= dloss;
                                }
                            }
                        },
                    )
                });
            let vbi = vb as isize;
            // dx_c (+)= G · W_block  (r × c): overwritten by the first block.
            gemm_acc(r, c, vb, dxc, bi > 0, z, vbi, 1, wb, ci, 1, None);
            // dW_block (+)= Gᵀ · x_c  (vb × c): overwritten by the first chunk of rows.
            let dwb = &mut dw[j0 * c..(j0 + vb) * c];
            gemm_acc(vb, c, r, dwb, chunk > 0, z, 1, vbi, xc, ci, 1, None);
        }
    }
    Ok(())
}
