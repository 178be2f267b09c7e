//! GELU, tanh approximation (GPT-2), forward and backward, and the residual ops.

use super::real::Real;
use crate::error::check_len;
use crate::Result;
use rayon::prelude::*;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const COEF: f64 = 0.044715;
/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 8192;

/// `out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_fwd<F: Real>(out: &mut [F], inp: &[F]) -> Result<()> {
    check_len("gelu_fwd", "out", out.len(), inp.len(), || {
        format!("n={}", inp.len())
    })?;
    let (s, k, half) = (F::c(SQRT_2_OVER_PI), F::c(COEF), F::c(0.5));
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| {
            super::fastmath::dispatch(
                #[inline(always)]
                || {
                    for (o, &x) in o.iter_mut().zip(x) {
                        let u = s * (x + k * x * x * x);
                        *o = half * x * (F::one() + u.tanh_fast());
                    }
                },
            )
        });
    Ok(())
}

/// `dinp += gelu'(x)·dout`.
pub fn gelu_bwd<F: Real>(dinp: &mut [F], inp: &[F], dout: &[F]) -> Result<()> {
    let sh = || format!("n={}", inp.len());
    check_len("gelu_bwd", "dinp", dinp.len(), inp.len(), sh)?;
    check_len("gelu_bwd", "dout", dout.len(), inp.len(), sh)?;
    let (s, k) = (F::c(SQRT_2_OVER_PI), F::c(COEF));
    let (half, three) = (F::c(0.5), F::c(3.0));
    dinp.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK).zip(dout.par_chunks(CHUNK)))
        .for_each(|(d, (x, g))| {
            super::fastmath::dispatch(
                #[inline(always)]
                || {
                    for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
                        let u = s * (x + k * x * x * x);
                        let th = u.tanh_fast();
                        let sech2 = F::one() - th * th;
                        let grad = half * (F::one() + th)
                            + half * x * sech2 * s * (F::one() + three * k * x * x);
                        *d = grad * g;
                    }
                },
            )
        });
    Ok(())
}

/// `out = a + b`.
pub fn residual_fwd<F: Real>(out: &mut [F], a: &[F], b: &[F]) -> Result<()> {
    let sh = || format!("n={}", a.len());
    check_len("residual_fwd", "out", out.len(), a.len(), sh)?;
    check_len("residual_fwd", "b", b.len(), a.len(), sh)?;
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| {
            for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                *o = x + y;
            }
        });
    Ok(())
}

/// `dst += src`.
pub fn accumulate<F: Real>(dst: &mut [F], src: &[F]) -> Result<()> {
    check_len("accumulate", "src", src.len(), dst.len(), || {
        format!("n={}", dst.len())
    })?;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            for (d, &s) in d.iter_mut().zip(s) {
                *d += s;
            }
        });
    Ok(())
}
