#include "runtime/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace sluice {

PerplexityResult perplexity(Model& m, const Tokenizer& tok, ThreadPool& pool,
                            const std::vector<int32_t>& tokens, const PerplexityParams& p,
                            const std::function<void(int, int, double)>& progress,
                            const PositionFn& on_position) {
    const auto t0 = std::chrono::steady_clock::now();
    const int n_ctx = p.n_ctx;
    check(n_ctx >= 4 && n_ctx % 2 == 0, "--ctx must be an even number >= 4");
    check((int64_t)tokens.size() >= 2 * (int64_t)n_ctx,
          "the text has " + std::to_string(tokens.size()) +
              " tokens; perplexity with a context of " + std::to_string(n_ctx) +
              " needs at least " + std::to_string(2 * n_ctx));
    const int max_chunks = (int)(tokens.size() / (size_t)n_ctx);
    const int n_chunks = p.n_chunks > 0 ? std::min(p.n_chunks, max_chunks) : max_chunks;
    const int V = m.config().n_vocab;
    const Vocab& voc = tok.vocab();
    const bool add_bos = voc.add_bos && voc.bos >= 0;
    KvCache kv(m.config(), n_ctx);
    std::vector<float> logits((size_t)n_ctx * V);
    std::vector<int32_t> batch((size_t)n_ctx);
    const int first = n_ctx / 2;
    PerplexityResult r;
    r.n_text_tokens = (int64_t)tokens.size();
    double nll = 0;
    for (int ch = 0; ch < n_chunks; ++ch) {
        const size_t start = (size_t)ch * (size_t)n_ctx;
        std::copy(tokens.begin() + (ptrdiff_t)start,
                  tokens.begin() + (ptrdiff_t)(start + (size_t)n_ctx), batch.begin());
        if (add_bos) batch[0] = voc.bos;
        m.forward({batch.data(), n_ctx, 0, &kv, &pool, logits.data(), true});
        for (int j = first; j < n_ctx - 1; ++j) {
            const float* l = logits.data() + (size_t)j * V;
            const float mx = *std::max_element(l, l + V);
            double sum = 0;
            for (int k = 0; k < V; ++k) sum += std::exp((double)(l[k] - mx));
            const int32_t target = tokens[start + (size_t)j + 1];
            nll += -((double)(l[target] - mx) - std::log(sum));
            if (on_position) on_position(l, target);
            ++r.n_scored;
        }
        if (progress) progress(ch + 1, n_chunks, std::exp(nll / (double)r.n_scored));
    }
    r.n_chunks = n_chunks;
    r.nll = nll / (double)r.n_scored;
    r.ppl = std::exp(r.nll);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace sluice
