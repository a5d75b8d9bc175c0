#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace sluice {

int32_t argmax(const float* x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}

void Sampler::accept(int32_t token) {
    if (p_.repeat_last_n <= 0) return;
    recent_.push_back(token);
    while ((int)recent_.size() > p_.repeat_last_n) recent_.pop_front();
}

int32_t Sampler::sample(const float* logits, int n_vocab) {
    cand_.resize((size_t)n_vocab);
    for (int i = 0; i < n_vocab; ++i) cand_[(size_t)i] = {logits[i], i};
    if (p_.repeat_penalty != 1.0f && !recent_.empty()) {
        std::unordered_set<int32_t> seen(recent_.begin(), recent_.end());
        for (int32_t t : seen) {
            if (t < 0 || t >= n_vocab) continue;
            float& l = cand_[(size_t)t].first;
            l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
        }
    }
    auto by_logit = [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (p_.temp <= 0) return std::min_element(cand_.begin(), cand_.end(), by_logit)->second;

    size_t n = cand_.size();
    if (p_.top_k > 0 && (size_t)p_.top_k < n) {
        std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
        n = (size_t)p_.top_k;
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    // Softmax over the survivors at this temperature (sorted, so [0] is the max).
    const float mx = cand_[0].first;
    std::vector<double> prob(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i)
        sum += prob[i] = std::exp((double)(cand_[i].first - mx) / p_.temp);
    for (auto& q : prob) q /= sum;
    size_t keep = n;
    if (p_.top_p < 1.0f) {
        double cum = 0;
        for (size_t i = 0; i < n; ++i) {
            cum += prob[i];
            if (cum >= p_.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (p_.min_p > 0) {
        const double floor = prob[0] * p_.min_p;
        size_t k = 1;
        while (k < keep && prob[k] >= floor) ++k;
        keep = k;
    }
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += prob[i];
    std::uniform_real_distribution<double> uni(0.0, total);
    double r = uni(rng_);
    for (size_t i = 0; i < keep; ++i) {
        r -= prob[i];
        if (r <= 0) return cand_[i].second;
    }
    return cand_[keep - 1].second;
}

}  // namespace sluice
