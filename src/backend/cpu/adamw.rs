//! AdamW on one tensor, with an optional prune mask that pins pruned entries (parameter and
//! both moments) to exactly zero. The element formula is the one `kernels/adamw.cuh`
//! implements for the GPU; `tests/cuda_build.rs` holds the two together.

use crate::backend::AdamWStep;
use crate::error::check_len;
use crate::Result;
use rayon::prelude::*;

/// One AdamW step (f32, the master-weight precision on every device).
pub fn adamw(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    mask: Option<&[f32]>,
    hp: &AdamWStep,
) -> Result<()> {
    let n = param.len();
    let sh = || format!("n={n}");
    check_len("adamw", "grad", grad.len(), n, sh)?;
    check_len("adamw", "m", m.len(), n, sh)?;
    check_len("adamw", "v", v.len(), n, sh)?;
    if let Some(mk) = mask {
        check_len("adamw", "mask", mk.len(), n, sh)?;
    }
    // Same bias corrections and operation order as kernels/adamw.cuh, so the CPU and CUDA
    // paths agree bit for bit (tests/cuda_build.rs holds them to it).
    let bc1 = bias_correction(hp.beta1, hp.t);
    let bc2 = bias_correction(hp.beta2, hp.t);
    let hp = *hp;
    let step = move |p: &mut f32, g: f32, m: &mut f32, v: &mut f32, keep: bool| {
        if !keep {
            *p = 0.0;
            *m = 0.0;
            *v = 0.0;
            return;
        }
        let g = g * hp.grad_scale;
        *m = hp.beta1 * *m + (1.0 - hp.beta1) * g;
        *v = hp.beta2 * *v + (1.0 - hp.beta2) * (g * g);
        let mhat = *m / bc1;
        let vhat = *v / bc2;
        *p -= hp.lr * (mhat / (vhat.sqrt() + hp.eps) + hp.weight_decay * *p);
    };
    // Chunks, so each runs as one vectorised loop at the active instruction-set level
    // (elementwise, so every level gives the same bits).
    const CHUNK: usize = 4096;
    let it = param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .enumerate();
    it.for_each(|(ci, ((p, g), (m, v)))| {
        super::fastmath::dispatch(
            #[inline(always)]
            || match mask {
                None => {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        step(p, g, m, v, true);
                    }
                }
                Some(mk) => {
                    let mk = &mk[ci * CHUNK..ci * CHUNK + p.len()];
                    for ((((p, &g), m), v), &k) in p
                        .iter_mut()
                        .zip(g)
                        .zip(m.iter_mut())
                        .zip(v.iter_mut())
                        .zip(mk)
                    {
                        step(p, g, m, v, k != 0.0);
                    }
                }
            },
        )
    });
    Ok(())
}

/// `1 − βᵗ` in f64, rounded to f32 once (as `asa_adamw_bias_correction` does).
pub fn bias_correction(beta: f32, t: u32) -> f32 {
    (1.0 - (beta as f64).powf(t as f64)) as f32
}

/// `Σ x²` in f64.
pub fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(4096)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .sum()
}
