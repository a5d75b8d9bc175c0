#pragma once
// Vocabulary data shared by the BPE and SPM tokenizers, loaded from GGUF metadata or a
// HF tokenizer.json.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice {

class GGUFFile;

enum class TokenType : int32_t {  // tokenizer.ggml.token_type values
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

enum class VocabKind { BPE, SPM };

struct Vocab {
    VocabKind kind = VocabKind::BPE;
    std::vector<std::string> tokens;
    std::vector<TokenType> types;
    std::vector<float> scores;  // SPM merge scores
    std::unordered_map<std::string, int32_t> to_id;
    std::unordered_map<std::string, int32_t> merge_rank;  // "left right" -> rank (BPE)
    std::vector<std::string> pre_regexes;                 // applied in sequence (BPE)
    std::string pre_name;                                 // e.g. "qwen2"
    bool nfc = false;                                     // NFC-normalize input text
    bool ignore_merges = false;                           // whole-word vocab hits skip merging
    bool add_space_prefix = true;                         // SPM
    bool add_bos = false, add_eos = false;
    int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;
    std::vector<int32_t> eog;  // ids that end generation

    int32_t size() const { return (int32_t)tokens.size(); }
    bool is_special(int32_t id) const {
        return types[(size_t)id] == TokenType::Control ||
               types[(size_t)id] == TokenType::UserDefined;
    }
    bool is_eog(int32_t id) const;
};

// Pre-tokenizer regex list for a GGUF `tokenizer.ggml.pre` name; throws for unknown names.
std::vector<std::string> bpe_regexes_for_pre(const std::string& pre, const std::string& where);

Vocab load_vocab_gguf(const GGUFFile& g);
// dir_or_file: a HF model directory (tokenizer.json + tokenizer_config.json) or a tokenizer.json.
Vocab load_vocab_hf(const std::string& dir_or_file);

}  // namespace sluice
