#include "model/blocks.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"

namespace sluice {

void embed_tokens(const TensorView& tok_embd, const int32_t* tokens, int n, float* x) {
    const int64_t E = tok_embd.cols();
    for (int t = 0; t < n; ++t) get_row(tok_embd, tokens[t], x + t * E);
}

namespace {
struct Scratch {
    std::vector<float> q, k, v, gate, qg, attn;
};
}  // namespace

// Prompt batches at least this long take attention_block (keys transposed per task).
constexpr int kBlockAttentionMin = 4;
// Batches at least this long split their per-token bookkeeping (norms, RoPE, KV stores, the
// weighted expert sum) over the pool; shorter ones are not worth a parallel region.
constexpr int kParallelTokensMin = 8;

void attention_gqa(const ModelConfig& c, const RopeTable& rope_tab, const LayerWeights& w,
                   int layer, const float* h, int n, int pos0, KvCache& kv, ThreadPool& pool,
                   float* out) {
    const int hd = c.head_dim, vd = c.v_head_dim, nh = c.n_head, nkv = c.n_head_kv;
    const int q_dim = nh * hd, kv_dim = nkv * hd, v_dim = nkv * vd;
    // Buffers kept across calls (a prompt's layers reuse them without zeroing or faulting in
    // fresh pages); local references, so the pool's tasks below see the caller's.
    thread_local Scratch tls;
    Scratch& sc = tls;
    std::vector<float>& q = sc.q;
    std::vector<float>& k = sc.k;
    std::vector<float>& v = sc.v;
    std::vector<float>& gate = sc.gate;
    std::vector<float>& qg = sc.qg;
    std::vector<float>& attn = sc.attn;
    q.resize((size_t)n * q_dim), k.resize((size_t)n * kv_dim), v.resize((size_t)n * v_dim);
    // With the output gate, wq rows per head are [q (hd) | gate (hd)].
    qg.resize(c.attn_out_gate ? (size_t)n * q_dim * 2 : 0);
    const TensorView* W[3] = {&w.wq, &w.wk, &w.wv};
    float* Y[3] = {c.attn_out_gate ? qg.data() : q.data(), k.data(), v.data()};
    matmul_multi(pool, W, 3, h, n, Y);
    if (c.attn_out_gate) {
        gate.resize((size_t)n * q_dim);
        for (int64_t r = 0; r < (int64_t)n * nh; ++r) {
            const float* src = qg.data() + r * 2 * hd;
            std::copy(src, src + hd, q.data() + r * hd);
            std::copy(src + hd, src + 2 * hd, gate.data() + r * hd);
        }
    }
    // Per token and independent of the others: split over the pool for prompts.
    auto norm_rope_store = [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) {
            float* qt = q.data() + (size_t)t * q_dim;
            float* kt = k.data() + (size_t)t * kv_dim;
            if (!w.q_norm.empty()) rms_norm(qt, w.q_norm, c.rms_eps, nh, hd, qt);
            if (!w.k_norm.empty()) rms_norm(kt, w.k_norm, c.rms_eps, nkv, hd, kt);
            rope(rope_tab, qt, nh, hd, pos0 + (int)t);
            rope(rope_tab, kt, nkv, hd, pos0 + (int)t);
            const float* vt = v.data() + (size_t)t * v_dim;
            for (int g = 0; g < nkv; ++g) {
                std::copy(kt + g * hd, kt + (g + 1) * hd, kv.k(layer, g, pos0 + (int)t));
                std::copy(vt + g * vd, vt + (g + 1) * vd, kv.v(layer, g, pos0 + (int)t));
            }
        }
    };
    if (n >= kParallelTokensMin)
        pool.parallel_for(n, 4, norm_rope_store);
    else
        norm_rope_store(0, n, 0);
    attn.resize((size_t)n * nh * vd);
    const float scale = c.attn_scale();
    const int group = nh / nkv;
    const CpuKernels& kern = cpu_kernels();
    const int64_t ldk = kv.k_stride(), ldv = kv.v_stride();
    if (n >= kBlockAttentionMin) {
        // Prompt batches: one task per (K/V head, block of tokens); the keys are transposed
        // once per task and shared by the block's tokens and the group's query heads.
        const int tb = 32, n_tb = (n + tb - 1) / tb;
        pool.run((int64_t)nkv * n_tb, [&](int64_t task, int) {
            const int g = (int)(task % nkv), t0 = (int)(task / nkv) * tb;
            attention_block(q.data() + (size_t)t0 * q_dim + (size_t)g * group * hd, q_dim, group,
                            hd, kv.k(layer, g, 0), ldk, kv.v(layer, g, 0), ldv, vd,
                            pos0 + t0, std::min(tb, n - t0), scale,
                            attn.data() + ((size_t)t0 * nh + (size_t)g * group) * vd,
                            (int64_t)nh * vd);
        });
    } else {
        // Decode: one task per (token, K/V head, up to 4 of its query heads): each key and
        // value row read once for those heads.
        const int n_pass = (group + 3) / 4;
        pool.run((int64_t)n * nkv * n_pass, [&](int64_t task, int) {
            const int t = (int)(task / (nkv * n_pass)), g = (int)(task / n_pass % nkv);
            const int h0 = g * group + (int)(task % n_pass) * 4;
            const int nq = std::min(4, (g + 1) * group - h0), n_pos = pos0 + t + 1;
            thread_local std::vector<float> scores;
            scores.resize((size_t)(4 * n_pos));
            kern.scores_rows(q.data() + (size_t)t * q_dim + (size_t)h0 * hd, nq,
                             kv.k(layer, g, 0), ldk, n_pos, hd, scale, scores.data(),
                             n_pos);
            for (int j = 0; j < nq; ++j) softmax(scores.data() + (size_t)j * n_pos, n_pos);
            kern.weighted_rows(scores.data(), nq, n_pos, kv.v(layer, g, 0), ldv, n_pos, vd,
                               attn.data() + ((size_t)t * nh + h0) * vd);
        });
    }
    if (c.attn_out_gate)
        for (size_t i = 0; i < attn.size(); ++i) attn[i] *= 1.0f / (1.0f + std::exp(-gate[i]));
    matmul(pool, w.wo, attn.data(), n, out);
}

void ffn_swiglu(ThreadPool& pool, const TensorView& gate, const TensorView& up,
                const TensorView& down, const float* x, int n, float* out) {
    ffn_swiglu_experts(pool, {{&gate, &up, &down, x, n, out}});
}

namespace {

// order[0..k) = indices of the k largest v[i], ties to the lower index; order.size() = len(v).
void top_k(const float* v, int k, std::vector<int>& order) {
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
}

}  // namespace

Routing route_tokens(const ModelConfig& c, float* logits, const TensorView& bias, int n) {
    const int NE = c.n_expert, K = c.n_expert_used;
    Routing r;
    r.k = K;
    r.ids.resize((size_t)n * K);
    r.weights.resize((size_t)n * K);
    thread_local std::vector<float> b, choice, gscore;
    thread_local std::vector<int> order, gorder;
    b.assign((size_t)NE, 0.f), choice.resize((size_t)NE), order.resize((size_t)NE);
    if (!bias.empty()) get_row(bias, 0, b.data());
    const int gsize = NE / c.n_group;
    gscore.resize((size_t)c.n_group), gorder.resize((size_t)c.n_group);
    for (int t = 0; t < n; ++t) {
        float* p = logits + (size_t)t * NE;
        if (c.gating == Gating::Softmax) {
            softmax(p, NE);
            std::copy(p, p + NE, choice.begin());
        } else {
            for (int e = 0; e < NE; ++e) {
                p[e] = 1.0f / (1.0f + std::exp(-p[e]));
                choice[(size_t)e] = p[e] + b[(size_t)e];
            }
        }
        if (c.n_group > 1 && c.topk_group < c.n_group) {
            // A group scores the sum of its two best choices; experts outside the best
            // topk_group groups cannot be chosen.
            for (int g = 0; g < c.n_group; ++g) {
                const float* cg = choice.data() + (size_t)g * gsize;
                float b1 = -INFINITY, b2 = -INFINITY;
                for (int e = 0; e < gsize; ++e) {
                    if (cg[e] > b1) {
                        b2 = b1;
                        b1 = cg[e];
                    } else if (cg[e] > b2) {
                        b2 = cg[e];
                    }
                }
                gscore[(size_t)g] = gsize > 1 ? b1 + b2 : b1;
            }
            top_k(gscore.data(), c.topk_group, gorder);
            std::vector<char> keep((size_t)c.n_group, 0);
            for (int i = 0; i < c.topk_group; ++i) keep[(size_t)gorder[(size_t)i]] = 1;
            for (int e = 0; e < NE; ++e)
                if (!keep[(size_t)(e / gsize)]) choice[(size_t)e] = -INFINITY;
        }
        top_k(choice.data(), K, order);
        double sum = 0;
        for (int j = 0; j < K; ++j) sum += p[order[(size_t)j]];
        const float norm = c.norm_topk_prob ? (float)(1.0 / (sum + 1e-20)) : 1.0f;
        for (int j = 0; j < K; ++j) {
            const int e = order[(size_t)j];
            r.ids[(size_t)t * K + j] = e;
            r.weights[(size_t)t * K + j] = p[e] * norm * c.routed_scale;
        }
    }
    return r;
}

// Layers read ahead during a batch that uses every expert: ~1 GB for Qwen3-30B-A3B, about two
// layers of 512-token compute on 2 cores.
constexpr int kBatchPrefetchLayers = 3;

Lookahead lookahead(const ModelConfig& c, const Weights& w, int layer, bool speculate) {
    auto moe = [&](int l) {
        return speculate && l < c.n_layer && c.is_moe_layer(l) ? &w.layers[(size_t)l] : nullptr;
    };
    return {moe(layer + 1), moe(layer + 2)};
}

namespace {

// Speculating two layers ahead keeps more reads in flight during decode (this disk gave
// 1.7 GB/s with 1-2 experts queued, 2.0-2.1 with 6) but its predictions are worse than the
// next layer's. It stays on while at least 80% of its reads are used, judged after 256.
bool second_layer_pays(const StreamStats& s) {
    return s.spec2_reads < 256 || s.spec2_used * 5 >= s.spec2_reads * 4;
}

// The union of the experts the router of `next` picks for the tokens of h, read `ahead`
// layers before they are needed.
void prefetch_predicted(const ModelConfig& c, const LayerWeights& next, ExpertStore& store,
                        int layer, int ahead, const float* h, int n, ThreadPool& pool) {
    std::vector<float> nl((size_t)n * c.n_expert);
    matmul(pool, next.router, h, n, nl.data());
    const Routing pr = route_tokens(c, nl.data(), next.router_bias, n);
    std::vector<char> want((size_t)c.n_expert, 0);
    for (int id : pr.ids) want[(size_t)id] = 1;
    std::vector<int> predicted;
    for (int e = 0; e < c.n_expert; ++e)
        if (want[(size_t)e]) predicted.push_back(e);
    store.prefetch(layer, predicted.data(), (int)predicted.size(), ahead);
}

// Batches with at least 8 (token, expert) pairs per expert are taken to use every expert
// (expected unused fraction e^-8).
bool uses_every_expert(const ModelConfig& c, int n) {
    return (int64_t)n * c.n_expert_used >= 8 * (int64_t)c.n_expert;
}

}  // namespace

void prefetch_two_ahead(const ModelConfig& c, const Lookahead& ahead, ExpertStore& store, int layer,
                        const float* x, int n, ThreadPool& pool) {
    if (!ahead.second || uses_every_expert(c, n) || !second_layer_pays(store.stats())) return;
    thread_local std::vector<float> h;
    h.resize((size_t)n * c.n_embd);
    rms_norm(x, ahead.second->ffn_norm, c.rms_eps, n, c.n_embd, h.data());
    prefetch_predicted(c, *ahead.second, store, layer + 2, 2, h.data(), n, pool);
}

void moe_block(const ModelConfig& c, const LayerWeights& w, const Lookahead& ahead,
               ExpertStore& store, int layer, const float* h, int n, ThreadPool& pool, float* out) {
    const int E = c.n_embd, NE = c.n_expert;
    std::vector<float> logits((size_t)n * NE);
    matmul(pool, w.router, h, n, logits.data());
    const Routing r = route_tokens(c, logits.data(), w.router_bias, n);
    // Per expert: the tokens routed to it and their weights. This and the buffers below are
    // kept across calls (a decode step runs this once per layer; their allocations showed).
    thread_local std::vector<std::vector<std::pair<int, float>>> routed_tls;
    std::vector<std::vector<std::pair<int, float>>>& routed = routed_tls;
    routed.resize((size_t)NE);
    for (auto& v : routed) v.clear();
    for (int t = 0; t < n; ++t)
        for (int j = 0; j < r.k; ++j)
            routed[(size_t)r.ids[(size_t)t * r.k + j]].push_back(
                {t, r.weights[(size_t)t * r.k + j]});
    std::vector<int> todo;
    for (int e = 0; e < NE; ++e)
        if (!routed[(size_t)e].empty()) todo.push_back(e);
    store.prefetch(layer, todo.data(), (int)todo.size());
    // Speculative: the next layer's router on this layer's input predicts its experts, so
    // their reads overlap this layer's compute. For a batch, the union over its tokens; a
    // batch long enough to use every expert (expected unused fraction e^-8) needs no router
    // to say so, and reads a few layers ahead.
    // (Two layers ahead: prefetch_two_ahead, at the start of the layer.)
    if (ahead.next && uses_every_expert(c, n)) {
        store.prefetch_layers(layer + 1, kBatchPrefetchLayers);
    } else if (ahead.next) {
        prefetch_predicted(c, *ahead.next, store, layer + 1, 1, h, n, pool);
    }
    // Computed in arrival order, summed in expert order: the result must not depend on I/O timing.
    // Experts whose bytes are all in memory at the same time are computed as one group (two
    // parallel regions for the group instead of two per expert).
    // Rows of every routed (token, expert) pair, expert by expert from first[e]: gathered
    // inputs and expert outputs, kept across calls (see attention_gqa).
    thread_local std::vector<size_t> first_tls;
    std::vector<size_t>& first = first_tls;
    first.assign((size_t)NE + 1, 0);
    for (int e = 0; e < NE; ++e) first[(size_t)e + 1] = first[(size_t)e] + routed[(size_t)e].size();
    thread_local std::vector<float> result_tls, xs_tls;
    std::vector<float>& result = result_tls;
    std::vector<float>& xs = xs_tls;
    result.resize(first[(size_t)NE] * (size_t)E);
    if (n > 1) {
        // Every routed (token, expert) input row, gathered in parallel up front.
        xs.resize(first[(size_t)NE] * (size_t)E);
        std::vector<int> pair_tok(first[(size_t)NE]);
        for (int e = 0; e < NE; ++e)
            for (size_t k = 0; k < routed[(size_t)e].size(); ++k)
                pair_tok[first[(size_t)e] + k] = routed[(size_t)e][k].first;
        pool.parallel_for((int64_t)pair_tok.size(), 16, [&](int64_t p0, int64_t p1, int) {
            for (int64_t p = p0; p < p1; ++p)
                std::copy(h + (size_t)pair_tok[(size_t)p] * E,
                          h + (size_t)(pair_tok[(size_t)p] + 1) * E, xs.data() + (size_t)p * E);
        });
    }
    thread_local std::vector<ExpertWeights> ew_tls;  // entries of this call's experts only
    std::vector<ExpertWeights>& ew = ew_tls;
    ew.resize((size_t)NE);
    while (!todo.empty()) {
        std::vector<int> group{todo[(size_t)store.wait_any(layer, todo.data(), (int)todo.size())]};
        for (int e : todo)
            if (e != group[0] && store.ready(layer, e)) group.push_back(e);
        std::vector<SwigluJob> jobs;
        for (int e : group) {
            todo.erase(std::find(todo.begin(), todo.end(), e));
            const auto& toks = routed[(size_t)e];
            const int m = (int)toks.size();
            ExpertWeights& w_e = ew[(size_t)e];
            w_e = store.acquire(layer, e);
            if (!w.expert_scale.empty()) {
                w_e.gate.scale = w.expert_scale[(size_t)e][0];
                w_e.up.scale = w.expert_scale[(size_t)e][1];
                w_e.down.scale = w.expert_scale[(size_t)e][2];
            }
            // One token: its row; else the routed tokens' rows gathered above.
            const float* x = n > 1 ? xs.data() + first[(size_t)e] * E : h;
            jobs.push_back(
                {&w_e.gate, &w_e.up, &w_e.down, x, m, result.data() + first[(size_t)e] * E});
        }
        ffn_swiglu_experts(pool, jobs);
        for (int e : group) store.release(layer, e);
        // Keep the queue full: experts that found no free slot before can start now.
        if (!todo.empty()) store.prefetch(layer, todo.data(), (int)todo.size());
    }
    // Each element sums its experts in expert order whatever the split: threads own columns.
    const CpuKernels& kern = cpu_kernels();
    auto weighted_sum = [&](int64_t j0, int64_t j1, int) {
        for (int t = 0; t < n; ++t)
            std::fill(out + (size_t)t * E + j0, out + (size_t)t * E + j1, 0.f);
        for (int e = 0; e < NE; ++e) {
            const auto& toks = routed[(size_t)e];
            for (size_t k = 0; k < toks.size(); ++k)
                kern.axpy(toks[k].second, result.data() + (first[(size_t)e] + k) * E + j0,
                          out + (size_t)toks[k].first * E + j0, j1 - j0);
        }
    };
    if (n >= kParallelTokensMin)
        pool.parallel_for(E, 128, weighted_sum);
    else
        weighted_sum(0, E, 0);
    if (!w.shexp_gate.empty()) {
        std::vector<float> sh((size_t)n * E);
        ffn_swiglu(pool, w.shexp_gate, w.shexp_up, w.shexp_down, h, n, sh.data());
        std::vector<float> sg((size_t)n, 1.0f);
        if (!w.shexp_gate_inp.empty()) {
            std::vector<float> gw((size_t)E);
            get_row(w.shexp_gate_inp, 0, gw.data());
            for (int t = 0; t < n; ++t)
                sg[(size_t)t] =
                    1.0f /
                    (1.0f + std::exp(-cpu_kernels().dot_f32(h + (size_t)t * E, gw.data(), E)));
        }
        for (int t = 0; t < n; ++t)
            for (int j = 0; j < E; ++j)
                out[(size_t)t * E + j] += sg[(size_t)t] * sh[(size_t)t * E + j];
    }
}

void output_logits(const ModelConfig& c, const Weights& w, const float* x, int n, bool all,
                   ThreadPool& pool, float* logits) {
    const int E = c.n_embd;
    const int first = all ? 0 : n - 1;
    const int rows = n - first;
    std::vector<float> xn((size_t)rows * E);
    rms_norm(x + (size_t)first * E, w.output_norm, c.rms_eps, rows, E, xn.data());
    matmul(pool, w.output, xn.data(), rows, logits);
}

}  // namespace sluice
