/*
adamw.cu — AdamW optimizer step, one f32 tensor at a time.

Computes: the contract in kernels/adamw.cuh (= src/backend/mod.rs `Ops::adamw`, precision per
DESIGN.md §3): p, m, v updated in place from the gradient g, with an optional 0/1 prune mask
(mask == 0 forces p = m = v = 0 exactly). Bias corrections bc1 = 1-beta1^t, bc2 = 1-beta2^t are
computed on the host in f64 and passed rounded to f32. Shapes: one flat tensor of n elements.

Variants:
  adamw_f32 — f32 master weights, f32 gradient and moments; mask nullable (nullptr = no mask).
              The only variant: the step is memory-bound (7 streams of 4 bytes per element),
              so one grid-stride loop is all it needs.

Launch shape: 1-D grid-stride loop, ASA_ELEMENTWISE_BLOCK (256) threads per block,
  grid = min(ceil(n / 256), cap); any grid size is correct (src/backend/cuda/kernels.rs
  `launch_adamw_f32` chooses it).

Tests: tests/cuda_build.rs — `host_adamw_matches_f64_reference` checks the shared helper
  (compiled for the host) against an independent f64 formula; `gpu_adamw_matches_host_helper`
  runs this kernel on a GPU against the host helper (skipped without a GPU, a failure when
  ASA_LTH_REQUIRE_GPU=1). Resource check: scripts/check-kernels.sh (hot kernel: no spills,
  no local memory).
*/
#include "adamw.cuh"

// asa-lth: hot adamw_f32
extern "C" __global__ void __launch_bounds__(ASA_ELEMENTWISE_BLOCK)
adamw_f32(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
          float* __restrict__ v, const float* __restrict__ mask, size_t n, float lr,
          float beta1, float beta2, float eps, float wd, float grad_scale, float bc1, float bc2) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        float pi = p[i];
        float mi = m[i];
        float vi = v[i];
        const float mk = mask != nullptr ? mask[i] : 1.0f;
        asa_adamw_update(&pi, &mi, &vi, g[i], mk, lr, beta1, beta2, eps, wd, grad_scale, bc1,
                         bc2);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}
