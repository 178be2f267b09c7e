/*
gelu.cu — the elementwise f32 ops: GELU (tanh approximation, GPT-2) forward and backward, the
residual add, gradient fan-in, fill, and the broadcast bias add of the matmul forward.

Computes (src/backend/mod.rs contracts; CPU twins src/backend/cpu/gelu.rs):
  gelu_fwd_f32:     out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
  gelu_bwd_f32:     dinp = [0.5·(1 + th) + 0.5·x·(1 − th²)·√(2/π)·(1 + 3·0.044715·x²)]·dout
  residual_fwd_f32: out = a + b
  accumulate_f32:   dst += src
  fill_f32:         x = value
  bias_add_f32:     out[r, o] += bias[o] for an R×OC row-major out (Ops::matmul_fwd's bias,
                    added after the GEMM so the GEMM needs no epilogue support for f32 D)
tanhf is the accurate libdevice tanh (not the approximate tanh.approx.f32), so the f32 path
stays within DESIGN.md §3's 1e-5 of the CPU twin.

Variants: one grid-stride kernel each; all memory-bound.

Launch shape: ASA_ELEMENTWISE_BLOCK (256) threads, grid = min(⌈n/256⌉, cap), any grid correct
  (src/backend/cuda/kernels.rs `elementwise_grid`).

Tests: tests/cuda_ops.rs — gpu_elementwise_ops_match_cpu. Resource check: check-kernels.sh.
*/
#include "common.cuh"

#define ASA_GELU_S 0.7978845608028654f
#define ASA_GELU_K 0.044715f

#define ASA_GRID_STRIDE(i, n)                                                                   \
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);        \
         i += static_cast<size_t>(gridDim.x) * blockDim.x)

// asa-lth: hot gelu_fwd_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
gelu_fwd_f32(float* __restrict__ out, const float* __restrict__ inp, size_t n) {
    ASA_GRID_STRIDE(i, n) {
        const float x = inp[i];
        const float u = ASA_GELU_S * (x + ASA_GELU_K * x * x * x);
        out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
}

// asa-lth: hot gelu_bwd_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
gelu_bwd_f32(float* __restrict__ dinp, const float* __restrict__ inp,
             const float* __restrict__ dout, size_t n) {
    ASA_GRID_STRIDE(i, n) {
        const float x = inp[i];
        const float u = ASA_GELU_S * (x + ASA_GELU_K * x * x * x);
        const float th = tanhf(u);
        const float sech2 = 1.0f - th * th;
        const float grad = 0.5f * (1.0f + th) +
                           0.5f * x * sech2 * ASA_GELU_S * (1.0f + 3.0f * ASA_GELU_K * x * x);
        dinp[i] = grad * dout[i];
    }
}

// asa-lth: hot residual_fwd_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
residual_fwd_f32(float* __restrict__ out, const float* __restrict__ a,
                 const float* __restrict__ b, size_t n) {
    ASA_GRID_STRIDE(i, n) { out[i] = a[i] + b[i]; }
}

// `dst` and `src` may not alias (Rust's borrow rules on Ops::accumulate guarantee it).
// asa-lth: hot accumulate_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
accumulate_f32(float* __restrict__ dst, const float* __restrict__ src, size_t n) {
    ASA_GRID_STRIDE(i, n) { dst[i] += src[i]; }
}

// asa-lth: hot fill_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
fill_f32(float* __restrict__ x, size_t n, float value) {
    ASA_GRID_STRIDE(i, n) { x[i] = value; }
}

// asa-lth: hot bias_add_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
bias_add_f32(float* __restrict__ out, const float* __restrict__ bias, size_t rows, uint32_t OC) {
    const size_t n = rows * OC;
    ASA_GRID_STRIDE(i, n) { out[i] += bias[i % OC]; }
}
