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

// The GPT-2 tanh GELU of the fused epilogues: the formula of gelu_fwd_f32 (gelu.cu) and the
// CPU twin, with the accurate tanh.
ASA_HD_INLINE float asa_g24_gelu(float x) {
    const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
#if defined(__CUDA_ARCH__)
    return 0.5f * x * (1.0f + tanhf(u));
#else
    return 0.5f * x * (1.0f + std::tanh(u));
#endif
}

// ---- The tuned kernels (gemm24.cu, gemm24_tc): shared-memory layout and ldmatrix addressing ----
//
// One pipeline stage holds BK = 64 dense columns of K (= one metadata pair: two k32 steps):
//   W tile: BM rows × 32 compressed halves = 64 B per row (4 chunks of 16 B);
//   X tile: BN tokens × 64 halves = 128 B per token (8 chunks);
//   metadata: BM/16 tiles × 32 u32 (the reordered words of this pair, lane order).
// Chunks are stored XOR-swizzled so that the eight 16-byte rows one ldmatrix phase reads fall
// in eight distinct bank groups (conflict-free), and cp.async writes whole chunks.
#define ASA_G24_BK 64
#define ASA_G24_W_ROW_BYTES 64
#define ASA_G24_X_ROW_BYTES 128

// Tile configurations (index → BM, BN, WARPS_M, WARPS_N, STAGES). The Rust launcher reads
// them through asa_g24_config so the two sides cannot disagree.
//   0 "large": 128 features × 128 tokens, 8 warps of 64 × 32, 3 stages (compute-bound M);
//   1 "small":  32 features ×  32 tokens, 2 warps of 16 × 32, 4 stages (few tokens: many
//               CTAs over N, plus split-K, for weight-bandwidth-bound shapes).
#define ASA_G24_CONFIGS 2
#define ASA_G24_L_BM 128
#define ASA_G24_L_BN 128
#define ASA_G24_L_WARPS_M 2
#define ASA_G24_L_WARPS_N 4
#define ASA_G24_L_STAGES 3
#define ASA_G24_S_BM 32
#define ASA_G24_S_BN 32
#define ASA_G24_S_WARPS_M 2
#define ASA_G24_S_WARPS_N 1
#define ASA_G24_S_STAGES 4

// Byte sizes of one configuration: stage, pipeline, epilogue staging (f32 [BN][BM + 4]), and
// the dynamic shared memory the kernel needs (the larger of pipeline and epilogue, which
// reuses the pipeline's memory).
ASA_HD_INLINE uint32_t asa_g24_stage_bytes(uint32_t bm, uint32_t bn) {
    return bm * ASA_G24_W_ROW_BYTES + bn * ASA_G24_X_ROW_BYTES + (bm / 16) * 128;
}
ASA_HD_INLINE uint32_t asa_g24_smem_bytes(uint32_t bm, uint32_t bn, uint32_t stages) {
    const uint32_t pipe = stages * asa_g24_stage_bytes(bm, bn);
    const uint32_t epi = bn * (bm + 4) * 4;
    return pipe > epi ? pipe : epi;
}

// Fills out[0..6] with BM, BN, WARPS_M, WARPS_N, STAGES, threads, dynamic smem bytes of
// configuration `cfg`; returns 0 for an unknown cfg.
ASA_HD_INLINE uint32_t asa_g24_config(uint32_t cfg, uint32_t* out) {
    uint32_t bm, bn, wm, wn, st;
    if (cfg == 0) {
        bm = ASA_G24_L_BM, bn = ASA_G24_L_BN, wm = ASA_G24_L_WARPS_M, wn = ASA_G24_L_WARPS_N,
        st = ASA_G24_L_STAGES;
    } else if (cfg == 1) {
        bm = ASA_G24_S_BM, bn = ASA_G24_S_BN, wm = ASA_G24_S_WARPS_M, wn = ASA_G24_S_WARPS_N,
        st = ASA_G24_S_STAGES;
    } else {
        return 0u;
    }
    out[0] = bm;
    out[1] = bn;
    out[2] = wm;
    out[3] = wn;
    out[4] = st;
    out[5] = 32 * wm * wn;
    out[6] = asa_g24_smem_bytes(bm, bn, st);
    return 1u;
}

// Byte offset, within a stage's W tile, of 16-byte chunk c (0..3) of row r. Rows are 64 B, so
// rows r and r + 2 would share banks; XOR-ing the chunk with (r / 2) % 4 spreads the 8 rows of
// one ldmatrix phase over 8 bank groups.
ASA_HD_INLINE uint32_t asa_g24_w_smem(uint32_t r, uint32_t c) {
    return r * ASA_G24_W_ROW_BYTES + ((c ^ ((r >> 1) & 3u)) << 4);
}

// Byte offset, within a stage's X tile, of chunk c (0..7) of token row n (128 B rows: the
// usual XOR with n % 8).
ASA_HD_INLINE uint32_t asa_g24_x_smem(uint32_t n, uint32_t c) {
    return n * ASA_G24_X_ROW_BYTES + ((c ^ (n & 7u)) << 4);
}

// The row (0..15, within a 16-row tile) and chunk (0..3) whose address `lane` gives to
// ldmatrix.x4 for the A fragment of k32 step s (0 or 1) of a stage. Matrix q = lane / 8 is
// rows 8·(q & 1) .. +7, compressed columns 8·(q >> 1) .. +7 of the step — i.e. destination
// register q is exactly A register q of mma.sp (asa_mma_sp_a_pos).
ASA_HD_INLINE void asa_g24_ldsm_a(uint32_t lane, uint32_t s, uint32_t* row, uint32_t* chunk) {
    *row = 8 * ((lane >> 3) & 1u) + (lane & 7u);
    *chunk = 2 * s + (lane >> 4);
}

// The token row (0..7, within an 8-token tile) and chunk (0..7) whose address `lane` gives to
// ldmatrix.x4 for the B fragment of k32 step s: matrix q = lane / 8 is tokens 0..7, k
// 8q .. 8q + 7 of the step — destination register q is B register q (asa_mma_sp_b_pos).
ASA_HD_INLINE void asa_g24_ldsm_b(uint32_t lane, uint32_t s, uint32_t* tok, uint32_t* chunk) {
    *tok = lane & 7u;
    *chunk = 4 * s + (lane >> 3);
}

// The cp.async sources of one stage (pair kt), chunk by chunk. Chunk i of a stage's W tile is
// row i / 4, chunk i % 4; of its X tile, token i / 8, chunk i % 8; of its metadata, tile i / 8,
// 16-byte piece i % 8. Each returns the source offset (W: bytes into the values, which hold K
// bytes per row; X: elements into x; metadata: u32 words into the reordered layout), or -1 when
// the chunk lies past N, M or K and is zero-filled instead.
ASA_HD_INLINE int64_t asa_g24_w_src(int n0, int i, int kt, int N, int K) {
    const int r = i >> 2, c = i & 3;
    const int byte = kt * ASA_G24_W_ROW_BYTES + 16 * c;
    return (n0 + r < N && byte < K) ? static_cast<int64_t>(n0 + r) * K + byte : -1;
}
ASA_HD_INLINE int64_t asa_g24_x_src(int m0, int i, int kt, int M, int K) {
    const int r = i >> 3, c = i & 7;
    const int col = kt * ASA_G24_BK + 8 * c;
    return (m0 + r < M && col < K) ? static_cast<int64_t>(m0 + r) * K + col : -1;
}
ASA_HD_INLINE int64_t asa_g24_meta_src(int n0, int i, int kt, int N, int pairs) {
    const int tile = n0 / 16 + (i >> 3), c = i & 7;
    return tile * 16 < N ? (static_cast<int64_t>(tile) * pairs + kt) * 32 + 4 * c : -1;
}

// Split-K: the metadata pairs [first, end) that split z of `splits` covers, out of `pairs`
// (contiguous, as equal as possible, every pair in exactly one split).
ASA_HD_INLINE void asa_g24_split_range(uint32_t pairs, uint32_t splits, uint32_t z,
                                       uint32_t* first, uint32_t* end) {
    const uint32_t base = pairs / splits, extra = pairs % splits;
    *first = z * base + (z < extra ? z : extra);
    *end = *first + base + (z < extra ? 1u : 0u);
}

// ---- The Hopper path (gemm24_sm90.cu, wgmma.mma_async.sp): shared-memory layout ----
//
// One warpgroup computes 64 features × 128 tokens per CTA with wgmma.sp m64n128k32, operands
// read by the tensor cores straight from shared memory through matrix descriptors. Both
// operands are K-major in the canonical no-swizzle layout: 8-row × 16-byte core matrices,
// each stored as 128 contiguous bytes; cores adjacent along K are LBO bytes apart, cores
// adjacent along M/N (the next 8 rows) SBO bytes apart (PTX ISA "Matrix Descriptor Format",
// §9.7.15.5.1). Per stage (BK = 64 dense columns, one metadata pair):
//   W: 64 rows × 4 chunks (32 compressed halves): LBO 128, SBO 512;
//   X: 128 tokens × 8 chunks (64 halves): LBO 128, SBO 1024.
#define ASA_G24H_BM 64
#define ASA_G24H_BN 128
#define ASA_G24H_STAGES 4
#define ASA_G24H_THREADS 128
#define ASA_G24H_W_SBO 512
#define ASA_G24H_X_SBO 1024
#define ASA_G24H_LBO 128
#define ASA_G24H_W_BYTES (ASA_G24H_BM * ASA_G24_W_ROW_BYTES)
#define ASA_G24H_X_BYTES (ASA_G24H_BN * ASA_G24_X_ROW_BYTES)
#define ASA_G24H_STAGE_BYTES (ASA_G24H_W_BYTES + ASA_G24H_X_BYTES + (ASA_G24H_BM / 16) * 128)
#define ASA_G24H_SMEM (ASA_G24H_STAGES * ASA_G24H_STAGE_BYTES)

// Byte offset of chunk c (8 halves along K) of row r in a K-major core-matrix tile whose
// 8-row groups are `sbo` bytes apart.
ASA_HD_INLINE uint32_t asa_g24h_smem(uint32_t r, uint32_t c, uint32_t sbo) {
    return (r >> 3) * sbo + c * ASA_G24H_LBO + (r & 7u) * 16;
}

// The 64-bit wgmma matrix descriptor: start address, LBO and SBO in 16-byte units (bits 0-13,
// 16-29, 32-45), base offset 0, swizzle mode 0 (none, bits 62-63).
ASA_HD_INLINE uint64_t asa_g24h_desc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo) {
    return static_cast<uint64_t>((smem_addr >> 4) & 0x3FFFu) |
           (static_cast<uint64_t>((lbo >> 4) & 0x3FFFu) << 16) |
           (static_cast<uint64_t>((sbo >> 4) & 0x3FFFu) << 32);
}

// The descriptors of k32 step s (0 or 1) of a stage whose W tile starts at shared address w_s
// and X tile at x_s: the packed A step is 2 K-cores (16 compressed halves), the B step 4 (32
// halves), so step 1 starts 2·LBO and 4·LBO bytes in.
ASA_HD_INLINE void asa_g24h_step_desc(uint32_t w_s, uint32_t x_s, uint32_t s, uint64_t* da,
                                      uint64_t* db) {
    *da = asa_g24h_desc(w_s + 2 * s * ASA_G24H_LBO, ASA_G24H_LBO, ASA_G24H_W_SBO);
    *db = asa_g24h_desc(x_s + 4 * s * ASA_G24H_LBO, ASA_G24H_LBO, ASA_G24H_X_SBO);
}

// Accumulator register i (0..63) of thread `tid` (0..127) of the warpgroup, m64n128 f32: row
// 16·warp + g + 8·((i / 2) % 2), column 8·(i / 4) + 2t + i % 2.
ASA_HD_INLINE void asa_g24h_d_pos(uint32_t tid, uint32_t i, uint32_t* row, uint32_t* col) {
    const uint32_t warp = tid >> 5, lane = tid & 31u;
    *row = 16 * warp + (lane >> 2) + 8 * ((i >> 1) & 1u);
    *col = 8 * (i >> 2) + 2 * (lane & 3u) + (i & 1u);
}
