#pragma once
// Per-layer cache rows for every position, f32.
//   GQA: k: [n_layer][n_ctx][n_head_kv * head_dim], v: [n_layer][n_ctx][n_head_kv * v_head_dim]
//   MLA: k: [n_layer][n_ctx][kv_lora_rank + rope dims] (normed latent, then rotated k_pe); no v
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace sluice {

class KvCache {
  public:
    KvCache(const ModelConfig& c, int n_ctx);
    float* k(int layer, int pos) { return k_.data() + ((size_t)layer * n_ctx_ + pos) * k_row_; }
    float* v(int layer, int pos) { return v_.data() + ((size_t)layer * n_ctx_ + pos) * v_row_; }
    int n_ctx() const { return n_ctx_; }
    uint64_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }
    static uint64_t bytes_for(const ModelConfig& c, int n_ctx);

  private:
    int n_ctx_;
    size_t k_row_, v_row_;
    std::vector<float> k_, v_;
};

}  // namespace sluice
