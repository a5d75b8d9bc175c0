// Element-wise and per-row ops of the GPU forward pass: norms, RoPE, attention, routing,
// expert combination. All f32.
#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <string>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/gpu_impl.cuh"
#include "backend/cuda/route.cuh"

namespace sluice::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row. Each thread loads its x and w elements before the reduction, so the
// weights' latency overlaps the sum's (a block per row is a latency-bound kernel: the
// element-at-a-time loop took ~9 us for 2048 floats on the H100).
__global__ void rms_norm_kernel(const float* x, const float* w, float eps, int n, float* y) {
    const float* xr = x + (size_t)blockIdx.x * n;
    float* yr = y + (size_t)blockIdx.x * n;
    constexpr int kPer = 4;  // float4 loads per thread kept in registers (n <= 16 * blockDim)
    if ((n & 3) == 0 && n <= 16 * (int)blockDim.x && ((uintptr_t)xr & 15) == 0 &&
        ((uintptr_t)yr & 15) == 0 && ((uintptr_t)w & 15) == 0) {
        const float4 *x4 = (const float4*)xr, *w4 = (const float4*)w;
        float4 xv[kPer], wv[kPer];
        float ss = 0.f;
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < n / 4) {
                xv[k] = x4[i], wv[k] = w4[i];
                ss += xv[k].x * xv[k].x + xv[k].y * xv[k].y + xv[k].z * xv[k].z + xv[k].w * xv[k].w;
            }
        }
        const float scale = rsqrtf(block_sum(ss) / (float)n + eps);
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < n / 4)
                ((float4*)yr)[i] =
                    make_float4(xv[k].x * scale * wv[k].x, xv[k].y * scale * wv[k].y,
                                xv[k].z * scale * wv[k].z, xv[k].w * scale * wv[k].w);
        }
        return;
    }
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const float scale = rsqrtf(block_sum(ss) / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

// One block per (token, head) of q, then of k (norm_rope_rows). With a KvStore, k's results go
// to the cache rows of their positions instead, and blocks past both tensors' heads copy each
// token's V row into its cache row (one launch instead of three).
__global__ void qk_norm_rope_kernel(RopeIn q, RopeIn k, int n_tok, int head_dim, float eps,
                                    const float* inv_freq, int n_rot, float mag, int pairs,
                                    int pos0, const int* pos_dev, KvStore kv) {
    extern __shared__ float v[];
    pdl_wait();
    const int p0 = pos_dev ? *pos_dev : pos0;
    const int nq = n_tok * q.n_head, nk = n_tok * k.n_head;
    if ((int)blockIdx.x >= nq + nk) {
        const int t = blockIdx.x - nq - nk;
        for (int d = threadIdx.x; d < kv.v_row; d += blockDim.x)
            kv.v_cache[(size_t)(p0 + t) * kv.v_row + d] = kv.v[(size_t)t * kv.v_row + d];
        return;
    }
    const bool is_k = (int)blockIdx.x >= nq;
    const RopeIn& X = is_k ? k : q;
    const int b = is_k ? blockIdx.x - nq : blockIdx.x;
    const int t = b / X.n_head, h = b % X.n_head;
    float* xh = X.x + ((size_t)t * X.n_head + h) * X.stride;
    float* dst =
        is_k && kv.k_cache ? kv.k_cache + (size_t)(p0 + t) * kv.k_row + (size_t)h * head_dim : xh;
    norm_rope_rows(HeadRow{xh, X.norm_w, dst}, HeadRow{}, head_dim, eps, inv_freq, n_rot, mag,
                   pairs, (float)(p0 + t), v);
}

// One block per (token, head): scores over the causal prefix in shared memory, softmax,
// weighted sum of V.
__global__ void attention_kernel(const float* q, const float* kc, const float* vc, int pos0,
                                 const int* pos_dev, int n_head, int n_kv, int hd, int vd,
                                 float scale, float* out) {
    extern __shared__ float sm[];
    pdl_wait();
    float* qs = sm;       // [hd]
    float* sc = sm + hd;  // [n_pos]
    const int t = blockIdx.x / n_head, h = blockIdx.x % n_head, g = h / (n_head / n_kv);
    const int n_pos = (pos_dev ? *pos_dev : pos0) + t + 1;
    const float* qh = q + ((size_t)t * n_head + h) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = qh[i];
    __syncthreads();
    const size_t k_stride = (size_t)n_kv * hd, v_stride = (size_t)n_kv * vd;
    float mx = -FLT_MAX;
    for (int p = threadIdx.x; p < n_pos; p += blockDim.x) {
        const float* k = kc + (size_t)p * k_stride + (size_t)g * hd;
        float s = 0.f;
        for (int i = 0; i < hd; i += 4) {
            const float4 kv = *(const float4*)(k + i);
            s += qs[i] * kv.x + qs[i + 1] * kv.y + qs[i + 2] * kv.z + qs[i + 3] * kv.w;
        }
        s *= scale;
        sc[p] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx);
    float sum = 0.f;
    for (int p = threadIdx.x; p < n_pos; p += blockDim.x) {
        const float e = __expf(sc[p] - mx);
        sc[p] = e;
        sum += e;
    }
    const float inv = 1.0f / block_sum(sum);  // block_sum's barriers also publish sc[]
    float* o = out + ((size_t)t * n_head + h) * vd;
    for (int d = threadIdx.x; d < vd; d += blockDim.x) {
        const float* v = vc + (size_t)g * vd + d;
        float acc = 0.f;
        for (int p = 0; p < n_pos; ++p) acc += sc[p] * v[(size_t)p * v_stride];
        o[d] = acc * inv;
    }
}

// One block per (head, chunk) of the token's positions: attention_split_block.
__global__ void attention_split_kernel(const float* q, float* kc, float* vc, int pos0,
                                       const int* pos_dev, int n_head, int n_kv, int hd, int vd,
                                       float scale, float* part, int* done, float* out,
                                       RopeFirst rf) {
    extern __shared__ float sm[];
    pdl_wait();
    const int n_pos = (pos_dev ? *pos_dev : pos0) + 1;
    attention_split_block(q, kc, vc, n_pos, (int)blockIdx.x, (int)blockIdx.y, (int)gridDim.y,
                          n_head, n_kv, hd, vd, scale, part, done, out, rf, sm);
}

__global__ void add_kernel(float* x, const float* y, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

__global__ void swiglu_kernel(const float* g, const float* u, size_t n, float* act) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) act[i] = g[i] / (1.0f + __expf(-g[i])) * u[i];
}

// One warp per token: softmax, then k rounds of arg-max (ties to the lower index).
__global__ void route_kernel(const float* logits, int n_expert, int k, int norm, float scale,
                             int32_t* ids, float* weights) {
    extern __shared__ float p[];  // [n_expert]
    const int t = blockIdx.x, lane = threadIdx.x;
    const float* l = logits + (size_t)t * n_expert;
    float mx = -FLT_MAX;
    for (int e = lane; e < n_expert; e += 32) mx = fmaxf(mx, l[e]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
    for (int e = lane; e < n_expert; e += 32) {
        p[e] = expf(l[e] - mx);
        sum += p[e];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    __syncwarp();
    float chosen_sum = 0.f;
    for (int j = 0; j < k; ++j) {
        float best = -1.f;
        int bi = n_expert;
        for (int e = lane; e < n_expert; e += 32)
            if (p[e] > best) best = p[e], bi = e;
        warp_argmax(best, bi);
        if (bi >= n_expert) bi = 0, best = 0.f;  // NaN logits: no candidate; stay in bounds
        if (lane == 0) {
            ids[(size_t)t * k + j] = bi;
            weights[(size_t)t * k + j] = best / sum;
            p[bi] = -2.f;  // taken
        }
        chosen_sum += best / sum;
        __syncwarp();
    }
    if (lane == 0) {
        const float f = (norm ? 1.0f / (chosen_sum + 1e-20f) : 1.0f) * scale;
        for (int j = 0; j < k; ++j) weights[(size_t)t * k + j] *= f;
    }
}

// route_kernel for n_expert <= 32 * kPer and k <= 32, in registers (route.cuh; the
// shared-memory version above is latency-bound: ~6.5 us per layer on the H100 for 128 experts).
template <int kPer>
__global__ void route_reg_kernel(const float* logits, int n_expert, int k, int norm, float scale,
                                 int32_t* ids, float* weights) {
    const size_t t = blockIdx.x;
    const float* l = logits + t * n_expert;
    route_warp<kPer>([&](int e) { return l[e]; }, n_expert, k, norm, scale, ids + t * k,
                     weights + t * k);
}

__global__ void combine_kernel(const float* y, const float* w, int k, int dim, float* out,
                               int accumulate) {
    const int t = blockIdx.y;
    const int d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= dim) return;
    float acc = accumulate ? out[(size_t)t * dim + d] : 0.f;
    for (int j = 0; j < k; ++j) acc += w[(size_t)t * k + j] * y[((size_t)t * k + j) * dim + d];
    out[(size_t)t * dim + d] = acc;
}

__global__ void gather_kernel(const float* x, const int32_t* idx, int dim, float* xs) {
    const int i = blockIdx.y;
    for (int d = blockIdx.x * blockDim.x + threadIdx.x; d < dim; d += gridDim.x * blockDim.x)
        xs[(size_t)i * dim + d] = x[(size_t)idx[i] * dim + d];
}

__global__ void scatter_add_kernel(const float* y, const int32_t* idx, const float* w, int dim,
                                   float* out) {
    const int i = blockIdx.y;
    for (int d = blockIdx.x * blockDim.x + threadIdx.x; d < dim; d += gridDim.x * blockDim.x)
        out[(size_t)idx[i] * dim + d] += w[i] * y[(size_t)i * dim + d];
}

__global__ void sigmoid_dot_kernel(float* y, const float* h, const float* w, int dim) {
    const size_t t = blockIdx.x;
    float s = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += h[t * dim + i] * w[i];
    const float g = 1.0f / (1.0f + expf(-block_sum(s)));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) y[t * dim + i] *= g;
}

unsigned blocks_for(size_t n) {
    return (unsigned)((n + kThreads - 1) / kThreads);
}

// SLUICE_GPU_ATTN_SPLIT=0 keeps decode on one block per head (for comparisons).
bool attn_split_on() {
    static const bool on = env_flag("SLUICE_GPU_ATTN_SPLIT", true);
    return on;
}

// Most chunks per head for a split attention launch: as many as keep the launch (n_head
// blocks per chunk) within one wave of resident blocks, at most kAttnSplits. At 64 registers
// the kernel holds 4 blocks of 256 threads per SM: after 1024 positions a 32-head model took
// 17 chunks uncapped, 544 blocks for an H100's 528 slots, so a second wave of 16 blocks
// (attention 21.3 us per launch there, 7.98 after 1-3 positions). Capped, decode after a
// 1024-token prompt went from 291-293 to 317 tok/s (session 22). SLUICE_GPU_ATTN_WAVE=0 lifts
// the cap, for comparisons.
template <typename Kernel>
int attn_wave_splits(Kernel kernel, int n_head, int last, int hd, int vd, bool rope) {
    static const bool wave = env_flag("SLUICE_GPU_ATTN_WAVE", true);
    if (!wave) return kAttnSplits;
    static const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
    // Occupancy at the shared memory of kAttnSplits' chunks (fewer chunks need a little more,
    // far from the limit for these sizes); recomputed only when that changes.
    static size_t occ_smem = 0;
    static int occ = 0;
    const size_t smem = attn_split_smem_floats(last, kAttnSplits, hd, vd, kThreads / 32, rope) * 4;
    if (smem != occ_smem) {
        SLUICE_CUDA_CHECK(
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kernel, kThreads, smem));
        occ_smem = smem;
    }
    return std::clamp(occ * sms / std::max(1, n_head), 1, kAttnSplits);
}

}  // namespace

void Gpu::rms_norm(const float* x, const float* w, float eps, int rows, int n, float* y) {
    if (rows <= 0) return;
    const int threads = std::min(1024, std::max(kThreads, (n / 4 + 31) / 32 * 32));
    rms_norm_kernel<<<rows, threads, 0, p_->compute>>>(x, w, eps, n, y);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::qk_norm_rope(const RopeIn& q, const RopeIn& k, int n_tok, int head_dim, float eps,
                       const float* inv_freq, int n_rot, float mag, bool pairs, const Pos& pos,
                       const KvStore& kv) {
    if (n_tok <= 0) return;
    const int blocks = n_tok * (q.n_head + k.n_head) + (kv.v_cache ? n_tok : 0);
    launch_pdl(qk_norm_rope_kernel, blocks, 128, (size_t)head_dim * 4, p_->compute, q, k, n_tok,
               head_dim, eps, inv_freq, n_rot, mag, pairs ? 1 : 0, pos.pos0, pos.dev, kv);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::attention(const float* q, const float* k_cache, const float* v_cache, int n,
                    const Pos& pos, int n_head, int n_kv, int hd, int vd, float scale, float* out) {
    // The split kernel stores to the caches only when given a RopeFirst.
    attention_impl(q, (float*)k_cache, (float*)v_cache, n, pos, n_head, n_kv, hd, vd, scale, out,
                   nullptr);
}

void Gpu::rope_attention(const RopeFirst& rf, float* q, float* k_cache, float* v_cache, int n,
                         const Pos& pos, int n_head, int n_kv, int hd, int vd, float scale,
                         float* out) {
    if (p_->rope_fuse &&
        attention_impl(q, k_cache, v_cache, n, pos, n_head, n_kv, hd, vd, scale, out, &rf))
        return;
    qk_norm_rope(RopeIn{q, n_head, hd, rf.q_norm},
                 RopeIn{const_cast<float*>(rf.k), n_kv, hd, rf.k_norm}, n, hd, rf.eps, rf.inv_freq,
                 rf.n_rot, rf.mag, rf.pairs, pos,
                 KvStore{k_cache, n_kv * hd, rf.v, v_cache, n_kv * vd});
    attention(q, k_cache, v_cache, n, pos, n_head, n_kv, hd, vd, scale, out);
}

bool Gpu::attention_impl(const float* q, float* k_cache, float* v_cache, int n, const Pos& pos,
                         int n_head, int n_kv, int hd, int vd, float scale, float* out,
                         const RopeFirst* rf) {
    if (n <= 0) return true;
    check(hd % 4 == 0 && n_head % n_kv == 0, "CUDA attention: unsupported head shape");
    const int last = (pos.dev ? pos.max : pos.pos0 + n);  // most positions a row attends to
    const int warps = kThreads / 32;
    if (n == 1 && attn_split_fits(n_head, vd) && attn_split_on()) {
        constexpr auto kernel = attention_split_kernel;
        static const int max_smem = opt_in_smem(kernel);
        const int max_splits = attn_wave_splits(kernel, n_head, last, hd, vd, rf != nullptr);
        const int splits = attn_split_count(last, max_splits);
        const size_t smem =
            attn_split_smem_floats(last, max_splits, hd, vd, warps, rf != nullptr) * sizeof(float);
        check(smem <= (size_t)max_smem, "CUDA attention: context of " + std::to_string(last) +
                                            " positions exceeds this kernel's shared-memory limit; "
                                            "use a shorter --ctx");
        launch_pdl(kernel, dim3(n_head, splits), kThreads, smem, p_->compute, q, k_cache, v_cache,
                   pos.pos0, pos.dev, n_head, n_kv, hd, vd, scale, p_->attn_part.f32(),
                   (int*)p_->attn_done.data(), out, rf ? *rf : RopeFirst{});
        SLUICE_CUDA_LAUNCHED();
        return true;
    }
    if (rf) return false;
    const size_t smem = (size_t)(hd + last) * sizeof(float);
    static const int max_smem = opt_in_smem(attention_kernel);
    check(smem <= (size_t)max_smem, "CUDA attention: context of " + std::to_string(last) +
                                        " positions exceeds this kernel's shared-memory limit (" +
                                        std::to_string(max_smem / 4 - hd) +
                                        "); use a shorter --ctx");
    launch_pdl(attention_kernel, n * n_head, kThreads, smem, p_->compute, q, k_cache, v_cache,
               pos.pos0, pos.dev, n_head, n_kv, hd, vd, scale, out);
    SLUICE_CUDA_LAUNCHED();
    return true;
}

void Gpu::add(float* x, const float* y, size_t n) {
    if (n == 0) return;
    add_kernel<<<blocks_for(n), kThreads, 0, p_->compute>>>(x, y, n);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::swiglu(const float* g, const float* u, size_t n, float* act) {
    if (n == 0) return;
    swiglu_kernel<<<blocks_for(n), kThreads, 0, p_->compute>>>(g, u, n, act);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::route_softmax_topk(const float* logits, int n, int n_expert, int k, bool norm,
                             float scale, int32_t* ids, float* weights) {
    if (n <= 0) return;
    check(n_expert <= 8192 && k <= n_expert, "CUDA routing: unsupported expert count");
    if (route_in_registers(n_expert, k))
        route_reg_kernel<kRouteRegExperts / 32>
            <<<n, 32, 0, p_->compute>>>(logits, n_expert, k, norm ? 1 : 0, scale, ids, weights);
    else
        route_kernel<<<n, 32, (size_t)n_expert * 4, p_->compute>>>(
            logits, n_expert, k, norm ? 1 : 0, scale, ids, weights);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::combine(const float* y, const float* w, int n, int k, int dim, float* out,
                  bool accumulate) {
    if (n <= 0) return;
    combine_kernel<<<dim3(blocks_for((size_t)dim), (unsigned)n), kThreads, 0, p_->compute>>>(
        y, w, k, dim, out, accumulate ? 1 : 0);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::gather_rows(const float* x, const int32_t* idx, int m, int dim, float* xs) {
    if (m <= 0) return;
    gather_kernel<<<dim3(blocks_for((size_t)dim), (unsigned)m), kThreads, 0, p_->compute>>>(
        x, idx, dim, xs);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::scatter_add(const float* y, const int32_t* idx, const float* w, int m, int dim,
                      float* out) {
    if (m <= 0) return;
    scatter_add_kernel<<<dim3(blocks_for((size_t)dim), (unsigned)m), kThreads, 0, p_->compute>>>(
        y, idx, w, dim, out);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::scale_by_sigmoid_dot(float* y, const float* h, const float* w, int n, int dim) {
    if (n <= 0) return;
    sigmoid_dot_kernel<<<n, kThreads, 0, p_->compute>>>(y, h, w, dim);
    SLUICE_CUDA_LAUNCHED();
}

}  // namespace sluice::cuda
