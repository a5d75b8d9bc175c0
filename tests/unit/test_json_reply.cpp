// parse_json_reply: what `sluice eval json` counts as a JSON reply.
#include <gtest/gtest.h>

#include <fstream>

#include "common.h"
#include "core/error.h"
#include "runtime/json_reply.h"

namespace sluice {
namespace {

TEST(JsonReply, AcceptsJsonWithWhitespaceOrOneFence) {
    EXPECT_TRUE(parse_json_reply("{\"a\": 1}"));
    EXPECT_TRUE(parse_json_reply("  \n[1, 2, 3]\n"));
    EXPECT_TRUE(parse_json_reply("\"hello\""));
    EXPECT_TRUE(parse_json_reply("true"));
    EXPECT_TRUE(parse_json_reply("```json\n{\"a\": [1, {\"b\": null}]}\n```"));
    EXPECT_TRUE(parse_json_reply("```\n{\"a\": 1}\n```\n"));
    EXPECT_EQ((*parse_json_reply("```json\n{\"k\": \"v\"}\n```"))["k"], "v");
}

TEST(JsonReply, RejectsProseTruncationAndOtherFences) {
    EXPECT_FALSE(parse_json_reply(""));
    EXPECT_FALSE(parse_json_reply("Sure! {\"a\": 1}"));
    EXPECT_FALSE(parse_json_reply("{\"a\": 1} Hope this helps."));
    EXPECT_FALSE(parse_json_reply("{\"a\": [1, 2"));           // cut off by the token limit
    EXPECT_FALSE(parse_json_reply("{'a': 1}"));                // not JSON quotes
    EXPECT_FALSE(parse_json_reply("```python\n{\"a\": 1}\n```"));
    EXPECT_FALSE(parse_json_reply("```json\n{\"a\": 1}"));     // unclosed fence
}

TEST(JsonReply, ShippedPromptsLoadAndBadFilesAreClearErrors) {
    const auto p = read_json_prompts(std::string(SLUICE_SOURCE_DIR) + "/data/eval/json_prompts.jsonl");
    EXPECT_GE(p.size(), 30u);
    const auto dir = test::temp_dir("json-prompts");
    std::ofstream((dir / "bad.jsonl").string()) << "{\"prompt\": \"ok\"}\n{\"keys\": [1]}\n";
    try {
        read_json_prompts((dir / "bad.jsonl").string());
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace sluice
