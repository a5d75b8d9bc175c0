#pragma once
// Scalar reference for every dtype: the oracle that fast kernels are tested against.
#include <cstdint>

#include "core/dtype.h"

namespace sluice {

// y[0..n) = dequantized src; n a multiple of the block size.
void dequantize_row_ref(DType t, const void* src, float* y, int64_t n);
// How k-quant sub-block scales (and mins) are chosen.
enum class QuantFit {
    MinMax,  // from the sub-block's range: fast; tests and synthetic models
    Search,  // least-squares search over candidate scales, as llama.cpp's quantizer without
             // an importance matrix: for model files
};
// Quantizes x[0..n) into dst (row_bytes(t, n) bytes).
void quantize_row(DType t, const float* x, void* dst, int64_t n, QuantFit fit);
void quantize_row_ref(DType t, const float* x, void* dst, int64_t n);  // MinMax
// sum_i dequant(row)[i] * x[i], accumulated in double.
double dot_ref(DType t, const void* row, const float* x, int64_t n);

}  // namespace sluice
