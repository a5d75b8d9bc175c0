#include "formats/tensor_index.h"

#include "core/error.h"

namespace sluice {

int64_t TensorInfo::numel() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
}

uint64_t tensor_nbytes(DType t, const std::vector<int64_t>& ne, const std::string& what) {
    const DTypeTraits& tr = dtype_traits(t);
    check(!ne.empty() && ne.size() <= 4, what + ": tensor must have 1..4 dimensions");
    unsigned __int128 n = 1;
    for (int64_t d : ne) {
        check(d > 0, what + ": dimension " + std::to_string(d) + " is not positive");
        n *= (unsigned __int128)d;
        check(n < ((unsigned __int128)1 << 62), what + ": tensor too large");
    }
    check(ne[0] % tr.block_elems == 0, what + ": row length " + std::to_string(ne[0]) +
                                           " is not a multiple of the " + tr.name + " block size " +
                                           std::to_string(tr.block_elems));
    return (uint64_t)(n / (unsigned)tr.block_elems * (unsigned)tr.block_bytes);
}

void TensorIndex::add(TensorInfo t) {
    check(by_name_.emplace(t.name, tensors.size()).second,
          "duplicate tensor name '" + t.name + "'");
    tensors.push_back(std::move(t));
}

const TensorInfo* TensorIndex::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors[it->second];
}

const TensorInfo& TensorIndex::get(const std::string& name) const {
    const TensorInfo* t = find(name);
    if (!t) fail("missing tensor '" + name + "'" + (files.empty() ? "" : " in " + files[0]));
    return *t;
}

void TensorIndex::merge(TensorIndex&& other) {
    const int base = (int)files.size();
    for (auto& f : other.files) files.push_back(std::move(f));
    for (auto& t : other.tensors) {
        t.file += base;
        add(std::move(t));
    }
}

TensorFiles::TensorFiles(const TensorIndex& index) {
    for (const auto& f : index.files) maps_.push_back(std::make_unique<MappedFile>(f, MappedFile::Paging::Huge));
}

TensorView TensorFiles::view(const TensorInfo& t) const {
    const MappedFile& f = *maps_.at((size_t)t.file);
    check(t.offset + t.nbytes <= f.size(),
          f.path() + ": tensor '" + t.name + "' lies beyond the end of the file");
    TensorView v;
    v.dtype = t.dtype;
    v.data = f.data() + t.offset;
    for (size_t i = 0; i < t.ne.size() && i < 4; ++i) v.ne[i] = t.ne[i];
    return v;
}

}  // namespace sluice
