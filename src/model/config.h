#pragma once
// Normalized hyper-parameters, whatever file they came from.
#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

class GGUFFile;

enum class ArchId { Qwen3Moe, DeepSeek2, Qwen35Moe };

// How router logits become expert weights.
enum class Gating {
    Softmax,  // softmax over all experts, top-K (Qwen3-MoE)
    Sigmoid,  // sigmoid, + e_score_correction_bias for the choice only, group-limited (DeepSeek-V3)
};

// Rotary embedding: frequencies and (with YaRN) the context-extension parameters.
struct RopeConfig {
    float theta = 10000.f;
    bool pairs = false;  // rotate (x[2i], x[2i+1]) (GPT-J / interleaved) instead of (x[i], x[i+d/2])
    bool yarn = false;
    float factor = 1.f;
    int orig_ctx = 0;  // original_max_position_embeddings
    float beta_fast = 32.f, beta_slow = 1.f;
    float mscale = 1.f, mscale_all_dim = 0.f;
};

// Gated DeltaNet linear attention (Qwen3.5 / Qwen3-Next "linear_attention" layers).
// Channels of the conv/qkv projection: [q: n_k_heads*k_dim | k: n_k_heads*k_dim | v: n_v_heads*v_dim].
struct DeltaNetConfig {
    int n_k_heads = 0, n_v_heads = 0;  // each k head serves n_v_heads / n_k_heads v heads
    int k_dim = 0, v_dim = 0;
    int conv_kernel = 0;
    // v heads in llama.cpp's "tiled" order (GGUF): v head h reads k head h % n_k_heads;
    // HF order: h / (n_v_heads / n_k_heads).
    bool v_tiled = false;

    int conv_channels() const { return 2 * n_k_heads * k_dim + n_v_heads * v_dim; }
    int k_head_of(int v_head) const {
        return v_tiled ? v_head % n_k_heads : v_head / (n_v_heads / n_k_heads);
    }
};

struct ModelConfig {
    ArchId arch = ArchId::Qwen3Moe;
    std::string arch_name;  // GGUF name, e.g. "qwen3moe"
    int n_layer = 0;
    int n_embd = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;    // query/key dims per head (MLA: qk_nope + qk_rope)
    int v_head_dim = 0;  // value dims per head
    int n_rot = 0;       // rotary dims per head
    int n_vocab = 0;
    int n_ctx_train = 0;
    int n_expert = 0;
    int n_expert_used = 0;  // K: experts per token (may be overridden at run time)
    int n_expert_used_trained = 0;
    int n_ff_exp = 0;  // routed expert hidden size
    int n_ff = 0;      // dense FFN hidden size (dense layers, if any)
    int n_dense_lead = 0;    // the first layers use a dense FFN instead of experts
    int n_ff_shexp = 0;      // shared (always-on) expert hidden size; 0: none
    float rms_eps = 1e-6f;
    bool norm_topk_prob = true;
    Gating gating = Gating::Softmax;
    int n_group = 1, topk_group = 1;  // group-limited routing: experts from the best groups only
    float routed_scale = 1.f;         // routed expert weights are multiplied by this
    // Multi-head latent attention (DeepSeek); kv_lora_rank == 0 means plain GQA.
    int q_lora_rank = 0;  // 0: a direct q projection
    int kv_lora_rank = 0;
    int qk_nope = 0;  // per-head query/key dims without rotary
    RopeConfig rope;
    // Hybrid models: layer_linear[l] != 0 marks a linear-attention (DeltaNet) layer; empty: none.
    std::vector<char> layer_linear;
    DeltaNetConfig gdn;
    bool attn_out_gate = false;  // q projection also yields a per-head sigmoid gate on the output
    bool shexp_gated = false;    // shared expert scaled by sigmoid(w . x)

    bool is_linear_layer(int l) const {
        return !layer_linear.empty() && layer_linear[(size_t)l] != 0;
    }
    int n_linear_layers() const;
    bool is_mla() const { return kv_lora_rank > 0; }
    bool is_moe_layer(int l) const { return l >= n_dense_lead; }
    // softmax(q.k * attn_scale): 1/sqrt(head_dim), times YaRN's mscale^2 where it applies.
    float attn_scale() const;
};

ModelConfig config_from_gguf(const GGUFFile& g);
// dir: HF model directory with config.json.
ModelConfig config_from_hf(const std::string& dir);
// Range checks shared by both sources; `where` names the file in messages.
void validate_config(const ModelConfig& c, const std::string& where);

}  // namespace sluice
