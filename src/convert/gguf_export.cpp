#include "convert/gguf_export.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "backend/cpu/ops.h"
#include "backend/cpu/quant_ref.h"
#include "backend/cpu/thread_pool.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/json_file.h"
#include "formats/safetensors.h"
#include "model/arch.h"
#include "model/config.h"
#include "tokenizer/vocab.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using R = TensorRole;

enum class Class { Fixed, Experts, Dense, Embd, Output };

// One output tensor: its rows come in n_slices equal slices of f32 (an expert each, for
// stacked experts), or as raw bytes when the source already has the target type.
struct Planned {
    std::string name;
    std::vector<int64_t> ne;
    DType type = DType::F32;
    int n_slices = 1;
    std::function<std::vector<float>(int)> slice;
    std::function<void(uint8_t*)> raw;  // set: copy these bytes instead
};

DType keep_type(DType src) {
    return src == DType::F32 || src == DType::F16 || src == DType::BF16 ? src : DType::BF16;
}

DType pick(Class k, DType src, const std::vector<int64_t>& ne, const ExportTypes& t, bool hf) {
    if (k == Class::Fixed || ne.size() == 1) return DType::F32;
    const std::optional<DType>& want = k == Class::Experts ? t.experts
                                       : k == Class::Embd  ? t.embd
                                       : k == Class::Output ? t.output
                                                            : t.dense;
    DType d = want ? *want : (hf ? keep_type(src) : src);
    // k-quants need rows of whole 256-element blocks; llama.cpp falls back the same way.
    if (ne[0] % dtype_traits(d).block_elems != 0)
        d = ne[0] % dtype_traits(DType::Q8_0).block_elems == 0 && dtype_traits(d).quantized
                ? DType::Q8_0
                : DType::F16;
    return d;
}

Class role_class(R r) {
    switch (r) {
        case R::ExpGate:
        case R::ExpUp:
        case R::ExpDown: return Class::Experts;
        case R::TokEmbd: return Class::Embd;
        case R::Output: return Class::Output;
        case R::FfnRouter:
        case R::ExpProbsBias:
        case R::SsmA:
        case R::SsmDtBias:
        case R::SsmConv:
        case R::SsmNorm:
        case R::ShexpGateInp:
        case R::OutputNorm:
        case R::AttnNorm:
        case R::FfnNorm:
        case R::AttnQNorm:
        case R::AttnKNorm:
        case R::AttnQANorm:
        case R::AttnKvANorm: return Class::Fixed;
        default: return Class::Dense;
    }
}

Class name_class(const std::string& n, size_t n_dims) {
    if (n_dims == 1 || n.find("ffn_gate_inp") != std::string::npos ||
        n.find("ssm_conv1d") != std::string::npos)
        return Class::Fixed;
    if (n.find("_exps.") != std::string::npos) return Class::Experts;
    if (n == "token_embd.weight") return Class::Embd;
    if (n == "output.weight") return Class::Output;
    return Class::Dense;
}

// Rows [first_row, ...) grouped by k head [n_k][v_per_k][len] -> llama.cpp's tiled order
// [v_per_k][n_k][len]; each "row" is row_len floats.
void tile_rows(std::vector<float>& x, size_t first_row, int nk, int vpk, int len, size_t row_len) {
    const std::vector<float> src(x.begin() + (ptrdiff_t)(first_row * row_len), x.end());
    for (int k = 0; k < nk; ++k)
        for (int j = 0; j < vpk; ++j)
            for (int r = 0; r < len; ++r)
                std::memcpy(&x[(first_row + ((size_t)j * nk + k) * len + r) * row_len],
                            &src[(((size_t)k * vpk + j) * len + r) * row_len], row_len * sizeof(float));
}

void tile_cols(std::vector<float>& x, size_t n_cols, int nk, int vpk, int len) {
    const std::vector<float> src = x;
    for (size_t r = 0; r < x.size() / n_cols; ++r)
        for (int k = 0; k < nk; ++k)
            for (int j = 0; j < vpk; ++j)
                std::memcpy(&x[r * n_cols + ((size_t)j * nk + k) * len],
                            &src[r * n_cols + ((size_t)k * vpk + j) * len], (size_t)len * sizeof(float));
}

class HfSource {
  public:
    explicit HfSource(const std::string& dir)
        : dir_(dir), cfg_(config_from_hf(dir)), ix_(read_safetensors_dir(dir)), files_(ix_) {
        // Multimodal checkpoints: the text model's names without "language_model.".
        const std::string vl = "model.language_model.";
        for (const TensorInfo& t : ix_.tensors)
            if (t.name.rfind(vl, 0) == 0) alias_["model." + t.name.substr(vl.size())] = t.name;
    }
    const ModelConfig& config() const { return cfg_; }
    const TensorInfo* find(const std::string& n) const {
        auto it = alias_.find(n);
        return ix_.find(it == alias_.end() ? n : it->second);
    }
    std::vector<float> load(const TensorInfo& t) const {
        TensorView v = files_.view(t);
        if (t.dtype == DType::F8_E4M3) {
            const TensorInfo* s = ix_.find(t.name + "_scale_inv");
            check(s != nullptr, dir_ + ": FP8 tensor '" + t.name + "' has no scales");
            v.scale = (const float*)files_.view(*s).data;
        }
        std::vector<float> out((size_t)v.rows() * v.cols());
        for (int64_t r = 0; r < v.rows(); ++r) load_row(v, r, out.data() + r * v.cols());
        return out;
    }

  private:
    std::string dir_;
    ModelConfig cfg_;
    TensorIndex ix_;
    TensorFiles files_;
    std::map<std::string, std::string> alias_;
};

// HF tensors -> llama.cpp's GGUF tensors, one RoleNames row at a time.
std::vector<Planned> plan_hf(const std::shared_ptr<HfSource>& src, const ExportTypes& types) {
    const ModelConfig& c = src->config();
    const ArchInfo& arch = arch_info(c.arch);
    const DeltaNetConfig& d = c.gdn;
    std::vector<Planned> plan;
    for (const RoleNames& rn : arch.names) {
        if (!rn.hf || !rn.gguf) continue;
        const bool per_layer = std::string(rn.gguf).find("{l}") != std::string::npos;
        for (int l = 0; l < (per_layer ? c.n_layer : 1); ++l) {
            const Class k = role_class(rn.role);
            Planned p;
            p.name = tensor_name(rn.gguf, l);
            if (k == Class::Experts) {
                const TensorInfo* t0 = src->find(tensor_name(rn.hf, l, 0));
                if (!t0) continue;  // a dense layer
                p.ne = t0->ne;
                p.ne.push_back(c.n_expert);
                p.n_slices = c.n_expert;
                const std::string pat = rn.hf;
                p.slice = [src, pat, l](int e) {
                    const std::string n = tensor_name(pat.c_str(), l, e);
                    const TensorInfo* t = src->find(n);
                    check(t != nullptr, "convert: missing tensor '" + n + "'");
                    return src->load(*t);
                };
                p.type = pick(k, t0->dtype, p.ne, types, true);
                plan.push_back(std::move(p));
                continue;
            }
            const std::string hname = tensor_name(rn.hf, l);
            const TensorInfo* t = src->find(hname);
            if (!t) continue;  // the role is absent here (layer kind, optional tensor)
            const R role = rn.role;
            const HfFix fix = rn.hf_fix;
            std::vector<int64_t> ne = t->ne;
            if (role == R::ShexpGateInp) ne = {c.n_embd};
            if (role == R::SsmConv) ne = {d.conv_kernel, d.conv_channels()};
            if (role == R::AttnKvB) {
                // llama.cpp splits kv_b per head: k_b (transposed) [H][kv_lora rows, nope] and
                // v_b [H][v_dim rows, kv_lora].
                const int H = c.n_head, nope = c.qk_nope, vd = c.v_head_dim, kr = c.kv_lora_rank;
                const TensorInfo ti = *t;
                auto whole = std::make_shared<std::vector<float>>();
                auto get = [src, ti, whole] {
                    if (whole->empty()) *whole = src->load(ti);
                    return whole;
                };
                Planned kb, vb;
                kb.name = tensor_name(arch.name(R::AttnKB, false), l);
                kb.ne = {nope, kr, H};
                kb.slice = [get, H, nope, vd, kr](int) {
                    const auto w = get();
                    std::vector<float> y((size_t)H * kr * nope);
                    for (int h = 0; h < H; ++h)
                        for (int r = 0; r < kr; ++r)
                            for (int i = 0; i < nope; ++i)
                                y[((size_t)h * kr + r) * nope + i] =
                                    (*w)[((size_t)h * (nope + vd) + i) * kr + r];
                    return y;
                };
                vb.name = tensor_name(arch.name(R::AttnVB, false), l);
                vb.ne = {kr, vd, H};
                vb.slice = [get, H, nope, vd, kr](int) {
                    const auto w = get();
                    std::vector<float> y((size_t)H * vd * kr);
                    for (int h = 0; h < H; ++h)
                        for (int j = 0; j < vd; ++j)
                            std::memcpy(&y[((size_t)h * vd + j) * kr],
                                        &(*w)[((size_t)h * (nope + vd) + nope + j) * kr],
                                        (size_t)kr * sizeof(float));
                    return y;
                };
                kb.type = pick(k, t->dtype, kb.ne, types, true);
                vb.type = pick(k, t->dtype, vb.ne, types, true);
                plan.push_back(std::move(kb));
                plan.push_back(std::move(vb));
                continue;
            }
            p.ne = ne;
            p.type = pick(k, t->dtype, ne, types, true);
            const TensorInfo ti = *t;
            const ModelConfig cc = c;
            p.slice = [src, ti, role, fix, cc](int) {
                std::vector<float> x = src->load(ti);
                if (fix == HfFix::PlusOne)
                    for (float& v : x) v += 1.0f;
                if (fix == HfFix::NegExp)
                    for (float& v : x) v = -std::exp(v);
                const DeltaNetConfig& dd = cc.gdn;
                if (cc.arch != ArchId::Qwen35Moe || dd.n_v_heads == dd.n_k_heads) return x;
                // llama.cpp's converter tiles the v heads of every DeltaNet tensor.
                const int nk = dd.n_k_heads, vpk = dd.n_v_heads / dd.n_k_heads;
                const size_t qk_rows = (size_t)2 * nk * dd.k_dim, E = (size_t)cc.n_embd;
                switch (role) {
                    case R::SsmQkv: tile_rows(x, qk_rows, nk, vpk, dd.v_dim, E); break;
                    case R::SsmZ: tile_rows(x, 0, nk, vpk, dd.v_dim, E); break;
                    case R::SsmBeta:
                    case R::SsmAlpha: tile_rows(x, 0, nk, vpk, 1, E); break;
                    case R::SsmA:
                    case R::SsmDtBias: tile_rows(x, 0, nk, vpk, 1, 1); break;
                    case R::SsmConv:
                        tile_rows(x, qk_rows, nk, vpk, dd.v_dim, (size_t)dd.conv_kernel);
                        break;
                    case R::SsmOut:
                        tile_cols(x, (size_t)dd.n_v_heads * dd.v_dim, nk, vpk, dd.v_dim);
                        break;
                    default: break;
                }
                return x;
            };
            plan.push_back(std::move(p));
        }
    }
    return plan;
}

std::string read_chat_template(const std::string& dir) {
    const fs::path jinja = fs::path(dir) / "chat_template.jinja";
    if (fs::exists(jinja)) {
        std::ifstream f(jinja);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }
    const fs::path cfg = fs::path(dir) / "tokenizer_config.json";
    if (!fs::exists(cfg)) return "";
    const nlohmann::json j = read_json_file(cfg.string());
    return j.contains("chat_template") && j["chat_template"].is_string()
               ? j["chat_template"].get<std::string>()
               : "";
}

struct GgufSource {
    GGUFFile g;
    TensorFiles files;
    explicit GgufSource(const std::string& path) : g(read_gguf(path)), files(g.index) {}
};

std::vector<Planned> plan_gguf(const std::shared_ptr<GgufSource>& src, const ExportTypes& types) {
    std::vector<Planned> plan;
    for (const TensorInfo& t : src->g.index.tensors) {
        Planned p;
        p.name = t.name;
        p.ne = t.ne;
        const Class k = name_class(t.name, t.ne.size());
        p.type = k == Class::Fixed ? t.dtype : pick(k, t.dtype, t.ne, types, false);
        const TensorInfo ti = t;
        if (p.type == t.dtype) {
            p.raw = [src, ti](uint8_t* dst) {
                std::memcpy(dst, src->files.view(ti).data, (size_t)ti.nbytes);
            };
        } else {
            p.n_slices = t.ne.size() == 3 ? (int)t.ne[2] : 1;
            p.slice = [src, ti](int s) {
                TensorView v = src->files.view(ti);
                const int64_t n_slices = ti.ne.size() == 3 ? ti.ne[2] : 1;
                const int64_t rows = v.rows() / n_slices, r0 = s * rows;
                std::vector<float> out((size_t)(rows * v.cols()));
                for (int64_t r = 0; r < rows; ++r) get_row(v, r0 + r, out.data() + r * v.cols());
                return out;
            };
        }
        plan.push_back(std::move(p));
    }
    return plan;
}

}  // namespace

std::vector<TensorReport> export_gguf(const std::string& in, const std::string& out,
                                      const ExportOptions& o) {
    check(fs::exists(in), in + ": no such file or directory");
    GGUFWriter w;
    std::vector<Planned> plan;
    std::shared_ptr<void> keep_source;
    if (fs::is_directory(in)) {
        auto src = std::make_shared<HfSource>(in);
        keep_source = src;
        write_config_meta(src->config(), w);
        w.set_str("general.name", fs::path(in).filename().string());
        if (fs::exists(fs::path(in) / "tokenizer.json")) {
            Vocab v = load_vocab_hf(in);
            // Special ids tokenizer_config.json does not name come from config.json, as
            // llama.cpp's SpecialVocab takes them.
            const nlohmann::json cfg = read_json_file((fs::path(in) / "config.json").string());
            auto id = [&](const char* k, int32_t& dst) {
                if (dst < 0 && cfg.contains(k) && cfg[k].is_number_integer() &&
                    cfg[k].get<int32_t>() >= 0 && cfg[k].get<int32_t>() < v.size())
                    dst = cfg[k].get<int32_t>();
            };
            id("bos_token_id", v.bos);
            id("eos_token_id", v.eos);
            id("pad_token_id", v.pad);
            write_tokenizer_meta(v, read_chat_template(in), w);
        }
        plan = plan_hf(src, o.types);
    } else {
        auto src = std::make_shared<GgufSource>(in);
        keep_source = src;
        w.copy_meta(src->g);
        plan = plan_gguf(src, o.types);
    }
    w.set_u32("general.quantization_version", 2);
    const int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
    ThreadPool pool(threads);
    std::vector<TensorReport> reports(plan.size());
    size_t done = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
        Planned& p = plan[i];
        TensorReport& rep = reports[i];
        rep.name = p.name;
        rep.type = p.type;
        rep.ne = p.ne;
        w.add_tensor(p.name, p.type, p.ne, [&, i](uint8_t* dst, size_t nbytes) {
            Planned& pp = plan[i];
            TensorReport& rr = reports[i];
            if (pp.raw) {
                pp.raw(dst);
            } else {
                const int64_t n = pp.ne[0];
                const size_t row_bytes_out = row_bytes(pp.type, n);
                const size_t slice_bytes = nbytes / (size_t)pp.n_slices;
                double se = 0, sx = 0;
                std::mutex mu;
                for (int s = 0; s < pp.n_slices; ++s) {
                    const std::vector<float> x = pp.slice(s);
                    const int64_t rows = (int64_t)x.size() / n;
                    check((size_t)rows * row_bytes_out == slice_bytes,
                          "convert: internal size mismatch for '" + pp.name + "'");
                    uint8_t* base = dst + (size_t)s * slice_bytes;
                    pool.parallel_for(rows, 4, [&](int64_t r0, int64_t r1, int) {
                        std::vector<float> y((size_t)n);
                        double e = 0, xx = 0;
                        for (int64_t r = r0; r < r1; ++r) {
                            const float* xr = x.data() + r * n;
                            uint8_t* q = base + (size_t)r * row_bytes_out;
                            quantize_row(pp.type, xr, q, n, QuantFit::Search);
                            dequantize_row_ref(pp.type, q, y.data(), n);
                            for (int64_t j = 0; j < n; ++j) {
                                const double dd = (double)xr[j] - y[(size_t)j];
                                e += dd * dd, xx += (double)xr[j] * xr[j];
                            }
                        }
                        std::lock_guard<std::mutex> lk(mu);
                        se += e, sx += xx;
                    });
                }
                double numel = 1;
                for (int64_t v : pp.ne) numel *= (double)v;
                rr.rmse = std::sqrt(se / numel);
                rr.rel_err = sx > 0 ? std::sqrt(se / sx) : 0;
                rr.requantized = dtype_traits(pp.type).quantized || se > 0;
            }
            if (o.on_tensor) o.on_tensor(++done, plan.size(), rr);
        });
    }
    w.write(out);
    return reports;
}

}  // namespace sluice
