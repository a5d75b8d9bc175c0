// sluice convert: HF directories -> GGUF, checked against the GGUFs llama.cpp's converter made
// of the same models (../shared: tiny-qwen3moe-Q8_0.gguf, random-deepseek-v3.gguf): the same
// tensor names and shapes, the same metadata values, and the same logits as the HF directory.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "common.h"
#include "greedy.h"
#include "convert/gguf_export.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "model/model.h"

namespace sluice {
namespace {

std::string convert(const std::string& hf, const std::string& name) {
    const std::string out = (test::temp_dir("convert") / (name + ".gguf")).string();
    ExportOptions o;
    o.threads = 2;
    export_gguf(hf, out, o);
    return out;
}

bool same_value(const GGUFValue& a, const GGUFValue& b) {
    if (a.is_array() != b.is_array()) return false;
    if (a.is_array()) {
        if (a.array().size() != b.array().size()) return false;
        for (size_t i = 0; i < a.array().size(); ++i)
            if (!same_value(a.array()[i], b.array()[i])) return false;
        return true;
    }
    auto num = [](const GGUFValue& v) -> std::optional<double> {
        if (auto* u = std::get_if<uint64_t>(&v.v)) return (double)*u;
        if (auto* i = std::get_if<int64_t>(&v.v)) return (double)*i;
        if (auto* d = std::get_if<double>(&v.v)) return *d;
        if (auto* b = std::get_if<bool>(&v.v)) return *b ? 1.0 : 0.0;
        return std::nullopt;
    };
    if (num(a) && num(b)) return std::abs(*num(a) - *num(b)) <= 1e-6 * std::abs(*num(b));
    const auto *sa = std::get_if<std::string>(&a.v), *sb = std::get_if<std::string>(&b.v);
    return sa && sb && *sa == *sb;
}

// Every tensor (name, shape) and every non-"general." key of llama.cpp's file is in ours with
// the same value; `except` lists keys llama.cpp writes that the forward pass does not read.
void expect_same_layout(const std::string& ours_path, const std::string& theirs_path,
                        const std::set<std::string>& except) {
    const GGUFFile ours = read_gguf(ours_path), theirs = read_gguf(theirs_path);
    std::set<std::string> a, b;
    for (const TensorInfo& t : ours.index.tensors) a.insert(t.name);
    for (const TensorInfo& t : theirs.index.tensors) {
        b.insert(t.name);
        const TensorInfo* o = ours.index.find(t.name);
        if (!o) continue;
        EXPECT_EQ(o->ne, t.ne) << t.name;
    }
    EXPECT_EQ(a, b);
    for (const auto& [k, v] : theirs.meta) {
        if (k.rfind("general.", 0) == 0 || except.count(k)) continue;
        const GGUFValue* mine = ours.find(k);
        EXPECT_TRUE(mine != nullptr) << "missing key " << k;
        if (mine) {
            EXPECT_TRUE(same_value(*mine, v)) << "key " << k << " differs";
        }
    }
}

std::vector<float> logits(const std::string& path, const std::vector<int32_t>& ids) {
    auto m = Model::open(path);
    ThreadPool pool(2);
    return test::logits_all(*m, pool, ids);
}

TEST(Convert, Qwen3MoeMatchesLlamaCppFileAndHfLogits) {
    const std::string out = convert(test::tiny_hf(), "tiny-qwen3moe");
    expect_same_layout(out, test::tiny_gguf("Q8_0"), {});
    const std::vector<int32_t> ids = {785, 6722, 315, 962, 374, 1209, 13, 576, 3283};
    // bf16 weights copied as they are: the same numbers in, the same logits out.
    EXPECT_EQ(logits(out, ids), logits(test::tiny_hf(), ids));
    auto hf = Model::open(test::tiny_hf()), gg = Model::open(out);
    EXPECT_EQ(gg->weights().layers[0].wq.dtype, DType::BF16);
    EXPECT_EQ(gg->weights().layers[0].attn_norm.dtype, DType::F32);
}

TEST(Convert, DeepSeekMatchesLlamaCppFileAndTransformers) {
    const std::string hf = test::shared("models/random-deepseek-v3");
    const std::string out = convert(hf, "random-deepseek-v3");
    expect_same_layout(out, test::shared("models/random-deepseek-v3.gguf"), {});
    const test::RefFile ref(hf + "/reference.safetensors");
    const auto ids = ref.get<int32_t>("prompt0.ids");
    const auto want = ref.get<float>("prompt0.logits");
    const auto got = logits(out, ids);
    EXPECT_LT(test::max_abs_diff(got, want), 1e-4);
}

TEST(Convert, TypeOptionQuantizesMatricesOnly) {
    const std::string out = (test::temp_dir("convert") / "q8.gguf").string();
    ExportOptions o;
    o.types = {DType::Q8_0, DType::Q8_0, DType::Q8_0, DType::Q8_0};
    const auto rep = export_gguf(test::tiny_hf(), out, o);
    for (const TensorReport& r : rep) {
        const bool matrix = r.ne.size() >= 2 && r.name.find("ffn_gate_inp") == std::string::npos;
        EXPECT_EQ(r.type, matrix ? DType::Q8_0 : DType::F32) << r.name;
        if (matrix) {
            EXPECT_LT(r.rel_err, 0.01) << r.name;
        }
    }
    auto m = Model::open(out);
    EXPECT_EQ(m->expert_layout().layers[0].proj[0].dtype, DType::Q8_0);
}

// sluice quantize output has llama.cpp's layout: compared with llama.cpp's own Q4_K_M file.
TEST(Convert, QuantizedFileHasLlamaCppLayout) {
    const std::string out = (test::temp_dir("convert") / "q4k.gguf").string();
    ExportOptions o;
    o.types.experts = DType::Q4_K;
    export_gguf(test::tiny_hf(), out, o);
    expect_same_layout(out, test::tiny_gguf("Q4_K_M"), {});
    const GGUFFile g = read_gguf(out);
    EXPECT_EQ(g.index.get("blk.0.ffn_up_exps.weight").dtype, DType::Q4_K);
    EXPECT_EQ(g.index.get("blk.0.attn_q.weight").dtype, DType::BF16);
}

TEST(Convert, BadInputsAreClearErrors) {
    ExportOptions o;
    EXPECT_THROW(export_gguf("/nonexistent/model", "/tmp/x.gguf", o), Error);
    EXPECT_THROW(export_gguf(test::shared("data"), "/tmp/x.gguf", o), Error);  // no config.json
}

}  // namespace
}  // namespace sluice
