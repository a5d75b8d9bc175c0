// Tokenizer behaviour beyond the case files: specials, BOS, streaming UTF-8, both loaders.
#include <gtest/gtest.h>

#include "common.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace sluice {
namespace {

TEST(Tokenizer, GgufAndTokenizerJsonAgreeOnTheTinyModel) {
    Tokenizer a(load_vocab_gguf(read_gguf(test::tiny_gguf("Q8_0"))));
    Tokenizer b(load_vocab_hf(test::tiny_hf()));
    const std::string text =
        "Hello world! It's 2024 -- naïve café, 日本語 \n\n  tabs\tand    spaces";
    EXPECT_EQ(a.encode(text, true, true), b.encode(text, true, true));
    EXPECT_FALSE(a.vocab().add_bos);  // Qwen: no BOS
    EXPECT_EQ(a.vocab().eos, 2);
    EXPECT_EQ(b.vocab().eos, 2);
}

TEST(Tokenizer, ParsesSpecialTokensOnlyWhenAsked) {
    Tokenizer t(load_vocab_hf(test::tiny_hf()));
    const auto with = t.encode("<|im_start|>user\nhi<|im_end|>", false, true);
    ASSERT_GE(with.size(), 3u);
    EXPECT_EQ(with.front(), 1);
    EXPECT_EQ(with.back(), 2);
    const auto without = t.encode("<|im_start|>", false, false);
    EXPECT_GT(without.size(), 1u);
    EXPECT_EQ(t.decode(without), "<|im_start|>");
    EXPECT_TRUE(t.vocab().is_eog(2));
}

TEST(Tokenizer, SpmAddsBosWhenTheVocabSaysSo) {
    Tokenizer t(
        load_vocab_gguf(read_gguf(test::shared("tokenizers/cases/ggml-vocab-llama-spm.gguf"))));
    const auto ids = t.encode("Hello world", true, true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], 1);
    EXPECT_EQ(t.decode(ids), " Hello world");
}

TEST(Tokenizer, RejectsInvalidUtf8) {
    Tokenizer t(load_vocab_hf(test::tiny_hf()));
    EXPECT_THROW(t.encode("abc\xff", false, false), Error);
    EXPECT_THROW(t.encode("\xc0\xaf", false, false), Error);  // overlong
}

TEST(StreamDecoder, HoldsBackPartialUtf8) {
    Tokenizer t(load_vocab_hf(test::tiny_hf()));
    // "é" = C3 A9 and "日" = E6 97 A5 are split across byte-level tokens in this small vocab.
    const auto ids = t.encode("é日本", false, false);
    StreamDecoder d(t);
    std::string out;
    for (int32_t id : ids) {
        const std::string piece = d.push(id);
        EXPECT_TRUE(piece.empty() || (unsigned char)piece[0] < 0x80 ||
                    ((unsigned char)piece[0] & 0xc0) == 0xc0);
        out += piece;
    }
    out += d.flush();
    EXPECT_EQ(out, "é日本");
    EXPECT_GT(ids.size(), 3u) << "test needs a word split inside a multi-byte character";
}

TEST(StreamDecoder, InvalidBytesBecomeReplacementCharacters) {
    Tokenizer t(load_vocab_hf(test::tiny_hf()));
    // Byte-level token for a lone continuation byte 0x80: "Ā" maps to byte 0x00..; find 0x80's
    // token.
    const auto ids = t.encode("\xc3\xa9", false, false);  // é
    ASSERT_GE(ids.size(), 1u);
    StreamDecoder d(t);
    std::string out = d.push(ids.back());  // only the tail byte(s)
    out += d.flush();
    if (ids.size() > 1) {
        EXPECT_EQ(out, "\xef\xbf\xbd");
    }
}

}  // namespace
}  // namespace sluice
