// DeepSeek-V3 / R1 / Kimi K2 (HF DeepseekV3ForCausalLM, GGUF "deepseek2"): pre-norm layers
// of multi-head latent attention, then a dense SwiGLU FFN (the first n_dense_lead layers) or
// sigmoid-scored, group-limited routed experts plus always-on shared experts.
#include <vector>

#include "backend/cpu/ops.h"
#include "model/blocks.h"

namespace sluice {

namespace {
// Expanding K/V costs a matmul over every cached position; it pays off once a batch has
// enough queries to share it.
constexpr int kExpandFromTokens = 32;
}  // namespace

void forward_deepseek2(Model& m, const ForwardArgs& a) {
    const ModelConfig& c = m.config();
    const Weights& w = m.weights();
    const int n = a.n, E = c.n_embd;
    const bool expanded = m.mla_mode() == MlaMode::Expanded ||
                          (m.mla_mode() == MlaMode::Auto && n >= kExpandFromTokens);
    std::vector<float> x((size_t)n * E), h((size_t)n * E), o((size_t)n * E);
    embed_tokens(w.tok_embd, a.tokens, n, x.data());
    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = w.layers[(size_t)l];
        const Lookahead ahead = lookahead(c, w, l, m.speculative_prefetch());
        prefetch_two_ahead(c, ahead, m.experts(), l, x.data(), n, *a.pool);
        rms_norm(x.data(), L.attn_norm, c.rms_eps, n, E, h.data());
        attention_mla(c, m.rope(), L, l, h.data(), n, a.pos0, *a.kv, expanded, *a.pool, o.data());
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
        rms_norm(x.data(), L.ffn_norm, c.rms_eps, n, E, h.data());
        if (c.is_moe_layer(l)) {
            moe_block(c, L, ahead, m.experts(), l, h.data(), n, *a.pool, o.data());
        } else {
            ffn_swiglu(*a.pool, L.ffn_gate, L.ffn_up, L.ffn_down, h.data(), n, o.data());
        }
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    }
    output_logits(c, w, x.data(), n, a.all_logits, *a.pool, a.logits);
}

}  // namespace sluice
