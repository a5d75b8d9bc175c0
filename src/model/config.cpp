#include "model/config.h"

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
    c.n_embd = req("embedding_length");
    c.n_head = req("attention.head_count");
    c.n_head_kv = opt("attention.head_count_kv", c.n_head);
    c.head_dim = opt("attention.key_length", c.n_embd / c.n_head);
    c.n_rot = opt("rope.dimension_count", c.head_dim);
    c.n_ctx_train = opt("context_length", 4096);
    c.n_expert = req("expert_count");
    c.n_expert_used = req("expert_used_count");
    c.n_ff_exp = opt("expert_feed_forward_length", 0);
    c.n_ff = opt("feed_forward_length", 0);
    c.rope_theta = (float)g.get_float(p + "rope.freq_base").value_or(10000.0);
    c.rms_eps = (float)g.get_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-6);
    c.norm_topk_prob = g.get_bool(p + "expert_weights_norm").value_or(true);
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
    const json j = read_json_file(path);
    ModelConfig c;
    std::string hf_arch =
        j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty()
            ? j["architectures"][0].get<std::string>()
            : "";
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
    c.n_vocab = geti({"vocab_size"}, 0, true);
    c.n_ctx_train = geti({"max_position_embeddings"}, 4096, false);
    c.n_expert = geti({"num_experts", "num_local_experts", "n_routed_experts"}, 0, true);
    c.n_expert_used = geti({"num_experts_per_tok"}, 0, true);
    c.n_ff_exp = geti({"moe_intermediate_size"}, 0, true);
    c.n_ff = geti({"intermediate_size"}, 0, false);
    c.rms_eps = j.value("rms_norm_eps", 1e-6f);
    c.norm_topk_prob = j.value("norm_topk_prob", true);
    float theta = j.value("rope_theta", 10000.f);
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object())
        theta = j["rope_parameters"].value("rope_theta", theta);
    c.rope_theta = theta;
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
    check(c.rope_theta > 0 && c.rms_eps > 0,
          where + ": rope theta and RMS epsilon must be positive");
}

}  // namespace sluice
