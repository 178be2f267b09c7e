/*
attention_ref.cu — reference (non-fused) causal masked attention, forward and backward, f32.

Computes: the contract of src/backend/mod.rs `Ops::attention_fwd` / `attention_bwd` (DESIGN.md
§3 "Attention mask"; CPU twin src/backend/cpu/attention.rs). q, k, v, out, dq, dk, dv are
(B, T, C) row-major with C = H·D, head h at columns h·D..(h+1)·D; lse is (B, H, T); the
optional mask is bit-packed (B, Hm, T, W) u32 words, W = ⌈T/32⌉, Hm = H when per_head else 1,
bit j%32 of word j/32 of row i allows key j. Effective mask: mask ∧ (j ≤ i) (causal only
without a mask). Scores S_ij = (q_i·k_j)·scale, scale = 1/√D.
  fwd: P = softmax_j(S_i) over allowed j, out_i = Σ_j P_ij v_j, lse_i = log Σ_j exp(S_ij);
       a row with no allowed key: out_i = 0, lse_i = +∞ (never NaN).
  bwd (accumulates, recomputing P_ij = exp(S_ij − lse_i), exactly 0 when masked or lse = +∞):
       Di = dO_i·O_i, dP_ij = dO_i·v_j, dS_ij = P_ij (dP_ij − Di),
       dq_i += scale Σ_j dS_ij k_j,  dk_j += scale Σ_i dS_ij q_i,  dv_j += Σ_i P_ij dO_i.
This is the correctness-first path the issue allows until the fused flash kernel (issue 9,
kernels/attention.cu) lands: no T×T matrix in global memory, but O(T²·D) work per (b, h) with
no tiling, and one query (or key) row per block.

Variants:
  attn_ref_fwd_f32   — block per (query i, b·h): the row's scores in shared memory (warp per
                       key: lanes over d, xor-shuffle sum), block max/sum, then threads over d
                       accumulate Σ_j P_ij v_j.
  attn_ref_bwd_q_f32 — block per (query i, b·h): Di, dS_i· in shared memory, dq_i; writes Di to
                       a (B, H, T) scratch for the next kernel.
  attn_ref_bwd_kv_f32 — block per (key j, b·h): P_·j and dS_·j over queries i ≥ j in shared
                       memory, then dk_j and dv_j. Every gradient row has exactly one writer, so
                       there are no atomics and the result is deterministic.

Launch shape: grid (T, B·H) (B·H ≤ 65535), block ASA_ATT_REF_BLOCK (128 = 4 warps); dynamic
  shared memory (floats): fwd T + D, bwd_q T + 2D, bwd_kv 2T + 2D (host checks ≤ 48 KiB, i.e.
  T up to ~6000 at D = 64; longer sequences need the fused kernel).

Tests: tests/cuda_ops.rs — gpu_attention_matches_cpu (no mask, shared and per-head masks with
  fully masked rows, T not a multiple of 32 or 64, fwd and bwd). Resource check:
  scripts/check-kernels.sh (hot: no local memory).
*/
#include "block_reduce.cuh"

#define ASA_ATT_REF_BLOCK 128

namespace asa_attention_ref {

constexpr uint32_t NWARPS = ASA_ATT_REF_BLOCK / 32;

// Whether query i may attend key j (j ≤ i is the caller's loop bound): the mask row's bit j.
__device__ __forceinline__ bool allowed(const uint32_t* __restrict__ mask_row, uint32_t j) {
    return mask_row == nullptr || ((mask_row[j >> 5] >> (j & 31u)) & 1u) != 0u;
}

// Σ_d a[d]·b[d] over D by one warp (lanes strided over d), result in every lane.
__device__ __forceinline__ float warp_dot(const float* __restrict__ a,
                                          const float* __restrict__ b, uint32_t D,
                                          uint32_t lane) {
    float acc = 0.0f;
    for (uint32_t d = lane; d < D; d += 32) {
        acc += a[d] * b[d];
    }
    return asa_reduce::warp_sum(acc);
}

// The mask row of query i for (b, h), or nullptr without a mask.
__device__ __forceinline__ const uint32_t* mask_row(const uint32_t* __restrict__ mask,
                                                    int per_head, uint32_t b, uint32_t h,
                                                    uint32_t H, uint32_t T, uint32_t i) {
    if (mask == nullptr) {
        return nullptr;
    }
    const uint32_t W = (T + 31u) / 32u;
    const uint32_t hm = per_head ? h : 0u;
    const uint32_t heads = per_head ? H : 1u;
    return mask + ((static_cast<size_t>(b) * heads + hm) * T + i) * W;
}

}  // namespace asa_attention_ref

// asa-lth: hot attn_ref_fwd_f32
extern "C" __global__ void __launch_bounds__(ASA_ATT_REF_BLOCK)
attn_ref_fwd_f32(float* __restrict__ out, float* __restrict__ lse, const float* __restrict__ q,
                 const float* __restrict__ k, const float* __restrict__ v,
                 const uint32_t* __restrict__ mask, int per_head, uint32_t B, uint32_t T,
                 uint32_t H, uint32_t D, float scale) {
    using namespace asa_attention_ref;
    extern __shared__ float asa_attn_ref_smem[];
    __shared__ float red[32];
    float* s = asa_attn_ref_smem;  // T scores, then probabilities
    float* sq = asa_attn_ref_smem + T;  // D: q_i
    const uint32_t i = blockIdx.x, bh = blockIdx.y;
    const uint32_t b = bh / H, h = bh % H;
    if (i >= T || b >= B) {
        return;
    }
    const uint32_t tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const size_t C = static_cast<size_t>(H) * D;
    const size_t head = static_cast<size_t>(h) * D;
    const float* __restrict__ qi = q + (static_cast<size_t>(b) * T + i) * C + head;
    for (uint32_t d = tid; d < D; d += ASA_ATT_REF_BLOCK) {
        sq[d] = qi[d];
    }
    __syncthreads();
    const uint32_t* mrow = mask_row(mask, per_head, b, h, H, T, i);
    for (uint32_t j = warp; j <= i; j += NWARPS) {
        float sj = -INFINITY;
        if (allowed(mrow, j)) {  // warp-uniform
            const float* kj = k + (static_cast<size_t>(b) * T + j) * C + head;
            sj = warp_dot(sq, kj, D, lane) * scale;
        }
        if (lane == 0) {
            s[j] = sj;
        }
    }
    __syncthreads();
    float m = -INFINITY;
    for (uint32_t j = tid; j <= i; j += ASA_ATT_REF_BLOCK) {
        m = fmaxf(m, s[j]);
    }
    m = asa_reduce::block_max(m, red);
    float* __restrict__ oi = out + (static_cast<size_t>(b) * T + i) * C + head;
    if (m == -INFINITY) {  // fully masked row (block-uniform)
        for (uint32_t d = tid; d < D; d += ASA_ATT_REF_BLOCK) {
            oi[d] = 0.0f;
        }
        if (tid == 0) {
            lse[static_cast<size_t>(bh) * T + i] = INFINITY;
        }
        return;
    }
    float l = 0.0f;
    for (uint32_t j = tid; j <= i; j += ASA_ATT_REF_BLOCK) {
        const float p = expf(s[j] - m);  // masked: expf(−∞) = 0
        s[j] = p;
        l += p;
    }
    l = asa_reduce::block_sum(l, red);  // its barriers also publish the s[j] = p writes
    const float inv = 1.0f / l;
    for (uint32_t d = tid; d < D; d += ASA_ATT_REF_BLOCK) {
        float acc = 0.0f;
        for (uint32_t j = 0; j <= i; ++j) {
            const float p = s[j];
            if (p != 0.0f) {
                acc += p * v[(static_cast<size_t>(b) * T + j) * C + head + d];
            }
        }
        oi[d] = acc * inv;
    }
    if (tid == 0) {
        lse[static_cast<size_t>(bh) * T + i] = m + logf(l);
    }
}

// asa-lth: hot attn_ref_bwd_q_f32
extern "C" __global__ void __launch_bounds__(ASA_ATT_REF_BLOCK)
attn_ref_bwd_q_f32(float* __restrict__ dq, float* __restrict__ di_out,
                   const float* __restrict__ dout, const float* __restrict__ q,
                   const float* __restrict__ k, const float* __restrict__ v,
                   const float* __restrict__ out, const float* __restrict__ lse,
                   const uint32_t* __restrict__ mask, int per_head, uint32_t B, uint32_t T,
                   uint32_t H, uint32_t D, float scale) {
    using namespace asa_attention_ref;
    extern __shared__ float asa_attn_ref_smem[];
    __shared__ float red[32];
    float* ds = asa_attn_ref_smem;  // T: dS_ij
    float* sq = asa_attn_ref_smem + T;  // D: q_i
    float* sdo = asa_attn_ref_smem + T + D;  // D: dO_i
    const uint32_t i = blockIdx.x, bh = blockIdx.y;
    const uint32_t b = bh / H, h = bh % H;
    if (i >= T || b >= B) {
        return;
    }
    const uint32_t tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const size_t C = static_cast<size_t>(H) * D;
    const size_t head = static_cast<size_t>(h) * D;
    const size_t row = (static_cast<size_t>(b) * T + i) * C + head;
    float di = 0.0f;
    for (uint32_t d = tid; d < D; d += ASA_ATT_REF_BLOCK) {
        const float g = dout[row + d];
        sq[d] = q[row + d];
        sdo[d] = g;
        di += g * out[row + d];
    }
    di = asa_reduce::block_sum(di, red);  // its barriers also publish sq and sdo
    const float L = lse[static_cast<size_t>(bh) * T + i];
    if (tid == 0) {
        di_out[static_cast<size_t>(bh) * T + i] = di;
    }
    if (L == INFINITY) {  // fully masked row: every P_ij is 0, nothing to add (block-uniform)
        return;
    }
    const uint32_t* mrow = mask_row(mask, per_head, b, h, H, T, i);
    for (uint32_t j = warp; j <= i; j += NWARPS) {
        float dsj = 0.0f;
        if (allowed(mrow, j)) {
            const size_t kr = (static_cast<size_t>(b) * T + j) * C + head;
            const float sij = warp_dot(sq, k + kr, D, lane) * scale;
            const float dp = warp_dot(sdo, v + kr, D, lane);
            const float p = expf(sij - L);
            dsj = p * (dp - di);
        }
        if (lane == 0) {
            ds[j] = dsj;
        }
    }
    __syncthreads();
    for (uint32_t d = tid; d < D; d += ASA_ATT_REF_BLOCK) {
        float acc = 0.0f;
        for (uint32_t j = 0; j <= i; ++j) {
            const float g = ds[j];
            if (g != 0.0f) {
                acc += g * k[(static_cast<size_t>(b) * T + j) * C + head + d];
            }
        }
        dq[row + d] += scale * acc;
    }
}

// asa-lth: hot attn_ref_bwd_kv_f32
extern "C" __global__ void __launch_bounds__(ASA_ATT_REF_BLOCK)
attn_ref_bwd_kv_f32(float* __restrict__ dk, float* __restrict__ dv,
                    const float* __restrict__ dout, const float* __restrict__ q,
                    const float* __restrict__ k, const float* __restrict__ v,
                    const float* __restrict__ lse, const float* __restrict__ di_in,
                    const uint32_t* __restrict__ mask, int per_head, uint32_t B, uint32_t T,
                    uint32_t H, uint32_t D, float scale) {
    using namespace asa_attention_ref;
    extern __shared__ float asa_attn_ref_smem[];
    const uint32_t j = blockIdx.x, bh = blockIdx.y;
    const uint32_t b = bh / H, h = bh % H;
    if (j >= T || b >= B) {
        return;
    }
    const uint32_t nq = T - j;        // queries i = j .. T-1 can see key j
    float* sp = asa_attn_ref_smem;  // nq: P_ij, index i − j
    float* sds = asa_attn_ref_smem + nq;  // nq: dS_ij
    float* sk = asa_attn_ref_smem + 2 * nq;  // D: k_j
    float* sv = asa_attn_ref_smem + 2 * nq + D;  // D: v_j
    const uint32_t tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const size_t C = static_cast<size_t>(H) * D;
    const size_t head = static_cast<size_t>(h) * D;
    const size_t krow = (static_cast<size_t>(b) * T + j) * C + head;
    for (uint32_t d = tid; d < D; d += ASA_ATT_REF_BLOCK) {
        sk[d] = k[krow + d];
        sv[d] = v[krow + d];
    }
    __syncthreads();
    for (uint32_t r = warp; r < nq; r += NWARPS) {
        const uint32_t i = j + r;
        const float L = lse[static_cast<size_t>(bh) * T + i];
        float p = 0.0f, dsv = 0.0f;
        if (L != INFINITY && allowed(mask_row(mask, per_head, b, h, H, T, i), j)) {
            const size_t qr = (static_cast<size_t>(b) * T + i) * C + head;
            const float sij = warp_dot(q + qr, sk, D, lane) * scale;
            const float dp = warp_dot(dout + qr, sv, D, lane);
            p = expf(sij - L);
            dsv = p * (dp - di_in[static_cast<size_t>(bh) * T + i]);
        }
        if (lane == 0) {
            sp[r] = p;
            sds[r] = dsv;
        }
    }
    __syncthreads();
    for (uint32_t d = tid; d < D; d += ASA_ATT_REF_BLOCK) {
        float acc_v = 0.0f, acc_k = 0.0f;
        for (uint32_t r = 0; r < nq; ++r) {
            const size_t qr = (static_cast<size_t>(b) * T + j + r) * C + head + d;
            const float p = sp[r];
            const float g = sds[r];
            if (p != 0.0f) {
                acc_v += p * dout[qr];
            }
            if (g != 0.0f) {
                acc_k += g * q[qr];
            }
        }
        dv[krow + d] += acc_v;
        dk[krow + d] += scale * acc_k;
    }
}
