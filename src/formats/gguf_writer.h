#pragma once
// GGUF v3 writer. Tensor data is produced by a callback at write time, so multi-GB
// synthetic models stream to disk without being held in memory.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "formats/gguf.h"

namespace sluice {

class GGUFWriter {
  public:
    using Fill = std::function<void(uint8_t* dst, size_t nbytes)>;

    explicit GGUFWriter(uint64_t alignment = 32) : alignment_(alignment) {}

    void set(const std::string& key, GGUFValue v);
    void set_u32(const std::string& key, uint32_t v);
    void set_i32(const std::string& key, int32_t v);
    void set_f32(const std::string& key, float v);
    void set_bool(const std::string& key, bool v);
    void set_str(const std::string& key, const std::string& v);
    void set_str_array(const std::string& key, const std::vector<std::string>& v);
    void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
    void set_f32_array(const std::string& key, const std::vector<float>& v);
    // Copies every metadata key of g (e.g. a tokenizer from a real GGUF).
    void copy_meta(const GGUFFile& g, const std::string& prefix = "");

    // ne in GGUF order (ne[0] innermost).
    void add_tensor(const std::string& name, DType t, std::vector<int64_t> ne, Fill fill);
    void add_tensor(const std::string& name, DType t, std::vector<int64_t> ne, const void* data);

    // Writes the whole file; throws Error naming the path on I/O failure.
    void write(const std::string& path) const;
    uint64_t total_tensor_bytes() const;

  private:
    struct Tensor {
        std::string name;
        DType type;
        std::vector<int64_t> ne;
        uint64_t nbytes;
        Fill fill;
    };
    uint64_t alignment_;
    std::vector<std::pair<std::string, GGUFValue>> meta_;
    std::vector<Tensor> tensors_;
};

}  // namespace sluice
