#pragma once
// A loaded model: config, resident dense weights, the expert store, and forward().
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "core/tensor.h"
#include "formats/gguf.h"
#include "formats/tensor_index.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "stream/expert_store.h"

namespace sluice {

struct LayerWeights {
    TensorView attn_norm, wq, wk, wv, wo, q_norm, k_norm;  // wq: [n_head*head_dim rows, n_embd]
    TensorView ffn_norm, router;                           // router: [n_expert rows, n_embd]
};

struct Weights {
    TensorView tok_embd;     // [n_vocab rows, n_embd]
    TensorView output_norm;  // [n_embd]
    TensorView output;       // [n_vocab rows, n_embd]; tok_embd when tied
    std::vector<LayerWeights> layers;
};

struct ForwardArgs {
    const int32_t* tokens;  // [n]
    int n;
    int pos0;               // position of tokens[0]; KV rows [pos0, pos0 + n) are written
    KvCache* kv;
    ThreadPool* pool;
    float* logits;          // [n, n_vocab] if all_logits, else [n_vocab] for the last token
    bool all_logits;
};

class Model {
public:
    // path: a .gguf file or a Hugging Face model directory (config.json + safetensors).
    static std::unique_ptr<Model> open(const std::string& path);

    const ModelConfig& config() const { return cfg_; }
    const Weights& weights() const { return w_; }
    ExpertStore& experts() { return *experts_; }
    const std::string& path() const { return path_; }
    const GGUFFile* gguf() const { return gguf_ ? &*gguf_ : nullptr; }  // null for HF directories
    uint64_t dense_bytes() const { return dense_bytes_; }

    // Experts per token, 1..n_expert.
    void set_experts_per_token(int k);

    // Checks tokens and positions, then runs the architecture's forward pass.
    void forward(const ForwardArgs& a);

private:
    Model() = default;
    void bind_weights(const ArchInfo& arch, bool hf);

    std::string path_;
    ModelConfig cfg_;
    std::optional<GGUFFile> gguf_;
    TensorIndex index_;
    std::unique_ptr<TensorFiles> files_;
    Weights w_;
    std::unique_ptr<ExpertStore> experts_;
    uint64_t dense_bytes_ = 0;
};

}  // namespace sluice
