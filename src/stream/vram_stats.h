#pragma once
// Telemetry of the VRAM expert cache (cumulative), kept apart from vram_cache.h so code
// built without CUDA can report it.
#include <cstdint>

namespace sluice {

struct VramStats {
    uint64_t acquires = 0, hits = 0, misses = 0;
    uint64_t bytes_h2d = 0;  // expert bytes copied host -> device
    double host_s = 0;       // time reading experts on the host and staging them
    double hit_rate() const { return acquires ? (double)hits / (double)acquires : 0.0; }
};

}  // namespace sluice
