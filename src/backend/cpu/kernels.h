#pragma once
// Per-ISA CPU kernels behind one table, chosen once at run time from cpuid
// (SLUICE_ISA=scalar|avx2|avx512|avx512vnni forces one). Every entry has a scalar reference in
// quant_ref.h and a differential test on random data.
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sluice {

enum class Isa { Scalar, Avx2, Avx512, Avx512Vnni };

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
};

constexpr int kRowTile = 8;  // rows dequantized together in matmul_rows

const CpuKernels& cpu_kernels();             // the chosen table
const CpuKernels* cpu_kernels_for(Isa isa);  // nullptr if this CPU cannot run it
std::vector<Isa> supported_isas();

}  // namespace sluice
