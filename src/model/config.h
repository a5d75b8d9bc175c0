#pragma once
// Normalized hyper-parameters, whatever file they came from.
#include <cstdint>
#include <string>

namespace sluice {

class GGUFFile;

enum class ArchId { Qwen3Moe };

struct ModelConfig {
    ArchId arch = ArchId::Qwen3Moe;
    std::string arch_name;  // GGUF name, e.g. "qwen3moe"
    int n_layer = 0;
    int n_embd = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    int n_rot = 0;  // rotary dims per head
    int n_vocab = 0;
    int n_ctx_train = 0;
    int n_expert = 0;
    int n_expert_used = 0;  // K: experts per token (may be overridden at run time)
    int n_expert_used_trained = 0;
    int n_ff_exp = 0;  // routed expert hidden size
    int n_ff = 0;      // dense FFN hidden size (dense layers, if any)
    float rope_theta = 10000.f;
    float rms_eps = 1e-6f;
    bool norm_topk_prob = true;
};

ModelConfig config_from_gguf(const GGUFFile& g);
// dir: HF model directory with config.json.
ModelConfig config_from_hf(const std::string& dir);
// Range checks shared by both sources; `where` names the file in messages.
void validate_config(const ModelConfig& c, const std::string& where);

}  // namespace sluice
