// GGUF metadata as llama.cpp's convert_hf_to_gguf.py writes it; the inverse of
// config_from_gguf (model/config.cpp) and load_vocab_gguf (tokenizer/vocab.cpp).
#include "convert/gguf_export.h"
#include "core/error.h"
#include "formats/gguf_writer.h"
#include "model/config.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab.h"

namespace sluice {

void write_config_meta(const ModelConfig& c, GGUFWriter& w) {
    const std::string a = c.arch_name, p = a + ".";
    auto u32 = [&](const std::string& k, int v) { w.set_u32(p + k, (uint32_t)v); };
    w.set_str("general.architecture", a);
    u32("block_count", c.n_layer);
    u32("context_length", c.n_ctx_train);
    u32("embedding_length", c.n_embd);
    u32("vocab_size", c.n_vocab);
    if (c.n_ff > 0) u32("feed_forward_length", c.n_ff);
    u32("attention.head_count", c.n_head);
    u32("attention.head_count_kv", c.n_head_kv);
    u32("attention.key_length", c.head_dim);
    u32("attention.value_length", c.v_head_dim);
    w.set_f32(p + "attention.layer_norm_rms_epsilon", c.rms_eps);
    w.set_f32(p + "rope.freq_base", c.rope.theta);
    if (c.n_rot != c.head_dim) u32("rope.dimension_count", c.n_rot);
    u32("expert_count", c.n_expert);
    u32("expert_used_count", c.n_expert_used_trained);
    u32("expert_feed_forward_length", c.n_ff_exp);
    if (!c.norm_topk_prob) w.set_bool(p + "expert_weights_norm", false);
    if (c.arch == ArchId::DeepSeek2) {
        // llama.cpp describes the latent cache as one KV head; per-head sizes go to "*_mla".
        u32("attention.head_count_kv", 1);
        u32("attention.key_length", c.kv_lora_rank + c.n_rot);
        u32("attention.value_length", c.kv_lora_rank);
        u32("attention.key_length_mla", c.head_dim);
        u32("attention.value_length_mla", c.v_head_dim);
        u32("rope.dimension_count", c.n_rot);
        if (c.q_lora_rank > 0) u32("attention.q_lora_rank", c.q_lora_rank);
        u32("attention.kv_lora_rank", c.kv_lora_rank);
        u32("leading_dense_block_count", c.n_dense_lead);
        if (c.n_ff_shexp > 0) u32("expert_shared_count", c.n_ff_shexp / c.n_ff_exp);
        w.set_f32(p + "expert_weights_scale", c.routed_scale);
        w.set_bool(p + "expert_weights_norm", c.norm_topk_prob);
        u32("expert_group_count", c.n_group);
        u32("expert_group_used_count", c.topk_group);
        u32("expert_gating_func", c.gating == Gating::Sigmoid ? 2 : 1);
        if (c.rope.yarn) {
            w.set_str(p + "rope.scaling.type", "yarn");
            w.set_f32(p + "rope.scaling.factor", c.rope.factor);
            u32("rope.scaling.original_context_length", c.rope.orig_ctx);
            w.set_f32(p + "rope.scaling.yarn_beta_fast", c.rope.beta_fast);
            w.set_f32(p + "rope.scaling.yarn_beta_slow", c.rope.beta_slow);
            w.set_f32(p + "rope.scaling.yarn_log_multiplier", 0.1f * c.rope.mscale_all_dim);
        }
    }
    if (c.arch == ArchId::Qwen35Moe) {
        const DeltaNetConfig& d = c.gdn;
        u32("rope.dimension_count", c.n_rot);
        w.set_i32_array(p + "rope.dimension_sections", {11, 11, 10, 0});
        if (c.n_ff_shexp > 0) u32("expert_shared_feed_forward_length", c.n_ff_shexp);
        u32("ssm.conv_kernel", d.conv_kernel);
        u32("ssm.state_size", d.k_dim);
        u32("ssm.group_count", d.n_k_heads);
        u32("ssm.time_step_rank", d.n_v_heads);
        u32("ssm.inner_size", d.n_v_heads * d.v_dim);
        // llama.cpp knows only a fixed interval: every interval-th layer is full attention.
        int interval = 1;
        while (interval <= c.n_layer && c.is_linear_layer(interval - 1)) ++interval;
        for (int l = 0; l < c.n_layer; ++l)
            check(c.is_linear_layer(l) == ((l + 1) % interval != 0),
                  "convert: layer_types are not a fixed full-attention interval, which GGUF "
                  "(llama.cpp's full_attention_interval) cannot express");
        u32("full_attention_interval", interval);
    }
}

void write_tokenizer_meta(const Vocab& v, const std::string& chat_template, GGUFWriter& w) {
    check(v.kind == VocabKind::BPE, "convert: only BPE tokenizers are written");
    // llama.cpp stores the pre-tokenizer by name. HF spells the same splitter differently
    // (e.g. "(?i:'s|...)"), so names are matched by behaviour: identical pieces on a probe
    // text with contractions in both cases, digit runs, CJK, punctuation and whitespace.
    static const std::string probe =
        "Hello World! I'M here, you'Re there; it's 12345 apples & 3.14159 pies...\n\n"
        "  \tTabs\tand  spaces   \r\n\u4e2d\u6587\u5b57 \u3053\u3093\u306b\u3061\u306f "
        "caf\u00e9 na\u00efve \u0394\u03b5\u03bb\u03c4\u03b1 $100 #tag @user a_b-c/d "
        "\"quoted\" (paren) [br] {cu} 2024-01-01 x=y+z*2 \U0001F600 end";
    auto pieces = [&](const std::vector<std::string>& re) {
        std::vector<std::string_view> out;
        RegexSplitter(re).split(probe, out);
        return std::vector<std::string>(out.begin(), out.end());
    };
    const auto want = pieces(v.pre_regexes);
    std::string pre;
    for (const char* name : {"qwen2", "llama-bpe", "deepseek-v3", "deepseek-llm", "deepseek-coder",
                             "gpt-2"})
        if (pieces(bpe_regexes_for_pre(name, "")) == want) {
            pre = name;
            break;
        }
    check(!pre.empty(), "convert: tokenizer.json's pre-tokenizer matches no llama.cpp "
                        "tokenizer.ggml.pre this project knows");
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", pre);
    w.set_str_array("tokenizer.ggml.tokens", v.tokens);
    std::vector<int32_t> types;
    for (TokenType t : v.types) types.push_back((int32_t)t);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    std::vector<std::string> merges(v.merge_rank.size());
    for (const auto& [m, r] : v.merge_rank) merges[(size_t)r] = m;
    w.set_str_array("tokenizer.ggml.merges", merges);
    if (v.bos >= 0) w.set_u32("tokenizer.ggml.bos_token_id", (uint32_t)v.bos);
    if (v.eos >= 0) w.set_u32("tokenizer.ggml.eos_token_id", (uint32_t)v.eos);
    if (v.pad >= 0) w.set_u32("tokenizer.ggml.padding_token_id", (uint32_t)v.pad);
    if (v.add_bos) w.set_bool("tokenizer.ggml.add_bos_token", true);
    if (!chat_template.empty()) w.set_str("tokenizer.chat_template", chat_template);
}

}  // namespace sluice
