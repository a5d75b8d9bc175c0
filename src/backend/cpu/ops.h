#pragma once
// CPU ops used by the model blocks. Shapes are given per argument; all activations are f32.
#include <cstdint>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "core/tensor.h"

namespace sluice {

// y: [n_tok, W.rows()] = x: [n_tok, W.cols()] . W^T, rows split across the pool.
// Weight types with an activation format (qdot_ref.h) use integer dot products, four tokens
// per weight-row pass, or on CPUs with AMX and batches of >= 10 tokens bf16 tile products
// (CpuKernels::gemm_bf16); the others dequantize row tiles once for all tokens.
void matmul(ThreadPool& pool, const TensorView& W, const float* x, int64_t n_tok, float* y);
// Two matrices over the same input (e.g. an expert's gate and up): the activations are
// quantized once. Same results as two matmul calls.
void matmul_pair(ThreadPool& pool, const TensorView& A, const TensorView& B, const float* x,
                 int64_t n_tok, float* ya, float* yb);
// y[i] = x . W[i]^T for i < n_w in one parallel region; activations converted once per
// activation type. Same results as n_w matmul calls.
void matmul_multi(ThreadPool& pool, const TensorView* const* W, int n_w, const float* x,
                  int64_t n_tok, float* const* y);
// A group of SwiGLU FFNs (routed experts): out = down(silu(gate x) * up x) for each. Few-token
// groups (decode) run as one parallel region (each expert's down product waits for its own
// gate/up chunks only); batches take every gate and up product in one region, every down
// product in a second.
// x: [n_tok, gate.cols()]; out: [n_tok, down.rows()]. Same results as one at a time.
struct SwigluJob {
    const TensorView* gate;
    const TensorView* up;
    const TensorView* down;
    const float* x;
    int64_t n_tok;
    float* out;
};
void ffn_swiglu_experts(ThreadPool& pool, const std::vector<SwigluJob>& experts);
// Serial, for use inside a pool task: y[i] = W.row(r0 + i) . x for i < n_rows. x: [W.cols()]
void rows_dot(const TensorView& W, int64_t r0, int64_t n_rows, const float* x, float* y);
// Serial: y[W.cols()] = sum over i < n_rows of x[i] * W.row(r0 + i).
void rows_axpy(const TensorView& W, int64_t r0, int64_t n_rows, const float* x, float* y);
// Row r of W as f32 with block scales applied (serial). y: [W.cols()]
void load_row(const TensorView& W, int64_t r, float* y);
// Row r of W (any dtype) as f32, e.g. an embedding lookup. y: [W.cols()]
void get_row(const TensorView& W, int64_t r, float* y);
// y = x / rms(x) * w for each of n_rows rows of length n. w: [n] (any float dtype).
void rms_norm(const float* x, const TensorView& w, float eps, int64_t n_rows, int64_t n, float* y);
// Rotary embedding: angle of pair i at position p is p * inv_freq[i]; cos/sin are scaled by mag.
struct RopeTable {
    std::vector<float> inv_freq;  // [n_rot / 2]
    float mag = 1.0f;
    bool pairs = false;  // pairs (2i, 2i+1) (GPT-J, "interleaved"); else (i, i + n_rot/2) (NeoX)
    int64_t n_rot() const { return 2 * (int64_t)inv_freq.size(); }
};
// In place, one token at position pos. x: n_head vectors `stride` floats apart; the first
// n_rot() floats of each are rotated.
void rope(const RopeTable& r, float* x, int64_t n_head, int64_t stride, int64_t pos);
void softmax(float* x, int64_t n);
// Causal attention of the n_q query heads that share one K/V head, for a block of consecutive
// query tokens (serial, for one pool task; the prefill path). Token i < n_tok is at position
// pos0 + i and attends to positions [0, pos0 + i]. Query (i, h): q + i * ldq + h * hd;
// K row p: k + p * ldk (hd floats); V row p: v + p * ldv (vd floats); out: o + i * ldo + h * vd.
void attention_block(const float* q, int64_t ldq, int n_q, int64_t hd, const float* k, int64_t ldk,
                     const float* v, int64_t ldv, int64_t vd, int64_t pos0, int64_t n_tok,
                     float scale, float* o, int64_t ldo);
// Bytes per second the pool's threads read [p, p + n) at (a read-only sweep split into
// chunks, median of `reps` after one pass that faults the pages in): the roofline that
// decode, which streams each weight once per token, is measured against. Use a region far
// larger than the last-level cache.
double read_bandwidth(ThreadPool& pool, const uint8_t* p, size_t n, int reps = 5);
// Bytes per second of one such sweep, no warm-up (0 for a region under 8 bytes): for probes
// interleaved with other work on pages already faulted in.
double read_rate(ThreadPool& pool, const uint8_t* p, size_t n);
inline float silu(float x);

}  // namespace sluice

#include <cmath>
inline float sluice::silu(float x) {
    return x / (1.0f + std::exp(-x));
}
