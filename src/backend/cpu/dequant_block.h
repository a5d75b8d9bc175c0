#pragma once
// Block dequantizers: y[0 .. block_elems) from one block. `static inline` on purpose: every
// translation unit (scalar reference and each ISA variant) gets its own copy compiled with
// its own flags, so the linker can never hand AVX-512 code to the scalar path.
#include <cstring>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace sluice {

static inline void dq_block(const block_q4_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
        y[j] = ((b.qs[j] & 0x0f) - 8) * d;
        y[j + QK4_0 / 2] = ((b.qs[j] >> 4) - 8) * d;
    }
}

static inline void dq_block(const block_q8_0& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < QK8_0; ++j) y[j] = b.qs[j] * d;
}

static inline void dq_block(const block_q8_0_g8& b, float* y) {
    for (int j = 0; j < 8 * QK8_0; ++j) y[j] = b.qs[j] * f16_to_f32(b.d[j / QK8_0]);
}

static inline void dq_block(const block_q2_K& b, float* y) {
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    const uint8_t* q = b.qs;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
                const uint8_t sc = b.scales[is++];
                const float dl = d * (sc & 0xf), ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

// Unpacks the 16 6-bit signed scales of a Q3_K block (stored +32 in 12 bytes).
static inline void q3k_scales(const uint8_t* s, int8_t* out) {
    for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

static inline void dq_block(const block_q3_K& b, float* y) {
    const float d = f16_to_f32(b.d);
    int8_t sc[16];
    q3k_scales(b.scales, sc);
    const uint8_t* q = b.qs;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
                const float dl = d * sc[is++];
                for (int l = 0; l < 16; ++l) {
                    const int k = l + 16 * half;
                    *y++ = dl * ((int)((q[k] >> shift) & 3) - ((b.hmask[k] & m) ? 0 : 4));
                }
            }
            m <<= 1;
        }
        q += 32;
    }
}

// 6-bit scale and min j (0..7) of Q4_K/Q5_K.
static inline void k4_scale_min(int j, const uint8_t* q, uint8_t& sc, uint8_t& mn) {
    if (j < 4) {
        sc = q[j] & 63;
        mn = q[j + 4] & 63;
    } else {
        sc = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Scales and mins of the sub-block pair (j, j+1) of a Q4_K/Q5_K block.
static inline void k4_pair(const uint8_t* scales, int j, float d, float dmin, float& d1, float& m1,
                           float& d2, float& m2) {
    uint8_t sc, mn;
    k4_scale_min(j, scales, sc, mn);
    d1 = d * sc, m1 = dmin * mn;
    k4_scale_min(j + 1, scales, sc, mn);
    d2 = d * sc, m2 = dmin * mn;
}

static inline void dq_block(const block_q4_K& b, float* y) {
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    const uint8_t* q = b.qs;
    for (int j = 0; j < 8; j += 2) {
        float d1, m1, d2, m2;
        k4_pair(b.scales, j, d, dmin, d1, m1, d2, m2);
        for (int l = 0; l < 32; ++l) y[l] = d1 * (q[l] & 0xf) - m1;
        for (int l = 0; l < 32; ++l) y[l + 32] = d2 * (q[l] >> 4) - m2;
        y += 64;
        q += 32;
    }
}

static inline void dq_block(const block_q5_K& b, float* y) {
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    const uint8_t* ql = b.qs;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 8; j += 2) {
        float d1, m1, d2, m2;
        k4_pair(b.scales, j, d, dmin, d1, m1, d2, m2);
        for (int l = 0; l < 32; ++l) y[l] = d1 * ((ql[l] & 0xf) + ((b.qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l)
            y[l + 32] = d2 * ((ql[l] >> 4) + ((b.qh[l] & u2) ? 16 : 0)) - m2;
        y += 64;
        ql += 32;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

static inline void dq_block(const block_q6_K& b, float* y) {
    const float d = f16_to_f32(b.d);
    const uint8_t* ql = b.ql;
    const uint8_t* qh = b.qh;
    const int8_t* sc = b.scales;
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = (int)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

static inline void dq_block(const block_q8_K& b, float* y) {
    for (int j = 0; j < QK_K; ++j) y[j] = b.d * b.qs[j];
}

template <typename Block, int N>
static inline void dq_row_blocks(const void* src, float* y, int64_t n) {
    const Block* b = (const Block*)src;
    for (int64_t i = 0; i < n / N; ++i) dq_block(b[i], y + i * N);
}

// Dequantizes a row of n elements of any dtype (n a multiple of the block size).
static inline void dequant_row_any(DType t, const void* src, float* y, int64_t n) {
    switch (t) {
        case DType::F32:
            std::memcpy(y, src, (size_t)n * 4);
            break;
        case DType::F16: {
            const f16_t* s = (const f16_t*)src;
            for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(s[i]);
            break;
        }
        case DType::BF16: {
            const bf16_t* s = (const bf16_t*)src;
            for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(s[i]);
            break;
        }
        case DType::F8_E4M3: {  // element values only: the block scales are applied by ops
            const uint8_t* s = (const uint8_t*)src;
            for (int64_t i = 0; i < n; ++i) y[i] = f8e4m3_to_f32(s[i]);
            break;
        }
        case DType::Q4_0:
            dq_row_blocks<block_q4_0, QK4_0>(src, y, n);
            break;
        case DType::Q8_0:
            dq_row_blocks<block_q8_0, QK8_0>(src, y, n);
            break;
        case DType::Q8_0_G8:
            dq_row_blocks<block_q8_0_g8, 8 * QK8_0>(src, y, n);
            break;
        case DType::Q2_K:
            dq_row_blocks<block_q2_K, QK_K>(src, y, n);
            break;
        case DType::Q3_K:
            dq_row_blocks<block_q3_K, QK_K>(src, y, n);
            break;
        case DType::Q4_K:
            dq_row_blocks<block_q4_K, QK_K>(src, y, n);
            break;
        case DType::Q5_K:
            dq_row_blocks<block_q5_K, QK_K>(src, y, n);
            break;
        case DType::Q6_K:
            dq_row_blocks<block_q6_K, QK_K>(src, y, n);
            break;
        case DType::Q8_K:
            dq_row_blocks<block_q8_K, QK_K>(src, y, n);
            break;
        case DType::I32: {
            const int32_t* s = (const int32_t*)src;
            for (int64_t i = 0; i < n; ++i) y[i] = (float)s[i];
            break;
        }
    }
}

}  // namespace sluice
