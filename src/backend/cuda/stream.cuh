#pragma once
// Streaming mat-vecs for one token (matvec_stream.cu): each warp copies whole weight rows into
// its own ring of shared-memory slots with asynchronous copies (cp.async, sm_80+), several rows
// ahead, and computes on the rows already landed. A decode mat-vec reads 1-14 MB; the per-row
// kernels (matmul.cu) kept one row's loads in flight per warp and waited a device-memory round
// trip per row, 11-18% of the memory bandwidth (docs/benchmarks.md, sessions 10-17).
#include <cstdint>

#include "backend/cuda/cuda.h"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/vec.cuh"

namespace sluice::cuda {

// ---- device side ----------------------------------------------------------------------------

// The calling warp copies bytes [src, src + n) to dst (16-byte aligned shared memory), lanes
// over 16-byte pieces. Asynchronous (cp.async.cg: through L2, not L1) when src and n are
// multiples of 16; otherwise plain 2-byte copies (every row size is even), done when the call
// returns.
__device__ __forceinline__ void warp_copy_async(uint8_t* dst, const uint8_t* src, int n, int lane) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if ((((uintptr_t)src | (unsigned)n) & 15) == 0) {
        for (int o = 16 * lane; o < n; o += 32 * 16) {
            const unsigned d = (unsigned)__cvta_generic_to_shared(dst + o);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src + o)
                         : "memory");
        }
    } else {
        for (int o = 2 * lane; o < n; o += 32 * 2)
            *(uint16_t*)(dst + o) = *(const uint16_t*)(src + o);
    }
#else
    for (int o = 2 * lane; o < n; o += 32 * 2) *(uint16_t*)(dst + o) = *(const uint16_t*)(src + o);
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
// Waits until at most `pending` (0-3) of this thread's committed groups are in flight.
__device__ __forceinline__ void cp_async_wait(int pending) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    switch (pending) {
        case 0:
            asm volatile("cp.async.wait_group 0;" ::: "memory");
            break;
        case 1:
            asm volatile("cp.async.wait_group 1;" ::: "memory");
            break;
        case 2:
            asm volatile("cp.async.wait_group 2;" ::: "memory");
            break;
        default:
            asm volatile("cp.async.wait_group 3;" ::: "memory");
            break;
    }
#endif
}

// Most ring slots per warp (cp_async_wait takes up to 3 pending groups).
constexpr int kStreamMaxStages = 4;

// A warp's items first, first + step, ... (< end) through a ring of `stages` slots of
// slot_bytes at buf. fetch(i, slot) issues item i's copies (warp_copy_async); use(i, slot)
// reads them. Every lane of the warp calls these, with the same arguments.
struct WarpRing {
    uint8_t* buf;
    int slot_bytes, stages, first, step, end;
    int issued = 0;

    template <class Fetch>
    __device__ void issue(Fetch& fetch) {
        const int i = first + issued * step;
        if (i < end) fetch(i, buf + (size_t)(issued % stages) * slot_bytes);
        cp_async_commit();  // one group per item, empty past the end, so counts stay aligned
        ++issued;
    }
    // The first stages - 1 items. Only constant weights may be read here when the kernel
    // has not yet passed pdl_wait().
    template <class Fetch>
    __device__ void prologue(Fetch& fetch) {
        for (int s = 0; s < stages - 1; ++s) issue(fetch);
    }
    // Item k's group is the k-th committed: after one more issue, at most stages - 1 groups
    // younger than it are pending. The slot refilled in trip k held item k - 1, finished
    // (and synced) in the trip before.
    template <class Fetch, class Use>
    __device__ void run(Fetch& fetch, Use& use) {
        for (int k = 0; first + k * step < end; ++k) {
            issue(fetch);
            cp_async_wait(stages - 1);
            __syncwarp();  // the other lanes' copies are visible
            use(first + k * step, buf + (size_t)(k % stages) * slot_bytes);
            __syncwarp();  // the slot is read before it is refilled
        }
        cp_async_wait(0);
    }
};

// Bytes of v (unsigned) minus `bias` as floats, exactly, by placing each byte in the mantissa
// of 2^23: the integer-to-float unit runs at a quarter of the FMA rate on sm_80/sm_90, and a
// chunk needs 32 conversions.
__device__ __forceinline__ float dot4_bytes(uint32_t v, float4 x, float bias) {
    const float off = 8388608.f + bias;  // exact for |bias| < 2^23
    auto f = [&](unsigned k) {
        return __uint_as_float(__byte_perm(v, 0x4B00u, 0x5440u | k)) - off;
    };
    return f(0) * x.x + f(1) * x.y + f(2) * x.z + f(3) * x.w;
}

// Chunk c of a row . x[0..32) (x 16-byte aligned shared memory; xsum = the sum of those 32
// values). The generic form decodes the chunk (dequant.cuh); specialisations fold the
// dtype's offset into xsum and convert the quants by their bits.
template <DType T>
struct ChunkDot {
    __device__ static float dot(const uint8_t* row, int c, const float* x, float) {
        float w[32];
        Chunk<T>::load(row, c, w);
        return dot32(w, x);
    }
};

// d * q - m per element: d . sum(q x) - m . sum(x).
template <>
struct ChunkDot<DType::Q4_K> {
    __device__ static float dot(const uint8_t* row, int c, const float* x, float xsum) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q4_K);
        const int j = c & 7, shift = 4 * (j & 1);
        float d, m;
        k4_dm(b, j, d, m);
        const uint4* q = (const uint4*)(b + 16 + 32 * (j >> 1));
        const float4* xv = (const float4*)x;
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const uint4 v = q[i];
            const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 4; ++k)
                s += dot4_bytes((u[k] >> shift) & 0x0F0F0F0Fu, xv[4 * i + k], 0.f);
        }
        return d * s - m * xsum;
    }
};

// Signed bytes as unsigned + 128 (xor of the sign bits).
template <>
struct ChunkDot<DType::Q8_0> {
    __device__ static float dot(const uint8_t* row, int c, const float* x, float) {
        const uint8_t* b = row + (size_t)c * sizeof(block_q8_0);
        const float d = h2f(ld16(b));
        const uint16_t* q = (const uint16_t*)(b + 2);  // 34-byte blocks: 2-byte aligned
        const float4* xv = (const float4*)x;
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t v = ((uint32_t)q[2 * i] | ((uint32_t)q[2 * i + 1] << 16)) ^ 0x80808080u;
            s += dot4_bytes(v, xv[i], 128.f);
        }
        return d * s;
    }
};

// (low 4 bits | high 2 bits << 4) - 32, two 16-element scales.
template <>
struct ChunkDot<DType::Q6_K> {
    __device__ static float dot(const uint8_t* row, int c, const float* x, float) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q6_K);
        const int j = c & 7, h = j >> 2, k = j & 3;
        // 210-byte blocks: 2-byte aligned, so words are read as halves
        const uint16_t* ql = (const uint16_t*)(b + 64 * h + 32 * (k & 1));
        const uint16_t* qh = (const uint16_t*)(b + 128 + 32 * h);
        const int8_t* sc = (const int8_t*)(b + 192 + 8 * h + 2 * k);
        const float d = h2f(ld16(b + 208));
        const int lshift = 4 * (k >> 1), hshift = 2 * k;
        const float4* xv = (const float4*)x;
        float s[2] = {0.f, 0.f};
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t l = (uint32_t)ql[2 * i] | ((uint32_t)ql[2 * i + 1] << 16);
            const uint32_t hb = (uint32_t)qh[2 * i] | ((uint32_t)qh[2 * i + 1] << 16);
            const uint32_t v =
                ((l >> lshift) & 0x0F0F0F0Fu) | (((hb >> hshift) & 0x03030303u) << 4);
            s[i >> 2] += dot4_bytes(v, xv[i], 32.f);
        }
        return d * ((float)sc[0] * s[0] + (float)sc[1] * s[1]);
    }
};

// ---- int8 dot products (dp4a) --------------------------------------------------------------
// For Q4_K, Q6_K and Q8_0 the staged activations are also quantized per 32-chunk: qx = 8
// words of int8 codes, round(x * 127 / max|x|), dx = max|x| / 127 and sx = dx * sum(codes).
// A chunk's product is then one integer dot product of codes: 8 dp4a instead of 32
// conversions and FMAs (the float chunk products kept these kernels issue-bound: ncu on the
// H100, 0.49 instructions per cycle per scheduler at 17 us for 14 MB of gate/up rows). The
// result is the dequantized row . the dequantized codes, as the CPU's quantized activations.
template <DType T>
constexpr bool kInt8Dot = T == DType::Q4_K || T == DType::Q6_K || T == DType::Q8_0;

template <DType T>
struct ChunkDotI8;

// d * q - m per element: d dx . sum(q qx) - m . sx.
template <>
struct ChunkDotI8<DType::Q4_K> {
    __device__ static float dot(const uint8_t* row, int c, const int* qx, float dx, float sx) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q4_K);
        const int j = c & 7, shift = 4 * (j & 1);
        float d, m;
        k4_dm(b, j, d, m);
        const uint4* q = (const uint4*)(b + 16 + 32 * (j >> 1));
        const int4* xv = (const int4*)qx;
        int acc = 0;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const uint4 v = q[i];
            const int4 a = xv[i];
            acc = __dp4a((int)((v.x >> shift) & 0x0F0F0F0Fu), a.x, acc);
            acc = __dp4a((int)((v.y >> shift) & 0x0F0F0F0Fu), a.y, acc);
            acc = __dp4a((int)((v.z >> shift) & 0x0F0F0F0Fu), a.z, acc);
            acc = __dp4a((int)((v.w >> shift) & 0x0F0F0F0Fu), a.w, acc);
        }
        return d * dx * (float)acc - m * sx;
    }
};

template <>
struct ChunkDotI8<DType::Q8_0> {
    __device__ static float dot(const uint8_t* row, int c, const int* qx, float dx, float) {
        const uint8_t* b = row + (size_t)c * sizeof(block_q8_0);
        const float d = h2f(ld16(b));
        const uint16_t* q = (const uint16_t*)(b + 2);  // 34-byte blocks: 2-byte aligned
        const int4* xv = (const int4*)qx;
        int acc = 0;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int4 a = xv[i];
            const int w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int e = 4 * i + k;
                acc = __dp4a((int)((uint32_t)q[2 * e] | ((uint32_t)q[2 * e + 1] << 16)), w[k], acc);
            }
        }
        return d * dx * (float)acc;
    }
};

// (low 4 bits | high 2 bits << 4) - 32 as signed bytes, two 16-element scales.
template <>
struct ChunkDotI8<DType::Q6_K> {
    __device__ static float dot(const uint8_t* row, int c, const int* qx, float dx, float) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q6_K);
        const int j = c & 7, h = j >> 2, k = j & 3;
        const uint16_t* ql = (const uint16_t*)(b + 64 * h + 32 * (k & 1));  // 2-byte aligned
        const uint16_t* qh = (const uint16_t*)(b + 128 + 32 * h);
        const int8_t* sc = (const int8_t*)(b + 192 + 8 * h + 2 * k);
        const float d = h2f(ld16(b + 208));
        const int lshift = 4 * (k >> 1), hshift = 2 * k;
        const int4* xv = (const int4*)qx;
        int acc[2] = {0, 0};
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int4 a = xv[i];
            const int w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                const int e = 4 * i + kk;
                const uint32_t l = (uint32_t)ql[2 * e] | ((uint32_t)ql[2 * e + 1] << 16);
                const uint32_t hb = (uint32_t)qh[2 * e] | ((uint32_t)qh[2 * e + 1] << 16);
                const uint32_t v =
                    ((l >> lshift) & 0x0F0F0F0Fu) | (((hb >> hshift) & 0x03030303u) << 4);
                acc[i] = __dp4a((int)__vsub4(v, 0x20202020u), w[kk], acc[i]);
            }
        }
        return d * dx * ((float)sc[0] * (float)acc[0] + (float)sc[1] * (float)acc[1]);
    }
};

// ---- host side: launches (matvec_stream.cu) -------------------------------------------------
// Each returns false, launching nothing, where the streaming kernels do not apply (switched
// off by SLUICE_GPU_STREAM=0, rows too long for two slots per warp, more parts or slots than
// they take); the caller then launches the per-row kernels. i8: int8 chunk products for the
// kInt8Dot dtypes (Gpu::Impl::stream_i8), else float products.

// Most routed slots per token the expert kernels take (both kinds).
constexpr int kMaxSlots = 32;

// One matrix of a streaming mat-vec: y[r] (+)= W[r] . x for r < rows.
struct StreamPart {
    const uint8_t* W;
    size_t row_bytes;
    int rows;
    float* y;
};
constexpr int kStreamMaxParts = 3;

// One token, up to kStreamMaxParts matrices of dtype t and `cols` columns over x: [cols],
// normalised first when norm.w is set (NormIn).
bool stream_matvec(cudaStream_t s, DType t, const StreamPart* parts, int n_parts, int cols,
                   const float* x, bool accumulate, const NormIn& norm, bool i8);
// One token's routed experts: act: [n_slots, n_ff] = silu(gate x) * (up x), 0 for slots
// without a table entry.
bool stream_gate_up(cudaStream_t s, const ExpertTable& t, const int32_t* ids, int n_slots,
                    const float* x, float* act, bool i8);
// One token: out[r] += sum_j w[j] * (down_e[r] . act[j]) over slots with a table entry.
bool stream_down(cudaStream_t s, const ExpertTable& t, const int32_t* ids, const float* w, int k,
                 const float* act, float* out, bool i8);

}  // namespace sluice::cuda
