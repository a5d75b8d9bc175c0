#pragma once
// Shared by the CUDA translation units: the Gpu's streams and scratch, and error checks.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "backend/cuda/cublas_lib.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"

namespace sluice::cuda {

[[noreturn]] void fail_cuda(const char* what, cudaError_t e, const char* file, int line);
[[noreturn]] void fail_cublas(const char* what, cublasStatus_t s, const char* file, int line);

#define SLUICE_CUDA_CHECK(expr)                                                          \
    do {                                                                                 \
        const cudaError_t e_ = (expr);                                                   \
        if (e_ != cudaSuccess) ::sluice::cuda::fail_cuda(#expr, e_, __FILE__, __LINE__); \
    } while (0)
#define SLUICE_CUBLAS_CHECK(expr)                                       \
    do {                                                                \
        const cublasStatus_t s_ = (expr);                               \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                \
            ::sluice::cuda::fail_cublas(#expr, s_, __FILE__, __LINE__); \
    } while (0)
// After a kernel launch: launch errors (bad configuration) surface here, not later.
#define SLUICE_CUDA_LAUNCHED() SLUICE_CUDA_CHECK(cudaGetLastError())

// Called once by every block counted in `total`, after writing its outputs: true in the
// block that arrives last, which may then read the others' outputs (through L2, __ldcg). That
// block resets *counter to zero, so the next launch (or graph replay) starts from zero.
__device__ inline bool last_block_to_arrive(int* counter, int total) {
    __shared__ int last;
    __threadfence();  // this block's outputs are visible device-wide before it is counted
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(counter, 1) == total - 1;
        if (last) *counter = 0;
    }
    __syncthreads();
    if (last) __threadfence();
    return last;
}

// Programmatic dependent launch (sm_90+). A kernel started by launch_pdl is scheduled as the
// kernel before it in the stream finishes (its blocks all exited) rather than after that
// grid's completion has gone through the stream, and must call pdl_wait() before anything it
// reads or writes that another kernel touches: pdl_wait returns once the previous grid has
// completed and its writes are visible. Before it, a kernel may only read its own constant
// weights (prefetching them into L2). Without the launch attribute, or below sm_90, it is a
// no-op. No kernel triggers its dependents early (griddepcontrol.launch_dependents): waiting
// blocks resident beside a running grid slowed decode on the H200 by 2-8% (docs/benchmarks.md).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Prefetches bytes [p, p + n) into L2, lines spread over `nthreads` threads (index i).
__device__ __forceinline__ void prefetch_l2(const void* p, size_t n, size_t i, size_t nthreads) {
    for (size_t o = i * 128; o < n; o += nthreads * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"((const char*)p + o));
}

// The current device's attribute a.
int device_attribute(cudaDeviceAttr a);
// Dynamic shared memory kernel k may take beyond its static part (reductions), raised to the
// device's opt-in limit; call once per kernel.
template <typename Kernel>
int opt_in_smem(Kernel k) {
    const int optin = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
    cudaFuncAttributes fa{};
    SLUICE_CUDA_CHECK(cudaFuncGetAttributes(&fa, k));
    const int max_smem = optin - (int)fa.sharedSizeBytes;
    SLUICE_CUDA_CHECK(
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem));
    return max_smem;
}
// Switches kept for side-by-side runs: the environment variable `name` set to 0 is off, set
// to anything else on; unset, `dflt`.
bool env_flag(const char* name, bool dflt);

// On when the device is sm_90 or newer, unless SLUICE_GPU_PDL=0 (for comparisons).
bool pdl_on();

// kernel<<<grid, block, smem, s>>>(args...), with programmatic stream serialization when
// pdl_on(): the kernel must follow the pdl_wait() contract above.
template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                Args&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = pdl_on() ? 1 : 0;
    SLUICE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// Decode attention splits a head's positions into at most kAttnSplits chunks of at least
// kAttnSplitMin positions; heads and value widths beyond these take the one-block-per-head path.
constexpr int kAttnSplits = 32, kAttnSplitMin = 64, kAttnMaxHeads = 128, kAttnMaxVd = 256;
// Positions a warp of decode attention loads the K (then V) rows of before using any.
constexpr int kAttnBatch = 4;

struct Gpu::Impl {
    cudaStream_t compute = nullptr, side = nullptr;
    cudaEvent_t side_done = nullptr;
    cudaEvent_t side_mark[Gpu::kSideMarks] = {};
    cublasHandle_t blas = nullptr;
    // rope_attention in one launch where it applies (SLUICE_GPU_ROPE_FUSE=0 at construction:
    // two, for comparisons).
    bool rope_fuse = true;
    // f16 tiles of dequantized weights and converted activations for tensor-core matmuls.
    DeviceBuffer w16, x16, y32;
    // Blocks finished in a launch whose last block does a tail step (the router's routing);
    // zero between launches: the last block resets it.
    DeviceBuffer done;
    // Split decode attention: per-chunk partials [kAttnMaxHeads][kAttnSplits][kAttnMaxVd + 2]
    // and a finished-chunk counter per head (zero between launches).
    DeviceBuffer attn_part, attn_done;
    // The persistent decode kernel (decode_layers): on with SLUICE_GPU_FUSED=1 at construction;
    // its grid barrier's arrival count and generation (count zero between barriers).
    bool fused = false;
    DeviceBuffer grid_bar;
    // SLUICE_GPU_FUSED_TRACE=1: decode_layers' per-phase times (layout: kFusedTrace*), printed
    // when the Gpu goes away.
    DeviceBuffer fused_trace;
    // Grows the scratch buffers; only between ops (the stream is ordered).
    void reserve(DeviceBuffer& b, size_t bytes);
};

// Phases of a layer in decode_layers: q/k/v, attention, output projection, router, routing +
// expert gate/up, expert down.
constexpr int kFusedPhases = 6;
// The trace's u64 words, all written on the device (graph replays bypass the host): per phase
// the wall time block 0 saw (ns), then per phase the blocks' summed busy times, then the layers
// run and the grid's block count.
constexpr int kFusedTraceBusy = kFusedPhases, kFusedTraceLayers = 2 * kFusedPhases,
              kFusedTraceBlocks = kFusedTraceLayers + 1, kFusedTraceWords = kFusedTraceBlocks + 1;
// SLUICE_GPU_FUSED_TRACE's summary on stderr (decode_fused.cu).
void print_fused_trace(const Gpu::Impl& p);

}  // namespace sluice::cuda
