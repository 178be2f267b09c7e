/*
cast.cu — operand preparation and gradient reductions around the cuBLASLt matmuls.

Computes (the pieces of src/backend/mod.rs `Ops::matmul_fwd` / `matmul_bwd` that are not the
GEMM itself; CPU twin src/backend/cpu/matmul.rs):
  cast_bf16_f32:        out = bf16_rne(x · mask) (mask nullable = 1): X, dout and W⊙M as the
                        bf16 operands of the GEMMs (DESIGN.md §3: bf16 operands, f32
                        accumulation). Round to nearest even, NaN stays NaN — the same
                        rounding as half::bf16::from_f32, so the host can reproduce it.
  mask_mul_acc_f32:     dst += src · mask (dweight += (doutᵀ·inp) ⊙ M from an f32 GEMM result).
  colsum_partial_f32:   partials[chunk, c] = Σ_{rows of chunk} x[r, c]   (dbias, pass 1)
  colsum_finish_acc_f32: dst[c] += Σ_chunk partials[chunk, c]  (pass 2; also finishes
                        layernorm.cu's dweight/dbias partials). Deterministic: the chunking
                        depends only on the shape, the sums run in a fixed order, no atomics.

Variants: one kernel each; all memory-bound.

Launch shape: cast_bf16_f32, mask_mul_acc_f32: ASA_ELEMENTWISE_BLOCK threads, grid-stride.
  colsum_partial_f32: block 256, grid (⌈C/256⌉, chunks), chunk = rows_per_chunk rows.
  colsum_finish_acc_f32: block 256, grid ⌈C/256⌉.

Tests: tests/cuda_ops.rs — gpu_matmul_is_exact_on_exactly_representable_inputs (the cast and
  the GEMM mapping bit for bit), gpu_matmul_matches_cpu (masked weights, masked dweight leaves
  pruned entries untouched, dbias at f32 tolerance). Resource check: check-kernels.sh.
*/
#include "common.cuh"

namespace asa_cast {

// f32 → bf16 bits, round to nearest even; NaN → quiet NaN with the sign kept.
__device__ __forceinline__ uint16_t bf16_rne(float f) {
    const uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return static_cast<uint16_t>((u >> 16) | 0x0040u);
    }
    const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(rounded >> 16);
}

}  // namespace asa_cast

// asa-lth: hot cast_bf16_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
cast_bf16_f32(uint16_t* __restrict__ out, const float* __restrict__ x,
              const float* __restrict__ mask, size_t n) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const float v = mask != nullptr ? x[i] * mask[i] : x[i];
        out[i] = asa_cast::bf16_rne(v);
    }
}

// asa-lth: hot mask_mul_acc_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
mask_mul_acc_f32(float* __restrict__ dst, const float* __restrict__ src,
                 const float* __restrict__ mask, size_t n) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        dst[i] += src[i] * mask[i];
    }
}

// asa-lth: hot colsum_partial_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
colsum_partial_f32(float* __restrict__ partials, const float* __restrict__ x, uint32_t R,
                   uint32_t C, uint32_t rows_per_chunk) {
    const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    const uint32_t chunk = blockIdx.y;
    if (c >= C) {
        return;
    }
    const uint32_t r0 = chunk * rows_per_chunk;
    const uint32_t r1 = min(R, r0 + rows_per_chunk);
    float acc = 0.0f;
    for (uint32_t r = r0; r < r1; ++r) {
        acc += x[static_cast<size_t>(r) * C + c];
    }
    partials[static_cast<size_t>(chunk) * C + c] = acc;
}

// asa-lth: hot colsum_finish_acc_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
colsum_finish_acc_f32(float* __restrict__ dst, const float* __restrict__ partials,
                      uint32_t chunks, uint32_t C) {
    const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) {
        return;
    }
    float acc = 0.0f;
    for (uint32_t k = 0; k < chunks; ++k) {
        acc += partials[static_cast<size_t>(k) * C + c];
    }
    dst[c] += acc;
}
