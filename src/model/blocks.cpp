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

void attention_gqa(const ModelConfig& c, const LayerWeights& w, int layer, const float* h, int n,
                   int pos0, KvCache& kv, ThreadPool& pool, float* out) {
    const int hd = c.head_dim, nh = c.n_head, nkv = c.n_head_kv;
    const int q_dim = nh * hd, kv_dim = nkv * hd;
    std::vector<float> q((size_t)n * q_dim), k((size_t)n * kv_dim), v((size_t)n * kv_dim);
    matmul(pool, w.wq, h, n, q.data());
    matmul(pool, w.wk, h, n, k.data());
    matmul(pool, w.wv, h, n, v.data());
    for (int t = 0; t < n; ++t) {
        float* qt = q.data() + (size_t)t * q_dim;
        float* kt = k.data() + (size_t)t * kv_dim;
        if (!w.q_norm.empty()) rms_norm(qt, w.q_norm, c.rms_eps, nh, hd, qt);
        if (!w.k_norm.empty()) rms_norm(kt, w.k_norm, c.rms_eps, nkv, hd, kt);
        rope_neox(qt, nh, hd, c.n_rot, pos0 + t, c.rope_theta);
        rope_neox(kt, nkv, hd, c.n_rot, pos0 + t, c.rope_theta);
        std::copy(kt, kt + kv_dim, kv.k(layer, pos0 + t));
        std::copy(v.data() + (size_t)t * kv_dim, v.data() + (size_t)(t + 1) * kv_dim,
                  kv.v(layer, pos0 + t));
    }
    std::vector<float> attn((size_t)n * q_dim);
    const float scale = 1.0f / std::sqrt((float)hd);
    const int group = nh / nkv;
    const CpuKernels& kern = cpu_kernels();
    // One task per (token, head): scores over the causal prefix, softmax, weighted sum of V.
    pool.run((int64_t)n * nh, [&](int64_t task, int) {
        const int t = (int)(task / nh), hh = (int)(task % nh), g = hh / group;
        const int n_pos = pos0 + t + 1;
        thread_local std::vector<float> scores;
        scores.resize((size_t)n_pos);
        const float* qh = q.data() + (size_t)t * q_dim + (size_t)hh * hd;
        for (int p = 0; p < n_pos; ++p)
            scores[(size_t)p] = kern.dot_f32(qh, kv.k(layer, p) + g * hd, hd) * scale;
        softmax(scores.data(), n_pos);
        float* o = attn.data() + (size_t)t * q_dim + (size_t)hh * hd;
        std::fill(o, o + hd, 0.f);
        for (int p = 0; p < n_pos; ++p)
            kern.axpy(scores[(size_t)p], kv.v(layer, p) + g * hd, o, hd);
    });
    matmul(pool, w.wo, attn.data(), n, out);
}

void moe_softmax_topk(const ModelConfig& c, const TensorView& router, const TensorView* next_router,
                      ExpertStore& store, int layer, const float* h, int n, ThreadPool& pool,
                      float* out) {
    const int E = c.n_embd, NE = c.n_expert, K = c.n_expert_used, F = c.n_ff_exp;
    std::vector<float> probs((size_t)n * NE);
    matmul(pool, router, h, n, probs.data());
    // Per expert: the tokens routed to it and their weights.
    std::vector<std::vector<std::pair<int, float>>> routed((size_t)NE);
    std::vector<int> order((size_t)NE);
    for (int t = 0; t < n; ++t) {
        float* p = probs.data() + (size_t)t * NE;
        softmax(p, NE);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + K, order.end(),
                          [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
        float sum = 0;
        for (int j = 0; j < K; ++j) sum += p[order[(size_t)j]];
        const float norm = c.norm_topk_prob ? 1.0f / sum : 1.0f;
        for (int j = 0; j < K; ++j)
            routed[(size_t)order[(size_t)j]].push_back({t, p[order[(size_t)j]] * norm});
    }
    // Speculative: the next layer's router on this layer's input predicts its experts, so
    // their reads overlap this layer's compute. For a batch, the union over its tokens.
    std::vector<int> todo;
    for (int e = 0; e < NE; ++e)
        if (!routed[(size_t)e].empty()) todo.push_back(e);
    store.prefetch(layer, todo.data(), (int)todo.size());
    if (next_router) {
        std::vector<float> nl((size_t)n * NE);
        matmul(pool, *next_router, h, n, nl.data());
        std::vector<char> want((size_t)NE, 0);
        for (int t = 0; t < n; ++t) {
            const float* p = nl.data() + (size_t)t * NE;
            std::iota(order.begin(), order.end(), 0);
            std::partial_sort(order.begin(), order.begin() + K, order.end(),
                              [&](int a, int b) { return p[a] > p[b]; });
            for (int j = 0; j < K; ++j) want[(size_t)order[(size_t)j]] = 1;
        }
        std::vector<int> predicted;
        for (int e = 0; e < NE; ++e)
            if (want[(size_t)e]) predicted.push_back(e);
        store.prefetch(layer + 1, predicted.data(), (int)predicted.size(), /*speculative=*/true);
    }
    // Computed in arrival order, summed in expert order: the result must not depend on I/O timing.
    std::vector<std::vector<float>> result((size_t)NE);
    std::vector<float> xs, g, u;
    while (!todo.empty()) {
        // Compute whichever expert's bytes landed first.
        const int i = store.wait_any(layer, todo.data(), (int)todo.size());
        const int e = todo[(size_t)i];
        todo.erase(todo.begin() + i);
        const auto& toks = routed[(size_t)e];
        const int m = (int)toks.size();
        const ExpertWeights ew = store.acquire(layer, e);
        xs.resize((size_t)m * E);
        for (int r = 0; r < m; ++r)
            std::copy(h + (size_t)toks[(size_t)r].first * E,
                      h + (size_t)(toks[(size_t)r].first + 1) * E, xs.begin() + (ptrdiff_t)r * E);
        g.resize((size_t)m * F);
        u.resize((size_t)m * F);
        std::vector<float>& d = result[(size_t)e];
        d.resize((size_t)m * E);
        matmul_pair(pool, ew.gate, ew.up, xs.data(), m, g.data(), u.data());
        for (size_t k = 0; k < g.size(); ++k) g[k] = silu(g[k]) * u[k];
        matmul(pool, ew.down, g.data(), m, d.data());
        store.release(layer, e);
        // Keep the queue full: experts that found no free slot before can start now.
        if (!todo.empty()) store.prefetch(layer, todo.data(), (int)todo.size());
    }
    std::fill(out, out + (size_t)n * E, 0.f);
    for (int e = 0; e < NE; ++e) {
        const auto& toks = routed[(size_t)e];
        for (size_t r = 0; r < toks.size(); ++r) {
            float* o = out + (size_t)toks[r].first * E;
            const float wgt = toks[r].second;
            const float* dr = result[(size_t)e].data() + r * E;
            for (int j = 0; j < E; ++j) o[j] += wgt * dr[j];
        }
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
