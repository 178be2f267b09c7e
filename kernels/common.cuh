// common.cuh — helpers shared by every kernel file and by kernels/host_helpers.cpp.
//
// This header must compile three ways: under nvcc for the device, under nvcc for the host, and
// under a plain C++17 compiler (build.rs compiles kernels/host_helpers.cpp with the `cc` crate so
// Rust tests can run the `ASA_HD` device-math helpers on the CPU; DESIGN.md §6.2). So it holds
// no CUDA runtime calls (no CUDA_CHECK: the Rust side owns launches and error handling through
// the driver API) and nothing that needs <cuda_runtime.h>.
//
// Rules for kernel files (build.rs compiles all kernels/*.cu as ONE translation unit, which
// #includes each file, into one fatbin):
//   - `#pragma once` in every header; kernels are `extern "C" __global__` with unique names;
//   - file-local helpers go in a namespace named after the file (e.g. `namespace asa_adamw`),
//     never in the global namespace, so two files cannot collide;
//   - a file that needs Hopper-only instructions (wgmma, setmaxnreg, ...) says so with a line
//     `// asa-lth: arch=sm_90a` and guards that code with `#if ASA_SM90A`; the build then emits
//     sm_90a SASS instead of sm_90 SASS (scripts/check-kernels.sh and build.rs read the marker).
#pragma once

#if defined(__CUDACC__)
#define ASA_HD __host__ __device__
#define ASA_HD_INLINE __host__ __device__ __forceinline__
#else
#define ASA_HD
#define ASA_HD_INLINE inline
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>

// True while compiling device code for sm_90a (arch-specific Hopper features available).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ASA_SM90A 1
#else
#define ASA_SM90A 0
#endif

// True where a kernel body written for sm_80+ (mma.sync, cp.async, ldmatrix) is compiled: device
// code for sm_80 and later, and the host SIMT emulation (kernels/simt_emu.h), which runs the
// same source on the CPU. Elsewhere (the host pass of nvcc, older arches) bodies are empty.
#if defined(ASA_SIMT_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define ASA_SM80_CODE 1
#else
#define ASA_SM80_CODE 0
#endif

// A kernel's dynamic shared memory as a byte array `name` (declare it once per kernel body). In
// the host SIMT emulation it is the emulated shared-memory arena.
#if defined(ASA_SIMT_EMU)
#define ASA_DYNAMIC_SMEM(name) uint8_t* const name = asa_emu::smem_base()
#else
#define ASA_DYNAMIC_SMEM(name) extern __shared__ __align__(128) uint8_t name[]
#endif

// Threads per block for the simple elementwise (grid-stride) kernels. The Rust launchers use the
// same number (src/backend/cuda/kernels.rs, ELEMENTWISE_BLOCK).
#define ASA_ELEMENTWISE_BLOCK 256

// sqrt in f32 with IEEE round-to-nearest on both sides: nvcc's default sqrtf (-prec-sqrt=true)
// and the C++ std::sqrt(float) are both correctly rounded.
ASA_HD_INLINE float asa_sqrtf(float x) {
#if defined(__CUDA_ARCH__)
    return sqrtf(x);
#else
    return std::sqrt(x);
#endif
}
