#include "backend/cpu/quant_ref.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/dequant_block.h"
#include "core/error.h"

namespace sluice {
namespace {

int nearest(float x) {
    return (int)std::lrintf(x);
}

// Sub-block affine fit x ~ scale * q - min with q in [0, qmax], min >= 0.
void fit_affine(const float* x, int n, int qmax, float& scale, float& min) {
    float lo = 0, hi = 0;
    for (int i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
    scale = (hi - lo) / qmax;
    min = -lo;
}

// Symmetric fit x ~ scale * q with q in [-qneg, qneg-1]; sign chosen so the largest
// magnitude maps to -qneg (uses the full negative range like ggml).
float fit_symmetric(const float* x, int n, int qneg) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
    return amax == 0 ? 0.f : vmax / -(float)qneg;
}

// Weighted least-squares affine fit over candidate scales (llama.cpp's make_qkx2_quants):
// x ~ scale * q - min, q in [0, qmax], min >= 0. For each candidate inverse scale around
// qmax / (max - min) the rounding is fixed and scale/min are solved in closed form; the
// candidate with the least weighted error (squared, or absolute with mad) wins.
void fit_affine_search(const float* x, const float* w, int n, int qmax, float rmin, float rdelta,
                       int nstep, bool mad, float& scale, float& min) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
    lo = std::min(lo, 0.f);
    if (hi <= lo) {
        scale = 0;
        min = -lo;
        return;
    }
    auto error = [&](float sc, float mn) {  // x ~ sc * q + mn (mn <= 0)
        float e = 0;
        for (int i = 0; i < n; ++i) {
            const int q = std::clamp(nearest((x[i] - mn) / sc), 0, qmax);
            const float d = sc * q + mn - x[i];
            e += w[i] * (mad ? std::fabs(d) : d * d);
        }
        return e;
    };
    float best_sc = (hi - lo) / qmax, best_mn = lo;
    float best = error(best_sc, best_mn);
    for (int is = 0; is <= nstep; ++is) {
        const float iscale = (rmin + rdelta * is + qmax) / (hi - lo);
        float sw = 0, sl = 0, sl2 = 0, sxl = 0, sx = 0;
        for (int i = 0; i < n; ++i) {
            const float l = (float)std::clamp(nearest(iscale * (x[i] - lo)), 0, qmax);
            sw += w[i], sl += w[i] * l, sl2 += w[i] * l * l, sxl += w[i] * l * x[i],
                sx += w[i] * x[i];
        }
        const float D = sw * sl2 - sl * sl;
        if (D <= 0) continue;
        float sc = (sw * sxl - sx * sl) / D, mn = (sl2 * sx - sl * sxl) / D;
        if (mn > 0) {
            mn = 0;
            sc = sl2 > 0 ? sxl / sl2 : 0;
        }
        if (sc <= 0) continue;
        const float e = error(sc, mn);
        if (e < best) best = e, best_sc = sc, best_mn = mn;
    }
    scale = best_sc;
    min = -best_mn;
}

// Symmetric fit with an x^2-weighted scale search (llama.cpp's make_qx_quants, rmse_type 1):
// x ~ scale * q, q in [-qneg, qneg-1].
float fit_symmetric_search(const float* x, int n, int qneg) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
    if (amax < 1e-30f) return 0.f;
    float best_sc = vmax / -(float)qneg, best = -1;
    for (int is = -9; is <= 9; ++is) {
        const float iscale = -(qneg + 0.1f * is) / vmax;
        float sxl = 0, sl2 = 0;
        for (int i = 0; i < n; ++i) {
            const float l = (float)std::clamp(nearest(iscale * x[i]), -qneg, qneg - 1);
            const float w = x[i] * x[i];
            sxl += w * x[i] * l, sl2 += w * l * l;
        }
        // Least-squares scale sxl / sl2 reduces the weighted error by sxl^2 / sl2.
        if (sl2 > 0 && sxl * sxl > best * sl2) best = sxl * sxl / sl2, best_sc = sxl / sl2;
    }
    return best_sc;
}

// Symmetric fit by coordinate descent on the levels (llama.cpp's make_q3_quants, rmse):
// each level moves to the value that the least-squares scale of the others asks for, while
// that lowers the x^2-weighted error. Q3_K's 8 levels are too few for make_qx's scan.
float fit_symmetric_refine(const float* x, int n, int qneg) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
    if (amax < 1e-30f) return 0.f;
    const float iscale = -qneg / vmax;
    int L[32];
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = std::clamp(nearest(iscale * x[i]), -qneg, qneg - 1);
        const float w = x[i] * x[i];
        sxl += w * x[i] * L[i], sl2 += w * L[i] * L[i];
    }
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sxl - w * x[i] * L[i];
            if (slx <= 0) continue;
            float s2 = sl2 - w * L[i] * L[i];
            const int nl = std::clamp(nearest(x[i] * s2 / slx), -qneg, qneg - 1);
            if (nl == L[i]) continue;
            slx += w * x[i] * nl, s2 += w * nl * nl;
            if (s2 > 0 && slx * slx * sl2 > sxl * sxl * s2) L[i] = nl, sxl = slx, sl2 = s2, ++changed;
        }
        if (!changed) break;
    }
    return sl2 > 0 ? sxl / sl2 : vmax / -(float)qneg;
}

// Per-16 sub-block symmetric scales s[16] (q in [-qneg, qneg-1]) and the super-block scale
// d that maps them to integers in [-smax-1, smax], rounded through f16 as stored.
float symmetric_superblock(const float* x, int qneg, int smax, float* s, QuantFit fit) {
    float amax = 0, vmax = 0;
    for (int j = 0; j < 16; ++j) {
        if (fit == QuantFit::MinMax)
            s[j] = fit_symmetric(x + 16 * j, 16, qneg);
        else if (qneg == 4)  // Q3_K
            s[j] = fit_symmetric_refine(x + 16 * j, 16, qneg);
        else
            s[j] = fit_symmetric_search(x + 16 * j, 16, qneg);
        if (std::fabs(s[j]) > amax) amax = std::fabs(s[j]), vmax = s[j];
    }
    return f16_to_f32(f32_to_f16(amax == 0 ? 0.f : vmax / -(float)(smax + 1)));
}

void quant_q4_0(const float* x, block_q4_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
        const float d = fit_symmetric(x, QK4_0, 8);
        const float id = d ? 1.f / d : 0.f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; ++j) {
            const int a = std::clamp(nearest(x[j] * id) + 8, 0, 15);
            const int b = std::clamp(nearest(x[j + QK4_0 / 2] * id) + 8, 0, 15);
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

void quant_q8_0(const float* x, block_q8_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < QK8_0; ++j)
            y[i].qs[j] = (int8_t)std::clamp(nearest(x[j] * id), -127, 127);
    }
}

// Shared by Q2_K/Q4_K/Q5_K: sub-block affine scales, quantized to `sbits` bits each,
// returns per-element q in [0, qmax] and per-sub-block integer scale/min.
void affine_superblock(const float* x, int sub, int qmax, int smax, float& d, float& dmin,
                       uint8_t* ls, uint8_t* lm, uint8_t* q, QuantFit fit) {
    const int nsub = QK_K / sub;
    float sc[16], mn[16], max_sc = 0, max_mn = 0;
    float w[32];
    for (int s = 0; s < nsub; ++s) {
        const float* xs = x + s * sub;
        if (fit == QuantFit::MinMax) {
            fit_affine(xs, sub, qmax, sc[s], mn[s]);
        } else if (sub == 16) {  // Q2_K: |x| weights, absolute error (as llama.cpp)
            for (int j = 0; j < sub; ++j) w[j] = std::fabs(xs[j]);
            fit_affine_search(xs, w, sub, qmax, -0.5f, 0.1f, 15, true, sc[s], mn[s]);
        } else {  // Q4_K / Q5_K: weights rms(x) + |x|
            float ss = 0;
            for (int j = 0; j < sub; ++j) ss += xs[j] * xs[j];
            const float av = std::sqrt(ss / sub);
            for (int j = 0; j < sub; ++j) w[j] = av + std::fabs(xs[j]);
            fit_affine_search(xs, w, sub, qmax, qmax == 15 ? -1.f : -0.5f, 0.1f,
                              qmax == 15 ? 20 : 15, false, sc[s], mn[s]);
        }
        max_sc = std::max(max_sc, sc[s]);
        max_mn = std::max(max_mn, mn[s]);
    }
    d = max_sc / smax;
    dmin = max_mn / smax;
    // Round d/dmin through f16 first so q is computed against the stored values.
    d = f16_to_f32(f32_to_f16(d));
    dmin = f16_to_f32(f32_to_f16(dmin));
    for (int s = 0; s < nsub; ++s) {
        ls[s] = (uint8_t)(d ? std::clamp(nearest(sc[s] / d), 0, smax) : 0);
        lm[s] = (uint8_t)(dmin ? std::clamp(nearest(mn[s] / dmin), 0, smax) : 0);
        const float ds = d * ls[s], ms = dmin * lm[s];
        for (int j = 0; j < sub; ++j)
            q[s * sub + j] =
                (uint8_t)(ds ? std::clamp(nearest((x[s * sub + j] + ms) / ds), 0, qmax) : 0);
    }
}

void quant_q2_K(const float* x, block_q2_K* y, int64_t nb, QuantFit fit) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float d, dmin;
        uint8_t ls[16], lm[16], q[QK_K];
        affine_superblock(x, 16, 3, 15, d, dmin, ls, lm, q, fit);
        y[i].d = f32_to_f16(d);
        y[i].dmin = f32_to_f16(dmin);
        for (int s = 0; s < 16; ++s) y[i].scales[s] = (uint8_t)(ls[s] | (lm[s] << 4));
        std::memset(y[i].qs, 0, sizeof y[i].qs);
        for (int e = 0; e < QK_K; ++e) {
            const int c = e % 128;
            y[i].qs[(e / 128) * 32 + c % 32] |= (uint8_t)(q[e] << (2 * (c / 32)));
        }
    }
}

void quant_q3_K(const float* x, block_q3_K* y, int64_t nb, QuantFit fit) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float s[16];
        const float d = symmetric_superblock(x, 4, 31, s, fit);
        y[i].d = f32_to_f16(d);
        std::memset(y[i].scales, 0, 12);
        std::memset(y[i].hmask, 0, sizeof y[i].hmask);
        std::memset(y[i].qs, 0, sizeof y[i].qs);
        for (int j = 0; j < 16; ++j) {
            const int l = d ? std::clamp(nearest(s[j] / d), -32, 31) + 32 : 32;
            if (j < 8)
                y[i].scales[j] = (uint8_t)(l & 0xf);
            else
                y[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
            y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            const float ds = d * (l - 32);
            for (int k = 0; k < 16; ++k) {
                const int e = 16 * j + k;
                const int q = (ds ? std::clamp(nearest(x[e] / ds), -4, 3) : 0) + 4;  // 0..7
                const int c = e % 128;
                y[i].qs[(e / 128) * 32 + c % 32] |= (uint8_t)((q & 3) << (2 * (c / 32)));
                if (q & 4) y[i].hmask[c % 32] |= (uint8_t)(1 << ((e / 128) * 4 + c / 32));
            }
        }
    }
}

void pack_k4_scales(const uint8_t* ls, const uint8_t* lm, uint8_t* s) {
    std::memset(s, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0xf) | ((lm[j] & 0xf) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

void quant_q4_K(const float* x, block_q4_K* y, int64_t nb, QuantFit fit) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float d, dmin;
        uint8_t ls[8], lm[8], q[QK_K];
        affine_superblock(x, 32, 15, 63, d, dmin, ls, lm, q, fit);
        y[i].d = f32_to_f16(d);
        y[i].dmin = f32_to_f16(dmin);
        pack_k4_scales(ls, lm, y[i].scales);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                y[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

void quant_q5_K(const float* x, block_q5_K* y, int64_t nb, QuantFit fit) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float d, dmin;
        uint8_t ls[8], lm[8], q[QK_K];
        affine_superblock(x, 32, 31, 63, d, dmin, ls, lm, q, fit);
        y[i].d = f32_to_f16(d);
        y[i].dmin = f32_to_f16(dmin);
        pack_k4_scales(ls, lm, y[i].scales);
        std::memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                const int a = q[64 * c + l], b = q[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((a & 0xf) | ((b & 0xf) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
            }
    }
}

void quant_q6_K(const float* x, block_q6_K* y, int64_t nb, QuantFit fit) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float s[16];
        const float d = symmetric_superblock(x, 32, 127, s, fit);
        y[i].d = f32_to_f16(d);
        uint8_t q[QK_K];
        for (int j = 0; j < 16; ++j) {
            const int sc = d ? std::clamp(nearest(s[j] / d), -128, 127) : 0;
            y[i].scales[j] = (int8_t)sc;
            const float ds = d * sc;
            for (int k = 0; k < 16; ++k)
                q[16 * j + k] =
                    (uint8_t)((ds ? std::clamp(nearest(x[16 * j + k] / ds), -32, 31) : 0) + 32);
        }
        for (int n = 0; n < 2; ++n) {
            const uint8_t* qq = q + 128 * n;
            uint8_t* ql = y[i].ql + 64 * n;
            uint8_t* qh = y[i].qh + 32 * n;
            for (int l = 0; l < 32; ++l) {
                ql[l] = (uint8_t)((qq[l] & 0xf) | ((qq[l + 64] & 0xf) << 4));
                ql[l + 32] = (uint8_t)((qq[l + 32] & 0xf) | ((qq[l + 96] & 0xf) << 4));
                qh[l] = (uint8_t)((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
                                  ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
            }
        }
    }
}

void quant_q8_K(const float* x, block_q8_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float amax = 0;
        for (int j = 0; j < QK_K; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        y[i].d = d;
        for (int j = 0; j < QK_K; ++j)
            y[i].qs[j] = (int8_t)std::clamp(nearest(x[j] * id), -127, 127);
        for (int j = 0; j < QK_K / 16; ++j) {
            int s = 0;
            for (int k = 0; k < 16; ++k) s += y[i].qs[16 * j + k];
            y[i].bsums[j] = (int16_t)s;
        }
    }
}

}  // namespace

void dequantize_row_ref(DType t, const void* src, float* y, int64_t n) {
    dequant_row_any(t, src, y, n);
}

void quantize_row_ref(DType t, const float* x, void* dst, int64_t n) {
    quantize_row(t, x, dst, n, QuantFit::MinMax);
}

void quantize_row(DType t, const float* x, void* dst, int64_t n, QuantFit fit) {
    const int64_t be = dtype_traits(t).block_elems;
    check(n % be == 0, "quantize: row length not a multiple of the block size");
    const int64_t nb = n / be;
    switch (t) {
        case DType::F32:
            std::memcpy(dst, x, (size_t)n * 4);
            break;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) ((f16_t*)dst)[i] = f32_to_f16(x[i]);
            break;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) ((bf16_t*)dst)[i] = f32_to_bf16(x[i]);
            break;
        case DType::Q4_0:
            quant_q4_0(x, (block_q4_0*)dst, nb);
            break;
        case DType::Q8_0:
            quant_q8_0(x, (block_q8_0*)dst, nb);
            break;
        case DType::Q8_0_G8: {
            std::vector<block_q8_0> q((size_t)nb * 8);
            quant_q8_0(x, q.data(), nb * 8);
            regroup_q8_0_g8(q.data(), (block_q8_0_g8*)dst, nb);
            break;
        }
        case DType::Q2_K:
            quant_q2_K(x, (block_q2_K*)dst, nb, fit);
            break;
        case DType::Q3_K:
            quant_q3_K(x, (block_q3_K*)dst, nb, fit);
            break;
        case DType::Q4_K:
            quant_q4_K(x, (block_q4_K*)dst, nb, fit);
            break;
        case DType::Q5_K:
            quant_q5_K(x, (block_q5_K*)dst, nb, fit);
            break;
        case DType::Q6_K:
            quant_q6_K(x, (block_q6_K*)dst, nb, fit);
            break;
        case DType::Q8_K:
            quant_q8_K(x, (block_q8_K*)dst, nb);
            break;
        case DType::I32:
            fail("quantize: I32 is not a weight type");
        case DType::F8_E4M3:
            fail("quantize: F8_E4M3 needs block scales; it is read, not written");
    }
}

double dot_ref(DType t, const void* row, const float* x, int64_t n) {
    std::vector<float> w((size_t)n);
    dequantize_row_ref(t, row, w.data(), n);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += (double)w[(size_t)i] * x[i];
    return s;
}

}  // namespace sluice
