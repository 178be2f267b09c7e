// online_softmax.cuh — merging online-softmax partial results, shared by classifier.cu and
// lm_head.cu: a pair (m, s) stands for the elements seen so far, m their maximum and
// s = Σ e^{x − m}; m = −∞ means none. Host-compilable (the SIMT emulation runs it).
#pragma once

#include "common.cuh"

namespace asa_softmax {

// (m, s) ← the pair for the union of both sets of elements.
ASA_HD_INLINE void merge(float& m, float& s, float m2, float s2) {
    if (m2 == -INFINITY) {
        return;
    }
    if (m == -INFINITY) {
        m = m2;
        s = s2;
        return;
    }
    const float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

}  // namespace asa_softmax
