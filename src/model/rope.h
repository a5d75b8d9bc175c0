#pragma once
// Rotary frequencies from the config: plain RoPE, or YaRN as transformers computes it
// (_compute_yarn_parameters: ramp between interpolated and extrapolated frequencies).
#include "backend/cpu/ops.h"
#include "model/config.h"

namespace sluice {

RopeTable make_rope_table(const ModelConfig& c);

}  // namespace sluice
