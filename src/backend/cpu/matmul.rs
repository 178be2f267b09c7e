//! `Y = X·(W⊙M)ᵀ + b` and its backward on the CPU, through the `gemm` crate (packed,
//! cache-blocked, SIMD, rayon-threaded). Contract: [`crate::backend::Ops::matmul_fwd`].

use super::real::{as_f32, as_f32_mut, Real};
use crate::backend::{GradWrite, MatmulShape};
use crate::Result;
use rayon::prelude::*;

/// The GEMM's result when `k = 0` (an empty sum): an overwrite leaves the bias, or zeros;
/// an accumulation leaves `dst` as it is.
pub(super) fn write_empty_sum<F: Real>(
    dst: &mut [F],
    m: usize,
    n: usize,
    accumulate: bool,
    bias: Option<&[F]>,
) {
    if accumulate {
        return;
    }
    match bias {
        Some(b) => dst[..m * n]
            .chunks_exact_mut(n)
            .for_each(|r| r.copy_from_slice(&b[..n])),
        None => dst[..m * n].fill(F::zero()),
    }
}

/// `dst (m×n, row-major) = [dst +] lhs·rhs [+ bias]` with explicit strides (row, col); a
/// `bias` (length n, added to every row) only with an overwrite. f32 goes through this
/// project's GEMM at the active level (the bias in its epilogue), f64 through the `gemm` crate.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_acc<F: Real>(
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
    bias: Option<&[F]>,
) {
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(dst.len() >= m * n);
    if k == 0 {
        // The gemm crate writes nothing for an empty sum.
        write_empty_sum(dst, m, n, accumulate, bias);
        return;
    }
    debug_assert!(bias.is_none() || !accumulate);
    let level = super::isa::active();
    let epilogue = as_f32(lhs).is_some() && super::sgemm::supports(level);
    // Without our GEMM's epilogue the bias is a pass of its own, then accumulated onto.
    if let (false, Some(b)) = (epilogue, bias) {
        dst[..m * n]
            .par_chunks_mut(n)
            .for_each(|row| row.copy_from_slice(&b[..n]));
    }
    let accumulate = accumulate || (bias.is_some() && !epilogue);
    if let (Some(l), Some(r)) = (as_f32(lhs), as_f32(rhs)) {
        let d = as_f32_mut(dst).expect("F is f32, as lhs is");
        if epilogue {
            let b = bias.and_then(as_f32);
            super::sgemm::sgemm(
                level, m, n, k, d, accumulate, l, lhs_rs, lhs_cs, r, rhs_rs, rhs_cs, b,
            );
        } else {
            sgemm_crate_at(
                level, m, n, k, d, accumulate, l, lhs_rs, lhs_cs, r, rhs_rs, rhs_cs,
            );
        }
        return;
    }
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

/// f32 `dst (m×n, row-major) = [dst +] lhs·rhs` at the instruction-set `level`: this
/// project's GEMM ([`super::sgemm`]) where the level has a microkernel (AVX-512, AVX2),
/// else the `gemm` crate's scalar kernels. `level` must not exceed [`super::isa::detected`].
#[allow(clippy::too_many_arguments)]
pub fn sgemm_at(
    level: super::isa::Isa,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[f32],
    rhs_rs: isize,
    rhs_cs: isize,
) {
    if super::sgemm::supports(level) {
        super::sgemm::sgemm(
            level, m, n, k, dst, accumulate, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs, None,
        )
    } else {
        sgemm_crate_at(
            level, m, n, k, dst, accumulate, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs,
        )
    }
}

/// [`sgemm_at`] through the `gemm` crate's packed, cache-blocked driver with that level's
/// microkernels (16-wide AVX-512, 8-wide AVX2+FMA, or scalar): the baseline this project's
/// GEMM is benchmarked against, and its fallback.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_crate_at(
    level: super::isa::Isa,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[f32],
    rhs_rs: isize,
    rhs_cs: isize,
) {
    use super::isa::Isa;
    use gemm_common::gemm::gemm_basic_generic;
    assert!(
        level <= super::isa::detected(),
        "sgemm_at: level {level} is above this CPU's {}",
        super::isa::detected()
    );
    if m == 0 || n == 0 {
        return;
    }
    let fits = |len: usize, rows, rs, cols, cs| {
        super::sgemm::last_index(rows, rs, cols, cs).is_some_and(|l| l < len)
    };
    assert!(
        dst.len() >= m * n
            && (k == 0 || fits(lhs.len(), m, lhs_rs, k, lhs_cs))
            && (k == 0 || fits(rhs.len(), k, rhs_rs, n, rhs_cs)),
        "sgemm_at: slices too short for m={m} n={n} k={k}"
    );
    let par = gemm::Parallelism::Rayon(0);
    macro_rules! run {
        ($simd:ty, $ukr:path, $n:literal) => {{
            use $ukr as u;
            // SAFETY: the CPU has the level's features (asserted against `detected` above,
            // so `try_new` succeeds); the asserted lengths cover every index formed from
            // (m, n, k) and the strides; dst does not alias lhs or rhs (distinct borrows).
            unsafe {
                let simd = <$simd as gemm_common::simd::MixedSimd<f32, f32, f32, f32>>::try_new()
                    .expect("CPU features checked against the detected level");
                gemm_basic_generic::<
                    _,
                    f32,
                    $n,
                    { u::MR_DIV_N * $n },
                    { u::NR },
                    { u::MR_DIV_N },
                    { u::H_M },
                    { u::H_N },
                >(
                    simd,
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
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    |a, b, c| a * b + c,
                    &u::UKR,
                    &u::H_UKR,
                    false,
                    par,
                )
            }
        }};
    }
    match level {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => run!(
            gemm_common::simd::V4,
            gemm_f32::microkernel::avx512f::f32,
            16
        ),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => run!(gemm_common::simd::V3, gemm_f32::microkernel::fma::f32, 8),
        _ => run!(
            gemm_common::simd::Scalar,
            gemm_f32::microkernel::scalar::f32,
            1
        ),
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
    // rhs = Wᵀ (k×oc): element (p, j) = W[j·k + p]; the bias joins as the GEMM's epilogue.
    let ki = s.k as isize;
    gemm_acc(s.n, s.oc, s.k, out, false, inp, ki, 1, w, 1, ki, bias);
    Ok(())
}

/// Backward; accumulates into `dinp` (`n×k`), `dweight` (`oc×k`), `dbias` (`oc`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_bwd<F: Real>(
    dinp: Option<(&mut [F], GradWrite)>,
    dweight: &mut [F],
    dbias: Option<&mut [F]>,
    dout: &[F],
    inp: &[F],
    weight: &[F],
    mask: Option<&[F]>,
    s: MatmulShape,
) -> Result<()> {
    s.check_bwd(
        dinp.as_ref().map(|(d, _)| d.len()),
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
    if let Some((dinp, write)) = dinp {
        // dinp (n×k) [+]= dout (n×oc) · W (oc×k)
        gemm_acc(
            s.n,
            s.k,
            s.oc,
            dinp,
            write == GradWrite::Accumulate,
            dout,
            s.oc as isize,
            1,
            w,
            s.k as isize,
            1,
            None,
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
            None,
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
                None,
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
