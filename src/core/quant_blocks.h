#pragma once
// Quantized block layouts, bit-compatible with ggml/GGUF. Each is a POD with a size assert.
#include <cstdint>

#include "core/fp16.h"

namespace sluice {

constexpr int QK4_0 = 32;
constexpr int QK8_0 = 32;
constexpr int QK_K = 256;         // super-block size of the k-quants
constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scales/mins of Q4_K/Q5_K

// x = d * (q - 8), q in [0, 15]
struct block_q4_0 {
    f16_t d;
    uint8_t qs[QK4_0 / 2];  // low nibbles: elems 0..15, high nibbles: 16..31
};
static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2);

// x = d * q, q in [-127, 127]
struct block_q8_0 {
    f16_t d;
    int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 2 + QK8_0);

// Eight Q8_0 blocks regrouped (a device layout, never in files): their scales, then their
// codes. Same bytes per row as Q8_0, but each block's 32 codes lie 16-byte aligned in a row
// that starts so: two 16-byte loads instead of seventeen 2-byte ones on the GPU.
struct block_q8_0_g8 {
    f16_t d[8];
    int8_t qs[8 * QK8_0];
};
static_assert(sizeof(block_q8_0_g8) == 8 * sizeof(block_q8_0));
// src: 8 n_groups Q8_0 blocks; dst: n_groups groups of them (src != dst).
inline void regroup_q8_0_g8(const block_q8_0* src, block_q8_0_g8* dst, int64_t n_groups) {
    for (int64_t g = 0; g < n_groups; ++g, src += 8, ++dst)
        for (int b = 0; b < 8; ++b) {
            dst->d[b] = src[b].d;
            for (int i = 0; i < QK8_0; ++i) dst->qs[b * QK8_0 + i] = src[b].qs[i];
        }
}

// 16 sub-blocks of 16: x = d * (scales[i] & 0xF) * q - dmin * (scales[i] >> 4), q in [0, 3]
struct block_q2_K {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    f16_t d;
    f16_t dmin;
};
static_assert(sizeof(block_q2_K) == 2 * 2 + QK_K / 16 + QK_K / 4);

// 16 sub-blocks of 16 with 6-bit signed scales: x = d * (s - 32) * (q - 4*!hbit), q in [0, 3]
struct block_q3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    f16_t d;
};
static_assert(sizeof(block_q3_K) == 2 + QK_K / 4 + QK_K / 8 + 12);

// 8 sub-blocks of 32 with 6-bit scale and min: x = d * sc * q - dmin * m, q in [0, 15]
struct block_q4_K {
    f16_t d;
    f16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2);

// as Q4_K with a fifth bit per weight in qh, q in [0, 31]
struct block_q5_K {
    f16_t d;
    f16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8);

// 16 sub-blocks of 16 with int8 scales: x = d * scales[i] * (q - 32), q in [0, 63]
struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    f16_t d;
};
static_assert(sizeof(block_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4);

// Activation format for k-quant dot products: x = d * q.
struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8_K) == 4 + QK_K + QK_K / 16 * 2);

}  // namespace sluice
