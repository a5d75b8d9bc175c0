#include "model/arch.h"

#include "core/error.h"

namespace sluice {

void forward_qwen3moe(Model& m, const ForwardArgs& a);

namespace {

const std::vector<ArchInfo>& table() {
    static const std::vector<ArchInfo> t = {
        {ArchId::Qwen3Moe,
         "qwen3moe",
         {"Qwen3MoeForCausalLM"},
         {"qwen3_moe"},
         {"token_embd.weight", "output_norm.weight", "output.weight", "blk.{l}.attn_norm.weight",
          "blk.{l}.attn_q.weight", "blk.{l}.attn_k.weight", "blk.{l}.attn_v.weight",
          "blk.{l}.attn_output.weight", "blk.{l}.attn_q_norm.weight", "blk.{l}.attn_k_norm.weight",
          "blk.{l}.ffn_norm.weight", "blk.{l}.ffn_gate_inp.weight", "blk.{l}.ffn_gate_exps.weight",
          "blk.{l}.ffn_up_exps.weight", "blk.{l}.ffn_down_exps.weight"},
         {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
          "model.layers.{l}.input_layernorm.weight", "model.layers.{l}.self_attn.q_proj.weight",
          "model.layers.{l}.self_attn.k_proj.weight", "model.layers.{l}.self_attn.v_proj.weight",
          "model.layers.{l}.self_attn.o_proj.weight", "model.layers.{l}.self_attn.q_norm.weight",
          "model.layers.{l}.self_attn.k_norm.weight",
          "model.layers.{l}.post_attention_layernorm.weight", "model.layers.{l}.mlp.gate.weight",
          "model.layers.{l}.mlp.experts.{e}.gate_proj.weight",
          "model.layers.{l}.mlp.experts.{e}.up_proj.weight",
          "model.layers.{l}.mlp.experts.{e}.down_proj.weight"},
         forward_qwen3moe},
    };
    return t;
}

}  // namespace

const ArchInfo& arch_info(ArchId id) {
    for (const auto& a : table())
        if (a.id == id) return a;
    fail("internal: unknown ArchId");
}

const ArchInfo* arch_by_gguf_name(const std::string& name) {
    for (const auto& a : table())
        if (name == a.gguf_name) return &a;
    return nullptr;
}

const ArchInfo* arch_by_hf_name(const std::string& architecture, const std::string& model_type) {
    for (const auto& a : table()) {
        for (const auto& n : a.hf_architectures)
            if (n == architecture) return &a;
        for (const auto& n : a.hf_model_types)
            if (n == model_type) return &a;
    }
    return nullptr;
}

std::string supported_arch_names() {
    std::string s;
    for (const auto& a : table()) s += (s.empty() ? "" : ", ") + std::string(a.gguf_name);
    return s;
}

std::string tensor_name(const char* pattern, int layer, int expert) {
    std::string s(pattern);
    auto rep = [&](const std::string& key, int v) {
        for (size_t p; (p = s.find(key)) != std::string::npos;)
            s.replace(p, key.size(), std::to_string(v));
    };
    rep("{l}", layer);
    if (expert >= 0) rep("{e}", expert);
    return s;
}

}  // namespace sluice
