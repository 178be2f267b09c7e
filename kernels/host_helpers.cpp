// host_helpers.cpp — the kernels' __host__ __device__ helpers compiled for the CPU.
//
// build.rs compiles this file with the `cc` crate (always, with or without nvcc) into a static
// library linked into the asa_lth crate. Without nvcc, common.cuh defines ASA_HD away, so the
// exact device-math code in kernels/*.cuh runs here; src/backend/cuda/host.rs declares these
// functions and wraps them safely, and tests/cuda_build.rs checks them against independent
// Rust implementations of each contract (DESIGN.md §6.2).
//
// Every function is `extern "C"` and takes only scalars and raw pointers.
#include <cstddef>
#include <cstdint>

#include "adamw.cuh"
#include "attention.cuh"  // also defines the asa_host_attn_* wrappers (host build only)
#include "gemm24.cuh"
#include "topk.cuh"

extern "C" {

// One AdamW element (kernels/adamw.cuh), with the bias corrections computed from step t the
// same way the Rust launcher computes them for the kernel.
void asa_host_adamw_update(float* p, float* m, float* v, float g, float mask, float lr,
                           float beta1, float beta2, float eps, float weight_decay,
                           float grad_scale, uint32_t t) {
    const float bc1 = asa_adamw_bias_correction(beta1, t);
    const float bc2 = asa_adamw_bias_correction(beta2, t);
    asa_adamw_update(p, m, v, g, mask, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
}

// The whole adamw_f32 kernel run on the host: same arguments, same meaning (mask nullable).
void asa_host_adamw_f32(float* p, const float* g, float* m, float* v, const float* mask,
                        size_t n, float lr, float beta1, float beta2, float eps, float wd,
                        float grad_scale, float bc1, float bc2) {
    for (size_t i = 0; i < n; ++i) {
        const float mk = mask != nullptr ? mask[i] : 1.0f;
        asa_adamw_update(&p[i], &m[i], &v[i], g[i], mk, lr, beta1, beta2, eps, wd, grad_scale,
                         bc1, bc2);
    }
}

// 1 - beta^t as the kernels receive it.
float asa_host_adamw_bias_correction(float beta, uint32_t t) {
    return asa_adamw_bias_correction(beta, t);
}

// ---- top-k pruning and 2:4 selection (kernels/topk.cuh) ----

// The constants the Rust launcher mirrors, in this order: digit bits, bins, tile, block,
// f32 key bits, 16-bit key bits, first non-finite key of f32, bf16, f16. Writes 9 values.
void asa_host_topk_constants(uint32_t* out) {
    const uint32_t c[9] = {ASA_TOPK_DIGIT_BITS,    ASA_TOPK_BINS,           ASA_TOPK_TILE,
                           ASA_TOPK_BLOCK,         ASA_TOPK_KEY_BITS_F32,   ASA_TOPK_KEY_BITS_16,
                           ASA_TOPK_NONFINITE_F32, ASA_TOPK_NONFINITE_BF16, ASA_TOPK_NONFINITE_F16};
    for (int i = 0; i < 9; ++i) {
        out[i] = c[i];
    }
}

uint32_t asa_host_topk_key_f32(uint32_t bits) { return asa_topk_key_f32(bits); }
uint32_t asa_host_topk_key_16(uint32_t bits) { return asa_topk_key_16(bits); }
uint32_t asa_host_topk_passes(uint32_t key_bits) { return asa_topk_passes(key_bits); }
uint32_t asa_host_topk_width(uint32_t key_bits, uint32_t pass) {
    return asa_topk_width(key_bits, pass);
}
uint32_t asa_host_topk_shift(uint32_t key_bits, uint32_t pass) {
    return asa_topk_shift(key_bits, pass);
}
uint32_t asa_host_topk_prefix_shift(uint32_t key_bits, uint32_t pass) {
    return asa_topk_prefix_shift(key_bits, pass);
}
uint32_t asa_host_topk_digit(uint32_t key, uint32_t key_bits, uint32_t pass) {
    return asa_topk_digit(key, key_bits, pass);
}
uint32_t asa_host_topk_in_prefix(uint32_t key, uint32_t key_bits, uint32_t pass,
                                 uint32_t prefix) {
    return asa_topk_in_prefix(key, key_bits, pass, prefix) ? 1u : 0u;
}
uint32_t asa_host_topk_mask_state(float m) { return asa_topk_mask_state(m); }
uint32_t asa_host_two_four_keep(uint32_t k0, uint32_t k1, uint32_t k2, uint32_t k3) {
    return asa_two_four_keep(k0, k1, k2, k3);
}
uint32_t asa_host_topk_tensor_of(const uint64_t* tile_begin, uint32_t nt, uint64_t tile) {
    static_assert(sizeof(uint64_t) == sizeof(unsigned long long), "u64 layout");
    return asa_topk_tensor_of(reinterpret_cast<const unsigned long long*>(tile_begin), nt, tile);
}
void asa_host_topk_block_tiles(uint64_t num_tiles, uint32_t grid, uint32_t block, uint64_t* t0,
                               uint64_t* t1) {
    unsigned long long a = 0, b = 0;
    asa_topk_block_tiles(num_tiles, grid, block, &a, &b);
    *t0 = a;
    *t1 = b;
}

// ---- 2:4 GEMM lane layouts (kernels/gemm24.cuh) ----

void asa_host_mma_sp_a_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* row,
                           uint32_t* ccol) {
    asa_mma_sp_a_pos(lane, j, h, row, ccol);
}
void asa_host_mma_sp_b_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* k, uint32_t* n) {
    asa_mma_sp_b_pos(lane, j, h, k, n);
}
void asa_host_mma_c_pos(uint32_t lane, uint32_t i, uint32_t* row, uint32_t* col) {
    asa_mma_c_pos(lane, i, row, col);
}
uint32_t asa_host_mma_sp_meta_word(const uint16_t* meta, uint32_t per_row, uint32_t row0,
                                   uint32_t pair, uint32_t steps, uint32_t lane) {
    return asa_mma_sp_meta_word(meta, per_row, row0, pair, steps, lane);
}
uint32_t asa_host_g24_config(uint32_t cfg, uint32_t* out) { return asa_g24_config(cfg, out); }
uint32_t asa_host_g24_w_smem(uint32_t r, uint32_t c) { return asa_g24_w_smem(r, c); }
uint32_t asa_host_g24_x_smem(uint32_t n, uint32_t c) { return asa_g24_x_smem(n, c); }
void asa_host_g24_ldsm_a(uint32_t lane, uint32_t s, uint32_t* row, uint32_t* chunk) {
    asa_g24_ldsm_a(lane, s, row, chunk);
}
void asa_host_g24_ldsm_b(uint32_t lane, uint32_t s, uint32_t* tok, uint32_t* chunk) {
    asa_g24_ldsm_b(lane, s, tok, chunk);
}
void asa_host_g24_split_range(uint32_t pairs, uint32_t splits, uint32_t z, uint32_t* first,
                              uint32_t* end) {
    asa_g24_split_range(pairs, splits, z, first, end);
}
int64_t asa_host_g24_w_src(int n0, int i, int kt, int N, int K) {
    return asa_g24_w_src(n0, i, kt, N, K);
}
int64_t asa_host_g24_x_src(int m0, int i, int kt, int M, int K) {
    return asa_g24_x_src(m0, i, kt, M, K);
}
int64_t asa_host_g24_meta_src(int n0, int i, int kt, int N, int pairs) {
    return asa_g24_meta_src(n0, i, kt, N, pairs);
}
void asa_host_g24h_step_desc(uint32_t w_s, uint32_t x_s, uint32_t s, uint64_t* da,
                             uint64_t* db) {
    asa_g24h_step_desc(w_s, x_s, s, da, db);
}
uint32_t asa_host_g24h_smem(uint32_t r, uint32_t c, uint32_t sbo) {
    return asa_g24h_smem(r, c, sbo);
}
uint64_t asa_host_g24h_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return asa_g24h_desc(addr, lbo, sbo);
}
void asa_host_g24h_d_pos(uint32_t tid, uint32_t i, uint32_t* row, uint32_t* col) {
    asa_g24h_d_pos(tid, i, row, col);
}
// Hopper tile constants, in order: BM, BN, stages, threads, W SBO, X SBO, LBO, stage bytes,
// dynamic shared memory. Writes 9 values.
void asa_host_g24h_constants(uint32_t* out) {
    const uint32_t c[9] = {ASA_G24H_BM,      ASA_G24H_BN,     ASA_G24H_STAGES,
                           ASA_G24H_THREADS, ASA_G24H_W_SBO,  ASA_G24H_X_SBO,
                           ASA_G24H_LBO,     ASA_G24H_STAGE_BYTES, ASA_G24H_SMEM};
    for (int i = 0; i < 9; ++i) {
        out[i] = c[i];
    }
}

}  // extern "C"

// ---- 2:4 compression: prune + compress + reorder (kernels/compress24.cuh) ----
// Included here rather than at the top so this section stays self-contained.
#include "compress24.cuh"

extern "C" {

uint32_t asa_host_f32_to_bf16_rne(uint32_t bits) { return asa_f32_to_bf16_rne(bits); }
uint32_t asa_host_f32_to_f16_rne(uint32_t bits) { return asa_f32_to_f16_rne(bits); }

// 2:4 selection of 16 f32 (bits) x[0..16): writes the 8 kept bits to kept[0..8), returns the
// canonical metadata u16.
uint32_t asa_host_compress24_select16(const uint32_t* x, uint32_t* kept) {
    uint32_t xs[16], ks[8];
    for (int i = 0; i < 16; ++i) {
        xs[i] = x[i];
    }
    const uint32_t meta = asa_compress24_select16(xs, ks);
    for (int i = 0; i < 8; ++i) {
        kept[i] = ks[i];
    }
    return meta;
}

// Position of the first NaN/Inf among x[0..16), or 16.
uint32_t asa_host_compress24_first_bad16(const uint32_t* x) {
    uint32_t xs[16];
    for (int i = 0; i < 16; ++i) {
        xs[i] = x[i];
    }
    return asa_compress24_first_bad16(xs);
}

// The constants the Rust launcher mirrors: block size, then the words of an n x k matrix.
uint32_t asa_host_compress24_block(void) { return ASA_COMPRESS24_BLOCK; }
uint64_t asa_host_compress24_words(uint32_t n, uint32_t k) { return asa_compress24_words(n, k); }

// Thread `word` of a compress24 kernel run on the host: w is N x K f32 bits, values N x K/4
// u32, meta asa_compress24_words(n, k) u32. Returns the first bad flat index or u64::MAX.
uint64_t asa_host_compress24_word(const uint32_t* w, uint32_t k, uint32_t bf16, uint64_t word,
                                  uint32_t* values, uint32_t* meta) {
    return asa_compress24_word(w, k, bf16 != 0u, word, values, meta);
}

}  // extern "C"
