#include "model/arch.h"

#include "core/error.h"

namespace sluice {

void forward_qwen_moe(Model& m, const ForwardArgs& a);  // qwen3moe and qwen35moe
void forward_deepseek2(Model& m, const ForwardArgs& a);

namespace {

using R = TensorRole;

const std::vector<ArchInfo>& table() {
    static const std::vector<ArchInfo> t = {
        {ArchId::Qwen3Moe,
         "qwen3moe",
         {"Qwen3MoeForCausalLM"},
         {"qwen3_moe"},
         {{R::TokEmbd, "token_embd.weight", "model.embed_tokens.weight"},
          {R::OutputNorm, "output_norm.weight", "model.norm.weight"},
          {R::Output, "output.weight", "lm_head.weight"},
          {R::AttnNorm, "blk.{l}.attn_norm.weight", "model.layers.{l}.input_layernorm.weight"},
          {R::AttnQ, "blk.{l}.attn_q.weight", "model.layers.{l}.self_attn.q_proj.weight"},
          {R::AttnK, "blk.{l}.attn_k.weight", "model.layers.{l}.self_attn.k_proj.weight"},
          {R::AttnV, "blk.{l}.attn_v.weight", "model.layers.{l}.self_attn.v_proj.weight"},
          {R::AttnOut, "blk.{l}.attn_output.weight", "model.layers.{l}.self_attn.o_proj.weight"},
          {R::AttnQNorm, "blk.{l}.attn_q_norm.weight", "model.layers.{l}.self_attn.q_norm.weight"},
          {R::AttnKNorm, "blk.{l}.attn_k_norm.weight", "model.layers.{l}.self_attn.k_norm.weight"},
          {R::FfnNorm, "blk.{l}.ffn_norm.weight",
           "model.layers.{l}.post_attention_layernorm.weight"},
          {R::FfnRouter, "blk.{l}.ffn_gate_inp.weight", "model.layers.{l}.mlp.gate.weight"},
          {R::ExpGate, "blk.{l}.ffn_gate_exps.weight",
           "model.layers.{l}.mlp.experts.{e}.gate_proj.weight"},
          {R::ExpUp, "blk.{l}.ffn_up_exps.weight", "model.layers.{l}.mlp.experts.{e}.up_proj.weight"},
          {R::ExpDown, "blk.{l}.ffn_down_exps.weight",
           "model.layers.{l}.mlp.experts.{e}.down_proj.weight"}},
         forward_qwen_moe},
        // DeepSeek-V3 / R1 / Kimi K2 (HF DeepseekV3ForCausalLM; llama.cpp "deepseek2").
        {ArchId::DeepSeek2,
         "deepseek2",
         {"DeepseekV3ForCausalLM"},
         {"deepseek_v3", "kimi_k2"},
         {{R::TokEmbd, "token_embd.weight", "model.embed_tokens.weight"},
          {R::OutputNorm, "output_norm.weight", "model.norm.weight"},
          {R::Output, "output.weight", "lm_head.weight"},
          {R::AttnNorm, "blk.{l}.attn_norm.weight", "model.layers.{l}.input_layernorm.weight"},
          {R::AttnQ, "blk.{l}.attn_q.weight", "model.layers.{l}.self_attn.q_proj.weight"},
          {R::AttnQA, "blk.{l}.attn_q_a.weight", "model.layers.{l}.self_attn.q_a_proj.weight"},
          {R::AttnQANorm, "blk.{l}.attn_q_a_norm.weight",
           "model.layers.{l}.self_attn.q_a_layernorm.weight"},
          {R::AttnQB, "blk.{l}.attn_q_b.weight", "model.layers.{l}.self_attn.q_b_proj.weight"},
          {R::AttnKvA, "blk.{l}.attn_kv_a_mqa.weight",
           "model.layers.{l}.self_attn.kv_a_proj_with_mqa.weight"},
          {R::AttnKvANorm, "blk.{l}.attn_kv_a_norm.weight",
           "model.layers.{l}.self_attn.kv_a_layernorm.weight"},
          {R::AttnKvB, "blk.{l}.attn_kv_b.weight", "model.layers.{l}.self_attn.kv_b_proj.weight"},
          {R::AttnKB, "blk.{l}.attn_k_b.weight", nullptr},
          {R::AttnVB, "blk.{l}.attn_v_b.weight", nullptr},
          {R::AttnOut, "blk.{l}.attn_output.weight", "model.layers.{l}.self_attn.o_proj.weight"},
          {R::FfnNorm, "blk.{l}.ffn_norm.weight",
           "model.layers.{l}.post_attention_layernorm.weight"},
          {R::FfnGate, "blk.{l}.ffn_gate.weight", "model.layers.{l}.mlp.gate_proj.weight"},
          {R::FfnUp, "blk.{l}.ffn_up.weight", "model.layers.{l}.mlp.up_proj.weight"},
          {R::FfnDown, "blk.{l}.ffn_down.weight", "model.layers.{l}.mlp.down_proj.weight"},
          {R::FfnRouter, "blk.{l}.ffn_gate_inp.weight", "model.layers.{l}.mlp.gate.weight"},
          {R::ExpProbsBias, "blk.{l}.exp_probs_b.bias",
           "model.layers.{l}.mlp.gate.e_score_correction_bias"},
          {R::ExpGate, "blk.{l}.ffn_gate_exps.weight",
           "model.layers.{l}.mlp.experts.{e}.gate_proj.weight"},
          {R::ExpUp, "blk.{l}.ffn_up_exps.weight", "model.layers.{l}.mlp.experts.{e}.up_proj.weight"},
          {R::ExpDown, "blk.{l}.ffn_down_exps.weight",
           "model.layers.{l}.mlp.experts.{e}.down_proj.weight"},
          {R::ShexpGate, "blk.{l}.ffn_gate_shexp.weight",
           "model.layers.{l}.mlp.shared_experts.gate_proj.weight"},
          {R::ShexpUp, "blk.{l}.ffn_up_shexp.weight",
           "model.layers.{l}.mlp.shared_experts.up_proj.weight"},
          {R::ShexpDown, "blk.{l}.ffn_down_shexp.weight",
           "model.layers.{l}.mlp.shared_experts.down_proj.weight"}},
         forward_deepseek2},
        // Qwen3.5-MoE (HF Qwen3_5MoeForCausalLM; llama.cpp "qwen35moe"): 3 Gated DeltaNet
        // layers : 1 gated-attention layer. HF norms are zero-centred (1 + w).
        {ArchId::Qwen35Moe,
         "qwen35moe",
         {"Qwen3_5MoeForCausalLM", "Qwen3_5MoeForConditionalGeneration"},
         {"qwen3_5_moe_text", "qwen3_5_moe"},
         {{R::TokEmbd, "token_embd.weight", "model.embed_tokens.weight"},
          {R::OutputNorm, "output_norm.weight", "model.norm.weight", HfFix::PlusOne},
          {R::Output, "output.weight", "lm_head.weight"},
          {R::AttnNorm, "blk.{l}.attn_norm.weight", "model.layers.{l}.input_layernorm.weight",
           HfFix::PlusOne},
          {R::AttnQ, "blk.{l}.attn_q.weight", "model.layers.{l}.self_attn.q_proj.weight"},
          {R::AttnK, "blk.{l}.attn_k.weight", "model.layers.{l}.self_attn.k_proj.weight"},
          {R::AttnV, "blk.{l}.attn_v.weight", "model.layers.{l}.self_attn.v_proj.weight"},
          {R::AttnOut, "blk.{l}.attn_output.weight", "model.layers.{l}.self_attn.o_proj.weight"},
          {R::AttnQNorm, "blk.{l}.attn_q_norm.weight", "model.layers.{l}.self_attn.q_norm.weight",
           HfFix::PlusOne},
          {R::AttnKNorm, "blk.{l}.attn_k_norm.weight", "model.layers.{l}.self_attn.k_norm.weight",
           HfFix::PlusOne},
          {R::SsmQkv, "blk.{l}.attn_qkv.weight", "model.layers.{l}.linear_attn.in_proj_qkv.weight"},
          {R::SsmZ, "blk.{l}.attn_gate.weight", "model.layers.{l}.linear_attn.in_proj_z.weight"},
          {R::SsmBeta, "blk.{l}.ssm_beta.weight", "model.layers.{l}.linear_attn.in_proj_b.weight"},
          {R::SsmAlpha, "blk.{l}.ssm_alpha.weight",
           "model.layers.{l}.linear_attn.in_proj_a.weight"},
          {R::SsmA, "blk.{l}.ssm_a", "model.layers.{l}.linear_attn.A_log", HfFix::NegExp},
          {R::SsmDtBias, "blk.{l}.ssm_dt.bias", "model.layers.{l}.linear_attn.dt_bias"},
          {R::SsmConv, "blk.{l}.ssm_conv1d.weight", "model.layers.{l}.linear_attn.conv1d.weight"},
          {R::SsmNorm, "blk.{l}.ssm_norm.weight", "model.layers.{l}.linear_attn.norm.weight"},
          {R::SsmOut, "blk.{l}.ssm_out.weight", "model.layers.{l}.linear_attn.out_proj.weight"},
          {R::FfnNorm, "blk.{l}.post_attention_norm.weight",
           "model.layers.{l}.post_attention_layernorm.weight", HfFix::PlusOne},
          {R::FfnRouter, "blk.{l}.ffn_gate_inp.weight", "model.layers.{l}.mlp.gate.weight"},
          {R::ExpGate, "blk.{l}.ffn_gate_exps.weight",
           "model.layers.{l}.mlp.experts.{e}.gate_proj.weight"},
          {R::ExpUp, "blk.{l}.ffn_up_exps.weight", "model.layers.{l}.mlp.experts.{e}.up_proj.weight"},
          {R::ExpDown, "blk.{l}.ffn_down_exps.weight",
           "model.layers.{l}.mlp.experts.{e}.down_proj.weight"},
          {R::ShexpGate, "blk.{l}.ffn_gate_shexp.weight",
           "model.layers.{l}.mlp.shared_expert.gate_proj.weight"},
          {R::ShexpUp, "blk.{l}.ffn_up_shexp.weight",
           "model.layers.{l}.mlp.shared_expert.up_proj.weight"},
          {R::ShexpDown, "blk.{l}.ffn_down_shexp.weight",
           "model.layers.{l}.mlp.shared_expert.down_proj.weight"},
          {R::ShexpGateInp, "blk.{l}.ffn_gate_inp_shexp.weight",
           "model.layers.{l}.mlp.shared_expert_gate.weight"}},
         forward_qwen_moe},
    };
    return t;
}

}  // namespace

const char* ArchInfo::name(TensorRole role, bool hf) const {
    for (const RoleNames& n : names)
        if (n.role == role) return hf ? n.hf : n.gguf;
    return nullptr;
}

HfFix ArchInfo::hf_fix(TensorRole role) const {
    for (const RoleNames& n : names)
        if (n.role == role) return n.hf_fix;
    return HfFix::None;
}

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
