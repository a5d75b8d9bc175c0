// sluice-gpu-gateup: where a one-token expert gate/up launch spends its time. The shape is
// Qwen3-30B-A3B's (8 routed experts, 768 x 2048 Q4_K gate and up rows), 48 launches per
// graph (one per layer, each over its own weights, as a decode step), against forms of the
// kernel that differ in one thing at a time:
//   rows       the committed per-row kernel's form (one warp per (slot, row), float decode
//              of a 32-chunk per lane, activations staged as floats)
//   rows-xor   the same loads, no arithmetic: what the structure alone costs
//   pairs-f32  a lane takes a pair of sub-blocks (32 quant bytes, both nibbles used); the
//              min term folded out (d q.x - m sum(x)), nibbles made floats through the
//              mantissa (no integer-to-float unit): Q4KPair, which the production expert
//              kernels now use
//   pairs-i16  as pairs-f32 on int16 activations (per-32 scale), dp2a: 4 products per 2
//              instructions, exact int32 sums
//   *-2rows    the same with two rows per warp, both rows' loads issued first (half the warps,
//              one wave)
//   pairs-half-lb3  half a warp per row, a lane over two pairs of gate and up, bounded to 3
//              blocks per SM (80 registers): 384 blocks, one wave
//   pairs-lb6  pairs-f32 held to 40 registers (6 blocks per SM: 768 blocks in one wave)
// H100, session 20 (µs per launch): rows 11.70, rows-xor 7.42, pairs-f32 8.95, pairs-i16
// 10.20, pairs-f32-2rows 10.36, pairs-half-lb3 10.97 (bounded to 4: 13.80, 84 bytes
// spilled), pairs-lb6 11.78: one wave bought with registers or fewer warps loses.
// Each form's outputs are compared with the committed form's. Used to decide what the
// production kernels in src/backend/cuda/matmul.cu should become.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cpu/quant_ref.h"
#include "backend/cuda/vec.cuh"
#include "gpu_bench.cuh"

using namespace sluice;
using namespace sluice::cuda;

namespace {

constexpr int kE = 2048, kF = 768, kK = 8, kLayers = 48, kThreads = 256, kWarps = 8;
constexpr int kNc = kE / 32;                    // 32-chunks per row
constexpr size_t kRb = (size_t)kE / 256 * 144;  // Q4_K row bytes
constexpr size_t kMat = kRb * kF;               // one expert's gate (or up)
constexpr int kPairPad = 68;                    // floats per sub-block pair, padded
constexpr int kPairPad16 = 72;                  // int16s per sub-block pair, padded

struct Layer {
    const uint8_t* const* table;  // [expert][gate, up]
    const int* ids;               // [kK]
    float* act;                   // [kK][kF]
};

__device__ __forceinline__ float silu_mul(float g, float u) {
    return g / (1.0f + __expf(-g)) * u;
}

// --- the committed form ----------------------------------------------------------------
template <bool Xor>
__global__ void rows_kernel(Layer L, const float* x) {
    __shared__ __align__(16) float xs[kNc * kPad];
    bench_pdl_wait();
    const int lane = threadIdx.x & 31, s = blockIdx.y;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    for (int i = threadIdx.x; i < kE / 4; i += blockDim.x) {
        const float4 v = ((const float4*)x)[i];
        *(float4*)(xs + (4 * i >> 5) * kPad + (4 * i & 31)) = v;
    }
    __syncthreads();
    const int e = L.ids[s];
    const uint8_t* g = L.table[2 * e] + (size_t)r * kRb;
    const uint8_t* u = L.table[2 * e + 1] + (size_t)r * kRb;
    float ag = 0.f, au = 0.f;
    if constexpr (Xor) {
        unsigned a = 0;
#pragma unroll 2
        for (int c = lane; c < kNc; c += 32) {
            const uint8_t* mats[2] = {g, u};
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                const uint8_t* b = mats[mi] + (size_t)(c >> 3) * 144;
                const uint4 h = *(const uint4*)b;
                const uint4* q = (const uint4*)(b + 16 + 32 * ((c & 7) >> 1));
                const uint4 q0 = q[0], q1 = q[1];
                a ^= h.x ^ h.y ^ h.z ^ h.w ^ q0.x ^ q0.y ^ q0.z ^ q0.w ^ q1.x ^ q1.y ^ q1.z ^ q1.w;
            }
        }
        ag = __uint_as_float(a & 0x3fffffffu) * 1e-30f;
        au = ag;
    } else {
#pragma unroll 2
        for (int c = lane; c < kNc; c += 32) {
            float w[32];
            Chunk<DType::Q4_K>::load(g, c, w);
            ag += dot32(w, xs + kPad * c);
            Chunk<DType::Q4_K>::load(u, c, w);
            au += dot32(w, xs + kPad * c);
        }
    }
    ag = warp_sum(ag), au = warp_sum(au);
    if (lane == 0) L.act[s * kF + r] = silu_mul(ag, au);
}

// --- pairs of sub-blocks: Q4KPair (backend/cuda/dequant.cuh) -----------------------------
// Staged activations for the pair forms: xf[pair * kPairPad + t * 32 + i] = x of sub-block
// 2 pair + t, element i; sx[chunk] = its sum; for int16: x16 (per 4 elements of both
// sub-blocks, 16 bytes) and xscale[chunk].
struct Stage {
    float xf[32 * kPairPad];
    short x16[32 * kPairPad16];
    float sx[kNc], xscale[kNc];
};

template <bool I16>
__device__ void stage_pairs(const float* x, Stage& S) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float v[kNc / kWarps];
#pragma unroll
    for (int k = 0; k < kNc / kWarps; ++k) v[k] = x[32 * (warp + kWarps * k) + lane];
#pragma unroll
    for (int k = 0; k < kNc / kWarps; ++k) {
        const int c = warp + kWarps * k, pair = c >> 1, t = c & 1;
        const float sum = warp_sum(v[k]);
        if (lane == 0) S.sx[c] = sum;
        if constexpr (I16) {
            float mx = fabsf(v[k]);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float sc = mx > 0.f ? mx / 32767.f : 1.f;
            if (lane == 0) S.xscale[c] = sc;
            // entry (pair, k4 = lane / 4): [x_j0[4 k4 .. +3], x_j1[4 k4 .. +3]]
            S.x16[pair * kPairPad16 + (lane >> 2) * 8 + t * 4 + (lane & 3)] =
                (short)__float2int_rn(v[k] / sc);
        } else {
            S.xf[pair * kPairPad + t * 32 + lane] = v[k];
        }
    }
    __syncthreads();
}

// This lane's pair: d0 (q_j0 . x_j0) - m0 sum(x_j0) + d1 (q_j1 . x_j1) - m1 sum(x_j1).
template <bool I16>
__device__ __forceinline__ float pair_dot(const Q4KPair& p, int lane, const Stage& S) {
    const int pair = lane, c0 = 2 * pair;
    if constexpr (!I16) {
        return p.dot(pair, S.xf + pair * kPairPad, S.sx + c0);
    } else {
        const uint32_t q[8] = {p.q0.x, p.q0.y, p.q0.z, p.q0.w, p.q1.x, p.q1.y, p.q1.z, p.q1.w};
        int a0 = 0, a1 = 0;
        const int4* xv = (const int4*)(S.x16 + pair * kPairPad16);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const int4 xx = xv[k];  // x_j0[4k..4k+3], x_j1[4k..4k+3] as int16 pairs
            const int lo = (int)(q[k] & 0x0f0f0f0fu), hi = (int)((q[k] >> 4) & 0x0f0f0f0fu);
            a0 = __dp2a_lo(xx.x, lo, a0);
            a0 = __dp2a_hi(xx.y, lo, a0);
            a1 = __dp2a_lo(xx.z, hi, a1);
            a1 = __dp2a_hi(xx.w, hi, a1);
        }
        float d[2], m[2];
        p.scales(pair, d, m);
        return d[0] * (float)a0 * S.xscale[c0] - m[0] * S.sx[c0] +
               d[1] * (float)a1 * S.xscale[c0 + 1] - m[1] * S.sx[c0 + 1];
    }
}

template <bool I16, int R>
__global__ void pairs_kernel(Layer L, const float* x) {
    __shared__ __align__(16) Stage S;
    bench_pdl_wait();
    const int lane = threadIdx.x & 31, s = blockIdx.y;
    const int r0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
    const int e = L.ids[s];
    const uint8_t* g = L.table[2 * e];
    const uint8_t* u = L.table[2 * e + 1];
    Q4KPair pg[R], pu[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        pg[i] = Q4KPair::load(g + (size_t)(r0 + i) * kRb, lane);
        pu[i] = Q4KPair::load(u + (size_t)(r0 + i) * kRb, lane);
    }
    stage_pairs<I16>(x, S);
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const float ag = warp_sum(pair_dot<I16>(pg[i], lane, S));
        const float au = warp_sum(pair_dot<I16>(pu[i], lane, S));
        if (lane == 0) L.act[s * kF + r0 + i] = silu_mul(ag, au);
    }
}

// Half a warp per row (two rows per warp, 16 rows per block): a lane takes pairs hl and
// hl + 16 of its row's gate and up, all four loads issued first. 384 blocks for this shape,
// one wave at 3 blocks per SM (the launch bound), where one warp per row is 768 blocks at 4.
template <int MinBlocks>
__global__ void __launch_bounds__(kThreads, MinBlocks) pairs_half_kernel(Layer L, const float* x) {
    __shared__ __align__(16) Stage S;
    bench_pdl_wait();
    const int lane = threadIdx.x & 31, hl = lane & 15, s = blockIdx.y;
    const int r = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * 2 + (lane >> 4);
    const int e = L.ids[s];
    const uint8_t* g = L.table[2 * e] + (size_t)r * kRb;
    const uint8_t* u = L.table[2 * e + 1] + (size_t)r * kRb;
    const Q4KPair g0 = Q4KPair::load(g, hl), g1 = Q4KPair::load(g, hl + 16);
    const Q4KPair u0 = Q4KPair::load(u, hl), u1 = Q4KPair::load(u, hl + 16);
    stage_pairs<false>(x, S);
    float ag = 0.f, au = 0.f;
    // one pair at a time: unrolled, the compiler holds every x of all four (248 registers)
#pragma unroll 1
    for (int t = 0; t < 2; ++t) {
        const int p = hl + 16 * t;
        const Q4KPair pg = t ? g1 : g0, pu = t ? u1 : u0;
        ag += pg.dot(p, S.xf + p * kPairPad, S.sx + 2 * p);
        au += pu.dot(p, S.xf + p * kPairPad, S.sx + 2 * p);
    }
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
        ag += __shfl_xor_sync(0xffffffffu, ag, o);
        au += __shfl_xor_sync(0xffffffffu, au, o);
    }
    if (hl == 0) L.act[s * kF + r] = silu_mul(ag, au);
}

// pairs-f32 bounded to 6 blocks per SM (40 registers): 768 blocks in one wave of 792.
__global__ void __launch_bounds__(kThreads, 6) pairs_lb6_kernel(Layer L, const float* x) {
    __shared__ __align__(16) Stage S;
    bench_pdl_wait();
    const int lane = threadIdx.x & 31, s = blockIdx.y;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int e = L.ids[s];
    const Q4KPair pg = Q4KPair::load(L.table[2 * e] + (size_t)r * kRb, lane);
    const Q4KPair pu = Q4KPair::load(L.table[2 * e + 1] + (size_t)r * kRb, lane);
    stage_pairs<false>(x, S);
    const float ag = warp_sum(pair_dot<false>(pg, lane, S));
    const float au = warp_sum(pair_dot<false>(pu, lane, S));
    if (lane == 0) L.act[s * kF + r] = silu_mul(ag, au);
}

struct Form {
    const char* name;
    const void* fn;
    int rows_per_warp;
};

}  // namespace

int main() {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    // One layer's 16 matrices quantized from normal weights, copied to every layer's place.
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    std::vector<uint8_t> layer(2 * kK * kMat);
    std::vector<float> row(kE);
    for (size_t m = 0; m < 2 * kK; ++m)
        for (int r = 0; r < kF; ++r) {
            for (float& v : row) v = nd(rng);
            quantize_row(DType::Q4_K, row.data(), layer.data() + m * kMat + r * kRb, kE,
                         QuantFit::MinMax);
        }
    uint8_t* W;
    CK(cudaMalloc(&W, layer.size() * kLayers));
    for (int l = 0; l < kLayers; ++l)
        CK(cudaMemcpy(W + l * layer.size(), layer.data(), layer.size(), cudaMemcpyHostToDevice));
    std::vector<float> hx(kE);
    for (float& v : hx) v = nd(rng);
    float *x, *act;
    CK(cudaMalloc(&x, kE * 4));
    CK(cudaMemcpy(x, hx.data(), kE * 4, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&act, (size_t)kLayers * kK * kF * 4));
    // tables: expert e of layer l at W + l * layer + e * 2 kMat (gate, then up); ids a
    // permutation per layer
    std::vector<const uint8_t*> tab((size_t)kLayers * kK * 2);
    std::vector<int> ids((size_t)kLayers * kK);
    for (int l = 0; l < kLayers; ++l)
        for (int e = 0; e < kK; ++e) {
            tab[(l * kK + e) * 2] = W + l * layer.size() + (size_t)e * 2 * kMat;
            tab[(l * kK + e) * 2 + 1] = W + l * layer.size() + (size_t)e * 2 * kMat + kMat;
            ids[l * kK + e] = (e * 5 + l) % kK;
        }
    const uint8_t** dtab;
    int* dids;
    CK(cudaMalloc(&dtab, tab.size() * sizeof(void*)));
    CK(cudaMalloc(&dids, ids.size() * 4));
    CK(cudaMemcpy(dtab, tab.data(), tab.size() * sizeof(void*), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    auto layer_of = [&](int l) {
        return Layer{dtab + (size_t)l * kK * 2, dids + l * kK, act + (size_t)l * kK * kF};
    };

    const Form forms[] = {
        {"rows", (const void*)rows_kernel<false>, 1},
        {"rows-xor", (const void*)rows_kernel<true>, 1},
        {"pairs-f32", (const void*)pairs_kernel<false, 1>, 1},
        {"pairs-i16", (const void*)pairs_kernel<true, 1>, 1},
        {"pairs-f32-2rows", (const void*)pairs_kernel<false, 2>, 2},
        {"pairs-i16-2rows", (const void*)pairs_kernel<true, 2>, 2},
        {"pairs-half-lb3", (const void*)pairs_half_kernel<3>, 2},
        {"pairs-lb6", (const void*)pairs_lb6_kernel, 1},
    };
    std::vector<float> ref((size_t)kK * kF), out((size_t)kK * kF);
    std::printf("%-18s %6s %6s %10s %8s %10s\n", "form", "regs", "blk/SM", "us/launch", "GB/s",
                "max err");
    for (const Form& f : forms) {
        cudaFuncAttributes fa{};
        CK(cudaFuncGetAttributes(&fa, f.fn));
        int occ = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, f.fn, kThreads, 0));
        const dim3 grid(kF / (kWarps * f.rows_per_warp), kK);
        const double us = graph_us_per_launch(st, kLayers, [&](int l) {
            bench_launch_pdl(f.fn, grid, kThreads, st, layer_of(l), (const float*)x);
        });
        CK(cudaMemcpy(out.data(), act, out.size() * 4, cudaMemcpyDeviceToHost));
        if (&f == &forms[0]) ref = out;
        std::printf("%-18s %6d %6d %10.2f %8.0f %10.2e\n", f.name, fa.numRegs, occ, us,
                    2.0 * kK * kMat / (us * 1e3), max_rel_diff(out, ref));
    }
    return 0;
}
