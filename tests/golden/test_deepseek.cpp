// DeepSeek-V3 architecture (MLA, sigmoid group-limited routing, shared experts, YaRN) vs
// transformers 5.17 on random-weight models: ../shared/models/random-deepseek-v3 (HF dir and
// the GGUF llama.cpp's converter made of it) and tests/fixtures/* (tools/make_reference.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common.h"
#include "greedy.h"
#include "core/error.h"
#include "formats/gguf_writer.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace sluice {
namespace {

// The shared GGUF rewritten the way llama.cpp wrote deepseek2 files before it split kv_b:
// one attn_kv_b per layer and per-head key/value lengths in the plain keys.
std::string old_layout_gguf() {
    static const std::string path = [] {
        const GGUFFile g = read_gguf(test::shared("models/random-deepseek-v3.gguf"));
        const TensorIndex& ix = g.index;
        TensorFiles files(ix);
        const int H = (int)*g.get_uint("deepseek2.attention.head_count");
        const int kr = (int)*g.get_uint("deepseek2.attention.kv_lora_rank");
        const int hd = (int)*g.get_uint("deepseek2.attention.key_length_mla");
        const int vd = (int)*g.get_uint("deepseek2.attention.value_length_mla");
        const int nope = hd - (int)*g.get_uint("deepseek2.rope.dimension_count");
        GGUFWriter w;
        for (const auto& [k, v] : g.meta)
            if (k.find("_mla") == std::string::npos && k != "deepseek2.attention.key_length" &&
                k != "deepseek2.attention.value_length" &&
                k != "deepseek2.attention.head_count_kv")
                w.set(k, v);
        w.set_u32("deepseek2.attention.key_length", (uint32_t)hd);
        w.set_u32("deepseek2.attention.value_length", (uint32_t)vd);
        w.set_u32("deepseek2.attention.head_count_kv", (uint32_t)H);
        static std::vector<std::vector<float>> keep;
        for (const TensorInfo& t : ix.tensors) {
            EXPECT_EQ(t.dtype, DType::F32);
            const float* src = (const float*)files.view(t).data;
            if (t.name.find("attn_v_b") != std::string::npos) continue;
            if (t.name.find("attn_k_b") == std::string::npos) {
                w.add_tensor(t.name, t.dtype, t.ne, src);
                continue;
            }
            const std::string vname =
                t.name.substr(0, t.name.find("attn_k_b")) + "attn_v_b.weight";
            const float* vb = (const float*)files.view(ix.get(vname)).data;
            std::vector<float>& kvb = keep.emplace_back((size_t)H * (nope + vd) * kr);
            for (int h = 0; h < H; ++h)
                for (int r = 0; r < kr; ++r) {
                    for (int i = 0; i < nope; ++i)
                        kvb[((size_t)h * (nope + vd) + i) * kr + r] =
                            src[((size_t)h * kr + r) * nope + i];
                    for (int j = 0; j < vd; ++j)
                        kvb[((size_t)h * (nope + vd) + nope + j) * kr + r] =
                            vb[((size_t)h * vd + j) * kr + r];
                }
            w.add_tensor(t.name.substr(0, t.name.find("attn_k_b")) + "attn_kv_b.weight",
                         DType::F32, {kr, (int64_t)H * (nope + vd)}, kvb.data());
        }
        const std::string out = (test::temp_dir("deepseek") / "old-kv_b.gguf").string();
        w.write(out);
        return out;
    }();
    return path;
}

struct Case {
    const char* name;
    std::string model;      // HF directory or GGUF
    std::string reference;  // reference.safetensors
};

std::vector<Case> cases() {
    const std::string shared_ref = test::shared("models/random-deepseek-v3/reference.safetensors");
    std::vector<Case> v = {
        {"shared-hf", test::shared("models/random-deepseek-v3"), shared_ref},
        {"shared-gguf", test::shared("models/random-deepseek-v3.gguf"), shared_ref},
        {"shared-gguf-kv_b", "", shared_ref},
    };
    for (const char* f :
         {"dsv3-groups", "dsv3-noqlora-yarn", "kimi-k2-yarn", "dsv3-nointerleave", "dsv3-fp8"})
        v.push_back({f, test::fixture(f), test::fixture(f) + "/reference.safetensors"});
    return v;
}

class DeepSeek : public ::testing::TestWithParam<Case> {};

TEST_P(DeepSeek, LogitsAndGreedyMatchTransformers) {
    Case c = GetParam();
    if (c.model.empty()) c.model = old_layout_gguf();
    auto m = Model::open(c.model);
    ASSERT_EQ(m->config().arch, ArchId::DeepSeek2);
    const test::RefFile ref(c.reference);
    ThreadPool pool(2);
    for (int p = 0; ref.index.find("prompt" + std::to_string(p) + ".ids"); ++p) {
        const std::string k = "prompt" + std::to_string(p);
        const auto ids = ref.get<int32_t>(k + ".ids");
        const auto want = ref.get<float>(k + ".logits");
        m->set_mla_mode(MlaMode::Expanded);
        const auto expanded = test::logits_all(*m, pool, ids);
        m->set_mla_mode(MlaMode::Absorbed);
        const auto absorbed = test::logits_all(*m, pool, ids);
        const auto stepwise = test::logits_all(*m, pool, ids, /*stepwise=*/true);
        const double e_exp = test::max_abs_diff(expanded, want), e_abs = test::max_abs_diff(absorbed, want);
        const double e_step = test::max_abs_diff(stepwise, want);
        std::printf("  %s %s: %zu tokens, max |logit - transformers|: expanded %.2e, absorbed "
                    "%.2e, decode steps %.2e; expanded vs absorbed %.2e\n",
                    c.name, k.c_str(), ids.size(), e_exp, e_abs, e_step,
                    test::max_abs_diff(expanded, absorbed));
        // The issue asks for 1e-3; float32 agreement here is ~3e-6, so hold a tighter line.
        EXPECT_LT(e_exp, 1e-4) << k;
        EXPECT_LT(e_abs, 1e-4) << k;
        EXPECT_LT(e_step, 1e-4) << k;
        EXPECT_LT(test::max_abs_diff(expanded, absorbed), 1e-4) << k;
        m->set_mla_mode(MlaMode::Auto);
        const auto want_greedy = ref.get<int32_t>(k + ".greedy");
        EXPECT_EQ(test::greedy(*m, pool, ids, want_greedy.size()), want_greedy) << k;
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DeepSeek, ::testing::ValuesIn(cases()), test::ParamName());

TEST(DeepSeekConfig, ReadsMlaRoutingAndYarnFromBothFormats) {
    auto hf = Model::open(test::fixture("dsv3-noqlora-yarn"));
    const ModelConfig& c = hf->config();
    EXPECT_EQ(c.q_lora_rank, 0);
    EXPECT_EQ(c.kv_lora_rank, 32);
    EXPECT_EQ(c.qk_nope, 16);
    EXPECT_EQ(c.n_rot, 8);
    EXPECT_EQ(c.v_head_dim, 24);
    EXPECT_EQ(c.n_dense_lead, 2);
    EXPECT_EQ(c.n_ff_shexp, 64);
    EXPECT_EQ(c.n_group, 2);
    EXPECT_EQ(c.topk_group, 1);
    EXPECT_FALSE(c.norm_topk_prob);
    EXPECT_EQ(c.gating, Gating::Sigmoid);
    EXPECT_TRUE(c.rope.yarn);
    EXPECT_FLOAT_EQ(c.rope.factor, 40.f);
    // 1/sqrt(24) * (0.1 ln 40 + 1)^2
    EXPECT_NEAR(c.attn_scale(), 1.0 / std::sqrt(24.0) * std::pow(0.1 * std::log(40.0) + 1, 2),
                1e-6);
    auto gg = Model::open(test::shared("models/random-deepseek-v3.gguf"));
    EXPECT_EQ(gg->config().head_dim, 32);  // key_length_mla, not the latent key_length 48
    EXPECT_EQ(gg->config().v_head_dim, 16);
    EXPECT_EQ(gg->config().gating, Gating::Sigmoid);  // no gating key, but a routing bias
    EXPECT_EQ(gg->config().n_ff_shexp, 64);
}

TEST(DeepSeekConfig, ExpertsPerTokenLimitedToTheGroupsUsed) {
    auto m = Model::open(test::fixture("dsv3-noqlora-yarn"));  // 16 experts, 2 groups, 1 used
    m->set_experts_per_token(8);
    EXPECT_THROW(m->set_experts_per_token(9), Error);
}

TEST(DeepSeekConfig, LatentCacheIsKvLoraPlusRopePerLayer) {
    auto m = Model::open(test::fixture("dsv3-groups"));
    const ModelConfig& c = m->config();
    EXPECT_EQ(KvCache::bytes_for(c, 100), 100ull * c.n_layer * (32 + 8) * sizeof(float));
}

}  // namespace
}  // namespace sluice
