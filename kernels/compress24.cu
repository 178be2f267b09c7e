/*
compress24.cu — 2:4 prune + compress + reorder of an f32 master weight, in one pass, on the GPU.

Computes: from W (N×K f32 row-major, out × in) straight to what the mma.sp GEMM (gemm24.cu)
  consumes, with the contract of DESIGN.md §3 "2:4 format" (CPU twin: Sparse24::<f32>::compress,
  then half's f32 -> bf16/f16 rounding, then Sparse24::mma_sp_metadata; all of it stated in
  compress24.cuh):
  values — N × K/2 bf16 (or f16), round to nearest even, packed two per u32 (N × K/4 u32),
           row-major, exactly what DeviceSparse24::upload uploads;
  meta   — [N/16][ceil(K/64)][32] u32, the mma.sp-reordered metadata (asa_mma_sp_meta_word);
  first_bad — one u64, atomicMin of the flat index of every NaN/Inf read (the host initialises
           it to ASA_COMPRESS24_NONE and turns anything else into Error::NonFinite).
  Selection: the 2 largest |w| of each aligned group of 4 along K by magnitude key (-0.0 and 0.0
  tie), ties to the lower index (asa_two_four_keep, shared with topk.cu's 2:4 mask).
  Shapes (checked on the host): N % 16 == 0, K % 32 == 0, K > 0; W 16-byte aligned.

Variants:
  compress24_bf16, compress24_f16 — the same per-thread body (asa_compress24_word) with the
      16-bit type fixed at compile time.

Launch shape: one thread per metadata word, blocks of ASA_COMPRESS24_BLOCK (256) threads, grid
  ceil(words / 256) with words = N/16 · ceil(K/64) · 32. A thread reads 2 rows × 16 f32 (four
  16-byte loads per row; the 4 lanes t of a group g read 256 contiguous bytes of one row) and
  writes one u32 of metadata (a warp writes 128 contiguous bytes) and 2 × 16 bytes of values.
  Memory-bound: 4 bytes read and 1.125 written per weight, no shared memory, no reuse.

Tests: tests/compress24.rs — the helpers compiled for the host (host_helpers.cpp) run for
  every (row, u16 index) and every thread of random, tie-heavy matrices and match the CPU path;
  gpu_compress24_matches_the_host_path compares the device output bit for bit with it (outputs
  poisoned first), and the NaN/Inf error case (skipped without a GPU, a failure under
  ASA_LTH_REQUIRE_GPU=1). Resource check: scripts/check-kernels.sh (hot: no local memory).

Status: compiles, host-verified, NOT run on a GPU yet.
*/
#include "compress24.cuh"

namespace asa_compress24 {

template <bool BF16>
__device__ __forceinline__ void compress24(const float* __restrict__ w,
                                           uint32_t* __restrict__ values,
                                           uint32_t* __restrict__ meta, uint32_t k,
                                           unsigned long long words,
                                           unsigned long long* __restrict__ first_bad) {
    const unsigned long long word =
        static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (word >= words) {
        return;
    }
    // W is only ever read as bits: selection compares magnitude keys and rounding is integer.
    const unsigned long long bad = asa_compress24_word(reinterpret_cast<const uint32_t*>(w), k,
                                                       BF16, word, values, meta);
    if (bad != ASA_COMPRESS24_NONE) {
        atomicMin(first_bad, bad);
    }
}

}  // namespace asa_compress24

// asa-lth: hot compress24_bf16
extern "C" __global__ void __launch_bounds__(ASA_COMPRESS24_BLOCK)
compress24_bf16(const float* __restrict__ w, uint32_t* __restrict__ values,
                uint32_t* __restrict__ meta, unsigned k, unsigned long long words,
                unsigned long long* __restrict__ first_bad) {
    asa_compress24::compress24<true>(w, values, meta, k, words, first_bad);
}

// asa-lth: hot compress24_f16
extern "C" __global__ void __launch_bounds__(ASA_COMPRESS24_BLOCK)
compress24_f16(const float* __restrict__ w, uint32_t* __restrict__ values,
               uint32_t* __restrict__ meta, unsigned k, unsigned long long words,
               unsigned long long* __restrict__ first_bad) {
    asa_compress24::compress24<false>(w, values, meta, k, words, first_bad);
}
