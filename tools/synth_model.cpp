// Writes a synthetic Qwen3-MoE GGUF with real layer shapes and random but sane weights
// (rows drawn from a pool of quantized Gaussian rows, scaled 1/sqrt(n_in) so activations
// stay O(1)), with the tokenizer of a small real GGUF. For benchmarks; never for quality.
//
// Routing must vary from token to token as in a trained model, or a benchmark measures a
// cache that always hits. With random weights, attention is near-uniform, so each layer adds
// roughly the running mean of its values: a component shared by all tokens that, summed over
// dozens of layers, makes every router pick the same experts. So embeddings are unique per
// token and the output projections (attn_output, expert down) are scaled down: the residual
// stream stays dominated by the token-specific embedding.
//   sluice-synth --shape qwen3-30b-a3b -o /data/q30b.gguf [--layers N]
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "backend/cpu/quant_ref.h"
#include "core/error.h"
#include "core/strings.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

using namespace sluice;

namespace {

struct Shape {
    const char* name;
    int layers, hidden, n_head, n_head_kv, head_dim, experts, used, ff;
    DType expert_type, attn_type, embd_type;
};

const Shape kShapes[] = {
    // Qwen3-30B-A3B: 48 layers, 128 experts of FFN 768, 8 used.
    {"qwen3-30b-a3b", 48, 2048, 32, 4, 128, 128, 8, 768, DType::Q4_K, DType::Q8_0, DType::Q8_0},
    // The CPU issue's small in-RAM benchmark model.
    {"tiny-bench", 16, 1024, 16, 4, 64, 64, 8, 512, DType::Q4_K, DType::Q8_0, DType::Q8_0},
};

// Quantized rows of N(0, 1/n_in) values; tensors are filled with rows picked at random.
class RowPool {
  public:
    RowPool(DType t, int64_t n_in, int rows, uint64_t seed, float scale = 1.0f)
        : t_(t), row_bytes_(row_bytes(t, n_in)) {
        std::mt19937_64 rng(seed);
        std::normal_distribution<float> nd(0.f, scale / std::sqrt((float)n_in));
        std::vector<float> x((size_t)n_in);
        data_.resize(row_bytes_ * (size_t)rows);
        for (int r = 0; r < rows; ++r) {
            for (auto& v : x) v = nd(rng);
            quantize_row_ref(t, x.data(), data_.data() + (size_t)r * row_bytes_, n_in);
        }
        n_rows_ = rows;
    }
    // Rows in pool order (a pool with one row per tensor row gives unique rows).
    void copy_in_order(uint8_t* dst, size_t nbytes) const {
        std::memcpy(dst, data_.data(), std::min(nbytes, data_.size()));
    }
    void fill(uint8_t* dst, size_t nbytes, uint64_t seed) const {
        std::mt19937_64 rng(seed);
        for (size_t off = 0; off < nbytes; off += row_bytes_)
            std::memcpy(dst + off, data_.data() + (rng() % (uint64_t)n_rows_) * row_bytes_,
                        row_bytes_);
    }

  private:
    DType t_;
    size_t row_bytes_;
    int n_rows_ = 0;
    std::vector<uint8_t> data_;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"write a synthetic MoE model (GGUF) with real shapes for benchmarks"};
    std::string shape_name = "qwen3-30b-a3b", out,
                tok_from = "../shared/models/tiny-qwen3moe-Q8_0.gguf";
    int layers = 0;
    app.add_option("--shape", shape_name, "qwen3-30b-a3b | tiny-bench");
    app.add_option("-o,--out", out, "output .gguf")->required();
    app.add_option("--layers", layers, "override the layer count (e.g. to fit a disk)");
    app.add_option("--tokenizer-from", tok_from, "GGUF whose tokenizer metadata is copied");
    CLI11_PARSE(app, argc, argv);
    try {
        const Shape* sp = nullptr;
        for (const auto& s : kShapes)
            if (shape_name == s.name) sp = &s;
        check(sp != nullptr, "unknown --shape '" + shape_name + "'");
        Shape s = *sp;
        if (layers > 0) s.layers = layers;
        const GGUFFile tok = read_gguf(tok_from);
        const int vocab = (int)tok.get_string_array("tokenizer.ggml.tokens").size();

        GGUFWriter w;
        w.copy_meta(tok, "tokenizer.");
        const std::string a = "qwen3moe";
        w.set_str("general.architecture", a);
        w.set_str("general.name", std::string("synthetic ") + s.name);
        w.set_u32(a + ".block_count", (uint32_t)s.layers);
        w.set_u32(a + ".context_length", 32768);
        w.set_u32(a + ".embedding_length", (uint32_t)s.hidden);
        w.set_u32(a + ".feed_forward_length", (uint32_t)(s.ff * 8));
        w.set_u32(a + ".attention.head_count", (uint32_t)s.n_head);
        w.set_u32(a + ".attention.head_count_kv", (uint32_t)s.n_head_kv);
        w.set_u32(a + ".attention.key_length", (uint32_t)s.head_dim);
        w.set_u32(a + ".attention.value_length", (uint32_t)s.head_dim);
        w.set_f32(a + ".rope.freq_base", 1e6f);
        w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
        w.set_u32(a + ".expert_count", (uint32_t)s.experts);
        w.set_u32(a + ".expert_used_count", (uint32_t)s.used);
        w.set_u32(a + ".expert_feed_forward_length", (uint32_t)s.ff);

        const int64_t H = s.hidden, QD = (int64_t)s.n_head * s.head_dim,
                      KD = (int64_t)s.n_head_kv * s.head_dim;
        std::vector<std::unique_ptr<RowPool>> pools;
        auto pool = [&](DType t, int64_t n_in, float scale = 1.0f,
                        int rows = 256) -> const RowPool& {
            pools.push_back(std::make_unique<RowPool>(t, n_in, rows, 1000 + pools.size(), scale));
            return *pools.back();
        };
        constexpr float kOutScale = 0.05f;  // see the note at the top
        // O(1) entries: the embedding must outweigh 48 layers of small additions.
        const RowPool& p_embd = pool(s.embd_type, H, std::sqrt((float)H), vocab);
        const RowPool& p_out = pool(s.embd_type, H);
        const RowPool& p_attn_in = pool(s.attn_type, H);
        const RowPool& p_attn_out = pool(s.attn_type, QD, kOutScale);
        const RowPool& p_exp_in = pool(s.expert_type, H);
        const RowPool& p_exp_down = pool(s.expert_type, s.ff, kOutScale);
        uint64_t seed = 1;
        auto quant = [&](const std::string& name, DType t, std::vector<int64_t> ne,
                         const RowPool& p) {
            const uint64_t sd = seed++;
            w.add_tensor(name, t, std::move(ne),
                         [&p, sd](uint8_t* dst, size_t n) { p.fill(dst, n, sd); });
        };
        auto ones = [&](const std::string& name, int64_t n) {
            w.add_tensor(name, DType::F32, {n}, [](uint8_t* dst, size_t nb) {
                for (size_t i = 0; i < nb / 4; ++i) ((float*)dst)[i] = 1.0f;
            });
        };
        auto gaussian = [&](const std::string& name, std::vector<int64_t> ne, float sigma) {
            const uint64_t sd = seed++;
            w.add_tensor(name, DType::F32, std::move(ne), [sd, sigma](uint8_t* dst, size_t nb) {
                std::mt19937_64 rng(sd);
                std::normal_distribution<float> nd(0.f, sigma);
                for (size_t i = 0; i < nb / 4; ++i) ((float*)dst)[i] = nd(rng);
            });
        };
        w.add_tensor("token_embd.weight", s.embd_type, {H, vocab},
                     [&p_embd](uint8_t* dst, size_t n) { p_embd.copy_in_order(dst, n); });
        ones("output_norm.weight", H);
        quant("output.weight", s.embd_type, {H, vocab}, p_out);
        for (int l = 0; l < s.layers; ++l) {
            const std::string b = "blk." + std::to_string(l) + ".";
            ones(b + "attn_norm.weight", H);
            quant(b + "attn_q.weight", s.attn_type, {H, QD}, p_attn_in);
            quant(b + "attn_k.weight", s.attn_type, {H, KD}, p_attn_in);
            quant(b + "attn_v.weight", s.attn_type, {H, KD}, p_attn_in);
            quant(b + "attn_output.weight", s.attn_type, {QD, H}, p_attn_out);
            ones(b + "attn_q_norm.weight", s.head_dim);
            ones(b + "attn_k_norm.weight", s.head_dim);
            ones(b + "ffn_norm.weight", H);
            gaussian(b + "ffn_gate_inp.weight", {H, s.experts}, 1.0f / std::sqrt((float)H));
            quant(b + "ffn_gate_exps.weight", s.expert_type, {H, s.ff, s.experts}, p_exp_in);
            quant(b + "ffn_up_exps.weight", s.expert_type, {H, s.ff, s.experts}, p_exp_in);
            quant(b + "ffn_down_exps.weight", s.expert_type, {s.ff, H, s.experts}, p_exp_down);
        }
        std::fprintf(stderr, "writing %s: %s shape, %d layers, %s of tensors\n", out.c_str(),
                     s.name, s.layers, format_bytes(w.total_tensor_bytes()).c_str());
        w.write(out);
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
