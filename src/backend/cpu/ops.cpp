#include "backend/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/qdot_ref.h"
#include "core/error.h"

namespace sluice {

namespace {

// x: [n_tok, n_in] -> activation blocks of `act`, one row of `arow` bytes per token.
const uint8_t* quantize_rows(DType act, const float* x, int64_t n_tok, int64_t n_in,
                             std::vector<uint8_t>& buf) {
    const size_t arow = row_bytes(act, n_in);
    buf.resize(arow * (size_t)n_tok);
    for (int64_t t = 0; t < n_tok; ++t)
        quantize_activations(act, x + t * n_in, buf.data() + (size_t)t * arow, n_in);
    return buf.data();
}

// Integer dot products straight on the weight blocks (no dequantization of the much larger
// weights), four tokens per weight-row pass. xq: quantize_rows output for W's activation type.
void qmatmul(ThreadPool& pool, const TensorView& W, const uint8_t* xq, int64_t n_tok, float* y) {
    const CpuKernels& k = cpu_kernels();
    const int64_t n_out = W.rows(), n_in = W.cols();
    const size_t arow = row_bytes(activation_type_for(W.dtype), n_in);
    const uint8_t* w0 = (const uint8_t*)W.data;
    const size_t wrow = W.row_size();
    // Small grain so even a 512-row expert matrix spreads over every thread.
    pool.parallel_for(n_out, std::max<int64_t>(8, 256 / std::max<int64_t>(1, n_tok)),
                      [&](int64_t r0, int64_t r1, int) {
                          for (int64_t r = r0; r < r1; ++r) {
                              const uint8_t* wr = w0 + (size_t)r * wrow;
                              int64_t t = 0;
                              for (; t + 4 <= n_tok; t += 4) {
                                  const void* acts[4];
                                  float out[4];
                                  for (int q = 0; q < 4; ++q) acts[q] = xq + (size_t)(t + q) * arow;
                                  k.qdot4(W.dtype, wr, acts, n_in, out);
                                  for (int q = 0; q < 4; ++q) y[(t + q) * n_out + r] = out[q];
                              }
                              for (; t < n_tok; ++t)
                                  y[t * n_out + r] =
                                      k.qdot(W.dtype, wr, xq + (size_t)t * arow, n_in);
                          }
                      });
}

}  // namespace

void matmul_pair(ThreadPool& pool, const TensorView& A, const TensorView& B, const float* x,
                 int64_t n_tok, float* ya, float* yb) {
    const DType act = activation_type_for(A.dtype);
    if (act == DType::F32 || act != activation_type_for(B.dtype) || A.cols() != B.cols()) {
        matmul(pool, A, x, n_tok, ya);
        matmul(pool, B, x, n_tok, yb);
        return;
    }
    thread_local std::vector<uint8_t> buf;
    const uint8_t* xq = quantize_rows(act, x, n_tok, A.cols(), buf);
    qmatmul(pool, A, xq, n_tok, ya);
    qmatmul(pool, B, xq, n_tok, yb);
}

void load_row(const TensorView& W, int64_t r, float* y) {
    const int64_t n = W.cols();
    cpu_kernels().dequant_row(W.dtype, W.row(r), y, n);
    if (!W.scale) return;
    const int64_t B = TensorView::kScaleBlock, n_sc = (n + B - 1) / B;
    const float* s = W.scale + (r / B) * n_sc;
    for (int64_t c = 0; c < n; ++c) y[c] *= s[c / B];
}

namespace {

// Block-scaled FP8: rows are widened to f32 (scales applied) one tile at a time.
void matmul_scaled(ThreadPool& pool, const TensorView& W, const float* x, int64_t n_tok,
                   float* y) {
    const CpuKernels& k = cpu_kernels();
    const int64_t n_out = W.rows(), n_in = W.cols();
    pool.parallel_for((n_out + kRowTile - 1) / kRowTile, 1, [&](int64_t tb, int64_t te, int) {
        thread_local std::vector<float> row;
        row.resize((size_t)n_in);
        for (int64_t r = tb * kRowTile; r < std::min(n_out, te * kRowTile); ++r) {
            load_row(W, r, row.data());
            for (int64_t t = 0; t < n_tok; ++t)
                y[t * n_out + r] = k.dot_f32(row.data(), x + t * n_in, n_in);
        }
    });
}

}  // namespace

void matmul(ThreadPool& pool, const TensorView& W, const float* x, int64_t n_tok, float* y) {
    if (W.scale) return matmul_scaled(pool, W, x, n_tok, y);
    const CpuKernels& k = cpu_kernels();
    const int64_t n_out = W.rows(), n_in = W.cols();
    const DType act = activation_type_for(W.dtype);
    if (act != DType::F32) {
        thread_local std::vector<uint8_t> buf;
        qmatmul(pool, W, quantize_rows(act, x, n_tok, n_in, buf), n_tok, y);
        return;
    }
    // Tiles of whole row-tiles so each task dequantizes its rows once for all tokens.
    const int64_t grain =
        std::max<int64_t>(kRowTile, (4096 / std::max<int64_t>(1, n_tok)) / kRowTile * kRowTile);
    pool.parallel_for((n_out + kRowTile - 1) / kRowTile, std::max<int64_t>(1, grain / kRowTile),
                      [&](int64_t tb, int64_t te, int) {
                          thread_local std::vector<float> scratch;
                          if ((int64_t)scratch.size() < kRowTile * n_in)
                              scratch.resize((size_t)(kRowTile * n_in));
                          const int64_t r0 = tb * kRowTile, r1 = std::min(n_out, te * kRowTile);
                          // y rows for [r0, r1) of every token: write through a strided view.
                          k.matmul_rows(W, r0, r1, x, n_tok, y + r0, n_out, scratch.data());
                      });
}

void get_row(const TensorView& W, int64_t r, float* y) {
    check(r >= 0 && r < W.rows(), "get_row: row " + std::to_string(r) + " out of range");
    load_row(W, r, y);
}

void rms_norm(const float* x, const TensorView& w, float eps, int64_t n_rows, int64_t n, float* y) {
    thread_local std::vector<float> wf;
    wf.resize((size_t)n);
    cpu_kernels().dequant_row(w.dtype, w.data, wf.data(), n);
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += (double)xr[i] * xr[i];
        const float scale = 1.0f / std::sqrt((float)(ss / (double)n) + eps);
        for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * wf[(size_t)i];
    }
}

namespace {

// Row r as f32: in place for plain F32 rows, else widened into buf.
const float* row_f32(const TensorView& W, int64_t r, std::vector<float>& buf) {
    if (W.dtype == DType::F32 && !W.scale) return (const float*)W.row(r);
    buf.resize((size_t)W.cols());
    load_row(W, r, buf.data());
    return buf.data();
}

}  // namespace

void rows_dot(const TensorView& W, int64_t r0, int64_t n_rows, const float* x, float* y) {
    const CpuKernels& k = cpu_kernels();
    thread_local std::vector<float> buf;
    for (int64_t i = 0; i < n_rows; ++i) y[i] = k.dot_f32(row_f32(W, r0 + i, buf), x, W.cols());
}

void rows_axpy(const TensorView& W, int64_t r0, int64_t n_rows, const float* x, float* y) {
    const CpuKernels& k = cpu_kernels();
    thread_local std::vector<float> buf;
    std::fill(y, y + W.cols(), 0.f);
    for (int64_t i = 0; i < n_rows; ++i) k.axpy(x[i], row_f32(W, r0 + i, buf), y, W.cols());
}

void rope(const RopeTable& r, float* x, int64_t n_head, int64_t stride, int64_t pos) {
    const int64_t half = (int64_t)r.inv_freq.size();
    for (int64_t i = 0; i < half; ++i) {
        // f32 angle as transformers computes it: inv_freq * pos.
        const float ang = (float)pos * r.inv_freq[(size_t)i];
        const float c = std::cos(ang) * r.mag, s = std::sin(ang) * r.mag;
        const int64_t i0 = r.pairs ? 2 * i : i, i1 = r.pairs ? 2 * i + 1 : i + half;
        for (int64_t h = 0; h < n_head; ++h) {
            float* v = x + h * stride;
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = b * c + a * s;
        }
    }
}

void softmax(float* x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace sluice
