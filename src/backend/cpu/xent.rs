//! Fused softmax + cross-entropy with an ignore index. Contract:
//! [`crate::backend::Ops::xent_fwd`]. The forward saves each row's log-sum-exp so the
//! backward is a single pass over the logits.

use super::fastmath::dispatch;
use super::real::Real;
use crate::backend::{shapes, IGNORE_INDEX};
use crate::{Error, Result};
use rayon::prelude::*;

/// Rows per rayon task.
const ROWS: usize = 16;

pub(crate) fn check_targets(targets: &[u32], v: usize) -> Result<()> {
    match targets
        .iter()
        .position(|&t| t != IGNORE_INDEX && t as usize >= v)
    {
        None => Ok(()),
        Some(i) => Err(Error::Config(format!(
            "cross-entropy: target {} at position {i} is outside the vocabulary of {v}",
            targets[i]
        ))),
    }
}

/// Log-sum-exp of a row (numerically stable), eight lanes at a time.
#[inline(always)]
pub(crate) fn row_lse<F: Real>(row: &[F]) -> F {
    let (m, s) = max_sum_exp::<F, 8>(row);
    m + s.ln()
}

/// `(max, Σ e^{x−max})` of a row with `LANES` independent lanes, so the max and the sum
/// vectorise (a single running accumulator serialises on the add latency).
#[inline(always)]
pub(crate) fn max_sum_exp<F: Real, const LANES: usize>(row: &[F]) -> (F, F) {
    let mut mx = [F::neg_infinity(); LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            mx[l] = if c[l] > mx[l] { c[l] } else { mx[l] };
        }
    }
    let mx = tail
        .iter()
        .chain(&mx)
        .fold(F::neg_infinity(), |a, &b| if b > a { b } else { a });
    let mut acc = [F::zero(); LANES];
    for c in row.chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] += (c[l] - mx).exp_fast();
        }
    }
    let s = tail.iter().map(|&x| (x - mx).exp_fast()).sum::<F>() + acc.iter().copied().sum::<F>();
    (mx, s)
}

/// `losses[r] = lse(logits[r]) − logits[r][target[r]]` and `lse[r]`; ignored rows get loss 0
/// (their `lse` is still computed, so it is always finite for finite logits).
pub fn xent_fwd<F: Real>(
    losses: &mut [F],
    lse: &mut [F],
    logits: &[F],
    targets: &[u32],
    n: usize,
    v: usize,
) -> Result<()> {
    shapes::xent_fwd(losses.len(), lse.len(), logits.len(), targets.len(), n, v)?;
    check_targets(targets, v)?;
    shapes::xent_vocab(v)?;
    losses
        .par_chunks_mut(ROWS)
        .zip(lse.par_chunks_mut(ROWS))
        .zip(logits.par_chunks(ROWS * v).zip(targets.par_chunks(ROWS)))
        .for_each(|((l, z), (rows, t))| {
            dispatch(
                #[inline(always)]
                || {
                    for (r, row) in rows.chunks_exact(v).enumerate() {
                        z[r] = row_lse(row);
                        l[r] = if t[r] == IGNORE_INDEX {
                            F::zero()
                        } else {
                            z[r] - row[t[r] as usize]
                        };
                    }
                },
            )
        });
    Ok(())
}

/// `dlogits = dloss·(softmax − onehot)` for scored rows, 0 for ignored rows (overwrites), using
/// the `lse` saved by [`xent_fwd`].
#[allow(clippy::too_many_arguments)]
pub fn xent_bwd<F: Real>(
    dlogits: &mut [F],
    logits: &[F],
    lse: &[F],
    targets: &[u32],
    dloss: F,
    n: usize,
    v: usize,
) -> Result<()> {
    shapes::xent_bwd(dlogits.len(), logits.len(), lse.len(), targets.len(), n, v)?;
    check_targets(targets, v)?;
    shapes::xent_vocab(v)?;
    dlogits
        .par_chunks_mut(ROWS * v)
        .zip(logits.par_chunks(ROWS * v))
        .zip(lse.par_chunks(ROWS).zip(targets.par_chunks(ROWS)))
        .for_each(|((d, rows), (z, t))| {
            dispatch(
                #[inline(always)]
                || {
                    for (r, (dr, row)) in
                        d.chunks_exact_mut(v).zip(rows.chunks_exact(v)).enumerate()
                    {
                        if t[r] == IGNORE_INDEX {
                            dr.fill(F::zero());
                            continue;
                        }
                        let zr = z[r];
                        for (di, &x) in dr.iter_mut().zip(row) {
                            *di = dloss * (x - zr).exp_fast();
                        }
                        dr[t[r] as usize] -= dloss;
                    }
                },
            )
        });
    Ok(())
}
