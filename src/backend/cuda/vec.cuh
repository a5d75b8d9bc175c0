#pragma once
// Warp-level pieces of the mat-vec kernels, shared by the per-op kernels (matmul.cu) and the
// persistent decode kernel (decode_fused.cu).
#include "backend/cuda/dequant.cuh"

namespace sluice::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// w[0..32) . x[0..32); x 16-byte aligned.
__device__ __forceinline__ float dot32(const float* w, const float* x) {
    const float4* xv = (const float4*)x;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const float4 v = xv[i];
        s += w[4 * i] * v.x + w[4 * i + 1] * v.y + w[4 * i + 2] * v.z + w[4 * i + 3] * v.w;
    }
    return s;
}

// Activations staged in shared memory, each 32-chunk padded to kPad floats: lane l reads
// chunk l, and a 144-byte stride spreads a warp's 16-byte reads over all banks (profiled:
// reading x from global/L1 at a 128-byte lane stride made the mat-vec L1-bound, 92% busy).
constexpr int kPad = 36;

// dispatch_in for device code (one function for both sides would call host lambdas from device
// code: nvcc error 20013): f.template operator()<T>() for the runtime dtype t if it is one
// of List. The branch is uniform across a warp; each case is a loop specialised for its dtype.
template <typename F, DType... Ts>
__device__ __forceinline__ void visit_dtype_in(DType t, F& f, DTypeList<Ts...>) {
    ((t == Ts ? (f.template operator()<Ts>(), true) : false) || ...);
}
template <typename List, typename F>
__device__ __forceinline__ void visit_dtype(DType t, F&& f) {
    visit_dtype_in(t, f, List{});
}

}  // namespace sluice::cuda
