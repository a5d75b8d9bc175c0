// sluice-gpu-kbench: CUDA kernel throughput at the shapes of a decode step, to tell kernel
// speed from launch overhead. Each case runs `reps` back-to-back launches between two
// device syncs; the time per launch against bytes read gives GB/s.
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/cpu/quant_ref.h"
#include "backend/cuda/cuda.h"

using namespace sluice;

namespace {

template <typename F>
double us_per_call(cuda::Gpu& gpu, int reps, F&& f) {
    f();
    gpu.sync();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    gpu.sync();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
               .count() /
           reps;
}

struct Mat {
    cuda::DeviceBuffer buf;
    TensorView v;
};

Mat random_matrix(cuda::Gpu& gpu, DType t, int rows, int cols) {
    std::mt19937 rng(1);
    std::normal_distribution<float> d;
    std::vector<float> row((size_t)cols);
    const size_t rb = row_bytes(t, cols);
    std::vector<uint8_t> bytes(rb * (size_t)rows);
    for (int r = 0; r < rows; ++r) {
        for (float& x : row) x = d(rng);
        quantize_row(t, row.data(), bytes.data() + rb * (size_t)r, cols, QuantFit::MinMax);
    }
    Mat m{cuda::DeviceBuffer(bytes.size()), {}};
    gpu.upload(m.buf.data(), bytes.data(), bytes.size());
    m.v.dtype = t;
    m.v.data = m.buf.data();
    m.v.ne = {cols, rows, 1, 1};
    return m;
}

}  // namespace

int main() {
    std::string why;
    if (!cuda::available(&why)) {
        std::fprintf(stderr, "no CUDA device: %s\n", why.c_str());
        return 1;
    }
    cuda::Gpu gpu;
    const double bw = gpu.measure_d2d(1ull << 30);
    std::printf("device-to-device copy: %.0f GB/s (read + write)\n", bw / 1e9);
    cuda::DeviceBuffer x(1 << 20), y(64 << 20);
    std::vector<float> ones(1 << 18, 0.01f);
    gpu.upload(x.data(), ones.data(), ones.size() * 4);
    std::printf("%-6s %-12s %10s %10s\n", "dtype", "shape", "us/call", "GB/s");
    for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q2_K, DType::BF16, DType::F16}) {
        for (auto [rows, cols] :
             {std::pair{4096, 2048}, std::pair{768, 2048}, std::pair{151936, 2048}}) {
            Mat m = random_matrix(gpu, t, rows, cols);
            const double us = us_per_call(gpu, 200, [&] { gpu.matmul(m.v, x.f32(), 1, y.f32()); });
            std::printf("%-6s %6dx%-5d %10.2f %10.0f\n", dtype_name(t), rows, cols, us,
                        (double)m.v.nbytes() / us / 1e3);
        }
    }
    // The floor: the smallest op of a step.
    const double us = us_per_call(gpu, 2000, [&] { gpu.add(y.f32(), x.f32(), 2048); });
    std::printf("add of 2048 floats: %.2f us/call (launch floor)\n", us);
    return 0;
}
