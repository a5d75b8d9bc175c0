#include "backend/cpu/qdot_ref.h"

#include <string>
#include <vector>

#include "backend/cpu/quant_ref.h"
#include "core/error.h"

namespace sluice {

void quantize_activations(DType act, const float* x, void* dst, int64_t n) {
    quantize_row_ref(act, x, dst, n);
}

float qdot_ref(DType w, const void* wrow, const void* act, int64_t n) {
    const DType at = activation_type_for(w);
    if (at == DType::F32)
        fail(std::string("qdot_ref: no integer path for ") + dtype_name(w));
    std::vector<float> a((size_t)n);
    dequantize_row_ref(at, act, a.data(), n);
    return (float)dot_ref(w, wrow, a.data(), n);
}

}  // namespace sluice
