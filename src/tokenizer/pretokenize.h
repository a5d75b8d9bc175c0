#pragma once
// Regex pre-tokenization with PCRE2 (Unicode properties) and NFC normalization.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class RegexSplitter {
  public:
    explicit RegexSplitter(const std::vector<std::string>& patterns);  // throws on a bad pattern
    ~RegexSplitter();
    RegexSplitter(RegexSplitter&&) noexcept;
    RegexSplitter& operator=(RegexSplitter&&) noexcept;

    // Splits text by each pattern in turn, HF "Isolated" behaviour: matches and the text
    // between them both become pieces. Appends views into `text` to `out`.
    // PRECOND: text is valid UTF-8.
    void split(std::string_view text, std::vector<std::string_view>& out) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

std::string nfc_normalize(std::string_view s);

}  // namespace sluice
