/*
layernorm.cu — row-wise layernorm (eps 1e-5), forward and backward, as in GPT-2 / llm.c.

Computes: the contract of src/backend/mod.rs `Ops::layernorm_fwd` / `layernorm_bwd` (CPU twin
src/backend/cpu/layernorm.rs), f32 throughout. N rows of C channels, row-major.
  fwd: mean = Σx/C, var = Σ(x−mean)²/C (two passes), rstd = 1/sqrt(var + 1e-5),
       out = (x − mean)·rstd·weight + bias; mean and rstd saved per row.
  bwd (accumulates): norm = (x − mean)·rstd, dnorm = weight·dout,
       dinp += (dnorm − mean(dnorm) − norm·mean(dnorm·norm))·rstd,
       dweight += Σ_rows norm·dout, dbias += Σ_rows dout.

Variants:
  layernorm_fwd_f32            — one warp per row; the row is read three times (sum, squared
                                 deviations, output), which stays in L1/L2 for C ≤ a few k.
  layernorm_bwd_dx_f32         — one warp per row for dinp (two passes over the row).
  layernorm_bwd_dwdb_partial_f32 — the weight/bias gradients are column sums over rows: each
                                 block sums a fixed chunk of rows per column into a partial row
                                 (no atomics), and colsum_finish_acc_f32 (cast.cu) adds the
                                 partials in chunk order into dweight/dbias. Deterministic for
                                 a given N (the chunking depends only on N).

Launch shape: fwd, bwd_dx: block ASA_LN_BLOCK (256) = 8 rows per block, grid ⌈N/8⌉.
  bwd_dwdb_partial: block ASA_ELEMENTWISE_BLOCK, grid (⌈C/256⌉, chunks); partials is
  2 × chunks × C f32 (dweight partials, then dbias partials); chunk = rows_per_chunk rows.

Tests: tests/cuda_ops.rs — gpu_layernorm_matches_cpu (fwd and bwd against the CPU twin, random
  nonzero starting gradients). Resource check: scripts/check-kernels.sh (hot, no local memory).
*/
#include "block_reduce.cuh"

#define ASA_LN_BLOCK 256
#define ASA_LN_EPS 1e-5f

// asa-lth: hot layernorm_fwd_f32
extern "C" __global__ void __launch_bounds__(ASA_LN_BLOCK)
layernorm_fwd_f32(float* __restrict__ out, float* __restrict__ mean, float* __restrict__ rstd,
                  const float* __restrict__ inp, const float* __restrict__ weight,
                  const float* __restrict__ bias, uint32_t N, uint32_t C) {
    const uint32_t lane = threadIdx.x & 31u;
    const uint32_t row = blockIdx.x * (ASA_LN_BLOCK / 32) + (threadIdx.x >> 5);
    if (row >= N) {
        return;  // whole warps exit together; no block-level barrier follows
    }
    const float* __restrict__ x = inp + static_cast<size_t>(row) * C;
    float s = 0.0f;
    for (uint32_t i = lane; i < C; i += 32) {
        s += x[i];
    }
    const float m = asa_reduce::warp_sum(s) / static_cast<float>(C);
    float v = 0.0f;
    for (uint32_t i = lane; i < C; i += 32) {
        const float d = x[i] - m;
        v += d * d;
    }
    const float var = asa_reduce::warp_sum(v) / static_cast<float>(C);
    const float r = 1.0f / sqrtf(var + ASA_LN_EPS);
    float* __restrict__ o = out + static_cast<size_t>(row) * C;
    for (uint32_t i = lane; i < C; i += 32) {
        o[i] = (x[i] - m) * r * weight[i] + bias[i];
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

// asa-lth: hot layernorm_bwd_dx_f32
extern "C" __global__ void __launch_bounds__(ASA_LN_BLOCK)
layernorm_bwd_dx_f32(float* __restrict__ dinp, const float* __restrict__ dout,
                     const float* __restrict__ inp, const float* __restrict__ weight,
                     const float* __restrict__ mean, const float* __restrict__ rstd, uint32_t N,
                     uint32_t C) {
    const uint32_t lane = threadIdx.x & 31u;
    const uint32_t row = blockIdx.x * (ASA_LN_BLOCK / 32) + (threadIdx.x >> 5);
    if (row >= N) {
        return;
    }
    const size_t off = static_cast<size_t>(row) * C;
    const float* __restrict__ x = inp + off;
    const float* __restrict__ dy = dout + off;
    const float m = mean[row], rs = rstd[row];
    float a = 0.0f, b = 0.0f;
    for (uint32_t i = lane; i < C; i += 32) {
        const float norm = (x[i] - m) * rs;
        const float dnorm = weight[i] * dy[i];
        a += dnorm;
        b += dnorm * norm;
    }
    const float dnorm_mean = asa_reduce::warp_sum(a) / static_cast<float>(C);
    const float dnorm_norm_mean = asa_reduce::warp_sum(b) / static_cast<float>(C);
    float* __restrict__ dx = dinp + off;
    for (uint32_t i = lane; i < C; i += 32) {
        const float norm = (x[i] - m) * rs;
        const float dnorm = weight[i] * dy[i];
        dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rs;
    }
}

// asa-lth: hot layernorm_bwd_dwdb_partial_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
layernorm_bwd_dwdb_partial_f32(float* __restrict__ partials, const float* __restrict__ dout,
                               const float* __restrict__ inp, const float* __restrict__ mean,
                               const float* __restrict__ rstd, uint32_t N, uint32_t C,
                               uint32_t rows_per_chunk) {
    const uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    const uint32_t chunk = blockIdx.y;
    if (c >= C) {
        return;
    }
    const uint32_t r0 = chunk * rows_per_chunk;
    const uint32_t r1 = min(N, r0 + rows_per_chunk);
    float dw = 0.0f, db = 0.0f;
    for (uint32_t r = r0; r < r1; ++r) {
        const size_t i = static_cast<size_t>(r) * C + c;
        const float dy = dout[i];
        const float norm = (inp[i] - mean[r]) * rstd[r];
        dw += norm * dy;
        db += dy;
    }
    partials[static_cast<size_t>(chunk) * C + c] = dw;
    partials[(static_cast<size_t>(gridDim.y) + chunk) * C + c] = db;
}
