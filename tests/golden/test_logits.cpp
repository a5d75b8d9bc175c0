// Whole-model logits vs Hugging Face transformers (float32 run of the bf16 weights).
#include <gtest/gtest.h>

#include <cmath>

#include "common.h"
#include "greedy.h"
#include "runtime/loader.h"
#include "runtime/sampler.h"

namespace sluice {
namespace {

// Greedy continuation of n tokens after the prompt (one batched prefill, then one token a step).

class Logits : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        lm_ = new LoadedModel(load_model(test::tiny_hf()));
        ref_ = new test::RefFile(test::tiny_hf() + "/reference.safetensors");
    }
    static void TearDownTestSuite() {
        delete lm_;
        delete ref_;
    }
    static LoadedModel* lm_;
    static test::RefFile* ref_;
};
LoadedModel* Logits::lm_;
test::RefFile* Logits::ref_;

TEST_F(Logits, EveryPositionMatchesTransformers) {
    Model& m = *lm_->model;
    const int V = m.config().n_vocab;
    ThreadPool pool(2);
    for (int p = 0; p < 3; ++p) {
        const std::string k = "prompt" + std::to_string(p);
        const auto ids = ref_->get<int32_t>(k + ".ids");
        std::vector<int64_t> ne;
        const auto want = ref_->get<float>(k + ".logits", &ne);
        ASSERT_EQ(ne, (std::vector<int64_t>{V, (int64_t)ids.size()}));
        KvCache kv(m.config(), (int)ids.size());
        std::vector<float> got(ids.size() * (size_t)V);
        m.forward({ids.data(), (int)ids.size(), 0, &kv, &pool, got.data(), true});
        double max_err = 0;
        for (size_t i = 0; i < got.size(); ++i)
            max_err = std::max(max_err, (double)std::abs(got[i] - want[i]));
        std::printf("  %s: %zu tokens, max |logit - transformers| = %.2e\n", k.c_str(), ids.size(),
                    max_err);
        EXPECT_LT(max_err, 1e-2) << k;
    }
}

TEST_F(Logits, GreedyContinuationsMatchTransformers) {
    ThreadPool pool(2);
    for (int p = 0; p < 3; ++p) {
        const std::string k = "prompt" + std::to_string(p);
        const auto want = ref_->get<int32_t>(k + ".greedy");
        EXPECT_EQ(test::greedy(*lm_->model, pool, ref_->get<int32_t>(k + ".ids"), want.size()), want)
            << k;
    }
}

TEST_F(Logits, IncrementalDecodeEqualsBatchedPrefill) {
    Model& m = *lm_->model;
    const int V = m.config().n_vocab;
    ThreadPool pool(2);
    const auto ids = ref_->get<int32_t>("prompt1.ids");
    const int n = std::min<int>(12, (int)ids.size());
    KvCache a(m.config(), n), b(m.config(), n);
    std::vector<float> batch((size_t)n * V), step((size_t)V);
    m.forward({ids.data(), n, 0, &a, &pool, batch.data(), true});
    double max_err = 0;
    for (int i = 0; i < n; ++i) {
        m.forward({&ids[(size_t)i], 1, i, &b, &pool, step.data(), false});
        for (int v = 0; v < V; ++v)
            max_err =
                std::max(max_err, (double)std::abs(step[(size_t)v] - batch[(size_t)i * V + v]));
    }
    EXPECT_LT(max_err, 1e-4);
}

TEST_F(Logits, GgufQ8_0GreedyAgreesWithBf16) {
    // Different weights (Q8_0), so only the first greedy tokens are expected to agree.
    LoadedModel q = load_model(test::tiny_gguf("Q8_0"));
    ThreadPool pool(2);
    const auto want = ref_->get<int32_t>("prompt0.greedy");
    const auto got = test::greedy(*q.model, pool, ref_->get<int32_t>("prompt0.ids"), 4);
    EXPECT_EQ(got, std::vector<int32_t>(want.begin(), want.begin() + 4));
}

}  // namespace
}  // namespace sluice
