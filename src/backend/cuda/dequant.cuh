#pragma once
// Device decoders: the 32 weights of chunk c (elements [32c, 32c + 32)) of a row, for every
// dtype the GPU kernels take. Element order and arithmetic follow the GGUF layouts in
// core/quant_blocks.h (the CPU's dequant_block.h is the reference the tests compare with).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/quant_blocks.h"

namespace sluice::cuda {

__device__ __forceinline__ float h2f(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
// 2^23 + byte k of w, exactly: the byte as the low mantissa bits of 0x4b000000 (no
// integer-to-float unit). Callers subtract 2^23 plus any bias of their codes.
__device__ __forceinline__ float byte_plus_2p23(uint32_t w, int k) {
    return __uint_as_float(__byte_perm(w, 0x4b000000u, 0x7640 + k));
}

template <DType T>
struct Chunk;

template <>
struct Chunk<DType::F32> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const float4* p = (const float4*)(row + (size_t)c * 128);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const float4 v = p[i];
            w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
        }
    }
};

// 16-bit floats: 32 values in four 16-byte loads; to_f32 widens one 16-bit value.
template <typename ToF32>
__device__ __forceinline__ void load_half_chunk(const uint8_t* row, int c, float* w, ToF32 to_f32) {
    const uint4* p = (const uint4*)(row + (size_t)c * 64);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint4 v = p[i];
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            w[8 * i + 2 * j] = to_f32((uint16_t)(u[j] & 0xffff));
            w[8 * i + 2 * j + 1] = to_f32((uint16_t)(u[j] >> 16));
        }
    }
}

template <>
struct Chunk<DType::F16> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        load_half_chunk(row, c, w, [](uint16_t h) { return h2f(h); });
    }
};

template <>
struct Chunk<DType::BF16> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        load_half_chunk(row, c, w, [](uint16_t h) { return __uint_as_float((uint32_t)h << 16); });
    }
};

template <>
struct Chunk<DType::Q8_0> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const uint8_t* b = row + (size_t)c * sizeof(block_q8_0);
        const float d = h2f(ld16(b));
        const uint16_t* q = (const uint16_t*)(b + 2);  // blocks are 34 bytes: 2-byte aligned
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const uint16_t v = q[i];
            w[2 * i] = d * (float)(int8_t)(v & 0xff);
            w[2 * i + 1] = d * (float)(int8_t)(v >> 8);
        }
    }
};

// Q8_0_G8 (block_q8_0_g8): chunk c's scale and codes; the codes are two aligned 16-byte
// loads when the row starts 16-byte aligned (rows are whole 272-byte groups).
struct Q8G8Chunk {
    uint4 a, b;
    uint16_t d;

    __device__ __forceinline__ static Q8G8Chunk load(const uint8_t* row, int c) {
        const uint8_t* g = row + (size_t)(c >> 3) * sizeof(block_q8_0_g8);
        const uint4* q = (const uint4*)(g + 16 + 32 * (c & 7));
        return {q[0], q[1], *(const uint16_t*)(g + 2 * (c & 7))};
    }
    // d (q . x); x: 32 floats, 16-byte aligned. Codes become floats through the mantissa
    // (code ^ 0x80 is q + 128, so byte_plus_2p23 gives 2^23 + 128 + q).
    __device__ __forceinline__ float dot(const float* x) const {
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t q = w[k] ^ 0x80808080u;  // q + 128 per byte
            const float4 xv = *(const float4*)(x + 4 * k);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const float f = byte_plus_2p23(q, j) - 8388736.f;  // 2^23 + 128
                s = fmaf(f, j == 0 ? xv.x : j == 1 ? xv.y : j == 2 ? xv.z : xv.w, s);
            }
        }
        return h2f(d) * s;
    }
};

template <>
struct Chunk<DType::Q8_0_G8> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const Q8G8Chunk ch = Q8G8Chunk::load(row, c);
        const float d = h2f(ch.d);
        const uint32_t u[8] = {ch.a.x, ch.a.y, ch.a.z, ch.a.w, ch.b.x, ch.b.y, ch.b.z, ch.b.w};
#pragma unroll
        for (int i = 0; i < 32; ++i) w[i] = d * (float)(int8_t)(u[i >> 2] >> (8 * (i & 3)));
    }
};

template <>
struct Chunk<DType::Q4_0> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const uint8_t* b = row + (size_t)c * sizeof(block_q4_0);
        const float d = h2f(ld16(b));
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const uint8_t v = b[2 + i];
            w[i] = d * (float)((v & 0xf) - 8);
            w[i + 16] = d * (float)((v >> 4) - 8);
        }
    }
};

// 6-bit scale and min j (0..7) of Q4_K/Q5_K.
__device__ __forceinline__ void k4_scale_min(int j, const uint8_t* q, int& sc, int& mn) {
    if (j < 4) {
        sc = q[j] & 63;
        mn = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Multiplier and offset of sub-block j of the Q4_K/Q5_K block at b: x = d * q - m.
__device__ __forceinline__ void k4_dm(const uint8_t* b, int j, float& d, float& m) {
    int sc, mn;
    k4_scale_min(j, b + 4, sc, mn);
    d = h2f(ld16(b)) * (float)sc;
    m = h2f(ld16(b + 2)) * (float)mn;
}

template <>
struct Chunk<DType::Q4_K> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q4_K);
        const int j = c & 7;
        float d, m;
        k4_dm(b, j, d, m);
        const uint4* q = (const uint4*)(b + 16 + 32 * (j >> 1));  // 144-byte blocks: aligned
        const int shift = 4 * (j & 1);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const uint4 v = q[i];
            const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 16; ++k)
                w[16 * i + k] = d * (float)((u[k >> 2] >> (8 * (k & 3) + shift)) & 0xf) - m;
        }
    }
};

// Q4_K as pairs of sub-blocks: pair p of a row is sub-blocks 2 (p % 4) and 2 (p % 4) + 1 of
// block p / 4, whose 32 weights each are the low and high nibbles of the same 32 quant bytes
// (a 32-chunk decoder loads those bytes twice and uses half of each). With the min term
// folded out (sum (d q - m) x = d (q . x) - m sum(x)) and nibbles made floats through the
// mantissa of 2^23 (exact, and no integer-to-float unit), a one-token gate/up launch of the
// Qwen3-30B-A3B shape took 9.8 instead of 11.7 us (bench/gpu_gateup.cu, H100), and the expert
// kernels on pairs raised decode 2.9-3.0% (docs/benchmarks.md, session 19).
struct Q4KPair {
    uint4 h, q0, q1;  // the block's 16-byte header (d, dmin, 12 scale bytes), 32 quant bytes

    __device__ __forceinline__ static Q4KPair load(const uint8_t* row, int p) {
        const uint8_t* b = row + (size_t)(p >> 2) * sizeof(block_q4_K);
        const uint4* q = (const uint4*)(b + 16 + 32 * (p & 3));  // 144-byte blocks: aligned
        return {*(const uint4*)b, q[0], q[1]};
    }
    // d, m of this pair's two sub-blocks (x = d q - m), from the header's words as
    // k4_scale_min reads the scale bytes.
    __device__ __forceinline__ void scales(int p, float* d, float* m) const {
        const float dd = h2f((uint16_t)(h.x & 0xffff)), dm = h2f((uint16_t)(h.x >> 16));
        const int j0 = 2 * (p & 3), i = j0 & 3;  // j0, j0 + 1: both below 4 or both above
#pragma unroll
        for (int t = 0; t < 2; ++t) {  // scale bytes 0-3, 4-7, 8-11 are h.y, h.z, h.w
            const uint32_t a = (h.y >> (8 * (i + t))) & 0xff, b = (h.z >> (8 * (i + t))) & 0xff,
                           c = (h.w >> (8 * (i + t))) & 0xff;
            const uint32_t sc = j0 < 4 ? a & 63 : (c & 0xf) | ((a >> 6) << 4);
            const uint32_t mn = j0 < 4 ? b & 63 : (c >> 4) | ((b >> 6) << 4);
            d[t] = dd * (float)sc, m[t] = dm * (float)mn;
        }
    }
    // This pair's d (q . x) - m sum(x) over both sub-blocks. x: the pair's 64 activations,
    // sub-block 2 (p % 4) first, 16-byte aligned; sx: their two sums.
    __device__ __forceinline__ float dot(int p, const float* x, const float* sx) const {
        auto f = [](uint32_t w, int k) { return byte_plus_2p23(w, k) - 8388608.f; };
        const uint32_t q[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
        float s0 = 0.f, s1 = 0.f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float4 xa = *(const float4*)(x + 4 * k), xb = *(const float4*)(x + 32 + 4 * k);
            const uint32_t lo = q[k] & 0x0f0f0f0fu, hi = (q[k] >> 4) & 0x0f0f0f0fu;
            s0 += f(lo, 0) * xa.x + f(lo, 1) * xa.y + f(lo, 2) * xa.z + f(lo, 3) * xa.w;
            s1 += f(hi, 0) * xb.x + f(hi, 1) * xb.y + f(hi, 2) * xb.z + f(hi, 3) * xb.w;
        }
        float d[2], m[2];
        scales(p, d, m);
        return d[0] * s0 - m[0] * sx[0] + d[1] * s1 - m[1] * sx[1];
    }
};

template <>
struct Chunk<DType::Q5_K> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q5_K);
        const int j = c & 7;
        float d, m;
        k4_dm(b, j, d, m);
        const uint8_t* qh = b + 16;
        const uint8_t* ql = b + 48 + 32 * (j >> 1);
        const int shift = 4 * (j & 1);
        const uint8_t hbit = (uint8_t)(1 << j);
#pragma unroll
        for (int l = 0; l < 32; ++l)
            w[l] = d * (float)(((ql[l] >> shift) & 0xf) + ((qh[l] & hbit) ? 16 : 0)) - m;
    }
};

template <>
struct Chunk<DType::Q6_K> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q6_K);
        const int j = c & 7, h = j >> 2, k = j & 3;
        const uint8_t* ql = b + 64 * h + 32 * (k & 1);
        const uint8_t* qh = b + 128 + 32 * h;
        const int8_t* sc = (const int8_t*)(b + 192 + 8 * h + 2 * k);
        const float d = h2f(ld16(b + 208));
        const float d0 = d * (float)sc[0], d1 = d * (float)sc[1];
        const int lshift = 4 * (k >> 1), hshift = 2 * k;
#pragma unroll
        for (int l = 0; l < 32; ++l) {
            const int q = (((ql[l] >> lshift) & 0xf) | (((qh[l] >> hshift) & 3) << 4)) - 32;
            w[l] = (l < 16 ? d0 : d1) * (float)q;
        }
    }
};

template <>
struct Chunk<DType::Q2_K> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q2_K);
        const int j = c & 7, h = j >> 2, shift = 2 * (j & 3);
        const uint8_t* q = b + 16 + 32 * h;
        const float d = h2f(ld16(b + 80)), dmin = h2f(ld16(b + 82));
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const uint8_t s = b[8 * h + 2 * (j & 3) + half];
            const float dl = d * (float)(s & 0xf), ml = dmin * (float)(s >> 4);
#pragma unroll
            for (int l = 0; l < 16; ++l)
                w[16 * half + l] = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
        }
    }
};

template <>
struct Chunk<DType::Q3_K> {
    __device__ static void load(const uint8_t* row, int c, float* w) {
        const uint8_t* b = row + (size_t)(c >> 3) * sizeof(block_q3_K);
        const int j = c & 7, h = j >> 2, shift = 2 * (j & 3);
        const uint8_t* hmask = b;
        const uint8_t* q = b + 32 + 32 * h;
        const uint8_t* s = b + 96;
        const float d = h2f(ld16(b + 108));
        const uint8_t m = (uint8_t)(1 << (4 * h + (j & 3)));
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int is = 8 * h + 2 * (j & 3) + half;  // 6-bit scale, stored + 32
            const int lo = is < 8 ? (s[is] & 0xf) : (s[is - 8] >> 4);
            const int hi = (s[8 + is % 4] >> (2 * (is / 4))) & 3;
            const float dl = d * (float)((lo | (hi << 4)) - 32);
#pragma unroll
            for (int l = 0; l < 16; ++l) {
                const int k = l + 16 * half;
                w[k] = dl * (float)((int)((q[k] >> shift) & 3) - ((hmask[k] & m) ? 0 : 4));
            }
        }
    }
};

// The dtypes of files with a Chunk decoder: the GPU's row of the dtype table.
template <DType... Ts>
struct DTypeList {};
using GpuTypes = DTypeList<DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0,
                           DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K>;
// What dense-matrix ops (mat-vec, tile dequantization, row lookups) take: the file types and
// the layouts the backend makes on upload. Expert kernels take GpuTypes only.
using DenseTypes = DTypeList<DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q8_0_G8,
                             DType::Q4_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                             DType::Q6_K>;

template <typename F, DType... Ts>
bool dispatch_in(DType t, F& f, DTypeList<Ts...>) {
    return ((t == Ts ? (f.template operator()<Ts>(), true) : false) || ...);
}

template <DType... Ts>
constexpr bool in_list(DType t, DTypeList<Ts...>) {
    return ((t == Ts) || ...);
}
// Whether t is one of List's dtypes.
template <typename List>
constexpr bool in_types(DType t) {
    return in_list(t, List{});
}

// Calls f.template operator()<T>() with the dtype as a template argument; false if List
// lacks it.
template <typename List = GpuTypes, typename F>
bool dispatch_dtype(DType t, F&& f) {
    return dispatch_in(t, f, List{});
}

}  // namespace sluice::cuda
