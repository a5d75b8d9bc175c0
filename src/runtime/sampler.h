#pragma once
// Token sampling. Order: repetition penalty -> top-k -> temperature -> softmax -> top-p ->
// min-p -> draw. temp <= 0 means greedy (argmax after the penalty).
#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace sluice {

struct SamplerParams {
    float temp = 0.8f;
    int top_k = 40;               // <= 0: off
    float top_p = 0.95f;          // >= 1: off
    float min_p = 0.05f;          // <= 0: off
    float repeat_penalty = 1.0f;  // 1: off
    int repeat_last_n = 64;
    uint64_t seed = 0xC0FFEE;
};

class Sampler {
  public:
    explicit Sampler(const SamplerParams& p);
    // logits: [n_vocab]; not modified.
    int32_t sample(const float* logits, int n_vocab);
    void accept(int32_t token);  // history for the repetition penalty
    const SamplerParams& params() const { return p_; }

  private:
    SamplerParams p_;
    std::mt19937_64 rng_;
    std::deque<int32_t> recent_;
    std::vector<std::pair<float, int32_t>> cand_;
};

int32_t argmax(const float* x, int n);

}  // namespace sluice
