#pragma once
// Block-wide reductions, per-head RMSNorm + RoPE and split decode attention as device
// functions: the per-op kernels (ops.cu) and the persistent decode kernel (decode_fused.cu)
// run the same code.
#include <cfloat>

#include "backend/cuda/gpu_impl.cuh"
#include "backend/cuda/vec.cuh"

namespace sluice::cuda {

// Sums over the block of each thread's v[0..N) (blockDim.x a multiple of 32, <= 1024), into
// v on every thread.
template <int N>
__device__ inline void block_sums(float (&v)[N]) {
    __shared__ float part[N][32];
    __shared__ float total[N];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
#pragma unroll
    for (int j = 0; j < N; ++j) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v[j] += __shfl_xor_sync(0xffffffffu, v[j], o);
        if (lane == 0) part[j][w] = v[j];
    }
    __syncthreads();
    if (w == 0)
#pragma unroll
        for (int j = 0; j < N; ++j) {
            float s = lane < (int)(blockDim.x >> 5) ? part[j][lane] : 0.f;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0) total[j] = s;
        }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = total[j];
    __syncthreads();  // part/total may be reused by the caller's next reduction
}

__device__ inline float block_sum(float v) {
    float a[1] = {v};
    block_sums(a);
    return a[0];
}

__device__ inline float block_max(float v) {
    __shared__ float part[32];
    __shared__ float total;
    v = warp_max(v);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        const float s = warp_max(lane < (int)(blockDim.x >> 5) ? part[lane] : -FLT_MAX);
        if (lane == 0) total = s;
    }
    __syncthreads();
    const float r = total;
    __syncthreads();
    return r;
}

// A head row to normalise and rotate: x RMS-normalised with norm_w (null: taken as it is), into
// dst (may be x).
struct HeadRow {
    const float* x;
    const float* norm_w;
    float* dst;
};

// Element i of a head row t (raw values) normalised (times norm_w[i] * scale when norm_w is
// set), and when i < n_rot rotated at position pos (pairs: adjacent; else halves), times mag.
__device__ __forceinline__ float rope_elem(const float* t, int i, const float* norm_w, float scale,
                                           const float* inv_freq, int n_rot, float mag, int pairs,
                                           float pos) {
    const float wi = norm_w ? norm_w[i] * scale : 1.f;
    const float out = t[i] * wi;
    if (i >= n_rot) return out;
    const int half = n_rot / 2;
    const int f = pairs ? i / 2 : i % half;              // frequency index
    const bool first = pairs ? (i % 2 == 0) : i < half;  // a of the pair (a, b)
    const int other = pairs ? (first ? i + 1 : i - 1) : (first ? i + half : i - half);
    const float wo = norm_w ? norm_w[other] * scale : 1.f;
    const float pa = first ? out : t[other] * wo;
    const float pb = first ? t[other] * wo : out;
    float sn, cs;
    sincosf(pos * inv_freq[f], &sn, &cs);
    cs *= mag, sn *= mag;
    return first ? pa * cs - pb * sn : pb * cs + pa * sn;
}

// dst[i] for i < head_dim of row a and, when b.x is set, of row b: the row normalised, then its
// first n_rot dims rotated at position pos (pairs: adjacent; else halves), times mag. Both rows
// take one pass of loads and one block reduction (a q head and its K row: one round trip and
// one reduction instead of two each). tmp: 2 * head_dim floats of shared memory. Block-wide;
// ends with a barrier.
__device__ inline void norm_rope_rows(const HeadRow& a, const HeadRow& b, int head_dim, float eps,
                                      const float* inv_freq, int n_rot, float mag, int pairs,
                                      float pos, float* tmp) {
    const int n = b.x ? 2 * head_dim : head_dim;
    float ss[2] = {0.f, 0.f};
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const bool second = i >= head_dim;
        const float v = second ? __ldcg(b.x + (i - head_dim)) : __ldcg(a.x + i);
        tmp[i] = v;
        if (second)  // constant indices keep ss in registers
            ss[1] += v * v;
        else
            ss[0] += v * v;
    }
    if (a.norm_w || b.norm_w)
        block_sums(ss);  // its barriers also publish tmp[]
    else
        __syncthreads();
    const float sa = a.norm_w ? rsqrtf(ss[0] / (float)head_dim + eps) : 1.f;
    const float sb = b.norm_w ? rsqrtf(ss[1] / (float)head_dim + eps) : 1.f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const bool second = j >= head_dim;
        const int i = second ? j - head_dim : j;
        const float out = rope_elem(tmp + (second ? head_dim : 0), i, second ? b.norm_w : a.norm_w,
                                    second ? sb : sa, inv_freq, n_rot, mag, pairs, pos);
        if (second)
            b.dst[i] = out;
        else
            a.dst[i] = out;
    }
    __syncthreads();
}

// Chunks of a decode row of n_pos positions: at least kAttnSplitMin positions each, at most
// max_splits. Since n_split ≤ ⌈n_pos / 64⌉ ≤ 32, no chunk of ⌈n_pos / n_split⌉ is empty.
__host__ __device__ inline int attn_split_count(int n_pos, int max_splits) {
    return min(max_splits, (n_pos + kAttnSplitMin - 1) / kAttnSplitMin);
}

// Whether attention_split_block takes heads of this shape.
inline bool attn_split_fits(int n_head, int vd) {
    return n_head <= kAttnMaxHeads && vd <= kAttnMaxVd && vd % 4 == 0;
}

// Most positions a chunk of any row of up to `last` positions holds, at most max_splits chunks
// per row: ceil(last / splits) while the row takes every split, else at most kAttnSplitMin.
inline int attn_max_chunk(int last, int max_splits) {
    const int splits = attn_split_count(last, max_splits);
    return max(kAttnSplitMin, (last + splits - 1) / splits);
}
// Floats of dynamic shared memory attention_split_block needs for rows of up to `last`
// positions in at most max_splits chunks: q, scores (padded to 4), per-warp sums, and with
// `rope` the new K row and norm_rope_rows' scratch for two rows.
inline size_t attn_split_smem_floats(int last, int max_splits, int hd, int vd, int warps,
                                     bool rope) {
    const int chunk = attn_max_chunk(last, max_splits);
    return (size_t)(hd + (chunk + 3) / 4 * 4 + warps * vd + (rope ? 3 * hd : 0));
}

// f(b, p) for the batch's positions p = pb + b * nw below p1 (b < Batch), b a constant after
// unrolling (so f may index register arrays with it).
template <int Batch, typename F>
__device__ __forceinline__ void each_position(int pb, int nw, int p1, F&& f) {
#pragma unroll
    for (int b = 0; b < Batch; ++b) {
        const int p = pb + b * nw;
        if (p >= p1) break;
        f(b, p);
    }
}

// r[b] = load(p) for the batch's positions p = pb + b * nw, zeros at or past p1 or where the
// lane holds no part of the row (!in_row); every load issued before any is used.
template <int Batch, typename Load>
__device__ __forceinline__ void load_batch(float4 (&r)[Batch], int pb, int nw, int p1, bool in_row,
                                           Load&& load) {
#pragma unroll
    for (int b = 0; b < Batch; ++b) {
        const int p = pb + b * nw;
        r[b] = p < p1 && in_row ? load(p) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
}

// Decode attention (one token) split over the positions (flash-decoding): block (h, s)
// takes the s-th chunk of head h's causal prefix and keeps its score max m, sum l = Σ e^(s_p - m)
// and unnormalised o = Σ e^(s_p - m) v_p; the last block of the head to finish merges the
// chunks. A position takes one warp (q·k as float4 lanes), so the sequential loops over the
// context of one block per head become ~n_pos / (8 · n_split) steps per warp.
// part: [n_head][kAttnSplits][vd + 2]; done: [n_head], zero between launches (the merging
// block resets it). n_split is chosen from the device position, so graph replays adapt;
// blocks past it return at once. (h, s): the block's head and chunk; n_pos: the token's
// position + 1; sm: dynamic shared memory. Reads what other blocks of the same launch wrote
// (q, rf.k, rf.v, part) through L2 (__ldcg): the persistent decode kernel runs it after a
// grid-wide barrier, where this SM's L1 may hold an earlier layer's rows.
//
// With rf.inv_freq set, q, k and v are the projections' raw rows of the new token (position
// n_pos - 1): each block normalises and rotates its q head itself, the chunk holding the new
// position does the same for its K row and takes the V row as it is, and the group's first
// head stores both to the cache rows (nobody else reads those rows in this launch).
__device__ inline void attention_split_block(const float* q, float* kc, float* vc, int n_pos, int h,
                                             int s, int max_splits, int n_head, int n_kv, int hd,
                                             int vd, float scale, float* part, int* done,
                                             float* out, const RopeFirst& rf, float* sm) {
    constexpr int Batch = kAttnBatch;
    const int g = h / (n_head / n_kv);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int n_split = attn_split_count(n_pos, max_splits);
    if (s >= n_split) return;  // the launch is sized for the longest context; not counted
    const int chunk = (n_pos + n_split - 1) / n_split;
    const int p0 = s * chunk, p1 = min(n_pos, p0 + chunk);
    const int stride = vd + 2;
    float* mine = part + ((size_t)h * kAttnSplits + s) * stride;
    float* qs = sm;                        // [hd]
    float* sc = sm + hd;                   // [chunk], padded to keep red 16-byte aligned
    float* red = sc + ((chunk + 3) & ~3);  // [nw][vd]
    float* knew = red + (size_t)nw * vd;   // [hd], rf only: the new position's K row
    float* rtmp = knew + hd;               // [2 * hd], rf only: norm_rope_rows' scratch
    const float* qh = q + (size_t)h * hd;
    const size_t k_stride = (size_t)n_kv * hd, v_stride = (size_t)n_kv * vd;
    const int p_new = rf.inv_freq && p1 == n_pos ? n_pos - 1 : -1;  // its row is knew / rf.v
    const float* vnew = p_new >= 0 ? rf.v + (size_t)g * vd : nullptr;
    if (rf.inv_freq) {
        const float pos = (float)(n_pos - 1);
        const float* kx = p_new >= 0 ? rf.k + (size_t)g * hd : nullptr;
        norm_rope_rows(HeadRow{qh, rf.q_norm, qs}, HeadRow{kx, rf.k_norm, knew}, hd, rf.eps,
                       rf.inv_freq, rf.n_rot, rf.mag, rf.pairs, pos, rtmp);
        if (p_new >= 0) {
            if (h % (n_head / n_kv) == 0) {
                for (int i = threadIdx.x; i < hd; i += blockDim.x)
                    kc[(size_t)p_new * k_stride + (size_t)g * hd + i] = knew[i];
                for (int i = threadIdx.x; i < vd; i += blockDim.x)
                    vc[(size_t)p_new * v_stride + (size_t)g * vd + i] = __ldcg(vnew + i);
            }
        }
    } else {
        for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = __ldcg(qh + i);
        __syncthreads();
    }
    // A warp takes positions p0 + w, + nw, ...; Batch of them at a time, their K (then V) rows
    // loaded before any is used (one position per trip waits one L2 round trip per position).
    float mx = -FLT_MAX;
    for (int pb = p0 + w; pb < p1; pb += Batch * nw) {
        float d[Batch];
#pragma unroll
        for (int b = 0; b < Batch; ++b) d[b] = 0.f;
        for (int i = lane * 4; i < hd; i += 128) {
            float4 kv[Batch];
            load_batch(kv, pb, nw, p1, true, [&](int p) {
                const float* k = p == p_new ? knew : kc + (size_t)p * k_stride + (size_t)g * hd;
                return *(const float4*)(k + i);
            });
#pragma unroll
            for (int b = 0; b < Batch; ++b)
                d[b] += qs[i] * kv[b].x + qs[i + 1] * kv[b].y + qs[i + 2] * kv[b].z +
                        qs[i + 3] * kv[b].w;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int b = 0; b < Batch; ++b) d[b] += __shfl_xor_sync(0xffffffffu, d[b], o);
        each_position<Batch>(pb, nw, p1, [&](int b, int p) {
            d[b] *= scale;
            if (lane == 0) sc[p - p0] = d[b];
            mx = fmaxf(mx, d[b]);
        });
    }
    mx = block_max(mx);  // its barriers also publish sc[]
    float l = 0.f;
    float4 acc[kAttnMaxVd / 128] = {};
    for (int pb = p0 + w; pb < p1; pb += Batch * nw) {
        float4 vv[kAttnMaxVd / 128][Batch];
#pragma unroll
        for (int j = 0; j < kAttnMaxVd / 128; ++j) {
            const int i = lane * 4 + 128 * j;
            load_batch(vv[j], pb, nw, p1, i < vd, [&](int p) {
                const float* v = p == p_new ? vnew : vc + (size_t)p * v_stride + (size_t)g * vd;
                return p == p_new ? __ldcg((const float4*)(v + i)) : *(const float4*)(v + i);
            });
        }
        each_position<Batch>(pb, nw, p1, [&](int b, int p) {
            const float e = __expf(sc[p - p0] - mx);
            l += e;
#pragma unroll
            for (int j = 0; j < kAttnMaxVd / 128; ++j) {
                acc[j].x += e * vv[j][b].x, acc[j].y += e * vv[j][b].y;
                acc[j].z += e * vv[j][b].z, acc[j].w += e * vv[j][b].w;
            }
        });
    }
#pragma unroll
    for (int j = 0; j < kAttnMaxVd / 128; ++j) {
        const int i = lane * 4 + 128 * j;
        if (i < vd) *(float4*)(red + (size_t)w * vd + i) = acc[j];
    }
    const float lsum = block_sum(lane == 0 ? l : 0.f);  // barriers publish red[]
    for (int i = threadIdx.x; i < vd; i += blockDim.x) {
        float o = 0.f;
        for (int k = 0; k < nw; ++k) o += red[(size_t)k * vd + i];
        mine[2 + i] = o;
    }
    if (threadIdx.x == 0) mine[0] = mx, mine[1] = lsum;
    // One chunk (fewer than 65 positions): this block merges its own partials after a block
    // barrier, with no fence or counter. Writing the output directly instead took the kernel
    // from 64 to 68 registers (session 22; from 46 to 54 in session 18, and 12% slower decode
    // after 1024 positions).
    if (n_split == 1)
        __syncthreads();
    else if (!last_block_to_arrive(done + h, n_split))
        return;
    // Merge: chunk k weighs e^(m_k - m) for the head's max m. Lane k of warp 0 reads chunk k's
    // (m_k, l_k), so the weights take one L2 round trip, and each output reads the chunks'
    // sums kMergeBatch at a time. Before, three loops of one load per chunk waited a round trip
    // per chunk (attention took 21 us per launch after 1024 positions, 8 at 32). A batch of 8
    // took the kernel from 64 to 71 registers.
    constexpr int kMergeBatch = 4;
    static_assert(kAttnSplits <= 32 && kAttnSplits % kMergeBatch == 0);
    __shared__ float wk[kAttnSplits];
    __shared__ float inv;
    const float* ph = part + (size_t)h * kAttnSplits * stride;
    if (w == 0) {
        const bool in = lane < n_split;
        const float mk = in ? __ldcg(ph + (size_t)lane * stride) : -FLT_MAX;
        const float lk = in ? __ldcg(ph + (size_t)lane * stride + 1) : 0.f;
        const float m = warp_max(mk);  // every lane: shuffles
        const float e = in ? __expf(mk - m) : 0.f;
        if (lane < kAttnSplits) wk[lane] = e;
        const float den = warp_sum(e * lk);
        if (lane == 0) inv = 1.0f / den;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < vd; i += blockDim.x) {
        float o = 0.f;
        for (int k0 = 0; k0 < n_split; k0 += kMergeBatch) {
            float v[kMergeBatch];
#pragma unroll
            for (int u = 0; u < kMergeBatch; ++u)
                v[u] = k0 + u < n_split ? __ldcg(ph + (size_t)(k0 + u) * stride + 2 + i) : 0.f;
#pragma unroll
            for (int u = 0; u < kMergeBatch; ++u) o += wk[k0 + u] * v[u];
        }
        out[(size_t)h * vd + i] = o * inv;
    }
}

}  // namespace sluice::cuda
