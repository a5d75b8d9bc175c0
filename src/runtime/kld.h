#pragma once
// Distribution-level quality: KL divergence of a model's next-token distributions from a
// base's, top-1 agreement, Δ perplexity and RMS of Δp(correct token), over the scored
// positions of the perplexity windows. The base is kept as its top-k log-probabilities plus
// the remaining mass (compact enough to save for big models); KLD is computed over those
// k+1 buckets, with identical arithmetic on both sides, so a model against itself gives 0.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/perplexity.h"

namespace sluice {

struct BaseLogits {
    int k = 64;
    int n_vocab = 0;
    int n_ctx = 0, n_chunks = 0;
    uint64_t tokens_hash = 0;        // of the evaluated token sequence: comparisons must match it
    std::vector<int32_t> ids;        // [n_pos, k], most probable first
    std::vector<float> logp;         // [n_pos, k]
    std::vector<float> target_logp;  // [n_pos]
    double ppl = 0;
    size_t n_pos() const { return target_logp.size(); }

    void save(const std::string& path) const;
    static BaseLogits load(const std::string& path);  // throws Error on a bad file
};

struct KldResult {
    double kld_mean = 0, kld_median = 0, kld_p99 = 0;
    double top1_agreement = 0;  // share of positions whose argmax matches the base's
    double ppl = 0, ppl_base = 0;
    double rms_dp = 0;  // RMS of p_model(correct) - p_base(correct)
    int64_t n = 0;
};

uint64_t hash_tokens(const std::vector<int32_t>& t);

// Runs m over the windows and records its distributions as a base.
BaseLogits collect_base(Model& m, const Tokenizer& tok, ThreadPool& pool,
                        const std::vector<int32_t>& tokens, const PerplexityParams& p, int k = 64);
// Runs m over the same windows and compares with the base.
KldResult compare_to_base(const BaseLogits& base, Model& m, const Tokenizer& tok, ThreadPool& pool,
                          const std::vector<int32_t>& tokens, const PerplexityParams& p);

}  // namespace sluice
