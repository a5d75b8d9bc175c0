// llama.cpp's tokenizer cases (expected ids made by the HF tokenizers) for every
// vocabulary we have: GGUF vocabularies and the Qwen3 tokenizer.json.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common.h"
#include "core/strings.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace sluice {
namespace {

std::string read_all(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

struct Case {
    std::string text;
    std::vector<int32_t> ids;
};

std::vector<Case> load_cases(const std::string& name) {
    const std::string base = test::shared("tokenizers/cases/ggml-vocab-" + name + ".gguf");
    const std::string inp = read_all(base + ".inp"), out = read_all(base + ".out");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (size_t pos = 0;;) {
        const size_t p = inp.find(sep, pos);
        if (p == std::string::npos) break;
        texts.push_back(inp.substr(pos, p - pos));
        pos = p + sep.size();
    }
    std::vector<std::string> lines = split(out, '\n');
    if (!lines.empty() && lines.back().empty()) lines.pop_back();
    EXPECT_EQ(texts.size(), lines.size()) << name;
    std::vector<Case> cases;
    for (size_t i = 0; i < texts.size() && i < lines.size(); ++i) {
        Case c{texts[i], {}};
        std::istringstream ls(lines[i]);
        for (int32_t id; ls >> id;) c.ids.push_back(id);
        cases.push_back(std::move(c));
    }
    return cases;
}

void run_cases(const Tokenizer& tok, const std::string& name) {
    const auto cases = load_cases(name);
    ASSERT_GT(cases.size(), 10u) << name;
    int failures = 0;
    for (const auto& c : cases) {
        const auto got = tok.encode(c.text, /*add_special=*/false, /*parse_special=*/true);
        if (got != c.ids) {
            ++failures;
            std::string g, w;
            for (auto i : got) g += std::to_string(i) + " ";
            for (auto i : c.ids) w += std::to_string(i) + " ";
            ADD_FAILURE() << name << ": '" << c.text << "'\n  got:  " << g << "\n  want: " << w;
        }
        // Decoding gives the text back (these vocabularies are lossless for these inputs
        // except SPM's added prefix space).
        std::string back = tok.decode(got);
        if (tok.vocab().kind == VocabKind::SPM && !back.empty() && back[0] == ' ') back.erase(0, 1);
        if (tok.vocab().nfc) continue;  // normalization may change the bytes
        EXPECT_EQ(back, c.text) << name;
    }
    EXPECT_EQ(failures, 0) << name << ": " << failures << " of " << cases.size() << " cases differ";
}

Tokenizer gguf_tok(const std::string& name) {
    return Tokenizer(
        load_vocab_gguf(read_gguf(test::shared("tokenizers/cases/ggml-vocab-" + name + ".gguf"))));
}

TEST(TokenizerCases, Qwen2WithQwen3TokenizerJson) {
    Tokenizer tok(load_vocab_hf(test::shared("tokenizers/qwen3/tokenizer.json")));
    run_cases(tok, "qwen2");
}

TEST(TokenizerCases, DeepseekR1QwenWithQwen3TokenizerJson) {
    Tokenizer tok(load_vocab_hf(test::shared("tokenizers/qwen3/tokenizer.json")));
    run_cases(tok, "deepseek-r1-qwen");
}

TEST(TokenizerCases, Gpt2Gguf) {
    run_cases(gguf_tok("gpt-2"), "gpt-2");
}
TEST(TokenizerCases, DeepseekLlmGguf) {
    run_cases(gguf_tok("deepseek-llm"), "deepseek-llm");
}
TEST(TokenizerCases, DeepseekCoderGguf) {
    run_cases(gguf_tok("deepseek-coder"), "deepseek-coder");
}
TEST(TokenizerCases, LlamaSpmGguf) {
    run_cases(gguf_tok("llama-spm"), "llama-spm");
}

}  // namespace
}  // namespace sluice
