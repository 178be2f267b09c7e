// simt_emu.cpp — the kernels' CUDA source executed on the CPU by the SIMT runtime of
// simt_emu.h (see there for what is emulated and how). build.rs compiles this file next to
// host_helpers.cpp, always (no nvcc needed); src/backend/cuda/simt.rs wraps the extern "C"
// launchers at the end, and tests/attention_emulated.rs runs the attention kernels through
// them against the f64 reference.
#define ASA_SIMT_EMU 1
#include "simt_emu.h"

#include <algorithm>
#include <mutex>

#include "attention.cu"
#include "topk.cu"
#include "gemm24.cu"
#include "lm_head.cu"

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

// Every kernel's dynamic shared memory (ASA_DYNAMIC_SMEM in common.cuh) is this one arena.
namespace {
alignas(128) uint8_t g_smem[asa_emu::SMEM_BYTES];
}

namespace asa_emu {
namespace {

struct Copy {
    uint32_t dst;
    const void* src;
    uint32_t bytes;
};

enum class Wait { Run, Block, Warp, Dead };

struct Thread {
    ucontext_t ctx;
    std::vector<char> stack;
    uint3 tid{0, 0, 0};
    unsigned lin = 0;
    bool done = false;
    Wait wait = Wait::Run;
    uint64_t gen = 0;
    std::vector<Copy> open;
    std::vector<std::vector<Copy>> groups;
};

constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t SLOT = 64;

struct State {
    std::vector<Thread> th;
    ucontext_t sched;
    int cur = -1;
    unsigned nthreads = 0;
    unsigned block_arrived = 0;
    uint64_t block_gen = 0;
    std::vector<unsigned> warp_arrived, warp_size;
    std::vector<uint64_t> warp_gen;
    std::vector<uint8_t> slots;
    const std::function<void()>* kernel = nullptr;
    std::string error;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    CopyMode mode = CopyMode::Lazy;
    uint32_t smem_limit = SMEM_BYTES;
    // Per warp: the 32 × 4 results of the last mma.sp (computed once, read by every lane).
    std::vector<float> mma_out;
};

// The Rust PTX-ISA emulator of one warp's mma.sp (registered by src/backend/cuda/simt.rs):
// a, b, c 32 × 4 per-lane registers, e 32 metadata registers; writes d (32 × 4); non-zero
// when a metadata nibble is invalid.
using MmaSpFn = int (*)(const uint32_t* a, const uint32_t* b, const float* c, const uint32_t* e,
                        uint32_t sel, uint32_t bf16, float* d);
MmaSpFn g_mma_sp = nullptr;

State S;
std::mutex g_lock;  // one launch at a time (the tests run in parallel threads)

Thread& me() { return S.th[static_cast<size_t>(S.cur)]; }

uint64_t next_rand() {
    S.rng ^= S.rng << 13;
    S.rng ^= S.rng >> 7;
    S.rng ^= S.rng << 17;
    return S.rng;
}

void yield() { swapcontext(&me().ctx, &S.sched); }

// Record an error and park this thread for good (the scheduler stops the block).
[[noreturn]] void fail(const std::string& what) {
    if (S.error.empty()) {
        const Thread& t = me();
        S.error = what + " (block (" + std::to_string(blockIdx.x) + ", " +
                  std::to_string(blockIdx.y) + ", " + std::to_string(blockIdx.z) + "), thread " +
                  std::to_string(t.lin) + ")";
    }
    me().wait = Wait::Dead;
    for (;;) {
        yield();
    }
}

void perform(const Copy& c) {
    uint8_t* dst = smem_base() + c.dst;
    std::memcpy(dst, c.src, c.bytes);
    std::memset(dst + c.bytes, 0, 16 - c.bytes);
}

void fiber_main() {
    (*S.kernel)();
    Thread& t = me();
    if (!t.open.empty() || !t.groups.empty()) {
        fail("cp.async copies still in flight when the thread exited (missing wait_group 0)");
    }
    t.done = true;
    // Returning switches to uc_link (the scheduler).
}

bool ready(const Thread& t) {
    switch (t.wait) {
        case Wait::Run:
            return !t.done;
        case Wait::Block:
            return S.block_gen != t.gen;
        case Wait::Warp:
            return S.warp_gen[t.lin / 32] != t.gen;
        default:
            return false;
    }
}

std::string describe_stall() {
    unsigned done = 0, at_block = 0, at_warp = 0;
    for (const Thread& t : S.th) {
        if (t.done) {
            ++done;
        } else if (t.wait == Wait::Block) {
            ++at_block;
        } else if (t.wait == Wait::Warp) {
            ++at_warp;
        }
    }
    return "deadlock: " + std::to_string(at_block) + " thread(s) wait at __syncthreads, " +
           std::to_string(at_warp) + " at a warp collective, " + std::to_string(done) +
           " exited, of " + std::to_string(S.th.size()) +
           " (a barrier not every thread reaches)";
}

// Run every thread of the current block to completion; false on error (S.error set).
bool run_block() {
    std::memset(smem_base(), 0xFF, SMEM_BYTES);  // poison: unwritten shared memory reads NaN
    S.block_arrived = 0;
    std::fill(S.warp_arrived.begin(), S.warp_arrived.end(), 0u);
    for (Thread& t : S.th) {
        t.done = false;
        t.wait = Wait::Run;
        t.open.clear();
        t.groups.clear();
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = t.stack.data();
        t.ctx.uc_stack.ss_size = t.stack.size();
        t.ctx.uc_link = &S.sched;
        makecontext(&t.ctx, fiber_main, 0);
    }
    std::vector<int> runnable;
    runnable.reserve(S.th.size());
    for (;;) {
        runnable.clear();
        bool all_done = true;
        for (size_t i = 0; i < S.th.size(); ++i) {
            all_done = all_done && S.th[i].done;
            if (ready(S.th[i])) {
                runnable.push_back(static_cast<int>(i));
            }
        }
        if (all_done) {
            return true;
        }
        if (runnable.empty()) {
            S.error = describe_stall() + " in block (" + std::to_string(blockIdx.x) + ", " +
                      std::to_string(blockIdx.y) + ", " + std::to_string(blockIdx.z) + ")";
            return false;
        }
        S.cur = runnable[next_rand() % runnable.size()];
        Thread& t = me();
        t.wait = Wait::Run;
        threadIdx = t.tid;
        swapcontext(&S.sched, &t.ctx);
        if (!S.error.empty()) {
            return false;
        }
    }
}

}  // namespace

uint8_t* smem_base() { return g_smem; }

unsigned lane_id() { return me().lin % 32; }
unsigned warp_id() { return me().lin / 32; }

uint8_t* my_slot() { return S.slots.data() + static_cast<size_t>(me().lin) * SLOT; }
const uint8_t* lane_slot(unsigned l) {
    const size_t lane = (warp_id() * 32 + (l & 31u));
    if (lane >= S.th.size()) {
        fail("warp collective reads lane " + std::to_string(l) + " that does not exist");
    }
    return S.slots.data() + lane * SLOT;
}

void syncthreads() {
    Thread& t = me();
    if (++S.block_arrived == S.nthreads) {
        S.block_arrived = 0;
        ++S.block_gen;
        t.wait = Wait::Run;
    } else {
        t.wait = Wait::Block;
        t.gen = S.block_gen;
    }
    yield();
}

void warp_sync() {
    Thread& t = me();
    const unsigned w = t.lin / 32;
    if (++S.warp_arrived[w] == S.warp_size[w]) {
        S.warp_arrived[w] = 0;
        ++S.warp_gen[w];
        t.wait = Wait::Run;
    } else {
        t.wait = Wait::Warp;
        t.gen = S.warp_gen[w];
    }
    yield();
}

void cp_async(uint32_t dst, const void* src, uint32_t src_bytes) {
    if (dst % 16 != 0 || dst + 16 > S.smem_limit) {
        fail("cp.async destination " + std::to_string(dst) + " is not a 16-byte aligned chunk " +
             "inside the " + std::to_string(S.smem_limit) + " bytes of dynamic shared memory");
    }
    if (reinterpret_cast<uintptr_t>(src) % 16 != 0) {
        fail("cp.async source is not 16-byte aligned");
    }
    if (src_bytes > 16) {
        fail("cp.async src-size " + std::to_string(src_bytes) + " > 16");
    }
    const Copy c{dst, src, src_bytes};
    if (S.mode == CopyMode::Eager) {
        perform(c);
    } else {
        me().open.push_back(c);
    }
}

void cp_commit() {
    Thread& t = me();
    t.groups.push_back(std::move(t.open));
    t.open.clear();
}

void cp_wait(int n) {
    Thread& t = me();
    while (t.groups.size() > static_cast<size_t>(n)) {
        for (const Copy& c : t.groups.front()) {
            perform(c);
        }
        t.groups.erase(t.groups.begin());
    }
}

std::string launch(const char* name, dim3 grid, dim3 block, const std::function<void()>& kernel) {
    const unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > 1024) {
        return std::string(name) + ": block of " + std::to_string(n) + " threads";
    }
    S.th.resize(n);
    for (unsigned i = 0; i < n; ++i) {
        Thread& t = S.th[i];
        t.lin = i;
        t.tid = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
        t.stack.resize(STACK_BYTES);
    }
    S.nthreads = n;
    const unsigned warps = (n + 31) / 32;
    S.warp_arrived.assign(warps, 0u);
    S.warp_gen.assign(warps, 0u);
    S.warp_size.assign(warps, 32u);
    S.warp_size[warps - 1] = n - 32 * (warps - 1);
    S.slots.assign(static_cast<size_t>(n) * SLOT, 0);
    S.mma_out.assign(static_cast<size_t>(warps) * 128, 0.0f);
    S.kernel = &kernel;
    S.error.clear();
    gridDim = grid;
    blockDim = block;
    for (unsigned z = 0; z < grid.z; ++z) {
        for (unsigned y = 0; y < grid.y; ++y) {
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = uint3{x, y, z};
                if (!run_block()) {
                    return std::string(name) + ": " + S.error;
                }
            }
        }
    }
    return std::string();
}

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    struct In {
        uint32_t a[4];
        uint32_t b[2];
    };
    In mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
    std::memcpy(my_slot(), &mine, sizeof mine);
    warp_sync();
    const auto lane_in = [](unsigned l) {
        In x;
        std::memcpy(&x, lane_slot(l), sizeof x);
        return x;
    };
    const auto bf = [](uint32_t reg, unsigned half) {
        const uint32_t bits = (half == 0 ? reg & 0xFFFFu : reg >> 16) << 16;
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    };
    // [ISA] A (16×16, row): lane 4g + t, register j, half h holds (g + 8(j&1), 2t + 8(j>>1) + h);
    // B (16×8, col): register j, half h holds (k = 2t + 8j + h, n = g); C/D register i holds
    // (g + 8(i>>1), 2t + (i&1)).
    const auto A = [&](unsigned r, unsigned c) {
        const unsigned lane = 4 * (r % 8) + (c % 8) / 2;
        const unsigned j = (r / 8) + 2 * (c / 8);
        return bf(lane_in(lane).a[j], c % 2);
    };
    const auto B = [&](unsigned k, unsigned n) {
        const unsigned lane = 4 * n + (k % 8) / 2;
        return bf(lane_in(lane).b[k / 8], k % 2);
    };
    const unsigned l = lane_id(), g = l / 4, t = l % 4;
    float out[4];
    for (unsigned i = 0; i < 4; ++i) {
        const unsigned r = g + 8 * (i / 2), c = 2 * t + (i % 2);
        double acc = 0.0;
        for (unsigned k = 0; k < 16; ++k) {
            acc += static_cast<double>(A(r, k)) * static_cast<double>(B(k, c));
        }
        out[i] = static_cast<float>(acc + static_cast<double>(d[i]));
    }
    warp_sync();
    for (unsigned i = 0; i < 4; ++i) {
        d[i] = out[i];
    }
}

void mma_sp_m16n8k32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t e,
                     int sel, bool bf16) {
    struct In {
        uint32_t a[4], b[4], e;
        float c[4];
    };
    static_assert(sizeof(In) <= SLOT, "slot size");
    const In mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1], b[2], b[3]}, e, {d[0], d[1], d[2], d[3]}};
    std::memcpy(my_slot(), &mine, sizeof mine);
    warp_sync();
    const unsigned w = warp_id(), l = lane_id();
    if (l == 0) {
        if (g_mma_sp == nullptr) {
            fail("mma.sp: no emulator registered (src/backend/cuda/simt.rs registers it)");
        }
        uint32_t A[128], B[128], E[32];
        float C[128];
        for (unsigned x = 0; x < 32; ++x) {
            In in;
            std::memcpy(&in, lane_slot(x), sizeof in);
            for (int j = 0; j < 4; ++j) {
                A[4 * x + j] = in.a[j];
                B[4 * x + j] = in.b[j];
                C[4 * x + j] = in.c[j];
            }
            E[x] = in.e;
        }
        if (g_mma_sp(A, B, C, E, static_cast<uint32_t>(sel), bf16 ? 1u : 0u,
                     S.mma_out.data() + 128 * w) != 0) {
            fail("mma.sp: a metadata nibble is not an ordered pair of positions");
        }
    }
    warp_sync();
    for (int i = 0; i < 4; ++i) {
        d[i] = S.mma_out[128 * w + 4 * l + i];
    }
}

void ldmatrix(uint32_t* r, int num, bool trans, uint32_t addr) {
    const uint32_t mine = addr;
    std::memcpy(my_slot(), &mine, sizeof mine);
    warp_sync();
    const auto row_addr = [&](unsigned lane) {
        uint32_t a;
        std::memcpy(&a, lane_slot(lane), sizeof a);
        if (a % 16 != 0 || a + 16 > S.smem_limit) {
            fail("ldmatrix: lane " + std::to_string(lane) + " row address " + std::to_string(a) +
                 " is not a 16-byte aligned row inside the " + std::to_string(S.smem_limit) +
                 " bytes of dynamic shared memory");
        }
        return a;
    };
    const auto half = [](uint32_t a, unsigned col) {
        uint16_t v;
        std::memcpy(&v, smem_base() + a + 2 * col, sizeof v);
        return static_cast<uint32_t>(v);
    };
    const unsigned l = lane_id(), g = l / 4, t = l % 4;
    uint32_t out[4] = {0, 0, 0, 0};
    for (int q = 0; q < num; ++q) {
        if (trans) {
            out[q] = half(row_addr(8 * q + 2 * t), g) | (half(row_addr(8 * q + 2 * t + 1), g) << 16);
        } else {
            const uint32_t a = row_addr(8 * q + g);
            out[q] = half(a, 2 * t) | (half(a, 2 * t + 1) << 16);
        }
    }
    warp_sync();
    for (int q = 0; q < num; ++q) {
        r[q] = out[q];
    }
}

}  // namespace asa_emu

int asa_emu_vote(int pred, bool all) {
    using namespace asa_emu;
    const uint32_t mine = pred != 0 ? 1u : 0u;
    std::memcpy(my_slot(), &mine, sizeof mine);
    warp_sync();
    const unsigned w = warp_id();
    const unsigned n = S.warp_size[w];
    unsigned count = 0;
    for (unsigned l = 0; l < n; ++l) {
        uint32_t v;
        std::memcpy(&v, lane_slot(l), sizeof v);
        count += v;
    }
    warp_sync();
    return all ? (count == n ? 1 : 0) : (count != 0 ? 1 : 0);
}

// Gather every lane's u32 into a sum or a ballot.
namespace {
template <class F>
unsigned warp_fold(uint32_t mine, F f) {
    using namespace asa_emu;
    std::memcpy(my_slot(), &mine, sizeof mine);
    warp_sync();
    const unsigned n = S.warp_size[warp_id()];
    unsigned acc = 0;
    for (unsigned l = 0; l < n; ++l) {
        uint32_t v;
        std::memcpy(&v, lane_slot(l), sizeof v);
        acc = f(acc, l, v);
    }
    warp_sync();
    return acc;
}
}  // namespace

unsigned asa_emu_reduce_add(unsigned v) {
    return warp_fold(v, [](unsigned acc, unsigned, uint32_t x) { return acc + x; });
}

unsigned asa_emu_ballot(int pred) {
    return warp_fold(pred != 0 ? 1u : 0u,
                     [](unsigned acc, unsigned l, uint32_t x) { return acc | (x << l); });
}

// ---- extern "C" launchers (src/backend/cuda/simt.rs) ----
namespace {

int finish(const std::string& err, char* buf, size_t cap) {
    if (err.empty()) {
        return 0;
    }
    if (buf != nullptr && cap > 0) {
        const size_t n = std::min(cap - 1, err.size());
        std::memcpy(buf, err.data(), n);
        buf[n] = '\0';
    }
    return 1;
}

unsigned tiles(uint32_t T) { return (T + ASA_ATTN_TILE - 1) / ASA_ATTN_TILE; }

// Kernel argument i of a driver-style parameter array (each entry points at the value).
template <class T>
T arg_at(void** p, int i) {
    T v;
    std::memcpy(&v, p[i], sizeof v);
    return v;
}
template <class T>
T* ptr_at(void** p, int i) {
    return reinterpret_cast<T*>(static_cast<uintptr_t>(arg_at<uint64_t>(p, i)));
}

}  // namespace

extern "C" {

// Copy mode (0 lazy, 1 eager) and scheduler seed of the following launches.
void asa_emu_configure(uint32_t copy_mode, uint64_t seed) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.mode = copy_mode == 1 ? asa_emu::CopyMode::Eager : asa_emu::CopyMode::Lazy;
    asa_emu::S.rng = seed == 0 ? 0x9E3779B97F4A7C15ull : seed;
}

int asa_emu_attn_fwd(uint32_t D, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                     float* out, float* lse, const uint32_t* mask, const uint32_t* count,
                     const uint32_t* lists, uint32_t B, uint32_t T, uint32_t H, uint32_t Hm,
                     float scale_log2, char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = asa_attn_smem_bytes(ASA_ATTN_KIND_FWD, D);
    const int t = static_cast<int>(T), h = static_cast<int>(H), hm = static_cast<int>(Hm);
    const std::function<void()> kernel = [&] {
        if (D == 64) {
            attn_fwd_d64(q, k, v, out, lse, mask, count, lists, t, h, hm, scale_log2);
        } else {
            attn_fwd_d128(q, k, v, out, lse, mask, count, lists, t, h, hm, scale_log2);
        }
    };
    return finish(asa_emu::launch("attn_fwd", dim3{tiles(T), H, B}, dim3{ASA_ATTN_THREADS, 1, 1},
                                  kernel),
                  err, cap);
}

int asa_emu_attn_bwd_di(const float* dout, const float* out, float* di, uint32_t B, uint32_t T,
                        uint32_t H, uint32_t D, char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    const uint32_t rows = B * H * T;
    const std::function<void()> kernel = [&] {
        attn_bwd_di(dout, out, di, static_cast<int>(B), static_cast<int>(T), static_cast<int>(H),
                    static_cast<int>(D));
    };
    return finish(asa_emu::launch("attn_bwd_di", dim3{(rows + ASA_ATTN_WARPS - 1) / ASA_ATTN_WARPS,
                                                      1, 1},
                                  dim3{ASA_ATTN_THREADS, 1, 1}, kernel),
                  err, cap);
}

int asa_emu_attn_bwd_dkdv(uint32_t D, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                          const uint16_t* dout, const float* lse, const float* di, float* dq,
                          float* dk, float* dv, const uint32_t* mask, const uint32_t* count,
                          const uint32_t* lists, uint32_t B, uint32_t T, uint32_t H, uint32_t Hm,
                          float scale_log2, float scale, int dq_atomic, char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = asa_attn_smem_bytes(ASA_ATTN_KIND_BWD_DKDV, D);
    const int t = static_cast<int>(T), h = static_cast<int>(H), hm = static_cast<int>(Hm);
    const std::function<void()> kernel = [&] {
        if (D == 64) {
            attn_bwd_dkdv_d64(q, k, v, dout, lse, di, dq, dk, dv, mask, count, lists, t, h, hm,
                              scale_log2, scale, dq_atomic);
        } else {
            attn_bwd_dkdv_d128(q, k, v, dout, lse, di, dq, dk, dv, mask, count, lists, t, h, hm,
                               scale_log2, scale, dq_atomic);
        }
    };
    return finish(asa_emu::launch("attn_bwd_dkdv", dim3{tiles(T), H, B},
                                  dim3{ASA_ATTN_THREADS, 1, 1}, kernel),
                  err, cap);
}

int asa_emu_attn_bwd_dq(uint32_t D, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                        const uint16_t* dout, const float* lse, const float* di, float* dq,
                        const uint32_t* mask, const uint32_t* count, const uint32_t* lists,
                        uint32_t B, uint32_t T, uint32_t H, uint32_t Hm, float scale_log2,
                        float scale, char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = asa_attn_smem_bytes(ASA_ATTN_KIND_BWD_DQ, D);
    const int t = static_cast<int>(T), h = static_cast<int>(H), hm = static_cast<int>(Hm);
    const std::function<void()> kernel = [&] {
        if (D == 64) {
            attn_bwd_dq_d64(q, k, v, dout, lse, di, dq, mask, count, lists, t, h, hm, scale_log2,
                            scale);
        } else {
            attn_bwd_dq_d128(q, k, v, dout, lse, di, dq, mask, count, lists, t, h, hm, scale_log2,
                             scale);
        }
    };
    return finish(asa_emu::launch("attn_bwd_dq", dim3{tiles(T), H, B},
                                  dim3{ASA_ATTN_THREADS, 1, 1}, kernel),
                  err, cap);
}

int asa_emu_attn_tile_classify(const uint32_t* mask, uint8_t* classes, uint32_t T,
                               uint32_t groups, char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    const std::function<void()> kernel = [&] {
        attn_tile_classify(mask, classes, static_cast<int>(T), static_cast<int>(groups));
    };
    return finish(asa_emu::launch("attn_tile_classify", dim3{groups, tiles(T), 1},
                                  dim3{ASA_ATTN_THREADS, 1, 1}, kernel),
                  err, cap);
}

int asa_emu_attn_tile_lists(const uint8_t* classes, uint32_t* fwd_count, uint32_t* fwd_list,
                            uint32_t* bwd_count, uint32_t* bwd_list, uint32_t T, uint32_t groups,
                            char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    const uint32_t n = groups * tiles(T);
    const std::function<void()> kernel = [&] {
        attn_tile_lists(classes, fwd_count, fwd_list, bwd_count, bwd_list, static_cast<int>(T),
                        static_cast<int>(groups));
    };
    return finish(asa_emu::launch("attn_tile_lists",
                                  dim3{(n + ASA_ATTN_THREADS - 1) / ASA_ATTN_THREADS, 1, 1},
                                  dim3{ASA_ATTN_THREADS, 1, 1}, kernel),
                  err, cap);
}

int asa_emu_attn_mma_probe(const uint32_t* a, const uint32_t* b, const float* c, float* d,
                           char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    const std::function<void()> kernel = [&] { attn_mma_probe(a, b, c, d); };
    return finish(asa_emu::launch("attn_mma_probe", dim3{1, 1, 1}, dim3{32, 1, 1}, kernel), err,
                  cap);
}

// Register the Rust mma.sp emulator (see MmaSpFn).
void asa_emu_set_mma_sp(asa_emu::MmaSpFn f) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::g_mma_sp = f;
}

// The 2:4 GEMM kernels by name with the launcher's parameter array (src/backend/cuda/gemm24.rs
// launch_gemm24: pointers are u64 host addresses), grid (gx, gy, gz), `threads` per block and
// `smem` bytes of dynamic shared memory.
int asa_emu_gemm24_launch(const char* name, uint32_t gx, uint32_t gy, uint32_t gz,
                          uint32_t threads, uint32_t smem, void** p, char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = smem;
    const std::string n(name);
    using Tc = void (*)(const uint16_t*, const uint32_t*, const uint32_t*, const float*, float*,
                        float*, int, int, int, int);
    Tc tc = nullptr;
    if (n == "gemm24_bf16_large") {
        tc = gemm24_bf16_large;
    } else if (n == "gemm24_f16_large") {
        tc = gemm24_f16_large;
    } else if (n == "gemm24_bf16_small") {
        tc = gemm24_bf16_small;
    } else if (n == "gemm24_f16_small") {
        tc = gemm24_f16_small;
    }
    std::function<void()> k;
    if (tc != nullptr) {
        k = [p, tc] {
            tc(ptr_at<const uint16_t>(p, 0), ptr_at<const uint32_t>(p, 1),
               ptr_at<const uint32_t>(p, 2), ptr_at<const float>(p, 3), ptr_at<float>(p, 4),
               ptr_at<float>(p, 5), arg_at<int>(p, 6), arg_at<int>(p, 7), arg_at<int>(p, 8),
               arg_at<int>(p, 9));
        };
    } else if (n == "gemm24_splitk_reduce") {
        k = [p] {
            gemm24_splitk_reduce(ptr_at<const float>(p, 0), arg_at<int>(p, 1),
                                 ptr_at<const float>(p, 2), ptr_at<float>(p, 3), arg_at<int>(p, 4),
                                 arg_at<int>(p, 5), arg_at<int>(p, 6));
        };
    } else {
        return finish("no emulated kernel named " + n, err, cap);
    }
    return finish(asa_emu::launch(name, dim3{gx, gy, gz}, dim3{threads, 1, 1}, k), err, cap);
}

// The top-k kernels, by name, with the driver's parameter array (src/backend/cuda/topk.rs
// prune_driver: each entry points at the argument's value; pointers are u64 host addresses).
int asa_emu_topk_launch(const char* name, uint32_t grid, void** p, char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    using u64 = unsigned long long;
    const std::string n(name);
    std::function<void()> k;
    if (n == "topk_hist_f32") {
        k = [p] {
            topk_hist_f32(ptr_at<const u64>(p, 0), arg_at<unsigned>(p, 1), arg_at<u64>(p, 2),
                          arg_at<unsigned>(p, 3), ptr_at<const unsigned>(p, 4),
                          ptr_at<const unsigned>(p, 5), ptr_at<u64>(p, 6), ptr_at<u64>(p, 7),
                          ptr_at<u64>(p, 8));
        };
    } else if (n == "topk_hist_16") {
        k = [p] {
            topk_hist_16(ptr_at<const u64>(p, 0), arg_at<unsigned>(p, 1), arg_at<u64>(p, 2),
                         arg_at<unsigned>(p, 3), ptr_at<const unsigned>(p, 4),
                         ptr_at<const unsigned>(p, 5), ptr_at<u64>(p, 6), ptr_at<u64>(p, 7),
                         ptr_at<u64>(p, 8), arg_at<unsigned>(p, 9));
        };
    } else if (n == "topk_tie_count_f32" || n == "topk_tie_count_16") {
        const bool f32 = n == "topk_tie_count_f32";
        k = [p, f32] {
            auto f = f32 ? topk_tie_count_f32 : topk_tie_count_16;
            f(ptr_at<const u64>(p, 0), arg_at<unsigned>(p, 1), arg_at<u64>(p, 2),
              ptr_at<const unsigned>(p, 3), ptr_at<const unsigned>(p, 4), ptr_at<unsigned>(p, 5));
        };
    } else if (n == "topk_mask_update_f32" || n == "topk_mask_update_16") {
        const bool f32 = n == "topk_mask_update_f32";
        k = [p, f32] {
            auto f = f32 ? topk_mask_update_f32 : topk_mask_update_16;
            f(ptr_at<const u64>(p, 0), arg_at<unsigned>(p, 1), arg_at<u64>(p, 2),
              ptr_at<const unsigned>(p, 3), ptr_at<u64>(p, 4));
        };
    } else if (n == "two_four_f32") {
        k = [p] {
            two_four_f32(ptr_at<const uint4>(p, 0), ptr_at<float4>(p, 1), arg_at<u64>(p, 2),
                         ptr_at<u64>(p, 3));
        };
    } else if (n == "two_four_16") {
        k = [p] {
            two_four_16(ptr_at<const uint2>(p, 0), ptr_at<float4>(p, 1), arg_at<u64>(p, 2),
                        arg_at<unsigned>(p, 3), ptr_at<u64>(p, 4));
        };
    } else {
        return finish("no emulated kernel named " + n, err, cap);
    }
    return finish(asa_emu::launch(name, dim3{grid, 1, 1}, dim3{ASA_TOPK_BLOCK, 1, 1}, k), err,
                  cap);
}

// A kernel with a divergent __syncthreads (half the block returns first): the emulation must
// report it. Used by the tests of the emulation itself.
int asa_emu_selftest_divergent_barrier(char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    const std::function<void()> kernel = [] {
        if (threadIdx.x < 64) {
            __syncthreads();
        }
    };
    return finish(asa_emu::launch("selftest_divergent_barrier", dim3{1, 1, 1}, dim3{128, 1, 1},
                                  kernel),
                  err, cap);
}

// The fused LM head (kernels/lm_head.cu) with the grids of src/backend/cuda/ops.rs
// `lm_head_xent`: the forward, then (bwd) the dx and dW kernels.
int asa_emu_lm_head_fwd(float* losses, float* lse, const float* x, const float* w,
                        const uint32_t* targets, uint32_t N, uint32_t C, uint32_t V, char* err,
                        size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    const uint32_t rows = (N + asa_head::TILE - 1) / asa_head::TILE;
    const std::function<void()> k = [=] { lm_head_fwd_f32(losses, lse, x, w, targets, N, C, V); };
    return finish(asa_emu::launch("lm_head_fwd_f32", dim3{rows, 1, 1},
                                  dim3{ASA_HEAD_THREADS, 1, 1}, k),
                  err, cap);
}

int asa_emu_lm_head_bwd(float* dx, float* dw, const float* x, const float* w, const float* lse,
                        const uint32_t* targets, float dloss, uint32_t N, uint32_t C, uint32_t V,
                        char* err, size_t cap) {
    std::lock_guard<std::mutex> lock(asa_emu::g_lock);
    asa_emu::S.smem_limit = 0;
    using asa_head::SLICE;
    using asa_head::TILE;
    const uint32_t slices = (C + SLICE - 1) / SLICE;
    if (N > 0) {
        const std::function<void()> kx = [=] {
            lm_head_bwd_dx_f32(dx, x, w, lse, targets, dloss, N, C, V);
        };
        const std::string e = asa_emu::launch("lm_head_bwd_dx_f32", dim3{(N + TILE - 1) / TILE, slices, 1},
                                              dim3{ASA_HEAD_THREADS, 1, 1}, kx);
        if (!e.empty()) {
            return finish(e, err, cap);
        }
    }
    const std::function<void()> kw = [=] {
        lm_head_bwd_dw_f32(dw, x, w, lse, targets, dloss, N, C, V);
    };
    return finish(asa_emu::launch("lm_head_bwd_dw_f32", dim3{(V + TILE - 1) / TILE, slices, 1},
                                  dim3{ASA_HEAD_THREADS, 1, 1}, kw),
                  err, cap);
}

}  // extern "C"
