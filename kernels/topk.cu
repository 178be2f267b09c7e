/*
topk.cu — exact magnitude top-k pruning over a list of tensors, and 2:4 selection.

Computes: the contract of DESIGN.md §3 "Top-k pruning" (stated in full in src/sparse/topk.rs):
prune exactly n = ceil(f * remaining) of the currently unpruned weights of each selection group
(all tensors together = global mode, or each tensor alone = per-tensor mode): the smallest |w|,
ties to the lower global index (tensor order, then flat index). Key and digit math: topk.cuh.
The host (src/backend/cuda/topk.rs) drives a radix select over the magnitude keys:
  pass p = 0 .. P-1 (P = 3 for f32, 2 for bf16/f16): topk_hist_* histograms digit p of every
    unpruned weight whose key matches the group's prefix so far (2048 bins per group); the host
    reads the histograms back and picks the digit (the same Rust code the CPU path uses), so the
    threshold key T and the number `need` of ties (key == T) to prune are known after pass P-1.
    Pass 0 also validates (mask not 0/1, or NaN/Inf in an unpruned weight: the lowest global
    index is kept by atomicMin) and counts unpruned weights per tensor.
  tie count (only for a group with 0 < need < ties): topk_tie_count_* counts key == T per tile;
    the host scans the counts in global order and finds the tile holding the need-th tie.
  mask update: topk_mask_update_* clears the mask of every unpruned weight with key < T, and of
    ties in tiles before the cut tile (every tie when the group prunes all of them: no cut
    tile); inside the cut tile a block-wide ordered scan (ballot + per-warp totals) ranks the
    ties by index and prunes the first `cut_rank`. So the result is exact and, by contract,
    equal to the CPU's (src/sparse/topk.rs) bit for bit.
The tensors are never concatenated: a u64 table (layout below) holds each tensor's weight and
mask pointers, length, global offset, group and first tile; a tile is ASA_TOPK_TILE consecutive
elements of one tensor, and tiles are numbered in global order.

Variants (one template each, instantiated per weight width):
  *_f32 — f32 weights, 31-bit keys, 3 histogram passes (11, 11, 9 bits).
  *_16  — bf16 or f16 weights as raw u16 bits, 15-bit keys, 2 passes (11, 4 bits); the two
          types differ only in the first non-finite key, which the host passes.
  two_four_f32 / two_four_16 — 2:4 selection: per aligned group of 4 along K (K % 4 == 0, so a
          group is 4 consecutive elements), keep the 2 largest |w|, ties to the lower index;
          writes a 0/1 f32 mask. One 16-byte (f32) or 8-byte (16-bit) load per group.

Launch shape: ASA_TOPK_BLOCK (256) threads. Top-k kernels: block b owns a contiguous range of
  ceil(tiles / grid) tiles (contiguous so a block's shared histogram changes group at most once
  per tensor boundary); any grid >= 1 is correct, the host picks min(tiles, 8 * SMs) and enough
  blocks that no block counts 2^32 elements in a shared u32 bin. 2:4: grid-stride over groups.

Tests: tests/topk.rs — host_helpers_match_the_rust_twins and host_tile_math_covers_every_tile_once
  run the topk.cuh helpers compiled for the host (host_helpers.cpp) against the Rust twins;
  gpu_topk_matches_cpu_f32, gpu_topk_matches_cpu_bf16_f16, gpu_topk_errors_match_cpu and
  gpu_two_four_matches_cpu compare masks, reports and errors with the CPU path on random
  tensors with heavy ties, sizes 0 .. 10^7 over many tensors, existing masks, both modes
  (skipped without a GPU, failures under ASA_LTH_REQUIRE_GPU=1). Bench: src/bench/topk_cases.rs
  (CPU) and benches/peers/torch_topk.py (torch on a GPU). Resource check:
  scripts/check-kernels.sh (every kernel here is marked hot: no spills, no local memory).

SIMT emulation (tests/topk.rs emulated_*; kernels/simt_emu.h): this source runs on the CPU
  under the same driver as on a GPU (src/backend/cuda/topk.rs prune_driver over the emulated
  TopkDevice): masks and reports equal the CPU path bit for bit on heavy ties, existing masks,
  both scopes, f32/bf16/f16, up to 10^7 weights over 40 tensors; errors likewise; 2:4 too.
Status: compiled into the fatbin, statically checked and SIMT-emulated; NOT yet run on a GPU
  (the gpu_* tests above are the first thing to run when one is lent). Known performance risk, unmeasured: with
  heavy ties the pass-0 shared-memory atomics pile onto few bins (warp-aggregated atomics via
  __match_any_sync would be the fix if it shows up).
*/
#include "topk.cuh"

// asa-lth: hot topk_hist_f32
// asa-lth: hot topk_hist_16
// asa-lth: hot topk_tie_count_f32
// asa-lth: hot topk_tie_count_16
// asa-lth: hot topk_mask_update_f32
// asa-lth: hot topk_mask_update_16
// asa-lth: hot two_four_f32
// asa-lth: hot two_four_16

namespace asa_topk {

typedef unsigned long long u64;

constexpr unsigned BLOCK = ASA_TOPK_BLOCK;
constexpr unsigned WARPS = BLOCK / 32u;
constexpr unsigned BINS = ASA_TOPK_BINS;
constexpr u64 TILE = ASA_TOPK_TILE;
constexpr unsigned FULL = 0xFFFFFFFFu;

// The tensor table (built by src/backend/cuda/topk.rs `prune_typed`), nt tensors, one u64 array:
//   [0, nt) weight pointers   [nt, 2nt) mask pointers (f32)   [2nt, 3nt) lengths
//   [3nt, 4nt) global offset of element 0   [4nt, 5nt) group
//   [5nt, 6nt + 1) first tile of each tensor, then the total number of tiles.
struct Table {
    const u64* t;
    unsigned nt;
    __device__ __forceinline__ const void* weights(unsigned i) const {
        return reinterpret_cast<const void*>(t[i]);
    }
    __device__ __forceinline__ float* mask(unsigned i) const {
        return reinterpret_cast<float*>(t[nt + i]);
    }
    __device__ __forceinline__ u64 len(unsigned i) const { return t[2u * nt + i]; }
    __device__ __forceinline__ u64 offset(unsigned i) const { return t[3u * nt + i]; }
    __device__ __forceinline__ unsigned group(unsigned i) const {
        return static_cast<unsigned>(t[4u * nt + i]);
    }
    __device__ __forceinline__ u64 tile_begin(unsigned i) const { return t[5u * nt + i]; }
    // The tensor that owns `tile` (topk.cuh).
    __device__ __forceinline__ unsigned tensor_of(u64 tile) const {
        return asa_topk_tensor_of(t + 5u * nt, nt, tile);
    }
};

// The contiguous tile range [*t0, *t1) of this block (topk.cuh).
__device__ __forceinline__ void block_tiles(u64 num_tiles, u64* t0, u64* t1) {
    asa_topk_block_tiles(num_tiles, gridDim.x, blockIdx.x, t0, t1);
}

// Magnitude key of element i.
__device__ __forceinline__ uint32_t key_at(const uint32_t* w, u64 i) {
    return asa_topk_key_f32(__ldg(w + i));
}
__device__ __forceinline__ uint32_t key_at(const unsigned short* w, u64 i) {
    return asa_topk_key_16(static_cast<uint32_t>(__ldg(w + i)));
}

// Add the block's shared histogram into the group's global one and clear it.
__device__ __forceinline__ void flush(unsigned* sh, u64* h) {
    __syncthreads();
    for (unsigned i = threadIdx.x; i < BINS; i += BLOCK) {
        const unsigned v = sh[i];
        if (v != 0u) {
            atomicAdd(&h[i], static_cast<u64>(v));
            sh[i] = 0u;
        }
    }
    __syncthreads();
}

// Sum of `v` over the warp, added to *dst by lane 0 when non-zero. All 32 lanes must call it.
__device__ __forceinline__ void warp_add(u64* dst, unsigned v) {
    v = __reduce_add_sync(FULL, v);
    if ((threadIdx.x & 31u) == 0u && v != 0u) {
        atomicAdd(dst, static_cast<u64>(v));
    }
}

// Histogram pass `pass` (see the file header). group_prefix/group_active: per group.
// hist: [groups][BINS] u64, accumulated. Pass 0 only: tensor_unpruned ([nt] u64, accumulated)
// and first_bad (u64, atomicMin of the global index of an invalid mask or non-finite weight).
template <typename Bits, uint32_t KEY_BITS>
__device__ __forceinline__ void hist(const u64* table, unsigned nt, u64 num_tiles, unsigned pass,
                                     const unsigned* group_prefix, const unsigned* group_active,
                                     u64* hist, u64* tensor_unpruned, u64* first_bad,
                                     uint32_t nonfinite) {
    __shared__ unsigned sh[BINS];
    for (unsigned i = threadIdx.x; i < BINS; i += BLOCK) {
        sh[i] = 0u;
    }
    __syncthreads();
    const Table tab{table, nt};
    u64 t0, t1;
    block_tiles(num_tiles, &t0, &t1);
    unsigned cur = FULL;  // the group whose counts `sh` holds (FULL: none yet)
    for (u64 tile = t0; tile < t1; ++tile) {
        // Everything up to the flush is uniform across the block.
        const unsigned ti = tab.tensor_of(tile);
        const unsigned g = tab.group(ti);
        if (group_active[g] == 0u) {
            continue;
        }
        if (g != cur) {
            if (cur != FULL) {
                flush(sh, hist + static_cast<u64>(cur) * BINS);
            }
            cur = g;
        }
        const uint32_t prefix = group_prefix[g];
        const Bits* w = static_cast<const Bits*>(tab.weights(ti));
        const float* m = tab.mask(ti);
        const u64 len = tab.len(ti);
        const u64 off = tab.offset(ti);
        const u64 base = (tile - tab.tile_begin(ti)) * TILE;
        const u64 end = base + TILE < len ? base + TILE : len;
        unsigned cnt = 0u;
        // Unrolled by 2 only: at 4, sm_90's ptxas spills (it keeps this kernel at 32 regs).
#pragma unroll 2
        for (u64 i = base + threadIdx.x; i < end; i += BLOCK) {
            const uint32_t st = asa_topk_mask_state(__ldg(m + i));
            if (st == ASA_TOPK_UNPRUNED) {
                const uint32_t key = key_at(w, i);
                if (key >= nonfinite) {
                    if (first_bad != nullptr) {
                        atomicMin(first_bad, off + i);
                    }
                } else if (asa_topk_in_prefix(key, KEY_BITS, pass, prefix)) {
                    atomicAdd(&sh[asa_topk_digit(key, KEY_BITS, pass)], 1u);
                    ++cnt;
                }
            } else if (st == ASA_TOPK_BAD_MASK && first_bad != nullptr) {
                atomicMin(first_bad, off + i);
            }
        }
        if (tensor_unpruned != nullptr) {
            warp_add(&tensor_unpruned[ti], cnt);
        }
    }
    if (cur != FULL) {
        flush(sh, hist + static_cast<u64>(cur) * BINS);
    }
}

// Per tile, the number of unpruned weights with key == group_key[g], for the groups with
// group_scan[g] != 0 (0 written for the others). tile_counts: [num_tiles] u32.
template <typename Bits>
__device__ __forceinline__ void tie_count(const u64* table, unsigned nt, u64 num_tiles,
                                          const unsigned* group_key, const unsigned* group_scan,
                                          unsigned* tile_counts) {
    __shared__ unsigned warp_sums[WARPS];
    const Table tab{table, nt};
    u64 t0, t1;
    block_tiles(num_tiles, &t0, &t1);
    for (u64 tile = t0; tile < t1; ++tile) {
        const unsigned ti = tab.tensor_of(tile);
        const unsigned g = tab.group(ti);
        if (group_scan[g] == 0u) {
            if (threadIdx.x == 0u) {
                tile_counts[tile] = 0u;
            }
            continue;
        }
        const uint32_t key_t = group_key[g];
        const Bits* w = static_cast<const Bits*>(tab.weights(ti));
        const float* m = tab.mask(ti);
        const u64 len = tab.len(ti);
        const u64 base = (tile - tab.tile_begin(ti)) * TILE;
        const u64 end = base + TILE < len ? base + TILE : len;
        unsigned cnt = 0u;
#pragma unroll 4
        for (u64 i = base + threadIdx.x; i < end; i += BLOCK) {
            if (__ldg(m + i) != 0.0f && key_at(w, i) == key_t) {
                ++cnt;
            }
        }
        cnt = __reduce_add_sync(FULL, cnt);
        if ((threadIdx.x & 31u) == 0u) {
            warp_sums[threadIdx.x >> 5] = cnt;
        }
        __syncthreads();
        if (threadIdx.x == 0u) {
            unsigned s = 0u;
            for (unsigned k = 0; k < WARPS; ++k) {
                s += warp_sums[k];
            }
            tile_counts[tile] = s;
        }
        __syncthreads();
    }
}

// The mask update. group_params: [groups][4] u32 = {active, threshold key T, cut tile, cut
// rank}: an unpruned weight is pruned when key < T, or key == T and (its tile < cut tile, or
// its tile == cut tile and fewer than `cut rank` ties precede it in that tile). Only pruned
// entries are written (0.0f). tensor_pruned: [nt] u64, accumulated.
template <typename Bits>
__device__ __forceinline__ void mask_update(const u64* table, unsigned nt, u64 num_tiles,
                                            const unsigned* group_params, u64* tensor_pruned) {
    __shared__ unsigned warp_tot[WARPS];
    const Table tab{table, nt};
    u64 t0, t1;
    block_tiles(num_tiles, &t0, &t1);
    const unsigned lane = threadIdx.x & 31u;
    const unsigned warp = threadIdx.x >> 5;
    for (u64 tile = t0; tile < t1; ++tile) {
        const unsigned ti = tab.tensor_of(tile);
        const unsigned g = tab.group(ti);
        const unsigned* gp = group_params + 4u * g;
        if (gp[0] == 0u) {
            continue;
        }
        const uint32_t key_t = gp[1];
        const u64 cut_tile = gp[2];
        const unsigned cut_rank = gp[3];
        const Bits* w = static_cast<const Bits*>(tab.weights(ti));
        float* m = tab.mask(ti);
        const u64 len = tab.len(ti);
        const u64 base = (tile - tab.tile_begin(ti)) * TILE;
        const u64 end = base + TILE < len ? base + TILE : len;
        unsigned pruned = 0u;
        if (tile != cut_tile) {
            const bool ties = tile < cut_tile;
#pragma unroll 4
            for (u64 i = base + threadIdx.x; i < end; i += BLOCK) {
                if (m[i] != 0.0f) {
                    const uint32_t key = key_at(w, i);
                    if (key < key_t || (ties && key == key_t)) {
                        m[i] = 0.0f;
                        ++pruned;
                    }
                }
            }
        } else {
            // Ordered scan: rounds of BLOCK consecutive elements; `running` ties seen so far.
            unsigned running = 0u;
            for (u64 r = base; r < end; r += BLOCK) {
                const u64 i = r + threadIdx.x;
                bool unpruned = false;
                uint32_t key = 0u;
                if (i < end) {
                    unpruned = m[i] != 0.0f;
                    if (unpruned) {
                        key = key_at(w, i);
                    }
                }
                const bool tie = unpruned && key == key_t;
                const unsigned ballot = __ballot_sync(FULL, tie);
                if (lane == 0u) {
                    warp_tot[warp] = static_cast<unsigned>(__popc(ballot));
                }
                __syncthreads();
                unsigned before = static_cast<unsigned>(__popc(ballot & ((1u << lane) - 1u)));
                unsigned total = 0u;
                for (unsigned k = 0; k < WARPS; ++k) {
                    const unsigned v = warp_tot[k];
                    before += k < warp ? v : 0u;
                    total += v;
                }
                if (unpruned && (key < key_t || (tie && running + before < cut_rank))) {
                    m[i] = 0.0f;
                    ++pruned;
                }
                running += total;
                __syncthreads();
            }
        }
        warp_add(&tensor_pruned[ti], pruned);
    }
}

// 2:4 mask of one group from its 4 keys; non-finite keys are reported via first_bad.
__device__ __forceinline__ void two_four_group(u64 g, uint32_t k0, uint32_t k1, uint32_t k2,
                                               uint32_t k3, uint32_t nonfinite, float4* mask,
                                               u64* first_bad) {
    if (k0 >= nonfinite || k1 >= nonfinite || k2 >= nonfinite || k3 >= nonfinite) {
        const u64 j = k0 >= nonfinite ? 0u : (k1 >= nonfinite ? 1u : (k2 >= nonfinite ? 2u : 3u));
        atomicMin(first_bad, 4u * g + j);
    }
    const uint32_t keep = asa_two_four_keep(k0, k1, k2, k3);
    mask[g] = make_float4(static_cast<float>(keep & 1u), static_cast<float>((keep >> 1) & 1u),
                          static_cast<float>((keep >> 2) & 1u),
                          static_cast<float>((keep >> 3) & 1u));
}

}  // namespace asa_topk

extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
topk_hist_f32(const unsigned long long* table, unsigned nt, unsigned long long num_tiles,
              unsigned pass, const unsigned* group_prefix, const unsigned* group_active,
              unsigned long long* hist, unsigned long long* tensor_unpruned,
              unsigned long long* first_bad) {
    asa_topk::hist<uint32_t, ASA_TOPK_KEY_BITS_F32>(table, nt, num_tiles, pass, group_prefix,
                                                    group_active, hist, tensor_unpruned,
                                                    first_bad, ASA_TOPK_NONFINITE_F32);
}

extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
topk_hist_16(const unsigned long long* table, unsigned nt, unsigned long long num_tiles,
             unsigned pass, const unsigned* group_prefix, const unsigned* group_active,
             unsigned long long* hist, unsigned long long* tensor_unpruned,
             unsigned long long* first_bad, unsigned nonfinite) {
    asa_topk::hist<unsigned short, ASA_TOPK_KEY_BITS_16>(table, nt, num_tiles, pass,
                                                         group_prefix, group_active, hist,
                                                         tensor_unpruned, first_bad, nonfinite);
}

extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
topk_tie_count_f32(const unsigned long long* table, unsigned nt, unsigned long long num_tiles,
                   const unsigned* group_key, const unsigned* group_scan,
                   unsigned* tile_counts) {
    asa_topk::tie_count<uint32_t>(table, nt, num_tiles, group_key, group_scan, tile_counts);
}

extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
topk_tie_count_16(const unsigned long long* table, unsigned nt, unsigned long long num_tiles,
                  const unsigned* group_key, const unsigned* group_scan, unsigned* tile_counts) {
    asa_topk::tie_count<unsigned short>(table, nt, num_tiles, group_key, group_scan,
                                        tile_counts);
}

extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
topk_mask_update_f32(const unsigned long long* table, unsigned nt, unsigned long long num_tiles,
                     const unsigned* group_params, unsigned long long* tensor_pruned) {
    asa_topk::mask_update<uint32_t>(table, nt, num_tiles, group_params, tensor_pruned);
}

extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
topk_mask_update_16(const unsigned long long* table, unsigned nt, unsigned long long num_tiles,
                    const unsigned* group_params, unsigned long long* tensor_pruned) {
    asa_topk::mask_update<unsigned short>(table, nt, num_tiles, group_params, tensor_pruned);
}

// w: groups x 4 f32 (16-byte aligned), mask: groups x 4 f32 (16-byte aligned).
extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
two_four_f32(const uint4* __restrict__ w, float4* __restrict__ mask, unsigned long long groups,
             unsigned long long* first_bad) {
    const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
    for (unsigned long long g = static_cast<unsigned long long>(blockIdx.x) * blockDim.x +
                                threadIdx.x;
         g < groups; g += stride) {
        const uint4 b = __ldg(w + g);
        asa_topk::two_four_group(g, asa_topk_key_f32(b.x), asa_topk_key_f32(b.y),
                                 asa_topk_key_f32(b.z), asa_topk_key_f32(b.w),
                                 ASA_TOPK_NONFINITE_F32, mask, first_bad);
    }
}

// w: groups x 4 u16 bits of bf16 or f16 (8-byte aligned, little-endian: element 0 in the low
// half of .x), mask: groups x 4 f32 (16-byte aligned); nonfinite: the type's +Inf key.
extern "C" __global__ void __launch_bounds__(ASA_TOPK_BLOCK)
two_four_16(const uint2* __restrict__ w, float4* __restrict__ mask, unsigned long long groups,
            unsigned nonfinite, unsigned long long* first_bad) {
    const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
    for (unsigned long long g = static_cast<unsigned long long>(blockIdx.x) * blockDim.x +
                                threadIdx.x;
         g < groups; g += stride) {
        const uint2 b = __ldg(w + g);
        asa_topk::two_four_group(g, asa_topk_key_16(b.x & 0xFFFFu), asa_topk_key_16(b.x >> 16),
                                 asa_topk_key_16(b.y & 0xFFFFu), asa_topk_key_16(b.y >> 16),
                                 nonfinite, mask, first_bad);
    }
}
