// Gated DeltaNet linear attention (Qwen3.5 / Qwen3-Next "linear_attention" layers), as
// transformers' Qwen3_5MoeGatedDeltaNet:
//   [q | k | v] = silu(causal depthwise conv(in_proj_qkv h))    (conv over the last K tokens)
//   q, k       <- l2-normalized per head; q *= 1/sqrt(k_dim)
//   beta = sigmoid(b h),  g = -exp(A_log) * softplus(a h + dt_bias)        (per v head)
//   S_t = exp(g_t) S_{t-1};  S_t += k_t (beta_t (v_t - S_t^T k_t))^T;  o_t = S_t^T q_t
//   out = out_proj(rmsnorm(o) * w * silu(z h))                     (per v head, S: [k_dim, v_dim])
// Decode steps use that recurrence directly. Prefill uses the chunked (WY / UT-transform) form
// of transformers' torch_chunk_gated_delta_rule: within a chunk of up to 64 tokens, the
// sequential updates become a unit lower-triangular solve and a few matrix products, and the
// state is touched once per chunk instead of once per token.
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "model/blocks.h"

namespace sluice {
namespace {

constexpr int kChunk = 64;

float softplus(float x) {  // torch's default threshold
    return x > 20.f ? x : std::log1p(std::exp(x));
}

float sigmoid(float x) {
    return 1.0f / (1.0f + std::exp(-x));
}

void l2_normalize(float* x, int n, float scale) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += (double)x[i] * x[i];
    const float inv = scale / std::sqrt((float)ss + 1e-6f);
    for (int i = 0; i < n; ++i) x[i] *= inv;
}

// One v head over tokens [0, n). q, k: token t at q + t * stride (k_dim floats);
// v, o: token t at v + t * stride_v (v_dim floats); g, beta: token t at g[t * stride_g].
struct HeadSeq {
    const float *q, *k, *v, *g, *beta;
    int64_t stride, stride_v, stride_g;
    float* o;
    int64_t stride_o;
};

void recurrent_head(const HeadSeq& s, int n, int KD, int VD, float* S) {
    const CpuKernels& kern = cpu_kernels();
    std::vector<float> mem((size_t)VD);
    for (int t = 0; t < n; ++t) {
        const float *q = s.q + t * s.stride, *k = s.k + t * s.stride, *v = s.v + t * s.stride_v;
        const float decay = std::exp(s.g[t * s.stride_g]), beta = s.beta[t * s.stride_g];
        for (int64_t i = 0; i < (int64_t)KD * VD; ++i) S[i] *= decay;
        std::fill(mem.begin(), mem.end(), 0.f);
        for (int i = 0; i < KD; ++i) kern.axpy(k[i], S + (size_t)i * VD, mem.data(), VD);
        for (int j = 0; j < VD; ++j) mem[(size_t)j] = (v[j] - mem[(size_t)j]) * beta;
        for (int i = 0; i < KD; ++i) kern.axpy(k[i], mem.data(), S + (size_t)i * VD, VD);
        float* o = s.o + t * s.stride_o;
        std::fill(o, o + VD, 0.f);
        for (int i = 0; i < KD; ++i) kern.axpy(q[i], S + (size_t)i * VD, o, VD);
    }
}

void chunked_head(const HeadSeq& s, int n, int KD, int VD, float* S) {
    const CpuKernels& kern = cpu_kernels();
    std::vector<float> cum(kChunk), T((size_t)kChunk * kChunk), U((size_t)kChunk * VD),
        W((size_t)kChunk * KD), kd((size_t)kChunk * KD);
    for (int c0 = 0; c0 < n; c0 += kChunk) {
        const int L = std::min(kChunk, n - c0);
        auto q = [&](int i) { return s.q + (c0 + i) * s.stride; };
        auto k = [&](int i) { return s.k + (c0 + i) * s.stride; };
        auto v = [&](int i) { return s.v + (c0 + i) * s.stride_v; };
        auto beta = [&](int i) { return s.beta[(c0 + i) * s.stride_g]; };
        for (int i = 0; i < L; ++i) cum[(size_t)i] = (i ? cum[(size_t)i - 1] : 0.f) + s.g[(c0 + i) * s.stride_g];
        // T[i][j] = beta_i (k_i . k_j) exp(cum_i - cum_j), j < i: the strictly lower part of
        // the UT system (its unit diagonal is implicit).
        for (int i = 0; i < L; ++i)
            for (int j = 0; j < i; ++j)
                T[(size_t)i * kChunk + j] =
                    beta(i) * kern.dot_f32(k(i), k(j), KD) * std::exp(cum[(size_t)i] - cum[(size_t)j]);
        // Forward substitution: U = (I + T)^-1 (beta v), W = (I + T)^-1 (beta k exp(cum)).
        for (int i = 0; i < L; ++i) {
            float* Ui = U.data() + (size_t)i * VD;
            float* Wi = W.data() + (size_t)i * KD;
            const float e = std::exp(cum[(size_t)i]);
            for (int j = 0; j < VD; ++j) Ui[j] = beta(i) * v(i)[j];
            for (int j = 0; j < KD; ++j) Wi[j] = beta(i) * e * k(i)[j];
            for (int j = 0; j < i; ++j) {
                const float t = -T[(size_t)i * kChunk + j];
                kern.axpy(t, U.data() + (size_t)j * VD, Ui, VD);
                kern.axpy(t, W.data() + (size_t)j * KD, Wi, KD);
            }
        }
        // New values: U - W S (what the state at the chunk start does not already predict).
        for (int i = 0; i < L; ++i) {
            float* Ui = U.data() + (size_t)i * VD;
            const float* Wi = W.data() + (size_t)i * KD;
            for (int r = 0; r < KD; ++r) kern.axpy(-Wi[r], S + (size_t)r * VD, Ui, VD);
        }
        // o_i = exp(cum_i) q_i S + sum_{j <= i} (q_i . k_j) exp(cum_i - cum_j) U_j
        for (int i = 0; i < L; ++i) {
            float* o = s.o + (c0 + i) * s.stride_o;
            std::fill(o, o + VD, 0.f);
            const float e = std::exp(cum[(size_t)i]);
            for (int r = 0; r < KD; ++r) kern.axpy(e * q(i)[r], S + (size_t)r * VD, o, VD);
            for (int j = 0; j <= i; ++j) {
                const float a =
                    kern.dot_f32(q(i), k(j), KD) * std::exp(cum[(size_t)i] - cum[(size_t)j]);
                kern.axpy(a, U.data() + (size_t)j * VD, o, VD);
            }
        }
        // S = exp(cum_last) S + sum_j (k_j exp(cum_last - cum_j)) U_j^T
        const float last = cum[(size_t)L - 1], chunk_decay = std::exp(last);
        for (int64_t i = 0; i < (int64_t)KD * VD; ++i) S[i] *= chunk_decay;
        for (int j = 0; j < L; ++j) {
            const float e = std::exp(last - cum[(size_t)j]);
            for (int r = 0; r < KD; ++r)
                kern.axpy(e * k(j)[r], U.data() + (size_t)j * VD, S + (size_t)r * VD, VD);
        }
    }
}

}  // namespace

void attention_deltanet(const ModelConfig& c, const LayerWeights& w, int layer, const float* h,
                        int n, KvCache& kv, DeltaNetMode mode, ThreadPool& pool, float* out) {
    const DeltaNetConfig& d = c.gdn;
    const int C = d.conv_channels(), NK = d.n_k_heads, NV = d.n_v_heads, KD = d.k_dim,
              VD = d.v_dim, K = d.conv_kernel;
    const int VDIM = NV * VD;
    std::vector<float> mixed((size_t)n * C), z((size_t)n * VDIM), b((size_t)n * NV),
        a((size_t)n * NV);
    matmul(pool, w.ssm_qkv, h, n, mixed.data());
    matmul(pool, w.ssm_z, h, n, z.data());
    matmul(pool, w.ssm_beta, h, n, b.data());
    matmul(pool, w.ssm_alpha, h, n, a.data());

    // Causal depthwise conv over [history (K-1 rows) | this batch], then silu.
    std::vector<float> cw((size_t)C * K), xin((size_t)(K - 1 + n) * C), qkv((size_t)n * C);
    for (int ch = 0; ch < C; ++ch) get_row(w.ssm_conv, ch, cw.data() + (size_t)ch * K);
    float* hist = kv.conv_state(layer);
    std::copy(hist, hist + (size_t)(K - 1) * C, xin.begin());
    std::copy(mixed.begin(), mixed.end(), xin.begin() + (ptrdiff_t)(K - 1) * C);
    pool.run(n, [&](int64_t t, int) {
        float* y = qkv.data() + t * C;
        for (int ch = 0; ch < C; ++ch) {
            float acc = 0.f;
            for (int j = 0; j < K; ++j) acc += cw[(size_t)ch * K + j] * xin[(size_t)(t + j) * C + ch];
            y[ch] = silu(acc);
        }
    });
    std::copy(xin.end() - (ptrdiff_t)(K - 1) * C, xin.end(), hist);

    // Gates, and q/k normalized in place (q also scaled by 1/sqrt(k_dim)).
    std::vector<float> A((size_t)NV), dt((size_t)NV), g((size_t)n * NV), beta((size_t)n * NV);
    get_row(w.ssm_a, 0, A.data());
    get_row(w.ssm_dt_bias, 0, dt.data());
    const float qscale = 1.0f / std::sqrt((float)KD);
    for (int t = 0; t < n; ++t) {
        for (int hh = 0; hh < NV; ++hh) {
            const size_t i = (size_t)t * NV + hh;
            beta[i] = sigmoid(b[i]);
            g[i] = A[(size_t)hh] * softplus(a[i] + dt[(size_t)hh]);
        }
        float* row = qkv.data() + (size_t)t * C;
        for (int kh = 0; kh < NK; ++kh) {
            l2_normalize(row + kh * KD, KD, qscale);
            l2_normalize(row + NK * KD + kh * KD, KD, 1.0f);
        }
    }

    // Per v head: recurrence (one token, or forced) or chunked form.
    std::vector<float> core((size_t)n * VDIM);
    const bool recurrent = mode == DeltaNetMode::Recurrent || (mode == DeltaNetMode::Auto && n == 1);
    float* state = kv.ssm_state(layer);
    pool.run(NV, [&](int64_t hh, int) {
        const int kh = d.k_head_of((int)hh);
        HeadSeq s;
        s.q = qkv.data() + (size_t)kh * KD;
        s.k = qkv.data() + (size_t)NK * KD + (size_t)kh * KD;
        s.v = qkv.data() + (size_t)2 * NK * KD + (size_t)hh * VD;
        s.stride = s.stride_v = C;
        s.g = g.data() + hh;
        s.beta = beta.data() + hh;
        s.stride_g = NV;
        s.o = core.data() + (size_t)hh * VD;
        s.stride_o = VDIM;
        float* S = state + (size_t)hh * KD * VD;
        if (recurrent)
            recurrent_head(s, n, KD, VD, S);
        else
            chunked_head(s, n, KD, VD, S);
    });

    // Gated RMSNorm per head: rmsnorm(o) * w * silu(z).
    rms_norm(core.data(), w.ssm_norm, c.rms_eps, (int64_t)n * NV, VD, core.data());
    for (size_t i = 0; i < core.size(); ++i) core[i] *= silu(z[i]);
    matmul(pool, w.ssm_out, core.data(), n, out);
}

}  // namespace sluice
