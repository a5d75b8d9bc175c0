#pragma once
// Greedy continuation shared by the golden tests.
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace sluice::test {

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
