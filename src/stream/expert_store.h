#pragma once
// The one way model code reaches routed-expert weights. A layer's MoE block:
//   store.prefetch(layer, experts)            // start reads of misses, returns at once
//   while experts remain:
//     i = store.wait_any(layer, experts)      // whichever expert's bytes landed first
//     w = store.acquire(layer, experts[i])    // pinned until release
//     ... compute ...; store.release(layer, experts[i])
// The resident store serves views of mapped files; the streaming store reads the exact byte
// ranges of each expert into its own cache slots through an IoEngine.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "stream/stats.h"

namespace sluice {

// One routed expert. gate, up: [n_ff_exp rows, n_embd]; down: [n_embd rows, n_ff_exp].
struct ExpertWeights {
    TensorView gate, up, down;
};

// Where the bytes of one projection of one expert live.
struct ExpertSlice {
    int file = 0;
    uint64_t offset = 0;
    uint64_t nbytes = 0;
};

// Shape of one projection's 2-D matrix: ne = {cols, rows}.
struct ExpertProj {
    DType dtype = DType::F32;
    int64_t cols = 0, rows = 0;
};

// Experts of a layer: [gate, up, down] per expert. Empty for dense layers.
struct ExpertLayerLayout {
    std::array<ExpertProj, 3> proj;
    std::vector<std::array<ExpertSlice, 3>> experts;
    uint64_t expert_bytes() const;
};

struct ExpertLayout {
    std::vector<std::string> files;
    std::vector<ExpertLayerLayout> layers;
    int n_expert = 0;
    uint64_t total_bytes() const;
    uint64_t max_expert_bytes() const;
};

// A view of one projection's bytes at `data`.
TensorView expert_view(const ExpertProj& p, const uint8_t* data);
// Throws Error unless (layer, expert) names a routed expert of the layout.
void check_expert(const ExpertLayout& L, int layer, int expert);

class ExpertStore {
  public:
    virtual ~ExpertStore() = default;
    // ahead: 0 for experts compute needs now; k >= 1 for a speculative read k layers before
    // the layer being computed (counted apart in the stats, by distance).
    virtual void prefetch(int layer, const int* experts, int n, int ahead = 0) {
        (void)layer, (void)experts, (void)n, (void)ahead;
    }
    // For batches that use (nearly) every expert of every layer, e.g. a long prompt: start
    // reads of all experts of layers [layer, layer + n_layers), in layer order, as far as free
    // cache slots go (speculative; slots loaded and not yet used are never evicted for them).
    // The mmap store, which has no slots, advises the first of those layers only.
    virtual void prefetch_layers(int layer, int n_layers) { (void)layer, (void)n_layers; }
    // Index i in [0, n) of an expert that can be acquired without waiting for I/O, or the
    // first one to become so.
    virtual int wait_any(int layer, const int* experts, int n) {
        (void)layer, (void)experts, (void)n;
        return 0;
    }
    // True if acquire(layer, expert) would not wait for I/O now (does not block).
    virtual bool ready(int layer, int expert) {
        (void)layer, (void)expert;
        return true;
    }
    virtual ExpertWeights acquire(int layer, int expert) = 0;
    virtual void release(int layer, int expert) { (void)layer, (void)expert; }
    virtual const StreamStats& stats() const = 0;
    virtual const char* mode() const = 0;
    virtual unsigned queue_depth() const { return 0; }  // reads kept in flight; 0: none (mmap)
    // Whether prefetch() starts reads (streaming) or advises them (mmap with a budget).
    virtual bool reads_ahead() const { return false; }
};

// All experts resident: views into memory-mapped files (the OS pages them in on demand).
// With `advise`, prefetch() asks the kernel to read ahead (madvise WILLNEED).
std::unique_ptr<ExpertStore> make_mapped_expert_store(const ExpertLayout& layout, bool advise);

enum class IoMode { PageCache, Direct, Mmap };
const char* io_mode_name(IoMode m);
IoMode parse_io_mode(const std::string& s);

struct StreamingOptions {
    IoMode mode = IoMode::PageCache;
    uint64_t cache_bytes = 0;  // sluice's own expert cache (slots)
    std::string engine = "auto";
    unsigned queue_depth = 0;  // reads in flight; 0: from the device's request queue
};

// Reads experts on demand into a cache of fixed-size slots (LRU, pinned while in use).
// Direct mode uses O_DIRECT and aligned reads; page-cache mode uses buffered reads and a
// small slot pool, letting the OS page cache be the large cache.
std::unique_ptr<ExpertStore> make_streaming_expert_store(const ExpertLayout& layout,
                                                         const StreamingOptions& o);

// Bytes of one cache slot for this layout in this mode (alignment slack included).
uint64_t expert_slot_bytes(const ExpertLayout& layout, IoMode mode);

}  // namespace sluice
