#pragma once
// Shared by the standalone GPU benches (gpu_floor.cu, gpu_gateup.cu), which use the CUDA
// runtime directly rather than sluice's backend.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

// A runtime call that must succeed: prints the call and the error, exits 1.
#define CK(expr)                                                               \
    do {                                                                       \
        const cudaError_t e_ = (expr);                                         \
        if (e_ != cudaSuccess) {                                               \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, \
                         cudaGetErrorString(e_));                              \
            std::exit(1);                                                      \
        }                                                                      \
    } while (0)

// Microseconds per call of f() (which enqueues work on s), over reps calls between two
// events on s.
template <typename F>
double event_us(cudaStream_t s, int reps, F&& f) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, s));
    for (int r = 0; r < reps; ++r) f();
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return 1e3 * ms / reps;
}

// griddepcontrol.wait: a kernel launched with programmatic stream serialization waits here
// for the grid before it (sm_90+; a no-op below).
__device__ __forceinline__ void bench_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Launches kernel fn (its arguments a...) on st with programmatic stream serialization, as
// sluice's decode kernels are launched.
template <typename... A>
void bench_launch_pdl(const void* fn, dim3 grid, int threads, cudaStream_t st, A... a) {
    void* args[] = {(void*)&a...};
    cudaLaunchConfig_t lc{};
    lc.gridDim = grid;
    lc.blockDim = dim3(threads);
    lc.stream = st;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    lc.attrs = &attr;
    lc.numAttrs = 1;
    CK(cudaLaunchKernelExC(&lc, fn, args));
}

// Median microseconds per launch of a graph of n launches, launch l enqueued on st by
// enqueue(l) during capture; 5 samples of 10 replays after one warm-up replay.
template <typename F>
double graph_us_per_launch(cudaStream_t st, int n, F&& enqueue) {
    cudaGraph_t gr;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < n; ++l) enqueue(l);
    CK(cudaStreamEndCapture(st, &gr));
    cudaGraphExec_t ge;
    CK(cudaGraphInstantiate(&ge, gr, 0));
    CK(cudaGraphLaunch(ge, st));
    CK(cudaStreamSynchronize(st));
    std::vector<double> t;
    for (int rep = 0; rep < 5; ++rep)
        t.push_back(event_us(st, 10, [&] { CK(cudaGraphLaunch(ge, st)); }) / n);
    std::sort(t.begin(), t.end());
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(gr));
    return t[2];
}

// max |out - ref| / max |ref|
inline double max_rel_diff(const std::vector<float>& out, const std::vector<float>& ref) {
    double err = 0, mx = 0;
    for (size_t i = 0; i < out.size(); ++i) {
        err = std::max(err, (double)std::fabs(out[i] - ref[i]));
        mx = std::max(mx, (double)std::fabs(ref[i]));
    }
    return err / mx;
}
