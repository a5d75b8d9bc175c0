#include "model/kv_cache.h"

#include "core/error.h"

namespace sluice {
namespace {

struct Rows {
    size_t k, v;
};

Rows rows_for(const ModelConfig& c) {
    if (c.is_mla()) return {(size_t)(c.kv_lora_rank + c.n_rot), 0};
    return {(size_t)c.n_head_kv * (size_t)c.head_dim, (size_t)c.n_head_kv * (size_t)c.v_head_dim};
}

}  // namespace

KvCache::KvCache(const ModelConfig& c, int n_ctx) : n_ctx_(n_ctx) {
    check(n_ctx > 0, "context size must be positive");
    const Rows r = rows_for(c);
    k_row_ = r.k;
    v_row_ = r.v;
    const size_t n = (size_t)c.n_layer * (size_t)n_ctx;
    k_.assign(n * k_row_, 0.f);
    v_.assign(n * v_row_, 0.f);
}

uint64_t KvCache::bytes_for(const ModelConfig& c, int n_ctx) {
    const Rows r = rows_for(c);
    return (uint64_t)c.n_layer * (uint64_t)n_ctx * (r.k + r.v) * sizeof(float);
}

}  // namespace sluice
