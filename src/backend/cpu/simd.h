#pragma once
// 512-bit integer/float vectors for the quantized kernels: one zmm with AVX-512BW, two ymm
// with AVX2, so one kernel source serves both ISA translation units. Included only by files
// built with those flags; everything is `static inline` for the same reason as dequant_block.h.
#include <immintrin.h>

#include <cstdint>

namespace sluice::simd {

#if defined(__AVX512BW__)

struct VI {  // 64 x u8/s8, 32 x i16 or 16 x i32
    __m512i v;
};
struct VF {  // 16 x f32
    __m512 v;
};

static inline VI zero() {
    return {_mm512_setzero_si512()};
}
static inline VF zerof() {
    return {_mm512_setzero_ps()};
}
static inline VI load64(const void* p) {
    return {_mm512_loadu_si512(p)};
}
// [p[0..32), p[0..32)]
static inline VI load_dup32(const void* p) {
    return {_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)p))};
}
// [p0[0..32), p1[0..32)]
static inline VI load_2x32(const void* p0, const void* p1) {
    return {_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)p0)),
                               _mm256_loadu_si256((const __m256i*)p1), 1)};
}
static inline VI splat8(int8_t c) {
    return {_mm512_set1_epi8(c)};
}
static inline VI and_(VI a, VI b) {
    return {_mm512_and_si512(a.v, b.v)};
}
static inline VI or_(VI a, VI b) {
    return {_mm512_or_si512(a.v, b.v)};
}
template <int N>
static inline VI srl16(VI a) {
    return {_mm512_srli_epi16(a.v, N)};
}
template <int N>
static inline VI sll16(VI a) {
    return {_mm512_slli_epi16(a.v, N)};
}
// 16-bit lanes of the low 32 bytes shifted right by N0, of the high 32 bytes by N1.
template <int N0, int N1>
static inline VI srl16_halves(VI a) {
    if constexpr (N0 == N1) return srl16<N0>(a);
    return {_mm512_mask_blend_epi64(0xF0, _mm512_srli_epi16(a.v, N0), _mm512_srli_epi16(a.v, N1))};
}
// u8 x s8, adjacent pairs summed -> 32 x i16. |u| <= 64 and |s| <= 127 keep it exact.
static inline VI maddubs(VI u, VI s) {
    return {_mm512_maddubs_epi16(u.v, s.v)};
}
// s8 x s8 -> 32 x i16, as maddubs(|w|, sign(w) * a).
static inline VI mul_s8s8(VI w, VI a) {
    const __mmask64 neg = _mm512_movepi8_mask(w.v);
    return {_mm512_maddubs_epi16(_mm512_abs_epi8(w.v),
                                 _mm512_mask_sub_epi8(a.v, neg, _mm512_setzero_si512(), a.v))};
}
static inline VI madd(VI a, VI b) {
    return {_mm512_madd_epi16(a.v, b.v)};
}
static inline VI add32(VI a, VI b) {
    return {_mm512_add_epi32(a.v, b.v)};
}
// acc + madd(a, b) (i16 pairs -> i32); one instruction with VNNI. Exact either way.
static inline VI madd_acc(VI acc, VI a, VI b) {
#if defined(__AVX512VNNI__)
    return {_mm512_dpwssd_epi32(acc.v, a.v, b.v)};
#else
    return add32(acc, madd(a, b));
#endif
}
// acc + Σ of 4 adjacent s8 x s8 products (-> 16 x i32). |w| <= 127 keeps the non-VNNI i16
// step exact, so both forms agree bit for bit.
static inline VI dot4_s8s8_acc(VI acc, VI w, VI a) {
#if defined(__AVX512VNNI__)
    const __mmask64 neg = _mm512_movepi8_mask(w.v);
    return {_mm512_dpbusd_epi32(acc.v, _mm512_abs_epi8(w.v),
                                _mm512_mask_sub_epi8(a.v, neg, _mm512_setzero_si512(), a.v))};
#else
    return add32(acc, madd(mul_s8s8(w, a), {_mm512_set1_epi16(1)}));
#endif
}
// 16 x i16 scales (one per 16 elements of a 256-element block) -> the i16 multipliers of the
// 64 elements [64 * i, 64 * i + 64): lanes 8j..8j+7 hold s[4i + j].
template <int I>
static inline VI scales_for(__m256i s) {
    const __m512i idx = _mm512_set_epi16(
        4 * I + 3, 4 * I + 3, 4 * I + 3, 4 * I + 3, 4 * I + 3, 4 * I + 3, 4 * I + 3, 4 * I + 3,
        4 * I + 2, 4 * I + 2, 4 * I + 2, 4 * I + 2, 4 * I + 2, 4 * I + 2, 4 * I + 2, 4 * I + 2,
        4 * I + 1, 4 * I + 1, 4 * I + 1, 4 * I + 1, 4 * I + 1, 4 * I + 1, 4 * I + 1, 4 * I + 1,
        4 * I, 4 * I, 4 * I, 4 * I, 4 * I, 4 * I, 4 * I, 4 * I);
    return {_mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(s))};
}
// Bytes u[A] and u[B] of a 16-byte vector u broadcast to all four 128-bit lanes (u4) as u16:
// i16 lanes 0..15 hold u[A], lanes 16..31 hold u[B]. One in-lane byte shuffle.
template <int A, int B>
static inline VI bytes2_as_i16(VI u4) {
    constexpr char a = A, b = B, z = (char)0x80;
    const __m512i idx =
        _mm512_set_epi8(z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z,
                        b, z, b, z, b, z, b, z, a, z, a, z, a, z, a, z, a, z, a, z, a, z, a, z, a,
                        z, a, z, a, z, a, z, a, z, a, z, a, z, a);
    return {_mm512_shuffle_epi8(u4.v, idx)};
}
static inline VI broadcast16(__m128i u) {
    return {_mm512_broadcast_i32x4(u)};
}
// acc + float(i32) * s[0]
static inline VF fmadd_i32_lane0(VI i, __m128 s, VF acc) {
    return {_mm512_fmadd_ps(_mm512_cvtepi32_ps(i.v), _mm512_broadcastss_ps(s), acc.v)};
}
// [f(h0) x8, f(h1) x8] for two f16 values.
static inline VF splat2_f16(uint16_t h0, uint16_t h1) {
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return {_mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f))};
}
static inline VF mulf(VF a, VF b) {
    return {_mm512_mul_ps(a.v, b.v)};
}
// acc + float(i32) * s
static inline VF fmadd_i32v(VI i, VF s, VF acc) {
    return {_mm512_fmadd_ps(_mm512_cvtepi32_ps(i.v), s.v, acc.v)};
}
static inline float hsum(VF a) {
    return _mm512_reduce_add_ps(a.v);
}
// f32 vectors for the plain-float kernels
static inline VF loadf(const float* p) {
    return {_mm512_loadu_ps(p)};
}
static inline VF load_f16(const uint16_t* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p))};
}
static inline VF load_bf16(const uint16_t* p) {
    return {_mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16))};
}
static inline VF fmadd(VF a, VF b, VF c) {
    return {_mm512_fmadd_ps(a.v, b.v, c.v)};
}

#else  // AVX2

struct VI {
    __m256i a, b;
};
struct VF {
    __m256 a, b;
};

static inline VI zero() {
    return {_mm256_setzero_si256(), _mm256_setzero_si256()};
}
static inline VF zerof() {
    return {_mm256_setzero_ps(), _mm256_setzero_ps()};
}
static inline VI load64(const void* p) {
    return {_mm256_loadu_si256((const __m256i*)p), _mm256_loadu_si256((const __m256i*)p + 1)};
}
static inline VI load_dup32(const void* p) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)p);
    return {v, v};
}
static inline VI load_2x32(const void* p0, const void* p1) {
    return {_mm256_loadu_si256((const __m256i*)p0), _mm256_loadu_si256((const __m256i*)p1)};
}
static inline VI splat8(int8_t c) {
    return {_mm256_set1_epi8(c), _mm256_set1_epi8(c)};
}
static inline VI and_(VI x, VI y) {
    return {_mm256_and_si256(x.a, y.a), _mm256_and_si256(x.b, y.b)};
}
static inline VI or_(VI x, VI y) {
    return {_mm256_or_si256(x.a, y.a), _mm256_or_si256(x.b, y.b)};
}
template <int N>
static inline VI srl16(VI x) {
    return {_mm256_srli_epi16(x.a, N), _mm256_srli_epi16(x.b, N)};
}
template <int N>
static inline VI sll16(VI x) {
    return {_mm256_slli_epi16(x.a, N), _mm256_slli_epi16(x.b, N)};
}
template <int N0, int N1>
static inline VI srl16_halves(VI x) {
    return {_mm256_srli_epi16(x.a, N0), _mm256_srli_epi16(x.b, N1)};
}
static inline VI maddubs(VI u, VI s) {
    return {_mm256_maddubs_epi16(u.a, s.a), _mm256_maddubs_epi16(u.b, s.b)};
}
static inline VI mul_s8s8(VI w, VI x) {
    return {_mm256_maddubs_epi16(_mm256_sign_epi8(w.a, w.a), _mm256_sign_epi8(x.a, w.a)),
            _mm256_maddubs_epi16(_mm256_sign_epi8(w.b, w.b), _mm256_sign_epi8(x.b, w.b))};
}
static inline VI madd(VI x, VI y) {
    return {_mm256_madd_epi16(x.a, y.a), _mm256_madd_epi16(x.b, y.b)};
}
static inline VI add32(VI x, VI y) {
    return {_mm256_add_epi32(x.a, y.a), _mm256_add_epi32(x.b, y.b)};
}
static inline VI madd_acc(VI acc, VI x, VI y) {
    return add32(acc, madd(x, y));
}
static inline VI dot4_s8s8_acc(VI acc, VI w, VI x) {
    const __m256i one = _mm256_set1_epi16(1);
    return add32(acc, madd(mul_s8s8(w, x), {one, one}));
}
template <int I>
static inline VI scales_for(__m256i s) {
    // Each ymm covers 32 elements: i16 lanes 0..7 (one 128-bit lane) per 16-element group.
    alignas(32) int16_t v[16];
    _mm256_store_si256((__m256i*)v, s);
    return {_mm256_set_m128i(_mm_set1_epi16(v[4 * I + 1]), _mm_set1_epi16(v[4 * I])),
            _mm256_set_m128i(_mm_set1_epi16(v[4 * I + 3]), _mm_set1_epi16(v[4 * I + 2]))};
}
template <int A, int B>
static inline VI bytes2_as_i16(VI u4) {
    constexpr char a = A, b = B, z = (char)0x80;
    return {
        _mm256_shuffle_epi8(u4.a, _mm256_setr_epi8(a, z, a, z, a, z, a, z, a, z, a, z, a, z, a, z,
                                                   a, z, a, z, a, z, a, z, a, z, a, z, a, z, a, z)),
        _mm256_shuffle_epi8(
            u4.b, _mm256_setr_epi8(b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z, b, z,
                                   b, z, b, z, b, z, b, z, b, z))};
}
static inline VI broadcast16(__m128i u) {
    const __m256i v = _mm256_broadcastsi128_si256(u);
    return {v, v};
}
static inline VF fmadd_i32_lane0(VI i, __m128 s, VF acc) {
    const __m256 sv = _mm256_broadcastss_ps(s);
    return {_mm256_fmadd_ps(_mm256_cvtepi32_ps(i.a), sv, acc.a),
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(i.b), sv, acc.b)};
}
static inline VF splat2_f16(uint16_t h0, uint16_t h1) {
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
    return {_mm256_broadcastss_ps(f), _mm256_broadcastss_ps(_mm_movehdup_ps(f))};
}
static inline VF mulf(VF x, VF y) {
    return {_mm256_mul_ps(x.a, y.a), _mm256_mul_ps(x.b, y.b)};
}
static inline VF fmadd_i32v(VI i, VF s, VF acc) {
    return {_mm256_fmadd_ps(_mm256_cvtepi32_ps(i.a), s.a, acc.a),
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(i.b), s.b, acc.b)};
}
static inline float hsum(VF x) {
    const __m256 v = _mm256_add_ps(x.a, x.b);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline VF loadf(const float* p) {
    return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
}
static inline VF load_f16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)),
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 8)))};
}
static inline __m256 bf16x8(const uint16_t* p) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
static inline VF load_bf16(const uint16_t* p) {
    return {bf16x8(p), bf16x8(p + 8)};
}
static inline VF fmadd(VF x, VF y, VF c) {
    return {_mm256_fmadd_ps(x.a, y.a, c.a), _mm256_fmadd_ps(x.b, y.b, c.b)};
}

#endif

// Σ_k coef[k] * bsums[k] over the 16 i16 pairs, as 8 x i32 (k-quant min / offset terms).
static inline __m256i bias_terms(__m256i coef, const int16_t* bsums) {
    return _mm256_madd_epi16(coef, _mm256_loadu_si256((const __m256i*)bsums));
}
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

}  // namespace sluice::simd
