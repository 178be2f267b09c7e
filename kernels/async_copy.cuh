// async_copy.cuh — the Ampere data-movement instructions the tensor-core kernels share:
// cp.async (16-byte global → shared copies with zero-fill, commit and wait groups) and ldmatrix
// (x2 / x4, plain and .trans). Device-only; the host-testable part of each kernel's use of them
// (which lane gives which row address, which thread copies which chunk) lives in that kernel's
// own header as __host__ __device__ helpers, checked against the ldmatrix emulator
// (src/sparse/mma_emu.rs) in the tests. Layouts: shared/PTX-FACTS.md "ldmatrix" ([ISA] items).
#pragma once

#include "common.cuh"

#if defined(__CUDACC__)
namespace asa_async {

// Shared-memory (state space) address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte asynchronous copy global → shared, bypassing L1 (.cg); the bytes past src_bytes
// (0 or 16) are zero-filled, so a row past the end of a tensor becomes zeros without a branch
// around the copy (src must still be a valid address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, uint32_t src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

// Close the group of copies issued by this thread since the last commit.
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Wait until at most N of this thread's committed groups are still in flight. Other threads'
// copies become visible only after a barrier (__syncthreads) that follows the wait.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8×8 b16 matrices; lanes 8m..8m+7 give the row addresses of matrix m, register m holds
// its fragment (lane l: row l/4, elements 2(l%4), 2(l%4)+1).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// Two 8×8 matrices; lanes 0..15 give the row addresses (the others' are ignored).
__device__ __forceinline__ void ldsm_x2(uint32_t (&r)[2], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
}

// As ldsm_x2, transposed: lane l gets rows 2(l%4), 2(l%4)+1 of column l/4.
__device__ __forceinline__ void ldsm_x2_trans(uint32_t (&r)[2], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
}

// As ldsm_x4, transposed.
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

}  // namespace asa_async
#elif defined(ASA_SIMT_EMU)
// The same interface on the host SIMT emulation (kernels/simt_emu.h): shared addresses are
// offsets into the emulated shared-memory arena.
namespace asa_async {
inline uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(static_cast<const uint8_t*>(p) - asa_emu::smem_base());
}
inline void cp_async16(uint32_t dst, const void* src, uint32_t src_bytes) {
    asa_emu::cp_async(dst, src, src_bytes);
}
inline void cp_async_commit() { asa_emu::cp_commit(); }
template <int N>
inline void cp_async_wait() {
    asa_emu::cp_wait(N);
}
inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) { asa_emu::ldmatrix(r, 4, false, addr); }
inline void ldsm_x2(uint32_t (&r)[2], uint32_t addr) { asa_emu::ldmatrix(r, 2, false, addr); }
inline void ldsm_x2_trans(uint32_t (&r)[2], uint32_t addr) {
    asa_emu::ldmatrix(r, 2, true, addr);
}
inline void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asa_emu::ldmatrix(r, 4, true, addr);
}
}  // namespace asa_async
#endif
