#pragma once
// Perplexity as llama.cpp's llama-perplexity computes it: consecutive non-overlapping
// windows of n_ctx tokens, each evaluated from an empty cache, the second half scored
// (logits at j predict token j+1 for j in [n_ctx/2, n_ctx-1)), BOS put in the first slot
// of each window only if the vocabulary says to add one.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace sluice {

struct PerplexityParams {
    int n_ctx = 256;
    int n_chunks = -1;  // <= 0: all
};

struct PerplexityResult {
    double ppl = 0;
    double nll = 0;        // mean negative log-likelihood
    int64_t n_scored = 0;  // tokens scored
    int n_chunks = 0;
    int64_t n_text_tokens = 0;
    double seconds = 0;
};

// on_position(logits [n_vocab], target) is called for every scored position, in order.
using PositionFn = std::function<void(const float* logits, int32_t target)>;

PerplexityResult perplexity(
    Model& m, const Tokenizer& tok, ThreadPool& pool, const std::vector<int32_t>& tokens,
    const PerplexityParams& p,
    const std::function<void(int chunk, int n_chunks, double ppl_so_far)>& progress = {},
    const PositionFn& on_position = {});

}  // namespace sluice
