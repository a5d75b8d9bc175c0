#include "tokenizer/vocab.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/json_file.h"

namespace sluice {

bool Vocab::is_eog(int32_t id) const {
    return std::find(eog.begin(), eog.end(), id) != eog.end();
}

namespace {

// The GPT-2 splitter; HF ByteLevel(use_regex=true) uses it too.
const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

void finish_vocab(Vocab& v, const std::string& where) {
    v.to_id.reserve(v.tokens.size());
    for (int32_t i = 0; i < v.size(); ++i) v.to_id.emplace(v.tokens[(size_t)i], i);
    if (v.types.empty()) v.types.assign(v.tokens.size(), TokenType::Normal);
    check(v.types.size() == v.tokens.size(), where + ": token_type and tokens differ in length");
    if (!v.scores.empty())
        check(v.scores.size() == v.tokens.size(), where + ": scores and tokens differ in length");
    for (int32_t* id : {&v.bos, &v.eos, &v.eot, &v.unk, &v.pad})
        if (*id >= v.size()) *id = -1;
    for (int32_t id : {v.eos, v.eot})
        if (id >= 0 && !v.is_eog(id)) v.eog.push_back(id);
}

}  // namespace

std::vector<std::string> bpe_regexes_for_pre(const std::string& pre, const std::string& where) {
    // As llama.cpp maps `tokenizer.ggml.pre` names to the HF pre-tokenizers they stand for.
    if (pre == "gpt-2" || pre == "gpt2" || pre == "mpt" || pre == "olmo") return {kGpt2Regex};
    if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "stablelm2")
        return {
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}"
            "+|\\p{N}| "
            "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    if (pre == "llama-bpe" || pre == "llama3" || pre == "dbrx" || pre == "smaug-bpe")
        return {
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}"
            "+|\\p{N}{1,3}| "
            "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    // Character classes spelled as code points: several of them (U+1FD3, U+212A, ...) are
    // NFC singletons, and any tool that normalizes the source would silently break the ranges.
    const std::string cjk = "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+";
    if (pre == "deepseek-llm")
        return {
            "[\r\n]",
            "\\s?["
            "\\x{41}-\\x{5A}\\x{61}-\\x{7A}\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"
            "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}-\\x{377}"
            "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-"
            "\\x{3F5}"
            "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{"
            "13F5}"
            "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-"
            "\\x{1D77}"
            "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-"
            "\\x{1F4D}"
            "\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}"
            "\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}"
            "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}"
            "\\x{2107}"
            "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-"
            "\\x{212D}"
            "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}-"
            "\\x{2184}"
            "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}-\\x{2CF3}\\x{A640}-"
            "\\x{A66D}"
            "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-"
            "\\x{ABBF}"
            "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}"
            "\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}"
            "\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
            "]+",
            "\\s?[\\x{21}-\\x{2F}\\x{3A}-\\x{7E}\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-"
            "\\x{201F}\\x{3000}-\\x{3002}]+",
            "\\s+$",
            cjk,
            "\\p{N}+"};
    if (pre == "deepseek-v3")
        return {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
                "[!\"#$%&'()*+,\\-./"
                ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
                "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
    if (pre == "deepseek-coder") return {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", cjk, "\\p{N}"};
    fail(where + ": unsupported tokenizer.ggml.pre '" + pre +
         "' (supported: qwen2, deepseek-r1-qwen, deepseek-llm, deepseek-v3, deepseek-coder, "
         "llama-bpe, gpt-2)");
}

Vocab load_vocab_gguf(const GGUFFile& g) {
    Vocab v;
    const std::string where = g.path;
    const auto model = g.get_string("tokenizer.ggml.model");
    check(model.has_value(), where + ": no tokenizer (tokenizer.ggml.model missing)");
    v.tokens = g.get_string_array("tokenizer.ggml.tokens");
    check(!v.tokens.empty(), where + ": tokenizer.ggml.tokens is missing or empty");
    for (int64_t t : g.get_int_array("tokenizer.ggml.token_type")) v.types.push_back((TokenType)t);
    for (double s : g.get_float_array("tokenizer.ggml.scores")) v.scores.push_back((float)s);
    auto id = [&](const char* key) { return (int32_t)g.get_int(key).value_or(-1); };
    v.bos = id("tokenizer.ggml.bos_token_id");
    v.eos = id("tokenizer.ggml.eos_token_id");
    v.eot = id("tokenizer.ggml.eot_token_id");
    v.unk = id("tokenizer.ggml.unknown_token_id");
    v.pad = id("tokenizer.ggml.padding_token_id");
    if (*model == "gpt2") {
        v.kind = VocabKind::BPE;
        v.pre_name = g.get_string("tokenizer.ggml.pre").value_or("default");
        v.pre_regexes = bpe_regexes_for_pre(v.pre_name, where);
        // HF's Qwen2 tokenizer NFC-normalizes; the GGUF keeps only the pre-tokenizer name.
        v.nfc = v.pre_name == "qwen2" || v.pre_name == "deepseek-r1-qwen";
        v.ignore_merges = v.pre_name == "llama-bpe" || v.pre_name == "llama3";
        const auto merges = g.get_string_array("tokenizer.ggml.merges");
        check(!merges.empty(), where + ": BPE tokenizer without tokenizer.ggml.merges");
        v.merge_rank.reserve(merges.size());
        for (size_t i = 0; i < merges.size(); ++i) v.merge_rank.emplace(merges[i], (int32_t)i);
        v.add_bos = false;
        v.add_space_prefix = false;
    } else if (*model == "llama") {
        v.kind = VocabKind::SPM;
        check(!v.scores.empty(), where + ": SPM tokenizer without tokenizer.ggml.scores");
        v.add_bos = true;
        v.add_space_prefix = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    } else {
        fail(where + ": unsupported tokenizer.ggml.model '" + *model +
             "' (supported: gpt2, llama)");
    }
    v.add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(v.add_bos);
    v.add_eos = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
    finish_vocab(v, where);
    // Chat models end turns with tokens such as <|im_end|> / <|eot_id|> that are not `eos`.
    for (int32_t i = 0; i < v.size(); ++i) {
        const std::string& t = v.tokens[(size_t)i];
        if (v.types[(size_t)i] == TokenType::Control &&
            (t == "<|im_end|>" || t == "<|eot_id|>" || t == "<|endoftext|>" ||
             t == "<|end_of_text|>" || t == "<｜end▁of▁sentence｜>") &&
            !v.is_eog(i))
            v.eog.push_back(i);
    }
    return v;
}

namespace {

using json = nlohmann::json;

void collect_pre(const json& pt, Vocab& v, const std::string& where) {
    if (pt.is_null()) return;
    const std::string type = pt.value("type", "");
    if (type == "Sequence") {
        for (const auto& p : pt["pretokenizers"]) collect_pre(p, v, where);
    } else if (type == "Split") {
        check(pt.contains("pattern") && pt["pattern"].contains("Regex"),
              where + ": Split pre-tokenizer without a Regex");
        check(pt.value("behavior", "Isolated") == "Isolated" && !pt.value("invert", false),
              where + ": only Isolated, non-inverted Split pre-tokenizers are supported");
        v.pre_regexes.push_back(pt["pattern"]["Regex"].get<std::string>());
    } else if (type == "ByteLevel") {
        check(!pt.value("add_prefix_space", false),
              where + ": ByteLevel add_prefix_space is not supported");
        if (pt.value("use_regex", true)) v.pre_regexes.push_back(kGpt2Regex);
    } else if (type == "Digits") {
        v.pre_regexes.push_back(pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    } else {
        fail(where + ": unsupported pre-tokenizer type '" + type + "'");
    }
}

}  // namespace

Vocab load_vocab_hf(const std::string& dir_or_file) {
    namespace fs = std::filesystem;
    fs::path tok_path = dir_or_file;
    fs::path dir = tok_path.parent_path();
    if (fs::is_directory(tok_path)) {
        dir = tok_path;
        tok_path /= "tokenizer.json";
    }
    const std::string where = tok_path.string();
    const json j = read_json_file(where);
    Vocab v;
    v.kind = VocabKind::BPE;
    v.add_space_prefix = false;
    const json& model = j["model"];
    check(model.is_object() && model.value("type", "") == "BPE",
          where + ": only BPE tokenizer models are supported");
    check(!model.value("byte_fallback", false),
          where + ": byte_fallback BPE (SentencePiece-style) is not supported yet");
    v.ignore_merges = model.value("ignore_merges", false);
    int32_t max_id = -1;
    for (auto& [tok, id] : model["vocab"].items()) max_id = std::max(max_id, id.get<int32_t>());
    for (const auto& at : j.value("added_tokens", json::array()))
        max_id = std::max(max_id, at["id"].get<int32_t>());
    check(max_id >= 0, where + ": empty vocabulary");
    v.tokens.assign((size_t)max_id + 1, std::string());
    v.types.assign((size_t)max_id + 1, TokenType::Unused);
    for (auto& [tok, id] : model["vocab"].items()) {
        v.tokens[(size_t)id.get<int32_t>()] = tok;
        v.types[(size_t)id.get<int32_t>()] = TokenType::Normal;
    }
    for (const auto& at : j.value("added_tokens", json::array())) {
        const auto id = (size_t)at["id"].get<int32_t>();
        v.tokens[id] = at["content"].get<std::string>();
        v.types[id] = at.value("special", false) ? TokenType::Control : TokenType::UserDefined;
    }
    int32_t rank = 0;
    for (const auto& m : model["merges"]) {
        if (m.is_string())
            v.merge_rank.emplace(m.get<std::string>(), rank++);
        else
            v.merge_rank.emplace(m[0].get<std::string>() + " " + m[1].get<std::string>(), rank++);
    }
    collect_pre(j.value("pre_tokenizer", json()), v, where);
    const json norm = j.value("normalizer", json());
    if (!norm.is_null()) {
        const std::string nt = norm.value("type", "");
        if (nt == "NFC")
            v.nfc = true;
        else if (!(nt == "Sequence" && norm.value("normalizers", json::array()).empty()))
            fail(where + ": unsupported normalizer '" + nt + "'");
    }
    // Special ids: tokenizer_config.json (bos/eos strings), then config.json ids.
    auto id_of = [&](const json& t) -> int32_t {
        std::string s =
            t.is_string() ? t.get<std::string>() : (t.is_object() ? t.value("content", "") : "");
        for (int32_t i = 0; i < (int32_t)v.tokens.size(); ++i)
            if (v.tokens[(size_t)i] == s && !s.empty()) return i;
        return -1;
    };
    const fs::path cfg_path = dir / "tokenizer_config.json";
    if (fs::exists(cfg_path)) {
        const json c = read_json_file(cfg_path.string());
        if (c.contains("bos_token")) v.bos = id_of(c["bos_token"]);
        if (c.contains("eos_token")) v.eos = id_of(c["eos_token"]);
        if (c.contains("pad_token")) v.pad = id_of(c["pad_token"]);
        v.add_bos = c.value("add_bos_token", false) && v.bos >= 0;
        v.add_eos = c.value("add_eos_token", false) && v.eos >= 0;
    }
    finish_vocab(v, where);
    return v;
}

}  // namespace sluice
