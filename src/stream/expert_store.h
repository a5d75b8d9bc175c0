#pragma once
// The one way model code reaches routed-expert weights: ExpertStore::get(layer, expert).
// Today's store serves views of resident (memory-mapped) tensors; a streaming store with a
// memory budget implements the same interface.
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace sluice {

// One routed expert. gate, up: [n_ff_exp rows, n_embd]; down: [n_embd rows, n_ff_exp].
struct ExpertWeights {
    TensorView gate, up, down;
};

// Where one projection of a layer's experts lives: a stacked 3-D tensor (GGUF
// ffn_*_exps: [n_in, n_out, n_expert]) or one 2-D tensor per expert (HF).
struct ExpertTensor {
    TensorView stacked;
    std::vector<TensorView> per_expert;

    TensorView at(int e) const { return per_expert.empty() ? stacked.slice2d(e) : per_expert[(size_t)e]; }
};

struct ExpertLayer {
    ExpertTensor gate, up, down;
};

class ExpertStore {
public:
    virtual ~ExpertStore() = default;
    virtual ExpertWeights get(int layer, int expert) = 0;
    virtual int n_layers() const = 0;
    virtual int n_experts() const = 0;
    // Bytes of one expert (gate + up + down) of a layer.
    virtual uint64_t expert_bytes(int layer) const = 0;
};

// All experts resident: views straight into the mapped model files.
class ResidentExpertStore final : public ExpertStore {
public:
    ResidentExpertStore(std::vector<ExpertLayer> layers, int n_expert);
    ExpertWeights get(int layer, int expert) override;
    int n_layers() const override { return (int)layers_.size(); }
    int n_experts() const override { return n_expert_; }
    uint64_t expert_bytes(int layer) const override;

private:
    std::vector<ExpertLayer> layers_;  // empty ExpertLayer for dense layers
    int n_expert_;
};

}  // namespace sluice
