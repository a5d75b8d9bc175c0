#pragma once
// Writes a model as a GGUF that llama.cpp can load: from a Hugging Face directory (`sluice
// convert`, llama.cpp's tensor names, layouts and metadata for every architecture we run) or
// from a GGUF (`sluice quantize`: the same tensors, requantized).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace sluice {

class GGUFWriter;
struct ModelConfig;
struct Vocab;

// Target types per tensor class; nullopt keeps the source type (HF: bf16/f16/f32 as stored,
// FP8 -> bf16; GGUF: unchanged bytes). 1-D tensors (norms, biases), routers and DeltaNet
// conv/gate vectors always stay f32.
struct ExportTypes {
    std::optional<DType> experts;  // routed experts
    std::optional<DType> dense;    // other matrices: attention, shared experts, dense FFN
    std::optional<DType> embd;     // token_embd
    std::optional<DType> output;   // output (lm head)
};

struct TensorReport {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    double rmse = 0;     // vs the source weights (0 when copied)
    double rel_err = 0;  // rmse / rms(source)
    bool requantized = false;
};

struct ExportOptions {
    ExportTypes types;
    int threads = 0;  // 0: all cores
    // Called after each tensor is written: tensors done, total, and its report.
    std::function<void(size_t, size_t, const TensorReport&)> on_tensor;
};

// in: a HF model directory or a .gguf. Returns one report per tensor written.
std::vector<TensorReport> export_gguf(const std::string& in, const std::string& out,
                                      const ExportOptions& o);

// Metadata (gguf_meta.cpp): the keys config_from_gguf reads, as llama.cpp's converter names
// them, and the tokenizer of a HF directory as llama.cpp stores it.
void write_config_meta(const ModelConfig& c, GGUFWriter& w);
void write_tokenizer_meta(const Vocab& v, const std::string& chat_template, GGUFWriter& w);

}  // namespace sluice
