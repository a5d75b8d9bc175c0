#include "core/dtype.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "core/error.h"
#include "core/quant_blocks.h"

namespace sluice {
namespace {

// One row per type; block sizes come from the POD structs so they cannot drift.
constexpr DTypeTraits kTraits[] = {
    {DType::F32, "F32", 1, 4, false},
    {DType::F16, "F16", 1, 2, false},
    {DType::BF16, "BF16", 1, 2, false},
    {DType::I32, "I32", 1, 4, false},
    {DType::F8_E4M3, "F8_E4M3", 1, 1, false},
    {DType::Q4_0, "Q4_0", QK4_0, sizeof(block_q4_0), true},
    {DType::Q8_0, "Q8_0", QK8_0, sizeof(block_q8_0), true},
    {DType::Q8_0_G8, "Q8_0_G8", 8 * QK8_0, sizeof(block_q8_0_g8), true},
    {DType::Q2_K, "Q2_K", QK_K, sizeof(block_q2_K), true},
    {DType::Q3_K, "Q3_K", QK_K, sizeof(block_q3_K), true},
    {DType::Q4_K, "Q4_K", QK_K, sizeof(block_q4_K), true},
    {DType::Q5_K, "Q5_K", QK_K, sizeof(block_q5_K), true},
    {DType::Q6_K, "Q6_K", QK_K, sizeof(block_q6_K), true},
    {DType::Q8_K, "Q8_K", QK_K, sizeof(block_q8_K), true},
};

}  // namespace

const DTypeTraits* dtype_traits_or_null(uint32_t id) {
    for (const auto& t : kTraits)
        if ((uint32_t)t.type == id) return &t;
    return nullptr;
}

bool gguf_tensor_type(uint32_t id) {
    return dtype_traits_or_null(id) && id != (uint32_t)DType::Q8_K && id < kFirstNonGgufType;
}

const DTypeTraits& dtype_traits(DType t) {
    const DTypeTraits* tr = dtype_traits_or_null((uint32_t)t);
    check(tr != nullptr, "internal: no traits for dtype " + std::to_string((uint32_t)t));
    return *tr;
}

std::optional<DType> dtype_from_name(std::string_view name) {
    std::string up(name);
    std::transform(up.begin(), up.end(), up.begin(),
                   [](unsigned char c) { return std::toupper(c); });
    for (const auto& t : kTraits)
        if (up == t.name) return t.type;
    return std::nullopt;
}

}  // namespace sluice
