#include "runtime/loader.h"

#include "core/error.h"

namespace sluice {

LoadedModel load_model(const std::string& path, const LoadOptions& opts) {
    LoadedModel lm;
    lm.model = Model::open(path, opts);
    Vocab v = lm.model->gguf() ? load_vocab_gguf(*lm.model->gguf()) : load_vocab_hf(path);
    check(v.size() <= lm.model->config().n_vocab + 1024 && v.size() > 0,
          path + ": tokenizer has " + std::to_string(v.size()) +
              " tokens but the model's vocabulary is " +
              std::to_string(lm.model->config().n_vocab));
    lm.tokenizer = std::make_unique<Tokenizer>(std::move(v));
    return lm;
}

}  // namespace sluice
