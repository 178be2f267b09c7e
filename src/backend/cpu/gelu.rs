//! GELU, tanh approximation (GPT-2), forward and backward.

use super::real::Real;
use crate::error::check_len;
use crate::Result;
use rayon::prelude::*;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const COEF: f64 = 0.044715;

/// `out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_fwd<F: Real>(out: &mut [F], inp: &[F]) -> Result<()> {
    check_len("gelu_fwd", "out", out.len(), inp.len(), || {
        format!("n={}", inp.len())
    })?;
    let (s, k) = (F::c(SQRT_2_OVER_PI), F::c(COEF));
    let half = F::c(0.5);
    out.par_iter_mut().zip(inp).for_each(|(o, &x)| {
        let u = s * (x + k * x * x * x);
        *o = half * x * (F::one() + u.tanh());
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
    dinp.par_iter_mut()
        .zip(inp.par_iter().zip(dout))
        .for_each(|(d, (&x, &g))| {
            let u = s * (x + k * x * x * x);
            let th = u.tanh();
            let sech2 = F::one() - th * th;
            let grad =
                half * (F::one() + th) + half * x * sech2 * s * (F::one() + three * k * x * x);
            *d += grad * g;
        });
    Ok(())
}

/// `out = a + b`.
pub fn residual_fwd<F: Real>(out: &mut [F], a: &[F], b: &[F]) -> Result<()> {
    let sh = || format!("n={}", a.len());
    check_len("residual_fwd", "out", out.len(), a.len(), sh)?;
    check_len("residual_fwd", "b", b.len(), a.len(), sh)?;
    out.par_iter_mut()
        .zip(a.par_iter().zip(b))
        .for_each(|(o, (&x, &y))| *o = x + y);
    Ok(())
}

/// `dst += src`.
pub fn accumulate<F: Real>(dst: &mut [F], src: &[F]) -> Result<()> {
    check_len("accumulate", "src", src.len(), dst.len(), || {
        format!("n={}", dst.len())
    })?;
    dst.par_iter_mut().zip(src).for_each(|(d, &s)| *d += s);
    Ok(())
}
