#include "model/kv_cache.h"

#include "core/error.h"

namespace sluice {

KvCache::KvCache(const ModelConfig& c, int n_ctx)
    : n_ctx_(n_ctx), row_((size_t)c.n_head_kv * (size_t)c.head_dim) {
    check(n_ctx > 0, "context size must be positive");
    const size_t n = (size_t)c.n_layer * (size_t)n_ctx * row_;
    k_.assign(n, 0.f);
    v_.assign(n, 0.f);
}

}  // namespace sluice
