// The persistent decode kernel: one token through a run of MoE transformer layers in one
// launch. Every block stays resident for the whole step; a layer's phases (q/k/v, attention,
// output projection, router, expert gate/up, expert down) are separated by grid-wide
// barriers, and each phase's items (mat-vec rows, attention chunks, expert rows) are spread
// over every warp of the grid. While a phase runs, its blocks prefetch later phases' weights
// into L2. Why: each per-op decode kernel was an 8-16 us chain of dependent latencies with
// device memory 11-18% busy (docs/benchmarks.md, issue 7), and separate launches cannot
// overlap those chains.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cuda/atomic>
#include <string>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/gpu_impl.cuh"
#include "backend/cuda/route.cuh"
#include "backend/cuda/vec.cuh"

namespace sluice::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;

// Weight types the kernel reads (those of Q4_K_M/Q6_K/Q8_0 files and f32/16-bit tensors):
// every type compiled in raises the kernel's register count to its worst case.
using FusedTypes =
    DTypeList<DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_K, DType::Q6_K>;

// Grid-wide barrier; every block of the grid must be resident (cooperative launch). bar[0]
// counts arrivals and is zero between barriers; bar[1] is the generation, bumped by the last
// block to arrive. Writes before it are visible to every block after it, through L2: data
// another block wrote is read with __ldcg (an SM's L1 is not coherent).
__device__ void grid_sync(unsigned* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> count(bar[0]), gen(bar[1]);
        // Read before arriving: the generation cannot move until this block has arrived.
        const unsigned g = gen.load(::cuda::memory_order_relaxed);
        __threadfence();
        if (count.fetch_add(1, ::cuda::memory_order_acq_rel) == gridDim.x - 1) {
            count.store(0, ::cuda::memory_order_relaxed);
            gen.fetch_add(1, ::cuda::memory_order_release);
        } else {
            // Polling every 20 ns or spinning measured the same (session 17).
            while (gen.load(::cuda::memory_order_acquire) == g) __nanosleep(20);
        }
        __threadfence();
    }
    __syncthreads();
}

// xs[(i / 32) * kPad + i % 32] = x[i] * w[i] (w null: x[i]) for i < n, x read through L2;
// returns sum x[i]^2 to every thread. n a multiple of 32; x, w 16-byte aligned. Block-wide;
// its barriers publish xs.
__device__ float stage(const float* x, const float* w, int n, float* xs) {
    constexpr int kBatch = 4;  // loads in flight per thread before the first store
    float ss = 0.f;
    for (int i0 = 4 * (int)threadIdx.x; i0 < n; i0 += 4 * kBatch * kThreads) {
        float4 v[kBatch], m[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int i = i0 + 4 * u * kThreads;
            if (i >= n) continue;
            v[u] = __ldcg((const float4*)(x + i));
            m[u] = w ? *(const float4*)(w + i) : make_float4(1.f, 1.f, 1.f, 1.f);
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int i = i0 + 4 * u * kThreads;
            if (i >= n) continue;
            ss += v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
            *(float4*)(xs + (i >> 5) * kPad + (i & 31)) =
                make_float4(v[u].x * m[u].x, v[u].y * m[u].y, v[u].z * m[u].z, v[u].w * m[u].w);
        }
    }
    return block_sum(ss);
}

// Row r of M . xs (staged, padded) by the calling warp, lanes over 32-chunks; every lane
// gets it.
__device__ float row_dot(const DecodeMat& M, int r, const float* xs) {
    const uint8_t* row = (const uint8_t*)M.w + (size_t)r * M.row_bytes;
    const int lane = threadIdx.x & 31, nc = M.cols / 32;
    float acc = 0.f;
    visit_dtype<FusedTypes>(M.dtype, [&]<DType T>() {
#pragma unroll 2
        for (int c = lane; c < nc; c += 32) {
            float w[32];
            Chunk<T>::load(row, c, w);
            acc += dot32(w, xs + kPad * c);
        }
    });
    return warp_sum(acc);
}

// g . xs and u . xs (two rows of one dtype, nc chunks) by the calling warp.
__device__ void pair_dot(DType t, const uint8_t* g, const uint8_t* u, int nc, const float* xs,
                         float& ag, float& au) {
    const int lane = threadIdx.x & 31;
    ag = 0.f, au = 0.f;
    visit_dtype<FusedTypes>(t, [&]<DType T>() {
#pragma unroll 2
        for (int c = lane; c < nc; c += 32) {
            float w[32];
            Chunk<T>::load(g, c, w);
            ag += dot32(w, xs + kPad * c);
            Chunk<T>::load(u, c, w);
            au += dot32(w, xs + kPad * c);
        }
    });
    ag = warp_sum(ag), au = warp_sum(au);
}

// sum over j < k of wts[j] * (row r of down[j]) . act_j, act staged as k rows of nc chunks,
// lanes over the (slot, chunk) pairs (an expert's short row alone leaves lanes idle).
__device__ float down_dot(DType t, const uint8_t* const* down, const float* wts, int k,
                          size_t row_bytes, int r, int nc, const float* xs) {
    const int lane = threadIdx.x & 31;
    float acc = 0.f;
    visit_dtype<FusedTypes>(t, [&]<DType T>() {
#pragma unroll 2
        for (int p = lane; p < k * nc; p += 32) {
            const int j = p / nc, c = p - j * nc;
            float w[32];
            Chunk<T>::load(down[j] + (size_t)r * row_bytes, c, w);
            acc += wts[j] * dot32(w, xs + kPad * p);
        }
    });
    return warp_sum(acc);
}

__device__ void prefetch_mat(const DecodeMat& M, size_t i, size_t n) {
    prefetch_l2(M.w, (size_t)M.rows * M.row_bytes, i, n);
}

__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}

// The end of phase p: with a trace (SLUICE_GPU_FUSED_TRACE), each block adds its busy time
// since the phase began to trace[kFusedTraceBusy + p]; then, with `barrier`, the grid-wide
// barrier, after which block 0 adds the phase's wall time to trace[p]. t: when the calling
// block's phase began.
__device__ void end_phase(unsigned* bar, bool barrier, unsigned long long* trace, int p,
                          unsigned long long& t) {
    if (trace && threadIdx.x == 0) atomicAdd(trace + kFusedTraceBusy + p, global_ns() - t);
    if (!barrier) return;
    grid_sync(bar);
    if (trace && threadIdx.x == 0) {
        const unsigned long long now = global_ns();
        if (blockIdx.x == 0) trace[p] += now - t;
        t = now;
    }
}

// Layers [0, n_layers) of one decode token (Gpu::decode_layers). Dynamic shared memory: the
// staged activations of the largest phase, or the attention's scratch. kPerSm blocks per SM
// bound the registers (1: 255 per thread, none spilled; 2: 128, some spilled).
template <int kPerSm>
__global__ void __launch_bounds__(kThreads, kPerSm)
    decode_layers_kernel(const DecodeLayer* layers, int n_layers, DecodeStep s, float* attn_part,
                         int* attn_done, unsigned* bar, int ahead, unsigned long long* trace) {
    extern __shared__ __align__(16) float sm[];
    __shared__ int32_t ids[kRouteRegMaxK];
    __shared__ float wts[kRouteRegMaxK];
    __shared__ const uint8_t* down[kRouteRegMaxK];
    const int lane = threadIdx.x & 31;
    const int gw = (int)blockIdx.x * kWarps + ((int)threadIdx.x >> 5), nwarps = gridDim.x * kWarps;
    const size_t gt = (size_t)blockIdx.x * kThreads + threadIdx.x,
                 nt = (size_t)gridDim.x * kThreads;
    const int E = s.n_embd, n_pos = __ldcg(s.pos) + 1;
    const int n_split = attn_split_count(n_pos, kAttnSplits);
    unsigned long long t = trace && threadIdx.x == 0 ? global_ns() : 0;
    if (trace && threadIdx.x == 0 && blockIdx.x == 0) {
        trace[kFusedTraceLayers] += n_layers;
        trace[kFusedTraceBlocks] = gridDim.x;
    }
    for (int l = 0; l < n_layers; ++l) {
        const DecodeLayer& L = layers[l];
        // q, k, v = RMSNorm(x) . W^T, the norm by linearity: rows staged as x * w, each product
        // scaled by rsqrt(mean(x^2) + eps).
        {
            const float sc = rsqrtf(stage(s.x, L.attn_norm, E, sm) / (float)E + s.eps);
            const int nq = L.q.rows, nk = L.k.rows, n = nq + nk + L.v.rows;
            for (int r = gw; r < n; r += nwarps) {
                const int part = r < nq ? 0 : r < nq + nk ? 1 : 2;
                const int rr = r - (part > 0 ? nq : 0) - (part > 1 ? nk : 0);
                const float y = row_dot(part == 0 ? L.q : part == 1 ? L.k : L.v, rr, sm) * sc;
                if (lane == 0) (part == 0 ? s.q : part == 1 ? s.k : s.v)[rr] = y;
            }
            if (ahead) prefetch_mat(L.o, gt, nt), prefetch_mat(L.router, gt, nt);
        }
        end_phase(bar, true, trace, 0, t);
        // RoPE (and q/k norms) of the new token, its K/V cache rows, attention over the prefix.
        {
            RopeFirst rf = s.rope;
            rf.q_norm = L.q_norm, rf.k_norm = L.k_norm;
            for (int it = (int)blockIdx.x; it < s.n_head * n_split; it += (int)gridDim.x) {
                __syncthreads();  // the previous item's shared memory
                attention_split_block(s.q, L.k_cache, L.v_cache, n_pos, it % s.n_head,
                                      it / s.n_head, kAttnSplits, s.n_head, s.n_kv, s.hd, s.vd,
                                      s.attn_scale, attn_part, attn_done, s.att, rf, sm);
            }
        }
        end_phase(bar, true, trace, 1, t);
        // x += o . att
        stage(s.att, nullptr, s.n_head * s.vd, sm);
        for (int r = gw; r < E; r += nwarps) {
            const float y = row_dot(L.o, r, sm);
            if (lane == 0) s.x[r] = __ldcg(s.x + r) + y;
        }
        end_phase(bar, true, trace, 2, t);
        // Router logits = RMSNorm(x) . R^T; x * ffn_norm stays staged for the experts.
        const float sc = rsqrtf(stage(s.x, L.ffn_norm, E, sm) / (float)E + s.eps);
        for (int r = gw; r < s.n_expert; r += nwarps) {
            const float y = row_dot(L.router, r, sm) * sc;
            if (lane == 0) s.logits[r] = y;
        }
        end_phase(bar, true, trace, 3, t);
        // Routing (every block alike, from the same logits), then act = silu(gate h) * (up h).
        if (threadIdx.x < 32)
            route_warp<kRouteRegExperts / 32>([&](int e) { return __ldcg(s.logits + e); },
                                              s.n_expert, s.k_used, s.norm_topk ? 1 : 0,
                                              s.route_scale, ids, wts);
        __syncthreads();
        if ((int)threadIdx.x < s.k_used)
            down[threadIdx.x] = (const uint8_t*)L.experts[3 * ids[threadIdx.x] + 2];
        if (ahead)
            for (int j = 0; j < s.k_used; ++j)
                prefetch_l2(L.experts[3 * ids[j] + 2], (size_t)E * L.expert_row_bytes[2], gt, nt);
        for (int i = gw; i < s.k_used * s.n_ff; i += nwarps) {
            const int j = i / s.n_ff, r = i - j * s.n_ff;
            const uint8_t* g = (const uint8_t*)L.experts[3 * ids[j]];
            const uint8_t* u = (const uint8_t*)L.experts[3 * ids[j] + 1];
            float ag, au;
            pair_dot(L.expert_dtype[0], g + (size_t)r * L.expert_row_bytes[0],
                     u + (size_t)r * L.expert_row_bytes[1], E / 32, sm, ag, au);
            ag *= sc, au *= sc;
            if (lane == 0) s.act[i] = ag / (1.0f + __expf(-ag)) * au;
        }
        if (ahead && l + 1 < n_layers) {
            const DecodeLayer& N = layers[l + 1];
            prefetch_mat(N.q, gt, nt), prefetch_mat(N.k, gt, nt), prefetch_mat(N.v, gt, nt);
        }
        end_phase(bar, true, trace, 4, t);
        // x += sum over the k slots of weight * (down . act).
        stage(s.act, nullptr, s.k_used * s.n_ff, sm);  // its barriers also publish down[]
        for (int r = gw; r < E; r += nwarps) {
            const float y = down_dot(L.expert_dtype[2], down, wts, s.k_used, L.expert_row_bytes[2],
                                     r, s.n_ff / 32, sm);
            if (lane == 0) s.x[r] = __ldcg(s.x + r) + y;
        }
        end_phase(bar, l + 1 < n_layers, trace, 5, t);
    }
}

// Floats of dynamic shared memory the kernel needs: the largest staged activation, or split
// attention's scratch.
size_t fused_smem_floats(const DecodeStep& s) {
    const int len = std::max({s.n_embd, s.n_head * s.vd, s.k_used * s.n_ff});
    return std::max((size_t)len / 32 * kPad,
                    attn_split_smem_floats(std::max(1, s.max_pos), kAttnSplits, s.hd, s.vd,
                                           kWarps, true));
}

}  // namespace

bool decode_layers_take(DType t) {
    return in_types<FusedTypes>(t);
}

bool Gpu::decode_layers_enabled() const {
    return p_->fused;
}

bool Gpu::decode_layers(const DecodeLayer* layers, int n_layers, const DecodeStep& s) {
    if (!p_->fused || n_layers <= 0) return false;
    if (!route_in_registers(s.n_expert, s.k_used) || s.k_used <= 0) return false;
    if (!attn_split_fits(s.n_head, s.vd) || s.hd % 4 || s.n_kv <= 0 || s.n_head % s.n_kv)
        return false;
    if (s.n_embd % 32 || s.n_ff % 32 || (s.n_head * s.vd) % 32 || !s.rope.inv_freq) return false;
    static const bool coop = device_attribute(cudaDevAttrCooperativeLaunch) != 0;
    if (!coop) return false;
    // Blocks per SM: 1 (~255 registers, none spilled), or SLUICE_GPU_FUSED_BPS=2 (128, some
    // spilled; for comparisons). Measured on an H100 (session 17): 1 block 259-264 tok/s, 2
    // blocks 257, 3 and 4 blocks (80 and 64 registers) 191 and 151.
    static const int bps = [] {
        const char* e = std::getenv("SLUICE_GPU_FUSED_BPS");
        return e && std::string(e) == "2" ? 2 : 1;
    }();
    static const auto kernel = bps == 2 ? decode_layers_kernel<2> : decode_layers_kernel<1>;
    static const int max_smem = opt_in_smem(kernel);
    const size_t smem = fused_smem_floats(s) * sizeof(float);
    if (smem > (size_t)max_smem) return false;
    int per_sm = 0;
    SLUICE_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
    per_sm = std::min(per_sm, bps);
    if (per_sm <= 0) return false;
    static const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3((unsigned)(per_sm * sms));
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = p_->compute;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeCooperative;
    attr.val.cooperative = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    // SLUICE_GPU_FUSED_PREFETCH=0: no L2 prefetch of later phases' weights (for comparisons).
    static const int ahead = env_flag("SLUICE_GPU_FUSED_PREFETCH", true) ? 1 : 0;
    auto* trace = (unsigned long long*)p_->fused_trace.data();
    SLUICE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, layers, n_layers, s, p_->attn_part.f32(),
                                         (int*)p_->attn_done.data(), (unsigned*)p_->grid_bar.data(),
                                         ahead, trace));
    SLUICE_CUDA_LAUNCHED();
    return true;
}

void print_fused_trace(const Gpu::Impl& p) {
    unsigned long long t[kFusedTraceWords] = {};
    if (cudaMemcpy(t, p.fused_trace.data(), sizeof t, cudaMemcpyDeviceToHost) != cudaSuccess ||
        !t[kFusedTraceLayers])
        return;
    static const char* const names[kFusedPhases] = {"q/k/v",  "attention",     "output proj",
                                                    "router", "route+gate/up", "down"};
    const double layers = (double)t[kFusedTraceLayers], blocks = (double)t[kFusedTraceBlocks];
    std::fprintf(stderr,
                 "gpu: persistent decode kernel, %llu layer runs, %llu blocks; us per layer "
                 "(wall seen by block 0 incl. barrier / mean busy per block):\n",
                 t[kFusedTraceLayers], t[kFusedTraceBlocks]);
    double wall = 0;
    for (int i = 0; i < kFusedPhases; ++i) {
        const double us = t[i] / layers / 1e3;
        std::fprintf(stderr, "gpu:   %-14s %7.2f / %7.2f\n", names[i], us,
                     t[kFusedTraceBusy + i] / layers / blocks / 1e3);
        wall += us;
    }
    std::fprintf(stderr, "gpu:   total wall %.2f us per layer\n", wall);
}

}  // namespace sluice::cuda
