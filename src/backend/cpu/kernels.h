#pragma once
// Per-ISA CPU kernels behind one table, chosen once at run time from cpuid
// (SLUICE_ISA=scalar|avx2|avx512|avx512vnni|avx512bf16|amx forces one). Every entry has a scalar
// reference in quant_ref.h and a differential test on random data.
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sluice {

enum class Isa { Scalar, Avx2, Avx512, Avx512Vnni, Avx512Bf16, Amx };

struct CpuKernels {
    Isa isa;
    const char* name;
    float (*dot_f32)(const float* a, const float* b, int64_t n);
    void (*dequant_row)(DType t, const void* src, float* y, int64_t n);
    // y[t * ldy + (r - r0)] = W.row(r) . x[t * W.cols() ..] for r in [r0, r1), t in [0, n_tok).
    // x: [n_tok, n_in]. scratch: >= kRowTile * n_in floats.
    void (*matmul_rows)(const TensorView& W, int64_t r0, int64_t r1, const float* x, int64_t n_tok,
                        float* y, int64_t ldy, float* scratch);
    // y[i] += a * x[i]
    void (*axpy)(float a, const float* x, float* y, int64_t n);
    // Attention of nq <= 4 query heads over the same keys (prefill), each key row read once:
    // s[h * lds + p] = scale * sum_d q[h * hd + d] * kt[d * ldk + p] for h < nq, p < n_pos.
    // kt: [hd][ldk] (keys transposed), ldk >= n_pos rounded up to 16 (the pad is read).
    void (*scores_kt)(const float* q, int nq, const float* kt, int64_t ldk, int64_t n_pos,
                      int64_t hd, float scale, float* s, int64_t lds);
    // The same scores with keys in rows (decode, straight from the KV cache):
    // s[h * lds + p] = scale * sum_d q[h * hd + d] * k[p * ldk + d] for h < nq <= 4, p < n_pos.
    void (*scores_rows)(const float* q, int nq, const float* k, int64_t ldk, int64_t n_pos,
                        int64_t hd, float scale, float* s, int64_t lds);
    // o[h * vd + c] = sum_p s[h * lds + p] * v[p * ldv + c] for h < nq <= 4, c < vd, p < n_pos,
    // summed in order of p.
    void (*weighted_rows)(const float* s, int nq, int64_t lds, const float* v, int64_t ldv,
                          int64_t n_pos, int64_t vd, float* o);
    // x[i] = exp(x[i] - m) for i < n (m >= every x[i]); returns the sum. The softmax core.
    // Scalar: std::exp; SIMD tables: a Cephes-style polynomial within 2 ulp of it.
    double (*exp_shift)(float* x, int64_t n, float m);
    // XOR of p[0..n): a read-only sweep whose speed is the memory read bandwidth (no FP, so
    // arbitrary bytes cannot hit denormal slow paths).
    uint64_t (*xor_words)(const uint64_t* p, int64_t n);
    // y[t * ldy + r] = W.row(r) . act(t) for r < nr, t < nt, where row r starts at w + r * ws.
    // Quantized W (activation_type_for(dt) != F32): act rows are activation blocks `as` bytes
    // apart, integer dot products. F32/F16/BF16 W: act rows are f32. Returns false for other
    // dtypes (the caller dequantizes instead). The result of a (row, token) pair does not
    // depend on nr, nt or the split.
    bool (*gemm)(DType dt, const void* w, size_t ws, int64_t nr, const void* act, size_t as,
                 int64_t nt, int64_t n, float* y, int64_t ldy);
    // bf16 batch products (Isa::Amx: the tile unit; Isa::Avx512Bf16: VDPBF16PS; nullptr
    // elsewhere). pack_bf16 converts x: [nt, n] once per batch (packed_bf16_bytes(nt, n)
    // bytes); gemm_bf16 then gives y[t * ldy + r] = bf16(W.row(r)) . bf16(x[t]) summed in f32,
    // dequantizing each weight row once for all nt tokens, which pays off for batches
    // (bf16_min_tokens in ops.cpp). n % 32 == 0; returns false for dtypes without a gemm path.
    // A (row, token) result does not depend on nr, nt or the split, but differs from gemm's
    // (bf16 activations instead of 8-bit blocks).
    void (*pack_bf16)(const float* x, int64_t nt, int64_t n, void* out);
    bool (*gemm_bf16)(DType dt, const void* w, size_t ws, int64_t nr, const void* xp, int64_t nt,
                      int64_t n, float* y, int64_t ldy);
    // x: [n] f32 -> the activation blocks of type act (Q8_K or Q8_0; others through the
    // reference) the integer kernels read, byte for byte quantize_row_ref's.
    void (*quantize_act)(DType act, const float* x, void* dst, int64_t n);
};

inline size_t packed_bf16_bytes(int64_t nt, int64_t n) {
    return (size_t)((nt + 15) / 16) * (size_t)(n / 32) * 1024;  // 1 KiB per 16 x 32 tile
}

constexpr int kRowTile = 8;  // rows dequantized together in matmul_rows

const CpuKernels& cpu_kernels();             // the chosen table
const CpuKernels* cpu_kernels_for(Isa isa);  // nullptr if this CPU cannot run it
std::vector<Isa> supported_isas();

}  // namespace sluice
