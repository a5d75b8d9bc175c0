// Chat templates of the supported families, and stop strings across token boundaries.
#include <gtest/gtest.h>

#include "common.h"
#include "io/mapped_file.h"
#include "runtime/stop_strings.h"
#include "tokenizer/chat_template.h"

namespace sluice {
namespace {

const std::vector<ChatMessage> kConv = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};

TEST(ChatTemplate, RecognisesTheTinyModelsChatML) {
    const std::string t = read_text_file(test::tiny_hf() + "/chat_template.jinja");
    ASSERT_EQ(detect_chat_style(t), ChatStyle::ChatML);
    // What the template renders (transformers' apply_chat_template, add_generation_prompt).
    EXPECT_EQ(render_chat(ChatStyle::ChatML, kConv),
              "<|im_start|>system\nBe "
              "brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_"
              "end|>\n"
              "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_FALSE(detect_chat_style("{{ messages }}").has_value());
}

TEST(ChatTemplate, Qwen3ThinkingSwitchAndHistory) {
    EXPECT_EQ(detect_chat_style("{%- if enable_thinking is defined %}<|im_start|>"),
              ChatStyle::Qwen3);
    std::vector<ChatMessage> m = {
        {"user", "a"}, {"assistant", "<think>\nhmm\n</think>\n\nb"}, {"user", "c"}};
    const std::string on = render_chat(ChatStyle::Qwen3, m);
    EXPECT_NE(on.find("<|im_start|>assistant\nb<|im_end|>"), std::string::npos)
        << on;  // reasoning dropped
    EXPECT_EQ(on.substr(on.size() - 22), "<|im_start|>assistant\n");
    const std::string off = render_chat(ChatStyle::Qwen3, m, {true, false});
    EXPECT_EQ(off.substr(off.size() - 41), "<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplate, DeepSeekV3AndMixtral) {
    const std::string ds = render_chat(ChatStyle::DeepSeekV3, kConv);
    EXPECT_EQ(ds,
              "<｜begin▁of▁sentence｜>Be "
              "brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?<"
              "｜Assistant｜>");
    EXPECT_EQ(detect_chat_style("{{'<｜Assistant｜>'}}"), ChatStyle::DeepSeekV3);
    EXPECT_EQ(render_chat(ChatStyle::Mixtral, kConv),
              "<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] 2+2? [/INST]");
    EXPECT_EQ(detect_chat_style("{{ '[INST] ' + message['content'] + ' [/INST]' }}"),
              ChatStyle::Mixtral);
}

TEST(StopMatcher, StopsAcrossTokenBoundariesWithoutLeaking) {
    StopMatcher m({"END", "\n\n"});
    std::string out;
    for (const char* piece : {"Hel", "lo E", "N", "xt E", "N", "D more"}) out += m.push(piece);
    EXPECT_TRUE(m.stopped());
    EXPECT_EQ(out, "Hello ENxt ");
    EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, ReleasesHeldTextAtTheEnd) {
    StopMatcher m({"STOP"});
    std::string out = m.push("abc ST");
    EXPECT_EQ(out, "abc ");  // "ST" might begin STOP
    out += m.flush();
    EXPECT_EQ(out, "abc ST");
    EXPECT_FALSE(m.stopped());
}

}  // namespace
}  // namespace sluice
