#pragma once
// Activations staged in shared memory by the mat-vec kernels (matmul.cu, matvec_stream.cu):
// each 32-chunk padded to kPad floats (vec.cuh).
#include "backend/cuda/gpu_impl.cuh"
#include "backend/cuda/vec.cuh"

namespace sluice::cuda {

// Most bytes staged: the device's opt-in shared memory per block (227 KiB on sm_90, 163 KiB
// on sm_80); larger activations are read from global memory.
inline size_t max_stage() {
    // room for the kernels' static shared memory
    static const size_t bytes =
        (size_t)device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin) - 1024;
    return bytes;
}
inline size_t stage_bytes(int n_vec, int len) {
    return (size_t)n_vec * (size_t)(len / 32) * kPad * sizeof(float);
}
// Whether a mat-vec launch over n rows of len floats can apply `norm` itself: the fused
// RMSNorm needs its input staged.
inline bool norm_fusable(const NormIn& norm, int n, int len) {
    return !norm.w || stage_bytes(n, len) <= max_stage();
}
// Staging loads per thread issued before the first store: with one load per loop trip the
// stores to shared memory (generic pointers, possibly aliasing) kept each trip's global load
// waiting for the last, and staging sat on every block's critical path (ncu, H200).
constexpr int kStageBatch = 4;

// xs[t][c * kPad + i] = x[t * ldx + 32c + i] (times w[32c + i] when w is set) for t < n_vec;
// ssq[t] (NT >= n_vec entries, when set) gets this thread's share of row t's sum of squares of
// x. 16-byte accesses when x, ldx and w allow. Block-wide; ends with a barrier.
template <int NT = 1>
__device__ inline void stage_rows(const float* x, int ldx, int n_vec, int len, float* xs,
                                  const float* w = nullptr, float* ssq = nullptr) {
    const int nc = len / 32;
#pragma unroll
    for (int t = 0; t < NT; ++t)
        if (ssq) ssq[t] = 0.f;
    const bool vec = ((uintptr_t)x & 15) == 0 && (ldx & 3) == 0 && ((uintptr_t)w & 15) == 0;
    if (vec) {
        const int n4 = len / 4, total = n_vec * n4;  // len is a multiple of 32
        for (int i0 = threadIdx.x; i0 < total; i0 += kStageBatch * blockDim.x) {
            float4 v[kStageBatch], m[kStageBatch];
#pragma unroll
            for (int u = 0; u < kStageBatch; ++u) {
                const int i = i0 + u * (int)blockDim.x;
                if (i >= total) continue;
                const int t = i / n4, k4 = i % n4;
                v[u] = *(const float4*)(x + (size_t)t * ldx + 4 * k4);
                if (w) m[u] = *(const float4*)(w + 4 * k4);
            }
#pragma unroll
            for (int u = 0; u < kStageBatch; ++u) {
                const int i = i0 + u * (int)blockDim.x;
                if (i >= total) continue;
                const int t = i / n4, k = 4 * (i % n4);
                if (ssq) {
                    const float q =
                        v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
#pragma unroll
                    for (int tt = 0; tt < NT; ++tt)  // constant indices keep ssq in registers
                        if (tt == t) ssq[tt] += q;
                }
                if (w)
                    v[u] = make_float4(v[u].x * m[u].x, v[u].y * m[u].y, v[u].z * m[u].z,
                                       v[u].w * m[u].w);
                *(float4*)(xs + (size_t)t * nc * kPad + (k >> 5) * kPad + (k & 31)) = v[u];
            }
        }
    } else {
        for (int i = threadIdx.x; i < n_vec * len; i += blockDim.x) {
            const int t = i / len, k = i % len;
            const float v = x[(size_t)t * ldx + k];
            if (ssq)
#pragma unroll
                for (int tt = 0; tt < NT; ++tt)
                    if (tt == t) ssq[tt] += v * v;
            xs[(size_t)t * nc * kPad + (k >> 5) * kPad + (k & 31)] = w ? v * w[k] : v;
        }
    }
    __syncthreads();
}
__device__ inline void stage_x(const float* x, int ldx, int n_vec, int len, float* xs) {
    stage_rows(x, ldx, n_vec, len, xs);
}
extern __shared__ __align__(16) float x_stage[];

// Dynamic shared memory to launch Kernel with when it stages n_vec activation rows of len
// floats, raising the kernel's limit once when needed; 0: too large, read from global.
template <auto Kernel>
size_t stage_smem(int n_vec, int len) {
    const size_t bytes = stage_bytes(n_vec, len);
    if (bytes > max_stage()) return 0;
    static size_t allowed = 48 << 10;
    if (bytes > allowed) {
        SLUICE_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)max_stage()));
        allowed = max_stage();
    }
    return bytes;
}

}  // namespace sluice::cuda
