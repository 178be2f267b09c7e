/*
attention.cu — fused masked causal attention, flash-attention style, forward and backward, that
skips the (q-tile, k-tile) blocks the mask empties.

Computes: the attention contract of DESIGN.md §3 "Attention mask" and backend::Ops::attention_fwd
/ attention_bwd (CPU twin src/backend/cpu/attention.rs; tile classes src/mask/tiles.rs):
  q, k, v, out, dout, dq, dk, dv are (B, T, C) f32 row-major with C = H·D, head h at columns
  h·D..; lse is (B, H, T) f32; the optional mask is bit-packed (B, Hm, T, ⌈T/32⌉) u32, Hm = H
  (per head) or 1 (shared); effective mask = mask ∧ causal (j ≤ i). Scores scaled by 1/√D.
  A fully masked row gives out = 0, lse = +∞ and zero gradients, never NaN. The backward
  ACCUMULATES (+=) into dq, dk, dv.
  Operands: q, k, v (and dout) arrive as bf16 copies (the launcher rounds the f32 activations
  with cast_bf16_f32, RNE); tiles stream into shared memory with 16-byte cp.async (rows past
  T zero-filled), fragments come out with ldmatrix (x4 for A, x2 / x2.trans for B), products
  use mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, softmax and accumulators are f32.
  Head dim D ∈ {64, 128}; any T ≥ 1 (tails zero-filled and masked).

Tiles: 64 queries × 64 keys (ASA_ATTN_TILE, = the CPU twin's TILE), classified Empty / Full /
Partial exactly as TileMap::from_words(.., 64) does. Full blocks skip the per-element test
unless their keys run past T; Partial blocks test mask bits ∧ causality in registers.

Variants (one line each, why):
  attn_tile_classify  — mask → per-(group, q-tile, k-tile) class (u8); one block per
                        (group = b·Hm + hm, q-tile), warps vote over the 64 rows of a block.
  attn_tile_lists     — classes → per-q-tile (forward) and per-k-tile (backward) lists, each
                        compacted in ascending order into a fixed slot of nt entries
                        (entry = tile << 1 | partial, TileLists::packed) plus a count.
  attn_fwd_d64/_d128  — forward: one block per (q-tile, h, b), 4 warps × 16 query rows, walks
                        only the non-empty k-tiles of its list, online softmax in exp2 domain,
                        writes out and lse. Two head dims as template instances (register tiles
                        are sized at compile time).
  attn_bwd_di         — Di = rowsum(dout ∘ out) into a (B, H, T) scratch, one warp per row.
  attn_bwd_dkdv_d64/_d128 — backward, K-tile-major over the backward lists: one block per
                        (k-tile, h, b), 4 warps × 16 keys; recomputes P from lse, accumulates dK
                        and dV in registers (deterministic, one += per element); with
                        dq_atomic != 0 also adds dQ with atomicAdd (the fast mode).
  attn_bwd_dq_d64/_d128 — deterministic mode's dQ pass: q-tile-major over the forward lists,
                        recomputes P and dP, accumulates dQ in registers, one += per element.
  attn_mma_probe      — one warp, one dense mma on host-given registers: the layout probe.

Pipelines: the operand tiles a kernel streams (fwd and dq: K/V per list entry; dkdv: Q/dO)
  are double-buffered — entry n + 1 is in flight while entry n is used, one commit group per
  iteration, a barrier at the end of each iteration before its stage is refilled — where two
  blocks still fit an A100's 164 KiB of shared memory (asa_attn_stages: fwd always, the
  backward kernels at D = 64); otherwise single-buffered (asynchronous, not overlapped).

Launch shapes (src/backend/cuda/attention.rs computes them; nt = ⌈T/64⌉, G = B·Hm):
  classify grid (G, nt), lists grid ⌈G·nt/128⌉, fwd / dq / dkdv grid (nt, H, B), di grid
  ⌈B·H·T/4⌉; block 128 threads everywhere; dynamic shared memory asa_attn_smem_bytes(kind, D)
  (fwd 36/68 KiB, dq 54/68 KiB, dkdv 64/78 KiB for D = 64/128; > 48 KiB needs the opt-in
  attribute, which the launcher sets).

Tests: tests/attention_fused.rs — host: the fragment helpers on the PTX-ISA warp emulator vs a
  plain matmul (incl. the accumulator → A-operand reuse), the ldmatrix addresses on the
  ldmatrix emulator vs those scalar helpers, the cp.async chunk map (each element once), the
  tile classes and lists of the host build of the same helpers vs src/mask/tiles.rs; GPU
  (skipped without one): forward and both backward modes vs a dense f64 reference, device tile
  lists vs TileMap, deterministic mode bit-identical across runs, the layout probes (mma and
  every ldmatrix form, tests/gemm24_tuned.rs) vs the emulators. SASS check: HMMA, LDSM and
  LDGSTS in every attention kernel, no spills (scripts/check-kernels.sh).
  SIMT emulation (same file, emulated_* tests; kernels/simt_emu.h): this source itself runs on
  the CPU — forward, both backward modes and the tile kernels vs the f64 reference, forward and
  deterministic backward bit-identical across thread interleavings and cp.async timings.
  Status: compiles, SIMT-emulated, NOT run on a GPU yet.
*/
#include "async_copy.cuh"
#include "attention.cuh"

namespace asa_attn {

constexpr int TILE = ASA_ATTN_TILE;
constexpr int THREADS = ASA_ATTN_THREADS;
constexpr unsigned FULL_MASK = 0xffffffffu;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// D = A·B + D, m16n8k16, bf16 operands, f32 accumulators.
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
#if defined(ASA_SIMT_EMU)
    asa_emu::mma_m16n8k16_bf16(d, a, b);
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// 2^x (approximate, ~2 ulp; 2^-∞ = 0).
__device__ __forceinline__ float ex2(float x) {
#if defined(ASA_SIMT_EMU)
    return exp2f(x);
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#endif
}

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// Fragment loaders of the kernels: ldmatrix at the attention.cuh addresses, giving exactly the
// registers of the scalar asa_attn_frag_* loaders (held to the PTX-ISA emulator by the tests).
__device__ __forceinline__ void frag_a(const uint16_t* s, uint32_t ld, uint32_t lane,
                                       uint32_t (&a)[4]) {
    asa_async::ldsm_x4(a, asa_async::smem_addr(s + asa_attn_ldsm_a_off(lane, ld)));
}
__device__ __forceinline__ void frag_b_nk(const uint16_t* s, uint32_t ld, uint32_t lane,
                                          uint32_t (&b)[2]) {
    asa_async::ldsm_x2(b, asa_async::smem_addr(s + asa_attn_ldsm_b_nk_off(lane, ld)));
}
__device__ __forceinline__ void frag_b_kn(const uint16_t* s, uint32_t ld, uint32_t lane,
                                          uint32_t (&b)[2]) {
    asa_async::ldsm_x2_trans(b, asa_async::smem_addr(s + asa_attn_ldsm_b_kn_off(lane, ld)));
}

// Issue the cp.async copies of a 64 × D bf16 tile (row r at src + r·stride) into shared memory,
// row-major with leading dimension D + PAD; rows ≥ `rows` (past T) are zero-filled from a valid
// address. The caller commits and waits. Every source chunk is 16-byte aligned: row starts are
// multiples of 8 elements (C = H·D, head offset h·D, D % 64 == 0) of a 256-byte aligned buffer.
template <int D>
__device__ __forceinline__ void copy_tile(uint16_t* __restrict__ dst,
                                          const uint16_t* __restrict__ src, size_t stride,
                                          int rows, int tid) {
    constexpr int LD = D + ASA_ATTN_PAD;
    constexpr int CHUNKS = TILE * D / 8;
    static_assert(CHUNKS % THREADS == 0, "tile copy must divide evenly");
    // Unrolled by 2, not fully: a full unroll keeps every chunk's address live (fwd D = 128
    // went from 175 to 243 registers), no unroll makes ptxas spill in bwd_dq at D = 128.
#pragma unroll 2
    for (int it = 0; it < CHUNKS / THREADS; ++it) {
        const int c = tid + it * THREADS;
        uint32_t r, col;
        asa_attn_chunk(D, static_cast<uint32_t>(c), &r, &col);
        const bool in = static_cast<int>(r) < rows;
        const uint16_t* from = in ? src + static_cast<size_t>(r) * stride + col : src;
        asa_async::cp_async16(asa_async::smem_addr(dst + r * LD + col), from, in ? 16u : 0u);
    }
}

// Issue the copies of the 64-row tiles that start at row r0 of head `head` of tensors a and b
// (e.g. K and V) into dst_a and dst_b; rows past T zero-filled.
template <int D>
__device__ __forceinline__ void copy_tile_pair(uint16_t* dst_a, uint16_t* dst_b,
                                               const uint16_t* __restrict__ a,
                                               const uint16_t* __restrict__ b, size_t head,
                                               size_t C, int r0, int T, int tid) {
    const size_t off = head + static_cast<size_t>(r0) * C;
    copy_tile<D>(dst_a, a + off, C, imin(TILE, T - r0), tid);
    copy_tile<D>(dst_b, b + off, C, imin(TILE, T - r0), tid);
}

// Entry n of a (forward or backward) tile list: the other tile's index and whether the block
// is Partial. Without lists (plain causal): the n-th tile from `first`, Partial on the diagonal
// (and everywhere when a mask is given without lists, which the launchers never do).
__device__ __forceinline__ void list_entry(const uint32_t* __restrict__ lists, size_t slot, int n,
                                           int first, int diag, bool masked, int* tile,
                                           bool* partial) {
    if (lists != nullptr) {
        const uint32_t e = lists[slot + n];
        *tile = static_cast<int>(e >> 1);
        *partial = (e & 1u) != 0;
    } else {
        *tile = first + n;
        *partial = *tile == diag || masked;
    }
}

// The mask row of query i of (b, hm), or null (no mask, or i past T).
__device__ __forceinline__ const uint32_t* mask_row(const uint32_t* mask, int b, int Hm, int hm,
                                                    int T, uint32_t words, int i) {
    if (mask == nullptr || i >= T) {
        return nullptr;
    }
    return mask + ((static_cast<size_t>(b) * Hm + hm) * T + i) * words;
}

// ---------------------------------------------------------------------------------------------
// Forward.
template <int D>
__device__ __forceinline__ void fwd(const uint16_t* __restrict__ q,
                                    const uint16_t* __restrict__ k,
                                    const uint16_t* __restrict__ v, float* __restrict__ out,
                                    float* __restrict__ lse, const uint32_t* __restrict__ mask,
                                    const uint32_t* __restrict__ list_count,
                                    const uint32_t* __restrict__ lists, int T, int H, int Hm,
                                    float scale_log2) {
#if ASA_SM80_CODE
    constexpr int LD = D + ASA_ATTN_PAD;
    constexpr int KS = D / 16;  // k-steps of S = Q·Kᵀ
    constexpr int ND = D / 8;   // n-tiles of O
    constexpr int TS = TILE * LD;  // elements of one shared tile
    static_assert(asa_attn_stages(ASA_ATTN_KIND_FWD, D) == 2, "the forward is double-buffered");
    ASA_DYNAMIC_SMEM(asa_attn_smem);
    // Stage s (0, 1): K at 2s·TS, V at (2s + 1)·TS. Q is staged in stage 1's K slot first.
    uint16_t* const sm = reinterpret_cast<uint16_t*>(asa_attn_smem);

    const int nt = (T + TILE - 1) / TILE;
    const int qt = nt - 1 - static_cast<int>(blockIdx.x);  // longest rows first
    const int h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5;
    const uint32_t lane = tid & 31, g = lane >> 2, t = lane & 3;
    const size_t C = static_cast<size_t>(H) * D;
    const size_t head = static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * D;
    const int q0 = qt * TILE;
    const int hm = Hm == 1 ? 0 : h;
    const uint32_t words = (T + 31) / 32;
    const size_t grp = (static_cast<size_t>(b) * Hm + hm) * nt + qt;
    const int count = lists != nullptr ? static_cast<int>(list_count[grp]) : qt + 1;
    // K and V of list entry n into stage `st` (one commit group per call site).
    auto issue_kv = [&](int n, int st) {
        int kt;
        bool partial;
        list_entry(lists, grp * nt, n, 0, qt, mask != nullptr, &kt, &partial);
        copy_tile_pair<D>(sm + 2 * st * TS, sm + (2 * st + 1) * TS, k, v, head, C, kt * TILE, T,
                          tid);
    };

    // Prologue: Q (group 0), then the first K/V tile (group 1); Q fragments into registers.
    copy_tile<D>(sm + 2 * TS, q + head + static_cast<size_t>(q0) * C, C, imin(TILE, T - q0), tid);
    asa_async::cp_async_commit();
    if (count > 0) {
        issue_kv(0, 0);
    }
    asa_async::cp_async_commit();
    asa_async::cp_async_wait<1>();  // Q has landed (this thread's chunks) ...
    __syncthreads();                // ... and everyone's
    uint32_t qf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        frag_a(sm + 2 * TS + warp * 16 * LD + ks * 16, LD, lane, qf[ks]);
    }
    __syncthreads();  // every warp holds its Q fragments before stage 1 is refilled

    const int i0 = q0 + warp * 16 + static_cast<int>(g), i1 = i0 + 8;
    const uint32_t* mrow0 = mask_row(mask, b, Hm, hm, T, words, i0);
    const uint32_t* mrow1 = mask_row(mask, b, Hm, hm, T, words, i1);

    float o[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
        o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
    }
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.f, 0.f};

    for (int n = 0; n < count; ++n) {
        int kt;
        bool partial;
        list_entry(lists, grp * nt, n, 0, qt, mask != nullptr, &kt, &partial);
        const int k0 = kt * TILE;
        const bool test = asa_attn_needs_test(partial, kt, T);
        // Double buffering: the next K/V tile streams in while this one is used. Stage
        // (n + 1) & 1 was last read in iteration n − 1, which ended with a barrier.
        if (n + 1 < count) {
            issue_kv(n + 1, (n + 1) & 1);
        }
        asa_async::cp_async_commit();  // possibly empty: keeps one group per iteration
        asa_async::cp_async_wait<1>();  // everything but the newest group: tile n is here
        __syncthreads();
        const uint16_t* Ks = sm + 2 * (n & 1) * TS;
        const uint16_t* Vs = Ks + TS;

        // S = Q·Kᵀ for this warp's 16 rows × 64 keys.
        float s[8][4];
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) {
            s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
        }
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                uint32_t bf[2];
                frag_b_nk(Ks + nb * 8 * LD + ks * 16, LD, lane, bf);
                mma16816(s[nb], qf[ks], bf);
            }
        }
        // Scale to the exp2 domain; mask ∧ causality where the block needs it.
        if (test) {
            const uint64_t bits0 = asa_attn_row_bits(mrow0, words, kt);
            const uint64_t bits1 = asa_attn_row_bits(mrow1, words, kt);
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const uint32_t i = static_cast<uint32_t>(c < 2 ? i0 : i1);
                    const uint32_t j = k0 + nb * 8 + 2 * t + (c & 1);
                    s[nb][c] = asa_attn_allowed(c < 2 ? bits0 : bits1, k0, i, j)
                                   ? s[nb][c] * scale_log2
                                   : -INFINITY;
                }
            }
        } else {
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    s[nb][c] *= scale_log2;
                }
            }
        }
        // Online softmax; row r ∈ {0, 1} = rows g and g + 8, spread over the quad's 4 lanes.
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = -INFINITY;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                mx = fmaxf(mx, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
            }
            mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, 2));
            const float mn = fmaxf(m[r], mx);
            const float base = mn == -INFINITY ? 0.f : mn;  // no allowed key yet: p = 0, no NaN
            const float alpha = ex2(m[r] - base);
            m[r] = mn;
            float sum = 0.f;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float p = ex2(s[nb][2 * r + e] - base);
                    s[nb][2 * r + e] = p;
                    sum += p;
                }
            }
            l[r] = l[r] * alpha + sum;
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                o[nd][2 * r] *= alpha;
                o[nd][2 * r + 1] *= alpha;
            }
        }
        // O += P·V, P reused from the accumulators as A fragments.
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            uint32_t pa[4];
            asa_attn_acc_to_frag_a(s[2 * kk], s[2 * kk + 1], pa);
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                uint32_t bf[2];
                frag_b_kn(Vs + kk * 16 * LD + nd * 8, LD, lane, bf);
                mma16816(o[nd], pa, bf);
            }
        }
        __syncthreads();  // every warp is done with stage n & 1 before it is refilled
    }
    asa_async::cp_async_wait<0>();  // nothing in flight at exit (the last group is empty)

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float lr = l[r];
        lr += __shfl_xor_sync(FULL_MASK, lr, 1);
        lr += __shfl_xor_sync(FULL_MASK, lr, 2);
        const int i = r == 0 ? i0 : i1;
        if (i < T) {
            float inv, ls;
            if (lr > 0.f) {
                inv = 1.f / lr;
                ls = m[r] * LN2 + logf(lr);
            } else if (lr != lr) {  // NaN inputs propagate
                inv = lr;
                ls = lr;
            } else {  // no allowed key: out 0, lse +∞ (DESIGN.md §3)
                inv = 0.f;
                ls = INFINITY;
            }
            float* orow = out + head + static_cast<size_t>(i) * C;
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                *reinterpret_cast<float2*>(orow + nd * 8 + 2 * t) =
                    make_float2(o[nd][2 * r] * inv, o[nd][2 * r + 1] * inv);
            }
            if (t == 0) {
                lse[(static_cast<size_t>(b) * H + h) * T + i] = ls;
            }
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------------
// Backward, deterministic dQ pass (q-tile-major over the forward lists).
template <int D>
__device__ __forceinline__ void bwd_dq(const uint16_t* __restrict__ q,
                                       const uint16_t* __restrict__ k,
                                       const uint16_t* __restrict__ v,
                                       const uint16_t* __restrict__ dout,
                                       const float* __restrict__ lse, const float* __restrict__ di,
                                       float* __restrict__ dq, const uint32_t* __restrict__ mask,
                                       const uint32_t* __restrict__ list_count,
                                       const uint32_t* __restrict__ lists, int T, int H, int Hm,
                                       float scale_log2, float scale) {
#if ASA_SM80_CODE
    constexpr int LD = D + ASA_ATTN_PAD;
    constexpr int KS = D / 16;
    constexpr int ND = D / 8;
    constexpr int TS = TILE * LD;
    constexpr int STAGES = static_cast<int>(asa_attn_stages(ASA_ATTN_KIND_BWD_DQ, D));
    ASA_DYNAMIC_SMEM(asa_attn_smem);
    uint16_t* const sm = reinterpret_cast<uint16_t*>(asa_attn_smem);
    const uint16_t* Qs = sm;
    const uint16_t* Os = sm + TS;  // dO
    // Stage s: K at (2 + 2s)·TS, V at (3 + 2s)·TS.

    const int nt = (T + TILE - 1) / TILE;
    const int qt = nt - 1 - static_cast<int>(blockIdx.x);
    const int h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5;
    const uint32_t lane = tid & 31, g = lane >> 2, t = lane & 3;
    const size_t C = static_cast<size_t>(H) * D;
    const size_t head = static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * D;
    const int q0 = qt * TILE;
    const int hm = Hm == 1 ? 0 : h;
    const uint32_t words = (T + 31) / 32;
    const size_t grp = (static_cast<size_t>(b) * Hm + hm) * nt + qt;
    const int count = lists != nullptr ? static_cast<int>(list_count[grp]) : qt + 1;
    auto issue_kv = [&](int n, int st) {
        int kt;
        bool partial;
        list_entry(lists, grp * nt, n, 0, qt, mask != nullptr, &kt, &partial);
        copy_tile_pair<D>(sm + (2 + 2 * st) * TS, sm + (3 + 2 * st) * TS, k, v, head, C,
                          kt * TILE, T, tid);
    };

    copy_tile_pair<D>(sm, sm + TS, q, dout, head, C, q0, T, tid);
    asa_async::cp_async_commit();
    if (STAGES == 2 && count > 0) {
        issue_kv(0, 0);
        asa_async::cp_async_commit();
    }

    const int i0 = q0 + warp * 16 + static_cast<int>(g), i1 = i0 + 8;
    const uint32_t* mrow0 = mask_row(mask, b, Hm, hm, T, words, i0);
    const uint32_t* mrow1 = mask_row(mask, b, Hm, hm, T, words, i1);
    const size_t lrow = (static_cast<size_t>(b) * H + h) * T;
    // Rows past T: lse = +∞ makes P exactly 0.
    const float lse2[2] = {i0 < T ? lse[lrow + i0] * LOG2E : INFINITY,
                           i1 < T ? lse[lrow + i1] * LOG2E : INFINITY};
    const float dii[2] = {i0 < T ? di[lrow + i0] : 0.f, i1 < T ? di[lrow + i1] : 0.f};

    float acc[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
        acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
    }

    for (int n = 0; n < count; ++n) {
        int kt;
        bool partial;
        list_entry(lists, grp * nt, n, 0, qt, mask != nullptr, &kt, &partial);
        const int k0 = kt * TILE;
        const bool test = asa_attn_needs_test(partial, kt, T);
        int stage = 0;
        if (STAGES == 2) {  // prefetch tile n + 1 into the stage iteration n − 1 finished with
            stage = n & 1;
            if (n + 1 < count) {
                issue_kv(n + 1, (n + 1) & 1);
            }
            asa_async::cp_async_commit();
            asa_async::cp_async_wait<1>();
        } else {  // one stage: the previous iteration's closing barrier freed it
            issue_kv(n, 0);
            asa_async::cp_async_commit();
            asa_async::cp_async_wait<0>();
        }
        __syncthreads();
        const uint16_t* Ks = sm + (2 + 2 * stage) * TS;
        const uint16_t* Vs = Ks + TS;

        float s[8][4], dp[8][4];
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                s[nb][c] = 0.f;
                dp[nb][c] = 0.f;
            }
        }
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            uint32_t qa[4], oa[4];
            frag_a(Qs + warp * 16 * LD + ks * 16, LD, lane, qa);
            frag_a(Os + warp * 16 * LD + ks * 16, LD, lane, oa);
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                uint32_t kb[2], vb[2];
                frag_b_nk(Ks + nb * 8 * LD + ks * 16, LD, lane, kb);
                frag_b_nk(Vs + nb * 8 * LD + ks * 16, LD, lane, vb);
                mma16816(s[nb], qa, kb);   // S = Q·Kᵀ
                mma16816(dp[nb], oa, vb);  // dP = dO·Vᵀ
            }
        }
        const uint64_t bits0 = test ? asa_attn_row_bits(mrow0, words, kt) : ~0ull;
        const uint64_t bits1 = test ? asa_attn_row_bits(mrow1, words, kt) : ~0ull;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int r = c >> 1;
                const uint32_t i = static_cast<uint32_t>(r == 0 ? i0 : i1);
                const uint32_t j = k0 + nb * 8 + 2 * t + (c & 1);
                const bool ok = !test || asa_attn_allowed(r == 0 ? bits0 : bits1, k0, i, j);
                const float p = ok ? ex2(s[nb][c] * scale_log2 - lse2[r]) : 0.f;
                s[nb][c] = p * (dp[nb][c] - dii[r]) * scale;  // dS, scaled
            }
        }
        // dQ += dS·K
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            uint32_t sa[4];
            asa_attn_acc_to_frag_a(s[2 * kk], s[2 * kk + 1], sa);
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                uint32_t kb[2];
                frag_b_kn(Ks + kk * 16 * LD + nd * 8, LD, lane, kb);
                mma16816(acc[nd], sa, kb);
            }
        }
        __syncthreads();  // every warp is done with this stage before it is refilled
    }
    asa_async::cp_async_wait<0>();  // Q/dO too when the list was empty

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int i = r == 0 ? i0 : i1;
        if (i < T) {
            float* row = dq + head + static_cast<size_t>(i) * C;
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                float2* p = reinterpret_cast<float2*>(row + nd * 8 + 2 * t);
                float2 x = *p;
                x.x += acc[nd][2 * r];
                x.y += acc[nd][2 * r + 1];
                *p = x;
            }
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------------
// Backward, K-tile-major over the backward lists: dK, dV (and dQ by atomics when dq_atomic).
template <int D>
__device__ __forceinline__ void bwd_dkdv(const uint16_t* __restrict__ q,
                                         const uint16_t* __restrict__ k,
                                         const uint16_t* __restrict__ v,
                                         const uint16_t* __restrict__ dout,
                                         const float* __restrict__ lse,
                                         const float* __restrict__ di, float* __restrict__ dq,
                                         float* __restrict__ dk, float* __restrict__ dv,
                                         const uint32_t* __restrict__ mask,
                                         const uint32_t* __restrict__ list_count,
                                         const uint32_t* __restrict__ lists, int T, int H, int Hm,
                                         float scale_log2, float scale, int dq_atomic) {
#if ASA_SM80_CODE
    constexpr int LD = D + ASA_ATTN_PAD;
    constexpr int LDS = TILE + ASA_ATTN_PAD;  // dS tile
    constexpr int KS = D / 16;
    constexpr int ND = D / 8;
    constexpr int QS = D == 128 ? 32 : 64;  // queries per register sub-block (register budget)
    constexpr int QN = QS / 8;
    constexpr int TS = TILE * LD;
    constexpr int STAGES = static_cast<int>(asa_attn_stages(ASA_ATTN_KIND_BWD_DKDV, D));
    static_assert(STAGES == 1 || STAGES == 2, "one or two stages");
    ASA_DYNAMIC_SMEM(asa_attn_smem);
    uint16_t* const sm = reinterpret_cast<uint16_t*>(asa_attn_smem);
    const uint16_t* Ks = sm;
    const uint16_t* Vs = sm + TS;
    // Stage s: Q at (2 + 2s)·TS, dO at (3 + 2s)·TS.
    uint16_t* Ss = sm + (2 + 2 * STAGES) * TS;                     // dS, [query][key]
    uint32_t* Ms = reinterpret_cast<uint32_t*>(Ss + TILE * LDS);  // mask words [query][2]
    float* Ls = reinterpret_cast<float*>(Ms + 2 * TILE);          // lse·log2(e)
    float* Dis = Ls + TILE;                                       // Di

    const int nt = (T + TILE - 1) / TILE;
    const int kt = static_cast<int>(blockIdx.x);  // low k-tiles have the longest lists: first
    const int h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5;
    const uint32_t lane = tid & 31, g = lane >> 2, t = lane & 3;
    const size_t C = static_cast<size_t>(H) * D;
    const size_t head = static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * D;
    const int k0 = kt * TILE;
    const int hm = Hm == 1 ? 0 : h;
    const uint32_t words = (T + 31) / 32;
    const size_t lrow = (static_cast<size_t>(b) * H + h) * T;
    const size_t grp = (static_cast<size_t>(b) * Hm + hm) * nt + kt;
    const int count = lists != nullptr ? static_cast<int>(list_count[grp]) : nt - kt;
    auto issue_qo = [&](int n, int st) {
        int qt;
        bool partial;
        list_entry(lists, grp * nt, n, kt, kt, mask != nullptr, &qt, &partial);
        copy_tile_pair<D>(sm + (2 + 2 * st) * TS, sm + (3 + 2 * st) * TS, q, dout, head, C,
                          qt * TILE, T, tid);
    };

    copy_tile_pair<D>(sm, sm + TS, k, v, head, C, k0, T, tid);
    asa_async::cp_async_commit();
    if (STAGES == 2 && count > 0) {
        issue_qo(0, 0);
        asa_async::cp_async_commit();
    }

    const int j0 = k0 + warp * 16 + static_cast<int>(g);  // this lane's key rows j0, j0 + 8

    float dka[ND][4], dva[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            dka[nd][c] = 0.f;
            dva[nd][c] = 0.f;
        }
    }

    for (int n = 0; n < count; ++n) {
        int qt;
        bool partial;
        list_entry(lists, grp * nt, n, kt, kt, mask != nullptr, &qt, &partial);
        const int q0 = qt * TILE;
        const bool test = asa_attn_needs_test(partial, kt, T);
        const bool use_mask = test && mask != nullptr;
        int stage = 0;
        if (STAGES == 2) {  // prefetch q-tile n + 1 into the stage iteration n − 1 finished with
            stage = n & 1;
            if (n + 1 < count) {
                issue_qo(n + 1, (n + 1) & 1);
            }
            asa_async::cp_async_commit();
        } else {  // one stage: the previous iteration's closing barrier freed it
            issue_qo(n, 0);
            asa_async::cp_async_commit();
        }
        // The q-tile's lse, Di and mask words: plain loads into buffers the previous
        // iteration's closing barrier freed.
        if (tid < TILE) {
            const int i = q0 + tid;
            Ls[tid] = i < T ? lse[lrow + i] * LOG2E : INFINITY;  // rows past T: P = 0
            Dis[tid] = i < T ? di[lrow + i] : 0.f;
        }
        if (use_mask) {
            // THREADS == 2·TILE: thread = (query row, word of the k-tile's pair).
            const int r = tid >> 1, w = tid & 1;
            const int i = q0 + r;
            const uint32_t wi = 2u * kt + w;
            Ms[tid] = (i < T && wi < words)
                          ? mask[((static_cast<size_t>(b) * Hm + hm) * T + i) * words + wi]
                          : 0u;
        }
        if (STAGES == 2) {
            asa_async::cp_async_wait<1>();
        } else {
            asa_async::cp_async_wait<0>();
        }
        __syncthreads();
        const uint16_t* Qs = sm + (2 + 2 * stage) * TS;
        const uint16_t* Os = Qs + TS;  // dO

#pragma unroll 1
        for (int sub = 0; sub < TILE / QS; ++sub) {
            const int qs0 = sub * QS;
            float st[QN][4], dpt[QN][4];  // Sᵀ then P; dPᵀ then dSᵀ (rows = keys)
#pragma unroll
            for (int nb = 0; nb < QN; ++nb) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    st[nb][c] = 0.f;
                    dpt[nb][c] = 0.f;
                }
            }
            // Partly unrolled: a full unroll lets the compiler hoist every K/V fragment of the
            // k-loop at once, which spills for D = 128 next to the dK/dV accumulators.
#pragma unroll 2
            for (int ks = 0; ks < KS; ++ks) {
                uint32_t ka[4], va[4];
                frag_a(Ks + warp * 16 * LD + ks * 16, LD, lane, ka);
                frag_a(Vs + warp * 16 * LD + ks * 16, LD, lane, va);
#pragma unroll
                for (int nb = 0; nb < QN; ++nb) {
                    uint32_t qb[2], ob[2];
                    frag_b_nk(Qs + (qs0 + nb * 8) * LD + ks * 16, LD, lane, qb);
                    frag_b_nk(Os + (qs0 + nb * 8) * LD + ks * 16, LD, lane, ob);
                    mma16816(st[nb], ka, qb);   // Sᵀ = K·Qᵀ
                    mma16816(dpt[nb], va, ob);  // dPᵀ = V·dOᵀ
                }
            }
#pragma unroll
            for (int nb = 0; nb < QN; ++nb) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const uint32_t jl = warp * 16 + g + 8 * (c >> 1);  // key within the tile
                    const int ql = qs0 + nb * 8 + 2 * static_cast<int>(t) + (c & 1);
                    const uint32_t i = static_cast<uint32_t>(q0 + ql);
                    bool ok = true;
                    if (test) {
                        ok = k0 + jl <= i &&
                             (!use_mask || ((Ms[2 * ql + (jl >> 5)] >> (jl & 31)) & 1u) != 0);
                    }
                    const float p = ok ? ex2(st[nb][c] * scale_log2 - Ls[ql]) : 0.f;
                    const float ds = p * (dpt[nb][c] - Dis[ql]) * scale;
                    st[nb][c] = p;
                    dpt[nb][c] = ds;
                    if (dq_atomic != 0) {
                        Ss[ql * LDS + jl] = asa_bf16_rn_bits(ds);
                    }
                }
            }
            // dV += Pᵀ·dO ; dK += dSᵀ·Q
#pragma unroll
            for (int kk = 0; kk < QS / 16; ++kk) {
                uint32_t pa[4], sa[4];
                asa_attn_acc_to_frag_a(st[2 * kk], st[2 * kk + 1], pa);
                asa_attn_acc_to_frag_a(dpt[2 * kk], dpt[2 * kk + 1], sa);
#pragma unroll
                for (int nd = 0; nd < ND; ++nd) {
                    uint32_t ob[2], qb[2];
                    frag_b_kn(Os + (qs0 + kk * 16) * LD + nd * 8, LD, lane, ob);
                    frag_b_kn(Qs + (qs0 + kk * 16) * LD + nd * 8, LD, lane, qb);
                    mma16816(dva[nd], pa, ob);
                    mma16816(dka[nd], sa, qb);
                }
            }
        }

        if (dq_atomic != 0) {
            __syncthreads();  // the whole dS tile is in Ss
            // dQ(16 queries of this warp × D) += dS·K, in 64-column chunks (register budget).
#pragma unroll 1
            for (int dc = 0; dc < D / 64; ++dc) {
                float qa[8][4];
#pragma unroll
                for (int nd = 0; nd < 8; ++nd) {
                    qa[nd][0] = qa[nd][1] = qa[nd][2] = qa[nd][3] = 0.f;
                }
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) {
                    uint32_t sa[4];
                    frag_a(Ss + warp * 16 * LDS + kk * 16, LDS, lane, sa);
#pragma unroll
                    for (int nd = 0; nd < 8; ++nd) {
                        uint32_t kb[2];
                        frag_b_kn(Ks + kk * 16 * LD + dc * 64 + nd * 8, LD, lane, kb);
                        mma16816(qa[nd], sa, kb);
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int i = q0 + warp * 16 + static_cast<int>(g) + 8 * r;
                    if (i < T) {
                        float* row = dq + head + static_cast<size_t>(i) * C + dc * 64;
#pragma unroll
                        for (int nd = 0; nd < 8; ++nd) {
                            atomicAdd(row + nd * 8 + 2 * t, qa[nd][2 * r]);
                            atomicAdd(row + nd * 8 + 2 * t + 1, qa[nd][2 * r + 1]);
                        }
                    }
                }
            }
        }
        __syncthreads();  // Qs/Os of this stage, Ss, Ms, Ls, Dis are free for the next q-tile
    }
    asa_async::cp_async_wait<0>();  // K/V too when the list was empty

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int j = j0 + 8 * r;
        if (j < T) {
            float* krow = dk + head + static_cast<size_t>(j) * C;
            float* vrow = dv + head + static_cast<size_t>(j) * C;
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                float2* pk = reinterpret_cast<float2*>(krow + nd * 8 + 2 * t);
                float2* pv = reinterpret_cast<float2*>(vrow + nd * 8 + 2 * t);
                float2 xk = *pk, xv = *pv;
                xk.x += dka[nd][2 * r];
                xk.y += dka[nd][2 * r + 1];
                xv.x += dva[nd][2 * r];
                xv.y += dva[nd][2 * r + 1];
                *pk = xk;
                *pv = xv;
            }
        }
    }
#endif
}

}  // namespace asa_attn

// ---- preprocessing ----

// Classes of every (q-tile, k-tile) block of group blockIdx.x = b·Hm + hm, q-tile blockIdx.y:
// classes[(group·nt + qt)·nt + kt] (u8, ASA_ATTN_EMPTY/FULL/PARTIAL). mask null = causal only.
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_tile_classify(const uint32_t* __restrict__ mask, uint8_t* __restrict__ classes, int T,
                   int groups) {
    const int grp = blockIdx.x;
    const int qt = blockIdx.y;
    if (grp >= groups) {
        return;
    }
    const int nt = (T + ASA_ATTN_TILE - 1) / ASA_ATTN_TILE;
    const uint32_t words = (T + 31) / 32;
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const uint32_t* rows =
        mask != nullptr ? mask + static_cast<size_t>(grp) * T * words : nullptr;
    uint8_t* out = classes + (static_cast<size_t>(grp) * nt + qt) * nt;
    for (int kt = warp; kt < nt; kt += ASA_ATTN_WARPS) {  // warp-uniform loop
        if (kt > qt) {
            if (lane == 0) {
                out[kt] = static_cast<uint8_t>(ASA_ATTN_EMPTY);
            }
            continue;
        }
        bool any = false, all = true;
#pragma unroll
        for (int rr = 0; rr < ASA_ATTN_TILE / 32; ++rr) {
            const int i = qt * ASA_ATTN_TILE + lane + 32 * rr;
            if (i < T) {
                const uint64_t bits = asa_attn_row_bits(
                    rows != nullptr ? rows + static_cast<size_t>(i) * words : nullptr, words, kt);
                bool a, l;
                asa_attn_row_vote(bits, T, i, kt, &a, &l);
                any = any || a;
                all = all && l;
            }
        }
        any = __any_sync(0xffffffffu, any);
        all = __all_sync(0xffffffffu, all);
        if (lane == 0) {
            out[kt] = static_cast<uint8_t>(asa_attn_class(any, all));
        }
    }
}

// Per-(group, tile) lists from the classes: thread (group, x) writes the forward list of q-tile
// x to fwd_list[(group·nt + x)·nt ..] with its length in fwd_count[group·nt + x], and the
// backward list of k-tile x likewise (ascending; entry = tile << 1 | partial).
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_tile_lists(const uint8_t* __restrict__ classes, uint32_t* __restrict__ fwd_count,
                uint32_t* __restrict__ fwd_list, uint32_t* __restrict__ bwd_count,
                uint32_t* __restrict__ bwd_list, int T, int groups) {
    const uint32_t nt = (T + ASA_ATTN_TILE - 1) / ASA_ATTN_TILE;
    const size_t idx = static_cast<size_t>(blockIdx.x) * ASA_ATTN_THREADS + threadIdx.x;
    if (idx >= static_cast<size_t>(groups) * nt) {
        return;
    }
    const size_t grp = idx / nt;
    const uint32_t x = static_cast<uint32_t>(idx % nt);
    const uint8_t* cls = classes + grp * nt * nt;
    fwd_count[idx] = asa_attn_fwd_list(cls, nt, x, fwd_list + idx * nt);
    bwd_count[idx] = asa_attn_bwd_list(cls, nt, x, bwd_list + idx * nt);
}

// ---- forward ----

// asa-lth: hot attn_fwd_d64
// asa-lth: sass-expect attn_fwd_d64 HMMA.16816.F32.BF16
// asa-lth: sass-expect attn_fwd_d64 LDSM
// asa-lth: sass-expect attn_fwd_d64 LDGSTS
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_fwd_d64(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
             const uint16_t* __restrict__ v, float* __restrict__ out, float* __restrict__ lse,
             const uint32_t* __restrict__ mask, const uint32_t* __restrict__ list_count,
             const uint32_t* __restrict__ lists, int T, int H, int Hm, float scale_log2) {
    asa_attn::fwd<64>(q, k, v, out, lse, mask, list_count, lists, T, H, Hm, scale_log2);
}

// asa-lth: hot attn_fwd_d128
// asa-lth: sass-expect attn_fwd_d128 HMMA.16816.F32.BF16
// asa-lth: sass-expect attn_fwd_d128 LDSM
// asa-lth: sass-expect attn_fwd_d128 LDGSTS
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_fwd_d128(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
              const uint16_t* __restrict__ v, float* __restrict__ out, float* __restrict__ lse,
              const uint32_t* __restrict__ mask, const uint32_t* __restrict__ list_count,
              const uint32_t* __restrict__ lists, int T, int H, int Hm, float scale_log2) {
    asa_attn::fwd<128>(q, k, v, out, lse, mask, list_count, lists, T, H, Hm, scale_log2);
}

// ---- backward ----

// Di[(b·H + h)·T + i] = Σ_d dout·out over head h of row (b, i); one warp per (b, h, i).
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_bwd_di(const float* __restrict__ dout, const float* __restrict__ out, float* __restrict__ di,
            int B, int T, int H, int D) {
    const size_t row = static_cast<size_t>(blockIdx.x) * ASA_ATTN_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    const size_t total = static_cast<size_t>(B) * H * T;
    if (row >= total) {
        return;  // whole warp
    }
    const size_t b = row / (static_cast<size_t>(H) * T);
    const size_t h = (row / T) % H;
    const size_t i = row % T;
    const size_t C = static_cast<size_t>(H) * D;
    const size_t base = (b * T + i) * C + h * D;
    float acc = 0.f;
    for (int d = lane; d < D; d += 32) {
        acc += dout[base + d] * out[base + d];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        acc += __shfl_xor_sync(0xffffffffu, acc, off);
    }
    if (lane == 0) {
        di[row] = acc;
    }
}

// asa-lth: hot attn_bwd_dkdv_d64
// asa-lth: sass-expect attn_bwd_dkdv_d64 HMMA.16816.F32.BF16
// asa-lth: sass-expect attn_bwd_dkdv_d64 LDSM
// asa-lth: sass-expect attn_bwd_dkdv_d64 LDGSTS
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_bwd_dkdv_d64(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                  const uint16_t* __restrict__ v, const uint16_t* __restrict__ dout,
                  const float* __restrict__ lse, const float* __restrict__ di,
                  float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv,
                  const uint32_t* __restrict__ mask, const uint32_t* __restrict__ list_count,
                  const uint32_t* __restrict__ lists, int T, int H, int Hm, float scale_log2,
                  float scale, int dq_atomic) {
    asa_attn::bwd_dkdv<64>(q, k, v, dout, lse, di, dq, dk, dv, mask, list_count, lists, T, H, Hm,
                           scale_log2, scale, dq_atomic);
}

// asa-lth: hot attn_bwd_dkdv_d128
// asa-lth: sass-expect attn_bwd_dkdv_d128 HMMA.16816.F32.BF16
// asa-lth: sass-expect attn_bwd_dkdv_d128 LDSM
// asa-lth: sass-expect attn_bwd_dkdv_d128 LDGSTS
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_bwd_dkdv_d128(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                   const uint16_t* __restrict__ v, const uint16_t* __restrict__ dout,
                   const float* __restrict__ lse, const float* __restrict__ di,
                   float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv,
                   const uint32_t* __restrict__ mask, const uint32_t* __restrict__ list_count,
                   const uint32_t* __restrict__ lists, int T, int H, int Hm, float scale_log2,
                   float scale, int dq_atomic) {
    asa_attn::bwd_dkdv<128>(q, k, v, dout, lse, di, dq, dk, dv, mask, list_count, lists, T, H,
                            Hm, scale_log2, scale, dq_atomic);
}

// asa-lth: hot attn_bwd_dq_d64
// asa-lth: sass-expect attn_bwd_dq_d64 HMMA.16816.F32.BF16
// asa-lth: sass-expect attn_bwd_dq_d64 LDSM
// asa-lth: sass-expect attn_bwd_dq_d64 LDGSTS
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_bwd_dq_d64(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                const uint16_t* __restrict__ v, const uint16_t* __restrict__ dout,
                const float* __restrict__ lse, const float* __restrict__ di,
                float* __restrict__ dq, const uint32_t* __restrict__ mask,
                const uint32_t* __restrict__ list_count, const uint32_t* __restrict__ lists, int T,
                int H, int Hm, float scale_log2, float scale) {
    asa_attn::bwd_dq<64>(q, k, v, dout, lse, di, dq, mask, list_count, lists, T, H, Hm,
                         scale_log2, scale);
}

// asa-lth: hot attn_bwd_dq_d128
// asa-lth: sass-expect attn_bwd_dq_d128 HMMA.16816.F32.BF16
// asa-lth: sass-expect attn_bwd_dq_d128 LDSM
// asa-lth: sass-expect attn_bwd_dq_d128 LDGSTS
extern "C" __global__ void __launch_bounds__(ASA_ATTN_THREADS)
attn_bwd_dq_d128(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                 const uint16_t* __restrict__ v, const uint16_t* __restrict__ dout,
                 const float* __restrict__ lse, const float* __restrict__ di,
                 float* __restrict__ dq, const uint32_t* __restrict__ mask,
                 const uint32_t* __restrict__ list_count, const uint32_t* __restrict__ lists,
                 int T, int H, int Hm, float scale_log2, float scale) {
    asa_attn::bwd_dq<128>(q, k, v, dout, lse, di, dq, mask, list_count, lists, T, H, Hm,
                          scale_log2, scale);
}

// The layout probe: one warp executes one dense m16n8k16 bf16 mma on per-lane registers from the
// host (a: 32 × 4 u32, b: 32 × 2 u32, c and d: 32 × 4 f32), so a GPU test can compare every
// output register with the PTX-ISA warp emulator (src/backend/cuda/mma_dense_emu.rs).
// asa-lth: sass-expect attn_mma_probe HMMA.16816.F32.BF16
extern "C" __global__ void __launch_bounds__(32)
attn_mma_probe(const uint32_t* __restrict__ a, const uint32_t* __restrict__ b,
               const float* __restrict__ c, float* __restrict__ d) {
#if ASA_SM80_CODE
    const uint32_t lane = threadIdx.x & 31;
    uint32_t ra[4], rb[2];
    float acc[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        ra[j] = a[lane * 4 + j];
        acc[j] = c[lane * 4 + j];
    }
    rb[0] = b[lane * 2];
    rb[1] = b[lane * 2 + 1];
    asa_attn::mma16816(acc, ra, rb);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        d[lane * 4 + j] = acc[j];
    }
#endif
}
