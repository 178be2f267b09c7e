// host_helpers.cpp — the kernels' __host__ __device__ helpers compiled for the CPU.
//
// build.rs compiles this file with the `cc` crate (always, with or without nvcc) into a static
// library linked into the asa_lth crate. Without nvcc, common.cuh defines ASA_HD away, so the
// exact device-math code in kernels/*.cuh runs here; src/backend/cuda/host.rs declares these
// functions and wraps them safely, and tests/cuda_build.rs checks them against independent
// Rust implementations of each contract (DESIGN.md §6.2).
//
// Every function is `extern "C"` and takes only scalars and raw pointers.
#include <cstddef>
#include <cstdint>

#include "adamw.cuh"

extern "C" {

// One AdamW element (kernels/adamw.cuh), with the bias corrections computed from step t the
// same way the Rust launcher computes them for the kernel.
void asa_host_adamw_update(float* p, float* m, float* v, float g, float mask, float lr,
                           float beta1, float beta2, float eps, float weight_decay,
                           float grad_scale, uint32_t t) {
    const float bc1 = asa_adamw_bias_correction(beta1, t);
    const float bc2 = asa_adamw_bias_correction(beta2, t);
    asa_adamw_update(p, m, v, g, mask, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
}

// The whole adamw_f32 kernel run on the host: same arguments, same meaning (mask nullable).
void asa_host_adamw_f32(float* p, const float* g, float* m, float* v, const float* mask,
                        size_t n, float lr, float beta1, float beta2, float eps, float wd,
                        float grad_scale, float bc1, float bc2) {
    for (size_t i = 0; i < n; ++i) {
        const float mk = mask != nullptr ? mask[i] : 1.0f;
        asa_adamw_update(&p[i], &m[i], &v[i], g[i], mk, lr, beta1, beta2, eps, wd, grad_scale,
                         bc1, bc2);
    }
}

// 1 - beta^t as the kernels receive it.
float asa_host_adamw_bias_correction(float beta, uint32_t t) {
    return asa_adamw_bias_correction(beta, t);
}

}  // extern "C"
