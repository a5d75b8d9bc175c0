#include "stream/memory_plan.h"

#include <algorithm>

#include "core/error.h"
#include "core/strings.h"

namespace sluice {

MemoryPlan plan_memory(uint64_t budget, IoMode mode, uint64_t dense, ResidentState state,
                       uint64_t scratch, const ExpertLayout& layout, int experts_per_token) {
    const uint64_t kv_cache = state.kv_cache + state.recurrent_state;
    MemoryPlan p;
    p.budget = budget;
    p.mode = mode;
    p.process = state.process;
    p.dense = dense;
    p.kv_cache = state.kv_cache;
    p.recurrent_state = state.recurrent_state;
    p.scratch = scratch;
    p.experts_total = layout.total_bytes();
    p.slot_bytes = expert_slot_bytes(layout, mode);
    if (budget == 0) return p;
    // Page-cache mode keeps slots for two layers' worth of routed experts: the layer being
    // computed and reads in flight for the next.
    const uint64_t min_slots = (uint64_t)std::max(4, 4 * experts_per_token);
    const uint64_t fixed = state.process + dense + kv_cache + scratch;
    const uint64_t min_io = min_slots * p.slot_bytes;
    if (fixed + min_io > budget)
        fail("memory budget " + format_bytes(budget) + " is too small: " +
             (state.process ? "process " + format_bytes(state.process) + " + " : std::string()) +
             "dense weights " + format_bytes(dense) + " + KV cache and state " +
             format_bytes(kv_cache) + " + scratch " + format_bytes(scratch) +
             " + minimum expert buffers " + format_bytes(min_io) + " = " +
             format_bytes(fixed + min_io) + " (lower --ctx or raise --mem-budget)");
    const uint64_t rest = budget - fixed;
    if (mode == IoMode::Direct) {
        p.expert_cache = std::min(rest, p.experts_total + p.slot_bytes * min_slots) / p.slot_bytes *
                         p.slot_bytes;
    } else if (mode == IoMode::PageCache) {
        p.io_buffers = min_io;
        p.page_cache = rest - min_io;
    } else {
        p.page_cache = rest;
    }
    return p;
}

double MemoryPlan::cached_fraction() const {
    if (experts_total == 0) return 1.0;
    const uint64_t c = mode == IoMode::Direct ? expert_cache : page_cache;
    return budget == 0 ? 1.0 : std::min(1.0, (double)c / (double)experts_total);
}

std::string MemoryPlan::describe() const {
    std::string s = "memory plan (" + std::string(io_mode_name(mode)) + "): budget " +
                    (budget ? format_bytes(budget) : std::string("unlimited")) + "\n";
    if (process)
        s += "  process        " + format_bytes(process) + " (binary, libraries, before loading)\n";
    s += "  dense weights  " + format_bytes(dense) + " (resident)\n";
    s += "  KV cache       " + format_bytes(kv_cache) + "\n";
    if (recurrent_state)
        s += "  linear state   " + format_bytes(recurrent_state) + " (DeltaNet conv + recurrent)\n";
    s += "  scratch        " + format_bytes(scratch) + "\n";
    if (io_buffers) s += "  I/O buffers    " + format_bytes(io_buffers) + "\n";
    if (expert_cache)
        s += "  expert cache   " + format_bytes(expert_cache) + " (sluice slots, O_DIRECT)\n";
    if (page_cache)
        s += "  page cache     " + format_bytes(page_cache) + " (left to the OS for experts)\n";
    char buf[160];
    std::snprintf(buf, sizeof buf, "  experts        %s in the file; %.0f%% can be cached\n",
                  format_bytes(experts_total).c_str(), 100 * cached_fraction());
    s += buf;
    return s;
}

}  // namespace sluice
