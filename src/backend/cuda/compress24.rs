//! 2:4 prune + compress + reorder on the GPU (kernels/compress24.cu): from the f32 master weight
//! W (N × K, out × in, row-major) on the device straight to the [`DeviceSparse24`] the `mma.sp`
//! GEMM consumes, with no round trip through the host.
//!
//! Contract (DESIGN.md §3 "2:4 format"; stated in full in kernels/compress24.cuh): the result
//! is bit for bit what the host path gives — [`Sparse24::<f32>::compress`] (2 largest |w| per
//! aligned group of 4 along K, ties to the lower index, `-0.0` and `0.0` tie), each kept value
//! rounded to nearest even to bf16 or f16 (`half::bf16::from_f32` / `half::f16::from_f32`),
//! packed as [`DeviceSparse24::upload`] packs them, and the metadata of
//! [`Sparse24::mma_sp_metadata`]. Shapes: N a positive multiple of 16, K a positive multiple
//! of 32, else [`Error::Config`] before anything runs; a NaN/Inf in W is
//! [`Error::NonFinite`] naming the tensor and the first bad flat index, as the CPU reports it.
//!
//! [`Sparse24::<f32>::compress`]: crate::sparse::Sparse24::compress
//! [`Sparse24::mma_sp_metadata`]: crate::sparse::Sparse24::mma_sp_metadata
//!
//! Besides the launchers, this module exposes the kernel's `__host__ __device__` helpers
//! compiled for the host (kernels/host_helpers.cpp) and [`compress24_host`], every thread of
//! the kernel run on the CPU, so tests/compress24.rs checks the device code without a GPU
//! (DESIGN.md §6.2). Status: compiles, host-verified, not run on a GPU yet.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::drv;
use super::gemm24::{DeviceSparse24, Half};
use super::kernels::{launch, KernelModule};
use crate::{Error, Result};

/// Threads per block of the compress24 kernels (`ASA_COMPRESS24_BLOCK` in
/// kernels/compress24.cuh; a test checks the two agree).
pub const BLOCK: u32 = 256;

/// Largest grid x extent the driver accepts (2³¹ − 1 blocks).
const MAX_GRID_X: u64 = i32::MAX as u64;

mod ffi {
    extern "C" {
        pub fn asa_host_f32_to_bf16_rne(bits: u32) -> u32;
        pub fn asa_host_f32_to_f16_rne(bits: u32) -> u32;
        pub fn asa_host_compress24_select16(x: *const u32, kept: *mut u32) -> u32;
        pub fn asa_host_compress24_first_bad16(x: *const u32) -> u32;
        pub fn asa_host_compress24_block() -> u32;
        pub fn asa_host_compress24_words(n: u32, k: u32) -> u64;
        pub fn asa_host_compress24_word(
            w: *const u32,
            k: u32,
            bf16: u32,
            word: u64,
            values: *mut u32,
            meta: *mut u32,
        ) -> u64;
    }
}

/// The kernel's f32 → bf16 rounding (nearest even), as bits.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    // SAFETY: pure function of a scalar.
    unsafe { ffi::asa_host_f32_to_bf16_rne(x.to_bits()) as u16 }
}

/// The kernel's f32 → f16 rounding (nearest even, subnormals, overflow to ±Inf), as bits.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    // SAFETY: pure function of a scalar.
    unsafe { ffi::asa_host_f32_to_f16_rne(x.to_bits()) as u16 }
}

/// The kernel's 2:4 selection of 16 consecutive weights of a row (aligned to 16 columns): the
/// canonical metadata u16 and the 8 kept values (two per group of 4, in index order).
pub fn select16(x: &[f32; 16]) -> (u16, [f32; 8]) {
    let bits = x.map(f32::to_bits);
    let mut kept = [0u32; 8];
    // SAFETY: the helper reads 16 u32 from `bits` and writes 8 to `kept`, both live locals of
    // exactly that size.
    let meta = unsafe { ffi::asa_host_compress24_select16(bits.as_ptr(), kept.as_mut_ptr()) };
    (meta as u16, kept.map(f32::from_bits))
}

/// The kernel's scan for NaN/Inf: the position of the first one among 16 weights, if any.
pub fn first_bad16(x: &[f32; 16]) -> Option<usize> {
    let bits = x.map(f32::to_bits);
    // SAFETY: the helper reads 16 u32 from a live local array of 16.
    let p = unsafe { ffi::asa_host_compress24_first_bad16(bits.as_ptr()) };
    (p < 16).then_some(p as usize)
}

/// `ASA_COMPRESS24_BLOCK` as the kernels were compiled with it.
pub fn kernel_block() -> u32 {
    // SAFETY: returns a constant.
    unsafe { ffi::asa_host_compress24_block() }
}

/// Metadata words (= kernel threads) of an N × K matrix: `N/16 · ⌈K/64⌉ · 32`, computed by the
/// kernels' helper. `None` when N or K exceeds u32.
pub fn kernel_words(n: usize, k: usize) -> Option<u64> {
    let (n, k) = (u32::try_from(n).ok()?, u32::try_from(k).ok()?);
    // SAFETY: pure function of scalars.
    Some(unsafe { ffi::asa_host_compress24_words(n, k) })
}

/// The sizes of the device compression of `name` (N × K, `len` weights), after checking the
/// shape: `(values u32, metadata u32, words)`. The same checks, in the same order, for the
/// launchers and [`compress24_host`].
fn plan(name: &str, len: usize, n: usize, k: usize) -> Result<(usize, usize, u64)> {
    if n == 0 || !n.is_multiple_of(16) || k == 0 || !k.is_multiple_of(32) {
        return Err(Error::Config(format!(
            "{name}: W is {n} x {k} (out_features x in_features); the device 2:4 compression \
             needs N a positive multiple of 16 and K a positive multiple of 32 (no padding is \
             applied)"
        )));
    }
    // The same message as Sparse24::compress, so both backends report a bad buffer alike.
    if n.checked_mul(k) != Some(len) {
        return Err(Error::Config(format!(
            "{name}: {len} weights, expected N x K = {n} x {k}"
        )));
    }
    let words = kernel_words(n, k)
        .filter(|w| w.div_ceil(BLOCK as u64) <= MAX_GRID_X)
        .ok_or_else(|| {
            Error::Config(format!(
                "{name}: W is {n} x {k}, too large for one compress24 launch (K must fit in \
                 32 bits and N/16 * ceil(K/64) * 32 threads in one grid)"
            ))
        })?;
    let meta_len = usize::try_from(words)
        .map_err(|_| Error::Config(format!("{name}: {words} metadata words exceed usize")))?;
    Ok((n * k / 4, meta_len, words))
}

/// Every thread of the compress24 kernel run on the CPU with the kernel's own code (the host
/// build of kernels/compress24.cuh): returns `(values, meta)` laid out as in
/// [`DeviceSparse24`] (values N × K/4 u32, metadata `[N/16][⌈K/64⌉][32]` u32), or the errors
/// the launcher gives. The outputs start poisoned (all ones, which no finite input produces),
/// so a word no thread writes shows up in a comparison.
pub fn compress24_host(
    name: &str,
    w: &[f32],
    n: usize,
    k: usize,
    dtype: Half,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let (values_len, meta_len, words) = plan(name, w.len(), n, k)?;
    let mut values = vec![u32::MAX; values_len];
    let mut meta = vec![u32::MAX; meta_len];
    let bits: Vec<u32> = w.iter().map(|x| x.to_bits()).collect();
    let bf16 = (dtype == Half::Bf16) as u32;
    let mut bad = u64::MAX;
    for word in 0..words {
        // SAFETY: `plan` checked N % 16, K % 32 and w.len() == N·K; thread `word` < words reads
        // rows < N (16 columns of each of two) of `bits`, writes 4 u32 of those rows in
        // `values` (N × K/4) and meta[word] (words entries), all inside the live vectors.
        let b = unsafe {
            ffi::asa_host_compress24_word(
                bits.as_ptr(),
                k as u32,
                bf16,
                word,
                values.as_mut_ptr(),
                meta.as_mut_ptr(),
            )
        };
        bad = bad.min(b);
    }
    if bad != u64::MAX {
        let index = bad as usize;
        return Err(Error::NonFinite {
            tensor: name.to_string(),
            index,
            value: w[index],
        });
    }
    Ok((values, meta))
}

/// Prune, compress and reorder the device weight `w` (N × K f32, row-major) into `out`
/// (`out.n` × `out.k`, its buffers already allocated with N·K/4 and `N/16·⌈K/64⌉·32` u32),
/// on `stream`. Blocking: it reads the NaN/Inf flag back, so asynchronous errors surface here.
/// On [`Error::NonFinite`] the contents of `out` are unspecified.
pub fn launch_compress24(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    dtype: Half,
    name: &str,
    w: &CudaSlice<f32>,
    out: &mut DeviceSparse24,
) -> Result<()> {
    let (n, k) = (out.n, out.k);
    let (values_len, meta_len, words) = plan(name, w.len(), n, k)?;
    if out.values.len() != values_len || out.meta.len() != meta_len {
        return Err(Error::Config(format!(
            "{name}: output buffers of {} values and {} metadata words, expected {values_len} \
             and {meta_len} for W {n} x {k}",
            out.values.len(),
            out.meta.len()
        )));
    }
    let mut d_bad = stream
        .clone_htod(&[u64::MAX][..])
        .map_err(|e| drv("copy the first-bad index to the device", e))?;
    {
        let (mut wp, _gw) = w.device_ptr(stream);
        let (mut vp, _gv) = out.values.device_ptr_mut(stream);
        let (mut mp, _gm) = out.meta.device_ptr_mut(stream);
        let (mut bp, _gb) = d_bad.device_ptr_mut(stream);
        // The kernel loads W and stores values 16 bytes at a time.
        if wp % 16 != 0 || vp % 16 != 0 {
            return Err(Error::Config(format!(
                "{name}: the weight and value buffers must be 16-byte aligned for compress24"
            )));
        }
        let mut ku = k as u32; // fits: checked by `plan`
        let mut words_arg = words;
        let mut params: [*mut c_void; 6] = [
            (&mut wp) as *mut _ as *mut c_void,
            (&mut vp) as *mut _ as *mut c_void,
            (&mut mp) as *mut _ as *mut c_void,
            (&mut ku) as *mut _ as *mut c_void,
            (&mut words_arg) as *mut _ as *mut c_void,
            (&mut bp) as *mut _ as *mut c_void,
        ];
        let kernel = match dtype {
            Half::Bf16 => "compress24_bf16",
            Half::F16 => "compress24_f16",
        };
        // At most 2^31 - 1 blocks: checked by `plan`.
        let grid = (words.div_ceil(BLOCK as u64) as u32, 1, 1);
        // SAFETY: the 6 parameters match `compress24_{bf16,f16}(const float* w, u32* values,
        // u32* meta, unsigned k, unsigned long long words, unsigned long long* first_bad)` in
        // order and size. `plan` checked N % 16 == 0, K % 32 == 0, K > 0 and
        // w.len() == N·K, and the output lengths were checked against it above, so thread
        // `word` < words reads 2 rows < N × 16 columns of W, writes 4 u32 of each of those
        // rows in values (N × K/4) and meta[word], and atomically updates the one u64 of
        // d_bad; threads past `words` return at once. W and values are 16-byte aligned
        // (checked above) and K % 32 == 0 keeps every row's vector accesses aligned. The
        // guards keep the buffers alive and ordered on `stream`.
        unsafe { launch(module, stream, kernel, grid, (BLOCK, 1, 1), &mut params) }?;
    }
    let bad = stream
        .clone_dtoh(&d_bad)
        .map_err(|e| drv("copy the first-bad index to the host", e))?;
    stream
        .synchronize()
        .map_err(|e| drv("synchronize after compress24", e))?;
    let bad = bad.first().copied().ok_or_else(|| {
        Error::Device("compress24: empty read-back of the first-bad index".into())
    })?;
    if bad != u64::MAX {
        let index = usize::try_from(bad)
            .ok()
            .filter(|&i| i < w.len())
            .ok_or_else(|| {
                Error::Device(format!(
                    "compress24 of `{name}` reported a bad weight at {bad}, outside its {} \
                     weights",
                    w.len()
                ))
            })?;
        let value = stream
            .clone_dtoh(&w.slice(index..index + 1))
            .map_err(|e| drv("copy the non-finite weight to the host", e))?;
        stream
            .synchronize()
            .map_err(|e| drv("synchronize after reading a weight", e))?;
        return Err(Error::NonFinite {
            tensor: name.to_string(),
            index,
            value: value.first().copied().unwrap_or(f32::NAN),
        });
    }
    Ok(())
}

/// Prune, compress and reorder the device weight `w` (N × K f32, row-major) into a new
/// [`DeviceSparse24`] of bf16 or f16 values, on `stream` (blocking; see
/// [`launch_compress24`]). The output buffers are allocated here (not charged to any ledger:
/// the caller accounts for them).
pub fn compress24_gpu(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    dtype: Half,
    name: &str,
    w: &CudaSlice<f32>,
    n: usize,
    k: usize,
) -> Result<DeviceSparse24> {
    let (values_len, meta_len, _) = plan(name, w.len(), n, k)?;
    // SAFETY: uninitialised u32 is plain old data; launch_compress24 writes every element of
    // both buffers (one metadata word per thread, and the threads' value words tile the N rows
    // × K/4 words exactly) before anything reads them, and on error they are dropped unread.
    let values = unsafe { stream.alloc::<u32>(values_len) }
        .map_err(|e| drv(&format!("allocate 2:4 values of `{name}`"), e))?;
    // SAFETY: as above.
    let meta = unsafe { stream.alloc::<u32>(meta_len) }
        .map_err(|e| drv(&format!("allocate 2:4 metadata of `{name}`"), e))?;
    let mut out = DeviceSparse24 { n, k, values, meta };
    launch_compress24(module, stream, dtype, name, w, &mut out)?;
    Ok(out)
}
