/*
gemm24.cu — 2:4 sparse GEMM on sparse tensor cores (mma.sp), Y = X·Wᵀ (+ bias).

Computes: the 2:4 GEMM contract (DESIGN.md §3 "2:4 format"; CPU twin src/sparse/gemm24.rs):
  X is M×K row-major bf16 (or f16), W is N×K (out × in) 2:4-sparse in the canonical compressed
  form (values N×K/2 as u32 pairs, metadata reordered by Sparse24::mma_sp_metadata /
  asa_mma_sp_meta_word), Y is M×N row-major f32, bias (nullable) N f32. f32 accumulation.
  Shapes: M ≥ 1 (tails masked), N % 16 == 0, K % 32 == 0 (checked on the host).

Variants:
  gemm24_bf16_ref, gemm24_f16_ref — the reference tensor-core kernel: one warp per 16×8 tile of
      Yᵀ (16 output features × 8 tokens), operands straight from global memory, two k32 steps
      per metadata register (selector 0 then 1). Correctness first: it fixes the fragment and
      metadata layouts (gemm24.cuh) that the tuned kernels will share; it is NOT the fast path
      (no shared memory, no cp.async pipeline, no ldmatrix — the tuned sm_80 and sm_90a
      wgmma.sp kernels of issue 8 build on it).

Launch shape: grid (⌈M/8⌉, N/16), block 32 (one warp).

Tests: tests/gemm24.rs — the layout helpers (host-compiled) drive the PTX-ISA warp emulator
  and match a plain matmul; GPU vs CPU twin (skipped without a GPU). SASS check: HMMA.SP must
  appear (scripts/check-kernels.sh). Status: compiles, layout-emulated, NOT run on a GPU yet.
*/
#include "gemm24.cuh"

namespace asa_gemm24 {

// One mma.sp m16n8k32 with f32 accumulators, ordered metadata, constant selector SEL.
template <bool BF16, int SEL>
__device__ __forceinline__ void mma_sp(float (&d)[4], const uint32_t (&a)[4],
                                       const uint32_t (&b)[4], uint32_t e) {
    if constexpr (BF16) {
        asm volatile(
            "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, %13;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]),
              "r"(b[3]), "r"(e), "n"(SEL));
    } else {
        asm volatile(
            "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, %13;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]),
              "r"(b[3]), "r"(e), "n"(SEL));
    }
}

// Fragments of k32 step `step` for this lane: A from the compressed values (one u32 per
// register), B from X (zero for tokens past M).
__device__ __forceinline__ void load_step(uint32_t (&a)[4], uint32_t (&b)[4],
                                          const uint32_t* __restrict__ wv,
                                          const uint16_t* __restrict__ x, int M, int K,
                                          int n0, int m0, int step, uint32_t lane) {
    const int words_per_row = K / 4;  // K/2 compressed 16-bit values = K/4 u32
#pragma unroll
    for (uint32_t j = 0; j < 4; ++j) {
        uint32_t row, ccol;
        asa_mma_sp_a_pos(lane, j, 0, &row, &ccol);
        a[j] = wv[(n0 + static_cast<int>(row)) * words_per_row + step * 8 +
                  static_cast<int>(ccol) / 2];
        uint32_t kk, nn;
        asa_mma_sp_b_pos(lane, j, 0, &kk, &nn);
        const int m = m0 + static_cast<int>(nn);
        b[j] = m < M ? *reinterpret_cast<const uint32_t*>(
                           &x[static_cast<size_t>(m) * K + step * 32 + static_cast<int>(kk)])
                     : 0u;
    }
}

template <bool BF16>
__device__ __forceinline__ void gemm24_ref(const uint16_t* __restrict__ x,
                                           const uint32_t* __restrict__ wv,
                                           const uint32_t* __restrict__ meta,
                                           const float* __restrict__ bias, float* __restrict__ y,
                                           int M, int N, int K) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const uint32_t lane = threadIdx.x & 31;
    const int m0 = blockIdx.x * 8;
    const int tile = blockIdx.y;
    const int n0 = tile * 16;
    const int steps = K / 32;
    const int pairs = (steps + 1) / 2;
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    uint32_t a[4], b[4];
    for (int pair = 0; pair < pairs; ++pair) {
        const uint32_t e = meta[(static_cast<size_t>(tile) * pairs + pair) * 32 + lane];
        load_step(a, b, wv, x, M, K, n0, m0, 2 * pair, lane);
        mma_sp<BF16, 0>(d, a, b, e);
        if (2 * pair + 1 < steps) {
            load_step(a, b, wv, x, M, K, n0, m0, 2 * pair + 1, lane);
            mma_sp<BF16, 1>(d, a, b, e);
        }
    }
#pragma unroll
    for (uint32_t i = 0; i < 4; ++i) {
        uint32_t r, c;
        asa_mma_c_pos(lane, i, &r, &c);
        const int n = n0 + static_cast<int>(r);
        const int m = m0 + static_cast<int>(c);
        if (m < M) {
            y[static_cast<size_t>(m) * N + n] = d[i] + (bias != nullptr ? bias[n] : 0.f);
        }
    }
#endif
}

}  // namespace asa_gemm24

// asa-lth: hot gemm24_bf16_ref
// asa-lth: sass-expect gemm24_bf16_ref HMMA.SP
extern "C" __global__ void __launch_bounds__(32)
gemm24_bf16_ref(const uint16_t* __restrict__ x, const uint32_t* __restrict__ wv,
                const uint32_t* __restrict__ meta, const float* __restrict__ bias,
                float* __restrict__ y, int M, int N, int K) {
    asa_gemm24::gemm24_ref<true>(x, wv, meta, bias, y, M, N, K);
}

// asa-lth: hot gemm24_f16_ref
// asa-lth: sass-expect gemm24_f16_ref HMMA.SP
extern "C" __global__ void __launch_bounds__(32)
gemm24_f16_ref(const uint16_t* __restrict__ x, const uint32_t* __restrict__ wv,
               const uint32_t* __restrict__ meta, const float* __restrict__ bias,
               float* __restrict__ y, int M, int N, int K) {
    asa_gemm24::gemm24_ref<false>(x, wv, meta, bias, y, M, N, K);
}

// The layout probe (PTX-FACTS.md, last section): one warp executes one mma.sp m16n8k32 on
// per-lane registers supplied by the host, so tests/gemm24.rs can compare every output
// register with the PTX-ISA warp emulator (src/sparse/mma_emu.rs) — this checks the [figure]
// items (B layout, metadata register) that no host-side test can. a, b: 32 lanes × 4 u32;
// e: 32 u32; c, d: 32 lanes × 4 f32; selector 0 or 1; bf16 != 0 selects bf16, else f16.
// asa-lth: sass-expect mma_sp_probe HMMA.SP
extern "C" __global__ void __launch_bounds__(32)
mma_sp_probe(const uint32_t* __restrict__ a, const uint32_t* __restrict__ b,
             const uint32_t* __restrict__ e, const float* __restrict__ c, float* __restrict__ d,
             int selector, int bf16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const uint32_t lane = threadIdx.x & 31;
    uint32_t ra[4], rb[4];
    float acc[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        ra[j] = a[lane * 4 + j];
        rb[j] = b[lane * 4 + j];
        acc[j] = c[lane * 4 + j];
    }
    const uint32_t re = e[lane];
    if (bf16 != 0) {
        if (selector == 0) {
            asa_gemm24::mma_sp<true, 0>(acc, ra, rb, re);
        } else {
            asa_gemm24::mma_sp<true, 1>(acc, ra, rb, re);
        }
    } else {
        if (selector == 0) {
            asa_gemm24::mma_sp<false, 0>(acc, ra, rb, re);
        } else {
            asa_gemm24::mma_sp<false, 1>(acc, ra, rb, re);
        }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        d[lane * 4 + j] = acc[j];
    }
#endif
}
