#include "stream/expert_store.h"

#include "core/error.h"

namespace sluice {

ResidentExpertStore::ResidentExpertStore(std::vector<ExpertLayer> layers, int n_expert)
    : layers_(std::move(layers)), n_expert_(n_expert) {}

ExpertWeights ResidentExpertStore::get(int layer, int expert) {
    check(layer >= 0 && layer < n_layers() && expert >= 0 && expert < n_expert_,
          "expert store: (layer " + std::to_string(layer) + ", expert " + std::to_string(expert) + ") out of range");
    const ExpertLayer& l = layers_[(size_t)layer];
    return {l.gate.at(expert), l.up.at(expert), l.down.at(expert)};
}

uint64_t ResidentExpertStore::expert_bytes(int layer) const {
    const ExpertLayer& l = layers_[(size_t)layer];
    return l.gate.at(0).nbytes() + l.up.at(0).nbytes() + l.down.at(0).nbytes();
}

}  // namespace sluice
