//! Fused masked flash attention on the GPU (kernels/attention.cu): the host build of its
//! lane-layout and tile-classification helpers (kernels/attention.cuh, for the warp-emulator and
//! tile-list tests), the launch geometry, and the launchers.
//!
//! Status: compiles; the kernels' own source runs in the SIMT emulation ([`super::simt`])
//! against the f64 reference in the tests; NOT run on a GPU yet.
//!
//! Contract: `Ops::attention_fwd` / `Ops::attention_bwd` (src/backend/mod.rs, DESIGN.md §3):
//! `q, k, v, out, dout, dq, dk, dv` are `(B, T, C)` f32 with `C = H·D`, `lse` is `(B, H, T)`, the
//! optional mask is bit-packed `(B, Hm, T, ⌈T/32⌉)` u32. The launchers round q, k, v (and
//! dout) to bf16 copies first (one cast kernel each; f32 accumulation in the kernels), so
//! results match the f32 CPU twin to the bf16 tolerance of DESIGN.md §3 (relative L2 ≤ 1e-2).
//! The kernels stream those copies into shared memory with `cp.async` (K/V double-buffered in
//! the forward) and read fragments with `ldmatrix`. Head dims 64 and 128; any T ≥ 1.
//!
//! How to call (one stream; every buffer a `CudaSlice` on that stream's context):
//! ```ignore
//! let module = KernelModule::load(&ctx)?;
//! // Once per mask (e.g. per batch; shared by every layer and by forward and backward):
//! let tiles = attention::build_tiles(&module, &stream, MaskRef { bits: &mask, per_head }, s)?;
//! let m = Some(attention::AttnMask { bits: &mask, per_head, tiles: &tiles });
//! attention::attention_fwd(&module, &stream, &mut out, &mut lse, &q, &k, &v, m, s)?;
//! // dq/dk/dv are ACCUMULATED into (zero them first for a fresh gradient):
//! attention::attention_bwd(&module, &stream, &mut dq, &mut dk, &mut dv, &dout, &q, &k, &v,
//!                          &out, &lse, m, s, BwdMode::Deterministic)?;
//! ```
//! Without a mask pass `None`: plain causal attention, no tile lists needed.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::drv;
use super::kernels::{self, arg, KernelModule};
use crate::backend::{shapes, AttnShape, MaskRef};
use crate::error::check_len;
use crate::mask::{TileClass, TileMap};
use crate::{Error, Result};

mod ffi {
    extern "C" {
        pub fn asa_host_attn_constants(out: *mut u32);
        pub fn asa_host_attn_a_pos(lane: u32, j: u32, h: u32, row: *mut u32, col: *mut u32);
        pub fn asa_host_attn_b_pos(lane: u32, j: u32, h: u32, k: *mut u32, n: *mut u32);
        pub fn asa_host_attn_c_pos(lane: u32, i: u32, row: *mut u32, col: *mut u32);
        pub fn asa_host_attn_frag_a(s: *const u16, ld: u32, lane: u32, a: *mut u32);
        pub fn asa_host_attn_frag_b_nk(s: *const u16, ld: u32, lane: u32, b: *mut u32);
        pub fn asa_host_attn_frag_b_kn(s: *const u16, ld: u32, lane: u32, b: *mut u32);
        pub fn asa_host_attn_acc_to_frag_a(c0: *const f32, c1: *const f32, a: *mut u32);
        pub fn asa_host_bf16_rn(x: f32) -> u16;
        pub fn asa_host_attn_block_class(
            rows: *const u32,
            words: u32,
            t: u32,
            qt: u32,
            kt: u32,
        ) -> u32;
        pub fn asa_host_attn_fwd_list(cls: *const u8, nt: u32, qt: u32, out: *mut u32) -> u32;
        pub fn asa_host_attn_bwd_list(cls: *const u8, nt: u32, kt: u32, out: *mut u32) -> u32;
        pub fn asa_host_attn_allowed(bits: u64, k0: u32, i: u32, j: u32) -> u32;
        pub fn asa_host_attn_needs_test(partial: u32, kt: u32, t: u32) -> u32;
        pub fn asa_host_attn_smem_bytes(kind: u32, d: u32) -> u32;
        pub fn asa_host_attn_ldsm_off(which: u32, lane: u32, ld: u32) -> u32;
        pub fn asa_host_attn_chunk(d: u32, c: u32, row: *mut u32, col: *mut u32);
        pub fn asa_host_attn_stages(kind: u32, d: u32) -> u32;
    }
}

/// Queries per q-tile = keys per k-tile (`ASA_ATTN_TILE`; equal to the CPU twin's
/// [`crate::backend::cpu::attention::TILE`], so tile classes are the same on both devices).
pub const TILE: usize = 64;
/// Threads per block of every attention kernel (`ASA_ATTN_THREADS`).
pub const THREADS: u32 = 128;
/// Head dims with a compiled kernel.
pub const HEAD_DIMS: [usize; 2] = [64, 128];

// ---------------------------------------------------------------------------------------------
// Host build of the device helpers.

/// The header's constants in order: TILE, WARPS, THREADS, PAD, EMPTY, FULL, PARTIAL.
pub fn constants() -> [u32; 7] {
    let mut c = [0u32; 7];
    // SAFETY: the helper writes exactly 7 u32 into the live array.
    unsafe { ffi::asa_host_attn_constants(c.as_mut_ptr()) };
    c
}

/// `(row, col)` of half `h` of A register `j` of `lane` (kernels/attention.cuh).
pub fn a_pos(lane: u32, j: u32, h: u32) -> (u32, u32) {
    let (mut r, mut c) = (0, 0);
    // SAFETY: pure function of scalars writing two u32 through live exclusive references.
    unsafe { ffi::asa_host_attn_a_pos(lane, j, h, &mut r, &mut c) };
    (r, c)
}

/// `(k, n)` of half `h` of B register `j` of `lane`.
pub fn b_pos(lane: u32, j: u32, h: u32) -> (u32, u32) {
    let (mut k, mut n) = (0, 0);
    // SAFETY: as for `a_pos`.
    unsafe { ffi::asa_host_attn_b_pos(lane, j, h, &mut k, &mut n) };
    (k, n)
}

/// `(row, col)` of accumulator `i` of `lane`.
pub fn c_pos(lane: u32, i: u32) -> (u32, u32) {
    let (mut r, mut c) = (0, 0);
    // SAFETY: as for `a_pos`.
    unsafe { ffi::asa_host_attn_c_pos(lane, i, &mut r, &mut c) };
    (r, c)
}

fn check_tile(what: &str, len: usize, ld: usize, rows: usize, cols: usize) -> Result<()> {
    if ld < cols || !ld.is_multiple_of(2) || len < (rows - 1) * ld + cols || ld > u32::MAX as usize
    {
        return Err(Error::Config(format!(
            "{what}: a {rows}x{cols} tile with leading dimension {ld} (even, ≥ {cols}) does not \
             fit in {len} elements"
        )));
    }
    Ok(())
}

/// The A fragment `lane` loads (kernel helper `asa_attn_frag_a`) from a 16×16 bf16 tile,
/// row-major with leading dimension `ld`.
pub fn frag_a(s: &[u16], ld: usize, lane: u32) -> Result<[u32; 4]> {
    check_tile("frag_a", s.len(), ld, 16, 16)?;
    let mut a = [0u32; 4];
    // SAFETY: the helper reads s[r·ld + c] for r, c < 16 (checked to be in bounds above) and
    // writes 4 u32.
    unsafe { ffi::asa_host_attn_frag_a(s.as_ptr(), ld as u32, lane % 32, a.as_mut_ptr()) };
    Ok(a)
}

/// The B fragment `lane` loads from a 16(k)×8(n) operand stored n-major (`s[n·ld + k]`).
pub fn frag_b_nk(s: &[u16], ld: usize, lane: u32) -> Result<[u32; 2]> {
    check_tile("frag_b_nk", s.len(), ld, 8, 16)?;
    let mut b = [0u32; 2];
    // SAFETY: reads s[n·ld + k] for n < 8, k < 16 (in bounds, checked); writes 2 u32.
    unsafe { ffi::asa_host_attn_frag_b_nk(s.as_ptr(), ld as u32, lane % 32, b.as_mut_ptr()) };
    Ok(b)
}

/// The B fragment `lane` loads from a 16(k)×8(n) operand stored k-major (`s[k·ld + n]`).
pub fn frag_b_kn(s: &[u16], ld: usize, lane: u32) -> Result<[u32; 2]> {
    check_tile("frag_b_kn", s.len(), ld, 16, 8)?;
    let mut b = [0u32; 2];
    // SAFETY: reads s[k·ld + n] for k < 16, n < 8 (in bounds, checked); writes 2 u32.
    unsafe { ffi::asa_host_attn_frag_b_kn(s.as_ptr(), ld as u32, lane % 32, b.as_mut_ptr()) };
    Ok(b)
}

/// The A fragment (bf16) a lane builds from its accumulators of two adjacent 16×8 tiles.
pub fn acc_to_frag_a(c0: &[f32; 4], c1: &[f32; 4]) -> [u32; 4] {
    let mut a = [0u32; 4];
    // SAFETY: reads 4 f32 from each live array, writes 4 u32.
    unsafe { ffi::asa_host_attn_acc_to_frag_a(c0.as_ptr(), c1.as_ptr(), a.as_mut_ptr()) };
    a
}

/// f32 → bf16 bits as the kernels round (nearest even).
pub fn bf16_rn(x: f32) -> u16 {
    // SAFETY: pure function of a scalar.
    unsafe { ffi::asa_host_bf16_rn(x) }
}

/// Whether the kernels let query `i` attend key `j` of the k-tile starting at `k0`, given the
/// row's 64 k-tile bits (mask ∧ causal).
pub fn allowed(bits: u64, k0: u32, i: u32, j: u32) -> bool {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_attn_allowed(bits, k0, i, j) != 0 }
}

/// Whether the kernels run the per-element test on block `(·, kt)` of class `partial`.
pub fn needs_test(partial: bool, kt: u32, t: u32) -> bool {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_attn_needs_test(partial as u32, kt, t) != 0 }
}

/// Which kernel's shared memory to size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// `attn_fwd_d*`.
    Fwd = 0,
    /// `attn_bwd_dq_d*`.
    BwdDq = 1,
    /// `attn_bwd_dkdv_d*`.
    BwdDkdv = 2,
}

/// Dynamic shared memory (bytes) of kernel `kind` for head dim `d` (the header's formula).
pub fn smem_bytes(kind: KernelKind, d: usize) -> u32 {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_attn_smem_bytes(kind as u32, d as u32) }
}

/// Operand-tile pipeline stages of kernel `kind` for head dim `d` (2 = double-buffered).
pub fn stages(kind: KernelKind, d: usize) -> u32 {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_attn_stages(kind as u32, d as u32) }
}

/// Which fragment an ldmatrix address helper serves (the scalar loader it replaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LdsmFrag {
    /// [`frag_a`] via `ldmatrix.x4`.
    A = 0,
    /// [`frag_b_nk`] via `ldmatrix.x2`.
    BNk = 1,
    /// [`frag_b_kn`] via `ldmatrix.x2.trans`.
    BKn = 2,
}

/// Element offset (from the tile pointer) of the row address `lane` gives ldmatrix for `frag`
/// in a tile with leading dimension `ld` (kernels/attention.cuh `asa_attn_ldsm_*_off`).
pub fn ldsm_offset(frag: LdsmFrag, lane: u32, ld: u32) -> u32 {
    // SAFETY: pure function of scalars.
    unsafe { ffi::asa_host_attn_ldsm_off(frag as u32, lane, ld) }
}

/// Tile row and first column of 16-byte chunk `c` of a `64 × d` bf16 tile (the cp.async copy).
pub fn chunk(d: usize, c: u32) -> (u32, u32) {
    let (mut row, mut col) = (0, 0);
    // SAFETY: writes one u32 through each out pointer.
    unsafe { ffi::asa_host_attn_chunk(d as u32, c, &mut row, &mut col) };
    (row, col)
}

fn class_from(c: u32) -> TileClass {
    match c {
        0 => TileClass::Empty,
        1 => TileClass::Full,
        _ => TileClass::Partial,
    }
}

/// Tile classes and lists in the device layout: `classes` `(G, nt, nt)` u8 over
/// `(group, q-tile, k-tile)` (`G = B·Hm`, group `b·Hm + hm`); for each `(group, x)` a count
/// and a slot of `nt` entries (`tile << 1 | partial`, ascending) — the forward list of q-tile
/// `x` and the backward list of k-tile `x`. Entries past a count are unspecified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileListsDev {
    pub groups: usize,
    pub nt: usize,
    pub classes: Vec<u8>,
    pub fwd_count: Vec<u32>,
    pub fwd_list: Vec<u32>,
    pub bwd_count: Vec<u32>,
    pub bwd_list: Vec<u32>,
}

impl TileListsDev {
    /// What the preprocessing kernels compute, by the host build of their helpers: `words`
    /// is the `(G, T, ⌈T/32⌉)` mask, or `None` for plain causal attention (one group per
    /// sequence then, `groups = B`).
    pub fn from_helpers(words: Option<&[u32]>, groups: usize, t: usize) -> Result<Self> {
        let nt = t.div_ceil(TILE);
        let wpr = t.div_ceil(32);
        if let Some(w) = words {
            if Some(w.len()) != groups.checked_mul(t).and_then(|x| x.checked_mul(wpr)) {
                return Err(Error::Mask(format!(
                    "expected {groups}×{t}×{wpr} mask words, got {}",
                    w.len()
                )));
            }
        }
        let t32 = u32::try_from(t).map_err(|_| Error::Config(format!("T = {t} exceeds u32")))?;
        let mut classes = vec![0u8; groups * nt * nt];
        for g in 0..groups {
            let rows = words.map_or(std::ptr::null(), |w| w[g * t * wpr..].as_ptr());
            for qt in 0..nt {
                for kt in 0..nt {
                    // SAFETY: the helper reads rows q-tile qt (< T) × `wpr` words of group g,
                    // all inside `w` (length checked above), or nothing when `rows` is null.
                    let c = unsafe {
                        ffi::asa_host_attn_block_class(rows, wpr as u32, t32, qt as u32, kt as u32)
                    };
                    classes[(g * nt + qt) * nt + kt] = c as u8;
                }
            }
        }
        let mut out = Self {
            groups,
            nt,
            fwd_count: vec![0; groups * nt],
            fwd_list: vec![0; groups * nt * nt],
            bwd_count: vec![0; groups * nt],
            bwd_list: vec![0; groups * nt * nt],
            classes,
        };
        for idx in 0..groups * nt {
            let (g, x) = (idx / nt, idx % nt);
            let cls = out.classes[g * nt * nt..].as_ptr();
            // SAFETY: the helpers read the group's nt × nt classes (inside `classes`) and write
            // at most nt entries into the slot idx·nt.. of a list of groups·nt·nt entries.
            unsafe {
                out.fwd_count[idx] = ffi::asa_host_attn_fwd_list(
                    cls,
                    nt as u32,
                    x as u32,
                    out.fwd_list[idx * nt..].as_mut_ptr(),
                );
                out.bwd_count[idx] = ffi::asa_host_attn_bwd_list(
                    cls,
                    nt as u32,
                    x as u32,
                    out.bwd_list[idx * nt..].as_mut_ptr(),
                );
            }
        }
        Ok(out)
    }

    /// The same layout from the CPU classification (src/mask/tiles.rs), the reference.
    pub fn from_tile_map(map: &TileMap) -> Result<Self> {
        if map.tile() != TILE {
            return Err(Error::Mask(format!(
                "tile size {} (the kernels use {TILE})",
                map.tile()
            )));
        }
        let (groups, nt) = (map.b() * map.heads(), map.nt());
        let classes = map.classes().iter().map(|&c| c as u8).collect();
        let mut out = Self {
            groups,
            nt,
            classes,
            fwd_count: vec![0; groups * nt],
            fwd_list: vec![0; groups * nt * nt],
            bwd_count: vec![0; groups * nt],
            bwd_list: vec![0; groups * nt * nt],
        };
        for (lists, count, slots) in [
            (map.forward_lists(), &mut out.fwd_count, &mut out.fwd_list),
            (map.backward_lists(), &mut out.bwd_count, &mut out.bwd_list),
        ] {
            let packed = lists.packed();
            for idx in 0..lists.groups() {
                let (a, z) = (lists.offsets[idx] as usize, lists.offsets[idx + 1] as usize);
                count[idx] = (z - a) as u32;
                slots[idx * nt..idx * nt + (z - a)].copy_from_slice(&packed[a..z]);
            }
        }
        Ok(out)
    }

    /// The valid entries of the forward list of `(group, q-tile)`.
    pub fn fwd(&self, group: usize, qt: usize) -> &[u32] {
        let idx = group * self.nt + qt;
        &self.fwd_list[idx * self.nt..][..self.fwd_count[idx] as usize]
    }

    /// The valid entries of the backward list of `(group, k-tile)`.
    pub fn bwd(&self, group: usize, kt: usize) -> &[u32] {
        let idx = group * self.nt + kt;
        &self.bwd_list[idx * self.nt..][..self.bwd_count[idx] as usize]
    }

    /// The class of block `(qt, kt)` of `group`.
    pub fn class(&self, group: usize, qt: usize, kt: usize) -> TileClass {
        class_from(self.classes[(group * self.nt + qt) * self.nt + kt] as u32)
    }

    /// Same classes and same valid list entries (what the kernels read).
    pub fn same_lists(&self, other: &Self) -> bool {
        self.groups == other.groups
            && self.nt == other.nt
            && self.classes == other.classes
            && (0..self.groups * self.nt).all(|idx| {
                let (g, x) = (idx / self.nt, idx % self.nt);
                self.fwd(g, x) == other.fwd(g, x) && self.bwd(g, x) == other.bwd(g, x)
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Launch geometry (pure; tested on the host).

/// Every launch shape of one attention call, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttnPlan {
    /// Tiles per axis, `⌈T/64⌉`.
    pub nt: usize,
    /// Grid of the forward, dQ and dK/dV kernels: `(nt, H, B)`.
    pub grid: (u32, u32, u32),
    /// Grid of `attn_bwd_di`: `⌈B·H·T/4⌉` (one warp per row).
    pub di_grid: u32,
    /// Dynamic shared memory of the forward, dQ and dK/dV kernels.
    pub smem_fwd: u32,
    pub smem_dq: u32,
    pub smem_dkdv: u32,
    /// Kernel names for this head dim.
    pub fwd: &'static str,
    pub dq: &'static str,
    pub dkdv: &'static str,
    /// Elements of `q`/`k`/`v`/`out` (`B·T·C`) and of `lse` (`B·H·T`).
    pub n_act: usize,
    pub n_rows: usize,
}

/// Grid dimension limits: x < 2^31, y and z ≤ 65535.
const GRID_X_MAX: usize = i32::MAX as usize;
const GRID_YZ_MAX: usize = 65535;

fn cfg(s: &AttnShape, msg: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "fused attention (B={} T={} H={} D={}): {msg}",
        s.b, s.t, s.h, s.d
    ))
}

/// Validate `s` and compute the launch shapes. Errors: D not 64 or 128, sizes past the
/// kernels' i32 indices or the grid limits.
pub fn plan(s: &AttnShape) -> Result<AttnPlan> {
    let (fwd, dq, dkdv) = match s.d {
        64 => ("attn_fwd_d64", "attn_bwd_dq_d64", "attn_bwd_dkdv_d64"),
        128 => ("attn_fwd_d128", "attn_bwd_dq_d128", "attn_bwd_dkdv_d128"),
        d => {
            return Err(cfg(
                s,
                format!("head dim D = {d} has no kernel (compiled for D = 64 and 128)"),
            ))
        }
    };
    let n_act =
        s.b.checked_mul(s.t)
            .and_then(|x| x.checked_mul(s.h))
            .and_then(|x| x.checked_mul(s.d))
            .ok_or_else(|| cfg(s, "B·T·H·D overflows usize"))?;
    let n_rows = s.b * s.t * s.h;
    if s.t > i32::MAX as usize || s.h.saturating_mul(s.d) > i32::MAX as usize {
        return Err(cfg(s, "T and C = H·D must fit in i32"));
    }
    if s.h > GRID_YZ_MAX || s.b > GRID_YZ_MAX {
        return Err(cfg(s, "B and H must be ≤ 65535 (grid y/z)"));
    }
    let nt = s.t.div_ceil(TILE);
    if nt > GRID_YZ_MAX {
        return Err(cfg(s, "⌈T/64⌉ must be ≤ 65535"));
    }
    let di_blocks = n_rows.div_ceil(4);
    if di_blocks > GRID_X_MAX || s.b.saturating_mul(s.h).saturating_mul(nt) > GRID_X_MAX {
        return Err(cfg(s, "B·H·T too large for one launch"));
    }
    Ok(AttnPlan {
        nt,
        grid: (nt as u32, s.h as u32, s.b as u32),
        di_grid: di_blocks as u32,
        smem_fwd: smem_bytes(KernelKind::Fwd, s.d),
        smem_dq: smem_bytes(KernelKind::BwdDq, s.d),
        smem_dkdv: smem_bytes(KernelKind::BwdDkdv, s.d),
        fwd,
        dq,
        dkdv,
        n_act,
        n_rows,
    })
}

// ---------------------------------------------------------------------------------------------
// Device side.

/// Device tile classes and lists of one mask (see [`TileListsDev`] for the layout), built by
/// [`build_tiles`]; reusable for every layer and for forward and backward while the mask holds.
pub struct AttnTiles {
    /// Sequences, mask heads and sequence length the lists were built for.
    pub b: usize,
    pub heads: usize,
    pub t: usize,
    pub nt: usize,
    classes: CudaSlice<u8>,
    fwd_count: CudaSlice<u32>,
    fwd_list: CudaSlice<u32>,
    bwd_count: CudaSlice<u32>,
    bwd_list: CudaSlice<u32>,
}

impl AttnTiles {
    /// Copy the device lists to the host (for tests and debugging).
    pub fn download(&self, stream: &Arc<CudaStream>) -> Result<TileListsDev> {
        // Surface any asynchronous kernel error before reading.
        stream
            .synchronize()
            .map_err(|e| drv("synchronize before tile download", e))?;
        let get8 = |x: &CudaSlice<u8>| stream.clone_dtoh(x).map_err(|e| drv("download tiles", e));
        let get = |x: &CudaSlice<u32>| stream.clone_dtoh(x).map_err(|e| drv("download tiles", e));
        Ok(TileListsDev {
            groups: self.b * self.heads,
            nt: self.nt,
            classes: get8(&self.classes)?,
            fwd_count: get(&self.fwd_count)?,
            fwd_list: get(&self.fwd_list)?,
            bwd_count: get(&self.bwd_count)?,
            bwd_list: get(&self.bwd_list)?,
        })
    }
}

/// A mask as the attention launchers take it: the bits and their tile lists.
#[derive(Clone, Copy)]
pub struct AttnMask<'a> {
    pub bits: &'a CudaSlice<u32>,
    pub per_head: bool,
    pub tiles: &'a AttnTiles,
}

/// Launch `name` with `smem` bytes of dynamic shared memory and the attention block shape.
///
/// # Safety
/// As [`super::kernels::launch`]: `params` must match the kernel's parameter list, and every
/// pointer must be valid for what the kernel does with it given the other arguments.
unsafe fn launch_smem(
    module: &KernelModule,
    stream: &CudaStream,
    name: &str,
    grid: (u32, u32, u32),
    smem: u32,
    params: &mut [*mut c_void],
) -> Result<()> {
    // SAFETY: forwarded to the caller.
    unsafe { kernels::launch_smem(module, stream, name, grid, (THREADS, 1, 1), smem, params) }
}

/// Check a mask against `s` and its tiles; returns the number of mask heads.
fn check_mask(op: &'static str, m: &AttnMask<'_>, s: &AttnShape) -> Result<usize> {
    let heads = if m.per_head { s.h } else { 1 };
    let words = s.b * heads * s.t * s.mask_words();
    if m.bits.len() != words {
        return Err(Error::Mask(format!(
            "{op}: for B = {}, {heads} mask head(s), T = {} expected {words} u32 words, got {}",
            s.b,
            s.t,
            m.bits.len()
        )));
    }
    let tl = m.tiles;
    if tl.b != s.b || tl.heads != heads || tl.t != s.t {
        return Err(Error::Mask(format!(
            "{op}: tile lists were built for B = {}, {} mask head(s), T = {}, not B = {}, {heads}, \
             T = {}",
            tl.b, tl.heads, tl.t, s.b, s.t
        )));
    }
    Ok(heads)
}

/// Classify `mask` into tiles and build the forward and backward lists on the device
/// (`attn_tile_classify`, then `attn_tile_lists`).
pub fn build_tiles(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    mask: MaskRef<'_, CudaSlice<u32>>,
    s: AttnShape,
) -> Result<AttnTiles> {
    const OP: &str = "attention tiles";
    let heads = if mask.per_head { s.h } else { 1 };
    let wpr = s.mask_words();
    let groups = s.b * heads;
    let nt = s.t.div_ceil(TILE);
    let expected = groups
        .checked_mul(s.t)
        .and_then(|x| x.checked_mul(wpr))
        .ok_or_else(|| cfg(&s, "mask size overflows usize"))?;
    check_len(OP, "mask", mask.bits.len(), expected, || {
        format!("(B, Hm, T, ⌈T/32⌉) with B={} Hm={heads} T={}", s.b, s.t)
    })?;
    if s.t > i32::MAX as usize || groups > GRID_X_MAX || nt > GRID_YZ_MAX {
        return Err(cfg(&s, "mask too large for the tile kernels"));
    }
    let slots = groups
        .checked_mul(nt)
        .and_then(|x| x.checked_mul(nt))
        .ok_or_else(|| cfg(&s, "tile lists overflow usize"))?;
    let alloc8 = |n: usize| {
        stream
            .alloc_zeros::<u8>(n.max(1))
            .map_err(|e| drv("allocate tile classes", e))
    };
    let alloc = |n: usize| {
        stream
            .alloc_zeros::<u32>(n.max(1))
            .map_err(|e| drv("allocate tile lists", e))
    };
    let mut tiles = AttnTiles {
        b: s.b,
        heads,
        t: s.t,
        nt,
        classes: alloc8(slots)?,
        fwd_count: alloc(groups * nt)?,
        fwd_list: alloc(slots)?,
        bwd_count: alloc(groups * nt)?,
        bwd_list: alloc(slots)?,
    };
    if slots == 0 {
        return Ok(tiles);
    }
    let (mut t_arg, mut g_arg) = (s.t as i32, groups as i32);
    {
        let (mut mp, _gm) = mask.bits.device_ptr(stream);
        let (mut cp, _gc) = tiles.classes.device_ptr_mut(stream);
        let mut params = [arg!(mp), arg!(cp), arg!(t_arg), arg!(g_arg)];
        // SAFETY: matches attn_tile_classify(const u32*, u8*, int T, int groups). The mask holds
        // groups·T·⌈T/32⌉ words (checked) and the kernel reads rows < T, words < ⌈T/32⌉ of
        // groups < `groups`; it writes classes[(g·nt + qt)·nt + kt] < groups·nt² (allocated).
        unsafe {
            launch_smem(
                module,
                stream,
                "attn_tile_classify",
                (groups as u32, nt as u32, 1),
                0,
                &mut params,
            )
        }?;
    }
    {
        let (mut cp, _gc) = tiles.classes.device_ptr(stream);
        let (mut fc, _g1) = tiles.fwd_count.device_ptr_mut(stream);
        let (mut fl, _g2) = tiles.fwd_list.device_ptr_mut(stream);
        let (mut bc, _g3) = tiles.bwd_count.device_ptr_mut(stream);
        let (mut bl, _g4) = tiles.bwd_list.device_ptr_mut(stream);
        let mut params = [
            arg!(cp),
            arg!(fc),
            arg!(fl),
            arg!(bc),
            arg!(bl),
            arg!(t_arg),
            arg!(g_arg),
        ];
        let grid = (groups * nt).div_ceil(THREADS as usize) as u32;
        // SAFETY: matches attn_tile_lists(const u8*, u32*, u32*, u32*, u32*, int, int). Thread
        // idx < groups·nt reads the group's nt² classes and writes count[idx] (groups·nt
        // allocated) and at most nt entries at list[idx·nt..] (groups·nt² allocated).
        unsafe {
            launch_smem(
                module,
                stream,
                "attn_tile_lists",
                (grid, 1, 1),
                0,
                &mut params,
            )
        }?;
    }
    Ok(tiles)
}

/// `x` rounded to bf16 (to nearest even; `cast_bf16_f32` of kernels/cast.cu) in a new device
/// buffer: the operand copies the kernels stream into shared memory with `cp.async` (16-byte
/// chunks straight from global memory, so no conversion in the kernels' load path). `x` is not
/// empty (the launchers return early on empty shapes).
fn to_bf16(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    x: &CudaSlice<f32>,
    what: &str,
) -> Result<CudaSlice<u16>> {
    let n = x.len();
    // SAFETY: uninitialised device memory; the cast below writes all n elements, on the same
    // stream, before any kernel reads them.
    let mut out = unsafe { stream.alloc::<u16>(n.max(1)) }.map_err(|e| {
        drv(
            &format!("allocate the bf16 copy of {what} ({n} elements)"),
            e,
        )
    })?;
    {
        let (mut op, _g1) = out.device_ptr_mut(stream);
        let (mut xp, _g2) = x.device_ptr(stream);
        let mut mp: sys::CUdeviceptr = 0;
        let mut nn = n;
        let mut params = [arg!(op), arg!(xp), arg!(mp), arg!(nn)];
        let grid = kernels::elementwise_grid(n, kernels::ELEMENTWISE_MAX_BLOCKS);
        // SAFETY: matches cast_bf16_f32(uint16_t* out, const float* x, const float* mask,
        // size_t n): out and x hold n elements (allocated / the slice's length), mask null
        // (no scaling); the guards keep both alive and ordered on `stream`.
        unsafe {
            kernels::launch(
                module,
                stream,
                "cast_bf16_f32",
                (grid, 1, 1),
                (kernels::ELEMENTWISE_BLOCK, 1, 1),
                &mut params,
            )
        }?;
    }
    Ok(out)
}

/// Forward: `out` (`B×T×C`) and `lse` (`B×H×T`) per the Ops contract. `mask = None` is plain
/// causal attention.
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    out: &mut CudaSlice<f32>,
    lse: &mut CudaSlice<f32>,
    q: &CudaSlice<f32>,
    k: &CudaSlice<f32>,
    v: &CudaSlice<f32>,
    mask: Option<AttnMask<'_>>,
    s: AttnShape,
) -> Result<()> {
    const OP: &str = "cuda attention_fwd";
    let p = plan(&s)?;
    let acts = [
        ("out", out.len()),
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
    ];
    shapes::attention_lens(OP, &s, &acts, lse.len())?;
    let heads = match &mask {
        Some(m) => check_mask(OP, m, &s)?,
        None => 1,
    };
    if p.n_rows == 0 {
        return Ok(());
    }
    let (qb, kb, vb) = (
        to_bf16(module, stream, q, "q")?,
        to_bf16(module, stream, k, "k")?,
        to_bf16(module, stream, v, "v")?,
    );
    let (mut qp, _g1) = qb.device_ptr(stream);
    let (mut kp, _g2) = kb.device_ptr(stream);
    let (mut vp, _g3) = vb.device_ptr(stream);
    let (mut op, _g4) = out.device_ptr_mut(stream);
    let (mut lp, _g5) = lse.device_ptr_mut(stream);
    let mg = mask.map(|m| {
        (
            m.bits.device_ptr(stream),
            m.tiles.fwd_count.device_ptr(stream),
            m.tiles.fwd_list.device_ptr(stream),
        )
    });
    let (mut mp, mut cp, mut lsp): (sys::CUdeviceptr, sys::CUdeviceptr, sys::CUdeviceptr) =
        mg.as_ref().map_or((0, 0, 0), |(a, b, c)| (a.0, b.0, c.0));
    let (mut t_arg, mut h_arg, mut hm_arg) = (s.t as i32, s.h as i32, heads as i32);
    let mut sl2 = std::f32::consts::LOG2_E / (s.d as f32).sqrt();
    let mut params = [
        arg!(qp),
        arg!(kp),
        arg!(vp),
        arg!(op),
        arg!(lp),
        arg!(mp),
        arg!(cp),
        arg!(lsp),
        arg!(t_arg),
        arg!(h_arg),
        arg!(hm_arg),
        arg!(sl2),
    ];
    // SAFETY: matches attn_fwd_d{64,128}(const u16* q, k, v, float* out, lse, const u32*
    // mask, count, lists, int T, H, Hm, float). The bf16 q/k/v copies hold B·T·H·D u16, out
    // B·T·H·D f32 and lse B·H·T (checked); block (qt, h, b) reads rows < T of head h and
    // writes rows < T of out and lse. The mask (B·Hm·T·⌈T/32⌉ words) and its lists (built for the same B, Hm, T: checked) are
    // read at group b·Hm + hm < B·Hm; null pointers mean plain causal. Guards keep every buffer
    // alive and ordered on `stream`.
    unsafe { launch_smem(module, stream, p.fwd, p.grid, p.smem_fwd, &mut params) }
}

/// Backward mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BwdMode {
    /// No atomics: dK/dV K-tile-major, then a separate q-tile-major dQ pass. Bit-identical
    /// across runs.
    Deterministic,
    /// dQ by `atomicAdd` from the K-tile-major pass (one pass fewer; summation order varies).
    Atomic,
}

/// Backward: **accumulates** `dq`, `dk`, `dv` (all `B×T×C`) per the Ops contract, by
/// recomputation from `lse` (the forward's). Allocates a `B·H·T` f32 scratch for `Di`.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    dq: &mut CudaSlice<f32>,
    dk: &mut CudaSlice<f32>,
    dv: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    q: &CudaSlice<f32>,
    k: &CudaSlice<f32>,
    v: &CudaSlice<f32>,
    out: &CudaSlice<f32>,
    lse: &CudaSlice<f32>,
    mask: Option<AttnMask<'_>>,
    s: AttnShape,
    mode: BwdMode,
) -> Result<()> {
    const OP: &str = "cuda attention_bwd";
    let p = plan(&s)?;
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
    shapes::attention_lens(OP, &s, &acts, lse.len())?;
    let heads = match &mask {
        Some(m) => check_mask(OP, m, &s)?,
        None => 1,
    };
    if p.n_rows == 0 {
        return Ok(());
    }
    let mut di = stream
        .alloc_zeros::<f32>(p.n_rows)
        .map_err(|e| drv("allocate attention Di scratch", e))?;
    let (mut t_arg, mut h_arg, mut hm_arg, mut d_arg, mut b_arg) =
        (s.t as i32, s.h as i32, heads as i32, s.d as i32, s.b as i32);
    let scale = 1.0 / (s.d as f32).sqrt();
    let (mut sl2, mut sc) = (std::f32::consts::LOG2_E * scale, scale);

    // Di = rowsum(dout ∘ out).
    {
        let (mut gp, _g1) = dout.device_ptr(stream);
        let (mut op, _g2) = out.device_ptr(stream);
        let (mut dp, _g3) = di.device_ptr_mut(stream);
        let mut params = [
            arg!(gp),
            arg!(op),
            arg!(dp),
            arg!(b_arg),
            arg!(t_arg),
            arg!(h_arg),
            arg!(d_arg),
        ];
        // SAFETY: matches attn_bwd_di(const float*, const float*, float*, int B, T, H, D);
        // dout/out hold B·T·H·D f32 and di B·H·T (allocated); warp row < B·H·T reads D values
        // of its row and writes di[row].
        unsafe {
            launch_smem(
                module,
                stream,
                "attn_bwd_di",
                (p.di_grid, 1, 1),
                0,
                &mut params,
            )
        }?;
    }

    let (qb, kb, vb, gb) = (
        to_bf16(module, stream, q, "q")?,
        to_bf16(module, stream, k, "k")?,
        to_bf16(module, stream, v, "v")?,
        to_bf16(module, stream, dout, "dout")?,
    );
    let (mut qp, _g1) = qb.device_ptr(stream);
    let (mut kp, _g2) = kb.device_ptr(stream);
    let (mut vp, _g3) = vb.device_ptr(stream);
    let (mut gp, _g4) = gb.device_ptr(stream);
    let (mut lp, _g5) = lse.device_ptr(stream);
    let (mut dip, _g6) = di.device_ptr(stream);
    let (mut dqp, _g7) = dq.device_ptr_mut(stream);
    let (mut dkp, _g8) = dk.device_ptr_mut(stream);
    let (mut dvp, _g9) = dv.device_ptr_mut(stream);
    let mg = mask.map(|m| {
        (
            m.bits.device_ptr(stream),
            m.tiles.fwd_count.device_ptr(stream),
            m.tiles.fwd_list.device_ptr(stream),
            m.tiles.bwd_count.device_ptr(stream),
            m.tiles.bwd_list.device_ptr(stream),
        )
    });
    let (mut mp, mut fcp, mut flp, mut bcp, mut blp): (
        sys::CUdeviceptr,
        sys::CUdeviceptr,
        sys::CUdeviceptr,
        sys::CUdeviceptr,
        sys::CUdeviceptr,
    ) = mg
        .as_ref()
        .map_or((0, 0, 0, 0, 0), |(a, b, c, d, e)| (a.0, b.0, c.0, d.0, e.0));
    let mut dq_atomic: i32 = (mode == BwdMode::Atomic) as i32;
    {
        let mut params = [
            arg!(qp),
            arg!(kp),
            arg!(vp),
            arg!(gp),
            arg!(lp),
            arg!(dip),
            arg!(dqp),
            arg!(dkp),
            arg!(dvp),
            arg!(mp),
            arg!(bcp),
            arg!(blp),
            arg!(t_arg),
            arg!(h_arg),
            arg!(hm_arg),
            arg!(sl2),
            arg!(sc),
            arg!(dq_atomic),
        ];
        // SAFETY: matches attn_bwd_dkdv_d{64,128}(q, k, v, dout, lse, di, dq, dk, dv, mask,
        // count, lists, int T, H, Hm, float, float, int). The bf16 q/k/v/dout copies hold
        // B·T·H·D u16, the gradients B·T·H·D f32, lse and di B·H·T (checked/allocated);
        // block (kt, h, b) reads rows < T of head h, writes dk/dv rows < T of its k-tile (one block per element) and, in atomic
        // mode, atomically adds into dq rows < T. Mask and backward lists as in the forward.
        unsafe { launch_smem(module, stream, p.dkdv, p.grid, p.smem_dkdv, &mut params) }?;
    }
    if mode == BwdMode::Deterministic {
        let mut params = [
            arg!(qp),
            arg!(kp),
            arg!(vp),
            arg!(gp),
            arg!(lp),
            arg!(dip),
            arg!(dqp),
            arg!(mp),
            arg!(fcp),
            arg!(flp),
            arg!(t_arg),
            arg!(h_arg),
            arg!(hm_arg),
            arg!(sl2),
            arg!(sc),
        ];
        // SAFETY: matches attn_bwd_dq_d{64,128}(q, k, v, dout, lse, di, dq, mask, count, lists,
        // int T, H, Hm, float, float); sizes as above; block (qt, h, b) adds into dq rows < T
        // of its q-tile only (one block per element), walking the forward lists.
        unsafe { launch_smem(module, stream, p.dq, p.grid, p.smem_dq, &mut params) }?;
    }
    Ok(())
}

/// Run the layout probe (`attn_mma_probe`): one warp, one dense bf16 m16n8k16 `mma` on the
/// given registers; returns `d`. Compare with [`super::mma_dense_emu::mma_m16n8k16`].
pub fn run_mma_probe(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> Result<[[f32; 4]; 32]> {
    let up = |what: &str, e| drv(what, e);
    let af: Vec<u32> = a.iter().flatten().copied().collect();
    let bf: Vec<u32> = b.iter().flatten().copied().collect();
    let cf: Vec<f32> = c.iter().flatten().copied().collect();
    let ad = stream.clone_htod(&af).map_err(|e| up("upload a", e))?;
    let bd = stream.clone_htod(&bf).map_err(|e| up("upload b", e))?;
    let cd = stream.clone_htod(&cf).map_err(|e| up("upload c", e))?;
    let mut dd = stream
        .clone_htod(&[f32::NAN; 128][..])
        .map_err(|e| up("upload d", e))?;
    {
        let (mut ap, _ga) = ad.device_ptr(stream);
        let (mut bp, _gb) = bd.device_ptr(stream);
        let (mut cp, _gc) = cd.device_ptr(stream);
        let (mut dp, _gd) = dd.device_ptr_mut(stream);
        let mut params = [arg!(ap), arg!(bp), arg!(cp), arg!(dp)];
        let func = module.function("attn_mma_probe")?;
        // SAFETY: matches attn_mma_probe(const u32* a, const u32* b, const float* c, float* d):
        // a, c, d hold 128 elements and b 64, exactly what one warp reads and writes.
        unsafe {
            result::launch_kernel(
                func,
                (1, 1, 1),
                (32, 1, 1),
                0,
                stream.cu_stream(),
                &mut params,
            )
        }
        .map_err(|e| drv("launch attn_mma_probe", e))?;
    }
    let out = stream.clone_dtoh(&dd).map_err(|e| drv("download d", e))?;
    stream.synchronize().map_err(|e| drv("attn_mma_probe", e))?;
    let mut d = [[0.0f32; 4]; 32];
    for (lane, regs) in d.iter_mut().enumerate() {
        regs.copy_from_slice(&out[lane * 4..lane * 4 + 4]);
    }
    Ok(d)
}
