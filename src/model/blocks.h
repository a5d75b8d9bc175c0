#pragma once
// Building blocks shared by architectures. Activations are f32, row-major per token.
#include <cstdint>

#include "backend/cpu/thread_pool.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "stream/expert_store.h"

namespace sluice {

// x: [n, n_embd] -> embedding rows of tokens.
void embed_tokens(const TensorView& tok_embd, const int32_t* tokens, int n, float* x);

// GQA self-attention with per-head q/k RMSNorm (when given) and NeoX RoPE.
// h: [n, n_embd] normalized input; out: [n, n_embd]. Writes K/V for [pos0, pos0+n).
void attention_gqa(const ModelConfig& c, const LayerWeights& w, int layer, const float* h, int n,
                   int pos0, KvCache& kv, ThreadPool& pool, float* out);

// Softmax router -> top-K -> optional renormalization -> SwiGLU experts, tokens grouped
// by expert so each expert's weights are read once per batch. h: [n, n_embd]; out: [n, n_embd].
// Experts are computed in the order their bytes arrive. next_router (optional): the next
// layer's router, used to prefetch its likely experts speculatively.
void moe_softmax_topk(const ModelConfig& c, const TensorView& router, const TensorView* next_router,
                      ExpertStore& store, int layer, const float* h, int n, ThreadPool& pool,
                      float* out);

// Final norm + output projection of the rows that need logits.
void output_logits(const ModelConfig& c, const Weights& w, const float* x, int n, bool all,
                   ThreadPool& pool, float* logits);

}  // namespace sluice
