#pragma once
// Scalar half/bfloat16 conversions. Exact (round-to-nearest-even) in both directions.
#include <bit>
#include <cstdint>

namespace sluice {

using f16_t = uint16_t;
using bf16_t = uint16_t;

inline float f16_to_f32(f16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalize
            int e = -1;
            do {
                mant <<= 1;
                ++e;
            } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return std::bit_cast<float>(bits);
}

// OCP FP8 e4m3 ("e4m3fn"): bias 7, no infinities, 0x7f / 0xff are NaN.
inline float f8e4m3_to_f32(uint8_t v) {
    const uint32_t sign = (uint32_t)(v & 0x80) << 24;
    const uint32_t exp = (v >> 3) & 0xf, mant = v & 0x7;
    if (exp == 0xf && mant == 0x7) return std::bit_cast<float>(sign | 0x7fc00000u);
    if (exp == 0) {  // subnormal: mant * 2^-9
        const float m = (float)mant * (1.0f / 512.0f);
        return sign ? -m : m;
    }
    return std::bit_cast<float>(sign | ((exp + 127 - 7) << 23) | (mant << 20));
}

inline f16_t f32_to_f16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) return (f16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (f16_t)(sign | 0x7c00);  // rounds to inf
    if (absx < 0x38800000u) {                                // subnormal or zero in f16
        if (absx < 0x33000000u) return (f16_t)sign;
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e;  // 14..24
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) ++r;
        return (f16_t)(sign | r);
    }
    uint32_t r = ((absx - 0x38000000u) >> 13);
    const uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
    return (f16_t)(sign | r);
}

inline float bf16_to_f32(bf16_t h) {
    return std::bit_cast<float>((uint32_t)h << 16);
}

inline bf16_t f32_to_bf16(float f) {
    uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7fffffff) > 0x7f800000u) return (bf16_t)((x >> 16) | 0x40);  // quiet NaN
    x += 0x7fff + ((x >> 16) & 1);
    return (bf16_t)(x >> 16);
}

}  // namespace sluice
