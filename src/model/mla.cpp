// Multi-head latent attention (DeepSeek-V2/V3, Kimi K2), as transformers' DeepseekV3Attention:
//   q      = q_b(norm(q_a(h)))  or  q_proj(h)           per head [qk_nope | qk_rope]
//   latent = norm(kv_a(h)[:kv_lora_rank]),  k_pe = rope(kv_a(h)[kv_lora_rank:])  (one, shared)
//   k_h    = [W_k,h latent | k_pe],  v_h = W_v,h latent      (W_k,h, W_v,h: rows of kv_b)
// The cache keeps only [latent | k_pe] per position. Absorbed form: q_nope . (W_k,h c) equals
// (W_k,h^T q_nope) . c, and sum_p s_p W_v,h c_p equals W_v,h sum_p s_p c_p, so attention runs
// in the latent space and per-head K/V are never built.
#include <algorithm>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "model/blocks.h"

namespace sluice {
namespace {

// Where W_k,h and W_v,h rows live, for either file layout.
//   joint (kv_b):  rows h*(nope+v) + i, i < nope are W_k,h; the next v rows are W_v,h.
//   split (k_b, v_b): k_b rows h*kv_lora + r hold column r of W_k,h (it is stored transposed);
//                     v_b rows h*v + j are W_v,h.
struct MlaWeights {
    const LayerWeights& w;
    int nope, vd, kr;
    bool split() const { return !w.wk_b.empty(); }
    // q_lat[kv_lora] = W_k,h^T q_nope
    void absorb_q(int h, const float* q_nope, float* q_lat) const {
        if (split())
            rows_dot(w.wk_b, (int64_t)h * kr, kr, q_nope, q_lat);
        else
            rows_axpy(w.wkv_b, (int64_t)h * (nope + vd), nope, q_nope, q_lat);
    }
    // out[v] = W_v,h lat
    void value_out(int h, const float* lat, float* out) const {
        if (split())
            rows_dot(w.wv_b, (int64_t)h * vd, vd, lat, out);
        else
            rows_dot(w.wkv_b, (int64_t)h * (nope + vd) + nope, vd, lat, out);
    }
};

}  // namespace

void attention_mla(const ModelConfig& c, const RopeTable& rope_tab, const LayerWeights& w,
                   int layer, const float* h, int n, int pos0, KvCache& kv, bool expanded,
                   ThreadPool& pool, float* out) {
    const int H = c.n_head, hd = c.head_dim, nope = c.qk_nope, rot = c.n_rot;
    const int vd = c.v_head_dim, kr = c.kv_lora_rank, row = kr + rot;
    const MlaWeights mw{w, nope, vd, kr};
    // q: [n, H * hd]
    std::vector<float> q((size_t)n * H * hd);
    if (!w.wq_a.empty()) {
        std::vector<float> qa((size_t)n * c.q_lora_rank);
        matmul(pool, w.wq_a, h, n, qa.data());
        rms_norm(qa.data(), w.q_a_norm, c.rms_eps, n, c.q_lora_rank, qa.data());
        matmul(pool, w.wq_b, qa.data(), n, q.data());
    } else {
        matmul(pool, w.wq, h, n, q.data());
    }
    // Cache rows [latent | k_pe] for the new positions.
    std::vector<float> kva((size_t)n * row);
    matmul(pool, w.wkv_a, h, n, kva.data());
    for (int t = 0; t < n; ++t) {
        float* kt = kva.data() + (size_t)t * row;
        rms_norm(kt, w.kv_a_norm, c.rms_eps, 1, kr, kt);
        rope(rope_tab, kt + kr, 1, rot, pos0 + t);
        std::copy(kt, kt + row, kv.k(layer, 0, pos0 + t));
        rope(rope_tab, q.data() + (size_t)t * H * hd + nope, H, hd, pos0 + t);
    }
    const int n_tot = pos0 + n;
    const float scale = c.attn_scale();
    const CpuKernels& kern = cpu_kernels();
    std::vector<float> attn((size_t)n * H * vd);  // [n, H * vd]

    if (!expanded) {
        pool.run((int64_t)n * H, [&](int64_t task, int) {
            const int t = (int)(task / H), hh = (int)(task % H);
            const int n_pos = pos0 + t + 1;
            thread_local std::vector<float> q_lat, scores, o_lat;
            q_lat.resize((size_t)kr);
            o_lat.resize((size_t)kr);
            scores.resize((size_t)n_pos);
            const float* qh = q.data() + ((size_t)t * H + hh) * hd;
            mw.absorb_q(hh, qh, q_lat.data());
            for (int p = 0; p < n_pos; ++p) {
                const float* cp = kv.k(layer, 0, p);
                scores[(size_t)p] = (kern.dot_f32(q_lat.data(), cp, kr) +
                                     kern.dot_f32(qh + nope, cp + kr, rot)) *
                                    scale;
            }
            softmax(scores.data(), n_pos);
            kern.weighted_rows(scores.data(), 1, n_pos, kv.k(layer, 0, 0), kv.k_stride(), n_pos, kr,
                               o_lat.data());
            mw.value_out(hh, o_lat.data(), attn.data() + ((size_t)t * H + hh) * vd);
        });
        matmul(pool, w.wo, attn.data(), n, out);
        return;
    }

    // Expanded: per-head K_nope and V for every cached position.
    std::vector<float> lat((size_t)n_tot * kr);  // [n_tot, kr]
    for (int p = 0; p < n_tot; ++p)
        std::copy(kv.k(layer, 0, p), kv.k(layer, 0, p) + kr, lat.begin() + (ptrdiff_t)p * kr);
    std::vector<float> kn, vv;  // views below
    size_t k_stride, v_stride;  // floats from one position to the next
    size_t k_head, v_head;      // floats from one head to the next
    size_t v_off = 0;           // offset of V within vv
    if (!mw.split()) {
        // One matmul gives [n_tot, H * (nope + vd)]: K_nope and V interleaved per head.
        kn.resize((size_t)n_tot * H * (nope + vd));
        matmul(pool, w.wkv_b, lat.data(), n_tot, kn.data());
        k_stride = v_stride = (size_t)H * (nope + vd);
        k_head = v_head = (size_t)(nope + vd);
        v_off = (size_t)nope;
    } else {
        // k_b holds W_k,h transposed; transpose it once to f32 [H * nope rows, kr cols].
        std::vector<float> wk((size_t)H * nope * kr), tmp((size_t)kr * nope);
        for (int hh = 0; hh < H; ++hh) {
            for (int r = 0; r < kr; ++r) get_row(w.wk_b, (int64_t)hh * kr + r, tmp.data() + (size_t)r * nope);
            for (int r = 0; r < kr; ++r)
                for (int i = 0; i < nope; ++i)
                    wk[((size_t)hh * nope + i) * kr + r] = tmp[(size_t)r * nope + i];
        }
        TensorView wkv{DType::F32, wk.data(), {kr, (int64_t)H * nope, 1, 1}};
        kn.resize((size_t)n_tot * H * nope);
        matmul(pool, wkv, lat.data(), n_tot, kn.data());
        TensorView wv = w.wv_b;
        wv.ne = {kr, (int64_t)H * vd, 1, 1};
        vv.resize((size_t)n_tot * H * vd);
        matmul(pool, wv, lat.data(), n_tot, vv.data());
        k_stride = (size_t)H * nope;
        k_head = (size_t)nope;
        v_stride = (size_t)H * vd;
        v_head = (size_t)vd;
    }
    const float* kbase = kn.data();
    const float* vbase = mw.split() ? vv.data() : kn.data() + v_off;
    pool.run((int64_t)n * H, [&](int64_t task, int) {
        const int t = (int)(task / H), hh = (int)(task % H);
        const int n_pos = pos0 + t + 1;
        thread_local std::vector<float> scores;
        scores.resize((size_t)n_pos);
        const float* qh = q.data() + ((size_t)t * H + hh) * hd;
        for (int p = 0; p < n_pos; ++p)
            scores[(size_t)p] =
                (kern.dot_f32(qh, kbase + (size_t)p * k_stride + (size_t)hh * k_head, nope) +
                 kern.dot_f32(qh + nope, kv.k(layer, 0, p) + kr, rot)) *
                scale;
        softmax(scores.data(), n_pos);
        kern.weighted_rows(scores.data(), 1, n_pos, vbase + (size_t)hh * v_head, v_stride, n_pos,
                           vd, attn.data() + ((size_t)t * H + hh) * vd);
    });
    matmul(pool, w.wo, attn.data(), n, out);
}

}  // namespace sluice
