#pragma once
// Opens a model and its tokenizer from a GGUF file or a HF directory.
#include <memory>
#include <string>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace sluice {

struct LoadedModel {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
};

LoadedModel load_model(const std::string& path, const LoadOptions& opts = {});

}  // namespace sluice
