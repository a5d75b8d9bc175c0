#pragma once
// A loaded model: config, resident dense weights, the expert store, and forward().
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cpu/thread_pool.h"
#include "core/tensor.h"
#include "formats/gguf.h"
#include "formats/tensor_index.h"
#include "io/file.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "stream/expert_store.h"
#include "stream/memory_plan.h"
#include "stream/vram_stats.h"

namespace sluice {

// Shapes as in TensorRole (arch.h). Views an architecture lacks stay empty.
struct LayerWeights {
    TensorView attn_norm, wq, wk, wv, wo, q_norm, k_norm;  // wq: [n_head*head_dim rows, n_embd]
    TensorView wq_a, q_a_norm, wq_b, wkv_a, kv_a_norm;     // MLA
    TensorView wkv_b;       // MLA, joint form: [n_head * (qk_nope + v_head_dim) rows, kv_lora_rank]
    TensorView wk_b, wv_b;  // MLA, split form (llama.cpp): per head, see TensorRole
    TensorView ffn_norm;
    TensorView ffn_gate, ffn_up, ffn_down;  // dense layers
    TensorView router, router_bias;         // MoE layers. router: [n_expert rows, n_embd]
    TensorView shexp_gate, shexp_up, shexp_down;
    TensorView shexp_gate_inp;  // [n_embd]: shared expert scaled by sigmoid(w . x)
    // Gated DeltaNet layers (shapes in TensorRole).
    TensorView ssm_qkv, ssm_z, ssm_beta, ssm_alpha, ssm_a, ssm_dt_bias, ssm_conv, ssm_norm, ssm_out;
    // FP8 experts: block scales of [gate, up, down] per expert (the store serves the weights).
    std::vector<std::array<const float*, 3>> expert_scale;
};

struct Weights {
    TensorView tok_embd;     // [n_vocab rows, n_embd]
    TensorView output_norm;  // [n_embd]
    TensorView output;       // [n_vocab rows, n_embd]; tok_embd when tied
    std::vector<LayerWeights> layers;
};

struct ForwardArgs {
    const int32_t* tokens;  // [n]
    int n;
    int pos0;  // position of tokens[0]; KV rows [pos0, pos0 + n) are written
    KvCache* kv;
    ThreadPool* pool;
    float* logits;  // [n, n_vocab] if all_logits, else [n_vocab] for the last token
    bool all_logits;
};

// MLA attention: absorbed (attends over the latent cache directly; decode) or expanded
// (per-head K/V rebuilt from the latents; cheaper for long prefill batches).
enum class MlaMode { Auto, Absorbed, Expanded };
// Linear-attention layers: chunked form for batches, recurrent for single tokens (Auto).
enum class DeltaNetMode { Auto, Chunked, Recurrent };

// A forward pass that runs elsewhere than the CPU ops (the CUDA backend: gpu_forward.h).
class Model;
class DeviceForward {
  public:
    virtual ~DeviceForward() = default;
    virtual void forward(Model& m, const ForwardArgs& a) = 0;
    virtual std::string describe() const = 0;  // device and memory plan, one line each
    virtual VramStats stats() const = 0;
    // Physical bounds for bench, bytes/s: host -> device copies, device memory.
    virtual double measure_h2d() = 0;
    virtual double measure_mem() = 0;
};

enum class Backend { Cpu, Cuda };
// CUDA decode: experts missing from VRAM copied to the GPU, or computed on the CPU (moving
// activations instead of weights). Auto: CPU when the host holds them in the page cache
// (measured faster on the H100 host: docs/benchmarks.md), copy otherwise.
enum class GpuMisses { Auto, Copy, Cpu };

struct LoadOptions {
    Backend backend = Backend::Cpu;
    uint64_t gpu_mem = 0;     // CUDA: VRAM for everything; 0: the device's free memory less 1 GiB
    int gpu_expert_slots = 0;  // CUDA: > 0 caps the experts held in VRAM (tests)
    GpuMisses gpu_misses = GpuMisses::Auto;
    uint64_t mem_budget = 0;  // 0: no budget, every tensor memory-mapped
    // Memory the process holds before loading (binary, libraries), counted against
    // mem_budget. Applications measure it; library callers may leave it 0.
    uint64_t process_bytes = 0;
    IoMode io = IoMode::Direct;
    std::string io_engine = "auto";
    unsigned io_depth = 0;  // reads in flight; 0: from the device's request queue
    int n_ctx = 4096;  // context the KV cache will be sized for (memory plan)
    std::function<void(uint64_t done, uint64_t total)> on_progress;  // layers loaded so far
};

class Model {
  public:
    // path: a .gguf file or a Hugging Face model directory (config.json + safetensors).
    // With a memory budget, dense weights are read into resident memory and routed experts
    // stream through an expert store sized by the memory plan.
    static std::unique_ptr<Model> open(const std::string& path, const LoadOptions& opts = {});

    const ModelConfig& config() const { return cfg_; }
    const Weights& weights() const { return w_; }
    ExpertStore& experts() { return *experts_; }
    const std::string& path() const { return path_; }
    const GGUFFile* gguf() const { return gguf_ ? &*gguf_ : nullptr; }  // null for HF directories
    uint64_t dense_bytes() const { return dense_bytes_; }
    const MemoryPlan& memory_plan() const { return plan_; }
    const ExpertLayout& expert_layout() const { return layout_; }

    // Experts per token, 1..n_expert.
    void set_experts_per_token(int k);
    // Prefetch the next layers' likely experts (stores that read ahead only).
    void set_speculative_prefetch(bool on) { spec_prefetch_ = on; }
    // On only where the store reads ahead: in RAM the predicting routers would be pure cost.
    bool speculative_prefetch() const { return spec_prefetch_ && experts_->reads_ahead(); }
    void set_mla_mode(MlaMode m) { mla_mode_ = m; }
    MlaMode mla_mode() const { return mla_mode_; }
    void set_deltanet_mode(DeltaNetMode m) { deltanet_mode_ = m; }
    DeltaNetMode deltanet_mode() const { return deltanet_mode_; }
    const RopeTable& rope() const { return rope_; }

    // Checks tokens and positions, then runs the architecture's forward pass (on the
    // device, when one was chosen at load).
    void forward(const ForwardArgs& a);
    DeviceForward* device() { return device_.get(); }

  private:
    Model() = default;
    void bind_weights(const ArchInfo& arch, bool hf, bool resident);
    void make_expert_store(const LoadOptions& o);

    std::string path_;
    ModelConfig cfg_;
    std::optional<GGUFFile> gguf_;
    TensorIndex index_;
    std::unique_ptr<TensorFiles> files_;   // mapped files (no budget)
    std::vector<AlignedBuffer> resident_;  // dense tensors read into memory (with a budget)
    Weights w_;
    ExpertLayout layout_;
    MemoryPlan plan_;
    std::unique_ptr<ExpertStore> experts_;
    std::unique_ptr<DeviceForward> device_;
    uint64_t dense_bytes_ = 0;
    bool spec_prefetch_ = false;
    MlaMode mla_mode_ = MlaMode::Auto;
    DeltaNetMode deltanet_mode_ = DeltaNetMode::Auto;
    RopeTable rope_;
    std::function<void(uint64_t, uint64_t)> progress_;
};

}  // namespace sluice
