// adamw.cuh — one element of AdamW, shared by the CUDA kernel (kernels/adamw.cu) and the host
// build (kernels/host_helpers.cpp) so tests can check the device math on the CPU.
//
// Contract (src/backend/mod.rs `Ops::adamw`, DESIGN.md §3 precision rules), step t is 1-based:
//   g' = g * grad_scale
//   m  = beta1*m + (1-beta1)*g'
//   v  = beta2*v + (1-beta2)*g'^2
//   mhat = m / (1 - beta1^t)        (bc1 = 1 - beta1^t, computed once on the host)
//   vhat = v / (1 - beta2^t)        (bc2 = 1 - beta2^t)
//   p  = p - lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p)    (decoupled decay, old p)
//   where mask == 0: p = m = v = 0 exactly (pruned weights stay pruned; no mask means mask 1).
// The bias corrections are computed by the caller in f64 and rounded to f32 once:
//   bc = (float)(1.0 - pow((double)beta, (double)t))
// (asa_adamw_bias_correction below, and the Rust launcher do exactly this).
#pragma once

#include "common.cuh"

// Updates *p, *m, *v in place for one element.
ASA_HD_INLINE void asa_adamw_update(float* p, float* m, float* v, float g, float mask, float lr,
                                    float beta1, float beta2, float eps, float weight_decay,
                                    float grad_scale, float bc1, float bc2) {
    if (mask == 0.0f) {
        *p = 0.0f;
        *m = 0.0f;
        *v = 0.0f;
        return;
    }
    const float gs = g * grad_scale;
    const float m1 = beta1 * *m + (1.0f - beta1) * gs;
    const float v1 = beta2 * *v + (1.0f - beta2) * (gs * gs);
    const float mhat = m1 / bc1;
    const float vhat = v1 / bc2;
    const float p0 = *p;
    *p = p0 - lr * (mhat / (asa_sqrtf(vhat) + eps) + weight_decay * p0);
    *m = m1;
    *v = v1;
}

#if !defined(__CUDA_ARCH__)
// 1 - beta^t computed in f64 and rounded once (host only; kernels receive the result).
inline float asa_adamw_bias_correction(float beta, unsigned t) {
    return static_cast<float>(1.0 - std::pow(static_cast<double>(beta), static_cast<double>(t)));
}
#endif
