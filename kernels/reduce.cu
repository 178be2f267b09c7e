/*
reduce.cu — Σ x² of an f32 tensor in f64, deterministic (for global-norm gradient clipping).

Computes: the contract of src/backend/mod.rs `Ops::sum_squares` (CPU twin
src/backend/cpu/adamw.rs `sum_squares`): Σ (f64)x·(f64)x over n elements.
Two passes, no atomics: sum_squares_partial_f64 writes one f64 partial per block (each thread
accumulates a fixed grid-stride subset in f64, then a fixed block tree), and
sum_squares_finish_f64 sums the partials with one block in a fixed order. The grid depends only
on n (src/backend/cuda/ops.rs `sumsq_grid`), never on the device, so a given tensor gives the
same bits on every GPU and every run. f64 products of f32 values are exact and an f64 sum of
≤ 2^31 such terms loses far less than the 1e-5 the contract allows.

Variants: one kernel per pass.

Launch shape: partial: block ASA_SUMSQ_BLOCK (256), grid = min(⌈n/256⌉, ASA_SUMSQ_MAX_BLOCKS
  = 1024), any grid ≥ 1 correct. finish: one block of ASA_SUMSQ_BLOCK.

Tests: tests/cuda_ops.rs — gpu_adamw_and_sum_squares_match_cpu (several n incl. 1 and
  non-multiples of 256, bitwise-stable across two calls). Resource check: scripts/check-kernels.sh.
*/
#include "block_reduce.cuh"

#define ASA_SUMSQ_BLOCK 256

// asa-lth: hot sum_squares_partial_f64
extern "C" __global__ void __launch_bounds__(ASA_SUMSQ_BLOCK)
sum_squares_partial_f64(double* __restrict__ partials, const float* __restrict__ x, size_t n) {
    __shared__ double scratch[32];
    double acc = 0.0;
    const size_t stride = static_cast<size_t>(gridDim.x) * ASA_SUMSQ_BLOCK;
    for (size_t i = static_cast<size_t>(blockIdx.x) * ASA_SUMSQ_BLOCK + threadIdx.x; i < n;
         i += stride) {
        const double v = static_cast<double>(x[i]);
        acc += v * v;
    }
    acc = asa_reduce::block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = acc;
    }
}

// asa-lth: hot sum_squares_finish_f64
extern "C" __global__ void __launch_bounds__(ASA_SUMSQ_BLOCK)
sum_squares_finish_f64(double* __restrict__ out, const double* __restrict__ partials,
                       uint32_t count) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (uint32_t i = threadIdx.x; i < count; i += ASA_SUMSQ_BLOCK) {
        acc += partials[i];
    }
    acc = asa_reduce::block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        out[0] = acc;
    }
}
