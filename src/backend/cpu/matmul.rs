//! `Y = X·(W⊙M)ᵀ + b` and its backward on the CPU, through the `gemm` crate (packed,
//! cache-blocked, SIMD, rayon-threaded). Contract: [`crate::backend::Ops::matmul_fwd`].

use super::real::Real;
use crate::backend::MatmulShape;
use crate::Result;
use rayon::prelude::*;

/// `dst (m×n, row stride dst_rs) = [dst +] lhs·rhs` with explicit strides (row, col).
#[allow(clippy::too_many_arguments)]
fn gemm_acc<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [F],
    accumulate: bool,
    lhs: &[F],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[F],
    rhs_rs: isize,
    rhs_cs: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(dst.len() >= m * n);
    // SAFETY: callers pass slices whose lengths were validated against (m, n, k) and the
    // strides above, so every index gemm forms lies inside the slices; dst does not alias
    // lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            F::one(),
            F::one(),
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

fn masked<F: Real>(w: &[F], mask: &[F]) -> Vec<F> {
    w.par_iter().zip(mask).map(|(&w, &m)| w * m).collect()
}

/// Forward. `out` is `n×oc`, `inp` `n×k`, `weight` and `mask` `oc×k`, `bias` `oc`.
pub fn matmul_fwd<F: Real>(
    out: &mut [F],
    inp: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    mask: Option<&[F]>,
    s: MatmulShape,
) -> Result<()> {
    s.check_fwd(
        out.len(),
        inp.len(),
        weight.len(),
        bias.map(<[F]>::len),
        mask.map(<[F]>::len),
    )?;
    let wm;
    let w = match mask {
        Some(m) => {
            wm = masked(weight, m);
            &wm[..]
        }
        None => weight,
    };
    if let Some(b) = bias {
        out.par_chunks_mut(s.oc)
            .for_each(|row| row.copy_from_slice(b));
    }
    // rhs = Wᵀ (k×oc): element (p, j) = W[j·k + p].
    gemm_acc(
        s.n,
        s.oc,
        s.k,
        out,
        bias.is_some(),
        inp,
        s.k as isize,
        1,
        w,
        1,
        s.k as isize,
    );
    if s.k == 0 && bias.is_none() {
        out.fill(F::zero());
    }
    Ok(())
}

/// Backward; accumulates into `dinp` (`n×k`), `dweight` (`oc×k`), `dbias` (`oc`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_bwd<F: Real>(
    dinp: Option<&mut [F]>,
    dweight: &mut [F],
    dbias: Option<&mut [F]>,
    dout: &[F],
    inp: &[F],
    weight: &[F],
    mask: Option<&[F]>,
    s: MatmulShape,
) -> Result<()> {
    s.check_bwd(
        dinp.as_deref().map(<[F]>::len),
        dweight.len(),
        dbias.as_deref().map(<[F]>::len),
        dout.len(),
        inp.len(),
        weight.len(),
        mask.map(<[F]>::len),
    )?;
    let wm;
    let w = match mask {
        Some(m) => {
            wm = masked(weight, m);
            &wm[..]
        }
        None => weight,
    };
    if let Some(dinp) = dinp {
        // dinp (n×k) += dout (n×oc) · W (oc×k)
        gemm_acc(
            s.n,
            s.k,
            s.oc,
            dinp,
            true,
            dout,
            s.oc as isize,
            1,
            w,
            s.k as isize,
            1,
        );
    }
    // dW (oc×k) += doutᵀ (oc×n) · inp (n×k); lhs element (o, r) = dout[r·oc + o].
    match mask {
        None => gemm_acc(
            s.oc,
            s.k,
            s.n,
            dweight,
            true,
            dout,
            1,
            s.oc as isize,
            inp,
            s.k as isize,
            1,
        ),
        Some(m) => {
            let mut tmp = vec![F::zero(); s.oc * s.k];
            gemm_acc(
                s.oc,
                s.k,
                s.n,
                &mut tmp,
                false,
                dout,
                1,
                s.oc as isize,
                inp,
                s.k as isize,
                1,
            );
            dweight
                .par_iter_mut()
                .zip(tmp.par_iter().zip(m))
                .for_each(|(d, (&g, &m))| *d += g * m);
        }
    }
    if let Some(db) = dbias {
        // Column sums, threaded over column blocks so each thread streams all rows once.
        let oc = s.oc;
        db.par_chunks_mut(64).enumerate().for_each(|(blk, dbc)| {
            let (c0, w) = (blk * 64, dbc.len());
            for row in dout.chunks_exact(oc) {
                for (d, &g) in dbc.iter_mut().zip(&row[c0..c0 + w]) {
                    *d += g;
                }
            }
        });
    }
    Ok(())
}
