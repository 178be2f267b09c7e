/*
encoder.cu — token + position embedding, forward and backward (GPT-2's "encoder").

Computes: the contract of src/backend/mod.rs `Ops::embedding_fwd` / `embedding_bwd` (CPU twin
src/backend/cpu/embedding.rs). Shapes: tokens B×T (u32), wte V×C, wpe (≥T)×C, out/dout B×T×C,
all row-major f32; N = B·T rows.
  fwd: out[n, c] = wte[tokens[n], c] + wpe[n % T, c]
  bwd: dwpe[t, c] += Σ_b dout[b, t, c];  dwte[v, c] += Σ_{n: tokens[n] = v} dout[n, c]
Token ids are validated on the host before launch (the device buffer's host-side statistics,
src/backend/cuda/ops.rs); the kernels still skip ids ≥ V (fwd writes NaN there) so a bad id can
never address memory outside wte.

Variants:
  encoder_fwd_f32     — grid-stride over N·C elements; memory-bound, nothing to tile.
  encoder_bwd_wpe_f32 — one thread per (t, c), summing the batch in order b = 0..B-1: the same
                        order as the CPU twin, no atomics.
  encoder_bwd_wte_f32 — deterministic scatter-add without atomics (the CPU twin adds rows in
                        position order, so we do too): block n handles token v = tokens[n] only
                        if n is v's first occurrence; it then walks positions n..N-1 in chunks
                        of blockDim, compacts the matches of each chunk in order (ballot +
                        per-warp prefix) into shared memory, and each thread adds those rows
                        into its channels of dwte[v] in position order. Bitwise equal to the
                        CPU's sequential loop; cost O(N²/blockDim) token reads for the
                        first-occurrence scans, negligible beside the matmuls for N ≤ 64k.

Launch shape: fwd and bwd_wpe: ASA_ELEMENTWISE_BLOCK threads, grid-stride (any grid).
  bwd_wte: grid N (one block per position, N < 2^31), block ASA_EMBED_BLOCK (256).

Tests: tests/cuda_ops.rs — gpu_embedding_matches_cpu (fwd + bwd with repeated tokens, random
  nonzero starting gradients); skipped without a GPU. Resource check: scripts/check-kernels.sh.
*/
#include "block_reduce.cuh"

#define ASA_EMBED_BLOCK 256

// asa-lth: hot encoder_fwd_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
encoder_fwd_f32(float* __restrict__ out, const uint32_t* __restrict__ tokens,
                const float* __restrict__ wte, const float* __restrict__ wpe, size_t n_rows,
                uint32_t T, uint32_t C, uint32_t V) {
    const size_t total = n_rows * C;
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += stride) {
        const size_t row = i / C;
        const size_t c = i - row * C;
        const uint32_t tok = tokens[row];
        const size_t pos = row % T;
        out[i] = tok < V ? wte[static_cast<size_t>(tok) * C + c] + wpe[pos * C + c] : NAN;
    }
}

// asa-lth: hot encoder_bwd_wpe_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
encoder_bwd_wpe_f32(float* __restrict__ dwpe, const float* __restrict__ dout, uint32_t B,
                    uint32_t T, uint32_t C) {
    const size_t total = static_cast<size_t>(T) * C;
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += stride) {
        float acc = dwpe[i];
        for (uint32_t b = 0; b < B; ++b) {
            acc += dout[static_cast<size_t>(b) * total + i];
        }
        dwpe[i] = acc;
    }
}

// asa-lth: hot encoder_bwd_wte_f32
extern "C" __global__ void __launch_bounds__(ASA_EMBED_BLOCK)
encoder_bwd_wte_f32(float* __restrict__ dwte, const float* __restrict__ dout,
                    const uint32_t* __restrict__ tokens, uint32_t N, uint32_t C, uint32_t V) {
    __shared__ uint32_t list[ASA_EMBED_BLOCK];
    __shared__ uint32_t warp_off[ASA_EMBED_BLOCK / 32];
    __shared__ uint32_t chunk_total;
    const uint32_t n = blockIdx.x;
    const uint32_t tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const uint32_t tok = tokens[n];  // the same for every thread: the early exits are uniform
    if (tok >= V) {
        return;
    }
    // Only the first occurrence of `tok` does the work.
    for (uint32_t base = 0; base < n; base += ASA_EMBED_BLOCK) {
        const uint32_t idx = base + tid;
        const int seen = idx < n && tokens[idx] == tok;
        if (__syncthreads_or(seen)) {
            return;
        }
    }
    float* __restrict__ dst = dwte + static_cast<size_t>(tok) * C;
    for (uint32_t base = n; base < N; base += ASA_EMBED_BLOCK) {
        const uint32_t idx = base + tid;
        const bool hit = idx < N && tokens[idx] == tok;
        const unsigned ballot = __ballot_sync(asa_reduce::FULL, hit);
        if (lane == 0) {
            warp_off[warp] = __popc(ballot);
        }
        __syncthreads();
        if (tid == 0) {
            uint32_t run = 0;
            for (uint32_t w = 0; w < ASA_EMBED_BLOCK / 32; ++w) {
                const uint32_t cnt = warp_off[w];
                warp_off[w] = run;
                run += cnt;
            }
            chunk_total = run;
        }
        __syncthreads();
        if (hit) {
            list[warp_off[warp] + __popc(ballot & ((1u << lane) - 1u))] = idx;
        }
        __syncthreads();
        const uint32_t cnt = chunk_total;
        if (cnt > 0) {
            for (uint32_t c = tid; c < C; c += ASA_EMBED_BLOCK) {
                float acc = dst[c];
                for (uint32_t q = 0; q < cnt; ++q) {
                    acc += dout[static_cast<size_t>(list[q]) * C + c];
                }
                dst[c] = acc;
            }
        }
        __syncthreads();  // `list`, `warp_off` and `chunk_total` are rewritten next chunk
    }
}
