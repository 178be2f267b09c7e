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
  appear (scripts/check-kernels.sh). Status: compiles, layout-emulated;
  the tuned kernels' own source also runs in the SIMT emulation (tests/gemm24_tuned.rs
  emulated_tuned_kernels_match_the_reference, kernels/simt_emu.h); NOT run on a GPU yet.
*/
#include "async_copy.cuh"
#include "gemm24.cuh"

namespace asa_gemm24 {

// One mma.sp m16n8k32 with f32 accumulators, ordered metadata, constant selector SEL.
template <bool BF16, int SEL>
__device__ __forceinline__ void mma_sp(float (&d)[4], const uint32_t (&a)[4],
                                       const uint32_t (&b)[4], uint32_t e) {
#if defined(ASA_SIMT_EMU)
    asa_emu::mma_sp_m16n8k32(d, a, b, e, SEL, BF16);
#else
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
#endif
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
#if ASA_SM80_CODE
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

// ---------------------------------------------------------------------------------------------
// The tuned kernels (gemm24_{bf16,f16}_{large,small}): a CTA computes a BM (features) × BN
// (tokens) tile of Yᵀ; each stage of a STAGES-deep cp.async pipeline brings BK = 64 dense
// columns (W: 32 compressed, X: 64, and the one metadata word per lane of that k64 pair) into
// swizzled shared memory; warps read fragments with ldmatrix.x4 and issue mma.sp m16n8k32, the
// metadata register serving step 0 (selector 0) and step 1 (selector 1) of the pair. Epilogue:
// accumulators staged through shared memory (f32 [BN][BM + 4], conflict-free writes), then
// coalesced float4 rows of Y with bias and GELU fused. Split-K (gridDim.z > 1): split z covers
// a contiguous range of pairs and writes its raw partial sums to ws[z] (M × N); the reduce
// kernel then adds the splits in order (deterministic) and applies the epilogue.
// ---------------------------------------------------------------------------------------------

// cp.async and ldmatrix wrappers: kernels/async_copy.cuh.
using asa_async::cp_async16;
using asa_async::cp_async_commit;
using asa_async::cp_async_wait;
using asa_async::ldsm_x4;
using asa_async::smem_addr;


template <int BM_, int BN_, int WARPS_M, int WARPS_N, int STAGES>
struct Tc {
    static constexpr int BM = BM_, BN = BN_;
    static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
    static constexpr int WM = BM_ / WARPS_M;
    static constexpr int WN = BN_ / WARPS_N;
    static constexpr int MT = WM / 16;  // m16 tiles per warp
    static constexpr int NT = WN / 8;   // n8 tiles per warp
    static constexpr int W_BYTES = BM_ * ASA_G24_W_ROW_BYTES;
    static constexpr int X_BYTES = BN_ * ASA_G24_X_ROW_BYTES;
    static constexpr int META_BYTES = (BM_ / 16) * 128;
    static constexpr int STAGE_BYTES = W_BYTES + X_BYTES + META_BYTES;
    static constexpr int EPI_STRIDE = BM_ + 4;  // floats per token row of the staging tile
    static_assert(WM % 16 == 0 && WN % 8 == 0, "warp tile must be whole mma tiles");
    static_assert(STAGES >= 2, "a pipeline needs at least two stages");
};

// Issue the cp.async copies of pair `kt` into stage buffer `st` (every thread, then the caller
// commits). Out-of-range chunks (rows ≥ N, tokens ≥ M, columns ≥ K) are zero-filled from a
// valid base address.
template <class C>
__device__ __forceinline__ void load_stage(unsigned char* st, const uint16_t* __restrict__ x,
                                           const uint32_t* __restrict__ wv,
                                           const uint32_t* __restrict__ meta, int M, int N,
                                           int K, int m0, int n0, int kt, int pairs) {
    const int tid = threadIdx.x;
    const uint32_t w_s = smem_addr(st);
    const uint32_t x_s = w_s + C::W_BYTES;
    const uint32_t e_s = x_s + C::X_BYTES;
    const unsigned char* wbytes = reinterpret_cast<const unsigned char*>(wv);
    // W: BM rows × 4 chunks; X: BN tokens × 8 chunks; metadata: BM/16 tiles × 8 chunks (the
    // sources and zero-fill predicates are gemm24.cuh's, which the host emulation also uses).
    for (int i = tid; i < C::BM * 4; i += C::THREADS) {
        const int64_t src = asa_g24_w_src(n0, i, kt, N, K);
        cp_async16(w_s + asa_g24_w_smem(i >> 2, i & 3), src >= 0 ? wbytes + src : wbytes,
                   src >= 0 ? 16u : 0u);
    }
    for (int i = tid; i < C::BN * 8; i += C::THREADS) {
        const int64_t src = asa_g24_x_src(m0, i, kt, M, K);
        cp_async16(x_s + asa_g24_x_smem(i >> 3, i & 7), src >= 0 ? x + src : x,
                   src >= 0 ? 16u : 0u);
    }
    for (int i = tid; i < (C::BM / 16) * 8; i += C::THREADS) {
        const int64_t src = asa_g24_meta_src(n0, i, kt, N, pairs);
        cp_async16(e_s + 16 * i, src >= 0 ? meta + src : meta, src >= 0 ? 16u : 0u);
    }
}

template <bool BF16, int BM, int BN, int WARPS_M, int WARPS_N, int STAGES>
__device__ __forceinline__ void gemm24_tc(const uint16_t* __restrict__ x,
                                          const uint32_t* __restrict__ wv,
                                          const uint32_t* __restrict__ meta,
                                          const float* __restrict__ bias, float* __restrict__ y,
                                          float* __restrict__ ws, int M, int N, int K,
                                          int gelu) {
#if ASA_SM80_CODE
    using C = Tc<BM, BN, WARPS_M, WARPS_N, STAGES>;
    ASA_DYNAMIC_SMEM(smem);
    const uint32_t lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;
    const int n0 = blockIdx.x * BM;  // features
    const int m0 = blockIdx.y * BN;  // tokens
    const int steps = K / 32;
    const int pairs = (steps + 1) / 2;
    uint32_t first, end;
    asa_g24_split_range(pairs, gridDim.z, blockIdx.z, &first, &end);
    const int kt0 = static_cast<int>(first), nk = static_cast<int>(end - first);

    float acc[C::MT][C::NT][4];
#pragma unroll
    for (int i = 0; i < C::MT; ++i)
#pragma unroll
        for (int j = 0; j < C::NT; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    // Prologue: STAGES - 1 pairs in flight (empty groups keep the wait arithmetic uniform).
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < nk) {
            load_stage<C>(smem + s * C::STAGE_BYTES, x, wv, meta, M, N, K, m0, n0, kt0 + s,
                          pairs);
        }
        cp_async_commit();
    }

    for (int it = 0; it < nk; ++it) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // stage `it` is visible to all; stage it - 1 is free to refill
        {
            const int nx = it + STAGES - 1;
            if (nx < nk) {
                load_stage<C>(smem + (nx % STAGES) * C::STAGE_BYTES, x, wv, meta, M, N, K, m0,
                              n0, kt0 + nx, pairs);
            }
            cp_async_commit();
        }
        unsigned char* st = smem + (it % STAGES) * C::STAGE_BYTES;
        const uint32_t w_s = smem_addr(st);
        const uint32_t x_s = w_s + C::W_BYTES;
        const uint32_t* e_s = reinterpret_cast<const uint32_t*>(st + C::W_BYTES + C::X_BYTES);
        const int kt = kt0 + it;
        uint32_t e[C::MT];
#pragma unroll
        for (int i = 0; i < C::MT; ++i) e[i] = e_s[(wm * C::MT + i) * 32 + lane];
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            if (s == 1 && 2 * kt + 1 >= steps) break;  // K/32 odd: the pair's second step is past K
            uint32_t a[C::MT][4], b[C::NT][4];
#pragma unroll
            for (int i = 0; i < C::MT; ++i) {
                uint32_t r, c;
                asa_g24_ldsm_a(lane, s, &r, &c);
                ldsm_x4(a[i], w_s + asa_g24_w_smem((wm * C::MT + i) * 16 + r, c));
            }
#pragma unroll
            for (int j = 0; j < C::NT; ++j) {
                uint32_t r, c;
                asa_g24_ldsm_b(lane, s, &r, &c);
                ldsm_x4(b[j], x_s + asa_g24_x_smem((wn * C::NT + j) * 8 + r, c));
            }
#pragma unroll
            for (int i = 0; i < C::MT; ++i) {
                // Tiles past N hold zero-filled values and metadata (an invalid nibble): skip.
                if (n0 + (wm * C::MT + i) * 16 >= N) continue;
#pragma unroll
                for (int j = 0; j < C::NT; ++j) {
                    if (s == 0) {
                        mma_sp<BF16, 0>(acc[i][j], a[i], b[j], e[i]);
                    } else {
                        mma_sp<BF16, 1>(acc[i][j], a[i], b[j], e[i]);
                    }
                }
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();  // the pipeline's shared memory becomes the epilogue's staging tile

    float* ct = reinterpret_cast<float*>(smem);
#pragma unroll
    for (int i = 0; i < C::MT; ++i)
#pragma unroll
        for (int j = 0; j < C::NT; ++j)
#pragma unroll
            for (uint32_t q = 0; q < 4; ++q) {
                uint32_t r, c;
                asa_mma_c_pos(lane, q, &r, &c);
                const int feat = (wm * C::MT + i) * 16 + static_cast<int>(r);
                const int tok = (wn * C::NT + j) * 8 + static_cast<int>(c);
                ct[tok * C::EPI_STRIDE + feat] = acc[i][j][q];
            }
    __syncthreads();
    const bool split = gridDim.z > 1;
    float* out = split ? ws + static_cast<size_t>(blockIdx.z) * M * N : y;
    for (int idx = threadIdx.x; idx < BN * (BM / 4); idx += C::THREADS) {
        const int tok = idx / (BM / 4), f4 = idx % (BM / 4);
        const int m = m0 + tok, n = n0 + 4 * f4;
        if (m >= M || n >= N) continue;
        float4 v = *reinterpret_cast<const float4*>(&ct[tok * C::EPI_STRIDE + 4 * f4]);
        if (!split) {
            if (bias != nullptr) {
                const float4 bb = *reinterpret_cast<const float4*>(&bias[n]);
                v.x += bb.x, v.y += bb.y, v.z += bb.z, v.w += bb.w;
            }
            if (gelu != 0) {
                v.x = asa_g24_gelu(v.x), v.y = asa_g24_gelu(v.y), v.z = asa_g24_gelu(v.z),
                v.w = asa_g24_gelu(v.w);
            }
        }
        *reinterpret_cast<float4*>(&out[static_cast<size_t>(m) * N + n]) = v;
    }
#endif
}

}  // namespace asa_gemm24


#define ASA_G24_TC_KERNEL(NAME, BF16, P)                                                        \
    extern "C" __global__ void __launch_bounds__(32 * ASA_G24_##P##_WARPS_M *                   \
                                                 ASA_G24_##P##_WARPS_N)                         \
        NAME(const uint16_t* __restrict__ x, const uint32_t* __restrict__ wv,                    \
             const uint32_t* __restrict__ meta, const float* __restrict__ bias,                  \
             float* __restrict__ y, float* __restrict__ ws, int M, int N, int K, int gelu) {     \
        asa_gemm24::gemm24_tc<BF16, ASA_G24_##P##_BM, ASA_G24_##P##_BN, ASA_G24_##P##_WARPS_M,  \
                              ASA_G24_##P##_WARPS_N, ASA_G24_##P##_STAGES>(                     \
            x, wv, meta, bias, y, ws, M, N, K, gelu);                                           \
    }

// Launch shape: grid (⌈N/BM⌉, ⌈M/BN⌉, splits), block 32·WARPS_M·WARPS_N, dynamic shared memory
// asa_g24_smem_bytes(BM, BN, STAGES). x: M×K bf16/f16 bits; wv, meta: DeviceSparse24; bias
// nullable; y: M×N f32; ws: splits × M × N f32 when splits > 1 (else unused, may be null).
// asa-lth: hot gemm24_bf16_large
// asa-lth: sass-expect gemm24_bf16_large HMMA.SP
// asa-lth: sass-expect gemm24_bf16_large LDSM
// asa-lth: sass-expect gemm24_bf16_large LDGSTS
ASA_G24_TC_KERNEL(gemm24_bf16_large, true, L)
// asa-lth: hot gemm24_f16_large
// asa-lth: sass-expect gemm24_f16_large HMMA.SP
ASA_G24_TC_KERNEL(gemm24_f16_large, false, L)
// asa-lth: hot gemm24_bf16_small
// asa-lth: sass-expect gemm24_bf16_small HMMA.SP
// asa-lth: sass-expect gemm24_bf16_small LDSM
// asa-lth: sass-expect gemm24_bf16_small LDGSTS
ASA_G24_TC_KERNEL(gemm24_bf16_small, true, S)
// asa-lth: hot gemm24_f16_small
// asa-lth: sass-expect gemm24_f16_small HMMA.SP
ASA_G24_TC_KERNEL(gemm24_f16_small, false, S)

// Split-K reduction: y[m][n] = epilogue(Σ_z ws[z][m][n]) with the splits added in order z = 0,
// 1, … (deterministic). Grid-stride over M·N/4 float4s (N % 4 == 0).
// asa-lth: hot gemm24_splitk_reduce
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
gemm24_splitk_reduce(const float* __restrict__ ws, int splits, const float* __restrict__ bias,
                     float* __restrict__ y, int M, int N, int gelu) {
    const size_t total = static_cast<size_t>(M) * N / 4;
    const size_t plane = static_cast<size_t>(M) * N;
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const float4* p = reinterpret_cast<const float4*>(ws) + i;
        float4 v = *p;
        for (int z = 1; z < splits; ++z) {
            p += plane / 4;
            const float4 u = *p;
            v.x += u.x, v.y += u.y, v.z += u.z, v.w += u.w;
        }
        const int n = static_cast<int>((4 * i) % static_cast<size_t>(N));
        if (bias != nullptr) {
            const float4 bb = *reinterpret_cast<const float4*>(&bias[n]);
            v.x += bb.x, v.y += bb.y, v.z += bb.z, v.w += bb.w;
        }
        if (gelu != 0) {
            v.x = asa_g24_gelu(v.x), v.y = asa_g24_gelu(v.y),
            v.z = asa_g24_gelu(v.z), v.w = asa_g24_gelu(v.w);
        }
        reinterpret_cast<float4*>(y)[i] = v;
    }
}

// The ldmatrix layout probe: one warp loads 8×8 b16 matrices from a 512-byte shared image of
// `src` (u16 × 256), lane l giving the address of byte offset row_off[l] (16-byte aligned,
// < 512), with mode 0 = .x4, 1 = .x2, 2 = .x2.trans, 3 = .x4.trans (the forms the gemm24 and
// attention kernels use); out: 32 lanes × 4 u32 destination registers (registers an .x2 does
// not write are 0). Compared with the PTX-ISA ldmatrix emulator (src/sparse/mma_emu.rs) by
// tests/gemm24_tuned.rs.
// asa-lth: sass-expect ldmatrix_probe LDSM
extern "C" __global__ void __launch_bounds__(32)
ldmatrix_probe(const uint16_t* __restrict__ src, const uint32_t* __restrict__ row_off,
               uint32_t* __restrict__ out, int mode) {
#if ASA_SM80_CODE
    __shared__ __align__(16) uint16_t img[256];
    const uint32_t lane = threadIdx.x & 31;
    for (uint32_t i = lane; i < 256; i += 32) img[i] = src[i];
    __syncwarp();
    uint32_t r[4] = {0u, 0u, 0u, 0u};
    uint32_t x[2];
    const uint32_t addr =
        asa_async::smem_addr(reinterpret_cast<unsigned char*>(img) + (row_off[lane] & 0x1F0u));
    switch (mode) {
        case 1:
            asa_async::ldsm_x2(x, addr);
            r[0] = x[0];
            r[1] = x[1];
            break;
        case 2:
            asa_async::ldsm_x2_trans(x, addr);
            r[0] = x[0];
            r[1] = x[1];
            break;
        case 3:
            asa_async::ldsm_x4_trans(r, addr);
            break;
        default:
            asa_async::ldsm_x4(r, addr);
            break;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) out[lane * 4 + j] = r[j];
#endif
}


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
#if ASA_SM80_CODE
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
