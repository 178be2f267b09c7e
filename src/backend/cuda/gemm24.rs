//! The 2:4 GEMM on the GPU (kernels/gemm24.cu): the host build of its lane-layout helpers
//! (kernels/gemm24.cuh, for the warp-emulator tests) and the launcher of the reference
//! `mma.sp` kernel. Status: compiles and is layout-emulated; it has not run on a GPU yet.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{sys, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::drv;
use super::kernels::{launch, KernelModule};
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
    let (n, k) = (w.n, w.k);
    let bad = |what: String| Error::Config(format!("gemm24 (M {m}, N {n}, K {k}): {what}"));
    if !n.is_multiple_of(16) || !k.is_multiple_of(32) || k == 0 {
        return Err(bad("needs N % 16 == 0 and K % 32 == 0".into()));
    }
    if x.len() != m * k || y.len() != m * n || bias.is_some_and(|b| b.len() != n) {
        return Err(bad(format!(
            "buffer lengths x {}, y {}, bias {:?} do not match",
            x.len(),
            y.len(),
            bias.map(|b| b.len())
        )));
    }
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| bad(format!("{v} exceeds i32")));
    let (mut mi, mut ni, mut ki) = (to_i32(m)?, to_i32(n)?, to_i32(k)?);
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
        (&mut xp) as *mut _ as *mut c_void,
        (&mut vp) as *mut _ as *mut c_void,
        (&mut mp) as *mut _ as *mut c_void,
        (&mut bp) as *mut _ as *mut c_void,
        (&mut yp) as *mut _ as *mut c_void,
        (&mut mi) as *mut _ as *mut c_void,
        (&mut ni) as *mut _ as *mut c_void,
        (&mut ki) as *mut _ as *mut c_void,
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
            (&mut ap) as *mut _ as *mut c_void,
            (&mut bp) as *mut _ as *mut c_void,
            (&mut ep) as *mut _ as *mut c_void,
            (&mut cp) as *mut _ as *mut c_void,
            (&mut dp) as *mut _ as *mut c_void,
            (&mut sel) as *mut _ as *mut c_void,
            (&mut is_bf16) as *mut _ as *mut c_void,
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
