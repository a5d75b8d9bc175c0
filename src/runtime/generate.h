#pragma once
// Prompt -> batched prefill -> token-by-token decode with sampling, streaming text out.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace sluice {

struct GenerateParams {
    int n_predict = 64;
    int n_ctx = 0;  // 0: prompt + n_predict, capped by the model's trained context
    SamplerParams sampling;
    bool stop_at_eog = true;
    std::vector<std::string> stop;                       // stop strings (may span tokens)
    std::function<bool()> cancelled;                     // polled every token
    std::function<void(double ms)> on_prefill;           // after the prompt's forward pass
    std::function<void(int index, double ms)> on_token;  // after each decode step
    KvCache* kv = nullptr;  // reuse this cache (>= n_ctx positions) instead of allocating one
};

struct GenerateResult {
    std::vector<int32_t> tokens;  // generated ids (without the prompt)
    std::string text;
    int n_prompt = 0;
    double prefill_s = 0, decode_s = 0;
    std::string stop_reason;  // "eog", "stop" (a stop string), "length", "context", "cancelled"

    double prefill_tok_s() const { return prefill_s > 0 ? n_prompt / prefill_s : 0; }
    // The first token comes from prefill logits, so decode covers tokens.size() - 1 steps.
    double decode_tok_s() const {
        return decode_s > 0 && tokens.size() > 1 ? (double)(tokens.size() - 1) / decode_s : 0;
    }
};

GenerateResult generate(Model& m, const Tokenizer& tok, ThreadPool& pool,
                        const std::vector<int32_t>& prompt, const GenerateParams& p,
                        const std::function<void(const std::string&)>& on_text = {});

}  // namespace sluice
