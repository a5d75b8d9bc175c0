#pragma once
// Text <-> token ids: byte-level BPE (GPT-2 family, Qwen, DeepSeek) and SentencePiece-style BPE.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab.h"

namespace sluice {

class Tokenizer {
  public:
    explicit Tokenizer(Vocab vocab);

    // add_special: prepend BOS / append EOS as the vocab asks. parse_special: text such as
    // "<|im_start|>" becomes its special token instead of being spelled out.
    // Throws Error if text is not valid UTF-8.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
    // Raw bytes of one token (may be a partial UTF-8 sequence). Control tokens give their
    // text only if `special`.
    std::string token_bytes(int32_t id, bool special = false) const;
    std::string decode(const std::vector<int32_t>& ids, bool special = false) const;

    const Vocab& vocab() const { return v_; }
    int32_t n_vocab() const { return v_.size(); }

  private:
    void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
    void encode_bpe_word(std::string_view word, std::vector<int32_t>& out) const;
    void encode_spm(std::string_view text, std::vector<int32_t>& out) const;

    Vocab v_;
    std::unique_ptr<RegexSplitter> splitter_;
    std::vector<int32_t> specials_;  // special token ids, longest text first
    std::string byte_to_unicode_[256];
    std::unordered_map<std::string, uint8_t> unicode_to_byte_;
    int32_t byte_token_[256];  // SPM <0xXX> tokens, -1 if absent
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // BPE word cache
};

// Turns a stream of tokens into text, holding back incomplete UTF-8 sequences so the
// output is always valid UTF-8.
class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
    std::string push(int32_t id);  // the complete text that this token finishes
    std::string flush();           // whatever is left (invalid bytes become U+FFFD)

  private:
    const Tokenizer& tok_;
    std::string pending_;
};

}  // namespace sluice
