// topk.cuh — key and digit math of exact magnitude top-k pruning and of 2:4 selection, shared by
// the CUDA kernels (kernels/topk.cu) and the host build (kernels/host_helpers.cpp) so tests can
// check the device math on the CPU (tests/topk.rs compares every helper with the Rust twin in
// src/sparse/topk.rs and src/sparse/two_four.rs).
//
// Contract (DESIGN.md §3 "Top-k pruning"; src/sparse/topk.rs module docs):
//   key(w)   = the bits of |w|: the IEEE bits with the sign cleared. For finite non-negative
//              floats the unsigned order of these bits is the numeric order, so selecting the n
//              smallest |w| is selecting the n smallest keys. f32: 31-bit keys; bf16 and f16:
//              15-bit keys. Keys >= the type's +Inf key are NaN or Inf (an error).
//   digits   = the key split from the top into 11-bit digits, the last one narrower:
//              31 bits -> 11, 11, 9 (3 passes); 15 bits -> 11, 4 (2 passes).
//   pass p   looks only at keys whose bits above digit p equal the prefix chosen so far, and
//              histograms digit p into ASA_TOPK_BINS bins.
//   masks    are f32: 0 = pruned, 1 = unpruned; any other value (NaN included) is an error.
//   2:4      keeps the 2 largest keys of each aligned group of 4; equal keys go to the lower
//              index (element j beats element i when key_j > key_i, or key_j == key_i and j < i).
#pragma once

#include "common.cuh"

// Digit width and histogram size of every radix pass.
#define ASA_TOPK_DIGIT_BITS 11
#define ASA_TOPK_BINS 2048
// Elements per tile: the unit of work of one block (and of the tie scan). The Rust launcher
// uses the same number (src/backend/cuda/topk.rs, TILE).
#define ASA_TOPK_TILE 4096
// Threads per block of every top-k kernel (src/backend/cuda/topk.rs, BLOCK).
#define ASA_TOPK_BLOCK 256

// Magnitude keys and the first non-finite key of each weight type.
#define ASA_TOPK_KEY_BITS_F32 31u
#define ASA_TOPK_KEY_BITS_16 15u
#define ASA_TOPK_NONFINITE_F32 0x7F800000u
#define ASA_TOPK_NONFINITE_BF16 0x7F80u
#define ASA_TOPK_NONFINITE_F16 0x7C00u

// Mask states (asa_topk_mask_state).
#define ASA_TOPK_PRUNED 0u
#define ASA_TOPK_UNPRUNED 1u
#define ASA_TOPK_BAD_MASK 2u

ASA_HD_INLINE uint32_t asa_topk_key_f32(uint32_t bits) { return bits & 0x7FFFFFFFu; }
ASA_HD_INLINE uint32_t asa_topk_key_16(uint32_t bits) { return bits & 0x7FFFu; }

// Number of radix passes for keys of `key_bits` bits (31 -> 3, 15 -> 2).
ASA_HD_INLINE uint32_t asa_topk_passes(uint32_t key_bits) {
    return (key_bits + ASA_TOPK_DIGIT_BITS - 1u) / ASA_TOPK_DIGIT_BITS;
}

// Width in bits of the digit of pass `pass` (11, except the last pass takes what is left).
ASA_HD_INLINE uint32_t asa_topk_width(uint32_t key_bits, uint32_t pass) {
    const uint32_t left = key_bits - ASA_TOPK_DIGIT_BITS * pass;
    return left < ASA_TOPK_DIGIT_BITS ? left : ASA_TOPK_DIGIT_BITS;
}

// Right shift that brings the digit of pass `pass` to bit 0.
ASA_HD_INLINE uint32_t asa_topk_shift(uint32_t key_bits, uint32_t pass) {
    const uint32_t used = ASA_TOPK_DIGIT_BITS * (pass + 1u);
    return used >= key_bits ? 0u : key_bits - used;
}

// Right shift that leaves the bits above the digit of pass `pass` (the prefix chosen by the
// earlier passes). For pass 0 it is key_bits, so every key's prefix is 0 (key_bits < 32).
ASA_HD_INLINE uint32_t asa_topk_prefix_shift(uint32_t key_bits, uint32_t pass) {
    return pass == 0u ? key_bits : asa_topk_shift(key_bits, pass - 1u);
}

// Digit of pass `pass` of `key`.
ASA_HD_INLINE uint32_t asa_topk_digit(uint32_t key, uint32_t key_bits, uint32_t pass) {
    return (key >> asa_topk_shift(key_bits, pass)) & ((1u << asa_topk_width(key_bits, pass)) - 1u);
}

// Whether `key` is still a candidate in pass `pass` given the prefix chosen so far.
ASA_HD_INLINE bool asa_topk_in_prefix(uint32_t key, uint32_t key_bits, uint32_t pass,
                                      uint32_t prefix) {
    return (key >> asa_topk_prefix_shift(key_bits, pass)) == prefix;
}

// ASA_TOPK_PRUNED (mask == 0, either sign), ASA_TOPK_UNPRUNED (mask == 1) or ASA_TOPK_BAD_MASK.
ASA_HD_INLINE uint32_t asa_topk_mask_state(float m) {
    return m == 0.0f ? ASA_TOPK_PRUNED : (m == 1.0f ? ASA_TOPK_UNPRUNED : ASA_TOPK_BAD_MASK);
}

// 2:4 selection of one aligned group of 4 keys: bit i of the result is set when element i is
// kept. Exactly two bits are set for any input.
ASA_HD_INLINE uint32_t asa_two_four_keep(uint32_t k0, uint32_t k1, uint32_t k2, uint32_t k3) {
    const uint32_t k[4] = {k0, k1, k2, k3};
    uint32_t keep = 0u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (uint32_t i = 0; i < 4u; ++i) {
        uint32_t beaten = 0u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (uint32_t j = 0; j < 4u; ++j) {
            beaten += (k[j] > k[i] || (k[j] == k[i] && j < i)) ? 1u : 0u;
        }
        keep |= (beaten < 2u ? 1u : 0u) << i;
    }
    return keep;
}

// The tensor that owns global tile `tile`, given tile_begin[0..nt] (the first tile of each
// tensor, non-decreasing; nt >= 1, tile < the total): the largest i < nt with
// tile_begin[i] <= tile. An empty tensor owns no tile: it shares its tile_begin with the next
// tensor, which this rule picks instead.
ASA_HD_INLINE uint32_t asa_topk_tensor_of(const unsigned long long* tile_begin, uint32_t nt,
                                          unsigned long long tile) {
    uint32_t lo = 0u, hi = nt - 1u;
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo + 1u) / 2u;
        if (tile_begin[mid] <= tile) {
            lo = mid;
        } else {
            hi = mid - 1u;
        }
    }
    return lo;
}

// The contiguous tile range [*t0, *t1) of block `block` of `grid` over `num_tiles` tiles:
// ceil(num_tiles / grid) tiles per block, the last blocks possibly short or empty.
ASA_HD_INLINE void asa_topk_block_tiles(unsigned long long num_tiles, uint32_t grid,
                                        uint32_t block, unsigned long long* t0,
                                        unsigned long long* t1) {
    const unsigned long long per = (num_tiles + grid - 1u) / grid;
    const unsigned long long a = static_cast<unsigned long long>(block) * per;
    *t0 = a < num_tiles ? a : num_tiles;
    *t1 = *t0 + per < num_tiles ? *t0 + per : num_tiles;
}
