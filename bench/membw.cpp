// STREAM-like triad a[i] = b[i] + s * c[i] over arrays far larger than the caches, on N
// threads: the memory-bandwidth roofline that decode speed is compared against.
//   build/sluice-membw [threads] [MiB per array]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : (int)std::thread::hardware_concurrency();
    const size_t mib = argc > 2 ? (size_t)std::atoll(argv[2]) : 512;
    const size_t n = mib * (1u << 20) / sizeof(double);
    std::vector<double> a(n), b(n, 1.0), c(n, 2.0);
    auto triad = [&](int t) {
        const size_t lo = n * (size_t)t / (size_t)threads,
                     hi = n * (size_t)(t + 1) / (size_t)threads;
        for (size_t i = lo; i < hi; ++i) a[i] = b[i] + 3.0 * c[i];
    };
    std::vector<double> gbs;
    for (int rep = 0; rep < 7; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> th;
        for (int t = 0; t < threads; ++t) th.emplace_back(triad, t);
        for (auto& x : th) x.join();
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        gbs.push_back(3.0 * (double)n * sizeof(double) / s / 1e9);  // 2 reads + 1 write
    }
    std::sort(gbs.begin(), gbs.end());
    std::printf(
        "{\"threads\": %d, \"array_mib\": %zu, \"triad_gb_s_median\": %.2f, \"triad_gb_s_max\": "
        "%.2f}\n",
        threads, mib, gbs[gbs.size() / 2], gbs.back());
    return a[n / 2] == 7.0 ? 0 : 1;
}
