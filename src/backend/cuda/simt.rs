//! The attention and top-k kernels' CUDA source executed on the CPU by the SIMT emulation of
//! kernels/simt_emu.h: every thread of every block runs the kernel body as written (barriers,
//! warp shuffles and votes, `cp.async` groups, `ldmatrix`, `mma.sync`), the PTX instructions
//! emulated from the ISA. No GPU and no nvcc are needed (build.rs compiles the emulation with
//! the host compiler), so the tests can hold whole kernels — not only their lane-layout
//! helpers — to the f64 reference (DESIGN.md §6).
//!
//! What it cannot show: timing, real memory-model races beyond what a random interleaving of
//! warps at their synchronisation points exposes, and anything the hardware does differently
//! from the ISA text (the layout probes on a real GPU remain the check for that).
//!
//! The attention launchers here mirror [`super::attention`]'s: q, k, v (and dout) rounded to
//! bf16 copies first (round to nearest even, as `cast_bf16_f32`), the tile lists built by the
//! emulated `attn_tile_classify` and `attn_tile_lists`, then the same kernels with the same
//! grids. Top-k pruning runs the GPU's own driver ([`super::topk::prune_driver`]) on
//! [`EmuTopk`], so only the kernels' execution differs from a GPU run.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_void, CString};

use super::attention::{bf16_rn, BwdMode, TileListsDev, TILE};
use super::gemm24::{Gemm24Plan, Half};
use super::topk::{prune_driver, Driven, TopkDevice, TopkElem, BLOCK as TOPK_BLOCK};
use crate::backend::{shapes, AttnShape};
use crate::error::check_len;
use crate::sparse::mma_emu::{self, Regs};
use crate::sparse::topk::{
    bad_element_error, check_fraction, check_mask_len, PruneReport, PruneScope, PruneTensor,
    TopkWeight,
};
use crate::sparse::two_four::check_shape as check_24_shape;
use crate::{Error, Result};

mod ffi {
    use std::ffi::c_char;
    extern "C" {
        pub fn asa_emu_lm_head_fwd(
            losses: *mut f32,
            lse: *mut f32,
            x: *const f32,
            w: *const f32,
            targets: *const u32,
            n: u32,
            c: u32,
            v: u32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        #[allow(clippy::too_many_arguments)]
        pub fn asa_emu_lm_head_bwd(
            dx: *mut f32,
            dw: *mut f32,
            x: *const f32,
            w: *const f32,
            lse: *const f32,
            targets: *const u32,
            dloss: f32,
            n: u32,
            c: u32,
            v: u32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_configure(copy_mode: u32, seed: u64);
        pub fn asa_emu_attn_fwd(
            d: u32,
            q: *const u16,
            k: *const u16,
            v: *const u16,
            out: *mut f32,
            lse: *mut f32,
            mask: *const u32,
            count: *const u32,
            lists: *const u32,
            b: u32,
            t: u32,
            h: u32,
            hm: u32,
            scale_log2: f32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_attn_bwd_di(
            dout: *const f32,
            out: *const f32,
            di: *mut f32,
            b: u32,
            t: u32,
            h: u32,
            d: u32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_attn_bwd_dkdv(
            d: u32,
            q: *const u16,
            k: *const u16,
            v: *const u16,
            dout: *const u16,
            lse: *const f32,
            di: *const f32,
            dq: *mut f32,
            dk: *mut f32,
            dv: *mut f32,
            mask: *const u32,
            count: *const u32,
            lists: *const u32,
            b: u32,
            t: u32,
            h: u32,
            hm: u32,
            scale_log2: f32,
            scale: f32,
            dq_atomic: i32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_attn_bwd_dq(
            d: u32,
            q: *const u16,
            k: *const u16,
            v: *const u16,
            dout: *const u16,
            lse: *const f32,
            di: *const f32,
            dq: *mut f32,
            mask: *const u32,
            count: *const u32,
            lists: *const u32,
            b: u32,
            t: u32,
            h: u32,
            hm: u32,
            scale_log2: f32,
            scale: f32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_attn_tile_classify(
            mask: *const u32,
            classes: *mut u8,
            t: u32,
            groups: u32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_attn_tile_lists(
            classes: *const u8,
            fwd_count: *mut u32,
            fwd_list: *mut u32,
            bwd_count: *mut u32,
            bwd_list: *mut u32,
            t: u32,
            groups: u32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_selftest_divergent_barrier(err: *mut c_char, cap: usize) -> i32;
        pub fn asa_emu_set_mma_sp(f: super::MmaSpFn);
        #[allow(clippy::too_many_arguments)]
        pub fn asa_emu_gemm24_launch(
            name: *const c_char,
            gx: u32,
            gy: u32,
            gz: u32,
            threads: u32,
            smem: u32,
            params: *mut *mut std::ffi::c_void,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_topk_launch(
            name: *const c_char,
            grid: u32,
            params: *mut *mut std::ffi::c_void,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
        pub fn asa_emu_attn_mma_probe(
            a: *const u32,
            b: *const u32,
            c: *const f32,
            d: *mut f32,
            err: *mut c_char,
            cap: usize,
        ) -> i32;
    }
}

/// How the emulation runs the following launches (process-wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmuConfig {
    /// `cp.async` copies land at issue (`true`: exposes a copy into a buffer another warp still
    /// reads) or when the issuing thread's `wait_group` retires them (`false`: exposes a read
    /// without the right wait, which then sees poisoned shared memory).
    pub eager_copies: bool,
    /// Seed of the random choice of the next thread to run.
    pub seed: u64,
}

/// Set how the following launches run (see [`EmuConfig`]).
pub fn configure(cfg: EmuConfig) {
    // SAFETY: scalars only; the emulation serialises launches and configuration with a lock.
    unsafe { ffi::asa_emu_configure(cfg.eager_copies as u32, cfg.seed) }
}

/// Run one emulated launch; its error message (kernel, block, thread, what) becomes an
/// [`Error::Device`].
fn run(f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<()> {
    let mut buf = vec![0u8; 1024];
    if f(buf.as_mut_ptr().cast(), buf.len()) == 0 {
        return Ok(());
    }
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    Err(Error::Device(format!(
        "SIMT emulation: {}",
        String::from_utf8_lossy(&buf[..end])
    )))
}

/// bf16 values in 16-byte aligned storage (the kernels' cp.async sources must be aligned).
struct Bf16Buf {
    words: Vec<u128>,
    len: usize,
}

impl Bf16Buf {
    fn round(x: &[f32]) -> Self {
        let mut words = vec![0u128; x.len().div_ceil(8).max(1)];
        for (i, &v) in x.iter().enumerate() {
            words[i / 8] |= (bf16_rn(v) as u128) << (16 * (i % 8));
        }
        Self {
            words,
            len: x.len(),
        }
    }
    fn ptr(&self) -> *const u16 {
        self.words.as_ptr().cast()
    }
}

/// The emulated kernels' limits: D 64 or 128, sizes inside the kernels' 32-bit indices.
fn check_dims(op: &'static str, s: &AttnShape) -> Result<()> {
    if s.d != 64 && s.d != 128 {
        return Err(Error::Config(format!(
            "{op}: head dim D = {} has no kernel (64 and 128)",
            s.d
        )));
    }
    if s.t > u32::MAX as usize / 2 || s.b.saturating_mul(s.t * s.h * s.d) > u32::MAX as usize {
        return Err(Error::Config(format!(
            "{op}: shape {s:?} too large to emulate"
        )));
    }
    Ok(())
}

/// A bit mask `(B, Hm, T, ⌈T/32⌉)` and whether it is per head (`Hm = H`) or shared (`Hm = 1`).
#[derive(Clone, Copy, Debug)]
pub struct EmuMask<'a> {
    pub words: &'a [u32],
    pub per_head: bool,
}

/// The tile classes and lists of `words` (`groups × T × ⌈T/32⌉`) computed by the emulated
/// `attn_tile_classify` and `attn_tile_lists` kernels.
pub fn tile_lists(words: &[u32], groups: usize, t: usize) -> Result<TileListsDev> {
    let nt = t.div_ceil(TILE);
    let wpr = t.div_ceil(32);
    check_len(
        "emulated tile lists",
        "mask",
        words.len(),
        groups * t * wpr,
        || format!("(groups, T, ⌈T/32⌉) with groups={groups} T={t}"),
    )?;
    let mut out = TileListsDev {
        groups,
        nt,
        classes: vec![0xEE; (groups * nt * nt).max(1)],
        fwd_count: vec![u32::MAX; (groups * nt).max(1)],
        fwd_list: vec![u32::MAX; (groups * nt * nt).max(1)],
        bwd_count: vec![u32::MAX; (groups * nt).max(1)],
        bwd_list: vec![u32::MAX; (groups * nt * nt).max(1)],
    };
    if groups * nt == 0 {
        return Ok(out);
    }
    // SAFETY: the kernel reads groups·T·⌈T/32⌉ words (checked) and writes classes
    // [groups·nt·nt] (allocated).
    run(|e, c| unsafe {
        ffi::asa_emu_attn_tile_classify(
            words.as_ptr(),
            out.classes.as_mut_ptr(),
            t as u32,
            groups as u32,
            e,
            c,
        )
    })?;
    // SAFETY: reads the classes, writes groups·nt counts and groups·nt·nt list entries per
    // direction (allocated).
    run(|e, c| unsafe {
        ffi::asa_emu_attn_tile_lists(
            out.classes.as_ptr(),
            out.fwd_count.as_mut_ptr(),
            out.fwd_list.as_mut_ptr(),
            out.bwd_count.as_mut_ptr(),
            out.bwd_list.as_mut_ptr(),
            t as u32,
            groups as u32,
            e,
            c,
        )
    })?;
    Ok(out)
}

/// Mask pointer, its head count and its lists (emulated preprocessing), for a launch.
fn mask_parts(
    op: &'static str,
    mask: Option<EmuMask<'_>>,
    s: &AttnShape,
) -> Result<(usize, Option<TileListsDev>)> {
    let Some(m) = mask else { return Ok((1, None)) };
    let heads = if m.per_head { s.h } else { 1 };
    check_len(
        op,
        "mask",
        m.words.len(),
        s.b * heads * s.t * s.t.div_ceil(32),
        || format!("(B, Hm, T, ⌈T/32⌉) with B={} Hm={heads} T={}", s.b, s.t),
    )?;
    Ok((heads, Some(tile_lists(m.words, s.b * heads, s.t)?)))
}

/// Forward through the emulated `attn_fwd_d{64,128}`: same contract as
/// [`super::attention::attention_fwd`].
pub fn attention_fwd(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<EmuMask<'_>>,
    s: AttnShape,
) -> Result<()> {
    const OP: &str = "emulated attention_fwd";
    check_dims(OP, &s)?;
    let acts = [
        ("out", out.len()),
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
    ];
    let (n_act, n_rows) = shapes::attention_lens(OP, &s, &acts, lse.len())?;
    if n_rows == 0 {
        return Ok(());
    }
    let (heads, lists) = mask_parts(OP, mask, &s)?;
    let (qb, kb, vb) = (Bf16Buf::round(q), Bf16Buf::round(k), Bf16Buf::round(v));
    debug_assert_eq!(qb.len, n_act);
    let mp = mask.map_or(std::ptr::null(), |m| m.words.as_ptr());
    let (cp, lp) = lists
        .as_ref()
        .map_or((std::ptr::null(), std::ptr::null()), |l| {
            (l.fwd_count.as_ptr(), l.fwd_list.as_ptr())
        });
    let scale_log2 = std::f32::consts::LOG2_E / (s.d as f32).sqrt();
    // SAFETY: q/k/v copies and out hold B·T·H·D values, lse B·H·T (checked); the mask and its
    // lists match (B, Hm, T) (checked / built here) or are null for plain causal attention.
    run(|e, c| unsafe {
        ffi::asa_emu_attn_fwd(
            s.d as u32,
            qb.ptr(),
            kb.ptr(),
            vb.ptr(),
            out.as_mut_ptr(),
            lse.as_mut_ptr(),
            mp,
            cp,
            lp,
            s.b as u32,
            s.t as u32,
            s.h as u32,
            heads as u32,
            scale_log2,
            e,
            c,
        )
    })
}

/// Backward through the emulated `attn_bwd_di`, `attn_bwd_dkdv_d*` and (deterministic mode)
/// `attn_bwd_dq_d*`: same contract as [`super::attention::attention_bwd`] (accumulates into
/// `dq`, `dk`, `dv`).
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    mask: Option<EmuMask<'_>>,
    s: AttnShape,
    mode: BwdMode,
) -> Result<()> {
    const OP: &str = "emulated attention_bwd";
    check_dims(OP, &s)?;
    let acts = [
        ("dq", dq.len()),
        ("dk", dk.len()),
        ("dv", dv.len()),
        ("dout", dout.len()),
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
    ];
    let (_, n_rows) = shapes::attention_lens(OP, &s, &acts, lse.len())?;
    if n_rows == 0 {
        return Ok(());
    }
    let (heads, lists) = mask_parts(OP, mask, &s)?;
    let mut di = vec![f32::NAN; n_rows];
    // SAFETY: dout/out hold B·T·H·D f32, di B·H·T (allocated).
    run(|e, c| unsafe {
        ffi::asa_emu_attn_bwd_di(
            dout.as_ptr(),
            out.as_ptr(),
            di.as_mut_ptr(),
            s.b as u32,
            s.t as u32,
            s.h as u32,
            s.d as u32,
            e,
            c,
        )
    })?;
    let (qb, kb, vb, gb) = (
        Bf16Buf::round(q),
        Bf16Buf::round(k),
        Bf16Buf::round(v),
        Bf16Buf::round(dout),
    );
    let mp = mask.map_or(std::ptr::null(), |m| m.words.as_ptr());
    let null = std::ptr::null();
    let (fcp, flp, bcp, blp) = lists.as_ref().map_or((null, null, null, null), |l| {
        (
            l.fwd_count.as_ptr(),
            l.fwd_list.as_ptr(),
            l.bwd_count.as_ptr(),
            l.bwd_list.as_ptr(),
        )
    });
    let scale = 1.0 / (s.d as f32).sqrt();
    let scale_log2 = std::f32::consts::LOG2_E * scale;
    let atomic = (mode == BwdMode::Atomic) as i32;
    // SAFETY: operands and gradients hold B·T·H·D values, lse and di B·H·T (checked /
    // allocated); mask and lists as in the forward.
    run(|e, c| unsafe {
        ffi::asa_emu_attn_bwd_dkdv(
            s.d as u32,
            qb.ptr(),
            kb.ptr(),
            vb.ptr(),
            gb.ptr(),
            lse.as_ptr(),
            di.as_ptr(),
            dq.as_mut_ptr(),
            dk.as_mut_ptr(),
            dv.as_mut_ptr(),
            mp,
            bcp,
            blp,
            s.b as u32,
            s.t as u32,
            s.h as u32,
            heads as u32,
            scale_log2,
            scale,
            atomic,
            e,
            c,
        )
    })?;
    if mode == BwdMode::Deterministic {
        // SAFETY: as above; the dQ pass walks the forward lists.
        run(|e, c| unsafe {
            ffi::asa_emu_attn_bwd_dq(
                s.d as u32,
                qb.ptr(),
                kb.ptr(),
                vb.ptr(),
                gb.ptr(),
                lse.as_ptr(),
                di.as_ptr(),
                dq.as_mut_ptr(),
                mp,
                fcp,
                flp,
                s.b as u32,
                s.t as u32,
                s.h as u32,
                heads as u32,
                scale_log2,
                scale,
                e,
                c,
            )
        })?;
    }
    Ok(())
}

/// The emulated `attn_mma_probe` (one warp, one m16n8k16 bf16 mma on per-lane registers):
/// checks the C++ emulation's instruction against the Rust one
/// ([`super::mma_dense_emu::mma_m16n8k16`]), two encodings of the ISA's tables.
pub fn mma_probe(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> Result<[[f32; 4]; 32]> {
    let mut d = [[f32::NAN; 4]; 32];
    // SAFETY: the probe reads 32×4 u32 of a, 32×2 of b, 32×4 f32 of c and writes 32×4 of d.
    run(|e, cap| unsafe {
        ffi::asa_emu_attn_mma_probe(
            a.as_ptr().cast(),
            b.as_ptr().cast(),
            c.as_ptr().cast(),
            d.as_mut_ptr().cast(),
            e,
            cap,
        )
    })?;
    Ok(d)
}

/// Run a kernel whose `__syncthreads` only half the block reaches: the emulation's error (a
/// test of the emulation itself).
pub fn selftest_divergent_barrier() -> Result<()> {
    // SAFETY: no pointers but the error buffer.
    run(|e, c| unsafe { ffi::asa_emu_selftest_divergent_barrier(e, c) })
}

// ---------------------------------------------------------------------------------------------
// Top-k pruning and 2:4 selection: the kernels of kernels/topk.cu under the same driver as on a
// GPU (src/backend/cuda/topk.rs `prune_driver`).

/// A host array standing in for a device one; kernels write it through its address.
pub struct EmuBuf<T>(Box<[UnsafeCell<T>]>);

/// [`TopkDevice`] of the SIMT emulation: arrays in host memory, launches run the kernels'
/// source (by name) on the CPU. It reports 4 SMs, so the driver's grids have several blocks.
pub struct EmuTopk;

impl TopkDevice for EmuTopk {
    type Buf<T: TopkElem> = EmuBuf<T>;
    fn sms(&self) -> Result<u64> {
        Ok(4)
    }
    fn upload<T: TopkElem>(&self, v: &[T], _what: &str) -> Result<EmuBuf<T>> {
        Ok(EmuBuf(v.iter().map(|&x| UnsafeCell::new(x)).collect()))
    }
    fn zeros<T: TopkElem>(&self, n: usize, _what: &str) -> Result<EmuBuf<T>> {
        Ok(EmuBuf(
            (0..n).map(|_| UnsafeCell::new(T::default())).collect(),
        ))
    }
    fn download<T: TopkElem>(&self, b: &EmuBuf<T>, _what: &str) -> Result<Vec<T>> {
        // SAFETY: launches are synchronous, so no kernel writes the cells meanwhile.
        Ok(b.0.iter().map(|c| unsafe { *c.get() }).collect())
    }
    fn addr<T: TopkElem>(&self, b: &EmuBuf<T>) -> u64 {
        UnsafeCell::raw_get(b.0.as_ptr()) as u64
    }
    unsafe fn launch(&self, name: &str, grid: u32, params: &mut [*mut c_void]) -> Result<()> {
        let cname = CString::new(name)
            .map_err(|_| Error::Config(format!("kernel name {name:?} contains NUL")))?;
        // SAFETY: forwarded to the caller (params match the kernel, addresses valid).
        run(|e, c| unsafe {
            ffi::asa_emu_topk_launch(cname.as_ptr(), grid, params.as_mut_ptr(), e, c)
        })
    }
}

/// [`crate::sparse::prune`] with the GPU's algorithm: the same driver as
/// [`super::topk::prune_gpu`] running the emulated kernels. Same contract, masks, reports and
/// errors as the CPU path, which the tests hold it to.
pub fn prune<W: TopkWeight>(
    tensors: &mut [PruneTensor<'_, W>],
    fraction: f64,
    scope: PruneScope,
) -> Result<PruneReport> {
    check_fraction(fraction)?;
    for t in tensors.iter() {
        check_mask_len(t.name, t.weights.len(), t.mask.len())?;
    }
    let names: Vec<(String, usize)> = tensors
        .iter()
        .map(|t| (t.name.to_string(), t.weights.len()))
        .collect();
    let wptrs: Vec<u64> = tensors.iter().map(|t| t.weights.as_ptr() as u64).collect();
    let mptrs: Vec<u64> = tensors
        .iter_mut()
        .map(|t| t.mask.as_mut_ptr() as u64)
        .collect();
    let suffix = if W::KEY_BITS == 31 { "f32" } else { "16" };
    // The kernels read the weights and write the masks through these addresses; `tensors`
    // is borrowed mutably for the whole call, so nothing else touches them meanwhile.
    match prune_driver::<W, _>(&EmuTopk, &names, &wptrs, &mptrs, fraction, scope, suffix)? {
        Driven::Report(r) => Ok(r),
        Driven::Bad { tensor, index } => {
            let t = &tensors[tensor];
            Err(bad_element_error(
                t.name,
                index,
                t.mask[index],
                t.weights[index].to_f32(),
            ))
        }
    }
}

/// [`crate::sparse::two_four_mask`] by the emulated `two_four_f32` / `two_four_16` kernels,
/// launched as [`super::topk::two_four_mask_gpu`] launches them (grid-stride, 256 threads).
pub fn two_four_mask<W: TopkWeight>(
    name: &str,
    weights: &[W],
    rows: usize,
    k: usize,
    mask: &mut [f32],
) -> Result<()> {
    check_24_shape(name, weights.len(), mask.len(), rows, k)?;
    let groups = (weights.len() / 4) as u64;
    if groups == 0 {
        return Ok(());
    }
    // 16-byte aligned copies (the kernels load a group of 4 with one vector load).
    let wbytes = std::mem::size_of_val(weights);
    let mut wbuf = vec![0u128; wbytes.div_ceil(16)];
    // SAFETY: copies `wbytes` bytes of plain weight values into a buffer at least as long.
    unsafe {
        std::ptr::copy_nonoverlapping(
            weights.as_ptr().cast::<u8>(),
            wbuf.as_mut_ptr().cast::<u8>(),
            wbytes,
        )
    };
    let mut mbuf = vec![0u128; mask.len().div_ceil(4)];
    let bad = [UnsafeCell::new(u64::MAX)];
    let (kernel, mut nonfinite) = if W::KEY_BITS == 31 {
        ("two_four_f32", 0u32)
    } else {
        ("two_four_16", W::NONFINITE_KEY)
    };
    let mut p_w = wbuf.as_ptr() as u64;
    let mut p_m = mbuf.as_mut_ptr() as u64;
    let mut p_bad = UnsafeCell::raw_get(bad.as_ptr()) as u64;
    let mut groups_arg = groups;
    let arg = |x: &mut u64| x as *mut u64 as *mut c_void;
    let mut params: Vec<*mut c_void> = vec![arg(&mut p_w), arg(&mut p_m), arg(&mut groups_arg)];
    if kernel == "two_four_16" {
        params.push(&mut nonfinite as *mut u32 as *mut c_void);
    }
    params.push(arg(&mut p_bad));
    let grid = groups.div_ceil(TOPK_BLOCK as u64).clamp(1, 65_535) as u32;
    // SAFETY: matches two_four_f32(w, mask, u64 groups, bad) / two_four_16(w, mask, u64
    // groups, u32 nonfinite, bad); w and mask hold 4·groups elements in 16-byte aligned
    // buffers, bad one u64.
    unsafe { EmuTopk.launch(kernel, grid, &mut params) }?;
    // SAFETY: the launch has returned; nothing else writes `bad`.
    let bad = unsafe { *bad[0].get() };
    if bad != u64::MAX {
        let i = bad as usize;
        return Err(Error::NonFinite {
            tensor: name.to_string(),
            index: i,
            value: weights[i].to_f32(),
        });
    }
    // SAFETY: mbuf holds at least mask.len() f32 written by the kernel.
    let m: &[f32] = unsafe { std::slice::from_raw_parts(mbuf.as_ptr().cast::<f32>(), mask.len()) };
    mask.copy_from_slice(m);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tuned 2:4 GEMM kernels (kernels/gemm24.cu). Their mma.sp is computed by the Rust PTX-ISA
// emulator (src/sparse/mma_emu.rs), the same one the layout tests use.

type MmaSpFn =
    extern "C" fn(*const u32, *const u32, *const f32, *const u32, u32, u32, *mut f32) -> i32;

/// One warp's mma.sp for the emulation: `a`, `b`, `c`, `d` are 32 × 4 per-lane registers, `e`
/// the 32 metadata registers. Returns non-zero on an invalid metadata nibble (never unwinds).
extern "C" fn mma_sp_callback(
    a: *const u32,
    b: *const u32,
    c: *const f32,
    e: *const u32,
    sel: u32,
    bf16: u32,
    d: *mut f32,
) -> i32 {
    // SAFETY: the emulation passes arrays of exactly these shapes (kernels/simt_emu.cpp).
    let (a, b, c, e, d) = unsafe {
        (
            &*(a as *const Regs<u32, 4>),
            &*(b as *const Regs<u32, 4>),
            &*(c as *const Regs<f32, 4>),
            &*(e as *const [u32; 32]),
            &mut *(d as *mut Regs<f32, 4>),
        )
    };
    let bf = |x: u16| half::bf16::from_bits(x).to_f32();
    let hf = |x: u16| half::f16::from_bits(x).to_f32();
    let r = if bf16 != 0 {
        mma_emu::mma_sp_m16n8k32(a, b, c, e, (sel & 1) as usize, bf)
    } else {
        mma_emu::mma_sp_m16n8k32(a, b, c, e, (sel & 1) as usize, hf)
    };
    match r {
        Ok(out) => {
            *d = out;
            0
        }
        Err(_) => 1,
    }
}

/// `v` copied into 16-byte aligned storage (the kernels' cp.async sources and vector stores
/// need it); `.as_ptr()` of the result addresses the first element.
fn aligned<T: Copy>(v: &[T]) -> Vec<u128> {
    let bytes = std::mem::size_of_val(v);
    let mut out = vec![0u128; bytes.div_ceil(16).max(1)];
    // SAFETY: copies `bytes` bytes of plain values into a buffer at least that long.
    unsafe {
        std::ptr::copy_nonoverlapping(
            v.as_ptr().cast::<u8>(),
            out.as_mut_ptr().cast::<u8>(),
            bytes,
        )
    };
    out
}

/// `y (M × N) = x (M × K, 16-bit bits) · Wᵀ + bias`, GELU when `gelu`, by the emulated tuned
/// kernels exactly as [`super::gemm24::launch_gemm24`] launches them for `plan` (tile
/// configuration, grid, shared memory, split-K and its reduce kernel). `values` and `meta` are
/// the device layout of the 2:4 weight (`DeviceSparse24::upload`'s words).
#[allow(clippy::too_many_arguments)]
pub fn gemm24(
    dtype: Half,
    y: &mut [f32],
    x: &[u16],
    values: &[u32],
    meta: &[u32],
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
    gelu: bool,
    m: usize,
    plan: Gemm24Plan,
) -> Result<()> {
    const OP: &str = "emulated gemm24";
    let shp = || format!("M={m} N={n} K={k}");
    check_len(OP, "x", x.len(), m * k, shp)?;
    check_len(OP, "y", y.len(), m * n, shp)?;
    check_len(OP, "values", values.len(), n * k / 4, shp)?;
    check_len(
        OP,
        "meta",
        meta.len(),
        n / 16 * (k / 32).div_ceil(2) * 32,
        shp,
    )?;
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), n, shp)?;
    }
    if !n.is_multiple_of(16) || !k.is_multiple_of(32) || k == 0 || plan.splits == 0 {
        return Err(Error::Config(format!(
            "{OP}: needs N % 16 == 0, K % 32 == 0, splits ≥ 1 ({})",
            shp()
        )));
    }
    if m == 0 {
        return Ok(());
    }
    // SAFETY: registers a function with the signature the emulation calls.
    unsafe { ffi::asa_emu_set_mma_sp(mma_sp_callback) };
    let g = plan.config.geometry();
    let (xb, vb, mb) = (aligned(x), aligned(values), aligned(meta));
    let bb = bias.map(aligned);
    let mut yb = vec![0u128; (m * n).div_ceil(4)];
    let mut wsb = vec![0u128; plan.workspace_len(m, n).div_ceil(4).max(1)];
    let mut xp = xb.as_ptr() as u64;
    let mut vp = vb.as_ptr() as u64;
    let mut mp = mb.as_ptr() as u64;
    let mut bp = bb.as_ref().map_or(0, |b| b.as_ptr() as u64);
    let mut yp = yb.as_mut_ptr() as u64;
    let mut wsp = if plan.splits > 1 {
        wsb.as_mut_ptr() as u64
    } else {
        0
    };
    let (mut mi, mut ni, mut ki, mut gi) = (m as i32, n as i32, k as i32, gelu as i32);
    let p = |x: &mut u64| x as *mut u64 as *mut c_void;
    let q = |x: &mut i32| x as *mut i32 as *mut c_void;
    let mut params = [
        p(&mut xp),
        p(&mut vp),
        p(&mut mp),
        p(&mut bp),
        p(&mut yp),
        p(&mut wsp),
        q(&mut mi),
        q(&mut ni),
        q(&mut ki),
        q(&mut gi),
    ];
    let name = CString::new(plan.config.kernel(dtype)).expect("kernel names have no NUL");
    let grid = (
        n.div_ceil(g.bm) as u32,
        m.div_ceil(g.bn) as u32,
        plan.splits as u32,
    );
    // SAFETY: the 10 parameters match the tuned kernels' signature; every buffer holds what
    // (M, N, K) and the plan need (checked / allocated), 16-byte aligned.
    run(|e, c| unsafe {
        ffi::asa_emu_gemm24_launch(
            name.as_ptr(),
            grid.0,
            grid.1,
            grid.2,
            g.threads as u32,
            g.smem as u32,
            params.as_mut_ptr(),
            e,
            c,
        )
    })?;
    if plan.splits > 1 {
        let mut sp = plan.splits as i32;
        let mut rp = [
            p(&mut wsp),
            q(&mut sp),
            p(&mut bp),
            p(&mut yp),
            q(&mut mi),
            q(&mut ni),
            q(&mut gi),
        ];
        let blocks = (m * n / 4).div_ceil(256).clamp(1, 65_535) as u32;
        let name = CString::new("gemm24_splitk_reduce").expect("no NUL");
        // SAFETY: matches gemm24_splitk_reduce(ws, splits, bias, y, M, N, gelu); ws holds
        // splits·M·N f32, y M·N.
        run(|e, c| unsafe {
            ffi::asa_emu_gemm24_launch(name.as_ptr(), blocks, 1, 1, 256, 0, rp.as_mut_ptr(), e, c)
        })?;
    }
    // SAFETY: yb holds at least M·N f32 written by the kernels.
    let out: &[f32] = unsafe { std::slice::from_raw_parts(yb.as_ptr().cast::<f32>(), m * n) };
    y.copy_from_slice(out);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The fused LM head: kernels/lm_head.cu with the launches of the CUDA backend's `lm_head_xent`.

/// [`crate::backend::Ops::lm_head_xent`] computed by the kernels of `kernels/lm_head.cu` run
/// in the emulation (same contract, checks and grids as the CUDA backend's).
#[allow(clippy::too_many_arguments)]
pub fn lm_head_xent(
    losses: &mut [f32],
    lse: &mut [f32],
    grads: Option<(&mut [f32], &mut [f32])>,
    x: &[f32],
    weight: &[f32],
    targets: &[u32],
    dloss: f32,
    n: usize,
    c: usize,
    v: usize,
) -> Result<()> {
    crate::backend::cpu::lm_head::check_host(
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
    let (nu, cu, vu) = crate::backend::lm_head_grid_dims(n, c, v)?;
    if n > 0 {
        // SAFETY: the kernels read x (n·c), weight (v·c), targets (n) and write losses and lse
        // (n), all of those lengths (checked above); launches are serialised by the emulation.
        run(|e, cap| unsafe {
            ffi::asa_emu_lm_head_fwd(
                losses.as_mut_ptr(),
                lse.as_mut_ptr(),
                x.as_ptr(),
                weight.as_ptr(),
                targets.as_ptr(),
                nu,
                cu,
                vu,
                e,
                cap,
            )
        })?;
    }
    if let Some((dx, dw)) = grads {
        // SAFETY: as above, plus dx (n·c) and dw (v·c) written, lse (n) read (checked above).
        run(|e, cap| unsafe {
            ffi::asa_emu_lm_head_bwd(
                dx.as_mut_ptr(),
                dw.as_mut_ptr(),
                x.as_ptr(),
                weight.as_ptr(),
                lse.as_ptr(),
                targets.as_ptr(),
                dloss,
                nu,
                cu,
                vu,
                e,
                cap,
            )
        })?;
    }
    Ok(())
}
