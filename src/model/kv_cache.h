#pragma once
// Per-layer K and V for every position. k, v: [n_layer][n_ctx][n_head_kv * head_dim], f32.
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace sluice {

class KvCache {
  public:
    KvCache(const ModelConfig& c, int n_ctx);
    float* k(int layer, int pos) { return k_.data() + index(layer, pos); }
    float* v(int layer, int pos) { return v_.data() + index(layer, pos); }
    int n_ctx() const { return n_ctx_; }
    uint64_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }
    static uint64_t bytes_for(const ModelConfig& c, int n_ctx) {
        return 2ull * (uint64_t)c.n_layer * (uint64_t)n_ctx * (uint64_t)(c.n_head_kv * c.head_dim) *
               sizeof(float);
    }

  private:
    size_t index(int layer, int pos) const {
        return ((size_t)layer * (size_t)n_ctx_ + (size_t)pos) * row_;
    }
    int n_ctx_;
    size_t row_;
    std::vector<float> k_, v_;
};

}  // namespace sluice
