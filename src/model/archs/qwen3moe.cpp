// Qwen3-MoE (HF Qwen3MoeForCausalLM, GGUF "qwen3moe") and Qwen3.5-MoE (HF
// Qwen3_5MoeForCausalLM, GGUF "qwen35moe"): pre-norm decoder layers whose token mixer is GQA
// with q/k RMSNorm and NeoX RoPE — in Qwen3.5 on a partial rotary dim and with a sigmoid
// output gate — or, in Qwen3.5's linear-attention layers (3 of every 4), Gated DeltaNet; then
// softmax-top-K routed SwiGLU experts, plus Qwen3.5's shared expert scaled by a sigmoid gate.
// The config flags (layer_linear, attn_out_gate, shexp_gated) select the differences.
#include <vector>

#include "backend/cpu/ops.h"
#include "model/blocks.h"

namespace sluice {

void forward_qwen_moe(Model& m, const ForwardArgs& a) {
    const ModelConfig& c = m.config();
    const Weights& w = m.weights();
    const int n = a.n, E = c.n_embd;
    std::vector<float> x((size_t)n * E), h((size_t)n * E), o((size_t)n * E);
    embed_tokens(w.tok_embd, a.tokens, n, x.data());
    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = w.layers[(size_t)l];
        const Lookahead ahead = lookahead(c, w, l, m.speculative_prefetch());
        prefetch_two_ahead(c, ahead, m.experts(), l, x.data(), n, *a.pool);
        rms_norm(x.data(), L.attn_norm, c.rms_eps, n, E, h.data());
        if (c.is_linear_layer(l))
            attention_deltanet(c, L, l, h.data(), n, *a.kv, m.deltanet_mode(), *a.pool, o.data());
        else
            attention_gqa(c, m.rope(), L, l, h.data(), n, a.pos0, *a.kv, *a.pool, o.data());
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
        rms_norm(x.data(), L.ffn_norm, c.rms_eps, n, E, h.data());
        moe_block(c, L, ahead, m.experts(), l, h.data(), n, *a.pool, o.data());
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    }
    output_logits(c, w, x.data(), n, a.all_logits, *a.pool, a.logits);
}

}  // namespace sluice
