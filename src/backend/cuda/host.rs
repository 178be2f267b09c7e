//! The kernels' `__host__ __device__` helpers compiled for the CPU (DESIGN.md §6.2).
//!
//! build.rs always compiles `kernels/host_helpers.cpp` (with `ASA_HD` defined away) into a
//! static library linked into this crate, so the exact device-math code in `kernels/*.cuh` can
//! be checked on a machine without a GPU or nvcc. These are the safe Rust wrappers.

use crate::backend::AdamWStep;
use crate::error::check_len;
use crate::Result;

mod ffi {
    extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn asa_host_adamw_update(
            p: *mut f32,
            m: *mut f32,
            v: *mut f32,
            g: f32,
            mask: f32,
            lr: f32,
            beta1: f32,
            beta2: f32,
            eps: f32,
            weight_decay: f32,
            grad_scale: f32,
            t: u32,
        );
        #[allow(clippy::too_many_arguments)]
        pub fn asa_host_adamw_f32(
            p: *mut f32,
            g: *const f32,
            m: *mut f32,
            v: *mut f32,
            mask: *const f32,
            n: usize,
            lr: f32,
            beta1: f32,
            beta2: f32,
            eps: f32,
            wd: f32,
            grad_scale: f32,
            bc1: f32,
            bc2: f32,
        );
        pub fn asa_host_adamw_bias_correction(beta: f32, t: u32) -> f32;
    }
}

/// `1 − βᵗ` computed in f64 and rounded to f32 once, exactly as the kernels receive it
/// (`kernels/adamw.cuh`, `asa_adamw_bias_correction`).
pub fn adamw_bias_correction(beta: f32, t: u32) -> f32 {
    // SAFETY: a pure function of two scalars; no pointers.
    unsafe { ffi::asa_host_adamw_bias_correction(beta, t) }
}

/// One element of AdamW (`kernels/adamw.cuh`, contract of `Ops::adamw`) run by the host build
/// of the device helper. `mask` is 0 or 1 (1 when there is no mask).
pub fn adamw_update(p: &mut f32, m: &mut f32, v: &mut f32, g: f32, mask: f32, hp: &AdamWStep) {
    // SAFETY: the three pointers come from live, exclusive `&mut f32`s; the callee writes one
    // f32 through each and keeps none of them.
    unsafe {
        ffi::asa_host_adamw_update(
            p,
            m,
            v,
            g,
            mask,
            hp.lr,
            hp.beta1,
            hp.beta2,
            hp.eps,
            hp.weight_decay,
            hp.grad_scale,
            hp.t,
        )
    }
}

/// The `adamw_f32` kernel's loop run on the host (same arguments, same helper).
pub fn adamw_f32(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    mask: Option<&[f32]>,
    hp: &AdamWStep,
) -> Result<()> {
    const OP: &str = "host adamw_f32";
    let n = p.len();
    let shape = || format!("n={n}");
    check_len(OP, "grad", g.len(), n, shape)?;
    check_len(OP, "m", m.len(), n, shape)?;
    check_len(OP, "v", v.len(), n, shape)?;
    if let Some(mk) = mask {
        check_len(OP, "mask", mk.len(), n, shape)?;
    }
    let bc1 = adamw_bias_correction(hp.beta1, hp.t);
    let bc2 = adamw_bias_correction(hp.beta2, hp.t);
    // SAFETY: every pointer covers `n` valid f32 (lengths checked above); `p`, `m`, `v` are
    // distinct exclusive borrows and `g`, `mask` are shared borrows that cannot alias them;
    // the callee only reads/writes indices < n and keeps no pointer.
    unsafe {
        ffi::asa_host_adamw_f32(
            p.as_mut_ptr(),
            g.as_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            mask.map_or(std::ptr::null(), |mk| mk.as_ptr()),
            n,
            hp.lr,
            hp.beta1,
            hp.beta2,
            hp.eps,
            hp.weight_decay,
            hp.grad_scale,
            bc1,
            bc2,
        )
    }
    Ok(())
}
