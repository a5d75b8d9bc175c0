#include "stream/vram_cache.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace sluice {
namespace {

constexpr uint64_t kAlign = 256;
uint64_t align_up(uint64_t v) {
    return (v + kAlign - 1) / kAlign * kAlign;
}
// Byte offset of projection p inside a slot of this layer: [gate | up | down], aligned.
uint64_t proj_offset(const ExpertLayerLayout& L, int p) {
    uint64_t off = 0;
    for (int i = 0; i < p; ++i) off += align_up(L.experts[0][(size_t)i].nbytes);
    return off;
}
constexpr int kStaging = 32;  // experts staged at once before the oldest buffer is reused

}  // namespace

VramExpertCache::VramExpertCache(cuda::Gpu& gpu, const ExpertLayout& layout, uint64_t vram_bytes,
                                 int k_max, int max_slots, HostPath path)
    : gpu_(gpu), layout_(layout), n_expert_(layout.n_expert), path_(path) {
    uint64_t total = 0;
    for (const ExpertLayerLayout& L : layout.layers) {
        if (L.experts.empty()) continue;
        slot_bytes_ = std::max(slot_bytes_, proj_offset(L, 3));
        total += (uint64_t)L.experts.size();
    }
    if (total == 0) return;
    uint64_t fit = vram_bytes / slot_bytes_;
    if (max_slots > 0) fit = std::min<uint64_t>(fit, (uint64_t)max_slots);
    check(fit >= (uint64_t)(2 * k_max),
          "--gpu-mem: " + std::to_string(vram_bytes >> 20) + " MiB for experts holds " +
              std::to_string(fit) + " experts of " + std::to_string(slot_bytes_ >> 10) +
              " KiB; at least " + std::to_string(2 * k_max) + " are needed");
    const uint64_t n = std::min(fit, total);
    all_resident_ = n == total;
    pool_ = cuda::DeviceBuffer(n * slot_bytes_);
    const size_t entries = layout.layers.size() * (size_t)n_expert_;
    table_dev_ = cuda::DeviceBuffer(entries * 3 * sizeof(void*));
    table_host_.assign(entries * 3, nullptr);
    gpu_.upload(table_dev_.data(), table_host_.data(), entries * 3 * sizeof(void*));
    dirty_.assign(layout.layers.size(), 0);
    slot_.assign(entries, -1);
    slot_owner_.assign((size_t)n, -1);
    last_use_.assign((size_t)n, 0);
    for (int i = 0; i < kStaging; ++i) staging_.emplace_back(slot_bytes_);
    if (path_ == HostPath::Mapped) {
        const auto t0 = std::chrono::steady_clock::now();
        uint64_t bytes = 0;
        for (const std::string& f : layout.files) {
            maps_.push_back(std::make_unique<MappedFile>(f));
            pinned_.push_back(std::make_unique<cuda::HostRegistration>(maps_.back()->data(),
                                                                       maps_.back()->size()));
            if (!pinned_.back()->ok()) {
                path_note_ = "could not register " + f + " for DMA (" + pinned_.back()->error() +
                             "); reading with pread instead";
                pinned_.clear();
                maps_.clear();
                path_ = HostPath::Pread;
                break;
            }
            bytes += maps_.back()->size();
        }
        if (path_ == HostPath::Mapped) {
            char note[128];
            std::snprintf(
                note, sizeof note, "registered %.2f GiB of file mapping for DMA in %.1f s",
                bytes / 1073741824.0,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            path_note_ = note;
        }
    }
    if (path_ == HostPath::Pread)
        for (const std::string& f : layout.files) files_.emplace_back(f, false);
}

void VramExpertCache::read_and_copy(ThreadPool& pool, int layer, const std::vector<int>& misses,
                                    const std::vector<int>& slots) {
    // Rounds of up to kPerRound experts in two alternating groups of staging buffers. Every
    // piece of a round is read in parallel, and an expert's copy to the GPU is queued by the
    // thread that finishes its last piece, so copies overlap the round's remaining reads
    // (and the next round's reads overlap this round's copies).
    constexpr int kGroups = 2;
    // Knobs for measuring (docs/benchmarks.md): SLUICE_GPU_ROUND experts per round (1..16,
    // default 8), SLUICE_GPU_EARLY_COPY=0 queues the copies after a round's reads.
    static const int kPerRound = [] {
        const char* e = std::getenv("SLUICE_GPU_ROUND");
        return e ? std::clamp(std::atoi(e), 1, kStaging / kGroups) : 8;
    }();
    static const bool early = [] {
        const char* e = std::getenv("SLUICE_GPU_EARLY_COPY");
        return !(e && *e == '0');
    }();
    constexpr uint64_t kPiece = 256 << 10;
    const ExpertLayerLayout& L = layout_.layers[(size_t)layer];
    const uint64_t bytes = proj_offset(L, 3);
    struct Piece {
        int i, p;
        uint64_t lo, hi;
    };
    for (size_t r0 = 0; r0 < misses.size(); r0 += kPerRound) {
        const int group = round_++ % kGroups;
        if (round_ > kGroups) gpu_.wait_side_mark(group);
        const size_t nr = std::min<size_t>(kPerRound, misses.size() - r0);
        std::vector<Piece> pieces;
        std::vector<std::atomic<int>> left(nr);
        for (size_t i = 0; i < nr; ++i) {
            place(layer, misses[r0 + i], slots[r0 + i]);
            int count = 0;
            for (int p = 0; p < 3; ++p) {
                const uint64_t nb = L.experts[(size_t)misses[r0 + i]][(size_t)p].nbytes;
                for (uint64_t lo = 0; lo < nb; lo += kPiece, ++count)
                    pieces.push_back({(int)i, p, lo, std::min(nb, lo + kPiece)});
            }
            left[i].store(count);
            stats_.bytes_h2d += bytes;
        }
        pool.run((int64_t)pieces.size(), [&](int64_t k, int) {
            const Piece& pc = pieces[(size_t)k];
            const size_t r = r0 + (size_t)pc.i;
            const ExpertSlice& s = L.experts[(size_t)misses[r]][(size_t)pc.p];
            uint8_t* stage = (uint8_t*)staging_[(size_t)(group * kPerRound + pc.i)].data();
            files_[(size_t)s.file].pread_all(stage + proj_offset(L, pc.p) + pc.lo, pc.hi - pc.lo,
                                             s.offset + pc.lo);
            if (early && left[(size_t)pc.i].fetch_sub(1) == 1)
                gpu_.copy_h2d_side((uint8_t*)pool_.data() + (uint64_t)slots[r] * slot_bytes_, stage,
                                   bytes);
        });
        if (!early)
            for (size_t i = 0; i < nr; ++i)
                gpu_.copy_h2d_side((uint8_t*)pool_.data() + (uint64_t)slots[r0 + i] * slot_bytes_,
                                   staging_[(size_t)(group * kPerRound + (int)i)].data(), bytes);
        gpu_.mark_side(group);
    }
}

void VramExpertCache::place(int layer, int e, int slot) {
    const ExpertLayerLayout& L = layout_.layers[(size_t)layer];
    const size_t idx = (size_t)layer * n_expert_ + (size_t)e;
    const int64_t old = slot_owner_[(size_t)slot];
    if (old >= 0) {  // evicted: its layer's device row must drop the pointer too
        slot_[(size_t)old] = -1;
        for (int p = 0; p < 3; ++p) table_host_[(size_t)old * 3 + p] = nullptr;
        dirty_[(size_t)old / (size_t)n_expert_] = 1;
    }
    dirty_[(size_t)layer] = 1;
    slot_owner_[(size_t)slot] = (int64_t)idx;
    slot_[idx] = slot;
    uint8_t* base = (uint8_t*)pool_.data() + (uint64_t)slot * slot_bytes_;
    for (int p = 0; p < 3; ++p) table_host_[idx * 3 + p] = base + proj_offset(L, p);
}

void VramExpertCache::stage_and_copy(ExpertStore& store, ThreadPool& pool, int layer,
                                     const std::vector<int>& misses,
                                     const std::vector<int>& slots) {
    const auto t0 = std::chrono::steady_clock::now();
    switch (path_) {
        case HostPath::Mapped:
            dma_in_place(layer, misses, slots);
            break;
        case HostPath::Pread:
            read_and_copy(pool, layer, misses, slots);
            break;
        case HostPath::Store:
            store_and_copy(store, pool, layer, misses, slots);
            break;
    }
    stats_.host_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void VramExpertCache::dma_in_place(int layer, const std::vector<int>& misses,
                                   const std::vector<int>& slots) {
    const ExpertLayerLayout& L = layout_.layers[(size_t)layer];
    for (size_t i = 0; i < misses.size(); ++i) {
        place(layer, misses[i], slots[i]);
        uint8_t* dst = (uint8_t*)pool_.data() + (uint64_t)slots[i] * slot_bytes_;
        for (int p = 0; p < 3; ++p) {
            const ExpertSlice& s = L.experts[(size_t)misses[i]][(size_t)p];
            gpu_.copy_h2d_side(dst + proj_offset(L, p), maps_[(size_t)s.file]->data() + s.offset,
                               s.nbytes);
            stats_.bytes_h2d += s.nbytes;
        }
    }
}

void VramExpertCache::store_and_copy(ExpertStore& store, ThreadPool& pool, int layer,
                                     const std::vector<int>& misses,
                                     const std::vector<int>& slots) {
    const ExpertLayerLayout& L = layout_.layers[(size_t)layer];
    std::vector<int> slot_for((size_t)n_expert_, -1);
    for (size_t i = 0; i < misses.size(); ++i) slot_for[(size_t)misses[i]] = slots[i];
    std::vector<int> todo = misses;
    store.prefetch(layer, todo.data(), (int)todo.size());
    int staged = 0;
    while (!todo.empty()) {
        const int i = store.wait_any(layer, todo.data(), (int)todo.size());
        const int e = todo[(size_t)i], slot = slot_for[(size_t)e];
        todo.erase(todo.begin() + i);
        if (staged > 0 && staged % kStaging == 0) gpu_.sync_copies();  // staging ring wraps
        uint8_t* stage = (uint8_t*)staging_[(size_t)(staged % kStaging)].data();
        ++staged;
        const ExpertWeights w = store.acquire(layer, e);
        const TensorView* v[3] = {&w.gate, &w.up, &w.down};
        // Page-cache and mapped reads are memcpy-bound: split across the pool.
        constexpr int64_t kPiece = 256 << 10;
        for (int p = 0; p < 3; ++p) {
            const uint64_t nb = L.experts[(size_t)e][(size_t)p].nbytes;
            uint8_t* dst = stage + proj_offset(L, p);
            const uint8_t* src = (const uint8_t*)v[p]->data;
            pool.parallel_for((int64_t)((nb + kPiece - 1) / kPiece), 1,
                              [&](int64_t b, int64_t en, int) {
                                  const uint64_t lo = (uint64_t)b * kPiece,
                                                 hi = std::min<uint64_t>(nb, (uint64_t)en * kPiece);
                                  std::memcpy(dst + lo, src + lo, hi - lo);
                              });
        }
        store.release(layer, e);
        place(layer, e, slot);
        gpu_.copy_h2d_side((uint8_t*)pool_.data() + (uint64_t)slot * slot_bytes_, stage,
                           proj_offset(L, 3));
        stats_.bytes_h2d += proj_offset(L, 3);
    }
}

void VramExpertCache::load_all(ExpertStore& store, ThreadPool& pool) {
    check(all_resident_, "internal: load_all without room for every expert");
    fill_first(store, pool, n_expert_);
}

void VramExpertCache::fill_evenly(ExpertStore& store, ThreadPool& pool) {
    int n_moe = 0;
    for (const ExpertLayerLayout& L : layout_.layers) n_moe += !L.experts.empty();
    if (n_moe > 0) fill_first(store, pool, n_slots() / n_moe);
}

void VramExpertCache::fill_first(ExpertStore& store, ThreadPool& pool, int per_layer) {
    int next = 0;
    for (int l = 0; l < (int)layout_.layers.size(); ++l) {
        const int n = std::min(per_layer, (int)layout_.layers[(size_t)l].experts.size());
        std::vector<int> es, slots;
        for (int e = 0; e < n; ++e) es.push_back(e), slots.push_back(next++);
        stage_and_copy(store, pool, l, es, slots);
    }
    gpu_.sync_copies();
    gpu_.upload(table_dev_.data(), table_host_.data(), table_host_.size() * sizeof(void*));
    std::fill(dirty_.begin(), dirty_.end(), 0);
}

void VramExpertCache::ensure(ExpertStore& store, ThreadPool& pool, int layer, const int* experts,
                             int n) {
    ++clock_;
    std::vector<int> misses;
    for (int i = 0; i < n; ++i) {
        const int s = slot_of(layer, experts[i]);
        ++stats_.acquires;
        if (s >= 0) {
            ++stats_.hits;
            last_use_[(size_t)s] = clock_;
        } else {
            ++stats_.misses;
            misses.push_back(experts[i]);
        }
    }
    if (misses.empty()) return;
    // Victims: least recently used slots not needed by this request.
    std::vector<int> slots;
    for (size_t m = 0; m < misses.size(); ++m) {
        int best = -1;
        for (int s = 0; s < n_slots(); ++s)
            if (last_use_[(size_t)s] < clock_ &&
                (best < 0 || last_use_[(size_t)s] < last_use_[(size_t)best]))
                best = s;
        check(best >= 0, "internal: VRAM expert cache has no free slot");
        last_use_[(size_t)best] = clock_;
        slots.push_back(best);
    }
    stage_and_copy(store, pool, layer, misses, slots);
    // Every row that changed, not only this layer's: kernels that leave misses to the host
    // read the entries of non-resident experts and must find them null.
    for (size_t l = 0; l < dirty_.size(); ++l) {
        if (!dirty_[l]) continue;
        const size_t row = l * (size_t)n_expert_ * 3;
        gpu_.upload_async((const void**)table_dev_.data() + row, table_host_.data() + row,
                          (size_t)n_expert_ * 3 * sizeof(void*));
        dirty_[l] = 0;
    }
    gpu_.wait_copies();
}

cuda::ExpertTable VramExpertCache::table(int layer) const {
    const ExpertLayerLayout& L = layout_.layers[(size_t)layer];
    cuda::ExpertTable t;
    t.table = (const void* const*)table_dev_.data() + (size_t)layer * n_expert_ * 3;
    for (int p = 0; p < 3; ++p) t.dtype[p] = L.proj[(size_t)p].dtype;
    t.n_ff = L.proj[0].rows;
    t.n_embd = L.proj[0].cols;
    return t;
}

TensorView VramExpertCache::view(int layer, int expert, int p) const {
    const int s = slot_of(layer, expert);
    check(s >= 0, "internal: expert not resident in VRAM");
    const ExpertLayerLayout& L = layout_.layers[(size_t)layer];
    return expert_view(L.proj[(size_t)p], (const uint8_t*)pool_.data() + (uint64_t)s * slot_bytes_ +
                                              proj_offset(L, p));
}

}  // namespace sluice
