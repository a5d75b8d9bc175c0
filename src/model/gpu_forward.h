#pragma once
// The forward pass on a CUDA GPU (gpu_forward.cpp; a stub that refuses when sluice is built
// without CUDA). Dense weights, attention and the KV cache live in VRAM; routed experts in a
// VRAM expert cache filled from the model's host ExpertStore.
#include <cstdint>
#include <memory>
#include <string>

#include "model/model.h"

namespace sluice {

struct GpuOptions {
    uint64_t gpu_mem = 0;      // VRAM for everything; 0: the device's free memory less 1 GiB
    int n_ctx = 4096;          // context the KV cache is planned for
    int max_expert_slots = 0;  // > 0: at most this many experts in VRAM (tests)
    GpuMisses misses = GpuMisses::Auto;
};

// Throws Error (with the reason) when CUDA is unavailable or the model uses something the
// GPU path lacks (linear attention, MLA, group-limited or sigmoid routing, FP8 weights).
std::unique_ptr<DeviceForward> make_cuda_forward(Model& m, const GpuOptions& o);

}  // namespace sluice
