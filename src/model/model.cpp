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

std::unique_ptr<Model> Model::open(const std::string& path, const LoadOptions& opts) {
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
    const bool resident = opts.mem_budget > 0;
    if (!resident) m->files_ = std::make_unique<TensorFiles>(m->index_);
    m->progress_ = opts.on_progress;
    m->bind_weights(arch_info(m->cfg_.arch), hf, resident);
    m->make_expert_store(opts);
    return m;
}

void Model::bind_weights(const ArchInfo& arch, bool hf, bool resident) {
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
    auto find_checked = [&](TensorRole role, int layer, int expert,
                            std::vector<int64_t> want) -> const TensorInfo& {
        const TensorInfo* t = info(role, layer, expert, true);
        if (t->ne != want)
            fail(where + ": tensor '" + t->name + "' has shape " + shape_str(t->ne) +
                 ", expected " + shape_str(want));
        if (role == TensorRole::OutputNorm || role == TensorRole::AttnNorm ||
            role == TensorRole::FfnNorm || role == TensorRole::AttnQNorm ||
            role == TensorRole::AttnKNorm)
            check(!dtype_traits(t->dtype).quantized,
                  where + ": norm tensor '" + t->name + "' must be F32/F16/BF16");
        check(t->dtype != DType::I32, where + ": tensor '" + t->name + "' has integer dtype I32");
        return *t;
    };
    // Dense tensors: mapped views, or (with a budget) resident copies read once.
    std::vector<std::unique_ptr<File>> files;
    auto dense = [&](const TensorInfo& t) -> TensorView {
        dense_bytes_ += t.nbytes;
        if (!resident) return files_->view(t);
        if (files.empty())
            for (const auto& f : index_.files) files.push_back(std::make_unique<File>(f, false));
        const File& f = *files[(size_t)t.file];
        check(t.offset + t.nbytes <= f.size(),
              f.path() + ": tensor '" + t.name + "' lies beyond the end of the file");
        AlignedBuffer buf((size_t)t.nbytes);
        f.pread_all(buf.data(), (size_t)t.nbytes, t.offset);
        TensorView v;
        v.dtype = t.dtype;
        v.data = buf.data();
        for (size_t i = 0; i < t.ne.size() && i < 4; ++i) v.ne[i] = t.ne[i];
        resident_.push_back(std::move(buf));
        return v;
    };
    auto bind = [&](TensorRole role, int layer, std::vector<int64_t> want,
                    bool required = true) -> TensorView {
        const TensorInfo* t = info(role, layer, -1, required);
        if (!t) return {};
        return dense(find_checked(role, layer, -1, std::move(want)));
    };
    const int64_t E = c.n_embd, hd = c.head_dim, V = c.n_vocab;
    w_.tok_embd = bind(TensorRole::TokEmbd, 0, {E, V});
    w_.output_norm = bind(TensorRole::OutputNorm, 0, {E});
    w_.output = bind(TensorRole::Output, 0, {E, V}, /*required=*/false);
    if (w_.output.empty()) w_.output = w_.tok_embd;  // tied embeddings
    layout_.files = index_.files;
    layout_.n_expert = c.n_expert;
    layout_.layers.resize((size_t)c.n_layer);
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
        if (progress_) progress_((uint64_t)l, (uint64_t)c.n_layer);
        // Experts: byte ranges only; the expert store decides how they reach memory.
        ExpertLayerLayout& X = layout_.layers[(size_t)l];
        const int64_t F = c.n_ff_exp, NE = c.n_expert;
        const TensorRole roles[3] = {TensorRole::ExpGate, TensorRole::ExpUp, TensorRole::ExpDown};
        const std::vector<int64_t> shape2d[3] = {{E, F}, {E, F}, {F, E}};
        X.experts.resize((size_t)NE);
        for (int p = 0; p < 3; ++p) {
            X.proj[(size_t)p] = {DType::F32, shape2d[p][0], shape2d[p][1]};
            if (hf) {
                for (int e = 0; e < NE; ++e) {
                    const TensorInfo& t = find_checked(roles[p], l, e, shape2d[p]);
                    if (e > 0)
                        check(t.dtype == X.proj[(size_t)p].dtype,
                              where + ": experts of layer " + std::to_string(l) + " mix dtypes");
                    X.proj[(size_t)p].dtype = t.dtype;
                    X.experts[(size_t)e][(size_t)p] = {t.file, t.offset, t.nbytes};
                }
            } else {
                std::vector<int64_t> want = shape2d[p];
                want.push_back(NE);
                const TensorInfo& t = find_checked(roles[p], l, -1, want);
                X.proj[(size_t)p].dtype = t.dtype;
                const uint64_t stride =
                    t.nbytes / (uint64_t)NE;  // GGUF stacks experts contiguously
                for (int e = 0; e < NE; ++e)
                    X.experts[(size_t)e][(size_t)p] = {t.file, t.offset + (uint64_t)e * stride,
                                                       stride};
            }
        }
    }
    if (progress_) progress_((uint64_t)c.n_layer, (uint64_t)c.n_layer);
    // Resident copies made: their page-cache pages would only crowd out experts.
    for (const auto& f : files) f->drop_cache();
}

void Model::make_expert_store(const LoadOptions& o) {
    // Scratch: activations of a prefill batch of up to 512 tokens plus logits for it.
    const uint64_t scratch =
        512ull * (uint64_t)(8 * cfg_.n_embd + 4 * cfg_.n_ff_exp) * 4 + 4ull * cfg_.n_vocab * 256;
    plan_ = plan_memory(o.mem_budget, o.io, dense_bytes_, KvCache::bytes_for(cfg_, o.n_ctx),
                        scratch, layout_, cfg_.n_expert_used);
    if (o.mem_budget == 0) {
        experts_ = make_mapped_expert_store(layout_, false);
    } else if (o.io == IoMode::Mmap) {
        experts_ = make_mapped_expert_store(layout_, true);
    } else {
        StreamingOptions so;
        so.mode = o.io;
        so.cache_bytes = o.io == IoMode::Direct ? plan_.expert_cache : plan_.io_buffers;
        so.engine = o.io_engine;
        experts_ = make_streaming_expert_store(layout_, so);
    }
}

void Model::set_experts_per_token(int k) {
    check(k >= 1 && k <= cfg_.n_expert, "--experts-per-token " + std::to_string(k) +
                                            " is outside 1.." + std::to_string(cfg_.n_expert));
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
