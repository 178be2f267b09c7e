//! A warp executing dense `mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32`,
//! emulated from the PTX ISA fragment tables (§9.7.14.5.8, collected in `shared/PTX-FACTS.md`,
//! all [ISA] items) — written from the ISA text, not from the kernels, so tests can hold the
//! attention kernels' lane-layout helpers (kernels/attention.cuh, compiled for the host) to the
//! ISA (DESIGN.md §6.2).
//!
//! Notation as in the ISA: lane `l`, `groupID g = l >> 2`, `threadID_in_group t = l % 4`.
//! Fragment element `a_i` of A lives in register `i / 2`, half `i % 2` (the lower-index element
//! in the low 16 bits); likewise `b_i`. Accumulators `c_i` are one f32 register each.

/// Per-lane registers of a warp.
pub type Regs<T, const N: usize> = [[T; N]; 32];

/// ISA table for A (16×16, `.row`): `(row, col)` of element `a_i`, `i ∈ 0..8`.
/// row = g for a0, a1, a4, a5 and g + 8 for a2, a3, a6, a7; col = 2t + (i & 1) for i < 4 and
/// 2t + (i & 1) + 8 for i ≥ 4.
pub fn a_elem(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    let row = if matches!(i, 0 | 1 | 4 | 5) { g } else { g + 8 };
    let col = if i < 4 {
        2 * t + (i & 1)
    } else {
        2 * t + (i & 1) + 8
    };
    (row, col)
}

/// ISA table for B (16×8, `.col`): `(k, n)` of element `b_i`, `i ∈ 0..4`.
/// row k = 2t + (i & 1) for i < 2 and 2t + (i & 1) + 8 for i ≥ 2; col n = g.
pub fn b_elem(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    let k = if i < 2 {
        2 * t + (i & 1)
    } else {
        2 * t + (i & 1) + 8
    };
    (k, g)
}

/// ISA table for C/D (16×8, f32): `(row, col)` of `c_i`, `i ∈ 0..4`.
/// row = g for c0, c1 and g + 8 for c2, c3; col = 2t + (i & 1).
pub fn c_elem(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    (if i < 2 { g } else { g + 8 }, 2 * t + (i & 1))
}

/// The 16-bit element `e` (0..n) of a fragment held as u32 registers.
fn half_of<const N: usize>(regs: &[u32; N], e: usize) -> u16 {
    (regs[e / 2] >> (16 * (e % 2))) as u16
}

/// The dense A tile (16×16) the warp's A fragments describe.
pub fn a_dense(a: &Regs<u32, 4>, to_f32: impl Fn(u16) -> f32) -> [[f32; 16]; 16] {
    let mut m = [[0.0f32; 16]; 16];
    for (lane, regs) in a.iter().enumerate() {
        for i in 0..8 {
            let (r, c) = a_elem(lane, i);
            m[r][c] = to_f32(half_of(regs, i));
        }
    }
    m
}

/// The dense B tile (16×8, `[k][n]`) the warp's B fragments describe.
pub fn b_dense(b: &Regs<u32, 2>, to_f32: impl Fn(u16) -> f32) -> [[f32; 8]; 16] {
    let mut m = [[0.0f32; 8]; 16];
    for (lane, regs) in b.iter().enumerate() {
        for i in 0..4 {
            let (k, n) = b_elem(lane, i);
            m[k][n] = to_f32(half_of(regs, i));
        }
    }
    m
}

/// The dense 16×8 tile held in accumulator registers.
pub fn c_dense(c: &Regs<f32, 4>) -> [[f32; 8]; 16] {
    let mut m = [[0.0f32; 8]; 16];
    for (lane, regs) in c.iter().enumerate() {
        for (i, &x) in regs.iter().enumerate() {
            let (r, col) = c_elem(lane, i);
            m[r][col] = x;
        }
    }
    m
}

/// Execute one `mma` m16n8k16: `D = A·B + C` with f32 accumulators (products summed in f64
/// and rounded once, which bounds how far a real tensor core's summation order can differ).
pub fn mma_m16n8k16(
    a: &Regs<u32, 4>,
    b: &Regs<u32, 2>,
    c: &Regs<f32, 4>,
    to_f32: impl Fn(u16) -> f32 + Copy,
) -> Regs<f32, 4> {
    let ad = a_dense(a, to_f32);
    let bd = b_dense(b, to_f32);
    let mut d = [[0.0f32; 4]; 32];
    for (lane, dl) in d.iter_mut().enumerate() {
        for (i, out) in dl.iter_mut().enumerate() {
            let (r, col) = c_elem(lane, i);
            let mut acc = c[lane][i] as f64;
            for (k, brow) in bd.iter().enumerate() {
                acc += ad[r][k] as f64 * brow[col] as f64;
            }
            *out = acc as f32;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table is a bijection onto its tile: each element held by exactly one (lane, slot).
    #[test]
    fn tables_cover_each_element_once() {
        let mut a = [[0u8; 16]; 16];
        let mut b = [[0u8; 8]; 16];
        let mut c = [[0u8; 8]; 16];
        for lane in 0..32 {
            for i in 0..8 {
                let (r, col) = a_elem(lane, i);
                a[r][col] += 1;
            }
            for i in 0..4 {
                let (k, n) = b_elem(lane, i);
                b[k][n] += 1;
                let (r, col) = c_elem(lane, i);
                c[r][col] += 1;
            }
        }
        assert!(a.iter().flatten().all(|&x| x == 1));
        assert!(b.iter().flatten().all(|&x| x == 1));
        assert!(c.iter().flatten().all(|&x| x == 1));
    }
}
