#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace sluice {
namespace {

double yarn_mscale(double factor, double mscale) {
    return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

}  // namespace

RopeTable make_rope_table(const ModelConfig& c) {
    RopeTable r;
    r.pairs = c.rope.pairs;
    const int dim = c.n_rot, half = dim / 2;
    const float base = c.rope.theta;
    r.inv_freq.resize((size_t)half);
    for (int i = 0; i < half; ++i)
        r.inv_freq[(size_t)i] = 1.0f / std::pow(base, (float)(2 * i) / (float)dim);
    if (!c.rope.yarn) return r;
    const RopeConfig& y = c.rope;
    // Dimension at which a wavelength makes `rot` turns over the original context.
    auto corr_dim = [&](double rot) {
        return dim * std::log(y.orig_ctx / (rot * 2 * M_PI)) / (2 * std::log((double)base));
    };
    double low = std::max(std::floor(corr_dim(y.beta_fast)), 0.0);
    double high = std::min(std::ceil(corr_dim(y.beta_slow)), (double)dim - 1);
    if (low == high) high += 0.001;
    for (int i = 0; i < half; ++i) {
        const float ramp = std::clamp((float)((i - low) / (high - low)), 0.0f, 1.0f);
        const float extrap = 1.0f - ramp;  // 1: keep the original frequency
        const float f = r.inv_freq[(size_t)i];
        r.inv_freq[(size_t)i] = f / y.factor * (1.0f - extrap) + f * extrap;
    }
    r.mag = y.mscale != 0 && y.mscale_all_dim != 0
                ? (float)(yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim))
                : (float)yarn_mscale(y.factor, 1.0);
    return r;
}

}  // namespace sluice
