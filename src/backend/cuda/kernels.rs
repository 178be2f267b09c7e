//! The embedded kernel fatbin, loaded as one CUDA module, and launchers for its kernels.
//!
//! cudarc's safe `CudaContext::load_module` needs its `nvrtc` feature, which this crate does not
//! enable, so the module is loaded and launched through cudarc's thin `result` layer; device
//! memory is still cudarc's `CudaSlice`, so stream ordering follows cudarc's rules.

use std::ffi::{c_void, CString};
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::{drv, host, KERNELS_FATBIN};
use crate::backend::AdamWStep;
use crate::error::check_len;
use crate::{Error, Result};

/// Threads per block of the elementwise grid-stride kernels (`ASA_ELEMENTWISE_BLOCK` in
/// kernels/common.cuh).
pub const ELEMENTWISE_BLOCK: u32 = 256;
/// Default cap on the grid of elementwise kernels (they loop, so any grid is correct).
pub const ELEMENTWISE_MAX_BLOCKS: u32 = 8192;

/// The fatbin loaded into one context. Unloaded on drop.
pub struct KernelModule {
    ctx: Arc<CudaContext>,
    module: sys::CUmodule,
}

// SAFETY: a CUmodule handle is a context-wide object, valid from any thread while its context
// lives (we hold an Arc to it); every use below binds the context to the calling thread first.
unsafe impl Send for KernelModule {}
// SAFETY: as above; the driver's module functions are thread-safe and we never mutate `self`.
unsafe impl Sync for KernelModule {}

impl KernelModule {
    /// Load the embedded fatbin into `ctx`. Fails when the crate was built without kernels, or
    /// when the driver cannot load it (e.g. a driver older than the toolkit that built it;
    /// `probe()` explains which).
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let image = KERNELS_FATBIN.ok_or_else(|| {
            Error::Device(
                "built without CUDA kernels (nvcc was not found at build time; \
                 see `asa-lth info`)"
                    .into(),
            )
        })?;
        ctx.bind_to_thread().map_err(|e| drv("bind context", e))?;
        // SAFETY: `image` is a complete fatbin produced by nvcc, 64-byte aligned (see
        // `KERNELS_FATBIN`), and 'static, so it outlives the call (the driver copies it).
        let module = unsafe { result::module::load_data(image.as_ptr() as *const c_void) }
            .map_err(|e| drv("cuModuleLoadData(kernels.fatbin)", e))?;
        Ok(Self {
            ctx: ctx.clone(),
            module,
        })
    }

    /// The context the module lives in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// A kernel by its `extern "C"` name.
    pub fn function(&self, name: &str) -> Result<sys::CUfunction> {
        let cname = CString::new(name).map_err(|_| Error::Device(format!("bad name {name:?}")))?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| drv("bind context", e))?;
        // SAFETY: `self.module` is a loaded module that is unloaded only in Drop.
        unsafe { result::module::get_function(self.module, cname) }
            .map_err(|e| drv(&format!("kernel `{name}` not in kernels.fatbin"), e))
    }
}

impl Drop for KernelModule {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: loaded in `load`, unloaded exactly once here. Errors cannot be reported
            // from drop and leave nothing to clean up.
            let _ = unsafe { result::module::unload(self.module) };
        }
    }
}

/// Launch kernel `name` of `module` on `stream` with the given grid and block shapes; every
/// launcher goes through here (bind the context, launch, name the kernel in the error).
///
/// # Safety
/// `params` must match the kernel's parameter list in number, order and size, every pointer
/// among them must be valid for what the kernel does with it given the other arguments, and
/// the pointed-to buffers must stay alive and unused by other streams until the launch is
/// ordered before their next use.
pub unsafe fn launch(
    module: &KernelModule,
    stream: &CudaStream,
    name: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    params: &mut [*mut c_void],
) -> Result<()> {
    // SAFETY: forwarded to the caller (see the contract above); no dynamic shared memory.
    unsafe { launch_smem(module, stream, name, grid, block, 0, params) }
}

/// A kernel parameter for [`launch`]: a pointer to the local that holds the argument's value.
macro_rules! arg {
    ($x:expr) => {
        (&mut $x) as *mut _ as *mut std::ffi::c_void
    };
}
pub(crate) use arg;

/// The dynamic shared memory a kernel may use without opting in (48 KiB on every arch).
pub const DEFAULT_SMEM_LIMIT: u32 = 48 * 1024;

/// [`launch`] with `smem` bytes of dynamic shared memory, first raising the function's opt-in
/// limit when `smem` exceeds [`DEFAULT_SMEM_LIMIT`] (a device without that much fails here
/// with the kernel named, not at launch).
///
/// # Safety
/// As [`launch`].
pub unsafe fn launch_smem(
    module: &KernelModule,
    stream: &CudaStream,
    name: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem: u32,
    params: &mut [*mut c_void],
) -> Result<()> {
    let func = module.function(name)?;
    module
        .context()
        .bind_to_thread()
        .map_err(|e| drv("bind context", e))?;
    if smem > DEFAULT_SMEM_LIMIT {
        // SAFETY: `func` is a live function of `module`; the attribute takes a byte count.
        unsafe {
            result::function::set_function_attribute(
                func,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
        }
        .map_err(|e| drv(&format!("{name}: allow {smem} B of shared memory"), e))?;
    }
    // SAFETY: forwarded to the caller; the driver copies the parameter values at enqueue.
    unsafe { result::launch_kernel(func, grid, block, smem, stream.cu_stream(), params) }
        .map_err(|e| drv(&format!("launch {name}"), e))
}

/// Blocks for `n` elements of a grid-stride kernel, at most `cap` (and at least 1).
pub fn elementwise_grid(n: usize, cap: u32) -> u32 {
    let blocks = n.div_ceil(ELEMENTWISE_BLOCK as usize).max(1);
    blocks.min(cap.max(1) as usize) as u32
}

/// One AdamW step on the GPU (`kernels/adamw.cu`, contract of `Ops::adamw`): updates `p`, `m`,
/// `v` in place on `stream`. `max_blocks` caps the grid (None: [`ELEMENTWISE_MAX_BLOCKS`]).
#[allow(clippy::too_many_arguments)]
pub fn launch_adamw_f32(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    p: &mut CudaSlice<f32>,
    g: &CudaSlice<f32>,
    m: &mut CudaSlice<f32>,
    v: &mut CudaSlice<f32>,
    mask: Option<&CudaSlice<f32>>,
    hp: &AdamWStep,
    max_blocks: Option<u32>,
) -> Result<()> {
    const OP: &str = "cuda adamw_f32";
    let n = p.len();
    let shape = || format!("n={n}");
    check_len(OP, "grad", g.len(), n, shape)?;
    check_len(OP, "m", m.len(), n, shape)?;
    check_len(OP, "v", v.len(), n, shape)?;
    if let Some(mk) = mask {
        check_len(OP, "mask", mk.len(), n, shape)?;
    }
    if n == 0 {
        return Ok(());
    }
    let bc1 = host::adamw_bias_correction(hp.beta1, hp.t);
    let bc2 = host::adamw_bias_correction(hp.beta2, hp.t);

    // The guards make `stream` wait for earlier work on each buffer and record this use.
    let (mut pp, _gp) = p.device_ptr_mut(stream);
    let (mut gp, _gg) = g.device_ptr(stream);
    let (mut mp, _gm) = m.device_ptr_mut(stream);
    let (mut vp, _gv) = v.device_ptr_mut(stream);
    let mask_guard = mask.map(|mk| mk.device_ptr(stream));
    let mut kp: sys::CUdeviceptr = mask_guard.as_ref().map_or(0, |(ptr, _)| *ptr);
    let mut n_arg: usize = n;
    let (mut lr, mut b1, mut b2, mut eps, mut wd, mut gs, mut c1, mut c2) = (
        hp.lr,
        hp.beta1,
        hp.beta2,
        hp.eps,
        hp.weight_decay,
        hp.grad_scale,
        bc1,
        bc2,
    );
    let mut params: [*mut c_void; 14] = [
        (&mut pp) as *mut _ as *mut c_void,
        (&mut gp) as *mut _ as *mut c_void,
        (&mut mp) as *mut _ as *mut c_void,
        (&mut vp) as *mut _ as *mut c_void,
        (&mut kp) as *mut _ as *mut c_void,
        (&mut n_arg) as *mut _ as *mut c_void,
        (&mut lr) as *mut _ as *mut c_void,
        (&mut b1) as *mut _ as *mut c_void,
        (&mut b2) as *mut _ as *mut c_void,
        (&mut eps) as *mut _ as *mut c_void,
        (&mut wd) as *mut _ as *mut c_void,
        (&mut gs) as *mut _ as *mut c_void,
        (&mut c1) as *mut _ as *mut c_void,
        (&mut c2) as *mut _ as *mut c_void,
    ];
    let grid = elementwise_grid(n, max_blocks.unwrap_or(ELEMENTWISE_MAX_BLOCKS));
    // SAFETY: the 14 parameters match the kernel's signature in order and size: five device
    // pointers (u64; the mask may be 0 = nullptr), size_t n (usize), eight f32. Every buffer
    // holds `n` f32 (checked above), the kernel touches indices < n only, and the pointer
    // guards keep the buffers alive and ordered on `stream`.
    unsafe {
        launch(
            module,
            stream,
            "adamw_f32",
            (grid, 1, 1),
            (ELEMENTWISE_BLOCK, 1, 1),
            &mut params,
        )
    }?;
    Ok(())
}
