// gemm24.cuh — lane layouts of mma.sp m16n8k32 (bf16/f16 operands, f32 accumulators) and the
// canonical-to-mma.sp metadata reorder, as __host__ __device__ helpers.
//
// The kernels in gemm24.cu use these to decide what each lane loads and stores; build.rs also
// compiles them for the host (kernels/host_helpers.cpp) so tests/gemm24.rs can feed their
// fragments to the PTX-ISA warp emulator (src/sparse/mma_emu.rs) and compare with a plain
// matmul, without a GPU (DESIGN.md §6.2). Tables: shared/PTX-FACTS.md; the B layout and the
// metadata register are [figure] items there, unverified until a GPU layout probe runs.
//
// Notation: lane l, g = l >> 2, t = l & 3. The sparse operand A is W (N × K, out × in) in the
// canonical compressed form (values N × K/2, metadata N × K/16 u16; DESIGN.md §3), so the MMA
// computes a 16 (out features) × 8 (tokens) tile of Yᵀ; B is X (M × K row-major), read as the
// K × 8 column-major operand.
#pragma once

#include "common.cuh"

// Compressed-A element held by half h (0 = low 16 bits) of register j (0..3): row within the
// 16-row tile and column within the 16 compressed columns of one k32 step. In compressed
// coordinates this is the dense m16n8k16 A layout, so one register is one aligned u32 of the
// canonical values.
ASA_HD_INLINE void asa_mma_sp_a_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* row,
                                    uint32_t* ccol) {
    const uint32_t g = lane >> 2, t = lane & 3;
    *row = g + 8 * (j & 1);
    *ccol = 2 * t + 8 * (j >> 1) + h;
}

// B element held by half h of register j: k within the k32 step, column n within the 8.
ASA_HD_INLINE void asa_mma_sp_b_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* k,
                                    uint32_t* n) {
    const uint32_t g = lane >> 2, t = lane & 3;
    *k = 8 * j + 2 * t + h;
    *n = g;
}

// Accumulator register i (0..3): row (within 16) and column (within 8) of the D tile.
ASA_HD_INLINE void asa_mma_c_pos(uint32_t lane, uint32_t i, uint32_t* row, uint32_t* col) {
    const uint32_t g = lane >> 2, t = lane & 3;
    *row = g + 8 * (i >> 1);
    *col = 2 * t + (i & 1);
}

// The metadata word `lane` supplies for the pair `pair` of k32 steps (steps 2·pair with
// selector 0 and 2·pair + 1 with selector 1) of the 16-row tile starting at row0: with
// s = t / 2 and p = t % 2, canonical u16 number 2·(2·pair + s) + p of rows row0 + g (low half)
// and row0 + g + 8 (high half). `per_row` = K/16 u16 per row; `steps` = K/32. A step past the
// end (K/32 odd) gives 0, which no MMA reads. Same layout as Sparse24::mma_sp_metadata.
ASA_HD_INLINE uint32_t asa_mma_sp_meta_word(const uint16_t* meta, uint32_t per_row,
                                            uint32_t row0, uint32_t pair, uint32_t steps,
                                            uint32_t lane) {
    const uint32_t g = lane >> 2, t = lane & 3;
    const uint32_t step = 2 * pair + (t >> 1);
    if (step >= steps) {
        return 0u;
    }
    const uint32_t u = 2 * step + (t & 1);
    const uint32_t lo = meta[(row0 + g) * per_row + u];
    const uint32_t hi = meta[(row0 + g + 8) * per_row + u];
    return lo | (hi << 16);
}
