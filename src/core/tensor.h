#pragma once
// A non-owning view of a weight tensor. Dimensions in GGUF order: ne[0] is the
// contiguous (innermost) one, so a matrix W: [n_out rows, n_in cols] has ne = {n_in, n_out}.
#include <array>
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace sluice {

struct TensorView {
    DType dtype = DType::F32;
    const void* data = nullptr;
    std::array<int64_t, 4> ne{1, 1, 1, 1};
    // F8_E4M3 only: multipliers of 128x128 blocks, [ceil(rows/128) rows, ceil(cols/128)] f32.
    const float* scale = nullptr;
    static constexpr int64_t kScaleBlock = 128;

    int64_t cols() const { return ne[0]; }
    int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
    size_t row_size() const { return row_bytes(dtype, ne[0]); }
    size_t nbytes() const { return row_size() * (size_t)rows(); }
    const uint8_t* row(int64_t i) const { return (const uint8_t*)data + (size_t)i * row_size(); }
    bool empty() const { return data == nullptr; }

    // Matrix i of a stacked 3-D tensor [ne0, ne1, ne2] as a 2-D view.
    TensorView slice2d(int64_t i) const {
        TensorView v = *this;
        v.ne = {ne[0], ne[1], 1, 1};
        v.data = (const uint8_t*)data + (size_t)i * row_size() * (size_t)ne[1];
        return v;
    }
};

}  // namespace sluice
