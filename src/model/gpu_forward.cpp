// GQA + routed-SwiGLU decoder layers (Qwen3-MoE and the like) on a CUDA GPU. Same math and
// order of operations as qwen3moe.cpp and blocks.cpp on the CPU.
#include "model/gpu_forward.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "backend/cpu/ops.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"
#include "stream/vram_cache.h"

namespace sluice {
namespace {

using cuda::DeviceBuffer;

// Batches up to this many tokens run every routed expert through the table kernels
// (one launch per projection for the whole layer); larger ones group tokens by expert.
constexpr int kTableTokens = 8;

struct GpuLayer {
    TensorView wq, wk, wv, wo, router, ffn_gate, ffn_up, ffn_down, shexp_gate, shexp_up, shexp_down;
    const float *attn_norm = nullptr, *ffn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr,
                *shexp_gate_inp = nullptr;
};

struct DeviceKv {
    DeviceBuffer k, v;   // [n_layer][n_ctx][n_kv * hd], [n_layer][n_ctx][n_kv * vd]
    DeviceBuffer fused;  // cuda::DecodeLayer[n_layer] of these caches, made at fused_gen
    uint64_t fused_gen = ~0ull;
};

class CudaForward final : public DeviceForward {
  public:
    CudaForward(Model& m, const GpuOptions& o);
    ~CudaForward() override;
    void forward(Model& m, const ForwardArgs& a) override;
    std::string describe() const override {
        return fused_steps_ ? describe_ + "gpu: decode steps in one persistent kernel: " +
                                  std::to_string(fused_steps_) + " steps\n"
                            : describe_;
    }
    VramStats stats() const override { return experts_ ? experts_->stats() : VramStats{}; }
    double measure_h2d() override { return gpu_.measure_h2d(256ull << 20); }
    double measure_mem() override { return gpu_.measure_d2d(1ull << 30); }

  private:
    TensorView upload_matrix(const TensorView& w, const std::string& what);
    const float* upload_f32(const TensorView& w);
    float* buf(int i, size_t floats);
    // x += the layer's MoE block of x; h: [n, n_embd] scratch, left holding its normalised
    // input.
    void moe(Model& m, const ForwardArgs& a, int l, float* x, float* h);
    void swiglu_ffn(const TensorView& gate, const TensorView& up, const TensorView& down,
                    const float* h, int n, float* out, bool accumulate);
    void host_misses(Model& m, const ForwardArgs& a, int l, const float* h, float* x,
                     const std::vector<int32_t>& hid);
    // Queues the layers and the output; true if through the persistent decode kernel.
    bool step(Model& m, const ForwardArgs& a, DeviceKv& kv, const cuda::Pos& pos, float* lg);
    // Every layer of a one-token step in the persistent decode kernel (Gpu::decode_layers),
    // where the model is all MoE layers with resident experts and no shared expert: false
    // (nothing queued) otherwise.
    bool fused_layers(Model& m, const ForwardArgs& a, DeviceKv& kv, float* x);
    void grouped_experts(Model& m, const ForwardArgs& a, int l, const float* h, float* x,
                         const std::vector<int32_t>& hid, const std::vector<float>& hw,
                         const std::vector<int>& uniq);

    cuda::Gpu gpu_;
    std::vector<DeviceBuffer> weights_;
    std::vector<GpuLayer> layers_;
    TensorView tok_embd_, output_;
    const float* output_norm_ = nullptr;
    const float* inv_freq_ = nullptr;
    std::unique_ptr<VramExpertCache> experts_;
    std::map<const KvCache*, DeviceKv> kv_;
    struct GraphState {
        cuda::Graph graph;
        uint64_t graph_gen = 0;     // gen_ when captured
        uint64_t warm_gen = ~0ull;  // gen_ of the last uncaptured decode step
        bool fused = false;         // the graph runs the persistent decode kernel
    };
    std::map<const KvCache*, GraphState> graphs_;
    uint64_t gen_ = 0;  // bumped whenever a device buffer a graph may hold is reallocated
    bool capturing_ = false;
    bool graphs_on_ = true;     // SLUICE_GPU_GRAPH=0 turns replay off (for comparisons)
    bool cpu_misses_ = false;   // decode: experts not in VRAM computed on the CPU
    bool fusable_ = false;      // fused_layers may apply (layer kinds and shapes)
    uint64_t fused_steps_ = 0;  // steps queued through fused_layers (a replayed graph counts)
    std::vector<DeviceBuffer> scratch_;
    uint64_t dense_bytes_ = 0;
    std::string describe_;
    std::unique_ptr<ThreadPool> load_pool_;
    // SLUICE_GPU_PROFILE=1: the device is synchronised between phases and the time of each
    // is summed (slower overall; for finding where a step goes), printed at exit.
    struct Profile {
        bool on = false;
        std::chrono::steady_clock::time_point t;
        std::map<std::string, double> s;
    } prof_;
    // SLUICE_GPU_REPEAT=PHASE:N[,PHASE:N...], for timing only (outputs are then wrong): a
    // one-token step launches that phase N times (0: not at all), so that differences of decode
    // times give each phase's share of a step as it runs in the graph, between its neighbours.
    enum Phase { kQkv, kAttention, kAttnOut, kRouter, kGateUp, kDown, kPhases };
    int repeat_[kPhases] = {1, 1, 1, 1, 1, 1};
    int reps(Phase p, int n) const { return n == 1 ? repeat_[p] : 1; }
    void parse_repeat(const char* spec);
    void phase(const char* name) {
        if (!prof_.on) return;
        gpu_.sync();
        const auto now = std::chrono::steady_clock::now();
        prof_.s[name] += std::chrono::duration<double>(now - prof_.t).count();
        prof_.t = now;
    }
};

CudaForward::~CudaForward() {
    for (const auto& [k, v] : prof_.s)
        std::fprintf(stderr, "gpu profile %-12s %9.3f s\n", k.c_str(), v);
}

TensorView CudaForward::upload_matrix(const TensorView& w, const std::string& what) {
    if (w.empty()) return w;
    check(cuda::supports(w.dtype), std::string("--backend cuda: ") + what + " has weight type " +
                                       dtype_name(w.dtype) + ", which the CUDA kernels lack");
    check(w.cols() % 32 == 0, "--backend cuda: " + what + " rows are not a multiple of 32");
    weights_.emplace_back(w.nbytes());
    TensorView d = w;
    d.dtype = gpu_.upload_matrix(weights_.back().data(), w);
    d.data = weights_.back().data();
    dense_bytes_ += w.nbytes();
    return d;
}

const float* CudaForward::upload_f32(const TensorView& w) {
    if (w.empty()) return nullptr;
    std::vector<float> host((size_t)w.cols() * (size_t)w.rows());
    for (int64_t r = 0; r < w.rows(); ++r) get_row(w, r, host.data() + r * w.cols());
    weights_.emplace_back(host.size() * 4);
    gpu_.upload(weights_.back().data(), host.data(), host.size() * 4);
    dense_bytes_ += host.size() * 4;
    return weights_.back().f32();
}

CudaForward::CudaForward(Model& m, const GpuOptions& o) {
    const ModelConfig& c = m.config();
    const Weights& w = m.weights();
    auto unsupported = [&](const std::string& what) {
        fail("--backend cuda: " + c.arch_name + " uses " + what +
             ", which the CUDA backend does not implement yet; use --backend cpu");
    };
    if (c.is_mla()) unsupported("multi-head latent attention");
    for (int l = 0; l < c.n_layer; ++l)
        if (c.is_linear_layer(l)) unsupported("linear-attention (Gated DeltaNet) layers");
    if (c.attn_out_gate) unsupported("a gated attention output");
    if (c.gating != Gating::Softmax) unsupported("sigmoid routing");
    if (c.n_group > 1 && c.topk_group < c.n_group) unsupported("group-limited routing");

    const cuda::DeviceInfo info = cuda::device_info();
    tok_embd_ = upload_matrix(w.tok_embd, "token_embd");
    output_ = w.output.data == w.tok_embd.data ? tok_embd_ : upload_matrix(w.output, "output");
    output_norm_ = upload_f32(w.output_norm);
    {
        const RopeTable& r = m.rope();
        weights_.emplace_back(r.inv_freq.size() * 4 + 4);
        gpu_.upload(weights_.back().data(), r.inv_freq.data(), r.inv_freq.size() * 4);
        inv_freq_ = weights_.back().f32();
    }
    layers_.resize((size_t)c.n_layer);
    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = w.layers[(size_t)l];
        GpuLayer& G = layers_[(size_t)l];
        const std::string at = "layer " + std::to_string(l) + " ";
        G.attn_norm = upload_f32(L.attn_norm);
        G.ffn_norm = upload_f32(L.ffn_norm);
        G.q_norm = upload_f32(L.q_norm);
        G.k_norm = upload_f32(L.k_norm);
        G.wq = upload_matrix(L.wq, at + "attn_q");
        G.wk = upload_matrix(L.wk, at + "attn_k");
        G.wv = upload_matrix(L.wv, at + "attn_v");
        G.wo = upload_matrix(L.wo, at + "attn_output");
        G.router = upload_matrix(L.router, at + "ffn_gate_inp");
        G.ffn_gate = upload_matrix(L.ffn_gate, at + "ffn_gate");
        G.ffn_up = upload_matrix(L.ffn_up, at + "ffn_up");
        G.ffn_down = upload_matrix(L.ffn_down, at + "ffn_down");
        G.shexp_gate = upload_matrix(L.shexp_gate, at + "ffn_gate_shexp");
        G.shexp_up = upload_matrix(L.shexp_up, at + "ffn_up_shexp");
        G.shexp_down = upload_matrix(L.shexp_down, at + "ffn_down_shexp");
        G.shexp_gate_inp = upload_f32(L.shexp_gate_inp);
        for (const ExpertProj& p : m.expert_layout().layers[(size_t)l].proj)
            if (!m.expert_layout().layers[(size_t)l].experts.empty())
                check(cuda::supports(p.dtype),
                      "--backend cuda: " + at + "experts have weight type " +
                          std::string(dtype_name(p.dtype)) + ", which the CUDA kernels lack");
    }
    // VRAM plan: dense weights (uploaded), KV cache for the loader's context, scratch for a
    // 512-token batch, the rest for expert slots.
    const uint64_t free_now = cuda::device_info().free_bytes;
    const uint64_t budget = o.gpu_mem                        ? o.gpu_mem
                            : info.free_bytes > (1ull << 30) ? info.free_bytes - (1ull << 30)
                                                             : 0;
    check(budget > dense_bytes_, "--gpu-mem: " + std::to_string(budget >> 20) +
                                     " MiB cannot hold the dense weights (" +
                                     std::to_string(dense_bytes_ >> 20) + " MiB)");
    const uint64_t kv = KvCache::bytes_for(c, o.n_ctx);
    const uint64_t ff = (uint64_t)std::max({c.n_ff_exp, c.n_ff, c.n_ff_shexp});
    const uint64_t scratch = 512ull * 4 *
                                 (6ull * c.n_embd + 4 * ff + (uint64_t)c.n_expert +
                                  (uint64_t)c.n_head * (c.head_dim + c.v_head_dim) * 2) +
                             4ull * c.n_vocab * 16 + (64ull << 20) * 2;
    const uint64_t rest = budget - dense_bytes_;
    check(rest > kv + scratch, "--gpu-mem: " + std::to_string(budget >> 20) +
                                   " MiB leaves no room for the KV cache (" +
                                   std::to_string(kv >> 20) + " MiB) and scratch");
    const uint64_t reserve = kv + scratch + (256ull << 20);
    const uint64_t expert_vram =
        std::min<uint64_t>(rest - kv - scratch, free_now > reserve ? free_now - reserve : 0);
    const ExpertLayout& X = m.expert_layout();
    if (X.total_bytes() > 0) {
        // With the OS page cache as the host cache (no budget, or --io page-cache/mmap),
        // misses are read from the file straight into pinned staging.
        // SLUICE_GPU_PIN_FILE=1 registers the mapped file for DMA in place instead of pread
        // (on the H100 VM, registering a 16 GiB mapping did not finish within 120 s).
        using HP = VramExpertCache::HostPath;
        const std::string mode = m.experts().mode();
        HP path = HP::Store;
        if (mode == "mmap" || mode == "page-cache") {
            const char* pin = std::getenv("SLUICE_GPU_PIN_FILE");
            path = pin && *pin == '1' ? HP::Mapped : HP::Pread;
        }
        experts_ = std::make_unique<VramExpertCache>(gpu_, X, expert_vram, c.n_expert_used,
                                                     o.max_expert_slots, path);
        load_pool_ = std::make_unique<ThreadPool>(4);
        if (experts_->all_resident()) {
            experts_->load_all(m.experts(), *load_pool_);
        } else {
            cpu_misses_ =
                o.misses == GpuMisses::Cpu || (o.misses == GpuMisses::Auto && path != HP::Store);
            if (cpu_misses_) experts_->fill_evenly(m.experts(), *load_pool_);
        }
    }
    char line[512];
    std::snprintf(line, sizeof line,
                  "gpu: %s (sm_%d%d, %.1f GiB free), dense %.2f GiB, KV %.2f GiB, experts: %d "
                  "slots of %.2f MiB (%s)\n",
                  info.name.c_str(), info.cc_major, info.cc_minor, info.free_bytes / 1073741824.0,
                  dense_bytes_ / 1073741824.0, kv / 1073741824.0,
                  experts_ ? experts_->n_slots() : 0,
                  experts_ ? experts_->slot_bytes() / 1048576.0 : 0.0,
                  !experts_                  ? "none"
                  : experts_->all_resident() ? "all resident"
                                             : "cached");
    describe_ = line;
    if (experts_ && !experts_->all_resident()) {
        const char* names[] = {"own host cache (pinned staging)", "pread into pinned staging",
                               "DMA from the registered page cache"};
        const std::string via = names[(int)experts_->host_path()];
        describe_ += cpu_misses_ ? "gpu: decode computes experts missing from VRAM on the CPU "
                                   "(VRAM holds an even share per layer); prefill copies via " +
                                       via + "\n"
                                 : "gpu: expert misses via " + via + "\n";
        if (!experts_->host_path_note().empty())
            describe_ += "gpu: " + experts_->host_path_note() + "\n";
    }
    fusable_ = experts_ && experts_->all_resident();
    for (int l = 0; l < c.n_layer && fusable_; ++l) {
        const GpuLayer& L = layers_[(size_t)l];
        fusable_ = c.is_moe_layer(l) && L.shexp_gate.empty() &&
                   L.wq.rows() == (int64_t)c.n_head * c.head_dim &&
                   L.wk.rows() == (int64_t)c.n_head_kv * c.head_dim &&
                   L.wv.rows() == (int64_t)c.n_head_kv * c.v_head_dim &&
                   L.wo.cols() == (int64_t)c.n_head * c.v_head_dim && L.router.rows() == c.n_expert;
        const cuda::ExpertTable t = experts_->table(l);
        fusable_ = fusable_ && t.dtype[0] == t.dtype[1];
        for (const TensorView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.router})
            fusable_ = fusable_ && cuda::decode_layers_take(w->dtype);
        for (DType e : t.dtype) fusable_ = fusable_ && cuda::decode_layers_take(e);
    }
    const char* pe = std::getenv("SLUICE_GPU_PROFILE");
    prof_.on = pe && *pe && *pe != '0';
    const char* ge = std::getenv("SLUICE_GPU_GRAPH");
    graphs_on_ = !(ge && *ge == '0');
    if (const char* r = std::getenv("SLUICE_GPU_REPEAT"); r && *r) parse_repeat(r);
}

void CudaForward::parse_repeat(const char* spec) {
    static const char* const names[kPhases] = {"qkv",    "attention", "attn_out",
                                               "router", "gate_up",   "down"};
    std::string s(spec);
    for (size_t b = 0; b < s.size();) {
        const size_t e = std::min(s.find(',', b), s.size()), c = s.find(':', b);
        check(c < e, "SLUICE_GPU_REPEAT: expected PHASE:N in '" + s + "'");
        const std::string name = s.substr(b, c - b), count = s.substr(c + 1, e - c - 1);
        const auto* it = std::find_if(std::begin(names), std::end(names),
                                      [&](const char* n) { return name == n; });
        check(it != std::end(names), "SLUICE_GPU_REPEAT: unknown phase '" + name +
                                         "' (qkv, attention, attn_out, router, gate_up, down)");
        check(count.size() == 1 && count[0] >= '0' && count[0] <= '4',
              "SLUICE_GPU_REPEAT: count '" + count + "' of " + name + " is not 0-4");
        repeat_[it - std::begin(names)] = count[0] - '0';
        b = e + 1;
    }
    std::fprintf(stderr, "SLUICE_GPU_REPEAT=%s: decode phases repeated for timing; outputs "
                         "are wrong\n", spec);
}

float* CudaForward::buf(int i, size_t floats) {
    if (scratch_.size() <= (size_t)i) scratch_.resize((size_t)i + 1);
    DeviceBuffer& b = scratch_[(size_t)i];
    if (b.size() < floats * 4) {
        check(!capturing_, "internal: CUDA scratch grew during graph capture");
        gpu_.sync();
        b = DeviceBuffer();
        b = DeviceBuffer(floats * 4);
        ++gen_;  // captured graphs hold the old pointers
    }
    return b.f32();
}

// Scratch buffer ids.
enum Buf { X, H, Q, K, V, ATT, RLOG, IDS, WTS, ACT, Y, G, U, XS, TOK, LOGITS, IDX, GW, POS, YH };

void CudaForward::forward(Model& m, const ForwardArgs& a) {
    const ModelConfig& c = m.config();
    const int n = a.n, kv_dim = c.n_head_kv * c.head_dim, v_dim = c.n_head_kv * c.v_head_dim;
    DeviceKv& kv = kv_[a.kv];
    const int n_ctx = a.kv->n_ctx();
    if (kv.k.size() < (size_t)c.n_layer * n_ctx * kv_dim * 4) {
        gpu_.sync();
        kv.k = DeviceBuffer((size_t)c.n_layer * n_ctx * kv_dim * 4);
        kv.v = DeviceBuffer((size_t)c.n_layer * n_ctx * v_dim * 4);
        ++gen_;
    }
    const int rows = a.all_logits ? n : 1;
    float* lg = buf(LOGITS, (size_t)rows * c.n_vocab);
    int32_t* tok = (int32_t*)buf(TOK, (size_t)n);
    int32_t* pos = (int32_t*)buf(POS, 1);
    prof_.t = std::chrono::steady_clock::now();
    gpu_.upload_async(tok, a.tokens, (size_t)n * 4);
    // A decode step with every weight resident has no host round trip: it is captured once
    // per KV cache (after one uncaptured step has sized the buffers) and replayed, the
    // position read from device memory.
    const bool graph = n == 1 && graphs_on_ && !prof_.on && (!experts_ || experts_->all_resident());
    // A replayed graph and the persistent decode kernel read the position from device memory.
    if (n == 1) gpu_.upload_async(pos, &a.pos0, 4);
    if (!graph) {
        fused_steps_ += step(m, a, kv, cuda::Pos{a.pos0, nullptr, 0}, lg) ? 1 : 0;
    } else {
        GraphState& g = graphs_[a.kv];
        if (g.warm_gen != gen_) {
            g.warm_gen = gen_;
            fused_steps_ += step(m, a, kv, cuda::Pos{a.pos0, nullptr, 0}, lg) ? 1 : 0;
        } else {
            if (!g.graph.ready() || g.graph_gen != gen_) {
                gpu_.begin_capture();
                capturing_ = true;
                g.fused = step(m, a, kv, cuda::Pos{0, pos, n_ctx}, lg);
                capturing_ = false;
                gpu_.end_capture(g.graph);
                g.graph_gen = gen_;
            }
            gpu_.launch(g.graph);
            fused_steps_ += g.fused ? 1 : 0;
        }
    }
    gpu_.download(a.logits, lg, (size_t)rows * c.n_vocab * 4);
    phase("output");
}

bool CudaForward::step(Model& m, const ForwardArgs& a, DeviceKv& kv, const cuda::Pos& pos,
                       float* lg) {
    const ModelConfig& c = m.config();
    const int n = a.n, E = c.n_embd, hd = c.head_dim, vd = c.v_head_dim, nh = c.n_head,
              nkv = c.n_head_kv;
    const int q_dim = nh * hd, kv_dim = nkv * hd, v_dim = nkv * vd;
    const size_t n_ctx = (size_t)a.kv->n_ctx();
    float* x = buf(X, (size_t)n * E);
    float* h = buf(H, (size_t)n * E);
    float* q = buf(Q, (size_t)n * q_dim);
    float* k = buf(K, (size_t)n * kv_dim);
    float* v = buf(V, (size_t)n * v_dim);
    float* att = buf(ATT, (size_t)n * nh * vd);
    gpu_.get_rows(tok_embd_, (const int32_t*)buf(TOK, (size_t)n), n, x);
    phase("embed");
    const RopeTable& rope = m.rope();
    const bool fused = n == 1 && fusable_ && !prof_.on && gpu_.decode_layers_enabled() &&
                       fused_layers(m, a, kv, x);
    for (int l = 0; l < c.n_layer && !fused; ++l) {
        const GpuLayer& L = layers_[(size_t)l];
        const TensorView* qkv_w[3] = {&L.wq, &L.wk, &L.wv};
        float* qkv_y[3] = {q, k, v};
        for (int r = 0; r < reps(kQkv, n); ++r)
            gpu_.matmul_multi(qkv_w, 3, x, n, qkv_y, cuda::NormIn{L.attn_norm, c.rms_eps, h});
        float* kc = kv.k.f32() + (size_t)l * n_ctx * kv_dim;
        float* vc = kv.v.f32() + (size_t)l * n_ctx * v_dim;
        phase("attn_proj");
        for (int r = 0; r < reps(kAttention, n); ++r)
            gpu_.rope_attention(cuda::RopeFirst{k, v, L.q_norm, L.k_norm, c.rms_eps, inv_freq_,
                                                (int)rope.n_rot(), rope.mag, rope.pairs},
                                q, kc, vc, n, pos, nh, nkv, hd, vd, c.attn_scale(), att);
        phase("attention");
        for (int r = 0; r < reps(kAttnOut, n); ++r)
            gpu_.matmul(L.wo, att, n, x, /*accumulate=*/true);
        phase("attn_out");
        if (!c.is_moe_layer(l)) {
            gpu_.rms_norm(x, L.ffn_norm, c.rms_eps, n, E, h);
            swiglu_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, h, n, x, /*accumulate=*/true);
            phase("dense_ffn");
            continue;
        }
        moe(m, a, l, x, h);
        phase("moe");
    }
    const int first = a.all_logits ? 0 : n - 1, rows = n - first;
    gpu_.rms_norm(x + (size_t)first * E, output_norm_, c.rms_eps, rows, E, h);
    gpu_.matmul(output_, h, rows, lg);
    return fused;
}

bool CudaForward::fused_layers(Model& m, const ForwardArgs& a, DeviceKv& kv, float* x) {
    const ModelConfig& c = m.config();
    const int KU = c.n_expert_used, F = c.n_ff_exp, n_ctx = a.kv->n_ctx();
    const int q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim,
              v_dim = c.n_head_kv * c.v_head_dim;
    cuda::DecodeStep s;
    s.x = x;
    s.q = buf(Q, (size_t)q_dim);
    s.k = buf(K, (size_t)kv_dim);
    s.v = buf(V, (size_t)v_dim);
    s.att = buf(ATT, (size_t)c.n_head * c.v_head_dim);
    s.logits = buf(RLOG, (size_t)c.n_expert);
    s.act = buf(ACT, (size_t)KU * F);
    s.pos = (const int32_t*)buf(POS, 1);  // forward() uploads it
    s.max_pos = n_ctx;
    s.n_embd = c.n_embd, s.n_head = c.n_head, s.n_kv = c.n_head_kv;
    s.hd = c.head_dim, s.vd = c.v_head_dim;
    s.eps = c.rms_eps, s.attn_scale = c.attn_scale();
    const RopeTable& rope = m.rope();
    s.rope = cuda::RopeFirst{
        s.k, s.v, nullptr, nullptr, c.rms_eps, inv_freq_, (int)rope.n_rot(), rope.mag, rope.pairs};
    s.n_expert = c.n_expert, s.k_used = KU, s.n_ff = F;
    s.norm_topk = c.norm_topk_prob, s.route_scale = c.routed_scale;
    if (kv.fused_gen != gen_) {
        auto mat = [](const TensorView& w) {
            return cuda::DecodeMat{w.data, w.row_size(), (int)w.rows(), (int)w.cols(), w.dtype};
        };
        std::vector<cuda::DecodeLayer> dl((size_t)c.n_layer);
        for (int l = 0; l < c.n_layer; ++l) {
            const GpuLayer& L = layers_[(size_t)l];
            cuda::DecodeLayer& d = dl[(size_t)l];
            d.attn_norm = L.attn_norm, d.ffn_norm = L.ffn_norm;
            d.q_norm = L.q_norm, d.k_norm = L.k_norm;
            d.q = mat(L.wq), d.k = mat(L.wk), d.v = mat(L.wv), d.o = mat(L.wo);
            d.router = mat(L.router);
            const cuda::ExpertTable t = experts_->table(l);
            d.experts = t.table;
            for (int p = 0; p < 3; ++p) {
                d.expert_dtype[p] = t.dtype[p];
                d.expert_row_bytes[p] = row_bytes(t.dtype[p], p < 2 ? t.n_embd : t.n_ff);
            }
            d.k_cache = kv.k.f32() + (size_t)l * n_ctx * kv_dim;
            d.v_cache = kv.v.f32() + (size_t)l * n_ctx * v_dim;
        }
        check(!capturing_, "internal: fused layer table made during graph capture");
        kv.fused = DeviceBuffer(dl.size() * sizeof(cuda::DecodeLayer));
        gpu_.upload(kv.fused.data(), dl.data(), kv.fused.size());
        kv.fused_gen = gen_;
    }
    return gpu_.decode_layers((const cuda::DecodeLayer*)kv.fused.data(), c.n_layer, s);
}

// Tokens grouped by expert: each expert's weights are read once for the batch. Experts are
// made resident in chunks the VRAM cache can hold at once.
void CudaForward::grouped_experts(Model& m, const ForwardArgs& a, int l, const float* h, float* x,
                                  const std::vector<int32_t>& hid, const std::vector<float>& hw,
                                  const std::vector<int>& uniq) {
    const ModelConfig& c = m.config();
    const int n = a.n, E = c.n_embd, NE = c.n_expert, KU = c.n_expert_used, F = c.n_ff_exp;
    std::vector<std::vector<int32_t>> toks((size_t)NE);
    std::vector<std::vector<float>> tw((size_t)NE);
    for (int tk = 0; tk < n; ++tk)
        for (int j = 0; j < KU; ++j) {
            const int e = hid[(size_t)tk * KU + j];
            toks[(size_t)e].push_back(tk);
            tw[(size_t)e].push_back(hw[(size_t)tk * KU + j]);
        }
    std::vector<int32_t> idx_all;
    std::vector<float> w_all;
    std::vector<size_t> off;
    for (int e : uniq) {
        off.push_back(idx_all.size());
        idx_all.insert(idx_all.end(), toks[(size_t)e].begin(), toks[(size_t)e].end());
        w_all.insert(w_all.end(), tw[(size_t)e].begin(), tw[(size_t)e].end());
    }
    int32_t* idx = (int32_t*)buf(IDX, idx_all.size());
    float* gw = buf(GW, w_all.size());
    float* xs = buf(XS, (size_t)n * E);
    float* g = buf(G, (size_t)n * F);
    float* u = buf(U, (size_t)n * F);
    float* y = buf(Y, (size_t)n * E);
    gpu_.upload_async(idx, idx_all.data(), idx_all.size() * 4);
    gpu_.upload_async(gw, w_all.data(), w_all.size() * 4);
    const size_t chunk = experts_->all_resident() ? uniq.size() : (size_t)experts_->n_slots();
    for (size_t c0 = 0; c0 < uniq.size(); c0 += chunk) {
        const size_t c1 = std::min(uniq.size(), c0 + chunk);
        if (!experts_->all_resident()) {
            gpu_.sync();  // the previous chunk's slots may be evicted now
            experts_->ensure(m.experts(), *a.pool, l, uniq.data() + c0, (int)(c1 - c0));
        }
        for (size_t i = c0; i < c1; ++i) {
            const int e = uniq[i], mt = (int)toks[(size_t)e].size();
            gpu_.gather_rows(h, idx + off[i], mt, E, xs);
            gpu_.matmul(experts_->view(l, e, 0), xs, mt, g);
            gpu_.matmul(experts_->view(l, e, 1), xs, mt, u);
            gpu_.swiglu(g, u, (size_t)mt * F, g);
            gpu_.matmul(experts_->view(l, e, 2), g, mt, y);
            gpu_.scatter_add(y, idx + off[i], gw + off[i], mt, E, x);
        }
    }
    gpu_.sync();  // idx_all / w_all go out of scope
}

// Decode with misses computed on the CPU: the GPU runs the resident experts (the others get
// zeros) while the host computes the missing ones from the ExpertStore's views (page cache)
// on the activations it downloaded; their outputs go up and are combined with the same weights.
void CudaForward::host_misses(Model& m, const ForwardArgs& a, int l, const float* h, float* x,
                              const std::vector<int32_t>& hid) {
    const ModelConfig& c = m.config();
    const int n = a.n, E = c.n_embd, KU = c.n_expert_used, F = c.n_ff_exp;
    const int32_t* ids = (const int32_t*)buf(IDS, (size_t)n * KU);
    const float* wts = buf(WTS, (size_t)n * KU);
    std::vector<float> hh((size_t)n * E);
    gpu_.download(hh.data(), h, hh.size() * 4);
    const cuda::ExpertTable t = experts_->table(l);
    float* act = buf(ACT, (size_t)n * KU * F);
    float* yh = buf(YH, (size_t)n * KU * E);
    gpu_.experts_gate_up(t, ids, n * KU, KU, h, act);  // runs while the host computes below
    gpu_.experts_down_combine(t, ids, wts, n, KU, act, x);
    std::vector<float> out((size_t)n * KU * E, 0.f);
    std::vector<ExpertWeights> ew;
    std::vector<SwigluJob> jobs;
    std::vector<int> held;
    ew.reserve(hid.size());
    ExpertStore& store = m.experts();
    for (size_t s = 0; s < hid.size(); ++s)
        if (!experts_->resident(l, hid[s])) held.push_back(hid[s]);
    store.prefetch(l, held.data(), (int)held.size());
    for (size_t s = 0, k = 0; s < hid.size(); ++s) {
        if (experts_->resident(l, hid[s])) continue;
        ew.push_back(store.acquire(l, held[k++]));
        jobs.push_back({&ew.back().gate, &ew.back().up, &ew.back().down,
                        hh.data() + (s / (size_t)KU) * E, 1, out.data() + s * E});
    }
    ffn_swiglu_experts(*a.pool, jobs);
    for (int e : held) store.release(l, e);
    experts_->count_host(jobs.size(), hid.size());
    gpu_.upload_async(yh, out.data(), out.size() * 4);
    gpu_.combine(yh, wts, n, KU, E, x, /*accumulate=*/true);
    gpu_.sync();  // `out` is staged by the copy; keep the host buffer's lifetime simple
}

void CudaForward::moe(Model& m, const ForwardArgs& a, int l, float* x, float* h) {
    const ModelConfig& c = m.config();
    const GpuLayer& L = layers_[(size_t)l];
    const int n = a.n, E = c.n_embd, NE = c.n_expert, KU = c.n_expert_used, F = c.n_ff_exp;
    float* rlog = buf(RLOG, (size_t)n * NE);
    int32_t* ids = (int32_t*)buf(IDS, (size_t)n * KU);
    float* wts = buf(WTS, (size_t)n * KU);
    for (int r = 0; r < reps(kRouter, n); ++r)
        gpu_.router_topk(L.router, x, n, cuda::NormIn{L.ffn_norm, c.rms_eps, h}, rlog,
                         cuda::RouteOut{KU, c.norm_topk_prob, c.routed_scale, ids, wts});
    const bool table_path = n <= kTableTokens;
    auto table_kernels = [&] {
        const cuda::ExpertTable t = experts_->table(l);
        float* act = buf(ACT, (size_t)n * KU * F);
        for (int r = 0; r < reps(kGateUp, n); ++r)
            gpu_.experts_gate_up(t, ids, n * KU, KU, h, act);
        for (int r = 0; r < reps(kDown, n); ++r)
            gpu_.experts_down_combine(t, ids, wts, n, KU, act, x);
    };
    if (experts_->all_resident() && table_path) {
        table_kernels();  // no host round trip: ids and expert table stay on the device
    } else {
        std::vector<int32_t> hid((size_t)n * KU);
        std::vector<float> hw((size_t)n * KU);
        gpu_.download(hid.data(), ids, hid.size() * 4);
        gpu_.download(hw.data(), wts, hw.size() * 4);
        std::vector<int> uniq;
        std::vector<char> seen((size_t)NE, 0);
        for (int32_t e : hid)
            if (!seen[(size_t)e]) seen[(size_t)e] = 1, uniq.push_back(e);
        std::sort(uniq.begin(), uniq.end());
        const bool all_fit = (int)uniq.size() <= experts_->n_slots();
        if (table_path && cpu_misses_) {
            host_misses(m, a, l, h, x, hid);
        } else if (table_path && all_fit) {
            experts_->ensure(m.experts(), *a.pool, l, uniq.data(), (int)uniq.size());
            table_kernels();
        } else {
            grouped_experts(m, a, l, h, x, hid, hw, uniq);
        }
    }
    if (!L.shexp_gate.empty()) {
        float* y = buf(Y, (size_t)n * E);
        swiglu_ffn(L.shexp_gate, L.shexp_up, L.shexp_down, h, n, y, /*accumulate=*/false);
        if (L.shexp_gate_inp) gpu_.scale_by_sigmoid_dot(y, h, L.shexp_gate_inp, n, E);
        gpu_.add(x, y, (size_t)n * E);
    }
}

// out (+)= down(silu(gate h) * up h): a dense FFN or a shared expert. h, out: [n, n_embd].
void CudaForward::swiglu_ffn(const TensorView& gate, const TensorView& up, const TensorView& down,
                             const float* h, int n, float* out, bool accumulate) {
    const size_t ff = (size_t)gate.rows();
    float* g = buf(G, (size_t)n * ff);
    float* u = buf(U, (size_t)n * ff);
    gpu_.matmul(gate, h, n, g);
    gpu_.matmul(up, h, n, u);
    gpu_.swiglu(g, u, (size_t)n * ff, g);
    gpu_.matmul(down, g, n, out, accumulate);
}

}  // namespace

std::unique_ptr<DeviceForward> make_cuda_forward(Model& m, const GpuOptions& o) {
    std::string why;
    if (!cuda::available(&why)) fail("--backend cuda: no usable CUDA device (" + why + ")");
    return std::make_unique<CudaForward>(m, o);
}

}  // namespace sluice
