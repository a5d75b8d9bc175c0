#pragma once
// Per-layer attention cache rows for every position, and the recurrent state of
// linear-attention layers, all f32. Head-major, so that one head's keys (values) over all
// positions are one contiguous stream for decode attention:
//   GQA: k: [n_head_kv][n_ctx][head_dim], v: [n_head_kv][n_ctx][v_head_dim] per layer
//   MLA: k: [n_ctx][kv_lora_rank + rope dims] (normed latent, then rotated k_pe); no v
//   DeltaNet layers: no rows; conv history [conv_kernel - 1][conv_channels] and
//   state [n_v_heads][k_dim][v_dim].
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace sluice {

class KvCache {
  public:
    KvCache(const ModelConfig& c, int n_ctx);
    // Head `head`'s row at `pos`; MLA layers have one head.
    float* k(int layer, int head, int pos) { return k_.data() + row(layer, head, pos) * k_row_; }
    float* v(int layer, int head, int pos) { return v_.data() + row(layer, head, pos) * v_row_; }
    float* conv_state(int layer) { return conv_.data() + state_slot(layer) * conv_size_; }
    float* ssm_state(int layer) { return ssm_.data() + state_slot(layer) * ssm_size_; }
    int n_ctx() const { return n_ctx_; }
    // Floats from one position's K (V) row to the next within a head.
    int64_t k_stride() const { return (int64_t)k_row_; }
    int64_t v_stride() const { return (int64_t)v_row_; }
    // Called before a forward pass over positions [pos0, pos0 + n). The recurrent state
    // starts over at pos0 == 0 and otherwise must continue where it stopped: it cannot rewind.
    void advance_recurrent(int pos0, int n);
    uint64_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }
    uint64_t state_bytes() const { return (conv_.size() + ssm_.size()) * sizeof(float); }
    static uint64_t bytes_for(const ModelConfig& c, int n_ctx);
    static uint64_t state_bytes_for(const ModelConfig& c);

  private:
    size_t row(int layer, int head, int pos) const {
        return ((size_t)slot_[(size_t)layer] * (size_t)n_heads_ + (size_t)head) * (size_t)n_ctx_ +
               (size_t)pos;
    }
    size_t state_slot(int layer) const { return (size_t)slot_[(size_t)layer]; }

    int n_ctx_;
    int n_heads_;  // K/V heads per attention layer
    bool recurrent_ = false;
    int recurrent_pos_ = 0;
    std::vector<int> slot_;  // index among attention layers, or among linear layers
    size_t k_row_, v_row_, conv_size_, ssm_size_;  // k_row_, v_row_: floats per head and position
    std::vector<float> k_, v_, conv_, ssm_;
};

}  // namespace sluice
