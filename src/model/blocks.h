#pragma once
// Building blocks shared by architectures. Activations are f32, row-major per token.
#include <cstdint>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "stream/expert_store.h"

namespace sluice {

// x: [n, n_embd] -> embedding rows of tokens.
void embed_tokens(const TensorView& tok_embd, const int32_t* tokens, int n, float* x);

// GQA self-attention with per-head q/k RMSNorm (when given) and RoPE over the first n_rot
// dims of each head. With c.attn_out_gate, wq yields [q | gate] per head and the attention
// output is multiplied by sigmoid(gate) before wo.
// h: [n, n_embd] normalized input; out: [n, n_embd]. Writes K/V for [pos0, pos0+n).
void attention_gqa(const ModelConfig& c, const RopeTable& rope, const LayerWeights& w, int layer,
                   const float* h, int n, int pos0, KvCache& kv, ThreadPool& pool, float* out);

// Multi-head latent attention (mla.cpp). The cache holds the normed latent and the rotated
// shared k_pe per position. expanded: rebuild per-head K/V from the latents (prefill);
// otherwise attend in latent space with the absorbed k_b/v_b (decode). Same results.
void attention_mla(const ModelConfig& c, const RopeTable& rope, const LayerWeights& w, int layer,
                   const float* h, int n, int pos0, KvCache& kv, bool expanded, ThreadPool& pool,
                   float* out);

// Gated DeltaNet linear attention (deltanet.cpp). h: [n, n_embd]; out: [n, n_embd]. Reads and
// updates the layer's conv history and recurrent state in kv. Chunked form for batches,
// recurrent form for single tokens (Auto); both give the same results.
void attention_deltanet(const ModelConfig& c, const LayerWeights& w, int layer, const float* h,
                        int n, KvCache& kv, DeltaNetMode mode, ThreadPool& pool, float* out);

// out = down(silu(gate x) * up x). x: [n, n_embd]; out: [n, n_embd].
void ffn_swiglu(ThreadPool& pool, const TensorView& gate, const TensorView& up,
                const TensorView& down, const float* x, int n, float* out);

// Expert choice of each token. ids, weights: [n, k].
struct Routing {
    int k = 0;
    std::vector<int> ids;
    std::vector<float> weights;
};
// logits: [n, n_expert] router outputs (overwritten). Softmax or sigmoid gating per config,
// group-limited choice, renormalization, routed scale. bias: [n_expert] or empty.
Routing route_tokens(const ModelConfig& c, float* logits, const TensorView& bias, int n);

// The MoE layers after this one whose routers predict experts to read speculatively (next: on
// this layer's MoE input, in moe_block; second: on this layer's input, prefetch_two_ahead);
// null where there is none (or speculation is off).
struct Lookahead {
    const LayerWeights* next = nullptr;    // layer + 1
    const LayerWeights* second = nullptr;  // layer + 2
};
Lookahead lookahead(const ModelConfig& c, const Weights& w, int layer, bool speculate);

// Speculative reads for layer + 2, issued at the start of `layer` from its input x: [n, n_embd]
// (the residual stream, through the ffn_norm of layer + 2). Issued after the MoE router of
// `layer` instead, they came too late: the disk had by then finished every queued read while
// `layer` computed attention (q30b under 8 GiB: the disk idle in ~40% of attention time, busy
// 80-82% of decode; issued here, ~11% and 88-91%). No-op for batches that use every expert.
void prefetch_two_ahead(const ModelConfig& c, const Lookahead& ahead, ExpertStore& store, int layer,
                        const float* x, int n, ThreadPool& pool);

// Router -> experts (+ the shared expert): tokens grouped by expert so each expert's weights
// are read once per batch, computed in the order their bytes arrive. h: [n, n_embd];
// out: [n, n_embd].
void moe_block(const ModelConfig& c, const LayerWeights& w, const Lookahead& ahead,
               ExpertStore& store, int layer, const float* h, int n, ThreadPool& pool, float* out);

// Final norm + output projection of the rows that need logits.
void output_logits(const ModelConfig& c, const Weights& w, const float* x, int n, bool all,
                   ThreadPool& pool, float* logits);

}  // namespace sluice
