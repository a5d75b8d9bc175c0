// sluice-gpu-floor: how fast a decode step *shaped* like ours can be on this GPU, whatever
// the mat-vecs compute. Each phase streams its bytes of never-reused weights (16-byte loads,
// several in flight per thread) and reduces them to nothing, so a phase's time is only the
// launch (or barrier), the ramp, the tail and bytes / bandwidth. Two structures:
//   chain:      one launch per phase, the step captured as a CUDA graph (as sluice decodes),
//               optionally with programmatic dependent launch;
//   persistent: one cooperative launch per step, phases separated by grid-wide barriers.
// Prints (1) µs per launch against bytes per launch, (2) one decode step of a model's phase
// list against bytes / device-to-device copy bandwidth: the best that structure can reach.
//   sluice-gpu-floor [LAYERS [MB_PHASE1 MB_PHASE2 ...]]   (default: the Qwen3-30B-A3B shape)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu_bench.cuh"

namespace {

constexpr int kThreads = 256;

// Reads p[0, n) (16-byte words) over the calling grid's threads, U loads in flight per
// thread; writes `sink` only if the words' xor is a value it never is, so the loads stay.
template <int U>
__device__ void stream(const uint4* __restrict__ p, size_t n, unsigned* sink) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    for (; i + (U - 1) * stride < n; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) v[u] = __ldcs(p + i + u * stride);
#pragma unroll
        for (int u = 0; u < U; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) {
        const uint4 v = __ldcs(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

template <int U>
__global__ void phase_kernel(const uint4* p, size_t n, unsigned* sink) {
    bench_pdl_wait();
    stream<U>(p, n, sink);
}

// Grid-wide barrier (cooperative launch: every block resident). bar[0] counts arrivals,
// bar[1] is the generation.
__device__ void grid_sync(unsigned* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        volatile unsigned* gen = bar + 1;
        const unsigned g = *gen;
        __threadfence();
        if (atomicAdd(bar, 1) == gridDim.x - 1) {
            bar[0] = 0;
            __threadfence();
            atomicAdd(bar + 1, 1);
        } else {
            while (*gen == g) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}

struct Phase {
    size_t offset, n;  // in 16-byte words
};

template <int U>
__global__ void persistent_kernel(const uint4* base, const Phase* phases, int n_phases,
                                  unsigned* bar, unsigned* sink) {
    for (int k = 0; k < n_phases; ++k) {
        stream<U>(base + phases[k].offset, phases[k].n, sink);
        grid_sync(bar);
    }
}

struct Config {
    int bps, unroll;
    bool pdl;
};

struct Device {
    int sms = 0;
    uint4* buf = nullptr;
    size_t words = 0;  // buffer length in 16-byte words
    unsigned* sink = nullptr;
    unsigned* bar = nullptr;
    cudaStream_t s{};
};

template <auto Kernel>
void launch_phase(const Device& d, const Config& c, const uint4* p, size_t n) {
    cudaLaunchConfig_t lc{};
    lc.gridDim = dim3((unsigned)(d.sms * c.bps));
    lc.blockDim = dim3(kThreads);
    lc.stream = d.s;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    lc.attrs = &attr;
    lc.numAttrs = c.pdl ? 1 : 0;
    CK(cudaLaunchKernelEx(&lc, Kernel, p, n, d.sink));
}

// Phases laid out one after another through the buffer (wrapping), so no phase finds its
// bytes in L2 from an earlier one, as a decode step never rereads a weight.
std::vector<Phase> lay_out(const Device& d, const std::vector<double>& mb) {
    std::vector<Phase> out;
    size_t at = 0;
    for (double m : mb) {
        const size_t n = (size_t)(m * (1 << 20) / 16);
        if (at + n > d.words) at = 0;
        out.push_back({at, n});
        at += (n + 255) / 256 * 256;
    }
    return out;
}

// Mean µs per replay of the phases as a graph of one launch each.
double chain_us(const Device& d, const Config& c, const std::vector<Phase>& ph, int reps) {
    cudaGraph_t g;
    CK(cudaStreamBeginCapture(d.s, cudaStreamCaptureModeThreadLocal));
    for (const Phase& p : ph) {
        if (c.unroll == 8)
            launch_phase<phase_kernel<8>>(d, c, d.buf + p.offset, p.n);
        else
            launch_phase<phase_kernel<4>>(d, c, d.buf + p.offset, p.n);
    }
    CK(cudaStreamEndCapture(d.s, &g));
    cudaGraphExec_t ge;
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, d.s));
    const double us = event_us(d.s, reps, [&] { CK(cudaGraphLaunch(ge, d.s)); });
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    return us;
}

// Mean µs per launch of the phases as one cooperative kernel with a barrier after each.
double persistent_us(const Device& d, const Config& c, const std::vector<Phase>& ph, int reps) {
    Phase* dp;
    CK(cudaMalloc(&dp, ph.size() * sizeof(Phase)));
    CK(cudaMemcpy(dp, ph.data(), ph.size() * sizeof(Phase), cudaMemcpyHostToDevice));
    const void* fn =
        c.unroll == 8 ? (const void*)persistent_kernel<8> : (const void*)persistent_kernel<4>;
    int fit = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, fn, kThreads, 0));
    if (fit < c.bps) {
        CK(cudaFree(dp));
        return -1;
    }
    const uint4* base = d.buf;
    int n = (int)ph.size();
    void* args[] = {(void*)&base, (void*)&dp, (void*)&n, (void*)&d.bar, (void*)&d.sink};
    auto once = [&] {
        CK(cudaLaunchCooperativeKernel(fn, dim3((unsigned)(d.sms * c.bps)), dim3(kThreads), args, 0,
                                       d.s));
    };
    once();
    const double us = event_us(d.s, reps, once);
    CK(cudaFree(dp));
    return us;
}

// Device-to-device copy, GB/s counting bytes read plus written (how sluice bench states the
// device-memory bound).
double d2d_gbs(const Device& d) {
    const size_t bytes = 1ull << 30;
    std::vector<double> v;
    for (int r = 0; r < 5; ++r) {
        const double us = event_us(d.s, 1, [&] {
            CK(cudaMemcpyAsync((char*)d.buf + bytes, d.buf, bytes, cudaMemcpyDeviceToDevice, d.s));
        });
        v.push_back(2.0 * bytes / (us * 1e-6) / 1e9);
    }
    std::sort(v.begin(), v.end());
    return v[2];
}

}  // namespace

int main(int argc, char** argv) {
    // Qwen3-30B-A3B as sluice-synth makes it, per layer: q/k/v 11.1 MB, attention (a short
    // context's K/V) 0.1, output projection 8.9, router 1.0, expert gate/up 14.2, down 7.1.
    int layers = 48;
    std::vector<double> per_layer = {11.1, 0.1, 8.9, 1.0, 14.2, 7.1};
    if (argc > 1) layers = std::atoi(argv[1]);
    if (argc > 2) per_layer.assign(argc - 2, 0.0);
    for (int i = 2; i < argc; ++i) per_layer[i - 2] = std::atof(argv[i]);
    if (layers <= 0 || per_layer.empty()) {
        std::fprintf(stderr, "usage: sluice-gpu-floor [LAYERS [MB_PER_PHASE ...]]\n");
        return 2;
    }

    Device d;
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    d.sms = prop.multiProcessorCount;
    const size_t bytes = 4ull << 30;
    d.words = bytes / 16;
    CK(cudaMalloc(&d.buf, bytes));
    CK(cudaMemset(d.buf, 1, bytes));
    CK(cudaMalloc(&d.sink, 4));
    CK(cudaMalloc(&d.bar, 8));
    CK(cudaMemset(d.bar, 0, 8));
    CK(cudaStreamCreateWithFlags(&d.s, cudaStreamNonBlocking));
    const double bw = d2d_gbs(d);
    std::printf("%s, %d SMs, L2 %d MB; device-to-device copy %.0f GB/s\n", prop.name, d.sms,
                prop.l2CacheSize >> 20, bw);

    const Config configs[] = {{1, 4, false}, {2, 4, false}, {4, 4, false}, {8, 4, false},
                              {2, 8, false}, {4, 8, false}, {2, 4, true},  {4, 4, true}};
    std::printf("\n(1) chain of 64 launches of one size: us per launch (GB/s)\n%-22s",
                "blocks/SM unroll pdl");
    const double sizes[] = {0, 0.25, 1, 2, 4, 8, 16, 64};
    for (double m : sizes) std::printf(" %13.2f MB", m);
    std::printf("\n");
    for (const Config& c : configs) {
        std::printf("%9d %6d %5s", c.bps, c.unroll, c.pdl ? "yes" : "no");
        for (double m : sizes) {
            const auto ph = lay_out(d, std::vector<double>(64, m));
            const double us = chain_us(d, c, ph, 20) / 64;
            std::printf("   %6.2f (%4.0f)", us, m * (1 << 20) / (us * 1e3));
        }
        std::printf("\n");
    }

    std::vector<double> step;
    double step_mb = 0;
    for (int l = 0; l < layers; ++l)
        for (double m : per_layer) step.push_back(m), step_mb += m;
    const auto ph = lay_out(d, step);
    const double bound_us = step_mb * (1 << 20) / (bw * 1e3);
    std::printf(
        "\n(2) one step: %d layers x %zu phases, %.0f MB; bound (copy bandwidth) %.0f us = "
        "%.0f steps/s\n",
        layers, per_layer.size(), step_mb, bound_us, 1e6 / bound_us);
    std::printf("%-30s %10s %10s %8s\n", "structure", "us/step", "steps/s", "of bound");
    for (const Config& c : configs) {
        const double us = chain_us(d, c, ph, 10);
        std::printf("chain      %2d/SM x%d pdl=%-3s  %10.1f %10.1f %7.1f%%\n", c.bps, c.unroll,
                    c.pdl ? "yes" : "no", us, 1e6 / us, 100 * bound_us / us);
    }
    for (const Config& c : configs) {
        if (c.pdl) continue;
        const double us = persistent_us(d, c, ph, 10);
        if (us < 0) continue;
        std::printf("persistent %2d/SM x%d          %10.1f %10.1f %7.1f%%\n", c.bps, c.unroll, us,
                    1e6 / us, 100 * bound_us / us);
    }
    return 0;
}
