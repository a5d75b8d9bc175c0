#pragma once
// CUDA backend: device memory, streams and the ops of the GPU forward pass. No CUDA types in
// this header, so host-only code includes it; the kernels live in the .cu files beside it.
// Conventions as in the CPU backend: activations are f32 in device memory, row-major per
// token; a weight matrix is a TensorView whose data is a device pointer (GGUF row-major:
// row r = output feature r, cols() elements in the dtype's blocks).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace sluice::cuda {

// True if a CUDA device can be used; otherwise *why (if given) says why not.
bool available(std::string* why = nullptr);

struct DeviceInfo {
    std::string name;
    int cc_major = 0, cc_minor = 0, n_sm = 0;
    uint64_t total_bytes = 0, free_bytes = 0;
};
DeviceInfo device_info();

// Whether matmul/expert kernels exist for this weight dtype.
bool supports(DType t);

// Device memory or page-locked host memory (the DMA source of host-to-device copies),
// freed on destruction.
enum class MemKind { Device, Pinned };
template <MemKind K>
class Buffer {
  public:
    Buffer() = default;
    explicit Buffer(size_t bytes);  // throws Error when the allocation fails
    ~Buffer() { release(); }
    Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) {
            release();
            p_ = o.p_, n_ = o.n_;
            o.p_ = nullptr, o.n_ = 0;
        }
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    void* data() const { return p_; }
    float* f32() const { return (float*)p_; }
    size_t size() const { return n_; }

  private:
    void release() noexcept;
    void* p_ = nullptr;
    size_t n_ = 0;
};
using DeviceBuffer = Buffer<MemKind::Device>;
using PinnedBuffer = Buffer<MemKind::Pinned>;

// Host memory registered for DMA in place (e.g. a read-only file mapping whose pages are in
// the page cache): copies from it need no staging. ok() is false, with error() saying why,
// when the driver refuses; unregistered on destruction.
class HostRegistration {
  public:
    HostRegistration(const void* p, size_t n);
    ~HostRegistration();
    HostRegistration(const HostRegistration&) = delete;
    HostRegistration& operator=(const HostRegistration&) = delete;
    bool ok() const { return ok_; }
    const std::string& error() const { return error_; }

  private:
    void* p_ = nullptr;
    bool ok_ = false;
    std::string error_;
};

// One routed-expert projection set on the device: for each expert e of a layer,
// table[3 * e + p] points at projection p (0 gate, 1 up, 2 down) or is null when the expert
// is not resident. The kernels read expert ids and the table from device memory, so a
// decode step with every expert resident needs no host round trip.
struct ExpertTable {
    const void* const* table = nullptr;  // device: [n_expert * 3]
    DType dtype[3] = {DType::F32, DType::F32, DType::F32};
    int64_t n_ff = 0, n_embd = 0;  // gate/up: [n_ff rows, n_embd]; down: [n_embd rows, n_ff]
};

// Position of a batch's first token: pos0, or (when dev is set) the int at dev, read when the
// kernels run, so a captured graph replays at any position below max.
struct Pos {
    int pos0 = 0;
    const int* dev = nullptr;
    int max = 0;
};

// KV cache rows written by qk_norm_rope: k_cache + pos * k_row + head * head_dim, and
// v_cache + pos * v_row = v + t * v_row.
struct KvStore {
    float* k_cache = nullptr;
    int k_row = 0;
    const float* v = nullptr;
    float* v_cache = nullptr;
    int v_row = 0;
};

// Heads that qk_norm_rope normalises and rotates: x: [n_tok, n_head, stride], each head's
// first head_dim floats; norm_w: [head_dim] f32, or null for no RMSNorm.
struct RopeIn {
    float* x = nullptr;
    int n_head = 0, stride = 0;
    const float* norm_w = nullptr;
};

// The input of a mat-vec that is RMSNorm(x) * w rather than x itself: the launch normalises
// each token's row while staging it (as rms_norm does) and leaves the normalised rows in h
// ([n, cols]; later ops of the layer read them). w null: x is taken as it is.
struct NormIn {
    const float* w = nullptr;
    float eps = 0.f;
    float* h = nullptr;
};

// The RoPE step that Gpu::rope_attention does before attending: k and v are the projections'
// raw rows of the new tokens, normalised (norms: [head_dim] f32, or null) and rotated as
// qk_norm_rope does, then stored to the cache rows of their positions.
struct RopeFirst {
    const float* k = nullptr;  // [n, n_kv * hd]
    const float* v = nullptr;  // [n, n_kv * vd]
    const float *q_norm = nullptr, *k_norm = nullptr;
    float eps = 0.f;
    const float* inv_freq = nullptr;  // [n_rot / 2], device
    int n_rot = 0;
    float mag = 1.f;
    bool pairs = false;
};

// Routing done at the end of the router's mat-vec launch (softmax, top k, optional
// renormalisation, times scale): ids, weights: [n, k].
struct RouteOut {
    int k = 0;
    bool norm = false;
    float scale = 1.f;
    int32_t* ids = nullptr;
    float* weights = nullptr;
};

// A weight matrix as the persistent decode kernel reads it: device data, GGUF row-major.
struct DecodeMat {
    const void* w = nullptr;
    uint64_t row_bytes = 0;
    int rows = 0, cols = 0;
    DType dtype = DType::F32;
};

// Whether Gpu::decode_layers reads weights of type t (the common decode types only: each type
// compiled into that kernel raises its register count).
bool decode_layers_take(DType t);

// One MoE transformer layer's weights and caches for Gpu::decode_layers (device pointers;
// norms f32 [n_embd] or [head_dim], q_norm/k_norm may be null).
struct DecodeLayer {
    const float *attn_norm = nullptr, *ffn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
    DecodeMat q, k, v, o, router;
    const void* const* experts = nullptr;  // ExpertTable::table, every expert resident
    DType expert_dtype[3] = {DType::F32, DType::F32, DType::F32};  // gate, up, down
    uint64_t expert_row_bytes[3] = {};
    float *k_cache = nullptr, *v_cache = nullptr;  // this layer's [n_ctx, n_kv * hd / vd]
};

// What every layer of a decode step shares: the residual x ([n_embd], updated in place),
// scratch, the token's position (device int) and the shapes.
struct DecodeStep {
    float* x = nullptr;
    // Scratch: [q rows], [k rows], [v rows], [n_head * vd], [n_expert], [k_used * n_ff].
    float *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *logits = nullptr,
          *act = nullptr;
    const int* pos = nullptr;
    int max_pos = 0;  // the position bound the launch is sized for
    int n_embd = 0, n_head = 0, n_kv = 0, hd = 0, vd = 0;
    float eps = 0.f, attn_scale = 1.f;
    RopeFirst rope;  // k, v: the scratch rows above; q_norm, k_norm: each layer's (DecodeLayer)
    int n_expert = 0, k_used = 0, n_ff = 0;
    bool norm_topk = false;
    float route_scale = 1.f;
};

// Work captured once and replayed (a decode step): fewer launch costs.
class Graph {
  public:
    Graph() = default;
    ~Graph();
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    bool ready() const { return exec_ != nullptr; }

  private:
    friend class Gpu;
    void* exec_ = nullptr;
};

// The compute stream and everything issued on it. Calls return at once (work is queued);
// results are visible to later ops on the same Gpu and to download() after sync.
class Gpu {
  public:
    Gpu();
    ~Gpu();
    Gpu(const Gpu&) = delete;
    Gpu& operator=(const Gpu&) = delete;

    void sync();
    // Synchronous host -> device copy (weights at load).
    void upload(void* dst, const void* src, size_t n);
    // Uploads the contiguous host matrix w to dst (w.nbytes() bytes, 16-byte aligned) in the
    // layout the kernels read fastest; returns that layout's dtype (w.dtype or a device
    // layout of the same size, such as Q8_0_G8).
    DType upload_matrix(void* dst, const TensorView& w);
    // Host -> device on the compute stream; src must stay valid until sync (pinned: async).
    void upload_async(void* dst, const void* src, size_t n);
    // Device -> host: queued on the compute stream, then waits for it.
    void download(void* dst, const void* src, size_t n);
    void copy(void* dst, const void* src, size_t n);  // device -> device, queued
    // Copies on the copy stream, ordered before compute work queued after the next
    // wait_copies(). src: pinned host memory that stays valid until then.
    void copy_h2d_side(void* dst, const void* src, size_t n);
    void wait_copies();  // compute stream waits for every side copy queued so far
    void sync_copies();  // host waits for every side copy queued so far
    // Marks i < kSideMarks on the side stream: wait_side_mark(i) returns once every side
    // copy queued before mark_side(i) has finished (staging buffers reusable).
    static constexpr int kSideMarks = 8;
    void mark_side(int i);
    void wait_side_mark(int i);

    // y: [n, W.rows()] = x: [n, W.cols()] . W^T (accumulate: y +=). Small n: fused
    // dequantizing mat-vec; larger n: weights dequantized to f16 tiles and multiplied on
    // the tensor cores (f32 accumulation).
    void matmul(const TensorView& W, const float* x, int n, float* y, bool accumulate = false);
    // y[i] = matmul(*W[i], x, n) for i < n_w: one launch for decode-sized n when the matrices
    // share a dtype and row length (a layer's q, k and v), else one matmul each. With norm.w,
    // x is normalised first (NormIn), in the same launch where the rows fit in shared memory.
    void matmul_multi(const TensorView* const* W, int n_w, const float* x, int n, float* const* y,
                      const NormIn& norm = {});
    // The router: logits: [n, W.rows()] = NormIn(x) . W^T, then softmax top-k routing of each
    // token (route_softmax_topk), in one launch for decode-sized n (the last block to finish
    // routes).
    void router_topk(const TensorView& W, const float* x, int n, const NormIn& norm, float* logits,
                     const RouteOut& route);
    // y: [n, W.cols()] = rows ids[0..n) of W (device ids), as f32.
    void get_rows(const TensorView& W, const int32_t* ids, int n, float* y);
    // y = x / rms(x) * w per row. x, y: [rows, n]; w: [n] f32.
    void rms_norm(const float* x, const float* w, float eps, int rows, int n, float* y);
    // Per token t < n_tok and head h of q, then of k: optional RMSNorm over head_dim, then
    // RoPE of the first n_rot dims at position pos + t (inv_freq: [n_rot / 2] device f32), in
    // place. With kv.k_cache, k's results go to the cache rows of their positions instead (k
    // unchanged), and with kv.v_cache each token's V row is stored too. One launch.
    void qk_norm_rope(const RopeIn& q, const RopeIn& k, int n_tok, int head_dim, float eps,
                      const float* inv_freq, int n_rot, float mag, bool pairs, const Pos& pos,
                      const KvStore& kv = {});
    // Causal GQA attention of n new tokens at positions pos.. over the cache.
    // q: [n, n_head * hd]; k_cache: [n_ctx, n_kv * hd]; v_cache: [n_ctx, n_kv * vd];
    // out: [n, n_head * vd].
    void attention(const float* q, const float* k_cache, const float* v_cache, int n,
                   const Pos& pos, int n_head, int n_kv, int hd, int vd, float scale, float* out);
    // qk_norm_rope (q in place, k and v to the caches) then attention; for one token on the
    // split decode path both in one launch (the attention blocks rotate their own q head and
    // the new K row; +0.4-1.5% decode on an H100), unless SLUICE_GPU_ROPE_FUSE=0 when the Gpu was
    // made.
    void rope_attention(const RopeFirst& rf, float* q, float* k_cache, float* v_cache, int n,
                        const Pos& pos, int n_head, int n_kv, int hd, int vd, float scale,
                        float* out);
    void add(float* x, const float* y, size_t n);  // x += y
    // Softmax over n_expert logits per token, top k, optional renormalisation, times scale.
    // logits: [n, n_expert]; ids, weights: [n, k].
    void route_softmax_topk(const float* logits, int n, int n_expert, int k, bool norm, float scale,
                            int32_t* ids, float* weights);

    // Routed experts per slot s < n_slots: expert ids[s], input x + (s / tok_div) * n_embd.
    // act: [n_slots, n_ff] = silu(gate x) * (up x). Slots whose expert has no table entry get
    // zeros (the caller computes them elsewhere).
    void experts_gate_up(const ExpertTable& t, const int32_t* ids, int n_slots, int tok_div,
                         const float* x, float* act);
    // out[t] += sum over j < k of w[t * k + j] * (down_e act[t * k + j]), e = ids[t * k + j],
    // for t < n: the down projections and their weighted sum in one launch. Slots whose
    // expert has no table entry add nothing. act: [n * k, n_ff]; out: [n, n_embd].
    void experts_down_combine(const ExpertTable& t, const int32_t* ids, const float* w, int n,
                              int k, const float* act, float* out);
    // out[t] (+)= sum over j < k of w[t * k + j] * y[t * k + j]. y: [n * k, n]; out: [n, dim].
    void combine(const float* y, const float* w, int n, int k, int dim, float* out,
                 bool accumulate);
    // Batches grouped by expert: xs[i] = x[idx[i]] (idx: device, [m]); rows of dim floats.
    void gather_rows(const float* x, const int32_t* idx, int m, int dim, float* xs);
    // out[idx[i]] += w[i] * y[i] for i < m (idx distinct within a call).
    void scatter_add(const float* y, const int32_t* idx, const float* w, int m, int dim,
                     float* out);
    // act[i] = silu(g[i]) * u[i], i < n.
    void swiglu(const float* g, const float* u, size_t n, float* act);
    // Gated shared expert: y[t] *= sigmoid(h[t] . w) for t < n. y, h: [n, dim]; w: [dim].
    void scale_by_sigmoid_dot(float* y, const float* h, const float* w, int n, int dim);

    // The layers [0, n_layers) of one decode token (layers: device array), each as
    // matmul_multi(q/k/v, attn_norm) → rope_attention → matmul(o, +=) → router_topk(ffn_norm) →
    // experts_gate_up → experts_down_combine, in one persistent launch whose blocks meet at a
    // grid-wide barrier between those phases, and prefetch later phases' weights into L2 while
    // they wait. False (nothing queued) where it does not apply: too many experts or slots for
    // its routing, head shapes the split attention lacks, no cooperative launch, or
    // SLUICE_GPU_FUSED unset (off by default until measured on a GPU; =1 on).
    bool decode_layers(const DecodeLayer* layers, int n_layers, const DecodeStep& s);
    bool decode_layers_enabled() const;  // SLUICE_GPU_FUSED=1 when this Gpu was made

    // Ops queued between begin_capture and end_capture are recorded into g, not run;
    // launch(g) runs them. No synchronising call may happen while capturing.
    void begin_capture();
    void end_capture(Graph& g);
    void launch(const Graph& g);

    // Measured bandwidths in bytes/s (median of several runs): pinned host -> device copies
    // of `bytes`, and a device -> device copy of `bytes` counting bytes read plus written.
    double measure_h2d(size_t bytes);
    double measure_d2d(size_t bytes);

    // Opaque handles for the .cu files.
    struct Impl;
    Impl& impl() { return *p_; }

  private:
    // attention(), and with rf the fused RoPE step: false (nothing queued) where the fused
    // kernel does not apply.
    bool attention_impl(const float* q, float* k_cache, float* v_cache, int n, const Pos& pos,
                        int n_head, int n_kv, int hd, int vd, float scale, float* out,
                        const RopeFirst* rf);
    std::unique_ptr<Impl> p_;
};

}  // namespace sluice::cuda
