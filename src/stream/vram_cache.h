#pragma once
// Routed experts in GPU memory: a cache of fixed-size VRAM slots filled from the host
// ExpertStore (page cache, sluice's own host cache, or mapped files) through pinned staging
// buffers and copies on the GPU's side stream. When every expert fits, all are loaded once
// and a decode step needs no host round trip (the kernels find experts through the table).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "backend/cuda/cuda.h"
#include "io/file.h"
#include "io/mapped_file.h"
#include "stream/expert_store.h"
#include "stream/vram_stats.h"

namespace sluice {

class VramExpertCache {
  public:
    // vram_bytes: device memory for expert slots. Throws if fewer than 2 * k_max slots fit
    // (a layer's experts must be resident together, with room to spare for the next).
    // How misses reach the GPU. Store: through the ExpertStore (sluice's own host cache),
    // staged in pinned buffers. Pread: buffered pread of the file straight into pinned staging,
    // in pieces across the pool (the OS page cache is the host cache). Mapped: the files
    // mapped and registered with the driver, copied by DMA from the page cache in place
    // (pins the pages: for files well inside RAM); falls back to Pread if the driver refuses.
    enum class HostPath { Store, Pread, Mapped };
    // max_slots > 0 caps the slot count (tests force misses with it).
    VramExpertCache(cuda::Gpu& gpu, const ExpertLayout& layout, uint64_t vram_bytes, int k_max,
                    int max_slots = 0, HostPath path = HostPath::Store);
    HostPath host_path() const { return path_; }
    const std::string& host_path_note() const { return path_note_; }

    bool all_resident() const { return all_resident_; }
    int n_slots() const { return (int)slot_owner_.size(); }
    uint64_t slot_bytes() const { return slot_bytes_; }
    // Loads every expert (only when all_resident()).
    void load_all(ExpertStore& store, ThreadPool& pool);
    // Makes experts[0..n) of `layer` resident: misses are read through `store` and copied on
    // the side stream; compute queued after this call sees them (the compute stream waits).
    // The compute stream must not be using slots of other layers (callers sync first).
    void ensure(ExpertStore& store, ThreadPool& pool, int layer, const int* experts, int n);
    // Loads experts 0, 1, ... of every MoE layer, an equal share each, until the slots are
    // full (a starting set for runs that compute misses elsewhere and never evict).
    void fill_evenly(ExpertStore& store, ThreadPool& pool);
    bool resident(int layer, int e) const { return slot_of(layer, e) >= 0; }
    // Experts computed on the host instead (not copied): counted as misses.
    void count_host(size_t misses, size_t acquires) {
        stats_.acquires += acquires;
        stats_.misses += misses;
        stats_.hits += acquires - misses;
    }
    cuda::ExpertTable table(int layer) const;
    // Device view of projection p (0 gate, 1 up, 2 down) of a resident expert.
    TensorView view(int layer, int expert, int p) const;
    const VramStats& stats() const { return stats_; }

  private:
    int slot_of(int layer, int e) const { return slot_[(size_t)layer * n_expert_ + (size_t)e]; }
    void place(int layer, int e, int slot);
    void stage_and_copy(ExpertStore& store, ThreadPool& pool, int layer,
                        const std::vector<int>& misses, const std::vector<int>& slots);
    // The three host paths of stage_and_copy (HostPath).
    void dma_in_place(int layer, const std::vector<int>& misses, const std::vector<int>& slots);
    void read_and_copy(ThreadPool& pool, int layer, const std::vector<int>& misses,
                       const std::vector<int>& slots);
    void store_and_copy(ExpertStore& store, ThreadPool& pool, int layer,
                        const std::vector<int>& misses, const std::vector<int>& slots);
    // Experts 0 .. per_layer-1 of every layer into slots 0, 1, ...; the whole table uploaded.
    void fill_first(ExpertStore& store, ThreadPool& pool, int per_layer);

    cuda::Gpu& gpu_;
    const ExpertLayout& layout_;
    int n_expert_;
    uint64_t slot_bytes_ = 0;
    bool all_resident_ = false;
    cuda::DeviceBuffer pool_;              // n_slots * slot_bytes
    cuda::DeviceBuffer table_dev_;         // [n_layer][n_expert][3] device pointers
    std::vector<const void*> table_host_;  // mirror of table_dev_
    std::vector<char> dirty_;              // [n_layer]: host table rows not yet uploaded
    std::vector<int> slot_;                // [n_layer * n_expert] -> slot or -1
    std::vector<int64_t> slot_owner_;      // slot -> layer * n_expert + e, or -1
    std::vector<uint64_t> last_use_;       // slot -> use clock (LRU)
    uint64_t clock_ = 0;
    std::vector<cuda::PinnedBuffer> staging_;  // one expert each, reused in turn
    HostPath path_;
    std::string path_note_;
    std::vector<File> files_;                        // Pread: the model files, buffered
    int round_ = 0;                                  // Pread: staging group to use next
    std::vector<std::unique_ptr<MappedFile>> maps_;  // Mapped
    std::vector<std::unique_ptr<cuda::HostRegistration>> pinned_;  // Mapped
    VramStats stats_;
};

}  // namespace sluice
