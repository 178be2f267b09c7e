//! Launchers for kernels/topk.cu: exact magnitude top-k pruning of a list of device tensors
//! (global or per tensor) and 2:4 selection, with the same contract, masks and reports as the
//! CPU path in [`crate::sparse`] (whose selection logic — [`RadixSelect`], [`tie_cut`] — runs
//! here on the histograms the kernels produce, so the two cannot drift apart).
//!
//! Also the safe wrappers of the host build of kernels/topk.cuh ([`host_helpers`]), which tests
//! compare with the Rust twins in `crate::sparse`.
//!
//! Flow of [`prune_gpu`] (kernels/topk.cu explains each kernel): upload the tensor table;
//! pass 0 (`topk_hist_*`: validate, count unpruned per tensor, histogram digit 0); for each
//! later pass, upload every group's prefix and histogram the next digit; read each histogram
//! back and feed it to the group's [`RadixSelect`]; if a group prunes some but not all of its
//! ties at the threshold, `topk_tie_count_*` counts ties per tile and [`tie_cut`] finds the
//! cut; `topk_mask_update_*` writes the masks and counts pruned weights per tensor. Every
//! driver call's result is checked; on any error no mask has been written unless the error
//! comes from the mask update itself.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{
    sys, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, SyncOnDrop, ValidAsZeroBits,
};

use super::drv;
use super::kernels::KernelModule;
use crate::sparse::topk::{
    assemble_report, bad_element_error, check_fraction, check_mask_len, group_tensors, groups,
    passes, tie_cut, PruneReport, PruneScope, RadixSelect, TopkWeight, BINS,
};
use crate::sparse::two_four::check_shape;
use crate::{Error, Result};

/// Elements per tile (`ASA_TOPK_TILE` in kernels/topk.cuh).
pub const TILE: usize = 4096;
/// Threads per block of every top-k kernel (`ASA_TOPK_BLOCK`).
pub const BLOCK: u32 = 256;
/// Blocks per SM for the tile kernels (they loop over their tile range, so any grid works).
const BLOCKS_PER_SM: u64 = 8;
/// A "no cut" tile index: every tie of the group is pruned.
const ALL_TIES: u32 = u32::MAX;

/// Weights of one device tensor. bf16/f16 are passed as their raw bits (this crate builds
/// cudarc without its `f16` feature).
#[derive(Clone, Copy, Debug)]
pub enum DeviceWeights<'a> {
    F32(&'a CudaSlice<f32>),
    Bf16Bits(&'a CudaSlice<u16>),
    F16Bits(&'a CudaSlice<u16>),
}

impl DeviceWeights<'_> {
    pub fn len(&self) -> usize {
        match self {
            DeviceWeights::F32(s) => s.len(),
            DeviceWeights::Bf16Bits(s) | DeviceWeights::F16Bits(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `f32`, `bf16` or `f16`.
    pub fn dtype(&self) -> &'static str {
        match self {
            DeviceWeights::F32(_) => "f32",
            DeviceWeights::Bf16Bits(_) => "bf16",
            DeviceWeights::F16Bits(_) => "f16",
        }
    }
    fn ptr<'s>(&'s self, stream: &'s CudaStream) -> (sys::CUdeviceptr, SyncOnDrop<'s>) {
        match self {
            DeviceWeights::F32(s) => s.device_ptr(stream),
            DeviceWeights::Bf16Bits(s) | DeviceWeights::F16Bits(s) => s.device_ptr(stream),
        }
    }
    /// Element `i` as f32 (copied from the device; for error messages).
    fn element(&self, stream: &Arc<CudaStream>, i: usize) -> Result<f32> {
        let v = match self {
            DeviceWeights::F32(s) => stream.clone_dtoh(&s.slice(i..i + 1)).map(|v| v[0]),
            DeviceWeights::Bf16Bits(s) => stream
                .clone_dtoh(&s.slice(i..i + 1))
                .map(|v| half::bf16::from_bits(v[0]).to_f32()),
            DeviceWeights::F16Bits(s) => stream
                .clone_dtoh(&s.slice(i..i + 1))
                .map(|v| half::f16::from_bits(v[0]).to_f32()),
        }
        .map_err(|e| drv("copy weight element to host", e))?;
        stream.synchronize().map_err(|e| drv("synchronize", e))?;
        Ok(v)
    }
}

/// One device tensor to prune: name, weights, and its 0/1 f32 mask (updated in place).
#[derive(Debug)]
pub struct DevicePruneTensor<'a> {
    pub name: &'a str,
    pub weights: DeviceWeights<'a>,
    pub mask: &'a mut CudaSlice<f32>,
}

/// Launch `name` from `module` on `stream`.
///
/// # Safety
/// `params` must match the kernel's parameter list in number, order and size, every pointer
/// among them must be valid for what the kernel does with it given the other arguments, and
/// the pointed-to buffers must stay alive and unused by other streams until the launch is
/// ordered before their next use.
unsafe fn launch(
    module: &KernelModule,
    stream: &CudaStream,
    name: &str,
    grid: u32,
    params: &mut [*mut c_void],
) -> Result<()> {
    // SAFETY: forwarded to the caller (the same contract as `kernels::launch`).
    unsafe { super::kernels::launch(module, stream, name, (grid, 1, 1), (BLOCK, 1, 1), params) }
}

fn to_dev<T: DeviceRepr>(stream: &Arc<CudaStream>, v: &[T], what: &str) -> Result<CudaSlice<T>> {
    stream
        .clone_htod(v)
        .map_err(|e| drv(&format!("copy {what} to device"), e))
}

fn to_host<T: DeviceRepr, S: DevicePtr<T>>(
    stream: &Arc<CudaStream>,
    v: &S,
    what: &str,
) -> Result<Vec<T>> {
    let out = stream
        .clone_dtoh(v)
        .map_err(|e| drv(&format!("copy {what} to host"), e))?;
    stream
        .synchronize()
        .map_err(|e| drv(&format!("synchronize after {what}"), e))?;
    Ok(out)
}

fn zeros<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    n: usize,
    what: &str,
) -> Result<CudaSlice<T>> {
    stream
        .alloc_zeros(n.max(1))
        .map_err(|e| drv(&format!("allocate {what}"), e))
}

fn arg<T>(x: &mut T) -> *mut c_void {
    x as *mut T as *mut c_void
}

/// Grid for `tiles` tiles: up to 8 blocks per SM, at least one, and enough blocks that no
/// block counts 2^31 or more elements in its shared u32 histogram.
fn tile_grid(tiles: u64, sms: u64) -> u32 {
    let by_sm = tiles.min(BLOCKS_PER_SM * sms.max(1));
    let min_for_u32 = tiles.div_ceil((1u64 << 31) / TILE as u64);
    by_sm.max(min_for_u32).clamp(1, i32::MAX as u64) as u32
}

/// Prune device tensors by fraction `f` in `scope`, on `stream` (blocking: it reads the
/// histograms back). The same contract, masks and report as [`crate::sparse::prune`]; all
/// tensors must have the same weight type.
pub fn prune_gpu(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    tensors: &mut [DevicePruneTensor<'_>],
    fraction: f64,
    scope: PruneScope,
) -> Result<PruneReport> {
    let dtype = tensors.first().map_or("f32", |t| t.weights.dtype());
    if let Some(t) = tensors.iter().find(|t| t.weights.dtype() != dtype) {
        return Err(Error::Config(format!(
            "prune: tensor `{}` has {} weights, the first tensor {dtype}; one call takes one \
             weight type",
            t.name,
            t.weights.dtype()
        )));
    }
    match dtype {
        "bf16" => prune_typed::<half::bf16>(module, stream, tensors, fraction, scope, "16"),
        "f16" => prune_typed::<half::f16>(module, stream, tensors, fraction, scope, "16"),
        _ => prune_typed::<f32>(module, stream, tensors, fraction, scope, "f32"),
    }
}

fn prune_typed<W: TopkWeight>(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    tensors: &mut [DevicePruneTensor<'_>],
    fraction: f64,
    scope: PruneScope,
    suffix: &str,
) -> Result<PruneReport> {
    check_fraction(fraction)?;
    for t in tensors.iter() {
        check_mask_len(t.name, t.weights.len(), t.mask.len())?;
    }
    let names: Vec<(String, usize)> = tensors
        .iter()
        .map(|t| (t.name.to_string(), t.weights.len()))
        .collect();
    // Device pointers of every tensor, held (with their stream-ordering guards) until the
    // kernels are done: the tensor table embeds them.
    let nt = tensors.len();
    let mut wptrs = Vec::with_capacity(nt);
    let mut mptrs = Vec::with_capacity(nt);
    let mut guards_w = Vec::with_capacity(nt);
    let mut guards_m = Vec::with_capacity(nt);
    for t in tensors.iter_mut() {
        let (wp, gw) = t.weights.ptr(stream);
        let (mp, gm) = t.mask.device_ptr_mut(stream);
        wptrs.push(wp);
        mptrs.push(mp);
        guards_w.push(gw);
        guards_m.push(gm);
    }
    let dev = CudaTopk { module, stream };
    let out = prune_driver::<W, _>(&dev, &names, &wptrs, &mptrs, fraction, scope, suffix);
    drop(guards_m);
    drop(guards_w);
    stream
        .synchronize()
        .map_err(|e| drv("synchronize after mask update", e))?;
    match out? {
        Driven::Report(r) => Ok(r),
        Driven::Bad { tensor, index } => {
            let t = &tensors[tensor];
            let m = to_host(stream, &t.mask.slice(index..index + 1), "mask element")?[0];
            let w = t.weights.element(stream, index)?;
            Err(bad_element_error(t.name, index, m, w))
        }
    }
}

/// An element type of the driver's device arrays.
pub trait TopkElem: DeviceRepr + ValidAsZeroBits + Copy + Default + 'static {}
impl TopkElem for u32 {}
impl TopkElem for u64 {}

/// What the top-k driver needs from a device — arrays, copies and launches — so the same
/// driver runs the kernels on a GPU ([`CudaTopk`]) and in the SIMT emulation of their source
/// ([`super::simt::EmuTopk`]).
pub trait TopkDevice {
    /// A device array.
    type Buf<T: TopkElem>;
    /// Streaming multiprocessors (sizes the grid; any grid is correct).
    fn sms(&self) -> Result<u64>;
    /// A new array holding `v`.
    fn upload<T: TopkElem>(&self, v: &[T], what: &str) -> Result<Self::Buf<T>>;
    /// A new array of `n` zeros.
    fn zeros<T: TopkElem>(&self, n: usize, what: &str) -> Result<Self::Buf<T>>;
    /// The array's contents, after every launch so far has finished.
    fn download<T: TopkElem>(&self, b: &Self::Buf<T>, what: &str) -> Result<Vec<T>>;
    /// The address a kernel parameter passes for `b`.
    fn addr<T: TopkElem>(&self, b: &Self::Buf<T>) -> u64;
    /// Launch kernel `name` over `grid` blocks of [`BLOCK`] threads.
    ///
    /// # Safety
    /// As [`launch`]: `params` match the kernel's parameter list, and every address among
    /// them is valid for what the kernel does with it.
    unsafe fn launch(&self, name: &str, grid: u32, params: &mut [*mut c_void]) -> Result<()>;
}

/// [`TopkDevice`] on a CUDA stream. Addresses are taken without holding cudarc's ordering
/// guards past the call: every array lives on the one stream the launches use.
pub struct CudaTopk<'a> {
    pub module: &'a KernelModule,
    pub stream: &'a Arc<CudaStream>,
}

impl TopkDevice for CudaTopk<'_> {
    type Buf<T: TopkElem> = CudaSlice<T>;
    fn sms(&self) -> Result<u64> {
        let sms = self
            .module
            .context()
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| drv("query multiprocessor count", e))?;
        Ok(sms.max(1) as u64)
    }
    fn upload<T: TopkElem>(&self, v: &[T], what: &str) -> Result<CudaSlice<T>> {
        to_dev(self.stream, v, what)
    }
    fn zeros<T: TopkElem>(&self, n: usize, what: &str) -> Result<CudaSlice<T>> {
        zeros(self.stream, n, what)
    }
    fn download<T: TopkElem>(&self, b: &CudaSlice<T>, what: &str) -> Result<Vec<T>> {
        to_host(self.stream, b, what)
    }
    fn addr<T: TopkElem>(&self, b: &CudaSlice<T>) -> u64 {
        b.device_ptr(self.stream).0
    }
    unsafe fn launch(&self, name: &str, grid: u32, params: &mut [*mut c_void]) -> Result<()> {
        // SAFETY: forwarded to the caller.
        unsafe { launch(self.module, self.stream, name, grid, params) }
    }
}

/// What the driver ends with: the report, or the first invalid element (global order) for
/// the caller to describe once it can read the tensors again.
pub enum Driven {
    Report(PruneReport),
    Bad { tensor: usize, index: usize },
}

/// The top-k driver over any [`TopkDevice`]: tensors given by name and length (`names`) and
/// by the device addresses of their weights (`wptrs`, element type `W`) and 0/1 f32 masks
/// (`mptrs`), which must stay valid and untouched until it returns. Checks of the fraction and
/// mask lengths are the caller's.
#[allow(clippy::too_many_arguments)]
pub fn prune_driver<W: TopkWeight, D: TopkDevice>(
    dev: &D,
    names: &[(String, usize)],
    wptrs: &[u64],
    mptrs: &[u64],
    fraction: f64,
    scope: PruneScope,
    suffix: &str,
) -> Result<Driven> {
    let nt = names.len();
    let nt_u32 = u32::try_from(nt)
        .map_err(|_| Error::Config(format!("prune: {nt} tensors is more than u32::MAX")))?;
    let (group_of, ng) = groups(scope, nt);
    let npasses = passes(W::KEY_BITS);

    // Global offsets and tiles, in tensor order.
    let mut offsets = Vec::with_capacity(nt);
    let mut tile_begin = Vec::with_capacity(nt + 1);
    let (mut off, mut tiles) = (0u64, 0u64);
    for &(_, len) in names {
        offsets.push(off);
        tile_begin.push(tiles);
        off += len as u64;
        tiles += len.div_ceil(TILE) as u64;
    }
    tile_begin.push(tiles);
    if tiles >= ALL_TIES as u64 {
        return Err(Error::Config(format!(
            "prune: {off} weights make {tiles} tiles of {TILE}, more than the kernels index"
        )));
    }
    let tile_count = tiles as usize;
    let fin = |sel: &[RadixSelect], unpruned: &[u64], pruned: &[u64]| {
        Driven::Report(assemble_report::<W>(
            scope,
            fraction,
            names.iter().map(|(n, l)| (n.as_str(), *l)),
            sel,
            unpruned,
            pruned,
        ))
    };
    if tiles == 0 {
        // Nothing to read: every tensor is empty (or there are none).
        let sel = (0..ng)
            .map(|_| RadixSelect::new(W::KEY_BITS, fraction, &[0u64; BINS]))
            .collect::<Result<Vec<_>>>()?;
        return Ok(fin(&sel, &vec![0; nt], &vec![0; nt]));
    }
    let grid = tile_grid(tiles, dev.sms()?);

    let mut table: Vec<u64> = Vec::with_capacity(6 * nt + 1);
    table.extend(wptrs);
    table.extend(mptrs);
    table.extend(names.iter().map(|(_, l)| *l as u64));
    table.extend(&offsets);
    table.extend(group_of.iter().map(|&g| g as u64));
    table.extend(&tile_begin);
    let d_table = dev.upload(&table, "tensor table")?;

    let d_unpruned = dev.zeros::<u64>(nt, "unpruned counts")?;
    let d_pruned = dev.zeros::<u64>(nt, "pruned counts")?;
    let d_bad = dev.upload(&[u64::MAX], "first-bad index")?;
    let hist_name = format!("topk_hist_{suffix}");

    // One histogram pass; returns the per-group histograms.
    let run_hist = |pass: u32, prefix: &[u32], active: &[u32], counts: bool| -> Result<Vec<u64>> {
        let d_hist = dev.zeros::<u64>(ng * BINS, "histograms")?;
        let d_prefix = dev.upload(prefix, "group prefixes")?;
        let d_active = dev.upload(active, "group flags")?;
        let mut p_table = dev.addr(&d_table);
        let mut p_prefix = dev.addr(&d_prefix);
        let mut p_active = dev.addr(&d_active);
        let mut p_hist = dev.addr(&d_hist);
        let (mut p_unpruned, mut p_bad) = if counts {
            (dev.addr(&d_unpruned), dev.addr(&d_bad))
        } else {
            (0u64, 0u64)
        };
        let (mut nt_arg, mut tiles_arg, mut pass_arg, mut nonfinite) =
            (nt_u32, tiles, pass, W::NONFINITE_KEY);
        let mut params: Vec<*mut c_void> = vec![
            arg(&mut p_table),
            arg(&mut nt_arg),
            arg(&mut tiles_arg),
            arg(&mut pass_arg),
            arg(&mut p_prefix),
            arg(&mut p_active),
            arg(&mut p_hist),
            arg(&mut p_unpruned),
            arg(&mut p_bad),
        ];
        if W::KEY_BITS != 31 {
            params.push(arg(&mut nonfinite));
        }
        // SAFETY: the parameters match `topk_hist_f32` (9) / `topk_hist_16` (10, the last the
        // non-finite key) in order and size: u64 table pointer, u32 nt, u64 tiles, u32 pass,
        // three u32/u64 device array pointers, two nullable u64 pointers. The table holds
        // `nt` tensors whose weight and mask addresses cover `len` elements each (the
        // caller's contract); prefix/active have `ng` entries, hist `ng * BINS`, unpruned
        // `nt`, bad 1, matching the groups in the table.
        unsafe { dev.launch(&hist_name, grid, &mut params) }?;
        dev.download(&d_hist, "histograms")
    };

    // Pass 0: validate, count, histogram.
    let h0 = run_hist(0, &vec![0u32; ng], &vec![1u32; ng], true)?;
    let bad = dev.download(&d_bad, "first-bad index")?[0];
    if bad != u64::MAX {
        // The owning tensor: the last one whose offset is <= bad (an empty tensor there would
        // share its offset with the next, non-empty, one).
        let ti = offsets.partition_point(|&o| o <= bad).saturating_sub(1);
        return Ok(Driven::Bad {
            tensor: ti,
            index: (bad - offsets[ti]) as usize,
        });
    }
    let unpruned = dev.download(&d_unpruned, "unpruned counts")?;
    let mut sel = (0..ng)
        .map(|g| RadixSelect::new(W::KEY_BITS, fraction, &h0[g * BINS..(g + 1) * BINS]))
        .collect::<Result<Vec<_>>>()?;

    for pass in 1..npasses {
        if !sel.iter().any(RadixSelect::active) {
            break;
        }
        let prefix: Vec<u32> = sel.iter().map(RadixSelect::prefix).collect();
        let active: Vec<u32> = sel.iter().map(|s| s.active() as u32).collect();
        let h = run_hist(pass, &prefix, &active, false)?;
        for (g, s) in sel.iter_mut().enumerate() {
            s.feed(&h[g * BINS..(g + 1) * BINS])?;
        }
    }

    // Tie cuts: a scan over tiles only for groups that prune some but not all of their ties.
    let group_tiles = |g: usize| {
        let r = group_tensors(scope, nt, g);
        tile_begin[r.start] as usize..tile_begin[r.end] as usize
    };
    let needs_scan: Vec<bool> = sel
        .iter()
        .map(|s| s.active() && s.ties_to_prune() < s.ties())
        .collect();
    let mut cut: Vec<(u32, u32)> = vec![(ALL_TIES, 0); ng];
    if needs_scan.iter().any(|&b| b) {
        let keys: Vec<u32> = sel.iter().map(|s| s.threshold_key().unwrap_or(0)).collect();
        let scan: Vec<u32> = needs_scan.iter().map(|&b| b as u32).collect();
        let d_keys = dev.upload(&keys, "threshold keys")?;
        let d_scan = dev.upload(&scan, "scan flags")?;
        let d_counts = dev.zeros::<u32>(tile_count, "tile tie counts")?;
        let mut p_table = dev.addr(&d_table);
        let mut p_keys = dev.addr(&d_keys);
        let mut p_scan = dev.addr(&d_scan);
        let mut p_counts = dev.addr(&d_counts);
        let (mut nt_arg, mut tiles_arg) = (nt_u32, tiles);
        let mut params = [
            arg(&mut p_table),
            arg(&mut nt_arg),
            arg(&mut tiles_arg),
            arg(&mut p_keys),
            arg(&mut p_scan),
            arg(&mut p_counts),
        ];
        // SAFETY: matches `topk_tie_count_*(table, u32 nt, u64 tiles, keys, scan, counts)`;
        // keys/scan have `ng` entries, counts `tiles` (written once per tile); the table's
        // tensor addresses are valid (the caller's contract).
        unsafe { dev.launch(&format!("topk_tie_count_{suffix}"), grid, &mut params) }?;
        let counts = dev.download(&d_counts, "tile tie counts")?;
        for (g, s) in sel.iter().enumerate() {
            if !needs_scan[g] {
                continue;
            }
            let r = group_tiles(g);
            let first = r.start;
            let (idx, rank) = tie_cut(counts[r].iter().map(|&c| c as u64), s.ties_to_prune())
                .ok_or_else(|| {
                    Error::Device(format!(
                        "top-k: tile tie counts do not reach {} ties (group {g})",
                        s.ties_to_prune()
                    ))
                })?;
            cut[g] = ((first + idx) as u32, rank as u32);
        }
    }

    // Mask update.
    let mut pruned = vec![0u64; nt];
    if sel.iter().any(RadixSelect::active) {
        let mut gp = Vec::with_capacity(4 * ng);
        for (s, &(ct, cr)) in sel.iter().zip(&cut) {
            gp.extend([s.active() as u32, s.threshold_key().unwrap_or(0), ct, cr]);
        }
        let d_gp = dev.upload(&gp, "group parameters")?;
        let mut p_table = dev.addr(&d_table);
        let mut p_gp = dev.addr(&d_gp);
        let mut p_pruned = dev.addr(&d_pruned);
        let (mut nt_arg, mut tiles_arg) = (nt_u32, tiles);
        let mut params = [
            arg(&mut p_table),
            arg(&mut nt_arg),
            arg(&mut tiles_arg),
            arg(&mut p_gp),
            arg(&mut p_pruned),
        ];
        // SAFETY: matches `topk_mask_update_*(table, u32 nt, u64 tiles, group params,
        // pruned)`; group params has 4 * ng u32, pruned `nt` u64; the kernel writes masks only
        // at indices < len of each tensor (valid by the caller's contract).
        unsafe { dev.launch(&format!("topk_mask_update_{suffix}"), grid, &mut params) }?;
        pruned = dev.download(&d_pruned, "pruned counts")?;
    }

    // The kernels must have pruned exactly n per group.
    for (g, s) in sel.iter().enumerate() {
        let got: u64 = group_tensors(scope, nt, g).map(|t| pruned[t]).sum();
        if got != s.n() {
            return Err(Error::Device(format!(
                "top-k: the mask update pruned {got} weights in group {g}, expected {}",
                s.n()
            )));
        }
    }
    Ok(fin(&sel, &unpruned, &pruned))
}

/// 2:4 selection on the device: writes the 0/1 mask of `weights` (rows × k, row-major; k a
/// multiple of 4) into `mask` on `stream` (blocking). Same contract as
/// [`crate::sparse::two_four_mask`]; on a NaN/Inf error the mask may have been written.
pub fn two_four_mask_gpu(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    name: &str,
    weights: DeviceWeights<'_>,
    rows: usize,
    k: usize,
    mask: &mut CudaSlice<f32>,
) -> Result<()> {
    check_shape(name, weights.len(), mask.len(), rows, k)?;
    let groups = (weights.len() / 4) as u64;
    if groups == 0 {
        return Ok(());
    }
    let mut d_bad = to_dev(stream, &[u64::MAX], "first-bad index")?;
    {
        let (mut p_w, _gw) = weights.ptr(stream);
        let (mut p_m, _gm) = mask.device_ptr_mut(stream);
        let (mut p_bad, _gb) = d_bad.device_ptr_mut(stream);
        let w_align = if matches!(weights, DeviceWeights::F32(_)) {
            16
        } else {
            8
        };
        if p_w % w_align != 0 || p_m % 16 != 0 {
            return Err(Error::Config(format!(
                "2:4 selection of `{name}`: device buffers must be {w_align}-byte (weights) and \
                 16-byte (mask) aligned"
            )));
        }
        let mut groups_arg = groups;
        let grid = groups.div_ceil(BLOCK as u64).clamp(1, 65_535) as u32;
        let (kernel, mut nonfinite) = match weights {
            DeviceWeights::F32(_) => ("two_four_f32", 0u32),
            DeviceWeights::Bf16Bits(_) => {
                ("two_four_16", <half::bf16 as TopkWeight>::NONFINITE_KEY)
            }
            DeviceWeights::F16Bits(_) => ("two_four_16", <half::f16 as TopkWeight>::NONFINITE_KEY),
        };
        let mut params: Vec<*mut c_void> = vec![arg(&mut p_w), arg(&mut p_m), arg(&mut groups_arg)];
        if kernel == "two_four_16" {
            params.push(arg(&mut nonfinite));
        }
        params.push(arg(&mut p_bad));
        // SAFETY: matches `two_four_f32(w, mask, u64 groups, bad)` and
        // `two_four_16(w, mask, u64 groups, u32 nonfinite, bad)`; weights and mask hold
        // 4 * groups elements (shape checked), aligned for the vector loads/stores (checked
        // above); the grid-stride loop touches groups < `groups` only; bad is one u64.
        unsafe { launch(module, stream, kernel, grid, &mut params) }?;
    }
    let bad = to_host(stream, &d_bad, "first-bad index")?[0];
    if bad != u64::MAX {
        let i = bad as usize;
        return Err(Error::NonFinite {
            tensor: name.to_string(),
            index: i,
            value: weights.element(stream, i)?,
        });
    }
    Ok(())
}

/// The host build of kernels/topk.cuh (compiled by build.rs into the crate from
/// kernels/host_helpers.cpp, with or without nvcc), for tests against the Rust twins.
pub mod host_helpers {
    mod ffi {
        extern "C" {
            pub fn asa_host_topk_constants(out: *mut u32);
            pub fn asa_host_topk_key_f32(bits: u32) -> u32;
            pub fn asa_host_topk_key_16(bits: u32) -> u32;
            pub fn asa_host_topk_passes(key_bits: u32) -> u32;
            pub fn asa_host_topk_width(key_bits: u32, pass: u32) -> u32;
            pub fn asa_host_topk_shift(key_bits: u32, pass: u32) -> u32;
            pub fn asa_host_topk_prefix_shift(key_bits: u32, pass: u32) -> u32;
            pub fn asa_host_topk_digit(key: u32, key_bits: u32, pass: u32) -> u32;
            pub fn asa_host_topk_in_prefix(key: u32, key_bits: u32, pass: u32, prefix: u32) -> u32;
            pub fn asa_host_topk_mask_state(m: f32) -> u32;
            pub fn asa_host_two_four_keep(k0: u32, k1: u32, k2: u32, k3: u32) -> u32;
            pub fn asa_host_topk_tensor_of(tile_begin: *const u64, nt: u32, tile: u64) -> u32;
            pub fn asa_host_topk_block_tiles(
                num_tiles: u64,
                grid: u32,
                block: u32,
                t0: *mut u64,
                t1: *mut u64,
            );
        }
    }

    /// The header's constants: digit bits, bins, tile, block, f32 key bits, 16-bit key bits,
    /// first non-finite key of f32, bf16, f16.
    pub fn constants() -> [u32; 9] {
        let mut c = [0u32; 9];
        // SAFETY: the callee writes exactly 9 u32 into the array, which has room for 9.
        unsafe { ffi::asa_host_topk_constants(c.as_mut_ptr()) };
        c
    }
    pub fn key_f32(bits: u32) -> u32 {
        // SAFETY: a pure function of scalars (as are all the wrappers below).
        unsafe { ffi::asa_host_topk_key_f32(bits) }
    }
    pub fn key_16(bits: u16) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_key_16(bits as u32) }
    }
    pub fn passes(key_bits: u32) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_passes(key_bits) }
    }
    pub fn width(key_bits: u32, pass: u32) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_width(key_bits, pass) }
    }
    pub fn shift(key_bits: u32, pass: u32) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_shift(key_bits, pass) }
    }
    pub fn prefix_shift(key_bits: u32, pass: u32) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_prefix_shift(key_bits, pass) }
    }
    pub fn digit(key: u32, key_bits: u32, pass: u32) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_digit(key, key_bits, pass) }
    }
    pub fn in_prefix(key: u32, key_bits: u32, pass: u32, prefix: u32) -> bool {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_in_prefix(key, key_bits, pass, prefix) != 0 }
    }
    /// 0 pruned, 1 unpruned, 2 invalid.
    pub fn mask_state(m: f32) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_topk_mask_state(m) }
    }
    pub fn two_four_keep(k: [u32; 4]) -> u32 {
        // SAFETY: pure function of scalars.
        unsafe { ffi::asa_host_two_four_keep(k[0], k[1], k[2], k[3]) }
    }

    /// The tensor owning global tile `tile` (`asa_topk_tensor_of`), or `None` when the
    /// arguments are outside the helper's domain (no tensors, `tile_begin` not `nt + 1` long,
    /// or `tile` not below the total).
    pub fn tensor_of(tile_begin: &[u64], tile: u64) -> Option<u32> {
        let nt = tile_begin.len().checked_sub(1)?;
        if nt == 0 || tile >= tile_begin[nt] {
            return None;
        }
        let nt = u32::try_from(nt).ok()?;
        // SAFETY: the callee reads tile_begin[0..nt] (nt + 1 entries exist) and keeps no
        // pointer; nt >= 1 as it requires.
        Some(unsafe { ffi::asa_host_topk_tensor_of(tile_begin.as_ptr(), nt, tile) })
    }
    /// Tile range `[t0, t1)` of block `block` of `grid` (`asa_topk_block_tiles`); `grid` ≥ 1.
    pub fn block_tiles(num_tiles: u64, grid: u32, block: u32) -> (u64, u64) {
        let (mut t0, mut t1) = (0u64, 0u64);
        let grid = grid.max(1);
        // SAFETY: two live, exclusive u64 out-pointers; grid >= 1 so the helper never divides
        // by zero.
        unsafe { ffi::asa_host_topk_block_tiles(num_tiles, grid, block, &mut t0, &mut t1) };
        (t0, t1)
    }
}
