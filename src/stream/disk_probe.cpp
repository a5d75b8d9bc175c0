#include "stream/disk_probe.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "io/file.h"
#include "io/io_engine.h"

namespace sluice {

DiskProbe probe_expert_reads(const ExpertLayout& layout, const std::string& engine, int n_experts,
                             unsigned depth, uint64_t seed) {
    std::vector<File> files;
    for (const auto& f : layout.files) files.emplace_back(f, true);
    std::vector<int> moe_layers;
    for (int l = 0; l < (int)layout.layers.size(); ++l)
        if (!layout.layers[(size_t)l].experts.empty()) moe_layers.push_back(l);
    DiskProbe r;
    if (moe_layers.empty() || n_experts <= 0) return r;
    const uint64_t slot = expert_slot_bytes(layout, IoMode::Direct);
    // The probe runs beside a loaded model: its buffers stay within 128 MiB (for experts of
    // tens of MB each read is large enough to keep the device busy at a shallow queue).
    const unsigned n_bufs = std::clamp(
        depth / 3, 1u, (unsigned)std::max<uint64_t>(1, (128ull << 20) / std::max<uint64_t>(slot, 1)));
    std::vector<AlignedBuffer> bufs;
    for (unsigned i = 0; i < n_bufs; ++i) bufs.emplace_back((size_t)slot);
    auto io = make_io_engine(engine, depth);
    std::mt19937_64 rng(seed);
    std::vector<int> pending(n_bufs, 0);
    std::vector<ReadCompletion> done;
    int issued = 0;
    const auto t0 = std::chrono::steady_clock::now();
    auto issue = [&](unsigned b) {
        const auto& L = layout.layers[(size_t)moe_layers[rng() % moe_layers.size()]];
        const auto& ex = L.experts[rng() % L.experts.size()];
        ReadRequest reqs[3];
        uint64_t at = 0;
        for (int p = 0; p < 3; ++p) {
            const DirectSpan sp = direct_span(ex[(size_t)p].offset, ex[(size_t)p].nbytes);
            reqs[p] = {files[(size_t)ex[(size_t)p].file].fd(), sp.start, sp.len,
                       bufs[b].data() + at, b};
            at += sp.len;
            r.bytes += sp.len;
        }
        pending[b] = 3;
        io->submit(reqs, 3);
        ++issued;
    };
    for (unsigned b = 0; b < n_bufs && issued < n_experts; ++b) issue(b);
    while (io->in_flight() > 0) {
        done.clear();
        io->reap(done, true);
        for (const auto& c : done)
            if (--pending[(size_t)c.tag] == 0 && issued < n_experts) issue((unsigned)c.tag);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.bytes_per_s = r.seconds > 0 ? (double)r.bytes / r.seconds : 0;
    return r;
}

}  // namespace sluice
