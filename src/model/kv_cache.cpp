#include "model/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace sluice {
namespace {

struct Sizes {
    int heads;       // K/V heads per attention layer
    size_t k, v;     // floats per head and position
    size_t conv, s;  // floats per linear layer
    int n_attn, n_linear;
};

Sizes sizes_for(const ModelConfig& c) {
    Sizes z{};
    if (c.is_mla()) {
        z.heads = 1;
        z.k = (size_t)(c.kv_lora_rank + c.n_rot);
    } else {
        z.heads = c.n_head_kv;
        z.k = (size_t)c.head_dim;
        z.v = (size_t)c.v_head_dim;
    }
    z.n_linear = c.n_linear_layers();
    z.n_attn = c.n_layer - z.n_linear;
    if (z.n_linear > 0) {
        const DeltaNetConfig& d = c.gdn;
        z.conv = (size_t)(d.conv_kernel - 1) * (size_t)d.conv_channels();
        z.s = (size_t)d.n_v_heads * (size_t)d.k_dim * (size_t)d.v_dim;
    }
    return z;
}

}  // namespace

KvCache::KvCache(const ModelConfig& c, int n_ctx) : n_ctx_(n_ctx) {
    check(n_ctx > 0, "context size must be positive");
    const Sizes z = sizes_for(c);
    n_heads_ = z.heads;
    k_row_ = z.k;
    v_row_ = z.v;
    conv_size_ = z.conv;
    ssm_size_ = z.s;
    recurrent_ = z.n_linear > 0;
    int n_attn = 0, n_linear = 0;
    for (int l = 0; l < c.n_layer; ++l)
        slot_.push_back(c.is_linear_layer(l) ? n_linear++ : n_attn++);
    const size_t rows = (size_t)n_attn * (size_t)z.heads * (size_t)n_ctx;
    k_.assign(rows * k_row_, 0.f);
    v_.assign(rows * v_row_, 0.f);
    conv_.assign((size_t)n_linear * conv_size_, 0.f);
    ssm_.assign((size_t)n_linear * ssm_size_, 0.f);
}

void KvCache::advance_recurrent(int pos0, int n) {
    if (!recurrent_) return;
    if (pos0 == 0) {
        std::fill(conv_.begin(), conv_.end(), 0.f);
        std::fill(ssm_.begin(), ssm_.end(), 0.f);
    } else {
        check(pos0 == recurrent_pos_,
              "cannot continue at position " + std::to_string(pos0) +
                  ": the linear-attention state is at position " + std::to_string(recurrent_pos_) +
                  " and cannot rewind");
    }
    recurrent_pos_ = pos0 + n;
}

uint64_t KvCache::bytes_for(const ModelConfig& c, int n_ctx) {
    const Sizes z = sizes_for(c);
    return (uint64_t)z.n_attn * (uint64_t)z.heads * (uint64_t)n_ctx * (z.k + z.v) * sizeof(float);
}

uint64_t KvCache::state_bytes_for(const ModelConfig& c) {
    const Sizes z = sizes_for(c);
    return (uint64_t)z.n_linear * (z.conv + z.s) * sizeof(float);
}

}  // namespace sluice
