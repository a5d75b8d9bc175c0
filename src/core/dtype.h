#pragma once
// Element types. Numeric values are ggml's, so GGUF type ids map 1:1.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    I32 = 26,
    BF16 = 30,
    // Not a GGUF type (ids from here on are sluice's own): DeepSeek's FP8 checkpoints, e4m3
    // elements whose real values need the tensor's 128x128 block scales (TensorView::scale).
    F8_E4M3 = 1000,
    // Not in files either: Q8_0 regrouped by the CUDA backend on upload (block_q8_0_g8).
    Q8_0_G8 = 1001,
};
constexpr uint32_t kFirstNonGgufType = 1000;

struct DTypeTraits {
    DType type;
    const char* name;
    int block_elems;  // elements per block (1 for plain types)
    int block_bytes;  // bytes per block
    bool quantized;
};

// nullptr if the id is not a type sluice knows.
const DTypeTraits* dtype_traits_or_null(uint32_t id);
// Whether GGUF files may hold tensors of type id: a type sluice knows, other than the
// activation-only Q8_K and sluice's own ids (from kFirstNonGgufType on).
bool gguf_tensor_type(uint32_t id);
// A weight type that GGUF files may hold (so not I32 either): what convert and synth write.
inline bool gguf_weight_type(DType t) {
    return gguf_tensor_type((uint32_t)t) && t != DType::I32;
}
const DTypeTraits& dtype_traits(DType t);
std::optional<DType> dtype_from_name(
    std::string_view name);  // "Q4_K", "bf16", ... (case-insensitive)

inline const char* dtype_name(DType t) {
    return dtype_traits(t).name;
}

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers).
inline size_t row_bytes(DType t, int64_t n) {
    const DTypeTraits& tr = dtype_traits(t);
    return (size_t)(n / tr.block_elems) * (size_t)tr.block_bytes;
}

}  // namespace sluice
