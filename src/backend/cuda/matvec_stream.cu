// Streaming mat-vec kernels for one token (stream.cuh): dense matrices (q/k/v in one launch,
// the output projections), and a layer's routed experts (gate/up, down + weighted sum).
#include <algorithm>
#include <cstdlib>
#include <string>

#include "backend/cuda/gpu_impl.cuh"
#include "backend/cuda/stage.cuh"
#include "backend/cuda/stream.cuh"

namespace sluice::cuda {
namespace {

constexpr int kSW = 8;  // warps per block, each with its own ring of row slots

__host__ __device__ constexpr int round16(size_t b) {
    return (int)((b + 15) & ~(size_t)15);
}

// Whether ChunkDot<T> reads the chunk sums of x.
template <DType T>
constexpr bool kWantsSums = T == DType::Q4_K;

// Shared memory of a block, in floats from x_stage: staged x ([n_vec][nc] chunks of kPad
// floats), each chunk's float sum (float Q4_K products), its int8 codes (8 words), dx and sx
// (kInt8Dot dtypes; stream.cuh), each array padded to 4 floats; then kSW rings of stages *
// slot_bytes.
struct XLayout {
    size_t n;  // chunks
    __host__ __device__ static size_t pad4(size_t v) { return (v + 3) & ~(size_t)3; }
    __host__ __device__ size_t sums() const { return n * kPad; }
    __host__ __device__ size_t qx() const { return sums() + pad4(n); }
    __host__ __device__ size_t dx() const { return qx() + 8 * n; }
    __host__ __device__ size_t sx() const { return dx() + pad4(n); }
    __host__ __device__ size_t bytes() const { return (sx() + pad4(n)) * sizeof(float); }
};
__host__ __device__ inline size_t x_region_bytes(int n_vec, int nc) {
    return XLayout{(size_t)n_vec * (size_t)nc}.bytes();
}

// The staged activations as the chunk products read them; chunk p of the staged rows.
struct Staged {
    const float *x, *sums;
    const int* qx;
    const float *dx, *sx;
    __device__ explicit Staged(size_t n) {
        const XLayout L{n};
        x = x_stage, sums = x_stage + L.sums(), qx = (const int*)(x_stage + L.qx());
        dx = x_stage + L.dx(), sx = x_stage + L.sx();
    }
    template <DType T>
    __device__ float dot(const uint8_t* row, int c, int p, int i8) const {
        if constexpr (kInt8Dot<T>)
            if (i8) return ChunkDotI8<T>::dot(row, c, qx + 8 * p, dx[p], sx[p]);
        return ChunkDot<T>::dot(row, c, x + kPad * p, kWantsSums<T> ? sums[p] : 0.f);
    }
};

// Stages x (as stage_rows: times w and this thread's sum of squares into ssq when w is set)
// and what the chunk products of T read besides: float chunk sums, or (i8) int8 codes.
// Block-wide.
template <DType T>
__device__ void stage_for(const float* x, int ldx, int n_vec, int len, const float* w, float* ssq,
                          int i8) {
    stage_rows<1>(x, ldx, n_vec, len, x_stage, w, ssq);
    const XLayout L{(size_t)n_vec * (size_t)(len / 32)};
    const int n = (int)L.n;
    if (kInt8Dot<T> && i8) {
        int* qx = (int*)(x_stage + L.qx());
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float4* c = (const float4*)(x_stage + (size_t)i * kPad);
            float amax = 0.f;
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const float4 v = c[k];
                amax = fmaxf(amax,
                             fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
            }
            const float d = amax / 127.f, id = amax > 0.f ? 127.f / amax : 0.f;
            int sum = 0;
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const float4 v = c[k];
                const int q0 = __float2int_rn(v.x * id), q1 = __float2int_rn(v.y * id),
                          q2 = __float2int_rn(v.z * id), q3 = __float2int_rn(v.w * id);
                sum += q0 + q1 + q2 + q3;
                qx[8 * i + k] = (int)((uint32_t)(q0 & 0xff) | ((uint32_t)(q1 & 0xff) << 8) |
                                      ((uint32_t)(q2 & 0xff) << 16) | ((uint32_t)q3 << 24));
            }
            x_stage[L.dx() + i] = d;
            x_stage[L.sx() + i] = d * (float)sum;
        }
        __syncthreads();
    } else if (kWantsSums<T>) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float4* c = (const float4*)(x_stage + (size_t)i * kPad);
            float s = 0.f;
#pragma unroll
            for (int k = 0; k < 8; ++k) s += c[k].x + c[k].y + c[k].z + c[k].w;
            x_stage[L.sums() + i] = s;
        }
        __syncthreads();
    }
}

__device__ uint8_t* warp_ring(int n_vec, int nc, int stages, int slot_bytes) {
    return (uint8_t*)x_stage + x_region_bytes(n_vec, nc) +
           (size_t)(threadIdx.x >> 5) * stages * slot_bytes;
}

__device__ WarpRing make_ring(uint8_t* buf, int stages, int slot_bytes, int items) {
    return WarpRing{buf,
                    slot_bytes,
                    stages,
                    (int)(blockIdx.x * kSW + (threadIdx.x >> 5)),
                    (int)(gridDim.x * kSW),
                    items};
}

struct StreamParts {
    StreamPart p[kStreamMaxParts];
    int first[kStreamMaxParts + 1];  // part p's rows are items [first[p], first[p + 1])
    int n;
};

template <DType T>
__global__ void __launch_bounds__(kSW * 32, 2)
    stream_matvec_kernel(StreamParts P, int cols, const float* x, int accumulate, NormIn norm,
                         int stages, int slot_bytes, int i8) {
    const int lane = threadIdx.x & 31, nc = cols / 32;
    WarpRing ring =
        make_ring(warp_ring(1, nc, stages, slot_bytes), stages, slot_bytes, P.first[P.n]);
    auto part_of = [&](int i) {
        int p = 0;
        while (p + 1 < P.n && i >= P.first[p + 1]) ++p;
        return p;
    };
    auto fetch = [&](int i, uint8_t* slot) {
        const int p = part_of(i);
        warp_copy_async(slot, P.p[p].W + (size_t)(i - P.first[p]) * P.p[p].row_bytes,
                        (int)P.p[p].row_bytes, lane);
    };
    ring.prologue(fetch);  // constant weights: before pdl_wait
    pdl_wait();
    float ssq = 0.f;
    stage_for<T>(x, cols, 1, cols, norm.w, norm.w ? &ssq : nullptr, i8);
    const Staged S((size_t)nc);
    float scale = 1.f;
    if (norm.w) {  // RMSNorm by linearity, as matvec_kernel
        __shared__ float red[kSW];
        ssq = warp_sum(ssq);
        if (lane == 0) red[threadIdx.x >> 5] = ssq;
        __syncthreads();
        float ss = 0.f;
#pragma unroll
        for (int w = 0; w < kSW; ++w) ss += red[w];
        scale = rsqrtf(ss / (float)cols + norm.eps);
        if (blockIdx.x == 0 && norm.h)
            for (int k = threadIdx.x; k < cols; k += blockDim.x)
                norm.h[k] = x[k] * scale * norm.w[k];
    }
    auto use = [&](int i, const uint8_t* row) {
        float acc = 0.f;
        for (int c = lane; c < nc; c += 32) acc += S.dot<T>(row, c, c, i8);
        acc = warp_sum(acc) * scale;
        if (lane == 0) {
            const int p = part_of(i);
            float* o = P.p[p].y + (i - P.first[p]);
            *o = accumulate ? *o + acc : acc;
        }
    };
    ring.run(fetch, use);
}

// Items (slot s, row r) as i = r * n_slots + s; a slot is the gate row, then the up row at
// round16(rb).
template <DType T>
__global__ void __launch_bounds__(kSW * 32, 2)
    stream_gate_up_kernel(const void* const* table, const int32_t* ids, int n_slots, int n_ff,
                          int n_embd, int rb, const float* x, float* act, int stages,
                          int slot_bytes, int i8) {
    __shared__ const uint8_t* gate[kMaxSlots];
    __shared__ const uint8_t* up[kMaxSlots];
    pdl_wait();
    if ((int)threadIdx.x < n_slots) {
        const int e = ids[threadIdx.x];
        gate[threadIdx.x] = (const uint8_t*)table[3 * e];
        up[threadIdx.x] = (const uint8_t*)table[3 * e + 1];
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, nc = n_embd / 32, up_at = round16(rb);
    WarpRing ring =
        make_ring(warp_ring(1, nc, stages, slot_bytes), stages, slot_bytes, n_slots * n_ff);
    auto fetch = [&](int i, uint8_t* slot) {
        const int s = i % n_slots, r = i / n_slots;
        if (!gate[s]) return;  // not resident: computed on the host (cuda.h)
        warp_copy_async(slot, gate[s] + (size_t)r * rb, rb, lane);
        warp_copy_async(slot + up_at, up[s] + (size_t)r * rb, rb, lane);
    };
    ring.prologue(fetch);
    stage_for<T>(x, n_embd, 1, n_embd, nullptr, nullptr, i8);
    const Staged S((size_t)nc);
    auto use = [&](int i, const uint8_t* slot) {
        const int s = i % n_slots, r = i / n_slots;
        float ag = 0.f, au = 0.f;
        if (gate[s])
            for (int c = lane; c < nc; c += 32) {
                ag += S.dot<T>(slot, c, c, i8);
                au += S.dot<T>(slot + up_at, c, c, i8);
            }
        ag = warp_sum(ag);
        au = warp_sum(au);
        if (lane == 0) act[(size_t)s * n_ff + r] = ag / (1.0f + __expf(-ag)) * au;
    };
    ring.run(fetch, use);
}

// Items are output rows r; a slot holds row r of each of the k down projections, at
// multiples of round16(rb). The k act rows are staged.
template <DType T>
__global__ void __launch_bounds__(kSW * 32, 2)
    stream_down_kernel(const void* const* table, const int32_t* ids, const float* wts, int k,
                       int n_embd, int n_ff, int rb, const float* act, float* out, int stages,
                       int slot_bytes, int i8) {
    __shared__ const uint8_t* base[kMaxSlots];
    __shared__ float sw[kMaxSlots];
    pdl_wait();
    if ((int)threadIdx.x < k) {
        base[threadIdx.x] = (const uint8_t*)table[3 * ids[threadIdx.x] + 2];
        sw[threadIdx.x] = wts[threadIdx.x];
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, nc = n_ff / 32, stride = round16(rb);
    WarpRing ring = make_ring(warp_ring(k, nc, stages, slot_bytes), stages, slot_bytes, n_embd);
    auto fetch = [&](int r, uint8_t* slot) {
        for (int j = 0; j < k; ++j)
            if (base[j])
                warp_copy_async(slot + (size_t)j * stride, base[j] + (size_t)r * rb, rb, lane);
    };
    ring.prologue(fetch);
    stage_for<T>(act, n_ff, k, n_ff, nullptr, nullptr, i8);
    const Staged S((size_t)k * nc);
    auto use = [&](int r, const uint8_t* slot) {
        float acc = 0.f;
        for (int p = lane; p < k * nc; p += 32) {
            const int j = p / nc, c = p - j * nc;
            if (!base[j]) continue;  // not resident: computed on the host (cuda.h)
            acc += sw[j] * S.dot<T>(slot + (size_t)j * stride, c, p, i8);
        }
        acc = warp_sum(acc);
        if (lane == 0) out[r] += acc;
    };
    ring.run(fetch, use);
}

bool stream_on() {
    static const bool on = env_flag("SLUICE_GPU_STREAM", true);
    return on;
}

// A whole-number switch for side-by-side runs, clamped to [lo, hi].
int env_int(const char* name, int dflt, int lo, int hi) {
    const char* e = std::getenv(name);
    return std::clamp(e && *e ? std::atoi(e) : dflt, lo, hi);
}

struct Launch {
    int stages = 0, grid = 0;
    size_t smem = 0;
};

// Ring depth, shared memory and grid of Kernel for `items` rows of slot_bytes each, x_bytes
// of staged activations: the deepest ring (2..kStreamMaxStages slots) that leaves room for
// SLUICE_GPU_STREAM_BPS (default 2) blocks per SM, and no more blocks than are resident at
// once (the warps loop over their items). false if two slots per warp do not fit.
template <auto Kernel>
bool plan(size_t x_bytes, int slot_bytes, int items, Launch& L) {
    static const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
    static const size_t per_sm =
        (size_t)device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor);
    static const int bps = env_int("SLUICE_GPU_STREAM_BPS", 2, 1, 8);
    static const int max_stages =
        env_int("SLUICE_GPU_STREAM_STAGES", kStreamMaxStages, 2, kStreamMaxStages);
    const size_t budget = std::min(max_stage(), per_sm / (size_t)bps - 2048);
    if (x_bytes >= budget || items <= 0) return false;
    L.stages = (int)std::min<size_t>((size_t)max_stages,
                                     (budget - x_bytes) / ((size_t)kSW * (size_t)slot_bytes));
    if (L.stages < 2) return false;
    L.smem = x_bytes + (size_t)kSW * (size_t)L.stages * (size_t)slot_bytes;
    static const bool raised = [] {
        SLUICE_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)max_stage()));
        return true;
    }();
    (void)raised;
    int per = 0;
    SLUICE_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, Kernel, kSW * 32, L.smem));
    if (per < 1) return false;
    L.grid = std::min((items + kSW - 1) / kSW, per * sms);
    return true;
}

}  // namespace

bool stream_matvec(cudaStream_t s, DType t, const StreamPart* parts, int n_parts, int cols,
                   const float* x, bool accumulate, const NormIn& norm, bool i8) {
    if (!stream_on() || n_parts < 1 || n_parts > kStreamMaxParts || cols % 32) return false;
    StreamParts P{};
    P.n = n_parts;
    int slot = 0;
    for (int i = 0; i < n_parts; ++i) {
        P.p[i] = parts[i];
        P.first[i + 1] = P.first[i] + parts[i].rows;
        slot = std::max(slot, round16(parts[i].row_bytes));
    }
    bool done = false;
    dispatch_dtype(t, [&]<DType T>() {
        Launch L;
        if (!plan<stream_matvec_kernel<T>>(x_region_bytes(1, cols / 32), slot, P.first[n_parts], L))
            return;
        launch_pdl(stream_matvec_kernel<T>, L.grid, kSW * 32, L.smem, s, P, cols, x,
                   accumulate ? 1 : 0, norm, L.stages, slot, i8 ? 1 : 0);
        SLUICE_CUDA_LAUNCHED();
        done = true;
    });
    return done;
}

bool stream_gate_up(cudaStream_t s, const ExpertTable& t, const int32_t* ids, int n_slots,
                    const float* x, float* act, bool i8) {
    if (!stream_on() || n_slots < 1 || n_slots > kMaxSlots || t.n_embd % 32) return false;
    const size_t rb = row_bytes(t.dtype[0], t.n_embd);
    const int slot = 2 * round16(rb);
    bool done = false;
    dispatch_dtype(t.dtype[0], [&]<DType T>() {
        Launch L;
        if (!plan<stream_gate_up_kernel<T>>(x_region_bytes(1, (int)t.n_embd / 32), slot,
                                            n_slots * (int)t.n_ff, L))
            return;
        launch_pdl(stream_gate_up_kernel<T>, L.grid, kSW * 32, L.smem, s, t.table, ids, n_slots,
                   (int)t.n_ff, (int)t.n_embd, (int)rb, x, act, L.stages, slot, i8 ? 1 : 0);
        SLUICE_CUDA_LAUNCHED();
        done = true;
    });
    return done;
}

bool stream_down(cudaStream_t s, const ExpertTable& t, const int32_t* ids, const float* w, int k,
                 const float* act, float* out, bool i8) {
    if (!stream_on() || k < 1 || k > kMaxSlots || t.n_ff % 32) return false;
    const size_t rb = row_bytes(t.dtype[2], t.n_ff);
    const int slot = k * round16(rb);
    bool done = false;
    dispatch_dtype(t.dtype[2], [&]<DType T>() {
        Launch L;
        if (!plan<stream_down_kernel<T>>(x_region_bytes(k, (int)t.n_ff / 32), slot, (int)t.n_embd,
                                         L))
            return;
        launch_pdl(stream_down_kernel<T>, L.grid, kSW * 32, L.smem, s, t.table, ids, w, k,
                   (int)t.n_embd, (int)t.n_ff, (int)rb, act, out, L.stages, slot, i8 ? 1 : 0);
        SLUICE_CUDA_LAUNCHED();
        done = true;
    });
    return done;
}

}  // namespace sluice::cuda
