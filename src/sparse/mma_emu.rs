//! A warp executing `mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.{bf16,f16}`,
//! emulated from the PTX ISA fragment tables as collected in `shared/PTX-FACTS.md` — written
//! from the ISA text, not from the kernels, so tests can hold the kernels' lane-layout helpers
//! (kernels/gemm24.cuh, compiled for the host) to the ISA (DESIGN.md §6.2).
//!
//! Notation: lane `l`, `g = l >> 2`, `t = l % 4`. 16-bit operands travel as u32 registers, the
//! lower-index element in the low half. Entries marked [figure] in PTX-FACTS (B layout,
//! metadata register) are unverified until a GPU layout probe confirms them.

/// Per-lane registers of a warp.
pub type Regs<T, const N: usize> = [[T; N]; 32];

/// The dense A tile (16 × 32, f32) that the compressed fragments and metadata describe, or an
/// error naming the lane and register whose metadata nibble is invalid.
///
/// A [ISA]: register j of lane (g, t) holds the two kept values of row `g + 8·(j & 1)`,
/// 4-wide chunk `t + 4·(j >> 1)` (dense columns `4·chunk .. 4·chunk + 3`).
/// Metadata [ISA + figure]: the nibble for (row r, chunk c) is in lane
/// `4·(r % 8) + 2·selector + c / 4`, bits `16·(r ≥ 8) + 4·(c % 4)`; low 2 bits = position of
/// the first kept value, next 2 = the second, increasing (ordered metadata).
pub fn sparse_a_dense(
    a: &Regs<u32, 4>,
    e: &[u32; 32],
    selector: usize,
    to_f32: impl Fn(u16) -> f32,
) -> Result<[[f32; 32]; 16], String> {
    assert!(selector < 2, "m16n8k32 takes selector 0 or 1");
    let mut dense = [[0.0f32; 32]; 16];
    for (lane, regs) in a.iter().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (j, &reg) in regs.iter().enumerate() {
            let row = g + 8 * (j & 1);
            let chunk = t + 4 * (j >> 1);
            let meta_lane = 4 * (row % 8) + 2 * selector + chunk / 4;
            let shift = 16 * (row / 8) + 4 * (chunk % 4);
            let nib = (e[meta_lane] >> shift) & 0xF;
            let (i0, i1) = ((nib & 3) as usize, (nib >> 2) as usize);
            if i0 >= i1 {
                return Err(format!(
                    "lane {lane} register {j}: metadata nibble {nib:#06b} (row {row}, chunk \
                     {chunk}) is not an ordered pair"
                ));
            }
            dense[row][4 * chunk + i0] = to_f32(reg as u16);
            dense[row][4 * chunk + i1] = to_f32((reg >> 16) as u16);
        }
    }
    Ok(dense)
}

/// The dense B tile (32 × 8) from the fragments [figure]: register j of lane (g, t) holds
/// k = `8j + 2t` (low half) and `8j + 2t + 1` (high half), column n = g.
pub fn b_dense(b: &Regs<u32, 4>, to_f32: impl Fn(u16) -> f32) -> [[f32; 8]; 32] {
    let mut dense = [[0.0f32; 8]; 32];
    for (lane, regs) in b.iter().enumerate() {
        let (g, t) = (lane / 4, lane % 4);
        for (j, &reg) in regs.iter().enumerate() {
            dense[8 * j + 2 * t][g] = to_f32(reg as u16);
            dense[8 * j + 2 * t + 1][g] = to_f32((reg >> 16) as u16);
        }
    }
    dense
}

/// `(row, col)` of accumulator register `i` of `lane` [ISA]: row `g + 8·(i ≥ 2)`,
/// col `2t + (i & 1)`.
pub fn c_position(lane: usize, i: usize) -> (usize, usize) {
    (lane / 4 + 8 * (i / 2), 2 * (lane % 4) + (i & 1))
}

/// Execute one `mma.sp` m16n8k32: `D = A·B + C` with f32 accumulation (products summed in
/// f64 and rounded once, which bounds how far a real tensor core's order can differ).
pub fn mma_sp_m16n8k32(
    a: &Regs<u32, 4>,
    b: &Regs<u32, 4>,
    c: &Regs<f32, 4>,
    e: &[u32; 32],
    selector: usize,
    to_f32: impl Fn(u16) -> f32 + Copy,
) -> Result<Regs<f32, 4>, String> {
    let ad = sparse_a_dense(a, e, selector, to_f32)?;
    let bd = b_dense(b, to_f32);
    let mut d = [[0.0f32; 4]; 32];
    for (lane, dl) in d.iter_mut().enumerate() {
        for (i, out) in dl.iter_mut().enumerate() {
            let (r, col) = c_position(lane, i);
            let mut acc = c[lane][i] as f64;
            for k in 0..32 {
                acc += ad[r][k] as f64 * bd[k][col] as f64;
            }
            *out = acc as f32;
        }
    }
    Ok(d)
}
