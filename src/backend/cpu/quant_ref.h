#pragma once
// Scalar reference for every dtype: the oracle that fast kernels are tested against.
#include <cstdint>

#include "core/dtype.h"

namespace sluice {

// y[0..n) = dequantized src; n a multiple of the block size.
void dequantize_row_ref(DType t, const void* src, float* y, int64_t n);
// Quantizes x[0..n) into dst (row_bytes(t, n) bytes). Plain min/max scale search: good
// enough for tests and synthetic models; a quality quantizer is its own job.
void quantize_row_ref(DType t, const float* x, void* dst, int64_t n);
// sum_i dequant(row)[i] * x[i], accumulated in double.
double dot_ref(DType t, const void* row, const float* x, int64_t n);

}  // namespace sluice
