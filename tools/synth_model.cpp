// Writes a synthetic MoE GGUF (Qwen3-MoE, DeepSeek-V3 or Qwen3.5-MoE shapes) with real layer shapes and random but sane weights
// (rows drawn from a pool of quantized Gaussian rows, scaled 1/sqrt(n_in) so activations
// stay O(1)), with the tokenizer of a small real GGUF. For benchmarks; never for quality.
//
// Routing must vary from token to token as in a trained model, or a benchmark measures a
// cache that always hits. With random weights, attention is near-uniform, so each layer adds
// roughly the running mean of its values: a component shared by all tokens that, summed over
// dozens of layers, makes every router pick the same experts. So embeddings are unique per
// token and the output projections (attn_output, expert down) are scaled down: the residual
// stream stays dominated by the token-specific embedding.
//   sluice-synth --shape qwen3-30b-a3b -o /data/q30b.gguf [--layers N] [--attn-type Q4_K]
//   sluice-synth --shape deepseek-v3 -o /data/dsv3.gguf --layers 5   (1 dense + 4 MoE layers)
//   sluice-synth --shape qwen3.5-397b -o /data/q35.gguf --layers 12  (9 DeltaNet + 3 attention)
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "backend/cpu/quant_ref.h"
#include "core/error.h"
#include "core/strings.h"
#include "formats/gguf.h"
#include "convert/gguf_export.h"
#include "formats/gguf_writer.h"
#include "model/config.h"

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

// DeepSeek-V3 (671B): MLA, 3 dense lead layers, 256 experts of FFN 2048 (8 used, groups 8/4),
// one shared expert. Layer count overridable; dense lead layers are capped at a third of them.
struct DsShape {
    int layers = 61, dense_lead = 3, hidden = 7168, n_head = 128, q_lora = 1536, kv_lora = 512,
        nope = 128, rope = 64, v_dim = 128, ff = 18432, experts = 256, used = 8, ff_exp = 2048,
        groups = 8, groups_used = 4, shared = 1;
    DType expert_type = DType::Q4_K, dense_type = DType::Q8_0, embd_type = DType::Q8_0;
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

// Tensor writers over row pools (one pool per input width and scale).
class Synth {
  public:
    explicit Synth(GGUFWriter& w) : w_(w) {}
    const RowPool& pool(DType t, int64_t n_in, float scale = 1.0f, int rows = 256) {
        pools_.push_back(std::make_unique<RowPool>(t, n_in, rows, 1000 + pools_.size(), scale));
        return *pools_.back();
    }
    void quant(const std::string& name, DType t, std::vector<int64_t> ne, const RowPool& p) {
        const uint64_t sd = seed_++;
        w_.add_tensor(name, t, std::move(ne), [&p, sd](uint8_t* dst, size_t n) { p.fill(dst, n, sd); });
    }
    void constant(const std::string& name, int64_t n, float v) {
        w_.add_tensor(name, DType::F32, {n}, [v](uint8_t* dst, size_t nb) {
            for (size_t i = 0; i < nb / 4; ++i) ((float*)dst)[i] = v;
        });
    }
    void gaussian(const std::string& name, std::vector<int64_t> ne, float sigma) {
        const uint64_t sd = seed_++;
        w_.add_tensor(name, DType::F32, std::move(ne), [sd, sigma](uint8_t* dst, size_t nb) {
            std::mt19937_64 rng(sd);
            std::normal_distribution<float> nd(0.f, sigma);
            for (size_t i = 0; i < nb / 4; ++i) ((float*)dst)[i] = nd(rng);
        });
    }

    // token_embd (the pool's rows in order: one unique row per token), output_norm, output.
    void embeddings_and_output(DType t, int64_t H, int vocab, const RowPool& embd,
                               const RowPool& out) {
        w_.add_tensor("token_embd.weight", t, {H, vocab},
                      [&embd](uint8_t* dst, size_t n) { embd.copy_in_order(dst, n); });
        constant("output_norm.weight", H, 1.f);
        quant("output.weight", t, {H, vocab}, out);
    }
    // Router and stacked routed experts of one layer (b: "blk.N.").
    void routed_experts(const std::string& b, DType t, int64_t H, int64_t F, int n_exp,
                        const RowPool& in, const RowPool& down) {
        gaussian(b + "ffn_gate_inp.weight", {H, n_exp}, 1.0f / std::sqrt((float)H));
        quant(b + "ffn_gate_exps.weight", t, {H, F, n_exp}, in);
        quant(b + "ffn_up_exps.weight", t, {H, F, n_exp}, in);
        quant(b + "ffn_down_exps.weight", t, {F, H, n_exp}, down);
    }
    // ffn_{gate,up,down}<sfx>.weight of a SwiGLU block (dense FFN: "", shared expert: "_shexp").
    void swiglu(const std::string& b, const std::string& sfx, DType t, int64_t H, int64_t F,
                const RowPool& in, const RowPool& down) {
        quant(b + "ffn_gate" + sfx + ".weight", t, {H, F}, in);
        quant(b + "ffn_up" + sfx + ".weight", t, {H, F}, in);
        quant(b + "ffn_down" + sfx + ".weight", t, {F, H}, down);
    }

  private:
    GGUFWriter& w_;
    std::vector<std::unique_ptr<RowPool>> pools_;
    uint64_t seed_ = 1;
};

constexpr float kOutScale = 0.05f;  // see the note at the top

// s must outlive w.write(): the tensor callbacks read its row pools.
void write_deepseek(const DsShape& d, int vocab, GGUFWriter& w, Synth& s) {
    ModelConfig c;
    c.arch = ArchId::DeepSeek2;
    c.arch_name = "deepseek2";
    c.n_layer = d.layers;
    c.n_ctx_train = 163840;
    c.n_embd = d.hidden;
    c.n_ff = d.ff;
    c.n_head = c.n_head_kv = d.n_head;
    c.head_dim = d.nope + d.rope;
    c.v_head_dim = d.v_dim;
    c.n_rot = d.rope;
    c.qk_nope = d.nope;
    c.q_lora_rank = d.q_lora;
    c.kv_lora_rank = d.kv_lora;
    c.n_vocab = vocab;
    c.n_expert = d.experts;
    c.n_expert_used_trained = d.used;
    c.n_ff_exp = d.ff_exp;
    c.n_dense_lead = d.dense_lead;
    c.n_ff_shexp = d.shared * d.ff_exp;
    c.gating = Gating::Sigmoid;
    c.n_group = d.groups;
    c.topk_group = d.groups_used;
    c.routed_scale = 2.5f;
    c.rope = {10000.f, true, true, 40.f, 4096, 32.f, 1.f, 1.f, 1.f};
    write_config_meta(c, w);
    w.set_str("general.name", "synthetic deepseek-v3");
    const int64_t H = d.hidden, NH = d.n_head, QD = NH * (d.nope + d.rope), F = d.ff_exp;
    const DType dt = d.dense_type, et = d.expert_type;
    const RowPool& p_embd = s.pool(d.embd_type, H, std::sqrt((float)H), vocab);
    const RowPool& p_out = s.pool(d.embd_type, H);
    const RowPool& p_h = s.pool(dt, H);
    const RowPool& p_qlora = s.pool(dt, d.q_lora);
    const RowPool& p_nope = s.pool(dt, d.nope);
    const RowPool& p_kvlora = s.pool(dt, d.kv_lora);
    const RowPool& p_o = s.pool(dt, NH * d.v_dim, kOutScale);
    const RowPool& p_ff_down = s.pool(dt, d.ff, kOutScale);
    const RowPool& p_sh_down = s.pool(dt, F * d.shared, kOutScale);
    const RowPool& p_exp_in = s.pool(et, H);
    const RowPool& p_exp_down = s.pool(et, F, kOutScale);
    s.embeddings_and_output(d.embd_type, H, vocab, p_embd, p_out);
    for (int l = 0; l < d.layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        s.constant(b + "attn_norm.weight", H, 1.f);
        s.quant(b + "attn_q_a.weight", dt, {H, d.q_lora}, p_h);
        s.constant(b + "attn_q_a_norm.weight", d.q_lora, 1.f);
        s.quant(b + "attn_q_b.weight", dt, {d.q_lora, QD}, p_qlora);
        s.quant(b + "attn_kv_a_mqa.weight", dt, {H, d.kv_lora + d.rope}, p_h);
        s.constant(b + "attn_kv_a_norm.weight", d.kv_lora, 1.f);
        s.quant(b + "attn_k_b.weight", dt, {d.nope, d.kv_lora, NH}, p_nope);
        s.quant(b + "attn_v_b.weight", dt, {d.kv_lora, d.v_dim, NH}, p_kvlora);
        s.quant(b + "attn_output.weight", dt, {NH * d.v_dim, H}, p_o);
        s.constant(b + "ffn_norm.weight", H, 1.f);
        if (l < d.dense_lead) {
            s.swiglu(b, "", dt, H, d.ff, p_h, p_ff_down);
            continue;
        }
        s.constant(b + "exp_probs_b.bias", d.experts, 0.f);
        s.routed_experts(b, et, H, F, d.experts, p_exp_in, p_exp_down);
        s.swiglu(b, "_shexp", dt, H, F * d.shared, p_h, p_sh_down);
    }
}

// Qwen3.5-397B-A17B: 60 layers, 3 Gated DeltaNet : 1 gated attention, 512 experts of FFN
// 1024 (10 used) plus a gated shared expert of 1024. Layer count overridable (the pattern
// stays 3:1).
struct Qwen35Shape {
    int layers = 60, interval = 4, hidden = 4096, n_head = 32, n_head_kv = 2, head_dim = 256,
        n_rot = 64, lin_k_heads = 16, lin_v_heads = 64, lin_k_dim = 128, lin_v_dim = 128,
        conv = 4, experts = 512, used = 10, ff_exp = 1024, ff_shexp = 1024;
    DType expert_type = DType::Q4_K, dense_type = DType::Q8_0, embd_type = DType::Q8_0;
};

void write_qwen35(const Qwen35Shape& d, int vocab, GGUFWriter& w, Synth& s) {
    ModelConfig c;
    c.arch = ArchId::Qwen35Moe;
    c.arch_name = "qwen35moe";
    c.n_layer = d.layers;
    c.n_ctx_train = 262144;
    c.n_embd = d.hidden;
    c.n_head = d.n_head;
    c.n_head_kv = d.n_head_kv;
    c.head_dim = c.v_head_dim = d.head_dim;
    c.n_rot = d.n_rot;
    c.n_vocab = vocab;
    c.n_expert = d.experts;
    c.n_expert_used_trained = d.used;
    c.n_ff_exp = d.ff_exp;
    c.n_ff_shexp = d.ff_shexp;
    c.rope.theta = 1e7f;
    c.gdn = {d.lin_k_heads, d.lin_v_heads, d.lin_k_dim, d.lin_v_dim, d.conv, true};
    for (int l = 0; l < d.layers; ++l) c.layer_linear.push_back((l + 1) % d.interval != 0);
    write_config_meta(c, w);
    w.set_str("general.name", "synthetic qwen3.5-397b-a17b");
    const int64_t H = d.hidden, QD = (int64_t)d.n_head * d.head_dim,
                  KVD = (int64_t)d.n_head_kv * d.head_dim, NV = d.lin_v_heads,
                  VD = NV * d.lin_v_dim, C = 2 * (int64_t)d.lin_k_heads * d.lin_k_dim + VD,
                  F = d.ff_exp;
    const DType dt = d.dense_type, et = d.expert_type;
    const RowPool& p_embd = s.pool(d.embd_type, H, std::sqrt((float)H), vocab);
    const RowPool& p_out = s.pool(d.embd_type, H);
    const RowPool& p_h = s.pool(dt, H);
    const RowPool& p_o = s.pool(dt, QD, kOutScale);
    const RowPool& p_ssm_out = s.pool(dt, VD, kOutScale);
    const RowPool& p_sh_down = s.pool(dt, d.ff_shexp, kOutScale);
    const RowPool& p_exp_in = s.pool(et, H);
    const RowPool& p_exp_down = s.pool(et, F, kOutScale);
    s.embeddings_and_output(d.embd_type, H, vocab, p_embd, p_out);
    for (int l = 0; l < d.layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        s.constant(b + "attn_norm.weight", H, 1.f);
        if ((l + 1) % d.interval != 0) {
            s.quant(b + "attn_qkv.weight", dt, {H, C}, p_h);
            s.quant(b + "attn_gate.weight", dt, {H, VD}, p_h);
            s.gaussian(b + "ssm_beta.weight", {H, NV}, 1.0f / std::sqrt((float)H));
            s.gaussian(b + "ssm_alpha.weight", {H, NV}, 1.0f / std::sqrt((float)H));
            s.constant(b + "ssm_a", NV, -1.f);
            s.constant(b + "ssm_dt.bias", NV, 1.f);
            s.gaussian(b + "ssm_conv1d.weight", {d.conv, C}, 0.5f);
            s.constant(b + "ssm_norm.weight", d.lin_v_dim, 1.f);
            s.quant(b + "ssm_out.weight", dt, {VD, H}, p_ssm_out);
        } else {
            s.quant(b + "attn_q.weight", dt, {H, 2 * QD}, p_h);
            s.quant(b + "attn_k.weight", dt, {H, KVD}, p_h);
            s.quant(b + "attn_v.weight", dt, {H, KVD}, p_h);
            s.quant(b + "attn_output.weight", dt, {QD, H}, p_o);
            s.constant(b + "attn_q_norm.weight", d.head_dim, 1.f);
            s.constant(b + "attn_k_norm.weight", d.head_dim, 1.f);
        }
        s.constant(b + "post_attention_norm.weight", H, 1.f);
        s.routed_experts(b, et, H, F, d.experts, p_exp_in, p_exp_down);
        s.swiglu(b, "_shexp", dt, H, d.ff_shexp, p_h, p_sh_down);
        s.gaussian(b + "ffn_gate_inp_shexp.weight", {H}, 1.0f / std::sqrt((float)H));
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"write a synthetic MoE model (GGUF) with real shapes for benchmarks"};
    std::string shape_name = "qwen3-30b-a3b", out,
                tok_from = "../shared/models/tiny-qwen3moe-Q8_0.gguf";
    int layers = 0;
    std::string attn_type;
    app.add_option("--shape", shape_name,
                   "qwen3-30b-a3b | tiny-bench | deepseek-v3 | qwen3.5-397b");
    app.add_option("-o,--out", out, "output .gguf")->required();
    app.add_option("--layers", layers, "override the layer count (e.g. to fit a disk)");
    app.add_option("--attn-type", attn_type,
                   "weight type of the attention projections (qwen3 shapes; default Q8_0)");
    app.add_option("--tokenizer-from", tok_from, "GGUF whose tokenizer metadata is copied");
    CLI11_PARSE(app, argc, argv);
    try {
        const GGUFFile tok = read_gguf(tok_from);
        const int vocab = (int)tok.get_string_array("tokenizer.ggml.tokens").size();
        GGUFWriter w;
        w.copy_meta(tok, "tokenizer.");
        Synth sy(w);
        if (shape_name == "deepseek-v3") {
            DsShape d;
            if (layers > 0) {
                d.layers = layers;
                d.dense_lead = std::min(d.dense_lead, std::max(1, layers / 3));
            }
            write_deepseek(d, vocab, w, sy);
            std::fprintf(stderr, "writing %s: deepseek-v3 shape, %d layers (%d dense), %s\n",
                         out.c_str(), d.layers, d.dense_lead,
                         format_bytes(w.total_tensor_bytes()).c_str());
            w.write(out);
            return 0;
        }
        if (shape_name == "qwen3.5-397b") {
            Qwen35Shape d;
            if (layers > 0) d.layers = layers;
            write_qwen35(d, vocab, w, sy);
            std::fprintf(stderr, "writing %s: qwen3.5-397b shape, %d layers (%d full attention), %s\n",
                         out.c_str(), d.layers, d.layers / d.interval,
                         format_bytes(w.total_tensor_bytes()).c_str());
            w.write(out);
            return 0;
        }
        const Shape* sp = nullptr;
        for (const auto& s : kShapes)
            if (shape_name == s.name) sp = &s;
        check(sp != nullptr, "unknown --shape '" + shape_name + "'");
        Shape s = *sp;
        if (layers > 0) s.layers = layers;
        if (!attn_type.empty()) {
            const std::optional<DType> t = dtype_from_name(attn_type);
            check(t && gguf_weight_type(*t),
                  "--attn-type: '" + attn_type + "' is not a weight type of GGUF files");
            s.attn_type = *t;
        }
        ModelConfig c;
        c.arch = ArchId::Qwen3Moe;
        c.arch_name = "qwen3moe";
        c.n_layer = s.layers;
        c.n_ctx_train = 32768;
        c.n_embd = s.hidden;
        c.n_ff = s.ff * 8;
        c.n_head = s.n_head;
        c.n_head_kv = s.n_head_kv;
        c.head_dim = c.v_head_dim = c.n_rot = s.head_dim;
        c.n_vocab = vocab;
        c.n_expert = s.experts;
        c.n_expert_used_trained = s.used;
        c.n_ff_exp = s.ff;
        c.rope.theta = 1e6f;
        write_config_meta(c, w);
        w.set_str("general.name", std::string("synthetic ") + s.name);

        const int64_t H = s.hidden, QD = (int64_t)s.n_head * s.head_dim,
                      KD = (int64_t)s.n_head_kv * s.head_dim;
        // O(1) entries: the embedding must outweigh 48 layers of small additions.
        const RowPool& p_embd = sy.pool(s.embd_type, H, std::sqrt((float)H), vocab);
        const RowPool& p_out = sy.pool(s.embd_type, H);
        const RowPool& p_attn_in = sy.pool(s.attn_type, H);
        const RowPool& p_attn_out = sy.pool(s.attn_type, QD, kOutScale);
        const RowPool& p_exp_in = sy.pool(s.expert_type, H);
        const RowPool& p_exp_down = sy.pool(s.expert_type, s.ff, kOutScale);
        sy.embeddings_and_output(s.embd_type, H, vocab, p_embd, p_out);
        for (int l = 0; l < s.layers; ++l) {
            const std::string b = "blk." + std::to_string(l) + ".";
            sy.constant(b + "attn_norm.weight", H, 1.f);
            sy.quant(b + "attn_q.weight", s.attn_type, {H, QD}, p_attn_in);
            sy.quant(b + "attn_k.weight", s.attn_type, {H, KD}, p_attn_in);
            sy.quant(b + "attn_v.weight", s.attn_type, {H, KD}, p_attn_in);
            sy.quant(b + "attn_output.weight", s.attn_type, {QD, H}, p_attn_out);
            sy.constant(b + "attn_q_norm.weight", s.head_dim, 1.f);
            sy.constant(b + "attn_k_norm.weight", s.head_dim, 1.f);
            sy.constant(b + "ffn_norm.weight", H, 1.f);
            sy.routed_experts(b, s.expert_type, H, s.ff, s.experts, p_exp_in, p_exp_down);
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
