#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "core/error.h"
#include "runtime/stop_strings.h"

namespace sluice {

GenerateResult generate(Model& m, const Tokenizer& tok, ThreadPool& pool,
                        const std::vector<int32_t>& prompt, const GenerateParams& p,
                        const std::function<void(const std::string&)>& on_text) {
    using clock = std::chrono::steady_clock;
    const ModelConfig& c = m.config();
    check(!prompt.empty(), "empty prompt: give some text or token ids");
    check(p.n_predict >= 0, "number of tokens to predict must be >= 0");
    const int n_ctx =
        p.n_ctx > 0 ? p.n_ctx
                    : std::min<int>(c.n_ctx_train, (int)prompt.size() + std::max(p.n_predict, 1));
    check((int)prompt.size() <= n_ctx, "prompt too long: " + std::to_string(prompt.size()) +
                                           " tokens exceed the context size " +
                                           std::to_string(n_ctx));
    std::optional<KvCache> own;
    if (!p.kv || p.kv->n_ctx() < n_ctx) own.emplace(c, n_ctx);
    KvCache& kv = own ? *own : *p.kv;
    Sampler sampler(p.sampling);
    for (int32_t t : prompt) sampler.accept(t);
    StreamDecoder dec(tok);
    StopMatcher stops(p.stop);
    GenerateResult r;
    r.n_prompt = (int)prompt.size();
    r.stop_reason = "length";
    std::vector<float> logits((size_t)c.n_vocab);

    const auto t0 = clock::now();
    m.forward({prompt.data(), (int)prompt.size(), 0, &kv, &pool, logits.data(), false});
    const auto t1 = clock::now();
    r.prefill_s = std::chrono::duration<double>(t1 - t0).count();
    if (p.on_prefill) p.on_prefill(1000 * r.prefill_s);
    int pos = (int)prompt.size();
    auto emit = [&](const std::string& s) {
        r.text += s;
        if (on_text && !s.empty()) on_text(s);
    };
    for (int i = 0; i < p.n_predict; ++i) {
        if (p.cancelled && p.cancelled()) {
            r.stop_reason = "cancelled";
            break;
        }
        const int32_t next = sampler.sample(logits.data(), c.n_vocab);
        sampler.accept(next);
        if (p.stop_at_eog && tok.vocab().is_eog(next)) {
            r.stop_reason = "eog";
            break;
        }
        r.tokens.push_back(next);
        emit(stops.push(dec.push(next)));
        if (stops.stopped()) {
            r.stop_reason = "stop";
            break;
        }
        if (i + 1 == p.n_predict) break;
        if (pos >= n_ctx) {
            r.stop_reason = "context";
            break;
        }
        const auto ts = clock::now();
        m.forward({&next, 1, pos, &kv, &pool, logits.data(), false});
        ++pos;
        if (p.on_token)
            p.on_token(i, std::chrono::duration<double, std::milli>(clock::now() - ts).count());
    }
    if (!stops.stopped()) emit(stops.push(dec.flush()) + stops.flush());
    r.decode_s = std::chrono::duration<double>(clock::now() - t1).count();
    return r;
}

}  // namespace sluice
