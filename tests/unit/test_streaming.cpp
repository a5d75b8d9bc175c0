// Streaming experts through a budget-sized cache must not change a single bit of output.
#include <gtest/gtest.h>

#include <cstring>

#include "common.h"
#include "core/error.h"
#include "io/file.h"
#include "io/io_engine.h"
#include "io/mapped_file.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace sluice {
namespace {

// Logits of a 24-token prefill followed by 8 decode steps (teacher-forced).
std::vector<float> run_logits(const std::string& path, const LoadOptions& o, bool spec,
                              StreamStats* stats = nullptr) {
    auto m = Model::open(path, o);
    m->set_speculative_prefetch(spec);
    const int V = m->config().n_vocab;
    std::vector<int32_t> ids;
    for (int i = 0; i < 32; ++i) ids.push_back((i * 977 + 13) % V);
    ThreadPool pool(2);
    KvCache kv(m->config(), 64);
    std::vector<float> all((size_t)24 * V), step((size_t)V);
    m->forward({ids.data(), 24, 0, &kv, &pool, all.data(), true});
    for (int i = 24; i < 32; ++i) {
        m->forward({&ids[(size_t)i], 1, i, &kv, &pool, step.data(), false});
        all.insert(all.end(), step.begin(), step.end());
    }
    if (stats) *stats = m->experts().stats();
    return all;
}

TEST(Streaming, EveryModeIsBitIdenticalToResident) {
    const std::string path = test::tiny_gguf("Q4_K_M");
    const auto ref = run_logits(path, {}, false);
    struct Case {
        IoMode mode;
        uint64_t budget;
        bool spec;
        const char* engine;
    };
    for (Case c : {Case{IoMode::Direct, 30ull << 20, false, "auto"},
                   Case{IoMode::Direct, 30ull << 20, true, "threads"},
                   Case{IoMode::Direct, 256ull << 20, true, "uring"},
                   Case{IoMode::PageCache, 30ull << 20, true, "auto"},
                   Case{IoMode::Mmap, 30ull << 20, false, "auto"}}) {
        LoadOptions o;
        o.mem_budget = c.budget;
        o.io = c.mode;
        o.io_engine = c.engine;
        o.n_ctx = 64;
        StreamStats st;
        std::vector<float> got;
        try {
            got = run_logits(path, o, c.spec, &st);
        } catch (const Error& e) {
            if (std::string(c.engine) == "uring" &&
                std::string(e.what()).find("io_uring") != std::string::npos)
                continue;  // kernel without io_uring: covered by the other engines
            throw;
        }
        ASSERT_EQ(got.size(), ref.size());
        EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)), 0)
            << io_mode_name(c.mode) << " budget " << c.budget << " spec " << c.spec;
        EXPECT_GT(st.acquires, 0u);
        if (c.mode != IoMode::Mmap) {
            EXPECT_GT(st.misses, 0u);
            EXPECT_GT(st.bytes_read, 0u);
        }
        if (c.spec && c.mode != IoMode::Mmap) {
            EXPECT_GT(st.spec_reads, 0u);
            EXPECT_GT(st.spec2_reads, 0u) << "two layers ahead";
        }
    }
}

// DeepSeek-style layers (dense lead layers, shared experts, FP8 block-scaled experts from a
// HF directory) stream exactly like Qwen3-MoE: only routed experts go through the store.
TEST(Streaming, DeepSeekLayersStreamBitIdentically) {
    for (const char* f : {"dsv3-groups", "dsv3-fp8"}) {
        const std::string path = test::fixture(f);
        const auto ref = run_logits(path, {}, false);
        LoadOptions o;
        o.io = IoMode::Direct;
        o.n_ctx = 64;
        o.mem_budget = 12ull << 20;
        StreamStats st;
        const auto got = run_logits(path, o, true, &st);
        ASSERT_EQ(got.size(), ref.size());
        EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)), 0) << f;
        EXPECT_GT(st.misses, 0u) << f;
        EXPECT_GT(st.spec_reads + st.spec2_reads, 0u) << f;  // mostly two ahead now
        auto m = Model::open(path, o);
        EXPECT_EQ(m->expert_layout().layers[0].experts.size(), 0u) << "dense layer 0 has no experts";
        EXPECT_FALSE(m->weights().layers[1].shexp_gate.empty()) << "shared expert is resident";
    }
}

// Qwen3.5-MoE: linear-attention layers and the gated shared expert stay resident; routed
// experts stream, with the recurrent state carried across prefill and decode steps.
TEST(Streaming, Qwen35LayersStreamBitIdentically) {
    const std::string path = test::fixture("qwen35-3to1");
    const auto ref = run_logits(path, {}, false);
    for (IoMode mode : {IoMode::Direct, IoMode::PageCache}) {
        LoadOptions o;
        o.io = mode;
        o.n_ctx = 64;
        o.mem_budget = 7ull << 20;
        StreamStats st;
        const auto got = run_logits(path, o, true, &st);
        ASSERT_EQ(got.size(), ref.size());
        EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)), 0)
            << io_mode_name(mode);
        EXPECT_GT(st.misses, 0u);
        auto m = Model::open(path, o);
        EXPECT_GT(m->memory_plan().recurrent_state, 0u);
        EXPECT_LT(m->memory_plan().expert_cache + m->memory_plan().page_cache,
                  m->memory_plan().experts_total)
            << "the budget must not hold every expert";
    }
}

TEST(Streaming, TightDirectCacheEvictsAndLargeOneHits) {
    const std::string path = test::tiny_gguf("Q4_K_M");
    LoadOptions o;
    o.io = IoMode::Direct;
    o.n_ctx = 64;
    o.mem_budget = 30ull << 20;
    StreamStats tight, roomy;
    run_logits(path, o, false, &tight);
    o.mem_budget = 256ull << 20;
    run_logits(path, o, false, &roomy);
    // With room for every expert, each is read at most once.
    EXPECT_LE(roomy.misses, 6u * 32u);
    EXPECT_GT(roomy.hit_rate(), tight.hit_rate());
    EXPECT_GT(tight.misses, roomy.misses);
}

TEST(Streaming, BudgetTooSmallForDenseWeightsIsAClearError) {
    LoadOptions o;
    o.mem_budget = 1ull << 20;
    o.io = IoMode::Direct;
    try {
        Model::open(test::tiny_gguf("Q4_K_M"), o);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("too small: dense weights"), std::string::npos)
            << e.what();
    }
}

TEST(IoEngine, ReadsExactRangesInAnyOrder) {
    const std::string path = test::tiny_gguf("Q8_0");
    MappedFile mf(path);
    for (const char* kind : {"threads", "auto"}) {
        auto io = make_io_engine(kind, 8);
        File f(path, false);
        std::vector<std::vector<uint8_t>> bufs(20);
        std::vector<ReadRequest> reqs;
        for (size_t i = 0; i < bufs.size(); ++i) {
            bufs[i].resize(10000 + i * 777);
            reqs.push_back({f.fd(), 4096 * i * 37 + i, bufs[i].size(), bufs[i].data(), i});
        }
        io->submit(reqs.data(), reqs.size());
        std::vector<ReadCompletion> done;
        while (done.size() < reqs.size()) io->reap(done, true);
        EXPECT_EQ(io->in_flight(), 0u);
        for (const auto& c : done) {
            ASSERT_EQ(c.result, (int64_t)bufs[c.tag].size()) << kind;
            EXPECT_EQ(
                std::memcmp(bufs[c.tag].data(), mf.data() + reqs[c.tag].offset, bufs[c.tag].size()),
                0)
                << kind;
        }
    }
}

}  // namespace
}  // namespace sluice
