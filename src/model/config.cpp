#include "model/config.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/json_file.h"
#include "model/arch.h"

namespace sluice {

ModelConfig config_from_gguf(const GGUFFile& g) {
    ModelConfig c;
    const auto arch = g.get_string("general.architecture");
    check(arch.has_value(), g.path + ": general.architecture is missing");
    const ArchInfo* info = arch_by_gguf_name(*arch);
    if (!info)
        fail(g.path + ": unknown architecture '" + *arch +
             "' (supported: " + supported_arch_names() + ")");
    c.arch = info->id;
    c.arch_name = *arch;
    const std::string p = *arch + ".";
    auto req = [&](const std::string& k) -> int {
        const auto v = g.get_uint(p + k);
        check(v.has_value(), g.path + ": metadata '" + p + k + "' is missing");
        check(*v > 0 && *v < (1u << 30), g.path + ": metadata '" + p + k + "' is out of range");
        return (int)*v;
    };
    auto opt = [&](const std::string& k, int def) {
        return (int)g.get_uint(p + k).value_or((uint64_t)def);
    };
    c.n_layer = req("block_count");
    // Multi-token-prediction blocks (llama.cpp appends them after the decoder layers) are
    // not part of the forward pass.
    c.n_layer -= opt("nextn_predict_layers", 0);
    c.n_embd = req("embedding_length");
    c.n_head = req("attention.head_count");
    c.n_head_kv = opt("attention.head_count_kv", c.n_head);
    c.head_dim = opt("attention.key_length", c.n_embd / c.n_head);
    c.v_head_dim = opt("attention.value_length", c.head_dim);
    c.n_rot = opt("rope.dimension_count", c.head_dim);
    c.n_ctx_train = opt("context_length", 4096);
    c.n_expert = req("expert_count");
    c.n_expert_used = req("expert_used_count");
    c.n_ff_exp = opt("expert_feed_forward_length", 0);
    c.n_ff = opt("feed_forward_length", 0);
    c.rope.theta = (float)g.get_float(p + "rope.freq_base").value_or(10000.0);
    c.rms_eps = (float)g.get_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-6);
    c.norm_topk_prob = g.get_bool(p + "expert_weights_norm").value_or(true);
    if (info->id == ArchId::DeepSeek2) {
        c.kv_lora_rank = req("attention.kv_lora_rank");
        c.q_lora_rank = opt("attention.q_lora_rank", 0);
        // Newer llama.cpp files describe the latent cache as one KV head ("key_length" =
        // kv_lora_rank + rope dims) and put the per-head sizes under "*_mla".
        if (g.get_uint(p + "attention.key_length_mla")) {
            c.head_dim = req("attention.key_length_mla");
            c.v_head_dim = req("attention.value_length_mla");
        }
        c.n_head_kv = c.n_head;
        c.qk_nope = c.head_dim - c.n_rot;
        c.n_dense_lead = opt("leading_dense_block_count", 0);
        c.n_ff_shexp = opt("expert_shared_count", 0) * c.n_ff_exp;
        c.routed_scale = (float)g.get_float(p + "expert_weights_scale").value_or(1.0);
        c.n_group = opt("expert_group_count", 1);
        c.topk_group = opt("expert_group_used_count", c.n_group);
        // 1 = softmax, 2 = sigmoid. Files converted without the key (DeepSeek-V2, and V3-style
        // models whose config lacks scoring_func) have a routing bias only if they are V3-style.
        const uint64_t gating = g.get_uint(p + "expert_gating_func").value_or(0);
        const bool has_bias = g.index.find("blk." + std::to_string(c.n_dense_lead) +
                                           ".exp_probs_b.bias") != nullptr;
        check(gating <= 2, g.path + ": metadata '" + p + "expert_gating_func' is " +
                               std::to_string(gating) + " (known: 1 softmax, 2 sigmoid)");
        c.gating = gating == 2 || (gating == 0 && has_bias) ? Gating::Sigmoid : Gating::Softmax;
        c.rope.pairs = true;  // llama.cpp runs deepseek2 with consecutive-pair rotary
        const auto scaling = g.get_string(p + "rope.scaling.type");
        if (scaling && *scaling == "yarn") {
            c.rope.yarn = true;
            c.rope.factor = (float)g.get_float(p + "rope.scaling.factor").value_or(1.0);
            c.rope.orig_ctx = opt("rope.scaling.original_context_length", c.n_ctx_train);
            c.rope.beta_fast = (float)g.get_float(p + "rope.scaling.yarn_beta_fast").value_or(32.0);
            c.rope.beta_slow = (float)g.get_float(p + "rope.scaling.yarn_beta_slow").value_or(1.0);
            // llama.cpp stores 0.1 * mscale_all_dim; DeepSeek/Kimi configs have mscale ==
            // mscale_all_dim, which makes the rotary's own magnitude factor 1.
            const double log_mul = g.get_float(p + "rope.scaling.yarn_log_multiplier").value_or(0.0);
            c.rope.mscale = c.rope.mscale_all_dim = (float)(log_mul / 0.1);
        } else if (scaling && *scaling != "none") {
            fail(g.path + ": rope scaling '" + *scaling + "' is not supported (supported: yarn)");
        }
    }
    if (info->id == ArchId::Qwen35Moe) {
        DeltaNetConfig& d = c.gdn;
        d.conv_kernel = req("ssm.conv_kernel");
        d.k_dim = req("ssm.state_size");
        d.n_k_heads = req("ssm.group_count");
        d.n_v_heads = req("ssm.time_step_rank");
        const int inner = req("ssm.inner_size");
        check(inner % d.n_v_heads == 0, g.path + ": metadata '" + p + "ssm.inner_size' (" +
                                            std::to_string(inner) + ") is not a multiple of '" +
                                            p + "ssm.time_step_rank'");
        d.v_dim = inner / d.n_v_heads;
        d.v_tiled = true;  // llama.cpp's converter reorders v heads for ggml_repeat
        // llama.cpp: every interval-th layer (1-based) is full attention.
        const int interval = opt("full_attention_interval", 4);
        c.layer_linear.resize((size_t)c.n_layer);
        for (int l = 0; l < c.n_layer; ++l) c.layer_linear[(size_t)l] = (l + 1) % interval != 0;
        c.n_ff_shexp = opt("expert_shared_feed_forward_length", 0);
        c.attn_out_gate = true;
        c.shexp_gated = c.n_ff_shexp > 0;
    }
    c.n_vocab = (int)g.get_string_array("tokenizer.ggml.tokens").size();
    if (const TensorInfo* t = g.index.find("token_embd.weight"); t && t->ne.size() == 2)
        c.n_vocab = (int)t->ne[1];
    c.n_expert_used_trained = c.n_expert_used;
    validate_config(c, g.path);
    return c;
}

ModelConfig config_from_hf(const std::string& dir) {
    using json = nlohmann::json;
    const std::string path = (std::filesystem::path(dir) / "config.json").string();
    json j = read_json_file(path);
    ModelConfig c;
    std::string hf_arch =
        j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty()
            ? j["architectures"][0].get<std::string>()
            : "";
    // Multimodal checkpoints (e.g. Qwen3_5MoeForConditionalGeneration) nest the text model.
    if (j.contains("text_config") && j["text_config"].is_object()) j = json(j["text_config"]);
    const ArchInfo* info = arch_by_hf_name(hf_arch, j.value("model_type", ""));
    if (!info)
        fail(path + ": unknown architecture '" + hf_arch + "' / model_type '" +
             j.value("model_type", "") + "' (supported: " + supported_arch_names() + ")");
    c.arch = info->id;
    c.arch_name = info->gguf_name;
    auto geti = [&](std::initializer_list<const char*> keys, int def, bool required) -> int {
        for (const char* k : keys)
            if (j.contains(k) && j[k].is_number_integer()) return j[k].get<int>();
        check(!required,
              path + ": '" + std::string(*keys.begin()) + "' is missing or not an integer");
        return def;
    };
    c.n_layer = geti({"num_hidden_layers"}, 0, true);
    c.n_embd = geti({"hidden_size"}, 0, true);
    c.n_head = geti({"num_attention_heads"}, 0, true);
    c.n_head_kv = geti({"num_key_value_heads"}, c.n_head, false);
    c.head_dim = geti({"head_dim"}, c.n_head ? c.n_embd / c.n_head : 0, false);
    c.n_rot = c.head_dim;
    c.v_head_dim = c.head_dim;
    c.n_vocab = geti({"vocab_size"}, 0, true);
    c.n_ctx_train = geti({"max_position_embeddings"}, 4096, false);
    c.n_expert = geti({"num_experts", "num_local_experts", "n_routed_experts"}, 0, true);
    c.n_expert_used = geti({"num_experts_per_tok"}, 0, true);
    c.n_ff_exp = geti({"moe_intermediate_size"}, 0, true);
    c.n_ff = geti({"intermediate_size"}, 0, false);
    c.rms_eps = j.value("rms_norm_eps", 1e-6f);
    c.norm_topk_prob = j.value("norm_topk_prob", true);
    // transformers 5 writes "rope_parameters" (with rope_theta inside); older files "rope_scaling".
    json rp = json::object();
    for (const char* k : {"rope_scaling", "rope_parameters"})
        if (j.contains(k) && j[k].is_object()) rp.update(j[k]);
    c.rope.theta = rp.value("rope_theta", j.value("rope_theta", 10000.f));
    const std::string rope_type = rp.value("rope_type", rp.value("type", std::string("default")));
    if (rope_type == "yarn") {
        c.rope.yarn = true;
        auto num = [&](const char* k, float def) {
            return rp.contains(k) && rp[k].is_number() ? rp[k].get<float>() : def;
        };
        c.rope.factor = num("factor", 1.f);
        c.rope.orig_ctx = (int)num("original_max_position_embeddings", (float)c.n_ctx_train);
        c.rope.beta_fast = num("beta_fast", 32.f);
        c.rope.beta_slow = num("beta_slow", 1.f);
        c.rope.mscale = num("mscale", 0.f);
        c.rope.mscale_all_dim = num("mscale_all_dim", 0.f);
    } else if (rope_type != "default") {
        fail(path + ": rope type '" + rope_type + "' is not supported (supported: default, yarn)");
    }
    if (info->id == ArchId::DeepSeek2) {
        auto rank = [&](const char* k) {  // null or absent: no low-rank projection
            return j.contains(k) && j[k].is_number_integer() ? j[k].get<int>() : 0;
        };
        c.q_lora_rank = rank("q_lora_rank");
        c.kv_lora_rank = geti({"kv_lora_rank"}, 0, true);
        c.qk_nope = geti({"qk_nope_head_dim"}, 0, true);
        c.n_rot = geti({"qk_rope_head_dim"}, 0, true);
        c.head_dim = c.qk_nope + c.n_rot;
        c.v_head_dim = geti({"v_head_dim"}, 0, true);
        c.n_head_kv = c.n_head;
        c.n_dense_lead = geti({"first_k_dense_replace"}, 0, false);
        c.n_ff_shexp = geti({"n_shared_experts"}, 0, false) * c.n_ff_exp;
        c.n_group = geti({"n_group"}, 1, false);
        c.topk_group = geti({"topk_group"}, c.n_group, false);
        c.routed_scale = j.value("routed_scaling_factor", 1.f);
        const std::string scoring = j.value("scoring_func", std::string("sigmoid"));
        check(scoring == "sigmoid" || scoring == "softmax",
              path + ": scoring_func '" + scoring + "' is not supported (sigmoid, softmax)");
        c.gating = scoring == "sigmoid" ? Gating::Sigmoid : Gating::Softmax;
        c.rope.pairs = j.value("rope_interleave", true);
        check(j.value("moe_layer_freq", 1) == 1, path + ": moe_layer_freq other than 1 is not supported");
    }
    if (info->id == ArchId::Qwen35Moe) {
        const float partial = rp.value("partial_rotary_factor", j.value("partial_rotary_factor", 1.f));
        c.n_rot = (int)((float)c.head_dim * partial);
        DeltaNetConfig& d = c.gdn;
        d.n_k_heads = geti({"linear_num_key_heads"}, 0, true);
        d.n_v_heads = geti({"linear_num_value_heads"}, 0, true);
        d.k_dim = geti({"linear_key_head_dim"}, 0, true);
        d.v_dim = geti({"linear_value_head_dim"}, 0, true);
        d.conv_kernel = geti({"linear_conv_kernel_dim"}, 0, true);
        c.layer_linear.resize((size_t)c.n_layer);
        if (j.contains("layer_types") && j["layer_types"].is_array()) {
            const json& lt = j["layer_types"];
            check(lt.size() == (size_t)c.n_layer, path + ": 'layer_types' has " +
                                                      std::to_string(lt.size()) + " entries for " +
                                                      std::to_string(c.n_layer) + " layers");
            for (int l = 0; l < c.n_layer; ++l) {
                const std::string t = lt[(size_t)l].is_string() ? lt[(size_t)l].get<std::string>() : "";
                check(t == "linear_attention" || t == "full_attention",
                      path + ": layer_types[" + std::to_string(l) + "] is '" + t +
                          "' (known: linear_attention, full_attention)");
                c.layer_linear[(size_t)l] = t == "linear_attention";
            }
        } else {
            const int interval = geti({"full_attention_interval"}, 4, false);
            check(interval > 0, path + ": 'full_attention_interval' must be positive");
            for (int l = 0; l < c.n_layer; ++l) c.layer_linear[(size_t)l] = (l + 1) % interval != 0;
        }
        c.n_ff_shexp = geti({"shared_expert_intermediate_size"}, 0, false);
        c.attn_out_gate = true;
        c.shexp_gated = c.n_ff_shexp > 0;
    }
    if (j.contains("quantization_config") && j["quantization_config"].is_object()) {
        const json& q = j["quantization_config"];
        const std::string method = q.value("quant_method", std::string("?"));
        check(method == "fp8", path + ": quantization_config method '" + method +
                                   "' is not supported (supported: fp8, 128x128 blocks)");
        check(!q.contains("weight_block_size") ||
                  q["weight_block_size"] == json::array({128, 128}),
              path + ": fp8 weight_block_size must be [128, 128]");
    }
    c.n_expert_used_trained = c.n_expert_used;
    validate_config(c, path);
    return c;
}

void validate_config(const ModelConfig& c, const std::string& where) {
    check(c.n_layer > 0 && c.n_embd > 0 && c.n_head > 0 && c.n_head_kv > 0 && c.head_dim > 0,
          where + ": layer/embedding/head counts must be positive");
    check(c.n_head % c.n_head_kv == 0, where + ": head count " + std::to_string(c.n_head) +
                                           " is not a multiple of the KV head count " +
                                           std::to_string(c.n_head_kv));
    check(c.n_rot > 0 && c.n_rot <= c.head_dim && c.n_rot % 2 == 0,
          where + ": bad rotary dimension count");
    check(c.n_expert > 0 && c.n_expert_used > 0 && c.n_expert_used <= c.n_expert,
          where + ": experts per token must be in 1..expert count");
    check(c.n_ff_exp > 0, where + ": expert feed-forward length is missing");
    check(c.n_vocab > 0, where + ": vocabulary size is missing");
    check(c.rope.theta > 0 && c.rms_eps > 0,
          where + ": rope theta and RMS epsilon must be positive");
    check(c.v_head_dim > 0, where + ": value head size must be positive");
    check(c.n_dense_lead >= 0 && c.n_dense_lead <= c.n_layer,
          where + ": leading dense layer count is out of range");
    check(c.n_dense_lead == 0 || c.n_ff > 0,
          where + ": dense layers need a feed-forward length (intermediate_size)");
    check(c.n_group >= 1 && c.n_expert % c.n_group == 0 && c.topk_group >= 1 &&
              c.topk_group <= c.n_group,
          where + ": expert groups: " + std::to_string(c.n_expert) + " experts in " +
              std::to_string(c.n_group) + " groups, " + std::to_string(c.topk_group) +
              " used, is not a valid grouping");
    check(c.n_expert_used <= c.topk_group * (c.n_expert / c.n_group),
          where + ": experts per token exceed the experts of the groups used");
    if (c.is_mla())
        check(c.qk_nope > 0 && c.qk_nope + c.n_rot == c.head_dim,
              where + ": MLA head sizes are inconsistent (qk_nope + qk_rope != head_dim)");
    if (!c.layer_linear.empty()) {
        const DeltaNetConfig& d = c.gdn;
        check(c.layer_linear.size() == (size_t)c.n_layer,
              where + ": layer types do not cover every layer");
        check(d.n_k_heads > 0 && d.n_v_heads > 0 && d.k_dim > 0 && d.v_dim > 0 &&
                  d.conv_kernel >= 1 && d.conv_kernel <= 16,
              where + ": linear-attention head counts, head sizes and conv kernel must be positive");
        check(d.n_v_heads % d.n_k_heads == 0,
              where + ": linear value heads (" + std::to_string(d.n_v_heads) +
                  ") are not a multiple of key heads (" + std::to_string(d.n_k_heads) + ")");
    }
    if (c.rope.yarn)
        check(c.rope.factor >= 1 && c.rope.orig_ctx > 0,
              where + ": YaRN needs factor >= 1 and an original context length");
}

int ModelConfig::n_linear_layers() const {
    int n = 0;
    for (char f : layer_linear) n += f != 0;
    return n;
}

float ModelConfig::attn_scale() const {
    float s = 1.0f / std::sqrt((float)head_dim);
    if (rope.yarn && rope.mscale_all_dim != 0 && rope.factor > 1) {
        const float m = 0.1f * rope.mscale_all_dim * std::log(rope.factor) + 1.0f;
        s *= m * m;
    }
    return s;
}

}  // namespace sluice
