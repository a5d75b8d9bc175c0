// Weight-matrix ops: dequantizing mat-vec kernels (decode, small batches, routed experts
// addressed through device tables) and the tensor-core path for larger batches.
#include <algorithm>

#include "backend/cuda/dequant.cuh"
#include "backend/cuda/gpu_impl.cuh"
#include "backend/cuda/route.cuh"
#include "backend/cuda/vec.cuh"

namespace sluice::cuda {
namespace {

constexpr int kWarps = 8;  // rows per block in the mat-vec kernels: one warp per row
constexpr int kMaxVecTokens = 8;

// Most bytes staged: the device's opt-in shared memory per block (227 KiB on sm_90, 163 KiB
// on sm_80); larger activations are read from global memory.
size_t max_stage() {
    // room for the kernels' static shared memory
    static const size_t bytes =
        (size_t)device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin) - 1024;
    return bytes;
}
size_t stage_bytes(int n_vec, int len) {
    return (size_t)n_vec * (size_t)(len / 32) * kPad * sizeof(float);
}
// Whether a mat-vec launch over n rows of len floats can apply `norm` itself: the fused
// RMSNorm needs its input staged.
bool norm_fusable(const NormIn& norm, int n, int len) {
    return !norm.w || stage_bytes(n, len) <= max_stage();
}
// Staging loads per thread issued before the first store: with one load per loop trip the
// stores to shared memory (generic pointers, possibly aliasing) kept each trip's global load
// waiting for the last, and staging sat on every block's critical path (ncu, H200).
constexpr int kStageBatch = 4;

// xs[t][c * kPad + i] = x[t * ldx + 32c + i] (times w[32c + i] when w is set) for t < n_vec;
// ssq[t] (NT >= n_vec entries, when set) gets this thread's share of row t's sum of squares of
// x. 16-byte accesses when x, ldx and w allow. Block-wide; ends with a barrier.
template <int NT = 1>
__device__ void stage_rows(const float* x, int ldx, int n_vec, int len, float* xs,
                           const float* w = nullptr, float* ssq = nullptr) {
    const int nc = len / 32;
#pragma unroll
    for (int t = 0; t < NT; ++t)
        if (ssq) ssq[t] = 0.f;
    const bool vec = ((uintptr_t)x & 15) == 0 && (ldx & 3) == 0 && ((uintptr_t)w & 15) == 0;
    if (vec) {
        const int n4 = len / 4, total = n_vec * n4;  // len is a multiple of 32
        for (int i0 = threadIdx.x; i0 < total; i0 += kStageBatch * blockDim.x) {
            float4 v[kStageBatch], m[kStageBatch];
#pragma unroll
            for (int u = 0; u < kStageBatch; ++u) {
                const int i = i0 + u * (int)blockDim.x;
                if (i >= total) continue;
                const int t = i / n4, k4 = i % n4;
                v[u] = *(const float4*)(x + (size_t)t * ldx + 4 * k4);
                if (w) m[u] = *(const float4*)(w + 4 * k4);
            }
#pragma unroll
            for (int u = 0; u < kStageBatch; ++u) {
                const int i = i0 + u * (int)blockDim.x;
                if (i >= total) continue;
                const int t = i / n4, k = 4 * (i % n4);
                if (ssq) {
                    const float q =
                        v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
#pragma unroll
                    for (int tt = 0; tt < NT; ++tt)  // constant indices keep ssq in registers
                        if (tt == t) ssq[tt] += q;
                }
                if (w)
                    v[u] = make_float4(v[u].x * m[u].x, v[u].y * m[u].y, v[u].z * m[u].z,
                                       v[u].w * m[u].w);
                *(float4*)(xs + (size_t)t * nc * kPad + (k >> 5) * kPad + (k & 31)) = v[u];
            }
        }
    } else {
        for (int i = threadIdx.x; i < n_vec * len; i += blockDim.x) {
            const int t = i / len, k = i % len;
            const float v = x[(size_t)t * ldx + k];
            if (ssq)
#pragma unroll
                for (int tt = 0; tt < NT; ++tt)
                    if (tt == t) ssq[tt] += v * v;
            xs[(size_t)t * nc * kPad + (k >> 5) * kPad + (k & 31)] = w ? v * w[k] : v;
        }
    }
    __syncthreads();
}
__device__ void stage_x(const float* x, int ldx, int n_vec, int len, float* xs) {
    stage_rows(x, ldx, n_vec, len, xs);
}
extern __shared__ __align__(16) float x_stage[];

// `bytes` of dynamic shared memory for Kernel, raising the kernel's limit once when needed;
// 0: more than a block may have.
template <auto Kernel>
size_t allow_smem(size_t bytes) {
    if (bytes > max_stage()) return 0;
    if (bytes > (48 << 10)) {  // past the default: raised on first need only
        static const int limit = opt_in_smem(Kernel);
        if (bytes > (size_t)limit) return 0;
    }
    return bytes;
}
// Dynamic shared memory to launch Kernel with when it stages n_vec activation rows of len
// floats; 0: too large, read from global.
template <auto Kernel>
size_t stage_smem(int n_vec, int len) {
    return allow_smem<Kernel>(stage_bytes(n_vec, len));
}

// Up to kMaxParts matrices of one dtype and row length over the same activations, in one
// launch (a layer's q, k and v projections): blocks [first_block, next part's) are the part's.
constexpr int kMaxParts = 3;
struct MatvecPart {
    const uint8_t* W;
    size_t row_bytes;
    int rows, split, first_block;
    float* y;
    int ldy;
};
struct MatvecParts {
    MatvecPart p[kMaxParts];
    int n;
};

// What a mat-vec launch does besides the products: normalise its input (NormIn; needs the
// input staged), and route on its output in the last block to finish (RouteOut; `done` is a
// zeroed counter that block resets; one part, y = [NT, n_expert] logits).
struct VecExtras {
    NormIn norm;
    int* done = nullptr;
    RouteOut route;
};

// The last block of the launch (by `done`) routes each token t < n_tok on logits [n_tok,
// n_expert]. Every block calls it after writing its outputs.
__device__ void route_in_last_block(int* done, const float* logits, int n_tok, int n_expert,
                                    const RouteOut& ro) {
    if (!last_block_to_arrive(done, (int)gridDim.x)) return;
    for (int t = threadIdx.x >> 5; t < n_tok; t += blockDim.x >> 5) {
        const float* l = logits + (size_t)t * n_expert;
        route_warp<kRouteRegExperts / 32>([&](int e) { return __ldcg(l + e); }, n_expert, ro.k,
                                          ro.norm ? 1 : 0, ro.scale, ro.ids + (size_t)t * ro.k,
                                          ro.weights + (size_t)t * ro.k);
    }
}

// y[t * ldy + r] (+)= W[r] . x[t * ldx] for t < NT; `split` warps per row (1, 2, 4 or 8), lanes
// over 32-chunks: warp part p takes chunks p * 32 + lane, then every 32 * split. Each lane's
// sum runs in chunk order and the reductions are fixed, so results depend on the split (chosen
// from the matrix shape alone) but not on staging, on the other parts or on the launch.
// Dense Q4_K rows on sub-block pairs (the expert kernels' form) were 4% slower in decode
// (session 22), so this keeps the 32-chunk float decoder for them.
template <DType T, int NT>
__global__ void __launch_bounds__(32 * kWarps)
    matvec_kernel(MatvecParts parts, int cols, const float* x, int ldx, int accumulate, int staged,
                  VecExtras ex) {
    __shared__ float partial[kWarps][NT];
    int pi = 0;
    while (pi + 1 < parts.n && (int)blockIdx.x >= parts.p[pi + 1].first_block) ++pi;
    const MatvecPart& P = parts.p[pi];
    const int split = P.split;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r = ((int)blockIdx.x - P.first_block) * (kWarps / split) + warp / split,
              part = warp % split;
    if (r < P.rows)
        prefetch_l2(P.W + (size_t)r * P.row_bytes, P.row_bytes, part * 32 + lane, 32 * split);
    pdl_wait();
    const float* xb = x;
    int cs = 32;
    size_t ts = (size_t)ldx;
    // RMSNorm is applied by linearity: rows staged as x * w, each product scaled by the row's
    // rsqrt(mean(x^2) + eps) at the end, so the reduction is off the loads' critical path.
    float ssq[NT];
    if (staged) {
        if (ex.norm.w)
            stage_rows<NT>(x, ldx, NT, cols, x_stage, ex.norm.w, ssq);
        else
            stage_x(x, ldx, NT, cols, x_stage);
        xb = x_stage, cs = kPad, ts = (size_t)(cols / 32) * kPad;
    }
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.f;
    if (r < P.rows) {
        const uint8_t* row = P.W + (size_t)r * P.row_bytes;
        const int n_chunks = cols / 32;
        // One token of Q8_0 rows regrouped on upload (Q8_0_G8): two 16-byte loads per chunk
        // and codes made floats through the mantissa; 9.45 instead of 11.05 us per mat-vec
        // launch, +7.6% decode on an H100 (docs/benchmarks.md, session 21).
        if constexpr (T == DType::Q8_0_G8 && NT == 1) {
#pragma unroll 2
            for (int c = part * 32 + lane; c < n_chunks; c += 32 * split)
                acc[0] += Q8G8Chunk::load(row, c).dot(xb + cs * c);
        } else {
            // Two chunks in flight per lane: one warp per row is latency-bound otherwise.
#pragma unroll 2
            for (int c = part * 32 + lane; c < n_chunks; c += 32 * split) {
                float w[32];
                Chunk<T>::load(row, c, w);
#pragma unroll
                for (int t = 0; t < NT; ++t) acc[t] += dot32(w, xb + t * ts + cs * c);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = warp_sum(acc[t]);
    if (split > 1) {
        if (lane == 0)
#pragma unroll
            for (int t = 0; t < NT; ++t) partial[warp][t] = acc[t];
        __syncthreads();
        if (part == 0)
#pragma unroll
            for (int t = 0; t < NT; ++t)
                for (int p = 1; p < split; ++p) acc[t] += partial[warp + p][t];
    }
    if (ex.norm.w) {
        __shared__ float red[kWarps][NT];
        __shared__ float scale[NT];
#pragma unroll
        for (int t = 0; t < NT; ++t) ssq[t] = warp_sum(ssq[t]);
        if (lane == 0)
#pragma unroll
            for (int t = 0; t < NT; ++t) red[warp][t] = ssq[t];
        __syncthreads();
        if (threadIdx.x < NT) {
            float ss = 0.f;
            for (int w = 0; w < kWarps; ++w) ss += red[w][threadIdx.x];
            scale[threadIdx.x] = rsqrtf(ss / (float)cols + ex.norm.eps);
        }
        __syncthreads();
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[t] *= scale[t];
        // rms_norm's result, for the layer's later ops, from the staged x * w. Read again
        // from x and w, each trip's loads waited on the stores of the trip before (h may
        // alias them): 8 L2 round trips at the end of block 0, and the q/k/v and router
        // launches took 11.1 and 7.9 us per layer of the step (session 22).
        if (blockIdx.x == 0 && ex.norm.h)
#pragma unroll
            for (int t = 0; t < NT; ++t)
                for (int k = threadIdx.x; k < cols; k += blockDim.x) {
                    const float xw = xb[t * ts + (size_t)(k >> 5) * kPad + (k & 31)];
                    ex.norm.h[(size_t)t * cols + k] = xw * scale[t];
                }
    }
    if (r < P.rows && part == 0 && lane == 0)
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            float* o = P.y + (size_t)t * P.ldy + r;
            *o = accumulate ? *o + acc[t] : acc[t];
        }
    if (ex.done) route_in_last_block(ex.done, parts.p[0].y, NT, parts.p[0].rows, ex.route);
}

// Warps per row: enough blocks to fill the device about 1.5 times (a k or v projection of 512
// rows is 64 blocks of one warp per row), keeping >= 8 chunks per warp. Part p of a row takes
// the runs of 32 chunks from p * 32, so a split above n_chunks / 32 would leave whole warps
// without work (2048 columns: splits of 4 and 8 give parts 2 and 3 nothing): the split is
// capped there. Measured on an H100 (docs/benchmarks.md, session 19): +1.4-2.1% decode, every
// round; SLUICE_GPU_SPLIT_CAP=0 lifts the cap, for comparisons.
int matvec_split(int rows, int cols) {
    static const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
    static const bool cap = env_flag("SLUICE_GPU_SPLIT_CAP", true);
    const int n_chunks = cols / 32;
    int split = 1;
    while (split < kWarps && (rows + kWarps / split - 1) / (kWarps / split) < sms * 3 / 2 &&
           n_chunks / (2 * split) >= 8 && (!cap || n_chunks >= 32 * 2 * split))
        split *= 2;
    return split;
}

// nt (<= NT) tokens of x: [nt, cols] against every matrix of W[0..n_w) (one dtype, `cols`
// columns), y[i]: [nt, ldy[i]], in one launch.
template <DType T, int NT>
void launch_matvec(cudaStream_t s, const TensorView* const* W, int n_w, const float* x,
                   float* const* y, const int* ldy, bool accumulate, const VecExtras& ex) {
    constexpr auto kernel = matvec_kernel<T, NT>;
    const int cols = (int)W[0]->cols();
    const size_t smem = stage_smem<kernel>(NT, cols);
    MatvecParts parts{};
    parts.n = n_w;
    int blocks = 0;
    for (int i = 0; i < n_w; ++i) {
        const int rows = (int)W[i]->rows(), split = matvec_split(rows, cols);
        parts.p[i] = {
            (const uint8_t*)W[i]->data, W[i]->row_size(), rows, split, blocks, y[i], ldy[i]};
        blocks += (rows + kWarps / split - 1) / (kWarps / split);
    }
    launch_pdl(kernel, blocks, 32 * kWarps, smem, s, parts, cols, x, cols, accumulate ? 1 : 0,
               smem ? 1 : 0, ex);
    SLUICE_CUDA_LAUNCHED();
}

// The kernel instance for nt tokens (1 <= nt <= NT).
template <DType T, int NT = kMaxVecTokens>
void launch_matvec_n(cudaStream_t s, int nt, const TensorView* const* W, int n_w, const float* x,
                     float* const* y, const int* ldy, bool accumulate, const VecExtras& ex) {
    if constexpr (NT > 1)
        if (nt < NT) return launch_matvec_n<T, NT - 1>(s, nt, W, n_w, x, y, ldy, accumulate, ex);
    launch_matvec<T, NT>(s, W, n_w, x, y, ldy, accumulate, ex);
}

// y[i]: [n, W[i].rows()] = x: [n, cols] . W[i]^T, kMaxVecTokens tokens per launch. Extras
// need n <= kMaxVecTokens.
template <DType T>
void matvec_any(cudaStream_t s, const TensorView* const* W, int n_w, const float* x, int n,
                float* const* y, bool accumulate, const VecExtras& ex = {}) {
    const int64_t cols = W[0]->cols();
    int ldy[kMaxParts];
    for (int i = 0; i < n_w; ++i) ldy[i] = (int)W[i]->rows();
    for (int t0 = 0; t0 < n; t0 += kMaxVecTokens) {
        float* yt[kMaxParts];
        for (int i = 0; i < n_w; ++i) yt[i] = y[i] + (size_t)t0 * ldy[i];
        launch_matvec_n<T>(s, std::min(n - t0, kMaxVecTokens), W, n_w, x + (size_t)t0 * cols, yt,
                           ldy, accumulate, ex);
    }
}

// out: [rows, cols] f32 = rows [r0, r0 + rows) of W dequantized. One thread per 32-chunk.
template <DType T>
__global__ void dequant_kernel(const uint8_t* W, size_t row_bytes, int64_t r0, int rows, int cols,
                               float* out) {
    const int n_chunks = cols / 32;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)rows * n_chunks) return;
    const int64_t r = i / n_chunks;
    const int c = (int)(i % n_chunks);
    float w[32];
    Chunk<T>::load(W + (size_t)(r0 + r) * row_bytes, c, w);
    float4* o = (float4*)(out + r * cols + 32 * c);
#pragma unroll
    for (int k = 0; k < 8; ++k)
        o[k] = make_float4(w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]);
}

// y: [n, cols] = rows ids[t] of W.
template <DType T>
__global__ void get_rows_kernel(const uint8_t* W, size_t row_bytes, int cols, const int32_t* ids,
                                float* y) {
    const int t = blockIdx.y;
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols / 32) return;
    float w[32];
    Chunk<T>::load(W + (size_t)ids[t] * row_bytes, c, w);
    float* o = y + (size_t)t * cols + 32 * c;
#pragma unroll
    for (int k = 0; k < 32; ++k) o[k] = w[k];
}

// Routed experts, one warp per (row, slot): act[s, r] = silu(gate_e[r] . x_s) * (up_e[r] . x_s).
// x_s is staged (padded) in shared memory when `staged`.
template <DType TG, DType TU>
__global__ void experts_gate_up_kernel(const void* const* table, const int32_t* ids, int tok_div,
                                       int n_ff, int n_embd, size_t g_row_bytes, size_t u_row_bytes,
                                       const float* x, float* act, int staged) {
    pdl_wait();
    const int lane = threadIdx.x & 31, s = blockIdx.y;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const float* xb = x + (size_t)(s / tok_div) * n_embd;
    int cs = 32;
    if (staged) {
        stage_x(xb, n_embd, 1, n_embd, x_stage);
        xb = x_stage, cs = kPad;
    }
    if (r >= n_ff) return;
    const int e = ids[s];
    if (!table[3 * e]) {  // not resident: computed on the host (cuda.h)
        if ((threadIdx.x & 31) == 0) act[(size_t)s * n_ff + r] = 0.f;
        return;
    }
    const uint8_t* g = (const uint8_t*)table[3 * e] + (size_t)r * g_row_bytes;
    const uint8_t* u = (const uint8_t*)table[3 * e + 1] + (size_t)r * u_row_bytes;
    float ag = 0.f, au = 0.f;
#pragma unroll 2
    for (int c = lane; c < n_embd / 32; c += 32) {
        float w[32];
        Chunk<TG>::load(g, c, w);
        ag += dot32(w, xb + cs * c);
        Chunk<TU>::load(u, c, w);
        au += dot32(w, xb + cs * c);
    }
    ag = warp_sum(ag);
    au = warp_sum(au);
    if (lane == 0) act[(size_t)s * n_ff + r] = ag / (1.0f + __expf(-ag)) * au;
}

// Activations for Q4KPair rows: xs[(c / 2) * kPairPad + (c % 2) * 32 + i] = x[32c + i] and
// sx[c] = sum of chunk c, for the nc = len / 32 chunks (nc even). kPairPad: a lane reads its
// pair's 16-byte words at a 68-float stride, so each quarter-warp's reads hit distinct banks.
constexpr int kPairPad = 68;
size_t pair_stage_bytes(int len) {
    return (size_t)(len / 64) * kPairPad * sizeof(float) + (size_t)(len / 32) * sizeof(float);
}
// Block-wide; ends with a barrier. Each warp takes every kWarps-th chunk, its loads issued
// together.
__device__ void stage_pairs(const float* x, int len, float* xs, float* sx) {
    constexpr int kBatch = 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nc = len / 32;
    for (int c0 = warp; c0 < nc; c0 += kBatch * kWarps) {
        float v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int c = c0 + u * kWarps;
            v[u] = c < nc ? x[32 * c + lane] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int c = c0 + u * kWarps;
            if (c >= nc) continue;  // uniform across the warp: the shuffles below are safe
            xs[(c >> 1) * kPairPad + (c & 1) * 32 + lane] = v[u];
            const float sum = warp_sum(v[u]);
            if (lane == 0) sx[c] = sum;
        }
    }
    __syncthreads();
}

// experts_gate_up_kernel for Q4_K gate and up rows, staged activations, n_embd a multiple of
// 64: lanes over sub-block pairs (Q4KPair). The first pair's weights are requested before
// the activations are staged. MinBlocks: the launch bound (blocks per SM), see
// Gpu::experts_gate_up.
template <int MinBlocks>
__global__ void __launch_bounds__(32 * kWarps, MinBlocks)
    experts_gate_up_q4k_pairs_kernel(const void* const* table, const int32_t* ids, int tok_div,
                                     int n_ff, int n_embd, size_t row_bytes, const float* x,
                                     float* act) {
    pdl_wait();
    const int lane = threadIdx.x & 31, s = blockIdx.y, np = n_embd / 64;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int e = ids[s];
    const uint8_t* g = (const uint8_t*)table[3 * e];
    const uint8_t* u = (const uint8_t*)table[3 * e + 1];
    const bool work = r < n_ff && g;  // g null: not resident, computed on the host (cuda.h)
    if (work) g += (size_t)r * row_bytes, u += (size_t)r * row_bytes;
    Q4KPair pg{}, pu{};
    if (work && lane < np) pg = Q4KPair::load(g, lane), pu = Q4KPair::load(u, lane);
    float* xs = x_stage;
    float* sx = x_stage + (size_t)np * kPairPad;
    stage_pairs(x + (size_t)(s / tok_div) * n_embd, n_embd, xs, sx);
    if (r >= n_ff) return;
    if (!work) {
        if (lane == 0) act[(size_t)s * n_ff + r] = 0.f;
        return;
    }
    float ag = 0.f, au = 0.f;
    // Later pairs (rows beyond 2048 columns) are loaded in turn. The launch bound keeps 64
    // registers (72 unbounded, no spills at 64), so 4 blocks per SM, as the 32-chunk kernel.
#pragma unroll 1
    for (int p = lane; p < np; p += 32) {
        if (p != lane) pg = Q4KPair::load(g, p), pu = Q4KPair::load(u, p);
        ag += pg.dot(p, xs + p * kPairPad, sx + 2 * p);
        au += pu.dot(p, xs + p * kPairPad, sx + 2 * p);
    }
    ag = warp_sum(ag);
    au = warp_sum(au);
    if (lane == 0) act[(size_t)s * n_ff + r] = ag / (1.0f + __expf(-ag)) * au;
}

// Sum over the (slot j, item i) pairs of k slots with `per_slot` items each, lanes taking every
// 32nd pair p = j * per_slot + i, of sw[j] * f(row, j, i, p), row = base[j] + row_off. Slots
// without a VRAM entry (base[j] null) add nothing: the host computes them (cuda.h).
template <typename F>
__device__ __forceinline__ float slot_items_sum(int k, int per_slot, const uint8_t* const* base,
                                                const float* sw, size_t row_off, F&& f) {
    float acc = 0.f;
#pragma unroll 2
    for (int p = (int)threadIdx.x & 31; p < k * per_slot; p += 32) {
        const int j = p / per_slot, i = p - j * per_slot;
        if (!base[j]) continue;
        acc += sw[j] * f(base[j] + row_off, j, i, p);
    }
    return acc;
}

// Most routed slots per token the fused down kernel takes.
constexpr int kMaxSlots = 32;

// base[j] = slot j's down matrix (null: not in VRAM), sw[j] = its routing weight, for the k
// slots of token t; threads j < k each write one. The caller's next barrier publishes them.
__device__ __forceinline__ void load_slots(const void* const* table, const int32_t* ids,
                                           const float* wts, int t, int k, const uint8_t** base,
                                           float* sw) {
    if ((int)threadIdx.x < k) {
        const int j = (int)threadIdx.x;
        base[j] = (const uint8_t*)table[3 * ids[(size_t)t * k + j] + 2];
        sw[j] = wts[(size_t)t * k + j];
    }
}

// out[t, r] += sum_j w[t, j] * (down_e[r] . act[t * k + j]), e = ids[t * k + j]: one warp per
// output row r of token t = blockIdx.y, its lanes over the (slot, 32-chunk) pairs of all k
// slots (an expert's row alone is too short to keep a warp's loads in flight). The k act rows
// are staged when `staged`. Measured on the H200, Qwen3-30B-A3B shape (2048 rows, 8 x 24
// pairs): one warp per row 297-301 tok/s; two or four warps per row, each over every second or
// fourth pair, 294-299 and 242-243.
template <DType T>
__global__ void experts_down_combine_kernel(const void* const* table, const int32_t* ids,
                                            const float* wts, int k, int n_embd, int n_ff,
                                            size_t row_bytes, const float* act, float* out,
                                            int staged) {
    __shared__ const uint8_t* base[kMaxSlots];
    __shared__ float sw[kMaxSlots];
    pdl_wait();
    const int t = blockIdx.y, lane = threadIdx.x & 31;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    load_slots(table, ids, wts, t, k, base, sw);
    // out's prior value, read while the products run (not one more round trip after them)
    const float prior = lane == 0 && r < n_embd ? out[(size_t)t * n_embd + r] : 0.f;
    const float* a = act + (size_t)t * k * n_ff;
    const int nc = n_ff / 32;
    int cs = 32;
    size_t ss = (size_t)n_ff;
    if (staged) {
        stage_x(a, n_ff, k, n_ff, x_stage);  // its barrier also publishes base and sw
        a = x_stage, cs = kPad, ss = (size_t)nc * kPad;
    } else {
        __syncthreads();
    }
    if (r >= n_embd) return;
    float acc = slot_items_sum(k, nc, base, sw, (size_t)r * row_bytes,
                               [&](const uint8_t* row, int j, int c, int) {
                                   float w[32];
                                   Chunk<T>::load(row, c, w);
                                   return dot32(w, a + j * ss + cs * c);
                               });
    acc = warp_sum(acc);
    if (lane == 0) out[(size_t)t * n_embd + r] = prior + acc;
}

// experts_down_combine_kernel for Q4_K down rows, staged act rows, n_ff a multiple of 64:
// lanes over the (slot, sub-block pair) items of all k slots. The k act rows of a token are
// contiguous, so they stage as one vector: item p is pair p of it. Bounded to 2 blocks per SM
// instead (95 registers, a lane's 3 items of this shape loaded together) it was level
// (session 20).
__global__ void __launch_bounds__(32 * kWarps, 4)
    experts_down_combine_q4k_pairs_kernel(const void* const* table, const int32_t* ids,
                                          const float* wts, int k, int n_embd, int n_ff,
                                          size_t row_bytes, const float* act, float* out) {
    __shared__ const uint8_t* base[kMaxSlots];
    __shared__ float sw[kMaxSlots];
    pdl_wait();
    const int t = blockIdx.y, lane = threadIdx.x & 31, np = n_ff / 64;
    const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
    load_slots(table, ids, wts, t, k, base, sw);
    const float prior = lane == 0 && r < n_embd ? out[(size_t)t * n_embd + r] : 0.f;  // as above
    float* xs = x_stage;
    float* sx = x_stage + (size_t)k * np * kPairPad;
    stage_pairs(act + (size_t)t * k * n_ff, k * n_ff, xs, sx);  // its barrier publishes base, sw
    if (r >= n_embd) return;
    float acc = slot_items_sum(
        k, np, base, sw, (size_t)r * row_bytes, [&](const uint8_t* row, int, int q, int p) {
            return Q4KPair::load(row, q).dot(q, xs + p * kPairPad, sx + 2 * p);
        });
    acc = warp_sum(acc);
    if (lane == 0) out[(size_t)t * n_embd + r] = prior + acc;
}

[[noreturn]] void no_kernel(DType t) {
    fail(std::string("CUDA backend: no kernels for weight type ") + dtype_name(t));
}

}  // namespace

bool supports(DType t) {
    return in_types<GpuTypes>(t);
}

void Gpu::matmul(const TensorView& W, const float* x, int n, float* y, bool accumulate) {
    if (n <= 0) return;
    const cudaStream_t s = p_->compute;
    check(W.cols() % 32 == 0,
          "CUDA matmul: row length " + std::to_string(W.cols()) + " is not a multiple of 32");
    if (n <= kMaxVecTokens) {
        const TensorView* w[1] = {&W};
        float* yy[1] = {y};
        if (!dispatch_dtype<DenseTypes>(W.dtype,
                            [&]<DType T>() { matvec_any<T>(s, w, 1, x, n, yy, accumulate); }))
            no_kernel(W.dtype);
        return;
    }
    // Larger batches: f32 tiles of W (TF32 tensor cores, f32 accumulation); tiles of at most
    // 64 MiB so the output projection of a large vocabulary needs no full f32 copy.
    const int64_t rows = W.rows(), cols = W.cols();
    const int64_t tile_rows = std::max<int64_t>(64, (64ll << 20) / (cols * 4));
    p_->reserve(p_->w16, (size_t)std::min(rows, tile_rows) * (size_t)cols * 4);
    for (int64_t r0 = 0; r0 < rows; r0 += tile_rows) {
        const int tr = (int)std::min(tile_rows, rows - r0);
        float* wt = p_->w16.f32();
        const int64_t threads = (int64_t)tr * (cols / 32);
        if (!dispatch_dtype<DenseTypes>(W.dtype, [&]<DType T>() {
                dequant_kernel<T><<<(unsigned)((threads + 255) / 256), 256, 0, s>>>(
                    (const uint8_t*)W.data, W.row_size(), r0, tr, (int)cols, wt);
            }))
            no_kernel(W.dtype);
        SLUICE_CUDA_LAUNCHED();
        // Column-major view: Y^T [rows, n] = W_tile [tr, cols] . X^T [cols, n].
        const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
        SLUICE_CUBLAS_CHECK(cublas().gemm_ex(p_->blas, CUBLAS_OP_T, CUBLAS_OP_N, tr, n, (int)cols,
                                             &alpha, wt, CUDA_R_32F, (int)cols, x, CUDA_R_32F,
                                             (int)cols, &beta, y + r0, CUDA_R_32F, (int)rows,
                                             CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    }
}

void Gpu::matmul_multi(const TensorView* const* W, int n_w, const float* x, int n, float* const* y,
                       const NormIn& norm) {
    bool one_launch = n <= kMaxVecTokens && n_w <= kMaxParts;
    for (int i = 0; i < n_w; ++i)
        one_launch = one_launch && W[i]->dtype == W[0]->dtype && W[i]->cols() == W[0]->cols();
    // The norm is fused where the launch stages its input.
    const bool fused = one_launch && norm_fusable(norm, n, (int)W[0]->cols());
    if (!fused) {
        if (norm.w) {
            rms_norm(x, norm.w, norm.eps, n, (int)W[0]->cols(), norm.h);
            x = norm.h;
        }
        for (int i = 0; i < n_w; ++i) matmul(*W[i], x, n, y[i]);
        return;
    }
    check(W[0]->cols() % 32 == 0,
          "CUDA matmul: row length " + std::to_string(W[0]->cols()) + " is not a multiple of 32");
    VecExtras ex;
    ex.norm = norm;
    if (!dispatch_dtype<DenseTypes>(W[0]->dtype,
                        [&]<DType T>() { matvec_any<T>(p_->compute, W, n_w, x, n, y, false, ex); }))
        no_kernel(W[0]->dtype);
}

void Gpu::router_topk(const TensorView& W, const float* x, int n, const NormIn& norm, float* logits,
                      const RouteOut& route) {
    if (n <= 0) return;
    const int n_expert = (int)W.rows();
    const bool fused = n <= kMaxVecTokens && route_in_registers(n_expert, route.k) &&
                       W.cols() % 32 == 0 && norm_fusable(norm, n, (int)W.cols());
    const TensorView* w[1] = {&W};
    if (!fused) {
        matmul_multi(w, 1, x, n, &logits, norm);
        route_softmax_topk(logits, n, n_expert, route.k, route.norm, route.scale, route.ids,
                           route.weights);
        return;
    }
    VecExtras ex;
    ex.norm = norm;
    ex.done = (int*)p_->done.data();
    ex.route = route;
    if (!dispatch_dtype<DenseTypes>(W.dtype, [&]<DType T>() {
            matvec_any<T>(p_->compute, w, 1, x, n, &logits, false, ex);
        }))
        no_kernel(W.dtype);
}

void Gpu::get_rows(const TensorView& W, const int32_t* ids, int n, float* y) {
    if (n <= 0) return;
    const int cols = (int)W.cols();
    const dim3 grid((unsigned)((cols / 32 + 127) / 128), (unsigned)n);
    if (!dispatch_dtype<DenseTypes>(W.dtype, [&]<DType T>() {
            get_rows_kernel<T>
                <<<grid, 128, 0, p_->compute>>>((const uint8_t*)W.data, W.row_size(), cols, ids, y);
        }))
        no_kernel(W.dtype);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::experts_gate_up(const ExpertTable& t, const int32_t* ids, int n_slots, int tok_div,
                          const float* x, float* act) {
    if (n_slots <= 0) return;
    check(t.dtype[0] == t.dtype[1], "CUDA experts: gate and up weights differ in type");
    const dim3 grid((unsigned)((t.n_ff + kWarps - 1) / kWarps), (unsigned)n_slots);
    const size_t rb = row_bytes(t.dtype[0], t.n_embd);
    // SLUICE_GPU_PAIRS=0: the 32-chunk kernel for Q4_K too, for comparisons.
    static const bool pairs = env_flag("SLUICE_GPU_PAIRS", true);
    // SLUICE_GPU_GATEUP_6=1 (off until measured): the pair kernel bounded to 6 blocks per SM
    // (40 registers; ptxas: 100 bytes of spill stores) instead of 4 (64 registers). A decode
    // step's launch for Qwen3-30B-A3B's shape is 768 blocks: 1.45 waves of an H100's 528 slots
    // at 4 per SM, one wave at 6 (792 slots); this phase took 14.1 us per layer against ~6.5
    // for a pure stream of its bytes (session 22).
    static const bool six = env_flag("SLUICE_GPU_GATEUP_6", false);
    constexpr auto pairs4 = experts_gate_up_q4k_pairs_kernel<4>;
    constexpr auto pairs6 = experts_gate_up_q4k_pairs_kernel<6>;
    const size_t stage = pair_stage_bytes((int)t.n_embd);
    const size_t pair_bytes = !pairs || t.dtype[0] != DType::Q4_K || t.n_embd % 64 != 0 ? 0
                              : six ? allow_smem<pairs6>(stage)
                                    : allow_smem<pairs4>(stage);
    if (pair_bytes) {
        launch_pdl(six ? pairs6 : pairs4, grid, 32 * kWarps, pair_bytes, p_->compute, t.table,
                   ids, tok_div, (int)t.n_ff, (int)t.n_embd, rb, x, act);
        SLUICE_CUDA_LAUNCHED();
        return;
    }
    if (!dispatch_dtype(t.dtype[0], [&]<DType T>() {
            const size_t smem = stage_smem<experts_gate_up_kernel<T, T>>(1, (int)t.n_embd);
            launch_pdl(experts_gate_up_kernel<T, T>, grid, 32 * kWarps, smem, p_->compute, t.table,
                       ids, tok_div, (int)t.n_ff, (int)t.n_embd, rb, rb, x, act, smem ? 1 : 0);
        }))
        no_kernel(t.dtype[0]);
    SLUICE_CUDA_LAUNCHED();
}

void Gpu::experts_down_combine(const ExpertTable& t, const int32_t* ids, const float* w, int n,
                               int k, const float* act, float* out) {
    if (n <= 0) return;
    check(k <= kMaxSlots, "CUDA experts: " + std::to_string(k) +
                              " experts per token exceed the kernel's " +
                              std::to_string(kMaxSlots));
    const dim3 grid((unsigned)((t.n_embd + kWarps - 1) / kWarps), (unsigned)n);
    const size_t rb = row_bytes(t.dtype[2], t.n_ff);
    // SLUICE_GPU_PAIRS_DOWN=0: the 32-chunk kernel for Q4_K too, for comparisons. Bounded to
    // 5 blocks per SM instead of 4 (48 registers, 12 bytes spilled) it was 1.8% slower.
    static const bool pairs = env_flag("SLUICE_GPU_PAIRS_DOWN", true);
    const size_t pair_bytes =
        pairs && t.dtype[2] == DType::Q4_K && t.n_ff % 64 == 0
            ? allow_smem<experts_down_combine_q4k_pairs_kernel>(k * pair_stage_bytes((int)t.n_ff))
            : 0;
    if (pair_bytes) {
        launch_pdl(experts_down_combine_q4k_pairs_kernel, grid, 32 * kWarps, pair_bytes,
                   p_->compute, t.table, ids, w, k, (int)t.n_embd, (int)t.n_ff, rb, act, out);
        SLUICE_CUDA_LAUNCHED();
        return;
    }
    if (!dispatch_dtype(t.dtype[2], [&]<DType T>() {
            const size_t smem = stage_smem<experts_down_combine_kernel<T>>(k, (int)t.n_ff);
            launch_pdl(experts_down_combine_kernel<T>, grid, 32 * kWarps, smem, p_->compute,
                       t.table, ids, w, k, (int)t.n_embd, (int)t.n_ff, rb, act, out, smem ? 1 : 0);
        }))
        no_kernel(t.dtype[2]);
    SLUICE_CUDA_LAUNCHED();
}

}  // namespace sluice::cuda
