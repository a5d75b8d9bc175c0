#include <gtest/gtest.h>

#include <map>

#include "runtime/sampler.h"

namespace sluice {
namespace {

TEST(Sampler, GreedyPicksArgmax) {
    const float l[] = {0.1f, 3.0f, -1.0f, 2.9f};
    Sampler s({0.0f, 40, 0.95f, 0.05f, 1.0f, 64, 1});
    EXPECT_EQ(s.sample(l, 4), 1);
}

TEST(Sampler, SameSeedSameSequence) {
    std::vector<float> l(100);
    for (int i = 0; i < 100; ++i) l[(size_t)i] = (float)(i % 7) * 0.3f;
    SamplerParams p{1.0f, 0, 1.0f, 0.0f, 1.0f, 64, 1234};
    Sampler a(p), b(p);
    std::vector<int32_t> sa, sb;
    for (int i = 0; i < 50; ++i)
        sa.push_back(a.sample(l.data(), 100)), sb.push_back(b.sample(l.data(), 100));
    EXPECT_EQ(sa, sb);
    p.seed = 99;
    Sampler c(p);
    std::vector<int32_t> sc;
    for (int i = 0; i < 50; ++i) sc.push_back(c.sample(l.data(), 100));
    EXPECT_NE(sa, sc);
}

TEST(Sampler, TopKAndTopPAndMinPRestrictTheSupport) {
    const float l[] = {5.0f, 4.0f, 1.0f, 0.0f, -1.0f};
    auto support = [&](SamplerParams p) {
        Sampler s(p);
        std::map<int, int> seen;
        for (int i = 0; i < 2000; ++i) seen[s.sample(l, 5)]++;
        return seen;
    };
    EXPECT_EQ(support({1.0f, 2, 1.0f, 0.0f, 1.0f, 64, 1}).size(), 2u);  // top-k 2
    EXPECT_EQ(support({1.0f, 0, 0.5f, 0.0f, 1.0f, 64, 1}).size(), 1u);  // p(0) = 0.71 > 0.5
    EXPECT_EQ(support({1.0f, 0, 1.0f, 0.3f, 1.0f, 64, 1}).size(), 2u);  // p1/p0 = 0.37 >= 0.3
    EXPECT_EQ(support({1.0f, 0, 1.0f, 0.0f, 1.0f, 64, 1}).size(), 5u);
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
    const float l[] = {2.0f, 1.9f};
    Sampler s({0.0f, 0, 1.0f, 0.0f, 1.5f, 64, 1});
    EXPECT_EQ(s.sample(l, 2), 0);
    s.accept(0);
    EXPECT_EQ(s.sample(l, 2), 1);  // 2.0/1.5 < 1.9
}

}  // namespace
}  // namespace sluice
