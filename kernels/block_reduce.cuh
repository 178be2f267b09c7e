// block_reduce.cuh — warp and block reductions shared by the f32 training kernels (encoder.cu,
// layernorm.cu, classifier.cu, reduce.cu, attention_ref.cu).
//
// Device-only (the whole header is empty outside nvcc's device/host CUDA compilation), so
// kernels/host_helpers.cpp may include kernels headers without seeing CUDA intrinsics.
// Every reduction is a fixed tree (xor-shuffle within a warp, then warp 0 over the per-warp
// values in warp order), so for a given launch shape the result is bitwise reproducible.
// Block sizes must be multiples of 32 (every launcher in src/backend/cuda/ops.rs uses 128 or
// 256 threads).
#pragma once

#include "common.cuh"

#if defined(__CUDACC__)
namespace asa_reduce {

constexpr unsigned FULL = 0xffffffffu;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(FULL, v, o);
    }
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
    }
    return v;
}

// Sum over the block; every thread gets the result. `scratch` is 32 T of shared memory; the
// leading barrier lets callers reuse the same scratch for consecutive reductions.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const unsigned nwarps = (blockDim.x + 31u) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    T r = lane < nwarps ? scratch[lane] : T(0);
    return warp_sum(r);
}

// Max over the block (f32); every thread gets the result. `scratch` as for block_sum.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const unsigned nwarps = (blockDim.x + 31u) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    float r = lane < nwarps ? scratch[lane] : -INFINITY;
    return warp_max(r);
}

}  // namespace asa_reduce
#endif
