#include "backend/cpu/ops.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/qdot_ref.h"
#include "core/error.h"

namespace sluice {

namespace {

bool has_gemm(const TensorView& W) {
    return !W.scale && has_gemm_path(W.dtype);
}

// Batches of at least this many tokens take the bf16 batch products where the CPU has them
// (CpuKernels::gemm_bf16): dequantizing a weight row once for the batch and multiplying in
// bf16 beats the integer kernels from here on (sluice-kbench, docs/benchmarks.md). The tile
// unit (amx) pays from 8 tokens; VDPBF16PS (avx512bf16), with a 16-token vector per product
// and half the integer path's multiply rate, only from more.
int64_t bf16_min_tokens() {
    static const int64_t v = [] {
        const char* e = std::getenv("SLUICE_AMX_MIN_TOKENS");
        if (e && *e) return std::max<int64_t>(1, std::atoll(e));
        return cpu_kernels().isa == Isa::Amx ? (int64_t)8 : (int64_t)16;
    }();
    return v;
}

// Quantized weights only: their integer path already rounds activations to 8-bit blocks, which
// bf16 beats; plain-float weights keep exact f32 activations.
bool use_bf16(const TensorView& W, int64_t n_tok) {
    return cpu_kernels().gemm_bf16 && n_tok >= bf16_min_tokens() &&
           activation_type_for(W.dtype) != DType::F32 && W.cols() % 32 == 0 &&
           W.cols() % dtype_traits(W.dtype).block_elems == 0;
}

// Which activation rows W's product wants for a batch of n_tok: bf16 tiles, f32 rows, or
// blocks of activation_type_for(W.dtype). Products with equal keys share one conversion.
int64_t act_key(const TensorView& W, int64_t n_tok) {
    return use_bf16(W, n_tok) ? -1 : (int64_t)activation_type_for(W.dtype);
}

// One product of a batch: W against n_tok activation rows of `as` bytes (activation blocks
// of activation_type_for(W.dtype), or f32 rows for plain-float W), or bf16 tiles
// (pack_bf16) when `bf16`. y: [n_tok, W.rows()].
struct GemmJob {
    const TensorView* W;
    const uint8_t* act;
    size_t as;
    int64_t n_tok;
    float* y;
    bool bf16 = false;
};

// Rows [r0, r1) of one product (serial, inside a pool task).
void job_rows(const GemmJob& g, int64_t r0, int64_t r1) {
    const CpuKernels& k = cpu_kernels();
    const TensorView& W = *g.W;
    const size_t ws = W.row_size();
    const bool ok = g.bf16 ? k.gemm_bf16(W.dtype, W.row(r0), ws, r1 - r0, g.act, g.n_tok, W.cols(),
                                         g.y + r0, W.rows())
                           : k.gemm(W.dtype, W.row(r0), ws, r1 - r0, g.act, g.as, g.n_tok, W.cols(),
                                    g.y + r0, W.rows());
    if (!ok) fail(std::string("no gemm kernel for ") + dtype_name(W.dtype));
}

// Row chunk for a job of `rows` rows in a region of `total_rows`: as large as keeps ~2 tasks
// per thread, at most `cap`, a multiple of `unit`.
int64_t chunk_rows(int64_t rows, int64_t total_rows, int64_t cap, int64_t unit, int threads) {
    return std::max<int64_t>(unit, std::min({rows, cap, total_rows / (2 * threads)}) / unit * unit);
}

// Every job in one parallel region: tasks are (job, chunk of rows), claimed dynamically, so a
// decode step's small matrices share one synchronisation and balance across threads.
void gemm_jobs(ThreadPool& pool, const std::vector<GemmJob>& jobs) {
    // Row chunks as large as keeps ~2 tasks per thread, at most 1024 / n_tok rows: a task's
    // row streams (qgemm_impl.inc) run at full speed only after the prefetchers have caught
    // on, so short tasks are slow ones (tiny-bench decode: 8 tasks per thread 114-115 tok/s,
    // 1-4 tasks 120-130); dynamic claiming of the few left still absorbs a preempted thread.
    // bf16 jobs: whole 32-row panels and no row cap, so one gemm_bf16 call covers many panels:
    // it dequantizes the next panel while the tile unit multiplies this one (<= 32 tokens)
    // and sets the tile unit up once. One panel per task (the cap of 1024 / n_tok rows) had
    // left the pipelining idle: q30b 512-token prefill 8.0-8.2 s -> 6.4 s, tiny-bench 64
    // tokens 282-293 -> 362-364 tok/s.
    // Integer jobs: where one chunk size near that divides every job's rows, all tasks are
    // equal (q, k and v of 1024, 256 and 256 rows as 256-row tasks, not 384, 384, 256, 256
    // and 256, whose odd one out was each layer's ~13 us of one thread waiting).
    int64_t total_rows = 0, common = 0;
    for (const GemmJob& g : jobs) total_rows += g.W->rows(), common = std::gcd(common, g.W->rows());
    std::vector<int64_t> first(jobs.size() + 1, 0), chunk(jobs.size());
    for (size_t j = 0; j < jobs.size(); ++j) {
        const int64_t cap =
            jobs[j].bf16 ? jobs[j].W->rows() : 1024 / std::max<int64_t>(1, jobs[j].n_tok);
        const int64_t unit = jobs[j].bf16 ? 32 : 16;
        chunk[j] = chunk_rows(jobs[j].W->rows(), total_rows, cap, unit, pool.size());
        if (!jobs[j].bf16) {
            int64_t c = common;
            while (c > chunk[j] && c % (2 * unit) == 0) c /= 2;
            if (c <= chunk[j] && 2 * c >= chunk[j]) chunk[j] = c;
        }
        first[j + 1] = first[j] + (jobs[j].W->rows() + chunk[j] - 1) / chunk[j];
    }
    pool.run(first.back(), [&](int64_t task, int) {
        const size_t j =
            (size_t)(std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1);
        const int64_t r0 = (task - first[j]) * chunk[j];
        job_rows(jobs[j], r0, std::min(jobs[j].W->rows(), r0 + chunk[j]));
    });
}

// Bytes of the converted activation rows W's product wants for n_tok tokens (0: it reads the
// f32 rows themselves).
size_t act_bytes(const TensorView& W, int64_t n_tok) {
    if (use_bf16(W, n_tok)) return packed_bf16_bytes(n_tok, W.cols());
    const DType act = activation_type_for(W.dtype);
    return act == DType::F32 ? 0 : row_bytes(act, W.cols()) * (size_t)n_tok;
}

// x: [n_tok, n_in] as the activation rows W's gemm wants, converted into dst
// (act_bytes(W, n_tok) bytes) where needed.
GemmJob make_job(const TensorView& W, const float* x, int64_t n_tok, float* y, uint8_t* dst) {
    if (use_bf16(W, n_tok)) {
        cpu_kernels().pack_bf16(x, n_tok, W.cols(), dst);
        return {&W, dst, 0, n_tok, y, true};
    }
    const DType act = activation_type_for(W.dtype);
    if (act == DType::F32) return {&W, (const uint8_t*)x, (size_t)W.cols() * 4, n_tok, y};
    const size_t arow = row_bytes(act, W.cols());
    for (int64_t t = 0; t < n_tok; ++t)
        cpu_kernels().quantize_act(act, x + t * W.cols(), dst + (size_t)t * arow, W.cols());
    return {&W, dst, arow, n_tok, y};
}

GemmJob make_job(const TensorView& W, const float* x, int64_t n_tok, float* y,
                 std::vector<uint8_t>& buf) {
    buf.resize(act_bytes(W, n_tok));
    return make_job(W, x, n_tok, y, buf.data());
}

}  // namespace

void matmul_pair(ThreadPool& pool, const TensorView& A, const TensorView& B, const float* x,
                 int64_t n_tok, float* ya, float* yb) {
    const TensorView* W[2] = {&A, &B};
    float* y[2] = {ya, yb};
    matmul_multi(pool, W, 2, x, n_tok, y);
}

void matmul_multi(ThreadPool& pool, const TensorView* const* W, int n_w, const float* x,
                  int64_t n_tok, float* const* y) {
    bool fused = true;
    for (int i = 0; i < n_w; ++i) fused = fused && has_gemm(*W[i]) && W[i]->cols() == W[0]->cols();
    if (!fused) {
        for (int i = 0; i < n_w; ++i) matmul(pool, *W[i], x, n_tok, y[i]);
        return;
    }
    // Activations are converted once per distinct activation type.
    thread_local std::vector<std::vector<uint8_t>> bufs;
    bufs.resize((size_t)n_w);
    std::vector<GemmJob> jobs;
    for (int i = 0; i < n_w; ++i) {
        int same = -1;
        for (int j = 0; j < i && same < 0; ++j)
            if (act_key(*W[j], n_tok) == act_key(*W[i], n_tok)) same = j;
        if (same >= 0) {
            GemmJob g = jobs[(size_t)same];
            g.W = W[i], g.y = y[i];
            jobs.push_back(g);
        } else {
            jobs.push_back(make_job(*W[i], x, n_tok, y[i], bufs[(size_t)i]));
        }
    }
    gemm_jobs(pool, jobs);
}

namespace {

// Few-token expert groups (decode) in one parallel region instead of two: a task first takes
// a chunk of one expert's hidden rows (its gate and up rows, SiLU * up, and the hidden
// values' activation blocks for down), then, once every such task is claimed, chunks of the
// down rows; a down task waits for its expert's hidden chunks, which finished long before
// unless the group has one expert. Tasks are claimed in order, so every chunk a down task
// waits for is already being computed (no deadlock). Returns false where the two-region path
// applies: tile-unit (bf16) batches, or hidden rows not a whole number of activation blocks.
bool swiglu_one_region(ThreadPool& pool, const std::vector<SwigluJob>& experts) {
    const size_t n = experts.size();
    for (const SwigluJob& e : experts) {
        if (use_bf16(*e.gate, e.n_tok) || use_bf16(*e.down, e.n_tok)) return false;
        const DType act = activation_type_for(e.down->dtype);
        const int64_t blk = act == DType::F32 ? 1 : dtype_traits(act).block_elems;
        if (e.gate->rows() % std::lcm<int64_t>(16, blk) != 0) return false;
    }
    const int T = pool.size();
    // Hidden-row and down-row chunks, sized as gemm_jobs sizes its tasks (a hidden chunk
    // covers that many rows of both gate and up).
    int64_t total_f = 0, total_e = 0;
    for (const SwigluJob& e : experts) total_f += e.gate->rows(), total_e += e.down->rows();
    std::vector<int64_t> fc(n), dc(n), first_f(n + 1, 0), first_d(n + 1, 0);
    for (size_t i = 0; i < n; ++i) {
        const SwigluJob& e = experts[i];
        const DType act = activation_type_for(e.down->dtype);
        const int64_t unit =
            std::lcm<int64_t>(16, act == DType::F32 ? 1 : dtype_traits(act).block_elems);
        const int64_t cap = 1024 / std::max<int64_t>(1, e.n_tok);
        fc[i] = chunk_rows(e.gate->rows(), 2 * total_f, cap, unit, T);
        dc[i] = chunk_rows(e.down->rows(), total_e, cap, 16, T);
        first_f[i + 1] = first_f[i] + (e.gate->rows() + fc[i] - 1) / fc[i];
        first_d[i + 1] = first_d[i] + (e.down->rows() + dc[i] - 1) / dc[i];
    }
    // Converted inputs (shared by experts reading the same rows), f32 gate/up/hidden rows and
    // the hidden rows' activation blocks; kept across calls.
    auto up64 = [](size_t b) { return (b + 63) / 64 * 64; };
    std::vector<size_t> ho(n), go(n);
    std::vector<int> same(n, -1);  // an earlier expert with the same converted input
    size_t xb = 0, hb = 0, gb = 0;
    for (size_t i = 0; i < n; ++i) {
        const SwigluJob& e = experts[i];
        for (size_t j = 0; j < i && same[i] < 0; ++j)
            if (experts[j].x == e.x && experts[j].n_tok == e.n_tok &&
                act_key(*experts[j].gate, e.n_tok) == act_key(*e.gate, e.n_tok))
                same[i] = (int)j;
        if (same[i] < 0) xb += up64(act_bytes(*e.gate, e.n_tok));
        ho[i] = hb, go[i] = gb;
        hb += up64(act_bytes(*e.down, e.n_tok));
        gb += (size_t)(e.n_tok * e.gate->rows());
    }
    // References: the pool's tasks must see this thread's buffers, not their own.
    thread_local std::vector<uint8_t> xq_tls, hq_tls;
    thread_local std::vector<float> g_tls, u_tls;
    std::vector<uint8_t>& xq = xq_tls;
    std::vector<uint8_t>& hq = hq_tls;
    std::vector<float>& g = g_tls;
    std::vector<float>& u = u_tls;
    xq.resize(xb), hq.resize(hb), g.resize(gb), u.resize(gb);
    std::vector<GemmJob> gate(n), up(n), down(n);
    for (size_t i = 0, x_off = 0; i < n; ++i) {
        const SwigluJob& e = experts[i];
        if (same[i] >= 0) {
            gate[i] = gate[(size_t)same[i]];
            gate[i].W = e.gate, gate[i].y = g.data() + go[i];
        } else {
            gate[i] = make_job(*e.gate, e.x, e.n_tok, g.data() + go[i], xq.data() + x_off);
            x_off += up64(act_bytes(*e.gate, e.n_tok));
        }
        up[i] = gate[i];
        up[i].W = e.up, up[i].y = u.data() + go[i];
        const DType act = activation_type_for(e.down->dtype);
        const int64_t F = e.gate->rows();
        down[i] =
            act == DType::F32
                ? GemmJob{e.down, (const uint8_t*)(g.data() + go[i]), (size_t)F * 4, e.n_tok, e.out}
                : GemmJob{e.down, hq.data() + ho[i], row_bytes(act, F), e.n_tok, e.out};
    }
    std::unique_ptr<std::atomic<int64_t>[]> done(new std::atomic<int64_t>[n]);
    for (size_t i = 0; i < n; ++i) done[i].store(0, std::memory_order_relaxed);
    const CpuKernels& k = cpu_kernels();
    const int64_t n_f = first_f[n];
    pool.run(n_f + first_d[n], [&](int64_t task, int) {
        if (task < n_f) {
            const size_t i = (size_t)(std::upper_bound(first_f.begin(), first_f.end(), task) -
                                      first_f.begin() - 1);
            const SwigluJob& e = experts[i];
            const int64_t F = e.gate->rows(), r0 = (task - first_f[i]) * fc[i],
                          r1 = std::min(F, r0 + fc[i]);
            job_rows(gate[i], r0, r1);
            job_rows(up[i], r0, r1);
            float* gi = g.data() + go[i];
            const float* ui = u.data() + go[i];
            const DType act = activation_type_for(e.down->dtype);
            for (int64_t t = 0; t < e.n_tok; ++t) {
                float* gt = gi + t * F;
                for (int64_t r = r0; r < r1; ++r) gt[r] = silu(gt[r]) * ui[t * F + r];
                if (act != DType::F32)
                    k.quantize_act(act, gt + r0,
                                   hq.data() + ho[i] + (size_t)t * down[i].as + row_bytes(act, r0),
                                   r1 - r0);
            }
            done[i].fetch_add(1, std::memory_order_release);
            return;
        }
        const int64_t d = task - n_f;
        const size_t i =
            (size_t)(std::upper_bound(first_d.begin(), first_d.end(), d) - first_d.begin() - 1);
        const int64_t want = first_f[i + 1] - first_f[i];
        ThreadPool::wait_until([&] { return done[i].load(std::memory_order_acquire) >= want; });
        const int64_t r0 = (d - first_d[i]) * dc[i];
        job_rows(down[i], r0, std::min(experts[i].down->rows(), r0 + dc[i]));
    });
    return true;
}

}  // namespace

void ffn_swiglu_experts(ThreadPool& pool, const std::vector<SwigluJob>& experts) {
    bool fused = true;
    for (const SwigluJob& e : experts)
        fused = fused && has_gemm(*e.gate) && has_gemm(*e.up) && has_gemm(*e.down) &&
                e.gate->dtype == e.up->dtype;
    if (!fused) {
        for (const SwigluJob& e : experts) {
            const int64_t F = e.gate->rows();
            std::vector<float> g((size_t)(e.n_tok * F)), u(g.size());
            matmul_pair(pool, *e.gate, *e.up, e.x, e.n_tok, g.data(), u.data());
            for (size_t k = 0; k < g.size(); ++k) g[k] = silu(g[k]) * u[k];
            matmul(pool, *e.down, g.data(), e.n_tok, e.out);
        }
        return;
    }
    if (swiglu_one_region(pool, experts)) return;
    // One buffer each for every expert's converted inputs, gate and up rows and converted
    // hidden rows, kept across calls: sized by this call's rows, not by each expert's largest.
    const size_t n = experts.size();
    auto up64 = [](size_t b) { return (b + 63) / 64 * 64; };
    std::vector<size_t> xo(n), ho(n), go(n);
    size_t xb = 0, hb = 0, gb = 0;
    for (size_t i = 0; i < n; ++i) {
        const SwigluJob& e = experts[i];
        xo[i] = xb, ho[i] = hb, go[i] = gb;
        xb += up64(act_bytes(*e.gate, e.n_tok));
        hb += up64(act_bytes(*e.down, e.n_tok));
        gb += (size_t)(e.n_tok * e.gate->rows());
    }
    thread_local std::vector<uint8_t> xq, hq;
    thread_local std::vector<float> g, u;
    xq.resize(xb), hq.resize(hb), g.resize(gb), u.resize(gb);
    std::vector<GemmJob> jobs;
    for (size_t i = 0; i < n; ++i) {
        const SwigluJob& e = experts[i];
        jobs.push_back(make_job(*e.gate, e.x, e.n_tok, g.data() + go[i], xq.data() + xo[i]));
        GemmJob up = jobs.back();
        up.W = e.up, up.y = u.data() + go[i];
        jobs.push_back(up);
    }
    gemm_jobs(pool, jobs);
    jobs.clear();
    for (size_t k = 0; k < gb; ++k) g[k] = silu(g[k]) * u[k];
    for (size_t i = 0; i < n; ++i) {
        const SwigluJob& e = experts[i];
        jobs.push_back(make_job(*e.down, g.data() + go[i], e.n_tok, e.out, hq.data() + ho[i]));
    }
    gemm_jobs(pool, jobs);
}

void load_row(const TensorView& W, int64_t r, float* y) {
    const int64_t n = W.cols();
    cpu_kernels().dequant_row(W.dtype, W.row(r), y, n);
    if (!W.scale) return;
    const int64_t B = TensorView::kScaleBlock, n_sc = (n + B - 1) / B;
    const float* s = W.scale + (r / B) * n_sc;
    for (int64_t c = 0; c < n; ++c) y[c] *= s[c / B];
}

namespace {

// Block-scaled FP8: rows are widened to f32 (scales applied) one tile at a time.
void matmul_scaled(ThreadPool& pool, const TensorView& W, const float* x, int64_t n_tok, float* y) {
    const CpuKernels& k = cpu_kernels();
    const int64_t n_out = W.rows(), n_in = W.cols();
    pool.parallel_for((n_out + kRowTile - 1) / kRowTile, 1, [&](int64_t tb, int64_t te, int) {
        thread_local std::vector<float> row;
        row.resize((size_t)n_in);
        for (int64_t r = tb * kRowTile; r < std::min(n_out, te * kRowTile); ++r) {
            load_row(W, r, row.data());
            for (int64_t t = 0; t < n_tok; ++t)
                y[t * n_out + r] = k.dot_f32(row.data(), x + t * n_in, n_in);
        }
    });
}

}  // namespace

void matmul(ThreadPool& pool, const TensorView& W, const float* x, int64_t n_tok, float* y) {
    if (W.scale) return matmul_scaled(pool, W, x, n_tok, y);
    const CpuKernels& k = cpu_kernels();
    const int64_t n_out = W.rows(), n_in = W.cols();
    if (has_gemm(W)) {
        thread_local std::vector<uint8_t> buf;
        gemm_jobs(pool, {make_job(W, x, n_tok, y, buf)});
        return;
    }
    // Other dtypes: tiles of whole row-tiles so each task dequantizes its rows once.
    const int64_t grain =
        std::max<int64_t>(kRowTile, (4096 / std::max<int64_t>(1, n_tok)) / kRowTile * kRowTile);
    pool.parallel_for((n_out + kRowTile - 1) / kRowTile, std::max<int64_t>(1, grain / kRowTile),
                      [&](int64_t tb, int64_t te, int) {
                          thread_local std::vector<float> scratch;
                          if ((int64_t)scratch.size() < kRowTile * n_in)
                              scratch.resize((size_t)(kRowTile * n_in));
                          const int64_t r0 = tb * kRowTile, r1 = std::min(n_out, te * kRowTile);
                          // y rows for [r0, r1) of every token: write through a strided view.
                          k.matmul_rows(W, r0, r1, x, n_tok, y + r0, n_out, scratch.data());
                      });
}

void get_row(const TensorView& W, int64_t r, float* y) {
    check(r >= 0 && r < W.rows(), "get_row: row " + std::to_string(r) + " out of range");
    load_row(W, r, y);
}

void rms_norm(const float* x, const TensorView& w, float eps, int64_t n_rows, int64_t n, float* y) {
    thread_local std::vector<float> wf;
    wf.resize((size_t)n);
    cpu_kernels().dequant_row(w.dtype, w.data, wf.data(), n);
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        // Eight independent partial sums: one serial chain of double adds was the cost of
        // every norm (latency-bound), and prompt batches run hundreds of them per layer.
        double part[8] = {};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; ++j) part[j] += (double)xr[i + j] * xr[i + j];
        for (; i < n; ++i) part[i % 8] += (double)xr[i] * xr[i];
        const double ss = ((part[0] + part[4]) + (part[1] + part[5])) +
                          ((part[2] + part[6]) + (part[3] + part[7]));
        const float scale = 1.0f / std::sqrt((float)(ss / (double)n) + eps);
        for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * wf[(size_t)i];
    }
}

namespace {

// Row r as f32: in place for plain F32 rows, else widened into buf.
const float* row_f32(const TensorView& W, int64_t r, std::vector<float>& buf) {
    if (W.dtype == DType::F32 && !W.scale) return (const float*)W.row(r);
    buf.resize((size_t)W.cols());
    load_row(W, r, buf.data());
    return buf.data();
}

}  // namespace

void rows_dot(const TensorView& W, int64_t r0, int64_t n_rows, const float* x, float* y) {
    const CpuKernels& k = cpu_kernels();
    thread_local std::vector<float> buf;
    for (int64_t i = 0; i < n_rows; ++i) y[i] = k.dot_f32(row_f32(W, r0 + i, buf), x, W.cols());
}

void rows_axpy(const TensorView& W, int64_t r0, int64_t n_rows, const float* x, float* y) {
    const CpuKernels& k = cpu_kernels();
    thread_local std::vector<float> buf;
    std::fill(y, y + W.cols(), 0.f);
    for (int64_t i = 0; i < n_rows; ++i) k.axpy(x[i], row_f32(W, r0 + i, buf), y, W.cols());
}

void rope(const RopeTable& r, float* x, int64_t n_head, int64_t stride, int64_t pos) {
    const int64_t half = (int64_t)r.inv_freq.size();
    for (int64_t i = 0; i < half; ++i) {
        // f32 angle as transformers computes it: inv_freq * pos.
        const float ang = (float)pos * r.inv_freq[(size_t)i];
        const float c = std::cos(ang) * r.mag, s = std::sin(ang) * r.mag;
        const int64_t i0 = r.pairs ? 2 * i : i, i1 = r.pairs ? 2 * i + 1 : i + half;
        for (int64_t h = 0; h < n_head; ++h) {
            float* v = x + h * stride;
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = b * c + a * s;
        }
    }
}

void softmax(float* x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    const double sum = cpu_kernels().exp_shift(x, n, mx);
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void attention_block(const float* q, int64_t ldq, int n_q, int64_t hd, const float* k, int64_t ldk,
                     const float* v, int64_t ldv, int64_t vd, int64_t pos0, int64_t n_tok,
                     float scale, float* o, int64_t ldo) {
    const CpuKernels& kern = cpu_kernels();
    const int64_t n_all = pos0 + n_tok, P = (n_all + 15) / 16 * 16;
    // K^T: [hd][P], so scores run along positions; one transpose serves every query here.
    thread_local std::vector<float> kt, s;
    kt.resize((size_t)(hd * P));
    s.resize((size_t)(4 * P));
    constexpr int64_t B = 16;
    for (int64_t p0 = 0; p0 < P; p0 += B)
        for (int64_t d = 0; d < hd; ++d)
            for (int64_t p = p0; p < p0 + B; ++p)
                kt[(size_t)(d * P + p)] = p < n_all ? k[p * ldk + d] : 0.f;
    for (int64_t i = 0; i < n_tok; ++i) {
        const int64_t n_pos = pos0 + i + 1;
        for (int h = 0; h < n_q; h += 4) {  // up to 4 heads per pass over K and V
            const int nh = std::min(4, n_q - h);
            kern.scores_kt(q + i * ldq + h * hd, nh, kt.data(), P, n_pos, hd, scale, s.data(), P);
            for (int j = 0; j < nh; ++j) softmax(s.data() + j * P, n_pos);
            kern.weighted_rows(s.data(), nh, P, v, ldv, n_pos, vd, o + i * ldo + h * vd);
        }
    }
}

double read_rate(ThreadPool& pool, const uint8_t* p, size_t n) {
    constexpr size_t kChunk = 1 << 20;
    const uint64_t* a = (const uint64_t*)(((uintptr_t)p + 63) & ~(uintptr_t)63);
    const size_t words = (n - std::min(n, (size_t)((const uint8_t*)a - p))) / 8;
    const int64_t n_chunks = (int64_t)((words * 8 + kChunk - 1) / kChunk);
    if (n_chunks == 0) return 0;
    std::vector<uint64_t> sink((size_t)pool.size() * 8);  // one cache line per thread
    const auto t0 = std::chrono::steady_clock::now();
    pool.run(n_chunks, [&](int64_t c, int th) {
        const size_t w0 = (size_t)c * (kChunk / 8), w1 = std::min(words, w0 + kChunk / 8);
        sink[(size_t)th * 8] ^= cpu_kernels().xor_words(a + w0, (int64_t)(w1 - w0));
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return (double)(words * 8) / s;
}

double read_bandwidth(ThreadPool& pool, const uint8_t* p, size_t n, int reps) {
    if (read_rate(pool, p, n) == 0) return 0;
    std::vector<double> r;
    for (int i = 0; i < std::max(1, reps); ++i) r.push_back(read_rate(pool, p, n));
    // Descending: element size/2 is the sweep of median time, the slower of two middles.
    std::sort(r.begin(), r.end(), std::greater<>());
    return r[r.size() / 2];
}

}  // namespace sluice
