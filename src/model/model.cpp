#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>

#include "core/error.h"
#include "formats/safetensors.h"
#include "model/gpu_forward.h"
#include "model/rope.h"

namespace sluice {
namespace {

std::string shape_str(const std::vector<int64_t>& ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

std::vector<int64_t> without_trailing_ones(std::vector<int64_t> ne) {
    while (ne.size() > 1 && ne.back() == 1) ne.pop_back();
    return ne;
}

// Multimodal checkpoints keep the text model under "model.language_model.": renamed to the
// text-only names, other towers (vision) dropped.
TensorIndex without_prefix(TensorIndex index, const std::string& prefix, const std::string& to) {
    bool any = false;
    for (const TensorInfo& t : index.tensors) any = any || t.name.rfind(prefix, 0) == 0;
    if (!any) return index;
    TensorIndex out;
    out.files = index.files;
    for (TensorInfo& t : index.tensors) {
        if (t.name.rfind(prefix, 0) == 0)
            t.name = to + t.name.substr(prefix.size());
        else if (t.name.rfind(to, 0) == 0)
            continue;
        out.add(std::move(t));
    }
    return out;
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
        m->index_ = without_prefix(std::move(m->index_), "model.language_model.", "model.");
    } else {
        m->gguf_ = read_gguf(path);
        m->cfg_ = config_from_gguf(*m->gguf_);
        m->index_ = m->gguf_->index;
    }
    const bool resident = opts.mem_budget > 0;
    if (!resident) m->files_ = std::make_unique<TensorFiles>(m->index_);
    m->progress_ = opts.on_progress;
    m->bind_weights(arch_info(m->cfg_.arch), hf, resident);
    m->rope_ = make_rope_table(m->cfg_);
    m->make_expert_store(opts);
    if (opts.backend == Backend::Cuda) m->device_ = make_cuda_forward(*m, {opts.gpu_mem, opts.n_ctx, opts.gpu_expert_slots, opts.gpu_misses});
    return m;
}

void Model::bind_weights(const ArchInfo& arch, bool hf, bool resident) {
    const ModelConfig& c = cfg_;
    const std::string& where = path_;
    using R = TensorRole;
    auto info = [&](R role, int layer, int expert, bool required) -> const TensorInfo* {
        const char* pat = arch.name(role, hf);
        if (!pat) {
            if (required) fail("internal: architecture " + c.arch_name + " lacks a tensor role");
            return nullptr;
        }
        const std::string name = tensor_name(pat, layer, expert);
        const TensorInfo* t = index_.find(name);
        if (!t && required) fail(where + ": missing tensor '" + name + "'");
        return t;
    };
    auto find_checked = [&](R role, int layer, int expert,
                            std::vector<int64_t> want) -> const TensorInfo& {
        const TensorInfo* t = info(role, layer, expert, true);
        if (without_trailing_ones(t->ne) != without_trailing_ones(want))
            fail(where + ": tensor '" + t->name + "' has shape " + shape_str(t->ne) +
                 ", expected " + shape_str(want));
        if (role == R::OutputNorm || role == R::AttnNorm || role == R::FfnNorm ||
            role == R::AttnQNorm || role == R::AttnKNorm || role == R::AttnQANorm ||
            role == R::AttnKvANorm || role == R::ExpProbsBias || role == R::SsmA ||
            role == R::SsmDtBias || role == R::SsmNorm || role == R::SsmConv)
            check(!dtype_traits(t->dtype).quantized,
                  where + ": tensor '" + t->name + "' must be F32/F16/BF16");
        check(t->dtype != DType::I32, where + ": tensor '" + t->name + "' has integer dtype I32");
        return *t;
    };
    // Dense tensors: mapped views, or (with a budget) resident copies read once.
    std::vector<std::unique_ptr<File>> files;
    std::function<TensorView(const TensorInfo&)> dense;
    // FP8 weights come with "<name>_scale_inv": f32 multipliers of 128x128 blocks.
    auto block_scales = [&](const TensorInfo& t) -> const float* {
        if (t.dtype != DType::F8_E4M3) return nullptr;
        check(t.ne.size() == 2, where + ": FP8 tensor '" + t.name + "' is not a matrix");
        const TensorInfo* s = index_.find(t.name + "_scale_inv");
        if (!s) fail(where + ": FP8 tensor '" + t.name + "' has no '" + t.name + "_scale_inv'");
        const int64_t B = TensorView::kScaleBlock;
        const std::vector<int64_t> want = {(t.ne[0] + B - 1) / B, (t.ne[1] + B - 1) / B};
        if (s->dtype != DType::F32 || s->ne != want)
            fail(where + ": tensor '" + s->name + "' must be F32 of shape " + shape_str(want));
        return (const float*)dense(*s).data;
    };
    dense = [&](const TensorInfo& t) -> TensorView {
        dense_bytes_ += t.nbytes;
        if (!resident) {
            TensorView v = files_->view(t);
            v.scale = block_scales(t);
            return v;
        }
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
        v.scale = block_scales(t);
        return v;
    };
    // An HF tensor stored differently from the GGUF form: a resident f32 copy, changed.
    auto hf_fixed = [&](TensorView v, HfFix fix) -> TensorView {
        const int64_t n = v.cols() * v.rows();
        AlignedBuffer buf((size_t)n * sizeof(float));
        float* y = (float*)buf.data();
        for (int64_t r = 0; r < v.rows(); ++r) get_row(v, r, y + r * v.cols());
        for (int64_t i = 0; i < n; ++i) y[i] = fix == HfFix::PlusOne ? y[i] + 1.0f : -std::exp(y[i]);
        v.dtype = DType::F32;
        v.data = buf.data();
        resident_.push_back(std::move(buf));
        return v;
    };
    enum Need { Required, Optional };
    auto bind = [&](R role, int layer, std::vector<int64_t> want, Need need = Required) {
        const TensorInfo* t = info(role, layer, -1, need == Required);
        if (!t) return TensorView{};
        TensorView v = dense(find_checked(role, layer, -1, std::move(want)));
        const HfFix fix = hf ? arch.hf_fix(role) : HfFix::None;
        return fix == HfFix::None ? v : hf_fixed(v, fix);
    };
    auto present = [&](R role, int layer) { return info(role, layer, -1, false) != nullptr; };
    const int64_t E = c.n_embd, hd = c.head_dim, V = c.n_vocab, H = c.n_head;
    w_.tok_embd = bind(R::TokEmbd, 0, {E, V});
    w_.output_norm = bind(R::OutputNorm, 0, {E});
    w_.output = bind(R::Output, 0, {E, V}, Optional);
    if (w_.output.empty()) w_.output = w_.tok_embd;  // tied embeddings
    layout_.files = index_.files;
    layout_.n_expert = c.n_expert;
    layout_.layers.resize((size_t)c.n_layer);
    w_.layers.resize((size_t)c.n_layer);
    for (int l = 0; l < c.n_layer; ++l) {
        LayerWeights& L = w_.layers[(size_t)l];
        L.attn_norm = bind(R::AttnNorm, l, {E});
        if (c.is_linear_layer(l)) {
            const DeltaNetConfig& d = c.gdn;
            const int64_t C = d.conv_channels(), NV = d.n_v_heads, VD = (int64_t)NV * d.v_dim;
            L.ssm_qkv = bind(R::SsmQkv, l, {E, C});
            L.ssm_z = bind(R::SsmZ, l, {E, VD});
            L.ssm_beta = bind(R::SsmBeta, l, {E, NV});
            L.ssm_alpha = bind(R::SsmAlpha, l, {E, NV});
            L.ssm_a = bind(R::SsmA, l, {NV});
            L.ssm_dt_bias = bind(R::SsmDtBias, l, {NV});
            // HF keeps nn.Conv1d's [C, 1, K]; GGUF [C, K]. Same bytes.
            L.ssm_conv = hf ? bind(R::SsmConv, l, {d.conv_kernel, 1, C})
                            : bind(R::SsmConv, l, {d.conv_kernel, C});
            L.ssm_norm = bind(R::SsmNorm, l, {d.v_dim});
            L.ssm_out = bind(R::SsmOut, l, {VD, E});
        } else if (c.is_mla()) {
            L.wo = bind(R::AttnOut, l, {H * c.v_head_dim, E});
            const int64_t qr = c.q_lora_rank, kr = c.kv_lora_rank;
            if (qr > 0) {
                L.wq_a = bind(R::AttnQA, l, {E, qr});
                L.q_a_norm = bind(R::AttnQANorm, l, {qr});
                L.wq_b = bind(R::AttnQB, l, {qr, H * hd});
            } else {
                L.wq = bind(R::AttnQ, l, {E, H * hd});
            }
            L.wkv_a = bind(R::AttnKvA, l, {E, kr + c.n_rot});
            L.kv_a_norm = bind(R::AttnKvANorm, l, {kr});
            // llama.cpp files since 2025 split kv_b per head into k_b (transposed) and v_b.
            if (present(R::AttnKB, l)) {
                L.wk_b = bind(R::AttnKB, l, {c.qk_nope, kr, H});
                L.wv_b = bind(R::AttnVB, l, {kr, c.v_head_dim, H});
            } else {
                L.wkv_b = bind(R::AttnKvB, l, {kr, H * (c.qk_nope + c.v_head_dim)});
            }
        } else {
            L.wo = bind(R::AttnOut, l, {H * c.v_head_dim, E});
            // With an output gate, each head's q rows are followed by its gate rows.
            L.wq = bind(R::AttnQ, l, {E, H * hd * (c.attn_out_gate ? 2 : 1)});
            L.wk = bind(R::AttnK, l, {E, c.n_head_kv * hd});
            L.wv = bind(R::AttnV, l, {E, c.n_head_kv * c.v_head_dim});
            if (arch.name(R::AttnQNorm, hf)) {
                L.q_norm = bind(R::AttnQNorm, l, {hd});
                L.k_norm = bind(R::AttnKNorm, l, {hd});
            }
        }
        L.ffn_norm = bind(R::FfnNorm, l, {E});
        if (progress_) progress_((uint64_t)l, (uint64_t)c.n_layer);
        if (!c.is_moe_layer(l)) {
            L.ffn_gate = bind(R::FfnGate, l, {E, c.n_ff});
            L.ffn_up = bind(R::FfnUp, l, {E, c.n_ff});
            L.ffn_down = bind(R::FfnDown, l, {c.n_ff, E});
            continue;  // no experts: the layout's layer stays empty
        }
        L.router = bind(R::FfnRouter, l, {E, c.n_expert});
        if (c.gating == Gating::Sigmoid) L.router_bias = bind(R::ExpProbsBias, l, {c.n_expert});
        if (c.n_ff_shexp > 0) {
            L.shexp_gate = bind(R::ShexpGate, l, {E, c.n_ff_shexp});
            L.shexp_up = bind(R::ShexpUp, l, {E, c.n_ff_shexp});
            L.shexp_down = bind(R::ShexpDown, l, {c.n_ff_shexp, E});
            if (c.shexp_gated) L.shexp_gate_inp = bind(R::ShexpGateInp, l, {E});
        }
        // Experts: byte ranges only; the expert store decides how they reach memory.
        ExpertLayerLayout& X = layout_.layers[(size_t)l];
        const int64_t F = c.n_ff_exp, NE = c.n_expert;
        const R roles[3] = {R::ExpGate, R::ExpUp, R::ExpDown};
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
                    if (t.dtype == DType::F8_E4M3) {  // scales stay resident; weights stream
                        L.expert_scale.resize((size_t)NE);
                        L.expert_scale[(size_t)e][(size_t)p] = block_scales(t);
                    }
                }
            } else {
                std::vector<int64_t> want = shape2d[p];
                want.push_back(NE);
                const TensorInfo& t = find_checked(roles[p], l, -1, want);
                X.proj[(size_t)p].dtype = t.dtype;
                const uint64_t stride = t.nbytes / (uint64_t)NE;  // GGUF stacks experts
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
    // Scratch: activations of a prefill batch of up to 512 tokens (no more than the context)
    // plus logits for it, and per routed (token, expert) pair its gathered input and output
    // rows, gate and up rows (f32) and their converted copies (at most 2 bytes per element).
    const uint64_t ff = (uint64_t)std::max({cfg_.n_ff_exp, cfg_.n_ff, cfg_.n_ff_shexp});
    const uint64_t heads = (uint64_t)cfg_.n_head * (2 * cfg_.head_dim + cfg_.v_head_dim) +
                           (uint64_t)cfg_.gdn.conv_channels() * 3 +
                           (uint64_t)cfg_.gdn.n_v_heads * cfg_.gdn.v_dim * 2;
    const uint64_t E = (uint64_t)cfg_.n_embd, F = (uint64_t)cfg_.n_ff_exp;
    const uint64_t batch = (uint64_t)std::clamp(o.n_ctx, 1, 512);
    const uint64_t per_pair = (2 * E + 2 * F) * 4 + (E + F) * 2;
    const uint64_t scratch = 512ull * (8 * E + 4 * ff + 2 * heads) * 4 +
                             4ull * cfg_.n_vocab * 256 +
                             batch * (uint64_t)cfg_.n_expert_used * per_pair;
    const ResidentState state{KvCache::bytes_for(cfg_, o.n_ctx), KvCache::state_bytes_for(cfg_),
                              o.process_bytes};
    plan_ = plan_memory(o.mem_budget, o.io, dense_bytes_, state,
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
        so.queue_depth = o.io_depth;
        experts_ = make_streaming_expert_store(layout_, so);
    }
}

void Model::set_experts_per_token(int k) {
    const int max_k = cfg_.topk_group * (cfg_.n_expert / cfg_.n_group);
    check(k >= 1 && k <= max_k, "--experts-per-token " + std::to_string(k) + " is outside 1.." +
                                    std::to_string(max_k) +
                                    (max_k < cfg_.n_expert ? " (experts of the groups used)" : ""));
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
    a.kv->advance_recurrent(a.pos0, a.n);
    if (device_)
        device_->forward(*this, a);
    else
        arch_info(cfg_.arch).forward(*this, a);
}

}  // namespace sluice
