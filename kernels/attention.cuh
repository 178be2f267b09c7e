// attention.cuh — lane layouts of dense mma.sync m16n8k16 (bf16 operands, f32 accumulators),
// the fragment loaders and accumulator repacking the fused attention kernels use, and the mask
// tile classification / tile-list logic, as __host__ __device__ helpers.
//
// kernels/attention.cu uses these for everything a lane loads, keeps or decides; build.rs also
// compiles them for the host (kernels/host_helpers.cpp includes this header, which then defines
// the `asa_host_attn_*` extern "C" wrappers at the end of this file), so tests/attention_fused.rs
// can feed the helpers' fragments to the PTX-ISA warp emulator
// (src/backend/cuda/mma_dense_emu.rs) and compare with a plain matmul, and can hold the tile
// classification to src/mask/tiles.rs — without a GPU (DESIGN.md §6.2). Fragment tables:
// shared/PTX-FACTS.md, "Dense mma.sync.aligned.m16n8k16" (all [ISA] items).
//
// Notation: lane l, g = l >> 2, t = l & 3. A tile is "row-major with leading dimension ld" when
// element (r, c) sits at s[r·ld + c] (16-bit elements). Tiles are 64 × 64 (ASA_ATTN_TILE) so the
// mask bits of one query row in one k-tile are exactly one aligned pair of u32 words, and the
// classes match src/mask/tiles.rs with tile = 64 (= backend::cpu::attention::TILE).
#pragma once

#include "common.cuh"

#include <cstring>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
// Full unroll of the fixed-trip fragment loops (a host compiler does not know the pragma).
#define ASA_ATTN_UNROLL _Pragma("unroll")
#else
#define ASA_ATTN_UNROLL
#endif

// Queries per q-tile = keys per k-tile. Must stay 64 (mask word pairs; the CPU twin's TILE).
#define ASA_ATTN_TILE 64
// Warps per block of the attention kernels (each owns 16 rows of the 64-row tile).
#define ASA_ATTN_WARPS 4
#define ASA_ATTN_THREADS (32 * ASA_ATTN_WARPS)
// 16-bit elements of padding after each shared-memory tile row: a row of D + 8 elements is
// D/2 + 4 words, so the 8 row groups g of a fragment load start 4 banks apart (conflict-free).
#define ASA_ATTN_PAD 8

// Tile classes (values of backend TileClass) and the list entry encoding
// `tile << 1 | (class == partial)` (TileLists::packed).
#define ASA_ATTN_EMPTY 0u
#define ASA_ATTN_FULL 1u
#define ASA_ATTN_PARTIAL 2u

// Kernel kinds for asa_attn_smem_bytes.
#define ASA_ATTN_KIND_FWD 0u
#define ASA_ATTN_KIND_BWD_DQ 1u
#define ASA_ATTN_KIND_BWD_DKDV 2u

// ---- dense m16n8k16 fragment tables [ISA §9.7.14.5.8] ----

// A (16×16, row): half h (0 = low 16 bits) of register j (0..3) holds (row, col).
ASA_HD_INLINE void asa_attn_a_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* row,
                                  uint32_t* col) {
    const uint32_t g = lane >> 2, t = lane & 3;
    *row = g + 8 * (j & 1);
    *col = 2 * t + 8 * (j >> 1) + h;
}

// B (16×8, col): half h of register j (0..1) holds (k, n).
ASA_HD_INLINE void asa_attn_b_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* k,
                                  uint32_t* n) {
    const uint32_t g = lane >> 2, t = lane & 3;
    *k = 2 * t + 8 * j + h;
    *n = g;
}

// C/D (16×8, f32): accumulator i (0..3) holds (row, col).
ASA_HD_INLINE void asa_attn_c_pos(uint32_t lane, uint32_t i, uint32_t* row, uint32_t* col) {
    const uint32_t g = lane >> 2, t = lane & 3;
    *row = g + 8 * (i >> 1);
    *col = 2 * t + (i & 1);
}

// Which accumulator feeds half h of A register j when two adjacent 16×8 accumulator tiles
// (columns 0..7 and 8..15 of a 16×16 product) are reused as the A operand of the next MMA (the
// flash-attention P·V trick): tile `*ntile` (0 or 1), accumulator `*acc`. Same lane: the row of
// A register j is g + 8·(j & 1), its column 8·(j >> 1) + 2t + h, exactly where accumulator
// 2·(j & 1) + h of tile j >> 1 sits.
ASA_HD_INLINE void asa_attn_acc_to_a(uint32_t j, uint32_t h, uint32_t* ntile, uint32_t* acc) {
    *ntile = j >> 1;
    *acc = 2 * (j & 1) + h;
}

// ---- bf16 packing ----

// f32 → bf16 bits, round to nearest even (NaN stays a quiet NaN). Host twin of the device cvt.
ASA_HD_INLINE uint16_t asa_bf16_rn_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
#else
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return static_cast<uint16_t>((u >> 16) | 0x40u);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
#endif
}

// Two f32 → one register of two bf16: `lo` in bits 15:0 (the lower-index element).
ASA_HD_INLINE uint32_t asa_bf16x2_rn(float lo, float hi) {
#if defined(__CUDA_ARCH__)
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo = low half
    return static_cast<uint32_t>(__bfloat16_as_ushort(v.x)) |
           (static_cast<uint32_t>(__bfloat16_as_ushort(v.y)) << 16);
#else
    return static_cast<uint32_t>(asa_bf16_rn_bits(lo)) |
           (static_cast<uint32_t>(asa_bf16_rn_bits(hi)) << 16);
#endif
}

// Two consecutive 16-bit elements p[0] (low half), p[1] as one register. p must be 4-byte
// aligned on the device (every caller passes an even element offset of an aligned tile).
ASA_HD_INLINE uint32_t asa_attn_ld2(const uint16_t* p) {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const uint32_t*>(p);
#else
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 16);
#endif
}

// ---- fragment loaders (shared memory on the device, host arrays in tests) ----

// A fragment of the 16×16 tile at s, row-major with leading dimension ld (even).
ASA_HD_INLINE void asa_attn_frag_a(const uint16_t* s, uint32_t ld, uint32_t lane,
                                   uint32_t (&a)[4]) {
ASA_ATTN_UNROLL
    for (uint32_t j = 0; j < 4; ++j) {
        uint32_t r, c;
        asa_attn_a_pos(lane, j, 0, &r, &c);
        a[j] = asa_attn_ld2(s + r * ld + c);
    }
}

// B fragment of a 16(k)×8(n) operand stored n-major: element (k, n) at s[n·ld + k] (e.g. K
// row-major for S = Q·Kᵀ: n = key, k = head-dim index). One aligned 32-bit load per register.
ASA_HD_INLINE void asa_attn_frag_b_nk(const uint16_t* s, uint32_t ld, uint32_t lane,
                                      uint32_t (&b)[2]) {
ASA_ATTN_UNROLL
    for (uint32_t j = 0; j < 2; ++j) {
        uint32_t k, n;
        asa_attn_b_pos(lane, j, 0, &k, &n);
        b[j] = asa_attn_ld2(s + n * ld + k);
    }
}

// B fragment of a 16(k)×8(n) operand stored k-major: element (k, n) at s[k·ld + n] (e.g. V
// row-major for O = P·V: k = key, n = head-dim index). Two 16-bit loads per register.
ASA_HD_INLINE void asa_attn_frag_b_kn(const uint16_t* s, uint32_t ld, uint32_t lane,
                                      uint32_t (&b)[2]) {
ASA_ATTN_UNROLL
    for (uint32_t j = 0; j < 2; ++j) {
        uint32_t k0, n0, k1, n1;
        asa_attn_b_pos(lane, j, 0, &k0, &n0);
        asa_attn_b_pos(lane, j, 1, &k1, &n1);
        b[j] = static_cast<uint32_t>(s[k0 * ld + n0]) |
               (static_cast<uint32_t>(s[k1 * ld + n1]) << 16);
    }
}

// A fragment (rounded to bf16) from two adjacent f32 accumulator tiles c0 (columns 0..7) and
// c1 (columns 8..15) of this lane; see asa_attn_acc_to_a.
ASA_HD_INLINE void asa_attn_acc_to_frag_a(const float (&c0)[4], const float (&c1)[4],
                                          uint32_t (&a)[4]) {
ASA_ATTN_UNROLL
    for (uint32_t j = 0; j < 4; ++j) {
        uint32_t nt, i;
        asa_attn_acc_to_a(j, 0, &nt, &i);
        const float* c = nt == 0 ? c0 : c1;
        a[j] = asa_bf16x2_rn(c[i], c[i + 1]);
    }
}

// ---- device operand loads: ldmatrix addressing and cp.async tile chunks ----
// The kernels load the fragments above with ldmatrix (kernels/async_copy.cuh) instead of the
// scalar loaders; each helper below gives the element offset, from the tile pointer the scalar
// loader takes, of the row address lane `lane` passes, so that ldmatrix returns exactly the
// registers of the scalar loader (tests/attention_fused.rs emulates ldmatrix on these addresses
// and compares). Matrix m = lane / 8, row r = lane % 8 of it. Every offset is a multiple of 8
// elements (16 bytes) when ld is, as ldmatrix requires.

// asa_attn_frag_a via ldmatrix.x4: matrix m covers rows 8·(m & 1).., columns 8·(m >> 1)..
// (register j of the A fragment is matrix j).
ASA_HD_INLINE uint32_t asa_attn_ldsm_a_off(uint32_t lane, uint32_t ld) {
    const uint32_t m = (lane >> 3) & 3u, r = lane & 7u;
    return (r + 8u * (m & 1u)) * ld + 8u * (m >> 1);
}

// asa_attn_frag_b_nk via ldmatrix.x2: matrix m is the 8 n-rows × k columns 8m..8m+7 (lane l
// receives n = l/4, k = 8m + 2(l%4) + {0, 1}: register m of the B fragment).
ASA_HD_INLINE uint32_t asa_attn_ldsm_b_nk_off(uint32_t lane, uint32_t ld) {
    const uint32_t m = (lane >> 3) & 1u, r = lane & 7u;
    return r * ld + 8u * m;
}

// asa_attn_frag_b_kn via ldmatrix.x2.trans: matrix m is k-rows 8m..8m+7 × the 8 n columns;
// transposed, lane l receives column n = l/4, rows k = 8m + 2(l%4) + {0, 1}.
ASA_HD_INLINE uint32_t asa_attn_ldsm_b_kn_off(uint32_t lane, uint32_t ld) {
    const uint32_t m = (lane >> 3) & 1u, r = lane & 7u;
    return (r + 8u * m) * ld;
}

// 16-byte chunk c (8 bf16) of a 64 × D tile copied by cp.async: tile row *row, columns
// *col..*col+7. Thread tid copies chunks tid, tid + THREADS, ... (D/16 of them); in shared memory
// the chunk goes to row·(D + PAD) + col (rows are 16-byte aligned: (D + PAD)·2 = 144 or 272).
ASA_HD_INLINE void asa_attn_chunk(uint32_t D, uint32_t c, uint32_t* row, uint32_t* col) {
    const uint32_t per_row = D / 8u;
    *row = c / per_row;
    *col = 8u * (c % per_row);
}

// Pipeline stages of the operand tiles a kernel kind streams (K/V for fwd and bwd_dq, Q/dO for
// bwd_dkdv): double-buffered where shared memory allows two blocks per SM on an A100 (164 KiB);
// single-buffered (copies still asynchronous, not overlapped with compute) otherwise.
ASA_HD_INLINE constexpr uint32_t asa_attn_stages(uint32_t kind, uint32_t D) {
    return (kind == ASA_ATTN_KIND_FWD || D == 64u) ? 2u : 1u;
}

// ---- mask bits and tile classification (DESIGN.md §3; src/mask/tiles.rs) ----

// The 64 mask bits of one query row for k-tile kt (bit x = key 64·kt + x). `row` points at the
// row's `words` = ⌈T/32⌉ u32; the second word does not exist when 2·kt + 1 == words (T tail),
// and reads as 0. A null row (no mask) allows everything.
ASA_HD_INLINE uint64_t asa_attn_row_bits(const uint32_t* row, uint32_t words, uint32_t kt) {
    if (row == nullptr) {
        return ~0ull;
    }
    const uint64_t lo = row[2 * kt];
    const uint64_t hi = 2 * kt + 1 < words ? row[2 * kt + 1] : 0u;
    return lo | (hi << 32);
}

// The low n bits set (n ≤ 64).
ASA_HD_INLINE uint64_t asa_attn_low_bits(uint32_t n) {
    return n >= 64 ? ~0ull : ((1ull << n) - 1ull);
}

// Whether query i may attend key j (k0 ≤ j < k0 + 64) given the row's k-tile bits: the mask
// bit ∧ causality (j ≤ i). Keys ≥ T never pass for a real query (j ≤ i < T).
ASA_HD_INLINE bool asa_attn_allowed(uint64_t bits, uint32_t k0, uint32_t i, uint32_t j) {
    return j <= i && ((bits >> (j - k0)) & 1ull) != 0;
}

// What query row i (i < T, in q-tile qt ≥ kt) says about block (qt, kt): `any` = some in-range
// causal key is allowed, `all` = every in-range key of the k-tile is allowed (and causal).
ASA_HD_INLINE void asa_attn_row_vote(uint64_t bits, uint32_t T, uint32_t i, uint32_t kt,
                                     bool* any, bool* all) {
    const uint32_t k0 = kt * ASA_ATTN_TILE;
    const uint32_t k1 = (k0 + ASA_ATTN_TILE < T) ? k0 + ASA_ATTN_TILE : T;
    const uint32_t kc = (k1 < i + 1) ? k1 : i + 1;  // causal end (exclusive), > k0 since i ≥ k0
    *any = (bits & asa_attn_low_bits(kc - k0)) != 0;
    const uint64_t full = asa_attn_low_bits(k1 - k0);
    *all = kc == k1 && (bits & full) == full;
}

// The class of an (any, all) vote.
ASA_HD_INLINE uint32_t asa_attn_class(bool any, bool all) {
    return !any ? ASA_ATTN_EMPTY : (all ? ASA_ATTN_FULL : ASA_ATTN_PARTIAL);
}

// Class of block (qt, kt) of one (b, mask head), serially over its rows (the device kernel
// votes the same per-row helper across a warp). `rows` = the group's T × words mask words, or
// null for plain causal attention. Blocks above the diagonal are Empty.
ASA_HD_INLINE uint32_t asa_attn_block_class(const uint32_t* rows, uint32_t words, uint32_t T,
                                            uint32_t qt, uint32_t kt) {
    if (kt > qt) {
        return ASA_ATTN_EMPTY;
    }
    const uint32_t q0 = qt * ASA_ATTN_TILE;
    const uint32_t q1 = (q0 + ASA_ATTN_TILE < T) ? q0 + ASA_ATTN_TILE : T;
    bool any = false, all = true;
    for (uint32_t i = q0; i < q1; ++i) {
        const uint64_t bits =
            asa_attn_row_bits(rows == nullptr ? nullptr : rows + static_cast<size_t>(i) * words,
                              words, kt);
        bool a, l;
        asa_attn_row_vote(bits, T, i, kt, &a, &l);
        any = any || a;
        all = all && l;
    }
    return asa_attn_class(any, all);
}

// Forward list of q-tile qt: the non-empty k-tiles kt ≤ qt, ascending, as kt << 1 | partial,
// written to out[0..n); returns n. `cls` = the group's nt × nt classes (q-tile-major).
ASA_HD_INLINE uint32_t asa_attn_fwd_list(const uint8_t* cls, uint32_t nt, uint32_t qt,
                                         uint32_t* out) {
    uint32_t n = 0;
    for (uint32_t kt = 0; kt <= qt; ++kt) {
        const uint32_t c = cls[static_cast<size_t>(qt) * nt + kt];
        if (c != ASA_ATTN_EMPTY) {
            out[n++] = (kt << 1) | (c == ASA_ATTN_PARTIAL ? 1u : 0u);
        }
    }
    return n;
}

// Backward list of k-tile kt: the non-empty q-tiles qt ≥ kt, ascending, same encoding.
ASA_HD_INLINE uint32_t asa_attn_bwd_list(const uint8_t* cls, uint32_t nt, uint32_t kt,
                                         uint32_t* out) {
    uint32_t n = 0;
    for (uint32_t qt = kt; qt < nt; ++qt) {
        const uint32_t c = cls[static_cast<size_t>(qt) * nt + kt];
        if (c != ASA_ATTN_EMPTY) {
            out[n++] = (qt << 1) | (c == ASA_ATTN_PARTIAL ? 1u : 0u);
        }
    }
    return n;
}

// Whether block (qt, kt) needs the per-element test in the kernels: partial blocks, and any
// block whose keys run past T (the last k-tile; only a Full diagonal block of one key can be
// both Full and cut short, and its padded keys must still be excluded).
ASA_HD_INLINE bool asa_attn_needs_test(bool partial, uint32_t kt, uint32_t T) {
    return partial || (kt + 1) * ASA_ATTN_TILE > T;
}

// ---- launch geometry ----

// Dynamic shared memory (bytes) of an attention kernel kind for head dim D (64 or 128):
// 64-row bf16 tiles with ASA_ATTN_PAD padding, S = asa_attn_stages(kind, D) — fwd: S × (K, V)
// (Q is staged in stage 1 before the loop); bwd_dq: Q, dO, S × (K, V); bwd_dkdv: K, V,
// S × (Q, dO), a 64×(64+pad) dS tile, the q-tile's mask words (64 × 2 u32) and its
// lse·log2(e) and Di (64 f32 each).
ASA_HD_INLINE uint32_t asa_attn_smem_bytes(uint32_t kind, uint32_t D) {
    const uint32_t tile = ASA_ATTN_TILE * (D + ASA_ATTN_PAD) * 2u;
    const uint32_t stages = asa_attn_stages(kind, D);
    switch (kind) {
        case ASA_ATTN_KIND_FWD:
            return 2u * stages * tile;
        case ASA_ATTN_KIND_BWD_DQ:
            return (2u + 2u * stages) * tile;
        case ASA_ATTN_KIND_BWD_DKDV:
            return (2u + 2u * stages) * tile + ASA_ATTN_TILE * (ASA_ATTN_TILE + ASA_ATTN_PAD) * 2u +
                   ASA_ATTN_TILE * 2u * 4u + 2u * ASA_ATTN_TILE * 4u;
        default:
            return 0u;
    }
}

// ---- host wrappers (only in the host build of kernels/host_helpers.cpp) ----
#if !defined(__CUDACC__) && !defined(ASA_SIMT_EMU)
extern "C" {

// TILE, WARPS, THREADS, PAD, EMPTY, FULL, PARTIAL: writes 7 values.
void asa_host_attn_constants(uint32_t* out) {
    const uint32_t c[7] = {ASA_ATTN_TILE,  ASA_ATTN_WARPS, ASA_ATTN_THREADS,
                           ASA_ATTN_PAD,   ASA_ATTN_EMPTY, ASA_ATTN_FULL,
                           ASA_ATTN_PARTIAL};
    for (int i = 0; i < 7; ++i) {
        out[i] = c[i];
    }
}
void asa_host_attn_a_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* row,
                                uint32_t* col) {
    asa_attn_a_pos(lane, j, h, row, col);
}
void asa_host_attn_b_pos(uint32_t lane, uint32_t j, uint32_t h, uint32_t* k,
                                uint32_t* n) {
    asa_attn_b_pos(lane, j, h, k, n);
}
void asa_host_attn_c_pos(uint32_t lane, uint32_t i, uint32_t* row, uint32_t* col) {
    asa_attn_c_pos(lane, i, row, col);
}
void asa_host_attn_frag_a(const uint16_t* s, uint32_t ld, uint32_t lane, uint32_t* a) {
    uint32_t r[4];
    asa_attn_frag_a(s, ld, lane, r);
    for (int j = 0; j < 4; ++j) {
        a[j] = r[j];
    }
}
void asa_host_attn_frag_b_nk(const uint16_t* s, uint32_t ld, uint32_t lane,
                                    uint32_t* b) {
    uint32_t r[2];
    asa_attn_frag_b_nk(s, ld, lane, r);
    b[0] = r[0];
    b[1] = r[1];
}
void asa_host_attn_frag_b_kn(const uint16_t* s, uint32_t ld, uint32_t lane,
                                    uint32_t* b) {
    uint32_t r[2];
    asa_attn_frag_b_kn(s, ld, lane, r);
    b[0] = r[0];
    b[1] = r[1];
}
void asa_host_attn_acc_to_frag_a(const float* c0, const float* c1, uint32_t* a) {
    const float x0[4] = {c0[0], c0[1], c0[2], c0[3]};
    const float x1[4] = {c1[0], c1[1], c1[2], c1[3]};
    uint32_t r[4];
    asa_attn_acc_to_frag_a(x0, x1, r);
    for (int j = 0; j < 4; ++j) {
        a[j] = r[j];
    }
}
uint16_t asa_host_bf16_rn(float x) { return asa_bf16_rn_bits(x); }
uint32_t asa_host_attn_block_class(const uint32_t* rows, uint32_t words, uint32_t T,
                                          uint32_t qt, uint32_t kt) {
    return asa_attn_block_class(rows, words, T, qt, kt);
}
uint32_t asa_host_attn_fwd_list(const uint8_t* cls, uint32_t nt, uint32_t qt,
                                       uint32_t* out) {
    return asa_attn_fwd_list(cls, nt, qt, out);
}
uint32_t asa_host_attn_bwd_list(const uint8_t* cls, uint32_t nt, uint32_t kt,
                                       uint32_t* out) {
    return asa_attn_bwd_list(cls, nt, kt, out);
}
uint32_t asa_host_attn_allowed(uint64_t bits, uint32_t k0, uint32_t i, uint32_t j) {
    return asa_attn_allowed(bits, k0, i, j) ? 1u : 0u;
}
uint32_t asa_host_attn_needs_test(uint32_t partial, uint32_t kt, uint32_t T) {
    return asa_attn_needs_test(partial != 0, kt, T) ? 1u : 0u;
}
uint32_t asa_host_attn_smem_bytes(uint32_t kind, uint32_t D) {
    return asa_attn_smem_bytes(kind, D);
}
uint32_t asa_host_attn_ldsm_off(uint32_t which, uint32_t lane, uint32_t ld) {
    switch (which) {
        case 0:
            return asa_attn_ldsm_a_off(lane, ld);
        case 1:
            return asa_attn_ldsm_b_nk_off(lane, ld);
        default:
            return asa_attn_ldsm_b_kn_off(lane, ld);
    }
}
void asa_host_attn_chunk(uint32_t D, uint32_t c, uint32_t* row, uint32_t* col) {
    asa_attn_chunk(D, c, row, col);
}
uint32_t asa_host_attn_stages(uint32_t kind, uint32_t D) { return asa_attn_stages(kind, D); }

}  // extern "C"
#endif
