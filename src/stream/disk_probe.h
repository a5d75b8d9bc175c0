#pragma once
// Measures what the disk delivers for the expert access pattern: random whole experts
// (their three slices) read with O_DIRECT through the I/O engine at a given queue depth.
#include <cstdint>
#include <string>

#include "stream/expert_store.h"

namespace sluice {

struct DiskProbe {
    double bytes_per_s = 0;
    uint64_t bytes = 0;
    double seconds = 0;
};

DiskProbe probe_expert_reads(const ExpertLayout& layout, const std::string& engine, int n_experts,
                             unsigned depth, uint64_t seed);

}  // namespace sluice
