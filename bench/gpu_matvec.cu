// sluice-gpu-matvec: where a one-token Q8_0 mat-vec launch spends its time, for the two dense
// projections of Qwen3-30B-A3B's decode step (q/k/v: 5120 x 2048; output: 2048 x 4096), 48
// launches per graph (one per layer, each over its own weights), against forms that differ
// in one thing at a time:
//   float      the committed default: a warp per row, a lane per 32-chunk, the 34-byte block
//              read as 17 two-byte loads and decoded to 32 floats (Chunk<Q8_0>)
//   q8dot      the same rows read as nine 4-byte words, realigned by byte permutes, codes
//              made floats through the mantissa, d factored out (q8_0_dot, SLUICE_GPU_Q8DOT)
//   g8         the row regrouped on upload: per 8 blocks, their 8 scales (16 bytes) then their
//              256 codes, so a chunk's codes are two aligned 16-byte loads (same row bytes)
//   g8-xor     g8's loads, no arithmetic: what the structure alone costs
//   g8-half    g8 with half a warp per row, a lane's chunks all loaded before any arithmetic
//   g8-lb5     g8 held to 5 blocks per SM (48 registers): the q/k/v launch in one wave
// Each form's outputs are compared with the committed form's. Used to decide what the
// production one-token mat-vec (src/backend/cuda/matmul.cu) should become.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/quant_ref.h"
#include "backend/cuda/vec.cuh"
#include "gpu_bench.cuh"

using namespace sluice;
using namespace sluice::cuda;

namespace {

constexpr int kLayers = 48, kThreads = 256, kWarps = 8, kMaxCols = 4096;
constexpr int kGroup = 8 * 34;  // bytes of 8 regrouped blocks: 8 f16 scales, 256 codes

struct Shape {
    const char* name;
    int rows, cols;
};

enum class Form { Float, Q8Dot, G8, G8Xor };

__device__ __forceinline__ void prefetch_row(const uint8_t* p, size_t n, int i, int nt) {
    for (size_t o = (size_t)i * 128; o < n; o += (size_t)nt * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
}

// Chunk c of a regrouped row: scale and 32 codes.
struct G8Chunk {
    uint4 a, b;
    uint16_t d;
    __device__ __forceinline__ static G8Chunk load(const uint8_t* row, int c) {
        const uint8_t* g = row + (size_t)(c >> 3) * kGroup;
        const uint4* q = (const uint4*)(g + 16 + 32 * (c & 7));
        return {q[0], q[1], *(const uint16_t*)(g + 2 * (c & 7))};
    }
    // d (q . x); x: 32 floats, 16-byte aligned
    __device__ __forceinline__ float dot(const float* x) const {
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t q = w[k] ^ 0x80808080u;  // q + 128 per byte
            const float4 xv = *(const float4*)(x + 4 * k);
            auto f = [&](int j) {
                return __uint_as_float(__byte_perm(q, 0x4b000000u, 0x7640 + j)) - 8388736.f;
            };
            s = fmaf(f(0), xv.x, s);
            s = fmaf(f(1), xv.y, s);
            s = fmaf(f(2), xv.z, s);
            s = fmaf(f(3), xv.w, s);
        }
        return h2f(d) * s;
    }
    __device__ __forceinline__ uint32_t fold() const {
        return a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ d;
    }
};

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
            acc += G8Chunk::load(row, c).dot(xs + kPad * c);
        } else {
            fx ^= G8Chunk::load(row, c).fold();
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
    G8Chunk ch[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) ch[i] = G8Chunk::load(row, hl + 16 * i);
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

template <typename... A>
void launch(const void* fn, dim3 grid, cudaStream_t st, A... a) {
    void* args[] = {(void*)&a...};
    cudaLaunchConfig_t lc{};
    lc.gridDim = grid;
    lc.blockDim = dim3(kThreads);
    lc.stream = st;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    lc.attrs = &attr;
    lc.numAttrs = 1;
    CK(cudaLaunchKernelExC(&lc, fn, args));
}

// Per 8 blocks of a row: their scales, then their codes (row bytes unchanged).
void regroup(const uint8_t* src, uint8_t* dst, size_t rb) {
    for (size_t g = 0; g < rb / kGroup; ++g) {
        const uint8_t* s = src + g * kGroup;
        uint8_t* d = dst + g * kGroup;
        for (int b = 0; b < 8; ++b) {
            std::memcpy(d + 2 * b, s + 34 * b, 2);
            std::memcpy(d + 16 + 32 * b, s + 34 * b + 2, 32);
        }
    }
}

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
            regroup(q.data() + r * rb, g.data() + r * rb, rb);
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
            cudaGraph_t gr;
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
            for (int l = 0; l < kLayers; ++l)
                launch(fn, grid, st, (const uint8_t*)(W + l * mat), rb, sh.rows, sh.cols,
                       (const float*)x, y + (size_t)l * sh.rows);
            CK(cudaStreamEndCapture(st, &gr));
            cudaGraphExec_t ge;
            CK(cudaGraphInstantiate(&ge, gr, 0));
            CK(cudaGraphLaunch(ge, st));
            CK(cudaStreamSynchronize(st));
            std::vector<double> t;
            for (int rep = 0; rep < 5; ++rep)
                t.push_back(event_us(st, 10, [&] { CK(cudaGraphLaunch(ge, st)); }) / kLayers);
            std::sort(t.begin(), t.end());
            CK(cudaMemcpy(out.data(), y, out.size() * 4, cudaMemcpyDeviceToHost));
            if (&f == &forms[0]) ref = out;
            double err = 0, mx = 0;
            for (size_t i = 0; i < out.size(); ++i) {
                err = std::max(err, (double)std::fabs(out[i] - ref[i]));
                mx = std::max(mx, (double)std::fabs(ref[i]));
            }
            std::printf("%-14s %-10s %6d %6d %10.2f %8.0f %10.2e\n", sh.name, f.name, fa.numRegs,
                        occ, t[2], mat / (t[2] * 1e3), err / mx);
            CK(cudaGraphExecDestroy(ge));
            CK(cudaGraphDestroy(gr));
        }
        CK(cudaFree(Wq));
        CK(cudaFree(Wg));
        CK(cudaFree(x));
        CK(cudaFree(y));
    }
    return 0;
}
