#pragma once
// The one description of where tensors live, shared by every file format:
// name -> dtype, shape, file, absolute offset, byte size.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "io/mapped_file.h"

namespace sluice {

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> ne;  // GGUF order: ne[0] innermost
    int file = 0;             // index into TensorIndex::files
    uint64_t offset = 0;      // absolute byte offset in that file
    uint64_t nbytes = 0;

    int64_t numel() const;
};

class TensorIndex {
  public:
    std::vector<std::string> files;
    std::vector<TensorInfo> tensors;

    void add(TensorInfo t);  // throws on duplicate names
    const TensorInfo* find(const std::string& name) const;
    const TensorInfo& get(const std::string& name) const;  // throws "missing tensor"
    // Appends all of `other` (files re-numbered).
    void merge(TensorIndex&& other);

  private:
    std::unordered_map<std::string, size_t> by_name_;
};

// Bytes of a tensor with this dtype and shape; throws if ne[0] is not a whole number
// of blocks or the size overflows. `what` names the tensor for the message.
uint64_t tensor_nbytes(DType t, const std::vector<int64_t>& ne, const std::string& what);

// Memory-mapped files of an index, and views into them; mapped for huge pages, since they
// hold weights that stay resident and are read front to back every token.
class TensorFiles {
  public:
    explicit TensorFiles(const TensorIndex& index);
    TensorView view(const TensorInfo& t) const;
    const MappedFile& file(int i) const { return *maps_[(size_t)i]; }

  private:
    std::vector<std::unique_ptr<MappedFile>> maps_;
};

}  // namespace sluice
