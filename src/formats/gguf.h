#pragma once
// GGUF v2/v3 reader: metadata of every value type (nested arrays included), tensor index,
// general.alignment, 64-bit offsets. Every length and offset is checked against the file.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "formats/tensor_index.h"

namespace sluice {

enum class GGUFType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};

struct GGUFValue {
    GGUFType type = GGUFType::U8;
    GGUFType elem_type = GGUFType::U8;  // for arrays
    std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GGUFValue>> v;

    bool is_array() const { return type == GGUFType::ARRAY; }
    const std::vector<GGUFValue>& array() const { return std::get<std::vector<GGUFValue>>(v); }
};

class GGUFFile {
  public:
    uint32_t version = 0;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;
    std::map<std::string, GGUFValue> meta;
    TensorIndex index;

    const GGUFValue* find(const std::string& key) const;
    bool has(const std::string& key) const { return find(key) != nullptr; }
    // Typed getters; throw Error naming the key on a type mismatch. `path` is for messages.
    std::optional<uint64_t> get_uint(const std::string& key) const;
    std::optional<int64_t> get_int(const std::string& key) const;
    std::optional<double> get_float(const std::string& key) const;
    std::optional<bool> get_bool(const std::string& key) const;
    std::optional<std::string> get_string(const std::string& key) const;
    std::vector<std::string> get_string_array(const std::string& key) const;
    std::vector<double> get_float_array(const std::string& key) const;
    std::vector<int64_t> get_int_array(const std::string& key) const;

    std::string path;
};

// Parses header, metadata and tensor infos from the bytes of a whole GGUF file.
// Tensor offsets are made absolute and checked to lie within `size`.
GGUFFile parse_gguf(const uint8_t* data, size_t size, const std::string& path);
GGUFFile read_gguf(const std::string& path);

bool looks_like_gguf(const std::string& path);

}  // namespace sluice
