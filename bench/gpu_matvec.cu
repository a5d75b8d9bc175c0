// sluice-gpu-matvec: where a one-token Q8_0 mat-vec launch spends its time, for the two dense
// projections of Qwen3-30B-A3B's decode step (q/k/v: 5120 x 2048; output: 2048 x 4096), 48
// launches per graph (one per layer, each over its own weights), against forms that differ
// in one thing at a time:
//   float      the committed default: a warp per row, a lane per 32-chunk, the 34-byte block
//              read as 17 two-byte loads and decoded to 32 floats (Chunk<Q8_0>)
//   q8dot      the same rows read as nine 4-byte words, realigned by byte permutes, codes
//              made floats through the mantissa, d factored out (session 19's q8_0_dot)
//   g8         the row regrouped on upload: per 8 blocks, their 8 scales (16 bytes) then their
//              256 codes, so a chunk's codes are two aligned 16-byte loads (same row bytes):
//              Q8_0_G8 and Q8G8Chunk, which the production mat-vec now uses
//   g8-xor     g8's loads, no arithmetic: what the structure alone costs
//   g8-half    g8 with half a warp per row, a lane's chunks all loaded before any arithmetic
//   g8-lb5     g8 held to 5 blocks per SM (48 registers): the q/k/v launch in one wave
// H100, session 21 (us per launch, q/k/v / output): float 8.18 / 7.19, q8dot 6.83 / 5.88,
// g8 5.98 / 5.65, g8-xor 5.89 / 5.29, g8-half 7.22 / 6.33, g8-lb5 6.40 / 5.75, q8dot-lb5
// 6.73 / 5.84: g8 is within 2% of its own loads alone on q/k/v.
// Each form's outputs are compared with the float form's.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/cpu/quant_ref.h"
#include "backend/cuda/vec.cuh"
#include "core/quant_blocks.h"
#include "gpu_bench.cuh"

using namespace sluice;
using namespace sluice::cuda;

namespace {

constexpr int kLayers = 48, kThreads = 256, kWarps = 8, kMaxCols = 4096;

struct Shape {
    const char* name;
    int rows, cols;
};

enum class Form { Float, Q8Dot, G8, G8Xor };

__device__ __forceinline__ void prefetch_row(const uint8_t* p, size_t n, int i, int nt) {
    for (size_t o = (size_t)i * 128; o < n; o += (size_t)nt * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
}

// The form session 19 wrote (SLUICE_GPU_Q8DOT until session 21, when Q8_0_G8 replaced it).
// Q8_0 chunk c times x (32 floats, 16-byte aligned), d factored out of the sum: d (q . x).
// The 34-byte block is read as 4-byte words from its 4-byte-aligned start and realigned with
// byte permutes (9 loads instead of 17 two-byte ones); each code becomes a float through the
// mantissa of 2^23 (code ^ 0x80 is q + 128, so 0x4b0000xx is 2^23 + 128 + q, exact).
// The row must start 4-byte aligned and hold an even number of chunks, so that a block at an
// address of 0 mod 4 is followed by another in the row (its last word reads 2 bytes of the
// next block's d).
__device__ __forceinline__ float q8_0_dot(const uint8_t* row, int c, const float* x) {
    const uint8_t* b = row + (size_t)c * sizeof(block_q8_0);
    const uint32_t off = (uint32_t)(uintptr_t)b & 2;  // 0 or 2: blocks are 2-byte aligned
    const uint32_t* v = (const uint32_t*)(b - off);
    uint32_t w[9];
#pragma unroll
    for (int k = 0; k < 9; ++k) w[k] = v[k];
    const float d = h2f((uint16_t)(off ? w[0] >> 16 : w[0] & 0xffff));
    // quant word k: block bytes 2 + 4k .. 5 + 4k, at byte 2 + off + 4k of w
    const uint32_t sel = off ? 0x7654 : 0x5432;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        const uint32_t q = __byte_perm(w[k], w[k + 1], sel) ^ 0x80808080u;
        const float4 xv = *(const float4*)(x + 4 * k);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float f = byte_plus_2p23(q, j) - 8388736.f;  // 2^23 + 128
            s = fmaf(f, j == 0 ? xv.x : j == 1 ? xv.y : j == 2 ? xv.z : xv.w, s);
        }
    }
    return d * s;
}

__device__ void stage(const float* x, int cols, float* xs) {
    for (int i = threadIdx.x; i < cols / 4; i += blockDim.x) {
        const float4 v = ((const float4*)x)[i];
        *(float4*)(xs + (4 * i >> 5) * kPad + (4 * i & 31)) = v;
    }
    __syncthreads();
}

// One warp per row, lanes over chunks, two chunks in flight (the committed loop).
template <Form F, int MinBlocks>
__global__ void __launch_bounds__(kThreads, MinBlocks)
    rows_kernel(const uint8_t* W, size_t rb, int rows, int cols, const float* x, float* y) {
    __shared__ __align__(16) float xs[kMaxCols / 32 * kPad];
    const int lane = threadIdx.x & 31, r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const uint8_t* row = W + (size_t)r * rb;
    prefetch_row(row, rb, lane, 32);
    bench_pdl_wait();
    stage(x, cols, xs);
    const int nc = cols / 32;
    float acc = 0.f;
    uint32_t fx = 0;
#pragma unroll 2
    for (int c = lane; c < nc; c += 32) {
        if constexpr (F == Form::Float) {
            float w[32];
            Chunk<DType::Q8_0>::load(row, c, w);
            acc += dot32(w, xs + kPad * c);
        } else if constexpr (F == Form::Q8Dot) {
            acc += q8_0_dot(row, c, xs + kPad * c);
        } else if constexpr (F == Form::G8) {
            acc += Q8G8Chunk::load(row, c).dot(xs + kPad * c);
        } else {
            const Q8G8Chunk ch = Q8G8Chunk::load(row, c);
            fx ^= ch.a.x ^ ch.a.y ^ ch.a.z ^ ch.a.w ^ ch.b.x ^ ch.b.y ^ ch.b.z ^ ch.b.w ^ ch.d;
        }
    }
    if constexpr (F == Form::G8Xor) acc = __uint_as_float(fx & 0x3fffffffu) * 1e-30f;
    acc = warp_sum(acc);
    if (lane == 0 && r < rows) y[r] = acc;
}

// Half a warp per row: lane hl takes chunks hl + 16 i, every chunk's loads issued before any
// arithmetic (cols / 512 chunks per lane: 4 for 2048 columns, 8 for 4096).
template <int Cols>
__global__ void __launch_bounds__(kThreads)
    half_kernel(const uint8_t* W, size_t rb, int rows, int, const float* x, float* y) {
    __shared__ __align__(16) float xs[kMaxCols / 32 * kPad];
    constexpr int kPer = Cols / 32 / 16;
    const int lane = threadIdx.x & 31, hl = lane & 15;
    const int r = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * 2 + (lane >> 4);
    const uint8_t* row = W + (size_t)r * rb;
    prefetch_row(row, rb, hl, 16);
    bench_pdl_wait();
    Q8G8Chunk ch[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) ch[i] = Q8G8Chunk::load(row, hl + 16 * i);
    stage(x, Cols, xs);
    float acc = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc += ch[i].dot(xs + kPad * (hl + 16 * i));
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (hl == 0 && r < rows) y[r] = acc;
}

struct FormInfo {
    const char* name;
    const void* fn[2];  // for 2048 and 4096 columns
    int rows_per_warp;
    bool regrouped;
};

}  // namespace

int main() {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const Shape shapes[] = {{"qkv 5120x2048", 5120, 2048}, {"wo 2048x4096", 2048, 4096}};
    const FormInfo forms[] = {
        {"float", {(const void*)rows_kernel<Form::Float, 1>, (const void*)rows_kernel<Form::Float, 1>}, 1, false},
        {"q8dot", {(const void*)rows_kernel<Form::Q8Dot, 1>, (const void*)rows_kernel<Form::Q8Dot, 1>}, 1, false},
        {"g8", {(const void*)rows_kernel<Form::G8, 1>, (const void*)rows_kernel<Form::G8, 1>}, 1, true},
        {"g8-xor", {(const void*)rows_kernel<Form::G8Xor, 1>, (const void*)rows_kernel<Form::G8Xor, 1>}, 1, true},
        {"g8-half", {(const void*)half_kernel<2048>, (const void*)half_kernel<4096>}, 2, true},
        {"g8-lb5", {(const void*)rows_kernel<Form::G8, 5>, (const void*)rows_kernel<Form::G8, 5>}, 1, true},
        {"q8dot-lb5", {(const void*)rows_kernel<Form::Q8Dot, 5>, (const void*)rows_kernel<Form::Q8Dot, 5>}, 1, false},
    };
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    std::printf("%-14s %-10s %6s %6s %10s %8s %10s\n", "shape", "form", "regs", "blk/SM",
                "us/launch", "GB/s", "max err");
    for (int si = 0; si < 2; ++si) {
        const Shape& sh = shapes[si];
        const size_t rb = (size_t)sh.cols / 32 * 34, mat = rb * sh.rows;
        std::vector<uint8_t> q(mat), g(mat);
        std::vector<float> row(sh.cols);
        for (int r = 0; r < sh.rows; ++r) {
            for (float& v : row) v = nd(rng);
            quantize_row(DType::Q8_0, row.data(), q.data() + r * rb, sh.cols, QuantFit::MinMax);
            regroup_q8_0_g8((const block_q8_0*)(q.data() + r * rb),
                            (block_q8_0_g8*)(g.data() + r * rb), (int64_t)(rb / sizeof(block_q8_0_g8)));
        }
        uint8_t *Wq, *Wg;
        CK(cudaMalloc(&Wq, mat * kLayers));
        CK(cudaMalloc(&Wg, mat * kLayers));
        for (int l = 0; l < kLayers; ++l) {
            CK(cudaMemcpy(Wq + l * mat, q.data(), mat, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(Wg + l * mat, g.data(), mat, cudaMemcpyHostToDevice));
        }
        std::vector<float> hx(sh.cols);
        for (float& v : hx) v = nd(rng);
        float *x, *y;
        CK(cudaMalloc(&x, sh.cols * 4));
        CK(cudaMemcpy(x, hx.data(), sh.cols * 4, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&y, (size_t)kLayers * sh.rows * 4));
        std::vector<float> ref(sh.rows), out(sh.rows);
        for (const FormInfo& f : forms) {
            const void* fn = f.fn[sh.cols == 4096];
            const uint8_t* W = f.regrouped ? Wg : Wq;
            cudaFuncAttributes fa{};
            CK(cudaFuncGetAttributes(&fa, fn));
            int occ = 0;
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, fn, kThreads, 0));
            const dim3 grid(sh.rows / (kWarps * f.rows_per_warp));
            const double us = graph_us_per_launch(st, kLayers, [&](int l) {
                bench_launch_pdl(fn, grid, kThreads, st, (const uint8_t*)(W + l * mat), rb,
                                 sh.rows, sh.cols, (const float*)x, y + (size_t)l * sh.rows);
            });
            CK(cudaMemcpy(out.data(), y, out.size() * 4, cudaMemcpyDeviceToHost));
            if (&f == &forms[0]) ref = out;
            std::printf("%-14s %-10s %6d %6d %10.2f %8.0f %10.2e\n", sh.name, f.name, fa.numRegs,
                        occ, us, mat / (us * 1e3), max_rel_diff(out, ref));
        }
        CK(cudaFree(Wq));
        CK(cudaFree(Wg));
        CK(cudaFree(x));
        CK(cudaFree(y));
    }
    return 0;
}
