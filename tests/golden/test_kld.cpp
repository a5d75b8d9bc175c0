// eval kld: a model against itself is exactly 0; saved base logits reproduce the live base;
// a lower-precision file is measurably worse.
#include <gtest/gtest.h>

#include "common.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "runtime/kld.h"
#include "runtime/loader.h"

namespace sluice {
namespace {

TEST(Kld, SelfIsZeroSavedEqualsLiveAndQ2IsWorse) {
    LoadedModel q8 = load_model(test::tiny_gguf("Q8_0")), q2 = load_model(test::tiny_gguf("Q2_K"));
    const auto tokens =
        q8.tokenizer->encode(read_text_file(test::shared("data/wikitext-2-test.txt")), true, false);
    ThreadPool pool(2);
    const PerplexityParams pp{256, 4};
    const BaseLogits base = collect_base(*q8.model, *q8.tokenizer, pool, tokens, pp);
    EXPECT_EQ(base.n_pos(), 4u * 127u);
    const KldResult self = compare_to_base(base, *q8.model, *q8.tokenizer, pool, tokens, pp);
    EXPECT_EQ(self.kld_mean, 0.0);
    EXPECT_EQ(self.kld_p99, 0.0);
    EXPECT_EQ(self.top1_agreement, 1.0);
    EXPECT_EQ(self.ppl, self.ppl_base);

    const auto dir = test::temp_dir("kld");
    base.save((dir / "b.slgt").string());
    const BaseLogits loaded = BaseLogits::load((dir / "b.slgt").string());
    const KldResult a = compare_to_base(base, *q2.model, *q2.tokenizer, pool, tokens, pp);
    const KldResult b = compare_to_base(loaded, *q2.model, *q2.tokenizer, pool, tokens, pp);
    EXPECT_EQ(a.kld_mean, b.kld_mean);
    EXPECT_GT(a.kld_mean, 0.01);
    EXPECT_LT(a.top1_agreement, 0.95);
    EXPECT_GT(a.ppl, a.ppl_base);
    std::filesystem::remove_all(dir);
}

TEST(Kld, MismatchedTextIsAnError) {
    LoadedModel q8 = load_model(test::tiny_gguf("Q8_0"));
    auto tokens =
        q8.tokenizer->encode(read_text_file(test::shared("data/wikitext-2-test.txt")), true, false);
    ThreadPool pool(2);
    const BaseLogits base = collect_base(*q8.model, *q8.tokenizer, pool, tokens, {256, 2});
    tokens[300] = (tokens[300] + 1) % 8192;
    EXPECT_THROW(compare_to_base(base, *q8.model, *q8.tokenizer, pool, tokens, {256, 2}), Error);
}

}  // namespace
}  // namespace sluice
