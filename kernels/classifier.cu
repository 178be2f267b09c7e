/*
classifier.cu — fused softmax + cross-entropy over the vocabulary, with an ignore index,
forward (loss and log-sum-exp per row) and backward (dlogits from the saved lse).

Computes: the contract of src/backend/mod.rs `Ops::xent_fwd` / `xent_bwd` (CPU twin
src/backend/cpu/xent.rs). logits N×V row-major f32, targets N u32 (ASA_IGNORE_INDEX =
0xFFFFFFFF = crate::backend::IGNORE_INDEX: not scored).
  fwd: lse[r] = log Σ_v exp(logits[r, v]) (stable: max-shifted), loss[r] = lse[r] −
       logits[r, target[r]], loss 0 for ignored rows (their lse is still written).
  bwd: dlogits[r, v] = dloss·exp(logits[r, v] − lse[r]) − dloss·[v == target[r]];
       0 for ignored rows (overwrites: the logits feed nothing else).
Targets are validated on the host (≥ V and not ignored is an error before launch); the kernels
still never index with an out-of-range target (fwd writes a NaN loss, bwd skips the −dloss).

Variants:
  xent_fwd_f32 — one block per row, one pass: each thread keeps an online (max, Σexp) pair over
                 its strided elements, merged across the block; V up to 2^32 (50k typical).
  xent_bwd_f32 — one block per row, one pass writing dlogits.
expf/logf are the accurate libdevice versions (DESIGN.md §3: f32 paths within 1e-5).

Launch shape: grid N (< 2^31), block ASA_XENT_BLOCK (256).

Tests: tests/cuda_ops.rs — gpu_xent_matches_cpu (V = 50257-like and small V, ignored rows).
  Resource check: scripts/check-kernels.sh (hot, no local memory).
*/
#include "block_reduce.cuh"
#include "online_softmax.cuh"

#define ASA_XENT_BLOCK 256
#define ASA_IGNORE_INDEX 0xFFFFFFFFu

// asa-lth: hot xent_fwd_f32
extern "C" __global__ void __launch_bounds__(ASA_XENT_BLOCK)
xent_fwd_f32(float* __restrict__ losses, float* __restrict__ lse,
             const float* __restrict__ logits, const uint32_t* __restrict__ targets,
             uint32_t N, uint32_t V) {
    __shared__ float sm_m[32];
    __shared__ float sm_s[32];
    const uint32_t r = blockIdx.x;
    if (r >= N) {
        return;
    }
    const float* __restrict__ row = logits + static_cast<size_t>(r) * V;
    float m = -INFINITY, s = 0.0f;
    for (uint32_t i = threadIdx.x; i < V; i += ASA_XENT_BLOCK) {
        const float x = row[i];
        if (x > m) {
            s = s * expf(m - x) + 1.0f;  // m = −∞ on the first element: expf(−∞) = 0
            m = x;
        } else if (x != -INFINITY) {
            s += expf(x - m);  // a −∞ logit adds 0 (and −∞ − −∞ would be NaN)
        }
    }
    // Warp merge, then warp 0 merges the warps in order.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(asa_reduce::FULL, m, o);
        const float s2 = __shfl_xor_sync(asa_reduce::FULL, s, o);
        asa_softmax::merge(m, s, m2, s2);
    }
    const uint32_t lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sm_m[warp] = m;
        sm_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        constexpr uint32_t NW = ASA_XENT_BLOCK / 32;
        m = lane < NW ? sm_m[lane] : -INFINITY;
        s = lane < NW ? sm_s[lane] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(asa_reduce::FULL, m, o);
            const float s2 = __shfl_xor_sync(asa_reduce::FULL, s, o);
            asa_softmax::merge(m, s, m2, s2);
        }
        if (lane == 0) {
            const float z = m + logf(s);
            lse[r] = z;
            const uint32_t t = targets[r];
            losses[r] = t == ASA_IGNORE_INDEX ? 0.0f : (t < V ? z - row[t] : NAN);
        }
    }
}

// asa-lth: hot xent_bwd_f32
extern "C" __global__ void __launch_bounds__(ASA_XENT_BLOCK)
xent_bwd_f32(float* __restrict__ dlogits, const float* __restrict__ logits,
             const float* __restrict__ lse, const uint32_t* __restrict__ targets, float dloss,
             uint32_t N, uint32_t V) {
    const uint32_t r = blockIdx.x;
    if (r >= N) {
        return;
    }
    const size_t off = static_cast<size_t>(r) * V;
    float* __restrict__ d = dlogits + off;
    const uint32_t t = targets[r];
    if (t == ASA_IGNORE_INDEX) {
        for (uint32_t i = threadIdx.x; i < V; i += ASA_XENT_BLOCK) {
            d[i] = 0.0f;
        }
        return;
    }
    const float* __restrict__ row = logits + off;
    const float z = lse[r];
    for (uint32_t i = threadIdx.x; i < V; i += ASA_XENT_BLOCK) {
        const float p = dloss * expf(row[i] - z);
        d[i] = i == t ? p - dloss : p;
    }
}
