//! Row-wise layernorm (eps 1e-5), forward and backward, as in GPT-2 / llm.c.
//! Contract: [`crate::backend::Ops::layernorm_fwd`].

use super::real::Real;
use crate::Result;
use rayon::prelude::*;

const EPS: f64 = 1e-5;

/// Forward over `n` rows of `c`; writes `out`, `mean`, `rstd`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_fwd<F: Real>(
    out: &mut [F],
    mean: &mut [F],
    rstd: &mut [F],
    inp: &[F],
    weight: &[F],
    bias: &[F],
    n: usize,
    c: usize,
) -> Result<()> {
    crate::backend::shapes::layernorm_fwd(
        out.len(),
        inp.len(),
        mean.len(),
        rstd.len(),
        weight.len(),
        bias.len(),
        n,
        c,
    )?;
    if c == 0 {
        return Ok(());
    }
    let cf = F::c(c as f64);
    out.par_chunks_mut(c)
        .zip(inp.par_chunks(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .for_each(|((o, x), (mu, rs))| {
            super::fastmath::dispatch(
                #[inline(always)]
                || {
                    let m = x.iter().copied().sum::<F>() / cf;
                    let var = x.iter().map(|&xi| (xi - m) * (xi - m)).sum::<F>() / cf;
                    let r = F::one() / (var + F::c(EPS)).sqrt();
                    for i in 0..c {
                        o[i] = (x[i] - m) * r * weight[i] + bias[i];
                    }
                    *mu = m;
                    *rs = r;
                },
            )
        });
    Ok(())
}

/// Backward; accumulates `dinp`, `dweight`, `dbias`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_bwd<F: Real>(
    dinp: &mut [F],
    dweight: &mut [F],
    dbias: &mut [F],
    dout: &[F],
    inp: &[F],
    weight: &[F],
    mean: &[F],
    rstd: &[F],
    n: usize,
    c: usize,
) -> Result<()> {
    crate::backend::shapes::layernorm_bwd(
        dinp.len(),
        dout.len(),
        inp.len(),
        mean.len(),
        rstd.len(),
        weight.len(),
        dweight.len(),
        dbias.len(),
        n,
        c,
    )?;
    if c == 0 || n == 0 {
        return Ok(());
    }
    let cf = F::c(c as f64);
    // dinp rows are independent; dweight/dbias are reductions over rows, done per chunk of
    // rows and summed so threads never share an accumulator.
    let rows_per_task = n.div_ceil(rayon::current_num_threads() * 4).max(1);
    let partials: Vec<(Vec<F>, Vec<F>)> = dinp
        .par_chunks_mut(rows_per_task * c)
        .enumerate()
        .map(|(task, dx_chunk)| {
            super::fastmath::dispatch(
                #[inline(always)]
                || {
                    let mut dw = vec![F::zero(); c];
                    let mut db = vec![F::zero(); c];
                    for (ri, dx) in dx_chunk.chunks_exact_mut(c).enumerate() {
                        let r = task * rows_per_task + ri;
                        let x = &inp[r * c..(r + 1) * c];
                        let dy = &dout[r * c..(r + 1) * c];
                        let (m, rs) = (mean[r], rstd[r]);
                        let mut dnorm_mean = F::zero();
                        let mut dnorm_norm_mean = F::zero();
                        for i in 0..c {
                            let norm = (x[i] - m) * rs;
                            let dnorm = weight[i] * dy[i];
                            dnorm_mean += dnorm;
                            dnorm_norm_mean += dnorm * norm;
                        }
                        dnorm_mean = dnorm_mean / cf;
                        dnorm_norm_mean = dnorm_norm_mean / cf;
                        for i in 0..c {
                            let norm = (x[i] - m) * rs;
                            let dnorm = weight[i] * dy[i];
                            db[i] += dy[i];
                            dw[i] += norm * dy[i];
                            dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rs;
                        }
                    }
                    (dw, db)
                },
            )
        })
        .collect();
    for (dw, db) in partials {
        for i in 0..c {
            dweight[i] += dw[i];
            dbias[i] += db[i];
        }
    }
    Ok(())
}
