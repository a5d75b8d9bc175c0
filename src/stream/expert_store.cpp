#include "stream/expert_store.h"

#include <sys/mman.h>

#include <algorithm>

#include "core/error.h"
#include "io/file.h"
#include "io/mapped_file.h"

namespace sluice {

uint64_t ExpertLayerLayout::expert_bytes() const {
    return experts.empty() ? 0 : experts[0][0].nbytes + experts[0][1].nbytes + experts[0][2].nbytes;
}

uint64_t ExpertLayout::total_bytes() const {
    uint64_t s = 0;
    for (const auto& l : layers) s += l.expert_bytes() * l.experts.size();
    return s;
}

uint64_t ExpertLayout::max_expert_bytes() const {
    uint64_t m = 0;
    for (const auto& l : layers) m = std::max(m, l.expert_bytes());
    return m;
}

const char* io_mode_name(IoMode m) {
    switch (m) {
        case IoMode::PageCache:
            return "page-cache";
        case IoMode::Direct:
            return "direct";
        case IoMode::Mmap:
            return "mmap";
    }
    return "?";
}

IoMode parse_io_mode(const std::string& s) {
    if (s == "page-cache") return IoMode::PageCache;
    if (s == "direct") return IoMode::Direct;
    if (s == "mmap") return IoMode::Mmap;
    fail("--io '" + s + "' is not one of page-cache, direct, mmap");
}

TensorView expert_view(const ExpertProj& p, const uint8_t* data) {
    TensorView v;
    v.dtype = p.dtype;
    v.data = data;
    v.ne = {p.cols, p.rows, 1, 1};
    return v;
}

void check_expert(const ExpertLayout& L, int layer, int expert) {
    if (!(layer >= 0 && layer < (int)L.layers.size() && expert >= 0 &&
          expert < (int)L.layers[(size_t)layer].experts.size()))
        fail("expert store: (layer " + std::to_string(layer) + ", expert " +
             std::to_string(expert) + ") out of range");
}

namespace {

class MappedStore final : public ExpertStore {
  public:
    MappedStore(const ExpertLayout& layout, bool advise) : L_(layout), advise_(advise) {
        for (const auto& f : layout.files) maps_.push_back(std::make_unique<MappedFile>(f));
    }
    bool reads_ahead() const override { return advise_; }
    void prefetch(int layer, const int* experts, int n, int) override {
        if (!advise_) return;
        for (int i = 0; i < n; ++i)
            for (const ExpertSlice& s : L_.layers[(size_t)layer].experts[(size_t)experts[i]]) {
                const uint8_t* base = maps_[(size_t)s.file]->data();
                const uintptr_t b = (uintptr_t)(base + s.offset) & ~(uintptr_t)4095;
                const uintptr_t e = (uintptr_t)(base + s.offset + s.nbytes);
                madvise((void*)b, e - b, MADV_WILLNEED);
            }
    }
    // The page cache has no slots to bound a deep read-ahead: advise the next layer only, as
    // the router-predicted path did.
    void prefetch_layers(int layer, int n_layers) override {
        if (!advise_ || n_layers < 1 || layer < 0 || layer >= (int)L_.layers.size()) return;
        std::vector<int> all(L_.layers[(size_t)layer].experts.size());
        for (size_t e = 0; e < all.size(); ++e) all[e] = (int)e;
        prefetch(layer, all.data(), (int)all.size(), 1);
    }
    ExpertWeights acquire(int layer, int expert) override {
        check_expert(L_, layer, expert);
        const ExpertLayerLayout& l = L_.layers[(size_t)layer];
        const auto& sl = l.experts[(size_t)expert];
        ++stats_.acquires;
        ++stats_.hits;  // from sluice's point of view; the OS may still fault pages in
        stats_.bytes_served += l.expert_bytes();
        TensorView v[3];
        for (int k = 0; k < 3; ++k) {
            const MappedFile& f = *maps_[(size_t)sl[(size_t)k].file];
            if (sl[(size_t)k].offset + sl[(size_t)k].nbytes > f.size())
                fail(f.path() + ": expert data beyond end of file");
            v[k] = expert_view(l.proj[(size_t)k], f.data() + sl[(size_t)k].offset);
        }
        return {v[0], v[1], v[2]};
    }
    const StreamStats& stats() const override { return stats_; }
    const char* mode() const override { return "mmap"; }

  private:
    const ExpertLayout& L_;
    bool advise_;
    std::vector<std::unique_ptr<MappedFile>> maps_;
    StreamStats stats_;
};

}  // namespace

std::unique_ptr<ExpertStore> make_mapped_expert_store(const ExpertLayout& layout, bool advise) {
    return std::make_unique<MappedStore>(layout, advise);
}

}  // namespace sluice
