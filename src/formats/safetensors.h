#pragma once
// safetensors reader: a single file or a sharded directory (model.safetensors.index.json).
#include <cstdint>
#include <string>

#include "formats/tensor_index.h"

namespace sluice {

// Parses the JSON header of one safetensors file held in memory (size = whole file).
// Produces an index with one file (`path`) and absolute offsets.
TensorIndex parse_safetensors(const uint8_t* data, size_t size, const std::string& path);
TensorIndex read_safetensors(const std::string& path);
// All tensors of a HF model directory: the shards named by model.safetensors.index.json,
// or model.safetensors alone.
TensorIndex read_safetensors_dir(const std::string& dir);

}  // namespace sluice
