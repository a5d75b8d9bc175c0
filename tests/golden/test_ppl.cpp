// Perplexity on WikiText-2 (256 windows of 256 tokens) vs llama.cpp's llama-perplexity
// figures in ../shared/README.md; within 0.5%.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "common.h"
#include "convert/gguf_export.h"
#include "io/mapped_file.h"
#include "runtime/loader.h"
#include "runtime/perplexity.h"

namespace sluice {
namespace {

struct PplCase {
    std::string name, path;
    int k;  // experts per token, 0 = model default
    double want;
};

class Ppl : public ::testing::TestWithParam<PplCase> {};

TEST_P(Ppl, MatchesLlamaCpp) {
    const PplCase& c = GetParam();
    LoadedModel lm = load_model(c.path);
    if (c.k) lm.model->set_experts_per_token(c.k);
    const std::string text = read_text_file(test::shared("data/wikitext-2-test.txt"));
    const auto tokens = lm.tokenizer->encode(text, true, false);
    ThreadPool pool(2);
    const PerplexityResult r = perplexity(*lm.model, *lm.tokenizer, pool, tokens, {256, 256});
    std::printf("  %s: ppl %.4f (llama.cpp %.2f, %+.3f%%) over %lld tokens in %.1f s\n",
                c.name.c_str(), r.ppl, c.want, 100 * (r.ppl / c.want - 1), (long long)r.n_scored,
                r.seconds);
    EXPECT_EQ(r.n_chunks, 256);
    EXPECT_EQ(r.n_scored, 256 * 127);
    EXPECT_NEAR(r.ppl, c.want, 0.005 * c.want);
}

INSTANTIATE_TEST_SUITE_P(Wikitext, Ppl,
                         ::testing::Values(PplCase{"Q8_0", test::tiny_gguf("Q8_0"), 0, 103.22},
                                           PplCase{"Q4_K_M", test::tiny_gguf("Q4_K_M"), 0, 105.64},
                                           PplCase{"Q2_K", test::tiny_gguf("Q2_K"), 0, 110.63},
                                           PplCase{"bf16_K1", test::tiny_hf(), 1, 154.77},
                                           PplCase{"bf16_K2", test::tiny_hf(), 2, 115.69},
                                           PplCase{"bf16_K3", test::tiny_hf(), 3, 106.71},
                                           PplCase{"bf16_K8", test::tiny_hf(), 8, 102.28}),
                         [](const auto& info) { return info.param.name; });

// `sluice quantize --experts TYPE` of the bf16 model against llama.cpp's files of that type:
// no worse than 1% (issue 9). Our files keep the dense weights at bf16; docs/quality.md also
// has every tensor quantized.
TEST(QuantizedByUs, ExpertsQ4KAndQ2KWithinOnePercentOfLlamaCpp) {
    const std::string text = read_text_file(test::shared("data/wikitext-2-test.txt"));
    for (const auto& [type, want] : {std::pair{DType::Q4_K, 105.64}, std::pair{DType::Q2_K, 110.63}}) {
        const std::string out =
            (test::temp_dir("quantize") / (std::string(dtype_name(type)) + ".gguf")).string();
        ExportOptions o;
        o.types.experts = type;
        o.threads = 2;
        const auto reports = export_gguf(test::tiny_hf(), out, o);
        int n_quant = 0;
        for (const auto& r : reports)
            if (r.name.find("_exps.") != std::string::npos) {
                EXPECT_EQ(r.type, type) << r.name;
                EXPECT_GT(r.rel_err, 0.0) << r.name;
                ++n_quant;
            } else {
                EXPECT_TRUE(r.type == DType::F32 || r.type == DType::BF16) << r.name;
            }
        EXPECT_EQ(n_quant, 6 * 3);
        LoadedModel lm = load_model(out);
        const auto tokens = lm.tokenizer->encode(text, true, false);
        ThreadPool pool(2);
        const PerplexityResult r = perplexity(*lm.model, *lm.tokenizer, pool, tokens, {256, 256});
        std::printf("  experts %s: ppl %.4f (llama.cpp's file %.2f, %+.3f%%)\n", dtype_name(type),
                    r.ppl, want, 100 * (r.ppl / want - 1));
        EXPECT_LE(r.ppl, want * 1.01);
    }
}

}  // namespace
}  // namespace sluice
