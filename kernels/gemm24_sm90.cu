/*
gemm24_sm90.cu — 2:4 sparse GEMM on Hopper with wgmma.mma_async.sp, Y = X·Wᵀ (+ bias, GELU).

Computes: the 2:4 GEMM contract (DESIGN.md §3 "2:4 format"; CPU twin src/sparse/gemm24.rs), as
gemm24.cu's tuned kernels do, with the same inputs (DeviceSparse24: compressed values as u32
pairs, metadata in the mma.sp reorder, which is also wgmma.sp's per-warp layout — PTX-FACTS.md).

Variant: gemm24_bf16_wgmma — one warpgroup per CTA, 64 features × 128 tokens, wgmma.sp
  m64n128k32 from shared-memory descriptors (canonical K-major no-swizzle core matrices,
  gemm24.cuh asa_g24h_*), a 4-stage cp.async pipeline, the metadata register serving both k32
  steps of a pair (sp-sel 0 then 1), bias + GELU epilogue through shared memory.
  EXPERIMENTAL, behind TileConfig::Hopper (never chosen automatically): no TMA, no
  producer/consumer warp specialisation, one warpgroup and wgmma.wait_group 0 every stage —
  a correct base for those steps (plan in src/backend/cuda/gemm24.rs). Needs N % 64 == 0
  (a wgmma cannot skip the zero-filled rows past N, whose metadata would be invalid).
  sm_90a only: on other arches the kernel body compiles empty and the launcher refuses.

Launch shape: grid (N/64, ⌈M/128⌉), block 128, dynamic shared memory ASA_G24H_SMEM.

Tests: tests/gemm24_tuned.rs (descriptor layout and D fragment against the wgmma emulator in
  src/sparse/mma_emu.rs; GPU vs CPU twin, skipped without an sm_90 GPU). SASS check: HGMMA.SP
  on sm_90a. Status: compiles, layout-emulated, NOT run on a GPU.
*/
// asa-lth: arch=sm_90a
#include "async_copy.cuh"
#include "gemm24.cuh"

namespace asa_gemm24_sm90 {

#if ASA_SM90A
// cp.async wrappers: kernels/async_copy.cuh.
using asa_async::cp_async16;
using asa_async::smem_addr;

// Keep the compiler from moving accumulator reads or writes across the asynchronous wgmma:
// the registers are only "+f" operands of the wgmma asm, not of the wait.
__device__ __forceinline__ void fence_accumulators(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D(64×128, f32) += A(64×32 sparse, smem) · B(32×128, smem) with metadata e, selector SEL.
template <int SEL>
__device__ __forceinline__ void wgmma_sp(float (&d)[64], uint64_t da, uint64_t db, uint32_t e) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %68, 0;\n"
        "wgmma.mma_async.sp.sync.aligned.m64n128k32.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, %66, %67, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]),
              "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
              "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
              "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
              "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
              "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),
              "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]),
              "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
              "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(e), "n"(SEL), "r"(1));
}
#endif

__device__ __forceinline__ void load_stage(unsigned char* st, const uint16_t* __restrict__ x,
                                           const uint32_t* __restrict__ wv,
                                           const uint32_t* __restrict__ meta, int M, int N,
                                           int K, int m0, int n0, int kt, int pairs) {
#if ASA_SM90A
    const int tid = threadIdx.x;
    const uint32_t w_s = smem_addr(st);
    const uint32_t x_s = w_s + ASA_G24H_W_BYTES;
    const uint32_t e_s = x_s + ASA_G24H_X_BYTES;
    const unsigned char* wb = reinterpret_cast<const unsigned char*>(wv);
    // Same sources and zero-fill predicates as the Ampere kernels (gemm24.cuh); only the
    // shared-memory placement differs (core matrices).
    for (int i = tid; i < ASA_G24H_BM * 4; i += ASA_G24H_THREADS) {
        const int64_t src = asa_g24_w_src(n0, i, kt, N, K);
        cp_async16(w_s + asa_g24h_smem(i >> 2, i & 3, ASA_G24H_W_SBO),
                   src >= 0 ? wb + src : wb, src >= 0 ? 16u : 0u);
    }
    for (int i = tid; i < ASA_G24H_BN * 8; i += ASA_G24H_THREADS) {
        const int64_t src = asa_g24_x_src(m0, i, kt, M, K);
        cp_async16(x_s + asa_g24h_smem(i >> 3, i & 7, ASA_G24H_X_SBO),
                   src >= 0 ? x + src : x, src >= 0 ? 16u : 0u);
    }
    for (int i = tid; i < (ASA_G24H_BM / 16) * 8; i += ASA_G24H_THREADS) {
        const int64_t src = asa_g24_meta_src(n0, i, kt, N, pairs);  // N % 64 == 0: never -1
        cp_async16(e_s + 16 * i, src >= 0 ? meta + src : meta, src >= 0 ? 16u : 0u);
    }
#endif
}

}  // namespace asa_gemm24_sm90

// asa-lth: hot gemm24_bf16_wgmma
// asa-lth: sass-expect gemm24_bf16_wgmma HGMMA.SP sm_90a
extern "C" __global__ void __launch_bounds__(ASA_G24H_THREADS)
gemm24_bf16_wgmma(const uint16_t* __restrict__ x, const uint32_t* __restrict__ wv,
                  const uint32_t* __restrict__ meta, const float* __restrict__ bias,
                  float* __restrict__ y, int M, int N, int K, int gelu) {
#if ASA_SM90A
    using namespace asa_gemm24_sm90;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const int n0 = blockIdx.x * ASA_G24H_BM, m0 = blockIdx.y * ASA_G24H_BN;
    const int steps = K / 32, pairs = (steps + 1) / 2;
    float d[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) d[i] = 0.f;
#pragma unroll
    for (int s = 0; s < ASA_G24H_STAGES - 1; ++s) {
        if (s < pairs) load_stage(smem + s * ASA_G24H_STAGE_BYTES, x, wv, meta, M, N, K, m0, n0, s, pairs);
        asa_async::cp_async_commit();
    }
    for (int kt = 0; kt < pairs; ++kt) {
        asa_async::cp_async_wait<ASA_G24H_STAGES - 2>();
        // Make the cp.async writes of every thread visible to the async proxy (wgmma reads
        // shared memory through it), then to each other.
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
        const int nx = kt + ASA_G24H_STAGES - 1;
        if (nx < pairs) load_stage(smem + (nx % ASA_G24H_STAGES) * ASA_G24H_STAGE_BYTES, x, wv, meta, M, N, K, m0, n0, nx, pairs);
        asa_async::cp_async_commit();
        unsigned char* st = smem + (kt % ASA_G24H_STAGES) * ASA_G24H_STAGE_BYTES;
        const uint32_t w_s = smem_addr(st), x_s = w_s + ASA_G24H_W_BYTES;
        const uint32_t e = reinterpret_cast<const uint32_t*>(st + ASA_G24H_W_BYTES + ASA_G24H_X_BYTES)[warp * 32 + lane];
        uint64_t da, db;
        fence_accumulators(d);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
        asa_g24h_step_desc(w_s, x_s, 0, &da, &db);
        wgmma_sp<0>(d, da, db, e);
        if (2 * kt + 1 < steps) {
            asa_g24h_step_desc(w_s, x_s, 1, &da, &db);
            wgmma_sp<1>(d, da, db, e);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        fence_accumulators(d);
    }
    asa_async::cp_async_wait<0>();
    __syncthreads();
    constexpr int STRIDE = ASA_G24H_BM + 4;
    float* ct = reinterpret_cast<float*>(smem);
#pragma unroll
    for (uint32_t i = 0; i < 64; ++i) {
        uint32_t r, c;
        asa_g24h_d_pos(tid, i, &r, &c);
        ct[c * STRIDE + r] = d[i];
    }
    __syncthreads();
    for (int idx = tid; idx < ASA_G24H_BN * (ASA_G24H_BM / 4); idx += ASA_G24H_THREADS) {
        const int tok = idx / (ASA_G24H_BM / 4), f4 = idx % (ASA_G24H_BM / 4);
        const int m = m0 + tok, n = n0 + 4 * f4;
        if (m >= M) continue;
        float4 v = *reinterpret_cast<const float4*>(&ct[tok * STRIDE + 4 * f4]);
        if (bias != nullptr) {
            const float4 bb = *reinterpret_cast<const float4*>(&bias[n]);
            v.x += bb.x, v.y += bb.y, v.z += bb.z, v.w += bb.w;
        }
        if (gelu != 0) {
            v.x = asa_g24_gelu(v.x), v.y = asa_g24_gelu(v.y),
            v.z = asa_g24_gelu(v.z), v.w = asa_g24_gelu(v.w);
        }
        *reinterpret_cast<float4*>(&y[static_cast<size_t>(m) * N + n]) = v;
    }
#endif
}

// The wgmma.sp layout probe (PTX-FACTS.md, last section): one warpgroup copies `img` (bytes
// bytes, a multiple of 16, at most 48 KiB) into shared memory, builds the descriptors
// asa_g24h_desc(base + a_off, LBO, a_sbo) and (base + b_off, LBO, b_sbo), and executes ONE
// wgmma.sp m64n128k32 with per-thread metadata e[128] and the given selector on zeroed
// accumulators; d: 128 threads × 64 f32. tests/gemm24_tuned.rs compares it with the wgmma
// emulator (src/sparse/mma_emu.rs) on one-hot inputs, which separates the metadata layout from
// the operand layout.
// asa-lth: sass-expect wgmma_sp_probe HGMMA.SP sm_90a
extern "C" __global__ void __launch_bounds__(ASA_G24H_THREADS)
wgmma_sp_probe(const uint4* __restrict__ img, int bytes, uint32_t a_off, uint32_t a_sbo,
               uint32_t b_off, uint32_t b_sbo, const uint32_t* __restrict__ e, int selector,
               float* __restrict__ d) {
#if ASA_SM90A
    using namespace asa_gemm24_sm90;
    extern __shared__ __align__(128) unsigned char smem[];
    uint4* s4 = reinterpret_cast<uint4*>(smem);
    for (int i = threadIdx.x; i < bytes / 16; i += ASA_G24H_THREADS) s4[i] = img[i];
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const uint32_t base = smem_addr(smem);
    const uint64_t da = asa_g24h_desc(base + a_off, ASA_G24H_LBO, a_sbo);
    const uint64_t db = asa_g24h_desc(base + b_off, ASA_G24H_LBO, b_sbo);
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.f;
    const uint32_t meta = e[threadIdx.x];
    fence_accumulators(acc);
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    if (selector == 0) {
        wgmma_sp<0>(acc, da, db, meta);
    } else {
        wgmma_sp<1>(acc, da, db, meta);
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    fence_accumulators(acc);
#pragma unroll
    for (int i = 0; i < 64; ++i) d[threadIdx.x * 64 + i] = acc[i];
#endif
}
