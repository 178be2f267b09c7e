/*
gemm_ref.cu — a plain tiled GEMM with cuBLAS's column-major semantics, bf16 operands, f32
accumulation and f32 output: the fallback for src/backend/cuda/ops.rs when cuBLASLt is not
installed or its heuristic finds no algorithm for a shape.

Computes: D (M×N, column-major, ld ldd) = op(A)·op(B) + beta·D, where A is stored column-major
with leading dimension lda (M×K, or K×M when transa) and B likewise (K×N, or N×K when transb);
beta = 0 never reads D. The arguments come from src/backend/cuda/blas.rs `plan` (the
row-major → column-major mapping, documented and host-tested there), so the fallback and the
cuBLASLt path compute the same products. bf16 values are raw u16 bits (cast.cu rounds them).

Variants:
  gemm_bf16_f32_ref — 16×16 output tile per block, 16-deep K slices through shared memory;
                      correctness first (no tensor cores): roughly 10× slower than cuBLASLt.

Launch shape: block ASA_GEMM_REF_BLOCK (256 = 16×16), grid (⌈M/16⌉, ⌈N/16⌉) (N/16 ≤ 65535).

Tests: tests/cuda_ops.rs — gpu_gemm_fallback_matches_cublaslt (the same products through both
  paths, exactly representable inputs so they must agree bit for bit). Resource check:
  scripts/check-kernels.sh (hot: no local memory).
*/
#include "common.cuh"

#define ASA_GEMM_REF_BLOCK 256
#define ASA_GEMM_REF_TILE 16

namespace asa_gemm_ref {

__device__ __forceinline__ float bf16_to_f32(uint16_t x) {
    return __uint_as_float(static_cast<uint32_t>(x) << 16);
}

}  // namespace asa_gemm_ref

// asa-lth: hot gemm_bf16_f32_ref
extern "C" __global__ void __launch_bounds__(ASA_GEMM_REF_BLOCK)
gemm_bf16_f32_ref(float* __restrict__ d, const uint16_t* __restrict__ a,
                  const uint16_t* __restrict__ b, int transa, int transb, uint32_t M,
                  uint32_t N, uint32_t K, uint32_t lda, uint32_t ldb, uint32_t ldd, float beta) {
    constexpr uint32_t TL = ASA_GEMM_REF_TILE;
    __shared__ float as[TL][TL + 1];  // as[p][i] = A(i0 + i, p0 + p)
    __shared__ float bs[TL][TL + 1];  // bs[j][p] = B(p0 + p, j0 + j)
    const uint32_t tx = threadIdx.x % TL, ty = threadIdx.x / TL;
    const uint32_t i0 = blockIdx.x * TL, j0 = blockIdx.y * TL;
    float acc = 0.0f;
    for (uint32_t p0 = 0; p0 < K; p0 += TL) {
        const uint32_t ai = i0 + tx, ap = p0 + ty;
        float av = 0.0f;
        if (ai < M && ap < K) {
            av = asa_gemm_ref::bf16_to_f32(transa ? a[ap + static_cast<size_t>(ai) * lda]
                                                  : a[ai + static_cast<size_t>(ap) * lda]);
        }
        as[ty][tx] = av;
        const uint32_t bp = p0 + tx, bj = j0 + ty;
        float bv = 0.0f;
        if (bp < K && bj < N) {
            bv = asa_gemm_ref::bf16_to_f32(transb ? b[bj + static_cast<size_t>(bp) * ldb]
                                                  : b[bp + static_cast<size_t>(bj) * ldb]);
        }
        bs[ty][tx] = bv;
        __syncthreads();
#pragma unroll
        for (uint32_t q = 0; q < TL; ++q) {
            acc += as[q][tx] * bs[ty][q];
        }
        __syncthreads();
    }
    const uint32_t i = i0 + tx, j = j0 + ty;
    if (i < M && j < N) {
        const size_t o = i + static_cast<size_t>(j) * ldd;
        d[o] = beta == 0.0f ? acc : acc + beta * d[o];
    }
}
