#include "backend/cpu/qdot_ref.h"

#include "backend/cpu/dequant_block.h"
#include "backend/cpu/quant_ref.h"
#include "core/error.h"

namespace sluice {

void quantize_activations(DType act, const float* x, void* dst, int64_t n) {
    quantize_row_ref(act, x, dst, n);
}

float qdot_ref(DType w, const void* wrow, const void* act, int64_t n) {
    switch (w) {
        case DType::Q8_0: {
            const block_q8_0* x = (const block_q8_0*)wrow;
            const block_q8_0* y = (const block_q8_0*)act;
            float s = 0;
            for (int64_t b = 0; b < n / QK8_0; ++b) {
                int32_t si = 0;
                for (int i = 0; i < QK8_0; ++i) si += x[b].qs[i] * y[b].qs[i];
                s += f16_to_f32(x[b].d) * f16_to_f32(y[b].d) * (float)si;
            }
            return s;
        }
        case DType::Q4_K: {
            const block_q4_K* x = (const block_q4_K*)wrow;
            const block_q8_K* y = (const block_q8_K*)act;
            float s = 0;
            for (int64_t b = 0; b < n / QK_K; ++b) {
                int32_t sumi = 0, summ = 0;
                for (int j = 0; j < 8; ++j) {
                    uint8_t sc, mn;
                    k4_scale_min(j, x[b].scales, sc, mn);
                    const uint8_t* q = x[b].qs + 32 * (j / 2);
                    const int8_t* a = y[b].qs + 32 * j;
                    int32_t si = 0;
                    for (int i = 0; i < 32; ++i)
                        si += ((j & 1) ? (q[i] >> 4) : (q[i] & 0xf)) * a[i];
                    sumi += sc * si;
                    summ += mn * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
                }
                s += y[b].d *
                     (f16_to_f32(x[b].d) * (float)sumi - f16_to_f32(x[b].dmin) * (float)summ);
            }
            return s;
        }
        case DType::Q6_K: {
            const block_q6_K* x = (const block_q6_K*)wrow;
            const block_q8_K* y = (const block_q8_K*)act;
            float s = 0;
            for (int64_t b = 0; b < n / QK_K; ++b) {
                int8_t q[QK_K];
                for (int h = 0; h < 2; ++h) {
                    const uint8_t* ql = x[b].ql + 64 * h;
                    const uint8_t* qh = x[b].qh + 32 * h;
                    for (int l = 0; l < 32; ++l) {
                        q[128 * h + l] = (int8_t)((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4));
                        q[128 * h + l + 32] =
                            (int8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4));
                        q[128 * h + l + 64] = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                        q[128 * h + l + 96] =
                            (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                    }
                }
                int32_t sumi = 0;
                for (int j = 0; j < 16; ++j) {
                    int32_t si = 0;
                    for (int i = 0; i < 16; ++i) si += (q[16 * j + i] - 32) * y[b].qs[16 * j + i];
                    sumi += x[b].scales[j] * si;
                }
                s += y[b].d * f16_to_f32(x[b].d) * (float)sumi;
            }
            return s;
        }
        default:
            fail(std::string("qdot_ref: no integer path for ") + dtype_name(w));
    }
}

}  // namespace sluice
