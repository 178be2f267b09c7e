//! Fused softmax + cross-entropy with an ignore index. Contract:
//! [`crate::backend::Ops::xent_fwd`].

use super::real::Real;
use crate::backend::IGNORE_INDEX;
use crate::error::check_len;
use crate::{Error, Result};
use rayon::prelude::*;

fn check_targets(targets: &[u32], v: usize) -> Result<()> {
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

/// Log-sum-exp of a row (numerically stable). Eight independent lanes so the max and the
/// sum vectorise (a single running accumulator serialises on the add latency).
fn row_lse<F: Real>(row: &[F]) -> F {
    let mut mx = [F::neg_infinity(); 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            mx[l] = if c[l] > mx[l] { c[l] } else { mx[l] };
        }
    }
    let mx = tail
        .iter()
        .chain(&mx)
        .fold(F::neg_infinity(), |a, &b| if b > a { b } else { a });
    let mut acc = [F::zero(); 8];
    let chunks = row.chunks_exact(8);
    for c in chunks {
        for l in 0..8 {
            acc[l] += (c[l] - mx).exp_fast();
        }
    }
    let s = tail.iter().map(|&x| (x - mx).exp_fast()).sum::<F>() + acc.iter().copied().sum::<F>();
    mx + s.ln()
}

/// `losses[r] = lse(logits[r]) − logits[r][target[r]]`, 0 for ignored rows.
pub fn xent_fwd<F: Real>(
    losses: &mut [F],
    logits: &[F],
    targets: &[u32],
    n: usize,
    v: usize,
) -> Result<()> {
    let sh = || format!("n={n} v={v}");
    check_len("xent_fwd", "losses", losses.len(), n, sh)?;
    check_len("xent_fwd", "logits", logits.len(), n * v, sh)?;
    check_len("xent_fwd", "targets", targets.len(), n, sh)?;
    check_targets(targets, v)?;
    losses
        .par_iter_mut()
        .zip(logits.par_chunks(v.max(1)))
        .zip(targets)
        .for_each(|((l, row), &t)| {
            *l = if t == IGNORE_INDEX {
                F::zero()
            } else {
                row_lse(row) - row[t as usize]
            };
        });
    Ok(())
}

/// `dlogits = dloss·(softmax − onehot)` for scored rows, 0 for ignored rows (overwrites).
pub fn xent_bwd<F: Real>(
    dlogits: &mut [F],
    logits: &[F],
    targets: &[u32],
    dloss: F,
    n: usize,
    v: usize,
) -> Result<()> {
    let sh = || format!("n={n} v={v}");
    check_len("xent_bwd", "dlogits", dlogits.len(), n * v, sh)?;
    check_len("xent_bwd", "logits", logits.len(), n * v, sh)?;
    check_len("xent_bwd", "targets", targets.len(), n, sh)?;
    check_targets(targets, v)?;
    dlogits
        .par_chunks_mut(v.max(1))
        .zip(logits.par_chunks(v.max(1)))
        .zip(targets)
        .for_each(|((d, row), &t)| {
            if t == IGNORE_INDEX {
                d.fill(F::zero());
                return;
            }
            let lse = row_lse(row);
            for (di, &x) in d.iter_mut().zip(row) {
                *di = dloss * (x - lse).exp_fast();
            }
            d[t as usize] -= dloss;
        });
    Ok(())
}
