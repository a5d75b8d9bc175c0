// Qwen3-MoE (HF Qwen3MoeForCausalLM, GGUF "qwen3moe"): pre-norm decoder layers of GQA
// attention with q/k RMSNorm and NeoX RoPE, then a softmax-top-K routed SwiGLU MoE.
#include <vector>

#include "backend/cpu/ops.h"
#include "model/blocks.h"

namespace sluice {

void forward_qwen3moe(Model& m, const ForwardArgs& a) {
    const ModelConfig& c = m.config();
    const Weights& w = m.weights();
    const int n = a.n, E = c.n_embd;
    std::vector<float> x((size_t)n * E), h((size_t)n * E), o((size_t)n * E);
    embed_tokens(w.tok_embd, a.tokens, n, x.data());
    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = w.layers[(size_t)l];
        rms_norm(x.data(), L.attn_norm, c.rms_eps, n, E, h.data());
        attention_gqa(c, m.rope(), L, l, h.data(), n, a.pos0, *a.kv, *a.pool, o.data());
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
        rms_norm(x.data(), L.ffn_norm, c.rms_eps, n, E, h.data());
        const LayerWeights* next =
            m.speculative_prefetch() && l + 1 < c.n_layer ? &w.layers[(size_t)l + 1] : nullptr;
        moe_block(c, L, next, m.experts(), l, h.data(), n, *a.pool, o.data());
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    }
    output_logits(c, w, x.data(), n, a.all_logits, *a.pool, a.logits);
}

}  // namespace sluice
