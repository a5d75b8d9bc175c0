// Expert cache with explicit reads: fixed-size slots, LRU eviction of unpinned slots,
// completion-order handoff to compute.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <unordered_map>

#include "core/error.h"
#include "io/file.h"
#include "io/io_engine.h"
#include "stream/expert_store.h"

namespace sluice {
namespace {

// Reads in flight: deep enough that the disk stays busy while compute runs for tens of ms
// without reaping (prompt attention), but inside the device's request queue: past it,
// io_uring hands the overflow to kernel worker threads, which take CPU from compute.
// Measured on a virtio disk with nr_requests 256, 512-token prefill of the 30B shape: depth 64
// 9.4-9.5 s (I/O wait 1.5 s), 128 8.3 s, 200 8.2-8.3 s (0.1 s), 512 10.9 s.
unsigned auto_queue_depth(const std::vector<File>& files) {
    unsigned q = 0;
    for (const File& f : files) {
        const unsigned n = f.device_queue_size();
        if (n) q = q ? std::min(q, n) : n;
    }
    return q ? std::clamp(q * 3 / 4, 16u, 256u) : 128u;
}

class StreamingStore final : public ExpertStore {
  public:
    StreamingStore(const ExpertLayout& layout, const StreamingOptions& o)
        : L_(layout), direct_(o.mode == IoMode::Direct), mode_(o.mode) {
        for (const auto& f : layout.files) files_.emplace_back(f, direct_);
        slot_bytes_ = expert_slot_bytes(layout, o.mode);
        const uint64_t n_slots = slot_bytes_ ? o.cache_bytes / slot_bytes_ : 0;
        check(n_slots >= 2, "expert cache of " + std::to_string(o.cache_bytes) +
                                " bytes holds fewer than 2 experts");
        slots_.resize((size_t)n_slots);
        arena_ =
            AlignedBuffer((size_t)(slot_bytes_ * n_slots));  // one allocation: no per-slot slack
        arena_.prefault();
        for (size_t i = 0; i < slots_.size(); ++i) slots_[i].buf = arena_.data() + i * slot_bytes_;
        depth_ = o.queue_depth ? o.queue_depth : auto_queue_depth(files_);
        io_ = make_io_engine(o.engine, depth_);
    }

    void prefetch(int layer, const int* experts, int n, int ahead) override {
        for (int i = 0; i < n; ++i) {
            const uint32_t k = key(layer, experts[i]);
            if (map_.count(k)) continue;
            const int s = victim();
            if (s < 0) break;  // everything pinned or loading: the rest loads on acquire
            start_load(s, layer, experts[i], ahead);
        }
    }

    void prefetch_layers(int layer, int n_layers) override {
        const int end = std::min((int)L_.layers.size(), layer + n_layers);
        for (int l = std::max(0, layer); l < end; ++l)
            for (int e = 0; e < (int)L_.layers[(size_t)l].experts.size(); ++e) {
                if (map_.count(key(l, e))) continue;
                const int s = victim();
                if (s < 0) return;
                start_load(s, l, e, 1);
            }
    }

    int wait_any(int layer, const int* experts, int n) override {
        const auto t0 = std::chrono::steady_clock::now();
        for (;;) {
            bool loading = false;
            for (int i = 0; i < n; ++i) {
                auto it = map_.find(key(layer, experts[i]));
                if (it == map_.end()) continue;
                if (slots_[(size_t)it->second].pending == 0) {
                    stats_.io_wait_s +=
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                            .count();
                    return i;
                }
                loading = true;
            }
            if (!loading) return 0;  // none cached or in flight: acquire() reads the first
            reap(true);
        }
    }

    bool ready(int layer, int expert) override {
        reap(false);
        auto it = map_.find(key(layer, expert));
        return it != map_.end() && slots_[(size_t)it->second].pending == 0;
    }

    ExpertWeights acquire(int layer, int expert) override {
        check_expert(L_, layer, expert);
        const uint32_t k = key(layer, expert);
        auto it = map_.find(k);
        bool hit = it != map_.end() && !slots_[(size_t)it->second].fresh;
        if (it == map_.end()) {
            int s = victim();
            if (s < 0) s = reclaim_speculative();
            check(
                s >= 0,
                "expert cache: every slot is pinned (cache too small for one layer's working set)");
            start_load(s, layer, expert, 0);
            it = map_.find(k);
        }
        Slot& s = slots_[(size_t)it->second];
        if (s.pending > 0) {
            const auto t0 = std::chrono::steady_clock::now();
            while (s.pending > 0) reap(true);
            stats_.io_wait_s +=
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        if (s.ahead == 1) ++stats_.spec_used;
        if (s.ahead >= 2) ++stats_.spec2_used;
        s.ahead = 0;
        s.fresh = false;
        ++s.pins;
        s.last_use = ++tick_;
        ++stats_.acquires;
        hit ? ++stats_.hits : ++stats_.misses;
        const ExpertLayerLayout& l = L_.layers[(size_t)layer];
        stats_.bytes_served += l.expert_bytes();
        return {expert_view(l.proj[0], s.buf + s.region[0]),
                expert_view(l.proj[1], s.buf + s.region[1]),
                expert_view(l.proj[2], s.buf + s.region[2])};
    }

    void release(int layer, int expert) override {
        auto it = map_.find(key(layer, expert));
        if (it != map_.end() && slots_[(size_t)it->second].pins > 0)
            --slots_[(size_t)it->second].pins;
    }

    const StreamStats& stats() const override { return stats_; }
    const char* mode() const override { return io_mode_name(mode_); }
    unsigned queue_depth() const override { return depth_; }
    bool reads_ahead() const override { return true; }

  private:
    struct Slot {
        uint8_t* buf = nullptr;  // slot_bytes_ inside arena_
        int64_t key = -1;
        int pending = 0;  // reads in flight
        int pins = 0;
        bool fresh = false;  // loaded but not yet acquired (its first acquire is a miss)
        int ahead = 0;       // loaded by a speculative prefetch this many layers ahead; 0: not
        uint64_t last_use = 0;
        uint64_t region[3] = {0, 0, 0};  // where each projection's data starts in buf
    };

    uint32_t key(int layer, int expert) const {
        return (uint32_t)layer * (uint32_t)L_.n_expert + (uint32_t)expert;
    }

    // A free slot, else the least recently used unpinned, idle one; -1 if none.
    int victim() {
        for (int i = 0; i < (int)slots_.size(); ++i)
            if (slots_[(size_t)i].key < 0) return i;
        return oldest([](const Slot& s) { return s.pins == 0 && s.pending == 0 && !s.fresh; });
    }

    // A demand read found no victim: every unpinned slot holds a speculative read not yet
    // used. Takes the oldest of those (waiting for its read to land, since the device may still
    // be writing into it); -1 if there is none. Speculation must never starve the layer being
    // computed (a small cache, speculation two layers ahead issued before this layer's router).
    int reclaim_speculative() {
        for (;;) {
            const int best =
                oldest([](const Slot& s) { return s.pins == 0 && s.fresh && s.ahead > 0; });
            if (best < 0 || slots_[(size_t)best].pending == 0) return best;
            reap(true);
        }
    }

    // The least recently used slot satisfying pred; -1 if none.
    template <class Pred>
    int oldest(Pred&& pred) const {
        int best = -1;
        for (int i = 0; i < (int)slots_.size(); ++i) {
            const Slot& s = slots_[(size_t)i];
            if (pred(s) && (best < 0 || s.last_use < slots_[(size_t)best].last_use)) best = i;
        }
        return best;
    }

    void start_load(int si, int layer, int expert, int ahead) {
        Slot& s = slots_[(size_t)si];
        if (s.key >= 0) map_.erase((uint32_t)s.key);
        s.key = key(layer, expert);
        map_[(uint32_t)s.key] = si;
        s.fresh = true;
        s.ahead = ahead;
        s.last_use = ++tick_;
        if (ahead == 1) ++stats_.spec_reads;
        if (ahead >= 2) ++stats_.spec2_reads;
        const auto& sl = L_.layers[(size_t)layer].experts[(size_t)expert];
        ReadRequest reqs[3];
        uint64_t at = 0;
        for (int p = 0; p < 3; ++p) {
            const DirectSpan sp = direct_
                                      ? direct_span(sl[(size_t)p].offset, sl[(size_t)p].nbytes)
                                      : DirectSpan{sl[(size_t)p].offset, sl[(size_t)p].nbytes, 0};
            reqs[p] = {files_[(size_t)sl[(size_t)p].file].fd(), sp.start, sp.len, s.buf + at,
                       ((uint64_t)si << 2) | (uint64_t)p};
            s.region[p] = at + sp.skip;
            at += sp.len;
            stats_.bytes_read += sp.len;
        }
        s.pending += 3;
        io_->submit(reqs, 3);
    }

    void reap(bool block) {
        done_.clear();
        io_->reap(done_, block);
        for (const ReadCompletion& c : done_) {
            Slot& s = slots_[(size_t)(c.tag >> 2)];
            if (c.result < 0)
                fail("expert read failed: " + std::string(std::strerror((int)-c.result)));
            --s.pending;
        }
    }

    const ExpertLayout& L_;
    bool direct_;
    IoMode mode_;
    std::vector<File> files_;
    uint64_t slot_bytes_ = 0;
    AlignedBuffer arena_;
    std::vector<Slot> slots_;
    std::unordered_map<uint32_t, int> map_;
    unsigned depth_ = 0;
    std::unique_ptr<IoEngine> io_;
    std::vector<ReadCompletion> done_;
    uint64_t tick_ = 0;
    StreamStats stats_;
};

}  // namespace

uint64_t expert_slot_bytes(const ExpertLayout& layout, IoMode mode) {
    uint64_t m = 0;
    for (const auto& l : layout.layers) {
        if (l.experts.empty()) continue;
        uint64_t b = 0;
        for (int p = 0; p < 3; ++p) {
            const uint64_t n = l.experts[0][(size_t)p].nbytes;
            b += mode == IoMode::Direct
                     ? (n + 2 * kDirectAlign - 1) / kDirectAlign * kDirectAlign + kDirectAlign
                     : n;
        }
        m = std::max(m, b);
    }
    return (m + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
}

std::unique_ptr<ExpertStore> make_streaming_expert_store(const ExpertLayout& layout,
                                                         const StreamingOptions& o) {
    return std::make_unique<StreamingStore>(layout, o);
}

}  // namespace sluice
