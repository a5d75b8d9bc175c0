// sluice convert (HF directory -> GGUF) and sluice quantize (GGUF or HF -> requantized GGUF).
#include <cstdio>

#include "commands.h"
#include "convert/gguf_export.h"
#include "core/error.h"
#include "core/strings.h"

namespace sluice::cli {
namespace {

std::optional<DType> parse_type(const std::string& s, const char* flag) {
    if (s.empty()) return std::nullopt;
    const auto t = dtype_from_name(s);
    check(t.has_value() && gguf_weight_type(*t),
          std::string(flag) + " '" + s +
              "' is not a weight type (F32, F16, BF16, Q8_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K, Q4_0)");
    return t;
}

}  // namespace

void register_convert(CLI::App& app, ConvertOptions& o) {
    auto* c = app.add_subcommand("convert", "HF safetensors directory -> GGUF with llama.cpp's names and metadata");
    c->add_option("hf_dir", o.in, "Hugging Face model directory")->required();
    c->add_option("-o,--out", o.out, "output .gguf")->required();
    c->add_option("--type", o.type, "type of every matrix: bf16, f16, f32, q8_0, ... (default: as stored)");
    c->add_option("-t,--threads", o.threads, "threads (default: all)");
    c->add_flag("-q,--quiet", o.quiet, "no progress or per-tensor table");
    o.convert_cmd = c;
    auto* q = app.add_subcommand("quantize", "requantize a model's routed experts (and optionally the rest) into a GGUF");
    q->add_option("-m,--model", o.in, "GGUF file or HF directory")->required();
    q->add_option("-o,--out", o.out, "output .gguf")->required();
    q->add_option("--experts", o.experts, "routed experts: Q4_K, Q3_K, Q2_K, ...")->required();
    q->add_option("--dense", o.dense, "attention, shared experts, dense FFN (default: unchanged)");
    q->add_option("--embd", o.embd, "token embeddings (default: unchanged)");
    q->add_option("--output", o.output, "output projection (default: unchanged)");
    q->add_option("-t,--threads", o.threads, "threads (default: all)");
    q->add_flag("-q,--quiet", o.quiet, "no progress or per-tensor table");
    o.quantize_cmd = q;
}

int cmd_convert(const ConvertOptions& o) {
    ExportOptions eo;
    eo.threads = o.threads;
    if (o.convert_cmd && o.convert_cmd->parsed()) {
        const auto t = parse_type(o.type, "--type");
        eo.types = {t, t, t, t};
    } else {
        eo.types.experts = parse_type(o.experts, "--experts");
        eo.types.dense = parse_type(o.dense, "--dense");
        eo.types.embd = parse_type(o.embd, "--embd");
        eo.types.output = parse_type(o.output, "--output");
    }
    if (!o.quiet) {
        std::fprintf(stderr, "%-36s %-6s %-20s %10s %9s\n", "tensor", "type", "shape", "rmse", "rel err");
        eo.on_tensor = [](size_t done, size_t total, const TensorReport& r) {
            std::string shape;
            for (size_t i = 0; i < r.ne.size(); ++i) shape += (i ? "x" : "") + std::to_string(r.ne[i]);
            if (r.requantized)
                std::fprintf(stderr, "\r%-36s %-6s %-20s %10.3e %8.3f%%\n", r.name.c_str(),
                             dtype_name(r.type), shape.c_str(), r.rmse, 100 * r.rel_err);
            else
                std::fprintf(stderr, "\r%-36s %-6s %-20s %10s %9s\n", r.name.c_str(),
                             dtype_name(r.type), shape.c_str(), "copied", "");
            const int width = 40, fill = (int)(width * done / total);
            std::fprintf(stderr, "[%s%s] %zu/%zu tensors", std::string((size_t)fill, '#').c_str(),
                         std::string((size_t)(width - fill), ' ').c_str(), done, total);
            std::fflush(stderr);
        };
    }
    const auto reports = export_gguf(o.in, o.out, eo);
    if (!o.quiet) std::fprintf(stderr, "\n");
    uint64_t n = 0;
    for (const auto& r : reports) n += r.requantized;
    std::fprintf(stderr, "wrote %s: %zu tensors (%llu quantized or converted)\n", o.out.c_str(),
                 reports.size(), (unsigned long long)n);
    return 0;
}

}  // namespace sluice::cli
