//! [`CudaOps`]: the [`Ops`] interface on an NVIDIA GPU (issue 6), in the manner of llm.c —
//! one hand-written kernel family per op (kernels/*.cu), matmuls through cuBLASLt with bf16
//! operands and f32 accumulation, f32 master weights and optimizer state. The CPU backend
//! ([`crate::backend::cpu::Cpu`]) is the oracle: every op here has the same contract, the same
//! shape checks in the same order, and the same error messages.
//!
//! Execution model: one context, one non-blocking stream, everything enqueued on it in call
//! order, so no op needs a barrier with another. cudarc's per-buffer event tracking (meant for
//! multi-stream use) is switched off for this context before any buffer exists; with a single
//! stream it would only add driver calls. Calls return once their work is *enqueued*; only
//! [`Ops::download`], [`Ops::sum_squares`] (and `sum_squares_many`, once for all its buffers),
//! [`Ops::compress24`] and
//! [`CudaOps::synchronize`] wait for the device, and they surface asynchronous errors.
//!
//! Index buffers ([`CudaIdx`]) remember the largest id they hold, computed on the host when
//! they are uploaded or written (the only ways the interface changes them), so token and
//! target ids are validated before launch without reading the device back.
//!
//! Kernels (one fatbin, [`super::KERNELS_FATBIN`]): encoder.cu, layernorm.cu, gelu.cu,
//! classifier.cu, reduce.cu, cast.cu, attention_ref.cu, gemm_ref.cu (the matmul fallback when
//! cuBLASLt is missing or has no algorithm for a shape), adamw.cu, gemm24.cu.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{result, sys, CudaContext, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::attention;
use super::blas::{self, BlasLt, ColMajorGemm, GemmKind, Operand};
use super::gemm24::{launch_gemm24, DeviceSparse24, Gemm24Plan, Half};
use super::kernels::{elementwise_grid, launch_adamw_f32, KernelModule, ELEMENTWISE_BLOCK};
use super::memory::{alloc, Charge, DeviceBuffer, MemLedger};
use super::timing::GpuTimer;
use super::{drv, kernels_built, libcuda_present};
use crate::backend::shapes;
use crate::backend::GradWrite;
use crate::backend::{
    AdamWStep, AttnShape, MaskRef, MatmulShape, MemoryReport, Ops, Timer, IGNORE_INDEX,
};
use crate::error::check_len;
use crate::sparse::Sparse24;
use crate::{Error, Result};

/// Grid cap for the grid-stride elementwise kernels.
const MAX_BLOCKS: u32 = super::kernels::ELEMENTWISE_MAX_BLOCKS;
/// Threads per block of layernorm (`ASA_LN_BLOCK`): one warp per row, 8 rows per block.
pub const LN_BLOCK: u32 = 256;
/// Threads per block of the classifier (`ASA_XENT_BLOCK`).
pub const XENT_BLOCK: u32 = 256;
/// Threads per block of the fused LM head (`ASA_HEAD_THREADS`).
const HEAD_BLOCK: u32 = 256;
/// Threads per block of `encoder_bwd_wte_f32` (`ASA_EMBED_BLOCK`).
pub const EMBED_BLOCK: u32 = 256;
/// Threads per block of the sum-of-squares passes (`ASA_SUMSQ_BLOCK`).
pub const SUMSQ_BLOCK: u32 = 256;
/// Grid cap of `sum_squares_partial_f64` (its grid depends only on n, for determinism).
pub const SUMSQ_MAX_BLOCKS: u32 = 1024;
/// Threads per block of the fallback GEMM (`ASA_GEMM_REF_BLOCK`, 16×16 tile).
pub const GEMM_REF_BLOCK: u32 = 256;
/// Threads per block of the reference attention kernels (`ASA_ATT_REF_BLOCK`).
pub const ATT_REF_BLOCK: u32 = 128;
/// Dynamic shared memory the reference attention kernels may use: the 48 KiB every sm_80+
/// device gives without opt-in, less room for the kernels' static reduction scratch.
pub const ATT_REF_MAX_SMEM: usize = 48 * 1024 - 1024;

/// `(rows_per_chunk, chunks)` of the two-pass column sums (colsum_partial_f32,
/// layernorm_bwd_dwdb_partial_f32): at least 16 rows per chunk and at most 4096 chunks (the
/// grid's y extent), depending on `rows` only so results are reproducible.
pub fn colsum_plan(rows: usize) -> (usize, usize) {
    let rpc = rows.div_ceil(4096).max(16);
    (rpc, rows.div_ceil(rpc))
}

/// Blocks of `sum_squares_partial_f64` for `n` elements (depends on `n` only).
pub fn sumsq_grid(n: usize) -> u32 {
    n.div_ceil(SUMSQ_BLOCK as usize)
        .clamp(1, SUMSQ_MAX_BLOCKS as usize) as u32
}

/// Dynamic shared memory bytes of the reference attention kernels `(fwd, bwd_q, bwd_kv)`.
pub fn attn_ref_smem(t: usize, d: usize) -> (usize, usize, usize) {
    let f = std::mem::size_of::<f32>();
    ((t + d) * f, (t + 2 * d) * f, (2 * t + 2 * d) * f)
}

/// An f32 tensor on the GPU.
pub type CudaBuf = DeviceBuffer<f32>;

/// A u32 tensor on the GPU (token ids, targets, mask words) and the host-side statistics of
/// what was last uploaded into it.
#[derive(Debug)]
pub struct CudaIdx {
    buf: DeviceBuffer<u32>,
    /// A stamp unique to the current contents: every upload and every write takes a fresh one
    /// (the buffer is never written otherwise), so data derived from a mask — the fused
    /// attention's tile lists — can be cached by it.
    version: u64,
    /// Largest value (None when empty).
    max: Option<u32>,
    /// Largest value other than [`IGNORE_INDEX`] (None when there is none).
    max_scored: Option<u32>,
}

/// Source of [`CudaIdx::version`] stamps (process-wide, so no two contents share one).
static IDX_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_idx_version() -> u64 {
    IDX_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// The tile lists of the last mask the fused attention saw, with what identifies it: one
/// training step builds them once and every layer's forward and backward reuses them.
struct CachedTiles {
    version: u64,
    per_head: bool,
    b: usize,
    t: usize,
    heads: usize,
    tiles: Arc<attention::AttnTiles>,
    /// The ledger's charge for the lists, held as long as they are cached.
    _charge: Charge,
}

impl CudaIdx {
    /// The device buffer.
    pub fn buffer(&self) -> &DeviceBuffer<u32> {
        &self.buf
    }
    fn set_stats(&mut self, host: &[u32]) {
        self.max = host.iter().copied().max();
        self.max_scored = host.iter().copied().filter(|&x| x != IGNORE_INDEX).max();
    }
}

/// A 2:4-compressed weight on the GPU: on the `mma.sp` path (N % 16 == 0, K % 32 == 0) the
/// reordered compressed form; otherwise the pruned matrix densely, multiplied through the
/// cuBLASLt path (same contract, no sparse speed-up).
pub struct CudaSparse24 {
    n: usize,
    k: usize,
    repr: Sparse24Repr,
}

enum Sparse24Repr {
    Mma(DeviceSparse24, Charge),
    Dense(CudaBuf),
}

impl CudaSparse24 {
    /// `(N, K)` of the dense weight.
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }
    /// Whether the forward runs on the sparse tensor cores (`mma.sp`).
    pub fn uses_mma_sp(&self) -> bool {
        matches!(self.repr, Sparse24Repr::Mma(..))
    }
    /// Device bytes this weight occupies (compressed values and metadata, or the dense copy).
    pub fn device_bytes(&self) -> usize {
        match &self.repr {
            Sparse24Repr::Mma(_, charge) => charge.bytes(),
            Sparse24Repr::Dense(b) => b.bytes(),
        }
    }
}

/// One kernel argument, passed to the driver by address (every parameter of our kernels is a
/// device pointer, size_t, u32, i32 or f32).
#[derive(Clone, Copy, Debug)]
enum KArg {
    Ptr(sys::CUdeviceptr),
    Size(usize),
    U32(u32),
    I32(i32),
    F32(f32),
}

/// A cached kernel handle.
#[derive(Clone, Copy)]
struct Func(sys::CUfunction);
// SAFETY: a CUfunction is a context-wide handle valid on any thread while its module is
// loaded (the module outlives the cache: both live in CudaOps).
unsafe impl Send for Func {}

/// Grow-only scratch buffers (operands cast to bf16, GEMM temporaries, reduction partials).
/// Reuse is safe because every user is on the one stream: a later op's writes are ordered
/// after an earlier op's reads, and a buffer replaced by a larger one is freed stream-ordered.
#[derive(Default)]
struct Scratch {
    x16: Option<DeviceBuffer<u16>>,
    w16: Option<DeviceBuffer<u16>>,
    g16: Option<DeviceBuffer<u16>>,
    f32a: Option<DeviceBuffer<f32>>,
    f32b: Option<DeviceBuffer<f32>>,
    f64a: Option<DeviceBuffer<f64>>,
}

fn grow<T: DeviceRepr>(
    slot: &mut Option<DeviceBuffer<T>>,
    n: usize,
    stream: &Arc<CudaStream>,
    ledger: &Arc<MemLedger>,
    what: &str,
) -> Result<sys::CUdeviceptr> {
    if slot.as_ref().is_none_or(|b| b.len() < n) {
        *slot = None; // free first, so the peak is not old + new
        *slot = Some(alloc::<T>(stream, ledger, n, what)?);
    }
    let b = slot
        .as_ref()
        .ok_or_else(|| Error::Device(format!("scratch for {what} missing")))?;
    Ok(dptr(b, stream))
}

/// The device address of `b`. Event tracking is off for the backend's context (module docs),
/// so the cudarc guard is a no-op and may be dropped at once.
fn dptr<T>(b: &DeviceBuffer<T>, stream: &CudaStream) -> sys::CUdeviceptr {
    let (p, _guard) = b.slice().device_ptr(stream);
    p
}

fn dptr_mut<T>(b: &mut DeviceBuffer<T>, stream: &CudaStream) -> sys::CUdeviceptr {
    let (p, _guard) = b.slice_mut().device_ptr_mut(stream);
    p
}

fn to_u32(op: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Config(format!(
            "{op}: {what} = {v} exceeds the CUDA kernels' 32-bit index range"
        ))
    })
}

/// Grid extent for one block per item (x dimension, < 2^31).
fn grid_x(op: &str, what: &str, v: usize) -> Result<u32> {
    if v > i32::MAX as usize {
        return Err(Error::Config(format!(
            "{op}: {what} = {v} exceeds the CUDA grid limit (2^31 - 1 blocks)"
        )));
    }
    Ok(v as u32)
}

/// Validate the mask's length (the CPU twin's message) and return its device pointer (0 when
/// absent) and the per-head flag.
fn attn_mask(
    op: &'static str,
    mask: Option<MaskRef<'_, CudaIdx>>,
    s: &AttnShape,
    stream: &CudaStream,
) -> Result<(sys::CUdeviceptr, i32)> {
    let Some(m) = mask else { return Ok((0, 0)) };
    let heads = if m.per_head { s.h } else { 1 };
    let wpr = s.mask_words();
    let expected =
        s.b.checked_mul(heads)
            .and_then(|x| x.checked_mul(s.t))
            .and_then(|x| x.checked_mul(wpr));
    let got = m.bits.buf.len();
    if expected != Some(got) {
        return Err(Error::Mask(format!(
            "{op}: for T = {t} ({wpr} u32 words per row), B = {b} and {heads} mask head(s) \
             ({kind}) expected {b}×{heads}×{t}×{wpr} = {exp} words, got {got}",
            t = s.t,
            b = s.b,
            kind = if m.per_head { "per-head" } else { "shared" },
            exp = expected.map_or_else(|| "(overflow)".to_string(), |e| e.to_string()),
        )));
    }
    Ok((dptr(&m.bits.buf, stream), m.per_head as i32))
}

/// The CUDA device behind the [`Ops`] interface. See the module docs.
pub struct CudaOps {
    // Field order is drop order: scratch and plans go before the module and the stream.
    scratch: Mutex<Scratch>,
    /// cuBLASLt, or `None` when libcublasLt is not installed (gemm_bf16_f32_ref then runs).
    blas: Option<BlasLt>,
    /// Whether matmuls may use cuBLASLt (tests switch it off to exercise the fallback).
    use_blas: AtomicBool,
    /// Whether attention may use the fused mma.sync kernels (attention.rs; head dims 64 and
    /// 128) instead of the reference kernels (attention_ref.cu).
    use_fused_attention: AtomicBool,
    /// Fused backward without atomics (bit-reproducible) rather than atomicAdd on dQ.
    deterministic_attention: AtomicBool,
    /// Tile lists of the last attention mask (see [`CachedTiles`]).
    attn_tiles: Mutex<Option<CachedTiles>>,
    funcs: Mutex<HashMap<&'static str, Func>>,
    module: KernelModule,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    ledger: Arc<MemLedger>,
    ordinal: usize,
    name: String,
    cc: (i32, i32),
}

impl CudaOps {
    /// Open GPU `ordinal`: checks that the driver library is present and the crate was built
    /// with kernels, creates the context and a stream, loads the kernels and (when
    /// libcublasLt is installed) a cuBLASLt handle; without it the matmuls run on the
    /// fallback kernel ([`gemm_backend`](Self::gemm_backend) says which). Every failure is an [`Error::Device`] saying why (never a panic), so callers
    /// such as `--device auto` can fall back to the CPU with a one-line reason.
    pub fn new(ordinal: usize) -> Result<Self> {
        let mut missing = Vec::new();
        if !libcuda_present() {
            missing.push("libcuda not found (no NVIDIA driver on this machine)");
        }
        if !kernels_built() {
            missing.push(
                "built without CUDA kernels (nvcc was not found at build time; set NVCC or \
                 CUDA_HOME and rebuild)",
            );
        }
        if !missing.is_empty() {
            return Err(Error::Device(format!(
                "cuda:{ordinal} unavailable: {}",
                missing.join("; ")
            )));
        }
        // cudarc resolves driver symbols lazily and panics on a missing one (a very old or
        // broken libcuda); report that as an error like `probe()` does.
        std::panic::catch_unwind(|| Self::open(ordinal)).unwrap_or_else(|_| {
            Err(Error::Device(format!(
                "cuda:{ordinal}: the CUDA driver or cuBLASLt library is missing an expected \
                 entry point (too old?)"
            )))
        })
    }

    fn open(ordinal: usize) -> Result<Self> {
        result::init().map_err(|e| drv("cuInit", e))?;
        let count = result::device::get_count().map_err(|e| drv("cuDeviceGetCount", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Device(format!(
                "cuda:{ordinal} requested but the driver reports {count} device(s)"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| drv("create CUDA context", e))?;
        // SAFETY: no CudaSlice of this context object exists yet, and every buffer created
        // from here on is used only on `stream` below, so per-buffer events are unnecessary.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| drv("create CUDA stream", e))?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| drv("query compute capability", e))?;
        let name = ctx.name().map_err(|e| drv("query device name", e))?;
        if cc.0 < 8 {
            return Err(Error::Device(format!(
                "cuda:{ordinal} ({name}) is sm_{}{}: the kernels need sm_80 or newer",
                cc.0, cc.1
            )));
        }
        let module = KernelModule::load(&ctx)?;
        let ledger = Arc::new(MemLedger::default());
        // Without libcublasLt the matmuls run on the plain tiled fallback kernel (correct,
        // much slower); a present library that fails to initialise is a real error.
        let blas = if BlasLt::library_present() {
            Some(BlasLt::new(&stream, &ledger, cc.0)?)
        } else {
            None
        };
        Ok(CudaOps {
            scratch: Mutex::new(Scratch::default()),
            blas,
            use_blas: AtomicBool::new(true),
            use_fused_attention: AtomicBool::new(true),
            deterministic_attention: AtomicBool::new(true),
            attn_tiles: Mutex::new(None),
            funcs: Mutex::new(HashMap::new()),
            module,
            stream,
            ctx,
            ledger,
            ordinal,
            name,
            cc,
        })
    }

    /// The stream every op is enqueued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    /// The loaded kernel module (for launchers outside the Ops interface, e.g. top-k).
    pub fn module(&self) -> &KernelModule {
        &self.module
    }
    /// Device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    /// Device name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.name
    }
    /// Compute capability `(major, minor)`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }
    /// The memory accountant (current/peak bytes, OOM context text).
    pub fn ledger(&self) -> &Arc<MemLedger> {
        &self.ledger
    }
    /// Bytes of device memory held through this backend now.
    pub fn current_bytes(&self) -> usize {
        self.ledger.current_bytes()
    }
    /// The most device memory held at once through this backend.
    pub fn peak_bytes(&self) -> usize {
        self.ledger.peak_bytes()
    }
    /// `(free, total)` device memory in bytes, as the driver reports it (`cuMemGetInfo`).
    pub fn mem_get_info(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().map_err(|e| drv("cuMemGetInfo", e))
    }
    /// A CUDA-event timer on this backend's stream.
    pub fn timer(&self) -> Result<GpuTimer> {
        GpuTimer::new(&self.stream)
    }

    /// Whether matmuls go through cuBLASLt (`"cublaslt"`) or the fallback kernel
    /// (`"gemm_bf16_f32_ref"`, when libcublasLt is missing or switched off).
    pub fn gemm_backend(&self) -> &'static str {
        if self.blas.is_some() && self.use_blas.load(Ordering::Relaxed) {
            "cublaslt"
        } else {
            "gemm_bf16_f32_ref"
        }
    }

    /// Which attention kernels run at shape `s`: `"fused"` (mma.sync flash attention, head
    /// dims 64 and 128) or `"reference"` (attention_ref.cu, any head dim).
    pub fn attention_backend(&self, s: &AttnShape) -> &'static str {
        if self.use_fused_attention.load(Ordering::Relaxed) && attention::plan(s).is_ok() {
            "fused"
        } else {
            "reference"
        }
    }

    /// Let attention use the fused kernels where they apply (default) or force the reference
    /// kernels (the materialised-path comparison of issue 9).
    pub fn set_fused_attention(&self, on: bool) {
        self.use_fused_attention.store(on, Ordering::Relaxed);
    }

    /// Fused backward mode: deterministic (default; no atomics, bit-reproducible) or the
    /// faster atomicAdd on dQ.
    pub fn set_deterministic_attention(&self, on: bool) {
        self.deterministic_attention.store(on, Ordering::Relaxed);
    }

    /// Device tile lists of `mask` for the fused kernels, with the ledger charged for them.
    /// The device tile lists of `mask` for shape `s`: cached by the mask's contents stamp, so
    /// they are built once per mask however many layers and passes use it.
    fn fused_tiles(
        &self,
        mask: Option<MaskRef<'_, CudaIdx>>,
        s: AttnShape,
    ) -> Result<Option<Arc<attention::AttnTiles>>> {
        let Some(m) = mask else { return Ok(None) };
        let heads = if m.per_head { s.h } else { 1 };
        let mut cache = self
            .attn_tiles
            .lock()
            .map_err(|_| Error::Device("attention tile cache poisoned by a panic".into()))?;
        if let Some(c) = cache.as_ref() {
            if (c.version, c.per_head, c.b, c.t, c.heads)
                == (m.bits.version, m.per_head, s.b, s.t, heads)
            {
                return Ok(Some(c.tiles.clone()));
            }
        }
        *cache = None; // release the old lists before building new ones
        let tiles = Arc::new(attention::build_tiles(
            &self.module,
            &self.stream,
            MaskRef {
                bits: m.bits.buf.slice(),
                per_head: m.per_head,
            },
            s,
        )?);
        // classes (u8) and both lists (u32) hold groups·nt² entries, the counts groups·nt.
        let slots = tiles.b * tiles.heads * tiles.nt * tiles.nt;
        let bytes = slots * (1 + 2 * 4) + 2 * 4 * tiles.b * tiles.heads * tiles.nt;
        *cache = Some(CachedTiles {
            version: m.bits.version,
            per_head: m.per_head,
            b: s.b,
            t: s.t,
            heads,
            tiles: tiles.clone(),
            _charge: Charge::new(&self.ledger, bytes),
        });
        Ok(Some(tiles))
    }

    /// Let matmuls use cuBLASLt (default) or force the fallback kernel (for tests and for
    /// comparing the two).
    pub fn set_use_cublaslt(&self, on: bool) {
        self.use_blas.store(on, Ordering::Relaxed);
    }

    /// `D = op(A)·op(B) + β·D` for the column-major arguments `g` (blas.rs): cuBLASLt when
    /// available and it has an algorithm for the shape, else gemm_bf16_f32_ref.
    ///
    /// # Safety
    /// As [`BlasLt::matmul`]: `a`, `b` hold the stored bf16 extents of `g`, `d` holds
    /// `ldd·n` f32, all live on this context, `d` overlapping neither operand.
    unsafe fn gemm(
        &self,
        op: &'static str,
        g: &ColMajorGemm,
        a: sys::CUdeviceptr,
        b: sys::CUdeviceptr,
        d: sys::CUdeviceptr,
        beta: f32,
    ) -> Result<()> {
        if g.m == 0 || g.n == 0 || g.k == 0 {
            return Ok(());
        }
        if let Some(blas) = self
            .blas
            .as_ref()
            .filter(|_| self.use_blas.load(Ordering::Relaxed))
        {
            // SAFETY: forwarded to the caller.
            if unsafe { blas.matmul(g, a, b, d, beta) }? {
                return Ok(());
            }
        }
        let tiles_n = g.n.div_ceil(16);
        if tiles_n > 65535 {
            return Err(Error::Config(format!(
                "{op}: {} columns exceed the fallback GEMM's grid (65535 × 16)",
                g.n
            )));
        }
        let gx = grid_x(op, "row tiles", g.m.div_ceil(16))?;
        let args = &mut [
            KArg::Ptr(d),
            KArg::Ptr(a),
            KArg::Ptr(b),
            KArg::I32(g.transa as i32),
            KArg::I32(g.transb as i32),
            KArg::U32(to_u32(op, "m", g.m)?),
            KArg::U32(to_u32(op, "n", g.n)?),
            KArg::U32(to_u32(op, "k", g.k)?),
            KArg::U32(to_u32(op, "lda", g.lda)?),
            KArg::U32(to_u32(op, "ldb", g.ldb)?),
            KArg::U32(to_u32(op, "ldd", g.ldd)?),
            KArg::F32(beta),
        ];
        // SAFETY: gemm_bf16_f32_ref(float* d, const u16* a, const u16* b, int transa, int
        // transb, u32 M, N, K, lda, ldb, ldd, float beta), grid (⌈M/16⌉, ⌈N/16⌉), block 256:
        // reads A/B inside their stored extents and writes D(i, j) for i < M, j < N (the
        // caller's contract covers those extents).
        unsafe {
            self.launch(
                "gemm_bf16_f32_ref",
                (gx, tiles_n as u32, 1),
                GEMM_REF_BLOCK,
                0,
                args,
            )
        }
    }

    fn scratch(&self) -> Result<MutexGuard<'_, Scratch>> {
        self.scratch
            .lock()
            .map_err(|_| Error::Device("CUDA scratch buffers poisoned by a panic".into()))
    }

    fn function(&self, name: &'static str) -> Result<sys::CUfunction> {
        let mut funcs = self
            .funcs
            .lock()
            .map_err(|_| Error::Device("CUDA kernel cache poisoned".into()))?;
        if let Some(f) = funcs.get(name) {
            return Ok(f.0);
        }
        let f = self.module.function(name)?;
        funcs.insert(name, Func(f));
        Ok(f)
    }

    /// Launch `name` on the stream.
    ///
    /// # Safety
    /// `args` must match the kernel's parameter list in number, order and types (pointers as
    /// `Ptr`, size_t as `Size`, ...), every pointer must be valid for the accesses the kernel
    /// makes given the other arguments and the launch shape, and `smem` must cover the
    /// kernel's dynamic shared memory use.
    unsafe fn launch(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        smem: usize,
        args: &mut [KArg],
    ) -> Result<()> {
        let f = self.function(name)?;
        let mut ptrs: Vec<*mut c_void> = args
            .iter_mut()
            .map(|a| match a {
                KArg::Ptr(p) => p as *mut sys::CUdeviceptr as *mut c_void,
                KArg::Size(v) => v as *mut usize as *mut c_void,
                KArg::U32(v) => v as *mut u32 as *mut c_void,
                KArg::I32(v) => v as *mut i32 as *mut c_void,
                KArg::F32(v) => v as *mut f32 as *mut c_void,
            })
            .collect();
        self.ctx
            .bind_to_thread()
            .map_err(|e| drv("bind context", e))?;
        // SAFETY: forwarded to the caller (contract above); `f` belongs to our loaded module;
        // `ptrs` points into `args`, which outlives the call (the driver copies the values).
        unsafe {
            result::launch_kernel(
                f,
                grid,
                (block, 1, 1),
                smem as u32,
                self.stream.cu_stream(),
                &mut ptrs,
            )
        }
        .map_err(|e| drv(&format!("launch {name}"), e))
    }

    /// Launch a grid-stride elementwise kernel over `n` elements.
    ///
    /// # Safety
    /// As [`launch`](Self::launch); every pointer must cover `n` elements.
    unsafe fn launch_elementwise(
        &self,
        name: &'static str,
        n: usize,
        args: &mut [KArg],
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let grid = elementwise_grid(n, MAX_BLOCKS);
        // SAFETY: forwarded to the caller.
        unsafe { self.launch(name, (grid, 1, 1), ELEMENTWISE_BLOCK, 0, args) }
    }

    /// `out = bf16(x · mask)` for `n` elements (cast_bf16_f32).
    fn cast_bf16(
        &self,
        out: sys::CUdeviceptr,
        x: sys::CUdeviceptr,
        mask: sys::CUdeviceptr,
        n: usize,
    ) -> Result<()> {
        // SAFETY: callers pass `out` with room for n u16, and `x` (and `mask` unless 0) with n
        // f32, all live device memory of this context ordered on our stream.
        unsafe {
            self.launch_elementwise(
                "cast_bf16_f32",
                n,
                &mut [KArg::Ptr(out), KArg::Ptr(x), KArg::Ptr(mask), KArg::Size(n)],
            )
        }
    }

    /// `dst[c] += Σ_r x[r, c]` over a `rows × cols` row-major `x` (two-pass, deterministic).
    fn colsum_acc(
        &self,
        sc: &mut Scratch,
        dst: sys::CUdeviceptr,
        x: sys::CUdeviceptr,
        rows: usize,
        cols: usize,
        op: &'static str,
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let (rpc, chunks) = colsum_plan(rows);
        let parts = grow(
            &mut sc.f32b,
            chunks * cols,
            &self.stream,
            &self.ledger,
            "column-sum partials",
        )?;
        let (r, c) = (to_u32(op, "rows", rows)?, to_u32(op, "columns", cols)?);
        let gx = cols.div_ceil(ELEMENTWISE_BLOCK as usize) as u32;
        // SAFETY: colsum_partial_f32(float* partials, const float* x, u32 R, u32 C, u32 rpc):
        // `parts` holds chunks·C f32, x holds R·C f32; grid (⌈C/256⌉, chunks) covers both.
        unsafe {
            self.launch(
                "colsum_partial_f32",
                (gx, chunks as u32, 1),
                ELEMENTWISE_BLOCK,
                0,
                &mut [
                    KArg::Ptr(parts),
                    KArg::Ptr(x),
                    KArg::U32(r),
                    KArg::U32(c),
                    KArg::U32(rpc as u32),
                ],
            )
        }?;
        // SAFETY: colsum_finish_acc_f32(float* dst, const float* partials, u32 chunks, u32 C):
        // dst holds C f32 (checked by the caller), partials chunks·C.
        unsafe {
            self.launch(
                "colsum_finish_acc_f32",
                (gx, 1, 1),
                ELEMENTWISE_BLOCK,
                0,
                &mut [
                    KArg::Ptr(dst),
                    KArg::Ptr(parts),
                    KArg::U32(chunks as u32),
                    KArg::U32(c),
                ],
            )
        }
    }

    /// Error for an out-of-range id, with the CPU twin's message (first bad position).
    fn bad_id(
        &self,
        idx: &CudaIdx,
        limit: usize,
        skip_ignored: bool,
        msg: impl Fn(u32, usize) -> String,
    ) -> Result<()> {
        let host = self.download_u32(&idx.buf)?;
        match host
            .iter()
            .position(|&t| !(skip_ignored && t == IGNORE_INDEX) && t as usize >= limit)
        {
            Some(i) => Err(Error::Config(msg(host[i], i))),
            None => Err(Error::Device(
                "index statistics out of date (an Idx buffer was changed outside the Ops \
                 interface)"
                    .into(),
            )),
        }
    }

    fn check_tokens(&self, tokens: &CudaIdx, vocab: usize) -> Result<()> {
        match tokens.max {
            Some(m) if m as usize >= vocab => self.bad_id(tokens, vocab, false, |t, i| {
                format!(
                    "embedding: token id {t} at position {i} is outside the vocabulary of \
                     {vocab}"
                )
            }),
            _ => Ok(()),
        }
    }

    fn check_targets(&self, targets: &CudaIdx, v: usize) -> Result<()> {
        match targets.max_scored {
            Some(m) if m as usize >= v => self.bad_id(targets, v, true, |t, i| {
                format!(
                    "cross-entropy: target {t} at position {i} is outside the vocabulary of {v}"
                )
            }),
            _ => Ok(()),
        }
    }

    fn download_u32(&self, buf: &DeviceBuffer<u32>) -> Result<Vec<u32>> {
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        let v = self
            .stream
            .clone_dtoh(buf.slice())
            .map_err(|e| drv("copy u32 buffer to host", e))?;
        self.synchronize()?;
        Ok(v)
    }

    fn new_idx(&self, host: &[u32]) -> Result<CudaIdx> {
        let mut buf = alloc::<u32>(
            &self.stream,
            &self.ledger,
            host.len(),
            &format!("Ops::upload_idx ({} u32)", host.len()),
        )?;
        if !host.is_empty() {
            self.stream
                .memcpy_htod(host, buf.slice_mut())
                .map_err(|e| drv("copy u32 values to device", e))?;
        }
        let mut idx = CudaIdx {
            buf,
            version: next_idx_version(),
            max: None,
            max_scored: None,
        };
        idx.set_stats(host);
        Ok(idx)
    }
}

impl Ops for CudaOps {
    type Buf = CudaBuf;
    type Idx = CudaIdx;
    type Sparse24 = CudaSparse24;

    fn label(&self) -> String {
        format!(
            "cuda:{} {} (sm_{}{})",
            self.ordinal, self.name, self.cc.0, self.cc.1
        )
    }

    /// Waits for all enqueued work; reports asynchronous kernel errors.
    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| drv("synchronize the CUDA stream", e))
    }

    /// CUDA events (timing enabled) on the stream: the interval covers the device work
    /// enqueued between this call and [`Timer::stop`], which waits for it.
    fn start_timer(&self) -> Result<Timer> {
        let timer = self.timer()?;
        timer.start()?;
        Ok(Timer::new(move || {
            timer.stop()?;
            Ok(f64::from(timer.elapsed_ms()?) / 1e3)
        }))
    }

    /// The ledger's current and peak bytes and the driver's free/total memory.
    fn set_context(&self, text: &str) {
        self.ledger.set_context(text);
    }

    fn memory(&self) -> Option<MemoryReport> {
        let info = self.mem_get_info().ok();
        Some(MemoryReport {
            current_bytes: self.current_bytes() as u64,
            peak_bytes: self.peak_bytes() as u64,
            device_free_bytes: info.map(|(f, _)| f as u64),
            device_total_bytes: info.map(|(_, t)| t as u64),
        })
    }

    fn zeros(&self, n: usize) -> Result<CudaBuf> {
        let mut b = alloc::<f32>(
            &self.stream,
            &self.ledger,
            n,
            &format!("Ops::zeros ({n} f32)"),
        )?;
        self.stream
            .memset_zeros(b.slice_mut())
            .map_err(|e| drv("zero a device buffer", e))?;
        Ok(b)
    }

    fn upload(&self, host: &[f32]) -> Result<CudaBuf> {
        let n = host.len();
        let mut b = alloc::<f32>(
            &self.stream,
            &self.ledger,
            n,
            &format!("Ops::upload ({n} f32)"),
        )?;
        if n > 0 {
            self.stream
                .memcpy_htod(host, b.slice_mut())
                .map_err(|e| drv("copy f32 values to device", e))?;
        }
        Ok(b)
    }

    fn download(&self, buf: &CudaBuf) -> Result<Vec<f32>> {
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        let v = self
            .stream
            .clone_dtoh(buf.slice())
            .map_err(|e| drv("copy f32 buffer to host", e))?;
        self.synchronize()?;
        Ok(v)
    }

    fn upload_idx(&self, host: &[u32]) -> Result<CudaIdx> {
        self.new_idx(host)
    }

    fn write_idx(&self, dst: &mut CudaIdx, host: &[u32]) -> Result<()> {
        check_len("write_idx", "host", host.len(), dst.buf.len(), || {
            format!("n={}", dst.buf.len())
        })?;
        if !host.is_empty() {
            self.stream
                .memcpy_htod(host, dst.buf.slice_mut())
                .map_err(|e| drv("copy u32 values to device", e))?;
        }
        dst.version = next_idx_version();
        dst.set_stats(host);
        Ok(())
    }

    fn write(&self, dst: &mut CudaBuf, host: &[f32]) -> Result<()> {
        check_len("write", "host", host.len(), dst.len(), || {
            format!("n={}", dst.len())
        })?;
        if !host.is_empty() {
            self.stream
                .memcpy_htod(host, dst.slice_mut())
                .map_err(|e| drv("copy f32 values to device", e))?;
        }
        Ok(())
    }

    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len()
    }

    fn idx_len(&self, idx: &CudaIdx) -> usize {
        idx.buf.len()
    }

    fn fill(&self, buf: &mut CudaBuf, value: f32) -> Result<()> {
        let n = buf.len();
        let p = dptr_mut(buf, &self.stream);
        // SAFETY: fill_f32(float* x, size_t n, float value); x holds n f32.
        unsafe {
            self.launch_elementwise(
                "fill_f32",
                n,
                &mut [KArg::Ptr(p), KArg::Size(n), KArg::F32(value)],
            )
        }
    }

    fn residual_fwd(&self, out: &mut CudaBuf, a: &CudaBuf, b: &CudaBuf) -> Result<()> {
        let n = a.len();
        let sh = || format!("n={n}");
        check_len("residual_fwd", "out", out.len(), n, sh)?;
        check_len("residual_fwd", "b", b.len(), n, sh)?;
        let s = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(out, s)),
            KArg::Ptr(dptr(a, s)),
            KArg::Ptr(dptr(b, s)),
            KArg::Size(n),
        ];
        // SAFETY: residual_fwd_f32(float* out, const float* a, const float* b, size_t n); all
        // three hold n f32 (checked above) and `out` is a distinct buffer (&mut).
        unsafe { self.launch_elementwise("residual_fwd_f32", n, args) }
    }

    fn accumulate(&self, dst: &mut CudaBuf, src: &CudaBuf) -> Result<()> {
        let n = dst.len();
        check_len("accumulate", "src", src.len(), n, || format!("n={n}"))?;
        let s = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(dst, s)),
            KArg::Ptr(dptr(src, s)),
            KArg::Size(n),
        ];
        // SAFETY: accumulate_f32(float* dst, const float* src, size_t n); both hold n f32 and
        // cannot alias (&mut / &).
        unsafe { self.launch_elementwise("accumulate_f32", n, args) }
    }

    fn gelu_fwd(&self, out: &mut CudaBuf, inp: &CudaBuf) -> Result<()> {
        let n = inp.len();
        check_len("gelu_fwd", "out", out.len(), n, || format!("n={n}"))?;
        let s = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(out, s)),
            KArg::Ptr(dptr(inp, s)),
            KArg::Size(n),
        ];
        // SAFETY: gelu_fwd_f32(float* out, const float* inp, size_t n); both hold n f32.
        unsafe { self.launch_elementwise("gelu_fwd_f32", n, args) }
    }

    fn gelu_bwd(&self, dinp: &mut CudaBuf, inp: &CudaBuf, dout: &CudaBuf) -> Result<()> {
        let n = inp.len();
        let sh = || format!("n={n}");
        check_len("gelu_bwd", "dinp", dinp.len(), n, sh)?;
        check_len("gelu_bwd", "dout", dout.len(), n, sh)?;
        let s = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(dinp, s)),
            KArg::Ptr(dptr(inp, s)),
            KArg::Ptr(dptr(dout, s)),
            KArg::Size(n),
        ];
        // SAFETY: gelu_bwd_f32(float* dinp, const float* inp, const float* dout, size_t n);
        // all hold n f32.
        unsafe { self.launch_elementwise("gelu_bwd_f32", n, args) }
    }

    fn embedding_fwd(
        &self,
        out: &mut CudaBuf,
        tokens: &CudaIdx,
        wte: &CudaBuf,
        wpe: &CudaBuf,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        const OP: &str = "embedding_fwd";
        let vocab =
            shapes::embedding_fwd(out.len(), tokens.buf.len(), wte.len(), wpe.len(), b, t, c)?;
        self.check_tokens(tokens, vocab)?;
        let n = b * t;
        if n == 0 {
            return Ok(());
        }
        let (tu, cu, vu) = (
            to_u32(OP, "T", t)?,
            to_u32(OP, "C", c)?,
            to_u32(OP, "vocab", vocab)?,
        );
        let s = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(out, s)),
            KArg::Ptr(dptr(&tokens.buf, s)),
            KArg::Ptr(dptr(wte, s)),
            KArg::Ptr(dptr(wpe, s)),
            KArg::Size(n),
            KArg::U32(tu),
            KArg::U32(cu),
            KArg::U32(vu),
        ];
        // SAFETY: encoder_fwd_f32(float* out, const u32* tokens, const float* wte, const
        // float* wpe, size_t N, u32 T, u32 C, u32 V): out holds N·C f32, tokens N ids (all < V,
        // checked), wte V·C, wpe ≥ T·C (checked); row % T < T.
        unsafe { self.launch_elementwise("encoder_fwd_f32", n * c, args) }
    }

    fn embedding_bwd(
        &self,
        dwte: &mut CudaBuf,
        dwpe: &mut CudaBuf,
        dout: &CudaBuf,
        tokens: &CudaIdx,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        const OP: &str = "embedding_bwd";
        let vocab = shapes::embedding_bwd(
            dwte.len(),
            dwpe.len(),
            dout.len(),
            tokens.buf.len(),
            b,
            t,
            c,
        )?;
        self.check_tokens(tokens, vocab)?;
        let n = b * t;
        if n == 0 {
            return Ok(());
        }
        let (bu, tu, cu, vu) = (
            to_u32(OP, "B", b)?,
            to_u32(OP, "T", t)?,
            to_u32(OP, "C", c)?,
            to_u32(OP, "vocab", vocab)?,
        );
        let nu = grid_x(OP, "B·T", n)?;
        let s = &self.stream;
        let pd = dptr(dout, s);
        let pt = dptr(&tokens.buf, s);
        let args = &mut [
            KArg::Ptr(dptr_mut(dwpe, s)),
            KArg::Ptr(pd),
            KArg::U32(bu),
            KArg::U32(tu),
            KArg::U32(cu),
        ];
        // SAFETY: encoder_bwd_wpe_f32(float* dwpe, const float* dout, u32 B, u32 T, u32 C):
        // dwpe holds ≥ T·C f32 (checked), dout B·T·C; the grid covers T·C elements.
        unsafe { self.launch_elementwise("encoder_bwd_wpe_f32", t * c, args) }?;
        let args = &mut [
            KArg::Ptr(dptr_mut(dwte, s)),
            KArg::Ptr(pd),
            KArg::Ptr(pt),
            KArg::U32(nu),
            KArg::U32(cu),
            KArg::U32(vu),
        ];
        // SAFETY: encoder_bwd_wte_f32(float* dwte, const float* dout, const u32* tokens, u32 N,
        // u32 C, u32 V): one block per position n < N; dwte holds V·C f32 and every token is
        // < V (checked); dout N·C.
        unsafe { self.launch("encoder_bwd_wte_f32", (nu, 1, 1), EMBED_BLOCK, 0, args) }
    }

    fn layernorm_fwd(
        &self,
        out: &mut CudaBuf,
        mean: &mut CudaBuf,
        rstd: &mut CudaBuf,
        inp: &CudaBuf,
        weight: &CudaBuf,
        bias: &CudaBuf,
        n: usize,
        c: usize,
    ) -> Result<()> {
        const OP: &str = "layernorm_fwd";
        shapes::layernorm_fwd(
            out.len(),
            inp.len(),
            mean.len(),
            rstd.len(),
            weight.len(),
            bias.len(),
            n,
            c,
        )?;
        if c == 0 || n == 0 {
            return Ok(());
        }
        let rows_per_block = (LN_BLOCK / 32) as usize;
        let grid = grid_x(OP, "row blocks", n.div_ceil(rows_per_block))?;
        let (nu, cu) = (to_u32(OP, "n", n)?, to_u32(OP, "c", c)?);
        let s = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(out, s)),
            KArg::Ptr(dptr_mut(mean, s)),
            KArg::Ptr(dptr_mut(rstd, s)),
            KArg::Ptr(dptr(inp, s)),
            KArg::Ptr(dptr(weight, s)),
            KArg::Ptr(dptr(bias, s)),
            KArg::U32(nu),
            KArg::U32(cu),
        ];
        // SAFETY: layernorm_fwd_f32(out, mean, rstd, inp, weight, bias, u32 N, u32 C): one
        // warp per row < N (8 per block); out/inp hold N·C, mean/rstd N, weight/bias C f32.
        unsafe { self.launch("layernorm_fwd_f32", (grid, 1, 1), LN_BLOCK, 0, args) }
    }

    fn layernorm_bwd(
        &self,
        dinp: &mut CudaBuf,
        dweight: &mut CudaBuf,
        dbias: &mut CudaBuf,
        dout: &CudaBuf,
        inp: &CudaBuf,
        weight: &CudaBuf,
        mean: &CudaBuf,
        rstd: &CudaBuf,
        n: usize,
        c: usize,
    ) -> Result<()> {
        const OP: &str = "layernorm_bwd";
        shapes::layernorm_bwd(
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
        let rows_per_block = (LN_BLOCK / 32) as usize;
        let grid = grid_x(OP, "row blocks", n.div_ceil(rows_per_block))?;
        let (nu, cu) = (to_u32(OP, "n", n)?, to_u32(OP, "c", c)?);
        let s = &self.stream;
        let (pdo, pin, pme, prs) = (dptr(dout, s), dptr(inp, s), dptr(mean, s), dptr(rstd, s));
        let args = &mut [
            KArg::Ptr(dptr_mut(dinp, s)),
            KArg::Ptr(pdo),
            KArg::Ptr(pin),
            KArg::Ptr(dptr(weight, s)),
            KArg::Ptr(pme),
            KArg::Ptr(prs),
            KArg::U32(nu),
            KArg::U32(cu),
        ];
        // SAFETY: layernorm_bwd_dx_f32(dinp, dout, inp, weight, mean, rstd, u32 N, u32 C): warp
        // per row < N; dinp/dout/inp hold N·C, weight C, mean/rstd N f32.
        unsafe { self.launch("layernorm_bwd_dx_f32", (grid, 1, 1), LN_BLOCK, 0, args) }?;

        let mut sc = self.scratch()?;
        let (rpc, chunks) = colsum_plan(n);
        let parts = grow(
            &mut sc.f32b,
            2 * chunks * c,
            s,
            &self.ledger,
            "layernorm gradient partials",
        )?;
        let gx = c.div_ceil(ELEMENTWISE_BLOCK as usize) as u32;
        let args = &mut [
            KArg::Ptr(parts),
            KArg::Ptr(pdo),
            KArg::Ptr(pin),
            KArg::Ptr(pme),
            KArg::Ptr(prs),
            KArg::U32(nu),
            KArg::U32(cu),
            KArg::U32(rpc as u32),
        ];
        // SAFETY: layernorm_bwd_dwdb_partial_f32(partials, dout, inp, mean, rstd, u32 N, u32 C,
        // u32 rpc), grid (⌈C/256⌉, chunks): writes partials[0 .. 2·chunks·C) (allocated), reads
        // rows < N of dout/inp and mean/rstd.
        unsafe {
            self.launch(
                "layernorm_bwd_dwdb_partial_f32",
                (gx, chunks as u32, 1),
                ELEMENTWISE_BLOCK,
                0,
                args,
            )
        }?;
        let db_parts = parts + (chunks * c * std::mem::size_of::<f32>()) as u64;
        for (dst, p) in [
            (dptr_mut(dweight, s), parts),
            (dptr_mut(dbias, s), db_parts),
        ] {
            let args = &mut [
                KArg::Ptr(dst),
                KArg::Ptr(p),
                KArg::U32(chunks as u32),
                KArg::U32(cu),
            ];
            // SAFETY: colsum_finish_acc_f32(float* dst, const float* partials, u32 chunks, u32
            // C): dst holds C f32 (checked), p points at chunks·C partials inside the scratch.
            unsafe {
                self.launch(
                    "colsum_finish_acc_f32",
                    (gx, 1, 1),
                    ELEMENTWISE_BLOCK,
                    0,
                    args,
                )
            }?;
        }
        Ok(())
    }

    fn matmul_fwd(
        &self,
        out: &mut CudaBuf,
        inp: &CudaBuf,
        weight: &CudaBuf,
        bias: Option<&CudaBuf>,
        mask: Option<&CudaBuf>,
        s: MatmulShape,
    ) -> Result<()> {
        const OP: &str = "matmul_fwd";
        s.check_fwd(
            out.len(),
            inp.len(),
            weight.len(),
            bias.map(|b| b.len()),
            mask.map(|m| m.len()),
        )?;
        if s.n == 0 || s.oc == 0 {
            return Ok(());
        }
        let st = &self.stream;
        let pout = dptr_mut(out, st);
        if s.k == 0 {
            // An empty reduction: out = bias (or 0), as the CPU twin gives.
            let n = s.n * s.oc;
            // SAFETY: fill_f32(float* x, size_t n, float v); out holds n f32.
            unsafe {
                self.launch_elementwise(
                    "fill_f32",
                    n,
                    &mut [KArg::Ptr(pout), KArg::Size(n), KArg::F32(0.0)],
                )
            }?;
        } else {
            let mut sc = self.scratch()?;
            let px = grow(
                &mut sc.x16,
                s.n * s.k,
                st,
                &self.ledger,
                "bf16 matmul input",
            )?;
            let pw = grow(
                &mut sc.w16,
                s.oc * s.k,
                st,
                &self.ledger,
                "bf16 matmul weight",
            )?;
            self.cast_bf16(px, dptr(inp, st), 0, s.n * s.k)?;
            self.cast_bf16(
                pw,
                dptr(weight, st),
                mask.map_or(0, |m| dptr(m, st)),
                s.oc * s.k,
            )?;
            let g = blas::plan(GemmKind::Forward, s);
            let pick = |o: Operand| if o == Operand::Weight { pw } else { px };
            // SAFETY: `plan` maps the row-major shapes onto exactly these extents: A = W bf16
            // (oc·k), B = X bf16 (n·k) in scratch sized above, D = out (n·oc f32, checked);
            // out is not scratch, so it overlaps neither operand.
            unsafe { self.gemm(OP, &g, pick(g.a), pick(g.b), pout, 0.0) }?;
        }
        if let Some(b) = bias {
            let oc = to_u32(OP, "oc", s.oc)?;
            let args = &mut [
                KArg::Ptr(pout),
                KArg::Ptr(dptr(b, st)),
                KArg::Size(s.n),
                KArg::U32(oc),
            ];
            // SAFETY: bias_add_f32(float* out, const float* bias, size_t rows, u32 OC): out
            // holds rows·OC f32, bias OC (checked).
            unsafe { self.launch_elementwise("bias_add_f32", s.n * s.oc, args) }?;
        }
        Ok(())
    }

    fn matmul_bwd(
        &self,
        dinp: Option<(&mut CudaBuf, GradWrite)>,
        dweight: &mut CudaBuf,
        dbias: Option<&mut CudaBuf>,
        dout: &CudaBuf,
        inp: &CudaBuf,
        weight: &CudaBuf,
        mask: Option<&CudaBuf>,
        s: MatmulShape,
    ) -> Result<()> {
        const OP: &str = "matmul_bwd";
        s.check_bwd(
            dinp.as_ref().map(|(d, _)| d.len()),
            dweight.len(),
            dbias.as_deref().map(|d| d.len()),
            dout.len(),
            inp.len(),
            weight.len(),
            mask.map(|m| m.len()),
        )?;
        let mut dinp = dinp;
        if s.oc == 0 {
            // An empty sum: an overwritten input gradient is zero.
            if let Some((d, GradWrite::Overwrite)) = dinp.as_mut() {
                self.fill(d, 0.0)?;
            }
        }
        let st = &self.stream;
        let mut sc = self.scratch()?;
        let pdout = dptr(dout, st);
        if s.n > 0 && s.k > 0 && s.oc > 0 {
            let pg = grow(
                &mut sc.g16,
                s.n * s.oc,
                st,
                &self.ledger,
                "bf16 output gradient",
            )?;
            self.cast_bf16(pg, pdout, 0, s.n * s.oc)?;
            let pmask = mask.map_or(0, |m| dptr(m, st));
            if let Some((dinp, write)) = dinp {
                let pw = grow(
                    &mut sc.w16,
                    s.oc * s.k,
                    st,
                    &self.ledger,
                    "bf16 matmul weight",
                )?;
                self.cast_bf16(pw, dptr(weight, st), pmask, s.oc * s.k)?;
                let g = blas::plan(GemmKind::InputGrad, s);
                let pick = |o: Operand| if o == Operand::Weight { pw } else { pg };
                let beta = if write == GradWrite::Accumulate {
                    1.0
                } else {
                    0.0
                };
                // SAFETY: A = W⊙M bf16 (oc·k), B = dout bf16 (n·oc) in scratch, D = dinp (n·k
                // f32, checked, not scratch); β = 1 accumulates, β = 0 never reads it.
                unsafe { self.gemm(OP, &g, pick(g.a), pick(g.b), dptr_mut(dinp, st), beta) }?;
            }
            let px = grow(
                &mut sc.x16,
                s.n * s.k,
                st,
                &self.ledger,
                "bf16 matmul input",
            )?;
            self.cast_bf16(px, dptr(inp, st), 0, s.n * s.k)?;
            let g = blas::plan(GemmKind::WeightGrad, s);
            let pick = |o: Operand| if o == Operand::Input { px } else { pg };
            let pdw = dptr_mut(dweight, st);
            match mask {
                // SAFETY: A = X bf16 (n·k), B = dout bf16 (n·oc) in scratch, D = dweight (oc·k
                // f32, checked, not scratch); β = 1 accumulates.
                None => unsafe { self.gemm(OP, &g, pick(g.a), pick(g.b), pdw, 1.0) }?,
                Some(_) => {
                    let ptmp = grow(
                        &mut sc.f32a,
                        s.oc * s.k,
                        st,
                        &self.ledger,
                        "masked weight-gradient temporary",
                    )?;
                    // SAFETY: as above with D = the f32 scratch (oc·k), β = 0 (overwrite).
                    unsafe { self.gemm(OP, &g, pick(g.a), pick(g.b), ptmp, 0.0) }?;
                    let n = s.oc * s.k;
                    let args = &mut [
                        KArg::Ptr(pdw),
                        KArg::Ptr(ptmp),
                        KArg::Ptr(pmask),
                        KArg::Size(n),
                    ];
                    // SAFETY: mask_mul_acc_f32(float* dst, const float* src, const float* mask,
                    // size_t n): dweight, the temporary and the mask all hold oc·k f32.
                    unsafe { self.launch_elementwise("mask_mul_acc_f32", n, args) }?;
                }
            }
        }
        if let Some(db) = dbias {
            let pdb = dptr_mut(db, st);
            self.colsum_acc(&mut sc, pdb, pdout, s.n, s.oc, OP)?;
        }
        Ok(())
    }

    fn attention_fwd(
        &self,
        out: &mut CudaBuf,
        lse: &mut CudaBuf,
        q: &CudaBuf,
        k: &CudaBuf,
        v: &CudaBuf,
        mask: Option<MaskRef<'_, CudaIdx>>,
        s: AttnShape,
    ) -> Result<()> {
        const OP: &str = "attention_fwd";
        let acts = [
            ("q", q.len()),
            ("k", k.len()),
            ("v", v.len()),
            ("out", out.len()),
        ];
        let (n_act, n_rows) = shapes::attention_lens(OP, &s, &acts, lse.len())?;
        let st = &self.stream;
        let (pmask, per_head) = attn_mask(OP, mask, &s, st)?;
        if n_rows == 0 {
            return Ok(());
        }
        if self.attention_backend(&s) == "fused" {
            let tiles = self.fused_tiles(mask, s)?;
            let am = tiles
                .as_deref()
                .zip(mask)
                .map(|(t, m)| attention::AttnMask {
                    bits: m.bits.buf.slice(),
                    per_head: m.per_head,
                    tiles: t,
                });
            // The launcher makes bf16 copies of q, k and v; charge them meanwhile.
            let _bf16 = Charge::new(&self.ledger, 3 * 2 * n_act);
            return attention::attention_fwd(
                &self.module,
                st,
                out.slice_mut(),
                lse.slice_mut(),
                q.slice(),
                k.slice(),
                v.slice(),
                am,
                s,
            );
        }
        let (grid, smem) = self.attn_launch_shape(OP, &s, 0)?;
        let scale = 1.0f32 / (s.d as f32).sqrt();
        let args = &mut [
            KArg::Ptr(dptr_mut(out, st)),
            KArg::Ptr(dptr_mut(lse, st)),
            KArg::Ptr(dptr(q, st)),
            KArg::Ptr(dptr(k, st)),
            KArg::Ptr(dptr(v, st)),
            KArg::Ptr(pmask),
            KArg::I32(per_head),
            KArg::U32(s.b as u32),
            KArg::U32(s.t as u32),
            KArg::U32(s.h as u32),
            KArg::U32(s.d as u32),
            KArg::F32(scale),
        ];
        // SAFETY: attn_ref_fwd_f32(out, lse, q, k, v, const u32* mask, int per_head, u32 B,
        // u32 T, u32 H, u32 D, float scale), grid (T, B·H): q/k/v/out hold B·T·H·D f32, lse
        // B·H·T (checked), the mask B·Hm·T·⌈T/32⌉ words (checked) or null; smem = (T + D)
        // floats as the kernel uses; dims fit u32 (attn_launch_shape).
        unsafe { self.launch("attn_ref_fwd_f32", grid, ATT_REF_BLOCK, smem, args) }
    }

    fn attention_bwd(
        &self,
        dq: &mut CudaBuf,
        dk: &mut CudaBuf,
        dv: &mut CudaBuf,
        dout: &CudaBuf,
        q: &CudaBuf,
        k: &CudaBuf,
        v: &CudaBuf,
        out: &CudaBuf,
        lse: &CudaBuf,
        mask: Option<MaskRef<'_, CudaIdx>>,
        s: AttnShape,
    ) -> Result<()> {
        const OP: &str = "attention_bwd";
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
        let (n_act, n_rows) = shapes::attention_lens(OP, &s, &acts, lse.len())?;
        let st = &self.stream;
        let (pmask, per_head) = attn_mask(OP, mask, &s, st)?;
        if n_rows == 0 {
            return Ok(());
        }
        if self.attention_backend(&s) == "fused" {
            let tiles = self.fused_tiles(mask, s)?;
            let am = tiles
                .as_deref()
                .zip(mask)
                .map(|(t, m)| attention::AttnMask {
                    bits: m.bits.buf.slice(),
                    per_head: m.per_head,
                    tiles: t,
                });
            // The launcher allocates its B·H·T row-dot scratch and bf16 copies of q, k, v and
            // dout itself; charge them meanwhile.
            let _scratch = Charge::new(&self.ledger, 4 * n_rows + 4 * 2 * n_act);
            let mode = if self.deterministic_attention.load(Ordering::Relaxed) {
                attention::BwdMode::Deterministic
            } else {
                attention::BwdMode::Atomic
            };
            return attention::attention_bwd(
                &self.module,
                st,
                dq.slice_mut(),
                dk.slice_mut(),
                dv.slice_mut(),
                dout.slice(),
                q.slice(),
                k.slice(),
                v.slice(),
                out.slice(),
                lse.slice(),
                am,
                s,
                mode,
            );
        }
        let (grid, smem_q) = self.attn_launch_shape(OP, &s, 1)?;
        let (_, smem_kv) = self.attn_launch_shape(OP, &s, 2)?;
        let scale = 1.0f32 / (s.d as f32).sqrt();
        let mut sc = self.scratch()?;
        let pdi = grow(
            &mut sc.f32b,
            n_rows,
            st,
            &self.ledger,
            "attention row dot products",
        )?;
        let (pdo, pq, pk, pv, plse) = (
            dptr(dout, st),
            dptr(q, st),
            dptr(k, st),
            dptr(v, st),
            dptr(lse, st),
        );
        let dims = [
            KArg::I32(per_head),
            KArg::U32(s.b as u32),
            KArg::U32(s.t as u32),
            KArg::U32(s.h as u32),
            KArg::U32(s.d as u32),
            KArg::F32(scale),
        ];
        let mut args = vec![
            KArg::Ptr(dptr_mut(dq, st)),
            KArg::Ptr(pdi),
            KArg::Ptr(pdo),
            KArg::Ptr(pq),
            KArg::Ptr(pk),
            KArg::Ptr(pv),
            KArg::Ptr(dptr(out, st)),
            KArg::Ptr(plse),
            KArg::Ptr(pmask),
        ];
        args.extend_from_slice(&dims);
        // SAFETY: attn_ref_bwd_q_f32(dq, float* di, dout, q, k, v, out, lse, mask, int
        // per_head, u32 B, T, H, D, float scale), grid (T, B·H): activations hold B·T·H·D f32,
        // lse and the Di scratch B·H·T (allocated above), mask as in the forward; smem =
        // (T + 2D) floats.
        unsafe { self.launch("attn_ref_bwd_q_f32", grid, ATT_REF_BLOCK, smem_q, &mut args) }?;
        let mut args = vec![
            KArg::Ptr(dptr_mut(dk, st)),
            KArg::Ptr(dptr_mut(dv, st)),
            KArg::Ptr(pdo),
            KArg::Ptr(pq),
            KArg::Ptr(pk),
            KArg::Ptr(pv),
            KArg::Ptr(plse),
            KArg::Ptr(pdi),
            KArg::Ptr(pmask),
        ];
        args.extend_from_slice(&dims);
        // SAFETY: attn_ref_bwd_kv_f32(dk, dv, dout, q, k, v, lse, const float* di, mask, int
        // per_head, u32 B, T, H, D, float scale): as above; reads the Di the previous launch
        // wrote (same stream, so ordered); smem = (2T + 2D) floats.
        unsafe {
            self.launch(
                "attn_ref_bwd_kv_f32",
                grid,
                ATT_REF_BLOCK,
                smem_kv,
                &mut args,
            )
        }
    }

    fn xent_fwd(
        &self,
        losses: &mut CudaBuf,
        lse: &mut CudaBuf,
        logits: &CudaBuf,
        targets: &CudaIdx,
        n: usize,
        v: usize,
    ) -> Result<()> {
        const OP: &str = "xent_fwd";
        shapes::xent_fwd(
            losses.len(),
            lse.len(),
            logits.len(),
            targets.buf.len(),
            n,
            v,
        )?;
        self.check_targets(targets, v)?;
        shapes::xent_vocab(v)?;
        if n == 0 {
            return Ok(());
        }
        let (grid, vu) = (grid_x(OP, "rows", n)?, to_u32(OP, "v", v)?);
        let st = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(losses, st)),
            KArg::Ptr(dptr_mut(lse, st)),
            KArg::Ptr(dptr(logits, st)),
            KArg::Ptr(dptr(&targets.buf, st)),
            KArg::U32(grid),
            KArg::U32(vu),
        ];
        // SAFETY: xent_fwd_f32(losses, lse, logits, const u32* targets, u32 N, u32 V): block per
        // row < N; logits hold N·V f32, losses/lse/targets N (checked).
        unsafe { self.launch("xent_fwd_f32", (grid, 1, 1), XENT_BLOCK, 0, args) }
    }

    fn xent_bwd(
        &self,
        dlogits: &mut CudaBuf,
        logits: &CudaBuf,
        lse: &CudaBuf,
        targets: &CudaIdx,
        dloss: f32,
        n: usize,
        v: usize,
    ) -> Result<()> {
        const OP: &str = "xent_bwd";
        shapes::xent_bwd(
            dlogits.len(),
            logits.len(),
            lse.len(),
            targets.buf.len(),
            n,
            v,
        )?;
        self.check_targets(targets, v)?;
        shapes::xent_vocab(v)?;
        if n == 0 {
            return Ok(());
        }
        let (grid, vu) = (grid_x(OP, "rows", n)?, to_u32(OP, "v", v)?);
        let st = &self.stream;
        let args = &mut [
            KArg::Ptr(dptr_mut(dlogits, st)),
            KArg::Ptr(dptr(logits, st)),
            KArg::Ptr(dptr(lse, st)),
            KArg::Ptr(dptr(&targets.buf, st)),
            KArg::F32(dloss),
            KArg::U32(grid),
            KArg::U32(vu),
        ];
        // SAFETY: xent_bwd_f32(dlogits, logits, lse, const u32* targets, float dloss, u32 N, u32
        // V): block per row < N; dlogits/logits hold N·V f32, lse/targets N (checked).
        unsafe { self.launch("xent_bwd_f32", (grid, 1, 1), XENT_BLOCK, 0, args) }
    }

    fn lm_head_xent(
        &self,
        losses: &mut CudaBuf,
        lse: &mut CudaBuf,
        grads: Option<(&mut CudaBuf, &mut CudaBuf)>,
        x: &CudaBuf,
        weight: &CudaBuf,
        targets: &CudaIdx,
        dloss: f32,
        n: usize,
        c: usize,
        v: usize,
    ) -> Result<()> {
        shapes::lm_head_xent(
            losses.len(),
            lse.len(),
            grads.as_ref().map(|(dx, dw)| (dx.len(), dw.len())),
            x.len(),
            weight.len(),
            targets.buf.len(),
            n,
            c,
            v,
        )?;
        self.check_targets(targets, v)?;
        shapes::xent_vocab(v)?;
        // kernels/lm_head.cu: the logits live a tile at a time in registers; the backward
        // recomputes them (no n × v buffer, no scratch at all).
        let (nu, cu, vu) = crate::backend::lm_head_grid_dims(n, c, v)?;
        const TILE: u32 = 64;
        const SLICE: u32 = 128;
        let st = &self.stream;
        if n > 0 {
            let args = &mut [
                KArg::Ptr(dptr_mut(losses, st)),
                KArg::Ptr(dptr_mut(lse, st)),
                KArg::Ptr(dptr(x, st)),
                KArg::Ptr(dptr(weight, st)),
                KArg::Ptr(dptr(&targets.buf, st)),
                KArg::U32(nu),
                KArg::U32(cu),
                KArg::U32(vu),
            ];
            // SAFETY: lm_head_fwd_f32(losses, lse, x, w, const u32* targets, u32 N, u32 C, u32
            // V): block per 64 rows < N; x holds N·C, w V·C, losses/lse/targets N (checked).
            unsafe {
                self.launch(
                    "lm_head_fwd_f32",
                    (nu.div_ceil(TILE), 1, 1),
                    HEAD_BLOCK,
                    0,
                    args,
                )?
            };
        }
        let Some((dx, dw)) = grads else {
            return Ok(());
        };
        let slices = cu.div_ceil(SLICE);
        // Both backward kernels: (out, x, w, lse, targets, float dloss, u32 N, u32 C, u32 V).
        let bwd_args = |out: sys::CUdeviceptr| {
            [
                KArg::Ptr(out),
                KArg::Ptr(dptr(x, st)),
                KArg::Ptr(dptr(weight, st)),
                KArg::Ptr(dptr(lse, st)),
                KArg::Ptr(dptr(&targets.buf, st)),
                KArg::F32(dloss),
                KArg::U32(nu),
                KArg::U32(cu),
                KArg::U32(vu),
            ]
        };
        if n > 0 {
            let args = &mut bwd_args(dptr_mut(dx, st));
            // SAFETY: lm_head_bwd_dx_f32: blocks (64 rows, 128 columns) inside N × C; dx and x
            // hold N·C, w V·C, lse/targets N (checked).
            unsafe {
                self.launch(
                    "lm_head_bwd_dx_f32",
                    (nu.div_ceil(TILE), slices, 1),
                    HEAD_BLOCK,
                    0,
                    args,
                )?
            };
        }
        let args = &mut bwd_args(dptr_mut(dw, st));
        // SAFETY: lm_head_bwd_dw_f32: blocks (64 vocabulary rows, 128 columns) inside V × C
        // (v ≥ 1, checked); dw and w hold V·C, x N·C, lse/targets N (checked); with N = 0 it
        // writes dw's zeros.
        unsafe {
            self.launch(
                "lm_head_bwd_dw_f32",
                (vu.div_ceil(TILE), slices, 1),
                HEAD_BLOCK,
                0,
                args,
            )
        }
    }

    fn adamw(
        &self,
        param: &mut CudaBuf,
        grad: &CudaBuf,
        m: &mut CudaBuf,
        v: &mut CudaBuf,
        mask: Option<&CudaBuf>,
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
        if n == 0 {
            return Ok(());
        }
        launch_adamw_f32(
            &self.module,
            &self.stream,
            param.slice_mut(),
            grad.slice(),
            m.slice_mut(),
            v.slice_mut(),
            mask.map(|mk| mk.slice()),
            hp,
            None,
        )
    }

    fn sum_squares(&self, buf: &CudaBuf) -> Result<f64> {
        self.sum_squares_many(&[buf])?
            .first()
            .copied()
            .ok_or_else(|| Error::Device("sum of squares: empty read-back".into()))
    }

    fn sum_squares_many(&self, bufs: &[&CudaBuf]) -> Result<Vec<f64>> {
        // Every buffer's partials in one scratch ([partials 0 | partials 1 | … | totals]) and
        // one read-back. Grids depend on each buffer's length only (reduce.cu), so a buffer's
        // sum has the same bits alone or among others.
        let grids: Vec<u32> = bufs.iter().map(|b| sumsq_grid(b.len().max(1))).collect();
        let parts: usize = grids.iter().map(|&g| g as usize).sum();
        if bufs.is_empty() {
            return Ok(vec![]);
        }
        let st = &self.stream;
        let mut sc = self.scratch()?;
        let base = grow(
            &mut sc.f64a,
            parts + bufs.len(),
            st,
            &self.ledger,
            "sum-of-squares partials",
        )?;
        let f64_bytes = std::mem::size_of::<f64>() as u64;
        let mut offset = 0usize;
        for (i, (buf, &grid)) in bufs.iter().zip(&grids).enumerate() {
            let pparts = base + offset as u64 * f64_bytes;
            let pout = base + (parts + i) as u64 * f64_bytes;
            let n = buf.len();
            if n > 0 {
                let args = &mut [KArg::Ptr(pparts), KArg::Ptr(dptr(buf, st)), KArg::Size(n)];
                // SAFETY: sum_squares_partial_f64(double* partials, const float* x, size_t n):
                // writes partials[0..grid), this buffer's own slots of the scratch (which holds
                // Σ grids + count f64), reads x[0..n).
                unsafe {
                    self.launch(
                        "sum_squares_partial_f64",
                        (grid, 1, 1),
                        SUMSQ_BLOCK,
                        0,
                        args,
                    )
                }?;
            }
            // An empty buffer sums nothing: its total is 0 (count 0 reads no partial).
            let count = if n > 0 { grid } else { 0 };
            let args = &mut [KArg::Ptr(pout), KArg::Ptr(pparts), KArg::U32(count)];
            // SAFETY: sum_squares_finish_f64(double* out, const double* partials, u32 count):
            // one block; out = this buffer's total slot, partials its `count` slots.
            unsafe { self.launch("sum_squares_finish_f64", (1, 1, 1), SUMSQ_BLOCK, 0, args) }?;
            offset += grid as usize;
        }
        let scratch = sc
            .f64a
            .as_ref()
            .ok_or_else(|| Error::Device("sum-of-squares scratch missing".into()))?;
        let totals = st
            .clone_dtoh(&scratch.slice().slice(parts..parts + bufs.len()))
            .map_err(|e| drv("copy sums of squares to host", e))?;
        self.synchronize()?;
        Ok(totals)
    }

    fn compress24(&self, name: &str, weight: &CudaBuf, n: usize, k: usize) -> Result<CudaSparse24> {
        let mma_shape = n > 0 && n.is_multiple_of(16) && k > 0 && k.is_multiple_of(32);
        // A buffer of the wrong length takes the host path, which reports it as the CPU does.
        if mma_shape && n.checked_mul(k) == Some(weight.len()) {
            // The mma.sp shapes: prune, compress and reorder on the device in one pass
            // (kernels/compress24.cu), bit for bit what the host path gave after bf16 rounding
            // and the metadata reorder; the weight never leaves the GPU.
            let dev = super::compress24::compress24_gpu(
                &self.module,
                &self.stream,
                Half::Bf16,
                name,
                weight.slice(),
                n,
                k,
            )?;
            let bytes = (n * k / 2) * 2 + (n / 16) * (k / 32).div_ceil(2) * 32 * 4;
            let repr = Sparse24Repr::Mma(dev, Charge::new(&self.ledger, bytes));
            return Ok(CudaSparse24 { n, k, repr });
        }
        // Other shapes run densely: select and compress on the host with the exact CPU code
        // (which also gives the shape errors), then upload the pruned matrix.
        let host = self.download(weight)?;
        let c = Sparse24::<f32>::compress(name, &host, n, k)?;
        let repr = Sparse24Repr::Dense(self.upload(&c.decompress())?);
        Ok(CudaSparse24 { n, k, repr })
    }

    fn matmul24_fwd(
        &self,
        out: &mut CudaBuf,
        inp: &CudaBuf,
        weight: &CudaSparse24,
        bias: Option<&CudaBuf>,
        s: MatmulShape,
    ) -> Result<()> {
        self.matmul24(out, inp, weight, bias, s, false)
    }

    fn matmul24_gelu_fwd(
        &self,
        out: &mut CudaBuf,
        pre: &mut CudaBuf,
        inp: &CudaBuf,
        weight: &CudaSparse24,
        bias: Option<&CudaBuf>,
        s: MatmulShape,
    ) -> Result<()> {
        match &weight.repr {
            // The dense fallback has no fused epilogue.
            Sparse24Repr::Dense(_) => {
                self.matmul24(pre, inp, weight, bias, s, false)?;
                self.gelu_fwd(out, pre)
            }
            // GELU in the 2:4 kernel's epilogue: one pass over the output instead of three.
            Sparse24Repr::Mma(..) => self.matmul24(out, inp, weight, bias, s, true),
        }
    }
}

impl CudaOps {
    /// The 2:4 matmul through the tuned kernels (`gelu`: fused in the epilogue; only with the
    /// compressed representation — the dense fallback ignores it, callers handle that).
    fn matmul24(
        &self,
        out: &mut CudaBuf,
        inp: &CudaBuf,
        weight: &CudaSparse24,
        bias: Option<&CudaBuf>,
        s: MatmulShape,
        gelu: bool,
    ) -> Result<()> {
        const OP: &str = "matmul24_fwd";
        s.check_24_weight(weight.n, weight.k)?;
        let dev = match &weight.repr {
            Sparse24Repr::Dense(w) => return self.matmul_fwd(out, inp, w, bias, None, s),
            Sparse24Repr::Mma(dev, _) => dev,
        };
        let sh = || format!("n={} k={} oc={}", s.n, s.k, s.oc);
        check_len(OP, "out", out.len(), s.n * s.oc, sh)?;
        check_len(OP, "inp", inp.len(), s.n * s.k, sh)?;
        if let Some(b) = bias {
            check_len(OP, "bias", b.len(), s.oc, sh)?;
        }
        if s.n == 0 {
            return Ok(());
        }
        // launch_gemm24 takes whole cudarc slices of exactly M·K / M·N elements, so the
        // bf16 input is an exact-size buffer rather than the grow-only scratch.
        let mut x16 = alloc::<u16>(
            &self.stream,
            &self.ledger,
            s.n * s.k,
            "bf16 input of the 2:4 matmul",
        )?;
        let px = dptr_mut(&mut x16, &self.stream);
        self.cast_bf16(px, dptr(inp, &self.stream), 0, s.n * s.k)?;
        let sms = self
            .module
            .context()
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| drv("query multiprocessor count", e))?;
        let plan = Gemm24Plan::choose(s.n, s.oc, s.k, sms.max(1) as usize);
        let mut ws = match plan.workspace_len(s.n, s.oc) {
            0 => None,
            len => Some(alloc::<f32>(
                &self.stream,
                &self.ledger,
                len,
                "split-K workspace of the 2:4 matmul",
            )?),
        };
        launch_gemm24(
            &self.module,
            &self.stream,
            Half::Bf16,
            out.slice_mut(),
            x16.slice(),
            dev,
            bias.map(|b| b.slice()),
            gelu,
            s.n,
            plan,
            ws.as_mut().map(|w| w.slice_mut()),
        )
    }
}

impl Drop for CudaOps {
    fn drop(&mut self) {
        // Let every enqueued kernel finish before the module is unloaded and the buffers
        // freed (the fields drop right after this). Errors cannot be reported from drop.
        let _ = self.stream.synchronize();
    }
}

impl CudaOps {
    /// Grid and dynamic shared memory of reference attention kernel `which` (0 fwd, 1 bwd_q,
    /// 2 bwd_kv), or a clear error when the shape does not fit them.
    fn attn_launch_shape(
        &self,
        op: &'static str,
        s: &AttnShape,
        which: usize,
    ) -> Result<((u32, u32, u32), usize)> {
        let bh = s.b * s.h;
        if bh > 65535 {
            return Err(Error::Config(format!(
                "{op}: B·H = {bh} exceeds the reference kernel's grid limit (65535)"
            )));
        }
        let t = grid_x(op, "T", s.t)?;
        to_u32(op, "D", s.d)?;
        let (f, q, kv) = attn_ref_smem(s.t, s.d);
        if kv > ATT_REF_MAX_SMEM {
            return Err(Error::Config(format!(
                "{op}: T = {} with D = {} needs {kv} bytes of shared memory in the reference \
                 CUDA attention (limit {ATT_REF_MAX_SMEM}); shorter sequences only until the \
                 fused kernel (issue 9) lands",
                s.t, s.d
            )));
        }
        let smem = [f, q, kv][which.min(2)];
        Ok(((t, bh as u32, 1), smem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colsum_chunks_cover_every_row_once() {
        for rows in [1usize, 15, 16, 17, 1000, 4096, 65536, 65537, 10_000_000] {
            let (rpc, chunks) = colsum_plan(rows);
            assert!(rpc >= 16 && chunks <= 4096, "rows {rows}: {rpc} x {chunks}");
            assert!(
                chunks * rpc >= rows && (chunks - 1) * rpc < rows,
                "rows {rows}"
            );
        }
        assert_eq!(colsum_plan(0), (16, 0));
    }

    #[test]
    fn sumsq_grid_depends_on_n_only_and_is_capped() {
        assert_eq!(sumsq_grid(1), 1);
        assert_eq!(sumsq_grid(256), 1);
        assert_eq!(sumsq_grid(257), 2);
        assert_eq!(sumsq_grid(usize::MAX / 2), SUMSQ_MAX_BLOCKS);
    }

    #[test]
    fn attention_smem_matches_the_kernels_layout() {
        // fwd: T scores + D query; bwd_q: T dS + D q + D dO; bwd_kv: 2(T − j) ≤ 2T + 2D.
        assert_eq!(attn_ref_smem(100, 64), (656, 912, 1312));
        // The model's largest configs fit (T = 1024, D = 128 → 9 KiB).
        assert!(attn_ref_smem(1024, 128).2 <= ATT_REF_MAX_SMEM);
        assert!(attn_ref_smem(8192, 64).2 > ATT_REF_MAX_SMEM);
    }

    #[test]
    fn idx_stats_track_the_largest_scored_id() {
        // The statistics are what token/target validation relies on; check them on host data.
        let stats = |host: &[u32]| {
            (
                host.iter().copied().max(),
                host.iter().copied().filter(|&x| x != IGNORE_INDEX).max(),
            )
        };
        assert_eq!(stats(&[]), (None, None));
        assert_eq!(stats(&[3, IGNORE_INDEX, 7]), (Some(IGNORE_INDEX), Some(7)));
        assert_eq!(stats(&[IGNORE_INDEX]), (Some(IGNORE_INDEX), None));
    }

    #[test]
    fn constructor_reports_why_instead_of_panicking() {
        // On a machine without a driver (or a build without kernels) this must be an error
        // that says so; with a working GPU it succeeds. Either way no panic.
        match CudaOps::new(0) {
            Ok(ops) => assert!(ops.label().starts_with("cuda:0 ")),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("device: "), "{msg}");
                if !libcuda_present() {
                    assert!(msg.contains("libcuda not found"), "{msg}");
                }
                if !kernels_built() {
                    assert!(msg.contains("built without CUDA kernels"), "{msg}");
                }
            }
        }
        // An ordinal far past any machine's device count is always an error.
        let e = CudaOps::new(1 << 20)
            .err()
            .expect("no machine has 2^20 GPUs");
        assert!(e.to_string().starts_with("device: "), "{e}");
    }
}
