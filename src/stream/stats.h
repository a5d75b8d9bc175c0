#pragma once
// Expert-streaming telemetry, cumulative; callers diff snapshots per token.
#include <cstdint>

namespace sluice {

struct StreamStats {
    uint64_t acquires = 0;      // experts handed to compute
    uint64_t hits = 0;          // ... already in sluice's cache (no read issued for this use)
    uint64_t misses = 0;        // ... that needed a read
    uint64_t bytes_read = 0;    // bytes requested from the file system
    uint64_t bytes_served = 0;  // expert bytes handed to compute
    uint64_t spec_reads = 0;    // speculative prefetches issued one layer ahead
    uint64_t spec_used = 0;     // ... later acquired
    uint64_t spec2_reads = 0;   // speculative prefetches issued two layers ahead
    uint64_t spec2_used = 0;    // ... later acquired
    double io_wait_s = 0;       // time compute waited for reads

    StreamStats operator-(const StreamStats& o) const {
        return {acquires - o.acquires,
                hits - o.hits,
                misses - o.misses,
                bytes_read - o.bytes_read,
                bytes_served - o.bytes_served,
                spec_reads - o.spec_reads,
                spec_used - o.spec_used,
                spec2_reads - o.spec2_reads,
                spec2_used - o.spec2_used,
                io_wait_s - o.io_wait_s};
    }
    double hit_rate() const { return acquires ? (double)hits / (double)acquires : 0.0; }
};

// Bytes this process has caused to be fetched from storage (/proc/self/io read_bytes):
// the honest disk figure whatever caches sit in between. 0 if unavailable.
uint64_t process_disk_read_bytes();
// Peak resident set size of this process in bytes.
uint64_t process_peak_rss_bytes();
uint64_t process_rss_bytes();

}  // namespace sluice
