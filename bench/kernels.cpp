// Mat-vec and mat-mat throughput of the CPU kernels per weight dtype, through the same `matmul`
// op the model uses, on matrices far larger than the caches, against a read-only memory sweep
// on the same threads (the roofline for decode).
//   build/sluice-kbench [--threads N] [--mib M] [--tokens T] [--types q4_K,q8_0,...] [--huge 0|1] [--cols N]
// --huge 1 backs the matrices with transparent huge pages (madvise), as resident weights are.
// Prints one JSON object per dtype: weight GB/s at T=1 and the ratio to the read bandwidth,
// and GFLOP/s at T tokens.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/quant_ref.h"
#include "backend/cpu/thread_pool.h"
#include "core/dtype.h"

using namespace sluice;

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

template <typename F>
double median_s(int reps, F&& f) {
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now_s();
        f();
        t.push_back(now_s() - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// Page-aligned zeroed bytes, on 2 MiB pages when `huge` (and THP allows).
struct Bytes {
    uint8_t* p = nullptr;
    size_t n = 0;
    Bytes(size_t bytes, bool huge) : n(bytes) {
        void* v = nullptr;
        if (posix_memalign(&v, 2u << 20, bytes) != 0) throw std::bad_alloc();
        if (huge) ::madvise(v, bytes, MADV_HUGEPAGE);
        p = (uint8_t*)v;
        std::memset(p, 0, n);
    }
    ~Bytes() { std::free(p); }
    Bytes(const Bytes&) = delete;
    Bytes& operator=(const Bytes&) = delete;
};

}  // namespace

int main(int argc, char** argv) {
    int threads = 2, tokens = 32;
    bool huge = false;
    int64_t n_in = 2048;
    size_t mib = 512;
    std::string types = "q4_K,q5_K,q6_K,q8_0,q2_K,q3_K,bf16,f16,f32";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--threads")
            threads = std::atoi(argv[i + 1]);
        else if (a == "--mib")
            mib = (size_t)std::atoll(argv[i + 1]);
        else if (a == "--tokens")
            tokens = std::atoi(argv[i + 1]);
        else if (a == "--cols")
            n_in = std::atoll(argv[i + 1]);
        else if (a == "--huge")
            huge = std::atoi(argv[i + 1]) != 0;
        else if (a == "--types")
            types = argv[i + 1];
        else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    ThreadPool pool(threads);
    double bw;
    {
        const Bytes sweep(mib << 20, huge);
        bw = read_bandwidth(pool, sweep.p, sweep.n) / 1e9;
    }
    std::printf("{\"isa\": \"%s\", \"threads\": %d, \"read_gb_s\": %.2f}\n", cpu_kernels().name,
                threads, bw);

    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 1.f);
    size_t p = 0;
    while (p < types.size()) {
        size_t q = types.find(',', p);
        if (q == std::string::npos) q = types.size();
        const std::string name = types.substr(p, q - p);
        p = q + 1;
        const auto t = dtype_from_name(name);
        if (!t) {
            std::fprintf(stderr, "unknown dtype %s\n", name.c_str());
            return 2;
        }
        const size_t rb = row_bytes(*t, n_in);
        const int64_t n_out = (int64_t)((mib << 20) / rb);
        // 64 distinct quantized rows tiled over the matrix: real blocks, cheap to make.
        Bytes w((size_t)n_out * rb, huge);
        std::vector<float> xr((size_t)n_in);
        for (int r = 0; r < 64; ++r) {
            for (auto& v : xr) v = nd(rng);
            quantize_row_ref(*t, xr.data(), w.p + (size_t)r * rb, n_in);
        }
        for (int64_t r = 64; r < n_out; ++r)
            std::memcpy(w.p + (size_t)r * rb, w.p + (size_t)(r % 64) * rb, rb);
        TensorView W;
        W.dtype = *t;
        W.data = w.p;
        W.ne = {n_in, n_out, 1, 1};
        std::vector<float> x((size_t)n_in * tokens), y((size_t)n_out * tokens);
        for (auto& v : x) v = nd(rng);
        const double s1 = median_s(7, [&] { matmul(pool, W, x.data(), 1, y.data()); });
        // Prefill-like: T tokens on a slice that stays the same size in bytes per token.
        TensorView Wt = W;
        Wt.ne[1] = std::max<int64_t>(64, n_out / 16);
        const double sT = median_s(3, [&] { matmul(pool, Wt, x.data(), tokens, y.data()); });
        const double gbs = (double)w.n / s1 / 1e9;
        std::printf(
            "{\"dtype\": \"%s\", \"matvec_gb_s\": %.2f, \"of_read_bw\": %.2f, "
            "\"matmul_t%d_gflop_s\": %.1f}\n",
            name.c_str(), gbs, gbs / bw, tokens,
            2.0 * (double)Wt.rows() * (double)n_in * tokens / sT / 1e9);
        std::fflush(stdout);
    }
    return 0;
}
