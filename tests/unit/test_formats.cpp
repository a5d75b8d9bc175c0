// GGUF and safetensors readers: real files, every metadata type, and corrupt input.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors.h"

namespace sluice {
namespace {

std::vector<uint8_t> slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

TEST(GGUF, ReadsLlamaCppFile) {
    const GGUFFile g = read_gguf(test::tiny_gguf("Q4_K_M"));
    EXPECT_EQ(g.version, 3u);
    EXPECT_EQ(g.get_string("general.architecture"), "qwen3moe");
    EXPECT_EQ(g.get_uint("qwen3moe.expert_count"), 32u);
    EXPECT_NEAR(*g.get_float("qwen3moe.rope.freq_base"), 1e6, 1e-3);
    EXPECT_EQ(g.get_string_array("tokenizer.ggml.tokens").size(), 8192u);
    EXPECT_EQ(g.get_string_array("tokenizer.ggml.merges")[0], "\xc4\xa0 t");  // "Ġ t"
    EXPECT_EQ(g.index.tensors.size(), 75u);
    const TensorInfo& t = g.index.get("blk.0.ffn_gate_exps.weight");
    EXPECT_EQ(t.dtype, DType::Q4_K);
    EXPECT_EQ(t.ne, (std::vector<int64_t>{256, 256, 32}));
    EXPECT_EQ(t.nbytes, 256ull * 32 / 256 * 144 * 256);
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_THROW(g.get_uint("general.architecture"), Error);  // wrong type, named error
}

TEST(GGUF, EveryValueTypeRoundTrips) {
    GGUFWriter w(64);
    auto val = [](GGUFType t, decltype(GGUFValue::v) x) {
        GGUFValue v;
        v.type = t;
        v.v = std::move(x);
        return v;
    };
    w.set("u8", val(GGUFType::U8, (uint64_t)200));
    w.set("i8", val(GGUFType::I8, (int64_t)-100));
    w.set("u16", val(GGUFType::U16, (uint64_t)60000));
    w.set("i16", val(GGUFType::I16, (int64_t)-30000));
    w.set_u32("u32", 4000000000u);
    w.set_i32("i32", -2000000000);
    w.set("u64", val(GGUFType::U64, (uint64_t)1 << 60));
    w.set("i64", val(GGUFType::I64, (int64_t) - (1ll << 60)));
    w.set_f32("f32", 1.5f);
    w.set("f64", val(GGUFType::F64, 2.25));
    w.set_bool("bool", true);
    w.set_str("str", "h\xc3\xa9llo");
    // [[1, 2], [3]] as an array of arrays of i32
    GGUFValue inner1, inner2, outer;
    inner1.type = inner2.type = outer.type = GGUFType::ARRAY;
    inner1.elem_type = inner2.elem_type = GGUFType::I32;
    inner1.v =
        std::vector<GGUFValue>{val(GGUFType::I32, (int64_t)1), val(GGUFType::I32, (int64_t)2)};
    inner2.v = std::vector<GGUFValue>{val(GGUFType::I32, (int64_t)3)};
    outer.elem_type = GGUFType::ARRAY;
    outer.v = std::vector<GGUFValue>{inner1, inner2};
    w.set("nested", outer);
    const float data[64] = {1, 2, 3};
    w.add_tensor("t0", DType::F32, {64}, data);
    w.add_tensor("t1", DType::F32, {32, 2}, data);
    const auto dir = test::temp_dir("gguf-types");
    const std::string path = (dir / "t.gguf").string();
    w.write(path);

    const GGUFFile g = read_gguf(path);
    EXPECT_EQ(g.alignment, 64u);
    EXPECT_EQ(g.get_uint("u8"), 200u);
    EXPECT_EQ(g.get_int("i8"), -100);
    EXPECT_EQ(g.get_uint("u16"), 60000u);
    EXPECT_EQ(g.get_int("i16"), -30000);
    EXPECT_EQ(g.get_uint("u32"), 4000000000u);
    EXPECT_EQ(g.get_int("i32"), -2000000000);
    EXPECT_EQ(g.get_uint("u64"), 1ull << 60);
    EXPECT_EQ(g.get_int("i64"), -(1ll << 60));
    EXPECT_EQ(g.get_float("f32"), 1.5);
    EXPECT_EQ(g.get_float("f64"), 2.25);
    EXPECT_EQ(g.get_bool("bool"), true);
    EXPECT_EQ(g.get_string("str"), "h\xc3\xa9llo");
    const GGUFValue* n = g.find("nested");
    ASSERT_TRUE(n && n->is_array());
    ASSERT_EQ(n->array().size(), 2u);
    EXPECT_EQ(std::get<int64_t>(n->array()[0].array()[1].v), 2);
    EXPECT_EQ(std::get<int64_t>(n->array()[1].array()[0].v), 3);
    EXPECT_EQ(g.index.get("t1").offset % 64, 0u);
    EXPECT_EQ(g.index.get("t1").offset - g.index.get("t0").offset, 256u);
    std::filesystem::remove_all(dir);
}

TEST(GGUF, EveryTruncationIsACleanError) {
    const auto bytes = slurp(test::shared("tokenizers/cases/ggml-vocab-gpt-2.gguf"));
    ASSERT_GT(bytes.size(), 1000u);
    // Every prefix of the header region, then a coarse sweep through the rest.
    for (size_t n = 0; n < bytes.size(); n += (n < 4096 ? 1 : 997)) {
        try {
            parse_gguf(bytes.data(), n, "cut.gguf");
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("cut.gguf"), std::string::npos) << e.what();
            continue;
        }
        // A prefix can only parse if it holds the whole header and every tensor.
        ADD_FAILURE() << "prefix of " << n << " bytes parsed";
    }
    EXPECT_NO_THROW(parse_gguf(bytes.data(), bytes.size(), "full.gguf"));
}

TEST(GGUF, RejectsBadMagicVersionAndOffsets) {
    auto bytes = slurp(test::tiny_gguf("Q8_0"));
    auto expect_error = [](const std::vector<uint8_t>& b, const std::string& needle) {
        try {
            parse_gguf(b.data(), b.size(), "x.gguf");
            ADD_FAILURE() << "no error, wanted: " << needle;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    auto b = bytes;
    b[0] = 'X';
    expect_error(b, "not a GGUF");
    b = bytes;
    b[4] = 9;
    expect_error(b, "unsupported GGUF version");
    // Cut off the tail: the last tensors' data is gone.
    b.assign(bytes.begin(), bytes.end() - 4096);
    expect_error(b, "beyond the end of the file");
}

TEST(Safetensors, ReadsShardedDirectory) {
    const TensorIndex idx = read_safetensors_dir(test::tiny_hf());
    EXPECT_EQ(idx.files.size(), 7u);
    const TensorInfo& t = idx.get("model.layers.0.mlp.experts.3.down_proj.weight");
    EXPECT_EQ(t.dtype, DType::BF16);
    EXPECT_EQ(t.ne, (std::vector<int64_t>{256, 256}));  // [out=256, in=256] reversed
    const TensorInfo& e = idx.get("model.embed_tokens.weight");
    EXPECT_EQ(e.ne, (std::vector<int64_t>{256, 8192}));
    EXPECT_THROW(idx.get("model.layers.99.nothing"), Error);
}

std::vector<uint8_t> make_st(const std::string& header, size_t data_bytes) {
    std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
    const uint64_t n = header.size();
    std::memcpy(b.data(), &n, 8);
    std::memcpy(b.data() + 8, header.data(), header.size());
    return b;
}

TEST(Safetensors, RejectsCorruptHeaders) {
    struct Case {
        std::string header;
        size_t data;
        std::string needle;
    };
    const Case cases[] = {
        {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8, ""},
        {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, "beyond the end"},
        {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "does not match"},
        {R"({"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", 8, "unsupported dtype"},
        {R"({"a":{"dtype":"F32","shape":[2]}})", 8, "data_offsets"},
        {R"({"a":)", 8, "invalid safetensors JSON"},
        {R"([1,2])", 0, "not a JSON object"},
    };
    for (const auto& c : cases) {
        const auto b = make_st(c.header, c.data);
        if (c.needle.empty()) {
            EXPECT_NO_THROW(parse_safetensors(b.data(), b.size(), "m.safetensors"));
            continue;
        }
        try {
            parse_safetensors(b.data(), b.size(), "m.safetensors");
            ADD_FAILURE() << "no error for " << c.header;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
        }
    }
    std::vector<uint8_t> huge(16, 0xff);
    EXPECT_THROW(parse_safetensors(huge.data(), huge.size(), "m"), Error);
}

}  // namespace
}  // namespace sluice
