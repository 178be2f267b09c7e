// compress24.cuh — prune + compress + reorder of a 2:4 weight in one pass, as __host__ __device__
// helpers: the whole per-thread body of the compress24 kernels (kernels/compress24.cu) lives
// here, so build.rs also compiles it for the host (kernels/host_helpers.cpp) and tests/
// compress24.rs runs it for every thread of random, tie-heavy matrices against the CPU path
// (Sparse24::<f32>::compress, half's f32 -> bf16/f16 rounding, Sparse24::mma_sp_metadata),
// without a GPU (DESIGN.md §6.2).
//
// Contract (DESIGN.md §3 "2:4 format"): W is N × K f32 row-major (out × in). Each aligned group
// of 4 along K keeps its 2 largest |w| (magnitude keys as in topk.cuh, so -0.0 and 0.0 tie;
// ties to the lower index: asa_two_four_keep). Output:
//   values — N × K/2 16-bit floats (bf16 or f16, rounded to nearest even from f32, exactly as
//            half::bf16::from_f32 / half::f16::from_f32), the two kept entries of each group in
//            index order, packed two per u32 (lower column in the low half), row-major: the
//            layout DeviceSparse24::upload produces;
//   meta   — the mma.sp-reordered words [N/16][ceil(K/64)][32] of asa_mma_sp_meta_word /
//            Sparse24::mma_sp_metadata, built straight from the u16s computed here (the
//            canonical u16 of row r, 16 columns 16u..16u+15: group q's nibble at bits 4q,
//            lower kept index in its low 2 bits).
// Work unit: one thread per metadata word (tile, pair, lane): rows g and g+8 of the 16-row
// tile × the u16 index u = 2·(2·pair + t/2) + t%2 of each, i.e. 2 × 16 dense columns → one
// word, 2 × 4 u32 of values. A word whose step is past the end (K/32 odd) is written as 0 and
// reads nothing. Every element of W is read by exactly one thread.
// Non-finite weights: each thread returns the lowest flat index of a NaN/Inf among its 32
// elements (ASA_COMPRESS24_NONE if none); the kernel atomicMin-s it into one u64 and the host
// reports Error::NonFinite for that index (what Sparse24::compress reports: the first one).
// Shapes (checked on the host): N % 16 == 0, K % 32 == 0, K > 0.
#pragma once

#include "common.cuh"
#include "topk.cuh"

// Threads per block of the compress24 kernels (src/backend/cuda/compress24.rs, BLOCK).
#define ASA_COMPRESS24_BLOCK 256
// "No non-finite element" (the initial value of the kernel's first-bad index).
#define ASA_COMPRESS24_NONE 0xFFFFFFFFFFFFFFFFull

// f32 bits -> bf16 bits, round to nearest even. NaN stays NaN (quiet); overflow rounds to Inf,
// as half::bf16::from_f32 does. Subnormals need no special case: bf16 keeps f32's exponent.
ASA_HD_INLINE uint32_t asa_f32_to_bf16_rne(uint32_t x) {
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) {
        return (x >> 16) | 0x0040u;
    }
    return (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
}

// f32 bits -> f16 bits, round to nearest even, with f16 subnormals and overflow to Inf, as
// half::f16::from_f32 (and the F16C instruction it may use) does. Integer-only, so host and
// device give the same bits whatever the compiler does with floating point.
ASA_HD_INLINE uint32_t asa_f32_to_f16_rne(uint32_t x) {
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) {  // NaN: quiet, keep the top payload bits
        return sign | 0x7E00u | ((a >> 13) & 0x3FFu);
    }
    if (a >= 0x477FF000u) {  // >= 65520 (halfway above the largest f16, 65504): Inf
        return sign | 0x7C00u;
    }
    if (a >= 0x38800000u) {  // normal f16 (>= 2^-14): rebias the exponent by 127 - 15
        const uint32_t r = a - 0x38000000u;
        return sign | ((r + 0x0FFFu + ((r >> 13) & 1u)) >> 13);
    }
    if (a <= 0x33000000u) {  // <= 2^-25, half the smallest subnormal: ties to even, i.e. 0
        return sign;
    }
    // Subnormal f16: value m·2^(e-150) = (m >> s)·2^-24 with s = 126 - e in 14..24.
    const uint32_t e = a >> 23;
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t s = 126u - e;
    const uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1u);
    const uint32_t halfway = 1u << (s - 1u);
    // q + 1 may reach 0x400, the smallest normal, which is the right bits for it.
    return sign | (q + ((rem > halfway || (rem == halfway && (q & 1u) != 0u)) ? 1u : 0u));
}

// f32 bits -> the 16-bit type's bits (bf16 when `bf16`, else f16).
ASA_HD_INLINE uint32_t asa_compress24_round(uint32_t x, bool bf16) {
    return bf16 ? asa_f32_to_bf16_rne(x) : asa_f32_to_f16_rne(x);
}

// 2:4 selection of 16 consecutive f32 (bits) of one row, aligned to 16 columns: writes the 8
// kept f32 bits (two per group, in index order) to `kept` and returns the canonical u16 of
// metadata (group q's nibble at bits 4q: lower kept index | higher << 2). Selects by ternaries,
// never by a computed array index, so on the device everything stays in registers.
ASA_HD_INLINE uint32_t asa_compress24_select16(const uint32_t (&x)[16], uint32_t (&kept)[8]) {
    uint32_t meta = 0u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (uint32_t q = 0; q < 4u; ++q) {
        const uint32_t x0 = x[4 * q], x1 = x[4 * q + 1], x2 = x[4 * q + 2], x3 = x[4 * q + 3];
        const uint32_t keep = asa_two_four_keep(asa_topk_key_f32(x0), asa_topk_key_f32(x1),
                                                asa_topk_key_f32(x2), asa_topk_key_f32(x3));
        // Exactly two bits are set, so the lower one is never bit 3 and the higher never bit 0.
        const uint32_t first = (keep & 1u) ? 0u : ((keep & 2u) ? 1u : 2u);
        const uint32_t second = (keep & 8u) ? 3u : ((keep & 4u) ? 2u : 1u);
        kept[2 * q] = first == 0u ? x0 : (first == 1u ? x1 : x2);
        kept[2 * q + 1] = second == 3u ? x3 : (second == 2u ? x2 : x1);
        meta |= (first | (second << 2)) << (4 * q);
    }
    return meta;
}

// Position (0..15) of the first NaN/Inf among 16 f32 (bits), or 16 when all are finite.
ASA_HD_INLINE uint32_t asa_compress24_first_bad16(const uint32_t (&x)[16]) {
    uint32_t bad = 16u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (uint32_t i = 16u; i-- > 0u;) {  // backwards, so the lowest position wins
        bad = asa_topk_key_f32(x[i]) >= ASA_TOPK_NONFINITE_F32 ? i : bad;
    }
    return bad;
}

// 16 consecutive f32 (bits) from `src` (64-byte aligned on the device: K % 32 == 0 and the
// base pointer is checked by the launcher).
ASA_HD_INLINE void asa_compress24_load16(const uint32_t* src, uint32_t (&x)[16]) {
#if defined(__CUDA_ARCH__)
    const uint4* s4 = reinterpret_cast<const uint4*>(src);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint4 v = __ldg(s4 + i);  // read-only for the whole kernel
        x[4 * i] = v.x;
        x[4 * i + 1] = v.y;
        x[4 * i + 2] = v.z;
        x[4 * i + 3] = v.w;
    }
#else
    for (int i = 0; i < 16; ++i) {
        x[i] = src[i];
    }
#endif
}

// 4 u32 to `dst` (16-byte aligned on the device: the row has K/4 words, K % 32 == 0).
ASA_HD_INLINE void asa_compress24_store4(uint32_t* dst, const uint32_t (&v)[4]) {
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<uint4*>(dst) = make_uint4(v[0], v[1], v[2], v[3]);
#else
    for (int i = 0; i < 4; ++i) {
        dst[i] = v[i];
    }
#endif
}

// Number of metadata words (= threads) of an N × K matrix: N/16 tiles × ceil(K/64) pairs × 32.
ASA_HD_INLINE unsigned long long asa_compress24_words(uint32_t n, uint32_t k) {
    return static_cast<unsigned long long>(n / 16u) * ((k / 32u + 1u) / 2u) * 32u;
}

// The whole work of thread `word` (< asa_compress24_words(n, k), which keeps its rows < n):
// select, round and pack the values of rows g and g+8 of its tile at u16 index u, and write
// them and the metadata word. `w` is W as f32 bits. Returns the lowest flat index of a NaN/Inf
// it read, or ASA_COMPRESS24_NONE (the output is then still written, but meaningless).
ASA_HD_INLINE unsigned long long asa_compress24_word(const uint32_t* w, uint32_t k, bool bf16,
                                                     unsigned long long word, uint32_t* values,
                                                     uint32_t* meta) {
    const uint32_t steps = k / 32u;
    const uint32_t pairs = (steps + 1u) / 2u;
    const uint32_t lane = static_cast<uint32_t>(word & 31u);
    const uint32_t pair = static_cast<uint32_t>((word >> 5) % pairs);
    const unsigned long long tile = (word >> 5) / pairs;
    const uint32_t g = lane >> 2, t = lane & 3u;
    const uint32_t step = 2u * pair + (t >> 1);
    if (step >= steps) {
        meta[word] = 0u;  // the missing second step of an odd K/32: never read by an MMA
        return ASA_COMPRESS24_NONE;
    }
    const uint32_t u = 2u * step + (t & 1u);
    unsigned long long bad = ASA_COMPRESS24_NONE;
    uint32_t out = 0u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (uint32_t h = 0; h < 2u; ++h) {
        const unsigned long long row = tile * 16u + g + 8u * h;
        const unsigned long long col0 = 16ull * u;
        uint32_t x[16], kept[8], packed[4];
        asa_compress24_load16(w + row * k + col0, x);
        const uint32_t b = asa_compress24_first_bad16(x);
        // Row g comes before row g + 8 in flat order, so the first bad index found wins.
        if (b < 16u && bad == ASA_COMPRESS24_NONE) {
            bad = row * k + col0 + b;
        }
        out |= asa_compress24_select16(x, kept) << (16 * h);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (uint32_t j = 0; j < 4u; ++j) {
            packed[j] = asa_compress24_round(kept[2 * j], bf16) |
                        (asa_compress24_round(kept[2 * j + 1], bf16) << 16);
        }
        // Compressed columns 8u..8u+7 of this row = u32 words 4u..4u+3 of its K/4.
        asa_compress24_store4(values + row * (k / 4u) + 4ull * u, packed);
    }
    meta[word] = out;
    return bad;
}
