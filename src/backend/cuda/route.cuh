#pragma once
// Softmax top-k routing by one warp, shared by the routing kernel (ops.cu) and the router
// mat-vec that routes in its last block (matmul.cu).
#include <cfloat>
#include <cstdint>

namespace sluice::cuda {

// The warp's largest (best, bi), ties to the lower index; every lane gets it.
__device__ __forceinline__ void warp_argmax(float& best, int& bi) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
    }
}

// Most experts the register version takes (32 lanes x 8 logits each).
constexpr int kRouteRegExperts = 256;
constexpr int kRouteRegMaxK = 32;
inline bool route_in_registers(int n_expert, int k) {
    return n_expert <= kRouteRegExperts && k <= kRouteRegMaxK;
}

// One token's routing by a whole warp, for n_expert <= 32 * kPer and k <= 32, in registers:
// every logit load issued up front (`Load` reads logit e), and lane j keeps the j-th choice
// until one write at the end. Softmax, then k rounds of arg-max (ties to the lower index),
// optional renormalisation of the chosen k, times scale.
template <int kPer, typename Load>
__device__ void route_warp(Load load, int n_expert, int k, int norm, float scale, int32_t* ids,
                           float* weights) {
    const int lane = threadIdx.x & 31;
    float p[kPer];
    float mx = -FLT_MAX;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int e = lane + 32 * i;
        p[i] = e < n_expert ? load(e) : -FLT_MAX;
        mx = fmaxf(mx, p[i]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        p[i] = lane + 32 * i < n_expert ? expf(p[i] - mx) : -1.f;
        sum += fmaxf(p[i], 0.f);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    float chosen_sum = 0.f, my_w = 0.f;
    int my_id = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    // Arg-max by two warp reductions (redux.sync) instead of five rounds of two dependent
    // shuffles: candidates p >= 0 as key = bits(p) + 1 (non-negative floats order as their
    // bits; -0 taken as +0), 0 for taken, absent or NaN; the max key, then the lowest expert
    // holding it.
    unsigned key[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i)
        key[i] = p[i] >= 0.f ? (__float_as_uint(p[i]) & 0x7fffffffu) + 1u : 0u;
    for (int j = 0; j < k; ++j) {
        unsigned lk = 0;
        int li = n_expert;
#pragma unroll
        for (int i = 0; i < kPer; ++i)  // ascending e per lane: ties keep the lower index
            if (key[i] > lk) lk = key[i], li = lane + 32 * i;
        const unsigned m = __reduce_max_sync(0xffffffffu, lk);
        int bi = __reduce_min_sync(0xffffffffu, (unsigned)(lk == m ? li : n_expert));
        float best = __uint_as_float(m - 1u);
        if (m == 0 || bi >= n_expert) bi = 0, best = 0.f;  // NaN logits: no candidate
#pragma unroll
        for (int i = 0; i < kPer; ++i)
            if (lane + 32 * i == bi) key[i] = 0;  // taken
        if (lane == j) my_id = bi, my_w = best / sum;
        chosen_sum += best / sum;
    }
#else
    for (int j = 0; j < k; ++j) {
        float best = -1.f;
        int bi = n_expert;
#pragma unroll
        for (int i = 0; i < kPer; ++i)  // ascending e per lane: ties keep the lower index
            if (p[i] > best) best = p[i], bi = lane + 32 * i;
        warp_argmax(best, bi);
        if (bi >= n_expert) bi = 0, best = 0.f;  // NaN logits: no candidate; stay in bounds
#pragma unroll
        for (int i = 0; i < kPer; ++i)
            if (lane + 32 * i == bi) p[i] = -2.f;  // taken
        if (lane == j) my_id = bi, my_w = best / sum;
        chosen_sum += best / sum;
    }
#endif
    if (lane < k) {
        const float f = (norm ? 1.0f / (chosen_sum + 1e-20f) : 1.0f) * scale;
        ids[lane] = my_id;
        weights[lane] = my_w * f;
    }
}

}  // namespace sluice::cuda
