#pragma once
// CPU ops used by the model blocks. Shapes are given per argument; all activations are f32.
#include <cstdint>

#include "backend/cpu/thread_pool.h"
#include "core/tensor.h"

namespace sluice {

// y: [n_tok, W.rows()] = x: [n_tok, W.cols()] . W^T, rows split across the pool.
// Weight types with an activation format (qdot_ref.h) use integer dot products, four tokens
// per weight-row pass; the others dequantize row tiles once for all tokens.
void matmul(ThreadPool& pool, const TensorView& W, const float* x, int64_t n_tok, float* y);
// Two matrices over the same input (e.g. an expert's gate and up): the activations are
// quantized once. Same results as two matmul calls.
void matmul_pair(ThreadPool& pool, const TensorView& A, const TensorView& B, const float* x,
                 int64_t n_tok, float* ya, float* yb);
// Row r of W (any dtype) as f32, e.g. an embedding lookup. y: [W.cols()]
void get_row(const TensorView& W, int64_t r, float* y);
// y = x / rms(x) * w for each of n_rows rows of length n. w: [n] (any float dtype).
void rms_norm(const float* x, const TensorView& w, float eps, int64_t n_rows, int64_t n, float* y);
// In place, NeoX layout (rotate_half): pairs (i, i + d/2) for i < n_rot/2 of each head.
// x: [n_head, head_dim] for one token at position pos.
void rope_neox(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float theta);
void softmax(float* x, int64_t n);
inline float silu(float x);

}  // namespace sluice

#include <cmath>
inline float sluice::silu(float x) {
    return x / (1.0f + std::exp(-x));
}
