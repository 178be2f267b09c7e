// simt_emu.h — a host SIMT runtime that runs the kernels' own CUDA source on the CPU, so the
// tests can execute whole kernels (every thread, barrier, warp collective, cp.async group and
// tensor-core instruction) without a GPU (DESIGN.md §6).
//
// kernels/simt_emu.cpp defines ASA_SIMT_EMU, includes this header and then the kernel files;
// build.rs compiles it with the host helpers. What it provides:
//   - the CUDA keywords and built-ins the kernels use (__global__, __shared__, threadIdx, ...);
//   - one block at a time, each thread a cooperatively scheduled fiber (ucontext). The scheduler
//     picks the next runnable thread at random (seeded), so warps interleave differently from
//     run to run; __syncthreads and the warp collectives are real rendezvous. A barrier that
//     some threads can never reach (divergent __syncthreads, a thread that exited) is reported
//     as an error naming the kernel and block, not a hang;
//   - the warp collectives (__shfl_xor_sync, __any_sync, __all_sync) and atomicAdd;
//   - the PTX the kernels issue through their wrappers, emulated from the PTX ISA:
//     mma.sync m16n8k16 bf16 (f32 accumulation, products summed exactly in f64 and rounded
//     once), ldmatrix x1/x2/x4 (.trans), ex2.approx (exp2f), and cp.async with commit and wait
//     groups. Copies are either performed when the thread's cp.async.wait_group retires their
//     group ("lazy": a read that is not preceded by the right wait sees poisoned shared memory)
//     or at issue ("eager": a copy into a buffer another warp still reads corrupts that read);
//     the tests run both.
// Shared memory is one arena, poisoned (0xFF bytes = NaN) before every block.
#pragma once

#if defined(__CUDACC__)
#error "simt_emu.h is for the host emulation build only"
#endif

#include <ucontext.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

// ---- CUDA keywords and built-ins ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// A block's threads are fibers run one block at a time, so a function-local static is exactly
// one array shared by the block (not cleared between blocks, like shared memory on a GPU).
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
};
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

namespace asa_emu {

// Bytes of the shared-memory arena (the H100's 227 KiB opt-in maximum).
constexpr size_t SMEM_BYTES = 227 * 1024;
// The arena: the kernels' `extern __shared__` array is defined to be it (simt_emu.cpp).
uint8_t* smem_base();

// How cp.async copies land (see the header comment).
enum class CopyMode { Lazy = 0, Eager = 1 };

// Scheduler entry points used by the built-ins below.
void syncthreads();
void warp_sync();
unsigned lane_id();
unsigned warp_id();
// This thread's 64-byte slot of its warp's exchange area, and lane `l`'s.
uint8_t* my_slot();
const uint8_t* lane_slot(unsigned l);
// cp.async bookkeeping.
void cp_async(uint32_t dst, const void* src, uint32_t src_bytes);
void cp_commit();
void cp_wait(int n);

// Run `kernel` over `grid` blocks of `block` threads (blocks one after another). Returns an
// empty string on success, else what went wrong.
std::string launch(const char* name, dim3 grid, dim3 block, const std::function<void()>& kernel);

// Warp exchange of a trivially copyable value: every lane publishes `v`, then reads lane
// `src`'s value; all lanes of the warp must call it (as on the GPU).
template <class T>
T exchange(const T& v, unsigned src) {
    static_assert(sizeof(T) <= 64, "exchange slot is 64 bytes");
    std::memcpy(my_slot(), &v, sizeof(T));
    warp_sync();
    T r;
    std::memcpy(&r, lane_slot(src), sizeof(T));
    warp_sync();
    return r;
}

}  // namespace asa_emu

inline void __syncthreads() { asa_emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { asa_emu::warp_sync(); }

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    return asa_emu::exchange(v, asa_emu::lane_id() ^ static_cast<unsigned>(lane_mask));
}

// Votes: gather every lane's predicate.
int asa_emu_vote(int pred, bool all);
inline int __any_sync(unsigned, int pred) { return asa_emu_vote(pred, false); }
inline int __all_sync(unsigned, int pred) { return asa_emu_vote(pred, true); }

template <class T>
inline T __ldg(const T* p) {
    return *p;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }

// Warp-wide sum, and the ballot of every lane's predicate (bit l = lane l).
unsigned asa_emu_reduce_add(unsigned v);
unsigned asa_emu_ballot(int pred);
inline unsigned __reduce_add_sync(unsigned, unsigned v) { return asa_emu_reduce_add(v); }
inline unsigned __ballot_sync(unsigned, int pred) { return asa_emu_ballot(pred); }

// Fibers never run concurrently, so a plain read-modify-write is atomic.
inline float atomicAdd(float* p, float v) {
    const float old = *p;
    *p = old + v;
    return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    const unsigned old = *p;
    *p = old + v;
    return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    const unsigned long long old = *p;
    *p = old + v;
    return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    const unsigned long long old = *p;
    *p = v < old ? v : old;
    return old;
}

// ---- PTX the kernels issue through their wrappers ----
namespace asa_emu {

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, d = a·b + d [ISA §9.7.14.5.8].
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

// mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.{bf16,f16}, d = a·b + d with
// metadata register e and selector sel: computed by the Rust PTX-ISA emulator
// (src/sparse/mma_emu.rs, the one the layout tests use), which simt.rs registers.
void mma_sp_m16n8k32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t e,
                     int sel, bool bf16);

// ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16 from shared address `addr` (this
// lane's row) into r[0..num) [ISA §9.7.14.5.15].
void ldmatrix(uint32_t* r, int num, bool trans, uint32_t addr);

}  // namespace asa_emu
