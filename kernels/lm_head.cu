/*
lm_head.cu — the tied LM head fused with cross-entropy: the logits x·Wᵀ are formed a tile at a
time in registers and never stored; forward (loss and log-sum-exp per row) and backward (dx and
dweight).

Computes: the contract of src/backend/mod.rs `Ops::lm_head_xent` (CPU twin
src/backend/cpu/lm_head.rs). x N×C and W V×C row-major f32, targets N u32 (ASA_HEAD_IGNORE =
0xFFFFFFFF = crate::backend::IGNORE_INDEX: not scored, loss 0, no gradient); z = x·Wᵀ.
  lm_head_fwd_f32:    lse[r] = log Σ_v e^{z[r,v]} (online max and sum), losses[r] = lse[r] −
                      z[r, t_r] (0 for ignored rows, whose lse is still written).
  lm_head_bwd_dx_f32: dx = G·W, G[r,v] = dloss·(e^{z[r,v] − lse[r]} − [v = t_r]), G = 0 on
                      ignored rows; lse is the forward's.
  lm_head_bwd_dw_f32: dW = Gᵀ·x (all of dW written; zeros when N = 0).
Targets are validated on the host (≥ V and not ignored is an error before launch); the kernels
still never index with an out-of-range target (fwd writes a NaN loss, bwd skips the one-hot).
Every output element is written once, by one block, from a fixed summation order: no atomics,
bitwise reproducible for a launch shape. The backward recomputes each logit tile from x and W —
the FlashAttention trade of FLOPs for the N×V logits: the forward costs 2NVC FLOPs and each
backward kernel 2NVC·ceil(C/128) + 2NVC.

Tiling (f32 FMA on the SIMT cores; 256 threads seen as 16×16, ty = tid/16, tx = tid%16):
  a logit tile is 64 "A" rows × 64 "B" rows (A = x, B = W, or swapped for dW); each thread holds
  4×4 of it, at A rows ty + 16i and B rows tx + 16j (strided, so its shared-memory reads are
  broadcasts or 16 consecutive words), summed over C in chunks of 16 staged through shared memory
  transposed and padded by one word (conflict-free stores and reads).
  fwd:    grid ceil(N/64); each block walks all of V keeping per thread an online (max, Σexp)
          per row, merged across the row's 16 threads (one half-warp) at the end.
  bwd_dx: grid (ceil(N/64), ceil(C/128)); per vocab tile, G's tile goes to shared memory and the
          block's 64×128 slice of dx (4×8 per thread) accumulates G·W[tile, slice].
  bwd_dw: grid (ceil(V/64), ceil(C/128)); the same with vocabulary and rows swapped: the tile is
          formed as W·xᵀ and the 64×128 slice of dW accumulates Gᵀ·x[tile, slice].
expf/logf are the accurate versions (DESIGN.md §3: f32 paths within 1e-5).

Launch shape: ASA_HEAD_THREADS (256) threads, grids above (each dimension < 2^31 and the y
dimension < 65536: C < 2^23), static shared memory ≤ 33 KB.

Tests: tests/lm_head.rs — emulated_cuda_head_matches_cpu runs these kernels' own source in the
  SIMT emulation (kernels/simt_emu.h) against the f64 reference and the CPU twin, with tails in
  N, C and V and ignored rows; tests/cuda_ops.rs gpu_lm_head_xent_matches_cpu on a GPU.
  Resource check: scripts/check-kernels.sh (hot, no local memory).
*/
#include "common.cuh"
#include "online_softmax.cuh"

#define ASA_HEAD_THREADS 256
#define ASA_HEAD_IGNORE 0xFFFFFFFFu

namespace asa_head {

constexpr uint32_t TILE = 64;  // rows of A and of B in a logit tile
constexpr uint32_t KC = 16;    // depth of one shared-memory stage
constexpr uint32_t SLICE = 128;  // output columns (of dx or dW) per backward block
constexpr unsigned FULL = 0xffffffffu;

// The backward kernels' 64×128 output slice: 4×8 per thread, rows ty + 16i, columns
// tx + 16j.
using Slice = float[4][8];

__device__ __forceinline__ void zero(Slice& out) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            out[i][j] = 0.0f;
        }
    }
}

// D[r0 + ty + 16i, c0 + tx + 16j] = out[i][j] for rows below nr and columns below C (D's row
// stride is C).
__device__ __forceinline__ void store(float* __restrict__ D, const Slice& out, uint32_t r0,
                                      uint32_t nr, uint32_t c0, uint32_t C) {
    const uint32_t ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t r = r0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const uint32_t c = c0 + tx + 16 * j;
            if (r < nr && c < C) {
                D[static_cast<size_t>(r) * C + c] = out[i][j];
            }
        }
    }
}

// acc[i][j] = Σ_{k<C} A[a0 + ty + 16i, k]·B[b0 + tx + 16j, k]; rows of A at or past na (of B:
// nb) read as 0. Every thread of the block must call it (it has barriers).
__device__ __forceinline__ void tile_dot(float (&acc)[4][4], float (*as)[TILE + 1],
                                         float (*bs)[TILE + 1], const float* __restrict__ A,
                                         uint32_t a0, uint32_t na, const float* __restrict__ B,
                                         uint32_t b0, uint32_t nb, uint32_t C) {
    const uint32_t tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            acc[i][j] = 0.0f;
        }
    }
    for (uint32_t k0 = 0; k0 < C; k0 += KC) {
        // 16 consecutive threads read 16 consecutive floats of one row (64 bytes).
#pragma unroll
        for (uint32_t e = tid; e < TILE * KC; e += ASA_HEAD_THREADS) {
            const uint32_t r = e / KC, k = e % KC, gk = k0 + k;
            const uint32_t ga = a0 + r, gb = b0 + r;
            as[k][r] = ga < na && gk < C ? A[static_cast<size_t>(ga) * C + gk] : 0.0f;
            bs[k][r] = gb < nb && gk < C ? B[static_cast<size_t>(gb) * C + gk] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (uint32_t k = 0; k < KC; ++k) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                a[i] = as[k][ty + 16 * i];
                b[i] = bs[k][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
                }
            }
        }
        __syncthreads();
    }
}

// out[i][j] += Σ_{l<TILE} gs[ty + 16i][l]·S[s0 + l, c0 + tx + 16j], rows of S at or past ns and
// columns at or past C read as 0. gs must be complete before the call: its first barrier (after
// staging S) publishes the caller's writes. Every thread of the block must call it.
__device__ __forceinline__ void tile_acc(Slice& out, const float (*gs)[TILE + 1],
                                         float (*cs)[SLICE], const float* __restrict__ S,
                                         uint32_t s0, uint32_t ns, uint32_t c0, uint32_t C) {
    const uint32_t tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    for (uint32_t l0 = 0; l0 < TILE; l0 += KC) {
        // A warp reads 32 consecutive floats of one row.
#pragma unroll
        for (uint32_t e = tid; e < KC * SLICE; e += ASA_HEAD_THREADS) {
            const uint32_t l = e / SLICE, c = e % SLICE, gs_row = s0 + l0 + l, gc = c0 + c;
            cs[l][c] = gs_row < ns && gc < C ? S[static_cast<size_t>(gs_row) * C + gc] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (uint32_t l = 0; l < KC; ++l) {
            float g[4], w[8];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                g[i] = gs[ty + 16 * i][l0 + l];
            }
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                w[j] = cs[l][tx + 16 * j];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    out[i][j] = fmaf(g[i], w[j], out[i][j]);
                }
            }
        }
        __syncthreads();
    }
}

// G's entry for logit z of a row with log-sum-exp `z_lse` and target `t`, at vocabulary index
// `v` (the caller passes a valid row and v < V).
__device__ __forceinline__ float grad(float z, float z_lse, uint32_t t, uint32_t v, float dloss) {
    if (t == ASA_HEAD_IGNORE) {
        return 0.0f;
    }
    const float p = expf(z - z_lse);
    return dloss * (v == t ? p - 1.0f : p);
}

}  // namespace asa_head

// asa-lth: hot lm_head_fwd_f32
extern "C" __global__ void __launch_bounds__(ASA_HEAD_THREADS)
lm_head_fwd_f32(float* __restrict__ losses, float* __restrict__ lse, const float* __restrict__ x,
                const float* __restrict__ w, const uint32_t* __restrict__ targets, uint32_t N,
                uint32_t C, uint32_t V) {
    using namespace asa_head;
    __shared__ float as[KC][TILE + 1];
    __shared__ float bs[KC][TILE + 1];
    __shared__ float zt[TILE];  // each row's target logit, written by the thread that forms it
    const uint32_t tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    const uint32_t r0 = blockIdx.x * TILE;
    uint32_t t[4];
    float m[4], s[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t r = r0 + ty + 16 * i;
        t[i] = r < N ? targets[r] : ASA_HEAD_IGNORE;
        m[i] = -INFINITY;
        s[i] = 0.0f;
    }
    for (uint32_t v0 = 0; v0 < V; v0 += TILE) {
        float z[4][4];
        tile_dot(z, as, bs, x, r0, N, w, v0, V, C);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint32_t v = v0 + tx + 16 * j;
            if (v >= V) {
                continue;
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float zz = z[i][j];
                if (zz > m[i]) {
                    s[i] = s[i] * expf(m[i] - zz) + 1.0f;  // m = −∞ at first: expf(−∞) = 0
                    m[i] = zz;
                } else if (zz != -INFINITY) {
                    s[i] += expf(zz - m[i]);
                }
                if (v == t[i]) {
                    zt[ty + 16 * i] = zz;
                }
            }
        }
    }
    // A row's 16 threads are one half-warp: xor offsets below 16 stay inside it.
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float m2 = __shfl_xor_sync(FULL, m[i], o);
            const float s2 = __shfl_xor_sync(FULL, s[i], o);
            asa_softmax::merge(m[i], s[i], m2, s2);
        }
    }
    __syncthreads();  // publishes zt (shuffles do not order shared memory)
    if (tx == 0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t r = r0 + ty + 16 * i;
            if (r < N) {
                const float z = m[i] + logf(s[i]);
                lse[r] = z;
                losses[r] = t[i] == ASA_HEAD_IGNORE ? 0.0f
                                                    : (t[i] < V ? z - zt[ty + 16 * i] : NAN);
            }
        }
    }
}

// asa-lth: hot lm_head_bwd_dx_f32
extern "C" __global__ void __launch_bounds__(ASA_HEAD_THREADS)
lm_head_bwd_dx_f32(float* __restrict__ dx, const float* __restrict__ x,
                   const float* __restrict__ w, const float* __restrict__ lse,
                   const uint32_t* __restrict__ targets, float dloss, uint32_t N, uint32_t C,
                   uint32_t V) {
    using namespace asa_head;
    __shared__ float as[KC][TILE + 1];
    __shared__ float bs[KC][TILE + 1];
    __shared__ float gs[TILE][TILE + 1];
    __shared__ float cs[KC][SLICE];
    const uint32_t tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    const uint32_t r0 = blockIdx.x * TILE, c0 = blockIdx.y * SLICE;
    uint32_t t[4];
    float z_lse[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t r = r0 + ty + 16 * i;
        t[i] = r < N ? targets[r] : ASA_HEAD_IGNORE;  // rows past N: G = 0
        z_lse[i] = r < N ? lse[r] : 0.0f;
    }
    Slice out;
    zero(out);
    for (uint32_t v0 = 0; v0 < V; v0 += TILE) {
        float z[4][4];
        tile_dot(z, as, bs, x, r0, N, w, v0, V, C);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const uint32_t v = v0 + tx + 16 * j;
                gs[ty + 16 * i][tx + 16 * j] =
                    v < V ? grad(z[i][j], z_lse[i], t[i], v, dloss) : 0.0f;
            }
        }
        tile_acc(out, gs, cs, w, v0, V, c0, C);
    }
    store(dx, out, r0, N, c0, C);
}

// asa-lth: hot lm_head_bwd_dw_f32
extern "C" __global__ void __launch_bounds__(ASA_HEAD_THREADS)
lm_head_bwd_dw_f32(float* __restrict__ dw, const float* __restrict__ x,
                   const float* __restrict__ w, const float* __restrict__ lse,
                   const uint32_t* __restrict__ targets, float dloss, uint32_t N, uint32_t C,
                   uint32_t V) {
    using namespace asa_head;
    __shared__ float as[KC][TILE + 1];
    __shared__ float bs[KC][TILE + 1];
    __shared__ float gs[TILE][TILE + 1];  // Gᵀ: [vocabulary][row]
    __shared__ float cs[KC][SLICE];
    const uint32_t tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    const uint32_t v0 = blockIdx.x * TILE, c0 = blockIdx.y * SLICE;
    Slice out;
    zero(out);
    for (uint32_t r0 = 0; r0 < N; r0 += TILE) {
        uint32_t t[4];
        float z_lse[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint32_t r = r0 + tx + 16 * j;
            t[j] = r < N ? targets[r] : ASA_HEAD_IGNORE;
            z_lse[j] = r < N ? lse[r] : 0.0f;
        }
        float z[4][4];  // z[i][j]: vocabulary v0 + ty + 16i, row r0 + tx + 16j
        tile_dot(z, as, bs, w, v0, V, x, r0, N, C);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t v = v0 + ty + 16 * i;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                gs[ty + 16 * i][tx + 16 * j] =
                    v < V ? grad(z[i][j], z_lse[j], t[j], v, dloss) : 0.0f;
            }
        }
        tile_acc(out, gs, cs, x, r0, N, c0, C);
    }
    store(dw, out, v0, V, c0, C);
}
