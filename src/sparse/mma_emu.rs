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

/// A warp executing `ldmatrix.sync.aligned.m8n8.x4.shared.b16` on the shared-memory image
/// `smem` [ISA §9.7.14.5.15]: lanes `8q .. 8q + 7` give the byte addresses of rows 0..7 of
/// matrix `q` (each row 16 bytes, 16-byte aligned); destination register `q` of lane `l` holds
/// row `l / 4`, elements `2·(l % 4)` (low half) and `2·(l % 4) + 1` (high half) of matrix `q`.
/// Elements are little-endian 16-bit values. An unaligned or out-of-range address is an error
/// naming the lane.
pub fn ldmatrix_x4(smem: &[u8], addr: &[u32; 32]) -> Result<Regs<u32, 4>, String> {
    ldmatrix(smem, addr, 4, false)
}

/// `ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16` (`num` ∈ {1, 2, 4}): as
/// [`ldmatrix_x4`] for matrices `0..num` (only lanes `0 .. 8·num` give addresses; registers
/// `num..4` of the result are 0). With `trans`, register `q` of lane `l` holds column `l / 4`,
/// rows `2·(l % 4)` (low half) and `2·(l % 4) + 1` (high half) of matrix `q` [ISA: "the
/// matrix is loaded in column-major format"].
pub fn ldmatrix(
    smem: &[u8],
    addr: &[u32; 32],
    num: usize,
    trans: bool,
) -> Result<Regs<u32, 4>, String> {
    if !matches!(num, 1 | 2 | 4) {
        return Err(format!("ldmatrix .x{num}: the ISA has x1, x2 and x4"));
    }
    for (lane, &a) in addr.iter().enumerate().take(8 * num) {
        if a % 16 != 0 || a as usize + 16 > smem.len() {
            return Err(format!(
                "lane {lane}: row address {a} is not a 16-byte aligned row inside the {}-byte \
                 image",
                smem.len()
            ));
        }
    }
    let half = |row_addr: u32, col: usize| {
        let at = row_addr as usize + 2 * col;
        u16::from_le_bytes([smem[at], smem[at + 1]]) as u32
    };
    let mut regs = [[0u32; 4]; 32];
    for (lane, r) in regs.iter_mut().enumerate() {
        for (q, reg) in r.iter_mut().enumerate().take(num) {
            let (g, t) = (lane / 4, lane % 4);
            *reg = if trans {
                half(addr[8 * q + 2 * t], g) | (half(addr[8 * q + 2 * t + 1], g) << 16)
            } else {
                half(addr[8 * q + g], 2 * t) | (half(addr[8 * q + g], 2 * t + 1) << 16)
            };
        }
    }
    Ok(regs)
}

/// The fields of a wgmma shared-memory matrix descriptor [ISA §9.7.15.5.1 "Matrix Descriptor
/// Format"]: bits 0–13 start address, 16–29 leading-dimension byte offset, 32–45 stride byte
/// offset (each in 16-byte units), 49–51 base offset, 62–63 swizzle mode. Returned in bytes:
/// `(start, lbo, sbo, base_offset, swizzle)`.
pub fn wgmma_desc_fields(desc: u64) -> (usize, usize, usize, u32, u32) {
    let f = |shift: u32| (((desc >> shift) & 0x3FFF) as usize) << 4;
    (
        f(0),
        f(16),
        f(32),
        ((desc >> 49) & 7) as u32,
        ((desc >> 62) & 3) as u32,
    )
}

/// Byte address of 16-bit element (`row`, `k`) of a K-major operand that `desc` describes in
/// the canonical layout without swizzling [ISA §9.7.15.5.1]: core matrices of 8 rows × 16
/// bytes, each 128 contiguous bytes (row `r % 8` at `16·(r % 8)`); the core holding columns
/// `8c .. 8c + 7` is `c·LBO` bytes along, the one holding rows `8q .. 8q + 7` `q·SBO` bytes.
pub fn wgmma_kmajor_addr(desc: u64, row: usize, k: usize) -> Result<usize, String> {
    let (start, lbo, sbo, base, swizzle) = wgmma_desc_fields(desc);
    if swizzle != 0 || base != 0 {
        return Err(format!(
            "descriptor {desc:#018x}: only the no-swizzle canonical layout is emulated \
             (swizzle {swizzle}, base offset {base})"
        ));
    }
    Ok(start + (row / 8) * sbo + (k / 8) * lbo + (row % 8) * 16 + (k % 8) * 2)
}

/// A warpgroup executing `wgmma.mma_async.sp.sync.aligned.m64nNk32.f32.{bf16,f16}` with both
/// operands in shared memory (K-major, no transpose) [ISA §9.7.15.6]: `d` (128 threads × N/2
/// f32) += A·B, where A is the 64 × 32 sparse tile stored packed (64 × 16 elements) at
/// `desc_a`, its metadata supplied per warp as for `mma.sp` m16n8k32 (warp `w` covers rows
/// `16w .. 16w + 15`, the same register layout and selector rule, [`sparse_a_dense`]), and B is
/// 32 × N, stored N rows of 32 K-contiguous elements at `desc_b`. The accumulator layout
/// [ISA, wgmma D fragment figure for m64nN f32]: register `i` of thread `tid` (warp `w`, lane
/// `(g, t)`) is row `16w + g + 8·((i / 2) % 2)`, column `8·(i / 4) + 2t + i % 2`.
#[allow(clippy::too_many_arguments)]
pub fn wgmma_sp_m64nnk32(
    smem: &[u8],
    desc_a: u64,
    desc_b: u64,
    e: &[u32; 128],
    selector: usize,
    n: usize,
    d: &mut [Vec<f32>],
    to_f32: impl Fn(u16) -> f32 + Copy,
) -> Result<(), String> {
    if n == 0
        || !n.is_multiple_of(8)
        || n > 256
        || d.len() != 128
        || d.iter().any(|r| r.len() != n / 2)
    {
        return Err(format!("wgmma m64n{n}k32: bad N or accumulator shape"));
    }
    let read = |addr: usize| -> Result<u16, String> {
        smem.get(addr..addr + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("address {addr} outside the {}-byte image", smem.len()))
    };
    let mut a_dense = [[0.0f32; 32]; 64];
    for w in 0..4 {
        let mut regs = [[0u32; 4]; 32];
        for (lane, r) in regs.iter_mut().enumerate() {
            let (g, t) = (lane / 4, lane % 4);
            for (j, reg) in r.iter_mut().enumerate() {
                let row = 16 * w + g + 8 * (j & 1);
                let ccol = 2 * t + 8 * (j >> 1);
                let lo = read(wgmma_kmajor_addr(desc_a, row, ccol)?)?;
                let hi = read(wgmma_kmajor_addr(desc_a, row, ccol + 1)?)?;
                *reg = lo as u32 | ((hi as u32) << 16);
            }
        }
        let ew: [u32; 32] = e[32 * w..32 * w + 32].try_into().expect("32 lanes");
        let tile = sparse_a_dense(&regs, &ew, selector, to_f32)?;
        a_dense[16 * w..16 * w + 16].copy_from_slice(&tile);
    }
    let mut b_dense = vec![[0.0f32; 32]; n];
    for (col, bk) in b_dense.iter_mut().enumerate() {
        for (k, v) in bk.iter_mut().enumerate() {
            *v = to_f32(read(wgmma_kmajor_addr(desc_b, col, k)?)?);
        }
    }
    for (tid, regs) in d.iter_mut().enumerate() {
        let (w, lane) = (tid / 32, tid % 32);
        let (g, t) = (lane / 4, lane % 4);
        for (i, out) in regs.iter_mut().enumerate() {
            let row = 16 * w + g + 8 * ((i / 2) % 2);
            let col = 8 * (i / 4) + 2 * t + i % 2;
            let mut acc = *out as f64;
            for k in 0..32 {
                acc += a_dense[row][k] as f64 * b_dense[col][k] as f64;
            }
            *out = acc as f32;
        }
    }
    Ok(())
}
