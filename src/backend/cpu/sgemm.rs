//! f32 GEMM `C (m×n, row-major) = [C +] A·B` for any strides of A and B: packed, blocked for
//! the caches (BLIS's five loops), with a register-tile microkernel per instruction-set level
//! — 12×32 with AVX-512 (24 zmm accumulators), 6×16 with AVX2+FMA (12 ymm) — and the
//! threads splitting C into rectangles, each a serial GEMM with its own packing buffers.
//!
//! Row-major C is column-major Cᵀ = Bᵀ·Aᵀ, so in BLIS's terms the vector dimension is our n
//! (B is packed in panels of NR columns, read as vectors) and the broadcast dimension our m (A
//! is packed in panels of MR rows, read one element at a time). The A micro-panel (MR × KC)
//! stays in L1 while B micro-panels (KC × NR) stream from the L2-resident B block (KC × NB),
//! and the A block (MB × KC) sits in L3.

use super::isa::Isa;
use std::cell::RefCell;

/// A read-only strided matrix: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

// SAFETY: a View is only read, from slices that outlive the GEMM call that made it.
unsafe impl Send for View {}
unsafe impl Sync for View {}

impl View {
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> f32 {
        *self.ptr.offset(i as isize * self.rs + j as isize * self.cs)
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint rectangles of C (see `sgemm`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

#[derive(Clone, Copy)]
struct BiasPtr(*const f32);
// SAFETY: only read, from a slice that outlives the GEMM call.
unsafe impl Send for BiasPtr {}
unsafe impl Sync for BiasPtr {}

impl BiasPtr {
    /// Through a method, so closures capture the whole (Sync) wrapper.
    fn get(&self) -> *const f32 {
        self.0
    }
}

impl OutPtr {
    /// Through a method, so closures capture the whole (Sync) wrapper, not the raw field.
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `c[MR×NR] (row stride ldc) = [c +] Σ_k a[i·ars + k·acs]·b[k·NR + j]`, full tile: A's
/// micro-panel packed (`ars` 1, `acs` MR) or read in place (a column-major A: `ars` 1, `acs`
/// its column stride; a row-major A: `ars` its row stride, `acs` 1). Without `add`, a
/// non-null `bias` (the tile's NR columns) is added instead: the bias epilogue of the first
/// depth block.
type Microkernel = unsafe fn(
    kc: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    add: bool,
    bias: *const f32,
);

/// Register tile and cache blocks of one level.
struct Kernel {
    mr: usize,
    nr: usize,
    /// Depth of one packed block (A micro-panel MR×KC in L1).
    kc: usize,
    /// Columns of C per B block (KC × NB in L2); a multiple of NR.
    nb: usize,
    /// Rows of C per A block (MB × KC in L3); a multiple of MR.
    mb: usize,
    /// The microkernel for A micro-panels with unit row stride (packed, or column-major).
    ukr: Microkernel,
    /// The same for a row-major A read in place (any row stride).
    ukr_rows: Microkernel,
}

fn kernel(level: Isa) -> Option<Kernel> {
    match level {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(Kernel {
            mr: 12,
            nr: 32,
            kc: 384,
            nb: 480,
            mb: 3072,
            ukr: ukr_avx512::<true>,
            ukr_rows: ukr_avx512::<false>,
        }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(Kernel {
            mr: 6,
            nr: 16,
            kc: 256,
            nb: 144,
            mb: 4080,
            ukr: ukr_avx2::<true>,
            ukr_rows: ukr_avx2::<false>,
        }),
        _ => None,
    }
}

/// Whether [`sgemm`] has a microkernel for `level` (else callers use another GEMM).
pub fn supports(level: Isa) -> bool {
    kernel(level).is_some()
}

/// # Safety
/// AVX-512F present; `a` covers 12 rows × `kc` depth at strides (`ars`, `acs`) (`ars` = 1
/// when `UNIT_RS`), `b` holds `kc·32` floats; `c` a 12×32 tile with row
/// stride `ldc`; `bias` null or 32 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr_avx512<const UNIT_RS: bool>(
    kc: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    add: bool,
    bias: *const f32,
) {
    use std::arch::x86_64::*;
    const MR: usize = 12;
    let mut acc = [_mm512_setzero_ps(); 2 * MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm512_load_ps(b);
        let b1 = _mm512_load_ps(b.add(16));
        for i in 0..MR {
            let ai = _mm512_set1_ps(*a.add(if UNIT_RS { i } else { i * ars }));
            acc[2 * i] = _mm512_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm512_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
        a = a.add(acs);
        b = b.add(32);
    }
    for i in 0..MR {
        let row = c.add(i * ldc);
        let (mut x0, mut x1) = (acc[2 * i], acc[2 * i + 1]);
        if add {
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(row));
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(row.add(16)));
        } else if !bias.is_null() {
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(bias));
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(bias.add(16)));
        }
        _mm512_storeu_ps(row, x0);
        _mm512_storeu_ps(row.add(16), x1);
    }
}

/// # Safety
/// AVX2 and FMA present; `a` covers 6 rows × `kc` depth at strides (`ars`, `acs`) (`ars` = 1
/// when `UNIT_RS`), `b` holds `kc·16` floats; `c` a 6×16 tile with row
/// stride `ldc`; `bias` null or 16 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr_avx2<const UNIT_RS: bool>(
    kc: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    add: bool,
    bias: *const f32,
) {
    use std::arch::x86_64::*;
    const MR: usize = 6;
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm256_load_ps(b);
        let b1 = _mm256_load_ps(b.add(8));
        for i in 0..MR {
            let ai = _mm256_broadcast_ss(&*a.add(if UNIT_RS { i } else { i * ars }));
            acc[2 * i] = _mm256_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm256_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
        a = a.add(acs);
        b = b.add(16);
    }
    for i in 0..MR {
        let row = c.add(i * ldc);
        let (mut x0, mut x1) = (acc[2 * i], acc[2 * i + 1]);
        if add {
            x0 = _mm256_add_ps(x0, _mm256_loadu_ps(row));
            x1 = _mm256_add_ps(x1, _mm256_loadu_ps(row.add(8)));
        } else if !bias.is_null() {
            x0 = _mm256_add_ps(x0, _mm256_loadu_ps(bias));
            x1 = _mm256_add_ps(x1, _mm256_loadu_ps(bias.add(8)));
        }
        _mm256_storeu_ps(row, x0);
        _mm256_storeu_ps(row.add(8), x1);
    }
}

/// A 64-byte-aligned scratch buffer, kept per thread between calls (packing buffers of a few
/// MB: allocating and faulting them in every call would cost more than small GEMMs).
struct Scratch {
    buf: Vec<f32>,
}

impl Scratch {
    fn get(&mut self, n: usize) -> &mut [f32] {
        if self.buf.len() < n + 16 {
            self.buf = vec![0.0; n + 16];
        }
        let off = self.buf.as_ptr().align_offset(64).min(15);
        &mut self.buf[off..off + n]
    }
}

thread_local! {
    static PACK_A: RefCell<Scratch> = const { RefCell::new(Scratch { buf: Vec::new() }) };
    static PACK_B: RefCell<Scratch> = const { RefCell::new(Scratch { buf: Vec::new() }) };
}

/// Pack rows `i0..i0+mc`, depth `p0..p0+kc` of A into MR-row micro-panels (k-major inside a
/// panel), zero-padding the last panel's missing rows.
fn pack_a(dst: &mut [f32], a: View, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize) {
    for (panel, d) in dst.chunks_exact_mut(mr * kc).enumerate() {
        let r0 = panel * mr;
        if r0 >= mc {
            break;
        }
        let rows = mr.min(mc - r0);
        if rows == mr && a.rs == 1 {
            // Column-major A (a transposed operand): each depth step is MR contiguous values.
            for p in 0..kc {
                // SAFETY: rows i0+r0 .. +mr at depth p0+p lie inside A (validated shape).
                let src = unsafe {
                    std::slice::from_raw_parts(
                        a.ptr.offset((i0 + r0) as isize + (p0 + p) as isize * a.cs),
                        mr,
                    )
                };
                copy_panel(&mut d[p * mr..(p + 1) * mr], src);
            }
        } else if rows == mr && a.cs == 1 {
            // Row-major A: interleave MR row segments of length kc.
            match mr {
                12 => pack_rows::<12>(d, a, i0 + r0, p0, kc),
                6 => pack_rows::<6>(d, a, i0 + r0, p0, kc),
                _ => pack_general(d, a, i0 + r0, rows, p0, kc, mr),
            }
        } else {
            pack_general(d, a, i0 + r0, rows, p0, kc, mr);
        }
    }
}

/// [`pack_a`] of one full panel of a row-major A: `MR` rows from `i`, depth `p0..p0+kc`.
#[inline(always)]
fn pack_rows<const MR: usize>(d: &mut [f32], a: View, i: usize, p0: usize, kc: usize) {
    // SAFETY: rows i..i+MR, columns p0..p0+kc lie inside A (validated shape), and cs == 1.
    let rows: [&[f32]; MR] = std::array::from_fn(|r| unsafe {
        std::slice::from_raw_parts(a.ptr.offset((i + r) as isize * a.rs + p0 as isize), kc)
    });
    for (p, out) in d.chunks_exact_mut(MR).take(kc).enumerate() {
        for r in 0..MR {
            out[r] = rows[r][p];
        }
    }
}

/// [`pack_a`] of one panel in any layout, zero-padding rows past `rows`.
fn pack_general(d: &mut [f32], a: View, i: usize, rows: usize, p0: usize, kc: usize, mr: usize) {
    for p in 0..kc {
        let out = &mut d[p * mr..(p + 1) * mr];
        for (r, o) in out.iter_mut().enumerate() {
            // SAFETY: (i + r, p0 + p) lies inside A for r < rows (validated shape).
            *o = if r < rows {
                unsafe { a.at(i + r, p0 + p) }
            } else {
                0.0
            };
        }
    }
}

/// `dst.copy_from_slice(src)` for one panel row, at the microkernels' widths as fixed-size
/// copies: the compiler inlines those as vector moves, where a slice copy of unknown length
/// calls memmove (a large share of the packing time at these sizes).
#[inline(always)]
fn copy_panel(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let d: &mut [f32; N] = dst.try_into().expect("panel width");
        let s: &[f32; N] = src.try_into().expect("panel width");
        *d = *s;
    }
    match dst.len() {
        32 => fixed::<32>(dst, src),
        16 => fixed::<16>(dst, src),
        12 => fixed::<12>(dst, src),
        6 => fixed::<6>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Pack depth `p0..p0+kc`, columns `j0..j0+nc` of B into NR-column micro-panels (k-major
/// inside a panel), zero-padding the last panel's missing columns.
fn pack_b(dst: &mut [f32], b: View, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
    for (panel, d) in dst.chunks_exact_mut(nr * kc).enumerate() {
        let c0 = panel * nr;
        if c0 >= nc {
            break;
        }
        let cols = nr.min(nc - c0);
        for p in 0..kc {
            let out = &mut d[p * nr..(p + 1) * nr];
            if b.cs == 1 && cols == nr {
                // SAFETY: the row segment (p0 + p, j0 + c0 .. + nr) lies inside B.
                let src = unsafe {
                    std::slice::from_raw_parts(
                        b.ptr.offset((p0 + p) as isize * b.rs + (j0 + c0) as isize),
                        nr,
                    )
                };
                copy_panel(out, src);
            } else {
                for (j, o) in out.iter_mut().enumerate() {
                    // SAFETY: as above, for the columns that exist.
                    *o = if j < cols {
                        unsafe { b.at(p0 + p, j0 + c0 + j) }
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// One serial GEMM on the rectangle rows `m0..m1`, columns `n0..n1` of C.
///
/// # Safety
/// `c` points at C (row stride `ldc`); the rectangle lies inside C and no other thread writes
/// it; A and B cover rows `m0..m1` × depth `k` and depth `k` × columns `n0..n1`.
#[allow(clippy::too_many_arguments)]
unsafe fn serial(
    kern: &Kernel,
    (m0, m1): (usize, usize),
    (n0, n1): (usize, usize),
    k: usize,
    a: View,
    b: View,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: Option<*const f32>,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let mut tile = [0.0f32; 12 * 32];
    // A is read in place, unpacked, when one B block spans all the rectangle's columns (each
    // A micro-panel is then used for one sweep of B panels, from L1, and packing it would be
    // a copy per 2·n FLOPs: a large share of the skinny GEMMs of a small model) and one of
    // its strides is 1. Partial panels are still packed (zero-padded).
    let in_place = n1 - n0 <= kern.nb && (a.rs == 1 || a.cs == 1);
    PACK_A.with(|pa| {
        PACK_B.with(|pb| {
            let (mut pa, mut pb) = (pa.borrow_mut(), pb.borrow_mut());
            let mut ib = m0;
            while ib < m1 {
                let mc = kern.mb.min(m1 - ib);
                let mut p0 = 0;
                while p0 < k {
                    let kc = kern.kc.min(k - p0);
                    let add = accumulate || p0 > 0;
                    let panels = mc.div_ceil(mr);
                    let apack = if in_place {
                        // Room for the last, partial panel only.
                        let buf = pa.get(mr * kc);
                        if mc % mr != 0 {
                            pack_a(buf, a, ib + (panels - 1) * mr, mc % mr, p0, kc, mr);
                        }
                        buf
                    } else {
                        let buf = pa.get(panels * mr * kc);
                        pack_a(buf, a, ib, mc, p0, kc, mr);
                        buf
                    };
                    let mut jb = n0;
                    while jb < n1 {
                        let nc = kern.nb.min(n1 - jb);
                        let bpack = pb.get(nc.div_ceil(nr) * nr * kc);
                        pack_b(bpack, b, p0, kc, jb, nc, nr);
                        for ip in 0..panels {
                            let i = ip * mr;
                            let rows = mr.min(mc - i);
                            // The micro-panel: packed (unit row stride, depth stride MR), or
                            // in place at A's own strides.
                            let (ap, ars, acs, ukr) = if !in_place {
                                (apack.as_ptr().add(ip * mr * kc), 1, mr, kern.ukr)
                            } else if rows < mr {
                                (apack.as_ptr(), 1, mr, kern.ukr)
                            } else {
                                let p = a.ptr.offset((ib + i) as isize * a.rs + p0 as isize * a.cs);
                                if a.rs == 1 {
                                    (p, 1, a.cs as usize, kern.ukr)
                                } else {
                                    (p, a.rs as usize, 1, kern.ukr_rows)
                                }
                            };
                            for (jp, bp) in bpack.chunks_exact(nr * kc).enumerate() {
                                let j = jp * nr;
                                let cols = nr.min(nc - j);
                                let cij = c.add((ib + i) * ldc + jb + j);
                                // The bias joins the first depth block of an overwrite.
                                let bj = match bias {
                                    Some(b) if !add => b.add(jb + j),
                                    _ => std::ptr::null(),
                                };
                                if rows == mr && cols == nr {
                                    ukr(kc, ap, ars, acs, bp.as_ptr(), cij, ldc, add, bj);
                                } else {
                                    // Edge tile: through a full-size buffer, then the part
                                    // that exists.
                                    ukr(
                                        kc,
                                        ap,
                                        ars,
                                        acs,
                                        bp.as_ptr(),
                                        tile.as_mut_ptr(),
                                        nr,
                                        false,
                                        std::ptr::null(),
                                    );
                                    for r in 0..rows {
                                        let dst =
                                            std::slice::from_raw_parts_mut(cij.add(r * ldc), cols);
                                        let src = &tile[r * nr..r * nr + cols];
                                        if add {
                                            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                                        } else if !bj.is_null() {
                                            let bs = std::slice::from_raw_parts(bj, cols);
                                            for ((d, s), b) in dst.iter_mut().zip(src).zip(bs) {
                                                *d = s + b;
                                            }
                                        } else {
                                            dst.copy_from_slice(src);
                                        }
                                    }
                                }
                            }
                        }
                        jb += nc;
                    }
                    p0 += kc;
                }
                ib += mc;
            }
        })
    });
}

/// The largest index a `rows × cols` matrix with strides (`rs`, `cs`) touches (rows and
/// cols ≥ 1); None for negative strides.
pub(crate) fn last_index(rows: usize, rs: isize, cols: usize, cs: isize) -> Option<usize> {
    let v = (rows as isize - 1) * rs + (cols as isize - 1) * cs;
    (rs >= 0 && cs >= 0).then_some(v as usize)
}

/// Split `len` into `parts` contiguous ranges whose boundaries are multiples of `align`.
fn split(len: usize, parts: usize, align: usize) -> Vec<(usize, usize)> {
    let units = len.div_ceil(align);
    let parts = parts.clamp(1, units.max(1));
    (0..parts)
        .map(|p| {
            let (u0, u1) = (units * p / parts, units * (p + 1) / parts);
            ((u0 * align).min(len), (u1 * align).min(len))
        })
        .filter(|(a, b)| a < b)
        .collect()
}

/// `dst (m×n, row-major, row stride n) = [dst +] lhs·rhs` at `level`, with lhs element (i, p)
/// at `lhs[i·lhs_rs + p·lhs_cs]` and rhs element (p, j) at `rhs[p·rhs_rs + j·rhs_cs]`.
///
/// # Panics
/// When `level` has no microkernel here ([`supports`]), when it is above what the CPU has, or
/// when a slice is too short for the shape and strides.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    level: Isa,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[f32],
    rhs_rs: isize,
    rhs_cs: isize,
    bias: Option<&[f32]>,
) {
    let kern = kernel(level).unwrap_or_else(|| panic!("sgemm: no microkernel for {level}"));
    if let Some(b) = bias {
        assert!(!accumulate, "sgemm: a bias needs an overwrite");
        assert!(b.len() >= n, "sgemm: bias holds {} < n = {n}", b.len());
    }
    assert!(
        level <= super::isa::detected(),
        "sgemm: {level} is above this CPU's level"
    );
    assert!(
        dst.len() >= m * n,
        "sgemm: dst holds {} < {m}×{n}",
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        super::matmul::write_empty_sum(dst, m, n, accumulate, bias);
        return;
    }
    assert!(
        last_index(m, lhs_rs, k, lhs_cs).is_some_and(|l| l < lhs.len())
            && last_index(k, rhs_rs, n, rhs_cs).is_some_and(|l| l < rhs.len()),
        "sgemm: lhs or rhs too short (or negative strides) for m={m} n={n} k={k}"
    );
    let a = View {
        ptr: lhs.as_ptr(),
        rs: lhs_rs,
        cs: lhs_cs,
    };
    let b = View {
        ptr: rhs.as_ptr(),
        rs: rhs_rs,
        cs: rhs_cs,
    };
    let c = OutPtr(dst.as_mut_ptr());
    let bias = bias.map(|b| BiasPtr(b.as_ptr()));
    // Threads: rectangles of C. Split the rows while every thread gets a few row panels,
    // else the columns; tiny products stay on this thread.
    let threads = rayon::current_num_threads();
    let flops = 2.0 * (m * n * k) as f64;
    let tasks: Vec<((usize, usize), (usize, usize))> = if threads == 1 || flops < 2e6 {
        vec![((0, m), (0, n))]
    } else if m >= 4 * kern.mr * threads || m >= n {
        split(m, threads, kern.mr)
            .into_iter()
            .map(|r| (r, (0, n)))
            .collect()
    } else {
        split(n, threads, kern.nr)
            .into_iter()
            .map(|cr| ((0, m), cr))
            .collect()
    };
    let run = |(rows, cols): ((usize, usize), (usize, usize))| {
        // SAFETY: the rectangles are disjoint and inside C (split of 0..m or 0..n); the
        // asserts above cover every element of A and B they read; level ≤ detected.
        unsafe {
            serial(
                &kern,
                rows,
                cols,
                k,
                a,
                b,
                c.get(),
                n,
                accumulate,
                bias.map(|b| b.get()),
            )
        }
    };
    if tasks.len() == 1 {
        run(tasks[0]);
    } else {
        use rayon::prelude::*;
        tasks.into_par_iter().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_and_aligns() {
        assert_eq!(split(100, 2, 12), vec![(0, 48), (48, 100)]);
        assert_eq!(split(5, 4, 12), vec![(0, 5)]);
        let s = split(1000, 3, 32);
        assert_eq!(s.first().unwrap().0, 0);
        assert_eq!(s.last().unwrap().1, 1000);
        assert!(s.windows(2).all(|w| w[0].1 == w[1].0 && w[0].1 % 32 == 0));
    }
}
