#pragma once
// How a memory budget is spent: dense weights, KV cache, scratch, I/O buffers, and what
// is left for the expert cache (sluice's own slots in direct mode, the OS page cache in
// page-cache/mmap mode).
#include <cstdint>
#include <string>

#include "stream/expert_store.h"

namespace sluice {

struct MemoryPlan {
    uint64_t budget = 0;  // 0: unlimited (everything mapped)
    IoMode mode = IoMode::PageCache;
    uint64_t process = 0;  // what the process held before loading (binary, libraries, runtime)
    uint64_t dense = 0;
    uint64_t kv_cache = 0;
    uint64_t recurrent_state = 0;  // linear-attention layers: conv history + recurrent state
    uint64_t scratch = 0;
    uint64_t io_buffers = 0;    // slots sluice keeps in page-cache mode
    uint64_t expert_cache = 0;  // sluice's own cache (direct mode)
    uint64_t page_cache = 0;    // left for the OS to cache experts (page-cache/mmap)
    uint64_t experts_total = 0;
    uint64_t slot_bytes = 0;

    std::string describe() const;
    double cached_fraction() const;  // share of all expert bytes that fit in a cache
};

// Throws Error with the numbers if the resident part does not fit the budget.
// state: KV cache and recurrent state, both fixed for the context size. process: memory the
// process holds outside the plan's items, counted against the budget like them.
struct ResidentState {
    uint64_t kv_cache = 0, recurrent_state = 0, process = 0;
};
MemoryPlan plan_memory(uint64_t budget, IoMode mode, uint64_t dense, ResidentState state,
                       uint64_t scratch, const ExpertLayout& layout, int experts_per_token);

}  // namespace sluice
