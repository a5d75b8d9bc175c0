#pragma once
// Forward-pass drivers shared by the golden tests: logits of a prompt (one batch, or token by
// token through the cache), their distance, and greedy continuation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace sluice::test {

// Logits at every position: [ids.size(), n_vocab]. stepwise: one decode step per token.
inline std::vector<float> logits_all(Model& m, ThreadPool& pool, const std::vector<int32_t>& ids,
                                     bool stepwise = false) {
    const size_t V = (size_t)m.config().n_vocab;
    KvCache kv(m.config(), (int)ids.size());
    std::vector<float> out(ids.size() * V);
    if (!stepwise) {
        m.forward({ids.data(), (int)ids.size(), 0, &kv, &pool, out.data(), true});
    } else {
        for (size_t t = 0; t < ids.size(); ++t)
            m.forward({&ids[t], 1, (int)t, &kv, &pool, out.data() + t * V, false});
    }
    return out;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double e = 0;
    for (size_t i = 0; i < a.size(); ++i) e = std::max(e, (double)std::abs(a[i] - b[i]));
    return e;
}

// n tokens after the prompt: one batched prefill, then one token a step through the cache.
inline std::vector<int32_t> greedy(Model& m, ThreadPool& pool, const std::vector<int32_t>& prompt,
                                   size_t n) {
    const int V = m.config().n_vocab;
    KvCache kv(m.config(), (int)(prompt.size() + n));
    std::vector<float> logits((size_t)V);
    m.forward({prompt.data(), (int)prompt.size(), 0, &kv, &pool, logits.data(), false});
    std::vector<int32_t> out;
    int pos = (int)prompt.size();
    while (out.size() < n) {
        out.push_back(argmax(logits.data(), V));
        if (out.size() < n) m.forward({&out.back(), 1, pos++, &kv, &pool, logits.data(), false});
    }
    return out;
}

}  // namespace sluice::test
