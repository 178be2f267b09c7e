//! The 2:4 GEMM on the GPU (kernels/gemm24.cu): the host build of its lane-layout and
//! shared-memory helpers (kernels/gemm24.cuh, for the warp-emulator tests), the launcher of the
//! tuned `mma.sp` kernels ([`launch_gemm24`]: cp.async pipeline, ldmatrix, two tile
//! configurations, split-K for few tokens, bias and GELU fused) and of the reference kernel
//! ([`launch_gemm24_ref`], one warp per 16×8 tile, straight from global memory).
//! Status: compiles and is layout-emulated; it has not run on a GPU yet.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{sys, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::drv;
use super::kernels::{arg, launch, launch_smem, KernelModule, ELEMENTWISE_BLOCK};
use crate::sparse::Sparse24;
use crate::{Error, Result};

mod ffi {
    extern "C" {
        pub fn asa_host_mma_sp_a_pos(lane: u32, j: u32, h: u32, row: *mut u32, ccol: *mut u32);
        pub fn asa_host_mma_sp_b_pos(lane: u32, j: u32, h: u32, k: *mut u32, n: *mut u32);
        pub fn asa_host_mma_c_pos(lane: u32, i: u32, row: *mut u32, col: *mut u32);
        pub fn asa_host_mma_sp_meta_word(
            meta: *const u16,
            per_row: u32,
            row0: u32,
            pair: u32,
            steps: u32,
            lane: u32,
        ) -> u32;
        pub fn asa_host_g24_config(cfg: u32, out: *mut u32) -> u32;
        pub fn asa_host_g24_w_smem(r: u32, c: u32) -> u32;
        pub fn asa_host_g24_x_smem(n: u32, c: u32) -> u32;
        pub fn asa_host_g24_ldsm_a(lane: u32, s: u32, row: *mut u32, chunk: *mut u32);
        pub fn asa_host_g24_ldsm_b(lane: u32, s: u32, tok: *mut u32, chunk: *mut u32);
        pub fn asa_host_g24_w_src(n0: i32, i: i32, kt: i32, n: i32, k: i32) -> i64;
        pub fn asa_host_g24_x_src(m0: i32, i: i32, kt: i32, m: i32, k: i32) -> i64;
        pub fn asa_host_g24_meta_src(n0: i32, i: i32, kt: i32, n: i32, pairs: i32) -> i64;
        pub fn asa_host_g24h_step_desc(w_s: u32, x_s: u32, s: u32, da: *mut u64, db: *mut u64);
        pub fn asa_host_g24h_smem(r: u32, c: u32, sbo: u32) -> u32;
        pub fn asa_host_g24h_desc(addr: u32, lbo: u32, sbo: u32) -> u64;
        pub fn asa_host_g24h_d_pos(tid: u32, i: u32, row: *mut u32, col: *mut u32);
        pub fn asa_host_g24h_constants(out: *mut u32);
        pub fn asa_host_g24_split_range(
            pairs: u32,
            splits: u32,
            z: u32,
            first: *mut u32,
            end: *mut u32,
        );
    }
}

/// `(row, compressed column)` of half `h` of A register `j` of `lane` (kernels/gemm24.cuh).
pub fn a_pos(lane: u32, j: u32, h: u32) -> (u32, u32) {
    let (mut r, mut c) = (0, 0);
    // SAFETY: pure function of scalars writing two u32 through live exclusive references.
    unsafe { ffi::asa_host_mma_sp_a_pos(lane, j, h, &mut r, &mut c) };
    (r, c)
}

/// `(k, n)` of half `h` of B register `j` of `lane`.
pub fn b_pos(lane: u32, j: u32, h: u32) -> (u32, u32) {
    let (mut k, mut n) = (0, 0);
    // SAFETY: as for `a_pos`.
    unsafe { ffi::asa_host_mma_sp_b_pos(lane, j, h, &mut k, &mut n) };
    (k, n)
}

/// `(row, col)` of accumulator `i` of `lane`.
pub fn c_pos(lane: u32, i: u32) -> (u32, u32) {
    let (mut r, mut c) = (0, 0);
    // SAFETY: as for `a_pos`.
    unsafe { ffi::asa_host_mma_c_pos(lane, i, &mut r, &mut c) };
    (r, c)
}

/// The reordered metadata word of `lane` for step pair `pair` of the tile at `row0`, computed
/// by the kernel's helper from canonical metadata (`N × K/16` u16).
pub fn meta_word<W>(w: &Sparse24<W>, row0: u32, pair: u32, lane: u32) -> Result<u32> {
    let (n, k) = (w.n() as u32, w.k() as u32);
    if !k.is_multiple_of(32) || row0 + 16 > n || pair >= (k / 32).div_ceil(2) || lane >= 32 {
        return Err(Error::Config(format!(
            "meta_word: tile row {row0}, pair {pair}, lane {lane} outside a {n} x {k} matrix"
        )));
    }
    // SAFETY: the helper reads rows row0..row0+16 and u16 indices < K/16 of each (checked just
    // above), all inside `w.meta()` (N × K/16 u16), which outlives the call.
    Ok(unsafe {
        ffi::asa_host_mma_sp_meta_word(w.meta().as_ptr(), k / 16, row0, pair, k / 32, lane)
    })
}

/// A 2:4 weight prepared for the `mma.sp` kernels: compressed values (as u32 pairs) and the
/// reordered metadata, on the device.
pub struct DeviceSparse24 {
    pub n: usize,
    pub k: usize,
    pub values: CudaSlice<u32>,
    pub meta: CudaSlice<u32>,
}

impl DeviceSparse24 {
    /// Upload a bf16 or f16 2:4 matrix (N % 16 == 0, K % 32 == 0).
    pub fn upload<W: Copy + Into<Bits16>>(
        stream: &Arc<CudaStream>,
        w: &Sparse24<W>,
    ) -> Result<Self> {
        let meta = w.mma_sp_metadata()?;
        let vals: Vec<u32> = w
            .values()
            .chunks_exact(2)
            .map(|p| {
                let (lo, hi): (Bits16, Bits16) = (p[0].into(), p[1].into());
                lo.0 as u32 | ((hi.0 as u32) << 16)
            })
            .collect();
        Ok(DeviceSparse24 {
            n: w.n(),
            k: w.k(),
            values: stream
                .clone_htod(&vals)
                .map_err(|e| drv("upload 2:4 values", e))?,
            meta: stream
                .clone_htod(&meta)
                .map_err(|e| drv("upload 2:4 metadata", e))?,
        })
    }
}

/// The raw bits of a 16-bit float.
#[derive(Clone, Copy)]
pub struct Bits16(pub u16);

impl From<half::bf16> for Bits16 {
    fn from(v: half::bf16) -> Self {
        Bits16(v.to_bits())
    }
}
impl From<half::f16> for Bits16 {
    fn from(v: half::f16) -> Self {
        Bits16(v.to_bits())
    }
}

/// Operand type of the 2:4 kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    Bf16,
    F16,
}

/// The checks every 2:4 GEMM launcher makes before touching the device: N a multiple of
/// `n_align`, K a positive multiple of 32, buffer lengths (X, Y, bias and the weight's values
/// and metadata) that match (M, N, K), at most 65535
/// token tiles of `bn` rows (the grid's y limit; pass `usize::MAX` when tokens are not on y),
/// and every index the kernels form (up to `M·max(K, N)·planes`) inside i32. Returns (M, N, K)
/// as the kernels' i32.
#[allow(clippy::too_many_arguments)]
fn check_gemm24_args(
    what: &str,
    m: usize,
    w: &DeviceSparse24,
    x: &CudaSlice<u16>,
    y: &CudaSlice<f32>,
    bias: Option<&CudaSlice<f32>>,
    n_align: usize,
    bn: usize,
    planes: usize,
) -> Result<(i32, i32, i32)> {
    let (n, k) = (w.n, w.k);
    let bad = |why: String| Error::Config(format!("{what} (M {m}, N {n}, K {k}): {why}"));
    if !n.is_multiple_of(n_align) || !k.is_multiple_of(32) || k == 0 {
        return Err(bad(format!("needs N % {n_align} == 0 and K % 32 == 0")));
    }
    let (want_vals, want_meta) = (n * k / 4, n / 16 * (k / 32).div_ceil(2) * 32);
    if w.values.len() != want_vals || w.meta.len() != want_meta {
        return Err(bad(format!(
            "the 2:4 weight holds {} value words and {} metadata words, expected {want_vals} \
             and {want_meta}",
            w.values.len(),
            w.meta.len()
        )));
    }
    if x.len() != m * k || y.len() != m * n || bias.is_some_and(|b| b.len() != n) {
        return Err(bad(format!(
            "buffer lengths x {}, y {}, bias {:?} do not match",
            x.len(),
            y.len(),
            bias.map(|b| b.len())
        )));
    }
    let tiles_m = m.div_ceil(bn);
    if tiles_m > 65_535 {
        return Err(bad(format!(
            "{tiles_m} token tiles exceed the grid's y limit (65535)"
        )));
    }
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| bad(format!("{v} exceeds i32")));
    to_i32(m * k.max(n) * planes.max(1))?;
    Ok((to_i32(m)?, to_i32(n)?, to_i32(k)?))
}

/// `y (M × N, f32) = x (M × K, 16-bit bits) · Wᵀ + bias` with the reference `mma.sp` kernel.
#[allow(clippy::too_many_arguments)]
pub fn launch_gemm24_ref(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    dtype: Half,
    y: &mut CudaSlice<f32>,
    x: &CudaSlice<u16>,
    w: &DeviceSparse24,
    bias: Option<&CudaSlice<f32>>,
    m: usize,
) -> Result<()> {
    let n = w.n;
    let (mut mi, mut ni, mut ki) =
        check_gemm24_args("gemm24", m, w, x, y, bias, 16, usize::MAX, 1)?;
    if m == 0 {
        return Ok(());
    }
    let name = match dtype {
        Half::Bf16 => "gemm24_bf16_ref",
        Half::F16 => "gemm24_f16_ref",
    };
    let (mut xp, _gx) = x.device_ptr(stream);
    let (mut vp, _gv) = w.values.device_ptr(stream);
    let (mut mp, _gm) = w.meta.device_ptr(stream);
    let bias_guard = bias.map(|b| b.device_ptr(stream));
    let mut bp: sys::CUdeviceptr = bias_guard.as_ref().map_or(0, |(p, _)| *p);
    let (mut yp, _gy) = y.device_ptr_mut(stream);
    let mut params: [*mut c_void; 8] = [
        arg!(xp),
        arg!(vp),
        arg!(mp),
        arg!(bp),
        arg!(yp),
        arg!(mi),
        arg!(ni),
        arg!(ki),
    ];
    let grid = (m.div_ceil(8) as u32, (n / 16) as u32, 1);
    // SAFETY: the 8 parameters match the kernel's signature in order and size (five device
    // pointers, bias possibly 0 = nullptr, three i32). Buffer lengths were checked against
    // (M, N, K) above, N % 16 and K % 32 hold, and the kernel reads x rows < M only,
    // values/metadata of tiles < N/16 and steps < K/32, and writes y[m][n] for m < M. The
    // pointer guards keep the buffers alive and ordered on `stream`.
    unsafe { launch(module, stream, name, grid, (32, 1, 1), &mut params) }
}

/// Run the layout probe (`mma_sp_probe` in kernels/gemm24.cu): one warp, one `mma.sp` on the
/// given per-lane registers; returns `d` (32 lanes × 4 f32). Compare with
/// [`crate::sparse::mma_emu::mma_sp_m16n8k32`] on the same registers.
#[allow(clippy::too_many_arguments)]
pub fn run_mma_sp_probe(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    dtype: Half,
    a: &[[u32; 4]; 32],
    b: &[[u32; 4]; 32],
    c: &[[f32; 4]; 32],
    e: &[u32; 32],
    selector: u32,
) -> Result<[[f32; 4]; 32]> {
    if selector > 1 {
        return Err(Error::Config(format!(
            "mma.sp m16n8k32 selector must be 0 or 1, got {selector}"
        )));
    }
    let flat = |x: &[[u32; 4]; 32]| x.iter().flatten().copied().collect::<Vec<u32>>();
    let up = |what: &str, e| drv(what, e);
    let ad = stream.clone_htod(&flat(a)).map_err(|e| up("upload a", e))?;
    let bd = stream.clone_htod(&flat(b)).map_err(|e| up("upload b", e))?;
    let ed = stream.clone_htod(&e[..]).map_err(|e| up("upload e", e))?;
    let cflat: Vec<f32> = c.iter().flatten().copied().collect();
    let cd = stream.clone_htod(&cflat).map_err(|e| up("upload c", e))?;
    let mut dd = stream
        .clone_htod(&[f32::NAN; 128][..])
        .map_err(|e| up("upload d", e))?;
    {
        let (mut ap, _ga) = ad.device_ptr(stream);
        let (mut bp, _gb) = bd.device_ptr(stream);
        let (mut ep, _ge) = ed.device_ptr(stream);
        let (mut cp, _gc) = cd.device_ptr(stream);
        let (mut dp, _gd) = dd.device_ptr_mut(stream);
        let mut sel = selector as i32;
        let mut is_bf16: i32 = (dtype == Half::Bf16) as i32;
        let mut params: [*mut c_void; 7] = [
            arg!(ap),
            arg!(bp),
            arg!(ep),
            arg!(cp),
            arg!(dp),
            arg!(sel),
            arg!(is_bf16),
        ];
        // SAFETY: the 7 parameters match `mma_sp_probe`'s signature (five device pointers, two
        // i32); a, b, c, d hold 128 elements and e 32, exactly what one warp of 32 lanes reads
        // and writes; the guards keep the buffers alive and ordered on `stream`.
        unsafe {
            launch(
                module,
                stream,
                "mma_sp_probe",
                (1, 1, 1),
                (32, 1, 1),
                &mut params,
            )
        }?;
    }
    let out = stream.clone_dtoh(&dd).map_err(|e| drv("download d", e))?;
    let mut d = [[0.0f32; 4]; 32];
    for (lane, regs) in d.iter_mut().enumerate() {
        regs.copy_from_slice(&out[lane * 4..lane * 4 + 4]);
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// The tuned kernels.
// ---------------------------------------------------------------------------------------------

/// Tile configuration of the tuned kernels (`ASA_G24_*` in kernels/gemm24.cuh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileConfig {
    /// 128 features × 128 tokens per CTA, 8 warps, 3 stages: compute-bound shapes.
    Large,
    /// 32 features × 32 tokens per CTA, 2 warps, 4 stages: few tokens (bandwidth-bound).
    Small,
}

/// The geometry of a [`TileConfig`], as the kernels are compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGeometry {
    /// Features (rows of W) per CTA.
    pub bm: usize,
    /// Tokens (rows of X) per CTA.
    pub bn: usize,
    pub warps_m: usize,
    pub warps_n: usize,
    pub stages: usize,
    pub threads: usize,
    /// Dynamic shared memory per CTA, bytes.
    pub smem: usize,
}

impl TileConfig {
    /// The geometry, read from the kernels' header (compiled for the host).
    pub fn geometry(self) -> TileGeometry {
        let mut o = [0u32; 7];
        let cfg = match self {
            TileConfig::Large => 0,
            TileConfig::Small => 1,
        };
        // SAFETY: the helper writes exactly 7 u32 into `o` for a known configuration.
        let known = unsafe { ffi::asa_host_g24_config(cfg, o.as_mut_ptr()) };
        assert_eq!(
            known, 1,
            "tile configuration {cfg} missing from kernels/gemm24.cuh"
        );
        TileGeometry {
            bm: o[0] as usize,
            bn: o[1] as usize,
            warps_m: o[2] as usize,
            warps_n: o[3] as usize,
            stages: o[4] as usize,
            threads: o[5] as usize,
            smem: o[6] as usize,
        }
    }

    /// The kernel compiled for this configuration and operand type.
    pub fn kernel(self, dtype: Half) -> &'static str {
        match (self, dtype) {
            (TileConfig::Large, Half::Bf16) => "gemm24_bf16_large",
            (TileConfig::Large, Half::F16) => "gemm24_f16_large",
            (TileConfig::Small, Half::Bf16) => "gemm24_bf16_small",
            (TileConfig::Small, Half::F16) => "gemm24_f16_small",
        }
    }
}

/// Byte offset of chunk `c` of row `r` in a stage's W tile (the kernels' swizzle).
pub fn w_smem(r: u32, c: u32) -> u32 {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_g24_w_smem(r, c) }
}

/// Byte offset of chunk `c` of token row `n` in a stage's X tile.
pub fn x_smem(n: u32, c: u32) -> u32 {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_g24_x_smem(n, c) }
}

/// `(row within the 16-row tile, chunk)` whose address `lane` gives ldmatrix for the A
/// fragment of step `s` of a stage.
pub fn ldsm_a(lane: u32, s: u32) -> (u32, u32) {
    let (mut r, mut c) = (0, 0);
    // SAFETY: writes two u32 through live exclusive references.
    unsafe { ffi::asa_host_g24_ldsm_a(lane, s, &mut r, &mut c) };
    (r, c)
}

/// `(token within the 8-token tile, chunk)` whose address `lane` gives ldmatrix for the B
/// fragment of step `s`.
pub fn ldsm_b(lane: u32, s: u32) -> (u32, u32) {
    let (mut r, mut c) = (0, 0);
    // SAFETY: as for `ldsm_a`.
    unsafe { ffi::asa_host_g24_ldsm_b(lane, s, &mut r, &mut c) };
    (r, c)
}

/// The source of chunk `i` of a stage's W tile (pair `kt`, CTA rows from `n0`): a byte offset
/// into the compressed values, or `None` where the kernels zero-fill (kernels/gemm24.cuh).
pub fn w_src(n0: usize, i: usize, kt: usize, n: usize, k: usize) -> Option<usize> {
    // SAFETY: pure function of scalars (the tests pass small shapes that fit i32).
    let v = unsafe { ffi::asa_host_g24_w_src(n0 as i32, i as i32, kt as i32, n as i32, k as i32) };
    usize::try_from(v).ok()
}

/// The source of chunk `i` of a stage's X tile: an element offset into X, or `None`.
pub fn x_src(m0: usize, i: usize, kt: usize, m: usize, k: usize) -> Option<usize> {
    // SAFETY: pure function of scalars.
    let v = unsafe { ffi::asa_host_g24_x_src(m0 as i32, i as i32, kt as i32, m as i32, k as i32) };
    usize::try_from(v).ok()
}

/// The source of 16-byte piece `i` of a stage's metadata: a u32 offset into the reordered
/// metadata, or `None`.
pub fn meta_src(n0: usize, i: usize, kt: usize, n: usize, pairs: usize) -> Option<usize> {
    // SAFETY: pure function of scalars.
    let v = unsafe {
        ffi::asa_host_g24_meta_src(n0 as i32, i as i32, kt as i32, n as i32, pairs as i32)
    };
    usize::try_from(v).ok()
}

/// The metadata pairs `[first, end)` split `z` of `splits` covers (the kernels' split-K rule).
pub fn split_range(pairs: u32, splits: u32, z: u32) -> (u32, u32) {
    assert!(splits > 0 && z < splits, "split {z} of {splits}");
    let (mut a, mut b) = (0, 0);
    // SAFETY: writes two u32 through live exclusive references; `splits` > 0 (the helper
    // divides by it).
    unsafe { ffi::asa_host_g24_split_range(pairs, splits, z, &mut a, &mut b) };
    (a, b)
}

/// How one 2:4 GEMM is launched: the tile configuration and the split-K factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm24Plan {
    pub config: TileConfig,
    /// Splits of K (1 = none). Above 1 the kernel writes partial sums to a workspace of
    /// `splits × M × N` f32 and a second kernel adds them in order (deterministic).
    pub splits: usize,
}

/// Up to this many tokens the small tile configuration is used.
pub const SMALL_MAX_M: usize = 64;
/// Split-K never cuts K into more pieces than this.
pub const MAX_SPLITS: usize = 8;

impl Gemm24Plan {
    /// The plan for `M` tokens, `N` features and `K` inputs on a device with `sms` SMs: the
    /// small tiles for few tokens, and split-K when the CTAs would not fill two waves (each
    /// split keeps at least 4 metadata pairs, i.e. 256 columns of K).
    pub fn choose(m: usize, n: usize, k: usize, sms: usize) -> Self {
        let config = if m <= SMALL_MAX_M {
            TileConfig::Small
        } else {
            TileConfig::Large
        };
        let g = config.geometry();
        let ctas = n.div_ceil(g.bm) * m.div_ceil(g.bn);
        let pairs = k.div_ceil(64);
        let want = (2 * sms.max(1)).div_ceil(ctas.max(1));
        let splits = want.min(MAX_SPLITS).min((pairs / 4).max(1)).max(1);
        Gemm24Plan { config, splits }
    }

    /// f32 elements of workspace the plan needs for `M × N` (0 without split-K).
    pub fn workspace_len(&self, m: usize, n: usize) -> usize {
        if self.splits > 1 {
            self.splits * m * n
        } else {
            0
        }
    }
}

/// `y (M × N, f32) = epilogue(x (M × K, 16-bit bits) · Wᵀ + bias)` with the tuned `mma.sp`
/// kernels; `gelu` applies the tanh GELU after the bias (the FFN's first layer). `workspace`
/// must hold [`Gemm24Plan::workspace_len`] f32 when `plan.splits > 1`.
#[allow(clippy::too_many_arguments)]
pub fn launch_gemm24(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    dtype: Half,
    y: &mut CudaSlice<f32>,
    x: &CudaSlice<u16>,
    w: &DeviceSparse24,
    bias: Option<&CudaSlice<f32>>,
    gelu: bool,
    m: usize,
    plan: Gemm24Plan,
    workspace: Option<&mut CudaSlice<f32>>,
) -> Result<()> {
    let n = w.n;
    let g = plan.config.geometry();
    let (mut mi, mut ni, mut ki) =
        check_gemm24_args("gemm24", m, w, x, y, bias, 16, g.bn, plan.splits)?;
    if plan.splits == 0 || plan.splits > MAX_SPLITS {
        return Err(Error::Config(format!(
            "gemm24 (M {m}, N {n}): split-K factor {} outside 1..={MAX_SPLITS}",
            plan.splits
        )));
    }
    let need = plan.workspace_len(m, n);
    let ws_ptr = match workspace {
        _ if need == 0 => None,
        Some(ws) if ws.len() >= need => Some(ws),
        other => {
            return Err(Error::Config(format!(
                "gemm24 (M {m}, N {n}): split-K by {} needs a workspace of {need} f32, got {:?}",
                plan.splits,
                other.map(|w| w.len())
            )))
        }
    };
    if m == 0 {
        return Ok(());
    }
    let tiles_m = m.div_ceil(g.bn);
    let mut gelu_i: i32 = gelu as i32;
    let (mut xp, _gx) = x.device_ptr(stream);
    let (mut vp, _gv) = w.values.device_ptr(stream);
    let (mut mp, _gm) = w.meta.device_ptr(stream);
    let bias_guard = bias.map(|b| b.device_ptr(stream));
    let mut bp: sys::CUdeviceptr = bias_guard.as_ref().map_or(0, |(p, _)| *p);
    let mut ws_guard = ws_ptr.map(|w| w.device_ptr_mut(stream));
    let mut wsp: sys::CUdeviceptr = ws_guard.as_mut().map_or(0, |(p, _)| *p);
    let (mut yp, _gy) = y.device_ptr_mut(stream);
    let grid = (n.div_ceil(g.bm) as u32, tiles_m as u32, plan.splits as u32);
    {
        let mut params: [*mut c_void; 10] = [
            arg!(xp),
            arg!(vp),
            arg!(mp),
            arg!(bp),
            arg!(yp),
            arg!(wsp),
            arg!(mi),
            arg!(ni),
            arg!(ki),
            arg!(gelu_i),
        ];
        // SAFETY: the 10 parameters match the kernel's signature in order and size (six device
        // pointers — bias and ws possibly 0 = nullptr — and four i32). Buffer lengths were
        // checked against (M, N, K) above, N % 16 and K % 32 hold; the kernel reads x rows < M,
        // values and metadata of rows < N and columns < K only (other chunks are zero-filled
        // from the buffer's base), writes y[m][n] for m < M, n < N, or with split-K
        // ws[z][m][n] for z < splits (the workspace holds splits·M·N f32, checked above). The
        // shared memory asked for is the configuration's own size. Guards keep the buffers
        // alive and ordered on `stream`.
        unsafe {
            launch_smem(
                module,
                stream,
                plan.config.kernel(dtype),
                grid,
                (g.threads as u32, 1, 1),
                g.smem as u32,
                &mut params,
            )
        }?;
    }
    if plan.splits > 1 {
        let mut sp = plan.splits as i32;
        let mut params: [*mut c_void; 7] = [
            arg!(wsp),
            arg!(sp),
            arg!(bp),
            arg!(yp),
            arg!(mi),
            arg!(ni),
            arg!(gelu_i),
        ];
        let blocks = (m * n / 4)
            .div_ceil(ELEMENTWISE_BLOCK as usize)
            .clamp(1, 65_535) as u32;
        // SAFETY: matches gemm24_splitk_reduce(const float* ws, int splits, const float* bias,
        // float* y, int M, int N, int gelu); it reads ws[z][0..M·N) for z < splits (checked
        // length), bias[0..N) when non-null, and writes y[0..M·N) (checked length); N % 4 == 0
        // since N % 16 == 0.
        unsafe {
            launch(
                module,
                stream,
                "gemm24_splitk_reduce",
                (blocks, 1, 1),
                (ELEMENTWISE_BLOCK, 1, 1),
                &mut params,
            )
        }?;
    }
    Ok(())
}

/// Run the ldmatrix layout probe (`ldmatrix_probe`): one warp, one `ldmatrix.x{num}` (`num`
/// 2 or 4, `.trans` when `trans`) from a 512-byte shared image of `src`, lane `l` giving byte
/// offset `offsets[l]` (16-byte aligned, below 512); returns the 32 lanes' 4 destination
/// registers (0 where an .x2 writes none). Compare with [`crate::sparse::mma_emu::ldmatrix`].
pub fn run_ldmatrix_probe(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    src: &[u16; 256],
    offsets: &[u32; 32],
    num: usize,
    trans: bool,
) -> Result<[[u32; 4]; 32]> {
    let mut mode: i32 = match (num, trans) {
        (4, false) => 0,
        (2, false) => 1,
        (2, true) => 2,
        (4, true) => 3,
        _ => {
            return Err(Error::Config(format!(
                "ldmatrix probe: .x{num} is not probed (x2 and x4 are)"
            )))
        }
    };
    if let Some(o) = offsets.iter().find(|&&o| o % 16 != 0 || o >= 512) {
        return Err(Error::Config(format!(
            "ldmatrix probe: row offset {o} is not a 16-byte aligned offset below 512"
        )));
    }
    let sd = stream
        .clone_htod(&src[..])
        .map_err(|e| drv("upload src", e))?;
    let od = stream
        .clone_htod(&offsets[..])
        .map_err(|e| drv("upload offsets", e))?;
    let mut out = stream
        .clone_htod(&[0xDEAD_BEEFu32; 128][..])
        .map_err(|e| drv("upload out", e))?;
    {
        let (mut s_p, _gs) = sd.device_ptr(stream);
        let (mut o_p, _go) = od.device_ptr(stream);
        let (mut d_p, _gd) = out.device_ptr_mut(stream);
        let mut params: [*mut c_void; 4] = [arg!(s_p), arg!(o_p), arg!(d_p), arg!(mode)];
        // SAFETY: matches ldmatrix_probe(const u16* src, const u32* row_off, u32* out, int
        // mode): src holds 256 u16, row_off 32 u32, out 128 u32, exactly what one warp uses.
        unsafe {
            launch(
                module,
                stream,
                "ldmatrix_probe",
                (1, 1, 1),
                (32, 1, 1),
                &mut params,
            )
        }?;
    }
    let v = stream
        .clone_dtoh(&out)
        .map_err(|e| drv("download out", e))?;
    let mut regs = [[0u32; 4]; 32];
    for (lane, r) in regs.iter_mut().enumerate() {
        r.copy_from_slice(&v[lane * 4..lane * 4 + 4]);
    }
    Ok(regs)
}

// ---------------------------------------------------------------------------------------------
// The Hopper path (kernels/gemm24_sm90.cu): wgmma.mma_async.sp, experimental.
//
// Status: compiles for sm_90a (SASS HGMMA.SP), its shared-memory layout and descriptors are
// checked against the wgmma emulator; never run. It is behind its own launcher and never
// chosen by `Gemm24Plan`. What it lacks for Hopper speed, in order (the plan):
// 1. TMA: load W, X and the metadata with cp.async.bulk.tensor (128-byte swizzle, tensor maps
//    built once per weight), completing on mbarriers instead of cp.async groups;
// 2. warp specialisation: one producer warp issuing TMA, two consumer warpgroups (128 features
//    × 128–256 tokens per CTA), setmaxnreg to move registers to the consumers;
// 3. keep wgmma in flight: wait_group 1 instead of 0, releasing a stage only when its wgmma
//    group retires;
// 4. 128-byte swizzled descriptors (the no-swizzle layout used now conflicts on the cp.async
//    writes), and a persistent tile scheduler with a cluster multicast of X.
// ---------------------------------------------------------------------------------------------

/// The sm_90a kernels run only on compute capability 9.0 (elsewhere their bodies are empty):
/// an error naming `what` on any other device.
fn require_sm90a(module: &KernelModule, what: &str) -> Result<()> {
    let ctx = module.context();
    let cc = |a| {
        ctx.attribute(a)
            .map_err(|e| drv("query compute capability", e))
    };
    let major = cc(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = cc(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    if (major, minor) != (9, 0) {
        return Err(Error::Config(format!(
            "{what}: wgmma.sp needs an sm_90a device (compute capability 9.0), this one is \
             {major}.{minor}"
        )));
    }
    Ok(())
}

/// Constants of the Hopper kernel (kernels/gemm24.cuh `ASA_G24H_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HopperGeometry {
    pub bm: usize,
    pub bn: usize,
    pub stages: usize,
    pub threads: usize,
    pub w_sbo: u32,
    pub x_sbo: u32,
    pub lbo: u32,
    pub stage_bytes: usize,
    pub smem: usize,
}

/// The Hopper kernel's geometry, read from its header.
pub fn hopper_geometry() -> HopperGeometry {
    let mut c = [0u32; 9];
    // SAFETY: the helper writes exactly 9 u32.
    unsafe { ffi::asa_host_g24h_constants(c.as_mut_ptr()) };
    HopperGeometry {
        bm: c[0] as usize,
        bn: c[1] as usize,
        stages: c[2] as usize,
        threads: c[3] as usize,
        w_sbo: c[4],
        x_sbo: c[5],
        lbo: c[6],
        stage_bytes: c[7] as usize,
        smem: c[8] as usize,
    }
}

/// Byte offset of chunk `c` of row `r` in a core-matrix tile with row-group stride `sbo`.
pub fn hopper_smem(r: u32, c: u32, sbo: u32) -> u32 {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_g24h_smem(r, c, sbo) }
}

/// The kernel's wgmma matrix descriptor for a tile at shared address `addr`.
pub fn hopper_desc(addr: u32, lbo: u32, sbo: u32) -> u64 {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_g24h_desc(addr, lbo, sbo) }
}

/// The Hopper kernel's descriptors `(A, B)` of k32 step `s` of a stage at `w_s` / `x_s`.
pub fn hopper_step_desc(w_s: u32, x_s: u32, s: u32) -> (u64, u64) {
    let (mut a, mut b) = (0, 0);
    // SAFETY: writes two u64 through live exclusive references.
    unsafe { ffi::asa_host_g24h_step_desc(w_s, x_s, s, &mut a, &mut b) };
    (a, b)
}

/// `(row, col)` of accumulator `i` of warpgroup thread `tid` (m64n128 f32).
pub fn hopper_d_pos(tid: u32, i: u32) -> (u32, u32) {
    let (mut r, mut c) = (0, 0);
    // SAFETY: writes two u32 through live exclusive references.
    unsafe { ffi::asa_host_g24h_d_pos(tid, i, &mut r, &mut c) };
    (r, c)
}

/// `y (M × N, f32) = epilogue(x (M × K, bf16 bits) · Wᵀ + bias)` with the experimental
/// Hopper `wgmma.sp` kernel. Needs a compute capability 9.0 device (sm_90a SASS), bf16,
/// N % 64 == 0 and K % 32 == 0; anything else is a clear error before launch.
#[allow(clippy::too_many_arguments)]
pub fn launch_gemm24_wgmma(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    y: &mut CudaSlice<f32>,
    x: &CudaSlice<u16>,
    w: &DeviceSparse24,
    bias: Option<&CudaSlice<f32>>,
    gelu: bool,
    m: usize,
) -> Result<()> {
    let (n, k) = (w.n, w.k);
    require_sm90a(module, &format!("gemm24 wgmma (M {m}, N {n}, K {k})"))?;
    let g = hopper_geometry();
    let (mut mi, mut ni, mut ki) =
        check_gemm24_args("gemm24 wgmma", m, w, x, y, bias, g.bm, g.bn, 1)?;
    if m == 0 {
        return Ok(());
    }
    let tiles_m = m.div_ceil(g.bn);
    let mut gelu_i = gelu as i32;
    let (mut xp, _gx) = x.device_ptr(stream);
    let (mut vp, _gv) = w.values.device_ptr(stream);
    let (mut mp, _gm) = w.meta.device_ptr(stream);
    let bias_guard = bias.map(|b| b.device_ptr(stream));
    let mut bp: sys::CUdeviceptr = bias_guard.as_ref().map_or(0, |(p, _)| *p);
    let (mut yp, _gy) = y.device_ptr_mut(stream);
    let mut params: [*mut c_void; 9] = [
        arg!(xp),
        arg!(vp),
        arg!(mp),
        arg!(bp),
        arg!(yp),
        arg!(mi),
        arg!(ni),
        arg!(ki),
        arg!(gelu_i),
    ];
    // SAFETY: the 9 parameters match gemm24_bf16_wgmma's signature (five device pointers, bias
    // possibly 0 = nullptr, four i32). Lengths were checked against (M, N, K); N % 64 == 0, so
    // every CTA's rows and metadata tiles exist; rows ≥ M and columns ≥ K are zero-filled,
    // never read; y is written for m < M only. The guards keep the buffers alive and ordered
    // on `stream`.
    unsafe {
        launch_smem(
            module,
            stream,
            "gemm24_bf16_wgmma",
            ((n / g.bm) as u32, tiles_m as u32, 1),
            (g.threads as u32, 1, 1),
            g.smem as u32,
            &mut params,
        )
    }
}

/// Run the wgmma.sp layout probe (`wgmma_sp_probe`, sm_90a only): `img` (a multiple of 16
/// bytes, at most 48 KiB) becomes the shared memory, the packed A tile is described at byte
/// `a_off` with row-group stride `a_sbo`, B at `b_off` / `b_sbo` (LBO as the kernels use), and
/// one `wgmma.mma_async.sp` m64n128k32 runs with per-thread metadata `e` and `selector` on zero
/// accumulators. Returns the 128 threads' 64 accumulators; compare with
/// [`crate::sparse::mma_emu::wgmma_sp_m64nnk32`] on the same image and descriptors.
#[allow(clippy::too_many_arguments)]
pub fn run_wgmma_sp_probe(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    img: &[u8],
    (a_off, a_sbo): (u32, u32),
    (b_off, b_sbo): (u32, u32),
    e: &[u32; 128],
    selector: u32,
) -> Result<Vec<Vec<f32>>> {
    require_sm90a(module, "wgmma.sp probe")?;
    if img.is_empty() || !img.len().is_multiple_of(16) || img.len() > 48 * 1024 || selector > 1 {
        return Err(Error::Config(format!(
            "wgmma.sp probe: image of {} bytes (a positive multiple of 16, at most 48 KiB), \
             selector {selector} (0 or 1)",
            img.len()
        )));
    }
    let words: Vec<u32> = img
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let up = |what: &str, e| drv(what, e);
    let imgd = stream
        .clone_htod(&words)
        .map_err(|e| up("upload image", e))?;
    let ed = stream.clone_htod(&e[..]).map_err(|e| up("upload e", e))?;
    let mut dd = stream
        .clone_htod(&vec![f32::NAN; 128 * 64])
        .map_err(|e| up("upload d", e))?;
    {
        let (mut ip, _gi) = imgd.device_ptr(stream);
        let (mut ep, _ge) = ed.device_ptr(stream);
        let (mut dp, _gd) = dd.device_ptr_mut(stream);
        let mut bytes = img.len() as i32;
        let (mut ao, mut asb, mut bo, mut bsb) = (a_off, a_sbo, b_off, b_sbo);
        let mut sel = selector as i32;
        let mut params: [*mut c_void; 9] = [
            arg!(ip),
            arg!(bytes),
            arg!(ao),
            arg!(asb),
            arg!(bo),
            arg!(bsb),
            arg!(ep),
            arg!(sel),
            arg!(dp),
        ];
        // SAFETY: matches wgmma_sp_probe(const uint4* img, int bytes, u32 a_off, u32 a_sbo,
        // u32 b_off, u32 b_sbo, const u32* e, int selector, float* d): img holds `bytes`
        // bytes (a multiple of 16, copied into as much dynamic shared memory), e 128 u32, d
        // 128·64 f32. The descriptors may point anywhere in shared memory; a probe that reads
        // past the image reads other shared memory of this CTA, never global memory.
        unsafe {
            launch_smem(
                module,
                stream,
                "wgmma_sp_probe",
                (1, 1, 1),
                (128, 1, 1),
                img.len() as u32,
                &mut params,
            )
        }?;
    }
    let out = stream.clone_dtoh(&dd).map_err(|e| drv("download d", e))?;
    Ok(out.chunks_exact(64).map(|c| c.to_vec()).collect())
}
