#include "model/model.h"

#include <filesystem>

#include "core/error.h"
#include "formats/safetensors.h"

namespace sluice {
namespace {

std::string shape_str(const std::vector<int64_t>& ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

}  // namespace

std::unique_ptr<Model> Model::open(const std::string& path) {
    namespace fs = std::filesystem;
    std::unique_ptr<Model> m(new Model());
    m->path_ = path;
    if (!fs::exists(path)) fail(path + ": no such file or directory");
    bool hf = false;
    if (fs::is_directory(path)) {
        hf = true;
        m->cfg_ = config_from_hf(path);
        m->index_ = read_safetensors_dir(path);
    } else {
        m->gguf_ = read_gguf(path);
        m->cfg_ = config_from_gguf(*m->gguf_);
        m->index_ = m->gguf_->index;
    }
    m->files_ = std::make_unique<TensorFiles>(m->index_);
    m->bind_weights(arch_info(m->cfg_.arch), hf);
    return m;
}

void Model::bind_weights(const ArchInfo& arch, bool hf) {
    const auto& names = hf ? arch.hf_names : arch.gguf_names;
    const ModelConfig& c = cfg_;
    const std::string& where = path_;
    auto info = [&](TensorRole role, int layer, int expert, bool required) -> const TensorInfo* {
        const char* pat = names[(size_t)role];
        if (!pat) return nullptr;
        const std::string name = tensor_name(pat, layer, expert);
        const TensorInfo* t = index_.find(name);
        if (!t && required) fail(where + ": missing tensor '" + name + "'");
        return t;
    };
    auto bind = [&](TensorRole role, int layer, std::vector<int64_t> want, bool required = true,
                    int expert = -1) -> TensorView {
        const TensorInfo* t = info(role, layer, expert, required);
        if (!t) return {};
        if (t->ne != want)
            fail(where + ": tensor '" + t->name + "' has shape " + shape_str(t->ne) + ", expected " + shape_str(want));
        if (role == TensorRole::OutputNorm || role == TensorRole::AttnNorm || role == TensorRole::FfnNorm ||
            role == TensorRole::AttnQNorm || role == TensorRole::AttnKNorm)
            check(!dtype_traits(t->dtype).quantized, where + ": norm tensor '" + t->name + "' must be F32/F16/BF16");
        check(t->dtype != DType::I32, where + ": tensor '" + t->name + "' has integer dtype I32");
        if (!(role >= TensorRole::ExpGate && role <= TensorRole::ExpDown)) dense_bytes_ += t->nbytes;
        return files_->view(*t);
    };
    const int64_t E = c.n_embd, hd = c.head_dim, V = c.n_vocab;
    w_.tok_embd = bind(TensorRole::TokEmbd, 0, {E, V});
    w_.output_norm = bind(TensorRole::OutputNorm, 0, {E});
    w_.output = bind(TensorRole::Output, 0, {E, V}, /*required=*/false);
    if (w_.output.empty()) w_.output = w_.tok_embd;  // tied embeddings
    std::vector<ExpertLayer> experts((size_t)c.n_layer);
    w_.layers.resize((size_t)c.n_layer);
    for (int l = 0; l < c.n_layer; ++l) {
        LayerWeights& L = w_.layers[(size_t)l];
        L.attn_norm = bind(TensorRole::AttnNorm, l, {E});
        L.wq = bind(TensorRole::AttnQ, l, {E, c.n_head * hd});
        L.wk = bind(TensorRole::AttnK, l, {E, c.n_head_kv * hd});
        L.wv = bind(TensorRole::AttnV, l, {E, c.n_head_kv * hd});
        L.wo = bind(TensorRole::AttnOut, l, {c.n_head * hd, E});
        L.q_norm = bind(TensorRole::AttnQNorm, l, {hd});
        L.k_norm = bind(TensorRole::AttnKNorm, l, {hd});
        L.ffn_norm = bind(TensorRole::FfnNorm, l, {E});
        L.router = bind(TensorRole::FfnRouter, l, {E, c.n_expert});
        ExpertLayer& X = experts[(size_t)l];
        const int64_t F = c.n_ff_exp, NE = c.n_expert;
        if (hf) {
            for (int e = 0; e < c.n_expert; ++e) {
                X.gate.per_expert.push_back(bind(TensorRole::ExpGate, l, {E, F}, true, e));
                X.up.per_expert.push_back(bind(TensorRole::ExpUp, l, {E, F}, true, e));
                X.down.per_expert.push_back(bind(TensorRole::ExpDown, l, {F, E}, true, e));
            }
        } else {
            X.gate.stacked = bind(TensorRole::ExpGate, l, {E, F, NE});
            X.up.stacked = bind(TensorRole::ExpUp, l, {E, F, NE});
            X.down.stacked = bind(TensorRole::ExpDown, l, {F, E, NE});
        }
    }
    experts_ = std::make_unique<ResidentExpertStore>(std::move(experts), c.n_expert);
}

void Model::set_experts_per_token(int k) {
    check(k >= 1 && k <= cfg_.n_expert, "--experts-per-token " + std::to_string(k) + " is outside 1.." +
                                            std::to_string(cfg_.n_expert));
    cfg_.n_expert_used = k;
}

void Model::forward(const ForwardArgs& a) {
    check(a.n > 0, "forward: no tokens");
    check(a.pos0 >= 0 && a.pos0 + a.n <= a.kv->n_ctx(),
          "prompt too long: " + std::to_string(a.pos0 + a.n) + " tokens exceed the context size " +
              std::to_string(a.kv->n_ctx()));
    for (int i = 0; i < a.n; ++i)
        check(a.tokens[i] >= 0 && a.tokens[i] < cfg_.n_vocab,
              "token id " + std::to_string(a.tokens[i]) + " is outside the vocabulary (0.." +
                  std::to_string(cfg_.n_vocab - 1) + ")");
    arch_info(cfg_.arch).forward(*this, a);
}

}  // namespace sluice
