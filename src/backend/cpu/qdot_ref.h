#pragma once
// Integer dot products of quantized weight rows with quantized activations (the decode hot
// path), scalar reference. Activations: Q8_K for k-quant weights, Q8_0 for Q8_0 weights.
#include <cstdint>

#include "core/dtype.h"

namespace sluice {

// The activation format a weight dtype pairs with, or nullopt-like F32 if it has none.
inline DType activation_type_for(DType w) {
    switch (w) {
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            return DType::Q8_K;
        case DType::Q8_0:
            return DType::Q8_0;
        default:
            return DType::F32;
    }
}

// Whether CpuKernels::gemm multiplies w directly: integer codes with quantized activations,
// or plain-float weights with f32 activations. Other dtypes are dequantized first.
inline bool has_gemm_path(DType w) {
    return activation_type_for(w) != DType::F32 || w == DType::F32 || w == DType::F16 ||
           w == DType::BF16;
}

// x[0..n) -> blocks of activation_type_for(w).
void quantize_activations(DType act, const float* x, void* dst, int64_t n);
// sum_i w[i] * a[i] of the dequantized weights and activations, accumulated in double: the
// oracle for the integer kernels, which must agree up to float rounding.
float qdot_ref(DType w, const void* wrow, const void* act, int64_t n);

}  // namespace sluice
